"""Image pre-processing steps the papers name."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import ndimage


def median_denoise(images: np.ndarray, size: int = 3) -> np.ndarray:
    """Median filter each channel of each image with a ``size`` x ``size`` window.

    P1 applies "the image's denoise filter" without naming it. A 3x3 median is the usual
    choice for smear photographs: it removes impulse noise from the camera and small
    debris while keeping nuclear and cell edges sharp, which a Gaussian or mean filter
    would blur. Images are filtered in chunks on a thread pool (scipy releases the GIL);
    each image is filtered on its own, so the result does not depend on the chunks.
    """
    def apply(chunk):
        return ndimage.median_filter(chunk, size=(1, size, size, 1), mode="reflect")

    chunks = np.array_split(images, max(1, min(len(images), 4 * (os.cpu_count() or 1))))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return np.concatenate(list(pool.map(apply, chunks))) if len(images) else apply(images)
