"""A model scored over resamples x training seeds, pooled into one results row.

A *resample* is one seeded group-aware split (``split_seed``) or one cross-validation
fold (``fold``) at a split level; each is trained with one or more training seeds.

- :class:`ResampleRun`, :func:`fit_splits`: one trained seed on one split, with its
  accuracy on its own (un-augmented) training images;
- :func:`pooled`, :func:`model_row`, :func:`majority_row`, :func:`pool`: the pooled row over
  repeated splits: the mean over all runs, the sd across splits and across training seeds
  kept apart (:func:`spread_summary`), the exact CI of all test predictions and the
  bootstrap CI over the pooled test images, every per-image prediction in one CSV;
- :func:`cv_summary`, :func:`cv_model_row`, :func:`cv_majority_row`: the same for a
  cross-validation, where every image is tested once (exact CI pooled over folds);
- :func:`complete`, :func:`ci_table`, :func:`train_accuracy`, :func:`majority`: what a row
  carries beside its accuracy (architecture, training accuracy, an exact CI near 100%).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from .. import experiment, metrics, pipeline, record, training
from ..errors import ParameterError
from ..experiment import Assessed, Prepared, TrainedSeed
from ..progress_lines import LoopProgress
from . import predictions as written

NEAR_PERFECT = 0.95
BOOTSTRAP = "bootstrap over test images of the seed-mean accuracy"
EXACT = "Clopper-Pearson (exact binomial) of the seed-mean accuracy's correct count"
POOLED = "bootstrap over the test images of all split seeds (correctness averaged over training seeds)"


# ---------------------------------------------------------------------------- repeated splits

@dataclass
class ResampleRun:
    """One training seed on one split: the split, the trained seed, its accuracy on its training images."""

    level: str
    prepared: Prepared
    trained: TrainedSeed
    train_accuracy: float | None

    @property
    def split_seed(self) -> int:
        return self.prepared.split.seed

    def labels(self) -> np.ndarray:
        return self.prepared.arrays("test")[1]

    def correct(self) -> np.ndarray:
        return self.trained.probabilities.argmax(axis=1) == self.labels()

    def related(self) -> np.ndarray:
        """Per test image: an image of its field group is on the training side (False where not known)."""
        test = self.prepared.frame[self.prepared.frame["split"] == "test"]
        if "relative_in_train" not in test:
            return np.zeros(len(test), dtype=bool)
        return test["relative_in_train"].to_numpy(bool)

    def predictions(self) -> pd.DataFrame:
        classes = self.prepared.dataset.classes
        test = self.prepared.frame[self.prepared.frame["split"] == "test"]
        extra = {"relative_in_train": self.related()} if "relative_in_train" in test else {}
        return written.frame(self.level, "split_seed", self.split_seed, self.trained.seed, test["path"], classes,
                             self.labels(), self.trained.probabilities, **extra)


def measure_train_accuracy(model, prepared: Prepared, rescale: float = 1 / 255) -> float:
    """Accuracy of ``model`` on the training part of ``prepared``, as stored (no augmentation)."""
    x, y = prepared.arrays("train")
    data = pipeline.make_dataset(x, y, len(prepared.dataset.classes), 128, training=False, rescale=rescale)
    return float(np.mean(training.predict(model, data)[0].argmax(axis=1) == y))


def fit_splits(level: str, prepared: list[Prepared], fit, keep_first_model: bool = True) -> list[ResampleRun]:
    """``fit(prepared)`` (one trained seed per training seed) on every split; models dropped once measured."""
    runs = []
    progress = LoopProgress(len(prepared), f"{level}-level splits", "splits")
    for part in prepared:
        for trained in fit(part):
            if trained.model is None:
                raise ParameterError("fit must keep every model (keep_models=True): its training accuracy is measured")
            runs.append(ResampleRun(level, part, trained, measure_train_accuracy(trained.model, part)))
            if not (keep_first_model and len(runs) == 1):
                trained.model = None
        progress.update(note=f"split seed {part.split.seed} done")
    progress.close()
    return runs


def as_runs(fitted: list[tuple[Prepared, list[TrainedSeed]]]) -> list[ResampleRun]:
    """(split, trained seeds) pairs as runs, each with the training accuracy its training recorded."""
    return [ResampleRun(prepared.split.level, prepared, trained, train_accuracy([trained]))
            for prepared, seeds in fitted for trained in seeds]


def runs_table(runs: list[ResampleRun]) -> pd.DataFrame:
    """One row per run: level, split and training seed, sizes, training and test accuracy, and the test accuracy
    of images with and without a relative (duplicate or same-field twin) on the training side."""
    rows = []
    for r in runs:
        correct, related = r.correct(), r.related()
        rows.append({"level": r.level, "split_seed": r.split_seed, "train_seed": r.trained.seed,
                     "n_train": int((r.prepared.frame["split"] == "train").sum()), "n_test": int(len(correct)),
                     "train_accuracy": r.train_accuracy, "accuracy": float(correct.mean()),
                     "test_with_relative_in_train": int(related.sum()),
                     "accuracy_with_relative": float(correct[related].mean()) if related.any() else np.nan,
                     "accuracy_without_relative": float(correct[~related].mean()) if (~related).any() else np.nan})
    return pd.DataFrame(rows)


def spread_summary(table: pd.DataFrame, value: str = "accuracy") -> dict:
    """Mean of ``value`` over rows ``(split_seed, train_seed, value)``, with both sources of spread.

    ``sd_across_splits`` is the sd of the per-split means (what a new split of the data
    changes); ``sd_across_training_seeds`` is the mean over splits of the sd across training
    seeds within a split (what a new initialisation changes).
    """
    missing = {"split_seed", "train_seed", value} - set(table.columns)
    if missing:
        raise ParameterError(f"spread_summary needs columns {sorted(missing)}")
    per_split = table.groupby("split_seed")[value]
    means = per_split.mean()
    within = per_split.std(ddof=1).dropna()
    return {"mean": float(table[value].mean()), "splits": int(means.size),
            "training_seeds_per_split": int(per_split.size().min()),
            "sd_across_splits": float(means.std(ddof=1)) if means.size > 1 else None,
            "sd_across_training_seeds": float(within.mean()) if within.size else None,
            "per_split_mean": {int(k): float(v) for k, v in means.items()}}


def pooled(runs: list[ResampleRun], n_boot: int = 1000, seed: int = 0) -> dict:
    """Accuracy over all runs of one level: mean, the sd across splits and across training seeds
    (:func:`spread_summary`; ``sd`` is the first, or the second with one split), the exact CI of all test
    predictions pooled, and the bootstrap CI over the pooled test images (each image's correctness averaged over
    training seeds; an image tested in two splits counts twice)."""
    if not runs:
        raise ParameterError("pooled needs at least one run")
    table = runs_table(runs)
    summary = spread_summary(table)
    correct = np.concatenate([r.correct() for r in runs])
    exact = metrics.clopper_pearson_ci(int(correct.sum()), len(correct))
    by_split: dict[int, list[ResampleRun]] = {}
    for r in runs:
        by_split.setdefault(r.split_seed, []).append(r)
    seeds = {tuple(r.trained.seed for r in group) for group in by_split.values()}
    if len(seeds) != 1:
        raise ParameterError(f"every split needs the same training seeds for the pooled bootstrap, got {seeds}")
    groups = list(by_split.values())
    labels = np.concatenate([group[0].labels() for group in groups])
    probabilities = [np.concatenate([group[i].trained.probabilities for group in groups])
                     for i in range(len(groups[0]))]
    bootstrap = experiment.seed_mean_accuracy_ci(labels, probabilities, n_boot, seed)
    sd = summary["sd_across_splits"] if len(groups) > 1 else summary["sd_across_training_seeds"]
    trained = table["train_accuracy"].dropna()
    return {**summary, "sd": sd, "runs": len(table), "train_accuracy": float(trained.mean()) if len(trained) else None,
            "exact": {**exact, "k": int(correct.sum()), "n": int(len(correct)),
                      "method": f"Clopper-Pearson over {len(correct)} pooled test predictions "
                                f"({len(groups)} splits x {len(groups[0])} training seed(s))"},
            "bootstrap": {**bootstrap, "method": f"bootstrap over the {len(labels)} test images of {len(groups)} "
                                                 "split(s), each image's correctness averaged over training seeds"}}


def _finite(value) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def _mean_speed(values: list[record.SeedValue], name: str) -> float | None:
    found = [getattr(v, name) for v in values if getattr(v, name) is not None]
    return round(float(np.mean(found)), 1) if found else None


def model_row(run, key: str, title: str, runs: list[ResampleRun], weights: record.Weights, architecture: str,
              paper_model: str | None = None, paper_value: float | None = None, n_boot: int = 1000,
              summary: dict | None = None, variant: str | None = None) -> record.ModelRow:
    """The results row of a model over repeated splits (:func:`pooled`): one ``seeds`` entry per (split seed,
    training seed), the bootstrap CI, both spreads in ``metrics``, training accuracy and predictions CSV."""
    summary = summary or pooled(runs, n_boot)
    values = [record.SeedValue(seed=r.trained.seed, split_seed=r.split_seed, value=float(r.correct().mean()),
                               train_images_per_s=r.trained.training.get("train_images_per_s"),
                               inference_images_per_s=r.trained.training.get("inference_images_per_s"),
                               chosen=(r.trained.training.get("selection") or {}).get("chosen")) for r in runs]
    spreads = {"accuracy_across_splits": record.Spread(summary["mean"], _finite(summary["sd_across_splits"])),
               "accuracy_across_training_seeds": record.Spread(summary["mean"],
                                                               _finite(summary["sd_across_training_seeds"]))}
    return record.ModelRow(
        key=key, model=title, weights=weights, seeds=values, mean=summary["mean"], sd=_finite(summary["sd"]),
        ci_low=summary["bootstrap"]["ci_low"], ci_high=summary["bootstrap"]["ci_high"],
        n_test=summary["bootstrap"]["n_test"], paper_model=paper_model, paper_value=paper_value, variant=variant,
        train_images_per_s=_mean_speed(values, "train_images_per_s"),
        inference_images_per_s=_mean_speed(values, "inference_images_per_s"), metrics=spreads,
        predictions=written.save_predictions(run, key.replace("+", "_and_"), [r.predictions() for r in runs]),
        architecture=architecture, split_level=runs[0].level, ci_method=summary["bootstrap"]["method"],
        train_accuracy=summary["train_accuracy"])


def majority_row(run, prepared: list[Prepared], level: str) -> record.ModelRow:
    """The majority-class baseline on the same splits: each split's most frequent training class for every test
    image. Exact CI over the pooled test images."""
    runs = [ResampleRun(level, part, majority(part), None) for part in prepared]
    values = [record.SeedValue(seed=0, split_seed=r.split_seed, value=float(r.correct().mean())) for r in runs]
    hits = np.concatenate([r.correct() for r in runs])
    exact = metrics.clopper_pearson_ci(int(hits.sum()), len(hits))
    accuracies = [v.value for v in values]
    return record.ModelRow(
        key="majority", model="majority class", weights=record.Weights("none (no training)"), seeds=values,
        mean=float(np.mean(accuracies)), sd=float(np.std(accuracies, ddof=1)) if len(values) > 1 else None,
        ci_low=exact["ci_low"], ci_high=exact["ci_high"], n_test=len(hits),
        predictions=written.save_predictions(run, "majority", [r.predictions() for r in runs]),
        architecture="majority class", split_level=level,
        ci_method=f"Clopper-Pearson over {len(hits)} pooled test images")


def pool(run, key: str, title: str, fitted: list[tuple[Prepared, list[TrainedSeed]]], n_boot: int,
         weights: record.Weights, architecture: str, paper_model: str | None = None,
         paper_value: float | None = None, variant: str | None = None) -> Assessed:
    """:func:`model_row` of a model trained on every split, with the full evaluation of the first split.

    Figures and the per-class table are those of the first split; ``evaluation['over_seeds']``
    summarises every metric over all (split, training seed) runs, ``evaluation['repeated_splits']``
    gives both sources of spread. The row's CI is exact from :data:`NEAR_PERFECT` on (:func:`complete`).
    """
    first = experiment.assess(run, key, title, *fitted[0], n_boot, weights, paper_model, paper_value, variant)
    evaluations = [first.evaluation] + [experiment.evaluate(p, t, n_boot) for p, t in fitted[1:]]
    per_run = [s for e in evaluations for s in e["per_seed"]]
    over = {k: metrics.seed_summary([s[k] for s in per_run]) for k in first.evaluation["over_seeds"]}
    runs = as_runs(fitted)
    summary = pooled(runs, n_boot)
    row = model_row(run, key, title, runs, weights, architecture, first.row.paper_model, first.row.paper_value,
                    summary=summary, variant=variant)
    row = replace(row, figures=first.row.figures, metrics={
        **row.metrics, **{k: record.Spread(_finite(v["mean"]), _finite(v["sd"])) for k, v in over.items()
                          if k != "accuracy"}})
    evaluation = {**first.evaluation, "over_seeds": over, "accuracy_seed_mean_ci": summary["bootstrap"],
                  "repeated_splits": summary, "accuracy_table": runs_table(runs).to_dict(orient="records")}
    assessed = Assessed(row, evaluation, first.trained, first.prepared, selection(title, fitted),
                        dict(first.details))
    return complete(assessed, architecture, summary["bootstrap"]["method"])


def selection(model: str, fitted: list[tuple[Prepared, list[TrainedSeed]]]) -> record.Selection | None:
    """The selections made on every split, each entry prefixed with its split seed."""
    found = [(prepared.split.seed, experiment.selection_record(model, trained)) for prepared, trained in fitted]
    found = [(seed, chosen) for seed, chosen in found if chosen]
    if not found:
        return None
    first = found[0][1]
    return record.Selection(model=model, what=first.what, on=first.on,
                            chosen=[f"split {seed}, {c}" for seed, s in found for c in s.chosen],
                            tried=[record.Tried(f"split {seed}, {t.configuration}", t.score)
                                   for seed, s in found for t in s.tried])


def spread_table(assessed: list[Assessed]) -> pd.DataFrame:
    """Per pooled row: mean accuracy, sd across splits and across training seeds, and each split's mean."""
    rows = []
    for result in assessed:
        spread = result.evaluation["repeated_splits"]
        rows.append({"model": result.row.model, "weights": result.row.weights.label, "mean": spread["mean"],
                     "sd across splits": spread["sd_across_splits"],
                     "sd across training seeds": spread["sd_across_training_seeds"], "splits": spread["splits"],
                     "training seeds per split": spread["training_seeds_per_split"],
                     **{f"split {k}": v for k, v in spread["per_split_mean"].items()}})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- cross-validation

