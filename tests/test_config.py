"""Profiles and parameters: unknown names fail with the list of known ones."""

import pytest

from hemasuite import config, session
from hemasuite.errors import ParameterError

NOTEBOOKS = ["00_data_validation", "01_augmentation"]


def test_profiles_file_defines_the_three_profiles():
    assert {"smoke", "cpu", "paper"} <= set(config.profile_names())


def test_unknown_profile():
    with pytest.raises(ParameterError, match="unknown profile 'fast'.*smoke"):
        config.profile("fast")


def test_notebook_parameters_merge_common_block_and_overrides():
    params = config.notebook_parameters("cpu", "00_data_validation", {"seed": 5})
    assert params["profile"] == "cpu" and params["seed"] == 5 and "taleqani_all" in params["datasets"]


def test_unknown_parameter_is_named():
    with pytest.raises(ParameterError, match=r"unknown parameter\(s\) \['epochz'\]"):
        config.check_known({"epochz": 3, "seed": 0}, {"seed", "epochs"}, "notebook x")


def test_choice_check():
    with pytest.raises(ParameterError, match="'bogus' is not one of"):
        config.check_choice("weights", "bogus", ["imagenet", None])


def test_profiles_file_with_unknown_section(tmp_path):
    path = tmp_path / "profiles.yaml"
    path.write_text("smoke:\n  common: {}\n  notebok: {}\n")
    with pytest.raises(ParameterError, match="unknown section"):
        config.load_profiles(path)


def test_session_start_rejects_unknown_profile_and_bad_seed(tmp_path, start_run):
    with pytest.raises(ParameterError, match="unknown profile"):
        start_run("x", profile="gpu", data_dir=None, output_dir=str(tmp_path), seed=0)
    with pytest.raises(ParameterError, match="seed=.zero.: not an integer"):
        start_run("x", profile="smoke", data_dir=None, output_dir=str(tmp_path), seed="zero")
    with pytest.raises(ParameterError, match="must define"):
        start_run("x", profile="smoke", seed=0)


def test_session_start_reads_the_parameters_cell_once(tmp_path, monkeypatch, write_notebook):
    write_notebook(tmp_path, "00_x", {"profile": "smoke", "data_dir": None, "output_dir": None, "seed": 0,
                                      "epochs": 2})
    monkeypatch.chdir(tmp_path)
    namespace = {"profile": "smoke", "data_dir": None, "output_dir": str(tmp_path / "out"), "seed": 3, "epochs": 5,
                 "later": "not a parameter", "In": []}
    run = session.start("00_x", namespace)
    assert run.params == {"profile": "smoke", "data_dir": None, "output_dir": str(tmp_path / "out"), "seed": 3,
                          "epochs": 5}
    assert run.dir == tmp_path / "out" / "00_x" and run.dir.is_dir() and run.paper is None
    assert (run.dir / "results.json").exists() is False
    run.finish()
    assert (run.dir / "results.json").exists()
    with pytest.raises(ParameterError, match=r"must define \['epochs'\]"):
        session.start("00_x", {k: v for k, v in namespace.items() if k != "epochs"})
