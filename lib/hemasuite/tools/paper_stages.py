"""The networks of the ``paper`` profile, as :mod:`hemasuite.tools.paper_check` times them.

For every notebook that trains networks (:data:`NOTEBOOKS`), :func:`stages` lists each
network it trains, and each frozen network whose outputs it computes, built as the notebook
builds it (the library's own builders, with the notebook's parameters as the runner sets
them: its ``parameters`` cell, then ``notebooks/profiles.yaml``) at the paper's input size,
with its weights resolved, together with the work of the full run (:class:`Workload`):
every repetition the notebook makes (levels, split seeds, folds, training seeds) included.

When ImageNet weights are not available, the weights-source column says so and the
network is timed with random initialisation (the same cost; AlexNet, whose random-init
rows are this suite's network and not torchvision's, as those rows build it).

Image counts come from the dataset loaders when the data is there, else from the sizes
documented in :data:`DOCUMENTED` (``LEUKEMIA_DATA_DIR`` README); splits are the suite's
seeded stratified split of those images at the notebook's fractions (the notebooks keep
duplicate groups, fields or cases together, which moves a few images). Not counted: what
trains no network (P4's KNN and majority baselines, P5's SVMs, the logistic regressions of
20 and 23), CPU work done once (P3's Augmentor copies, P1's median filter, 23's stain
variants), 23's Grad-CAM of a few tiles, image decoding (cached on disk after the first
run), P1's test-time augmentation of the validation split when it chooses whether to use it.
"""

from __future__ import annotations

import ast
import collections
import functools
import itertools
import math
from dataclasses import dataclass, replace
from typing import Callable, Iterator

import keras
import numpy as np
import pandas as pd

from .. import augment, config, features, models, pipeline, splits, tiles, training
from ..datasets import Dataset, choose, load_dataset
from ..errors import DataError, WeightsError
from ..imageio import read_rgb
from ..models import pretrained, weights_kind
from ..papers import p1_deep_cnn as p1
from ..papers import p2_cnmc_transfer as p2
from ..papers import p3_unseen_cases as unseen
from ..papers import p4_sequential_cnn as p4
from ..papers import p5_bone_marrow as p5

DOCUMENTED = {  # images per class as published (README of the data folder); IICBU: this copy's pixel size
    "taleqani_all": {"classes": {"Benign": 504, "Early": 985, "Pre": 963, "Pro": 804}},
    "iicbu_lymphoma": {"classes": {"CLL": 113, "FL": 139, "MCL": 122}, "native_size": (312, 417)},
}
INFERENCE_BATCH = 128  # experiment.train_seeds predicts validation and test splits in batches of 128
TILE_BATCH = 32  # tiles through a frozen backbone (tiles.pooled_features, p3_unseen_cases.TileExtractor)


@dataclass(frozen=True)
class Workload:
    """The work of the full run with one network: images through training steps and through inference."""

    trained: int
    inferred: int
    detail: str

    def seconds(self, train_per_s: float | None, infer_per_s: float) -> float:
        """Wall time at the given speeds (training images at the training speed, the rest at the inference speed)."""
        return (self.trained / train_per_s if self.trained else 0.0) + self.inferred / infer_per_s


@dataclass(frozen=True)
class Stage:
    """One network of a notebook: how to build it, its batches, and its work in the full run.

    ``train_batch`` None marks a frozen network (inference only, under ``precision``, as
    :class:`hemasuite.features.FeatureCache` runs it); ``optimizer`` is a factory
    ``f(steps_per_epoch)`` as :func:`hemasuite.training.adam`, ``augment`` one ``f(seed)``.
    An input of three channels is pixels, any other shape features.
    """

    notebook: str
    model: str
    build: Callable
    input_shape: tuple
    n_classes: int
    workload: Workload
    weights_source: str
    train_batch: int | None
    infer_batch: int
    optimizer: Callable | None = None
    augment: Callable | None = None
    rescale: float = 1 / 255
    precision: str = "float32"


# ---------------------------------------------------------------------------- parameters and image counts

def paper_parameters(stem: str, profile: str = "paper") -> dict:
    """The notebook's parameters as the runner sets them: its ``parameters`` cell, then the profile's values."""
    import papermill

    cell = papermill.inspect_notebook(str(config.repo_root() / "notebooks" / f"{stem}.ipynb"))
    defaults = {name: ast.literal_eval(entry["default"]) for name, entry in cell.items()}
    return {**defaults, **config.notebook_parameters(profile, stem)}


