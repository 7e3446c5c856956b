"""Synthetic smear fields for the same-field tests: crops of one scene at different offsets."""

import numpy as np
from PIL import Image

from hemasuite.datasets.synthetic import draw_cell


def scene(seed: int, size: int = 320) -> np.ndarray:
    """An RGB field of random overlapping discs ('cells') of varied size and colour on a pale background."""
    rng = np.random.default_rng(seed)
    image = np.broadcast_to(np.array([235.0, 215.0, 220.0]), (size, size, 3)).copy()
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(60):
        cy, cx = rng.uniform(0, size, 2)
        radius = rng.uniform(6, 22)
        image[np.hypot(yy - cy, xx - cx) < radius] = rng.uniform([80, 40, 110], [230, 200, 240])
    image += rng.normal(0, 3, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def crop(field: np.ndarray, top: int, left: int, size: int = 224) -> Image.Image:
    return Image.fromarray(field[top:top + size, left:left + size])


def look_alike_cells(max_bits: int = 10, size: int = 224) -> tuple[Image.Image, Image.Image]:
    """Two different centred synthetic cells of one class whose pHashes differ in at most ``max_bits`` bits."""
    from hemasuite.validation import perceptual_hash

    rng = np.random.default_rng(3)
    cells = [Image.fromarray(draw_cell(rng, size, 1)) for _ in range(12)]
    hashes = np.array([perceptual_hash(c) for c in cells], dtype=np.uint64)
    bits = np.bitwise_count(hashes[:, None] ^ hashes[None, :]) + np.eye(len(cells), dtype=np.uint8) * 64
    i, j = np.unravel_index(np.argmin(bits), bits.shape)
    assert bits[i, j] <= max_bits, "no pHash-close pair among the generated cells"
    return cells[i], cells[j]
