"""P2 (traditional CNN / AlexNet / VGG-16 on C-NMC 2019): ALL vs normal (hem) cells, on C-NMC 2019 or a labelled
stand-in. P2's question: does an ImageNet-pretrained VGG-16 beat networks trained from scratch?

- :func:`train_cnn_and_alexnet`: the traditional CNN from random initialisation, and AlexNet from
  ``alexnet_weights``: torchvision's ImageNet AlexNet, or this suite's from random initialisation.
- :func:`vgg16_block4`: VGG-16's blocks 1-4 run once over every image (cached): the frozen
  part under every VGG-16 row.
- :func:`frozen_vgg16`: the paper's model: frozen convolutions (block 5 on the cached
  block-4 output, globally pooled) + dropout + softmax, from ImageNet or random init.
- :func:`finetuned_vgg16`: block 5 fine-tuned from ImageNet with the same head.
- :func:`majority`, :func:`pretraining_table`: the majority-class row, and ImageNet vs
  from-scratch differences on the same test images with paired bootstrap CIs.
- :func:`table2`, :func:`deviations`, :func:`verdict`, :func:`details`: the rest of results.json.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import config, evaluation, experiment, features, models, pipeline, record, training
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
FROZEN = "frozen convolutions + softmax"
FINETUNED = "block 5 fine-tuned + softmax"


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
    """Accuracy, precision, recall, F1 of every model: the paper's Table 2 (where the row replicates one of its
    models) and this run (macro, mean over seeds). ``assessed`` maps row names to results."""
    rows_ = []
    for name, result in assessed.items():
        evaluation = result.evaluation
        over = evaluation["over_seeds"]
        paper = REPORTED.get(result.row.paper_model, {})
        rows_.append({"model": name, "weights": result.row.weights.label, "seeds": over["accuracy"]["n"],
                      **{f"paper {m}": paper.get(m) for m in ("accuracy", "precision", "recall", "f1")},
                      "accuracy": over["accuracy"]["mean"], "precision": over["precision_macro"]["mean"],
                      "recall": over["recall_macro"]["mean"], "f1": over["f1_macro"]["mean"],
                      "accuracy ci_low": result.row.ci_low, "accuracy ci_high": result.row.ci_high,
                      "train accuracy": result.row.train_accuracy})
    return pd.DataFrame(rows_)


def _assess(run, key: str, title: str, prepared: Prepared, trained, n_boot: int, weights: record.Weights,
            architecture: str, paper_model: str | None = None, variant: str | None = None) -> Assessed:
    paper_value = REPORTED[paper_model]["accuracy"] if paper_model else None
    return evaluation.complete(experiment.assess(run, key, title, prepared, trained, n_boot, weights, paper_model,
                                                 paper_value, variant), architecture)


def alexnet(input_shape, weights, fc_units: int):
    """P2's AlexNet: torchvision's with ImageNet ``weights`` and a new softmax layer (every layer trained), or this
    suite's from random initialisation (``weights`` None, FC6/FC7 of ``fc_units``)."""
    if weights is None:
        return models.alexnet(input_shape, 2, fc_units=fc_units)
    return models.alexnet_classifier(input_shape, 2, weights)


