"""The train-and-evaluate workflow every replication notebook shares.

1. :func:`prepare`: validate, merge duplicates, same-field twins and cases into groups,
   make, check and save the group-aware split, decode the images once.
2. :func:`train_seeds`: train one architecture with several seeds through
   :func:`hemasuite.training.train` and predict the test set.
3. :func:`evaluate`: per-seed metrics with bootstrap CIs, mean +/- sd over seeds, a
   bootstrap CI of the seed-mean accuracy, P1's per-class table, calibration.
4. :func:`report`: the standard figures and tables of one model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from . import config, metrics, pipeline, plots, same_field, splits, training, validation
from .datasets import Dataset
from .errors import ParameterError
from .results import Run


@dataclass
class Prepared:
    """A dataset with its split and its decoded images (frame order)."""

    dataset: Dataset
    frame: pd.DataFrame
    images: np.ndarray
    size: int
    protocol: dict

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Images and integer labels of one split."""
        mask = (self.frame["split"] == split).to_numpy()
        return self.images[mask], self.dataset.label_ids[mask]

    def has(self, split: str) -> bool:
        return bool((self.frame["split"] == split).any())


def prepare(run: Run, dataset: Dataset, fractions, seed: int, size: int,
            preprocess: Callable[[np.ndarray], np.ndarray] | None = None, preprocess_name: str | None = None,
            near_threshold: int = validation.NEAR_THRESHOLD, level: str | None = None) -> Prepared:
    """Stratified, seeded split of ``dataset`` that keeps the groups of ``level`` on one side.

    ``level`` is a key of :data:`hemasuite.validation.SPLIT_LEVELS`; default: ``case``
    where the dataset publishes case / subject ids, else ``field``. Above ``image`` level,
    splits of field images (smears, tissue) are also checked for look-alike images across
    sides (phase correlation). The manifest is saved as ``split_manifest.csv``.
    """
    level = level or validation.default_level(dataset)
    report = validation.validate(dataset, near_threshold=near_threshold)
    frame = dataset.frame.copy()
    frame["duplicate_group"] = validation.duplicate_group_ids(frame, report)
    frame["split_group"] = validation.level_groups(frame, report, level)
    frame = splits.split_dataset(frame, fractions=fractions, seed=seed, groups="split_group")
    scenes = dataset.info.get("image_kind") == "field"  # the similarity check is calibrated on scenes, not on cells
    thumbs = same_field.thumbnails(frame["path"]) if scenes and level != "image" else None
    splits.assert_no_leakage(frame, "split_group", images=thumbs)
    splits.save_manifest(frame, run.path("split_manifest.csv"))
    images = pipeline.load_images(frame, size, cache_dir=config.cache_dir())
    if preprocess is not None:
        images = preprocess(images)
    merged = int(len(frame) - frame["split_group"].nunique())
    protocol = {"dataset": dataset.display_name, "synthetic": dataset.synthetic, "stand_in": dataset.stand_in,
                "split": {"method": "stratified, group-aware: " + validation.SPLIT_LEVELS[level],
                          "level": level, "fractions": list(fractions), "seed": seed,
                          "manifest": "split_manifest.csv", "images_merged_into_duplicate_groups": merged,
                          "same_field_pairs": int(len(report.same_field_pairs)),
                          "counts": splits.split_summary(frame).to_dict()},
                "input_size": [size, size, 3], "preprocess": preprocess_name or "resize (bilinear)"}
    return Prepared(dataset, frame, images, size, protocol)


@dataclass
class SeedRun:
    """One trained seed: its test probabilities and training record."""

    seed: int
    probabilities: np.ndarray
    history: dict
    training: dict
    model: object = field(repr=False, default=None)


