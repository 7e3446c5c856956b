"""ImageNet backbones from ``keras.applications`` with offline weight resolution.

Weights are never downloaded at run time. ``weights="imagenet"`` looks for the
application's ``*_notop.h5`` file in ``$HEMASUITE_WEIGHTS_DIR`` and in Keras' own cache
(``~/.keras/models``); when it is not there the error names the file, the URL to fetch it
from and where to put it. ``weights=None`` builds the same network with random
initialisation, and every result says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import keras
from keras import layers

from ..errors import ParameterError, WeightsError

BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications"
WEIGHTS_ENV = "HEMASUITE_WEIGHTS_DIR"


@dataclass(frozen=True)
class Backbone:
    """One ``keras.applications`` network: constructor, preprocessing and weight file."""

    constructor: str
    module: str
    weights_file: str
    url_folder: str

    @property
    def url(self) -> str:
        return f"{BASE_URL}/{self.url_folder}/{self.weights_file}"

    def build(self, **kwargs):
        return getattr(keras.applications, self.constructor)(**kwargs)

    def preprocess(self, x):
        """The application's own input preprocessing (expects pixels in [0, 255])."""
        return getattr(keras.applications, self.module).preprocess_input(x)


BACKBONES = {
    "resnet50": Backbone("ResNet50", "resnet", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", "resnet"),
    "resnet101": Backbone("ResNet101", "resnet", "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5", "resnet"),
    "densenet121": Backbone("DenseNet121", "densenet", "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
                            "densenet"),
    "densenet201": Backbone("DenseNet201", "densenet", "densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5",
                            "densenet"),
    "vgg16": Backbone("VGG16", "vgg16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "vgg16"),
    "inception_v3": Backbone("InceptionV3", "inception_v3", "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
                             "inception_v3"),
}


def backbone(name: str) -> Backbone:
    """Registry lookup with a clear error for unknown names."""
    if name not in BACKBONES:
        raise ParameterError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    return BACKBONES[name]


def weight_search_dirs() -> list[Path]:
    """Folders searched for weight files, in order."""
    dirs = [Path(os.environ[WEIGHTS_ENV])] if os.environ.get(WEIGHTS_ENV) else []
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return dirs + [keras_home / "models"]


def resolve_weights(name: str, weights: str | None):
    """``None`` -> None (random init); ``"imagenet"`` -> local file path or :class:`WeightsError`."""
    if weights is None:
        return None
    if weights != "imagenet":
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"weights file {path} does not exist")
        return str(path)
    entry = backbone(name)
    for folder in weight_search_dirs():
        candidate = folder / entry.weights_file
        if candidate.is_file():
            return str(candidate)
    searched = ", ".join(str(d) for d in weight_search_dirs())
    raise WeightsError(
        f"ImageNet weights for {name} are not available offline: {entry.weights_file} was not found in {searched}.\n"
        f"Download it on a machine with internet access from {entry.url} and copy it into one of those folders "
        f"(or set ${WEIGHTS_ENV}). To run without them, pass weights=None: results are then labelled "
        f"'random init'.")


def weights_source(name: str, weights) -> str:
    """Where the weights of backbone ``name`` come from, as a table names it; :class:`WeightsError` when unavailable."""
    if weights is None:
        return "random init"
    return f"ImageNet: {Path(resolve_weights(name, weights)).name}"


def weights_label(weights) -> str:
    """How a table names the initialisation."""
    return "ImageNet" if weights == "imagenet" else ("random init" if weights is None else f"file {weights}")


def backbone_features(name: str, input_shape, weights=None, pooling: str = "avg") -> keras.Model:
    """Backbone without its top, input in [0, 255], the application's preprocessing inside."""
    entry = backbone(name)
    base = entry.build(include_top=False, weights=resolve_weights(name, weights), input_shape=input_shape,
                       pooling=pooling)
    inputs = keras.Input(shape=input_shape)
    features = base(entry.preprocess(inputs))
    return keras.Model(inputs, features, name=f"{name}_features")


RANDOM_INIT_BN_MOMENTUM = 0.9


def transfer_classifier(name: str, input_shape, n_classes: int, weights=None, dense_units: int | None = None,
                        dropout: float = 0.5, trainable_layers: int | None = None) -> keras.Model:
    """Backbone + [Dense(dense_units) + Dropout] + softmax.

    ``trainable_layers`` None trains everything (P3: nothing frozen); an int freezes all
    but the last that many layers of the backbone (P5's fine-tuning of the last layers).
    From random initialisation, the backbone's batch normalisation uses momentum
    ``RANDOM_INIT_BN_MOMENTUM``: with Keras' 0.99 its moving statistics lag far behind
    the weights in a run of a few epochs, and evaluation collapses to one class.
    ImageNet-initialised backbones keep their own.
    """
    entry = backbone(name)
    base = entry.build(include_top=False, weights=resolve_weights(name, weights), input_shape=input_shape,
                       pooling="avg")
    if weights is None:
        for layer in base.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = RANDOM_INIT_BN_MOMENTUM
    if trainable_layers is not None:
        for layer in base.layers[:-trainable_layers] if trainable_layers else base.layers:
            layer.trainable = False
    inputs = keras.Input(shape=input_shape)
    x = base(entry.preprocess(inputs))
    if dense_units:
        x = layers.Dense(dense_units, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(n_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name=f"{name}_classifier")


# P5: VGG-16's FC6 and the concatenation of several backbones.

TOP_WEIGHTS = {"vgg16": "vgg16_weights_tf_dim_ordering_tf_kernels.h5"}


def resolve_top_weights(name: str, weights):
    """Like :func:`resolve_weights`, for the application's full weight file (with its fully connected top)."""
    if weights != "imagenet":
        return resolve_weights(name, weights)
    entry = backbone(name)
    if name not in TOP_WEIGHTS:
        raise ParameterError(f"no ImageNet top weights registered for {name!r}; known: {', '.join(TOP_WEIGHTS)}")
    top = Backbone(entry.constructor, entry.module, TOP_WEIGHTS[name], entry.url_folder)
    for folder in weight_search_dirs():
        if (folder / top.weights_file).is_file():
            return str(folder / top.weights_file)
    raise WeightsError(
        f"ImageNet weights with the top of {name} are not available offline: {top.weights_file} was not found in "
        f"{', '.join(str(d) for d in weight_search_dirs())}.\nDownload it from {top.url} into one of those folders "
        f"(or set ${WEIGHTS_ENV}), or pass weights=None (random init).")


def vgg16_fc6(input_shape, weights=None) -> keras.Model:
    """VGG-16 up to FC6 (Keras' ``fc1``: 4,096 units after ReLU), input in [0, 255].

    ImageNet weights for the fully connected top exist only for 224x224 inputs; with random
    initialisation any input of at least 32x32 works.
    """
    if weights is not None and tuple(input_shape[:2]) != (224, 224):
        raise ParameterError(f"VGG-16 FC6 with weights={weights!r} needs 224x224 input, not {input_shape[:2]}")
    entry = backbone("vgg16")
    full = entry.build(include_top=True, weights=resolve_top_weights("vgg16", weights), input_shape=input_shape)
    inputs = keras.Input(shape=input_shape)
    features = keras.Model(full.inputs, full.get_layer("fc1").output)(entry.preprocess(inputs))
    return keras.Model(inputs, features, name="vgg16_fc6")


def _pooled_backbone(name: str, input_shape, weights, trainable_layers) -> keras.Model:
    """The globally average-pooled backbone of :func:`transfer_classifier` (same freezing), without its head."""
    classifier = transfer_classifier(name, input_shape, 1, weights=weights, dropout=0.0,
                                     trainable_layers=trainable_layers)
    return keras.Model(classifier.inputs, classifier.get_layer("predictions").input, name=f"{name}_pooled")


def concatenated_backbones(names, input_shape, weights=None, trainable_layers: int | None = None) -> keras.Model:
    """Several backbones side by side on one input (each with its own preprocessing), pooled features concatenated.

    P5's "Inception V3 + ResNet-101". ``trainable_layers`` applies to each backbone as in
    :func:`transfer_classifier`.
    """
    inputs = keras.Input(shape=input_shape)
    parts = [_pooled_backbone(name, input_shape, weights, trainable_layers)(inputs) for name in names]
    return keras.Model(inputs, layers.Concatenate(name="concatenated")(parts), name="_and_".join(names))


def concatenated_classifier(names, input_shape, n_classes: int, weights=None, dropout: float = 0.5,
                            trainable_layers: int | None = None) -> keras.Model:
    """:func:`concatenated_backbones` + Dropout + softmax."""
    features = concatenated_backbones(names, input_shape, weights, trainable_layers)
    x = layers.Dropout(dropout)(features.output)
    outputs = layers.Dense(n_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(features.inputs, outputs, name=f"{features.name}_classifier")
