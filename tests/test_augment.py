"""Augmentation families: seeded, shape- and dtype-preserving, train-only bookkeeping right."""

import json

import numpy as np
import pytest

from hemasuite import augment
from hemasuite.errors import ParameterError


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, (6, 24, 24, 3), dtype=np.uint8)


def test_augmentor_deterministic_per_seed(images):
    def run(seed):
        pipeline = augment.AugmentorPipeline(seed=seed)
        return [pipeline(image) for image in images]

    first, again, other = run(3), run(3), run(4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))
    assert all(a.shape == (24, 24, 3) and a.dtype == np.uint8 for a in first)


@pytest.mark.parametrize("operation", [
    lambda image, rng: augment.rotate_crop(image, 3),
    lambda image, rng: augment.distort(image, 4, 4, rng),
    lambda image, rng: augment.zoom_random(image, 0.9, rng),
])
def test_each_operation_keeps_size_and_changes_pixels(images, operation):
    from PIL import Image

    source = Image.fromarray(images[0])
    result = np.asarray(operation(source, np.random.default_rng(1)))
    assert result.shape == images[0].shape and result.dtype == np.uint8
    assert not np.array_equal(result, images[0])


def test_rotation_crop_leaves_no_empty_corners():
    white = np.full((40, 30, 3), 255, np.uint8)
    from PIL import Image

    rotated = np.asarray(augment.rotate_crop(Image.fromarray(white), -3))
    assert rotated.min() > 200


def test_zero_probabilities_are_identity(images):
    pipeline = augment.AugmentorPipeline(seed=0, rotate_probability=0, distort_probability=0, zoom_probability=0)
    assert np.array_equal(pipeline(images[0]), images[0])


@pytest.mark.parametrize("include_originals", [True, False])
def test_generate_to_count_balances_and_tracks_sources(images, include_originals):
    labels = np.array([0, 0, 0, 0, 1, 2])
    pipeline = augment.AugmentorPipeline(seed=0)
    out, out_labels, source = pipeline.generate_to_count(images, labels, 5, seed=7,
                                                         include_originals=include_originals)
    assert out.shape == (15, 24, 24, 3) and out.dtype == np.uint8
    assert {k: int(n) for k, n in zip(*np.unique(out_labels, return_counts=True))} == {0: 5, 1: 5, 2: 5}
    assert np.array_equal(labels[source], out_labels)
    if include_originals:
        assert np.array_equal(out[:4], images[:4]) and list(source[:4]) == [0, 1, 2, 3]
    again = pipeline.generate_to_count(images, labels, 5, seed=7, include_originals=include_originals)
    assert all(np.array_equal(a, b) for a, b in zip((out, out_labels, source), again))


def test_generate_to_count_keeps_classes_above_target(images):
    labels = np.array([0, 0, 0, 0, 1, 1])
    out, out_labels, source = augment.AugmentorPipeline().generate_to_count(images, labels, 3, seed=0)
    assert list(out_labels) == [0, 0, 0, 0, 1, 1, 1] and source[-1] in (4, 5)


def test_rot90_x4_exact_rotations():
    images = np.arange(2 * 3 * 3 * 1).reshape(2, 3, 3, 1)
    out, labels, groups = augment.rot90_x4(images, ["a", "b"], ["g1", "g2"])
    assert out.shape == (8, 3, 3, 1) and list(labels) == ["a"] * 4 + ["b"] * 4 and list(groups[3:5]) == ["g1", "g2"]
    for i in range(2):
        for k in range(4):
            assert np.array_equal(out[4 * i + k], np.rot90(images[i], k))
    assert augment.rot90_x4(images, [0, 1])[2] is None
    with pytest.raises(ParameterError, match="square"):
        augment.rot90_x4(np.zeros((1, 3, 4, 3)), [0])


def test_descriptions_are_json_and_train_only():
    described = [augment.describe_imagedatagenerator(seed=1), augment.AugmentorPipeline().describe(),
                 augment.describe_rot90()]
    json.dumps(described)
    assert all(d["applies_to"] == "train only" for d in described)
    assert described[0]["parameters"]["rotation_range"] == 20 and described[0]["parameters"]["seed"] == 1


def test_imagedatagenerator_layers_in_tf_data_any_range():
    import tensorflow as tf

    batch = np.random.default_rng(0).random((4, 16, 16, 3)).astype("float32")

    def run(scale, seed):
        layers = augment.imagedatagenerator_layers(seed=seed)
        ds = tf.data.Dataset.from_tensor_slices(batch * scale).batch(4).map(layers)
        return next(iter(ds)).numpy()

    unit, again, other, bytes_range = run(1, 0), run(1, 0), run(1, 1), run(255, 0)
    assert unit.shape == batch.shape and unit.dtype == np.float32
    assert np.array_equal(unit, again) and not np.allclose(unit, other) and not np.allclose(unit, batch)
    assert np.allclose(bytes_range / 255, unit, atol=1e-4)
    assert 0 <= unit.min() and unit.max() <= 1


def test_imagedatagenerator_mapping_and_fill_modes():
    layers = augment.imagedatagenerator_layers(rotation_range=36, shear=0, horizontal_flip=False, seed=0)
    assert [type(layer).__name__ for layer in layers.layers] == ["RandomRotation", "RandomTranslation", "RandomZoom"]
    assert layers.layers[0].factor == pytest.approx((-0.1, 0.1)) and layers.layers[0].fill_mode == "nearest"
    with pytest.raises(ParameterError, match="fill_mode"):
        augment.imagedatagenerator_layers(fill_mode="mirror")
