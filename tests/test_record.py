"""The results format: every results.json the notebooks write follows it, and anything off-format is refused."""

import copy
import dataclasses
import json
import subprocess
from pathlib import Path

import pytest

from hemasuite import record
from hemasuite.record import RecordError
from hemasuite.tools import site

REPO_ROOT = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = {".json", ".csv", ".md", ".html", ".ipynb", ".txt", ".js"}


def notebook_results(smoke_reports):
    return sorted((smoke_reports / "smoke" / "results").glob("*/results.json"))


def test_every_smoke_notebook_writes_the_format_and_nothing_else(smoke_reports):
    paths = notebook_results(smoke_reports)
    assert {p.parent.name for p in paths} >= {"10_p4_sequential_cnn", "11_p1_deep_cnn", "20_p3_densenet201_lymphoma",
                                              "21_p2_cnmc_transfer", "22_p5_bone_marrow", "90_comparison"}
    for path in paths:
        written = json.loads(path.read_text())
        results = record.read(path)  # strict: an unknown or missing field raises
        assert record.to_dict(results) == written, path  # and nothing was dropped on the way
        assert results.version == record.VERSION and results.profile == "smoke"
        for row in results.models:
            assert (path.parent / row.predictions).is_file()
            assert all((path.parent / figure).is_file() for figure in row.figures.values())
            assert row.mean == pytest.approx(sum(s.value for s in row.seeds) / len(row.seeds))
        assert all((path.parent / table).is_file() for table in results.tables.values())
        if results.paper:
            assert results.protocol.split.level in record.SPLIT_LEVELS and results.verdict
            assert results.protocol.deviations[0].startswith("profile smoke")


def test_selections_name_what_was_chosen_on_what(smoke_reports):
    p5 = record.read(smoke_reports / "smoke" / "results" / "22_p5_bone_marrow" / "results.json")
    svm = [s for s in p5.protocol.selection if s.what == "C"]
    assert svm and all(s.on.startswith("3-fold cross-validation") and len(s.tried) == 3 for s in svm)
    p4 = record.read(smoke_reports / "smoke" / "results" / "10_p4_sequential_cnn" / "results.json")
    epochs = next(s for s in p4.protocol.selection if s.what == "epoch")
    runs = len(p4.parameters["split_seeds"]) * len(p4.parameters["seeds"])
    assert epochs.on.startswith("validation split") and len(epochs.chosen) == runs  # one per split and seed
    assert all(t.score is not None for t in epochs.tried)


def load(smoke_reports, stem="20_p3_densenet201_lymphoma"):
    return json.loads((smoke_reports / "smoke" / "results" / stem / "results.json").read_text())


@pytest.fixture(scope="module")
def written(smoke_reports):
    return load(smoke_reports)


@pytest.mark.parametrize("stem, where", [
    ("20_p3_densenet201_lymphoma", ()), ("20_p3_densenet201_lymphoma", ("protocol",)),
    ("20_p3_densenet201_lymphoma", ("protocol", "split")), ("20_p3_densenet201_lymphoma", ("models", 0)),
    ("20_p3_densenet201_lymphoma", ("models", 0, "seeds", 0)), ("20_p3_densenet201_lymphoma", ("leakage",)),
    ("20_p3_densenet201_lymphoma", ("leakage", "measurements", 0)), ("20_p3_densenet201_lymphoma", ("environment",)),
    ("10_p4_sequential_cnn", ("protocol", "selection", 0)), ("10_p4_sequential_cnn", ("protocol", "selection", 0,
                                                                                     "tried", 0))])
def test_an_unknown_field_anywhere_is_refused(smoke_reports, stem, where):
    data = load(smoke_reports, stem)
    node = data
    for key in where:
        node = node[key]
    node["surprise"] = 1
    with pytest.raises(RecordError, match=r"unknown field\(s\) \['surprise'\]"):
        record.from_dict(record.Results, data)


