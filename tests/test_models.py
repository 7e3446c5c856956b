"""Every model builds and takes one training step on tiny inputs; ImageNet weights are never fetched."""

import keras
import pytest

from hemasuite import models
from hemasuite.errors import ParameterError, WeightsError
from hemasuite.models import pretrained

CUSTOM = {"p4_sequential_cnn": models.p4_sequential_cnn, "p1_deep_cnn": models.p1_deep_cnn,
          "p2_traditional_cnn": models.p2_traditional_cnn, "p5_small_cnn": models.p5_small_cnn,
          "alexnet": lambda shape, n: models.alexnet(shape, n, fc_units=64)}


@pytest.mark.parametrize("name", sorted(CUSTOM))
def test_custom_models_train_one_step(name, one_step):
    shape = (64, 64, 3)
    result = one_step(lambda: CUSTOM[name](shape, 3), shape)
    assert result.policy == "float32" and result.replicas == 1 and result.train_images_per_s > 0


HEADS = {"densenet201": {"dense_units": 512, "dropout": 0.5}}  # P3's head on its network (one build checks both)


@pytest.mark.parametrize("name", sorted(pretrained.BACKBONES))
def test_backbones_build_and_step_with_random_init(name, one_step):
    shape = {"inception_v3": (75, 75, 3), "alexnet": (64, 64, 3)}.get(name, (32, 32, 3))  # their smallest inputs
    head = HEADS.get(name, {"dense_units": 8})
    model = one_step(lambda: models.transfer_classifier(name, shape, 3, weights=None, **head), shape,
                     run_eagerly=True).model
    dense, dropout = model.get_layer(index=-3), model.get_layer(index=-2)
    assert (dense.units, dropout.rate) == (head["dense_units"], head.get("dropout", 0.5))


def test_missing_imagenet_weights_name_file_and_url(monkeypatch, tmp_path):
    monkeypatch.setenv("HEMASUITE_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(WeightsError) as error:
        models.transfer_classifier("densenet201", (32, 32, 3), 3, weights="imagenet")
    message = str(error.value)
    assert "densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert "https://storage.googleapis.com/tensorflow/keras-applications/densenet/" in message
    assert str(tmp_path) in message


def test_weights_found_in_weights_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("HEMASUITE_WEIGHTS_DIR", str(tmp_path))
    target = tmp_path / pretrained.BACKBONES["vgg16"].notop.name
    target.write_bytes(b"placeholder")
    assert pretrained.resolve_weights("vgg16", "imagenet") == str(target)
    assert pretrained.resolve_weights("vgg16", None) is None
    assert models.weights_label("vgg16", None) == "random init"
    assert models.weights_label("vgg16", "imagenet") == f"ImageNet (Keras file {target.name})"


def test_unknown_backbone():
    with pytest.raises(ParameterError, match="known: resnet50"):
        models.transfer_classifier("resnet18", (32, 32, 3), 2)


def test_partial_fine_tuning_freezes_all_but_last_layers():
    model = models.transfer_classifier("vgg16", (32, 32, 3), 2, trainable_layers=4)
    base = model.layers[1] if model.layers[1].name.startswith("vgg") else next(
        layer for layer in model.layers if layer.name.startswith("vgg"))
    trainable = [layer for layer in base.layers if layer.trainable and layer.weights]
    assert 0 < len(trainable) <= 4


def test_p1_stem_halves_the_resolution_the_blocks_see():
    plain = models.p1_deep_cnn((64, 64, 3), 4)
    stem = models.p1_deep_cnn((128, 128, 3), 4, stem_stride=2)
    assert stem.get_layer("stem").output.shape[1:3] == (64, 64)
    assert stem.output.shape == plain.output.shape and "stem" not in [layer.name for layer in plain.layers]


def test_patchify_stem_reads_every_pixel_once():
    model = models.p1_deep_cnn((224, 224, 3), 4, stem_stride=4, stem_kernel=4)
    stem = model.get_layer("stem")
    assert stem.output.shape[1:3] == (56, 56) and stem.kernel_size == (4, 4) and stem.strides == (4, 4)
    with pytest.raises(ParameterError, match="smaller than its stride"):
        models.p1_deep_cnn((224, 224, 3), 4, stem_stride=4, stem_kernel=3)


def test_random_init_backbones_use_fast_batch_norm_statistics():
    model = models.transfer_classifier("densenet121", (32, 32, 3), 3, weights=None)
    momenta = {layer.momentum for layer in model.get_layer("densenet121").layers
               if isinstance(layer, keras.layers.BatchNormalization)}
    assert momenta == {pretrained.RANDOM_INIT_BN_MOMENTUM}
