"""Repeated group-aware splits of one dataset, and the leakage ladder built from them.

One model, its settings fixed beforehand, is trained on several seeded splits of a dataset
at one or more split levels (:data:`hemasuite.validation.SPLIT_LEVELS`), leakiest first:

- :func:`split_once`: one seeded split at a level, groups from one validation report, the
  manifest saved as ``splits/<level>_seed<k>.csv``; the images are shared by every split;
- :func:`fit_splits`: ``fit`` on every split, with each model's accuracy on its own
  (un-augmented) training images beside its test accuracy;
- :func:`runs_table`, :func:`predictions`, :func:`pooled`: per run, per test image, and
  pooled over runs (exact binomial CI, bootstrap CI over images, sd across splits and
  across training seeds kept apart);
- :func:`model_row`, :func:`majority_row`: results rows of the model and of the
  majority-class baseline on the same splits;
- :func:`rungs`, :func:`table`, :func:`figure`: the ladder, one :class:`hemasuite.record.Rung`
  per level.

Each test image is also marked when an image of its field group (exact or near duplicate,
or same-field twin) is on the training side: what a leakier split lets the model see.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import augment, crossval, experiment, metrics, models, pipeline, record, training, validation
from .errors import ParameterError
from .experiment import Prepared, TrainedSeed

ORDER = ("image", "duplicate", "field", "case")  # leakiest first
PROTOCOLS = {"image": "random image split",
             "duplicate": "exact + pHash duplicate groups on one side",
             "field": "field-disjoint groups (duplicates + same-field twins on one side)",
             "case": "case-disjoint groups"}


@dataclass
class SplitRun:
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
        """Per test image: an image of its field group is on the training side."""
        return self.prepared.frame.loc[self.prepared.frame["split"] == "test", "relative_in_train"].to_numpy(bool)


def split_once(run, dataset, report: validation.ValidationReport, level: str, seed: int, fractions,
               images: np.ndarray, size: int, preprocess_name: str | None = None) -> Prepared:
    """A seeded split at ``level`` (:func:`hemasuite.experiment.make_split`) over the shared ``images`` (frame order).

    Adds ``relative_in_train``: the image's field group (duplicates and same-field twins of
    ``report``) has a member in the training part.
    """
    if len(images) != len(dataset.frame):
        raise ParameterError(f"{len(images)} images for {len(dataset.frame)} rows of {dataset.name}")
    frame, split = experiment.make_split(run, dataset, fractions, seed, level, report,
                                         manifest=f"splits/{level}_seed{seed}.csv")
    field = validation.level_groups(frame, report, "field")
    trained_groups = set(field[frame["split"] == "train"])
    frame["relative_in_train"] = field.isin(trained_groups) & (frame["split"] != "train")
    return Prepared(dataset, frame, images, size, {"preprocess": preprocess_name or "resize (bilinear)"}, split)


def train_accuracy(model, prepared: Prepared, rescale: float = 1 / 255) -> float:
    """Accuracy of ``model`` on the training part of ``prepared``, as stored (no augmentation)."""
    x, y = prepared.arrays("train")
    data = pipeline.make_dataset(x, y, len(prepared.dataset.classes), 128, training=False, rescale=rescale)
    return float(np.mean(training.predict(model, data)[0].argmax(axis=1) == y))


def fit_splits(level: str, prepared: list[Prepared], fit: Callable[[Prepared], list[TrainedSeed]],
               keep_first_model: bool = True) -> list[SplitRun]:
    """``fit(prepared)`` (one trained seed per training seed) on every split; models dropped once measured."""
    runs = []
    for part in prepared:
        for trained in fit(part):
            if trained.model is None:
                raise ParameterError("fit must keep every model (keep_models=True): its training accuracy is measured")
            runs.append(SplitRun(level, part, trained, train_accuracy(trained.model, part)))
            if not (keep_first_model and len(runs) == 1):
                trained.model = None
    return runs


def cnn_fit(size: int, n_classes: int, seeds, epochs: int, batch_size: int, learning_rate: float,
            augmentation: str, stem_stride: int = 1, stem_kernel: int = 3) -> Callable[[Prepared], list[TrainedSeed]]:
    """``fit`` of :func:`fit_splits`: P1's deep CNN (optional strided stem), Adam with cosine decay, last epoch."""
    def build():
        return models.p1_deep_cnn((size, size, 3), n_classes, stem_stride=stem_stride, stem_kernel=stem_kernel)

    def fit(prepared: Prepared) -> list[TrainedSeed]:
        return experiment.train_seeds(prepared, build, seeds, epochs, batch_size,
                                      training.adam(learning_rate, epochs, "cosine"),
                                      augment=augment.cell_augmentation(augmentation), keep_models=True, verbose=0)
    return fit


