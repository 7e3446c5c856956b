"""The train-and-evaluate workflow every replication notebook shares.

1. :func:`prepare`: validate, merge duplicates, same-field twins and cases into groups,
   make, check and save the group-aware split (:func:`make_split`), decode the images once.
2. :func:`train_seeds`: train one architecture with several seeds through
   :func:`hemasuite.training.train` and predict the test set.
3. :func:`assess`: per-seed metrics with bootstrap CIs, mean +/- sd over seeds, a
   bootstrap CI of the seed-mean accuracy (:func:`evaluate`), the standard figures and
   tables (:func:`report`), the per-image predictions, and the model's
   :class:`hemasuite.record.ModelRow`.
4. :func:`protocol`, :func:`deviations`, :func:`target_verdict`: the rest of the results record.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import config, explain, metrics, pipeline, plots, record, same_field, splits, training, validation
from .datasets import Dataset
from .errors import ParameterError
from .models import weights_kind, weights_label
from .record import Run


@dataclass
class Prepared:
    """A dataset with its split and its decoded images (frame order); ``protocol`` holds what was done to them."""

    dataset: Dataset
    frame: pd.DataFrame
    images: np.ndarray
    size: int
    protocol: dict
    split: record.Split | None = None

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Images and integer labels of one split."""
        mask = (self.frame["split"] == split).to_numpy()
        return self.images[mask], self.dataset.label_ids[mask]

    def has(self, split: str) -> bool:
        return bool((self.frame["split"] == split).any())


def make_split(run: Run | None, dataset: Dataset, fractions, seed: int, level: str | None = None,
               report: validation.ValidationReport | None = None, near_threshold: int = validation.NEAR_THRESHOLD,
               manifest: str | None = None) -> tuple[pd.DataFrame, record.Split]:
    """Stratified, seeded split of ``dataset`` that keeps the groups of ``level`` on one side; the frame and its record.

    ``level`` is a key of :data:`hemasuite.validation.SPLIT_LEVELS`; default: the strictest
    the dataset supports (:func:`hemasuite.validation.default_level`). ``report`` is the
    dataset's :func:`hemasuite.validation.validate` report (made here when None; pass it to
    split one dataset several times). At ``field`` and ``case`` level, splits of field
    images (smears, tissue) are also checked for look-alike images across sides (phase
    correlation, independent of the groups); the leakier levels leave such pairs by design.
    The manifest is saved as ``manifest`` in ``run``'s folder (default
    :func:`hemasuite.splits.manifest_name`), its SHA-256 recorded (no manifest without a run).
    """
    level = level or validation.default_level(dataset)
    manifest = manifest or splits.manifest_name(level, seed)
    if report is None:
        report = validation.validate_dataset(dataset, near_threshold=near_threshold)
    frame = dataset.frame.copy()
    frame["duplicate_group"] = validation.duplicate_group_ids(frame, report)
    frame["split_group"] = validation.level_groups(frame, report, level)
    frame = splits.split_dataset(frame, fractions=fractions, seed=seed, groups="split_group")
    scenes = dataset.info.get("image_kind") == "field"  # the similarity check is calibrated on scenes, not on cells
    thumbs = same_field.thumbnails(frame["path"]) if scenes and level in ("field", "case") else None
    splits.assert_no_leakage(frame, "split_group", images=thumbs)
    saved = splits.save_manifest(frame, run.path(manifest)) if run is not None else None
    counts = pd.crosstab(frame["label"], frame["split"])
    split = record.Split(level=level, method="stratified, group-aware: " + validation.SPLIT_LEVELS[level], seed=seed,
                         fractions=[float(f) for f in fractions], manifest=run.relative(saved) if saved else None,
                         manifest_sha256=validation.sha256_file(saved) if saved else None,
                         duplicates_merged=int(len(frame) - frame["split_group"].nunique()),
                         same_field_pairs=int(len(report.same_field_pairs)),
                         counts={name: {str(k): int(v) for k, v in counts[name].items()}
                                 for name in splits.SPLIT_NAMES[len(fractions)]})
    return frame, split


