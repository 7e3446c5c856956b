"""Per-class tables, summary metrics, bootstrap and seed statistics, calibration.

Labels are integer class indices (or class names, mapped through ``classes``); scores are
``(n, k)`` probabilities, or for two classes also a 1-D probability of ``classes[1]``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from sklearn import metrics as skm

from .errors import ParameterError

CELLS = ("TP", "TN", "FP", "FN")
RATES = ("ACC", "PRE", "SEN", "F1", "SP")
BOOTSTRAP_METRICS = ("accuracy", "f1_macro", "precision_macro", "recall_macro", "balanced_accuracy")


def as_indices(labels, classes) -> np.ndarray:
    """Integer class indices of ``labels`` (indices already, or names from ``classes``)."""
    labels = np.asarray(labels)
    if labels.dtype.kind in "iub":
        return labels.astype(int)
    lookup = {name: index for index, name in enumerate(classes)}
    unknown = sorted(set(labels.tolist()) - set(lookup))
    if unknown:
        raise ParameterError(f"labels {unknown} are not among the classes {list(classes)}")
    return np.array([lookup[v] for v in labels.tolist()], dtype=int)


def as_probabilities(y_prob) -> np.ndarray:
    """``(n, k)`` probabilities; a 1-D binary score becomes ``[1 - p, p]``."""
    y_prob = np.asarray(y_prob, dtype=float)
    return np.column_stack([1 - y_prob, y_prob]) if y_prob.ndim == 1 else y_prob


def _divide(num, den):
    """Elementwise ``num / den`` with 0 where ``den`` is 0 (scikit-learn's zero_division)."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)


def _rates(cm):
    """One-vs-rest counts and rates of (a stack of) confusion matrices, per class on the last axis."""
    cm = np.asarray(cm, dtype=float)
    n = cm.sum(axis=(-2, -1))[..., None]
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    support = cm.sum(axis=-1)
    fn, fp = support - tp, cm.sum(axis=-2) - tp
    tn = n - tp - fn - fp
    return {"support": support, "TP": tp, "TN": tn, "FP": fp, "FN": fn, "ACC": _divide(tp + tn, n),
            "PRE": _divide(tp, tp + fp), "SEN": _divide(tp, support), "F1": _divide(2 * tp, 2 * tp + fp + fn),
            "SP": _divide(tn, tn + fp)}


def per_class_table(y_true, y_pred, classes) -> pd.DataFrame:
    """Paper P1's Table 2: per class TP, TN, FP, FN, ACC, PRE, SEN, F1, SP, plus macro and weighted rows."""
    k = len(classes)
    cm = skm.confusion_matrix(as_indices(y_true, classes), as_indices(y_pred, classes), labels=range(k))
    rates = _rates(cm)
    table = pd.DataFrame({"class": list(classes), "support": rates["support"].astype(int),
                          **{c: rates[c].astype(int) for c in CELLS}, **{r: rates[r] for r in RATES}})
    weights = rates["support"] / rates["support"].sum()
    averages = pd.DataFrame({"class": ["macro avg", "weighted avg"], "support": [cm.sum()] * 2,
                             **{r: [rates[r].mean(), (rates[r] * weights).sum()] for r in RATES}})
    combined = pd.concat([table, averages], ignore_index=True)
    return combined.astype({c: "Int64" for c in CELLS})


def roc_auc(y_true, y_prob, classes) -> dict:
    """One-vs-rest ROC AUC per class (NaN where a class has no positives or no negatives).

    With two classes there is one AUC, that of ``classes[1]`` as the positive class.
    """
    y_true, y_prob = as_indices(y_true, classes), as_probabilities(y_prob)
    targets = [1] if len(classes) == 2 else range(len(classes))
    aucs = {}
    for c in targets:
        positive = y_true == c
        ok = 0 < positive.sum() < len(positive)
        aucs[classes[c]] = float(skm.roc_auc_score(positive, y_prob[:, c])) if ok else float("nan")
    return aucs


def summary_metrics(y_true, y_prob, classes) -> dict:
    """Accuracy, balanced accuracy, macro / weighted PRE, SEN, F1, macro SP, ROC AUC, confusion matrix."""
    y_true, y_prob = as_indices(y_true, classes), as_probabilities(y_prob)
    y_pred = y_prob.argmax(axis=1)
    cm = skm.confusion_matrix(y_true, y_pred, labels=range(len(classes)))
    rates = _rates(cm)
    weights = rates["support"] / rates["support"].sum()
    aucs = roc_auc(y_true, y_prob, classes)
    return {"n": int(len(y_true)), "accuracy": float(np.trace(cm) / cm.sum()),
            "balanced_accuracy": float(rates["SEN"][rates["support"] > 0].mean()),
            "precision_macro": float(rates["PRE"].mean()), "precision_weighted": float(rates["PRE"] @ weights),
            "recall_macro": float(rates["SEN"].mean()), "recall_weighted": float(rates["SEN"] @ weights),
            "f1_macro": float(rates["F1"].mean()), "f1_weighted": float(rates["F1"] @ weights),
            "sensitivity_macro": float(rates["SEN"].mean()), "specificity_macro": float(rates["SP"].mean()),
            "roc_auc": aucs, "roc_auc_macro": float(np.nanmean(list(aucs.values()))) if aucs else float("nan"),
            "confusion_matrix": cm.tolist()}


def _resamples(n: int, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, n)`` indices drawn with replacement."""
    if n == 0:
        raise ParameterError("cannot bootstrap an empty set of predictions")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _interval(value, samples, alpha) -> dict:
    low, high = np.nanquantile(samples, [alpha / 2, 1 - alpha / 2])
    return {"value": float(value), "ci_low": float(low), "ci_high": float(high)}


def bootstrap_ci(y_true, y_pred_or_prob, metric_fn, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Percentile bootstrap CI of ``metric_fn(y_true, y_pred_or_prob)``: ``{value, ci_low, ci_high}``."""
    y_true, y_score = np.asarray(y_true), np.asarray(y_pred_or_prob)
    samples = [metric_fn(y_true[idx], y_score[idx]) for idx in _resamples(len(y_true), n_boot, seed)]
    return _interval(metric_fn(y_true, y_score), samples, alpha)


def _batch_metrics(y_true, y_pred, k: int) -> dict:
    """The bootstrap metrics for stacked label arrays ``(b, n)``, from one bincount of confusion cells."""
    b = y_true.shape[0]
    cells = (np.arange(b)[:, None] * k + y_true) * k + y_pred
    cm = np.bincount(cells.ravel(), minlength=b * k * k).reshape(b, k, k)
    rates = _rates(cm)
    recall = np.where(rates["support"] > 0, rates["SEN"], np.nan)
    return {"accuracy": np.trace(cm, axis1=1, axis2=2) / y_true.shape[1], "f1_macro": rates["F1"].mean(axis=1),
            "precision_macro": rates["PRE"].mean(axis=1), "recall_macro": rates["SEN"].mean(axis=1),
            "balanced_accuracy": np.nanmean(recall, axis=1)}


def bootstrap_summary(y_true, y_prob, classes, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict:
    """``{metric: {value, ci_low, ci_high}}`` for accuracy, macro F1 / precision / recall, balanced accuracy."""
    y_true = as_indices(y_true, classes)
    y_pred = as_probabilities(y_prob).argmax(axis=1)
    k = len(classes)
    point = _batch_metrics(y_true[None], y_pred[None], k)
    idx = _resamples(len(y_true), n_boot, seed)
    boot = _batch_metrics(y_true[idx], y_pred[idx], k)
    return {m: _interval(point[m][0], boot[m], alpha) for m in BOOTSTRAP_METRICS}


def seed_summary(values) -> dict:
    """Mean and sample SD (ddof=1; NaN for one value) of a metric over seeds."""
    values = [float(v) for v in values]
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
    return {"mean": float(np.mean(values)), "sd": sd, "n": len(values), "values": values}


def _flatten(summary: dict, prefix: str = "") -> dict:
    """Numeric leaves of a nested dict as ``{"a.b": value}`` (lists and strings skipped)."""
    flat = {}
    for key, value in summary.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
            flat[f"{prefix}{key}"] = value
    return flat


def aggregate_seeds(summaries: list[dict]) -> dict:
    """``{metric: seed_summary}`` over per-seed summary dicts (nested keys joined with dots)."""
    flats = [_flatten(s) for s in summaries]
    keys = [k for k in flats[0] if all(k in f for f in flats[1:])] if flats else []
    return {k: seed_summary([f[k] for f in flats]) for k in keys}


def wilson_ci(k: int, n: int, alpha: float = 0.05) -> dict:
    """Wilson score interval of a proportion ``k / n``: ``{value, ci_low, ci_high}``."""
    if n <= 0 or not 0 <= k <= n:
        raise ParameterError(f"wilson_ci needs 0 <= k <= n and n > 0, got k={k}, n={n}")
    z = stats.norm.ppf(1 - alpha / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return {"value": p, "ci_low": float(max(0.0, centre - half)), "ci_high": float(min(1.0, centre + half))}


def clopper_pearson_ci(k: int, n: int, alpha: float = 0.05) -> dict:
    """Exact (Clopper-Pearson) interval of a proportion ``k / n``: ``{value, ci_low, ci_high}``.

    Never narrower than the nominal level, and well defined at 0 and 100%, where a
    bootstrap over test images collapses to a point.
    """
    if n <= 0 or not 0 <= k <= n:
        raise ParameterError(f"clopper_pearson_ci needs 0 <= k <= n and n > 0, got k={k}, n={n}")
    low = stats.beta.ppf(alpha / 2, k, n - k + 1) if k > 0 else 0.0
    high = stats.beta.ppf(1 - alpha / 2, k + 1, n - k) if k < n else 1.0
    return {"value": k / n, "ci_low": float(low), "ci_high": float(high)}


def reliability_table(y_true, y_prob, n_bins: int = 10) -> pd.DataFrame:
    """Per equal-width confidence bin (confidence = max probability): count, accuracy, mean confidence."""
    y_prob = as_probabilities(y_prob)
    confidence = y_prob.max(axis=1)
    correct = y_prob.argmax(axis=1) == np.asarray(y_true)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.searchsorted(edges[1:-1], confidence, side="left")
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(bins, weights=correct, minlength=n_bins) / count
        mean_conf = np.bincount(bins, weights=confidence, minlength=n_bins) / count
    return pd.DataFrame({"bin": np.arange(n_bins), "lower": edges[:-1], "upper": edges[1:], "count": count,
                         "accuracy": accuracy, "confidence": mean_conf})


def expected_calibration_error(y_true, y_prob, n_bins: int = 10) -> float:
    """ECE: count-weighted mean of |accuracy - confidence| over the reliability bins."""
    table = reliability_table(y_true, y_prob, n_bins)
    used = table[table["count"] > 0]
    gap = (used["accuracy"] - used["confidence"]).abs()
    return float((gap * used["count"]).sum() / used["count"].sum())


def paper_vs_run_table(paper: dict, run: dict) -> pd.DataFrame:
    """Columns metric, paper, this_run, difference for the paper's metrics (same scale on both sides).

    Values of ``run`` may be numbers or dicts with ``mean`` (seed summary) or ``value`` (CI).
    """
    def number(value):
        if isinstance(value, dict):
            value = value.get("mean", value.get("value"))
        return float("nan") if value is None else float(value)

    rows = [{"metric": m, "paper": number(p), "this_run": number(run.get(m))} for m, p in paper.items()]
    table = pd.DataFrame(rows, columns=["metric", "paper", "this_run"])
    table["difference"] = table["this_run"] - table["paper"]
    return table
