"""Classical baselines: P4's KNN, and a logistic regression on frozen features with C chosen by inner CV."""

from __future__ import annotations

import time

import numpy as np
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from .training import per_second


def downscaled(images: np.ndarray, side: int) -> np.ndarray:
    """Flattened ``side`` x ``side`` RGB thumbnails as float features."""
    return np.stack([np.asarray(Image.fromarray(im).resize((side, side), Image.BILINEAR), dtype=np.float32).ravel()
                     for im in images])


def knn(train: tuple, val: tuple, test: tuple, k_values=(1, 3, 5, 7, 9, 15), side: int = 32) -> dict:
    """KNN on standardised pixel thumbnails; ``k`` chosen on the validation split.

    Each argument is ``(images, labels)``. Returns the chosen k with the validation
    accuracy of every k tried (``selection``), its accuracy on the training images, the
    test-set class probabilities, and the
    speed of the chosen model: training
    images/s (thumbnails + scaler + index of the training set) and inference images/s
    (thumbnails + neighbour search of the test set).
    """
    x_val = downscaled(val[0], side)
    start = time.perf_counter()
    x_train = downscaled(train[0], side)
    thumbnail_seconds = time.perf_counter() - start
    scores = {}
    for k in k_values:
        model = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=k)).fit(x_train, train[1])
        scores[k] = float(model.score(x_val, val[1]))
    best = max(scores, key=lambda k: (scores[k], -k))
    start = time.perf_counter()
    model = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=best)).fit(x_train, train[1])
    fit_seconds = thumbnail_seconds + time.perf_counter() - start
    start = time.perf_counter()
    probabilities = model.predict_proba(downscaled(test[0], side))
    predict_seconds = time.perf_counter() - start
    return {"k": best, "features": f"{side}x{side} RGB pixels, standardised",
            "train_accuracy": float(model.score(x_train, train[1])),
            "selection": {"what": "k", "on": "validation split: accuracy", "chosen": f"k={best}",
                          "tried": {f"k={k}": score for k, score in scores.items()}},
            "wall_time_s": round(fit_seconds, 3),
            "train_images_per_s": per_second(len(train[0]), fit_seconds),
            "inference_images_per_s": per_second(len(test[0]), predict_seconds),
            "probabilities": probabilities}


def logistic_regression(x_train: np.ndarray, y_train, x_test: np.ndarray, groups=None, c_grid=(0.01, 0.1, 1.0),
                        folds: int = 5, seed: int = 0) -> dict:
    """Standardised features + multinomial logistic regression, C chosen by inner cross-validation.

    The inner folds (``StratifiedGroupKFold``) keep ``groups`` (e.g. cases; None: each row
    on its own) together, so C is chosen on groups the fit has not seen. Returns the test
    probabilities, the chosen C, the accuracy on the training rows, and the mean inner-CV
    accuracy of every C (``selection``). BLAS runs on one thread: on these small problems
    (hundreds of rows) a thread pool beside TensorFlow's costs 30-100x in wall time.
    """
    y_train = np.asarray(y_train)
    groups = np.arange(len(y_train)) if groups is None else np.asarray(groups)
    folds = min(folds, len(np.unique(groups)), int(np.bincount(y_train).min()))
    search = GridSearchCV(make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
                          {"logisticregression__C": list(c_grid)}, scoring="accuracy",
                          cv=StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed))
    start = time.perf_counter()
    with threadpool_limits(1):
        search.fit(x_train, y_train, groups=groups)
        train_accuracy, probabilities = float(search.score(x_train, y_train)), search.predict_proba(x_test)
    fit_seconds = time.perf_counter() - start
    best = search.best_params_["logisticregression__C"]
    return {"C": best, "train_accuracy": train_accuracy, "probabilities": probabilities,
            "wall_time_s": round(fit_seconds, 3),
            "selection": {"what": "C", "on": f"{folds}-fold inner cross-validation of the training part "
                                             "(groups kept together): accuracy",
                          "chosen": f"C={best:g}",
                          "tried": {f"C={c:g}": float(v) for c, v in zip(c_grid,
                                                                          search.cv_results_["mean_test_score"])}}}
