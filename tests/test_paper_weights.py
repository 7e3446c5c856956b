"""Every network of the paper profile loads its published ImageNet weight file through the real resolver.

Stand-ins of the files are written into a temporary Keras cache (``$KERAS_HOME/models``)
under their published names: the ``keras.applications`` files in their legacy HDF5 layout
(Keras' own writer), every weight a known value; torchvision's AlexNet state dict with its
real keys and shapes. Nothing is downloaded.
"""

import hashlib
import os

import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format
from PIL import Image
from torch_files import write_state_dict

from hemasuite import features, models
from hemasuite.errors import ParameterError, WeightsError
from hemasuite.models import pretrained, torchvision_alexnet
from hemasuite.papers import p2_cnmc_transfer as p2
from hemasuite.papers import p5_bone_marrow as p5

STANDIN_INPUT = {"inception_v3": (75, 75, 3)}  # without the top, the weights do not depend on the input size


def refuse_download(*args, **kwargs):
    raise AssertionError(f"a test tried to download {args} {kwargs}")


def fingerprint(layer) -> list[tuple]:
    """Shape, sum and end values of each of a layer's weights."""
    return [(w.shape, float(w.sum(dtype=np.float64)), float(w.flat[0]), float(w.flat[-1]))
            for w in layer.get_weights()]


def fingerprints(model) -> list[tuple]:
    """(name, :func:`fingerprint`) of every layer with weights, in order."""
    return [(layer.name, fingerprint(layer)) for layer in model.layers if layer.weights]


def in_order(named: list[tuple]) -> list:
    """The fingerprints of :func:`fingerprints` without the names (Keras numbers some layers per build)."""
    return [values for _, values in named]


def nested_layers(model) -> dict:
    """Every layer of ``model`` and of the models inside it, by name."""
    found = {}
    for layer in model.layers:
        found[layer.name] = layer
        if isinstance(layer, keras.Model):
            found |= nested_layers(layer)
    return found


def write_keras_file(model, path):
    """``model``'s weights in the legacy HDF5 layout of the ``keras.applications`` files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as file:
        legacy_h5_format.save_weights_to_hdf5_group(file, model)


@pytest.fixture(scope="session")
def keras_home(tmp_path_factory):
    return tmp_path_factory.mktemp("keras_home")


@pytest.fixture(scope="session")
def standin(keras_home):
    """``standin(name, top=False)``: the stand-in of ``name``'s Keras file, written once into ``$KERAS_HOME/models``;
    returns the :func:`fingerprints` written. Every weight is its random initial value shifted by a random amount
    per output channel, so no fresh build has it, biases and batch-norm statistics included."""
    written = {}

    def write(name: str, top: bool = False) -> list[tuple]:
        if (name, top) not in written:
            entry = pretrained.BACKBONES[name]
            shape = (224, 224, 3) if top else STANDIN_INPUT.get(name, (32, 32, 3))
            model = entry.constructor(include_top=top, weights=None, input_shape=shape)
            rng = np.random.default_rng(len(written))
            for weight in model.weights:
                weight.assign(weight + rng.random(weight.shape[-1:], dtype=np.float32) + 0.5)
            write_keras_file(model, keras_home / "models" / (entry.top if top else entry.notop).name)
            written[name, top] = fingerprints(model)
        return written[name, top]

    return write


@pytest.fixture
def keras_cache(monkeypatch, tmp_path, keras_home):
    """The stand-ins' ``$KERAS_HOME``; ``$HEMASUITE_WEIGHTS_DIR`` (searched first) empty; downloads impossible."""
    monkeypatch.setenv(pretrained.WEIGHTS_ENV, str(tmp_path / "weights"))
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.setattr(pretrained, "_failed_downloads", {})
    monkeypatch.setattr(keras.utils, "get_file", refuse_download)
    return keras_home / "models"


# The keras.applications files ------------------------------------------------------------------

PAPER_BUILDS = {  # each network as the paper profile builds it (Inception V3 and ResNet-101: below)
    "densenet201": lambda: models.transfer_classifier("densenet201", (32, 32, 3), 3, "imagenet", dense_units=512),
    "densenet121": lambda: models.transfer_classifier("densenet121", (32, 32, 3), 3, "imagenet"),
    "resnet50": lambda: models.transfer_classifier("resnet50", (32, 32, 3), 3, "imagenet"),
    "vgg16": lambda: models.backbone_features("vgg16", (32, 32, 3), "imagenet"),
}


@pytest.mark.parametrize("name", list(PAPER_BUILDS))
def test_backbone_loads_every_weight_of_its_keras_file(name, standin, keras_cache):
    written = standin(name)
    file = pretrained.BACKBONES[name].notop
    model = PAPER_BUILDS[name]()
    assert in_order(fingerprints(model.get_layer(name))) == in_order(written)
    assert pretrained.imagenet_weights(name).path == keras_cache / file.name
    assert models.weights_label(name, "imagenet") == f"ImageNet (Keras file {file.name})"


