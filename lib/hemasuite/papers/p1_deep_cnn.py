"""P1 (Kadhim et al. 2023, deep CNN for leukemia): reported numbers, the CNN, Table 2, deviations and verdict.

The network is :func:`hemasuite.models.p1_deep_cnn`, trained through the generic
workflow (:mod:`hemasuite.experiment`); the paper's own Table 2 is :data:`TABLE2`.
"""

from __future__ import annotations

import pandas as pd

from .. import augment, experiment, models, preprocess, record, training
from ..datasets import is_folder_name
from ..experiment import Assessed, Prepared

ID = "P1"
NOTEBOOK = "11_p1_deep_cnn"
CITATION = "Kadhim et al. 2023, deep CNN for leukemia"
DATASET = "ALL-IDB1 (text) / Taleqani 4-class (table)"
PROTOCOL = ("MATLAB deep CNN; resize + denoise; ~10% test (324 images per class row); no epochs, optimiser or "
            "split method given")
REPORTED = {"deep CNN": {"accuracy": 0.98, "sensitivity": 0.9473, "specificity": 0.9887}}
SUITE_TARGET = 0.995
# Table 2 as printed. Its rows total 324 test images, and its counts give an overall
# accuracy of 312/324 = 96.3%; the "98%" is the mean of the one-vs-rest ACC column.
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


def denoise(name: str):
    """The pre-processing function and its name for ``name`` (``median3`` or ``none``)."""
    return (preprocess.median_denoise, "resize (bilinear) + 3x3 median filter") if name == "median3" else (None, None)


def train_cnn(run, prepared: Prepared, seeds, epochs: int, batch_size: int, learning_rate: float, stem_stride: int,
              stem_kernel: int, augmentation: str, tta: bool, select_best_epoch: bool, n_boot: int) -> Assessed:
    """The deep CNN (optional strided stem), Adam with cosine decay, cell augmentation, assessed."""
    shape, n_classes = (prepared.size, prepared.size, 3), len(prepared.dataset.classes)
    trained = experiment.train_seeds(
        prepared, lambda: models.p1_deep_cnn(shape, n_classes, stem_stride=stem_stride, stem_kernel=stem_kernel),
        seeds, epochs, batch_size, training.adam(learning_rate, epochs, schedule="cosine"),
        augment=augment.cell_augmentation(augmentation), tta=tta, restore_best=select_best_epoch)
    return experiment.assess(run, "cnn", "deep CNN", prepared, trained, n_boot, record.Weights("random init"),
                             "deep CNN", REPORTED["deep CNN"]["accuracy"])


def table2_summary(cnn: Assessed) -> pd.DataFrame:
    """Both readings of the paper's headline (overall accuracy, mean of the per-class ACC column), sensitivity and
    specificity: the paper's and this run's."""
    table2 = experiment.pooled_per_class_table(cnn.prepared, cnn.trained)
    over, reported = cnn.evaluation["over_seeds"], REPORTED["deep CNN"]
    return experiment.without_paper(pd.DataFrame([
        {"metric": "accuracy (overall)", "paper": 312 / 324, "this run": over["accuracy"]["mean"]},
        {"metric": "mean of per-class ACC (the paper's '98%')", "paper": reported["accuracy"],
         "this run": float(table2.loc[table2["class"] == "macro avg", "ACC"].iloc[0])},
        {"metric": "sensitivity (macro)", "paper": reported["sensitivity"],
         "this run": over["sensitivity_macro"]["mean"]},
        {"metric": "specificity (macro)", "paper": reported["specificity"],
         "this run": over["specificity_macro"]["mean"]}]), cnn.prepared)


def architecture(p: dict) -> str:
    """The network as built from the parameters ``p``."""
    stem = f"{p['stem_kernel']}x{p['stem_kernel']} stride-{p['stem_stride']} conv stem, then " \
        if p["stem_stride"] > 1 else ""
    return stem + "4 conv-BN-ReLU-maxpool blocks, GAP, FC 256"


def deviations(p: dict) -> list[str]:
    """This notebook's differences from the paper, from its parameters ``p``."""
    if is_folder_name(p["dataset"]):
        return experiment.own_data_deviations(p, f"P1's deep CNN ({architecture(p)})")
    return experiment.deviations(p["profile"], {
        "dataset": "Taleqani ALL 4-class, as in P1's Table 2 (its text names ALL-IDB1)",
        "input size": f"{p['image_size']}x{p['image_size']} (paper: resized, size not stated)",
        "denoise": "3x3 median filter (paper: unnamed denoise filter)" if p["denoise"] == "median3" else "none",
        "architecture": architecture(p) + " (paper: depth and widths not stated)",
        "augmentation": "none" if p["augmentation"] == "none" else
                        f"{p['augmentation']} flips / rotations of training batches (paper: none stated)",
        "test-time augmentation": "mean of 8 dihedral views" if p["test_time_augmentation"] else "none",
        "optimiser / epochs": f"Adam {p['learning_rate']} cosine, {p['epochs']} epochs, batch {p['batch_size']} "
                              "(paper: not stated); weights of the "
                              + experiment.model_selection(p["select_best_epoch"])})


def verdict(cnn: Assessed, synthetic: bool) -> str:
    """The CNN against the paper's 98% and the suite's 99.5% target, with what its training curves show."""
    if cnn.prepared.dataset.own:
        return experiment.own_data_verdict([cnn], "P1's deep CNN") + "\n\nWhat the training curves show:\n\n" \
            + experiment.learning_evidence(cnn.trained)
    return "\n\n".join([
        experiment.verdict("P1 deep CNN", cnn.row, REPORTED["deep CNN"]["accuracy"], synthetic),
        experiment.verdict(f"P1 deep CNN against the suite's {SUITE_TARGET:.1%} target", cnn.row, SUITE_TARGET,
                           synthetic),
        "What the training curves show:\n\n" + experiment.learning_evidence(cnn.trained)])


def details(p: dict) -> dict:
    """Protocol details of results.json: architecture, optimiser, batch size, epochs, test-time augmentation."""
    return {"model": f"P1 deep CNN ({architecture(p)})", "optimizer": f"Adam lr {p['learning_rate']}, cosine decay",
            "batch_size": p["batch_size"], "epochs": p["epochs"],
            "test_time_augmentation": "8 dihedral views" if p["test_time_augmentation"] else None,
            "weights": "random init (trained from scratch)"}