def prepare(run: Run | None, dataset: Dataset, fractions, seed: int, size: int,
            preprocess: Callable[[np.ndarray], np.ndarray] | None = None, preprocess_name: str | None = None,
            near_threshold: int = validation.NEAR_THRESHOLD, level: str | None = None,
            report: validation.ValidationReport | None = None) -> Prepared:
    """The usable images (:func:`usable_images`), :func:`make_split` (manifest ``splits/<level>_seed<k>.csv``), then
    every image decoded at ``size``, ``preprocess``-ed."""
    if report is None:
        report = validation.validate_dataset(dataset, near_threshold=near_threshold)
    dataset, excluded = usable_images(dataset, report)
    frame, split = make_split(run, dataset, fractions, seed, level, report, near_threshold)
    images = pipeline.load_images(frame, size, cache_dir=config.cache_dir())
    if preprocess is not None:
        images = preprocess(images)
    done = {"preprocess": preprocess_name or "resize (bilinear)"}
    if excluded:
        done["excluded"] = excluded
    return Prepared(dataset, frame, images, size, done, split)


def usable_images(dataset: Dataset, report) -> tuple[Dataset, dict[str, list[str]]]:
    """``dataset`` without the files validation found unusable, and those files (``label/name``) by reason.

    Unreadable files (undecodable, empty, decompression bombs) cannot be trained on. A
    duplicate filed under two labels is the same image in two classes, so its label is
    unknown: it is excluded from training and testing. Each exclusion is warned about with
    the files' names.
    """
    label = dict(zip(dataset.frame["path"], dataset.frame["label"]))

    def name(path):
        return f"{label[path]}/{Path(path).name}"

    unreadable = report.files.loc[report.files["error"].notna(), "path"].tolist()
    groups = validation.conflicting_label_groups(report)
    excluded = {}
    if unreadable:
        excluded["unreadable"] = [name(p) for p in unreadable]
        warnings.warn(f"{len(unreadable)} unreadable file(s) left out: {', '.join(excluded['unreadable'])}",
                      stacklevel=3)
    if groups:
        excluded["conflicting_labels"] = [" = ".join(name(p) for p in group) for group in groups]
        warnings.warn(f"{sum(map(len, groups))} file(s) in {len(groups)} duplicate group(s) carry two labels and are "
                      f"excluded from training and testing: {'; '.join(excluded['conflicting_labels'])}",
                      stacklevel=3)
    drop = set(unreadable) | {path for group in groups for path in group}
    if not drop:
        return dataset, excluded
    return replace(dataset, frame=dataset.frame[~dataset.frame["path"].isin(drop)].reset_index(drop=True)), excluded


def split_counts(prepared: Prepared) -> pd.DataFrame:
    """Images per split x class, with each split's total and share (:func:`hemasuite.splits.split_summary`)."""
    return splits.split_summary(prepared.frame)


@dataclass
class TrainedSeed:
    """One trained seed: its test probabilities and training record (speeds, and ``selection`` where one was made)."""

    seed: int
    probabilities: np.ndarray
    history: dict
    training: dict
    model: object = field(repr=False, default=None)


def train_seeds(prepared: Prepared, build: Callable, seeds, epochs: int, batch_size: int, optimizer: Callable,
                augment: Callable[[int], Callable] | None = None, rescale: float = 1 / 255,
                keep_models: bool = False, verbose: int = 2, tta: bool = False,
                restore_best: bool = False, predict: str = "test") -> list[TrainedSeed]:
    """Train ``build()`` once per seed; ``augment(seed)`` returns the training-only augmentation.

    ``optimizer(steps_per_epoch)`` returns a fresh optimiser factory argument for
    :func:`training.train`. With ``tta``, test probabilities are averaged over the eight
    flips and right-angle rotations of each image (:func:`dihedral_predict`). With
    ``restore_best``, the weights of the epoch with the best validation accuracy (ties:
    lowest validation loss) are kept (model selection on the validation split; the test
    split is never looked at); every epoch's validation accuracy is recorded as the
    selection's candidates. The model of the first seed is kept (for Grad-CAM); others
    only when ``keep_models``. ``predict`` names the split whose probabilities are returned:
    ``val`` scores candidate settings without touching the test split.
    """
    n_classes = len(prepared.dataset.classes)
    x_train, y_train = prepared.arrays("train")
    if predict not in ("test", "val") or not prepared.has(predict):
        raise ParameterError(f"predict={predict!r}: the split has no {predict!r} part (test or val)")
    x_test, y_test = prepared.arrays(predict)
    test_data = pipeline.make_dataset(x_test, y_test, n_classes, 128, training=False, rescale=rescale)
    val_data = None
    if prepared.has("val"):
        x_val, y_val = prepared.arrays("val")
        val_data = pipeline.make_dataset(x_val, y_val, n_classes, 128, training=False, rescale=rescale)
    if restore_best and val_data is None:
        raise ParameterError("restore_best needs a validation split; this split has none")
    steps = int(np.ceil(len(y_train) / batch_size))
    trained = []
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
        summary = {**result.summary(), "inference_images_per_s": round(inference_speed, 1),
                   "test_time_augmentation": "8 dihedral views, probabilities averaged" if tta else None}
        if selector:
            summary["selection"] = {
                "what": "epoch", "on": "validation split: accuracy (ties: lowest validation loss)",
                "chosen": f"epoch {selector.best_epoch + 1}",
                "tried": {f"epoch {i + 1}": v for i, v in enumerate(result.history.get("val_accuracy", []))}}
        trained.append(TrainedSeed(seed, probabilities, result.history, summary,
                                   result.model if keep_models or index == 0 else None))
    return trained


