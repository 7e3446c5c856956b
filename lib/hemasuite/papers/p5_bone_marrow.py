"""P5 (Khan & Tehsin 2022): rotation-augmented training set, feature extraction + SVM, fine-tuning.

- :func:`stratified_subset`: the stand-in cut to the paper's data size (633 images).
- :func:`rotated_training_set`: every training image at 0, 90, 180 and 270 degrees; the
  test set stays as it is.
- :func:`feature_extraction`: FC6 (AlexNet, VGG-16) or globally pooled features (Inception
  V3, ResNet-101, both concatenated) of the frozen backbone, cached on disk, then a linear
  SVM whose C is chosen by cross-validation with the rotations of an image kept in one fold.
- :func:`fine_tuning`: the backbone with its last ``trainable_layers`` layers and a new
  softmax layer trained. With ``trainable_layers=0`` (the paper froze 822 of 825 layers:
  only the new fully connected, softmax and output layers learn) the frozen part gives the
  same output every epoch, so the new layer is trained on its cached features.
- :func:`pretrained_rows`: both techniques for backbones run with ImageNet weights beside
  the others, each at its own input size (VGG-16 as in the paper; EfficientNet-Lite0 as a
  sixth backbone, beyond the paper).
- :func:`paper_tables`: the paper's Tables 3 and 4 (technique x model) beside this run.
- :func:`deviations`, :func:`verdict`, :func:`details`: the rest of results.json.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pandas as pd
from scipy.special import softmax
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.multiclass import OneVsRestClassifier
from sklearn.svm import SVC

from .. import augment, config, evaluation, experiment, features, models, record, training
from ..datasets import Dataset
from ..errors import WeightsError
from ..experiment import Assessed, Prepared, TrainedSeed

ID = "P5"
NOTEBOOK = "22_p5_bone_marrow"
CITATION = "Khan & Tehsin 2022, bone-marrow leukemia subtypes"
DATASET = "bone marrow L1/L2/M2/M3/M5 (not public)"
PROTOCOL = "rot90 x4 augmentation, 75/25 split, batch 30, 20 epochs, momentum 0.9, lr 1e-3, ImageNet"
TECHNIQUES = ("feature extraction + SVM", "fine-tuning")
# Table 3 as printed: accuracy per technique and network.
TABLE3 = {"feature extraction + SVM": {"AlexNet": 0.7804, "Inception V3": 0.8750, "VGG-16": 0.8103,
                                       "ResNet-101": 0.7905, "Inception V3 + ResNet-101": 0.8110},
          "fine-tuning": {"AlexNet": 0.71, "Inception V3": 0.777, "VGG-16": 0.652, "ResNet-101": 0.69,
                          "Inception V3 + ResNet-101": 0.761}}
REPORTED = {f"{model}, {technique}": {"accuracy": value}
            for technique, values in TABLE3.items() for model, value in values.items()}
STANDS_IN_FOR = "the bone-marrow subtype set (P5)"
# Table 4 as printed. Its first block is headed "Fine tuning" but holds (nearly) Table 3's
# feature-extraction accuracies with classifier SVM (81.0 vs 81.03, 87.05 vs 87.50, 79.5 vs
# 79.05, 82.7 vs 81.10) and no AlexNet row; read here as feature extraction.
PAPER_TABLE4 = {
    "feature extraction + SVM": {"VGG-16": (0.85, 0.89, 0.810), "Inception V3": (0.84, 0.94, 0.8705),
                                 "ResNet-101": (0.81, 0.72, 0.795), "Inception V3 + ResNet-101": (0.83, 0.88, 0.827)},
    "fine-tuning": {"AlexNet": (0.72, 0.84, 0.71), "Inception V3": (0.74, 0.82, 0.777), "VGG-16": (0.62, 0.85, 0.652),
                    "ResNet-101": (0.66, 0.72, 0.69), "Inception V3 + ResNet-101": (0.77, 0.84, 0.761)},
}
PAPER_NAMES = {"alexnet": "AlexNet", "vgg16": "VGG-16", "inception_v3": "Inception V3", "resnet101": "ResNet-101",
               "inception_v3+resnet101": "Inception V3 + ResNet-101", "efficientnet_lite0": "EfficientNet-Lite0"}
BEYOND_THE_PAPER = "beyond the paper"


def stratified_subset(dataset: Dataset, n: int | None, seed: int) -> Dataset:
    """``n`` images of ``dataset`` with its class proportions (None: all), seeded."""
    if n is None or n >= len(dataset.frame):
        return dataset
    rng = np.random.default_rng(seed)
    exact = dataset.counts().to_numpy() / len(dataset.frame) * n
    quota = np.floor(exact).astype(int)
    quota[np.argsort(quota - exact, kind="stable")[: n - quota.sum()]] += 1  # largest remainders
    keep = np.concatenate([rng.choice(np.flatnonzero(dataset.frame["label"] == label), count, replace=False)
                           for label, count in zip(dataset.classes, quota)])
    frame = dataset.frame.iloc[np.sort(keep)].reset_index(drop=True)
    return replace(dataset, frame=frame, info={**dataset.info, "subset": f"{n} of {len(dataset.frame)} images, "
                                                                        f"stratified, seed {seed}"})


def rotated_training_set(prepared: Prepared) -> Prepared:
    """Training rows replaced by their four right-angle rotations (:func:`hemasuite.augment.rot90_x4`).

    The frame gains ``source`` (row of ``prepared.frame``) and ``rotation`` (quarter turns).
    """
    train = np.flatnonzero(prepared.frame["split"] == "train")
    rest = np.flatnonzero(prepared.frame["split"] != "train")
    rotated, _, sources = augment.rot90_x4(prepared.images[train], None, train)
    frame = pd.concat([prepared.frame.iloc[sources].assign(source=sources, rotation=np.tile(np.arange(4), len(train))),
                       prepared.frame.iloc[rest].assign(source=rest, rotation=0)], ignore_index=True)
    images = np.concatenate([rotated, prepared.images[rest]])
    return replace(prepared, dataset=replace(prepared.dataset, frame=frame), frame=frame, images=images,
                   protocol={**prepared.protocol, "augmentation": augment.describe_rot90()})


def feature_layer(backbone: str, weights, size: int) -> tuple[str, str | None]:
    """The layer feature extraction reads, and a note when it is a substitute.

    FC6 for AlexNet and VGG-16 (the paper). VGG-16's ImageNet FC6 needs 224x224 inputs and
    the Keras file with the fully connected top (the offline source has the convolutions
    only): otherwise its globally pooled last convolution block stands in.
    """
    if backbone == "alexnet":
        return "fc6", None
    if backbone == "vgg16":
        if weights is None:
            return "fc6", None
        if size != 224:
            return "avgpool", (f"VGG-16 ImageNet FC6 needs 224x224 input, not {size}x{size}: globally pooled block 5 "
                               "used instead")
        try:
            models.resolve_top_weights(backbone, weights)
        except WeightsError:
            return "avgpool", ("VGG-16 ImageNet FC6 needs the Keras file with the fully connected top, not found: "
                               f"globally pooled block 5 ({models.weights_source(backbone, weights)}) used instead")
        return "fc6", None
    return "avgpool", None


def frozen_layer(backbone: str) -> str:
    """The output of the frozen part of :func:`fine_tune_model` with ``trainable_layers=0``."""
    return "fc7" if backbone == "alexnet" else "avgpool"


def fine_tune_model(backbone: str, input_shape, n_classes: int, weights=None, trainable_layers: int = 0,
                    dropout: float = 0.5):
    """The backbone with a new softmax layer; only its last ``trainable_layers`` layers and the new one learn.

    AlexNet is torchvision's with ImageNet weights, this suite's from random init.
    """
    if backbone == "alexnet" and weights is not None:
        return models.alexnet_classifier(input_shape, n_classes, weights, dropout, trainable_layers)
    if backbone == "alexnet":
        model = models.alexnet(input_shape, n_classes, dropout=dropout)
        for layer in model.layers[:-(trainable_layers + 2)]:  # +2: the new layer and the dropout before it
            layer.trainable = False
        return model
    if "+" in backbone:
        return models.concatenated_classifier(backbone.split("+"), input_shape, n_classes, weights, dropout,
                                              trainable_layers)
    return models.transfer_classifier(backbone, input_shape, n_classes, weights, dropout=dropout,
                                      trainable_layers=trainable_layers)


def svm(prepared: Prepared, c_grid, seed: int = 0, folds: int = 3,
        feature_images_per_s: float | None = None) -> list[TrainedSeed]:
    """Linear SVM (one-vs-rest) on feature rows, C chosen by grouped cross-validation on the training rows.

    Features are centred and scaled to unit mean norm (training rows); the SVMs work on the
    precomputed linear kernel, so the C grid costs one matrix product. Folds keep every
    rotation of an image together (``source``), so C is not chosen on rotated copies of
    training images. Scores are the softmax of the decision values (their argmax is the
    prediction; they are not calibrated probabilities).

    The record holds the SVM's own speed (grid search + refit, and prediction, in feature
    rows per second) and, given the backbone's ``feature_images_per_s``, the end-to-end
    image speeds of feature extraction + SVM as ``train_images_per_s`` and
    ``inference_images_per_s``, and the cross-validated accuracy of every C as its
    ``selection``.
    """
    x_train, y_train = prepared.arrays("train")
    x_test, _ = prepared.arrays("test")
    centre = x_train.mean(axis=0)
    scale = np.linalg.norm(x_train - centre, axis=1).mean() + 1e-12
    train, test = (x_train - centre) / scale, (x_test - centre) / scale
    groups = prepared.frame.loc[prepared.frame["split"] == "train", "source"].to_numpy()
    search = GridSearchCV(OneVsRestClassifier(SVC(kernel="precomputed")), {"estimator__C": list(c_grid)},
                          cv=GroupKFold(n_splits=folds), scoring="accuracy")
    start = time.perf_counter()
    gram = train @ train.T
    search.fit(gram, y_train, groups=groups)
    fit_seconds = time.perf_counter() - start
    train_accuracy = float(np.mean(search.predict(gram) == y_train))
    start = time.perf_counter()
    decision = search.decision_function(test @ train.T)
    predict_seconds = time.perf_counter() - start
    if decision.ndim == 1:  # two classes: one SVM, positive score for the second class
        decision = np.stack([-decision, decision], axis=1)
    scores = softmax(decision, axis=1)
    record = {"classifier": "linear SVM, one-vs-rest (features centred, unit mean norm)",
              "C": search.best_params_["estimator__C"], "cv_accuracy": round(float(search.best_score_), 4),
              "train_accuracy": train_accuracy,
              "cv": f"{folds}-fold, rotations of an image together", "c_grid": list(c_grid),
              "wall_time_s": round(fit_seconds, 3),
              "svm_fit_rows_per_s": training.per_second(len(train), fit_seconds),
              "svm_predict_rows_per_s": training.per_second(len(test), predict_seconds),
              "feature_images_per_s": feature_images_per_s,
              "selection": {"what": "C", "on": f"{folds}-fold cross-validation on the training rows, rotations of an "
                                               "image in one fold: accuracy",
                            "chosen": f"C={search.best_params_['estimator__C']:g}",
                            "tried": {f"C={c:g}": float(score) for c, score in
                                      zip(c_grid, search.cv_results_["mean_test_score"])}}}
    if feature_images_per_s:
        # per image: its forward pass through the backbone, then its share of the SVM's time
        record["train_images_per_s"] = training.per_second(len(train), len(train) / feature_images_per_s + fit_seconds)
        record["inference_images_per_s"] = training.per_second(len(test),
                                                              len(test) / feature_images_per_s + predict_seconds)
    return [TrainedSeed(seed, scores, {}, record)]


def feature_svm(rotated: Prepared, backbone: str, weights, seed: int, c_grid, batch_size: int = 32,
                cache_dir=None) -> tuple[Prepared, list[TrainedSeed], dict]:
    """Technique (a) for one backbone: cached frozen features (:func:`feature_layer`), then :func:`svm`.

    Returns the feature set, the SVM's predictions and the extraction record.
    """
    layer, note = feature_layer(backbone.split("+")[0], weights, rotated.size)
    x, extracted = features.layer_features(rotated.images, rotated.frame["path"], backbone, layer, weights, seed,
                                           variant=rotated.frame["rotation"].tolist(), batch_size=batch_size,
                                           cache_dir=cache_dir)
    feature_set = features.as_prepared(rotated, x, standardize=False)
    return feature_set, svm(feature_set, c_grid, seed, feature_images_per_s=extracted["images_per_s"]), \
        {**extracted, "substitute": note}


def _assess(run, technique: str, backbone: str, prepared: Prepared, trained, n_boot: int, weights,
            built: dict) -> Assessed:
    """Assess one technique x backbone as a row named ``<network>, <technique>`` (key suffix ``_imagenet`` for
    ImageNet weights; a network the paper does not use is marked :data:`BEYOND_THE_PAPER`)."""
    name = PAPER_NAMES.get(backbone, backbone)
    model = f"{name}, {technique}"
    prefix = "fe" if technique == TECHNIQUES[0] else "ft"
    key = f"{prefix}_{backbone}" + ("_imagenet" if weights == "imagenet" else "")
    paper_model = model if model in REPORTED else None
    assessed = experiment.assess(run, key, model, prepared, trained, n_boot,
                                 experiment.weights_record(weights, backbone), paper_model,
                                 REPORTED.get(model, {}).get("accuracy"), None if paper_model else BEYOND_THE_PAPER)
    assessed.details = {**built, "backbone": backbone}
    return evaluation.complete(assessed, name)


def result_name(backbone: str, weights) -> str:
    """The key of a backbone's result: its name, with `` (ImageNet)`` when it starts from ImageNet."""
    return backbone + (" (ImageNet)" if weights == "imagenet" else "")


