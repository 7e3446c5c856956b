"""Classical baselines (P4's KNN)."""

from __future__ import annotations

import numpy as np
from PIL import Image
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def thumbnails(images: np.ndarray, side: int) -> np.ndarray:
    """Flattened ``side`` x ``side`` RGB thumbnails as float features."""
    return np.stack([np.asarray(Image.fromarray(im).resize((side, side), Image.BILINEAR), dtype=np.float32).ravel()
                     for im in images])


def knn(train: tuple, val: tuple, test: tuple, k_values=(1, 3, 5, 7, 9, 15), side: int = 32) -> dict:
    """KNN on standardised pixel thumbnails; ``k`` chosen on the validation split.

    Each argument is ``(images, labels)``. Returns the chosen k, validation accuracy per
    k and the test-set class probabilities.
    """
    x_train, x_val, x_test = (thumbnails(split[0], side) for split in (train, val, test))
    scores = {}
    for k in k_values:
        model = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=k)).fit(x_train, train[1])
        scores[k] = float(model.score(x_val, val[1]))
    best = max(scores, key=lambda k: (scores[k], -k))
    model = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=best)).fit(x_train, train[1])
    return {"k": best, "validation_accuracy": scores, "features": f"{side}x{side} RGB pixels, standardised",
            "probabilities": model.predict_proba(x_test)}
