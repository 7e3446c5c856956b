"""Preflight of the ``paper`` profile: ``python -m hemasuite.tools.paper_check`` (``make paper-check``).

For every notebook of the profile that trains networks (:data:`NOTEBOOKS`), :func:`stages`
lists each network it trains, and each frozen backbone whose features it extracts, built
as the notebook builds it (the library's own builders, with the notebook's parameters as
the runner sets them: its ``parameters`` cell, then ``notebooks/profiles.yaml``) at the
paper's input size, with its weights resolved, together with the work of the full run
(:class:`Workload`). :func:`measure` then runs, on synthetic pixels, on the visible
device, under the suite's strategy and precision policy (:mod:`hemasuite.training`), one
warm-up step, then ``steps`` timed training steps at the notebook's training batch and
``steps`` timed inference batches at its inference batch. The table gives images/s and
the estimated wall time of the full run on this device.

When ImageNet weights are not available, the weights-source column says so and the
network is timed with random initialisation (the same cost).

Image counts come from the dataset loaders when the data is there, else from the sizes
documented in :data:`DOCUMENTED` (``LEUKEMIA_DATA_DIR`` README); splits are the suite's
seeded stratified split of those images at the notebook's fractions (the notebooks keep
duplicate groups together, which moves a few images). Not counted: P4's KNN baseline and
P5's SVMs (no network), P3's Augmentor copies and P1's median filter (CPU, once), image
decoding (cached on disk after the first run).

- ``--limit N``: at most N networks per notebook and batches of 2, a CPU check in minutes.
- ``--estimate-gpu-tflops T [T ...]``: no timing; the wall time from counted FLOPs
  (:func:`forward_flops`): 3 x forward FLOPs per training image (forward + backward),
  1 x per inference image, at T sustained TFLOPS (:func:`flops_table`).
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import functools
import gc
import itertools
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from .. import augment, config, features, models, pipeline, splits, tiles, training
from ..datasets import Dataset, load_dataset
from ..errors import DataError, WeightsError
from ..imageio import read_rgb
from ..models import pretrained
from ..papers import p2_cnmc_transfer as p2
from ..papers import p4_sequential_cnn as p4
from ..papers import p5_bone_marrow as p5
from ..record import device_description, markdown_table

DOCUMENTED = {  # images per class as published (README of the data folder); IICBU: this copy's pixel size
    "taleqani_all": {"classes": {"Benign": 504, "Early": 985, "Pre": 963, "Pro": 804}},
    "iicbu_lymphoma": {"classes": {"CLL": 113, "FL": 139, "MCL": 122}, "native_size": (312, 417)},
}
LIMIT_BATCH = 2
INFERENCE_BATCH = 128  # experiment.train_seeds predicts validation and test splits in batches of 128


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

    ``train_batch`` None marks a frozen feature extractor (inference only, float32, as
    :class:`hemasuite.features.FeatureCache` runs it); ``optimizer`` is a factory
    ``f(steps_per_epoch)`` as :func:`hemasuite.training.adam`, ``augment`` one ``f(seed)``.
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


# ---------------------------------------------------------------------------- parameters and image counts

def notebook_parameters(stem: str, profile: str = "paper") -> dict:
    """The notebook's parameters as the runner sets them: its ``parameters`` cell, then the profile's values."""
    import papermill

    cell = papermill.inspect_notebook(str(config.repo_root() / "notebooks" / f"{stem}.ipynb"))
    defaults = {name: ast.literal_eval(entry["default"]) for name, entry in cell.items()}
    return {**defaults, **config.notebook_parameters(profile, stem)}


def counted_dataset(name: str, data_dir=None) -> tuple[Dataset, str]:
    """The dataset from its loader when the data is there, else its documented class sizes; and which one."""
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


def split_counts(frame: pd.DataFrame, fractions, seed: int) -> dict:
    """Images per split of the suite's seeded, stratified split of ``frame``."""
    split = splits.split_dataset(frame, fractions, seed=seed, groups=None)["split"]
    return {name: int(count) for name, count in split.value_counts().items()}


