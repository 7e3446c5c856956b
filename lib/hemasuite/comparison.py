"""All replications side by side: the table and figures of ``90_comparison``.

Everything here is read from the typed results records (:mod:`hemasuite.record`) that the
replication notebooks wrote (``<results folder>/<stem>/results.json``); nothing is
computed anew and nothing is filled in. A notebook without results, or a model the paper
reports (its paper module's ``REPORTED``) that no row of the notebook replicates
(``ModelRow.paper_model``), appears as ``missing``. A results.json that does not follow
the format is an error naming the file.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import papers
from .record import Protocol, Results, markdown_table, read

MISSING = "missing"
COLUMNS = ["paper", "notebook", "model", "weights", "dataset", "metric", "paper_reported", "mean", "sd", "ci_low",
           "ci_high", "seeds", "status", "protocol_differences", "leakage"]
README_TABLE = "comparison_readme.md"
AUGMENT_BEFORE_SPLIT = "augmentation before split (paper protocol: augmented copies of one image on both sides)"
SPLIT_LEVELS = {
    "image": "image-level split (duplicates not controlled)",
    "duplicate": "duplicates kept on one side; otherwise image-level (no case ids: one patient's cells can be on "
                 "both sides)",
    "field": "field-level split (duplicates and same-field twins on one side; no case ids: a patient's other "
             "fields can be on both sides)",
    "case": "case-level split (all images of a case on one side)"}


# ---------------------------------------------------------------------------- reading

def results_folder(results_dir, run) -> Path:
    """The folder of the replications' results: ``results_dir`` when given (the runner passes the published
    folder of the profile), else the folder this run writes into."""
    return Path(results_dir).expanduser().resolve() if results_dir else run.dir.parent


def load(folder) -> dict[str, Results]:
    """The results of every replication notebook found under ``folder``, in suite order (others ignored)."""
    folder = Path(folder)
    return {stem: read(folder / stem / "results.json") for stem in papers.REGISTRY
            if (folder / stem / "results.json").is_file()}


def sources(found: dict[str, Results], folder) -> pd.DataFrame:
    """One row per replication notebook: found or missing, with its profile, date, commit and wall time."""
    rows = []
    for stem, module in papers.REGISTRY.items():
        result = found.get(stem)
        rows.append({"notebook": stem, "paper": module.ID, "status": "found" if result else MISSING,
                     "profile": result.profile if result else None,
                     "started_utc": result.started_utc if result else None,
                     "commit": result.environment.commit if result else None,
                     "wall_time_s": result.wall_time_s if result else None,
                     "path": str(Path(folder) / stem / "results.json")})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- the table

def _value(value) -> float:
    return math.nan if value is None else float(value)


def protocol_differences(protocol: Protocol | None) -> str:
    """The notebook's deviations from the paper, without the profile line, joined by '; '."""
    items = [d for d in (protocol.deviations if protocol else []) if not d.startswith("profile ")]
    return "; ".join(items) if items else "none recorded"


def split_leakage(protocol: Protocol | None) -> str:
    """Leakage status of a notebook's own split: duplicates, and the level it keeps on one side."""
    if protocol is None:
        return "split not recorded"
    return SPLIT_LEVELS[protocol.split.level]


def notebook_rows(stem: str, result: Results | None) -> list[dict]:
    """Rows of one notebook: its model rows, then a ``missing`` row per reported model no row replicates."""
    module = papers.REGISTRY[stem]
    blank = {"paper": module.ID, "notebook": stem, "mean": math.nan, "sd": math.nan, "ci_low": math.nan,
             "ci_high": math.nan, "seeds": 0, "metric": "accuracy"}
    if result is None:
        return [{**blank, "model": model, "weights": MISSING, "dataset": MISSING,
                 "paper_reported": values.get("accuracy", math.nan), "status": f"{MISSING}: no results.json",
                 "protocol_differences": MISSING, "leakage": MISSING} for model, values in module.REPORTED.items()]
    protocol = result.protocol
    dataset = protocol.dataset.display_name if protocol else "unknown (no protocol)"
    differences = protocol_differences(protocol)
    rows = [{**blank, "model": row.model + (f" [{row.variant}]" if row.variant else ""), "weights": row.weights.label,
             "dataset": dataset, "metric": row.metric, "paper_reported": _value(row.paper_value),
             "mean": _value(row.mean), "sd": _value(row.sd), "ci_low": _value(row.ci_low),
             "ci_high": _value(row.ci_high), "seeds": len(row.seeds),
             "status": "ok" if row.mean is not None else f"{MISSING}: no measurement",
             "protocol_differences": differences,
             "leakage": AUGMENT_BEFORE_SPLIT if row.leaky else SPLIT_LEVELS[row.split_level] if row.split_level
             else split_leakage(protocol)} for row in result.models]
    covered = {row.paper_model for row in result.models}
    rows += [{**blank, "model": model, "weights": MISSING, "dataset": dataset,
              "paper_reported": values.get("accuracy", math.nan),
              "status": f"{MISSING}: not run by this notebook in profile {result.profile}",
              "protocol_differences": differences, "leakage": MISSING}
             for model, values in module.REPORTED.items() if model not in covered]
    return rows


