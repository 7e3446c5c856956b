"""P3's protocols and tile model, P2's task and Table 2, P5's rotations, SVM, fine-tuning and tables."""

import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hemasuite import augment, evaluation, experiment, models, papers, record, tiles
from hemasuite.datasets import Dataset, load_dataset
from hemasuite.errors import ParameterError, WeightsError
from hemasuite.papers import p2_cnmc_transfer as p2
from hemasuite.papers import p3_densenet201_lymphoma as p3
from hemasuite.papers import p5_bone_marrow as p5
from hemasuite.record import Run


@pytest.fixture(scope="module")
def lymph(tmp_path_factory):
    """A 3-class synthetic set split 80/20 with experiment.prepare, at 32x32."""
    folder = tmp_path_factory.mktemp("lymph")
    data = load_dataset("synthetic", cache_dir=folder, n_classes=3, per_class=10, size=32)
    return experiment.prepare(Run("t", folder / "out", {}), data, [0.8, 0.2], 0, 32)


def protocols(prepared, per_class=20):
    augmentor = augment.AugmentorPipeline(seed=0)
    return (p3.paper_protocol(prepared, augmentor, per_class, 0.2, 0),
            p3.leakage_free_protocol(prepared, augmentor, per_class, 0.2, 0))


def test_paper_protocol_leaks_and_the_leakage_free_one_does_not(lymph):
    leaky, clean = protocols(lymph)
    assert leaky.frame.groupby("label").size().tolist() == [20, 20, 20]
    assert (leaky.frame["split"] == "test").sum() == 12
    assert np.array_equal(leaky.dataset.label_ids, lymph.dataset.label_ids[leaky.frame["source"]])
    found = p3.leakage(leaky)
    assert found["test_images_with_source_in_train"] > 0 and found["sources_on_both_sides"] > 0
    free = p3.leakage(clean)
    assert free["test_images_with_source_in_train"] == 0 and free["test_images_identical_to_a_training_image"] == 0
    test = (lymph.frame["split"] == "test").to_numpy()
    assert np.array_equal(clean.arrays("test")[0], lymph.images[test])
    assert clean.frame[clean.frame["split"] == "train"].groupby("label").size().tolist() == [16, 16, 16]
    assert set(clean.frame.loc[clean.frame["split"] == "train", "source"]) <= set(np.flatnonzero(~test))


def test_resized_and_nearest_neighbour_probe(lymph):
    leaky, clean = protocols(lymph)
    small = p3.resized(leaky, 16)
    assert small.images.shape[1:] == (16, 16, 3) and small.size == 16 and p3.resized(small, 16) is small
    identity = augment.AugmentorPipeline(rotate_probability=0, distort_probability=0, zoom_probability=0)
    copies = p3.paper_protocol(lymph, identity, 20, 0.2, 0)  # every copy is its source image again
    found = p3.leakage(copies)
    assert found["test_images_identical_to_a_training_image"] == found["test_images_with_source_in_train"] > 0
    train, test = (np.flatnonzero(copies.frame["split"] == side) for side in ("train", "test"))
    labels = copies.dataset.label_ids
    probe = p3.nearest_neighbour(copies.images[train], labels[train], copies.images[test])
    leaked = copies.frame.loc[test, "source"].isin(copies.frame.loc[train, "source"]).to_numpy()
    assert (probe.argmax(axis=1) == labels[test])[leaked].all()


def test_leakage_gap_is_the_accuracy_difference(lymph):
    leaky, clean = protocols(lymph)
    _, y_leaky = leaky.arrays("test")
    _, y_clean = clean.arrays("test")
    perfect = [experiment.TrainedSeed(0, np.eye(3)[y_leaky], {}, {})]
    wrong = [experiment.TrainedSeed(0, np.eye(3)[(y_clean + 1) % 3], {}, {})]
    gap = p3.leakage_gap(leaky, perfect, clean, wrong, n_boot=100)
    assert gap["difference"] == 1.0 and gap["difference_ci_low"] == gap["difference_ci_high"] == 1.0