def native_size(data: Dataset, source: str) -> tuple[int, int]:
    """Height and width of the dataset's images (the first image, or the documented size)."""
    if source == "data":
        return read_rgb(data.frame["path"].iloc[0]).shape[:2]
    return DOCUMENTED[data.name]["native_size"]


def seeds_workload(counts: dict, epochs: int, runs: int, views: int = 1) -> Workload:
    """:func:`hemasuite.experiment.train_seeds`: per run, ``epochs`` x the training split, the validation split
    predicted after every epoch (when there is one) and the test split once (x ``views`` with test-time augmentation)."""
    val, test = counts.get("val", 0), counts["test"]
    detail = f"{runs} run(s) x {epochs} epochs x {counts['train']:,} images" + (f"; val {val:,} per epoch" if val else "")
    detail += f"; test {test:,}" + (f" x {views} views" if views > 1 else "")
    return Workload(runs * epochs * counts["train"], runs * (val * epochs + test * views), detail)


def extraction_workload(images: int) -> Workload:
    """A frozen backbone's features, computed once for every image and cached."""
    return Workload(0, images, f"features of {images:,} images, once (cached)")


# ---------------------------------------------------------------------------- weights

def resolved(name: str, weights, top: bool = False) -> tuple[object, str]:
    """The weights to build with and their source; unavailable ImageNet weights give random init and the reason."""
    try:
        return weights, pretrained.weights_source(name, weights, include_top=top)
    except WeightsError:
        entry = pretrained.backbone(name)
        missing = entry.top if top else entry.notop
        return None, f"unavailable: {missing.name if missing else name} (timed with random init)"


def resolved_parts(backbone: str, weights) -> tuple[object, str]:
    """:func:`resolved` for ``a+b``: ImageNet only if every part has it."""
    parts = [resolved(part, features.effective_weights(part, weights)) for part in backbone.split("+")]
    usable = weights if all(w is not None for w, _ in parts) else None
    return usable, " + ".join(source for _, source in parts)


@functools.cache
def feature_dim(backbone: str, layer: str, input_shape: tuple) -> int:
    """Width of ``layer``'s features (:func:`hemasuite.features.feature_model`, random init: same shape)."""
    import keras

    model = features.feature_model(backbone, layer, input_shape, None)
    dim = int(model.output.shape[-1])
    del model
    keras.backend.clear_session()
    return dim


# ---------------------------------------------------------------------------- the notebooks' networks

def _side(size: int, override: int | None) -> tuple[int, int, int]:
    return (override or size,) * 2 + (3,)


def p4_stages(params: dict, data_dir=None, input_size: int | None = None) -> Iterator[Stage]:
    """10: the Sequential CNN, then each network baseline (KNN trains no network)."""
    stem = "10_p4_sequential_cnn"
    data, _ = counted_dataset(params["dataset"], data_dir)
    counts = split_counts(data.frame, params["fractions"], params["seed"])
    n_classes, epochs, seeds = len(data.classes), params["epochs"], params["seeds"]
    yield Stage(stem, "Sequential CNN", functools.partial(models.p4_sequential_cnn,
                                                           _side(params["image_size"], input_size), n_classes),
                   _side(params["image_size"], input_size), n_classes, seeds_workload(counts, epochs, len(seeds)),
                   "random init", params["batch_size"], INFERENCE_BATCH,
                   training.adam(params["learning_rate"], epochs, "cosine"),
                   lambda s: augment.imagedatagenerator_layers(**params["augmentation"], seed=s))
    shape = _side(params["baseline_image_size"], input_size)
    for name in params["baselines"]:
        if name == "knn":
            continue
        weights, weights_source = resolved(name, params["baseline_weights"])
        yield Stage(stem, f"{p4.BASELINE_PAPER_NAMES[name]} baseline ({name})",
                           functools.partial(models.transfer_classifier, name, shape, n_classes, weights=weights),
                           shape, n_classes, seeds_workload(counts, params["baseline_epochs"], 1), weights_source,
                           params["batch_size"], INFERENCE_BATCH,
                           training.adam(params["learning_rate"], params["baseline_epochs"], "constant"),
                           rescale=1.0)


