"""P4 (Nadim et al., Sequential CNN for ALL): reported numbers, the CNN, its baselines, deviations and verdict.

Every model runs on the same field-level splits (several split seeds,
:mod:`hemasuite.evaluation`) and gets one row pooled over them.

- :func:`train_cnn`: the Sequential CNN with ImageDataGenerator-style augmentation.
- :func:`majority_baseline`, :func:`knn_baseline`: the majority-class floor and KNN on
  pixel thumbnails (k chosen on validation).
- :func:`pretrained_baseline`: a frozen ImageNet backbone (EfficientNet-Lite0 on CPU) with
  a new softmax layer, input size chosen on validation: the stand-in for the paper's
  ImageNet ResNet50 and DenseNet.
- :func:`network_baselines`: ResNet50 / DenseNet-121 trained end to end (random init or ImageNet).
- :func:`per_class_correct`: the paper's per-class layout (correct / total test images).
"""

from __future__ import annotations

import pandas as pd

from .. import (
    augment,
    baselines,
    config,
    evaluation,
    experiment,
    features,
    metrics,
    models,
    record,
    training,
)
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
ARCHITECTURES = {"cnn": "Sequential CNN (P4)", "majority": "majority class", "knn": "KNN (pixels)",
                 "resnet50": "ResNet-50", "densenet121": "DenseNet-121", "efficientnet_lite0": "EfficientNet-Lite0"}
PRETRAINED_VARIANT = "frozen ImageNet features + softmax; stand-in for the paper's ImageNet ResNet50 and DenseNet"


def train_cnn(run, splits: list[Prepared], seeds, epochs: int, batch_size: int, learning_rate: float,
              augmentation: dict, select_best_epoch: bool, n_boot: int) -> Assessed:
    """The Sequential CNN on every split with every training seed (Adam with cosine decay, ``augmentation`` on
    training batches only), pooled into one row (:func:`hemasuite.evaluation.pool`)."""
    shape, n_classes = (splits[0].size, splits[0].size, 3), len(splits[0].dataset.classes)
    runs = [(prepared, experiment.train_seeds(
        prepared, lambda: models.p4_sequential_cnn(shape, n_classes), seeds, epochs, batch_size,
        training.adam(learning_rate, epochs, schedule="cosine"),
        augment=lambda s: augment.imagedatagenerator_layers(**augmentation, seed=s), restore_best=select_best_epoch))
        for prepared in splits]
    return evaluation.pool(run, "cnn", "Sequential CNN", runs, n_boot, record.Weights("random init"),
                           ARCHITECTURES["cnn"], "Sequential CNN", REPORTED["Sequential CNN"]["accuracy"])


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


def _pooled(run, key: str, title: str, runs, n_boot: int, weights: record.Weights, paper_name: str | None = None,
            variant: str | None = None) -> Assessed:
    paper_value = REPORTED[paper_name]["accuracy"] if paper_name else None
    return evaluation.pool(run, key, title, runs, n_boot, weights, ARCHITECTURES[key.removeprefix("baseline_")],
                           paper_name, paper_value, variant)


def majority_baseline(run, splits: list[Prepared], seed: int, n_boot: int) -> Assessed:
    """Always the most frequent training class, on every split: the floor every model must clear."""
    runs = [(prepared, [evaluation.majority(prepared, seed)]) for prepared in splits]
    return _pooled(run, "baseline_majority", "majority class", runs, n_boot, record.Weights("none (no training)"))


def knn_baseline(run, splits: list[Prepared], seed: int, n_boot: int) -> Assessed:
    """KNN on standardised pixel thumbnails, ``k`` chosen on each split's validation part."""
    runs = []
    for prepared in splits:
        fitted = baselines.knn(prepared.arrays("train"), prepared.arrays("val"), prepared.arrays("test"))
        runs.append((prepared, [TrainedSeed(seed, fitted.pop("probabilities"), {}, fitted)]))
    return _pooled(run, "baseline_knn", "knn", runs, n_boot, record.Weights("none (no training)"), "KNN")


def pretrained_head(source: Prepared, seeds, epochs: int, batch_size: int, learning_rate: float,
                    dropout: float) -> list[TrainedSeed]:
    """A dropout + softmax layer on the frozen features of ``source`` (:func:`hemasuite.features.as_prepared`),
    Adam, the weights of the best validation epoch kept."""
    n_features, n_classes = source.images.shape[1], len(source.dataset.classes)
    return experiment.train_seeds(source, lambda: features.softmax_head(n_features, n_classes, dropout), seeds,
                                  epochs, batch_size, training.adam(learning_rate, epochs, "constant"), rescale=1.0,
                                  restore_best=True, verbose=0)