def main_table(found: dict[str, Results]) -> pd.DataFrame:
    """One row per paper and model, in suite order."""
    rows = [row for stem in papers.REGISTRY for row in notebook_rows(stem, found.get(stem))]
    return pd.DataFrame(rows, columns=COLUMNS).astype({c: float for c in ("paper_reported", "mean", "sd", "ci_low",
                                                                          "ci_high")})


def leakage_entries(found: dict[str, Results]) -> pd.DataFrame:
    """Every leakage measurement a notebook recorded: notebook, paper, protocol, model, leaky, mean, CI."""
    rows = [{"notebook": stem, "paper": result.paper, "protocol": m.name, "model": m.model, "leaky": m.leaky,
             "mean": _value(m.mean), "ci_low": _value(m.ci_low), "ci_high": _value(m.ci_high)}
            for stem, result in found.items() if result.leakage for m in result.leakage.measurements]
    return pd.DataFrame(rows, columns=["notebook", "paper", "protocol", "model", "leaky", "mean", "ci_low", "ci_high"])


# ---------------------------------------------------------------------------- formatting

def fmt_value(value) -> str:
    """A fraction as a percentage, another number with 3 decimals, NaN as 'missing'."""
    value = _value(value)
    if math.isnan(value):
        return MISSING
    return f"{value:.2%}" if 0 <= value <= 1 else f"{value:.3f}"


def fmt_mean_sd(row) -> str:
    if math.isnan(_value(row["mean"])):
        return MISSING
    seeds = int(row["seeds"] or 0)
    sd = _value(row["sd"])
    spread = f" ± {sd:.2%}" if not math.isnan(sd) else " (sd n/a)"
    return f"{_value(row['mean']):.2%}{spread} ({seeds} seed{'s' if seeds != 1 else ''})"


def fmt_ci(row) -> str:
    low, high = _value(row["ci_low"]), _value(row["ci_high"])
    if math.isnan(low) or math.isnan(high):
        return MISSING
    return f"[{low:.2%}, {high:.2%}]"


def display_table(table: pd.DataFrame, full: bool = True) -> pd.DataFrame:
    """Human-readable version: percentages, 'mean ± sd (n seeds)', '[low, high]', 'missing'."""
    shown = pd.DataFrame({
        "paper": table["paper"], "model": table["model"], "weights": table["weights"], "dataset": table["dataset"],
        "metric": table["metric"],
        "paper reported": [fmt_value(v) if not math.isnan(_value(v)) else
                           "beyond the paper" if getattr(papers.REGISTRY.get(stem), "BEYOND_PAPER", None)
                           else "not reported" for v, stem in zip(table["paper_reported"], table["notebook"])],
        "this suite (mean ± sd)": [fmt_mean_sd(r) for _, r in table.iterrows()],
        "95% CI": [fmt_ci(r) for _, r in table.iterrows()],
        "status": table["status"],
        "protocol differences": table["protocol_differences"],
        "leakage": table["leakage"]})
    if not full:
        shown = shown.drop(columns=["protocol differences", "status"])
    return shown


def _md_escape(table: pd.DataFrame) -> pd.DataFrame:
    return table.map(lambda v: str(v).replace("|", "\\|").replace("\n", " ") if isinstance(v, str) else v)


def save(run, table: pd.DataFrame) -> Path:
    """``tables/comparison.csv`` (numbers), ``tables/comparison.md`` (formatted) and ``tables/comparison_readme.md``
    (the compact version the README shows) of a :class:`~hemasuite.record.Run`."""
    csv = run.path("tables/comparison.csv")
    table.round(4).to_csv(csv, index=False)
    run.tables["comparison"] = run.relative(csv)
    run.path("tables/comparison.md").write_text(markdown_table(_md_escape(display_table(table))) + "\n")
    run.path(f"tables/{README_TABLE}").write_text(
        markdown_table(_md_escape(display_table(table, full=False))) + "\n")
    return csv


