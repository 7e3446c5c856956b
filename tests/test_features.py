"""Frozen-backbone features are computed once: a rerun loads them and never runs the backbone."""

import os
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hemasuite import experiment, features, training
from hemasuite.datasets import Dataset
from hemasuite.experiment import Prepared


@pytest.fixture
def images_and_paths(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    paths = []
    for i, image in enumerate(images):
        path = tmp_path / "data" / f"img_{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(image).save(path)
        paths.append(str(path))
    return images, paths


def tiny_extractor():
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))


@pytest.fixture
def counted(monkeypatch):
    """Counts of builds and of predict passes (every backbone run goes through training.predict)."""
    calls = {"build": 0, "predict": 0}
    real_predict = training.predict

    def predict(model, data):
        calls["predict"] += 1
        return real_predict(model, data)

    def build():
        calls["build"] += 1
        return tiny_extractor()

    monkeypatch.setattr(training, "predict", predict)
    return calls, build


def test_second_call_loads_from_disk_without_running_the_backbone(tmp_path, images_and_paths, counted):
    images, paths = images_and_paths
    calls, build = counted
    first = features.FeatureCache("tiny_avgpool", build, 32, cache_dir=tmp_path / "cache")(images, paths)
    assert calls == {"build": 1, "predict": 1} and first.shape == (6, 4) and first.dtype == np.float32
    rerun = features.FeatureCache("tiny_avgpool", build, 32, cache_dir=tmp_path / "cache")
    again = rerun(images, paths)
    assert calls == {"build": 1, "predict": 1}, "the rerun must not build or run the backbone"
    assert rerun.hits == 1 and rerun.misses == 0 and np.array_equal(first, again)
    assert len(list((tmp_path / "cache").glob("features_tiny_avgpool_*.npy"))) == 1


def test_extraction_speed_is_kept_beside_the_features(tmp_path, images_and_paths, counted):
    images, paths = images_and_paths
    _, build = counted
    first = features.FeatureCache("tiny_avgpool", build, 32, cache_dir=tmp_path)
    first(images, paths)
    rerun = features.FeatureCache("tiny_avgpool", build, 32, cache_dir=tmp_path)
    rerun(images, paths)
    assert first.images_per_s > 0 and rerun.hits == 1
    assert rerun.images_per_s == round(first.images_per_s, 1), "a cache hit reports the speed measured on the miss"


def test_key_covers_content_variant_weights_and_size(tmp_path, images_and_paths, counted):
    images, paths = images_and_paths
    calls, build = counted
    cache = features.FeatureCache("tiny_avgpool", build, 32, cache_dir=tmp_path / "cache")
    base = cache.path(paths)
    assert cache.path(paths, variant=[0, 1, 2, 3, 0, 0]) != base
    assert cache.path(paths[::-1]) != base
    assert features.FeatureCache("tiny_avgpool", build, 32, seed=1, cache_dir=tmp_path).path(paths).name != base.name
    assert features.FeatureCache("tiny_avgpool", build, 48, cache_dir=tmp_path).path(paths).name != base.name
    assert features.FeatureCache("other", build, 32, cache_dir=tmp_path).path(paths).name != base.name
    weights = tmp_path / "weights.h5"
    weights.write_bytes(b"1")
    with_file = features.FeatureCache("tiny_avgpool", build, 32, weights_file=str(weights), cache_dir=tmp_path)
    named = with_file.path(paths)
    weights.write_bytes(b"22")
    assert with_file.path(paths) != named and "weights.h5" in with_file.weights_identity()
    cache(images, paths)
    stat = os.stat(paths[0])
    os.utime(paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched, the same bytes: a hit
    features.FeatureCache("tiny_avgpool", build, 32, cache_dir=tmp_path / "cache")(images, paths)
    assert calls["predict"] == 1
    Path(paths[0]).write_bytes(Path(paths[0]).read_bytes() + b"\0")  # the file changed: recompute
    features.FeatureCache("tiny_avgpool", build, 32, cache_dir=tmp_path / "cache")(images, paths)
    assert calls["predict"] == 2


def test_random_init_is_the_same_draw_on_every_run(tmp_path, images_and_paths):
    images, paths = images_and_paths
    first, _ = features.layer_features(images, paths, "alexnet", "fc6", seed=3, cache_dir=tmp_path / "a")
    second, record = features.layer_features(images, paths, "alexnet", "fc6", seed=3, cache_dir=tmp_path / "b")
    assert np.allclose(first, second) and record["computed"] and record["weights"] == "random init"
    other, _ = features.layer_features(images, paths, "alexnet", "fc6", seed=4, cache_dir=tmp_path / "b")
    assert not np.allclose(first, other)


def test_concatenated_backbones_stack_cached_parts(tmp_path, images_and_paths):
    images, paths = images_and_paths
    single, _ = features.layer_features(images, paths, "alexnet", "fc7", cache_dir=tmp_path)
    both, record = features.layer_features(images, paths, "alexnet+alexnet", "fc7", cache_dir=tmp_path)
    assert both.shape == (6, 2 * single.shape[1]) and np.array_equal(both[:, :single.shape[1]], single)
    assert [part["computed"] for part in record["parts"]] == [False, False]
    speed = record["parts"][0]["images_per_s"]  # the same cached part twice: each image goes through it twice
    assert speed > 0 and record["images_per_s"] == pytest.approx(speed / 2, abs=0.1)


def test_vgg16_fc6_is_the_4096_unit_layer(tmp_path, images_and_paths):
    images, paths = images_and_paths
    x, record = features.layer_features(images, paths, "vgg16", "fc6", cache_dir=tmp_path)
    assert x.shape == (6, 4096) and record["extractor"] == "vgg16 fc6" and (x >= 0).all()


def test_as_prepared_standardises_on_training_rows_and_head_trains():
    frame = pd.DataFrame({"path": [f"p{i}" for i in range(8)], "label": ["a", "b"] * 4, "group": range(8),
                          "split": ["train"] * 6 + ["test"] * 2})
    dataset = Dataset("toy", ["a", "b"], frame, None, "toy")
    prepared = Prepared(dataset, frame, np.zeros((8, 4, 4, 3), np.uint8), 4, {})
    x = np.random.default_rng(0).normal(5, 3, (8, 10))
    result = features.as_prepared(prepared, x)
    train = result.images[:6]
    assert np.allclose(train.mean(axis=0), 0, atol=1e-5) and np.allclose(train.std(axis=0), 1, atol=1e-3)
    assert result.size == 10 and result.protocol["features"]["standardized_on"] == "training rows"
    runs = experiment.train_seeds(result, lambda: features.softmax_head(10, 2), [0], 1, 4,
                                  training.sgd(0.01), rescale=1.0, verbose=0)
    assert runs[0].probabilities.shape == (2, 2)