def test_dihedral_gives_one_of_the_eight_symmetries():
    import tensorflow as tf

    images = np.random.default_rng(0).random((16, 5, 5, 3)).astype(np.float32)
    out = augment.dihedral(0)(tf.constant(images)).numpy()
    for source, result in zip(images, out):
        views = [np.rot90(source, k) for k in range(4)]
        views += [view[:, ::-1] for view in views]
        assert any(np.array_equal(result, view) for view in views)


def test_cell_augmentation_choices():
    assert augment.cell_augmentation("dihedral") is augment.dihedral and augment.cell_augmentation("none") is None
    assert augment.describe_cell_augmentation("rotation") == augment.describe_orientation()
    assert augment.describe_cell_augmentation("none") is None
    with pytest.raises(ParameterError, match="augmentation"):
        augment.cell_augmentation("mixup")


def test_model_selection_text():
    assert "ties: lowest validation loss" in experiment.model_selection(True)
    assert experiment.model_selection(False) == "last epoch"


def test_table1_layout(lymph):
    leaky, clean = protocols(lymph)
    def assessed(prepared, probabilities):
        trained = [experiment.TrainedSeed(0, probabilities, {}, {})]
        return experiment.Assessed(None, experiment.evaluate(prepared, trained, 10), trained, prepared)

    table = p3.per_class_beside_paper({
        "paper protocol": assessed(leaky, np.eye(3)[leaky.arrays("test")[1]]),
        "leakage-free": assessed(clean, np.full((len(clean.arrays("test")[1]), 3), 1 / 3))})
    assert table["class"].tolist() == ["CLL", "FL", "MCL"] and table["paper protocol recall"].tolist() == [1, 1, 1]
    assert table["paper support"].sum() == 900


@pytest.fixture(scope="module")
def cases_study(tmp_path_factory):
    """A 3-class synthetic set whose images come in cases of 4 (one class each), with both levels' folds."""
    folder = tmp_path_factory.mktemp("cases")
    data = load_dataset("synthetic", cache_dir=folder, n_classes=3, per_class=16, size=32)
    frame = data.frame.assign(group=[f"{label}/case{i % 16 // 4}" for i, label in enumerate(data.frame["label"])])
    data = replace(data, frame=frame)
    return p3.study(Run("t", folder / "out", {}), data, 4, 0)


def test_study_folds_keep_cases_together_at_case_level_only(cases_study):
    frame = cases_study.frame
    assert (frame.groupby("case_group")["fold_case"].nunique() == 1).all()
    assert (frame.groupby("case_group")["fold_image"].nunique() > 1).any()
    assert cases_study.splits["case"].level == "case" and cases_study.splits["case"].folds == 4
    assert cases_study.images.shape == (48, 32, 32, 3) and cases_study.groups("image") is None
    for train, test in cases_study.folds("case"):
        assert not set(frame["case_group"].iloc[train]) & set(frame["case_group"].iloc[test])
    assert (cases_study.frame.pipe(lambda f: f.groupby("fold_case")["label"].nunique()) == 3).all()
    counts = p3.fold_counts(cases_study)
    assert counts.groupby("level")["images"].sum().tolist() == [48, 48]
    assert p3.case_overlap(cases_study, "case")["test_images_with_case_in_train"] == 0
    assert p3.case_overlap(cases_study, "image")["share_with_case_in_train"] > 0.5


