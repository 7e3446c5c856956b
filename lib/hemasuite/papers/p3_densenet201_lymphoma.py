"""P3 (Hasan et al., DenseNet-201 on IICBU lymphoma): case-level cross-validation, the leakage ladder, P3's protocol.

- :data:`REPORTED` and :data:`PAPER_TABLE1`: the paper's numbers.
- :func:`study`: the images at native resolution with their case-level and image-level
  folds (stratified, grouped 5-fold), checked for leakage and saved as manifests.
- :func:`tile_cross_validation`: the tile CNN (:mod:`hemasuite.tiles`) under one level's
  folds, settings chosen inside every training part; :func:`imagenet_cross_validation`:
  EfficientNet-Lite0 ImageNet features of tiles + logistic regression, the same way;
  :func:`probe_cross_validation`: a 1-nearest-neighbour pixel probe that learns nothing
  about lymphoma.
- :func:`paper_protocol`: Augmentor copies of the whole set until every class has
  ``per_class`` images, then a random split of the augmented images, as the paper did:
  copies of one source image land on both sides of the split. :func:`leakage` counts them;
  :func:`paper_protocol_rung` runs the tile CNN and the probe on it.
- :func:`ladder`: the same models under P3's protocol, image-level and case-level CV
  (:class:`hemasuite.record.Rung`), and :func:`ladder_leakage`, the same as a
  :class:`hemasuite.record.Leakage` with the leakiest-minus-strictest difference.
- :func:`paper_network` (paper profile): the paper's DenseNet-201 under its protocol and
  a case-level split (:func:`leakage_free_protocol`: split first, augment training only).
- :func:`deviations`, :func:`verdict`, :func:`details`: the rest of results.json.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
from PIL import Image

from .. import (
    baselines,
    config,
    evaluation,
    experiment,
    models,
    pipeline,
    plots,
    record,
    same_field,
    splits,
    tiles,
    training,
    validation,
)
from ..augment import AugmentorPipeline
from ..datasets import Dataset
from ..experiment import Assessed, Prepared, TrainedSeed, pooled_per_class_table
from ..models import weights_kind

ID = "P3"
NOTEBOOK = "20_p3_densenet201_lymphoma"
CITATION = "Hasan et al., DenseNet-201 on IICBU lymphoma"
DATASET = "IICBU 2008 lymphoma (CLL/FL/MCL)"
PROTOCOL = ("Augmentor to 1,200 per class, THEN random 80/20 split of the augmented set; 224x224, 25 epochs, batch 24, "
            "Adam 1e-4, ImageNet")
REPORTED = {"DenseNet-201": {"accuracy": 0.9956}}
PROTOCOL_NAMES = {"paper protocol": "paper_protocol", "case-level split": "case_split"}  # name -> file-name slug
LEVELS = ("case", "image")
ARCHITECTURES = {"efficientnet_lite0": "EfficientNet-Lite0", "vgg16": "VGG-16"}  # ImageNet-feature backbones
RUNGS = {"augmented": "P3's protocol: augment, then split", "image": "image-level CV",
         "case": "case-level CV"}
# Table I as printed (its FL row is labelled "LLF"). Support 300 per class is 900 test images,
# 25% of 3,600 rather than the 20% the text states; 896 / 900 = 99.56% matches "only 4
# misclassifications", 20% (720 images) cannot give 99.56%.
PAPER_TABLE1 = pd.DataFrame({"class": ["CLL", "FL", "MCL"], "precision": [1.00, 0.99, 1.00],
                             "recall": [1.00, 1.00, 0.99], "f1": [1.00, 0.99, 0.99], "support": [300, 300, 300]})


def _derived(prepared: Prepared, images: np.ndarray, sources: np.ndarray, split, protocol: dict) -> Prepared:
    """A :class:`Prepared` whose rows are derived from rows ``sources`` of ``prepared.frame`` (copies, tiles)."""
    frame = prepared.frame.iloc[sources].reset_index(drop=True).assign(source=sources, split=split)
    return Prepared(replace(prepared.dataset, frame=frame), frame, images, int(images.shape[1]),
                    {**prepared.protocol, **protocol}, prepared.split)


def paper_protocol(prepared: Prepared, augmentor: AugmentorPipeline, per_class: int, test_fraction: float,
                   seed: int) -> Prepared:
    """Augment every original to ``per_class`` images per class, then split the augmented images at random.

    As Augmentor's ``Pipeline.sample``, every output image is a generated copy (the
    originals themselves are not added); the split is stratified by class and ignores
    which source image a copy came from.
    """
    images, _, sources = augmentor.generate_to_count(prepared.images, prepared.dataset.label_ids, per_class,
                                                     seed=seed, include_originals=False)
    frame = prepared.frame.iloc[sources].reset_index(drop=True)
    split = splits.split_dataset(frame, (1 - test_fraction, test_fraction), seed=seed, groups=None)["split"]
    return _derived(prepared, images, sources, split.to_numpy(), {
        "protocol": "paper: augment all originals, then a random split of the augmented images",
        "split": {"method": "random, stratified by class, over the augmented images (source images ignored)",
                  "fractions": [1 - test_fraction, test_fraction], "seed": seed,
                  "counts": splits.split_summary(frame.assign(split=split)).to_dict()},
        "augmentation": {**augmentor.describe(), "applies_to": "all images, before the split",
                         "per_class": per_class}})


def leakage_free_protocol(prepared: Prepared, augmentor: AugmentorPipeline, per_class: int, test_fraction: float,
                          seed: int) -> Prepared:
    """Split the originals first (``prepared``), augment only the training part, test on held-out originals.

    The training part is augmented to ``per_class x (1 - test_fraction)`` images per
    class, the size of the paper protocol's training set.
    """
    train = np.flatnonzero(prepared.frame["split"] == "train")
    test = np.flatnonzero(prepared.frame["split"] == "test")
    target = int(round(per_class * (1 - test_fraction)))
    images, _, local = augmentor.generate_to_count(prepared.images[train], prepared.dataset.label_ids[train], target,
                                                   seed=seed, include_originals=False)
    sources = np.concatenate([train[local], test])
    split = np.array(["train"] * len(local) + ["test"] * len(test))
    return _derived(prepared, np.concatenate([images, prepared.images[test]]), sources, split, {
        "protocol": "leakage-free: split the originals (group-aware), augment the training part only",
        "augmentation": {**augmentor.describe(), "applies_to": "training originals only", "per_class": target}})


def resized(protocol: Prepared, size: int) -> Prepared:
    """The protocol with its images resized to ``size`` x ``size`` (bilinear, as :func:`hemasuite.imageio.read_rgb`)."""
    if size == protocol.size:
        return protocol
    images = np.stack([np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
                       for image in protocol.images])
    return replace(protocol, images=images, size=size)


def leakage(protocol: Prepared) -> dict:
    """Test images whose source image (or a duplicate of it) is also a source of training images.

    Also counts test images that are pixel-identical to a training image (an Augmentor copy
    to which no operation happened to apply is its source image again).
    """
    frame = protocol.frame
    train, test = frame[frame["split"] == "train"], frame[frame["split"] == "test"]
    same_source = test["source"].isin(set(train["source"]))
    same_group = test["duplicate_group"].isin(set(train["duplicate_group"]))
    digests = np.array([hashlib.sha1(image.tobytes()).hexdigest() for image in protocol.images])
    identical = np.isin(digests[test.index], digests[train.index])
    return {"test_images_identical_to_a_training_image": int(identical.sum()),
            "test_images": int(len(test)), "test_sources": int(test["source"].nunique()),
            "test_images_with_source_in_train": int(same_source.sum()),
            "share_with_source_in_train": float(same_source.mean()),
            "test_images_with_duplicate_group_in_train": int(same_group.sum()),
            "sources_on_both_sides": int(len(set(train["source"]) & set(test["source"])))}


def accuracy_difference(a_correct, b_correct, n_boot: int = 1000, seed: int = 0) -> dict:
    """Accuracy of ``a`` minus that of ``b`` (0/1 or fractional correctness per test image), bootstrap 95% CI.

    The two test sets may be different images, so each is resampled independently.
    """
    rng = np.random.default_rng(seed)
    a, b = np.asarray(a_correct, dtype=float), np.asarray(b_correct, dtype=float)
    boot = (a[rng.integers(0, len(a), (n_boot, len(a)))].mean(axis=1)
            - b[rng.integers(0, len(b), (n_boot, len(b)))].mean(axis=1))
    low, high = np.quantile(boot, [0.025, 0.975])
    return {"a": float(a.mean()), "b": float(b.mean()), "difference": float(a.mean() - b.mean()),
            "difference_ci_low": float(low), "difference_ci_high": float(high), "n_boot": n_boot}


def leakage_gap(leaky: Prepared, leaky_trained: list[TrainedSeed], clean: Prepared, clean_trained: list[TrainedSeed],
                n_boot: int = 1000, seed: int = 0) -> dict:
    """Seed-mean accuracy of both protocols and their difference (:func:`accuracy_difference`)."""
    def correct(prepared, trained):
        _, y = prepared.arrays("test")
        return np.mean([r.probabilities.argmax(axis=1) == y for r in trained], axis=0)

    return accuracy_difference(correct(leaky, leaky_trained), correct(clean, clean_trained), n_boot, seed)


def per_class_beside_paper(protocols: dict) -> pd.DataFrame:
    """Table I layout (precision, recall, F1, support per class) of each protocol beside the paper's.

    ``protocols`` maps a label to an :class:`~hemasuite.experiment.Assessed`; rates are means over seeds.
    """
    table = PAPER_TABLE1.rename(columns=lambda c: c if c == "class" else f"paper {c}")
    table.insert(1, "class (this run)", next(iter(protocols.values())).prepared.dataset.classes)
    for label, assessed in protocols.items():
        prepared = assessed.prepared
        ours = pooled_per_class_table(prepared, assessed.trained).iloc[:len(prepared.dataset.classes)]
        table[f"{label} precision"] = ours["PRE"].to_numpy(float)
        table[f"{label} recall"] = ours["SEN"].to_numpy(float)
        table[f"{label} f1"] = ours["F1"].to_numpy(float)
        table[f"{label} support"] = ours["support"].to_numpy(int)
    return table


def train_backbone(run, protocols: dict[str, Prepared], backbone: str, weights, seeds, epochs: int, batch_size: int,
                   learning_rate: float, n_boot: int) -> dict[str, Assessed]:
    """The paper's network (``backbone`` + Dense 512 + Dropout 0.5 + softmax) under each protocol, same training."""
    protocol = next(iter(protocols.values()))
    shape, n_classes = (protocol.size, protocol.size, 3), len(protocol.dataset.classes)
    build = lambda: models.transfer_classifier(backbone, shape, n_classes, weights, dense_units=512,  # noqa: E731
                                               dropout=0.5)
    results = {}
    for name, protocol in protocols.items():
        trained = experiment.train_seeds(protocol, build, seeds, epochs, batch_size,
                                         training.adam(learning_rate, epochs, "constant"), rescale=1.0)
        results[name] = experiment.assess(run, f"{backbone}_{PROTOCOL_NAMES[name]}", network_name(backbone), protocol,
                                          trained, n_boot, experiment.weights_record(weights, backbone),
                                          "DenseNet-201", REPORTED["DenseNet-201"]["accuracy"], variant=name,
                                          leaky=name == "paper protocol")
    return results


