"""EfficientNet-Lite0 in Keras 3, and its ImageNet weights from a PyTorch state dict.

Lite0 is EfficientNet-B0's block table without squeeze-and-excitation, with ReLU6
activations, batch normalisation epsilon 1e-3 and TensorFlow "same" padding (Keras'
``padding="same"``). It expects ``(pixels - 127) / 128`` (:func:`scale_to_minus_one_one`).
Layer names follow the PyTorch state dict (:func:`torch_name`), which
:func:`load_lite0_state` copies in after checking that every tensor finds its layer.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from ..errors import WeightsError
from .torch_state import load_state_dict

# kernel, stride, expansion, output channels, repeats (EfficientNet-B0)
BLOCKS = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3), (5, 1, 6, 112, 3),
          (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))
STEM_CHANNELS, HEAD_CHANNELS, DROPOUT = 32, 1280, 0.2
BN_EPSILON = 1e-3


def scale_to_minus_one_one(x):
    """Pixels in [0, 255] -> ``(x - 127) / 128``, as the Lite models were trained."""
    return (x - 127.0) / 128.0


def _conv_bn(x, filters, kernel, stride, name, activation=True, depthwise=False):
    if depthwise:
        x = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=name)(x)
    else:
        x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu6")(x) if activation else x


def _mbconv(x, index: int, kernel: int, stride: int, expansion: int, filters: int):
    """Inverted residual block without squeeze-and-excitation; identity skip when shapes allow."""
    inputs, channels = x, x.shape[-1]
    if expansion != 1:
        x = _conv_bn(x, channels * expansion, 1, 1, f"block{index}_expand")
    x = _conv_bn(x, None, kernel, stride, f"block{index}_dwconv", depthwise=True)
    x = _conv_bn(x, filters, 1, 1, f"block{index}_project", activation=False)
    if stride == 1 and channels == filters:
        x = layers.Add(name=f"block{index}_add")([inputs, x])
    return x


def efficientnet_lite0(include_top: bool = True, weights=None, input_shape=None, pooling=None, classes: int = 1000,
                       classifier_activation="softmax") -> keras.Model:
    """EfficientNet-Lite0 with the ``keras.applications`` constructor signature (input already preprocessed).

    ``weights`` is None (random initialisation) or the path of a PyTorch ``.pth`` state dict.
    """
    inputs = keras.Input(shape=input_shape or (224, 224, 3))
    x = _conv_bn(inputs, STEM_CHANNELS, 3, 2, "stem")
    index = 0
    for kernel, stride, expansion, filters, repeats in BLOCKS:
        for repeat in range(repeats):
            x = _mbconv(x, index, kernel, stride if repeat == 0 else 1, expansion, filters)
            index += 1
    x = _conv_bn(x, HEAD_CHANNELS, 1, 1, "head")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(DROPOUT, name="top_dropout")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    model = keras.Model(inputs, x, name="efficientnet_lite0")
    if weights is not None:
        load_lite0_state(model, weights)
    return model


def torch_name(layer_name: str) -> str:
    """The state-dict prefix of a Keras layer of :func:`efficientnet_lite0` (``block3_dwconv_bn`` ->
    ``_blocks.3._bn1``)."""
    fixed = {"stem": "_conv_stem", "stem_bn": "_bn0", "head": "_conv_head", "head_bn": "_bn1", "predictions": "_fc"}
    if layer_name in fixed:
        return fixed[layer_name]
    block, _, part = layer_name.partition("_")
    parts = {"expand": "_expand_conv", "expand_bn": "_bn0", "dwconv": "_depthwise_conv", "dwconv_bn": "_bn1",
             "project": "_project_conv", "project_bn": "_bn2"}
    return f"_blocks.{block.removeprefix('block')}.{parts[part]}"


def _keras_weights(layer, state: dict, prefix: str) -> list[np.ndarray]:
    """The state-dict tensors of one layer, in Keras' order and layout."""
    if isinstance(layer, layers.BatchNormalization):
        return [state[f"{prefix}.{key}"] for key in ("weight", "bias", "running_mean", "running_var")]
    if isinstance(layer, layers.DepthwiseConv2D):
        return [state[f"{prefix}.weight"].transpose(2, 3, 0, 1)]
    if isinstance(layer, layers.Conv2D):
        return [state[f"{prefix}.weight"].transpose(2, 3, 1, 0)]
    return [state[f"{prefix}.weight"].T, state[f"{prefix}.bias"]]


def load_lite0_state(model: keras.Model, path) -> None:
    """Copy an EfficientNet-Lite0 PyTorch state dict into ``model`` (from :func:`efficientnet_lite0`).

    Every layer must find its tensors, and every tensor its layer (the classifier's only
    when ``model`` has one; batch-norm step counters are not weights).
    """
    state = load_state_dict(path)
    used = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix = torch_name(layer.name)
        try:
            layer.set_weights([np.asarray(v, dtype=np.float32) for v in _keras_weights(layer, state, prefix)])
        except (KeyError, ValueError) as error:
            raise WeightsError(f"{path}: cannot load {prefix} into layer {layer.name}: {error}") from error
        used.update(key for key in state if key.startswith(f"{prefix}."))
    has_top = any(layer.name == "predictions" for layer in model.layers)
    unused = sorted(key for key in state if key not in used and not key.endswith("num_batches_tracked")
                    and (has_top or not key.startswith("_fc.")))
    if unused:
        raise WeightsError(f"{path}: {len(unused)} tensors match no layer of {model.name}, e.g. {unused[:3]}")
