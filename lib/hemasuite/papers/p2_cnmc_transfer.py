"""P2 (traditional CNN / AlexNet / VGG-16 on C-NMC 2019): ALL vs normal (hem) cells, on C-NMC 2019 or a labelled
stand-in; the three models, the paper's Table 2 beside this run, deviations and verdict."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import experiment, features, models, record, training
from ..datasets import Dataset, binary_stand_in
from ..experiment import Assessed, Prepared
from ..models import weights_kind

ID = "P2"
NOTEBOOK = "21_p2_cnmc_transfer"
CITATION = "VGG-16 / AlexNet / CNN on C-NMC 2019"
DATASET = "C-NMC 2019 (ALL vs hem)"
PROTOCOL = "Keras, 224x224, 15 epochs, SGD lr 1e-5, dropout, ImageNet transfer; split not stated"
REPORTED = {"traditional CNN": {"accuracy": 0.9165, "precision": 0.925, "recall": 0.915, "f1": 0.9175},
            "AlexNet": {"accuracy": 0.946, "precision": 0.945, "recall": 0.945, "f1": 0.945},
            "VGG-16": {"accuracy": 0.9744, "precision": 0.975, "recall": 0.975, "f1": 0.975}}
STANDS_IN_FOR = "C-NMC 2019 (P2)"


def task(data: Dataset) -> Dataset:
    """C-NMC 2019 itself (its ``group`` is the subject, so every split is by subject), or a binary stand-in.

    The stand-in keeps one class as normal (``hem``: Taleqani's Benign hematogones, or the
    first synthetic class) and merges every other class into ``all``.
    """
    if data.name == "cnmc2019":
        return data
    negative = "Benign" if "Benign" in data.classes else data.classes[0]
    return binary_stand_in(data, negative, positive_name="all", negative_name="hem", stands_in_for=STANDS_IN_FOR)


def majority_accuracy(prepared) -> float:
    """Test accuracy of always predicting the most frequent training class (the floor for an imbalanced task)."""
    _, y_train = prepared.arrays("train")
    _, y_test = prepared.arrays("test")
    return float(np.mean(y_test == np.bincount(y_train).argmax()))


def table2(assessed: dict[str, Assessed]) -> pd.DataFrame:
    """Accuracy, precision, recall, F1 of every model: the paper's Table 2 and this run (macro, mean over seeds).

    ``assessed`` maps the paper's model name to its :class:`~hemasuite.experiment.Assessed`.
    """
    rows = []
    for model, result in assessed.items():
        evaluation = result.evaluation
        over = evaluation["over_seeds"]
        paper = REPORTED.get(model, {})
        rows.append({"model": model, "weights": result.row.weights.label, "seeds": over["accuracy"]["n"],
                     **{f"paper {m}": paper.get(m) for m in ("accuracy", "precision", "recall", "f1")},
                     "accuracy": over["accuracy"]["mean"], "precision": over["precision_macro"]["mean"],
                     "recall": over["recall_macro"]["mean"], "f1": over["f1_macro"]["mean"],
                     "accuracy ci_low": evaluation["accuracy_seed_mean_ci"]["ci_low"],
                     "accuracy ci_high": evaluation["accuracy_seed_mean_ci"]["ci_high"]})
    return pd.DataFrame(rows)


def train_models(run, prepared: Prepared, epochs: int, batch_size: int, learning_rate: float, momentum: float,
                 seeds, alexnet_fc_units: int, vgg_weights, dropout: float, select_best_epoch: bool,
                 n_boot: int) -> dict[str, Assessed]:
    """The traditional CNN, AlexNet (both from scratch) and a softmax layer on cached frozen VGG-16 features, assessed.

    All three: SGD, the same seeds and epochs; with ``select_best_epoch`` each keeps the
    weights of its best validation epoch.
    """
    shape, optimizer = (prepared.size, prepared.size, 3), training.sgd(learning_rate, momentum)
    x, vgg_record = features.layer_features(prepared.images, prepared.frame["path"], "vgg16", "avgpool", vgg_weights,
                                            seeds[0])
    vgg_set = features.as_prepared(prepared, x)
    builds = {"traditional CNN": (prepared, lambda: models.p2_traditional_cnn(shape, 2), 1 / 255,
                                  record.Weights("random init")),
              "AlexNet": (prepared, lambda: models.alexnet(shape, 2, fc_units=alexnet_fc_units), 1 / 255,
                          record.Weights("random init")),
              "VGG-16": (vgg_set, lambda: features.softmax_head(x.shape[1], 2, dropout), 1.0,
                         experiment.weights_record(vgg_weights, "vgg16"))}
    results = {}
    for name, (source, build, rescale, weights) in builds.items():
        trained = experiment.train_seeds(source, build, seeds, epochs, batch_size, optimizer, rescale=rescale,
                                         restore_best=select_best_epoch)
        key = name.replace(" ", "_").replace("-", "").lower()
        results[name] = experiment.assess(run, key, name, source, trained, n_boot, weights, name,
                                          REPORTED[name]["accuracy"])
    results["VGG-16"].details = vgg_record
    return results


def deviations(p: dict, data: Dataset) -> list[str]:
    """This notebook's differences from the paper, from its parameters ``p``."""
    return experiment.deviations(p["profile"], {
        "dataset": data.display_name + ("" if data.name == "cnmc2019" else
                                        f" ({data.description}; C-NMC 2019 is not available here)"),
        "input size": f"{p['image_size']}x{p['image_size']} (paper: 224x224)",
        "epochs": f"{p['epochs']} (paper: 15)",
        "optimiser": f"SGD lr {p['learning_rate']}, momentum {p['momentum']} (paper: SGD lr 1e-5, momentum not stated)",
        "traditional CNN": "batch normalisation in each block (paper: no layer details; without it the network "
                           "stayed at the majority class with this optimiser)",
        "AlexNet": f"random init (Keras ships no ImageNet AlexNet), FC6/FC7 {p['alexnet_fc_units']} units, batch norm "
                   "for local response normalisation (paper: transfer learning, layer sizes not given; AlexNet's are "
                   "4,096)",
        "VGG-16 weights": weights_kind(p["vgg_weights"]) + ("" if p["vgg_weights"] == "imagenet" else
                                                             " (paper: ImageNet)"),
        "VGG-16 head": "dropout + softmax on globally pooled block-5 features, standardised (paper: not detailed)",
        "split": f"{p['fractions']} stratified, duplicate-aware, by subject on C-NMC (paper: not stated)",
        "batch size": f"{p['batch_size']} (paper: not stated)",
        "model selection": experiment.model_selection(p["select_best_epoch"])})