def cnn_name(size: int, stem_stride: int = 1, stem_kernel: int = 3) -> str:
    """The model of :func:`cnn_fit` in words."""
    stem = f", {stem_kernel}x{stem_kernel} stride-{stem_stride} stem" if stem_stride > 1 else ""
    return f"P1 deep CNN, {size} px{stem}"


def runs_table(runs: list[SplitRun]) -> pd.DataFrame:
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


def predictions(runs: list[SplitRun]) -> pd.DataFrame:
    """Every run's test predictions: level, split seed, training seed, path, split, true, predicted, probabilities."""
    parts = []
    for r in runs:
        classes = r.prepared.dataset.classes
        test = r.prepared.frame[r.prepared.frame["split"] == "test"]
        part = pd.DataFrame({"level": r.level, "split_seed": r.split_seed, "seed": r.trained.seed,
                             "path": test["path"].to_numpy(), "split": "test",
                             "true": [classes[i] for i in r.labels()],
                             "predicted": [classes[i] for i in r.trained.probabilities.argmax(axis=1)],
                             "relative_in_train": r.related()})
        probabilities = pd.DataFrame(r.trained.probabilities, columns=[f"p_{c}" for c in classes]).round(5)
        parts.append(pd.concat([part, probabilities], axis=1))
    return pd.concat(parts, ignore_index=True)


def pooled(runs: list[SplitRun], n_boot: int = 1000, seed: int = 0) -> dict:
    """Accuracy over all runs of one level: mean, sd over runs, sd across splits and across training seeds
    (:func:`hemasuite.crossval.repeated_split_summary`), the exact CI of all test predictions pooled, and the
    bootstrap CI over the pooled test images (each image's correctness averaged over training seeds)."""
    if not runs:
        raise ParameterError("pooled needs at least one run")
    table = runs_table(runs)
    summary = crossval.repeated_split_summary(table)
    correct = np.concatenate([r.correct() for r in runs])
    exact = metrics.clopper_pearson_ci(int(correct.sum()), len(correct))
    by_split: dict[int, list[SplitRun]] = {}
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
    return {**summary, "sd": float(table["accuracy"].std(ddof=1)) if len(table) > 1 else None,
            "runs": len(table), "train_accuracy": float(table["train_accuracy"].mean()),
            "exact": {**exact, "k": int(correct.sum()), "n": int(len(correct)),
                      "method": f"Clopper-Pearson over {len(correct)} pooled test predictions "
                                f"({len(groups)} splits x {len(groups[0])} training seed(s))"},
            "bootstrap": {**bootstrap, "method": f"bootstrap over the {len(labels)} test images of {len(groups)} "
                                                 "splits, each image's correctness averaged over training seeds"}}


def _finite(value) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def save_predictions(run, name: str, frame: pd.DataFrame) -> str:
    """``predictions/<name>.csv`` of ``run``; returns its relative path."""
    return run.save_predictions(frame, name)


