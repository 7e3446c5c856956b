"""P4 (Nadim et al., Sequential CNN for ALL): reported numbers, the CNN, its baselines, deviations and verdict.

- :func:`train_cnn`: the Sequential CNN with ImageDataGenerator-style augmentation.
- :func:`train_baselines`: KNN on pixel thumbnails and ImageNet-style backbones with a
  softmax head, on the same split as the CNN.
- :func:`per_class_correct`: the paper's per-class layout (correct / total test images).
"""

from __future__ import annotations

import pandas as pd

from .. import augment, baselines, config, experiment, metrics, models, record, training
from ..datasets import is_folder_name
from ..experiment import Assessed, Prepared, TrainedSeed
from ..models import weights_kind

ID = "P4"
NOTEBOOK = "10_p4_sequential_cnn"
CITATION = "Nadim et al., Sequential CNN for ALL"
DATASET = "Taleqani ALL (4 classes)"
PROTOCOL = ("ImageDataGenerator augmentation on train only, rescale 1/255, batch 64, Adam, train/val/test split "
            "(sizes not stated)")
REPORTED = {"Sequential CNN": {"accuracy": 0.9216, "precision": 0.851, "recall": 0.960, "f1": 0.902},
            "KNN": {"accuracy": 0.6542}, "ResNet50": {"accuracy": 0.598}, "DenseNet": {"accuracy": 0.7958}}
PER_CLASS_CORRECT = {"Benign": [47, 53], "Pre": [143, 168], "Early": [143, 143], "Pro": [122, 128]}
BASELINE_PAPER_NAMES = {"knn": "KNN", "resnet50": "ResNet50", "densenet121": "DenseNet"}


def train_cnn(run, prepared: Prepared, seeds, epochs: int, batch_size: int, learning_rate: float, augmentation: dict,
              select_best_epoch: bool, n_boot: int) -> Assessed:
    """The Sequential CNN, Adam with cosine decay, ``augmentation`` on training batches only, assessed."""
    shape, n_classes = (prepared.size, prepared.size, 3), len(prepared.dataset.classes)
    trained = experiment.train_seeds(
        prepared, lambda: models.p4_sequential_cnn(shape, n_classes), seeds, epochs, batch_size,
        training.adam(learning_rate, epochs, schedule="cosine"),
        augment=lambda s: augment.imagedatagenerator_layers(**augmentation, seed=s), restore_best=select_best_epoch)
    return experiment.assess(run, "cnn", "Sequential CNN", prepared, trained, n_boot, record.Weights("random init"),
                             "Sequential CNN", REPORTED["Sequential CNN"]["accuracy"])


def per_class_correct(prepared: Prepared, trained: TrainedSeed) -> pd.DataFrame:
    """P4's per-class layout: correct / total test images per class, beside the paper's."""
    _, y_test = prepared.arrays("test")
    hit = trained.probabilities.argmax(axis=1) == y_test
    classes = prepared.dataset.classes
    return experiment.without_paper(pd.DataFrame({
        "class": classes, "correct": [int(hit[y_test == c].sum()) for c in range(len(classes))],
        "total": [int((y_test == c).sum()) for c in range(len(classes))],
        "paper": ["/".join(map(str, PER_CLASS_CORRECT[c])) if c in PER_CLASS_CORRECT else None for c in classes]}),
        prepared)