def network_name(backbone: str) -> str:
    """DenseNet-201, or the backbone that stands in for it."""
    return "DenseNet-201" if backbone == "densenet201" else f"{backbone} (in place of DenseNet-201)"




# ---------------------------------------------------------------------------- case-level and image-level CV

@dataclass
class Study:
    """The images at native resolution (frame order) with duplicate groups, case groups and both levels' folds.

    ``frame`` gains ``duplicate_group``, ``<level>_group`` and ``fold_<level>`` for every level
    of :data:`LEVELS`; ``splits`` describes each level's folds for results.json.
    """

    data: Dataset
    frame: pd.DataFrame
    images: np.ndarray
    splits: dict[str, record.Split]

    @property
    def labels(self) -> np.ndarray:
        return self.data.label_ids

    def groups(self, level: str) -> np.ndarray | None:
        """What an inner validation split keeps together at ``level``: cases, or None (each image on its own)."""
        return None if level == "image" else self.frame[f"{level}_group"].to_numpy()

    def folds(self, level: str) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(train_index, test_index)`` of every fold at ``level``."""
        fold = self.frame[f"fold_{level}"].to_numpy()
        return [(np.flatnonzero(fold != k), np.flatnonzero(fold == k)) for k in np.unique(fold)]


def study(run, data: Dataset, n_folds: int, seed: int) -> Study:
    """Validate ``data``, make stratified grouped folds at case and at image level, check and save them.

    Case-level folds keep a case (with its duplicates and same-field twins) in one fold;
    for field images they are also checked for look-alike images across folds by phase
    correlation (:func:`hemasuite.splits.assert_no_leakage`). Manifests:
    ``folds/<level>_k<n>.csv`` (:func:`hemasuite.splits.save_folds_manifest`).
    """
    report = validation.validate_dataset(data)
    frame = data.frame.copy()
    frame["duplicate_group"] = validation.duplicate_group_ids(frame, report)
    thumbs = same_field.thumbnails(frame["path"]) if data.info.get("image_kind") == "field" else None
    described = {}
    for level in LEVELS:
        groups = validation.level_groups(frame, report, level)
        frame[f"{level}_group"] = groups
        frame[f"fold_{level}"] = splits.grouped_folds(frame, n_folds, seed, groups=groups)
        splits.assert_no_leakage(frame, groups, f"fold_{level}", images=thumbs if level == "case" else None)
        manifest = splits.save_folds_manifest(run, frame, groups, frame[f"fold_{level}"], level)
        counts = pd.crosstab(frame[f"fold_{level}"], frame["label"])
        described[level] = record.Split(
            level=level, method=f"stratified grouped {n_folds}-fold cross-validation (StratifiedGroupKFold): "
                                + validation.SPLIT_LEVELS[level], seed=seed, folds=n_folds,
            manifest=manifest, duplicates_merged=int(len(frame) - groups.nunique()),
            same_field_pairs=int(len(report.same_field_pairs)),
            counts={f"fold {k}": {str(c): int(v) for c, v in row.items()} for k, row in counts.iterrows()})
    images = pipeline.load_images(frame, None, cache_dir=config.cache_dir())
    return Study(data, frame, images, described)


def fold_counts(study: Study) -> pd.DataFrame:
    """Images per class and cases per fold, at each level."""
    rows = []
    for level in LEVELS:
        for fold, part in study.frame.groupby(f"fold_{level}"):
            rows.append({"level": level, "fold": fold, **part["label"].value_counts().sort_index().to_dict(),
                         "images": len(part), "cases": part["case_group"].nunique()})
    return pd.DataFrame(rows)


def tile_cross_validation(study: Study, level: str, options: dict[str, tiles.TileSettings], seed: int,
                          val_fraction: float) -> tiles.TileCV:
    """The tile CNN under ``level``'s folds, each fold's setting and epoch chosen on an inner ``level`` split."""
    fold = study.frame[f"fold_{level}"].to_numpy()
    return tiles.cross_validate_tiles(study.frame, study.images, study.data.classes, fold, study.groups(level), options,
                                seed, val_fraction)


@dataclass
class FeatureCV:
    """Per-image test predictions of features + logistic regression, and every fold's fit (C, selection)."""

    predictions: pd.DataFrame
    folds: list[dict]

    @property
    def train_accuracy(self) -> float:
        return float(np.mean([f["train_accuracy"] for f in self.folds]))

    def selection(self, model: str) -> record.Selection:
        return record.Selection(model=model, what="C", on=self.folds[0]["selection"]["on"],
                                chosen=[f"fold {f['fold']}: {f['selection']['chosen']}" for f in self.folds],
                                tried=[record.Tried(f"fold {f['fold']}: {name}", score) for f in self.folds
                                       for name, score in f["selection"]["tried"].items()])