def feature_extraction(run, rotated: Prepared, backbones, weights, seed: int, c_grid, n_boot: int,
                       batch_size: int = 32) -> dict[str, Assessed]:
    """Technique (a) for every backbone (:func:`feature_svm`), assessed."""
    results = {}
    for backbone in backbones:
        feature_set, trained, extracted = feature_svm(rotated, backbone, weights, seed, c_grid, batch_size)
        results[result_name(backbone, weights)] = _assess(run, TECHNIQUES[0], backbone, feature_set, trained, n_boot,
                                                          weights, {**extracted, "input_size": rotated.size})
    return results


def fine_tuning(run, rotated: Prepared, backbones, weights, seed: int, seeds, epochs: int, batch_size: int,
                learning_rate: float, momentum: float, trainable_layers: int, n_boot: int) -> dict[str, Assessed]:
    """Technique (b) for every backbone: new softmax layer (+ last layers), ``seeds``, SGD, assessed.

    With ``trainable_layers=0`` the new layer is trained on the cached, standardised output
    of the frozen backbone (drawn with ``seed`` under random init, as in feature extraction).
    """
    shape, n_classes = (rotated.size, rotated.size, 3), len(rotated.dataset.classes)
    optimizer = training.sgd(learning_rate, momentum)
    results = {}
    for backbone in backbones:
        if trainable_layers == 0:
            x, built = features.layer_features(rotated.images, rotated.frame["path"], backbone,
                                               frozen_layer(backbone.split("+")[0]), weights, seed,
                                               variant=rotated.frame["rotation"].tolist(), batch_size=batch_size)
            source = features.as_prepared(rotated, x)
            trained = experiment.train_seeds(source, lambda: features.softmax_head(x.shape[1], n_classes), seeds,
                                             epochs, batch_size, optimizer, rescale=1.0)
            built["trained"] = "new softmax layer on the cached output of the frozen backbone"
        else:
            source = rotated
            trained = experiment.train_seeds(
                rotated, lambda: fine_tune_model(backbone, shape, n_classes, weights, trainable_layers), seeds,
                epochs, batch_size, optimizer, rescale=features.input_rescale(backbone, weights))
            built = {"trained": f"last {trainable_layers} backbone layers + new softmax layer"}
        results[result_name(backbone, weights)] = _assess(run, TECHNIQUES[1], backbone, source, trained, n_boot,
                                                          weights, {**built, "input_size": rotated.size})
    return results


