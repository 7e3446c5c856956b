"""Every plot returns a Figure that can be saved."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from hemasuite import metrics, plots  # noqa: E402
from hemasuite.record import Run  # noqa: E402

CLASSES = ["ALL", "AML", "CLL"]
RNG = np.random.default_rng(0)
Y = np.repeat([0, 1, 2], 10)
PROB = RNG.dirichlet(np.ones(3), len(Y))
PROB[np.arange(len(Y)), Y] += 0.5
PROB /= PROB.sum(axis=1, keepdims=True)
IMAGES = RNG.integers(0, 256, (len(Y), 12, 12, 3), dtype=np.uint8)
HISTORY = {"loss": [1.0, 0.7, 0.5], "val_loss": [1.1, 0.8, 0.7], "accuracy": [0.5, 0.7, 0.8],
           "val_accuracy": [0.4, 0.6, 0.7]}


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


FIGURES = {
    "distribution_series": lambda: plots.class_distribution(pd.Series([10, 12, 8], index=CLASSES), "counts"),
    "distribution_frame": lambda: plots.class_distribution(
        pd.DataFrame({"train": [7, 8, 6], "test": [3, 4, 2]}, index=CLASSES), "per split"),
    "samples": lambda: plots.sample_grid(IMAGES, Y, CLASSES, "samples", n_per_class=3),
    "samples_float_gray": lambda: plots.sample_grid(IMAGES[..., :1] / 255.0, Y[:15], CLASSES, "few", n_per_class=6),
    "confusion": lambda: plots.confusion_matrix([[5, 1, 0], [2, 7, 1], [0, 0, 0]], CLASSES, "cm"),
    "confusion_normalized": lambda: plots.confusion_matrix([[5, 1], [2, 7]], ["a", "b"], "cm", normalize=True),
    "roc": lambda: plots.roc_curves(Y, PROB, CLASSES, "roc"),
    "roc_binary": lambda: plots.roc_curves(np.array([0, 1, 1, 0]), np.array([0.2, 0.9, 0.4, 0.5]), ["n", "p"], "b"),
    "history_one": lambda: plots.training_curves(HISTORY, "training"),
    "history_seeds": lambda: plots.training_curves([HISTORY, {"loss": [0.9, 0.6]}], "seeds"),
    "reliability": lambda: plots.reliability_diagram(metrics.reliability_table(Y, PROB), 0.1, "calibration"),
    "paper_vs_reproduced": lambda: plots.paper_vs_reproduced(pd.DataFrame({
        "model": ["VGG16", "ResNet50"], "paper": [0.97, np.nan], "mean": [0.93, 0.9],
        "ci_low": [0.9, np.nan], "ci_high": [0.95, np.nan]}), "paper vs this run"),
    "gradcam": lambda: plots.gradcam_grid(IMAGES[:5], RNG.random((5, 12, 12)), [f"#{i}" for i in range(5)], "cam"),
}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_plot_returns_a_savable_figure(name, tmp_path):
    figure = FIGURES[name]()
    assert isinstance(figure, Figure)
    run = Run("plots", tmp_path, {})
    saved = run.dir / run.save_figure(figure, name)
    assert saved.is_file() and saved.stat().st_size > 1000


def test_confusion_matrix_annotates_counts():
    figure = plots.confusion_matrix([[5, 1], [2, 7]], ["a", "b"], "cm", normalize=True)
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert texts == ["5\n83%", "1\n17%", "2\n22%", "7\n78%"]


def test_roc_legend_shows_auc():
    figure = plots.roc_curves(Y, PROB, CLASSES, "roc")
    labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert len(labels) == 4 and all("AUC" in label for label in labels[:3])


def test_same_field_figures(tmp_path):
    calibration = pd.DataFrame({"kind": ["random"] * 50 + ["candidate"] * 10,
                                "score": np.r_[RNG.uniform(0, 0.35, 50), RNG.uniform(0.4, 1, 10)]})
    assert isinstance(plots.same_field_histogram(calibration, 0.5, "t"), Figure)
    paths = []
    for k in range(4):
        paths.append(tmp_path / f"{k}.png")
        plt.imsave(paths[-1], IMAGES[k])
    pairs = pd.DataFrame({"path_a": paths[:2], "path_b": paths[2:], "score": [0.6, 0.9], "dy": [1, 2], "dx": [3, 4]})
    fig = plots.same_field_examples(pairs, "t", n=6)
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    assert isinstance(plots.same_field_examples(pairs.iloc[:0], "t"), Figure)


def test_leakage_ladder_and_group_accuracy_figures():
    ladder = pd.DataFrame({"order": [0, 1, 2, 0, 1, 2], "protocol": ["augment", "image", "case"] * 2,
                           "model": ["cnn"] * 3 + ["probe"] * 3, "test_accuracy": [0.99, 0.9, 0.5, 0.98, 0.7, 0.3],
                           "ci_low": [0.95, 0.85, 0.4, 0.9, 0.6, 0.2], "ci_high": [1.0, 0.95, 0.6, 1.0, 0.8, 0.4],
                           "train_accuracy": [1.0, 0.99, 0.98, None, None, None]})
    figure = plots.leakage_ladder(ladder, "ladder", chance=0.37)
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["augment", "image", "case"]
    assert len(ax.get_legend().get_texts()) == 5  # test and training of both models, and the majority class
    cases = pd.DataFrame({"protocol": ["a", "a", "b", "b"], "group": ["c1", "c2", "c1", "c2"],
                          "class": ["CLL", "FL", "CLL", "FL"], "fraction_correct": [1.0, 0.5, 0.2, 0.0]})
    figure = plots.group_accuracy(cases, "per case")
    assert len(figure.axes) == 2 and [p.get_height() for p in figure.axes[1].patches] == [0.2, 0.0]
