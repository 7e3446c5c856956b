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
architecture (:func:`runs_eagerly`); the test suite's rehearsal (``--eager``, :data:`EAGER`) runs
them eagerly instead, because building the paper networks' graphs under two replicas costs
minutes each on 2 cores. Every cut is
recorded in results.json (:func:`record`), and every table, figure and page says that it is a
rehearsal (:data:`BANNER`).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd

ENV = "HEMASUITE_REHEARSAL"  # 1: compiled graphs, as on a GPU (make rehearse); EAGER: eager steps (make test)
EAGER = "eager"
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
GRAPHS = {False: "graphs: compiled without Grappler's rewrites (they pay off over a long run, not over one step)",
          True: "graphs: training and inference steps run eagerly (the test suite's rehearsal; make rehearse "
                "compiles them, as a GPU run does)"}
REPEATED_GRAPH = ("graphs: a network whose graph this run had already built (same layers, parameters and input "
                  "shapes) ran its later steps eagerly")
_runtime_cuts: list[str] = []
_built: set[tuple] = set()  # (step, architecture) of every graph a compiled rehearsal built in this process


def active() -> bool:
    """True inside a rehearsal (``$HEMASUITE_REHEARSAL`` is 1 or :data:`EAGER`)."""
    return os.environ.get(ENV, "").strip() in ("1", EAGER)


def eager() -> bool:
    """True inside an eager rehearsal: training and inference steps run eagerly, not as compiled graphs."""
    return os.environ.get(ENV, "").strip() == EAGER


# ---------------------------------------------------------------------------- parameters

def _cut_value(name: str, value):
    """The rehearsal value of one parameter (``value`` itself when no rule applies)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, dict):
        return {key: _cut_value(key, item) for key, item in value.items()}
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
    return value


def _changes(name: str, before, after) -> list[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        return [change for key in before for change in _changes(f"{name}.{key}", before[key], after[key])]
    return [] if before == after else [f"{name}: {before!r} -> {after!r}"]


def differences(paper: dict, run: dict) -> list[str]:
    """``"name: paper value -> run value"`` for every parameter of ``run`` whose value is not ``paper``'s."""
    return [change for name in paper if name in run for change in _changes(name, paper[name], run[name])]


def cut_parameters(params: dict) -> tuple[dict, list[str]]:
    """``params`` with the rehearsal's cuts, and each cut as ``"name: before -> after"``.

    By name, at any depth of a mapping: ``*epochs`` -> 1; ``*seeds`` (split, training,
    backbone, fine-tuning seeds) -> the first; ``n_boot`` -> :data:`N_BOOT`; ``per_class``
    and ``tiles_per_epoch`` (augmentation and sampling targets) divided by
    :data:`TARGET_SCALE`; ``n_images`` -> at most 4 x :data:`IMAGES_PER_CLASS`. Networks,
    input sizes, batch sizes, learning rates, folds, candidates and grids are kept.
    """
    cut = {name: _cut_value(name, value) for name, value in params.items()}
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
