"""Input pipeline: decode once, cache reused, eval data untouched, patches cover images."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hemasuite import pipeline
from hemasuite.errors import ImageReadError


@pytest.fixture
def frame(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        path = tmp_path / f"img_{i}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(rng.integers(0, 256, (10, 14, 3), dtype=np.uint8)).save(path)
        rows.append({"path": str(path), "label": f"c{i % 3}", "group": path.name})
    return pd.DataFrame(rows)


def test_load_images_shape_order_dtype(frame):
    images = pipeline.load_images(frame, (8, 12), workers=2)
    assert images.shape == (6, 8, 12, 3) and images.dtype == np.uint8
    from hemasuite.imageio import read_rgb

    assert np.array_equal(images[3], read_rgb(frame.path[3], (8, 12)))
    assert pipeline.load_images(frame, None).shape == (6, 10, 14, 3)


def test_cache_reused_and_invalidated(frame, tmp_path, monkeypatch):
    calls = []
    real = pipeline.read_rgb
    monkeypatch.setattr(pipeline, "read_rgb", lambda path, size: calls.append(path) or real(path, size))
    first = pipeline.load_images(frame, 8, cache_dir=tmp_path / "cache")
    assert len(calls) == 6 and len(list((tmp_path / "cache").glob("images_*.npy"))) == 1
    second = pipeline.load_images(frame, 8, cache_dir=tmp_path / "cache")
    assert len(calls) == 6 and np.array_equal(first, second)
    pipeline.load_images(frame, 9, cache_dir=tmp_path / "cache")
    assert len(calls) == 12
    Image.fromarray(np.zeros((10, 14, 3), np.uint8)).save(frame.path[0])
    changed = pipeline.load_images(frame, 8, cache_dir=tmp_path / "cache")
    assert len(calls) == 18 and changed[0].max() == 0


@pytest.mark.parametrize("cache", [False, True])
def test_unreadable_file_named(frame, tmp_path, cache):
    frame.loc[2, "path"] = str(tmp_path / "broken.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match="broken.jpg"):
        pipeline.load_images(frame, 8, cache_dir=tmp_path / "cache" if cache else None)


def test_missing_file_named_when_cached(frame, tmp_path):
    frame.loc[1, "path"] = str(tmp_path / "gone.png")
    with pytest.raises(ImageReadError, match="gone.png"):
        pipeline.load_images(frame, 8, cache_dir=tmp_path / "cache")


def _epoch(ds):
    batches = list(ds)
    return np.concatenate([x.numpy() for x, _ in batches]), np.concatenate([y.numpy() for _, y in batches])


def test_eval_dataset_never_shuffled_or_augmented():
    images = np.arange(5 * 4 * 4 * 3, dtype=np.uint8).reshape(5, 4, 4, 3)
    labels = np.array([0, 1, 2, 1, 0])
    ds = pipeline.make_dataset(images, labels, 3, 2, training=False, augment=lambda x: x * 0)
    x, y = _epoch(ds)
    assert x.dtype == np.float32 and np.allclose(x, images / 255) and np.array_equal(y.argmax(1), labels)
    assert y.shape == (5, 3)


def test_training_dataset_shuffled_seeded_and_augmented():
    images = np.repeat(np.arange(8, dtype=np.uint8), 12).reshape(8, 2, 2, 3)
    labels = np.arange(8) % 2

    def build(seed):
        return pipeline.make_dataset(images, labels, 2, 3, training=True, seed=seed, augment=lambda x: x + 1)

    ds = build(0)
    x1, y1 = _epoch(ds)
    x2, _ = _epoch(ds)
    order = np.rint((x1[:, 0, 0, 0] - 1) * 255).astype(int)
    assert sorted(order) == list(range(8)) and np.array_equal(y1.argmax(1), labels[order])
    assert not np.array_equal(x1, x2)
    assert np.array_equal(x1, _epoch(build(0))[0]) and not np.array_equal(x1, _epoch(build(1))[0])


def test_path_dataset_matches_files(frame):
    ds = pipeline.path_dataset(frame, 8, 3, 4)
    x, y = _epoch(ds)
    assert x.shape == (6, 8, 8, 3) and np.array_equal(y.argmax(1), [0, 1, 2, 0, 1, 2])
    assert np.abs(x - pipeline.load_images(frame, 8) / 255).mean() < 0.05
    assert np.array_equal(x, _epoch(ds)[0])


def test_patches_cover_image():
    image = np.arange(7 * 10, dtype=np.int32).reshape(7, 10, 1)
    patches = pipeline.extract_patches(image, 4, 4)
    assert patches.shape == (6, 4, 4, 1)
    assert set(np.unique(patches)) == set(image.ravel())
    assert np.array_equal(patches[-1], image[-4:, -4:])
    tiles, labels, source = pipeline.patches_from_images([image, image + 100], ["a", "b"], (4, 5), 5)
    assert len(tiles) == 8 and list(source) == [0] * 4 + [1] * 4 and list(labels) == ["a"] * 4 + ["b"] * 4