def train_cnn_and_alexnet(run, prepared: Prepared, epochs: int, batch_size: int, learning_rate: float,
                          momentum: float, seeds, alexnet_fc_units: int, alexnet_weights, select_best_epoch: bool,
                          n_boot: int) -> dict[str, Assessed]:
    """The traditional CNN from random initialisation and AlexNet from ``alexnet_weights`` (:func:`alexnet`): SGD,
    the same seeds and epochs; with ``select_best_epoch`` each keeps the weights of its best validation epoch."""
    shape, optimizer = (prepared.size, prepared.size, 3), training.sgd(learning_rate, momentum)
    # name: build, starting weights (None: random init), input scaling, architecture
    builds = {"traditional CNN": (lambda: models.p2_traditional_cnn(shape, 2), None, 1 / 255, "P2 traditional CNN"),
              "AlexNet": (lambda: alexnet(shape, alexnet_weights, alexnet_fc_units), alexnet_weights,
                          features.input_rescale("alexnet", alexnet_weights), "AlexNet")}
    results = {}
    for name, (build, weights, rescale, architecture) in builds.items():
        trained = experiment.train_seeds(prepared, build, seeds, epochs, batch_size, optimizer, rescale=rescale,
                                         restore_best=select_best_epoch)
        key = name.replace(" ", "_").lower() + ("_imagenet" if weights == "imagenet" else "")
        results[name] = _assess(run, key, name, prepared, trained, n_boot,
                                experiment.weights_record(weights, "alexnet"), architecture, name)
    return results


def majority(run, prepared: Prepared, seed: int, n_boot: int) -> Assessed:
    """Always the most frequent training class: the floor of this imbalanced task, as a row."""
    return _assess(run, "majority", "majority class", prepared, [evaluation.majority(prepared, seed)], n_boot,
                   record.Weights("none (no training)"), "majority class")


def vgg16_block4(prepared: Prepared, size: int, weights, seed: int, batch_size: int = 32) -> tuple:
    """VGG-16's ``block4_pool`` output of every image at ``size`` px (cached): features, their shape, the record."""
    source = experiment.with_size(prepared, size)
    x, built = features.layer_features(source.images, source.frame["path"], "vgg16", "block4_pool", weights, seed,
                                       batch_size=batch_size)
    side = x.shape[1] // 512
    return x, (int(np.sqrt(side)), int(np.sqrt(side)), 512), {**built, "input_size": size}


def frozen_vgg16(run, prepared: Prepared, block4: tuple, weights, seeds, epochs: int, batch_size: int,
                 learning_rate: float, momentum: float, dropout: float, select_best_epoch: bool,
                 n_boot: int) -> Assessed:
    """The paper's VGG-16: frozen convolutions, globally pooled, standardised on the training images, then dropout +
    softmax trained with SGD. Block 5 runs once over the cached block-4 output of ``block4``."""
    x4, shape, built = block4
    config.set_seeds(seeds[0])
    pooled, speed = training.predict(models.vgg16_block5(shape, None, weights, trainable=False),
                                     _batches(x4, batch_size))
    source = features.as_prepared(prepared, pooled)
    trained = experiment.train_seeds(source, lambda: features.softmax_head(pooled.shape[1], 2, dropout), seeds,
                                     epochs, batch_size, training.sgd(learning_rate, momentum), rescale=1.0,
                                     restore_best=select_best_epoch)
    key = "vgg16" + ("_imagenet" if weights == "imagenet" else "")
    result = _assess(run, key, "VGG-16", source, trained, n_boot, experiment.weights_record(weights, "vgg16"),
                     "VGG-16", "VGG-16", FROZEN)
    result.details = {**built, "block5_images_per_s": round(speed, 1), "head": f"dropout {dropout} + softmax"}
    return result


def finetuned_vgg16(run, prepared: Prepared, block4: tuple, seeds, epochs: int, batch_size: int,
                    learning_rate: float, momentum: float, dropout: float, select_best_epoch: bool,
                    n_boot: int) -> Assessed:
    """ImageNet VGG-16 with block 5 fine-tuned (blocks 1-4 frozen, their output cached) and a dropout + softmax
    layer, SGD; beyond the paper, which froze every convolution."""
    x4, shape, built = block4
    source = features.as_prepared(prepared, x4, standardize=False)
    trained = experiment.train_seeds(source, lambda: models.vgg16_block5(shape, 2, "imagenet", True, dropout),
                                     seeds, epochs, batch_size, training.sgd(learning_rate, momentum), rescale=1.0,
                                     restore_best=select_best_epoch)
    result = _assess(run, "vgg16_imagenet_block5", "VGG-16", source, trained, n_boot,
                     experiment.weights_record("imagenet", "vgg16"), "VGG-16", None, FINETUNED)
    result.details = {**built, "trained": "block 5 (3 convolutions) + new softmax layer; blocks 1-4 frozen"}
    return result