def majority(run, prepared: Prepared, seed: int, n_boot: int) -> Assessed:
    """The majority-class floor of the split (the most frequent training class, always)."""
    floor = [evaluation.majority(prepared, seed)]
    return evaluation.complete(experiment.assess(run, "majority", "majority class", prepared, floor, n_boot,
                                                 record.Weights("none (no training)")), "majority class")


def train_small_cnn(run, rotated: Prepared, seeds, epochs: int, batch_size: int, learning_rate: float,
                    momentum: float, n_boot: int) -> Assessed:
    """The paper's small CNN from scratch on the rotated training set (a model the paper reports no number for)."""
    shape = (rotated.size, rotated.size, 3)
    trained = experiment.train_seeds(rotated, lambda: models.p5_small_cnn(shape, len(rotated.dataset.classes)), seeds,
                                     epochs, batch_size, training.sgd(learning_rate, momentum))
    return evaluation.complete(experiment.assess(run, "small_cnn", "small CNN", rotated, trained, n_boot,
                                                 record.Weights("random init")), "P5 small CNN")


def paper_tables(feature_results: dict[str, Assessed], tuning_results: dict[str, Assessed]) -> pd.DataFrame:
    """Tables 3 and 4 (technique x model: accuracy, precision, recall) with this run's values beside them.

    This run's precision and recall are macro averages over classes (the paper does not
    say which average it prints); accuracy is the mean over seeds with the bootstrap CI
    of that mean.
    """
    lines = []
    for technique, results in zip(TECHNIQUES, (feature_results, tuning_results)):
        for name, result in results.items():
            model = PAPER_NAMES.get(result.details.get("backbone", name), name)
            over = result.evaluation["over_seeds"]
            precision, recall, accuracy4 = PAPER_TABLE4[technique].get(model, (None, None, None))
            lines.append({"technique": technique, "model": model, "weights": result.row.weights.label,
                          "input size": result.details.get("input_size"),
                          "train accuracy": result.row.train_accuracy,
                          "paper accuracy (T3)": TABLE3[technique].get(model), "paper accuracy (T4)": accuracy4,
                          "accuracy": result.row.mean, "ci_low": result.row.ci_low, "ci_high": result.row.ci_high,
                          "seeds": len(result.row.seeds), "paper precision (T4)": precision,
                          "precision": over["precision_macro"]["mean"], "paper recall (T4)": recall,
                          "recall": over["recall_macro"]["mean"]})
    first = next((a for a in {**feature_results, **tuning_results}.values() if a.prepared is not None), None)
    table = pd.DataFrame(lines)
    return experiment.without_paper(table, first.prepared) if first else table