def train_seeds(prepared: Prepared, build: Callable, seeds, epochs: int, batch_size: int, optimizer: Callable,
                augment: Callable[[int], Callable] | None = None, rescale: float = 1 / 255,
                keep_models: bool = False, verbose: int = 2, tta: bool = False,
                restore_best: bool = False) -> list[SeedRun]:
    """Train ``build()`` once per seed; ``augment(seed)`` returns the training-only augmentation.

    ``optimizer(steps_per_epoch)`` returns a fresh optimiser factory argument for
    :func:`training.train`. With ``tta``, test probabilities are averaged over the eight
    flips and right-angle rotations of each image (:func:`dihedral_predict`). With
    ``restore_best``, the weights of the epoch with the best validation accuracy (ties:
    lowest validation loss) are kept (model selection on the validation split; the test
    split is never looked at). The
    model of the first seed is kept (for Grad-CAM); others only when ``keep_models``.
    """
    n_classes = len(prepared.dataset.classes)
    x_train, y_train = prepared.arrays("train")
    x_test, y_test = prepared.arrays("test")
    test_data = pipeline.make_dataset(x_test, y_test, n_classes, 128, training=False, rescale=rescale)
    val_data = None
    if prepared.has("val"):
        x_val, y_val = prepared.arrays("val")
        val_data = pipeline.make_dataset(x_val, y_val, n_classes, 128, training=False, rescale=rescale)
    if restore_best and val_data is None:
        raise ParameterError("restore_best needs a validation split; this split has none")
    steps = int(np.ceil(len(y_train) / batch_size))
    runs = []
    for index, seed in enumerate(seeds):
        config.set_seeds(seed)
        train_data = pipeline.make_dataset(x_train, y_train, n_classes, batch_size, training=True, seed=seed,
                                           augment=augment(seed) if augment else None, rescale=rescale)
        selector = training.BestValidationEpoch() if restore_best else None
        result = training.train(build, train_data, len(y_train), epochs, lambda: optimizer(steps),
                                val_data=val_data, verbose=verbose, callbacks=[selector] if selector else None)
        if tta:
            probabilities, inference_speed = dihedral_predict(result.model, x_test, y_test, n_classes, rescale)
        else:
            probabilities, inference_speed = training.predict(result.model, test_data)
        record = {**result.summary(), "inference_images_per_s": round(inference_speed, 1),
                  "test_time_augmentation": "8 dihedral views, probabilities averaged" if tta else None,
                  "weights_from_epoch": selector.best_epoch + 1 if selector else epochs}
        runs.append(SeedRun(seed, probabilities, result.history, record,
                            result.model if keep_models or index == 0 else None))
    return runs


def model_selection(restore_best: bool) -> str:
    """results.json / deviation text of :func:`train_seeds`' ``restore_best``."""
    return "best validation-accuracy epoch (ties: lowest validation loss)" if restore_best else "last epoch"


def dihedral_predict(model, images: np.ndarray, labels: np.ndarray, n_classes: int,
                     rescale: float = 1 / 255) -> tuple[np.ndarray, float]:
    """Class probabilities averaged over the 8 flips / right-angle rotations of each (square) image.

    Returns the probabilities and the images per second counted per original image.
    """
    views = [np.rot90(images, k, axes=(1, 2)) for k in range(4)]
    views += [view[:, :, ::-1] for view in views]
    predictions = [training.predict(model, pipeline.make_dataset(np.ascontiguousarray(view), labels, n_classes, 128,
                                                                 training=False, rescale=rescale))
                   for view in views]
    seconds = sum(len(images) / speed for _, speed in predictions)
    return np.mean([p for p, _ in predictions], axis=0), len(images) / max(seconds, 1e-9)


def adam(learning_rate: float, epochs: int, schedule: str = "cosine") -> Callable:
    """Optimiser factory ``f(steps_per_epoch)``: Adam, constant or cosine-decayed learning rate."""
    import keras

    config.check_choice("schedule", schedule, ["cosine", "constant"])

    def make(steps_per_epoch: int):
        rate = learning_rate
        if schedule == "cosine":
            rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, epochs * steps_per_epoch))
        return keras.optimizers.Adam(rate)

    return make