def _batches(x: np.ndarray, batch_size: int):
    return pipeline.make_dataset(x, np.zeros(len(x), int), 1, batch_size, training=False, rescale=1.0)


def paired_difference(a: Assessed, b: Assessed, n_boot: int = 1000, seed: int = 0) -> dict:
    """Accuracy of ``a`` minus ``b`` on the same test images (seed-mean correctness per image), paired bootstrap CI."""
    y = a.prepared.arrays("test")[1]
    if not np.array_equal(y, b.prepared.arrays("test")[1]):
        raise ValueError("paired_difference needs two models scored on the same test images")
    correct = [np.mean([r.probabilities.argmax(axis=1) == y for r in m.trained], axis=0) for m in (a, b)]
    difference = correct[0] - correct[1]
    samples = difference[np.random.default_rng(seed).integers(0, len(y), (n_boot, len(y)))].mean(axis=1)
    low, high = np.quantile(samples, [0.025, 0.975])
    return {"difference": float(difference.mean()), "ci_low": float(low), "ci_high": float(high), "n_test": len(y)}


def pretraining_table(results: dict[str, Assessed], n_boot: int = 1000) -> pd.DataFrame:
    """P2's question on this data: every ImageNet row (VGG-16, and AlexNet from ImageNet) minus each from-scratch
    row, with a paired bootstrap 95% CI (a CI that excludes 0 says pretraining helped, or hurt, on these test
    images)."""
    pretrained = {n: r for n, r in results.items() if r.row.weights.imagenet}
    scratch = {n: r for n, r in results.items() if r.row.weights.label == "random init"}
    return pd.DataFrame([{"pretrained": a, "from_scratch": b, **paired_difference(pretrained[a], scratch[b], n_boot)}
                         for a in pretrained for b in scratch])


def vgg16_models(run, prepared: Prepared, size: int, vgg_weights, random_init: bool, seeds, epochs: int,
                 batch_size: int, learning_rate: float, momentum: float, dropout: float, select_best_epoch: bool,
                 finetune_epochs: int, finetune_learning_rate: float, finetune_seeds,
                 n_boot: int) -> dict[str, Assessed]:
    """Every VGG-16 row at ``size`` px: frozen, from ``vgg_weights`` (the paper's: ImageNet) and, with
    ``random_init``, from random initialisation beside it; from ImageNet also with block 5 fine-tuned
    (``finetune_epochs`` 0: not run). Block 1-4 features are computed once per starting point (cached)."""
    results = {}
    for weights in dict.fromkeys([*([None] if random_init else []), vgg_weights]):
        block4 = vgg16_block4(prepared, size, weights, seeds[0], batch_size)
        results[f"VGG-16 ({weights_kind(weights)})"] = frozen_vgg16(
            run, prepared, block4, weights, seeds, epochs, batch_size, learning_rate, momentum, dropout,
            select_best_epoch, n_boot)
        if weights == "imagenet" and finetune_epochs:
            results["VGG-16 (ImageNet), block 5 fine-tuned"] = finetuned_vgg16(
                run, prepared, block4, finetune_seeds, finetune_epochs, batch_size, finetune_learning_rate, momentum,
                dropout, select_best_epoch, n_boot)
    return results


