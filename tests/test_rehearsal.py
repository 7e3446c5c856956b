"""The rehearsal of the paper profile: its cuts (rules on parameter names, images, folds), its data root, its record."""

import json

import numpy as np
import pandas as pd
import pytest

from hemasuite import config, evaluation, record, rehearsal
from hemasuite.datasets import load_dataset
from hemasuite.errors import ParameterError
from hemasuite.tools import rehearsal_data, runner


@pytest.fixture
def rehearsing(monkeypatch):
    monkeypatch.setenv(rehearsal.ENV, "1")
    monkeypatch.setattr(rehearsal, "_runtime_cuts", [])


def test_cuts_follow_rules_on_names_at_any_depth():
    params = {"epochs": 50, "baseline_epochs": 30, "seeds": [3, 4, 5], "split_seeds": [0, 1, 2], "n_boot": 1000,
              "tile_settings": {"epochs": 30, "tiles_per_epoch": 8192, "batch_size": 64, "eval_stride": 48,
                                "stem_stride": 1}, "imagenet_stride": 48, "imagenet_tile": 224,
              "per_class": 1200, "image_size": 224, "batch_size": 24, "learning_rate": 1e-4, "n_folds": 5,
              "c_grid": [0.1, 1.0], "weights": "imagenet", "select_best_epoch": True}
    cut, cuts = rehearsal.cut_parameters(params)
    assert cut["epochs"] == cut["baseline_epochs"] == cut["tile_settings"]["epochs"] == 1
    assert cut["seeds"] == [3] and cut["split_seeds"] == [0] and cut["n_boot"] == rehearsal.N_BOOT
    assert cut["tile_settings"]["tiles_per_epoch"] == 28 and cut["per_class"] == 4
    for kept in ("image_size", "batch_size", "learning_rate", "n_folds", "c_grid", "weights", "select_best_epoch"):
        assert cut[kept] == params[kept]
    assert cut["tile_settings"]["batch_size"] == 64 and cut["tile_settings"]["stem_stride"] == 1
    assert cut["tile_settings"]["eval_stride"] == cut["imagenet_stride"] == 48 * rehearsal.GRID_SCALE
    assert cut["imagenet_tile"] == 224
    assert "tile_settings.epochs: 30 -> 1" in cuts and "per_class: 1200 -> 4" in cuts
    assert not any(c.startswith(("image_size", "batch_size")) for c in cuts)


@pytest.mark.parametrize("first_alternative", [False, True])
def test_every_paper_parameter_after_its_cut_is_still_valid(first_alternative):
    from hemasuite import parameters
    from hemasuite.tools.runner import discover

    for path in discover():
        cut, _ = rehearsal.cut_parameters(config.notebook_parameters("paper", path.stem), first_alternative)
        parameters.check(cut, parameters.notebook_defaults(path), path.stem)


def test_subsample_keeps_whole_groups_a_few_images_per_class(rehearsing):
    frame = pd.DataFrame({"path": [f"{i}.png" for i in range(60)], "label": ["a"] * 30 + ["b"] * 30,
                          "group": [f"g{i // 2}" for i in range(60)]})
    cut = rehearsal.subsample(frame, "toy")
    assert cut["label"].value_counts().to_dict() == {"a": rehearsal.IMAGES_PER_CLASS, "b": rehearsal.IMAGES_PER_CLASS}
    assert cut.groupby("group").size().max() <= rehearsal.IMAGES_PER_GROUP
    assert cut["group"].nunique() == 2 * rehearsal.IMAGES_PER_CLASS // rehearsal.IMAGES_PER_GROUP
    assert any(f"toy cut from 60 to {2 * rehearsal.IMAGES_PER_CLASS}" in c for c in rehearsal.record([]))


def test_outside_a_rehearsal_nothing_is_cut(monkeypatch):
    monkeypatch.delenv(rehearsal.ENV, raising=False)
    frame = pd.DataFrame({"path": ["x"], "label": ["a"], "group": ["x"]})
    assert rehearsal.subsample(frame, "toy") is frame
    assert rehearsal.first_resamples([1, 2, 3]) == [1, 2, 3]


def test_cross_validation_runs_the_first_fold_only(rehearsing):
    labels = np.array([0, 1] * 6)
    folds = [(np.setdiff1d(np.arange(12), part), part) for part in np.array_split(np.arange(12), 3)]
    calls = []

    def fit_predict(fold, train, test):
        calls.append(fold)
        return np.tile([0.5, 0.5], (len(test), 1))

    predictions = evaluation.cross_validate(labels, folds, ["a", "b"], fit_predict)
    assert calls == [0] and len(predictions) == 4
    assert "cross-validation folds: the first of 3 only" in rehearsal.record([])