def counted_dataset(name: str, data_dir=None, stand_in: str | None = None) -> tuple[Dataset, str]:
    """The dataset (its ``stand_in`` when it is absent) from its loader when the data is there, else its documented
    class sizes; and which one."""
    name = choose(name, stand_in, data_dir)
    try:
        return load_dataset(name, data_dir), "data"
    except DataError:
        if name not in DOCUMENTED:
            raise
        counts = DOCUMENTED[name]["classes"]
        return Dataset(name, list(counts), class_frame(counts), None, "documented sizes"), "documented sizes"


def class_frame(counts: dict) -> pd.DataFrame:
    """A frame of ``counts[label]`` rows per class (path and group unique), for counting splits."""
    labels = np.repeat(list(counts), list(counts.values()))
    names = [f"{label}/{i}" for i, label in enumerate(labels)]
    return pd.DataFrame({"path": names, "label": labels, "group": names})


def split_sizes(frame: pd.DataFrame, fractions, seed: int) -> dict:
    """Images per split of the suite's seeded, stratified split of ``frame``."""
    split = splits.split_dataset(frame, fractions, seed=seed, groups=None)["split"]
    return {name: int(count) for name, count in split.value_counts().items()}


def native_size(data: Dataset, source: str) -> tuple[int, int]:
    """Height and width of the dataset's images (the first image, or the documented size)."""
    if source == "data":
        return read_rgb(data.frame["path"].iloc[0]).shape[:2]
    return DOCUMENTED[data.name]["native_size"]


# ---------------------------------------------------------------------------- workloads

def repetitions(repeats: dict[str, int]) -> tuple[int, str]:
    """How many runs ``repeats`` (singular noun -> count, e.g. ``{"split seed": 3, "seed": 3}``) make, in words."""
    words = " x ".join(f"{n} {noun}{'' if n == 1 else 's'}" for noun, n in repeats.items())
    return math.prod(repeats.values()), words


def runs_workload(counts: dict, epochs: int, repeats: dict[str, int], views: int = 1,
                  train_scored: bool = False) -> Workload:
    """:func:`hemasuite.experiment.train_seeds` once per repetition: ``epochs`` x the training split, the validation
    split predicted after every epoch (when there is one), the test split once (x ``views`` with test-time
    augmentation) and, with ``train_scored``, the training split once more (:func:`hemasuite.evaluation.fit_splits`)."""
    runs, words = repetitions(repeats)
    train, val, test = counts["train"], counts.get("val", 0), counts["test"]
    detail = (f"{words} x {epochs} epochs x {train:,} images" + (f"; val {val:,} per epoch" if val else "")
              + f"; test {test:,}" + (f" x {views} views" if views > 1 else "")
              + ("; training images scored once" if train_scored else ""))
    return Workload(runs * epochs * train, runs * (val * epochs + test * views + (train if train_scored else 0)),
                    detail)


def extraction_workload(inputs: int, what: str = "", how: str = "once (cached)") -> Workload:
    """A frozen network's outputs of ``inputs`` images (``what``: of which inputs instead), computed ``how``."""
    return Workload(0, inputs, f"outputs of {what or f'{inputs:,} images'}, {how}")


def combined(parts: dict[str, Workload]) -> Workload:
    """One network's work under several protocols, each named in the detail."""
    return Workload(sum(w.trained for w in parts.values()), sum(w.inferred for w in parts.values()),
                    "; ".join(f"{name}: {w.detail}" for name, w in parts.items()))


# ---------------------------------------------------------------------------- weights and shapes

def resolved(name: str, weights, top: bool = False) -> tuple[object, str]:
    """The weights to build with and their source; unavailable ImageNet weights give random init and the reason."""
    try:
        return weights, pretrained.weights_source(name, weights, include_top=top)
    except WeightsError:
        entry = pretrained.backbone(name)
        missing = entry.top if top else entry.notop
        alexnet = ", this suite's AlexNet" if name == "alexnet" else ""
        return None, f"unavailable: {missing.name if missing else name} (timed with random init{alexnet})"


