"""The one training path of the suite.

:func:`train` builds the model inside a ``tf.distribute`` strategy scope (mirrored when
more than one GPU is visible), switches on mixed precision on a GPU, and records wall
time and images per second of training and inference.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from .config import check_choice


def per_second(count: int, seconds: float) -> float:
    """``count`` items over ``seconds``, rounded to 0.1 (a zero duration counts as 1 ns)."""
    return round(count / max(seconds, 1e-9), 1)


def distribution_strategy() -> tf.distribute.Strategy:
    """Mirrored across GPUs when there is more than one, else the default strategy."""
    gpus = tf.config.list_physical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def precision_policy() -> str:
    """``mixed_float16`` on a GPU, ``float32`` on a CPU (where mixed precision is slower)."""
    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"


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


def train(build_model: Callable[[], keras.Model], train_data: tf.data.Dataset, n_train: int, epochs: int,
          optimizer: Callable[[], keras.optimizers.Optimizer], val_data: tf.data.Dataset | None = None,
          loss: str = "categorical_crossentropy", callbacks: list | None = None, verbose: int = 0,
          run_eagerly: bool = False) -> TrainResult:
    """Build, compile and fit a model; every training run in the suite goes through here.

    ``build_model`` and ``optimizer`` are factories so that they are created inside the
    strategy scope under the right precision policy. ``run_eagerly`` skips graph
    compilation, which is far quicker for a one-step wiring check of a large network.
    """
    policy = precision_policy()
    keras.mixed_precision.set_global_policy(policy)
    strategy = distribution_strategy()
    try:
        with strategy.scope():
            model = build_model()
            model.compile(optimizer=optimizer(), loss=loss, metrics=["accuracy"], run_eagerly=run_eagerly)
        start = time.perf_counter()
        # tf.data shuffles (seeded) itself; shuffle=False stops Keras warning that it would ignore it
        fitted = model.fit(train_data, validation_data=val_data, epochs=epochs, callbacks=callbacks or [],
                           verbose=verbose, shuffle=False)
        wall = time.perf_counter() - start
    finally:
        keras.mixed_precision.set_global_policy("float32")
    history = {k: [float(v) for v in values] for k, values in fitted.history.items()}
    return TrainResult(model, history, wall, per_second(n_train * len(history.get("loss", [])), wall),
                       len(history.get("loss", [])), policy, type(strategy).__name__, strategy.num_replicas_in_sync)


class BestValidationEpoch(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the highest validation accuracy and restores them when training ends.

    Among epochs of equal validation accuracy (common on a small validation split), the
    one with the lowest validation loss wins, not simply the earliest. ``best_epoch`` is
    0-based.
    """

    def __init__(self):
        super().__init__()
        self.best_epoch: int | None = None
        self._best: tuple | None = None
        self._weights = None

    def on_epoch_end(self, epoch, logs=None):
        key = (logs["val_accuracy"], -logs["val_loss"])
        if self._best is None or key > self._best:
            self._best, self.best_epoch, self._weights = key, epoch, self.model.get_weights()

    def on_train_end(self, logs=None):
        if self._weights is not None:
            self.model.set_weights(self._weights)


def predict(model: keras.Model, data: tf.data.Dataset) -> tuple[np.ndarray, float]:
    """Class probabilities for an (unshuffled) dataset and the inference images per second."""
    start = time.perf_counter()
    probabilities = model.predict(data, verbose=0)
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