def p1_stages(params: dict, data_dir=None, input_size: int | None = None) -> Iterator[Stage]:
    """11: the deep CNN (dihedral test-time augmentation: 8 views of every test image)."""
    data, _ = counted_dataset(params["dataset"], data_dir)
    counts = split_counts(data.frame, params["fractions"], params["seed"])
    shape, n_classes = _side(params["image_size"], input_size), len(data.classes)
    views = 8 if params["test_time_augmentation"] else 1
    yield Stage("11_p1_deep_cnn", "deep CNN",
                  functools.partial(models.p1_deep_cnn, shape, n_classes, stem_stride=params["stem_stride"],
                                    stem_kernel=params["stem_kernel"]),
                  shape, n_classes, seeds_workload(counts, params["epochs"], len(params["seeds"]), views),
                  "random init", params["batch_size"], INFERENCE_BATCH,
                  training.adam(params["learning_rate"], params["epochs"], "cosine"),
                  augment.cell_augmentation(params["augmentation"]))


def p3_stages(params: dict, data_dir=None, input_size: int | None = None) -> Iterator[Stage]:
    """20: the backbone under P3's protocol and a case-level split (when the profile names one), every tile-CNN
    candidate in every fold of both CV levels and in P3's protocol, the ImageNet features of the tiles."""
    stem = "20_p3_densenet201_lymphoma"
    data, source = counted_dataset(params["dataset"], data_dir)
    n_classes, test_fraction, per_class = len(data.classes), params["test_fraction"], params["per_class"]
    if params["backbone"]:
        originals = split_counts(data.frame, [1 - test_fraction, test_fraction], params["seed"])
        paper = split_counts(class_frame(dict.fromkeys(data.classes, per_class)), [1 - test_fraction, test_fraction],
                             params["seed"])
        case_split = {"train": round(per_class * (1 - test_fraction)) * n_classes, "test": originals["test"]}
        runs = len(params["backbone_seeds"])
        protocols = [seeds_workload(paper, params["epochs"], runs), seeds_workload(case_split, params["epochs"], runs)]
        backbone = Workload(sum(w.trained for w in protocols), sum(w.inferred for w in protocols),
                            "paper protocol: " + protocols[0].detail + " + case-level split: " + protocols[1].detail)
        shape = _side(params["image_size"], input_size)
        weights, weights_source = resolved(params["backbone"], params["weights"])
        yield Stage(stem, f"{params['backbone']} + Dense 512, both protocols",
                    functools.partial(models.transfer_classifier, params["backbone"], shape, n_classes, weights,
                                      dense_units=512, dropout=0.5),
                    shape, n_classes, backbone, weights_source, params["batch_size"], INFERENCE_BATCH,
                    training.adam(params["learning_rate"], params["epochs"], "constant"), rescale=1.0)
    blank = np.zeros((*native_size(data, source), 3), np.uint8)
    images, folds, val = len(data.frame), params["n_folds"], params["val_fraction"]
    fits = 2 * folds + 1  # every fold of both levels, and P3's protocol (counted as one more fold)
    parts = {"fit": round(images * (1 - 1 / folds) * (1 - val)), "val": round(images * (1 - 1 / folds) * val),
             "test": round(images / folds)}
    for name, settings in tiles.candidates(params["tile_settings"], params["tile_candidates"]).items():
        per_image = len(pipeline.extract_patches(blank, settings.tile, settings.eval_stride))
        work = Workload(fits * settings.epochs * settings.tiles_per_epoch,
                        fits * per_image * (settings.epochs * parts["val"] + parts["test"] + parts["fit"]),
                        f"{fits} fits x {settings.epochs} epochs x {settings.tiles_per_epoch:,} random tiles; "
                        f"{per_image} tiles per image of about {parts['val']} validation images per epoch, "
                        f"{parts['test']} test and {parts['fit']} training images once")
        shape = _side(settings.tile, input_size)
        yield Stage(stem, f"tile CNN, candidate {name} ({settings.tile}-px tiles of {blank.shape[1]}x{blank.shape[0]} "
                          "images)", functools.partial(settings.build, n_classes), shape, n_classes, work,
                    "random init", settings.batch_size, INFERENCE_BATCH,
                    training.adam(settings.learning_rate, settings.epochs, "cosine"),
                    tiles.tile_augmentation(settings.colour_jitter))
    backbone_name, tile = params["imagenet_backbone"], params["imagenet_tile"]
    weights, weights_source = resolved(backbone_name, params["imagenet_weights"])
    shape = _side(tile, input_size)
    per_image = len(pipeline.extract_patches(blank, tile, params["imagenet_stride"]))
    yield Stage(stem, f"{backbone_name} avgpool features of {tile}-px tiles (frozen)",
                functools.partial(features.feature_model, backbone_name, "avgpool", shape, weights), shape, n_classes,
                extraction_workload(images * per_image), weights_source, None, 32,
                rescale=features.input_rescale(backbone_name))


