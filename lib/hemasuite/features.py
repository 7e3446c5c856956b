"""Features of frozen backbones, computed once and cached on disk.

A backbone that is not trained gives the same features every time, so P2's VGG-16
feature extractor and P5's feature extraction + SVM and head-only fine-tuning compute
them once. :class:`FeatureCache` stores them as ``features_<name>_<key>.npy`` under
:func:`hemasuite.config.cache_dir`; the key covers

- the extractor: backbone and layer (``name``), and the input rescaling,
- its weights: the weight file's name and SHA-256, or random initialisation with the
  seed that drew it,
- the input size,
- the dataset content: every image file's path and the SHA-256 of its bytes, in order
  (:func:`hemasuite.pipeline.cache_key`),
- a variant for any transformation of the images (e.g. P5's rotations).

:func:`layer_features` names the layers the papers read (``fc6`` / ``fc7`` of AlexNet and
VGG-16, ``avgpool`` of the ``keras.applications`` backbones, VGG-16's ``block4_pool`` below
the block 5 that P2 fine-tunes; ``a+b`` concatenates the features of two backbones).
:func:`as_prepared` and :func:`softmax_head` train a softmax classifier on them through the
usual :func:`hemasuite.experiment.train_seeds`.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from . import config, content_cache, models, pipeline, training
from .record import write_json_atomic

LAYERS = ("fc6", "fc7", "avgpool", "block4_pool")


class FeatureCache:
    """Features of one frozen extractor, computed on a cache miss and loaded otherwise.

    ``build()`` returns the Keras feature model; it is called at most once per instance,
    on the first miss, after seeding with ``seed`` (so random initialisation is the same
    draw on every run). ``weights_file`` is the resolved weight file, None for random init.
    ``hits`` / ``misses`` / ``seconds`` record what happened; ``images_per_s`` is the
    extraction speed of the last call, measured now on a miss or read back from the
    ``.json`` written beside the features when they were computed.
    """

    def __init__(self, name: str, build: Callable, size, weights_file: str | None = None, seed: int = 0,
                 rescale: float = 1.0, cache_dir=None, batch_size: int = 32):
        self.name, self.build, self.size, self.seed, self.rescale = name, build, size, seed, rescale
        self.weights_file, self.batch_size = weights_file, batch_size
        self.cache_dir = Path(cache_dir) if cache_dir is not None else config.cache_dir()
        self.hits, self.misses, self.seconds = 0, 0, 0.0
        self.images_per_s: float | None = None
        self._model = None

    def weights_identity(self) -> str:
        """The weight file's name and SHA-256, or random init with its seed."""
        if self.weights_file is None:
            return f"random init, seed {self.seed}"
        return f"{Path(self.weights_file).name}:{content_cache.file_digest(self.weights_file)}"

    def path(self, paths, variant="") -> Path:
        """The cache file for these image files (in this order) and variant."""
        payload = json.dumps({"extractor": self.name, "weights": self.weights_identity(), "rescale": self.rescale,
                              "content": pipeline.cache_key([str(p) for p in paths], self.size), "variant": variant})
        return self.cache_dir / f"features_{self.name}_{hashlib.sha256(payload.encode()).hexdigest()[:20]}.npy"

    def model(self):
        """The feature model, built once."""
        if self._model is None:
            config.set_seeds(self.seed)
            self._model = self.build()
        return self._model

    def __call__(self, images: np.ndarray, paths, variant="") -> np.ndarray:
        """``(N, D)`` float32 features of ``images`` (uint8, decoded from ``paths``, transformed as ``variant``)."""
        if len(images) != len(paths):
            raise ValueError(f"{len(images)} images but {len(paths)} paths")
        target = self.path(paths, variant)
        timing = target.with_suffix(".json")
        if target.is_file():
            self.hits += 1
            self.images_per_s = json.loads(timing.read_text()).get("images_per_s") if timing.is_file() else None
            return np.load(target)
        self.misses += 1
        start = time.perf_counter()
        data = pipeline.make_dataset(images, np.zeros(len(images)), 1, self.batch_size, training=False,
                                     rescale=self.rescale)
        features, self.images_per_s = training.predict(self.model(), data)
        features = features.astype(np.float32).reshape(len(images), -1)
        self.seconds += time.perf_counter() - start
        pipeline.save_array(features, target)
        write_json_atomic(timing, {"images": len(images), "images_per_s": round(self.images_per_s, 1)})
        return features


