"""Repeated splits and the leakage ladder: split levels, relatives on the training side, pooled accuracy, rungs."""

import numpy as np
import pandas as pd
import pytest

from hemasuite import evaluation, experiment, pipeline, record, validation
from hemasuite.datasets import load_dataset
from hemasuite.errors import DataError, ParameterError
from hemasuite.evaluation import pooling
from hemasuite.evaluation.predictions import COLUMNS as PREDICTION_COLUMNS
from hemasuite.experiment import TrainedSeed
from hemasuite.record import Run
from hemasuite.splits import load_manifest


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    """A synthetic set with planted duplicates, its validation report, images and a run folder."""
    folder = tmp_path_factory.mktemp("ladder")
    data = load_dataset("synthetic", cache_dir=folder / "data", n_classes=3, per_class=12, size=24, n_duplicates=2)
    report = validation.validate_dataset(data)
    images = pipeline.load_images(data.frame, 16)
    return Run("t_ladder", folder / "out", {}), data, report, images


def split(setting, level, seed=0):
    run, data, report, images = setting
    return evaluation.split_once(run, data, report, level, seed, [0.7, 0.3], images, 16)


def oracle(correct_if_related: bool = True, accuracy_otherwise: float = 0.5):
    """A fake ``fit``: right on test images with a relative in training, right on a share of the others."""
    class Model:
        pass

    def fit(prepared):
        y = prepared.arrays("test")[1]
        related = prepared.frame.loc[prepared.frame["split"] == "test", "relative_in_train"].to_numpy(bool)
        rng = np.random.default_rng(prepared.split.seed)
        right = np.where(related, correct_if_related, rng.random(len(y)) < accuracy_otherwise)
        predicted = np.where(right, y, (y + 1) % 3)
        return [TrainedSeed(seed, np.eye(3)[predicted], {}, {"train_images_per_s": 10.0}, Model()) for seed in (0, 1)]
    return fit


@pytest.fixture
def no_model_needed(monkeypatch):
    monkeypatch.setattr(pooling, "measure_train_accuracy", lambda model, prepared: 1.0)


def test_each_level_keeps_its_groups_and_saves_a_hashed_manifest(setting):
    run = setting[0]
    image, duplicate = split(setting, "image"), split(setting, "duplicate")
    assert image.split.duplicates_merged == 0 and duplicate.split.duplicates_merged >= 6
    manifest = load_manifest(run.dir / duplicate.split.manifest)
    assert duplicate.split.manifest == "splits/duplicate_seed0.csv" and len(manifest) == len(duplicate.frame)
    assert (manifest.groupby("duplicate_group")["split"].nunique() == 1).all()
    assert duplicate.split.manifest_sha256 == validation.sha256_file(run.dir / duplicate.split.manifest)
    assert not duplicate.frame.query("split == 'test'")["relative_in_train"].any()
    assert image.images is duplicate.images  # shared, not copied


def test_an_image_split_marks_test_images_whose_duplicate_is_in_training(setting):
    marked = [split(setting, "image", seed).frame for seed in range(6)]
    related = pd.concat([m[m["relative_in_train"]] for m in marked])
    assert len(related) > 0 and (related["split"] != "train").all()
    for frame in marked:
        train_groups = set(frame.loc[frame["split"] == "train", "duplicate_group"])
        expected = frame["duplicate_group"].isin(train_groups) & (frame["split"] != "train")
        assert frame["relative_in_train"].equals(expected)


def test_images_must_match_the_dataset(setting):
    run, data, report, images = setting
    with pytest.raises(ParameterError, match="images for"):
        evaluation.split_once(run, data, report, "image", 0, [0.7, 0.3], images[:5], 16)


def test_pooled_accuracy_keeps_splits_and_training_seeds_apart(setting, no_model_needed):
    runs = evaluation.fit_splits("image", [split(setting, "image", s) for s in (0, 1, 2)], oracle())
    assert len(runs) == 6 and runs[0].trained.model is not None and runs[1].trained.model is None
    summary = evaluation.pooled(runs, n_boot=200)
    correct = np.concatenate([r.correct() for r in runs])
    assert summary["exact"]["k"] == correct.sum() and summary["exact"]["n"] == len(correct)
    assert summary["exact"]["ci_low"] < summary["exact"]["value"] < summary["exact"]["ci_high"]
    assert summary["splits"] == 3 and summary["training_seeds_per_split"] == 2
    assert summary["sd_across_training_seeds"] == 0  # the fake model gives both seeds one answer
    assert summary["bootstrap"]["n_test"] == sum(r.labels().size for r in runs) // 2
    table = evaluation.runs_table(runs)
    assert table["accuracy_with_relative"].dropna().eq(1.0).all()