def imagenet_features(study: Study, backbone: str, weights, tile: int, stride: int) -> tuple[np.ndarray, dict]:
    """Per-image ``backbone`` features, the mean over a grid of native-resolution tiles (cached)."""
    return tiles.pooled_features(study.images, study.frame["path"], backbone, weights, tile, stride)


def imagenet_cross_validation(study: Study, level: str, features: np.ndarray, c_grid, seed: int) -> FeatureCV:
    """Logistic regression on ``features`` under ``level``'s folds; C by inner CV that keeps ``level``'s groups."""
    labels, groups, fits = study.labels, study.groups(level), []

    def fit_predict(fold, train_index, test_index):
        fitted = baselines.logistic_regression(features[train_index], labels[train_index], features[test_index],
                                               None if groups is None else groups[train_index], c_grid, seed=seed)
        fits.append({"fold": fold, **fitted})
        return fits[-1].pop("probabilities")

    return FeatureCV(evaluation.cross_validate(labels, study.folds(level), study.data.classes, fit_predict), fits)


def nearest_neighbour(train_images, train_labels, test_images, side: int = 32) -> np.ndarray:
    """A probe that learns nothing about lymphoma: 1-nearest neighbour on ``side``-px pixel thumbnails.

    Under a leaky protocol it finds a test image's sibling copies (or its case) in the
    training set. k is fixed: nothing is chosen.
    """
    train = (train_images, train_labels)
    return baselines.knn(train, train, (test_images, np.zeros(len(test_images))), k_values=(1,),
                         side=side)["probabilities"]


