"""Cross-validation in which every image is tested once, with settings chosen inside each fold.

- :func:`select_on_validation`: try candidate settings on validation data carved from the
  training side and keep the best; every candidate is recorded with its validation score.
- :func:`cross_validate`: run ``fit_predict`` on each fold and collect per-image predictions
  (one row per image, with its fold).
- :func:`fold_table`, :func:`pooled_summary`, :func:`group_table`: per fold, pooled over
  all images (exact binomial CI), and per group (e.g. the fraction correct per case).
- :func:`repeated_split_summary`: accuracy over several split seeds, each with several
  training seeds, with the sd across splits and across training seeds kept apart.
- :func:`save_predictions`, :func:`model_row`, :func:`rung`: the per-image predictions
  CSV, the results row and the leakage-ladder rung of a cross-validated model.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import pandas as pd

from . import metrics, record, rehearsal
from .errors import ParameterError


def select_on_validation(candidates: dict[str, dict], score: Callable[[dict], float]) -> tuple[str, pd.DataFrame]:
    """The name of the candidate with the highest validation ``score``, and every candidate tried.

    ``score(settings)`` trains on the inner training part and returns the validation
    accuracy; the test part of the fold is never seen here. Ties keep the earlier
    candidate (list the cheaper or simpler setting first).
    """
    if not candidates:
        raise ParameterError("select_on_validation needs at least one candidate setting")
    rows = [{"candidate": name, **settings, "validation_score": float(score(settings))}
            for name, settings in candidates.items()]
    tried = pd.DataFrame(rows)
    best = str(tried.loc[tried["validation_score"].idxmax(), "candidate"])
    tried["selected"] = tried["candidate"] == best
    return best, tried


def cross_validate(labels, folds: Iterable[tuple[np.ndarray, np.ndarray]], classes,
                   fit_predict: Callable[[int, np.ndarray, np.ndarray], np.ndarray]) -> pd.DataFrame:
    """Per-image test predictions over all folds.

    ``folds`` yields ``(train_index, test_index)`` pairs into ``labels``; the test parts must
    cover every image exactly once. ``fit_predict(fold, train_index, test_index)`` returns
    the ``(len(test_index), n_classes)`` probabilities of the test images. The result has
    columns ``index``, ``fold``, ``true``, ``predicted`` and ``p_<class>``, sorted by index.
    """
    labels = metrics.as_indices(labels, classes)
    parts, seen = [], np.zeros(len(labels), dtype=int)
    folds = list(folds)
    chosen = rehearsal.first_resamples(folds)  # all of them, except in a rehearsal
    for fold, (train_index, test_index) in enumerate(chosen):
        train_index, test_index = np.asarray(train_index), np.asarray(test_index)
        if np.intersect1d(train_index, test_index).size:
            raise ParameterError(f"fold {fold}: images in both the training and the test part")
        probabilities = np.asarray(fit_predict(fold, train_index, test_index), dtype=float)
        if probabilities.shape != (len(test_index), len(classes)):
            raise ParameterError(f"fold {fold}: fit_predict returned shape {probabilities.shape}, "
                                 f"expected {(len(test_index), len(classes))}")
        seen[test_index] += 1
        parts.append(prediction_frame(labels, test_index, probabilities, classes, fold))
    if len(chosen) == len(folds) and not np.all(seen == 1):
        raise ParameterError(f"the folds' test parts must cover every image once: {int((seen == 0).sum())} never "
                             f"tested, {int((seen > 1).sum())} tested more than once")
    return pd.concat(parts).sort_values("index").reset_index(drop=True)


def prediction_frame(labels, index, probabilities, classes, fold: int = 0) -> pd.DataFrame:
    """Per-image predictions of the images ``index`` (columns as :func:`cross_validate`'s), e.g. of one split."""
    labels, index = metrics.as_indices(labels, classes), np.asarray(index)
    part = pd.DataFrame({"index": index, "fold": fold, "true": labels[index],
                         "predicted": np.asarray(probabilities).argmax(axis=1)})
    for k, name in enumerate(classes):
        part[f"p_{name}"] = np.asarray(probabilities)[:, k]
    return part


def fold_table(predictions: pd.DataFrame) -> pd.DataFrame:
    """Images and accuracy per fold."""
    correct = predictions["true"] == predictions["predicted"]
    return (correct.groupby(predictions["fold"]).agg(images="size", accuracy="mean").reset_index())


def pooled_summary(predictions: pd.DataFrame) -> dict:
    """Pooled accuracy over all images with an exact binomial 95% CI, and mean +/- sd over folds."""
    correct = int((predictions["true"] == predictions["predicted"]).sum())
    n = len(predictions)
    per_fold = fold_table(predictions)["accuracy"]
    return {"images": n, "correct": correct, "accuracy": correct / n,
            "ci": {**metrics.clopper_pearson_ci(correct, n), "method": "Clopper-Pearson, pooled over folds"},
            "folds": int(per_fold.size), "fold_mean": float(per_fold.mean()),
            "fold_sd": float(per_fold.std(ddof=1)) if per_fold.size > 1 else None}


def group_table(predictions: pd.DataFrame, groups, classes) -> pd.DataFrame:
    """Per group (e.g. case): its class, images, fraction correct and the most frequent prediction."""
    frame = predictions.assign(group=np.asarray(groups)[predictions["index"].to_numpy()],
                               correct=predictions["true"] == predictions["predicted"])
    rows = []
    for group, part in frame.groupby("group", sort=True):
        rows.append({"group": group, "class": classes[int(part["true"].mode().iloc[0])], "images": len(part),
                     "fraction_correct": float(part["correct"].mean()),
                     "most_predicted": classes[int(part["predicted"].mode().iloc[0])]})
    return pd.DataFrame(rows).sort_values(["class", "group"]).reset_index(drop=True)


def repeated_split_summary(table: pd.DataFrame, value: str = "accuracy") -> dict:
    """Mean of ``value`` over rows ``(split_seed, train_seed, value)``, with both sources of spread.

    ``sd_across_splits`` is the sd of the per-split means (what a new split of the data
    changes); ``sd_across_training_seeds`` is the mean over splits of the sd across training
    seeds within a split (what a new initialisation changes).
    """
    missing = {"split_seed", "train_seed", value} - set(table.columns)
    if missing:
        raise ParameterError(f"repeated_split_summary needs columns {sorted(missing)}")
    per_split = table.groupby("split_seed")[value]
    means = per_split.mean()
    within = per_split.std(ddof=1).dropna()
    return {"mean": float(table[value].mean()), "splits": int(means.size),
            "training_seeds_per_split": int(per_split.size().min()),
            "sd_across_splits": float(means.std(ddof=1)) if means.size > 1 else None,
            "sd_across_training_seeds": float(within.mean()) if within.size else None,
            "per_split_mean": {int(k): float(v) for k, v in means.items()}}


def save_predictions(run, name: str, predictions: pd.DataFrame, paths, classes) -> str:
    """``predictions/<name>.csv``: path, split, fold, true and predicted class, class probabilities, per image."""
    table = pd.DataFrame({"path": np.asarray(paths, dtype=str)[predictions["index"].to_numpy()], "split": "test",
                          "fold": predictions["fold"].to_numpy(),
                          "true": [classes[i] for i in predictions["true"]],
                          "predicted": [classes[i] for i in predictions["predicted"]]})
    probabilities = predictions[[f"p_{c}" for c in classes]].round(5).reset_index(drop=True)
    return run.save_predictions(pd.concat([table, probabilities], axis=1), name)


def majority_predictions(predictions: pd.DataFrame, classes) -> pd.DataFrame:
    """The majority-class floor of the same folds: each fold predicts (probability 1) the most frequent class among
    the other folds' images, its training part."""
    true = predictions["true"].to_numpy()
    floor = predictions[["index", "fold", "true"]].copy()
    for fold in floor["fold"].unique():
        inside = (floor["fold"] == fold).to_numpy()
        floor.loc[inside, "predicted"] = int(np.bincount(true[~inside], minlength=len(classes)).argmax())
    floor["predicted"] = floor["predicted"].astype(int)
    for number, name in enumerate(classes):
        floor[f"p_{name}"] = (floor["predicted"] == number).astype(float)
    return floor


def majority_row(run, key: str, predictions: pd.DataFrame, paths, classes, split_level: str,
                 **extra) -> record.ModelRow:
    """The majority-class row of a cross-validation (:func:`majority_predictions` of its folds)."""
    return model_row(run, key, "majority class", majority_predictions(predictions, classes), paths, classes,
                     record.Weights("none (no training)"), split_level, architecture="majority class", **extra)


def model_row(run, key: str, model: str, predictions: pd.DataFrame, paths, classes, weights: record.Weights,
              split_level: str, architecture: str | None = None, train_accuracy: float | None = None,
              chosen: list[str] | None = None, seed: int = 0, **extra) -> record.ModelRow:
    """The results row of a cross-validated model, its predictions saved (:func:`save_predictions`).

    ``mean`` is the accuracy pooled over all images with its exact (Clopper-Pearson) CI;
    ``sd`` is across folds; each fold is one entry of ``seeds`` (with what was ``chosen``
    in it). ``extra`` goes to :class:`hemasuite.record.ModelRow` (paper_model, variant, ...).
    """
    summary = pooled_summary(predictions)
    folds = fold_table(predictions)
    chosen = chosen or [None] * len(folds)
    return record.ModelRow(
        key=key, model=model, weights=weights, mean=summary["accuracy"], sd=summary["fold_sd"],
        seeds=[record.SeedValue(seed=seed, value=float(r.accuracy), fold=int(r.fold), chosen=c)
               for r, c in zip(folds.itertuples(), chosen)],
        ci_low=summary["ci"]["ci_low"], ci_high=summary["ci"]["ci_high"], n_test=summary["images"],
        predictions=save_predictions(run, key, predictions, paths, classes), architecture=architecture,
        split_level=split_level,
        ci_method="Clopper-Pearson" + (f", pooled over {summary['folds']} folds" if summary["folds"] > 1 else ""),
        train_accuracy=train_accuracy, **extra)


def rung(dataset: str, order: int, protocol: str, level: str, model: str, predictions: pd.DataFrame,
         train_accuracy: float | None = None) -> record.Rung:
    """A leakage-ladder rung from per-image test predictions (one split or several folds): pooled accuracy, exact CI."""
    summary = pooled_summary(predictions)
    return record.Rung(dataset=dataset, order=order, protocol=protocol, level=level, model=model,
                       test_accuracy=summary["accuracy"], ci_low=summary["ci"]["ci_low"],
                       ci_high=summary["ci"]["ci_high"], n_test=summary["images"], splits=summary["folds"],
                       sd=summary["fold_sd"], train_accuracy=train_accuracy)


def rungs_table(rungs: list[record.Rung]) -> pd.DataFrame:
    """The ladder as a table: protocol, level, model, training and test accuracy, exact CI, splits / folds, sd."""
    return pd.DataFrame([{"order": r.order, "protocol": r.protocol, "level": r.level, "model": r.model,
                          "train_accuracy": r.train_accuracy, "test_accuracy": r.test_accuracy, "ci_low": r.ci_low,
                          "ci_high": r.ci_high, "n_test": r.n_test, "splits": r.splits, "sd": r.sd}
                         for r in rungs]).astype({"train_accuracy": float, "sd": float})