def fold_table(predictions: pd.DataFrame) -> pd.DataFrame:
    """Images and accuracy per fold."""
    correct = predictions["true"] == predictions["predicted"]
    return correct.groupby(predictions["fold"]).agg(images="size", accuracy="mean").reset_index()


def cv_summary(predictions: pd.DataFrame) -> dict:
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


def cv_predictions(predictions: pd.DataFrame, paths, classes, split_level: str, seed: int = 0,
                   columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """A cross-validation's per-image predictions (:func:`~.resamples.cross_validate`; ``paths`` by image index) in
    the one CSV schema, with the extra ``columns`` of ``predictions`` (e.g. ``case``)."""
    index = predictions["index"].to_numpy()
    return written.frame(split_level, "fold", predictions["fold"].to_numpy(), seed, np.asarray(paths, dtype=str)[index],
                         classes, predictions["true"].to_numpy(), predictions[[f"p_{c}" for c in classes]].to_numpy(),
                         **{c: predictions[c].to_numpy() for c in columns})


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


def cv_majority_row(run, key: str, predictions: pd.DataFrame, paths, classes, split_level: str,
                    **extra) -> record.ModelRow:
    """The majority-class row of a cross-validation (:func:`majority_predictions` of its folds)."""
    return cv_model_row(run, key, "majority class", majority_predictions(predictions, classes), paths, classes,
                        record.Weights("none (no training)"), split_level, architecture="majority class", **extra)


def cv_model_row(run, key: str, model: str, predictions: pd.DataFrame, paths, classes, weights: record.Weights,
                 split_level: str, architecture: str | None = None, train_accuracy: float | None = None,
                 chosen: list[str] | None = None, seed: int = 0, columns: tuple[str, ...] = (),
                 **extra) -> record.ModelRow:
    """The results row of a cross-validated model, its predictions saved in the one CSV schema.

    ``mean`` is the accuracy pooled over all images with its exact (Clopper-Pearson) CI;
    ``sd`` is across folds; each fold is one entry of ``seeds`` (with what was ``chosen``
    in it). ``columns`` of ``predictions`` are written to the CSV too; ``extra`` goes to
    :class:`hemasuite.record.ModelRow` (paper_model, variant, ...).
    """
    summary = cv_summary(predictions)
    folds = fold_table(predictions)
    chosen = [*(chosen or []), *[None] * (len(folds) - len(chosen or []))]
    return record.ModelRow(
        key=key, model=model, weights=weights, mean=summary["accuracy"], sd=summary["fold_sd"],
        seeds=[record.SeedValue(seed=seed, value=float(r.accuracy), fold=int(r.fold), chosen=c)
               for r, c in zip(folds.itertuples(), chosen)],
        ci_low=summary["ci"]["ci_low"], ci_high=summary["ci"]["ci_high"], n_test=summary["images"],
        predictions=written.save_predictions(run, key, cv_predictions(predictions, paths, classes, split_level, seed,
                                                                     columns)),
        architecture=architecture, split_level=split_level,
        ci_method="Clopper-Pearson" + (f", pooled over {summary['folds']} folds" if summary["folds"] > 1 else ""),
        train_accuracy=train_accuracy, **extra)


# ---------------------------------------------------------------------------- what a row carries

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
    row.train_accuracy = train_accuracy(assessed.trained) if row.train_accuracy is None else row.train_accuracy
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
