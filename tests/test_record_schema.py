"""The published JSON Schema of results.json, the committed results against it, and the rule that a repeated split
is never recorded as a fold nor a fold as a split seed."""

import json
import subprocess
import sys

import jsonschema
import numpy as np
import pytest

from hemasuite import record
from hemasuite.config import repo_root
from hemasuite.record import RecordError

SCHEMA = repo_root() / "docs" / "results.schema.json"


def committed_results() -> list:
    """Every results.json under reports/ that git tracks."""
    listed = subprocess.run(["git", "ls-files", "reports/*results.json"], cwd=repo_root(), capture_output=True,
                            text=True, check=True).stdout.split()
    return [repo_root() / name for name in listed]


def test_the_published_schema_is_what_the_record_generates():
    assert json.loads(SCHEMA.read_text()) == record.json_schema(), "stale: run `make schema`"


def test_the_module_prints_the_schema():
    printed = subprocess.run([sys.executable, "-m", "hemasuite.record", "--schema"], cwd=repo_root(),
                             capture_output=True, text=True, check=True).stdout
    assert json.loads(printed) == record.json_schema()


@pytest.mark.parametrize("path", committed_results(), ids=lambda p: p.parent.name)
def test_every_committed_results_file_follows_the_schema_and_reads_back(path):
    data = json.loads(path.read_text())
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    assert not [error.message for error in validator.iter_errors(data)], path
    results = record.read(path)
    assert record.to_dict(results) == record.to_dict(record.from_dict(record.Results, data))


def test_the_schema_refuses_what_the_record_refuses():
    validator = jsonschema.Draft202012Validator(record.json_schema())
    written = json.loads(committed_results()[0].read_text())
    for change in ({"surprise": 1}, {"version": 2}, {"wall_time_s": "fast"}, {"rehearsal": 1}):
        assert not validator.is_valid({**written, **change}), change
    assert validator.is_valid(written)


def results(split: record.Split, *seeds: record.SeedValue) -> record.Results:
    row = record.ModelRow("m", "m", record.Weights("random init"), list(seeds), 0.5, None, 0.4, 0.6, 10)
    protocol = record.Protocol(record.DatasetInfo("d", "d", ["a", "b"], 10), split, [0], [64, 64])
    return record.Results("x", "smoke", "2026-01-01T00:00:00+00:00", 1.0, record.Environment("3.11", {}, {}, None),
                          {}, protocol=protocol, models=[row])


CV = record.Split("case", "stratified grouped 5-fold cross-validation", 0, folds=5)
REPEATED = record.Split("field", "stratified, group-aware", 0, fractions=[0.8, 0.2])


def test_folds_in_a_cross_validation_and_split_seeds_in_repeated_splits_are_recorded():
    assert results(CV, record.SeedValue(0, 0.5, fold=1)).models[0].seeds[0].fold == 1
    assert results(REPEATED, record.SeedValue(0, 0.5, split_seed=2)).models[0].seeds[0].split_seed == 2
    assert results(REPEATED, record.SeedValue(0, 0.5)).models[0].seeds[0].split_seed is None


def test_a_repeated_split_is_never_a_fold_nor_a_fold_a_split_seed(tmp_path):
    with pytest.raises(RecordError, match=r"Results: models\[0\].seeds\[1\]: fold 1 in a split that is no "
                                          "cross-validation"):
        results(REPEATED, record.SeedValue(0, 0.5, split_seed=0), record.SeedValue(0, 0.5, fold=1))
    with pytest.raises(RecordError, match=r"models\[0\].seeds\[0\]: split_seed 3 in a cross-validation"):
        results(CV, record.SeedValue(0, 0.5, split_seed=3))
    no_folds_named = record.Split("case", "grouped 5-fold CV", 0)  # the method says folds
    with pytest.raises(RecordError, match="split_seed 3 in a cross-validation"):
        results(no_folds_named, record.SeedValue(0, 0.5, split_seed=3))
    with pytest.raises(RecordError, match="SeedValue: fold 1 and split_seed 2"):
        record.SeedValue(0, 0.5, fold=1, split_seed=2)


def test_a_mislabelled_results_file_is_refused_naming_the_file_and_the_field(tmp_path):
    path = tmp_path / "results.json"
    record.write(results(REPEATED, record.SeedValue(0, 0.5, split_seed=1)), path)
    data = json.loads(path.read_text())
    data["models"][0]["seeds"][0].update(fold=1, split_seed=None)  # P4's old way of writing its split seeds
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match=rf"{path}: models\[0\].seeds\[0\]: fold 1 in a split"):
        record.read(path)
    data["models"][0]["seeds"][0].update(fold=1, split_seed=1)
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match=rf"{path}.models\[0\].seeds\[0\]: fold 1 and split_seed 1"):
        record.read(path)


def test_construction_checks_types_and_names_the_field():
    with pytest.raises(RecordError, match=r"SeedValue.value: expected a number, got 'high'"):
        record.SeedValue(0, "high")
    with pytest.raises(RecordError, match=r"Split.seed: expected an integer, got True"):
        record.Split("field", "m", True)
    with pytest.raises(RecordError, match=r"Split.level: 'patient' is not one of"):
        record.Split("patient", "m", 0)
    with pytest.raises(RecordError, match=r"Tried: missing field\(s\) \['score'\]"):
        record.Tried("c")
    value = record.SeedValue(np.int64(1), np.float32(0.5), fold=np.int32(2))
    assert (value.seed, value.value, value.fold) == (1, 0.5, 2) and type(value.seed) is int
