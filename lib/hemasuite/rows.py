"""What a results row carries beside its test accuracy: architecture, training accuracy, an exact CI near 100%.

- :func:`train_accuracy`: the final training accuracy of a model, mean over its seeds.
- :func:`exact_ci`: the Clopper-Pearson interval of a (seed-mean) accuracy.
- :func:`complete`: fills a :class:`~hemasuite.record.ModelRow`'s architecture and
  training accuracy, and from :data:`NEAR_PERFECT` on gives it the exact interval, where a
  bootstrap over test images collapses towards a point; both intervals stay in the
  evaluation (``ci_table`` shows them side by side).
- :func:`majority`: always answering the most frequent training class, as a trained
  seed, so that the floor of an imbalanced task gets a row like any model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import metrics
from .experiment import Assessed, Prepared, TrainedSeed

NEAR_PERFECT = 0.95
BOOTSTRAP = "bootstrap over test images of the seed-mean accuracy"
EXACT = "Clopper-Pearson (exact binomial) of the seed-mean accuracy's correct count"


def train_accuracy(trained: list[TrainedSeed]) -> float | None:
    """Mean over seeds of the final training accuracy: ``training['train_accuracy']`` where a classifier
    recorded it (SVM, KNN, majority), else the last epoch's accuracy on the training batches."""
    values = [r.training["train_accuracy"] if r.training.get("train_accuracy") is not None else
              r.history["accuracy"][-1] for r in trained
              if r.training.get("train_accuracy") is not None or r.history.get("accuracy")]
    return float(np.mean(values)) if values else None


def exact_ci(accuracy: float, n: int) -> dict:
    """Clopper-Pearson 95% interval of ``accuracy`` on ``n`` test units (correct count rounded).

    For a mean over seeds, each image's correctness varies less than one Bernoulli draw,
    so the interval errs on the wide side.
    """
    return metrics.clopper_pearson_ci(int(round(accuracy * n)), n)


def complete(assessed: Assessed, architecture: str, method: str = BOOTSTRAP) -> Assessed:
    """Set the row's architecture, training accuracy and CI method; from :data:`NEAR_PERFECT` on, its CI is exact.

    ``method`` names the bootstrap the row's CI came from. The evaluation gains
    ``ci`` (both intervals and the one the row uses).
    """
    row = assessed.row
    row.architecture = architecture
    row.train_accuracy = train_accuracy(assessed.trained)
    bootstrap = {"ci_low": row.ci_low, "ci_high": row.ci_high, "method": method}
    exact = {**exact_ci(row.mean, row.n_test), "method": EXACT}
    used = exact if row.mean >= NEAR_PERFECT else bootstrap
    row.ci_low, row.ci_high, row.ci_method = used["ci_low"], used["ci_high"], used["method"]
    assessed.evaluation["ci"] = {"bootstrap": bootstrap, "exact": exact, "row": used["method"]}
    return assessed


def ci_table(assessed: list[Assessed]) -> pd.DataFrame:
    """Per row: accuracy, training accuracy, bootstrap and exact 95% CI side by side, and which the row reports."""
    rows = []
    for result in assessed:
        row, ci = result.row, result.evaluation["ci"]
        rows.append({"model": row.model + (f" [{row.variant}]" if row.variant else ""), "weights": row.weights.label,
                     "architecture": row.architecture, "accuracy": row.mean, "train accuracy": row.train_accuracy,
                     "bootstrap low": ci["bootstrap"]["ci_low"], "bootstrap high": ci["bootstrap"]["ci_high"],
                     "exact low": ci["exact"]["ci_low"], "exact high": ci["exact"]["ci_high"],
                     "row's CI": "exact" if ci["row"] == EXACT else "bootstrap"})
    return pd.DataFrame(rows)


def majority(prepared: Prepared, seed: int = 0) -> TrainedSeed:
    """Always the most frequent training class (probability 1), with its training accuracy."""
    classes = prepared.dataset.classes
    _, y_train = prepared.arrays("train")
    _, y_test = prepared.arrays("test")
    top = int(np.bincount(y_train, minlength=len(classes)).argmax())
    probabilities = np.zeros((len(y_test), len(classes)))
    probabilities[:, top] = 1.0
    return TrainedSeed(seed, probabilities, {}, {"predicts": classes[top],
                                                 "train_accuracy": float(np.mean(y_train == top))})
