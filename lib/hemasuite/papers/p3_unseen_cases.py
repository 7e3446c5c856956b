"""Lymphoma subtype on unseen cases (IICBU 2008, beyond P3): case-level CV, stain variants, what models use.

P3 and every other published result on IICBU are image-level: images of one specimen share
stain and sectioning, so a model can learn the specimen instead of the subtype. Here every
image is tested once by a model that never saw its case.

- :func:`load_cases`: the images at native resolution with their case, duplicate-merged
  groups and labels (SYNTHETIC data gets synthetic cases, :func:`synthetic_cases`).
- :func:`fold_plan`: stratified grouped folds at ``case`` level and, beside them, at image
  level (duplicates kept together) for the gap; :func:`save_folds` writes their manifests.
- :class:`TileExtractor`: ImageNet backbones on native-resolution tiles, cached per colour
  variant; EfficientNet-Lite0 is cut before its last block so that the cached activations
  serve both the pooled features and fine-tuning of the last block.
- :class:`VariantFeatures`: the features of one colour variant (:data:`hemasuite.stain.VARIANTS`)
  for one fold: HED jitter on training copies only, the Reinhard reference fitted on the
  fold's training images only.
- :func:`linear_probe`, :func:`choose_c`, :func:`probe_cv`: L2 logistic regression on
  image-pooled tile features, C chosen by inner grouped CV of each training part.
- :func:`finetune_cv`: Lite0's last block + head fine-tuned on tiles, epoch chosen on an
  inner grouped validation part, tile probabilities averaged per image.
- :func:`model_row`, :func:`summary_table`, :func:`case_table`, :func:`case_confusion_figure`,
  :func:`gradcam_cases`, :func:`colour_evidence`, :func:`verdict`, :func:`best_by_level`:
  results and the evidence on colour versus morphology.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Callable

import keras
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from .. import (
    config,
    evaluation,
    experiment,
    explain,
    features,
    models,
    pipeline,
    plots,
    record,
    splits,
    stain,
    training,
    validation,
)
from ..datasets import Dataset
from ..errors import DataError, ParameterError

ID = "P3"
NOTEBOOK = "23_p3_unseen_cases"
CITATION = "beyond Hasan et al. (P3): IICBU lymphoma subtype on cases the model never saw"
DATASET = "IICBU 2008 lymphoma (CLL/FL/MCL), 29 cases"
REPORTED: dict = {}  # beyond the paper: P3 reports no case-level number, so no row has a paper value
BEYOND_PAPER = "case-level evaluation; the paper (image level) reports no such number"
ARCHITECTURES = {"efficientnet_lite0": "EfficientNet-Lite0", "vgg16": "VGG-16"}
CUT = {"efficientnet_lite0": "block14_add"}  # fine-tuning trains what follows this layer
# feature-extraction precision on a CPU: VGG-16 ran 4x faster under bfloat16 on the 2 avx512_bf16 cores
# measured (23.5 vs 6.0 tiles/s at 112 px); Lite0's depthwise convolutions ran slower (12 vs 22 tiles/s at 224 px)
CPU_PRECISION = {"vgg16": "mixed_bfloat16"}
LEVEL_NAMES = {"case": "case-level CV", "image": "image-level CV", "duplicate": "image-level CV"}
ACTIVATION_BATCH = 256  # inference batch of cached trunk activations (pooling, fine-tuning validation and test)


# ---------------------------------------------------------------------------- data and folds

@dataclass
class Cases:
    """Images at native resolution (frame order) with labels, cases and the groups of each split level."""

    dataset: Dataset
    frame: pd.DataFrame
    images: np.ndarray
    labels: np.ndarray
    image_level: str

    @property
    def classes(self) -> list[str]:
        return list(self.dataset.classes)

    @property
    def paths(self) -> list[str]:
        return self.frame["path"].astype(str).tolist()


def synthetic_cases(dataset: Dataset, per_case: int) -> Dataset:
    """A SYNTHETIC dataset with a made-up ``case`` column: consecutive runs of ``per_case`` images of a class."""
    if not dataset.synthetic:
        raise ParameterError(f"synthetic_cases is for SYNTHETIC data only, not {dataset.name!r}")
    frame = dataset.frame.copy()
    rank = frame.groupby("label").cumcount() // per_case
    frame["case"] = frame["label"] + "/synthetic_case_" + rank.astype(str)
    frame["group"] = frame["case"]
    dataset.frame = frame
    return dataset


def load_cases(dataset: Dataset, synthetic_per_case: int = 4) -> Cases:
    """``dataset``'s images at native size, with case groups (same-field twins and duplicates merged in)."""
    if dataset.synthetic and "case" not in dataset.frame.columns:
        dataset = synthetic_cases(dataset, synthetic_per_case)
    if "case" not in dataset.frame.columns:
        raise DataError(f"{dataset.name}: no case ids (column 'case'); this notebook needs them "
                        "(IICBU: iicbu_lymphoma/case_ids.csv)")
    report = validation.validate_dataset(dataset)
    frame = dataset.frame.copy()
    frame["duplicate_group"] = validation.duplicate_group_ids(frame, report, group_col=None)
    frame["case_group"] = validation.level_groups(frame, report, "case", group_col="case")
    level = "image" if frame["duplicate_group"].nunique() == len(frame) else "duplicate"
    images = pipeline.load_images(frame, None, cache_dir=config.cache_dir())
    return Cases(dataset, frame, images, dataset.label_ids, level)


def fold_plan(cases: Cases, n_folds: int, seed: int) -> dict[str, np.ndarray]:
    """Fold of every image for each CV level: ``case`` (whole cases) and the image level (duplicates together)."""
    return {"case": splits.grouped_folds(cases.frame, n_folds, seed, groups="case_group").to_numpy(),
            cases.image_level: splits.grouped_folds(cases.frame, n_folds, seed, groups="duplicate_group").to_numpy()}