def test_p2_vgg16_blocks_load_the_keras_file(standin, keras_cache):
    written = dict(standin("vgg16"))
    lower = nested_layers(models.vgg16_block4((32, 32, 3), "imagenet"))
    block5 = nested_layers(models.vgg16_block5((2, 2, 512), 2, "imagenet"))
    assert [fingerprint(lower[f"block{b}_conv1"]) for b in range(1, 5)] == [
        written[f"block{b}_conv1"] for b in range(1, 5)]
    assert [fingerprint(block5[f"block5_conv{c}"]) for c in range(1, 4)] == [
        written[f"block5_conv{c}"] for c in range(1, 4)]


def test_p5_mixed_network_loads_both_keras_files(standin, keras_cache):
    """Inception V3 + ResNet-101: each part is built as P5's feature extraction of that network alone builds it."""
    written = {name: in_order(standin(name)) for name in ("inception_v3", "resnet101")}
    loaded = nested_layers(models.concatenated_backbones(["inception_v3", "resnet101"], (75, 75, 3), "imagenet"))
    assert {name: in_order(fingerprints(loaded[name])) for name in written} == written
    assert models.weights_label("inception_v3+resnet101", "imagenet") == (
        "ImageNet (Keras file inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5) + "
        "ImageNet (Keras file resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5)")


def test_vgg16_fc6_loads_the_full_keras_file(standin, keras_cache):
    written = dict(standin("vgg16", top=True))
    loaded = nested_layers(models.vgg16_fc6((224, 224, 3), "imagenet"))
    names = [name for name in written if name in loaded]
    assert names == [*(name for name in written if name.startswith("block")), "fc1"]
    assert [fingerprint(loaded[name]) for name in names] == [written[name] for name in names]
    file = pretrained.BACKBONES["vgg16"].top
    assert file.name == "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
    assert pretrained.imagenet_weights("vgg16", include_top=True).path == keras_cache / file.name
    assert models.weights_label("vgg16", "imagenet", include_top=True) == f"ImageNet (Keras file {file.name})"
    assert p5.feature_layer("vgg16", "imagenet", 224) == ("fc6", None)


# torchvision's AlexNet ---------------------------------------------------------------------------

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
TORCHVISION_ALEXNET = {  # torchvision.models.alexnet().state_dict(): key -> shape
    "features.0.weight": (64, 3, 11, 11), "features.0.bias": (64,),
    "features.3.weight": (192, 64, 5, 5), "features.3.bias": (192,),
    "features.6.weight": (384, 192, 3, 3), "features.6.bias": (384,),
    "features.8.weight": (256, 384, 3, 3), "features.8.bias": (256,),
    "features.10.weight": (256, 256, 3, 3), "features.10.bias": (256,),
    "classifier.1.weight": (4096, 9216), "classifier.1.bias": (4096,),
    "classifier.4.weight": (4096, 4096), "classifier.4.bias": (4096,),
    "classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,),
}


@pytest.fixture(scope="session")
def alexnet_state(keras_home) -> dict:
    """A random state dict of torchvision's AlexNet (He-scaled, so activations stay near 1), written as its file."""
    rng = np.random.default_rng(0)
    state = {}
    for key, shape in TORCHVISION_ALEXNET.items():
        scale = np.sqrt(2 / np.prod(shape[1:])) if key.endswith("weight") else 0.1
        state[key] = (rng.standard_normal(shape, dtype=np.float32) * np.float32(scale))
    (keras_home / "models").mkdir(parents=True, exist_ok=True)
    write_state_dict(keras_home / "models" / ALEXNET_FILE, state)
    return state


def conv2d(x, weight, bias, stride: int = 1, padding: int = 0):
    """PyTorch's Conv2d on NCHW arrays."""
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    kernel = weight.shape[2]
    windows = np.lib.stride_tricks.sliding_window_view(x, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride]
    return np.tensordot(windows, weight, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2) + bias[:, None, None]


def max_pool(x):
    """PyTorch's MaxPool2d(3, 2) on NCHW arrays."""
    return np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))[:, :, ::2, ::2].max(axis=(4, 5))


