"""Tile models on native-resolution images: trained on random crops, an image predicted as the mean of its tiles.

- :class:`TileSettings`: one configuration of the tile CNN (tile size, colour jitter,
  network, epochs, ...); :func:`candidates` builds the settings to choose from.
- :func:`tile_augmentation`: random flips / transposes of training tiles, optionally a
  per-tile colour jitter.
- :func:`image_probabilities`: an image's class probabilities, the mean over a grid of
  its tiles.
- :func:`fit_tile_model`: train on random crops (:func:`hemasuite.pipeline.random_tiles`), keep the
  epoch with the best per-image validation accuracy.
- :func:`fit_fold`: inside one training part, carve a validation part (group-aware), fit
  every candidate, keep the best (:func:`hemasuite.evaluation.select_on_validation`) and
  predict the test part once; :func:`cross_validate_tiles` does it in every fold.
- :func:`pooled_features`: frozen-backbone features of a grid of tiles, averaged per
  image, through the feature cache.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import numpy as np
import pandas as pd

from . import augment, config, evaluation, features, models, pipeline, record, splits, training
from .errors import ParameterError


@dataclass(frozen=True)
class TileSettings:
    """One configuration of the tile CNN (:func:`hemasuite.models.patch_cnn`) and its training.

    ``tiles_per_epoch`` random crops per epoch whatever the training set's size, so every
    protocol takes the same number of steps; ``eval_stride`` is the grid of validation and
    test tiles.
    """

    tile: int = 128
    colour_jitter: float = 0.0
    filters: tuple[int, ...] = (16, 32, 64, 128)
    stem_stride: int = 2
    epochs: int = 10
    tiles_per_epoch: int = 2048
    batch_size: int = 64
    learning_rate: float = 0.002
    eval_stride: int = 64

    def build(self, n_classes: int):
        return models.patch_cnn((self.tile, self.tile, 3), n_classes, filters=self.filters,
                                stem_stride=self.stem_stride)

    def describe(self) -> dict:
        return {**asdict(self), "filters": list(self.filters),
                "augmentation": describe_tile_augmentation(self.colour_jitter)}


def as_settings(values: dict) -> TileSettings:
    """A :class:`TileSettings` from a dict (lists, as YAML gives them, become tuples); unknown keys are an error."""
    known = {f.name for f in fields(TileSettings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ParameterError(f"tile setting(s) {unknown} unknown; known: {sorted(known)}")
    return TileSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def candidates(base: dict, options: dict[str, dict]) -> dict[str, TileSettings]:
    """Named settings: ``base`` overridden by each candidate's own values (e.g. ``{"tile 96": {"tile": 96}}``)."""
    if not options:
        raise ParameterError("at least one tile-CNN candidate setting is needed")
    return {name: as_settings({**base, **values}) for name, values in options.items()}


def tile_augmentation(colour_jitter: float = 0.0):
    """Augmentation factory ``f(seed)`` for training tiles: :func:`~hemasuite.augment.dihedral`, then colour jitter.

    With ``colour_jitter`` = j > 0, every tile's RGB channels are multiplied by gains drawn
    from [1 - j, 1 + j] (one per channel) and shifted by one offset from [-j/2, j/2], then
    clipped to [0, 1] (inputs are rescaled to [0, 1] first): a simple stand-in for the
    stain differences between slides, so that the network cannot lean on a slide's tint.
    """
    import tensorflow as tf

    def make(seed: int):
        flip = augment.dihedral(seed)
        if colour_jitter <= 0:
            return flip

        def apply(images):
            images = flip(images)
            n = tf.shape(images)[0]
            gain = tf.random.uniform([n, 1, 1, 3], 1 - colour_jitter, 1 + colour_jitter, seed=seed + 2)
            offset = tf.random.uniform([n, 1, 1, 1], -colour_jitter / 2, colour_jitter / 2, seed=seed + 3)
            return tf.clip_by_value(images * gain + offset, 0.0, 1.0)

        return apply

    return make


def describe_tile_augmentation(colour_jitter: float = 0.0) -> dict:
    """results.json entry of :func:`tile_augmentation`."""
    entry = {**augment.describe_dihedral(), "applies_to": "training tiles only"}
    if colour_jitter > 0:
        entry |= {"name": "dihedral + colour jitter",
                  "colour_jitter": f"per-tile RGB gains in [{1 - colour_jitter:g}, {1 + colour_jitter:g}], offset in "
                                   f"[{-colour_jitter / 2:g}, {colour_jitter / 2:g}], clipped to [0, 1]"}
    return entry


def image_probabilities(model, images: np.ndarray, tile: int, stride: int, chunk: int = 32) -> tuple[np.ndarray, float]:
    """Per-image class probabilities, the mean over each image's grid of tiles, and images per second.

    Tiles as :func:`hemasuite.pipeline.extract_patches` (every ``stride`` pixels, the last
    flush with the edge); images are tiled ``chunk`` at a time to bound memory.
    """
    parts, seconds = [], 0.0
    for start in range(0, len(images), chunk):
        batch = images[start:start + chunk]
        tiles, _, source = pipeline.patches_from_images(batch, np.zeros(len(batch)), tile, stride)
        probabilities, speed = training.predict(model, pipeline.make_dataset(tiles, np.zeros(len(tiles)), 1, 128,
                                                                             training=False))
        seconds += len(tiles) / speed
        parts.append(pd.DataFrame(probabilities).groupby(source).mean().to_numpy())
    return np.concatenate(parts), training.per_second(len(images), seconds)