def resolved_parts(backbone: str, weights) -> tuple[object, str]:
    """:func:`resolved` for ``a+b``: ImageNet only if every part has it."""
    parts = [resolved(part, weights) for part in backbone.split("+")]
    usable = weights if all(w is not None for w, _ in parts) else None
    return usable, " + ".join(source for _, source in parts)


def _output_shape(build: Callable) -> tuple[int, ...]:
    shape = tuple(int(d) for d in build().output.shape[1:])
    keras.backend.clear_session()
    return shape


@functools.cache
def layer_shape(backbone: str, layer: str, input_shape: tuple) -> tuple[int, ...]:
    """Output shape of :func:`hemasuite.features.feature_model` (built with random init: the same shape)."""
    return _output_shape(lambda: features.feature_model(backbone, layer, input_shape, None))


def feature_dim(backbone: str, layer: str, input_shape: tuple) -> int:
    """Width of ``layer``'s features, flattened."""
    return math.prod(layer_shape(backbone, layer, input_shape))


@functools.cache
def trunk_shape(backbone: str, tile: int) -> tuple[int, ...]:
    """Shape of the activations 23 caches per tile (:class:`hemasuite.papers.p3_unseen_cases.TileExtractor`)."""
    return _output_shape(lambda: unseen.TileExtractor(backbone, tile, None).cache.model())


def tile_network(part: str, backbone: str, tile: int, weights, n_classes: int = 0):
    """23's networks as its :class:`~hemasuite.papers.p3_unseen_cases.TileExtractor` builds them: ``trunk`` (the
    cached part), ``pool`` (the rest + pooling, on trunk activations) or ``classifier`` (the rest fine-tuned)."""
    extractor = unseen.TileExtractor(backbone, tile, weights)
    if part == "trunk":
        return extractor.cache.model()
    extractor.shape = trunk_shape(backbone, tile)
    return extractor.pool_model() if part == "pool" else extractor.classifier(n_classes)


def _side(size: int, override: int | None) -> tuple[int, int, int]:
    return (override or size,) * 2 + (3,)


def _tiles_per_image(size: tuple[int, int], tile: int, stride: int) -> int:
    return len(pipeline.extract_patches(np.zeros((*size, 3), np.uint8), tile, stride))


# ---------------------------------------------------------------------------- the notebooks' networks

def ladder_stages(params: dict, data_dir=None, input_size: int | None = None) -> Iterator[Stage]:
    """02: P1's deep CNN at every level x split seed x training seed (:func:`hemasuite.papers.p1_deep_cnn.cnn_fit`)."""
    data, _ = counted_dataset(params["dataset"], data_dir, params.get("stand_in"))
    counts = split_sizes(data.frame, params["fractions"], params["seed"])
    shape, n_classes, epochs = _side(params["image_size"], input_size), len(data.classes), params["epochs"]
    stride, kernel = params["stem_stride"], params["stem_kernel"]
    repeats = {"level": len(params["levels"]), "split seed": len(params["split_seeds"]), "seed": len(params["seeds"])}
    yield Stage("02_leakage_ladder", p1.cnn_name(params["image_size"], stride, kernel),
                functools.partial(models.p1_deep_cnn, shape, n_classes, stem_stride=stride, stem_kernel=kernel),
                shape, n_classes, runs_workload(counts, epochs, repeats, train_scored=True), "random init",
                params["batch_size"], INFERENCE_BATCH, training.adam(params["learning_rate"], epochs, "cosine"),
                augment.cell_augmentation(params["augmentation"]))