def p2_stages(params: dict, data_dir=None, input_size: int | None = None) -> Iterator[Stage]:
    """21: traditional CNN, AlexNet, VGG-16 features (computed once) and the softmax head trained on them."""
    stem = "21_p2_cnmc_transfer"
    data, _ = counted_dataset(params["dataset"], data_dir)
    data = p2.task(data)
    counts = split_counts(data.frame, params["fractions"], params["seed"])
    shape, epochs, runs = _side(params["image_size"], input_size), params["epochs"], len(params["seeds"])
    optimizer = training.sgd(params["learning_rate"], params["momentum"])
    work = seeds_workload(counts, epochs, runs)
    weights, weights_source = resolved("vgg16", params["vgg_weights"])
    yield Stage(stem, "traditional CNN", functools.partial(models.p2_traditional_cnn, shape, 2), shape, 2, work,
                "random init", params["batch_size"], INFERENCE_BATCH, optimizer)
    yield Stage(stem, f"AlexNet (FC {params['alexnet_fc_units']})",
                functools.partial(models.alexnet, shape, 2, fc_units=params["alexnet_fc_units"]), shape, 2, work,
                "random init", params["batch_size"], INFERENCE_BATCH, optimizer)
    yield Stage(stem, "VGG-16 avgpool features (frozen)",
                functools.partial(features.feature_model, "vgg16", "avgpool", shape, weights), shape, 2,
                extraction_workload(len(data.frame)), weights_source, None, 32, rescale=features.input_rescale("vgg16"))
    dim = feature_dim("vgg16", "avgpool", shape)
    yield Stage(stem, "softmax head on VGG-16 features",
                functools.partial(features.softmax_head, dim, 2, params["dropout"]), (dim,), 2, work,
                "random init (head)", params["batch_size"], INFERENCE_BATCH, optimizer, rescale=1.0)


