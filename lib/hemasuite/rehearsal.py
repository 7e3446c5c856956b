"""The rehearsal of the ``paper`` profile: its code paths on a CPU, with only the amount of work cut.

``python -m hemasuite.tools.runner --profile paper --rehearse`` (``make rehearse``) sets
``$HEMASUITE_REHEARSAL=1`` for the notebooks' kernels. Every notebook then runs the
``paper`` profile's networks, input sizes, protocols, optimisers, batch sizes and weight
resolution, as a GPU run would:

- the CPU is split into :data:`REPLICAS` logical devices, so ``MirroredStrategy`` runs as on
  a machine with that many GPUs (:func:`configure_devices`);
- training runs under ``mixed_float16``, the policy of a GPU run;
- an ImageNet file that is absent here is replaced by random initialisation and labelled so
  (:data:`ABSENT_WEIGHTS`), where a real ``paper`` run stops with a ``WeightsError``.

What is cut follows rules on the parameters' names (:func:`cut_parameters`), so a setting
added to ``paper`` later is rehearsed without a rehearsal copy of it, plus a few rules at
run time: images per class (:func:`subsample`) and the first resample of a cross-validation
(:func:`first_resamples`). Training and inference run as compiled graphs, as on a GPU, once per
architecture (:func:`runs_eagerly`); ``--eager`` (:data:`EAGER`) runs them eagerly instead, because
building the paper networks' graphs under two replicas costs minutes each on 2 cores. The test
suite's rehearsal (``--quick``, :data:`QUICK`) is eager and also keeps only the first of each list
of alternatives (:data:`ALTERNATIVES`); the smoke run loops over such lists already. Every cut is
recorded in results.json (:func:`record`), and every table, figure and page says that it is a
rehearsal (:data:`BANNER`).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd

ENV = "HEMASUITE_REHEARSAL"  # 1: compiled graphs, as on a GPU (make rehearse); EAGER: eager steps; QUICK: make test's
EAGER = "eager"
QUICK = "quick"  # eager, and the first of each list of alternatives only
MODES = {"1": "compiled", EAGER: "eager", QUICK: "quick"}
FOLDER = "rehearsal"  # reports/rehearsal/: never committed, never mixed with cpu or paper results
PROFILE = "paper"
REPLICAS = 2
POLICY = "mixed_float16"
BANNER = "REHEARSAL of the paper profile: work cut to check the code paths; not a result"
ABSENT_WEIGHTS = "random init (rehearsal: ImageNet file absent)"
N_BOOT = 10
IMAGES_PER_CLASS = 8
IMAGES_PER_GROUP = 1
TARGET_SCALE = 300  # P3's augmentation target (per_class) and the like, divided by this
GRID_STRIDES = ("eval_stride", "imagenet_stride")  # steps of the tile grids that score and describe whole images
GRID_SCALE = 4  # ... multiplied by this: fewer, still edge-to-edge tiles per image
ALTERNATIVES = ("backbones", "baselines", "variants", "candidates")  # name endings: networks, stain variants, settings
# tried side by side; a quick rehearsal keeps the first of each
GRAPHS = {False: "graphs: compiled without Grappler's rewrites (they pay off over a long run, not over one step)",
          True: "graphs: training and inference steps run eagerly (make rehearse compiles them, as a GPU run "
                "does)"}
REPEATED_GRAPH = ("graphs: a network whose graph this run had already built (same layers, parameters and input "
                  "shapes) ran its later steps eagerly")
_runtime_cuts: list[str] = []
_built: set[tuple] = set()  # (step, architecture) of every graph a compiled rehearsal built in this process


def mode() -> str | None:
    """The rehearsal's mode (``compiled``, ``eager`` or ``quick``, from ``$HEMASUITE_REHEARSAL``); None outside one."""
    return MODES.get(os.environ.get(ENV, "").strip())


def active() -> bool:
    """True inside a rehearsal (``$HEMASUITE_REHEARSAL`` is 1, :data:`EAGER` or :data:`QUICK`)."""
    return mode() is not None


