"""Image pre-processing steps the papers name."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def median_denoise(images: np.ndarray, size: int = 3) -> np.ndarray:
    """Median filter each channel of each image with a ``size`` x ``size`` window.

    P1 applies "the image's denoise filter" without naming it. A 3x3 median is the usual
    choice for smear photographs: it removes impulse noise from the camera and small
    debris while keeping nuclear and cell edges sharp, which a Gaussian or mean filter
    would blur.
    """
    return ndimage.median_filter(images, size=(1, size, size, 1), mode="reflect")