def accuracy_and_loss(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of per-image probabilities."""
    labels = np.asarray(labels)
    picked = probabilities[np.arange(len(labels)), labels]
    return float((probabilities.argmax(axis=1) == labels).mean()), float(-np.log(np.clip(picked, 1e-7, 1)).mean())


@dataclass
class Fitted:
    """A tile CNN trained by :func:`fit_tile_model`, restored to its best validation epoch (0-based ``best_epoch``)."""

    model: object = field(repr=False)
    settings: TileSettings
    best_epoch: int
    scores: list[tuple[float, float]]
    history: dict
    train_tiles_per_s: float

    @property
    def validation_accuracy(self) -> float:
        return self.scores[self.best_epoch][0]


def fit_tile_model(images, labels, val_images, val_labels, n_classes: int, settings: TileSettings, seed: int,
                   verbose: int = 0) -> Fitted:
    """Train on random crops of ``images``; after every epoch score the validation images (per image, mean of tiles).

    The weights of the epoch with the best validation accuracy (ties: lowest loss) are kept.
    The training speed counts training tiles over the wall time, per-epoch validation included.
    """
    config.set_seeds(seed)
    data = pipeline.random_tiles(images, labels, n_classes, settings.tile, settings.tiles_per_epoch,
                                 settings.batch_size, seed, augment=tile_augmentation(settings.colour_jitter)(seed))
    selector = training.BestValidationEpoch(lambda model: accuracy_and_loss(
        image_probabilities(model, val_images, settings.tile, settings.eval_stride)[0], val_labels))
    steps = int(np.ceil(settings.tiles_per_epoch / settings.batch_size))
    result = training.train(lambda: settings.build(n_classes), data, settings.tiles_per_epoch, settings.epochs,
                            lambda: training.adam(settings.learning_rate, settings.epochs, "cosine")(steps),
                            callbacks=[selector], verbose=verbose)
    return Fitted(result.model, settings, selector.best_epoch, selector.scores, result.history,
                  result.train_images_per_s)


@dataclass
class FoldRecord:
    """What happened in one fold: the parts' sizes, every candidate x epoch tried, the choice, speeds."""

    fold: int
    train_images: int
    val_images: int
    test_images: int
    chosen: str
    epoch: int
    tried: pd.DataFrame = field(repr=False)
    train_accuracy: float
    train_tiles_per_s: float
    inference_images_per_s: float

    def label(self) -> str:
        return f"{self.chosen}, epoch {self.epoch}"


def fit_fold(frame: pd.DataFrame, images: np.ndarray, labels: np.ndarray, n_classes: int, train_index, test_index,
             groups, options: dict[str, TileSettings], seed: int, val_fraction: float = 0.2,
             fold: int = 0) -> tuple[np.ndarray, FoldRecord]:
    """Settings chosen inside the training part, then the test part predicted once.

    A ``val_fraction`` validation part is carved from ``train_index`` by
    :func:`hemasuite.splits.split_dataset` (stratified, keeping ``groups`` -- e.g. cases --
    on one side; None: each image on its own). Every candidate of ``options`` is trained
    on the rest and scored there at every epoch; the best candidate at its best epoch
    predicts ``test_index``. Its accuracy on its own training images (per image, no
    augmentation) is recorded beside.
    """
    train_index, test_index = np.asarray(train_index), np.asarray(test_index)
    inner_groups = None if groups is None else np.asarray(groups)[train_index]
    inner = splits.split_dataset(frame.iloc[train_index], (1 - val_fraction, val_fraction), seed,
                                 groups=inner_groups)["split"].to_numpy()
    fit_index, val_index = train_index[inner == "train"], train_index[inner == "test"]
    fitted: list[Fitted] = []

    def score(values: dict) -> float:
        fitted.append(fit_tile_model(images[fit_index], labels[fit_index], images[val_index], labels[val_index],
                                     n_classes, as_settings(values), seed))
        return fitted[-1].validation_accuracy

    chosen, _ = evaluation.select_on_validation({name: asdict(s) for name, s in options.items()}, score)
    tried = pd.DataFrame([{"candidate": name, "epoch": epoch + 1, "validation_accuracy": accuracy,
                           "validation_loss": loss}
                          for name, run in zip(options, fitted) for epoch, (accuracy, loss) in enumerate(run.scores)])
    best = fitted[list(options).index(chosen)]
    tile, stride = best.settings.tile, best.settings.eval_stride
    probabilities, speed = image_probabilities(best.model, images[test_index], tile, stride)
    train_probabilities, _ = image_probabilities(best.model, images[fit_index], tile, stride)
    return probabilities, FoldRecord(
        fold, len(fit_index), len(val_index), len(test_index), chosen, best.best_epoch + 1, tried,
        accuracy_and_loss(train_probabilities, labels[fit_index])[0], best.train_tiles_per_s, speed)


@dataclass
class TileCV:
    """Per-image test predictions of a cross-validation (:func:`hemasuite.evaluation.cross_validate`) and its folds."""

    predictions: pd.DataFrame
    folds: list[FoldRecord]

    @property
    def train_accuracy(self) -> float | None:
        """Mean over folds of the chosen model's accuracy on its training images (None without folds)."""
        return float(np.mean([f.train_accuracy for f in self.folds])) if self.folds else None

    def selection(self, model: str, on: str) -> record.Selection:
        """Every fold's candidates x epochs with their validation accuracy, and each fold's choice."""
        return record.Selection(
            model=model, what="tile-CNN setting and epoch", on=on,
            chosen=[f"fold {f.fold}: {f.label()}" for f in self.folds],
            tried=[record.Tried(f"fold {f.fold}: {r.candidate}, epoch {r.epoch}", float(r.validation_accuracy))
                   for f in self.folds for r in f.tried.itertuples()])

    def fold_table(self) -> pd.DataFrame:
        """Per fold: images in each part, the choice, validation, training and test accuracy."""
        test = evaluation.fold_table(self.predictions).set_index("fold")["accuracy"]
        return pd.DataFrame([{"fold": f.fold, "train": f.train_images, "validation": f.val_images,
                              "test": f.test_images, "chosen": f.label(),
                              "validation_accuracy": f.tried.loc[(f.tried["candidate"] == f.chosen)
                                                                 & (f.tried["epoch"] == f.epoch),
                                                                 "validation_accuracy"].iloc[0],
                              "train_accuracy": f.train_accuracy, "test_accuracy": test[f.fold]}
                             for f in self.folds])


def cross_validate_tiles(frame: pd.DataFrame, images: np.ndarray, classes, folds, groups,
                         options: dict[str, TileSettings], seed: int, val_fraction: float = 0.2) -> TileCV:
    """:func:`fit_fold` in every fold of ``folds`` (fold number per row of ``frame``); every image tested once.

    ``groups`` (one per row, or None) are kept together by the inner validation split.
    """
    labels = np.asarray(pd.Categorical(frame["label"], categories=list(classes)).codes)
    if (labels < 0).any():
        raise ParameterError(f"labels outside the classes {list(classes)}")
    folds = np.asarray(folds)
    records: list[FoldRecord] = []

    def fit_predict(fold, train_index, test_index):
        probabilities, fold_record = fit_fold(frame, images, labels, len(classes), train_index, test_index, groups,
                                              options, seed, val_fraction, fold)
        records.append(fold_record)
        return probabilities

    parts = [(np.flatnonzero(folds != k), np.flatnonzero(folds == k)) for k in np.unique(folds)]
    return TileCV(evaluation.cross_validate(labels, parts, list(classes), fit_predict), records)


def pooled_features(images: np.ndarray, paths, backbone: str, weights, tile: int, stride: int, chunk: int = 48,
                    batch_size: int = 32, cache_dir=None) -> tuple[np.ndarray, dict]:
    """Per-image features: ``backbone``'s average-pooled features of a grid of tiles, averaged over the image's tiles.

    Tiles are cut ``chunk`` images at a time (bounded memory) and go through one
    :class:`hemasuite.features.FeatureCache` (the network is built once, on the first
    miss; each chunk is cached on disk under its images' files and the tiling). The
    record names the extractor, its weights source, the tiles per image and the speed in
    images per second.
    """
    paths = [str(p) for p in paths]
    cache = features.FeatureCache(f"{backbone}_avgpool_tiles", lambda: features.feature_model(
        backbone, "avgpool", (tile, tile, 3), weights), (tile, tile), models.resolve_weights(backbone, weights),
                                  rescale=features.input_rescale(backbone), cache_dir=cache_dir, batch_size=batch_size)
    pooled, seconds, per_image = [], 0.0, None
    for start in range(0, len(images), chunk):
        batch = images[start:start + chunk]
        tiles, _, source = pipeline.patches_from_images(batch, np.zeros(len(batch)), tile, stride)
        values = cache(tiles, [paths[start + i] for i in source], variant=f"tiles {tile} stride {stride}")
        pooled.append(pd.DataFrame(values).groupby(source).mean().to_numpy(np.float32))
        seconds += len(tiles) / cache.images_per_s if cache.images_per_s else float("nan")
        per_image = len(tiles) // len(batch)
    return np.concatenate(pooled), {
        "extractor": f"{backbone} avgpool, mean over {per_image} tiles of {tile}x{tile} px (stride {stride}) per image",
        "weights": models.weights_label(backbone, weights), "dim": int(pooled[0].shape[1]),
        "computed": bool(cache.misses), "tiles_per_image": per_image,
        "images_per_s": training.per_second(len(images), seconds) if np.isfinite(seconds) else None}