def deviations(p: dict, data: Dataset) -> list[str]:
    """This notebook's differences from the paper, from its parameters ``p``."""
    starts = list(dict.fromkeys([*([None] if p["vgg_random_init"] else []), p["vgg_weights"]]))
    sources = "; ".join(models.weights_source("vgg16", w) for w in starts)
    items = {
        "dataset": data.display_name + ("" if data.name == "cnmc2019" else
                                        f" ({data.description}; C-NMC 2019 is not available here)"),
        "input size": f"{p['image_size']}x{p['image_size']} for the traditional CNN and AlexNet, "
                      f"{p['vgg_image_size']}x{p['vgg_image_size']} for VGG-16 (paper: 224x224)",
        "epochs": f"{p['epochs']} (paper: 15)",
        "optimiser": f"SGD lr {p['learning_rate']}, momentum {p['momentum']} (paper: SGD lr 1e-5, momentum not stated)",
        "traditional CNN": "batch normalisation in each block (paper: no layer details; without it the network "
                           "stayed at the majority class with this optimiser)",
        "AlexNet": (f"torchvision's single-tower AlexNet, {models.weights_source('alexnet', p['alexnet_weights'])}, "
                    "every layer trained with a new softmax layer (paper: transfer learning, details not given)"
                    if p["alexnet_weights"] else
                    f"random init (alexnet_weights null), FC6/FC7 {p['alexnet_fc_units']} units, batch norm for local "
                    "response normalisation (paper: transfer learning, layer sizes not given; AlexNet's are 4,096)"),
        "VGG-16 weights": f"{', '.join(weights_kind(w) for w in starts)}, each a row (paper: ImageNet); "
                          f"sources: {sources}",
        "VGG-16 head": "dropout + softmax on globally pooled block-5 features, standardised (paper: not detailed)",
        "split": f"{p['fractions']} stratified, duplicate-aware, by subject on C-NMC (paper: not stated)",
        "batch size": f"{p['batch_size']} (paper: not stated)",
        "model selection": experiment.model_selection(p["select_best_epoch"])}
    if p["finetune_epochs"]:
        items["VGG-16 fine-tuning"] = (
            f"beyond the paper: ImageNet block 5 + softmax trained on the cached block-4 output, SGD lr "
            f"{p['finetune_learning_rate']}, {p['finetune_epochs']} epochs, seeds {list(p['finetune_seeds'])}")
    return experiment.deviations(p["profile"], items)


def verdict(assessed: dict[str, Assessed], data: Dataset, pretraining: pd.DataFrame) -> str:
    """The best model against the paper's value for it, the majority-class floor, and P2's question answered."""
    best = max((r for r in assessed.values() if r.row.paper_model), key=lambda r: r.row.mean)
    text = experiment.target_verdict(f"{best.row.model} [{best.row.weights.label}] ({data.display_name})", best.row,
                              best.row.paper_value, data.synthetic)
    text += f" Always answering the majority class scores {assessed['majority class'].row.mean:.2%} on this test set."
    for row in pretraining.itertuples():
        verb = "beats" if row.ci_low > 0 else "trails" if row.ci_high < 0 else "is not distinguishable from"
        text += (f" {row.pretrained} {verb} {row.from_scratch}: {row.difference:+.2%} (paired bootstrap 95% CI "
                 f"{row.ci_low:+.2%} to {row.ci_high:+.2%}).")
    if data.stand_in:
        text += " STAND-IN task: the numbers say how the method does on this task, not on C-NMC 2019."
    return text


def details(p: dict, assessed: dict[str, Assessed]) -> dict:
    """Protocol details of results.json: the models, how each VGG-16 row was built, optimiser, majority floor."""
    return {"models": {"traditional CNN": "3 conv-BN-ReLU + max-pool blocks, dense 256, dropout 0.5, softmax; "
                                          "from scratch",
                       "AlexNet": ("torchvision's single tower, FC 4096, from ImageNet; new softmax layer, every "
                                   "layer trained" if p["alexnet_weights"] else
                                   f"single tower, BN, FC {p['alexnet_fc_units']}; from scratch"),
                       **{name: r.details for name, r in assessed.items() if r.row.architecture == "VGG-16"}},
            "optimizer": f"SGD lr {p['learning_rate']} momentum {p['momentum']}", "batch_size": p["batch_size"],
            "epochs": p["epochs"], "majority_class_accuracy": assessed["majority class"].row.mean}
