"""P1 (Kadhim et al. 2023, deep CNN for leukemia): reported numbers, the CNN, Table 2, deviations and verdict.

The network is :func:`hemasuite.models.p1_deep_cnn`, trained through the generic
workflow (:mod:`hemasuite.experiment`) on repeated field-level splits
(:mod:`hemasuite.evaluation`); the paper's own Table 2 is :data:`TABLE2`.

Settings are chosen on validation data only (:func:`select`): every candidate (input size
and stem, training augmentation) is trained on the training part of the first split and
scored on its validation part, with and without test-time augmentation; the chosen one then
runs on every split, and each split's test part is scored once.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from .. import (
    augment,
    config,
    evaluation,
    experiment,
    metrics,
    models,
    parameters,
    pipeline,
    preprocess,
    record,
    training,
    validation,
)
from ..datasets import is_folder_name
from ..errors import ParameterError
from ..evaluation import ResampleRun
from ..experiment import Prepared, TrainedSeed

ID = "P1"
NOTEBOOK = "11_p1_deep_cnn"
CITATION = "Kadhim et al. 2023, deep CNN for leukemia"
DATASET = "ALL-IDB1 (text) / Taleqani 4-class (table)"
PROTOCOL = ("MATLAB deep CNN; resize + denoise; ~10% test (324 images per class row); no epochs, optimiser or "
            "split method given")
REPORTED = {"deep CNN": {"accuracy": 0.98, "sensitivity": 0.9473, "specificity": 0.9887}}
# Table 2 as printed. Its rows total 324 test images, and its counts give an overall
# accuracy of 312/324 = 96.3%; the "98%" of REPORTED is the mean of the one-vs-rest ACC column.
# Its SP column does not follow TN / (TN + FP) (Benign: 271/274 = 0.989, printed 0.9679).
TABLE2 = [
    {"class": "Benign", "TP": 41, "TN": 271, "FP": 3, "FN": 9, "ACC": 0.9630, "PRE": 0.9318, "SEN": 0.8200,
     "F1": 0.8723, "SP": 0.9679},
    {"class": "Early", "TP": 96, "TN": 220, "FP": 6, "FN": 2, "ACC": 0.9753, "PRE": 0.9412, "SEN": 0.9796,
     "F1": 0.9600, "SP": 0.9910},
    {"class": "Pre", "TP": 96, "TN": 226, "FP": 2, "FN": 0, "ACC": 0.9938, "PRE": 0.9796, "SEN": 1.0000,
     "F1": 0.9897, "SP": 1.0000},
    {"class": "Pro", "TP": 79, "TN": 243, "FP": 1, "FN": 1, "ACC": 0.9938, "PRE": 0.9875, "SEN": 0.9875,
     "F1": 0.9875, "SP": 0.9959}]


OVERALL_ACCURACY = 312 / 324  # Table 2's overall accuracy (TP summed over its 324 test images)
SETTINGS = ("image_size", "stem_stride", "stem_kernel", "augmentation")


def denoise(name: str):
    """The pre-processing function and its name for ``name`` (``median3`` or ``none``)."""
    return (preprocess.median_denoise, "resize (bilinear) + 3x3 median filter") if name == "median3" else (None, None)


def configuration_name(settings: dict) -> str:
    """``224 px, 4x4 stride-4 stem, dihedral, TTA``-style name of one configuration."""
    stem = (f"{settings['stem_kernel']}x{settings['stem_kernel']} stride-{settings['stem_stride']} stem"
            if settings["stem_stride"] > 1 else "no stem")
    tta = ", TTA" if settings["test_time_augmentation"] else ""
    return f"{settings['image_size']} px, {stem}, {settings['augmentation']}{tta}"


def configurations(p: dict) -> dict[str, dict]:
    """The configurations to choose from, cheapest first (ties keep the earlier one).

    ``p['candidates']`` lists settings dicts (keys :data:`SETTINGS`); without it, the single
    configuration of the top-level parameters. ``p['test_time_augmentation']`` is True,
    False or ``"select"`` (each candidate scored without and with the 8 dihedral views).
    """
    config.check_choice("test_time_augmentation", p["test_time_augmentation"], [True, False, "select"])
    candidates = p.get("candidates") or [{k: p[k] for k in SETTINGS}]
    if not p.get("candidates") and any(p[k] is None for k in SETTINGS):
        raise ParameterError(f"set either candidates (a list of settings) or every one of {list(SETTINGS)}")
    fixed = {k: p[k] for k in SETTINGS if p.get("candidates") and p[k] is not None}
    if fixed:
        given = ", ".join(f"{k}={v!r}" for k, v in fixed.items())
        raise ParameterError(f"{given} would be ignored: this profile chooses {list(SETTINGS)} among its "
                             f"{len(p['candidates'])} candidates on validation data. To fix them, also pass "
                             f"candidates=None and every one of {list(SETTINGS)}; or pass a candidates list")
    tta = [False, True] if p["test_time_augmentation"] == "select" else [bool(p["test_time_augmentation"])]
    found = {}
    for i, candidate in enumerate(candidates):
        config.check_known(candidate, set(SETTINGS), f"candidates[{i}]")
        missing = sorted(set(SETTINGS) - set(candidate))
        if missing:
            raise ParameterError(f"candidates[{i}] lacks {missing}; each candidate sets {list(SETTINGS)}")
        augment.cell_augmentation(candidate["augmentation"])  # an unknown name fails here, before any work
        for view in tta:
            settings = {**candidate, "test_time_augmentation": view}
            found[configuration_name(settings)] = settings
    return found


def image_bank(data, denoise_name: str) -> Callable[[int], np.ndarray]:
    """``images(size)``: every image of ``data`` (frame order) decoded at ``size`` and denoised, computed once."""
    function, _ = denoise(denoise_name)
    cache = {}

    def images(size: int) -> np.ndarray:
        if size not in cache:
            decoded = pipeline.load_images(data.frame, size, cache_dir=config.cache_dir())
            cache[size] = function(decoded) if function else decoded
        return cache[size]
    return images


def make_splits(run, data, report, p: dict, images: Callable[[int], np.ndarray]) -> list[Prepared]:
    """One field-level (the dataset's strictest level) split per ``p['split_seeds']``, over the images at the first
    candidate's size."""
    size = next(iter(configurations(p).values()))["image_size"]
    return [evaluation.split_once(run, data, report, validation.default_level(data), seed, p["fractions"], images(size),
                                  size, denoise(p["denoise"])[1]) for seed in p["split_seeds"]]


def train(prepared: Prepared, settings: dict, seeds, p: dict, predict: str = "test") -> list[TrainedSeed]:
    """The deep CNN with ``settings`` on ``prepared``'s training part, Adam with cosine decay; models kept."""
    shape, n_classes = (settings["image_size"],) * 2 + (3,), len(prepared.dataset.classes)
    return experiment.train_seeds(
        prepared, lambda: models.p1_deep_cnn(shape, n_classes, stem_stride=settings["stem_stride"],
                                             stem_kernel=settings["stem_kernel"]),
        seeds, p["epochs"], p["batch_size"], training.adam(p["learning_rate"], p["epochs"], schedule="cosine"),
        augment=augment.cell_augmentation(settings["augmentation"]), keep_models=True, verbose=0,
        tta=settings["test_time_augmentation"] and predict == "test", restore_best=p["select_best_epoch"],
        predict=predict)


def _probabilities(model, prepared: Prepared, part: str, tta: bool) -> tuple[np.ndarray, float]:
    x, y = prepared.arrays(part)
    n_classes = len(prepared.dataset.classes)
    if tta:
        return experiment.dihedral_predict(model, x, y, n_classes)
    return training.predict(model, pipeline.make_dataset(x, y, n_classes, 128, training=False))


class Selection:
    """The configurations tried on the validation part of one split, and the chosen one.

    ``tried`` has one row per configuration: its settings, validation accuracy, the epoch
    chosen on validation and the final training accuracy; ``trained`` keeps each trained
    candidate, so the chosen one also serves as that split's first training seed.
    """

    def __init__(self, prepared_at: Callable[[int], Prepared], p: dict, seed: int):
        self.prepared_at, self.p, self.seed = prepared_at, p, seed
        self.trained: dict[tuple, TrainedSeed] = {}
        self.chosen, self.tried = evaluation.select_on_validation(configurations(p), self._score)
        self.settings = configurations(p)[self.chosen]

    def _candidate(self, settings: dict) -> TrainedSeed:
        key = tuple(settings[k] for k in SETTINGS)
        if key not in self.trained:
            self.trained[key] = train(self.prepared_at(settings["image_size"]), settings, [self.seed], self.p,
                                      predict="val")[0]
        return self.trained[key]

    def _score(self, settings: dict) -> float:
        trained, prepared = self._candidate(settings), self.prepared_at(settings["image_size"])
        probabilities = (_probabilities(trained.model, prepared, "val", True)[0] if settings["test_time_augmentation"]
                         else trained.probabilities)
        return float(np.mean(probabilities.argmax(axis=1) == prepared.arrays("val")[1]))

    def table(self) -> pd.DataFrame:
        """Every configuration tried with its validation accuracy, chosen epoch and final training accuracy."""
        extra = []
        for row in self.tried.itertuples():
            trained = self.trained[tuple(getattr(row, k) for k in SETTINGS)]
            extra.append({"chosen_epoch": (trained.training.get("selection") or {}).get("chosen"),
                          "train_accuracy_last_epoch": trained.history.get("accuracy", [np.nan])[-1]})
        return pd.concat([self.tried, pd.DataFrame(extra)], axis=1)

    def to_record(self, split_seed: int) -> record.Selection:
        """What was selected on what, with every configuration tried (results.json's ``selection``)."""
        tried = [record.Tried(r.candidate, r.validation_score) for r in self.tried.itertuples()]
        return record.Selection(
            model="deep CNN", what="input size and stem, training augmentation, test-time augmentation",
            on=f"validation part of split seed {split_seed} (training seed {self.seed}; each candidate's epoch "
               "also chosen there, so its score is the best of its epochs)",
            chosen=[self.chosen], tried=tried)

    def first_run(self, prepared: Prepared) -> TrainedSeed:
        """The chosen candidate as the first training seed of its split: its test part scored now, once."""
        trained = self._candidate(self.settings)
        probabilities, speed = _probabilities(trained.model, prepared, "test", self.settings["test_time_augmentation"])
        summary = {**trained.training, "inference_images_per_s": round(speed, 1)}
        return TrainedSeed(trained.seed, probabilities, trained.history, summary, trained.model)


def cnn_fit(size: int, n_classes: int, seeds, epochs: int, batch_size: int, learning_rate: float,
            augmentation: str, stem_stride: int = 1, stem_kernel: int = 3) -> Callable[[Prepared], list[TrainedSeed]]:
    """``fit`` of :func:`hemasuite.evaluation.fit_splits`: P1's deep CNN (optional strided stem), Adam with cosine
    decay, last epoch."""
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


def repeated_runs(prepared: list[Prepared], selection: Selection, seeds, p: dict) -> list[ResampleRun]:
    """The chosen configuration on every split and training seed; the selection split's first seed is the candidate
    already trained there."""
    def fit(part: Prepared) -> list[TrainedSeed]:
        reuse = [selection.first_run(part)] if part.split.seed == p["split_seeds"][0] else []
        rest = list(seeds)[len(reuse):]
        return reuse + (train(part, selection.settings, rest, p) if rest else [])
    return evaluation.fit_splits(prepared[0].split.level, prepared, fit)


def figures(run, runs: list[ResampleRun], n_boot: int) -> dict:
    """Training curves, confusion matrix, ROC and reliability of the first split's runs."""
    first = [r for r in runs if r.split_seed == runs[0].split_seed]
    prepared, trained = first[0].prepared, [r.trained for r in first]
    return experiment.report(run, "cnn", f"P1 deep CNN, split seed {runs[0].split_seed}", prepared, trained,
                             experiment.evaluate(prepared, trained, n_boot))


def table2(runs: list[ResampleRun]) -> pd.DataFrame:
    """P1's Table 2 (TP TN FP FN ACC PRE SEN F1 SP) per class: counts of the first run, rates averaged over runs."""
    classes = runs[0].prepared.dataset.classes
    tables = [metrics.per_class_table(r.labels(), r.trained.probabilities.argmax(axis=1), classes) for r in runs]
    table = tables[0].copy()
    rates = [c for c in ("ACC", "PRE", "SEN", "F1", "SP") if c in table.columns]
    table[rates] = np.mean([t[rates].to_numpy(dtype=float) for t in tables], axis=0)
    return table


def table2_summary(runs: list[ResampleRun], row: record.ModelRow) -> pd.DataFrame:
    """Both readings of the paper's headline (overall accuracy, mean of the per-class ACC column), sensitivity and
    specificity: the paper's and this run's (means over runs)."""
    classes = runs[0].prepared.dataset.classes
    per_run = [metrics.summary_metrics(r.labels(), r.trained.probabilities, classes) for r in runs]
    ours = table2(runs)
    reported = REPORTED["deep CNN"]
    return experiment.without_paper(pd.DataFrame([
        {"metric": "accuracy (overall)", "paper": OVERALL_ACCURACY, "this run": row.mean},
        {"metric": "mean of per-class ACC (the paper's '98%')", "paper": reported["accuracy"],
         "this run": float(ours.loc[ours["class"] == "macro avg", "ACC"].iloc[0])},
        {"metric": "sensitivity (macro)", "paper": reported["sensitivity"],
         "this run": float(np.mean([m["sensitivity_macro"] for m in per_run]))},
        {"metric": "specificity (macro)", "paper": reported["specificity"],
         "this run": float(np.mean([m["specificity_macro"] for m in per_run]))}]), runs[0].prepared)


def architecture(settings: dict) -> str:
    """The network as built from ``settings``."""
    stem = f"{settings['stem_kernel']}x{settings['stem_kernel']} stride-{settings['stem_stride']} conv stem, then " \
        if settings["stem_stride"] > 1 else ""
    return stem + "4 conv-BN-ReLU-maxpool blocks, GAP, FC 256"


def deviations(p: dict, settings: dict, level: str) -> list[str]:
    """This notebook's differences from the paper, from its parameters ``p``, the chosen ``settings`` and the split
    ``level``."""
    if is_folder_name(p.get("dataset", "")):
        return experiment.own_data_deviations(p, f"P1's deep CNN ({architecture(settings)})")
    size = settings["image_size"]
    return experiment.deviations(p["profile"], {
        "dataset": "Taleqani ALL 4-class, as in P1's Table 2 (its text names ALL-IDB1)",
        "paper figure": f"the paper's 98% is the mean of Table 2's per-class ACC column; the overall accuracy of that "
                        f"table is 312/324 = {OVERALL_ACCURACY:.1%}; both are compared",
        "split": f"{level}-level ({validation.SPLIT_LEVELS[level]}), {len(p['split_seeds'])} split seeds x "
                 f"{len(p['seeds'])} training seeds (paper: one split, method not stated)",
        "input size": f"{size}x{size} (paper: resized, size not stated)",
        "denoise": ("3x3 median filter, fixed beforehand (paper: unnamed denoise filter)" if p["denoise"] == "median3"
                    else "none"),
        "architecture": architecture(settings) + " (paper: depth and widths not stated)",
        "augmentation": "none" if settings["augmentation"] == "none" else
                        f"{settings['augmentation']} flips / rotations of training batches (paper: none stated)",
        "test-time augmentation": "mean of 8 dihedral views" if settings["test_time_augmentation"] else "none",
        "selection": "input size / stem, augmentation and test-time augmentation chosen on the validation part of "
                     "the first split" if len(configurations(p)) > 1 else "no candidates: settings fixed beforehand",
        "optimiser / epochs": f"Adam {p['learning_rate']} cosine, {p['epochs']} epochs, batch {p['batch_size']} "
                              "(paper: not stated); weights of the "
                              + experiment.model_selection(p["select_best_epoch"])})


def verdict(row: record.ModelRow, summary: dict, majority: record.ModelRow, data) -> str:
    """The CNN over repeated splits of dataset ``data`` against the paper's two readings and the majority class
    (own images: no paper)."""
    sd = {k: f"{summary[k]:.2%}" if summary[k] is not None else "n/a"
          for k in ("sd_across_splits", "sd_across_training_seeds")}
    exact = summary["exact"]
    name = f"Ran on your own images {data.display_name}: P1's deep CNN" if data.own else "P1 deep CNN"
    text = (f"**{name}**: test accuracy {row.mean:.2%} over {summary['splits']} {row.split_level}-level splits x "
            f"{summary['training_seeds_per_split']} training seeds (sd across splits {sd['sd_across_splits']}, "
            f"across training seeds {sd['sd_across_training_seeds']}); exact 95% CI of the pooled predictions "
            f"{exact['ci_low']:.2%} to {exact['ci_high']:.2%} ({exact['k']}/{exact['n']}), bootstrap 95% CI over "
            f"the pooled test images {row.ci_low:.2%} to {row.ci_high:.2%}. Training accuracy "
            f"{row.train_accuracy:.2%}. The majority class scores {majority.mean:.2%}. ")
    readings = (("the paper's 98% (mean of per-class ACC)", REPORTED["deep CNN"]["accuracy"]),
                (f"the paper's overall accuracy {OVERALL_ACCURACY:.1%}", OVERALL_ACCURACY))
    for name, target in () if data.own else readings:
        inside = exact["ci_low"] <= target <= exact["ci_high"]
        text += (f"Against {name}: {row.mean - target:+.2%}" + (", inside the exact CI. " if inside else
                                                                   ", outside the exact CI. "))
    if data.synthetic:
        text += "SYNTHETIC data: this says only that the pipeline runs."
    return text


LADDER_SETTINGS = ("dataset", "fractions", "split_seeds", "image_size", "stem_stride", "stem_kernel", "augmentation",
                   "epochs", "batch_size", "learning_rate", "seeds")


def ladder_reuse(ladder_params: dict) -> dict:
    """results.json's ``reuses`` of notebook 02: whether its field rung could be this notebook's final runs (P1's CNN
    on field-level splits) under the same profile, and each setting in which the two protocols differ.

    The rung is trained in 02 while any differ: reusing runs of another protocol would
    change what the ladder measures.
    """
    own = {**parameters.notebook_defaults(config.repo_root() / "notebooks" / f"{NOTEBOOK}.ipynb"),
           **config.notebook_parameters(ladder_params["profile"], NOTEBOOK)}
    differences = {key: {"02": ladder_params.get(key), NOTEBOOK: own.get(key)} for key in LADDER_SETTINGS
                   if own.get(key) is not None and own.get(key) != ladder_params.get(key)}
    chosen = [key for key in ("image_size", "stem_stride", "stem_kernel", "augmentation") if own.get(key) is None]
    if own.get("candidates") and chosen:
        differences["chosen_on_validation"] = {"02": "fixed beforehand", NOTEBOOK: chosen}
    if own.get("denoise", "none") != "none":
        differences["denoise"] = {"02": "none", NOTEBOOK: own["denoise"]}
    if own.get("select_best_epoch"):
        differences["epoch"] = {"02": "the last", NOTEBOOK: "chosen on validation"}
    return {"field_rung": {"could_reuse": f"{NOTEBOOK}: the chosen configuration on every split",
                           "reused": False, "differences": differences,
                           "why": ("trained here: the protocols differ in " + ", ".join(differences)) if differences
                           else "trained here, under the same protocol"}}


def reuses(p: dict) -> list[dict]:
    """results.json's ``reuses``: the selection's chosen candidate is the first split's first training seed."""
    return [{"result": f"split seed {p['split_seeds'][0]}, training seed {p['seeds'][0]}",
             "reuses": "the chosen candidate as trained during the selection (the same split, settings, seed and "
                       "epochs); its test part scored once, after the choice"}]


def details(p: dict, settings: dict, splits: list[dict], summary: dict, excluded: dict | None = None) -> dict:
    """Protocol details of results.json: the chosen network, optimiser, every split with its manifest hash, the
    accuracy summary over splits, and the images left out as unusable (:func:`hemasuite.experiment.usable_images`)."""
    return {"excluded_images": excluded or {}, "model": f"P1 deep CNN ({architecture(settings)})", "chosen": settings,
            "optimizer": f"Adam lr {p['learning_rate']}, cosine decay", "batch_size": p["batch_size"],
            "epochs": p["epochs"], "split_seeds": p["split_seeds"], "training_seeds": p["seeds"],
            "test_time_augmentation": "8 dihedral views" if settings["test_time_augmentation"] else None,
            "denoise": p["denoise"], "weights": "random init (trained from scratch)", "splits": splits,
            "accuracy_over_splits": summary, "reuses": reuses(p)}
