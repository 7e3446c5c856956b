"""Deterministic stained-cell-like images with class-dependent morphology.

Used by the tests and the ``smoke`` profile so that every notebook runs with no
download. Each class differs in nucleus size, shape (lobes), chromatin texture and
cytoplasm rim; stain colour and position vary at random. Everything computed from these
images is labelled SYNTHETIC.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .registry import Dataset, frame_from_rows, register

# nucleus radius (fraction of size), lobes, chromatin texture strength, cytoplasm rim
MORPHOLOGY = [
    (0.16, 0, 0.05, 0.10),
    (0.24, 0, 0.25, 0.04),
    (0.20, 3, 0.15, 0.07),
    (0.28, 2, 0.35, 0.02),
    (0.12, 4, 0.10, 0.12),
    (0.22, 5, 0.45, 0.06),
]


def draw_cell(rng: np.random.Generator, size: int, class_index: int) -> np.ndarray:
    """One RGB uint8 image of a purple nucleus in pale cytoplasm on a pink background."""
    radius, lobes, texture, rim = MORPHOLOGY[class_index % len(MORPHOLOGY)]
    yy, xx = np.mgrid[0:size, 0:size] / size
    cy, cx = 0.5 + rng.uniform(-0.08, 0.08, 2)
    angle = np.arctan2(yy - cy, xx - cx) + rng.uniform(0, 2 * np.pi)
    distance = np.hypot(yy - cy, xx - cx)
    edge = radius * (1 + 0.25 * np.sin(lobes * angle) * (lobes > 0)) * rng.uniform(0.9, 1.1)
    nucleus = distance < edge
    cytoplasm = distance < edge + rim + 0.05
    background = np.array([236, 200, 210]) + rng.normal(0, 6, 3)
    cyto_colour = np.array([205, 190, 225]) + rng.normal(0, 6, 3)
    nucleus_colour = np.array([95, 50, 140]) + rng.normal(0, 10, 3)
    image = np.broadcast_to(background, (size, size, 3)).copy()
    image[cytoplasm] = cyto_colour
    chromatin = rng.normal(0, 1, (size, size))
    image[nucleus] = nucleus_colour + (texture * 120 * chromatin[nucleus])[:, None]
    image += rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_synthetic(root: Path, n_classes: int = 4, per_class: int = 24, size: int = 64, seed: int = 0,
                    n_duplicates: int = 0) -> list[dict]:
    """Write ``root/class_<k>/cell_<i>.png`` (idempotent) and return the frame rows.

    ``n_duplicates`` extra files per class are byte-identical copies of that class's
    first image, so that duplicate detection and group-aware splits have work to do.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n_classes):
        label = f"class_{k}"
        folder = Path(root) / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            path = folder / f"cell_{i:03d}.png"
            pixels = draw_cell(rng, size, k)
            if not path.exists():
                Image.fromarray(pixels).save(path)
            rows.append({"path": str(path.resolve()), "label": label, "group": f"{label}/{path.name}"})
        for j in range(n_duplicates):
            path = folder / f"cell_dup_{j:02d}.png"
            if not path.exists():
                path.write_bytes((folder / "cell_000.png").read_bytes())
            rows.append({"path": str(path.resolve()), "label": label, "group": f"{label}/{path.name}"})
    return rows


@register("synthetic", None, "generated on demand under cache_dir/<class_k>/cell_<i>.png", "generated; no download")
def load_synthetic(_root=None, cache_dir="synthetic_data", n_classes: int = 4, per_class: int = 24, size: int = 64,
                   seed: int = 0, n_duplicates: int = 0) -> Dataset:
    """Generate (once) and load a synthetic dataset; labelled SYNTHETIC everywhere."""
    root = Path(cache_dir) / f"synthetic_c{n_classes}_n{per_class}_s{size}_seed{seed}_d{n_duplicates}"
    rows = write_synthetic(root, n_classes, per_class, size, seed, n_duplicates)
    classes = [f"class_{k}" for k in range(n_classes)]
    return Dataset("synthetic", classes, frame_from_rows(rows, root, "synthetic", "generated"), root.resolve(),
                   f"SYNTHETIC stained-cell-like images ({n_classes} classes x {per_class}, {size}px, seed {seed})",
                   synthetic=True, info={"subject_ids": False, "seed": seed})