def eager() -> bool:
    """True inside an eager or quick rehearsal: training and inference steps run eagerly, not as compiled graphs."""
    return mode() in (EAGER, QUICK)


def quick() -> bool:
    """True inside a quick rehearsal (the test suite's): eager, and the first of each list of alternatives only."""
    return mode() == QUICK


# ---------------------------------------------------------------------------- parameters

def _cut_value(name: str, value, first_alternative: bool = False):
    """The rehearsal value of one parameter (``value`` itself when no rule applies)."""
    if isinstance(value, bool) or value is None:
        return value
    if first_alternative and name.endswith(ALTERNATIVES) and isinstance(value, (list, dict)) and len(value) > 1:
        return value[:1] if isinstance(value, list) else dict([next(iter(value.items()))])
    if isinstance(value, dict):
        return {key: _cut_value(key, item, first_alternative) for key, item in value.items()}
    if name.endswith("epochs") and isinstance(value, int):
        return 1
    if name.endswith("seeds") and isinstance(value, list) and value:
        return value[:1]
    if name == "n_boot" and isinstance(value, int):
        return min(value, N_BOOT)
    if name in ("per_class", "tiles_per_epoch") and isinstance(value, int):
        return max(2, math.ceil(value / TARGET_SCALE))
    if name == "n_images" and isinstance(value, int):
        return min(value, 4 * IMAGES_PER_CLASS)
    if name in GRID_STRIDES and isinstance(value, int):
        return value * GRID_SCALE
    return value


def _changes(name: str, before, after) -> list[str]:
    if isinstance(before, dict) and isinstance(after, dict) and before.keys() == after.keys():
        return [change for key in before for change in _changes(f"{name}.{key}", before[key], after[key])]
    return [] if before == after else [f"{name}: {before!r} -> {after!r}"]


def differences(paper: dict, run: dict) -> list[str]:
    """``"name: paper value -> run value"`` for every parameter of ``run`` whose value is not ``paper``'s."""
    return [change for name in paper if name in run for change in _changes(name, paper[name], run[name])]


def cut_parameters(params: dict, first_alternative: bool | None = None) -> tuple[dict, list[str]]:
    """``params`` with the rehearsal's cuts, and each cut as ``"name: before -> after"``.

    By name, at any depth of a mapping: ``*epochs`` -> 1; ``*seeds`` (split, training,
    backbone, fine-tuning seeds) -> the first; ``n_boot`` -> :data:`N_BOOT`; ``per_class``
    and ``tiles_per_epoch`` (augmentation and sampling targets) divided by
    :data:`TARGET_SCALE`; ``n_images`` -> at most 4 x :data:`IMAGES_PER_CLASS`; the steps of the
    tile grids that score or describe a whole image (:data:`GRID_STRIDES`) x :data:`GRID_SCALE`
    (the grid still reaches every edge). Networks, input sizes, tile sizes, batch sizes, learning
    rates, folds, candidates and parameter grids are kept, except in a quick rehearsal
    (``first_alternative``, by default :func:`quick`): a list or mapping whose name ends in one of
    :data:`ALTERNATIVES` (``backbones``, ``baselines``, ``variants``, ``candidates``) keeps its first entry.
    """
    first_alternative = quick() if first_alternative is None else first_alternative
    cut = {name: _cut_value(name, value, first_alternative) for name, value in params.items()}
    return cut, differences(params, cut)


# ---------------------------------------------------------------------------- run-time cuts

def forget_cuts() -> None:
    """Start a new run's record of run-time cuts."""
    _runtime_cuts.clear()


def runs_eagerly(model, step: str) -> bool:
    """Whether a rehearsal runs ``model``'s ``step`` (``"fit"`` or ``"predict"``) eagerly: always in an eager
    rehearsal; in a compiled one, when this process already built that step's graph for the same architecture
    (the compiled path was checked once; building it again costs minutes for a paper network on 2 cores)."""
    if not active():
        return False
    if eager():
        return True
    key = (step, architecture(model))
    if key in _built:
        note(REPEATED_GRAPH)
        return True
    _built.add(key)
    return False


