"""Grad-CAM on tiny Sequential and functional CNNs; example selection."""

import numpy as np
import pytest

from hemasuite import explain
from hemasuite.errors import ParameterError

keras = pytest.importorskip("keras")

SIZE = 16


def sequential_cnn():
    return keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
                             keras.layers.MaxPooling2D(), keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
                             keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, activation="softmax")])


def functional_cnn():
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="features")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def nested_cnn():
    backbone = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Conv2D(4, 3, padding="same")],
                                name="backbone")
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


def square_images(n, seed):
    """Dark noise; class 1 images carry a bright 4x4 square at a random place."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.0, 0.2, (n, SIZE, SIZE, 3)).astype("float32")
    labels = np.arange(n) % 2
    corners = rng.integers(0, SIZE - 4, (n, 2))
    for image, label, (r, c) in zip(images, labels, corners):
        if label:
            image[r:r + 4, c:c + 4] = 1.0
    return images, labels, corners


@pytest.mark.parametrize("build", [sequential_cnn, functional_cnn, nested_cnn])
def test_gradcam_shape_and_range(build):
    keras.utils.set_random_seed(0)
    model = build()
    images, _, _ = square_images(5, seed=1)
    maps = explain.gradcam(model, images, batch_size=2)
    assert maps.shape == (5, SIZE, SIZE)
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0
    assert explain.gradcam(model, images[:2], class_index=[0, 1]).shape == (2, SIZE, SIZE)


def test_find_last_conv_layer():
    assert explain.find_last_conv_layer(functional_cnn()) == "features"
    assert explain.find_last_conv_layer(sequential_cnn()).startswith("conv2d")
    assert explain.find_last_conv_layer(nested_cnn()) == "backbone"
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ParameterError, match="4-D output"):
        explain.find_last_conv_layer(dense)


def test_gradcam_highlights_planted_square():
    keras.utils.set_random_seed(0)
    model = functional_cnn()
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="sparse_categorical_crossentropy")
    images, labels, _ = square_images(128, seed=2)
    model.fit(images, labels, batch_size=32, epochs=8, verbose=0)
    test, test_labels, corners = square_images(8, seed=3)
    maps = explain.gradcam(model, test[test_labels == 1], class_index=1)
    for heat, (r, c) in zip(maps, corners[test_labels == 1]):
        inside = np.zeros_like(heat, dtype=bool)
        inside[r:r + 4, c:c + 4] = True
        assert heat[inside].mean() > 5 * heat[~inside].mean()


def test_select_examples_records_shortfalls():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 1, 2])
    table, notes = explain.select_examples(y_true, y_pred, ["a", "b", "c"], per_class=2, seed=0)
    counts = table.groupby(["true", "outcome"]).size().to_dict()
    assert counts == {("a", "correct"): 2, ("a", "wrong"): 1, ("b", "correct"): 2, ("c", "correct"): 1}
    assert table.loc[table["outcome"] == "wrong", ["index", "predicted"]].values.tolist() == [[2, "b"]]
    assert len(notes) == 4 and all("only" in note for note in notes)
    again, _ = explain.select_examples(y_true, y_pred, ["a", "b", "c"], per_class=2, seed=0)
    assert again.equals(table)
