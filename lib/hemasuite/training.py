"""The one training path of the suite.

:func:`train` builds the model inside a ``tf.distribute`` strategy scope (mirrored when
more than one GPU is visible) under the suite's precision policy, and records wall time
and images per second of training and inference. The policy (:func:`precision_policy`)
is ``mixed_float16`` on a GPU; on a CPU it is the profile's ``cpu_precision``
(``float32``, ``mixed_bfloat16``, or ``auto``: bfloat16 only where the CPU computes it
natively), which :func:`hemasuite.session.start` applies through :func:`set_cpu_policy`.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from . import rehearsal
from .config import check_choice
from .errors import ParameterError
from .progress_lines import LoopProgress


def per_second(count: int, seconds: float) -> float:
    """``count`` items over ``seconds``, rounded to 0.1 (a zero duration counts as 1 ns)."""
    return round(count / max(seconds, 1e-9), 1)


def distribution_strategy() -> tf.distribute.Strategy:
    """Mirrored across GPUs when there is more than one (in a rehearsal: across the CPU's logical devices), else the
    default strategy."""
    if rehearsal.active():
        return tf.distribute.MirroredStrategy(rehearsal.devices(), cross_device_ops=rehearsal.cross_device_ops())
    gpus = tf.config.list_physical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


GPU_POLICY = "mixed_float16"
CPU_POLICIES = ("float32", "mixed_bfloat16")
AUTO = "auto"
BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86 AVX-512 BF16 and AMX; the Arm extension
_cpu_policy = {"policy": "float32", "source": "default (no profile applied)"}


def native_bfloat16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bfloat16 in hardware: one of :data:`BFLOAT16_FLAGS` among the flags of
    ``/proc/cpuinfo`` (``cpuinfo``: its text). Elsewhere TensorFlow emulates bfloat16: on an AVX2-only CPU, P1's CNN
    trained about 7 times slower under ``mixed_bfloat16`` than under ``float32``."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = {word for line in cpuinfo.splitlines() if line.split(":")[0].strip() in ("flags", "Features")
             for word in line.split(":", 1)[-1].split()}
    return any(flag in flags for flag in BFLOAT16_FLAGS)


def set_cpu_policy(policy: str, source: str) -> None:
    """The precision policy of training on a CPU from now on; ``source`` says where it came from (results.json).

    ``auto`` is ``mixed_bfloat16`` on a CPU with native bfloat16 (:func:`native_bfloat16`), ``float32`` elsewhere.
    """
    if policy == AUTO:
        native = native_bfloat16()
        policy = "mixed_bfloat16" if native else "float32"
        source = (f"{source} auto: " + ("this CPU computes bfloat16 natively" if native else
                                         f"no native bfloat16 on this CPU (none of {', '.join(BFLOAT16_FLAGS)})"))
    if policy not in CPU_POLICIES:
        raise ParameterError(f"CPU precision policy {policy!r} ({source}) is not one of {[*CPU_POLICIES, AUTO]}")
    _cpu_policy.update(policy=policy, source=source)


def precision_policy(gpu: bool | None = None) -> str:
    """``mixed_float16`` on a GPU and in a rehearsal; on a CPU the policy set by :func:`set_cpu_policy` (``float32``
    until then).

    ``gpu`` None asks TensorFlow whether a GPU is visible.
    """
    if rehearsal.active():
        return rehearsal.POLICY
    if gpu is None:
        gpu = bool(tf.config.list_physical_devices("GPU"))
    return GPU_POLICY if gpu else _cpu_policy["policy"]


def precision_record() -> dict:
    """The policy training uses here and the rule behind it, for results.json."""
    return {"policy": precision_policy(), "gpu_policy": GPU_POLICY, "cpu_policy": _cpu_policy["policy"],
            "cpu_policy_from": "rehearsal (the policy of a GPU run)" if rehearsal.active() else _cpu_policy["source"]}


_fits: list[dict] = []  # strategy, replicas, policy and global batch size of every training run of this process


def forget_fits() -> None:
    """Start a new run's record of training runs (:func:`distribution_record`)."""
    _fits.clear()


def distribution_record() -> dict | None:
    """How this process trained (results.json): strategy, replicas, precision policy, global batch sizes; None when
    it trained nothing."""
    if not _fits:
        return None
    return {"strategy": _fits[-1]["strategy"], "replicas": max(f["replicas"] for f in _fits),
            "precision_policy": _fits[-1]["policy"], "training_runs": len(_fits),
            "global_batch_sizes": sorted({f["global_batch_size"] for f in _fits if f["global_batch_size"]})}


@contextmanager
def policy_scope(policy: str | None = None):
    """Keras' global dtype policy set to ``policy`` (default :func:`precision_policy`) inside, float32 after."""
    policy = policy or precision_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield policy
    finally:
        keras.mixed_precision.set_global_policy("float32")


def compiled_model(build_model: Callable[[], keras.Model], optimizer: Callable[[], keras.optimizers.Optimizer],
                   strategy: tf.distribute.Strategy, loss: str = "categorical_crossentropy",
                   run_eagerly: bool = False) -> keras.Model:
    """``build_model()`` compiled with ``optimizer()``, both created inside ``strategy``'s scope."""
    with strategy.scope():
        model = build_model()
        model.compile(optimizer=optimizer(), loss=loss, metrics=["accuracy"], run_eagerly=run_eagerly)
    return model


@dataclass
class TrainResult:
    """A trained model and how its training went."""

    model: keras.Model
    history: dict
    wall_time_s: float
    train_images_per_s: float
    epochs: int
    policy: str
    strategy: str
    replicas: int
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """JSON-able record for results.json."""
        return {"wall_time_s": round(self.wall_time_s, 2), "train_images_per_s": round(self.train_images_per_s, 1),
                "epochs": self.epochs, "precision_policy": self.policy, "strategy": self.strategy,
                "replicas": self.replicas, "final": {k: v[-1] for k, v in self.history.items() if v}, **self.extra}


def divisible_batches(data: tf.data.Dataset, replicas: int) -> tf.data.Dataset:
    """``data`` with every batch cut to a multiple of ``replicas`` (for ``replicas`` > 1).

    Keras' training and evaluation steps under ``MirroredStrategy`` fail on a batch that does
    not split evenly across the replicas ("Inputs to operation AddN ... must have the same
    size and shape", seen with 2 replicas and a last batch of 55). The cut drops at most
    ``replicas - 1`` images of an epoch's last batch (the seeded reshuffle changes which); a
    batch smaller than ``replicas`` repeats its images up to ``replicas``. The number of
    batches stays the same, so Keras still knows the epoch's length.
    """
    if replicas <= 1:
        return data

    def cut(*batch):
        size = tf.shape(batch[0])[0]
        index = tf.range(tf.maximum(size // replicas * replicas, replicas)) % size
        return tuple(tf.gather(part, index) for part in batch)

    trimmed = data.map(cut)
    if getattr(data, "global_batch_size", None):
        trimmed.global_batch_size = data.global_batch_size
    return trimmed


def train(build_model: Callable[[], keras.Model], train_data: tf.data.Dataset, n_train: int, epochs: int,
          optimizer: Callable[[], keras.optimizers.Optimizer], val_data: tf.data.Dataset | None = None,
          loss: str = "categorical_crossentropy", callbacks: list | None = None, verbose: int = 0,
          run_eagerly: bool = False) -> TrainResult:
    """Build, compile and fit a model; every training run in the suite goes through here.

    ``build_model`` and ``optimizer`` are factories so that they are created inside the
    strategy scope under the right precision policy. ``run_eagerly`` skips graph
    compilation, which is far quicker for a one-step wiring check of a large network.
    """
    with policy_scope() as policy:
        strategy = distribution_strategy()
        model = compiled_model(build_model, optimizer, strategy, loss, run_eagerly)
        if rehearsal.runs_eagerly(model, "fit"):
            model.run_eagerly = True
        replicas = strategy.num_replicas_in_sync
        start = time.perf_counter()
        # tf.data shuffles (seeded) itself; shuffle=False stops Keras warning that it would ignore it
        shown = [EpochProgress(epochs, n_train)] if verbose == 0 else []  # Keras prints its own otherwise
        fitted = model.fit(divisible_batches(train_data, replicas), epochs=epochs,
                           callbacks=[*(callbacks or []), *shown],
                           validation_data=None if val_data is None else divisible_batches(val_data, replicas),
                           verbose=verbose, shuffle=False)
        wall = time.perf_counter() - start
    history = {k: [float(v) for v in values] for k, values in fitted.history.items()}
    _fits.append({"strategy": type(strategy).__name__, "replicas": strategy.num_replicas_in_sync, "policy": policy,
                  "global_batch_size": getattr(train_data, "global_batch_size", None)})
    return TrainResult(model, history, wall, per_second(n_train * len(history.get("loss", [])), wall),
                       len(history.get("loss", [])), policy, type(strategy).__name__, strategy.num_replicas_in_sync)


class EpochProgress(keras.callbacks.Callback):
    """After an epoch, once training has run for a while, a progress line: the epoch, its loss and accuracy, images
    per second and the time left (:class:`hemasuite.progress_lines.LoopProgress`)."""

    def __init__(self, epochs: int, n_train: int):
        super().__init__()
        self.epochs, self.n_train = epochs, n_train
        self.progress = LoopProgress(epochs * n_train, "training", "images")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        scores = ", ".join(f"{name} {logs[name]:.3f}" for name in ("loss", "accuracy", "val_accuracy") if name in logs)
        self.progress.update(self.n_train, f"epoch {epoch + 1}/{self.epochs}" + (f" ({scores})" if scores else ""))

    def on_train_end(self, logs=None):
        self.progress.close()


class BatchProgress(keras.callbacks.Callback):
    """Progress lines of a long prediction or feature extraction: batches done, batches per second, time left."""

    def __init__(self, batches: int, what: str):
        super().__init__()
        self.progress = LoopProgress(batches, what, "batches")

    def on_predict_batch_end(self, batch, logs=None):
        self.progress.update()

    def on_predict_end(self, logs=None):
        self.progress.close()


class BestValidationEpoch(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the highest validation accuracy and restores them when training ends.

    Among epochs of equal validation accuracy (common on a small validation split), the
    one with the lowest validation loss wins, not simply the earliest. ``best_epoch`` is
    0-based. By default the scores are Keras' ``val_accuracy`` / ``val_loss``; with
    ``evaluate(model) -> (accuracy, loss)`` they are computed by it after every epoch
    instead (e.g. per image from tile predictions) and kept in ``scores``.
    """

    def __init__(self, evaluate: Callable[[keras.Model], tuple[float, float]] | None = None):
        super().__init__()
        self.evaluate = evaluate
        self.best_epoch: int | None = None
        self.scores: list[tuple[float, float]] = []
        self._best: tuple | None = None
        self._weights = None

    def on_epoch_end(self, epoch, logs=None):
        if self.evaluate is None:
            accuracy, loss = logs["val_accuracy"], logs["val_loss"]
        else:
            accuracy, loss = (float(v) for v in self.evaluate(self.model))
        self.scores.append((accuracy, loss))
        key = (accuracy, -loss)
        if self._best is None or key > self._best:
            self._best, self.best_epoch, self._weights = key, epoch, self.model.get_weights()

    def on_train_end(self, logs=None):
        if self._weights is not None:
            self.model.set_weights(self._weights)


def predict(model: keras.Model, data: tf.data.Dataset) -> tuple[np.ndarray, float]:
    """Class probabilities for an (unshuffled) dataset and the inference images per second (eagerly where a
    rehearsal says so: :func:`hemasuite.rehearsal.runs_eagerly`)."""
    if rehearsal.runs_eagerly(model, "predict"):
        model.run_eagerly = True
    start = time.perf_counter()
    batches = int(data.cardinality())
    shown = [BatchProgress(batches, "predicting")] if batches > 0 else []
    probabilities = model.predict(data, verbose=0, callbacks=shown)
    wall = time.perf_counter() - start
    return np.asarray(probabilities, dtype=np.float64), per_second(len(probabilities), wall)


def adam(learning_rate: float, epochs: int, schedule: str = "cosine") -> Callable:
    """Optimiser factory ``f(steps_per_epoch)``: Adam, constant or cosine-decayed learning rate."""
    check_choice("schedule", schedule, ["cosine", "constant"])

    def make(steps_per_epoch: int):
        rate = learning_rate
        if schedule == "cosine":
            rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, epochs * steps_per_epoch))
        return keras.optimizers.Adam(rate)

    return make


def sgd(learning_rate: float, momentum: float = 0.0) -> Callable:
    """Optimiser factory ``f(steps_per_epoch)``: plain SGD with optional momentum (P2, P5)."""
    return lambda _steps: keras.optimizers.SGD(learning_rate, momentum=momentum)