def test_features_cv_probe_ladder_and_verdict(cases_study):
    labels = cases_study.labels
    features = np.eye(3)[labels] + np.random.default_rng(0).normal(0, 0.1, (48, 3))
    feature_cv = {level: p3.imagenet_cross_validation(cases_study, level, features, [0.1, 1.0], 0)
                  for level in p3.LEVELS}
    assert feature_cv["case"].predictions["index"].tolist() == list(range(48))
    assert evaluation.cv_summary(feature_cv["case"].predictions)["accuracy"] == 1.0
    assert len(feature_cv["case"].selection("lr").tried) == 4 * 2
    probes = {level: p3.probe_cross_validation(cases_study, level) for level in p3.LEVELS}
    correct = (feature_cv["case"].predictions["true"] == feature_cv["case"].predictions["predicted"]).to_numpy()
    perfect = tiles.TileCV(feature_cv["case"].predictions, [])
    paper = p3.PaperRung(None, tiles.TileCV(probes["image"], []), probes["image"], {"test_images": 48})
    rungs = p3.ladder("set", paper, {"case": perfect, "image": perfect}, probes, feature_cv, "efficientnet_lite0")
    assert [r.order for r in rungs] == [0, 0, 1, 1, 1, 2, 2, 2] and rungs[0].level == "augmented"
    text = p3.verdict(rungs, "efficientnet_lite0", synthetic=True)
    assert "99.56%" in text and "case-level CV 100.0%" in text and "SYNTHETIC" in text
    difference = p3.accuracy_difference(correct, np.zeros(10), n_boot=50)
    assert difference["difference"] == 1.0 and difference["difference_ci_low"] == 1.0


def test_paper_network_runs_only_with_a_backbone(tmp_path):
    assert p3.paper_network(None, None, {"backbone": None}) is None
    assert "63% training accuracy" in p3.paper_network_summary(None)
    data = load_dataset("synthetic", cache_dir=tmp_path, n_classes=3, per_class=8, size=32)
    params = {"backbone": "vgg16", "weights": None, "seed": 0, "test_fraction": 0.25, "augment_size": 32,
              "image_size": 32, "per_class": 12, "backbone_seeds": [0], "epochs": 1, "batch_size": 8,
              "learning_rate": 1e-4, "n_boot": 20}
    found = p3.paper_network(Run("t", tmp_path / "out", params), data, params)
    assert set(found["network"]) == {"paper protocol", "case-level split"}
    assert found["network"]["paper protocol"].row.leaky and not found["network"]["case-level split"].row.leaky
    assert "paper protocol minus case-level split" in p3.paper_network_summary(found)


# ------------------------------------------------------------------ P2


def write_noise(path, rng):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(path)