def adaptive_average_pool(x, size: int = 6):
    """PyTorch's AdaptiveAvgPool2d on NCHW arrays: bin i spans floor(i * n / size) to ceil((i + 1) * n / size)."""
    height, width = x.shape[2:]
    out = np.empty((*x.shape[:2], size, size))
    for i in range(size):
        for j in range(size):
            rows = slice(i * height // size, -(-(i + 1) * height // size))
            columns = slice(j * width // size, -(-(j + 1) * width // size))
            out[:, :, i, j] = x[:, :, rows, columns].mean(axis=(2, 3))
    return out


def relu(x):
    return np.maximum(x, 0)


def torchvision_forward(state: dict, pixels: np.ndarray) -> dict:
    """torchvision's AlexNet.forward in NumPy (float64, eval mode) on [0, 255] NHWC pixels, as torchvision
    preprocesses them: its outputs after pool5, FC6 (ReLU), FC7 (ReLU) and the logits."""
    s = {key: value.astype(np.float64) for key, value in state.items()}
    x = ((pixels / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).transpose(0, 3, 1, 2)
    x = max_pool(relu(conv2d(x, s["features.0.weight"], s["features.0.bias"], 4, 2)))
    x = max_pool(relu(conv2d(x, s["features.3.weight"], s["features.3.bias"], 1, 2)))
    x = relu(conv2d(x, s["features.6.weight"], s["features.6.bias"], 1, 1))
    x = relu(conv2d(x, s["features.8.weight"], s["features.8.bias"], 1, 1))
    pool5 = max_pool(relu(conv2d(x, s["features.10.weight"], s["features.10.bias"], 1, 1)))
    flat = adaptive_average_pool(pool5).reshape(len(pixels), -1)  # torch.flatten: channels first
    fc6 = relu(flat @ s["classifier.1.weight"].T + s["classifier.1.bias"])
    fc7 = relu(fc6 @ s["classifier.4.weight"].T + s["classifier.4.bias"])
    return {"pool5": pool5.transpose(0, 2, 3, 1), "fc6": fc6, "fc7": fc7,
            "logits": fc7 @ s["classifier.6.weight"].T + s["classifier.6.bias"]}


def assert_close(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_alexnet_resolves_to_the_torchvision_file(alexnet_state, keras_cache):
    resolved = pretrained.imagenet_weights("alexnet")
    assert resolved.path == keras_cache / ALEXNET_FILE
    label = "ImageNet (torchvision file alexnet-owt-7be5be79.pth)"
    assert resolved.label == models.weights_source("alexnet", "imagenet") == label
    assert models.weights_label("alexnet", "imagenet", include_top=True) == label


def test_alexnet_computes_what_torchvision_computes(alexnet_state, keras_cache):
    network = models.build_backbone("alexnet", (224, 224, 3), "imagenet", include_top=True)
    probe = keras.Model(network.inputs, [network.get_layer(name).output for name in ("pool5", "fc6", "fc7")]
                        + [network.output])
    pixels = np.random.default_rng(1).uniform(0, 255, (2, 224, 224, 3))
    inputs = torchvision_alexnet.normalise_by_imagenet_mean_std(pixels.astype(np.float32))
    pool5, fc6, fc7, probabilities = probe.predict(inputs, verbose=0)
    expected = torchvision_forward(alexnet_state, pixels)
    assert_close(pool5, expected["pool5"])
    assert_close(fc6, expected["fc6"])  # the flattening order of 256 x 6 x 6
    assert_close(fc7, expected["fc7"])
    logits = expected["logits"] - expected["logits"].max(axis=1, keepdims=True)
    assert_close(probabilities, np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True))
    assert expected["fc6"].std() > 0.1 and (expected["fc6"] > 0).mean() > 0.2  # not a degenerate comparison


@pytest.mark.parametrize("side", [2, 6, 8, 13])
def test_adaptive_average_pooling_is_pytorchs(side):
    x = np.random.default_rng(side).random((2, side, side + 3, 4), dtype=np.float32)
    pooled = torchvision_alexnet.AdaptiveAveragePooling2D(6)(x)
    expected = adaptive_average_pool(x.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)
    assert_close(keras.ops.convert_to_numpy(pooled), expected)


def test_alexnet_needs_63_pixels():
    with pytest.raises(ParameterError, match="at least 63x63 pixels, not 62x80"):
        torchvision_alexnet.torchvision_alexnet(input_shape=(62, 80, 3))
    smallest = torchvision_alexnet.torchvision_alexnet(include_top=False, input_shape=(63, 63, 3))
    assert smallest.get_layer("pool5").output.shape[1:3] == (1, 1)


def test_alexnet_state_dict_of_another_network_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    write_state_dict(path, {"features.0.weight": np.zeros((64, 3, 11, 11), np.float32),
                            "features.0.bias": np.zeros(32, np.float32), "extra.weight": np.zeros(1, np.float32)})
    model = torchvision_alexnet.torchvision_alexnet(include_top=False, input_shape=(64, 64, 3))
    with pytest.raises(WeightsError) as error:
        torchvision_alexnet.load_alexnet_state(model, path)
    message = str(error.value)
    assert f"{path} is not torchvision's AlexNet state dict" in message
    assert "missing: features.3.weight, features.3.bias" in message and "unexpected: extra.weight" in message
    assert "wrong shape: features.0.bias (32,) (not (64,))" in message


def test_alexnet_offline_error_names_file_url_and_folders(tmp_path, monkeypatch):
    monkeypatch.setenv(pretrained.WEIGHTS_ENV, str(tmp_path / "weights"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(WeightsError) as error:
        models.build_backbone("alexnet", (224, 224, 3), "imagenet", include_top=True)
    message = str(error.value)
    assert f"{ALEXNET_FILE} was not found in {tmp_path / 'weights'}, {tmp_path / 'keras' / 'models'}" in message
    assert f"https://download.pytorch.org/models/{ALEXNET_FILE}" in message and "HEMASUITE_OFFLINE=1" in message


def fake_get_file(calls, content: bytes):
    """Stands in for keras.utils.get_file: records the call and writes ``content`` where Keras would."""
    def get_file(fname, origin, file_hash=None, cache_dir=None, cache_subdir="datasets"):
        calls.append({"fname": fname, "origin": origin, "file_hash": file_hash})
        target = os.path.join(cache_dir, cache_subdir, fname)
        with open(target, "wb") as stream:
            stream.write(content)
        return target
    return get_file


def test_alexnet_download_keeps_only_a_file_with_the_published_sha256_prefix(tmp_path, monkeypatch):
    monkeypatch.setenv(pretrained.WEIGHTS_ENV, str(tmp_path / "weights"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv(pretrained.OFFLINE_ENV)
    monkeypatch.setattr(pretrained, "_failed_downloads", {})
    calls = []
    monkeypatch.setattr(keras.utils, "get_file", fake_get_file(calls, b"not the weights"))
    with pytest.raises(WeightsError, match=r"downloading it failed \(WeightsError: .* does not start with 7be5be79"):
        pretrained.imagenet_weights("alexnet")
    assert calls == [{"fname": ALEXNET_FILE, "origin": f"https://download.pytorch.org/models/{ALEXNET_FILE}",
                      "file_hash": None}]
    assert not (tmp_path / "weights" / ALEXNET_FILE).exists(), "a file with the wrong hash is deleted"
    content = b"stand-in weights"
    name = f"alexnet-owt-{hashlib.sha256(content).hexdigest()[:8]}.pth"
    entry = pretrained.BACKBONES["alexnet"]
    monkeypatch.setitem(pretrained.BACKBONES, "alexnet", pretrained.Backbone(
        entry.constructor, entry.preprocess, pretrained.TorchvisionFile(name, entry.notop.loader)))
    monkeypatch.setattr(keras.utils, "get_file", fake_get_file(calls, content))
    assert pretrained.imagenet_weights("alexnet").path.read_bytes() == content


def written_images(folder, n: int = 2, side: int = 64):
    images = np.random.default_rng(2).integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    paths = []
    for i, image in enumerate(images):
        paths.append(str(folder / f"img_{i}.png"))
        Image.fromarray(image).save(paths[-1])
    return images, paths


def test_p2_and_p5_alexnet_rows_follow_their_weights(alexnet_state, keras_cache, tmp_path, monkeypatch):
    shape = (64, 64, 3)  # the weights do not depend on the input size
    assert p2.alexnet(shape, None, 64).name == "alexnet"  # this suite's, from random init
    with monkeypatch.context() as patch:
        patch.setattr(models, "alexnet_classifier", lambda *args, **kwargs: ("torchvision", args, kwargs))
        assert p2.alexnet(shape, "imagenet", 64) == ("torchvision", (shape, 2, "imagenet"), {})  # all layers train
    p5_model = p5.fine_tune_model("alexnet", shape, 5, "imagenet", trainable_layers=0)
    conv1 = alexnet_state["features.0.weight"].transpose(2, 3, 1, 0)
    assert np.array_equal(p5_model.get_layer("conv1").get_weights()[0], conv1)
    assert np.array_equal(p5_model.get_layer("fc7").get_weights()[1], alexnet_state["classifier.4.bias"])
    assert [layer.name for layer in p5_model.layers if layer.trainable and layer.weights] == ["predictions"]
    assert features.input_rescale("alexnet", "imagenet") == 1.0 and features.input_rescale("alexnet") == 1 / 255
    assert p5.result_name("alexnet", "imagenet") == "alexnet (ImageNet)"
    images, paths = written_images(tmp_path)
    fc6, record = features.layer_features(images, paths, "alexnet", "fc6", "imagenet", cache_dir=tmp_path / "cache")
    assert fc6.shape == (2, 4096) and record["weights"] == "ImageNet (torchvision file alexnet-owt-7be5be79.pth)"
