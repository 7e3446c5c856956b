"""Every notebook parameter is checked against its declared type and range before any work."""

from pathlib import Path

import pytest

from hemasuite import config, parameters
from hemasuite.errors import DataError, ParameterError
from hemasuite.tools import runner

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.parametrize("override, name, allowed", [
    ({"epochs": -1}, "epochs", "an integer >= 1"),
    ({"epochs": 0}, "epochs", "an integer >= 1"),
    ({"image_size": "abc"}, "image_size", "an integer >= 8"),
    ({"batch_size": 0}, "batch_size", "an integer >= 1"),
    ({"seeds": []}, "seeds", "a list of at least 1 different item"),
    ({"fractions": [0.5, 0.2, 0.2]}, "fractions", "adding up to 1"),
    ({"dataset": "no_such_set"}, "dataset", "folder:/path/to/root"),
    ({"learning_rate": 0}, "learning_rate", "a number > 0"),
])
def test_bad_training_values_fail_before_any_notebook_runs(override, name, allowed, tmp_path):
    with pytest.raises(ParameterError, match=rf"11_p1_deep_cnn: parameter {name}=.*allowed: .*{allowed}"):
        runner.run_notebooks("smoke", ["11"], overrides=override, reports=tmp_path)
    assert not (tmp_path / "smoke").exists()


@pytest.mark.parametrize("override, message", [
    ({"datasets": []}, "datasets=\\[\\]: 0 item"),
    ({"datasets": "synthetic"}, "a string, not a list"),
    ({"near_threshold": -2}, "near_threshold=-2: too small; allowed: an integer >= 0 and <= 64"),
])
def test_bad_validation_values_name_the_parameter(override, message, tmp_path):
    with pytest.raises(ParameterError, match=message):
        runner.run_notebooks("smoke", ["00"], overrides=override, reports=tmp_path)


def test_explicit_data_dir_that_does_not_exist_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LEUKEMIA_DATA_DIR", str(tmp_path))  # exists, yet never used in place of the explicit one
    with pytest.raises(DataError, match="given explicitly"):
        config.resolve_data_dir(tmp_path / "typo")
    assert config.resolve_data_dir(None) == tmp_path.resolve()
    with pytest.raises(ParameterError, match="--data-dir .* does not exist"):
        runner.run_notebooks("smoke", ["00"], reports=tmp_path, data_dir=str(tmp_path / "typo"))
    with pytest.raises(ParameterError, match="data_dir=.*does not exist"):
        parameters.check({"data_dir": str(tmp_path / "typo")})


def test_every_notebook_parameter_has_a_declared_rule():
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        undeclared = set(parameters.notebook_defaults(path)) - set(parameters.SCHEMA)
        assert not undeclared, f"{path.stem}: add {sorted(undeclared)} to hemasuite.parameters.SCHEMA"
        parameters.check(parameters.notebook_defaults(path), where=path.stem)  # the smoke values pass
        for profile in config.profile_names():
            parameters.check(config.notebook_parameters(profile, path.stem), where=f"{profile}/{path.stem}")


def test_a_parameter_without_a_rule_keeps_the_type_of_its_default():
    parameters.check({"new_option": 3.5}, {"new_option": 2})
    with pytest.raises(ParameterError, match="new_option='x' must have the type of its default 2"):
        parameters.check({"new_option": "x"}, {"new_option": 2})


def test_colour_variants_are_the_stain_modules():
    from hemasuite import stain

    for variant in stain.VARIANTS:
        parameters.SCHEMA["variants"].check("variants", [variant])
    with pytest.raises(ParameterError):
        parameters.SCHEMA["variants"].check("variants", ["sepia"])


@pytest.mark.parametrize("name", ["seeds", "split_seeds", "backbone_seeds", "finetune_seeds"])
def test_a_seed_given_twice_is_refused(name):
    with pytest.raises(ParameterError, match="0 given more than once"):
        parameters.check({name: [0, 1, 0]})
