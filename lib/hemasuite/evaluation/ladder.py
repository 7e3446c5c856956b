"""The leakage ladder: one model with fixed settings under split protocols from leakiest to strictest.

- :func:`rungs`: one :class:`hemasuite.record.Rung` per split level of repeated-split runs
  (exact CI of the pooled test predictions); :func:`rung`: one from a cross-validation's
  or one split's per-image predictions;
- :func:`table`, :func:`rungs_table`, :func:`figure`, :func:`verdict`: the ladder shown.

Each test image of a repeated split is also marked when an image of its field group (exact
or near duplicate, or same-field twin) is on the training side: what a leakier split lets
the model see.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .. import record
from .pooling import ResampleRun, _finite, cv_summary, pooled, runs_table

ORDER = ("image", "duplicate", "field", "case")  # leakiest first
PROTOCOLS = {"image": "random image split",
             "duplicate": "exact + pHash duplicate groups on one side",
             "field": "field-disjoint groups (duplicates + same-field twins on one side)",
             "case": "case-disjoint groups"}


def rungs(runs: list[ResampleRun], dataset: str, model: str, n_boot: int = 1000) -> list[record.Rung]:
    """One :class:`hemasuite.record.Rung` per level of ``runs``, leakiest first (exact CI of the pooled predictions)."""
    levels = sorted({r.level for r in runs}, key=ORDER.index)
    result = []
    for order, level in enumerate(levels):
        summary = pooled([r for r in runs if r.level == level], n_boot)
        result.append(record.Rung(dataset=dataset, order=order, protocol=PROTOCOLS[level], level=level, model=model,
                                  test_accuracy=float(summary["exact"]["value"]), ci_low=summary["exact"]["ci_low"],
                                  ci_high=summary["exact"]["ci_high"], n_test=summary["exact"]["n"],
                                  splits=summary["splits"], sd=_finite(summary["sd_across_splits"]),
                                  train_accuracy=summary["train_accuracy"], ci_method=summary["exact"]["method"]))
    return result


def rung(dataset: str, order: int, protocol: str, level: str, model: str, predictions: pd.DataFrame,
         train_accuracy: float | None = None) -> record.Rung:
    """A leakage-ladder rung from per-image test predictions (one split or several folds): pooled accuracy, exact CI."""
    summary = cv_summary(predictions)
    return record.Rung(dataset=dataset, order=order, protocol=protocol, level=level, model=model,
                       test_accuracy=summary["accuracy"], ci_low=summary["ci"]["ci_low"],
                       ci_high=summary["ci"]["ci_high"], n_test=summary["images"], splits=summary["folds"],
                       sd=summary["fold_sd"], train_accuracy=train_accuracy)


def table(ladder: list[record.Rung], runs: list[ResampleRun]) -> pd.DataFrame:
    """The ladder as a table: each rung's training and test accuracy, exact CI, sd across splits, and how many test
    images had a relative on the training side (mean per run) with their accuracy and the others'."""
    per_run = runs_table(runs)
    rows = []
    for rung in ladder:
        part = per_run[per_run["level"] == rung.level]
        correct = np.concatenate([r.correct() for r in runs if r.level == rung.level])
        related = np.concatenate([r.related() for r in runs if r.level == rung.level])
        rows.append({"rung": rung.order, "protocol": rung.protocol, "level": rung.level, "splits": rung.splits,
                     "runs": len(part), "train_accuracy": rung.train_accuracy, "test_accuracy": rung.test_accuracy,
                     "ci_low": rung.ci_low, "ci_high": rung.ci_high, "sd_across_splits": rung.sd,
                     "n_test_pooled": rung.n_test,
                     "test_with_relative_in_train": float(part["test_with_relative_in_train"].mean()),
                     "accuracy_with_relative": float(correct[related].mean()) if related.any() else np.nan,
                     "accuracy_without_relative": float(correct[~related].mean()) if (~related).any() else np.nan})
    return pd.DataFrame(rows)


def rungs_table(rungs: list[record.Rung]) -> pd.DataFrame:
    """The ladder as a table: protocol, level, model, training and test accuracy, exact CI, splits / folds, sd."""
    return pd.DataFrame([{"order": r.order, "protocol": r.protocol, "level": r.level, "model": r.model,
                          "train_accuracy": r.train_accuracy, "test_accuracy": r.test_accuracy, "ci_low": r.ci_low,
                          "ci_high": r.ci_high, "n_test": r.n_test, "splits": r.splits, "sd": r.sd}
                         for r in rungs]).astype({"train_accuracy": float, "sd": float})


def figure(ladder: list[record.Rung], title: str):
    """Test accuracy per rung with its exact 95% CI, and the training accuracy beside it."""
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    x = np.arange(len(ladder))
    test = np.array([r.test_accuracy for r in ladder])
    errors = np.array([[r.test_accuracy - r.ci_low for r in ladder], [r.ci_high - r.test_accuracy for r in ladder]])
    ax.errorbar(x + 0.08, test, yerr=errors, fmt="o", capsize=5, label="test (95% CI, exact)")
    train = [r.train_accuracy for r in ladder]
    if all(t is not None for t in train):
        ax.plot(x - 0.08, train, "s", color="grey", label="training images")
    for xi, value in zip(x, test):
        ax.annotate(f"{value:.1%}", (xi + 0.08, value), textcoords="offset points", xytext=(10, -3), fontsize=9)
    ax.set_xticks(x, [f"{r.level}\n({r.splits} splits)" for r in ladder])
    ax.set_ylabel("accuracy")
    ax.set_xlim(-0.5, len(ladder) - 0.5)
    ax.set_title(title)
    ax.legend(loc="best", fontsize=9)
    fig.tight_layout()
    return fig


def verdict(ladder: list[record.Rung], ladder_table: pd.DataFrame, synthetic: bool = False) -> str:
    """One Markdown paragraph: each rung's test accuracy with its exact CI and training accuracy, the change from
    the leakiest to the strictest rung, and the accuracy of test images with and without a relative in training."""
    def rung_text(r: record.Rung) -> str:
        train = f", training {r.train_accuracy:.1%}" if r.train_accuracy is not None else ""
        return f"{r.protocol}: {r.test_accuracy:.2%} [{r.ci_low:.2%}, {r.ci_high:.2%}]{train}"
    text = "**Leakage ladder** (same model and settings; exact 95% CIs of the pooled test predictions): "
    text += "; ".join(rung_text(r) for r in ladder) + ". "
    if len(ladder) > 1:
        first, last = ladder[0], ladder[-1]
        overlap = first.ci_low <= last.ci_high and last.ci_low <= first.ci_high
        text += (f"From the leakiest to the strictest split the accuracy changes by "
                 f"{(last.test_accuracy - first.test_accuracy) * 100:+.1f} points; the two CIs "
                 f"{'overlap' if overlap else 'do not overlap'}. ")
    leaky = ladder_table.iloc[0]
    if leaky["test_with_relative_in_train"] > 0:
        text += (f"Under the {leaky['protocol']}, {leaky['test_with_relative_in_train']:.0f} test images per split had "
                 f"a duplicate or same-field twin on the training side: {leaky['accuracy_with_relative']:.1%} of them "
                 f"correct, against {leaky['accuracy_without_relative']:.1%} of the others.")
    if synthetic:
        text += " SYNTHETIC data: this says only that the pipeline runs."
    return text