def p5_stages(params: dict, data_dir=None, input_size: int | None = None) -> Iterator[Stage]:
    """22: every frozen backbone layer read (each computed once: ``a+b`` reuses its parts), the fine-tuned
    part of every backbone, the small CNN; all on the rotated (x4) training set."""
    stem = "22_p5_bone_marrow"
    data, _ = counted_dataset(params["dataset"], data_dir)
    data = p5.stratified_subset(data, params["n_images"], params["seed"])
    counts = split_counts(data.frame, params["fractions"], params["seed"])
    rotated = {**counts, "train": 4 * counts["train"]}
    size, shape, n_classes = params["image_size"], _side(params["image_size"], input_size), len(data.classes)
    weights, k, runs = params["weights"], params["fine_tune_layers"], len(params["seeds"])
    optimizer = training.sgd(params["learning_rate"], params["momentum"])
    layers = [p5.feature_layer(b.split("+")[0], weights, size)[0] for b in params["backbones"]]
    if k == 0:  # fine-tuning reads the frozen backbone's output (p5.fine_tuning)
        layers += [p5.frozen_layer(b.split("+")[0]) for b in params["backbones"]]
    backbones = params["backbones"] * (2 if k == 0 else 1)
    read = dict.fromkeys((part, layer) for b, layer in zip(backbones, layers) for part in b.split("+"))
    for part, layer in read:
        part_weights, source = resolved(part, features.effective_weights(part, weights),
                                        top=(part, layer) == ("vgg16", "fc6") and weights is not None)
        yield Stage(stem, f"{p5.PAPER_NAMES[part]} {layer} features (frozen)",
                           functools.partial(features.feature_model, part, layer, shape, part_weights), shape,
                           n_classes, extraction_workload(rotated["train"] + rotated["test"]), source, None,
                           params["batch_size"], rescale=features.input_rescale(part))
    for backbone in params["backbones"]:
        name = p5.PAPER_NAMES.get(backbone, backbone)
        if k == 0:
            layer = p5.frozen_layer(backbone.split("+")[0])
            dim = sum(feature_dim(part, layer, shape) for part in backbone.split("+"))
            yield Stage(stem, f"softmax head on {name} {layer} features",
                               functools.partial(features.softmax_head, dim, n_classes), (dim,), n_classes,
                               seeds_workload(rotated, params["epochs"], runs), "random init (head)",
                               params["batch_size"], INFERENCE_BATCH, optimizer, rescale=1.0)
        else:
            tuned_weights, source = resolved_parts(backbone, weights)
            yield Stage(stem, f"{name} fine-tuned (last {k} layers)",
                               functools.partial(p5.fine_tune_model, backbone, shape, n_classes, tuned_weights, k),
                               shape, n_classes, seeds_workload(rotated, params["epochs"], runs), source,
                               params["batch_size"], INFERENCE_BATCH, optimizer,
                               rescale=features.input_rescale(backbone))
    yield Stage(stem, "small CNN", functools.partial(models.p5_small_cnn, shape, n_classes), shape, n_classes,
                seeds_workload(rotated, params["cnn_epochs"], runs), "random init", params["batch_size"],
                INFERENCE_BATCH, optimizer)


NOTEBOOKS = {"10_p4_sequential_cnn": p4_stages, "11_p1_deep_cnn": p1_stages, "20_p3_densenet201_lymphoma": p3_stages,
             "21_p2_cnmc_transfer": p2_stages, "22_p5_bone_marrow": p5_stages}


def stages(profile: str = "paper", notebooks=None, data_dir=None, input_size: int | None = None,
           limit: int | None = None) -> list[Stage]:
    """Every network of the selected notebooks under ``profile`` (at most ``limit`` per notebook).

    ``input_size`` replaces every image side (a quick test; the table is then not the paper's).
    """
    chosen = list(notebooks or NOTEBOOKS)
    config.check_known(dict.fromkeys(chosen), set(NOTEBOOKS), "paper_check notebooks")
    found = []
    for stem in chosen:
        found += itertools.islice(NOTEBOOKS[stem](notebook_parameters(stem, profile), data_dir, input_size), limit)
    return found


# ---------------------------------------------------------------------------- measuring

