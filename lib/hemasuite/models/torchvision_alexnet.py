"""torchvision's AlexNet in Keras 3, and its ImageNet weights from torchvision's state dict.

The layout of ``torchvision.models.alexnet`` (the single-tower AlexNet of Krizhevsky's
"One weird trick" paper): convolutions of 64, 192, 384, 256 and 256 filters with ReLU, max
pooling after the first, second and fifth, no normalisation; then adaptive average pooling
to 6x6, and a classifier of dropout, FC6 (4,096), dropout, FC7 (4,096), 1,000 classes.
The fully connected layers are named ``fc6``, ``fc7`` and ``predictions`` like those of
:func:`hemasuite.models.custom.alexnet`. It expects torchvision's input: pixels / 255,
normalised by ImageNet's channel mean and standard deviation (:func:`normalise_by_imagenet_mean_std`).
:func:`load_alexnet_state` copies torchvision's ``alexnet-owt-7be5be79.pth`` in after checking
every key and shape.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from ..errors import ParameterError, WeightsError
from .torch_state import load_state_dict

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
POOLED = 6  # the side of the adaptive average pooling before FC6
MIN_SIDE = 63  # below this the third max pooling has nothing left to pool
DROPOUT = 0.5
# Keras layer, state-dict prefix, torchvision weight shape
LAYOUT = (("conv1", "features.0", (64, 3, 11, 11)), ("conv2", "features.3", (192, 64, 5, 5)),
          ("conv3", "features.6", (384, 192, 3, 3)), ("conv4", "features.8", (256, 384, 3, 3)),
          ("conv5", "features.10", (256, 256, 3, 3)), ("fc6", "classifier.1", (4096, 256 * POOLED * POOLED)),
          ("fc7", "classifier.4", (4096, 4096)), ("predictions", "classifier.6", (1000, 4096)))


def normalise_by_imagenet_mean_std(x):
    """Pixels in [0, 255] -> torchvision's input: ``(x / 255 - mean) / std`` per channel."""
    return (x / 255.0 - np.array(MEAN, "float32")) / np.array(STD, "float32")


def adaptive_pooling_matrix(size: int, pooled: int) -> np.ndarray:
    """``(pooled, size)`` weights of PyTorch's adaptive average pooling along one axis: output ``i`` averages
    inputs ``floor(i * size / pooled)`` to ``ceil((i + 1) * size / pooled) - 1``."""
    matrix = np.zeros((pooled, size), np.float32)
    for i in range(pooled):
        start, end = i * size // pooled, -(-(i + 1) * size // pooled)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


@keras.saving.register_keras_serializable(package="hemasuite")
class AdaptiveAveragePooling2D(layers.Layer):
    """PyTorch's ``AdaptiveAvgPool2d`` for a channels-last input of known height and width (the identity when
    the input already has the output size)."""

    def __init__(self, size: int = POOLED, **kwargs):
        super().__init__(**kwargs)
        self.size = size

    def build(self, input_shape):
        height, width = input_shape[1:3]
        if height is None or width is None:
            raise ParameterError("adaptive average pooling needs an input of known height and width")
        self.identity = height == width == self.size
        self.rows = adaptive_pooling_matrix(height, self.size)
        self.columns = adaptive_pooling_matrix(width, self.size)

    def call(self, x):
        if self.identity:
            return x
        rows, columns = ops.cast(self.rows, x.dtype), ops.cast(self.columns, x.dtype)
        return ops.einsum("ih,bhwc,jw->bijc", rows, x, columns)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "size": self.size}


def torchvision_alexnet(include_top: bool = True, weights=None, input_shape=None, pooling=None, classes: int = 1000,
                        classifier_activation="softmax") -> keras.Model:
    """torchvision's AlexNet with the ``keras.applications`` constructor signature (input already preprocessed).

    ``weights`` is None (random initialisation) or the path of a torchvision ``.pth`` state
    dict. Inputs must be at least ``MIN_SIDE`` pixels high and wide.
    """
    input_shape = tuple(input_shape or (224, 224, 3))
    if min(input_shape[:2]) < MIN_SIDE:
        raise ParameterError(f"torchvision's AlexNet needs inputs of at least {MIN_SIDE}x{MIN_SIDE} pixels, "
                             f"not {input_shape[0]}x{input_shape[1]}")
    inputs = keras.Input(shape=input_shape)
    x = layers.ZeroPadding2D(2, name="conv1_pad")(inputs)
    x = layers.Conv2D(64, 11, strides=4, activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = layers.Conv2D(192, 5, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool2")(x)
    for name, filters in (("conv3", 384), ("conv4", 256), ("conv5", 256)):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=name)(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool5")(x)
    if include_top:
        x = AdaptiveAveragePooling2D(POOLED, name="avgpool")(x)
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dropout(DROPOUT, name="fc6_dropout")(x)
        x = layers.Dense(4096, activation="relu", name="fc6")(x)
        x = layers.Dropout(DROPOUT, name="fc7_dropout")(x)
        x = layers.Dense(4096, activation="relu", name="fc7")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    model = keras.Model(inputs, x, name="torchvision_alexnet")
    if weights is not None:
        load_alexnet_state(model, weights)
    return model


def expected_shapes() -> dict[str, tuple]:
    """Every key of torchvision's AlexNet state dict and its shape."""
    return {f"{prefix}.{part}": shape if part == "weight" else shape[:1]
            for _, prefix, shape in LAYOUT for part in ("weight", "bias")}


def check_state(state: dict, path) -> None:
    """Refuse a state dict that is not torchvision's AlexNet: a key missing or unexpected, or a shape wrong."""
    expected = expected_shapes()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong = [f"{key} {tuple(state[key].shape)} (not {expected[key]})" for key in expected
             if key in state and tuple(state[key].shape) != expected[key]]
    problems = [f"{label}: {', '.join(keys)}" for label, keys in
                (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
    if problems:
        raise WeightsError(f"{path} is not torchvision's AlexNet state dict ({'; '.join(problems)})")


def keras_weights(layer_name: str, state: dict, prefix: str) -> list[np.ndarray]:
    """One layer's tensors in Keras' layout: convolutions OIHW -> HWIO, linear layers (out, in) -> (in, out), FC6's
    inputs reordered from PyTorch's channels-first flattening (C, H, W) to Keras' channels-last one (H, W, C)."""
    weight, bias = state[f"{prefix}.weight"], state[f"{prefix}.bias"]
    if weight.ndim == 4:
        return [weight.transpose(2, 3, 1, 0), bias]
    if layer_name == "fc6":
        units = weight.shape[0]
        return [weight.reshape(units, -1, POOLED, POOLED).transpose(2, 3, 1, 0).reshape(-1, units), bias]
    return [weight.T, bias]


def load_alexnet_state(model: keras.Model, path) -> None:
    """Copy torchvision's AlexNet state dict into ``model`` (from :func:`torchvision_alexnet`; without its top, the
    classifier's tensors are checked but not used)."""
    state = load_state_dict(path)
    check_state(state, path)
    prefixes = {name: prefix for name, prefix, _ in LAYOUT}
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in prefixes:
            raise WeightsError(f"{path}: layer {layer.name} of {model.name} is not a layer of torchvision's AlexNet")
        values = keras_weights(layer.name, state, prefixes[layer.name])
        try:
            layer.set_weights([np.asarray(v, dtype=np.float32) for v in values])
        except ValueError as error:
            raise WeightsError(f"{path}: cannot load {prefixes[layer.name]} into layer {layer.name}: {error}") \
                from error