def test_model_and_majority_rows(setting, no_model_needed):
    run = setting[0]
    parts = [split(setting, "field", s) for s in (0, 1)]
    runs = evaluation.fit_splits("field", parts, oracle(accuracy_otherwise=1.0))
    row = evaluation.model_row(run, "m", "model", runs, record.Weights("random init"), "fake", n_boot=100)
    assert row.mean == 1.0 and row.train_accuracy == 1.0 and row.split_level == "field"
    assert [(v.split_seed, v.seed) for v in row.seeds] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    predictions = pd.read_csv(run.dir / row.predictions)
    assert predictions.columns[:8].tolist() == list(PREDICTION_COLUMNS) and "relative_in_train" in predictions
    assert set(predictions["resample_kind"]) == {"split_seed"} and set(predictions["split_level"]) == {"field"}
    assert len(predictions) == sum(r.labels().size for r in runs)
    majority = evaluation.majority_row(run, parts, "field")
    shares = [float(np.mean(p.arrays("test")[1] == np.bincount(p.arrays("train")[1]).argmax())) for p in parts]
    assert majority.mean == pytest.approx(np.mean(shares)) and majority.weights.label.startswith("none")
    assert majority.ci_low <= majority.mean <= majority.ci_high
    record.from_dict(record.ModelRow, record.to_dict(row))


def test_rungs_are_ordered_leakiest_first_and_show_the_leak(setting, no_model_needed):
    fit = oracle(accuracy_otherwise=0.3)
    runs = [r for level in ("field", "image") for r in
            evaluation.fit_splits(level, [split(setting, level, s) for s in (0, 1, 2)], fit)]
    rungs = evaluation.rungs(runs, "synthetic", "fake", n_boot=100)
    assert [(r.order, r.level) for r in rungs] == [(0, "image"), (1, "field")]
    assert rungs[0].test_accuracy > rungs[1].test_accuracy and rungs[0].splits == 3
    table = evaluation.table(rungs, runs)
    assert table.loc[0, "test_with_relative_in_train"] > 0 and table.loc[1, "test_with_relative_in_train"] == 0
    text = evaluation.verdict(rungs, table)
    assert "random image split" in text and "points" in text
    evaluation.figure(rungs, "t")
    record.from_dict(record.Results, record.to_dict(record.Results(
        "02", "smoke", "t", 1.0, record.environment(), {}, ladder=rungs)))


def test_every_split_needs_the_same_training_seeds(setting, no_model_needed):
    runs = evaluation.fit_splits("image", [split(setting, "image", s) for s in (0, 1)], oracle())
    with pytest.raises(ParameterError, match="same training seeds"):
        evaluation.pooled(runs[:3])


def test_duplicate_level_allows_twins_across_sides_but_field_level_checks_them(monkeypatch, setting):
    """The look-alike check runs at field level on field images only: a duplicate-level split leaves twins by design."""
    run, data, report, images = setting
    scenes = type(data)(**{**vars(data), "info": {**data.info, "image_kind": "field"}})
    checked = []
    monkeypatch.setattr(experiment.splits, "assert_no_leakage",
                        lambda frame, group_col, images=None: checked.append(images is not None))
    monkeypatch.setattr(experiment.same_field, "thumbnails", lambda paths: np.zeros((len(paths), 8, 8)))
    for level in ("image", "duplicate", "field"):
        experiment.make_split(None, scenes, [0.7, 0.3], 0, level, report)
    assert checked == [False, False, True]


def test_fit_must_keep_its_models(setting):
    def forgetful(prepared):
        return [TrainedSeed(0, np.eye(3)[prepared.arrays("test")[1]], {}, {}, None)]
    with pytest.raises(ParameterError, match="keep_models"):
        evaluation.fit_splits("image", [split(setting, "image")], forgetful)


def test_a_real_training_accuracy(setting):
    import keras

    prepared = split(setting, "image")
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3, activation="softmax")])
    value = evaluation.measure_train_accuracy(model, prepared)
    assert 0 <= value <= 1


def test_a_split_that_cannot_hold_a_level_fails(setting):
    run, data, report, images = setting
    with pytest.raises((DataError, ParameterError)):
        evaluation.split_once(run, data, report, "case-ish", 0, [0.7, 0.3], images, 16)


def test_predictions_refuse_an_unknown_resample_kind_and_missing_columns(setting):
    from hemasuite.errors import ParameterError
    from hemasuite.evaluation import predictions

    with pytest.raises(ParameterError, match="resample kind"):
        predictions.frame("case", "repeat", 0, 0, ["a.png"], ["x", "y"], [0], [[0.9, 0.1]])
    with pytest.raises(ParameterError, match="lack the columns"):
        predictions.save_predictions(setting[0], "bad", pd.DataFrame({"path": ["a.png"], "p_x": [1.0]}))