def verdict(assessed: dict[str, Assessed], data: Dataset, majority: float) -> str:
    """The best model against the paper's value for it, with the majority-class floor."""
    best = max(assessed, key=lambda k: assessed[k].row.mean)
    text = experiment.verdict(f"{best} ({data.display_name})", assessed[best].row, REPORTED[best]["accuracy"],
                              data.synthetic)
    text += f" Always answering the majority class scores {majority:.2%} on this test set."
    if data.stand_in:
        text += " STAND-IN task: the numbers say how the method does on this task, not on C-NMC 2019."
    return text


def details(p: dict, assessed: dict[str, Assessed], majority: float) -> dict:
    """Protocol details of results.json: the three models, optimiser, majority-class accuracy."""
    return {"models": {"traditional CNN": "3 conv-BN-ReLU + max-pool blocks, dense 256, dropout 0.5, softmax; "
                                          "from scratch",
                       "AlexNet": f"single tower, BN, FC {p['alexnet_fc_units']}; from scratch",
                       "VGG-16": {**assessed["VGG-16"].details, "head": f"dropout {p['dropout']} + softmax"}},
            "optimizer": f"SGD lr {p['learning_rate']} momentum {p['momentum']}", "batch_size": p["batch_size"],
            "epochs": p["epochs"], "majority_class_accuracy": majority}