def pretrained_baseline(run, splits: list[Prepared], backbone: str, sizes, seeds, epochs: int, batch_size: int,
                        learning_rate: float, n_boot: int, dropout: float = 0.5) -> Assessed:
    """An ImageNet backbone, frozen, with a new softmax layer: the stand-in for the paper's ImageNet baselines.

    Its globally pooled features are extracted once per input size in ``sizes`` (cached,
    shared by every split). On each split the input size is chosen on the validation part
    (best validation accuracy of the first training seed's head over its epochs), then the
    head is trained with every seed at that size.
    """
    found = {size: features.layer_features(experiment.with_size(splits[0], size).images, splits[0].frame["path"],
                                           backbone, "avgpool", "imagenet", seeds[0], batch_size=batch_size)
             for size in sizes}
    runs, chosen, tried = [], [], []
    for prepared in splits:
        sources = {size: features.as_prepared(prepared, x) for size, (x, _) in found.items()}

        def score(setting):
            [head] = pretrained_head(sources[setting["size"]], seeds[:1], epochs, batch_size, learning_rate, dropout)
            return max(head.history["val_accuracy"])

        best, table = evaluation.select_on_validation({f"{size} px": {"size": size} for size in sizes}, score)
        source = sources[int(table.loc[table["candidate"] == best, "size"].iloc[0])]
        runs.append((source, pretrained_head(source, seeds, epochs, batch_size, learning_rate, dropout)))
        chosen.append(f"split {prepared.split.seed}: {best}")
        tried += [record.Tried(f"split {prepared.split.seed}: {r.candidate}", r.validation_score)
                  for r in table.itertuples()]
    name = ARCHITECTURES[backbone]
    assessed = _pooled(run, f"baseline_{backbone}", name, runs, n_boot,
                       experiment.weights_record("imagenet", backbone), variant=PRETRAINED_VARIANT)
    assessed.details = {"extraction": {f"{size} px": record_ for size, (_, record_) in found.items()},
                        "head": f"dropout {dropout} + softmax, Adam lr {learning_rate}, best validation epoch",
                        "input_size_selection": record.Selection(
                            name, "input size", "validation split: best validation accuracy of the first training "
                            "seed's head over its epochs", chosen, tried)}
    return assessed


def network_baselines(run, splits: list[Prepared], names, size: int, epochs: int, batch_size: int,
                      learning_rate: float, weights, seed: int, n_boot: int) -> dict[str, Assessed]:
    """P4's ResNet50 / DenseNet-121 baselines, trained end to end with a softmax head on every split."""
    config.check_known(dict.fromkeys(names), {"resnet50", "densenet121"}, "network baselines")
    results = {}
    for name in names:
        shape, n_classes = (size, size, 3), len(splits[0].dataset.classes)
        runs = [(source, experiment.train_seeds(
            source, lambda: models.transfer_classifier(name, shape, n_classes, weights=weights), [seed], epochs,
            batch_size, training.adam(learning_rate, epochs, "constant"), rescale=1.0))
            for source in (experiment.with_size(prepared, size) for prepared in splits)]
        results[name] = _pooled(run, f"baseline_{name}", name, runs, n_boot, experiment.weights_record(weights, name),
                                BASELINE_PAPER_NAMES[name])
    return results


def precision_recall_table(cnn: Assessed) -> pd.DataFrame:
    """The paper's accuracy, precision, recall and F1 of the CNN beside this run's (macro, mean over seeds)."""
    over = cnn.evaluation["over_seeds"]
    return experiment.without_paper(metrics.paper_vs_run_table(REPORTED["Sequential CNN"], {
        "accuracy": over["accuracy"]["mean"], "precision": over["precision_macro"]["mean"],
        "recall": over["recall_macro"]["mean"], "f1": over["f1_macro"]["mean"]}), cnn.prepared)