def model_selection(restore_best: bool) -> str:
    """Deviation text of :func:`train_seeds`' ``restore_best``."""
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


def evaluate(prepared: Prepared, trained: list[TrainedSeed], n_boot: int = 1000) -> dict:
    """Metrics of every seed, their mean +/- sd, and the bootstrap CI of the seed-mean accuracy."""
    classes = prepared.dataset.classes
    _, y_test = prepared.arrays("test")
    per_seed = []
    for seed_result in trained:
        summary = metrics.summary_metrics(y_test, seed_result.probabilities, classes)
        summary["bootstrap"] = metrics.bootstrap_summary(y_test, seed_result.probabilities, classes, n_boot,
                                                         seed=seed_result.seed)
        summary["ece"] = metrics.expected_calibration_error(y_test, seed_result.probabilities)
        per_seed.append({"seed": seed_result.seed, **summary, "training": seed_result.training})
    headline = ("accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc_macro",
                "sensitivity_macro", "specificity_macro", "ece")
    over_seeds = {k: metrics.seed_summary([s[k] for s in per_seed]) for k in headline if k in per_seed[0]}
    return {"seeds": [r.seed for r in trained], "n_test": int(len(y_test)), "over_seeds": over_seeds,
            "accuracy_seed_mean_ci": seed_mean_accuracy_ci(y_test, [r.probabilities for r in trained], n_boot),
            "per_seed": per_seed}


def pooled_per_class_table(prepared: Prepared, trained: list[TrainedSeed]) -> pd.DataFrame:
    """P1's Table 2 (TP TN FP FN ACC PRE SEN F1 SP) per class: counts of the first seed, rates mean over seeds."""
    classes = prepared.dataset.classes
    _, y_test = prepared.arrays("test")
    tables = [metrics.per_class_table(y_test, r.probabilities.argmax(axis=1), classes) for r in trained]
    table = tables[0].copy()
    rates = [c for c in ("ACC", "PRE", "SEN", "F1", "SP") if c in table.columns]
    table[rates] = np.mean([t[rates].to_numpy(dtype=float) for t in tables], axis=0)
    return table


def report(run: Run, name: str, title: str, prepared: Prepared, trained: list[TrainedSeed],
           evaluation: dict) -> dict:
    """Curves, confusion matrix, ROC, reliability diagram and per-class table of one model; returns figure paths."""
    classes = prepared.dataset.classes
    _, y_test = prepared.arrays("test")
    first = trained[0].probabilities
    label = f"{title} - {prepared.dataset.display_name}"
    figures = {}
    if any(r.history for r in trained):
        figures["training_curves"] = plots.training_curves(
            [r.history for r in trained],
            f"{label}: training curves (seeds {', '.join(str(r.seed) for r in trained)})")
    figures |= {
        "confusion_matrix": plots.confusion_matrix(evaluation["per_seed"][0]["confusion_matrix"], classes,
                                                   f"{label}: test confusion matrix (seed {trained[0].seed})"),
        "roc": plots.roc_curves(y_test, first, classes, f"{label}: one-vs-rest ROC (seed {trained[0].seed})"),
        "reliability": plots.reliability_diagram(metrics.reliability_table(y_test, first),
                                                 metrics.expected_calibration_error(y_test, first),
                                                 f"{label}: reliability (seed {trained[0].seed})"),
    }
    saved = {key: run.save_figure(fig, f"{name}_{key}") for key, fig in figures.items()}
    run.save_table(pooled_per_class_table(prepared, trained), f"{name}_per_class")
    return saved


