"""Figures of the augmentation notebook: originals next to each family's output."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import augment
from .errors import ImageReadError
from .imageio import open_checked


def pick_examples(dataset, n: int, seed: int) -> pd.DataFrame:
    """``n`` readable rows of ``dataset.frame``, taking the classes in turn, drawn at random per ``seed``
    (unreadable files are passed over)."""
    shuffled = dataset.frame.sample(frac=1, random_state=seed)
    rank = shuffled.groupby("label").cumcount()
    order = shuffled.assign(rank=rank, cls=shuffled["label"].map(dataset.classes.index))
    order = order.sort_values(["rank", "cls"]).drop(columns=["rank", "cls"])
    chosen = []
    for index, path in zip(order.index, order["path"]):
        try:
            open_checked(path)
        except ImageReadError:
            continue
        chosen.append(index)
        if len(chosen) == n:
            break
    return order.loc[chosen].reset_index(drop=True)


def family_examples(images: np.ndarray, seed: int, draws: int = 2) -> dict[str, dict[str, np.ndarray]]:
    """For each family, rows of uint8 images: the originals, then ``draws`` augmented versions."""
    layers = augment.imagedatagenerator_layers(seed=seed)
    floats = images.astype("float32") / 255
    idg = [np.rint(np.asarray(layers(floats, training=True)) * 255).clip(0, 255).astype(np.uint8)
           for _ in range(draws)]
    pipeline = augment.AugmentorPipeline(seed=seed)
    augmentor = [np.stack([pipeline(image) for image in images]) for _ in range(draws)]
    rotations = augment.rot90_x4(images, np.arange(len(images)))[0].reshape(len(images), 4, *images.shape[1:])
    return {
        "imagedatagenerator": {"original": images, **{f"draw {d + 1}": x for d, x in enumerate(idg)}},
        "augmentor": {"original": images, **{f"draw {d + 1}": x for d, x in enumerate(augmentor)}},
        "rot90_x4": {f"{90 * k}°": rotations[:, k] for k in range(4)},
    }


def comparison_grid(rows: dict[str, np.ndarray], title: str, column_titles=None):
    """A grid with one row per entry of ``rows`` (name -> ``(n, H, W, 3)`` images) and one column per image."""
    n_rows, n_cols = len(rows), len(next(iter(rows.values())))
    figure, axes = plt.subplots(n_rows, n_cols, figsize=(1.8 * n_cols, 1.9 * n_rows), squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        for c, image in enumerate(images):
            axis = axes[r, c]
            axis.imshow(image)
            axis.set_xticks([])
            axis.set_yticks([])
            axis.grid(False)
            if c == 0:
                axis.set_ylabel(name)
            if r == 0 and column_titles is not None:
                axis.set_title(str(column_titles[c]), fontsize=9)
    figure.suptitle(title)
    figure.tight_layout()
    return figure