def input_rescale(backbone: str, weights=None) -> float:
    """Pixel scaling a model expects: AlexNet from random init (this suite's, trained from [0, 1] inputs) 1/255;
    the ImageNet AlexNet (torchvision's) and the ``keras.applications`` models take [0, 255] and preprocess inside."""
    return 1 / 255 if backbone == "alexnet" and weights is None else 1.0


def feature_model(backbone: str, layer: str, input_shape, weights=None):
    """The Keras model giving ``layer`` of ``backbone`` (a :data:`LAYERS` name).

    AlexNet is this suite's (:func:`hemasuite.models.alexnet`) from random init, torchvision's
    with ImageNet weights (:func:`hemasuite.models.alexnet_fc`).
    """
    config.check_choice("layer", layer, LAYERS)
    if backbone == "alexnet":
        config.check_choice("AlexNet layer", layer, ("fc6", "fc7"))
        if weights is not None:
            return models.alexnet_fc(layer, input_shape, weights)
        network = models.alexnet(input_shape, 2)
        return keras.Model(network.inputs, network.get_layer(layer).output, name=f"alexnet_{layer}")
    if backbone == "vgg16" and layer == "fc6":
        return models.vgg16_fc6(input_shape, weights)
    if backbone == "vgg16" and layer == "block4_pool":
        return models.vgg16_block4(input_shape, weights)
    config.check_choice(f"{backbone} layer", layer, ("avgpool",))
    return models.backbone_features(backbone, input_shape, weights, pooling="avg")


def layer_features(images: np.ndarray, paths, backbone: str, layer: str, weights=None, seed: int = 0,
                   variant="", batch_size: int = 32, cache_dir=None) -> tuple[np.ndarray, dict]:
    """Cached ``layer`` features of ``images``, flattened per image; ``backbone`` ``"a+b"`` concatenates a's and b's.

    Returns the features and a record (extractor, weights, feature size, computed or loaded,
    seconds, and the extraction speed in images/s: of the backbones in turn for ``a+b``).
    """
    if "+" in backbone:
        parts = [layer_features(images, paths, part, layer, weights, seed, variant, batch_size, cache_dir)
                 for part in backbone.split("+")]
        stacked = np.hstack([features for features, _ in parts])
        speeds = [record["images_per_s"] for _, record in parts]
        speed = None if None in speeds else round(1 / sum(1 / v for v in speeds), 1)
        return stacked, {"extractor": f"{backbone} {layer} (concatenated)", "dim": int(stacked.shape[1]),
                         "weights": " + ".join(dict.fromkeys(record["weights"] for _, record in parts)),
                         "images_per_s": speed,
                         "parts": [record for _, record in parts]}
    size = images.shape[1:3]
    include_top = (backbone, layer) == ("vgg16", "fc6")
    weights_file = models.resolve_weights(backbone, weights, include_top)
    cache = FeatureCache(f"{backbone}_{layer}", lambda: feature_model(backbone, layer, (*size, 3), weights),
                         tuple(size), weights_file, seed, input_rescale(backbone, weights), cache_dir, batch_size)
    features = cache(images, paths, variant)
    return features, {"extractor": f"{backbone} {layer}", "dim": int(features.shape[1]),
                      "weights": models.weights_label(backbone, weights, include_top), "computed": bool(cache.misses),
                      "seconds": round(cache.seconds, 1), "images_per_s": cache.images_per_s}


def as_prepared(prepared, features: np.ndarray, standardize: bool = True):
    """``prepared`` with its images replaced by ``features`` (rows in frame order), z-scored on the training rows.

    A feature (nearly) constant on the training rows, e.g. a ReLU unit that never fires
    there, is divided by a floor of 1% of the mean standard deviation, not by ~0.
    """
    features = np.asarray(features, dtype=np.float32)
    if standardize:
        train = features[(prepared.frame["split"] == "train").to_numpy()]
        spread = train.std(axis=0)
        features = (features - train.mean(axis=0)) / np.maximum(spread, max(0.01 * spread.mean(), 1e-6))
    return replace(prepared, images=features.astype(np.float32), size=int(features.shape[1]),
                   protocol={**prepared.protocol, "features": {"dim": int(features.shape[1]),
                                                               "standardized_on": "training rows" if standardize
                                                               else None}})


def softmax_head(n_features: int, n_classes: int, dropout: float = 0.5):
    """Dropout + softmax on a feature vector: the new last layer on a frozen backbone."""
    inputs = keras.Input(shape=(n_features,))
    x = keras.layers.Dropout(dropout)(inputs)
    outputs = keras.layers.Dense(n_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name="softmax_head")
