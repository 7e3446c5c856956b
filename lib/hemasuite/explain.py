"""Grad-CAM for single-input Keras 3 image classifiers (TensorFlow backend) and example selection."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import ParameterError
from .metrics import as_indices


def find_last_conv_layer(model) -> str:
    """Name of the last top-level layer with a 4-D (batch, height, width, channels) output.

    A nested backbone (a model used as one layer) counts as one such layer.
    """
    for layer in reversed(model.layers):
        output = getattr(layer, "output", None)
        if len(getattr(output, "shape", ())) == 4:
            return layer.name
    raise ParameterError(f"model {model.name!r} has no layer with a 4-D output to compute Grad-CAM on")


def _sequential_probe(model, target):
    """``x -> (target layer output, scores)`` for a Sequential model, layer by layer.

    Keras 3 cannot always rebuild a sub-model from a Sequential model's symbolic tensors
    (the gradient comes back as None), so the layers are called in order instead.
    """

    def probe(x, training=False):
        features = None
        for layer in model.layers:
            x = layer(x, training=training)
            if layer is target:
                features = x
        return features, x

    return probe


def gradcam(model, images, class_index=None, layer_name: str | None = None, batch_size: int = 32) -> np.ndarray:
    """Grad-CAM heatmaps ``(n, height, width)`` in [0, 1], at the size of ``images``.

    ``class_index`` is None (the predicted class), one index for all images, or one per image;
    ``layer_name`` defaults to :func:`find_last_conv_layer`.
    """
    import keras
    import tensorflow as tf

    layer = model.get_layer(layer_name or find_last_conv_layer(model))
    probe = _sequential_probe(model, layer) if isinstance(model, keras.Sequential) else \
        keras.Model(model.inputs[0], [layer.output, model.outputs[0]])
    images = np.asarray(images, dtype=np.float32)
    targets = None if class_index is None else np.broadcast_to(np.asarray(class_index, dtype=int), len(images))
    maps = []
    for start in range(0, len(images), batch_size):
        x = tf.convert_to_tensor(images[start:start + batch_size])
        with tf.GradientTape() as tape:
            features, scores = probe(x, training=False)
            chosen = tf.argmax(scores, axis=-1) if targets is None else targets[start:start + batch_size]
            score = tf.gather(scores, tf.cast(chosen, tf.int32), axis=1, batch_dims=1)
        grads = tf.cast(tape.gradient(score, features), tf.float32)
        weights = tf.reduce_mean(grads, axis=(1, 2))
        cam = tf.nn.relu(tf.einsum("bhwc,bc->bhw", tf.cast(features, tf.float32), weights))
        cam = tf.image.resize(cam[..., None], images.shape[1:3])[..., 0]
        peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
        maps.append(tf.math.divide_no_nan(cam, peak).numpy())
    return np.clip(np.concatenate(maps), 0.0, 1.0)


def select_examples(y_true, y_pred, classes, per_class: int = 2, seed: int = 0):
    """Up to ``per_class`` correct and ``per_class`` wrong predictions of every true class.

    Returns ``(table, notes)``: table columns index, true, predicted, outcome; notes say where
    fewer examples than asked for existed.
    """
    y_true, y_pred = as_indices(y_true, classes), as_indices(y_pred, classes)
    rng = np.random.default_rng(seed)
    rows, notes = [], []
    for c, name in enumerate(classes):
        for outcome, hit in (("correct", True), ("wrong", False)):
            pool = np.flatnonzero((y_true == c) & ((y_pred == c) == hit))
            chosen = np.sort(rng.choice(pool, size=min(per_class, len(pool)), replace=False))
            if len(chosen) < per_class:
                notes.append(f"class {name}: only {len(chosen)} of {per_class} {outcome} predictions available")
            rows += [{"index": int(i), "true": name, "predicted": classes[y_pred[i]], "outcome": outcome}
                     for i in chosen]
    return pd.DataFrame(rows, columns=["index", "true", "predicted", "outcome"]), notes