def test_missing_fields_wrong_types_and_rules_are_refused(written):
    def broken(change):
        data = copy.deepcopy(written)
        change(data)
        return data

    cases = [(lambda d: d.pop("environment"), r"missing field\(s\) \['environment'\]"),
             (lambda d: d["models"][0].update(mean="high"), r"Results.models\[0\].mean: expected a number, got 'high'"),
             (lambda d: d["models"][0].update(seeds={}), r"seeds: expected a list"),
             (lambda d: d["protocol"]["split"].update(level="patient"), r"level: 'patient' is not one of"),
             (lambda d: d.update(version=0), "format version 0"),
             (lambda d: d["models"][0].update(paper_model=None), "paper_value without paper_model"),
             (lambda d: d["protocol"]["seeds"].append("1"), r"seeds\[\d+\]: expected an integer")]
    for change, message in cases:
        with pytest.raises(RecordError, match=message):
            record.from_dict(record.Results, broken(change))


def test_finish_validates_before_writing(tmp_path):
    run = record.Run("x", tmp_path, {"profile": "smoke"})
    row = record.ModelRow("m", "m", record.Weights("random init"), [record.SeedValue(0, 0.5)], 0.5, None, 0.4, 0.6,
                          10, paper_value=0.9)  # a paper value without saying which of the paper's models
    with pytest.raises(RecordError, match="paper_value without paper_model"):
        run.finish(models=[row])
    assert not (run.dir / "results.json").exists()
    results = run.finish(models=[dataclasses.replace(row, paper_model="M")], details={"note": "kept"})
    assert record.read(run.dir / "results.json") == results


def test_ladder_rungs_and_row_levels_are_checked():
    rung = {"dataset": "IICBU", "order": 0, "protocol": "augment, then split", "level": "augmented",
            "model": "tile CNN", "test_accuracy": 0.9, "ci_low": 0.8, "ci_high": 0.95, "n_test": 75}
    assert record.from_dict(record.Rung, rung).level == "augmented"
    with pytest.raises(record.RecordError, match="level"):
        record.from_dict(record.Rung, {**rung, "level": "patient-ish"})


def test_split_records_its_manifest_hash_and_seed_values_their_split_seed(tmp_path):
    split = {"level": "field", "method": "m", "seed": 1, "manifest": "splits/field_seed1.csv",
             "manifest_sha256": "ab" * 32}
    assert record.from_dict(record.Split, split).manifest_sha256 == "ab" * 32
    with pytest.raises(RecordError, match="manifest_sha256"):
        record.from_dict(record.Split, {**split, "manifest_sha256": 5})
    assert record.from_dict(record.SeedValue, {"seed": 0, "value": 0.9, "split_seed": 2}).split_seed == 2


def test_predictions_name_images_relative_to_their_common_folder(tmp_path):
    import pandas as pd

    run = record.Run("00_x", tmp_path / "out", {})
    paths = [str(tmp_path / "data" / "set" / c / f"{i}.jpg") for c, i in [("A", 1), ("B", 2)]]
    saved = run.save_predictions(pd.DataFrame({"path": paths, "true": ["A", "B"]}), "model")
    written = pd.read_csv(run.dir / saved)
    assert saved == "predictions/model.csv"
    assert list(written["path"]) == ["A/1.jpg", "B/2.jpg"]
    assert str(tmp_path) not in (run.dir / saved).read_text()


def test_smoke_predictions_carry_no_machine_paths(smoke_reports):
    found = list(smoke_reports.rglob("predictions/*.csv"))
    assert found
    for csv in found:
        assert not site.ABSOLUTE_PATH.search(csv.read_text()), csv


def test_no_committed_report_file_names_a_machine_path():
    """Results, manifests, records and pages under reports/ name files relative to the data root or the reports."""
    listed = subprocess.run(["git", "ls-files", "reports"], cwd=REPO_ROOT, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: the committed reports are not known")
    texts = [REPO_ROOT / name for name in listed.stdout.split() if Path(name).suffix in TEXT_SUFFIXES]
    assert texts
    found = {str(p.relative_to(REPO_ROOT)): m.group() for p in texts
             if (m := site.ABSOLUTE_PATH.search(p.read_text(encoding="utf-8")))}
    assert not found, found