def p4_stages(params: dict, data_dir=None, input_size: int | None = None) -> Iterator[Stage]:
    """10, on every split seed: the Sequential CNN, the frozen ImageNet backbone's features at each input size and
    the softmax layer trained on them, each network baseline (KNN trains no network)."""
    stem = "10_p4_sequential_cnn"
    data, _ = counted_dataset(params["dataset"], data_dir, params.get("stand_in"))
    counts = split_sizes(data.frame, params["fractions"], params["seed"])
    n_classes, epochs, batch = len(data.classes), params["epochs"], params["batch_size"]
    split_seeds = {"split seed": len(params["split_seeds"])}
    shape = _side(params["image_size"], input_size)
    yield Stage(stem, "Sequential CNN", functools.partial(models.p4_sequential_cnn, shape, n_classes), shape,
                n_classes, runs_workload(counts, epochs, {**split_seeds, "seed": len(params["seeds"])}),
                "random init", batch, INFERENCE_BATCH, training.adam(params["learning_rate"], epochs, "cosine"),
                lambda s: augment.imagedatagenerator_layers(**params["augmentation"], seed=s))
    if params["pretrained"]:
        yield from _p4_pretrained(params, counts, n_classes, len(data.frame), input_size)
    shape = _side(params["baseline_image_size"], input_size)
    for name in params["baselines"]:
        if name == "knn":
            continue
        weights, weights_source = resolved(name, params["baseline_weights"])
        yield Stage(stem, f"{p4.BASELINE_PAPER_NAMES[name]} baseline ({name})",
                    functools.partial(models.transfer_classifier, name, shape, n_classes, weights=weights),
                    shape, n_classes, runs_workload(counts, params["baseline_epochs"], {**split_seeds, "seed": 1}),
                    weights_source, batch, INFERENCE_BATCH,
                    training.adam(params["learning_rate"], params["baseline_epochs"], "constant"), rescale=1.0)


def _p4_pretrained(params: dict, counts: dict, n_classes: int, images: int, input_size: int | None) -> Iterator[Stage]:
    """:func:`hemasuite.papers.p4_sequential_cnn.pretrained_baseline`: features once per input size; per split,
    one head per size scored on validation, then one per training seed at the chosen size."""
    stem, backbone, sizes = "10_p4_sequential_cnn", params["pretrained"], params["pretrained_sizes"]
    weights, source = resolved(backbone, "imagenet")
    for size in sizes:
        shape = _side(size, input_size)
        yield Stage(stem, f"{p4.ARCHITECTURES[backbone]} avgpool features at {size} px (frozen)",
                    functools.partial(features.feature_model, backbone, "avgpool", shape, weights), shape, n_classes,
                    extraction_workload(images), source, None, params["batch_size"],
                    rescale=features.input_rescale(backbone))
    dim = feature_dim(backbone, "avgpool", _side(sizes[0], input_size))  # the same at every size
    epochs, seeds = params["pretrained_epochs"], len(params["seeds"])
    work = runs_workload(counts, epochs, {"split seed": len(params["split_seeds"]), "head fit": len(sizes) + seeds})
    yield Stage(stem, f"softmax head on {p4.ARCHITECTURES[backbone]} features",
                functools.partial(features.softmax_head, dim, n_classes), (dim,), n_classes,
                replace(work, detail=f"{work.detail}; head fits per split: {len(sizes)} scoring the input sizes, "
                                     f"then {seeds} seeds"),
                "random init (head)", params["batch_size"], INFERENCE_BATCH,
                training.adam(params["pretrained_learning_rate"], epochs, "constant"), rescale=1.0)


def p1_stages(params: dict, data_dir=None, input_size: int | None = None) -> Iterator[Stage]:
    """11: the deep CNN (its first configuration: the paper profile has one) on every split seed with every seed;
    8 dihedral views of every test image when test-time augmentation may be chosen."""
    data, _ = counted_dataset(params["dataset"], data_dir, params.get("stand_in"))
    counts = split_sizes(data.frame, params["fractions"], params["seed"])
    configurations = p1.configurations(params)
    settings = next(iter(configurations.values()))
    shape, n_classes = _side(settings["image_size"], input_size), len(data.classes)
    views = 8 if any(s["test_time_augmentation"] for s in configurations.values()) else 1
    repeats = {"split seed": len(params["split_seeds"]), "seed": len(params["seeds"])}
    yield Stage("11_p1_deep_cnn", "deep CNN",
                functools.partial(models.p1_deep_cnn, shape, n_classes, stem_stride=settings["stem_stride"],
                                  stem_kernel=settings["stem_kernel"]),
                shape, n_classes, runs_workload(counts, params["epochs"], repeats, views, train_scored=True),
                "random init", params["batch_size"], INFERENCE_BATCH,
                training.adam(params["learning_rate"], params["epochs"], "cosine"),
                augment.cell_augmentation(settings["augmentation"]))