def sgd(learning_rate: float, momentum: float = 0.0) -> Callable:
    """Optimiser factory ``f(steps_per_epoch)``: plain SGD with optional momentum (P2, P5)."""
    import keras

    return lambda _steps: keras.optimizers.SGD(learning_rate, momentum=momentum)


def seed_mean_accuracy_ci(y_true, probabilities: list[np.ndarray], n_boot: int = 1000, seed: int = 0,
                          alpha: float = 0.05) -> dict:
    """Bootstrap CI (test images resampled) of the accuracy averaged over seeds."""
    y_true = np.asarray(y_true)
    correct = np.stack([p.argmax(axis=1) == y_true for p in probabilities]).mean(axis=0)
    rng = np.random.default_rng(seed)
    samples = correct[rng.integers(0, len(y_true), (n_boot, len(y_true)))].mean(axis=1)
    low, high = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    return {"value": float(correct.mean()), "ci_low": float(low), "ci_high": float(high), "n_boot": n_boot,
            "n_test": int(len(y_true))}


def evaluate(prepared: Prepared, runs: list[SeedRun], n_boot: int = 1000) -> dict:
    """Metrics of every seed, their mean +/- sd, and the bootstrap CI of the seed-mean accuracy."""
    classes = prepared.dataset.classes
    _, y_test = prepared.arrays("test")
    per_seed = []
    for run in runs:
        summary = metrics.summary_metrics(y_test, run.probabilities, classes)
        summary["bootstrap"] = metrics.bootstrap_summary(y_test, run.probabilities, classes, n_boot, seed=run.seed)
        summary["ece"] = metrics.expected_calibration_error(y_test, run.probabilities)
        per_seed.append({"seed": run.seed, **summary, "training": run.training})
    headline = ("accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc_macro",
                "sensitivity_macro", "specificity_macro", "ece")
    over_seeds = {k: metrics.seed_summary([s[k] for s in per_seed]) for k in headline if k in per_seed[0]}
    return {"seeds": [r.seed for r in runs], "n_test": int(len(y_test)), "over_seeds": over_seeds,
            "accuracy_seed_mean_ci": seed_mean_accuracy_ci(y_test, [r.probabilities for r in runs], n_boot),
            "per_seed": per_seed}


def pooled_per_class_table(prepared: Prepared, runs: list[SeedRun]) -> pd.DataFrame:
    """P1's Table 2 (TP TN FP FN ACC PRE SEN F1 SP) per class: counts of the first seed, rates mean over seeds."""
    classes = prepared.dataset.classes
    _, y_test = prepared.arrays("test")
    tables = [metrics.per_class_table(y_test, r.probabilities.argmax(axis=1), classes) for r in runs]
    table = tables[0].copy()
    rates = [c for c in ("ACC", "PRE", "SEN", "F1", "SP") if c in table.columns]
    table[rates] = np.mean([t[rates].to_numpy(dtype=float) for t in tables], axis=0)
    return table


def report(run: Run, name: str, title: str, prepared: Prepared, runs: list[SeedRun], evaluation: dict) -> dict:
    """Curves, confusion matrix, ROC, reliability diagram and tables of one model; returns figure paths."""
    classes = prepared.dataset.classes
    _, y_test = prepared.arrays("test")
    first = runs[0].probabilities
    label = f"{title} - {prepared.dataset.display_name}"
    figures = {}
    if any(r.history for r in runs):
        figures["training_curves"] = plots.training_curves(
            [r.history for r in runs], f"{label}: training curves (seeds {', '.join(str(r.seed) for r in runs)})")
    figures |= {
        "confusion_matrix": plots.confusion_matrix(evaluation["per_seed"][0]["confusion_matrix"], classes,
                                                   f"{label}: test confusion matrix (seed {runs[0].seed})"),
        "roc": plots.roc_curves(y_test, first, classes, f"{label}: one-vs-rest ROC (seed {runs[0].seed})"),
        "reliability": plots.reliability_diagram(metrics.reliability_table(y_test, first),
                                                 metrics.expected_calibration_error(y_test, first),
                                                 f"{label}: reliability (seed {runs[0].seed})"),
    }
    saved = {key: str(run.save_figure(fig, f"{name}_{key}").relative_to(run.dir)) for key, fig in figures.items()}
    run.save_table(pooled_per_class_table(prepared, runs), f"{name}_per_class")
    return saved


