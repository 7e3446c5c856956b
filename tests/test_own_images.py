"""Your own class-per-folder images: ``folder:/path`` in the loaders, validation, training and the runner."""

import json
import warnings

import pandas as pd
import pytest
from own_images import write_own_images

from hemasuite import experiment, validation
from hemasuite.datasets import load_dataset, relabel_stand_in
from hemasuite.errors import DataError, ParameterError
from hemasuite.imageio import describe_error
from hemasuite.tools import runner

DEFECTS = ("empty_class", "nested_image", "unsupported_format", "not_an_image", "broken_link", "unreadable",
           "decompression_bomb")


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    root = tmp_path_factory.mktemp("images") / "my_cells"
    return root, write_own_images(root)


def test_folder_name_loads_own_images_and_keeps_what_it_skips(own):
    root, defects = own
    data = load_dataset(f"folder:{root}")
    assert data.own and data.name == "my_cells" and data.display_name == "my_cells [own images]"
    assert data.classes == ["blast", "lymphocyte", "normal"]  # the empty class is left out, not fatal
    skipped = {p["kind"]: p["path"] for p in data.problems}
    for kind in ("empty_class", "nested_image", "unsupported_format", "not_an_image", "broken_link"):
        assert skipped[kind] == str(defects[kind]), kind
    assert relabel_stand_in(data, "another paper's set") is data  # own images stand in for nothing


def test_missing_or_single_class_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'nowhere'}")
    (tmp_path / "only").mkdir()
    with pytest.raises(DataError, match="at least two"):
        load_dataset(f"folder:{tmp_path}")
    with pytest.raises(ParameterError, match="folder:/path/to/root"):
        load_dataset("my_cells")


def test_validation_reports_every_defect_with_its_file(own):
    root, defects = own
    report = validation.validate_dataset(load_dataset(f"folder:{root}"))
    problems = report.problems
    for kind in DEFECTS:
        assert str(defects[kind]) in problems.loc[problems["kind"] == kind, "path"].tolist(), kind
    across = problems[problems["kind"] == "exact_duplicate_across_classes"]
    assert set(across["path"]) == {str(defects["conflict"]), str(root / "blast" / "cell_000.png")}
    assert not problems["detail"].str.contains("0x").any()  # no memory addresses: the same table every run


def test_unreadable_messages_carry_no_memory_address():
    error = OSError("cannot identify image file <_io.BytesIO object at 0x7f3a2b1c4d50>")
    assert describe_error(error) == "cannot identify image file"


def test_conflicting_labels_and_unreadable_files_are_left_out_with_a_warning(own):
    root, defects = own
    data = load_dataset(f"folder:{root}")
    report = validation.validate_dataset(data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept, excluded = experiment.usable_images(data, report)
    text = " ".join(str(w.message) for w in caught)
    assert "blast/cell_000.png = normal/also_blast.png" in text and "normal/bomb.png" in text
    assert excluded["conflicting_labels"] == ["blast/cell_000.png = normal/also_blast.png"]
    assert set(excluded["unreadable"]) == {"lymphocyte/broken.jpg", "normal/bomb.png"}
    assert len(kept.frame) == len(data.frame) - 4
    assert not kept.frame["path"].isin([str(defects["conflict"])]).any()


def test_own_images_never_write_into_the_checkouts_reports(own):
    root, _ = own
    with pytest.raises(ParameterError, match="--reports DIR"):
        runner.run_notebooks("smoke", ["11"], dataset=f"folder:{root}")


def test_runner_validates_trains_and_evaluates_own_images(own, tmp_path):
    root, defects = own
    reports = tmp_path / "my_reports"
    records = runner.run_notebooks("smoke", ["00", "11"], reports=reports, dataset=f"folder:{root}")
    assert [r["status"] for r in records] == ["ok", "ok"], [r.get("error", "")[-800:] for r in records]
    results = reports / "smoke" / "results"
    problems = pd.read_csv(results / "00_data_validation" / "tables" / "my_cells_problems.csv")
    for kind in DEFECTS:
        assert defects[kind].name in " ".join(problems.loc[problems["kind"] == kind, "path"]), kind
    p1 = json.loads((results / "11_p1_deep_cnn" / "results.json").read_text())
    assert p1["paper"] is None and p1["protocol"]["dataset"]["display_name"] == "my_cells [own images]"
    assert all(m["paper_value"] is None and m["paper_model"] is None for m in p1["models"])
    assert "my_cells [own images]" in p1["verdict"] and "Target" not in p1["verdict"]
    assert p1["protocol"]["deviations"][0].startswith("own images 'my_cells'")
    assert p1["protocol"]["details"]["excluded_images"]["conflicting_labels"]
    assert (results / "11_p1_deep_cnn" / p1["protocol"]["split"]["manifest"]).is_file()
    assert p1["protocol"]["split"]["manifest_sha256"]
    assert p1["models"][0]["ci_low"] is not None and p1["figures"]
    summary = pd.read_csv(results / "11_p1_deep_cnn" / "tables" / "paper_vs_run.csv")
    assert "paper" not in summary.columns
    assert (reports / "smoke" / "index.html").is_file()