def tile_fits(settings: tiles.TileSettings, per_image: int, parts: dict, fits: int) -> Workload:
    """:func:`hemasuite.tiles.fit_fold` ``fits`` times for one candidate: random training tiles, the validation
    images after every epoch, the test and training images once (counted as if the candidate were chosen)."""
    epochs, tiles_ = settings.epochs, settings.tiles_per_epoch
    return Workload(fits * epochs * tiles_, fits * per_image * (epochs * parts["val"] + parts["test"] + parts["fit"]),
                    f"{repetitions({'fit': fits})[1]} x {epochs} epochs x {tiles_:,} random tiles; {per_image} tiles "
                    f"per image of {parts['val']:,} validation images per epoch, {parts['test']:,} test and "
                    f"{parts['fit']:,} training images once")


def p3_stages(params: dict, data_dir=None, input_size: int | None = None) -> Iterator[Stage]:
    """20: the backbone under P3's protocol and a case-level split (when the profile names one), every tile-CNN
    candidate in every fold of both CV levels and in P3's protocol, the ImageNet features of the tiles."""
    stem = "20_p3_densenet201_lymphoma"
    data, source = counted_dataset(params["dataset"], data_dir, params.get("stand_in"))
    n_classes, test_fraction, per_class = len(data.classes), params["test_fraction"], params["per_class"]
    augmented = per_class * n_classes  # P3's protocol: Augmentor copies of every class, then split
    if params["backbone"]:
        originals = split_sizes(data.frame, [1 - test_fraction, test_fraction], params["seed"])
        paper = split_sizes(class_frame(dict.fromkeys(data.classes, per_class)), [1 - test_fraction, test_fraction],
                             params["seed"])
        case_split = {"train": round(per_class * (1 - test_fraction)) * n_classes, "test": originals["test"]}
        seeds, epochs = {"seed": len(params["backbone_seeds"])}, params["epochs"]
        work = combined({"paper protocol": runs_workload(paper, epochs, seeds),
                         "case-level split": runs_workload(case_split, epochs, seeds)})
        shape = _side(params["image_size"], input_size)
        weights, weights_source = resolved(params["backbone"], params["weights"])
        yield Stage(stem, f"{params['backbone']} + Dense 512, both protocols",
                    functools.partial(models.transfer_classifier, params["backbone"], shape, n_classes, weights,
                                      dense_units=512, dropout=0.5),
                    shape, n_classes, work, weights_source, params["batch_size"], INFERENCE_BATCH,
                    training.adam(params["learning_rate"], epochs, "constant"), rescale=1.0)
    images, folds, val = len(data.frame), params["n_folds"], params["val_fraction"]
    trained = (1 - 1 / folds, 1 - test_fraction)  # the training part of a CV fold, of P3's protocol
    cv = {"fit": round(images * trained[0] * (1 - val)), "val": round(images * trained[0] * val),
          "test": round(images / folds)}
    protocol = {"fit": round(augmented * trained[1] * (1 - val)), "val": round(augmented * trained[1] * val),
                "test": round(augmented * test_fraction)}
    height, width = size = native_size(data, source)
    for name, settings in tiles.candidates(params["tile_settings"], params["tile_candidates"]).items():
        per_image = _tiles_per_image(size, settings.tile, settings.eval_stride)
        work = combined({f"{folds} folds x 2 CV levels": tile_fits(settings, per_image, cv, 2 * folds),
                         f"P3's protocol ({augmented:,} copies)": tile_fits(settings, per_image, protocol, 1)})
        shape = _side(settings.tile, input_size)
        yield Stage(stem, f"tile CNN, candidate {name} ({settings.tile}-px tiles of {width}x{height} images)",
                    functools.partial(settings.build, n_classes), shape, n_classes, work, "random init",
                    settings.batch_size, INFERENCE_BATCH,
                    training.adam(settings.learning_rate, settings.epochs, "cosine"),
                    tiles.tile_augmentation(settings.colour_jitter))
    backbone, tile = params["imagenet_backbone"], params["imagenet_tile"]
    weights, weights_source = resolved(backbone, params["imagenet_weights"])
    shape = _side(tile, input_size)
    per_image = _tiles_per_image(size, tile, params["imagenet_stride"])
    yield Stage(stem, f"{backbone} avgpool features of {tile}-px tiles (frozen)",
                functools.partial(features.feature_model, backbone, "avgpool", shape, weights), shape, n_classes,
                extraction_workload(images * per_image, f"{images * per_image:,} tiles ({per_image} per image)"),
                weights_source, None, TILE_BATCH, rescale=features.input_rescale(backbone))