def probe_cross_validation(study: Study, level: str) -> pd.DataFrame:
    """:func:`nearest_neighbour` under ``level``'s folds."""
    labels = study.labels
    return evaluation.cross_validate(labels, study.folds(level), study.data.classes, lambda fold, train, test:
                                     nearest_neighbour(study.images[train], labels[train], study.images[test]))


def case_overlap(study: Study, level: str) -> dict:
    """Test images whose case has images in the training part of their fold, at ``level``."""
    case, fold = study.frame["case_group"].to_numpy(), study.frame[f"fold_{level}"].to_numpy()
    shared = np.array([case[i] in set(case[fold != fold[i]]) for i in range(len(case))])
    return {"test_images": int(len(case)), "test_images_with_case_in_train": int(shared.sum()),
            "share_with_case_in_train": float(shared.mean())}


# ---------------------------------------------------------------------------- P3's protocol and the ladder

@dataclass
class PaperRung:
    """The tile CNN and the probe under P3's protocol (augment, then split) at native resolution."""

    protocol: Prepared
    tile_cnn: tiles.TileCV
    probe: pd.DataFrame
    leaks: dict


def paper_protocol_rung(study: Study, options: dict[str, tiles.TileSettings], per_class: int, test_fraction: float,
                        seed: int, val_fraction: float) -> PaperRung:
    """:func:`paper_protocol` on the native images, then the same tile-CNN selection and training as in the CV.

    Its validation part is carved at random from the augmented training copies, as this
    protocol would.
    """
    base = Prepared(study.data, study.frame, study.images, int(study.images.shape[1]), {})
    leaky = paper_protocol(base, AugmentorPipeline(seed=seed), per_class, test_fraction, seed)
    labels, classes = leaky.dataset.label_ids, study.data.classes
    train, test = (np.flatnonzero(leaky.frame["split"] == side) for side in ("train", "test"))
    probabilities, fold = tiles.fit_fold(leaky.frame, leaky.images, labels, len(classes), train, test, None, options,
                                         seed, val_fraction)
    probe = nearest_neighbour(leaky.images[train], labels[train], leaky.images[test])
    return PaperRung(leaky, tiles.TileCV(evaluation.prediction_frame(labels, test, probabilities, classes), [fold]),
                     evaluation.prediction_frame(labels, test, probe, classes), leakage(leaky))


