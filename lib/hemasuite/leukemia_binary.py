"""P2: ALL vs normal (hem) cells, on C-NMC 2019 or a labelled stand-in, and the paper's Table 2 beside this run."""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import session
from .datasets import Dataset, binary_stand_in

STANDS_IN_FOR = "C-NMC 2019 (P2)"


def task(run, name: str) -> Dataset:
    """Dataset ``name`` loaded for the run, as P2's task (:func:`as_task`)."""
    return as_task(session.dataset(run, name), name)


def as_task(data: Dataset, name: str) -> Dataset:
    """C-NMC 2019 itself (its ``group`` is the subject, so every split is by subject), or a binary stand-in.

    The stand-in keeps one class as normal (``hem``: Taleqani's Benign hematogones, or the
    first synthetic class) and merges every other class into ``all``.
    """
    if name == "cnmc2019":
        return data
    negative = "Benign" if "Benign" in data.classes else data.classes[0]
    return binary_stand_in(data, negative, positive_name="all", negative_name="hem", stands_in_for=STANDS_IN_FOR)


def majority_accuracy(prepared) -> float:
    """Test accuracy of always predicting the most frequent training class (the floor for an imbalanced task)."""
    _, y_train = prepared.arrays("train")
    _, y_test = prepared.arrays("test")
    return float(np.mean(y_test == np.bincount(y_train).argmax()))


def table2(evaluations: dict, reported: dict) -> pd.DataFrame:
    """Accuracy, precision, recall, F1 of every model: the paper's Table 2 and this run (macro, mean over seeds).

    ``evaluations`` maps the paper's model name to ``(weights label, evaluation)``.
    """
    rows = []
    for model, (weights, evaluation) in evaluations.items():
        over = evaluation["over_seeds"]
        paper = reported.get(model, {})
        rows.append({"model": model, "weights": weights, "seeds": over["accuracy"]["n"],
                     **{f"paper {m}": paper.get(m) for m in ("accuracy", "precision", "recall", "f1")},
                     "accuracy": over["accuracy"]["mean"], "precision": over["precision_macro"]["mean"],
                     "recall": over["recall_macro"]["mean"], "f1": over["f1_macro"]["mean"],
                     "accuracy ci_low": evaluation["accuracy_seed_mean_ci"]["ci_low"],
                     "accuracy ci_high": evaluation["accuracy_seed_mean_ci"]["ci_high"]})
    return pd.DataFrame(rows)