def p2_stages(params: dict, data_dir=None, input_size: int | None = None) -> Iterator[Stage]:
    """21: the traditional CNN and AlexNet (:func:`hemasuite.papers.p2_cnmc_transfer.alexnet`); from each VGG-16 start
    (random init with ``vgg_random_init``, then ``vgg_weights``) blocks 1-4 and the frozen block 5 run once over every
    image, the softmax layer trained on the pooled block 5, and from ImageNet block 5 fine-tuned on the cached
    block-4 output (:func:`hemasuite.papers.p2_cnmc_transfer.vgg16_models`)."""
    stem = "21_p2_cnmc_transfer"
    data, _ = counted_dataset(params["dataset"], data_dir, params.get("stand_in"))
    data = p2.task(data)
    counts, images = split_sizes(data.frame, params["fractions"], params["seed"]), len(data.frame)
    shape, epochs, batch = _side(params["image_size"], input_size), params["epochs"], params["batch_size"]
    optimizer = training.sgd(params["learning_rate"], params["momentum"])
    work = runs_workload(counts, epochs, {"seed": len(params["seeds"])})
    yield Stage(stem, "traditional CNN", functools.partial(models.p2_traditional_cnn, shape, 2), shape, 2, work,
                "random init", batch, INFERENCE_BATCH, optimizer)
    weights, source = resolved("alexnet", params["alexnet_weights"])
    yield Stage(stem, "AlexNet (torchvision, FC 4096)" if weights else f"AlexNet (FC {params['alexnet_fc_units']})",
                functools.partial(p2.alexnet, shape, weights, params["alexnet_fc_units"]), shape, 2, work, source,
                batch, INFERENCE_BATCH, optimizer, rescale=features.input_rescale("alexnet", weights))
    vgg = _side(params["vgg_image_size"], input_size)
    block4 = layer_shape("vgg16", "block4_pool", vgg)
    flat, dim = (math.prod(block4),), block4[-1]  # block 5 keeps block 4's 512 channels, pooled to one value each
    for start in dict.fromkeys([*([None] if params["vgg_random_init"] else []), params["vgg_weights"]]):
        weights, source = resolved("vgg16", start)
        kind = weights_kind(start)
        yield Stage(stem, f"VGG-16 blocks 1-4, {kind} (frozen)",
                    functools.partial(features.feature_model, "vgg16", "block4_pool", vgg, weights), vgg, 2,
                    extraction_workload(images), source, None, batch, rescale=features.input_rescale("vgg16"))
        yield Stage(stem, f"VGG-16 block 5 on the cached block-4 output, {kind} (frozen)",
                    functools.partial(models.vgg16_block5, block4, None, weights, False), flat, 2,
                    extraction_workload(images), source, None, batch, rescale=1.0)
        yield Stage(stem, f"softmax head on VGG-16 features, {kind}",
                    functools.partial(features.softmax_head, dim, 2, params["dropout"]), (dim,), 2, work,
                    "random init (head)", batch, INFERENCE_BATCH, optimizer, rescale=1.0)
        if start == "imagenet" and params["finetune_epochs"]:
            yield Stage(stem, "VGG-16 block 5 fine-tuned + softmax, ImageNet",
                        functools.partial(models.vgg16_block5, block4, 2, weights, True, params["dropout"]), flat, 2,
                        runs_workload(counts, params["finetune_epochs"], {"seed": len(params["finetune_seeds"])}),
                        source, batch, INFERENCE_BATCH,
                        training.sgd(params["finetune_learning_rate"], params["momentum"]), rescale=1.0)