def deviations(p: dict, splits: list[Prepared]) -> list[str]:
    """This notebook's differences from the paper, from its parameters ``p`` and its splits."""
    if is_folder_name(p["dataset"]):
        return experiment.own_data_deviations(p, "P4's Sequential CNN and baselines " + ", ".join(p["baselines"]))
    level = splits[0].split.level
    pretrained = p["pretrained"]
    items = {
        "input size": f"{p['image_size']}x{p['image_size']} (paper: resized, size not stated)",
        "epochs": f"{p['epochs']} (paper: not stated)" + (
            ", weights of the best validation-accuracy epoch kept (paper: validation data monitored 'to prevent "
            "overfitting')" if p["select_best_epoch"] else ""),
        "learning-rate schedule": "cosine decay from the initial rate (paper: Adam, schedule not stated)",
        "architecture": "3 x (Conv2D 3x3 - BatchNorm - ReLU - MaxPool), 32/64/128 filters, dense 128 "
                        "(paper: layer types only, no sizes)",
        "split": f"{p['fractions']} stratified, {level}-level groups on one side, {len(splits)} split seeds "
                 f"{[s.split.seed for s in splits]} x training seeds {list(p['seeds'])}; rows pool all of them "
                 "(paper: one train/val/test split, sizes not stated)",
        "baselines": "majority class and KNN (k chosen on validation) on every split; the paper's configuration of "
                     "its baselines is not stated"}
    if pretrained:
        items["pretrained baseline"] = (
            f"{ARCHITECTURES[pretrained]}, {models.weights_source(pretrained, 'imagenet')}, frozen, new softmax layer "
            f"({p['pretrained_epochs']} epochs, Adam lr {p['pretrained_learning_rate']}, best validation epoch), input "
            f"size chosen on validation from {list(p['pretrained_sizes'])} px: a stand-in for the paper's ImageNet "
            "ResNet50 and DenseNet, whose weights cannot be loaded without the Keras files")
    if p["baselines"]:
        items["network baselines"] = (
            f"{', '.join(p['baselines'])} trained end to end, {weights_kind(p['baseline_weights'])}"
            + ("" if p["baseline_weights"] == "imagenet" else " (batch normalisation momentum 0.9 under random init)")
            + f", {p['baseline_image_size']}x{p['baseline_image_size']}, {p['baseline_epochs']} epochs, one "
              "training seed per split")
    else:
        items["network baselines"] = ("ResNet50 and DenseNet-121 trained end to end are not run in this profile "
                                      "(time budget); the frozen ImageNet backbone above stands in for them")
    return experiment.deviations(p["profile"], items)


def selections(pretrained: Assessed | None) -> list[record.Selection]:
    """Selections beyond the epochs every row records: the pretrained baseline's input size."""
    return [pretrained.details["input_size_selection"]] if pretrained else []


def verdict(cnn: Assessed, models_: list[Assessed], synthetic: bool) -> str:
    """The CNN against the paper's 92.16%, its spread over splits, the baselines, and what its training curves show."""
    if cnn.prepared.dataset.own:
        return (experiment.own_data_verdict([cnn, *models_], "P4's Sequential CNN")
                + "\n\nWhat the training curves show:\n\n" + experiment.learning_evidence(cnn.trained))
    spread = cnn.evaluation["repeated_splits"]
    text = experiment.target_verdict("P4 Sequential CNN", cnn.row, REPORTED["Sequential CNN"]["accuracy"], synthetic)
    text += (f" Over {spread['splits']} {cnn.prepared.split.level}-level splits the sd across splits is "
             f"{_percent(spread['sd_across_splits'])} and across training seeds "
             f"{_percent(spread['sd_across_training_seeds'])}.")
    text += " Baselines on the same splits: " + "; ".join(
        f"{m.row.model} ({m.row.weights.label}) {m.row.mean:.2%}" for m in models_) + "."
    return text + "\n\nWhat the training curves show:\n\n" + experiment.learning_evidence(cnn.trained)


def _percent(value) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def details(p: dict, splits: list[Prepared]) -> dict:
    """Protocol details of results.json: model, optimiser, batch size, epochs, weights, every split."""
    return {"model": "P4 Sequential CNN", "optimizer": f"Adam lr {p['learning_rate']}, cosine decay",
            "batch_size": p["batch_size"], "epochs": p["epochs"],
            "splits": [record.to_dict(prepared.split) for prepared in splits], "training_seeds": list(p["seeds"]),
            "model_selection": experiment.model_selection(p["select_best_epoch"]),
            "weights": "random init (trained from scratch, as in the paper)",
            "rows": "pooled over split seeds (seeds[].split_seed); sd is across splits"}