def ladder(dataset: str, paper: PaperRung, tile_cvs: dict[str, tiles.TileCV], probes: dict[str, pd.DataFrame],
           features: dict[str, FeatureCV], backbone: str) -> list[record.Rung]:
    """Rungs of the tile CNN and the probe (all three protocols) and of the ImageNet-feature model (CV levels)."""
    rungs = [evaluation.rung(dataset, 0, RUNGS["augmented"], "augmented", "tile CNN", paper.tile_cnn.predictions,
                             paper.tile_cnn.train_accuracy),
             evaluation.rung(dataset, 0, RUNGS["augmented"], "augmented", "1-NN pixel probe", paper.probe)]
    for order, level in ((1, "image"), (2, "case")):
        rungs += [evaluation.rung(dataset, order, RUNGS[level], level, "tile CNN", tile_cvs[level].predictions,
                                  tile_cvs[level].train_accuracy),
                  evaluation.rung(dataset, order, RUNGS[level], level, "1-NN pixel probe", probes[level]),
                  evaluation.rung(dataset, order, RUNGS[level], level, feature_model(backbone),
                                  features[level].predictions, features[level].train_accuracy)]
    return rungs


def ladder_figure(run, rungs: list[record.Rung], study: Study) -> pd.DataFrame:
    """The ladder as a table (saved) and a figure (saved), with the majority-class rate."""
    table = evaluation.rungs_table(rungs)
    run.save_table(table, "leakage_ladder")
    majority = float(pd.Series(study.labels).value_counts(normalize=True).max())
    run.save_figure(plots.leakage_ladder(table, f"P3 - {study.data.display_name}: leakage ladder", majority),
                    "leakage_ladder")
    return table