def p5_stages(params: dict, data_dir=None, input_size: int | None = None) -> Iterator[Stage]:
    """22: every frozen backbone layer read, each computed once (``a+b`` reuses its parts), then the new softmax
    layer (or the fine-tuned part) of every backbone, the ``pretrained`` backbones (ImageNet, each at its own input
    size) included; the small CNN. All on the rotated (x4) training set."""
    stem = "22_p5_bone_marrow"
    data, _ = counted_dataset(params["dataset"], data_dir, params.get("stand_in"))
    data = p5.stratified_subset(data, params["n_images"], params["seed"])
    counts = split_sizes(data.frame, params["fractions"], params["seed"])
    rotated = {**counts, "train": 4 * counts["train"]}
    n_classes, k, seeds = len(data.classes), params["fine_tune_layers"], {"seed": len(params["seeds"])}
    optimizer = training.sgd(params["learning_rate"], params["momentum"])
    # (backbone, input size, weights, trainable layers): the profile's backbones, then the pretrained ones
    rows = [(b, params["image_size"], params["weights"], k) for b in params["backbones"]]
    rows += [(b, size, "imagenet", 0) for b, size in (params["pretrained"] or {}).items()]
    reads = [(b, p5.feature_layer(b.split("+")[0], w, size)[0], size, w) for b, size, w, _ in rows]
    reads += [(b, p5.frozen_layer(b.split("+")[0]), size, w) for b, size, w, layers in rows if layers == 0]
    parts = dict.fromkeys((part, layer, size, w) for b, layer, size, w in reads for part in b.split("+"))
    for part, layer, size, w in parts:
        shape = _side(size, input_size)
        part_weights, source = resolved(part, w, top=(part, layer) == ("vgg16", "fc6") and w is not None)
        yield Stage(stem, f"{p5.PAPER_NAMES[part]} {layer} features (frozen)",
                    functools.partial(features.feature_model, part, layer, shape, part_weights), shape, n_classes,
                    extraction_workload(rotated["train"] + rotated["test"]), source, None, params["batch_size"],
                    rescale=features.input_rescale(part, part_weights))
    work = runs_workload(rotated, params["epochs"], seeds)
    for backbone, size, w, layers in rows:
        name, shape = p5.PAPER_NAMES.get(backbone, backbone), _side(size, input_size)
        if layers == 0:
            layer = p5.frozen_layer(backbone.split("+")[0])
            dim = sum(feature_dim(part, layer, shape) for part in backbone.split("+"))
            yield Stage(stem, f"softmax head on {name} {layer} features", functools.partial(
                features.softmax_head, dim, n_classes), (dim,), n_classes, work, "random init (head)",
                params["batch_size"], INFERENCE_BATCH, optimizer, rescale=1.0)
        else:
            tuned_weights, source = resolved_parts(backbone, w)
            yield Stage(stem, f"{name} fine-tuned (last {layers} layers)",
                        functools.partial(p5.fine_tune_model, backbone, shape, n_classes, tuned_weights, layers),
                        shape, n_classes, work, source, params["batch_size"], INFERENCE_BATCH, optimizer,
                        rescale=features.input_rescale(backbone, tuned_weights))
    shape = _side(params["image_size"], input_size)
    yield Stage(stem, "small CNN", functools.partial(models.p5_small_cnn, shape, n_classes), shape, n_classes,
                runs_workload(rotated, params["cnn_epochs"], seeds), "random init", params["batch_size"],
                INFERENCE_BATCH, optimizer)


def unseen_passes(variant: str, levels: int, folds: int, copies: int) -> list[tuple[str, object]]:
    """The image sets one colour variant of 23 runs through the tile extractor
    (:class:`hemasuite.papers.p3_unseen_cases.VariantFeatures`): HED jitter the untouched images (its test side) and
    ``copies`` jittered copies; Reinhard every image mapped to each fold's reference, at each of ``levels`` CV levels;
    the others every image once."""
    if variant == "hed_jitter":
        return [("none", None), *(("hed_jitter copy", copy) for copy in range(copies))]
    if variant == "reinhard":
        return [("reinhard", (level, fold)) for level in range(levels) for fold in range(folds)]
    return [(variant, None)]