def _synthetic(stage: Stage, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random uint8 images (or standard-normal feature vectors) and labels of the stage's input."""
    rng = np.random.default_rng(seed)
    if len(stage.input_shape) == 3:
        x = rng.integers(0, 256, (n, *stage.input_shape), dtype=np.uint8)
    else:
        x = rng.standard_normal((n, *stage.input_shape)).astype(np.float32)
    return x, rng.integers(0, stage.n_classes, n)


def measure(stage: Stage, steps: int = 3, batch_size: int | None = None) -> dict:
    """Warm-up, then ``steps`` timed training steps and ``steps`` timed inference batches; images/s of each."""
    import keras

    train_batch = batch_size or stage.train_batch
    infer_batch = batch_size or stage.infer_batch
    x, y = _synthetic(stage, max(train_batch or 0, infer_batch))
    config.set_seeds(0)
    record = {"train_images_per_s": float("nan"), "policy": "float32", "strategy": "none", "replicas": 1}
    if stage.train_batch is None:
        model = stage.build()
    else:
        with training.policy_scope() as policy:
            strategy = training.distribution_strategy()
            model = training.compiled_model(stage.build, lambda: stage.optimizer(steps), strategy)
            data = pipeline.make_dataset(x[:train_batch], y[:train_batch], stage.n_classes, train_batch, training=True,
                                         augment=stage.augment(0) if stage.augment else None,
                                         rescale=stage.rescale).repeat()
            model.fit(data, epochs=1, steps_per_epoch=1, verbose=0)  # traces and compiles the training step
            start = time.perf_counter()
            model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)
            record.update(train_images_per_s=training.per_second(steps * train_batch, time.perf_counter() - start),
                          policy=policy, strategy=type(strategy).__name__.lstrip("_"), replicas=strategy.num_replicas_in_sync)
    batch = pipeline.make_dataset(x[:infer_batch], y[:infer_batch], stage.n_classes, infer_batch, training=False,
                                  rescale=stage.rescale)
    training.predict(model, batch)  # traces the inference step
    _, record["infer_images_per_s"] = training.predict(model, batch.repeat(steps))
    del model
    keras.backend.clear_session()
    gc.collect()
    return {**record, "train_batch": train_batch, "infer_batch": infer_batch}


def device_label() -> str:
    """The device TensorFlow trains on here."""
    device = device_description()
    if device["gpus"]:
        return f"{len(device['gpus'])} x GPU: {', '.join(sorted(set(device['gpus'])))}"
    return f"CPU: {device['processor']}, {device['cpu_count']} cores"


def check(stage_list: list[Stage], steps: int = 3, batch_size: int | None = None) -> pd.DataFrame:
    """:func:`measure` every stage; one table row each with the estimated wall time of its full run."""
    device, rows = device_label(), []
    for stage in stage_list:
        print(f"[paper-check] {stage.notebook}: {stage.model} ...", flush=True)
        speed = measure(stage, steps, batch_size)
        train = speed["train_images_per_s"]
        seconds = stage.workload.seconds(None if np.isnan(train) else train, speed["infer_images_per_s"])
        rows.append({"notebook": stage.notebook, "model": stage.model, "device": device, "policy": speed["policy"],
                     "strategy": f"{speed['strategy']} x{speed['replicas']}", "weights source": stage.weights_source,
                     "input": "x".join(map(str, stage.input_shape)), "train batch": speed["train_batch"],
                     "infer batch": speed["infer_batch"], "train img/s": train,
                     "infer img/s": speed["infer_images_per_s"], "full run": stage.workload.detail,
                     "est. wall h": seconds / 3600})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- FLOPs estimate