def save_folds(run, cases: Cases, plan: dict[str, np.ndarray]) -> dict[str, str]:
    """Each level's folds as its manifest (``folds/<level>_k<n>.csv``, the test fold of every image and its group);
    the run-relative path by level."""
    groups = {"case": cases.frame["case_group"], cases.image_level: cases.frame["duplicate_group"]}
    return {level: splits.save_folds_manifest(run, cases.frame, groups[level], folds, level)
            for level, folds in plan.items()}


def fold_table(cases: Cases, plan: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per level and fold: test images, test cases, and cases also present in that fold's training part."""
    rows = []
    case = cases.frame["case"].to_numpy()
    for level, folds in plan.items():
        for fold in np.unique(folds):
            test = folds == fold
            rows.append({"level": level, "fold": int(fold), "test images": int(test.sum()),
                         "test cases": len(set(case[test])),
                         "test cases also in training": len(set(case[test]) & set(case[~test])),
                         **{f"test {c}": int((cases.labels[test] == k).sum()) for k, c in enumerate(cases.classes)}})
    return pd.DataFrame(rows)


def inner_folds(groups: np.ndarray, labels: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, ...]]:
    """Stratified grouped ``(train, validation)`` index pairs inside one training part."""
    frame = pd.DataFrame({"label": labels, "group": groups})
    n_folds = min(n_folds, frame["group"].nunique())
    if n_folds < 2:
        raise DataError("an inner split needs at least two groups in the training part")
    folds = splits.grouped_folds(frame, n_folds, seed, groups="group").to_numpy()
    return [(np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in range(n_folds)]


# ---------------------------------------------------------------------------- tiles and features

def tile_grid(images: np.ndarray, tile: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping ``tile`` x ``tile`` tiles covering each image (the last row / column flush with the edge)."""
    tiles, _, source = pipeline.patches_from_images(images, np.zeros(len(images)), tile, tile)
    return tiles, source


def extraction_precision(backbone: str, gpu: bool | None = None) -> str:
    """Precision of frozen tile features: the GPU policy on a GPU, else :data:`CPU_PRECISION` (float32 by default)."""
    if training.precision_policy(gpu) == training.GPU_POLICY:
        return training.GPU_POLICY
    return CPU_PRECISION.get(backbone, "float32")


class TileExtractor:
    """A frozen ImageNet backbone on native-resolution tiles, its outputs cached per image set and variant.

    For backbones in :data:`CUT` the cached output is the activation map before the last
    block (``trunk``); :meth:`pooled` runs the rest of the network and global average
    pooling on it, and :meth:`classifier` fine-tunes that rest. Other backbones cache
    their average-pooled features directly.
    """

    def __init__(self, backbone: str, tile: int, weights="imagenet", batch_size: int = 32, seed: int = 0):
        if backbone not in ARCHITECTURES:
            raise ParameterError(f"backbone {backbone!r} is not one of {list(ARCHITECTURES)}")
        self.backbone, self.tile, self.weights, self.cut = backbone, tile, weights, CUT.get(backbone)
        self.cache = features.FeatureCache(f"{backbone}_tiles_{self.cut or 'avgpool'}", self._trunk, (tile, tile),
                                           models.resolve_weights(backbone, weights), seed, 1.0, None, batch_size)
        self.shape: tuple | None = None
        self._pool_model = None
        self.tiles_per_s: float | None = None

    @property
    def architecture(self) -> str:
        return ARCHITECTURES[self.backbone]

    def weights_record(self) -> record.Weights:
        return experiment.weights_record(self.weights, self.backbone)

    def preprocess(self, tiles: np.ndarray) -> np.ndarray:
        """The backbone's own input scaling of uint8 tiles (what :func:`probe_network` reads)."""
        return np.asarray(models.pretrained.backbone(self.backbone).preprocess(np.asarray(tiles, np.float32)))

    def _base(self):
        return models.build_backbone(self.backbone, (self.tile, self.tile, 3), self.weights)

    def _trunk(self):
        if self.cut is None:
            return models.backbone_features(self.backbone, (self.tile, self.tile, 3), self.weights, pooling="avg")
        base = self._base()
        trunk = keras.Model(base.inputs, base.get_layer(self.cut).output)
        inputs = keras.Input((self.tile, self.tile, 3))
        return keras.Model(inputs, trunk(models.pretrained.backbone(self.backbone).preprocess(inputs)))

    def trunk(self, images: np.ndarray, paths, variant: str) -> tuple[np.ndarray, np.ndarray]:
        """Cached trunk output of every tile of ``images`` (a variant's images of ``paths``), and each tile's image."""
        tiles, source = tile_grid(images, self.tile)
        precision = extraction_precision(self.backbone)
        with training.policy_scope(precision):
            values = self.cache(tiles, [paths[i] for i in source], f"tiles{self.tile}|{precision}|{variant}")
        self.tiles_per_s = self.cache.images_per_s
        if self.cut is not None:
            self.shape = tuple(self.cache.model().output.shape[1:]) if self.shape is None else self.shape
            values = values.reshape(len(values), *self.shape)
        return values, source

    def _top(self, base=None):
        """The layers after the cut, as a function on trunk activations (sharing ``base``'s weights)."""
        base = base or self._base()
        names = [layer.name for layer in base.layers]
        rest = base.layers[names.index(self.cut) + 1:]

        def apply(x):
            for layer in rest:
                x = layer(x)
            return keras.layers.GlobalAveragePooling2D()(x)

        return apply, rest

    def pool_model(self) -> keras.Model:
        """The layers after the cut + global average pooling, on trunk activations of ``shape`` (built once)."""
        if self._pool_model is None:
            inputs = keras.Input(self.shape)
            self._pool_model = keras.Model(inputs, self._top()[0](inputs))
        return self._pool_model

    def pool(self, values: np.ndarray, source: np.ndarray, n_images: int) -> np.ndarray:
        """Image features: the mean over each image's tiles of the (pooled) tile features."""
        if self.cut is not None:
            values = self.pool_model().predict(values, batch_size=ACTIVATION_BATCH, verbose=0)
        return pd.DataFrame(values).groupby(source).mean().reindex(range(n_images)).to_numpy(np.float32)

    def pooled(self, images: np.ndarray, paths, variant: str) -> np.ndarray:
        values, source = self.trunk(images, paths, variant)
        return self.pool(values, source, len(images))

    def classifier(self, n_classes: int, dropout: float = 0.2) -> keras.Model:
        """The rest of the network (ImageNet weights, batch-norm statistics frozen) + dropout + softmax, trainable."""
        if self.cut is None:
            raise ParameterError(f"{self.backbone}: fine-tuning is implemented for {list(CUT)} only")
        apply, rest = self._top()
        for layer in rest:
            layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
        inputs = keras.Input(self.shape)
        x = keras.layers.Dropout(dropout)(apply(inputs))
        outputs = keras.layers.Dense(n_classes, activation="softmax", dtype="float32", name="predictions")(x)
        return keras.Model(inputs, outputs, name=f"{self.backbone}_last_block")


@dataclass
class VariantFeatures:
    """Features of one colour variant for any fold: ``fold(train, test)`` -> training rows, their images, test rows.

    ``none``, ``greyscale``, ``haematoxylin``: one extraction for all images. ``hed_jitter``:
    ``copies`` jittered copies of every image (seeded), used only for training rows; the test
    rows are the untouched images. ``reinhard``: per fold, the reference is fitted on the
    fold's training images and both sides are mapped to it (an extraction per fold).
    ``trunk`` returns tile activations instead of pooled features (for fine-tuning).
    """

    extractor: TileExtractor
    cases: Cases
    variant: str
    copies: int = 2
    seed: int = 0
    records: list = field(default_factory=list)
    _memo: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.variant not in stain.VARIANTS:
            raise ParameterError(f"colour variant {self.variant!r} is not one of {list(stain.VARIANTS)}")

    def _extract(self, images: np.ndarray, key: str, trunk: bool):
        memo = (key, trunk)
        if memo not in self._memo:
            values, source = self.extractor.trunk(images, self.cases.paths, key)
            self._memo[memo] = (values, source) if trunk else self.extractor.pool(values, source, len(images))
        return self._memo[memo]

    def _fixed(self, name: str, trunk: bool):
        images = self.cases.images
        if name in ("greyscale", "haematoxylin"):
            images = (stain.greyscale if name == "greyscale" else stain.haematoxylin_only)(images)
        return self._extract(images, name, trunk)

    def transform(self, train: np.ndarray):
        """The function applied to test images of a fold whose training images are ``train``."""
        if self.variant == "reinhard":
            return stain.StainNormalizer().fit(self.cases.images[train]).transform
        if self.variant in ("greyscale", "haematoxylin"):
            return stain.greyscale if self.variant == "greyscale" else stain.haematoxylin_only
        return lambda images: images

    def fold(self, train: np.ndarray, test: np.ndarray, trunk: bool = False):
        """``(x_train, train_images, x_test)``: training rows (copies repeat an image), their images, test rows."""
        if self.variant == "hed_jitter":
            base = self._fixed("none", trunk)
            rows, parts = [], []
            for copy in range(self.copies):
                rng = np.random.default_rng([self.seed, copy])
                jittered = stain.hed_jitter(self.cases.images, rng)
                parts.append(self._select(self._extract(jittered, f"hed_jitter copy {copy} seed {self.seed}", trunk),
                                          train, trunk))
                rows.append(train)
            return self._stack(parts, trunk), np.concatenate(rows), self._select(base, test, trunk)
        if self.variant == "reinhard":
            normalizer = stain.StainNormalizer().fit(self.cases.images[train])
            digest = hashlib.sha256(np.sort(train).tobytes()).hexdigest()[:16]
            values = self._extract(normalizer.transform(self.cases.images), f"reinhard train {digest}", trunk)
            self.records.append(normalizer.reference)
        else:
            values = self._fixed(self.variant, trunk)
        return self._select(values, train, trunk), train, self._select(values, test, trunk)

    @staticmethod
    def _select(values, rows: np.ndarray, trunk: bool):
        if not trunk:
            return values[rows]
        tiles, source = values
        keep = np.isin(source, rows)
        return tiles[keep], source[keep]

    @staticmethod
    def _stack(parts, trunk: bool):
        if not trunk:
            return np.concatenate(parts)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# ---------------------------------------------------------------------------- linear probe

@dataclass
class Probe:
    """A fitted L2 logistic regression on standardised features, as weights on the raw features."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray  # (features, classes), on standardised features
    bias: np.ndarray
    train_accuracy: float

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        logits = ((x - self.mean) / self.scale) @ self.weights + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)


def linear_probe(x: np.ndarray, y: np.ndarray, c: float, n_classes: int) -> Probe:
    """Multinomial logistic regression (penalty ``1 / c``) on features z-scored over ``x``.

    With more features than rows, the fit runs in the span of the training rows (their SVD
    basis): the L2-penalised solution lies there, so the model is the same, only faster.
    """
    x = np.asarray(x, dtype=np.float64)
    mean, spread = x.mean(axis=0), x.std(axis=0)
    scale = np.maximum(spread, max(0.01 * spread.mean(), 1e-6))
    z = (x - mean) / scale
    basis = np.linalg.svd(z, full_matrices=False)[2].T if z.shape[1] > z.shape[0] else np.eye(z.shape[1])
    present = np.unique(y)
    if len(present) < 2:
        raise DataError("a linear probe needs training rows of at least two classes")
    fitted = LogisticRegression(C=c, solver="newton-cg", tol=1e-6, max_iter=1000).fit(z @ basis, y)
    weights = np.zeros((z.shape[1], n_classes))
    bias = np.full(n_classes, -1e3)  # a class absent from training is never predicted
    weights[:, present] = basis @ fitted.coef_.T if len(present) > 2 else basis @ np.hstack(
        [-fitted.coef_.T, fitted.coef_.T]) / 2
    bias[present] = fitted.intercept_ if len(present) > 2 else np.array([-1, 1]) * fitted.intercept_[0] / 2
    probe = Probe(mean, scale, weights, bias, 0.0)
    probe.train_accuracy = float((probe.probabilities(x).argmax(axis=1) == y).mean())
    return probe


def choose_c(x: np.ndarray, y: np.ndarray, groups: np.ndarray, rows: np.ndarray, c_grid, n_inner: int, seed: int,
             n_classes: int) -> tuple[float, pd.DataFrame]:
    """C with the best inner grouped-CV accuracy (ties: the smaller C), and every candidate's score.

    ``rows`` names the image of each row of ``x`` (copies of an image share it); the inner
    folds split images by ``groups`` so that an image's copies and its case stay together.
    """
    images = np.unique(rows)
    pairs = inner_folds(groups[images], _labels_of(rows, y, images), n_inner, seed)

    def score(settings):
        correct = []
        for inner_train, inner_val in pairs:
            fit = np.isin(rows, images[inner_train])
            val = np.isin(rows, images[inner_val])
            probe = linear_probe(x[fit], y[fit], settings["C"], n_classes)
            correct.append(probe.probabilities(x[val]).argmax(axis=1) == y[val])
        return float(np.concatenate(correct).mean())

    best, tried = evaluation.select_on_validation({f"C={c:g}": {"C": float(c)} for c in sorted(c_grid)}, score)
    return float(tried.loc[tried["candidate"] == best, "C"].iloc[0]), tried


def _labels_of(rows: np.ndarray, y: np.ndarray, images: np.ndarray) -> np.ndarray:
    first = pd.Series(y).groupby(rows).first()
    return first.reindex(images).to_numpy()


# ---------------------------------------------------------------------------- cross-validation

@dataclass
class CVResult:
    """One model under one CV level: per-image predictions, what was chosen per fold, how it was built."""

    key: str
    model: str
    architecture: str
    weights: record.Weights
    variant: str
    level: str
    predictions: pd.DataFrame
    selection: record.Selection
    train_accuracy: float
    fitted: dict = field(default_factory=dict, repr=False)  # fold -> Probe (linear probes)
    transforms: dict = field(default_factory=dict, repr=False)  # fold -> test-image transform
    details: dict = field(default_factory=dict)
    train_images_per_s: float | None = None

    @property
    def summary(self) -> dict:
        return evaluation.cv_summary(self.predictions)

    @property
    def label(self) -> str:
        return f"{self.model} [{self.variant}, {LEVEL_NAMES[self.level]}]"


def _with_cases(predictions: pd.DataFrame, cases: Cases) -> pd.DataFrame:
    index = predictions["index"].to_numpy()
    return predictions.assign(path=cases.frame["path"].to_numpy()[index], case=cases.frame["case"].to_numpy()[index])


def probe_cv(cases: Cases, folds: np.ndarray, level: str, feats: VariantFeatures, c_grid, n_inner: int,
             seed: int) -> CVResult:
    """Linear probe of one variant under one CV level; C chosen per fold by inner grouped CV of its training part."""
    groups = cases.frame["case_group" if level == "case" else "duplicate_group"].to_numpy()
    n_classes = len(cases.classes)
    tried, chosen, fitted, transforms, train_accuracy = [], [], {}, {}, []

    def fit_predict(fold, train, test):
        x_train, rows, x_test = feats.fold(train, test)
        y = cases.labels[rows]
        c, table = choose_c(x_train, y, groups, rows, c_grid, n_inner, seed + fold, n_classes)
        probe = fitted[fold] = linear_probe(x_train, y, c, n_classes)
        transforms[fold] = feats.transform(train)
        train_accuracy.append(probe.train_accuracy)
        chosen.append(f"fold {fold}: C={c:g}")
        tried.extend(record.Tried(f"fold {fold}: {r.candidate}", r.validation_score) for r in table.itertuples())
        return probe.probabilities(x_test)

    predictions = evaluation.cross_validate(cases.labels, _pairs(folds), cases.classes, fit_predict)
    extractor = feats.extractor
    title = f"{extractor.architecture} features + logistic regression"
    selection = record.Selection(f"{title} [{feats.variant}, {LEVEL_NAMES[level]}]", "C (L2 penalty 1/C)",
                                 f"inner {n_inner}-fold CV of each training part, grouped like the outer folds "
                                 f"({level} level)", chosen, tried)
    return CVResult(f"probe_{extractor.backbone}_{feats.variant}_{level}", title, extractor.architecture,
                    extractor.weights_record(), feats.variant, level, _with_cases(predictions, cases), selection,
                    float(np.mean(train_accuracy)), fitted, transforms,
                    {"backbone": extractor.backbone, "tile": extractor.tile,
                     "pooling": "mean of tile features per image", "c_grid": list(c_grid),
                     "jitter_copies": feats.copies if feats.variant == "hed_jitter" else None})


def _pairs(folds: np.ndarray):
    return [(np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in np.unique(folds)]


def finetune_cv(cases: Cases, folds: np.ndarray, level: str, feats: VariantFeatures, epochs: int,
                learning_rate: float, batch_size: int, val_folds: int, seed: int) -> CVResult:
    """The last block + head of the extractor fine-tuned on the training tiles of each fold.

    One of ``val_folds`` inner grouped folds of the training part is held out for choosing
    the epoch (best validation tile accuracy; its weights are kept); the test images'
    probabilities are the mean of their tiles'. No pixel augmentation: the trainable part
    reads cached activations.
    """
    groups = cases.frame["case_group" if level == "case" else "duplicate_group"].to_numpy()
    extractor, n_classes = feats.extractor, len(cases.classes)
    tried, chosen, train_accuracy, speeds = [], [], [], []

    def fit_predict(fold, train, test):
        (x_train, rows), _, (x_test, test_rows) = feats.fold(train, test, trunk=True)
        inner_train, inner_val = inner_folds(groups[train], cases.labels[train], val_folds, seed + fold)[0]
        fit, val = np.isin(rows, train[inner_train]), np.isin(rows, train[inner_val])
        config.set_seeds(seed + fold)
        data = pipeline.make_dataset(x_train[fit], cases.labels[rows[fit]], n_classes, batch_size, training=True,
                                     seed=seed + fold, rescale=1.0)
        val_data = pipeline.make_dataset(x_train[val], cases.labels[rows[val]], n_classes, ACTIVATION_BATCH,
                                         training=False, rescale=1.0)
        selector = training.BestValidationEpoch()
        result = training.train(lambda: extractor.classifier(n_classes), data, int(fit.sum()), epochs,
                                lambda: training.adam(learning_rate, epochs, "constant")(0), val_data,
                                callbacks=[selector])
        speeds.append(result.train_images_per_s)
        train_accuracy.append(result.history["accuracy"][selector.best_epoch])
        chosen.append(f"fold {fold}: epoch {selector.best_epoch + 1}")
        tried.extend(record.Tried(f"fold {fold}: epoch {i + 1}", v)
                     for i, v in enumerate(result.history["val_accuracy"]))
        tiles = result.model.predict(x_test, batch_size=ACTIVATION_BATCH, verbose=0)
        return pd.DataFrame(tiles).groupby(test_rows).mean().reindex(test).to_numpy()

    predictions = evaluation.cross_validate(cases.labels, _pairs(folds), cases.classes, fit_predict)
    title = f"{extractor.architecture}, last block fine-tuned on tiles"
    selection = record.Selection(f"{title} [{feats.variant}, {LEVEL_NAMES[level]}]", "epoch",
                                 f"1 of {val_folds} inner grouped folds of each training part ({level} level): "
                                 "tile accuracy", chosen, tried)
    return CVResult(f"finetune_{extractor.backbone}_{feats.variant}_{level}", title, extractor.architecture,
                    extractor.weights_record(), feats.variant, level, _with_cases(predictions, cases), selection,
                    float(np.mean(train_accuracy)),
                    details={"trained": f"layers after {extractor.cut} (batch-norm statistics frozen) + dropout 0.2 + "
                                        "softmax", "epochs": epochs, "optimizer": f"Adam {learning_rate} constant",
                             "batch_size": batch_size, "aggregation": "mean of tile probabilities per image",
                             "augmentation": None},
                    train_images_per_s=round(float(np.mean(speeds)), 1))


# ---------------------------------------------------------------------------- results

def _classes_and_paths(predictions: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """The classes of a CV result's probabilities, and its images' paths by image index."""
    classes = [c.removeprefix("p_") for c in predictions.columns if c.startswith("p_")]
    paths = np.full(int(predictions["index"].max()) + 1, "", dtype=object)  # by image index: tested or not
    paths[predictions["index"].to_numpy()] = predictions["path"].to_numpy()
    return classes, paths


def model_row(run, result: CVResult) -> record.ModelRow:
    """The results row of one CV result, with its per-image predictions CSV (every image, its fold and case)."""
    classes, paths = _classes_and_paths(result.predictions)
    return evaluation.cv_model_row(
        run, result.key, result.model, result.predictions, paths, classes, result.weights, result.level,
        architecture=result.architecture, train_accuracy=round(result.train_accuracy, 4),
        chosen=list(result.selection.chosen), seed=int(run.params.get("seed", 0)), columns=("case",),
        variant=f"{result.variant}, {LEVEL_NAMES[result.level]}", train_images_per_s=result.train_images_per_s)


def majority_rows(run, results: list[CVResult]) -> list[record.ModelRow]:
    """The majority-class floor of each CV level, on the folds of that level's first result."""
    found = []
    for level in dict.fromkeys(r.level for r in results):
        predictions = next(r for r in results if r.level == level).predictions.sort_values("index")
        classes, paths = _classes_and_paths(predictions)
        found.append(evaluation.cv_majority_row(run, f"majority_{level}", predictions, paths, classes, level,
                                                variant=LEVEL_NAMES[level]))
    return found


def summary_table(results: list[CVResult]) -> pd.DataFrame:
    """Pooled accuracy with its exact CI, mean and sd over folds, and training accuracy, one line per result."""
    rows = []
    for r in results:
        s = r.summary
        rows.append({"model": r.model, "variant": r.variant, "level": r.level, "accuracy": s["accuracy"],
                     "ci_low": s["ci"]["ci_low"], "ci_high": s["ci"]["ci_high"], "correct": s["correct"],
                     "images": s["images"], "fold_mean": s["fold_mean"], "fold_sd": s["fold_sd"],
                     "train_accuracy": r.train_accuracy, "cases_mostly_right": _cases_right(r)})
    return pd.DataFrame(rows)


def _cases_right(result: CVResult) -> str:
    table = case_table(result)
    return f"{int((table['fraction_correct'] > 0.5).sum())} / {len(table)}"


def case_table(result: CVResult) -> pd.DataFrame:
    """Per case: class, images, fraction correct, most frequent prediction."""
    classes = [c.removeprefix("p_") for c in result.predictions.columns if c.startswith("p_")]
    frame = result.predictions.sort_values("index")
    groups = pd.Series(frame["case"].to_numpy(), index=frame["index"].to_numpy()).sort_index().to_numpy()
    return evaluation.group_table(frame.assign(index=np.arange(len(frame))), groups, classes).rename(
        columns={"group": "case"})


def case_confusion_figure(results: list[CVResult], title: str):
    """Cases (rows, grouped by true class) x predicted class: the share of each case's images, one panel per result."""
    fig, axes = plt.subplots(1, len(results), figsize=(3.2 * len(results) + 1, 0.26 * _n_cases(results) + 1.6),
                             squeeze=False)
    for ax, result in zip(axes[0], results):
        classes = [c.removeprefix("p_") for c in result.predictions.columns if c.startswith("p_")]
        frame = result.predictions.assign(true_name=[classes[i] for i in result.predictions["true"]])
        counts = pd.crosstab([frame["true_name"], frame["case"]], frame["predicted"]).reindex(
            columns=range(len(classes)), fill_value=0)
        share = counts.div(counts.sum(axis=1), axis=0)
        ax.imshow(share.to_numpy(), cmap="Blues", vmin=0, vmax=1, aspect="auto")
        for (i, j), value in np.ndenumerate(counts.to_numpy()):
            ax.text(j, i, str(value), ha="center", va="center", fontsize=7,
                    color="white" if share.to_numpy()[i, j] > 0.6 else "black")
        ax.set_xticks(range(len(classes)), classes)
        ax.set_yticks(range(len(share)), [f"{t}: {c}" for t, c in share.index], fontsize=7)
        ax.set_title(f"{result.variant}, {LEVEL_NAMES[result.level]}\n{result.summary['accuracy']:.1%} of images",
                     fontsize=9)
        ax.set_xlabel("predicted class")
        ax.grid(False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _n_cases(results: list[CVResult]) -> int:
    return max(r.predictions["case"].nunique() for r in results)


def probe_network(extractor: TileExtractor, probe: Probe) -> keras.Model:
    """Preprocessed tile -> backbone (its last 4-D map) -> global average pool -> the probe, as one flat model.

    Feed it ``preprocess(tile)`` (:meth:`TileExtractor.preprocess`); Grad-CAM then finds the
    backbone's last convolutional map among its layers.
    """
    base = models.build_backbone(extractor.backbone, (extractor.tile, extractor.tile, 3), extractor.weights)
    x = keras.layers.GlobalAveragePooling2D()(base.output)
    x = keras.layers.Normalization(mean=probe.mean, variance=probe.scale ** 2)(x)
    dense = keras.layers.Dense(probe.weights.shape[1], activation="softmax", dtype="float32", name="predictions")
    model = keras.Model(base.inputs, dense(x), name=f"{extractor.backbone}_probe")
    dense.set_weights([probe.weights.astype(np.float32), probe.bias.astype(np.float32)])
    return model


def gradcam_cases(run, cases: Cases, result: CVResult, extractors: dict[str, TileExtractor], per_outcome: int = 3,
                  seed: int = 0) -> dict:
    """Grad-CAM on tiles of the best- and worst-recognised cases of a linear probe, each by the fold model that
    never saw its case."""
    if not result.fitted:
        raise ParameterError(f"{result.label}: Grad-CAM here needs a linear probe (its fitted folds)")
    extractor = extractors[result.details["backbone"]]
    table = case_table(result).sort_values("fraction_correct")
    picks = [("wrong", row) for row in table.head(per_outcome).itertuples() if row.fraction_correct < 0.5]
    picks += [("right", row) for row in table.tail(per_outcome).itertuples() if row.fraction_correct >= 0.5]
    rng = np.random.default_rng(seed)
    tiles, maps, captions, examples = [], [], [], []
    predictions = result.predictions.set_index("index")
    for outcome, row in picks:
        part = predictions[predictions["case"] == row.case]
        hit = part["true"] == part["predicted"]
        pool = part.index[hit if outcome == "right" else ~hit]
        index = int(rng.choice(pool if len(pool) else part.index))
        fold = int(part.loc[index, "fold"])
        image = result.transforms[fold](cases.images[index])
        candidates, _ = tile_grid(image[None], extractor.tile)
        tile = candidates[rng.integers(len(candidates))]
        heat = explain.gradcam(probe_network(extractor, result.fitted[fold]), extractor.preprocess(tile[None]))
        predicted = cases.classes[int(part.loc[index, "predicted"])]
        tiles.append(tile)
        maps.append(heat[0])
        captions.append(f"{outcome} case {row.case} ({row.fraction_correct:.0%})\ntrue {row._2}, image -> {predicted}")
        examples.append({"case": row.case, "outcome": outcome, "image": cases.paths[index].rsplit("/", 2)[-2:],
                         "fold": fold, "predicted": predicted, "case_fraction_correct": row.fraction_correct})
    if not tiles:
        return {"figure": None, "examples": []}
    figure = plots.gradcam_grid(np.stack(tiles), np.stack(maps), captions,
                                f"{result.label}: Grad-CAM on tiles of unseen cases", ncols=3)
    return {"figure": run.save_figure(figure, f"{result.key}_gradcam"), "examples": examples}


# ---------------------------------------------------------------------------- evidence and verdict

def paired_case_bootstrap(a: pd.DataFrame, b: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> dict:
    """Accuracy of ``a`` minus ``b`` on the same images, with a 95% CI from resampling whole cases."""
    left, right = a.sort_values("index"), b.sort_values("index")
    if not np.array_equal(left["index"].to_numpy(), right["index"].to_numpy()):
        raise ParameterError("paired_case_bootstrap needs predictions of the same images")
    diff = ((left["true"] == left["predicted"]).to_numpy(float)
            - (right["true"] == right["predicted"]).to_numpy(float))
    per_case = pd.DataFrame({"case": left["case"].to_numpy(), "diff": diff}).groupby("case")["diff"].agg(
        ["sum", "size"])
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(per_case), (n_boot, len(per_case)))
    sums, sizes = per_case["sum"].to_numpy()[draws].sum(axis=1), per_case["size"].to_numpy()[draws].sum(axis=1)
    low, high = np.quantile(sums / sizes, [0.025, 0.975])
    return {"difference": float(diff.mean()), "ci_low": float(low), "ci_high": float(high), "n_boot": n_boot,
            "resampled": "cases"}


def colour_evidence(results: list[CVResult], baseline: str = "none", n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Each variant minus the baseline (same model, same level, same images), CI by resampling cases."""
    index = {(r.model, r.level, r.variant): r for r in results}
    rows = []
    for (model, level, variant), r in index.items():
        reference = index.get((model, level, baseline))
        if variant == baseline or reference is None:
            continue
        rows.append({"model": model, "level": level, "variant": variant, "accuracy": r.summary["accuracy"],
                     f"{baseline} accuracy": reference.summary["accuracy"],
                     **paired_case_bootstrap(r.predictions, reference.predictions, n_boot, seed)})
    return pd.DataFrame(rows)


def best_by_level(results: list[CVResult]) -> dict:
    """Per CV level, the result with the highest pooled accuracy (a description of the runs, chosen after testing)."""
    best = {}
    for level in dict.fromkeys(r.level for r in results):
        top = max((r for r in results if r.level == level), key=lambda r: r.summary["accuracy"])
        s = top.summary
        best[level] = {"model": top.model, "variant": top.variant, "architecture": top.architecture,
                       "key": top.key, "accuracy": s["accuracy"], "ci_low": s["ci"]["ci_low"],
                       "ci_high": s["ci"]["ci_high"], "n_test": s["images"], "ci_method": s["ci"]["method"],
                       "train_accuracy": top.train_accuracy,
                       "note": "highest pooled CV accuracy among this notebook's variants: picked after testing, so "
                               "optimistic as an estimate of the chosen variant"}
    return best


def _significant(row) -> int:
    """+1 if the CI lies above 0, -1 below, 0 if it contains 0."""
    return 1 if row["ci_low"] > 0 else -1 if row["ci_high"] < 0 else 0


def _pct(value: float) -> str:
    return f"{value:.1%}"


def verdict(results: list[CVResult], evidence: pd.DataFrame, chance: float, synthetic: bool) -> str:
    """The closing paragraph, from the numbers: unseen-case accuracy, the image-level gap, colour vs morphology."""
    best = best_by_level(results)
    case = best["case"]
    text = [f"**Unseen cases.** Best case-level result: {case['model']} [{case['variant']}], "
            f"{_pct(case['accuracy'])} of {case['n_test']} images (exact 95% CI {_pct(case['ci_low'])} to "
            f"{_pct(case['ci_high'])}; majority-class rate {_pct(chance)}; picked after testing, so optimistic)."]
    text.append("Its CI lies above the majority-class rate." if case["ci_low"] > chance else
                "Its CI reaches down to the majority-class rate: no clear evidence of subtype recognition on new "
                "cases.")
    image_level = [level for level in best if level != "case"]
    if image_level:
        img = best[image_level[0]]
        text.append(f"At image level (cases on both sides) the best is {_pct(img['accuracy'])} ({img['model']} "
                    f"[{img['variant']}]): {_pct(img['accuracy'] - case['accuracy'])} above the case level.")
    case_rows = evidence[evidence["level"] == "case"] if len(evidence) else evidence
    if len(case_rows):
        lines = []
        for variant in ("greyscale", "haematoxylin", "reinhard", "hed_jitter"):
            part = case_rows[case_rows["variant"] == variant]
            if len(part):
                row = part.iloc[0]
                word = {1: "raises", -1: "lowers", 0: "does not clearly change"}[_significant(row)]
                lines.append(f"{variant} {word} case-level accuracy ({row['difference']:+.1%}, 95% CI "
                             f"{row['ci_low']:+.1%} to {row['ci_high']:+.1%}, cases resampled; {row['model']})")
        text.append("**Colour or morphology?** " + "; ".join(lines) + ".")
        text.append(_reading(case_rows, evidence[evidence["level"] != "case"], case["ci_low"] > chance))
    if synthetic:
        text.append("SYNTHETIC data: this says only that the pipeline runs.")
    return " ".join(text)


def _reading(case_rows: pd.DataFrame, image_rows: pd.DataFrame, above_chance: bool) -> str:
    """What the colour probes imply, from the signs of their case-level differences and the widths of their CIs."""
    def effect(frame, variants):
        part = frame[frame["variant"].isin(variants)]
        return [_significant(r) for _, r in part.iterrows()]

    colour_removed = effect(case_rows, ("greyscale", "haematoxylin"))
    normalised = effect(case_rows, ("reinhard", "hed_jitter"))
    parts = []
    if colour_removed and all(s >= 0 for s in colour_removed):
        parts.append("Removing colour (greyscale, haematoxylin only) costs no measurable accuracy on unseen cases, "
                     "so what transfers to new cases is carried by intensity and texture, i.e. nuclear morphology "
                     "and tissue pattern, not by the stain's hue")
    elif colour_removed:
        parts.append("Removing colour lowers accuracy on unseen cases: part of what transfers is carried by colour")
    if normalised and any(s > 0 for s in normalised):
        parts.append("stain normalisation or stain augmentation helps, so case-to-case stain differences mislead the "
                     "baseline")
    elif normalised:
        parts.append("neither stain normalisation nor stain augmentation measurably helps")
    image_removed = effect(image_rows, ("greyscale", "haematoxylin"))
    if image_removed and any(s < 0 for s in image_removed):
        parts.append("at image level removing colour does cost accuracy, as expected if the stain identifies the "
                     "specimen")
    if not parts:
        return ""
    width = float((case_rows["ci_high"] - case_rows["ci_low"]).max() / 2)
    caveat = (f" With {case_rows.shape[0]} probes on these cases the CIs reach +/-{width:.0%}: smaller effects "
              "cannot be excluded.")
    if not above_chance:
        caveat += " And with case-level accuracy this close to the majority-class rate, there is little to attribute."
    return "; ".join(parts) + "." + caveat


def chance_rate(cases: Cases) -> float:
    """The majority-class share: what always predicting the largest class scores."""
    return float(np.bincount(cases.labels).max() / len(cases.labels))


def extraction_table(extractors: dict[str, TileExtractor], seconds: dict[str, float]) -> pd.DataFrame:
    """Per backbone: tile size, tiles/s of the last computed extraction, and the wall time spent on features."""
    return pd.DataFrame([{"backbone": name, "tile": e.tile, "tiles_per_s": e.tiles_per_s,
                          "feature_seconds": round(seconds.get(name, 0.0), 1)} for name, e in extractors.items()])


def timed(seconds: dict, key: str, function: Callable, *args, **kwargs):
    """``function(*args, **kwargs)``, its wall time added to ``seconds[key]``."""
    start = time.perf_counter()
    try:
        return function(*args, **kwargs)
    finally:
        seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - start


def protocol(run, cases: Cases, plan: dict, manifests: dict[str, str], results: list[CVResult],
             deviations_: list[str], details_: dict, seed: int, tile: int) -> record.Protocol:
    """The results record's protocol: case-level CV as the split (``manifests`` from :func:`save_folds`), every
    selection, the deviations."""
    data, folds = cases.dataset, plan["case"]
    counts = {f"fold {f}": {c: int((cases.labels[folds == f] == k).sum()) for k, c in enumerate(cases.classes)}
              for f in np.unique(folds)}
    split = record.Split(level="case", method="stratified grouped k-fold CV (StratifiedGroupKFold) on case; every "
                         "image tested once", seed=seed, folds=int(len(np.unique(folds))),
                         manifest=manifests["case"],
                         manifest_sha256=validation.sha256_file(run.path(manifests["case"])),
                         duplicates_merged=int(len(cases.frame) - cases.frame["duplicate_group"].nunique()),
                         counts=counts)
    return record.Protocol(
        dataset=record.DatasetInfo(data.name, data.display_name, list(data.classes), int(len(data.frame)),
                                   data.synthetic, data.stand_in),
        split=split, seeds=[seed], input_size=[tile, tile, 3],
        preprocess="native resolution; non-overlapping tiles, tile features averaged per image",
        augmentation={**stain.describe_hed_jitter(), "used_by": "the hed_jitter variant only"},
        selection=[r.selection for r in results], deviations=list(deviations_), details=details_)


def deviations(p: dict, image_level: str) -> list[str]:
    """What this notebook does differently from P3 (everything: it is a study beyond the paper)."""
    return experiment.deviations(p["profile"], {
        "question": "subtype on unseen cases (case-level CV); P3 reports image-level accuracy only",
        "models": f"ImageNet {', '.join(ARCHITECTURES[b] for b in p['backbones'])} on {p['tile_size']}-px native "
                  "tiles + logistic regression; fine-tuning of Lite0's last block (paper: DenseNet-201, fine-tuned "
                  "end to end on 224x224 resized images)",
        "split": f"{p['n_folds']}-fold stratified grouped CV on case, and on {image_level} for the gap (paper: "
                 "random 80/20 split of augmented copies)",
        "tile CNN": "not re-run here: notebook 20 runs it under case-level CV",
        "augmentation": "no geometric augmentation (frozen features); HED jitter is one of the colour variants"})


def details(p: dict, cases: Cases, plan: dict, extractors: dict, feature_seconds: dict, best: dict,
            evidence: pd.DataFrame, finetune: list[CVResult], reinhard: list) -> dict:
    """Protocol details of results.json, including the best variant at each level (for the comparison)."""
    return {"beyond_paper": BEYOND_PAPER, "cases": int(cases.frame["case"].nunique()),
            "folds": {level: np.bincount(f).tolist() for level, f in plan.items()},
            "tile_size": p["tile_size"], "tiles_per_image": int(len(tile_grid(cases.images[:1], p["tile_size"])[0])),
            "extraction": extraction_table(extractors, feature_seconds).to_dict(orient="records"),
            "colour_variants": list(p["variants"]), "hed_jitter": stain.describe_hed_jitter(),
            "hed_jitter_copies": p["jitter_copies"], "reinhard_references": reinhard[:10],
            "linear_probe": {"c_grid": p["c_grid"], "inner_folds": p["inner_folds"],
                             "features": "z-scored on the training part; mean over a tile grid"},
            "fine_tuning": [r.details | {"variant": r.variant, "level": r.level} for r in finetune] or
                           "left out in this profile (finetune_variants empty)",
            "best_by_level": best, "colour_evidence": evidence.to_dict(orient="records")}