def unseen_stages(params: dict, data_dir=None, input_size: int | None = None) -> Iterator[Stage]:
    """23: every backbone's frozen tile outputs of every colour variant (each image set once: cached on disk);
    Lite0's last block pooling them for each variant's features; Lite0's last block fine-tuned per
    ``finetune_variants`` in every case-level fold (:mod:`hemasuite.papers.p3_unseen_cases`)."""
    stem = "23_p3_unseen_cases"
    data, source = counted_dataset(params["dataset"], data_dir, params.get("stand_in"))
    images, n_classes, tile = len(data.frame), len(data.classes), params["tile_size"]
    per_image, shape = _tiles_per_image(native_size(data, source), tile, tile), _side(tile, input_size)

    def image_sets(variants, cached: bool) -> Workload:
        # the probes run every variant at case level, the image-level variants at image level too
        sets = [s for v in variants for s in unseen_passes(v, 1 + (v in params["image_level_variants"]),
                                                          params["n_folds"], params["jitter_copies"])]
        sets = list(dict.fromkeys(sets)) if cached else sets
        named = ", ".join(f"{kind} x {n}" for kind, n in collections.Counter(kind for kind, _ in sets).items())
        tiles_ = len(sets) * images * per_image
        return extraction_workload(tiles_, f"{tiles_:,} tiles ({per_image} per image of "
                                   f"{repetitions({'image set': len(sets)})[1]}: {named})",
                                   "once (cached)" if cached else "once per variant (in memory)")

    for backbone in params["backbones"]:
        variants = params["variants"] if backbone == "efficientnet_lite0" else params["vgg_variants"]
        weights, source = resolved(backbone, params["weights"])
        name, cut = unseen.ARCHITECTURES[backbone], unseen.CUT.get(backbone)
        yield Stage(stem, f"{name} up to {cut or 'avgpool'}, {tile}-px tiles (frozen)",
                    functools.partial(tile_network, "trunk", backbone, shape[0], weights), shape, n_classes,
                    image_sets(variants, cached=True), source, None, TILE_BATCH, rescale=1.0,
                    precision=unseen.extraction_precision(backbone))
        if cut is None:
            continue  # its cached outputs are the pooled features
        activations = trunk_shape(backbone, shape[0])
        yield Stage(stem, f"{name} after {cut} + pooling, per variant (frozen)",
                    functools.partial(tile_network, "pool", backbone, shape[0], weights), activations, n_classes,
                    image_sets(variants, cached=False), source, None, unseen.ACTIVATION_BATCH, rescale=1.0)
        for variant in params["finetune_variants"]:
            yield Stage(stem, f"{name} after {cut} fine-tuned on tiles [{variant}]",
                        functools.partial(tile_network, "classifier", backbone, shape[0], weights, n_classes),
                        activations, n_classes, finetune_workload(params, variant, images, per_image), source,
                        params["finetune_batch_size"], unseen.ACTIVATION_BATCH,
                        training.adam(params["finetune_learning_rate"], params["finetune_epochs"], "constant"),
                        rescale=1.0)


def finetune_workload(params: dict, variant: str, images: int, per_image: int) -> Workload:
    """:func:`hemasuite.papers.p3_unseen_cases.finetune_cv`: per case-level fold, the training tiles of all but one
    inner fold (HED jitter: of each copy) every epoch, the held-out inner fold's after every epoch, the test tiles
    once."""
    folds, epochs, inner = params["n_folds"], params["finetune_epochs"], params["inner_folds"]
    copies = params["jitter_copies"] if variant == "hed_jitter" else 1
    train = images * (1 - 1 / folds)
    fit, val, test = (round(n * per_image) for n in (copies * train * (1 - 1 / inner), copies * train / inner,
                                                      images / folds))
    return Workload(folds * epochs * fit, folds * (epochs * val + test),
                    f"{folds} folds x {epochs} epochs x {fit:,} tiles; {val:,} validation tiles per epoch; "
                    f"test {test:,} tiles")


NOTEBOOKS = {"02_leakage_ladder": ladder_stages, "10_p4_sequential_cnn": p4_stages, "11_p1_deep_cnn": p1_stages,
             "20_p3_densenet201_lymphoma": p3_stages, "21_p2_cnmc_transfer": p2_stages,
             "22_p5_bone_marrow": p5_stages, "23_p3_unseen_cases": unseen_stages}


def stages(profile: str = "paper", notebooks=None, data_dir=None, input_size: int | None = None,
           limit: int | None = None) -> list[Stage]:
    """Every network of the selected notebooks under ``profile`` (at most ``limit`` per notebook).

    ``input_size`` replaces every image side (a quick test; the table is then not the paper's).
    """
    chosen = list(notebooks or NOTEBOOKS)
    config.check_known(dict.fromkeys(chosen), set(NOTEBOOKS), "paper_check notebooks")
    found = []
    for stem in chosen:
        found += itertools.islice(NOTEBOOKS[stem](paper_parameters(stem, profile), data_dir, input_size), limit)
    return found