def pretrained_rows(run, prepared: Prepared, pretrained: dict, seed: int, seeds, c_grid, epochs: int,
                    batch_size: int, learning_rate: float, momentum: float,
                    n_boot: int) -> tuple[dict[str, Assessed], dict[str, Assessed]]:
    """Both techniques for every backbone of ``pretrained`` (backbone -> input size) from ImageNet weights, on the
    same split, its training images rotated at that size; the new layer of fine-tuning on the cached features."""
    extraction, tuning = {}, {}
    for backbone, size in pretrained.items():
        rotated = rotated_training_set(experiment.with_size(prepared, size))
        extraction |= feature_extraction(run, rotated, [backbone], "imagenet", seed, c_grid, n_boot, batch_size)
        tuning |= fine_tuning(run, rotated, [backbone], "imagenet", seed, seeds, epochs, batch_size, learning_rate,
                              momentum, 0, n_boot)
    return extraction, tuning


def deviations(p: dict, data: Dataset, extraction: dict[str, Assessed]) -> list[str]:
    """This notebook's differences from the paper, from its parameters ``p``."""
    if data.own:
        return experiment.own_data_deviations(p, "P5's feature extraction + SVM and fine-tuning of "
                                              + ", ".join(p["backbones"]) + ", and its small CNN")
    substitutes = list(dict.fromkeys(r.details["substitute"] for r in extraction.values()
                                     if r.details.get("substitute")))
    pretrained = p["pretrained"] or {}
    items = {
        "dataset": data.display_name + ("" if data.name == "bone_marrow_subtypes" else
                                        f" ({len(data.classes)} classes; the paper has five subtypes)"),
        "input size": f"{p['image_size']}x{p['image_size']} (paper: the networks' own, 224-299)" + "".join(
            f"; {PAPER_NAMES[b]} from ImageNet at {size}x{size}" for b, size in pretrained.items()),
        "weights": f"{p['weights'] or 'random init'} (paper: ImageNet)" + (
            ("; AlexNet: torchvision's, with its ImageNet weights" if p["weights"] else
             "; AlexNet: this suite's, batch normalisation in place of local response normalisation")
            if "alexnet" in p["backbones"] else ""),
        "augmentation": "rot90 x4 of the training images only (paper: unclear whether before or after the split)",
        "fine-tuning": f"last {p['fine_tune_layers']} backbone layers + new softmax layer trainable (paper: 822 of "
                       "the mixed network's 825 layers frozen)",
        "epochs": f"{p['epochs']} for the new layers, {p['cnn_epochs']} for the small CNN (paper: 20)",
        "SVM": f"linear, one-vs-rest, C in {p['c_grid']} by grouped 3-fold CV on the training images (paper: kernel, "
               "C, multi-class scheme not stated)"}
    if pretrained:
        items["ImageNet rows"] = "; ".join(
            f"{PAPER_NAMES[b]} beside the random-init rows, {models.weights_source(b, 'imagenet')}, both techniques"
            + (" (a sixth backbone, beyond the paper)" if b not in ("vgg16", "inception_v3", "resnet101") else "")
            for b in pretrained)
    if substitutes:
        items["VGG-16 FC6"] = "; ".join(substitutes)
    return experiment.deviations(p["profile"], items)