def forward_flops(model, input_shape) -> int:
    """Floating-point operations of one forward pass of one input (TensorFlow's profiler on the frozen graph;
    a multiply-add counts 2)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    function = tf.function(lambda x: model(x, training=False))
    graph = convert_variables_to_constants_v2(
        function.get_concrete_function(tf.TensorSpec([1, *input_shape], tf.float32))).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return int(tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op",
                                             options=options).total_float_ops)


def flops_table(stage_list: list[Stage], tflops) -> pd.DataFrame:
    """Estimated wall time of every stage at each sustained throughput in ``tflops`` (TFLOP/s).

    Training images cost 3 x the forward FLOPs (forward + backward), inference images 1 x.
    """
    import keras

    rows = []
    for stage in stage_list:
        print(f"[paper-check] FLOPs of {stage.notebook}: {stage.model} ...", flush=True)
        config.set_seeds(0)
        model = stage.build()
        flops = forward_flops(model, stage.input_shape)
        del model
        keras.backend.clear_session()
        gc.collect()
        total = 3 * flops * stage.workload.trained + flops * stage.workload.inferred
        rows.append({"notebook": stage.notebook, "model": stage.model, "input": "x".join(map(str, stage.input_shape)),
                     "forward GFLOPs/image": flops / 1e9, "full run": stage.workload.detail,
                     "total PFLOPs": total / 1e15,
                     **{f"est. h at {t:g} TFLOPS": total / (t * 1e12) / 3600 for t in tflops}})
    return pd.DataFrame(rows)


def per_notebook(table: pd.DataFrame) -> pd.DataFrame:
    """The estimated hours of every notebook (sum over its networks)."""
    hours = [c for c in table.columns if c.startswith("est.")]
    return table.groupby("notebook", sort=False)[hours].sum().reset_index()


# ---------------------------------------------------------------------------- command line

def write(table: pd.DataFrame, output: Path, name: str, notes: list[str]) -> tuple[Path, Path]:
    """``<name>.csv`` and ``<name>.md`` (notes, the table, and the per-notebook sums) under ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    csv, md = output / f"{name}.csv", output / f"{name}.md"
    table.to_csv(csv, index=False)
    md.write_text("\n\n".join([*notes, markdown_table(table, floatfmt=".3g"),
                               markdown_table(per_notebook(table), floatfmt=".3g")]) + "\n")
    return csv, md


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="paper")
    parser.add_argument("--notebooks", nargs="*", help=f"default: {' '.join(NOTEBOOKS)}")
    parser.add_argument("--limit", type=int, help=f"at most N networks per notebook, batch {LIMIT_BATCH}")
    parser.add_argument("--batch-size", type=int, help="one batch for every network (default: the notebooks')")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps and inference batches")
    parser.add_argument("--input-size", type=int, help="replace every image side (tests only: not the paper's)")
    parser.add_argument("--data-dir", help="data root (default: $LEUKEMIA_DATA_DIR)")
    parser.add_argument("--output", default=str(config.repo_root() / "reports" / "paper" / "paper_check"))
    parser.add_argument("--estimate-gpu-tflops", type=float, nargs="+", metavar="T",
                        help="no timing: wall time from counted FLOPs at T sustained TFLOPS")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_arguments(argv)
    training.set_cpu_policy(config.cpu_precision(args.profile), f"profile {args.profile}: cpu_precision")
    found = stages(args.profile, args.notebooks, args.data_dir, args.input_size, args.limit)
    when = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    scope = f"profile `{args.profile}`" + (f", first {args.limit} network(s) per notebook" if args.limit else "")
    if args.input_size:
        scope += f", input side {args.input_size} (NOT the paper's)"
    if args.estimate_gpu_tflops:
        table = flops_table(found, args.estimate_gpu_tflops)
        notes = [(f"ESTIMATE of the {scope} wall time, {when} (UTC): forward FLOPs counted by TensorFlow's profiler "
                  "x (3 per training image + 1 per inference image) / sustained throughput. Input pipeline, "
                  "augmentation and CPU steps are not counted: small networks will be input-bound and slower.")]
        name = "gpu_estimate"
    else:
        table = check(found, args.steps, args.batch_size or (LIMIT_BATCH if args.limit else None))
        notes = [(f"Measured {when} (UTC), {scope}, {args.steps} timed step(s) after a warm-up, synthetic pixels. "
                  "Estimated wall time = training images of the full run / train img/s + inference images / "
                  "infer img/s, at the batches shown.")]
        name = "paper_check"
    with pd.option_context("display.max_columns", None, "display.width", 250, "display.max_colwidth", 60):
        shown = table.drop(columns=["full run"])
        print(shown.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        print(per_notebook(table).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    csv, md = write(table, Path(args.output), name, notes)
    print(f"written: {csv}, {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
