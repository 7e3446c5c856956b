"""H&E stain handling for the lymphoma sections: colour augmentation, normalisation, colour probes.

- :func:`hed_jitter`: colour augmentation in HED space (colour deconvolution with
  scikit-image's Ruifrok-Johnston stain matrices, a random scale and shift of each stain
  channel, recomposition), seeded. For training images only.
- :class:`StainNormalizer`: Reinhard normalisation to one reference (``torchstain``'s NumPy
  backend), fitted on training images only.
- :func:`greyscale` and :func:`haematoxylin_only`: probes of how much a model relies on colour.

Every function takes and returns RGB ``uint8`` arrays of shape ``(h, w, 3)`` or a batch
``(n, h, w, 3)``.
"""

from __future__ import annotations

import numpy as np
from skimage import color
from torchstain.numpy.normalizers import NumpyReinhardNormalizer

from .errors import ParameterError

_MIN_INTENSITY = 1e-6
VARIANTS = ("none", "hed_jitter", "reinhard", "greyscale", "haematoxylin")


def _as_batch(images) -> tuple[np.ndarray, bool]:
    """``(n, h, w, 3)`` uint8 and whether the input was a single image."""
    images = np.asarray(images)
    single = images.ndim == 3
    batch = images[None] if single else images
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise ParameterError(f"expected RGB images of shape (h, w, 3) or (n, h, w, 3), got {images.shape}")
    return batch, single


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)


def rgb_to_hed(image: np.ndarray) -> np.ndarray:
    """Stain concentrations (haematoxylin, eosin, DAB) of an RGB uint8 image.

    The optical-density transform and matrix of ``skimage.color.rgb2hed``, without its
    clipping of negative concentrations: on the IICBU sections the eosin concentration is
    negative for almost every pixel under the standard matrix, and ``rgb2hed`` then
    ``hed2rgb`` moves half the pixels by more than 2 grey levels (up to 62). This pair
    round-trips exactly.
    """
    rgb = np.maximum(np.asarray(image, dtype=float) / 255.0, _MIN_INTENSITY)
    return (np.log(rgb) / np.log(_MIN_INTENSITY)) @ color.hed_from_rgb


def hed_to_rgb(hed: np.ndarray) -> np.ndarray:
    """RGB uint8 from the concentrations of :func:`rgb_to_hed`."""
    return _to_uint8(np.exp((hed * np.log(_MIN_INTENSITY)) @ color.rgb_from_hed))


def hed_jitter(images, rng: np.random.Generator, scale: float = 0.05, shift: float = 0.05) -> np.ndarray:
    """Scale each HED stain channel by ``1 + U(-scale, scale)`` and shift it by ``U(-shift, shift)``.

    One draw per image and channel (Tellez et al. 2018, "H&E stain augmentation"); the shift
    is relative to the channel's range over the image, so its effect does not depend on
    how dark the section is.
    """
    if scale < 0 or shift < 0:
        raise ParameterError(f"hed_jitter needs scale >= 0 and shift >= 0, got {scale}, {shift}")
    batch, single = _as_batch(images)
    out = np.empty_like(batch)
    for i, image in enumerate(batch):
        hed = rgb_to_hed(image)
        alpha = rng.uniform(1 - scale, 1 + scale, size=3)
        span = np.ptp(hed.reshape(-1, 3), axis=0)
        beta = rng.uniform(-shift, shift, size=3) * span
        out[i] = hed_to_rgb(hed * alpha + beta)
    return out[0] if single else out


def describe_hed_jitter(scale: float = 0.05, shift: float = 0.05) -> dict:
    """The augmentation as results.json records it."""
    return {"name": "hed_jitter", "space": "HED (scikit-image stain matrices, unclipped)",
            "scale": f"1 + U(-{scale}, {scale}) per stain channel", "shift": f"U(-{shift}, {shift}) x channel range",
            "applied_to": "training images only"}


class StainNormalizer:
    """Reinhard normalisation (LAB mean and sd per channel) to a reference built from training images.

    The reference statistics are those of a mosaic of the given training images, so no single
    image's stain decides them; fit it on training cases only.
    """

    def __init__(self):
        self._normalizer = NumpyReinhardNormalizer()
        self.fitted = False

    def fit(self, images) -> StainNormalizer:
        batch, _ = _as_batch(images)
        self._normalizer.fit(batch.reshape(-1, batch.shape[2], 3))
        self.fitted = True
        return self

    @property
    def reference(self) -> dict:
        """The target LAB means and sds (for results.json)."""
        self._check()
        return {"lab_mean": [float(v) for v in self._normalizer.target_means],
                "lab_sd": [float(v) for v in self._normalizer.target_stds]}

    def transform(self, images) -> np.ndarray:
        self._check()
        batch, single = _as_batch(images)
        out = np.stack([self._normalizer.normalize(image) for image in batch])
        return out[0] if single else out

    def _check(self) -> None:
        if not self.fitted:
            raise ParameterError("StainNormalizer: call fit() on training images before transform()")


def greyscale(images) -> np.ndarray:
    """Luminance only, repeated on three channels (the models keep their RGB input)."""
    batch, single = _as_batch(images)
    grey = _to_uint8(color.rgb2gray(batch))
    out = np.repeat(grey[..., None], 3, axis=-1)
    return out[0] if single else out


def haematoxylin_only(images) -> np.ndarray:
    """The haematoxylin (nuclear) stain alone, recomposed to RGB: eosin and DAB set to zero."""
    batch, single = _as_batch(images)
    out = np.empty_like(batch)
    for i, image in enumerate(batch):
        hed = rgb_to_hed(image)
        hed[..., 1:] = 0
        out[i] = hed_to_rgb(hed)
    return out[0] if single else out


def colour_variant(name: str, train_images, test_images, rng: np.random.Generator):
    """Training and test images under one colour variant of :data:`VARIANTS`.

    ``hed_jitter`` changes the training images only (one draw per image, from ``rng``);
    ``reinhard`` fits the reference on the training images and maps both sides to it;
    ``greyscale`` and ``haematoxylin`` transform both sides alike.
    Returns ``(train, test, record)`` with ``record`` describing what was done.
    """
    if name not in VARIANTS:
        raise ParameterError(f"colour variant {name!r} is not one of {list(VARIANTS)}")
    if name == "none":
        return train_images, test_images, {"name": "none"}
    if name == "hed_jitter":
        return hed_jitter(train_images, rng), test_images, describe_hed_jitter()
    if name == "reinhard":
        normalizer = StainNormalizer().fit(train_images)
        record = {"name": "reinhard", "implementation": "torchstain (NumPy backend)",
                  "reference": "mosaic of the training images", **normalizer.reference}
        return normalizer.transform(train_images), normalizer.transform(test_images), record
    probe = greyscale if name == "greyscale" else haematoxylin_only
    return probe(train_images), probe(test_images), {"name": name, "applied_to": "training and test images"}