def verdict(candidates: list[Assessed], data: Dataset) -> str:
    """The best of the paper's technique x network against the paper's value for it, the paper's best, and the rows
    beyond the paper."""
    if data.own:
        return experiment.own_data_verdict(sorted(candidates, key=lambda a: -a.row.mean),
                                           "P5's feature extraction + SVM and fine-tuning (best first)")
    best = max((a for a in candidates if a.row.paper_model), key=lambda a: a.row.mean)
    text = experiment.target_verdict(f"{best.row.model} [{best.row.weights.label}] ({data.display_name})", best.row,
                              best.row.paper_value, data.synthetic)
    text += f" Paper's best: Inception V3 features + SVM, {TABLE3[TECHNIQUES[0]]['Inception V3']:.2%}."
    imagenet = [a for a in candidates if a.row.weights.imagenet]
    if imagenet:
        text += " From ImageNet weights: " + "; ".join(
            f"{a.row.model}{' (' + a.row.variant + ')' if a.row.variant else ''} {a.row.mean:.2%} "
            f"[{a.row.ci_low:.2%}, {a.row.ci_high:.2%}]" for a in imagenet) + "."
    if data.stand_in:
        text += (" STAND-IN task with a different number of classes: the comparison is of the method, not of the "
                 "numbers.")
    return text


def details(p: dict, extraction: dict[str, Assessed], tuning: dict[str, Assessed]) -> dict:
    """Protocol details of results.json: backbones, SVM grid, optimiser, what each model was built from."""
    return {"backbones": p["backbones"], "weights": p["weights"], "pretrained": p["pretrained"], "c_grid": p["c_grid"],
            "fine_tune_layers": p["fine_tune_layers"], "optimizer": f"SGD lr {p['learning_rate']} momentum "
                                                                     f"{p['momentum']}",
            "batch_size": p["batch_size"], "epochs": p["epochs"], "cnn_epochs": p["cnn_epochs"],
            "features": {name: r.details for name, r in extraction.items()},
            "fine_tuning": {name: r.details for name, r in tuning.items()}}


def check_backbones(backbones) -> None:
    """Every name is a backbone of :data:`hemasuite.models.BACKBONES` (AlexNet among them), or ``a+b`` of those."""
    config.check_known(dict.fromkeys(part for name in backbones for part in name.split("+")), set(models.BACKBONES),
                       "backbones")