def gradcam_examples(run: Run, name: str, title: str, prepared: Prepared, seed_run: SeedRun,
                     rescale: float = 1 / 255, per_class: int = 2) -> dict:
    """Grad-CAM overlays of correct and wrong test predictions of every class (first seed's model)."""
    from . import explain

    classes = prepared.dataset.classes
    x_test, y_test = prepared.arrays("test")
    y_pred = seed_run.probabilities.argmax(axis=1)
    chosen, notes = explain.select_examples(y_test, y_pred, classes, per_class=per_class, seed=seed_run.seed)
    if chosen.empty:
        return {"figure": None, "notes": notes}
    images = x_test[chosen["index"].to_numpy()]
    maps = explain.gradcam(seed_run.model, images.astype("float32") * rescale)
    captions = [f"{r.outcome}: true {r.true}\npredicted {r.predicted}" for r in chosen.itertuples()]
    figure = plots.gradcam_grid(images, maps, captions,
                                f"{title} - {prepared.dataset.display_name}: Grad-CAM (seed {seed_run.seed})")
    path = run.save_figure(figure, f"{name}_gradcam")
    return {"figure": str(path.relative_to(run.dir)), "examples": chosen.to_dict(orient="records"), "notes": notes}


def comparison_row(model: str, evaluation: dict | None, paper_value: float | None, weights: str,
                   metric: str = "accuracy") -> dict:
    """One row of a paper-vs-this-run table: paper value, seed mean +/- sd, CI."""
    row = {"model": model, "weights": weights, "paper": paper_value, "mean": np.nan, "sd": np.nan,
           "ci_low": np.nan, "ci_high": np.nan, "seeds": 0}
    if evaluation is not None:
        stats = evaluation["over_seeds"][metric]
        ci = evaluation["accuracy_seed_mean_ci"] if metric == "accuracy" else \
            evaluation["per_seed"][0]["bootstrap"].get(metric, {})
        row.update(mean=stats["mean"], sd=stats["sd"], ci_low=ci.get("ci_low", np.nan),
                   ci_high=ci.get("ci_high", np.nan), seeds=stats["n"])
    return row


def with_size(prepared: Prepared, size: int) -> Prepared:
    """The same split decoded at another input size (cached on disk like the first)."""
    if size == prepared.size:
        return prepared
    images = pipeline.load_images(prepared.frame, size, cache_dir=config.cache_dir())
    return Prepared(prepared.dataset, prepared.frame, images, size,
                    {**prepared.protocol, "input_size": [size, size, 3]})


def per_class_correct(prepared: Prepared, seed_run: SeedRun) -> pd.DataFrame:
    """P4's per-class layout: correct / total test images per class."""
    _, y_test = prepared.arrays("test")
    hit = seed_run.probabilities.argmax(axis=1) == y_test
    return pd.DataFrame({"class": prepared.dataset.classes,
                         "correct": [int(hit[y_test == c].sum()) for c in range(len(prepared.dataset.classes))],
                         "total": [int((y_test == c).sum()) for c in range(len(prepared.dataset.classes))]})


BASELINE_PAPER_NAMES = {"knn": "KNN", "resnet50": "ResNet50", "densenet121": "DenseNet"}


