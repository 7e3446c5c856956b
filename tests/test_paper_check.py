"""The paper profile's preflight: networks, image counts, weights sources, the CPU table, the FLOPs estimate."""

import math

import keras
import pandas as pd
import pytest

from hemasuite import config, papers, training
from hemasuite.tools import paper_check

TRAINING_NOTEBOOKS = ["10_p4_sequential_cnn", "11_p1_deep_cnn", "20_p3_densenet201_lymphoma", "21_p2_cnmc_transfer",
                      "22_p5_bone_marrow"]


@pytest.fixture
def no_weight_files(tmp_path, monkeypatch):
    """Weight folders that hold nothing: every ImageNet file is unavailable."""
    monkeypatch.setenv("HEMASUITE_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path / "weights"


def test_every_paper_notebook_that_trains_is_checked():
    # the leakage ladder (02) trains too, at its cpu settings in every profile: it is not a paper's setting to preflight
    assert list(paper_check.NOTEBOOKS) == TRAINING_NOTEBOOKS
    trained = {stem for stem, block in config.profile("paper")["notebooks"].items()
               if stem in papers.REGISTRY and any(key in block for key in ("epochs", "tile_epochs", "cnn_epochs"))}
    assert trained == set(TRAINING_NOTEBOOKS)


def test_parameters_are_the_notebook_cell_then_the_profile():
    params = paper_check.notebook_parameters("11_p1_deep_cnn")
    assert params["image_size"] == 224 and params["epochs"] == 50  # profile
    assert params["batch_size"] == 32 and params["fractions"] == [0.8, 0.1, 0.1]  # parameters cell


def test_documented_sizes_when_the_data_is_absent(tmp_path, monkeypatch):
    monkeypatch.delenv("LEUKEMIA_DATA_DIR", raising=False)
    data, source = paper_check.counted_dataset("iicbu_lymphoma", tmp_path / "absent")
    assert source == "documented sizes" and len(data.frame) == 374 and data.classes == ["CLL", "FL", "MCL"]
    assert paper_check.native_size(data, source) == (312, 417)
    counts = paper_check.split_counts(data.frame, [0.8, 0.2], seed=0)
    assert counts["train"] + counts["test"] == 374 and abs(counts["test"] - 75) <= 2


def test_image_counts_from_the_loader(real_data):
    data, source = paper_check.counted_dataset("taleqani_all", real_data)
    assert source == "data" and len(data.frame) == 3256


def test_workloads_of_the_paper_run(tmp_path, monkeypatch, no_weight_files):
    monkeypatch.delenv("LEUKEMIA_DATA_DIR", raising=False)
    stages = paper_check.stages(data_dir=tmp_path / "absent")
    by_model = {(s.notebook, s.model): s for s in stages}
    p1 = by_model["11_p1_deep_cnn", "deep CNN"]
    counts = paper_check.split_counts(paper_check.class_frame(paper_check.DOCUMENTED["taleqani_all"]["classes"]),
                                      [0.8, 0.1, 0.1], 0)
    assert p1.input_shape == (224, 224, 3) and p1.train_batch == 32
    assert p1.workload.trained == 3 * 50 * counts["train"]
    assert p1.workload.inferred == 3 * (50 * counts["val"] + 8 * counts["test"])  # validation every epoch, TTA x 8
    tile = [s for s in stages if s.model.startswith("tile CNN")]
    assert [s.input_shape for s in tile] == [(96, 96, 3), (128, 128, 3), (128, 128, 3)]  # one per candidate
    assert tile[1].workload.trained == 11 * 30 * 8192 and "11 fits" in tile[1].workload.detail  # 2 x 5 folds + P3's
    lite0 = next(s for s in stages if s.model.startswith("efficientnet_lite0 avgpool features"))
    assert lite0.train_batch is None and lite0.workload.inferred == 374 * 18  # 18 tiles of 224 px per image
    p5 = [s for s in stages if s.notebook == "22_p5_bone_marrow"]
    frozen = [s.model for s in p5 if s.train_batch is None]
    # a+b reuses its parts; without the Keras file of VGG-16's top, pooled block 5 stands in for FC6 (read once)
    assert frozen == ["AlexNet fc6 features (frozen)", "VGG-16 avgpool features (frozen)",
                      "Inception V3 avgpool features (frozen)", "ResNet-101 avgpool features (frozen)",
                      "AlexNet fc7 features (frozen)"]
    small_cnn = next(s for s in p5 if s.model == "small CNN")  # 3 seeds x 20 epochs on the rotated training set
    rotated_train, test = small_cnn.workload.trained // 60, small_cnn.workload.inferred // 3
    assert rotated_train % 4 == 0 and rotated_train // 4 + test == 633
    assert all(s.workload.inferred == rotated_train + test for s in p5 if s.train_batch is None)
    dense = by_model["20_p3_densenet201_lymphoma", "densenet201 + Dense 512, both protocols"]
    assert dense.weights_source == ("unavailable: densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5 "
                                    "(timed with random init)")


def test_weights_source_names_an_available_file(no_weight_files):
    no_weight_files.mkdir()
    (no_weight_files / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5").write_bytes(b"")
    assert paper_check.resolved("resnet50", "imagenet") == (
        "imagenet", "ImageNet (Keras file resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5)")
    assert paper_check.resolved("resnet50", None) == (None, "random init")
    weights, source = paper_check.resolved("vgg16", "imagenet", top=True)
    assert weights is None and source.startswith("unavailable: vgg16_weights_tf_dim_ordering_tf_kernels.h5")


def test_estimated_wall_time():
    work = paper_check.Workload(trained=1000, inferred=300, detail="")
    assert work.seconds(100.0, 30.0) == pytest.approx(20.0)
    assert paper_check.Workload(0, 300, "").seconds(None, 30.0) == pytest.approx(10.0)


def test_forward_flops_of_a_dense_layer():
    inputs = keras.Input(shape=(4,))
    model = keras.Model(inputs, keras.layers.Dense(3, use_bias=False)(inputs))
    assert paper_check.forward_flops(model, (4,)) == 2 * 4 * 3


def test_cpu_check_one_network_per_notebook(tmp_path, no_weight_files):
    """The CPU path of ``make paper-check LIMIT=1``, at a small input side to keep the test short."""
    assert paper_check.main(["--limit", "1", "--steps", "1", "--input-size", "32", "--output", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "paper_check.csv")
    assert table["notebook"].tolist() == TRAINING_NOTEBOOKS
    assert (table["infer img/s"] > 0).all() and (table["train batch"] == 2).all()
    frozen = table["model"].str.endswith("features (frozen)")
    assert (table.loc[~frozen, "train img/s"] > 0).all() and table.loc[frozen, "train img/s"].isna().all()
    assert table["est. wall h"].map(math.isfinite).all() and (table["est. wall h"] > 0).all()
    assert table["weights source"].str.len().gt(0).all()
    assert table["weights source"].str.contains("unavailable: densenet201").any()
    assert set(table["policy"]) <= {training.precision_policy(), "float32"}
    assert "NOT the paper's" in (tmp_path / "paper_check.md").read_text()