def train_baselines(run, prepared: Prepared, names, size: int, epochs: int, batch_size: int,
                    learning_rate: float, weights, seed: int, n_boot: int) -> dict[str, Assessed]:
    """P4's baselines on the same split: KNN on pixels (k chosen on the validation split) and ImageNet-style
    backbones with a softmax head, trained end to end."""
    config.check_known(dict.fromkeys(names), set(BASELINE_PAPER_NAMES), "baselines")
    results = {}
    for name in names:
        paper_name = BASELINE_PAPER_NAMES[name]
        if name == "knn":
            fitted = baselines.knn(prepared.arrays("train"), prepared.arrays("val"), prepared.arrays("test"))
            trained = [TrainedSeed(seed, fitted.pop("probabilities"), {}, fitted)]
            source, start = prepared, record.Weights("none (no training)")
        else:
            source = experiment.with_size(prepared, size)
            shape, n_classes = (size, size, 3), len(prepared.dataset.classes)
            trained = experiment.train_seeds(
                source, lambda: models.transfer_classifier(name, shape, n_classes, weights=weights), [seed], epochs,
                batch_size, training.adam(learning_rate, epochs, "constant"), rescale=1.0)
            start = experiment.weights_record(weights, name)
        results[name] = experiment.assess(run, f"baseline_{name}", name, source, trained, n_boot, start, paper_name,
                                          REPORTED[paper_name]["accuracy"])
    return results


def precision_recall_table(cnn: Assessed) -> pd.DataFrame:
    """The paper's accuracy, precision, recall and F1 of the CNN beside this run's (macro, mean over seeds)."""
    over = cnn.evaluation["over_seeds"]
    return experiment.without_paper(metrics.paper_vs_run_table(REPORTED["Sequential CNN"], {
        "accuracy": over["accuracy"]["mean"], "precision": over["precision_macro"]["mean"],
        "recall": over["recall_macro"]["mean"], "f1": over["f1_macro"]["mean"]}), cnn.prepared)


def deviations(p: dict) -> list[str]:
    """This notebook's differences from the paper, from its parameters ``p``."""
    if is_folder_name(p["dataset"]):
        return experiment.own_data_deviations(p, "P4's Sequential CNN and baselines " + ", ".join(p["baselines"]))
    return experiment.deviations(p["profile"], {
        "input size": f"{p['image_size']}x{p['image_size']} (paper: resized, size not stated)",
        "epochs": f"{p['epochs']} (paper: not stated)" + (
            ", weights of the best validation-accuracy epoch kept (paper: validation data monitored 'to prevent "
            "overfitting')" if p["select_best_epoch"] else ""),
        "learning-rate schedule": "cosine decay from the initial rate (paper: Adam, schedule not stated)",
        "architecture": "3 x (Conv2D 3x3 - BatchNorm - ReLU - MaxPool), 32/64/128 filters, dense 128 "
                        "(paper: layer types only, no sizes)",
        "split": f"{p['fractions']} stratified and duplicate-aware (paper: train/val/test, sizes not stated)",
        "baseline weights": weights_kind(p["baseline_weights"]) + (
            "" if p["baseline_weights"] == "imagenet" else " (batch normalisation momentum 0.9 under random init)"),
        "baseline input / epochs": f"{p['baseline_image_size']}x{p['baseline_image_size']}, "
                                   f"{p['baseline_epochs']} epochs"})


def verdict(cnn: Assessed, synthetic: bool) -> str:
    """The CNN against the paper's 92.16%, with what its training curves show."""
    if cnn.prepared.dataset.own:
        return (experiment.own_data_verdict([cnn], "P4's Sequential CNN") + "\n\nWhat the training curves show:\n\n"
                + experiment.learning_evidence(cnn.trained))
    return (experiment.verdict("P4 Sequential CNN", cnn.row, REPORTED["Sequential CNN"]["accuracy"], synthetic)
            + "\n\nWhat the training curves show:\n\n" + experiment.learning_evidence(cnn.trained))


def details(p: dict) -> dict:
    """Protocol details of results.json: model, optimiser, batch size, epochs, weights."""
    return {"model": "P4 Sequential CNN", "optimizer": f"Adam lr {p['learning_rate']}, cosine decay",
            "batch_size": p["batch_size"], "epochs": p["epochs"],
            "model_selection": experiment.model_selection(p["select_best_epoch"]),
            "weights": "random init (trained from scratch, as in the paper)"}