# ---------------------------------------------------------------------------- figures

def _label(row) -> str:
    weights = f" ({row['weights']})" if row["weights"] not in (MISSING, None) else ""
    return f"{row['paper']} {row['model']}{weights}"


def _placeholder(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])


def paper_vs_reproduced_figure(table: pd.DataFrame, title: str):
    """Per row: the paper's value (diamond) and this suite's mean with its 95% CI; missing ones labelled."""
    fig, ax = plt.subplots(figsize=(8, 1.4 + 0.42 * max(1, len(table))))
    if table.empty:
        _placeholder(ax, "no rows")
        return fig
    y = np.arange(len(table))
    mean = table["mean"].astype(float)
    low = (mean - table["ci_low"].astype(float)).clip(lower=0).fillna(0)
    high = (table["ci_high"].astype(float) - mean).clip(lower=0).fillna(0)
    ax.errorbar(mean, y, xerr=[low, high], fmt="o", color="tab:blue", capsize=3, label="this suite (95% CI)")
    ax.scatter(table["paper_reported"].astype(float), y, marker="D", color="tab:red", zorder=3,
               label="paper reported")
    for position, value in zip(y, mean):
        if math.isnan(value):
            ax.text(0.01, position, MISSING, va="center", fontsize=8, color="grey",
                    transform=ax.get_yaxis_transform())
    ax.set_yticks(y, [_label(r) for _, r in table.iterrows()], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.02)
    ax.set(title=title, xlabel="test accuracy (fraction)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def ranking_figure(table: pd.DataFrame, title: str):
    """One panel per dataset: its measured models ranked by mean, with 95% CIs and the paper's values."""
    measured = table[table["mean"].notna()]
    datasets = list(dict.fromkeys(measured["dataset"]))
    fig, axes = plt.subplots(max(1, len(datasets)), 1, squeeze=False,
                             figsize=(8, 1.2 + sum(0.5 + 0.4 * (measured["dataset"] == d).sum() for d in datasets)))
    if not datasets:
        _placeholder(axes[0, 0], "no measured results yet")
        axes[0, 0].set_title(title)
        return fig
    for ax, dataset in zip(axes[:, 0], datasets):
        part = measured[measured["dataset"] == dataset].sort_values("mean", ascending=False)
        y = np.arange(len(part))
        mean = part["mean"].astype(float)
        low = (mean - part["ci_low"].astype(float)).clip(lower=0).fillna(0)
        high = (part["ci_high"].astype(float) - mean).clip(lower=0).fillna(0)
        ax.barh(y, mean, xerr=[low, high], color="tab:blue", alpha=0.7, capsize=3, label="this suite (95% CI)")
        ax.scatter(part["paper_reported"].astype(float), y, marker="D", color="tab:red", zorder=3,
                   label="paper reported")
        ax.set_yticks(y, [f"{i + 1}. {_label(r)}" for i, (_, r) in enumerate(part.iterrows())], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1.02)
        ax.set_title(dataset, fontsize=9, loc="left")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes[-1, 0].set_xlabel("test accuracy (fraction)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def leakage_figure(entries: pd.DataFrame, title: str):
    """The same model under a leaky and a clean protocol, where a notebook measured both."""
    fig, ax = plt.subplots(figsize=(8, 1.4 + 0.45 * max(1, len(entries))))
    if entries.empty:
        _placeholder(ax, "no notebook recorded a leakage measurement in this profile\n"
                         "(P3 records one: augmentation before vs after the split)")
        ax.set_title(title)
        return fig
    y = np.arange(len(entries))
    mean = entries["mean"].astype(float)
    low = (mean - entries["ci_low"].astype(float)).clip(lower=0).fillna(0)
    high = (entries["ci_high"].astype(float) - mean).clip(lower=0).fillna(0)
    colours = ["tab:red" if leaky else "tab:green" for leaky in entries["leaky"]]
    ax.barh(y, mean, xerr=[low, high], color=colours, alpha=0.75, capsize=3)
    for position, value, top in zip(y, mean, mean + high):
        ax.text(min(top, 1.0) + 0.01, position, f"{value:.1%}", va="center", fontsize=8)
    ax.set_yticks(y, [f"{r.paper} {r.model}: {r.protocol}" for r in entries.itertuples()], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.12)
    ax.set(title=title, xlabel="test accuracy (fraction); red: leaky protocol, green: clean")
    fig.tight_layout()
    return fig
