"""Tile models on native-resolution images: random crops, per-image averaging, selection inside each fold."""

import keras
import numpy as np
import pandas as pd
import pytest

from hemasuite import pipeline, tiles, training
from hemasuite.errors import ParameterError


def striped_images(n=12, height=24, width=40, seed=0):
    """Class 0: red-dominant images, class 1: green-dominant, with noise (a colour task a tiny CNN learns fast)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.integers(0, 80, (n, height, width, 3)).astype(np.uint8)
    images[labels == 0, :, :, 0] += 150
    images[labels == 1, :, :, 1] += 150
    return images, labels


def colour_model(tile):
    """Softmax over (mean red, mean green) of a tile: a fixed model whose tile probabilities are easy to recompute."""
    inputs = keras.Input((tile, tile, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    logits = keras.layers.Dense(2, use_bias=False)(pooled)
    model = keras.Model(inputs, keras.layers.Softmax()(logits))
    model.layers[-2].set_weights([np.array([[10.0, 0.0], [0.0, 10.0], [0.0, 0.0]])])
    return model


def test_random_tiles_are_windows_of_their_image_new_every_epoch_and_reproducible():
    images = np.arange(3 * 10 * 12 * 3, dtype=np.uint8).reshape(3, 10, 12, 3) % 251
    data = pipeline.random_tiles(images, [0, 1, 2], 3, 4, tiles_per_epoch=7, batch_size=7, seed=5)
    first = [(x.numpy(), y.numpy()) for x, y in data]
    second = [(x.numpy(), y.numpy()) for x, y in data]
    crops, onehot = first[0]
    assert crops.shape == (7, 4, 4, 3) and onehot.shape == (7, 3) and len(first) == 1
    counts = np.bincount(onehot.argmax(axis=1), minlength=3)  # each image ceil(7 / 3) = 3 times, cut to 7
    assert counts.sum() == 7 and counts.max() <= 3 and counts.min() >= 1, counts
    for crop, label in zip(np.rint(crops * 255).astype(np.uint8), onehot.argmax(axis=1)):
        windows = pipeline.extract_patches(images[label], 4, 1)
        assert any(np.array_equal(crop, window) for window in windows)
    assert not np.array_equal(first[0][0], second[0][0])  # new crops (and order) every epoch
    again = [x.numpy() for x, _ in pipeline.random_tiles(images, [0, 1, 2], 3, 4, 7, 7, seed=5)]
    assert np.array_equal(again[0], first[0][0])
    with pytest.raises(ParameterError, match="larger than the images"):
        pipeline.random_tiles(images, [0, 1, 2], 3, 11, 7, 7)
    with pytest.raises(ParameterError, match="labels"):
        pipeline.random_tiles(images, [0, 1], 3, 4, 7, 7)


def test_image_probabilities_are_the_mean_over_the_tile_grid():
    images, _ = striped_images(5)
    images[2, :, :20] = [200, 0, 0]  # left half red, right half green: tiles disagree
    images[2, :, 20:] = [0, 200, 0]
    model = colour_model(8)
    probabilities, speed = tiles.image_probabilities(model, images, 8, 8, chunk=2)
    expected = [model.predict(pipeline.extract_patches(image, 8, 8) / 255.0, verbose=0).mean(axis=0)
                for image in images]
    assert probabilities.shape == (5, 2) and speed > 0
    assert np.allclose(probabilities, expected, atol=1e-5)
    assert 0.3 < probabilities[2, 0] < 0.7


def test_best_validation_epoch_can_score_with_its_own_evaluation():
    class Model:
        weights = None

        def get_weights(self):
            return self.weights

        def set_weights(self, weights):
            self.weights = weights

    scripted = iter([(0.5, 1.0), (0.8, 0.9), (0.8, 0.4), (0.7, 0.1)])
    selector, model = training.BestValidationEpoch(lambda _: next(scripted)), Model()
    selector.set_model(model)
    for epoch in range(4):
        model.weights = f"epoch {epoch}"
        selector.on_epoch_end(epoch, {})  # no Keras validation logs needed
    selector.on_train_end()
    assert selector.best_epoch == 2 and model.weights == "epoch 2" and selector.scores[3] == (0.7, 0.1)


def test_candidates_override_the_base_and_refuse_unknown_settings():
    options = tiles.candidates({"epochs": 3, "filters": [4, 8]},
                               {"small": {"tile": 8}, "jitter": {"colour_jitter": 0.1}})
    assert options["small"].tile == 8 and options["small"].epochs == 3 and options["small"].filters == (4, 8)
    assert options["jitter"].tile == 128 and options["jitter"].colour_jitter == 0.1
    assert "colour_jitter" in options["jitter"].describe()["augmentation"]
    with pytest.raises(ParameterError, match="tile_size"):
        tiles.candidates({}, {"bad": {"tile_size": 96}})
    with pytest.raises(ParameterError, match="at least one"):
        tiles.candidates({}, {})


def test_colour_jitter_stays_in_range_and_keeps_zero_as_plain_dihedral():
    import tensorflow as tf

    images = tf.constant(np.random.default_rng(1).random((32, 6, 6, 3)).astype(np.float32))
    jittered = tiles.tile_augmentation(0.2)(0)(images).numpy()
    assert jittered.min() >= 0 and jittered.max() <= 1 and not np.allclose(jittered, images.numpy())
    plain = tiles.tile_augmentation(0.0)(0)(images).numpy()
    assert np.allclose(np.sort(plain.ravel()), np.sort(images.numpy().ravel()))  # only moved, never recoloured
    assert "colour_jitter" in tiles.describe_tile_augmentation(0.2)
    assert "colour_jitter" not in tiles.describe_tile_augmentation()


BASE = {"epochs": 2, "tiles_per_epoch": 64, "batch_size": 16, "filters": [4], "stem_stride": 1, "eval_stride": 8,
        "learning_rate": 0.01}


def test_fit_fold_chooses_on_validation_keeps_groups_and_predicts_the_test_part_once():
    images, labels = striped_images(20)
    frame = pd.DataFrame({"path": [f"im{i}.png" for i in range(20)], "label": np.array(["red", "green"])[labels]})
    groups = np.array([f"g{g}" for g in np.arange(20) // 4 * 2 + np.arange(20) % 2])  # pairs of one class
    options = tiles.candidates(BASE, {"tile 8": {"tile": 8}, "tile 16": {"tile": 16}})
    train, test = np.arange(4, 20), np.arange(4)
    probabilities, fold = tiles.fit_fold(frame, images, labels, 2, train, test, groups, options, seed=0,
                                         val_fraction=0.25)
    assert probabilities.shape == (4, 2) and fold.test_images == 4
    assert fold.train_images + fold.val_images == 16 and fold.val_images % 2 == 0  # whole groups of 2 per class
    assert len(fold.tried) == 2 * 2 and set(fold.tried["candidate"]) == {"tile 8", "tile 16"}
    per_candidate = fold.tried.groupby("candidate", sort=False)["validation_accuracy"].max()
    assert fold.chosen == per_candidate.idxmax()  # best validation score; ties keep the earlier candidate
    own = fold.tried[fold.tried["candidate"] == fold.chosen]
    assert fold.epoch == own.sort_values(["validation_accuracy", "validation_loss"],
                                         ascending=[False, True])["epoch"].iloc[0]
    assert 0 <= fold.train_accuracy <= 1 and fold.label().startswith(fold.chosen)


def test_cross_validate_tests_every_image_once_with_its_fold():
    images, labels = striped_images(12)
    frame = pd.DataFrame({"path": [f"im{i}.png" for i in range(12)], "label": np.array(["red", "green"])[labels]})
    folds = np.arange(12) % 3
    options = tiles.candidates({**BASE, "epochs": 1}, {"tile 8": {"tile": 8}})
    result = tiles.cross_validate_tiles(frame, images, ["red", "green"], folds, None, options, seed=0,
                                        val_fraction=0.25)
    assert result.predictions["index"].tolist() == list(range(12))
    assert (result.predictions["fold"].to_numpy() == folds).all()
    assert [f.fold for f in result.folds] == [0, 1, 2] and 0 <= result.train_accuracy <= 1
    table = result.fold_table()
    assert table["test"].sum() == 12 and set(table.columns) >= {"chosen", "validation_accuracy", "test_accuracy"}
    selection = result.selection("tile CNN", "validation")
    assert len(selection.chosen) == 3 and len(selection.tried) == 3  # one candidate x one epoch per fold
    with pytest.raises(ParameterError, match="classes"):
        tiles.cross_validate_tiles(frame, images, ["red", "blue"], folds, None, options, seed=0)


def test_pooled_features_average_tile_features_and_come_from_the_cache(tmp_path):
    images, _ = striped_images(5, 32, 48)
    paths = []
    for i, image in enumerate(images):
        paths.append(tmp_path / f"im{i}.png")
        paths[-1].write_bytes(image.tobytes())  # the cache key reads each file's size and time
    pooled, first = tiles.pooled_features(images, paths, "efficientnet_lite0", None, 32, 16, chunk=2,
                                          cache_dir=tmp_path)
    assert pooled.shape == (5, 1280) and first["computed"] and first["tiles_per_image"] == 2
    again, second = tiles.pooled_features(images, paths, "efficientnet_lite0", None, 32, 16, chunk=2,
                                          cache_dir=tmp_path)
    assert np.array_equal(pooled, again) and not second["computed"]
    from hemasuite import config, features

    config.set_seeds(0)
    network = features.feature_model("efficientnet_lite0", "avgpool", (32, 32, 3), None)
    direct = network.predict(pipeline.extract_patches(images[3], 32, 16).astype(np.float32), verbose=0).mean(axis=0)
    assert np.allclose(pooled[3], direct, atol=1e-3 * np.abs(direct).max())
