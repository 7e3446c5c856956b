"""Figures of the suite; every function returns a matplotlib Figure and never shows it."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from sklearn.metrics import auc, roc_curve

from .imageio import read_rgb
from .metrics import as_indices, as_probabilities


def _displayable(image) -> np.ndarray:
    """An image imshow draws as intended: floats in [0, 1], single channel squeezed."""
    image = np.asarray(image)
    if image.dtype.kind == "f":
        image = np.clip(image / 255.0 if image.max() > 1.0 else image, 0.0, 1.0)
    return image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image


def class_distribution(counts, title: str):
    """Bar chart of images per class; a DataFrame (classes x splits) gives grouped bars."""
    frame = counts.to_frame("images") if isinstance(counts, pd.Series) else counts
    long = frame.rename_axis("class").reset_index().melt(id_vars="class", var_name="set", value_name="count")
    fig, ax = plt.subplots(figsize=(min(14, 3 + 0.6 * frame.size), 4))
    sns.barplot(data=long, x="class", y="count", hue="set", ax=ax)
    for container in ax.containers:
        ax.bar_label(container, fontsize=8)
    if frame.shape[1] == 1 and ax.get_legend():
        ax.get_legend().remove()
    ax.set(title=title, xlabel="", ylabel="images")
    fig.tight_layout()
    return fig


def sample_grid(images, labels, classes, title: str, n_per_class: int = 4, seed: int = 0):
    """One row per class with up to ``n_per_class`` randomly chosen images of it."""
    labels = as_indices(labels, classes)
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(len(classes), n_per_class, figsize=(1.8 * n_per_class, 1.9 * len(classes)),
                             squeeze=False)
    for row, name in enumerate(classes):
        members = np.flatnonzero(labels == row)
        chosen = rng.choice(members, size=min(n_per_class, len(members)), replace=False)
        for col, ax in enumerate(axes[row]):
            ax.axis("off")
            if col < len(chosen):
                ax.imshow(_displayable(images[chosen[col]]), cmap="gray")
        axes[row, 0].set_title(name, loc="left", fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_matrix(cm, classes, title: str, normalize: bool = False):
    """Heatmap of a confusion matrix annotated with counts (and row percentages when ``normalize``)."""
    cm = np.asarray(cm)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    labels = [[f"{c}\n{s:.0%}" if normalize else f"{c}" for c, s in zip(r, sr)] for r, sr in zip(cm, share)]
    size = 1.2 + 0.8 * len(classes)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    sns.heatmap(share if normalize else cm, annot=np.array(labels), fmt="", cmap="Blues", square=True,
                xticklabels=classes, yticklabels=classes, cbar=True, vmin=0, ax=ax)
    ax.set(title=title, xlabel="predicted", ylabel="true")
    fig.tight_layout()
    return fig


def roc_curves(y_true, y_prob, classes, title: str):
    """One-vs-rest ROC curve per class (only ``classes[1]`` for two classes), AUC in the legend."""
    y_true, y_prob = as_indices(y_true, classes), as_probabilities(y_prob)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for c in [1] if len(classes) == 2 else range(len(classes)):
        positive = y_true == c
        if 0 < positive.sum() < len(positive):
            fpr, tpr, _ = roc_curve(positive, y_prob[:, c])
            ax.plot(fpr, tpr, label=f"{classes[c]} (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
    ax.set(title=title, xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def training_curves(histories, title: str, metrics=("loss", "accuracy")):
    """Training (solid) and validation (dashed) curves, one colour per history (seed), one panel per metric.

    ``histories`` is one history dict, a Keras ``History`` or a list of them.
    """
    if isinstance(histories, dict) or hasattr(histories, "history"):
        histories = [histories]
    histories = [getattr(h, "history", h) for h in histories]
    shown = [m for m in metrics if any(m in h for h in histories)]
    fig, axes = plt.subplots(1, len(shown), figsize=(5 * len(shown), 3.8), squeeze=False)
    colours = sns.color_palette(n_colors=len(histories))
    for ax, metric in zip(axes[0], shown):
        for i, (history, colour) in enumerate(zip(histories, colours)):
            tag = f"run {i + 1} " if len(histories) > 1 else ""
            for key, style in ((metric, "-"), (f"val_{metric}", "--")):
                if key in history:
                    epochs = np.arange(1, len(history[key]) + 1)
                    ax.plot(epochs, history[key], style, color=colour, label=f"{tag}{key}")
        ax.set(title=metric, xlabel="epoch")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def reliability_diagram(table: pd.DataFrame, ece: float, title: str):
    """Accuracy per confidence bin against the diagonal, with the bin counts below."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    centres, width = (table["lower"] + table["upper"]) / 2, table["upper"] - table["lower"]
    top.bar(centres, table["accuracy"].fillna(0), width=width, edgecolor="black", label="accuracy")
    top.plot(centres, table["confidence"], "o", color="tab:red", label="mean confidence")
    top.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    top.set(title=f"{title}\nECE = {ece:.3f}", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(centres, table["count"], width=width, color="grey", edgecolor="black")
    bottom.set(xlabel="confidence (max probability)", ylabel="count")
    fig.tight_layout()
    return fig


def paper_vs_reproduced(table: pd.DataFrame, title: str):
    """Dot plot per model: reproduced mean with CI bar, and the paper's value where reported.

    ``table`` has columns model, mean, ci_low, ci_high and, where a paper reports them, paper
    (NaN where unknown).
    """
    fig, ax = plt.subplots(figsize=(6.5, 1.2 + 0.45 * len(table)))
    y = np.arange(len(table))
    low = (table["mean"] - table["ci_low"]).fillna(0).clip(lower=0)
    high = (table["ci_high"] - table["mean"]).fillna(0).clip(lower=0)
    ax.errorbar(table["mean"], y, xerr=[low, high], fmt="o", color="tab:blue", capsize=3, label="this run (CI)")
    if "paper" in table and table["paper"].notna().any():
        ax.scatter(table["paper"], y, marker="D", color="tab:red", zorder=3, label="paper")
    ax.set_yticks(y, table["model"])
    ax.invert_yaxis()
    ax.margins(x=0.15, y=0.3)
    ax.set(title=title, xlabel="value")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def gradcam_grid(images, heatmaps, captions, title: str, ncols: int = 4, alpha: float = 0.45):
    """Grad-CAM heatmaps (in [0, 1]) overlaid on their images, one caption each."""
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.8 * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(_displayable(images[i]), cmap="gray")
            ax.imshow(np.asarray(heatmaps[i]), cmap="jet", alpha=alpha, vmin=0, vmax=1)
            ax.set_title(captions[i], fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def image_groups(groups, title: str, max_groups: int = 6, max_per_group: int = 4):
    """One row per group of image files (e.g. duplicates), file names as captions."""
    groups = [g[:max_per_group] for g in groups[:max_groups]]
    ncols = max((len(g) for g in groups), default=1)
    fig, axes = plt.subplots(max(1, len(groups)), ncols, figsize=(2.4 * ncols, 2.5 * max(1, len(groups))),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for row, group in enumerate(groups):
        for col, path in enumerate(group):
            axes[row, col].imshow(read_rgb(path))
            axes[row, col].set_title("/".join(str(path).split("/")[-2:]), fontsize=7)
    if not groups:
        axes[0, 0].text(0.5, 0.5, "none found", ha="center", va="center")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def problem_counts(table: pd.DataFrame, title: str):
    """Bar chart of problems per kind (rows) and dataset (hue); an empty table says 'no problems'."""
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.45 * max(1, table["kind"].nunique() if len(table) else 1)))
    if len(table):
        sns.countplot(data=table, y="kind", hue="dataset", ax=ax)
    else:
        ax.text(0.5, 0.5, "no problems found", ha="center", va="center")
    ax.set(title=title, xlabel="files", ylabel="")
    fig.tight_layout()
    return fig


def same_field_histogram(calibration: pd.DataFrame, threshold: float, title: str):
    """Histogram of same-field scores of screened candidates and of random pairs, threshold marked.

    ``calibration`` has columns ``kind`` and ``score`` (:func:`hemasuite.validation.same_field_calibration`).
    """
    fig, ax = plt.subplots(figsize=(7, 3.6))
    bins = np.linspace(min(0.0, calibration["score"].min()), 1.0, 51)
    for kind, colour in (("random", "tab:grey"), ("candidate", "tab:blue")):
        scores = calibration.loc[calibration["kind"] == kind, "score"]
        ax.hist(scores, bins=bins, alpha=0.6, color=colour, label=f"{kind} pairs ({len(scores)})")
    ax.axvline(threshold, color="tab:red", linestyle="--", label=f"threshold {threshold}")
    ax.set(title=title, xlabel="best-shift normalised cross-correlation", ylabel="pairs", yscale="log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def same_field_examples(pairs: pd.DataFrame, title: str, n: int = 6):
    """``n`` pairs (columns ``path_a``, ``path_b``, ``score``, ``dy``, ``dx``) side by side, spread over the scores."""
    from .imageio import read_rgb

    chosen = pairs.sort_values("score").iloc[np.unique(np.linspace(0, len(pairs) - 1, n).astype(int))] if len(
        pairs) else pairs
    fig, axes = plt.subplots(max(1, len(chosen)), 2, figsize=(5, 2.5 * max(1, len(chosen))), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for row, pair in enumerate(chosen.itertuples()):
        for col, path in enumerate((pair.path_a, pair.path_b)):
            axes[row, col].imshow(read_rgb(path))
            axes[row, col].set_title("/".join(str(path).split("/")[-2:]), fontsize=7)
        axes[row, 0].text(0, -0.22, f"score {pair.score:.2f}, shift ({pair.dy}, {pair.dx}) px at thumbnail scale",
                          transform=axes[row, 0].transAxes, fontsize=7)
    if not len(chosen):
        axes[0, 0].text(0.5, 0.5, "none found", ha="center", va="center")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def leakage_ladder(table: pd.DataFrame, title: str, chance: float | None = None):
    """Test accuracy (exact CI bar) and training accuracy per protocol, one line per model, leakiest first.

    ``table`` has columns order, protocol, model, test_accuracy, ci_low, ci_high, train_accuracy
    (:func:`hemasuite.evaluation.rungs_table`).
    """
    protocols = table.sort_values("order")["protocol"].drop_duplicates().tolist()
    fig, ax = plt.subplots(figsize=(10, 3.8))
    offsets = np.linspace(-0.12, 0.12, table["model"].nunique())
    for (model, part), offset, colour in zip(table.groupby("model", sort=False), offsets, sns.color_palette()):
        x = np.array([protocols.index(p) for p in part["protocol"]]) + offset
        errors = [part["test_accuracy"] - part["ci_low"], part["ci_high"] - part["test_accuracy"]]
        ax.errorbar(x, part["test_accuracy"], yerr=errors, fmt="o-", color=colour, capsize=3, label=f"{model}: test")
        ax.plot(x, part["train_accuracy"], "x--", color=colour, alpha=0.7, label=f"{model}: training")
    if chance is not None:
        ax.axhline(chance, color="grey", lw=0.8, ls=":", label="majority class")
    ax.set_xticks(range(len(protocols)), [p.replace(", ", ",\n") for p in protocols], fontsize=8)
    ax.set(title=title, ylabel="accuracy", ylim=(0, 1.02))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig


def group_accuracy(table: pd.DataFrame, title: str, value: str = "fraction_correct"):
    """Bar per group (e.g. case), coloured by class, one panel per column ``protocol``.

    ``table`` has columns protocol, group, class and ``value`` (:func:`hemasuite.evaluation.group_table`).
    """
    panels = table["protocol"].drop_duplicates().tolist()
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 1.2 + 2.2 * len(panels)), squeeze=False, sharey=True)
    classes = sorted(table["class"].unique())
    colours = dict(zip(classes, sns.color_palette(n_colors=len(classes))))
    for ax, panel in zip(axes[:, 0], panels):
        part = table[table["protocol"] == panel].reset_index(drop=True)
        ax.bar(range(len(part)), part[value], color=[colours[c] for c in part["class"]])
        ax.set_xticks(range(len(part)), part["group"], rotation=90, fontsize=6)
        ax.set(title=panel, ylabel=value.replace("_", " "), ylim=(0, 1.05))
    axes[0, 0].legend([plt.Rectangle((0, 0), 1, 1, color=colours[c]) for c in classes], classes, fontsize=7,
                      loc="upper right", ncols=len(classes))
    fig.suptitle(title)
    fig.tight_layout()
    return fig