def _save_predictions(run: Run, name: str, prepared: Prepared, trained: list[TrainedSeed]) -> str:
    """Every seed's predictions of the test images in the one predictions CSV (:mod:`hemasuite.evaluation`)."""
    from .evaluation import predictions

    test = prepared.frame[prepared.frame["split"] == "test"]
    _, y_test = prepared.arrays("test")
    level, seed = (prepared.split.level, prepared.split.seed) if prepared.split else ("image", 0)
    return predictions.save_predictions(run, name, [
        predictions.frame(level, "split_seed", seed, r.seed, test["path"], prepared.dataset.classes, y_test,
                          r.probabilities) for r in trained])


@dataclass
class Assessed:
    """A model's evaluation, the row it adds to results.json, and what it was computed from.

    ``details`` describes how the model was built (feature extractor, trained layers, ...).
    """

    row: record.ModelRow
    evaluation: dict
    trained: list[TrainedSeed]
    prepared: Prepared
    selection: record.Selection | None = None
    details: dict = field(default_factory=dict)


def _speed(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(float(np.mean(values)), 1) if values else None


def _finite(value) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def weights_record(weights, backbone: str | None = None) -> record.Weights:
    """A model's starting point: its label and, for ImageNet or a file, the weight file (``backbone``'s)."""
    source = weights_label(backbone, weights) if weights is not None and backbone else None
    return record.Weights(weights_kind(weights), source)


def selection_record(model: str, trained: list[TrainedSeed]) -> record.Selection | None:
    """The per-seed ``selection`` entries of :func:`train_seeds` (or a classifier) as one :class:`Selection`."""
    chosen = [(r.seed, r.training["selection"]) for r in trained if r.training.get("selection")]
    if not chosen:
        return None
    first = chosen[0][1]
    prefix = (lambda seed: f"seed {seed}: ") if len(trained) > 1 else (lambda seed: "")
    return record.Selection(model=model, what=first["what"], on=first["on"],
                            chosen=[prefix(seed) + entry["chosen"] for seed, entry in chosen],
                            tried=[record.Tried(prefix(seed) + str(config_), _finite(score))
                                   for seed, entry in chosen for config_, score in entry["tried"].items()])


def assess(run: Run, key: str, title: str, prepared: Prepared, trained: list[TrainedSeed], n_boot: int,
           weights: record.Weights, paper_model: str | None = None, paper_value: float | None = None,
           variant: str | None = None, leaky: bool = False) -> Assessed:
    """Evaluate one model, save its figures, per-class table and predictions, and build its results row.

    ``key`` names its files (``a+b`` is written ``a_and_b``); ``paper_model`` / ``paper_value``
    are the paper's model this row replicates and the value the paper reports for it (none
    on own images).
    """
    name = key.replace("+", "_and_")
    if prepared.dataset.own:  # own images: no paper value to stand beside
        paper_model = paper_value = None
    evaluation = evaluate(prepared, trained, n_boot)
    figures = report(run, name, title, prepared, trained, evaluation)
    over, ci = evaluation["over_seeds"], evaluation["accuracy_seed_mean_ci"]
    seeds = [record.SeedValue(seed=s["seed"], value=float(s["accuracy"]),
                              train_images_per_s=s["training"].get("train_images_per_s"),
                              inference_images_per_s=s["training"].get("inference_images_per_s"),
                              chosen=(s["training"].get("selection") or {}).get("chosen"))
             for s in evaluation["per_seed"]]
    row = record.ModelRow(
        key=key, model=title, weights=weights, seeds=seeds, mean=_finite(over["accuracy"]["mean"]),
        sd=_finite(over["accuracy"]["sd"]), ci_low=_finite(ci["ci_low"]), ci_high=_finite(ci["ci_high"]),
        n_test=evaluation["n_test"], paper_model=paper_model, paper_value=paper_value, variant=variant, leaky=leaky,
        train_images_per_s=_speed(s.train_images_per_s for s in seeds),
        inference_images_per_s=_speed(s.inference_images_per_s for s in seeds),
        metrics={k: record.Spread(_finite(v["mean"]), _finite(v["sd"])) for k, v in over.items() if k != "accuracy"},
        predictions=_save_predictions(run, name, prepared, trained), figures=figures,
        split_level=prepared.split.level if prepared.split else "image",
        ci_method=f"bootstrap over the {evaluation['n_test']} test images of the seed-mean accuracy")
    return Assessed(row, evaluation, trained, prepared, selection_record(title, trained))


def seed_summary_table(assessed: Assessed) -> pd.DataFrame:
    """Mean and sd over seeds of every headline metric of one model."""
    return pd.DataFrame(assessed.evaluation["over_seeds"]).T[["mean", "sd"]]


def bullets(title: str, lines) -> str:
    """A bold Markdown title over a bullet list (deviations, notes)."""
    return f"**{title}**\n\n" + "\n".join(f"- {line}" for line in lines)


def rows_table(rows: list[record.ModelRow]) -> pd.DataFrame:
    """Paper value beside this run's seed mean, sd and CI, one line per row."""
    return pd.DataFrame([{"model": r.model + (f" [{r.variant}]" if r.variant else ""), "weights": r.weights.label,
                          "paper": r.paper_value, "mean": r.mean, "sd": r.sd, "ci_low": r.ci_low,
                          "ci_high": r.ci_high, "seeds": len(r.seeds)} for r in rows]).astype(
        {"paper": float, "mean": float, "sd": float, "ci_low": float, "ci_high": float})


def paper_vs_run(run: Run, rows: list[record.ModelRow], title: str) -> pd.DataFrame:
    """:func:`rows_table`, saved as ``tables/paper_vs_run`` with its dot plot ``figures/paper_vs_run``."""
    table = rows_table(rows)
    if table["paper"].isna().all():  # own images, or models no paper reports
        table = table.drop(columns="paper")
    run.save_table(table, "paper_vs_run")
    run.save_figure(plots.paper_vs_reproduced(table.assign(model=table["model"] + " (" + table["weights"] + ")"),
                                              title), "paper_vs_run")
    return table


def gradcam_examples(run: Run, name: str, title: str, prepared: Prepared, seed_result: TrainedSeed,
                     rescale: float = 1 / 255, per_class: int = 2) -> dict:
    """Grad-CAM overlays of correct and wrong test predictions of every class (first seed's model)."""
    classes = prepared.dataset.classes
    x_test, y_test = prepared.arrays("test")
    y_pred = seed_result.probabilities.argmax(axis=1)
    chosen, notes = explain.select_examples(y_test, y_pred, classes, per_class=per_class, seed=seed_result.seed)
    if chosen.empty:
        return {"figure": None, "notes": notes}
    images = x_test[chosen["index"].to_numpy()]
    maps = explain.gradcam(seed_result.model, images.astype("float32") * rescale)
    captions = [f"{r.outcome}: true {r.true}\npredicted {r.predicted}" for r in chosen.itertuples()]
    figure = plots.gradcam_grid(images, maps, captions,
                                f"{title} - {prepared.dataset.display_name}: Grad-CAM (seed {seed_result.seed})")
    return {"figure": run.save_figure(figure, f"{name}_gradcam"), "examples": chosen.to_dict(orient="records"),
            "notes": notes}


def with_size(prepared: Prepared, size: int) -> Prepared:
    """The same split decoded at another input size (cached on disk like the first)."""
    if size == prepared.size:
        return prepared
    return replace(prepared, images=pipeline.load_images(prepared.frame, size, cache_dir=config.cache_dir()),
                   size=size)


def protocol(prepared: Prepared, seeds, assessed: list[Assessed] = (), augmentation: dict | None = None,
             deviations: list[str] = (), details: dict | None = None, selection: list[record.Selection] = (),
             input_size: int | None = None) -> record.Protocol:
    """The results record's protocol: data, split, seeds, input size, augmentation, every selection made, deviations.

    The selections of ``assessed`` models are collected; ``selection`` adds others.
    ``input_size`` is the network's input when it differs from ``prepared``'s images.
    """
    size = input_size or prepared.size
    data = prepared.dataset
    if prepared.protocol.get("excluded"):
        details = {**(details or {}), "excluded_images": prepared.protocol["excluded"]}
    return record.Protocol(
        dataset=record.DatasetInfo(name=data.name, display_name=data.display_name, classes=list(data.classes),
                                   images=int(len(data.frame)), synthetic=data.synthetic, stand_in_for=data.stand_in),
        split=prepared.split, seeds=sorted({int(s) for s in seeds}), input_size=[size, size, 3],
        preprocess=prepared.protocol.get("preprocess", "resize (bilinear)"), augmentation=augmentation,
        selection=[a.selection for a in assessed if a.selection] + list(selection), deviations=list(deviations),
        details=details or {})


def deviations(profile: str, items: dict) -> list[str]:
    """The deviations from the paper, each as one line, with what the profile implies."""
    notes = {"smoke": "profile smoke: SYNTHETIC images; the numbers say nothing about the paper",
             "cpu": "profile cpu: real images at reduced scale for 2 CPU cores (see the items below)",
             "paper": "profile paper: the paper's settings where it states them"}
    return [notes.get(profile, f"profile {profile}")] + [f"{key}: {value}" for key, value in items.items()]


def accuracy_sentence(model: str, row: record.ModelRow) -> str:
    """``**model**: test accuracy mean +/- sd (seeds; CI of the mean by the row's method, n).``"""
    sd = f"{row.sd:.2%}" if row.sd is not None else "n/a"
    method = row.ci_method or "bootstrap"
    return (f"**{model}**: test accuracy {row.mean:.2%} +/- {sd} (mean +/- sd over {len(row.seeds)} seeds; "
            f"95% CI ({method}) {row.ci_low:.2%} to {row.ci_high:.2%}, n = {row.n_test}).")


def own_data_verdict(assessed: list[Assessed], method: str) -> str:
    """The verdict of a run on own images: which images, and each model's accuracy; no paper, no target."""
    prepared = assessed[0].prepared
    data = prepared.dataset
    level = prepared.split.level if prepared.split else "image"
    images = prepared.frame["path"].nunique()  # training copies (rotations) counted once
    head = (f"**Ran on your own images {data.display_name}** ({images} images, {len(data.classes)} classes: "
            f"{', '.join(data.classes)}; split level {level!r}) with {method}. Not judged against a paper: the "
            "paper's numbers come from other images.")
    return "\n\n".join([head, *(accuracy_sentence(a.row.model, a.row) for a in assessed)])


def own_data_deviations(p: dict, method: str) -> list[str]:
    """In place of deviations from a paper: what ran on the own images, under which profile."""
    name = Path(str(p.get("dataset", "")).removeprefix("folder:")).name
    return [f"own images {name!r} (folder:): {method} with the settings of profile {p['profile']}; not compared "
            "with the paper (its numbers come from other images)"]


def without_paper(table: pd.DataFrame, prepared: Prepared) -> pd.DataFrame:
    """``table`` without its paper columns (``paper...`` and ``difference``) when ``prepared`` holds own images."""
    if not prepared.dataset.own:
        return table
    return table.drop(columns=[c for c in table.columns if str(c).lower().startswith("paper") or c == "difference"])


def target_verdict(model: str, row: record.ModelRow, target: float, synthetic: bool = False) -> str:
    """One Markdown paragraph: seed-mean accuracy, CI, and the gap to ``target`` (the paper's reported accuracy)."""
    text = accuracy_sentence(model, row) + " "
    gap = row.mean - target
    text += (f"Target {target:.2%} reached (+{gap:.2%})." if gap >= 0 else
             f"Target {target:.2%} missed by {-gap:.2%}.")
    if synthetic:
        text += " SYNTHETIC data: this says only that the pipeline runs."
    return text


def learning_evidence(trained: list[TrainedSeed]) -> str:
    """What the training curves say about a shortfall: final accuracies and the late trend of validation accuracy."""
    lines = []
    for seed_result in trained:
        history = seed_result.history
        train, val = history.get("accuracy", []), history.get("val_accuracy", [])
        if not train:
            continue
        text = f"seed {seed_result.seed}: final training accuracy {train[-1]:.1%} (on augmented batches)"
        if len(val) >= 3:
            third = max(1, len(val) // 3)
            text += (f", validation {val[-1]:.1%}; mean validation accuracy of the last third of epochs "
                     f"{np.mean(val[-third:]):.1%} vs {np.mean(val[-2 * third:-third]):.1%} in the third before")
        lines.append(text)
    under = [r for r in trained if r.history.get("accuracy") and r.history["accuracy"][-1] < 0.97]
    if under:
        lines.append("training accuracy below 97% means the model has not fitted its training data: more epochs (or "
                     "a larger input) are the first thing to try before calling it a limit of the model")
    return "\n".join(f"- {line}" for line in lines)