def test_a_rehearsal_records_its_cuts_and_only_a_rehearsal_has_cuts(tmp_path, monkeypatch):
    from hemasuite import training

    run = record.Run("00_x", tmp_path, {"profile": "paper"})
    run.rehearsal_cuts = ["epochs: 50 -> 1"]
    monkeypatch.setattr(training, "_fits", [])
    assert run.finish().cuts == ["epochs: 50 -> 1"]  # it trained nothing: no word on devices
    monkeypatch.setattr(training, "_fits", [{"strategy": "MirroredStrategy", "replicas": 2,
                                             "policy": "mixed_float16", "global_batch_size": 32}])
    results = run.finish()
    assert results.rehearsal and results.cuts[0] == "epochs: 50 -> 1"
    assert any("mixed_float16" in c for c in results.cuts) and any("2 replicas" in c for c in results.cuts)
    data = json.loads((tmp_path / "00_x" / "results.json").read_text())
    data["cuts"] = []
    with pytest.raises(record.RecordError, match="records its cuts"):
        record.from_dict(record.Results, data)


def test_rehearsal_tables_and_figures_say_so(tmp_path):
    import matplotlib.pyplot as plt

    run = record.Run("00_x", tmp_path, {"profile": "paper"})
    run.rehearsal_cuts = []
    run.save_table(pd.DataFrame({"a": [1]}), "t")
    assert (run.dir / "tables" / "t.md").read_text().startswith(f"**{rehearsal.BANNER}**")
    assert record.REHEARSAL_COLUMN in pd.read_csv(run.dir / "tables" / "t.csv")
    figure = plt.figure()
    run.save_figure(figure, "f")
    assert any(text.get_text() == rehearsal.BANNER for text in figure.texts)
    plt.close(figure)


def test_data_root_links_real_datasets_and_generates_the_others(tmp_path):
    real = tmp_path / "real"
    (real / "taleqani_all").mkdir(parents=True)
    root = rehearsal_data.data_root(tmp_path / "root", real)
    assert (root / "taleqani_all").is_symlink() and (root / "taleqani_all").resolve() == (real / "taleqani_all")
    cnmc = load_dataset("cnmc2019", root)
    assert cnmc.info["subjects"] == 2 * rehearsal_data.SUBJECTS and set(cnmc.frame["subset"]) >= {"fold_0", "fold_1"}
    iicbu = load_dataset("iicbu_lymphoma", root)
    assert iicbu.frame["group"].nunique() == 3 * rehearsal_data.SUBJECTS
    (real / "cnmc2019" / "C-NMC_training_data").mkdir(parents=True)  # a real C-NMC folder replaces the generated one
    rehearsal_data.data_root(tmp_path / "root", real)
    assert (root / "cnmc2019").is_symlink()


def test_taleqani_layout_is_generated_when_absent(tmp_path):
    (tmp_path / "empty").mkdir()
    data = load_dataset("taleqani_all", rehearsal_data.data_root(tmp_path / "root", tmp_path / "empty"))
    assert list(data.counts().index) == ["Benign", "Early", "Pre", "Pro"] and data.counts().min() > 0


def test_rehearse_refuses_another_profile_a_missing_data_dir_and_a_rehearsal_env_outside_paper(start_run, monkeypatch,
                                                                                                 tmp_path):
    with pytest.raises(ParameterError, match="--rehearse rehearses the 'paper' profile, not 'cpu'"):
        runner.run_notebooks("cpu", rehearse=True)
    with pytest.raises(ParameterError, match="--data-dir .*typo does not exist"):
        runner.run_notebooks("paper", rehearse=True, data_dir=str(tmp_path / "typo"), reports=tmp_path / "reports")
    assert runner.parse_runner_arguments(["--rehearse"]).profile is None  # main() reads that as paper
    with pytest.raises(ParameterError, match="--eager applies to a rehearsal only"):
        runner.run_notebooks("smoke", eager=True)
    with pytest.raises(ParameterError, match="--quick applies to a rehearsal only"):
        runner.run_notebooks("smoke", quick=True)
    monkeypatch.setenv(rehearsal.ENV, "1")
    with pytest.raises(ParameterError, match="rehearses the 'paper' profile, not 'smoke'"):
        start_run("00_rehearsal_check", profile="smoke", data_dir=None, output_dir=None, seed=0)


