"""Stain augmentation, normalisation and colour probes on a synthetic H&E-like image."""

import numpy as np
import pytest

from hemasuite import stain
from hemasuite.errors import ParameterError


def he_like(seed: int, shape=(48, 64)) -> np.ndarray:
    """Pink background with purple blobs, as an H&E section looks."""
    rng = np.random.default_rng(seed)
    image = np.empty((*shape, 3))
    image[:] = (225, 170, 200)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for _ in range(6):
        cy, cx, r = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(4, 9)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = (95, 60, 150)
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def test_deconvolution_round_trips():
    image = he_like(0)
    assert np.abs(stain.hed_to_rgb(stain.rgb_to_hed(image)).astype(int) - image).max() <= 1


def test_zero_jitter_round_trips_through_hed():
    image = he_like(0)
    same = stain.hed_jitter(image, np.random.default_rng(0), scale=0.0, shift=0.0)
    assert same.dtype == np.uint8 and same.shape == image.shape
    assert np.abs(same.astype(int) - image).max() <= 2


def test_hed_jitter_is_seeded_and_changes_colour():
    batch = np.stack([he_like(0), he_like(1)])
    a = stain.hed_jitter(batch, np.random.default_rng(5), scale=0.2, shift=0.05)
    b = stain.hed_jitter(batch, np.random.default_rng(5), scale=0.2, shift=0.05)
    c = stain.hed_jitter(batch, np.random.default_rng(6), scale=0.2, shift=0.05)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c).mean() > 1
    assert np.abs(a.astype(int) - batch).mean() > 1
    with pytest.raises(ParameterError):
        stain.hed_jitter(batch, np.random.default_rng(0), scale=-1)


def test_normalizer_maps_its_reference_to_itself_and_moves_others():
    reference = he_like(0)
    normalizer = stain.StainNormalizer().fit(reference)
    assert np.abs(normalizer.transform(reference).astype(int) - reference).max() <= 2
    darker = (reference * 0.7).astype(np.uint8)
    mapped = normalizer.transform(darker)
    assert abs(mapped.mean() - reference.mean()) < abs(darker.mean() - reference.mean()) / 4
    with pytest.raises(ParameterError, match="fit"):
        stain.StainNormalizer().transform(reference)


def test_colour_variants_touch_training_only_where_they_should():
    train, test = np.stack([he_like(0), he_like(1)]), np.stack([he_like(2)])
    jittered, test_after, record = stain.colour_variant("hed_jitter", train, test, np.random.default_rng(0))
    assert test_after is test and record["applied_to"] == "training images only"
    assert not np.array_equal(jittered, train)
    # The Reinhard reference comes from the training side: changing the test images does not move it.
    _, _, first = stain.colour_variant("reinhard", train, test, np.random.default_rng(0))
    _, _, second = stain.colour_variant("reinhard", train, test // 2, np.random.default_rng(0))
    assert first["lab_mean"] == second["lab_mean"]
    grey_train, grey_test, _ = stain.colour_variant("greyscale", train, test, np.random.default_rng(0))
    assert np.all(grey_train[..., 0] == grey_train[..., 2]) and np.all(grey_test[..., 1] == grey_test[..., 2])
    nuclei, _, _ = stain.colour_variant("haematoxylin", train, test, np.random.default_rng(0))
    assert nuclei.shape == train.shape
    with pytest.raises(ParameterError, match="colour variant"):
        stain.colour_variant("sepia", train, test, np.random.default_rng(0))


@pytest.mark.real_data
def test_real_lymphoma_section_round_trips(real_data):
    from hemasuite.imageio import read_rgb

    image = read_rgb(real_data / "iicbu_lymphoma" / "CLL" / "0.png")
    assert np.abs(stain.hed_to_rgb(stain.rgb_to_hed(image)).astype(int) - image).max() <= 1