def model_row(run, key: str, title: str, runs: list[SplitRun], weights: record.Weights, architecture: str,
              paper_model: str | None = None, paper_value: float | None = None, n_boot: int = 1000,
              summary: dict | None = None) -> record.ModelRow:
    """The results row of a model over repeated splits: per run values, mean, sd over runs, the pooled bootstrap CI,
    the sd across splits and across training seeds (``metrics``), its training accuracy and predictions CSV."""
    summary = summary or pooled(runs, n_boot)
    values = [record.SeedValue(seed=r.trained.seed, split_seed=r.split_seed, value=float(r.correct().mean()),
                               train_images_per_s=r.trained.training.get("train_images_per_s"),
                               inference_images_per_s=r.trained.training.get("inference_images_per_s"),
                               chosen=(r.trained.training.get("selection") or {}).get("chosen")) for r in runs]
    speeds = {k: [getattr(v, k) for v in values if getattr(v, k) is not None]
              for k in ("train_images_per_s", "inference_images_per_s")}
    spreads = {"accuracy_across_splits": record.Spread(summary["mean"], _finite(summary["sd_across_splits"])),
               "accuracy_across_training_seeds": record.Spread(summary["mean"],
                                                               _finite(summary["sd_across_training_seeds"]))}
    return record.ModelRow(
        key=key, model=title, weights=weights, seeds=values, mean=summary["mean"], sd=_finite(summary["sd"]),
        ci_low=summary["bootstrap"]["ci_low"], ci_high=summary["bootstrap"]["ci_high"],
        n_test=summary["bootstrap"]["n_test"], paper_model=paper_model, paper_value=paper_value,
        train_images_per_s=round(float(np.mean(speeds["train_images_per_s"])), 1) if speeds["train_images_per_s"]
        else None,
        inference_images_per_s=round(float(np.mean(speeds["inference_images_per_s"])), 1)
        if speeds["inference_images_per_s"] else None,
        metrics=spreads, predictions=save_predictions(run, key, predictions(runs)), architecture=architecture,
        split_level=runs[0].level, ci_method=summary["bootstrap"]["method"], train_accuracy=summary["train_accuracy"])


def majority_row(run, prepared: list[Prepared], level: str) -> record.ModelRow:
    """The majority-class baseline on the same splits: each split's most frequent training class for every test
    image. Exact CI over the pooled test images."""
    values, correct, parts = [], [], []
    for part in prepared:
        _, y_train = part.arrays("train")
        _, y_test = part.arrays("test")
        majority = int(np.bincount(y_train, minlength=len(part.dataset.classes)).argmax())
        hits = y_test == majority
        values.append(record.SeedValue(seed=0, split_seed=part.split.seed, value=float(hits.mean())))
        correct.append(hits)
        probabilities = np.eye(len(part.dataset.classes))[np.full(len(y_test), majority)]
        parts.append(SplitRun(level, part, TrainedSeed(0, probabilities, {}, {}), None))
    pooled_hits = np.concatenate(correct)
    exact = metrics.clopper_pearson_ci(int(pooled_hits.sum()), len(pooled_hits))
    accuracies = [v.value for v in values]
    return record.ModelRow(
        key="majority", model="majority class", weights=record.Weights("none (no training)"), seeds=values,
        mean=float(np.mean(accuracies)), sd=float(np.std(accuracies, ddof=1)) if len(values) > 1 else None,
        ci_low=exact["ci_low"], ci_high=exact["ci_high"], n_test=len(pooled_hits),
        predictions=save_predictions(run, "majority", predictions(parts)), architecture="majority class",
        split_level=level, ci_method=f"Clopper-Pearson over {len(pooled_hits)} pooled test images")


def rungs(runs: list[SplitRun], dataset: str, model: str, n_boot: int = 1000) -> list[record.Rung]:
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


def table(ladder: list[record.Rung], runs: list[SplitRun]) -> pd.DataFrame:
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


def splits_table(prepared: dict[str, list[Prepared]]) -> pd.DataFrame:
    """Per level and split seed: groups merged, test images, and test images with a relative on the training side."""
    rows = []
    for level, parts in prepared.items():
        for part in parts:
            test = part.frame[part.frame["split"] == "test"]
            rows.append({"level": level, "split_seed": part.split.seed, "groups_merged": part.split.duplicates_merged,
                         "test": len(test), "test_with_relative_in_train": int(test["relative_in_train"].sum())})
    return pd.DataFrame(rows)


def split_records(prepared: list[Prepared]) -> list[dict]:
    """Each split's level, seed, manifest and its SHA-256, and counts, for results.json."""
    return [record.to_jsonable(vars(part.split)) for part in prepared]


def shared_images(prepared: Prepared, images: np.ndarray, size: int) -> Prepared:
    """``prepared`` over another decoding of the same frame (e.g. another input size)."""
    if len(images) != len(prepared.frame):
        raise ParameterError(f"{len(images)} images for a split of {len(prepared.frame)} rows")
    return replace(prepared, images=images, size=size)


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