MIRRORED_ODD_BATCH = """
import numpy as np
from hemasuite import models, pipeline, rehearsal, training
rehearsal.configure_devices()
images = np.random.default_rng(0).integers(0, 255, (55, 48, 48, 3), dtype=np.uint8)
labels = np.arange(55) % 3
train = pipeline.make_dataset(images, labels, 3, 64, training=True)
val = pipeline.make_dataset(images, labels, 3, 64, training=False)
result = training.train(lambda: models.patch_cnn((48, 48, 3), 3, filters=(4, 8)), train, 55, 1,
                        lambda: training.adam(1e-3, 1)(1), val_data=val)
print(result.strategy, result.replicas, result.policy, training.distribution_record())
"""


@pytest.mark.parametrize("mode", ["1", rehearsal.EAGER])
def test_two_replicas_train_and_validate_on_batches_that_do_not_split_evenly(mode):
    """A last batch of 55 on 2 replicas made Keras fail ("Inputs to operation AddN ... must have the same size");
    the rehearsal found it. In a fresh process: the CPU is split into logical devices before TensorFlow starts.
    Compiled (make rehearse) and eagerly (make test's rehearsal)."""
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", MIRRORED_ODD_BATCH], capture_output=True, text=True, timeout=300,
                          env={**os.environ, rehearsal.ENV: mode, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "MirroredStrategy 2 mixed_float16" in done.stdout and "'global_batch_sizes': [64]" in done.stdout


def test_eager_is_a_kind_of_rehearsal_and_says_so_in_its_cuts(monkeypatch):
    distribution = {"strategy": "MirroredStrategy", "replicas": 2, "precision_policy": "mixed_float16"}
    monkeypatch.setenv(rehearsal.ENV, rehearsal.EAGER)
    assert rehearsal.active() and rehearsal.eager()
    assert rehearsal.GRAPHS[True] in rehearsal.record([], distribution)
    monkeypatch.setenv(rehearsal.ENV, "1")
    assert rehearsal.active() and not rehearsal.eager()
    assert rehearsal.GRAPHS[False] in rehearsal.record([], distribution)
    monkeypatch.setenv(rehearsal.ENV, rehearsal.QUICK)
    assert rehearsal.active() and rehearsal.eager() and rehearsal.quick()
    assert rehearsal.GRAPHS[True] in rehearsal.record([], distribution)
    monkeypatch.setenv(rehearsal.ENV, "0")
    assert not rehearsal.active() and not rehearsal.eager() and not rehearsal.quick()


def test_a_quick_rehearsal_keeps_the_first_of_each_list_of_alternatives(monkeypatch):
    params = {"backbones": ["alexnet", "vgg16"], "baselines": ["resnet50", "densenet121"],
              "variants": ["none", "greyscale"], "image_level_variants": ["none", "greyscale"],
              "tile_candidates": {"tile 96": {"tile": 96}, "tile 128": {"tile": 128}},
              "c_grid": [0.1, 1.0], "pretrained_sizes": [224, 256], "seeds": [0, 1]}
    monkeypatch.setenv(rehearsal.ENV, "1")
    assert rehearsal.cut_parameters(params)[0] | {"seeds": [0, 1]} == params  # a full rehearsal keeps them all
    monkeypatch.setenv(rehearsal.ENV, rehearsal.QUICK)
    cut, cuts = rehearsal.cut_parameters(params)
    assert cut["backbones"] == ["alexnet"] and cut["baselines"] == ["resnet50"]
    assert cut["variants"] == cut["image_level_variants"] == ["none"]
    assert cut["tile_candidates"] == {"tile 96": {"tile": 96}}
    assert cut["c_grid"] == [0.1, 1.0] and cut["pretrained_sizes"] == [224, 256] and cut["seeds"] == [0]
    assert "backbones: ['alexnet', 'vgg16'] -> ['alexnet']" in cuts


def test_a_compiled_rehearsal_builds_each_architecture_s_graph_once(monkeypatch):
    import keras

    def network(width):
        inputs = keras.Input((8,))
        return keras.Model(inputs, keras.layers.Dense(width)(inputs))

    monkeypatch.setattr(rehearsal, "_built", set())
    monkeypatch.setattr(rehearsal, "_runtime_cuts", [])
    monkeypatch.delenv(rehearsal.ENV, raising=False)
    assert not rehearsal.runs_eagerly(network(2), "fit") and not rehearsal._built  # outside a rehearsal: compiled
    monkeypatch.setenv(rehearsal.ENV, "1")
    assert not rehearsal.runs_eagerly(network(2), "fit")  # first of its kind: compiled
    assert not rehearsal.runs_eagerly(network(2), "predict")  # another step: its own graph
    assert not rehearsal.runs_eagerly(network(3), "fit")  # another architecture
    assert not rehearsal._runtime_cuts
    assert rehearsal.runs_eagerly(network(2), "fit")  # the same network again: eager, and recorded
    assert rehearsal._runtime_cuts == [rehearsal.REPEATED_GRAPH]
    monkeypatch.setenv(rehearsal.ENV, rehearsal.EAGER)
    assert rehearsal.runs_eagerly(network(4), "fit")  # an eager rehearsal: always


def test_divisible_batches_cut_each_batch_to_a_multiple_of_the_replicas():
    import tensorflow as tf

    from hemasuite import training

    data = tf.data.Dataset.from_tensor_slices((tf.range(11), tf.range(11))).batch(4)  # 4, 4, 3
    sizes = [len(x) for x, _ in training.divisible_batches(data, 2)]
    assert sizes == [4, 4, 2]
    single = tf.data.Dataset.from_tensor_slices((tf.range(5), tf.range(5))).batch(4)  # 4, 1
    batches = [x.numpy().tolist() for x, _ in training.divisible_batches(single, 2)]
    assert batches == [[0, 1, 2, 3], [4, 4]]
    assert training.divisible_batches(data, 2).cardinality() == 3
    assert training.divisible_batches(data, 1) is data


def test_absent_imagenet_file_is_random_init_in_a_rehearsal_and_an_error_otherwise(monkeypatch, tmp_path):
    from hemasuite.errors import WeightsError
    from hemasuite.models import pretrained

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.delenv(pretrained.WEIGHTS_ENV, raising=False)
    monkeypatch.delenv(rehearsal.ENV, raising=False)
    with pytest.raises(WeightsError, match="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"):
        pretrained.weights_source("resnet50", "imagenet")
    monkeypatch.setenv(rehearsal.ENV, "1")
    assert pretrained.weights_source("resnet50", "imagenet") == rehearsal.ABSENT_WEIGHTS
    assert pretrained.resolve_weights("resnet50", "imagenet") is None
    assert pretrained.build_backbone("resnet50", (32, 32, 3), "imagenet").count_params() > 0


def test_a_dataset_absent_from_the_data_root_gives_way_to_its_stand_in(tmp_path, capsys):
    from hemasuite.datasets import choose

    (tmp_path / "taleqani_all").mkdir()
    assert choose("cnmc2019", "taleqani_all", tmp_path) == "taleqani_all"
    assert "cnmc2019 is not in the data folder" in capsys.readouterr().out
    (tmp_path / "cnmc2019").mkdir()
    assert choose("cnmc2019", "taleqani_all", tmp_path) == "cnmc2019"
    assert choose("bone_marrow_subtypes", None, tmp_path) == "bone_marrow_subtypes"  # no stand-in: its loader says why


def test_paper_profile_uses_the_papers_own_datasets_with_stand_ins():
    p2 = config.notebook_parameters("paper", "21_p2_cnmc_transfer")
    p5 = config.notebook_parameters("paper", "22_p5_bone_marrow")
    assert (p2["dataset"], p2["stand_in"]) == ("cnmc2019", "taleqani_all")
    assert (p5["dataset"], p5["stand_in"]) == ("bone_marrow_subtypes", "taleqani_all")
    assert "stand_in" not in config.notebook_parameters("cpu", "21_p2_cnmc_transfer")


def test_a_weights_record_never_calls_an_absent_file_imagenet():
    assert record.Weights("ImageNet", rehearsal.ABSENT_WEIGHTS).label == rehearsal.ABSENT_WEIGHTS
    assert record.Weights("ImageNet", "ImageNet (Keras file x.h5)").label == "ImageNet"


def test_recorded_cuts_are_what_ran_against_the_paper_profile():
    assert rehearsal.differences({"epochs": 50, "seeds": [0, 1], "image_size": 224},
                                 {"epochs": 3, "seeds": [0], "image_size": 224, "output_dir": "x"}) == \
        ["epochs: 50 -> 3", "seeds: [0, 1] -> [0]"]


def test_a_generated_folder_is_made_again_when_the_generator_changed(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    root = rehearsal_data.data_root(tmp_path / "root", tmp_path / "empty")
    assert len(load_dataset("cnmc2019", root).frame) == 2 * rehearsal_data.SUBJECTS * rehearsal_data.CELLS
    monkeypatch.setattr(rehearsal_data, "SUBJECTS", rehearsal_data.SUBJECTS + 1)
    rehearsal_data.data_root(tmp_path / "root", tmp_path / "empty")
    assert len(load_dataset("cnmc2019", root).frame) == 2 * rehearsal_data.SUBJECTS * rehearsal_data.CELLS