def ladder_leakage(rungs: list[record.Rung], paper: PaperRung, tile_cvs: dict[str, tiles.TileCV], study: Study,
                   n_boot: int, seed: int) -> record.Leakage:
    """Every rung as a leakage measurement; the tile CNN's P3-protocol minus case-level accuracy; the leak counts."""
    def correct(predictions):
        return (predictions["true"] == predictions["predicted"]).to_numpy()

    gap = accuracy_difference(correct(paper.tile_cnn.predictions), correct(tile_cvs["case"].predictions), n_boot,
                              seed)
    return record.Leakage(
        [record.LeakageMeasurement(r.protocol, r.model, r.level != "case", r.test_accuracy, r.ci_low, r.ci_high)
         for r in rungs],
        record.Difference(gap["difference"], gap["difference_ci_low"], gap["difference_ci_high"], n_boot),
        {RUNGS["augmented"]: paper.leaks, **{RUNGS[level]: case_overlap(study, level) for level in LEVELS}})


# ---------------------------------------------------------------------------- tables and rows

def cv_summary(results: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per model x protocol: pooled accuracy with its exact CI, mean +/- sd over folds, every fold's accuracy."""
    rows = []
    for name, predictions in results.items():
        summary = evaluation.cv_summary(predictions)
        rows.append({"model": name, "images": summary["images"], "pooled_accuracy": summary["accuracy"],
                     "ci_low": summary["ci"]["ci_low"], "ci_high": summary["ci"]["ci_high"],
                     "fold_mean": summary["fold_mean"], "fold_sd": summary["fold_sd"],
                     "folds": ", ".join(f"{v:.2f}" for v in evaluation.fold_table(predictions)["accuracy"])})
    return pd.DataFrame(rows).astype({"fold_sd": float})


def per_case(run, study: Study, results: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Fraction correct per case for each model x protocol (table and figure saved), cases in class order."""
    table = pd.concat([evaluation.group_table(predictions, study.frame["case_group"], study.data.classes)
                       .assign(protocol=name) for name, predictions in results.items()], ignore_index=True)
    run.save_table(table, "per_case")
    run.save_figure(plots.group_accuracy(table, f"P3 - {study.data.display_name}: fraction correct per case"),
                    "per_case")
    return table


def rows(run, study: Study, tile_cvs: dict[str, tiles.TileCV], features: dict[str, FeatureCV], paper: PaperRung,
         backbone: str, weights, network: dict | None) -> list[record.ModelRow]:
    """Results rows: the tile CNN under both CV levels and P3's protocol, the ImageNet-feature model under both,
    the majority-class floor of both, and the paper's network where it ran (:func:`paper_network`)."""
    paths, classes = study.frame["path"], study.data.classes
    paper_value = {"paper_model": "DenseNet-201", "paper_value": REPORTED["DenseNet-201"]["accuracy"]}
    found = []
    for level in LEVELS:
        cv = tile_cvs[level]
        found.append(evaluation.cv_model_row(
            run, f"tile_cnn_{level}_cv", "tile CNN (native resolution)", cv.predictions, paths, classes,
            record.Weights("random init"), level, "tile CNN", cv.train_accuracy, [f"fold {f.fold}: {f.label()}"
                                                                                  for f in cv.folds],
            variant=RUNGS[level], **paper_value))
    found.append(evaluation.cv_model_row(
        run, "tile_cnn_paper_protocol", "tile CNN (native resolution)", paper.tile_cnn.predictions,
        paper.protocol.frame["path"], classes, record.Weights("random init"), None, "tile CNN",
        paper.tile_cnn.train_accuracy, [paper.tile_cnn.folds[0].label()], variant=RUNGS["augmented"], leaky=True,
        **paper_value))
    for level in LEVELS:
        cv = features[level]
        found.append(evaluation.cv_model_row(
            run, f"imagenet_features_{level}_cv", feature_model(backbone), cv.predictions, paths, classes,
            feature_weights(backbone, weights), level, ARCHITECTURES.get(backbone, backbone), cv.train_accuracy,
            [f"fold {f['fold']}: {f['selection']['chosen']}" for f in cv.folds], variant=RUNGS[level]))
    found += [evaluation.cv_majority_row(run, f"majority_{level}_cv", tile_cvs[level].predictions, paths, classes,
                                         level, variant=RUNGS[level]) for level in LEVELS]
    return found + ([assessed.row for assessed in network["network"].values()] if network else [])


def feature_model(backbone: str) -> str:
    """The ImageNet-feature model's name."""
    return f"{ARCHITECTURES.get(backbone, backbone)} tile features + logistic regression"


def selections(tile_cvs: dict[str, tiles.TileCV], features: dict[str, FeatureCV], paper: PaperRung,
               backbone: str) -> list[record.Selection]:
    """Everything chosen on validation data, per protocol, with every candidate and its validation score."""
    found = [cv.selection(f"tile CNN, {RUNGS[level]}", f"{RUNGS[level]}: a validation part of each fold's training "
                          f"part ({'case-grouped' if level == 'case' else 'images'}): per-image accuracy")
             for level, cv in tile_cvs.items()]
    found.append(paper.tile_cnn.selection(f"tile CNN, {RUNGS['augmented']}", "a random validation part of the "
                                          "augmented training copies (as that protocol would): per-image accuracy"))
    return found + [cv.selection(f"{feature_model(backbone)}, {RUNGS[level]}") for level, cv in features.items()]


def feature_weights(backbone: str, weights) -> record.Weights:
    """The ImageNet-feature model's weights record, with the exact source (package and version, or Keras file)."""
    return record.Weights(weights_kind(weights), models.weights_source(backbone, weights))


# ---------------------------------------------------------------------------- paper profile: the paper's network

def paper_network(run, data: Dataset, p: dict) -> dict | None:
    """The paper's network under its protocol and under a case-level split (the ``paper`` profile); None without one.

    The originals are split once at case level (:func:`hemasuite.experiment.prepare`),
    augmented at ``augment_size`` as the paper did, resized to ``image_size``.
    """
    if p["backbone"] is None:
        return None
    prepared = experiment.prepare(run, data, [1 - p["test_fraction"], p["test_fraction"]], p["seed"],
                                  p["augment_size"])
    built = protocols(prepared, p["per_class"], p["test_fraction"], p["seed"], p["image_size"])
    network = train_backbone(run, built, p["backbone"], p["weights"], p["backbone_seeds"], p["epochs"],
                             p["batch_size"], p["learning_rate"], p["n_boot"])
    gap = leakage_gap(built["paper protocol"], network["paper protocol"].trained, built["case-level split"],
                      network["case-level split"].trained, p["n_boot"], p["seed"])
    table1 = per_class_beside_paper(network)
    run.save_table(table1, "table1_per_class")
    return {"protocols": built, "network": network, "gap": gap, "table1": table1}


def protocols(prepared: Prepared, per_class: int, test_fraction: float, seed: int, size: int) -> dict[str, Prepared]:
    """The paper's protocol and a case-level split with the paper's Augmentor settings, resized to ``size``."""
    augmentor = AugmentorPipeline(seed=seed)
    built = {"paper protocol": paper_protocol(prepared, augmentor, per_class, test_fraction, seed),
             "case-level split": leakage_free_protocol(prepared, augmentor, per_class, test_fraction, seed)}
    return {name: resized(protocol, size) for name, protocol in built.items()}


def paper_network_summary(found: dict | None) -> str:
    """Markdown: the paper's network under both protocols, or why it did not run."""
    if found is None:
        return ("Not run at this profile (`backbone` is None): at cpu scale DenseNet-201 from random initialisation "
                "reached only 63% training accuracy, so it could not show any leakage. The `paper` profile runs it.")
    lines = [f"- {name}: {a.row.mean:.2%} (bootstrap 95% CI {a.row.ci_low:.2%} to {a.row.ci_high:.2%})"
             for name, a in found["network"].items()]
    gap = found["gap"]
    return "\n".join(lines + [f"- paper protocol minus case-level split: {gap['difference']:+.2%} (95% CI "
                              f"{gap['difference_ci_low']:+.2%} to {gap['difference_ci_high']:+.2%})"])


# ---------------------------------------------------------------------------- the record

def deviations(p: dict) -> list[str]:
    """This notebook's differences from the paper, from its parameters ``p``."""
    network = network_name(p["backbone"]) if p["backbone"] else None
    return experiment.deviations(p["profile"], {
        "evaluation": f"stratified grouped {p['n_folds']}-fold cross-validation at case level (the main protocol: "
                      "every image tested once by a model that never saw its case) and at image level; P3's own "
                      "protocol (augment, then one random split) as the leakiest rung of the ladder (paper: only that)",
        "model": "tile CNN from scratch on native-resolution tiles, an image's prediction the mean of its tiles' "
                 "probabilities; EfficientNet-Lite0 ImageNet features + logistic regression beside it"
                 + (f"; {network} only in the paper-protocol comparison" if network else
                    "; DenseNet-201 not run at this profile (from random initialisation it did not fit its "
                    "training data on a CPU)"),
        "selection": f"per fold, on a {p['val_fraction']:.0%} validation part of the training part (case-grouped "
                     "in case-level CV): tile-CNN setting and epoch, the model tested is the one trained on the "
                     "rest of the training part (not retrained on all of it); C of the logistic regression by "
                     "inner grouped 5-fold CV",
        "augmented images per class (P3's protocol rung)": f"{p['per_class']} at native resolution (paper: 1,200 at "
                                                             "224x224)",
        "test split of P3's protocol": f"{p['test_fraction']:.0%} (paper text: 20%; its Table I support implies 25%)",
        "seeds": f"training seed {p['seed']} in every fold (paper: one run, no seed stated)",
        "data": "the IICBU copy here is downscaled 0.3x (417x312 px); cases from case_ids.csv",
        "Augmentor probabilities": "exact p (Augmentor's rounding fires at about p + 0.05)"}
        | ({"paper network": f"{network}, {weights_kind(p['weights'])}, {p['image_size']} px, {p['epochs']} epochs"}
           if network else {}))


def verdict(rungs: list[record.Rung], backbone: str, synthetic: bool) -> str:
    """The paper's claim beside the ladder: P3's protocol, image-level and case-level CV, with exact CIs."""
    def text(model, level):
        r = next(r for r in rungs if r.model == model and r.level == level)
        sd = f", sd over folds {r.sd:.1%}" if r.sd is not None else ""
        train = f"; training accuracy {r.train_accuracy:.1%}" if r.train_accuracy is not None else ""
        return f"{r.test_accuracy:.1%} (95% CI {r.ci_low:.1%} to {r.ci_high:.1%}, n = {r.n_test}{sd}{train})"

    claim = REPORTED["DenseNet-201"]["accuracy"]
    lines = [f"**Paper:** {claim:.2%}, measured on augmented copies split at random after augmentation (P3's "
             "protocol), so copies of one image, and images of one case, sit on both sides.",
             f"**Tile CNN, same settings and selection at every rung:** P3's protocol {text('tile CNN', 'augmented')}; "
             f"image-level CV {text('tile CNN', 'image')}; **case-level CV {text('tile CNN', 'case')}**.",
             f"**{feature_model(backbone)}:** image-level CV {text(feature_model(backbone), 'image')}; case-level "
             f"CV {text(feature_model(backbone), 'case')}.",
             f"**1-NN pixel probe** (learns nothing about lymphoma): P3's protocol "
             f"{text('1-NN pixel probe', 'augmented')}; image level {text('1-NN pixel probe', 'image')}; case level "
             f"{text('1-NN pixel probe', 'case')}.",
             "Only the case-level number estimates accuracy on a new patient's biopsy; what a protocol adds above "
             "it, a model gained from seeing the same image or the same case in training."]
    if synthetic:
        lines.append("SYNTHETIC data: this says only that the pipeline runs.")
    return "\n\n".join(lines)


def protocol(study: Study, p: dict, options: dict[str, tiles.TileSettings], selections: list[record.Selection],
             deviation_lines: list[str], details_: dict) -> record.Protocol:
    """The results record's protocol: the case-level folds (main protocol), native input, tile augmentation."""
    data = study.data
    return record.Protocol(
        dataset=record.DatasetInfo(name=data.name, display_name=data.display_name, classes=list(data.classes),
                                   images=int(len(data.frame)), synthetic=data.synthetic, stand_in_for=data.stand_in),
        split=study.splits["case"], seeds=[p["seed"]], input_size=list(study.images.shape[1:]),
        preprocess="native resolution, tiles of " + " or ".join(sorted({f"{s.tile}" for s in options.values()}))
                   + " px chosen per fold",
        augmentation={name: s.describe()["augmentation"] for name, s in options.items()}, selection=selections,
        deviations=deviation_lines, details=details_)


def details(study: Study, options: dict[str, tiles.TileSettings], tile_cvs: dict[str, tiles.TileCV],
            features: dict[str, FeatureCV], extraction: dict, paper: PaperRung) -> dict:
    """Notebook-specific material of results.json: candidates, per-fold tables, the image-level folds, P3's protocol."""
    return {"tile_cnn_candidates": {name: s.describe() for name, s in options.items()},
            "tile_cnn_folds": {level: cv.fold_table() for level, cv in tile_cvs.items()},
            "image_level_split": asdict(study.splits["image"]),
            "imagenet_features": extraction,
            "logistic_regression_folds": {level: [{k: v for k, v in f.items() if k != "selection"}
                                                  for f in cv.folds] for level, cv in features.items()},
            "paper_protocol_rung": {k: v for k, v in paper.protocol.protocol.items() if k != "preprocess"}
            | {"fold": paper.tile_cnn.fold_table()}}