def run_baselines(run: Run, prepared: Prepared, names, size: int, epochs: int, batch_size: int,
                  learning_rate: float, weights, seed: int, n_boot: int) -> dict:
    """P4's baselines on the same split: KNN on pixels and ImageNet-style backbones with a softmax head."""
    from . import baselines, models

    config.check_known(dict.fromkeys(names), set(BASELINE_PAPER_NAMES), "baselines")
    results = {}
    for name in names:
        if name == "knn":
            fitted = baselines.knn(prepared.arrays("train"), prepared.arrays("val"), prepared.arrays("test"))
            runs = [SeedRun(seed, fitted.pop("probabilities"), {}, fitted)]
            source, label, input_size, trained_epochs = prepared, "none (no training)", prepared.size, None
        else:
            source = with_size(prepared, size)
            shape, n_classes = (size, size, 3), len(prepared.dataset.classes)
            runs = train_seeds(source, lambda: models.transfer_classifier(name, shape, n_classes, weights=weights),
                               [seed], epochs, batch_size, adam(learning_rate, epochs, "constant"), rescale=1.0)
            label, input_size, trained_epochs = models.weights_label(name, weights), size, epochs
        evaluation = evaluate(source, runs, n_boot)
        figures = report(run, f"baseline_{name}", BASELINE_PAPER_NAMES[name], source, runs, evaluation)
        results[name] = {"paper_name": BASELINE_PAPER_NAMES[name], "weights": label, "input": input_size,
                         "epochs": trained_epochs, "accuracy": evaluation["over_seeds"]["accuracy"]["mean"],
                         "details": runs[0].training, "evaluation": evaluation, "figures": figures}
    return results


def paper_vs_figure(table: pd.DataFrame, title: str):
    """Dot plot of the paper's value and this run's mean with its CI, per model."""
    return plots.paper_vs_reproduced(table.assign(model=table["model"] + " (" + table["weights"] + ")"), title)


def deviations(profile: str, items: dict) -> list[str]:
    """The deviations from the paper, each as one line, with what the profile implies."""
    notes = {"smoke": "profile smoke: SYNTHETIC images; the numbers say nothing about the paper",
             "cpu": "profile cpu: real images at reduced scale for 2 CPU cores (see the items below)",
             "paper": "profile paper: the paper's settings where it states them"}
    return [notes.get(profile, f"profile {profile}")] + [f"{key}: {value}" for key, value in items.items()]


def verdict(model: str, evaluation: dict, target: float, synthetic: bool = False) -> str:
    """One Markdown paragraph: seed-mean accuracy, CI, and the gap to the target."""
    acc = evaluation["over_seeds"]["accuracy"]
    ci = evaluation["accuracy_seed_mean_ci"]
    text = (f"**{model}**: test accuracy {acc['mean']:.2%} +/- {acc['sd']:.2%} (mean +/- sd over {acc['n']} "
            f"seeds; bootstrap 95% CI of the mean {ci['ci_low']:.2%} to {ci['ci_high']:.2%}, n = {ci['n_test']}). ")
    gap = acc["mean"] - target
    text += (f"Target {target:.2%} reached (+{gap:.2%})." if gap >= 0 else
             f"Target {target:.2%} missed by {-gap:.2%}.")
    if synthetic:
        text += " SYNTHETIC data: this says only that the pipeline runs."
    return text


def learning_evidence(runs: list[SeedRun]) -> str:
    """What the training curves say about a shortfall: final accuracies and the late trend of validation accuracy."""
    lines = []
    for run in runs:
        history = run.history
        train, val = history.get("accuracy", []), history.get("val_accuracy", [])
        if not train:
            continue
        text = f"seed {run.seed}: final training accuracy {train[-1]:.1%} (on augmented batches)"
        if len(val) >= 3:
            third = max(1, len(val) // 3)
            text += (f", validation {val[-1]:.1%}; mean validation accuracy of the last third of epochs "
                     f"{np.mean(val[-third:]):.1%} vs {np.mean(val[-2 * third:-third]):.1%} in the third before")
        lines.append(text)
    under = [r for r in runs if r.history.get("accuracy") and r.history["accuracy"][-1] < 0.97]
    if under:
        lines.append("training accuracy below 97% means the model has not fitted its training data: "
                     "more epochs (or a larger input) are the first thing to try before calling it a limit of the model")
    return "\n".join(f"- {line}" for line in lines)