def architecture(model) -> tuple:
    """What makes two Keras models the same network here: class, layer count, parameter count, input shapes."""
    try:
        shapes = tuple(tuple(tensor.shape) for tensor in model.inputs)
    except (AttributeError, TypeError, ValueError):  # a model not built on symbolic inputs: never the same
        return (id(model),)
    return type(model).__name__, len(model.layers), model.count_params(), shapes


def note(cut: str) -> None:
    """Record a cut made while the notebook runs (once per text)."""
    if cut not in _runtime_cuts:
        _runtime_cuts.append(cut)


def subsample(frame: pd.DataFrame, name: str, seed: int = 0) -> pd.DataFrame:
    """At most :data:`IMAGES_PER_CLASS` images per class, whole groups first, :data:`IMAGES_PER_GROUP` from each.

    Groups (subject, case, or the file) are drawn in a seeded order, so every split that
    keeps groups apart still has several groups per class to keep apart.
    """
    if not active():
        return frame
    rng = np.random.default_rng(seed)
    keep = []
    for _, part in frame.groupby("label", sort=True):
        taken = []
        for group in rng.permutation(part["group"].unique()):
            taken.extend(part.index[part["group"] == group][:IMAGES_PER_GROUP])
            if len(taken) >= IMAGES_PER_CLASS:
                break
        keep.extend(taken[:IMAGES_PER_CLASS])
    if len(keep) < len(frame):
        note(f"images: {name} cut from {len(frame)} to {len(keep)} (at most {IMAGES_PER_CLASS} per class, "
             f"{IMAGES_PER_GROUP} per group)")
    return frame.loc[sorted(keep)].reset_index(drop=True)


def first_resamples(folds: list, what: str = "cross-validation folds") -> list:
    """The first of ``folds`` (a list of resamples) in a rehearsal, all of them otherwise."""
    folds = list(folds)
    if not active() or len(folds) <= 1:
        return folds
    note(f"{what}: the first of {len(folds)} only")
    return folds[:1]


# ---------------------------------------------------------------------------- devices

def configure_devices() -> None:
    """Split the CPU into :data:`REPLICAS` logical devices (before TensorFlow starts its runtime), and skip Grappler's
    graph rewrites: the graphs still run compiled, but one DenseNet-201 training step under two replicas took 220 s
    instead of 321 s to build on 2 cores (rewrites that speed a long GPU run up do not pay for one step here)."""
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # MirroredStrategy's per-step INFO lines and its warning on eager use
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    cpus = tf.config.list_physical_devices("CPU")
    if tf.config.get_logical_device_configuration(cpus[0]):
        return
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * REPLICAS)


def devices() -> list[str]:
    """The logical CPU devices ``MirroredStrategy`` mirrors across in a rehearsal."""
    import tensorflow as tf

    return [device.name for device in tf.config.list_logical_devices("CPU")][:REPLICAS]


def cross_device_ops():
    """How the rehearsal's replicas combine gradients: summed on the first device, then broadcast.

    A GPU run all-reduces with NCCL, which a CPU cannot; the CPU's own collective ops, which
    ``MirroredStrategy`` falls back to, mismatched across replicas from one model to the next
    (P2's softmax head after AlexNet).
    """
    import tensorflow as tf

    return tf.distribute.ReductionToOneDevice()


# ---------------------------------------------------------------------------- record

def record(parameter_cuts: list[str], distribution: dict | None = None) -> list[str]:
    """Every cut of this run: the parameters', the run-time ones, and, when it trained (``distribution``, from
    :func:`hemasuite.training.distribution_record`), how the GPU paths ran on the CPU."""
    ran = [f"devices: the CPU split into logical devices, {distribution['strategy']} with {distribution['replicas']} "
           "replicas (gradients reduced to one device: a GPU run all-reduces with NCCL)",
           f"precision: {distribution['precision_policy']} on the CPU (the policy of a GPU run)",
           GRAPHS[eager()]] \
        if distribution else []
    return [*parameter_cuts, *_runtime_cuts, *ran]