def test_cnmc_split_is_by_subject(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "cnmc2019" / "C-NMC_training_data"
    for s in range(6):
        for label, subject in (("all", str(10 + s)), ("hem", f"H{s}")):
            for image in range(3):
                write_noise(root / f"fold_{s % 3}" / label / f"UID_{subject}_{image}_1_{label}.bmp", rng)
    run = Run("21_p2_cnmc_transfer", tmp_path / "out", {"data_dir": str(tmp_path)})
    data = p2.task(load_dataset("cnmc2019", tmp_path))
    assert data.stand_in is None and data.frame["group"].nunique() == 12
    prepared = experiment.prepare(run, data, [0.5, 0.25, 0.25], 0, 8)
    assert (prepared.frame.groupby("subject")["split"].nunique() == 1).all()
    assert set(prepared.frame["split"]) == {"train", "val", "test"}


def test_stand_in_task_majority_and_table2(tmp_path):
    data = p2.task(load_dataset("synthetic", cache_dir=tmp_path, n_duplicates=2))
    assert data.classes == ["hem", "all"] and "stand-in for C-NMC 2019" in data.display_name
    assert data.counts().tolist() == [26, 78]
    frame = pd.DataFrame({"path": list("abcdef"), "label": ["all", "all", "hem", "all", "hem", "all"],
                          "group": list("abcdef"), "split": ["train"] * 3 + ["test"] * 3})
    prepared = experiment.Prepared(Dataset("t", ["hem", "all"], frame, None, "t"), frame,
                                   np.zeros((6, 2, 2, 3), np.uint8), 2, {})
    assert p2.majority_accuracy(prepared) == pytest.approx(2 / 3)
    y = prepared.arrays("test")[1]
    trained = [experiment.TrainedSeed(0, np.eye(2)[y], {}, {})]
    assessed = experiment.assess(Run("t", tmp_path / "out", {}), "vgg16", "VGG-16", prepared, trained, 20,
                                 record.Weights("ImageNet"), "VGG-16", 0.9744)
    table = p2.table2({"VGG-16": assessed})
    assert table.loc[0, "accuracy"] == 1.0 and table.loc[0, "paper accuracy"] == 0.9744


# ------------------------------------------------------------------ P5


@pytest.fixture(scope="module")
def marrow(tmp_path_factory):
    folder = tmp_path_factory.mktemp("marrow")
    data = load_dataset("synthetic", cache_dir=folder, n_classes=4, per_class=12, size=32)
    return data, experiment.prepare(Run("t", folder / "out", {}), data, [0.75, 0.25], 0, 32)


def test_stratified_subset_keeps_proportions(marrow):
    data, _ = marrow
    subset = p5.stratified_subset(data, 21, 0)
    assert len(subset.frame) == 21 and sorted(subset.counts().tolist()) == [5, 5, 5, 6]
    assert subset.frame["path"].isin(data.frame["path"]).all() and p5.stratified_subset(data, None, 0) is data


def test_rotated_training_set(marrow):
    _, prepared = marrow
    rotated = p5.rotated_training_set(prepared)
    n_train = int((prepared.frame["split"] == "train").sum())
    assert (rotated.frame["split"] == "train").sum() == 4 * n_train
    assert np.array_equal(rotated.arrays("test")[0], prepared.arrays("test")[0])
    row = rotated.frame.index[(rotated.frame["split"] == "train") & (rotated.frame["rotation"] == 3)][0]
    assert np.array_equal(rotated.images[row], np.rot90(prepared.images[rotated.frame["source"][row]], 3))
    assert np.array_equal(rotated.dataset.label_ids, prepared.dataset.label_ids[rotated.frame["source"]])


def test_feature_layers_and_vgg_substitute():
    assert p5.feature_layer("alexnet", "imagenet", 80) == ("fc6", None)
    assert p5.feature_layer("vgg16", None, 80) == ("fc6", None)
    layer, note = p5.feature_layer("vgg16", "imagenet", 80)
    assert layer == "avgpool" and "224" in note  # at 224 it depends on the Keras file: tests/test_transfer.py
    assert p5.feature_layer("resnet101", None, 80) == ("avgpool", None)
    assert [p5.frozen_layer(b) for b in ("alexnet", "vgg16")] == ["fc7", "avgpool"]
    with pytest.raises(ParameterError, match="224x224"):
        models.vgg16_fc6((80, 80, 3), "imagenet")
    with pytest.raises(ParameterError):
        p5.check_backbones(["alexnet", "inception_v3+resnet18"])


def test_missing_vgg16_top_weights_name_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv("HEMASUITE_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(WeightsError, match="vgg16_weights_tf_dim_ordering_tf_kernels.h5.*\n.*keras-applications/vgg16"):
        models.resolve_top_weights("vgg16", "imagenet")


def test_svm_separates_separable_features_with_grouped_cv(marrow):
    _, prepared = marrow
    rotated = p5.rotated_training_set(prepared)
    labels = rotated.dataset.label_ids
    x = np.eye(4)[labels] * 3 + np.random.default_rng(0).normal(0, 0.3, (len(labels), 4))
    features_set = rotated.__class__(rotated.dataset, rotated.frame, x.astype(np.float32), 4, {})
    [result] = p5.svm(features_set, [0.1, 1.0])
    assert result.training["C"] in (0.1, 1.0) and result.training["cv_accuracy"] == 1.0
    assert result.training["train_accuracy"] == 1.0
    y_test = rotated.arrays("test")[1]
    assert (result.probabilities.argmax(axis=1) == y_test).all() and np.allclose(result.probabilities.sum(1), 1)


def test_svm_record_adds_its_own_time_to_the_feature_extraction_speed(marrow):
    _, prepared = marrow
    rotated = p5.rotated_training_set(prepared)
    x = np.random.default_rng(0).normal(size=(len(rotated.frame), 8)).astype(np.float32)
    features_set = rotated.__class__(rotated.dataset, rotated.frame, x, 8, {})
    without = p5.svm(features_set, [1.0])[0].training
    assert "train_images_per_s" not in without and without["svm_fit_rows_per_s"] > 0
    record = p5.svm(features_set, [1.0], feature_images_per_s=50.0)[0].training
    assert 0 < record["train_images_per_s"] < 50.0 and 0 < record["inference_images_per_s"] < 50.0
    assert record["svm_predict_rows_per_s"] > 0 and record["feature_images_per_s"] == 50.0


def test_alexnet_fine_tuning_freezes_all_but_the_last_layers(one_step):
    head_only = p5.fine_tune_model("alexnet", (32, 32, 3), 5, trainable_layers=0)
    assert [w.name for w in head_only.trainable_weights] == ["kernel", "bias"]
    deeper = p5.fine_tune_model("alexnet", (32, 32, 3), 5, trainable_layers=2)
    assert {layer.name for layer in deeper.layers if layer.trainable and layer.weights} == {"fc7", "predictions"}
    one_step(lambda: p5.fine_tune_model("alexnet", (32, 32, 3), 3, trainable_layers=2), (32, 32, 3))


def fake_result(model, accuracy, weights="random init"):
    over = {"accuracy": {"mean": accuracy, "sd": 0.0, "n": 2}, "precision_macro": {"mean": 0.5},
            "recall_macro": {"mean": 0.6}}
    row = record.ModelRow(model, model, record.Weights(weights), [], accuracy, 0.0, accuracy - 0.1, accuracy + 0.1, 10)
    return experiment.Assessed(row, {"over_seeds": over}, [], None)


def test_tables_3_4_and_reported_rows():
    extraction = {"inception_v3": fake_result("x", 0.8), "inception_v3+resnet101": fake_result("y", 0.7)}
    tuning = {"alexnet": fake_result("z", 0.6)}
    table = p5.paper_tables(extraction, tuning)
    assert table["model"].tolist() == ["Inception V3", "Inception V3 + ResNet-101", "AlexNet"]
    assert table["paper accuracy (T3)"].tolist() == [0.875, 0.811, 0.71]
    assert table.loc[0, "paper accuracy (T4)"] == 0.8705 and table.loc[2, "paper precision (T4)"] == 0.72
    assert p5.REPORTED["Inception V3, feature extraction + SVM"] == {"accuracy": 0.875} and len(p5.REPORTED) == 10


def test_registry_maps_every_replication_notebook_to_its_paper():
    notebooks = {path.stem for path in (Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    assert set(papers.REGISTRY) <= notebooks and papers.COMPARISON in notebooks
    assert [m.ID for m in papers.REGISTRY.values()] == ["P4", "P1", "P3", "P2", "P5", "P3"]
    assert papers.paper_id("22_p5_bone_marrow") == "P5" and papers.paper_id("00_data_validation") is None
    with pytest.raises(ParameterError, match="not a replication notebook"):
        papers.for_notebook("00_data_validation")
    for stem, module in papers.REGISTRY.items():
        assert module.NOTEBOOK == stem and stem.split("_", 1)[1] == module.__name__.rsplit(".", 1)[1]
        assert all(0 < values["accuracy"] <= 1 for values in module.REPORTED.values())


# ------------------------------------------------------------------ paper-profile models not in test_models


def test_patch_cnn_takes_a_step(one_step):
    one_step(lambda: models.patch_cnn((32, 32, 3), 3, filters=(8, 16)), (32, 32, 3))


def test_concatenated_inception_resnet_takes_a_step_with_its_last_layers(one_step):
    shape = (75, 75, 3)
    model = one_step(lambda: models.concatenated_classifier(["inception_v3", "resnet101"], shape, 3,
                                                            trainable_layers=5), shape, run_eagerly=True).model
    assert model.get_layer("concatenated").output.shape[-1] == 2048 + 2048
    assert 2 < len(model.trainable_weights) < 20 < len(model.weights)  # last layers of each backbone + new layer


# ------------------------------------------------------------------ P1: selection on validation, repeated splits

P1_PARAMS = {"profile": "smoke", "image_size": None, "stem_stride": None, "stem_kernel": None, "augmentation": None,
             "candidates": [{"image_size": 16, "stem_stride": 1, "stem_kernel": 3, "augmentation": "dihedral"},
                            {"image_size": 32, "stem_stride": 2, "stem_kernel": 3, "augmentation": "none"}],
             "test_time_augmentation": "select", "epochs": 1, "batch_size": 16, "learning_rate": 0.01,
             "select_best_epoch": True, "seeds": [0, 1], "split_seeds": [3, 4], "fractions": [0.6, 0.2, 0.2],
             "denoise": "median3"}


def test_p1_configurations_expand_test_time_augmentation_and_refuse_unknown_settings():
    from hemasuite.papers import p1_deep_cnn as p1

    found = p1.configurations(P1_PARAMS)
    assert list(found) == ["16 px, no stem, dihedral", "16 px, no stem, dihedral, TTA",
                           "32 px, 3x3 stride-2 stem, none", "32 px, 3x3 stride-2 stem, none, TTA"]
    assert p1.configurations({**P1_PARAMS, "test_time_augmentation": False}).keys() == {
        "16 px, no stem, dihedral", "32 px, 3x3 stride-2 stem, none"}
    with pytest.raises(ParameterError, match="unknown parameter"):
        p1.configurations({**P1_PARAMS, "candidates": [{**P1_PARAMS["candidates"][0], "size": 3}]})
    with pytest.raises(ParameterError, match="lacks"):
        p1.configurations({**P1_PARAMS, "candidates": [{"image_size": 16}]})
    with pytest.raises(ParameterError, match="set either candidates"):
        p1.configurations({**P1_PARAMS, "candidates": None})
    single = {**P1_PARAMS, "candidates": None, "image_size": 16, "stem_stride": 1, "stem_kernel": 3,
              "augmentation": "rotation", "test_time_augmentation": True}
    assert list(p1.configurations(single)) == ["16 px, no stem, rotation, TTA"]
    with pytest.raises(ParameterError, match="image_size=64 would be ignored"):  # -p image_size=64 under candidates
        p1.configurations({**P1_PARAMS, "image_size": 64})


def test_median_denoise_in_chunks_is_the_whole_filter():
    from scipy import ndimage

    from hemasuite import preprocess

    images = np.random.default_rng(0).integers(0, 255, (9, 12, 12, 3), dtype=np.uint8)
    assert np.array_equal(preprocess.median_denoise(images),
                          ndimage.median_filter(images, size=(1, 3, 3, 1), mode="reflect"))


def test_p1_selects_on_validation_without_reading_the_test_part(tmp_path, monkeypatch):
    from hemasuite import evaluation, validation
    from hemasuite.papers import p1_deep_cnn as p1

    data = load_dataset("synthetic", cache_dir=tmp_path / "data", per_class=10, size=32)
    run = Run("t_p1", tmp_path / "out", {})
    images = p1.image_bank(data, "median3")
    splits = p1.make_splits(run, data, validation.validate_dataset(data), P1_PARAMS, images)
    assert [s.split.seed for s in splits] == [3, 4] and splits[0].size == 16 and splits[0].split.manifest_sha256
    read = []
    original = experiment.Prepared.arrays
    monkeypatch.setattr(experiment.Prepared, "arrays", lambda self, part: read.append(part) or original(self, part))
    selection = p1.Selection(lambda size: evaluation.shared_images(splits[0], images(size), size), P1_PARAMS, 0)
    assert "test" not in read and "val" in read
    table = selection.table()
    assert len(table) == 4 and table["validation_score"].between(0, 1).all() and table["selected"].sum() == 1
    assert selection.chosen == table.loc[table["validation_score"].idxmax(), "candidate"]
    assert len(selection.trained) == 2  # one training per candidate; TTA only re-scores it
    chosen = selection.to_record(3)
    assert chosen.chosen == [selection.chosen] and len(chosen.tried) == 4 and "split seed 3" in chosen.on
    size = selection.settings["image_size"]
    reused = selection.trained[tuple(selection.settings[k] for k in p1.SETTINGS)].model
    chosen = [evaluation.shared_images(s, images(size), size) for s in splits]
    runs = p1.repeated_runs(chosen, selection, [0, 1], P1_PARAMS)
    assert [(r.split_seed, r.trained.seed) for r in runs] == [(3, 0), (3, 1), (4, 0), (4, 1)]
    assert runs[0].trained.model is reused and all(0 <= r.train_accuracy <= 1 for r in runs)
    table2 = p1.table2(runs)
    assert list(table2["class"])[:4] == data.classes
    row = evaluation.model_row(run, "cnn", "deep CNN", runs, record.Weights("random init"), "P1 deep CNN", "deep CNN",
                               0.98, n_boot=50)
    summary = p1.table2_summary(runs, row)
    assert summary.loc[0, "paper"] == pytest.approx(312 / 324) and summary.loc[1, "paper"] == 0.98
    data = types.SimpleNamespace(own=False, synthetic=True, display_name="SYNTHETIC")
    text = p1.verdict(row, evaluation.pooled(runs, 50), evaluation.majority_row(run, splits, "duplicate"), data)
    assert "exact 95% CI" in text and "96.3%" in text
    assert any(d.startswith("paper figure: the paper's 98% is the mean") for d in
               p1.deviations(P1_PARAMS, selection.settings, "duplicate"))


def test_the_ladder_says_why_its_field_rung_is_not_p1s_final_runs(tmp_path, monkeypatch):
    import yaml

    from hemasuite import config, parameters
    from hemasuite.papers import p1_deep_cnn as p1

    ladder = {**parameters.notebook_defaults(config.repo_root() / "notebooks" / "02_leakage_ladder.ipynb"),
              **config.notebook_parameters("cpu", "02_leakage_ladder")}
    reuse = p1.ladder_reuse(ladder)["field_rung"]
    assert reuse["reused"] is False and reuse["why"].startswith("trained here: the protocols differ in")
    assert reuse["differences"]["fractions"] == {"02": [0.8, 0.2], p1.NOTEBOOK: [0.8, 0.1, 0.1]}
    assert {"denoise", "epoch", "chosen_on_validation"} <= set(reuse["differences"])
    same = {key: ladder[key] for key in p1.LADDER_SETTINGS}  # P1's runs under the ladder's protocol
    profiles = {"cpu": {"notebooks": {p1.NOTEBOOK: {**same, "candidates": None, "denoise": "none",
                                                    "select_best_epoch": False}}}}
    (tmp_path / "profiles.yaml").write_text(yaml.safe_dump(profiles))
    monkeypatch.setenv(config.PROFILES_ENV, str(tmp_path / "profiles.yaml"))
    assert p1.ladder_reuse(ladder)["field_rung"] == {
        "could_reuse": f"{p1.NOTEBOOK}: the chosen configuration on every split", "reused": False, "differences": {},
        "why": "trained here, under the same protocol"}


def test_p1_records_the_selection_run_it_reuses():
    from hemasuite.papers import p1_deep_cnn as p1

    [reuse] = p1.reuses({"split_seeds": [3, 4], "seeds": [7, 8]})
    assert reuse["result"] == "split seed 3, training seed 7" and "trained during the selection" in reuse["reuses"]
