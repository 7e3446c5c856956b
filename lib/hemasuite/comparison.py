"""All replications side by side: the table, figures and README section of ``90_comparison``.

Everything here is read from the ``results.json`` files the replication notebooks wrote
(``<output_dir>/<stem>/results.json``); nothing is computed anew and nothing is filled in.
A notebook without results, or a model the paper reports that a notebook did not run,
appears as ``missing``.

What a replication notebook provides (all read tolerantly):

- ``comparison``: rows ``model, weights, paper, mean, sd, ci_low, ci_high, seeds``
  (:func:`hemasuite.experiment.comparison_row`), optionally ``metric`` (default
  accuracy), ``protocol`` (a short name such as "paper protocol: augment, then split")
  and ``leakage`` (a status string that overrides the one derived here);
- ``protocol``: ``dataset`` (display name), ``synthetic``, ``stand_in``, ``split``
  (``method``, optionally ``level``: ``image`` / ``subject``);
- ``deviations``: one string per difference from the paper (the first, "profile ...",
  is not a protocol difference and is left out of the table);
- ``leakage`` (P3): measurements of the same model under a leaky and a clean protocol,
  as ``{name: evaluation or {mean, ci_low, ci_high} or number}`` or a list of rows
  ``{protocol|name|model, mean|accuracy|value, ci_low, ci_high}``.

``python -m hemasuite.comparison --update-readme`` rewrites the README section between
``<!-- comparison:start -->`` and ``<!-- comparison:end -->`` from
``reports/cpu/results/90_comparison``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from . import papers
from .results import load_results, markdown_table

STEM = "90_comparison"
# Replication notebooks in suite order, with the paper each replicates.
REPLICATIONS = {
    "10_p4_sequential_cnn": "P4",
    "11_p1_deep_cnn": "P1",
    "20_p3_densenet201_lymphoma": "P3",
    "21_p2_cnmc_transfer": "P2",
    "22_p5_bone_marrow": "P5",
}
MISSING = "missing"
COLUMNS = ["paper", "notebook", "model", "weights", "dataset", "metric", "paper_reported", "mean", "sd", "ci_low",
           "ci_high", "seeds", "status", "protocol_differences", "leakage"]
README_START, README_END = "<!-- comparison:start -->", "<!-- comparison:end -->"
SUBJECT_LEVEL_DATASETS = ("cnmc",)  # datasets whose loaders group images by subject
LEAKY_PROTOCOL = re.compile(r"augment\w*[^;]*\b(then|before)\b[^;]*split|before (the )?split|paper protocol|leaky",
                            re.IGNORECASE)
AUGMENT_BEFORE_SPLIT = "augmentation before split (paper protocol: augmented copies of one image on both sides)"


def is_leaky(text: str) -> bool:
    """Whether a protocol name describes augmenting before the split (P3's paper protocol)."""
    return bool(LEAKY_PROTOCOL.search(re.sub(r"[_\-]+", " ", str(text))))


# ---------------------------------------------------------------------------- reading

def results_dir(output_dir, profile: str) -> Path:
    """Where the replication results of ``profile`` are.

    Normally ``output_dir`` itself (resolved as every notebook does). Under the runner,
    ``output_dir`` is its staging folder ``<reports>/.staging/<profile>/results``, which
    holds only the notebook now running; the published results of the profile are then
    ``<reports>/<profile>/results``.
    """
    from .config import resolve_output_dir

    resolved = resolve_output_dir(output_dir, profile)
    if resolved.name == "results" and resolved.parent.parent.name == ".staging":
        return resolved.parent.parent.parent / resolved.parent.name / "results"
    return resolved


def load(output_dir) -> dict:
    """The results.json of every replication notebook found under ``output_dir`` (others ignored)."""
    folder = Path(output_dir)
    return {stem: result for stem, result in load_results(folder).items() if stem in REPLICATIONS} \
        if folder.is_dir() else {}


def sources(found: dict, folder) -> pd.DataFrame:
    """One row per replication notebook: found or missing, with its profile, date, commit and wall time."""
    rows = []
    for stem, paper in REPLICATIONS.items():
        result = found.get(stem)
        if result is None:
            rows.append({"notebook": stem, "paper": paper, "status": MISSING, "profile": None, "started_utc": None,
                         "commit": None, "wall_time_s": None, "path": str(Path(folder) / stem / "results.json")})
            continue
        rows.append({"notebook": stem, "paper": paper, "status": "found", "profile": result.get("profile"),
                     "started_utc": result.get("started_utc"),
                     "commit": (result.get("environment") or {}).get("commit"),
                     "wall_time_s": result.get("wall_time_s"), "path": str(Path(folder) / stem / "results.json")})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- the table

def _number(value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan


def _count(value) -> int:
    number = _number(value)
    return 0 if math.isnan(number) else int(number)


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def paper_models(paper: str) -> list[dict]:
    """What ``paper`` reports, flattened to ``{model, metric, value}`` (the headline metric of each model)."""
    rows = []
    for model, values in papers.reported(paper)["models"].items():
        if not isinstance(values, dict):
            rows.append({"model": model, "metric": "accuracy", "value": _number(values)})
        elif "accuracy" in values:
            rows.append({"model": model, "metric": "accuracy", "value": _number(values["accuracy"])})
        else:  # a family of models (P5: {"feature extraction + SVM": {"AlexNet": 0.78, ...}})
            rows += [{"model": f"{name} ({model})", "metric": "accuracy", "value": _number(value)}
                     for name, value in values.items()]
    return rows


def dataset_label(result: dict) -> str:
    """The dataset as the notebook named it, marked SYNTHETIC / stand-in when it is one."""
    protocol = result.get("protocol") or {}
    name = protocol.get("dataset")
    if isinstance(name, dict):
        name = name.get("display_name") or name.get("name")
    label = str(name) if name else "unknown (no protocol.dataset)"
    synthetic = protocol.get("synthetic") or "synthetic" in label.lower()
    if synthetic and "SYNTHETIC" not in label:
        label += " [SYNTHETIC]"
    stand_in = protocol.get("stand_in")
    if stand_in and "stand-in" not in label:
        label += f" [stand-in for {stand_in}]"
    return label


def protocol_differences(result: dict) -> str:
    """The notebook's deviations from the paper, without the profile line, joined by '; '."""
    items = [str(d) for d in result.get("deviations") or [] if not str(d).startswith("profile ")]
    return "; ".join(items) if items else "none recorded"


def split_leakage(result: dict) -> str:
    """Leakage status of the notebook's own split: duplicates, and image- vs subject-level."""
    protocol = result.get("protocol") or {}
    split = protocol.get("split") or {}
    method = split.get("method", "") if isinstance(split, dict) else str(split)
    level = (split.get("level") if isinstance(split, dict) else None) or protocol.get("split_level")
    if not level:
        name = _normalise(dataset_label(result))
        level = "subject" if any(name.startswith(d) for d in SUBJECT_LEVEL_DATASETS) else "image"
    parts = []
    if method:
        parts.append("duplicates kept on one side" if "duplicate" in method.lower() else "duplicates not controlled")
    else:
        parts.append("split not recorded")
    parts.append("subject-level split" if str(level).startswith("subject") else
                 "image-level split (no subject ids: one patient's cells can be on both sides)")
    return "; ".join(parts)


def leakage_status(result: dict, row: dict) -> str:
    """Leakage status of one comparison row: the row's own, the paper's leaky protocol, or the split's."""
    if row.get("leakage"):
        return str(row["leakage"])
    text = " ".join(str(row.get(key) or "") for key in ("model", "weights", "protocol", "split"))
    if is_leaky(text):
        return AUGMENT_BEFORE_SPLIT
    return split_leakage(result)


def _covered(reported: dict, rows: list[dict]) -> bool:
    """Whether a notebook row stands for the paper's model: the paper's value, or its name (e.g. densenet121 for
    DenseNet)."""
    target = _normalise(reported["model"])
    for row in rows:
        name = _normalise(row.get("model", ""))
        if name and target and name.startswith(target):
            return True
        if not math.isnan(reported["value"]) and math.isclose(_number(row.get("paper")), reported["value"]):
            return True
    return False


def notebook_rows(stem: str, result: dict | None) -> list[dict]:
    """Rows of one notebook: its comparison rows, then a ``missing`` row per reported model it did not run."""
    paper = REPLICATIONS[stem]
    reported = paper_models(paper)
    blank = {"paper": paper, "notebook": stem, "mean": math.nan, "sd": math.nan, "ci_low": math.nan,
             "ci_high": math.nan, "seeds": 0}
    if result is None:
        return [{**blank, "model": r["model"], "weights": MISSING, "dataset": MISSING, "metric": r["metric"],
                 "paper_reported": r["value"], "status": f"{MISSING}: no results.json",
                 "protocol_differences": MISSING, "leakage": MISSING} for r in reported]
    comparison = result.get("comparison") or []
    if isinstance(comparison, dict):  # a DataFrame recorded as {column: {index: value}}
        comparison = pd.DataFrame(comparison).to_dict(orient="records")
    dataset, differences = dataset_label(result), protocol_differences(result)
    rows = []
    for row in comparison:
        measured = not math.isnan(_number(row.get("mean")))
        protocol = f" [{row['protocol']}]" if row.get("protocol") else ""
        rows.append({**blank, "model": f"{row.get('model')}{protocol}", "weights": row.get("weights") or "not stated",
                     "dataset": dataset, "metric": row.get("metric") or "accuracy",
                     "paper_reported": _number(row.get("paper")), "mean": _number(row.get("mean")),
                     "sd": _number(row.get("sd")), "ci_low": _number(row.get("ci_low")),
                     "ci_high": _number(row.get("ci_high")), "seeds": _count(row.get("seeds")),
                     "status": "ok" if measured else f"{MISSING}: no measurement",
                     "protocol_differences": differences, "leakage": leakage_status(result, row)})
    for model in reported:
        if not _covered(model, comparison):
            rows.append({**blank, "model": model["model"], "weights": MISSING, "dataset": dataset,
                         "metric": model["metric"], "paper_reported": model["value"],
                         "status": f"{MISSING}: not run by this notebook in profile {result.get('profile')}",
                         "protocol_differences": differences, "leakage": MISSING})
    return rows


def main_table(found: dict) -> pd.DataFrame:
    """One row per paper and model, in suite order (see the module docstring for the columns' sources)."""
    rows = [row for stem in REPLICATIONS for row in notebook_rows(stem, found.get(stem))]
    return pd.DataFrame(rows, columns=COLUMNS)


# ---------------------------------------------------------------------------- formatting

def fmt_value(value) -> str:
    """A fraction as a percentage, another number with 3 decimals, NaN as 'missing'."""
    value = _number(value)
    if math.isnan(value):
        return MISSING
    return f"{value:.2%}" if 0 <= value <= 1 else f"{value:.3f}"


def fmt_mean_sd(row) -> str:
    if math.isnan(_number(row["mean"])):
        return MISSING
    seeds = int(row["seeds"] or 0)
    sd = _number(row["sd"])
    spread = f" ± {sd:.2%}" if not math.isnan(sd) else " (sd n/a)"
    return f"{_number(row['mean']):.2%}{spread} ({seeds} seed{'s' if seeds != 1 else ''})"


def fmt_ci(row) -> str:
    low, high = _number(row["ci_low"]), _number(row["ci_high"])
    if math.isnan(low) or math.isnan(high):
        return MISSING
    return f"[{low:.2%}, {high:.2%}]"


def display_table(table: pd.DataFrame, full: bool = True) -> pd.DataFrame:
    """Human-readable version: percentages, 'mean ± sd (n seeds)', '[low, high]', 'missing'."""
    shown = pd.DataFrame({
        "paper": table["paper"], "model": table["model"], "weights": table["weights"], "dataset": table["dataset"],
        "metric": table["metric"],
        "paper reported": [fmt_value(v) if not math.isnan(_number(v)) else "not reported"
                           for v in table["paper_reported"]],
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
    """``tables/comparison.csv`` (numbers) and ``tables/comparison.md`` (formatted) of a :class:`Run`."""
    csv = run.path("tables/comparison.csv")
    table.round(4).to_csv(csv, index=False)
    run.path("tables/comparison.md").write_text(markdown_table(_md_escape(display_table(table))) + "\n")
    return csv


# ---------------------------------------------------------------------------- leakage measurements

def _measurement(value) -> dict | None:
    """``{mean, ci_low, ci_high}`` from a number, an evaluation, a seed summary or a CI dict."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"mean": _number(value), "ci_low": math.nan, "ci_high": math.nan}
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("over_seeds"), dict):  # an evaluation from experiment.evaluate
        acc = value["over_seeds"].get("accuracy") or {}
        ci = value.get("accuracy_seed_mean_ci") or {}
        return {"mean": _number(acc.get("mean")), "ci_low": _number(ci.get("ci_low")),
                "ci_high": _number(ci.get("ci_high"))}
    for key in ("mean", "accuracy", "value"):
        if key in value:
            inner = value[key]
            if isinstance(inner, dict):
                found = _measurement(inner)
                if found:
                    return {**found, **{k: _number(value[k]) for k in ("ci_low", "ci_high") if k in value}}
                continue
            ci = value.get("ci") if isinstance(value.get("ci"), (list, tuple)) else [math.nan, math.nan]
            return {"mean": _number(inner), "ci_low": _number(value.get("ci_low", ci[0])),
                    "ci_high": _number(value.get("ci_high", ci[1]))}
    return None


SKIP_LEAKAGE_KEYS = re.compile(r"^(n|n_.*|seeds?|notes?|description|method|difference|gap|delta|inflation)$",
                               re.IGNORECASE)


def _leakage_items(leakage) -> list[tuple[str, object]]:
    """``(protocol name, value)`` pairs of a ``leakage`` section (list of rows, or dict, maybe wrapped)."""
    if isinstance(leakage, list):
        return [(str(e.get("protocol") or e.get("name") or e.get("model") or "?"), e)
                for e in leakage if isinstance(e, dict)]
    if isinstance(leakage, dict):
        for key in ("protocols", "rows", "measurements"):
            if isinstance(leakage.get(key), (list, dict)):
                # beside the main rows, other named groups of measurements (e.g. a 1-NN probe under
                # each protocol) are read too, prefixed with their group's name
                extra = [(f"{k.replace('_', ' ')}: {name}", v) for k, group in leakage.items()
                         if k != key and isinstance(group, dict) and not SKIP_LEAKAGE_KEYS.match(str(k))
                         for name, v in _leakage_items(group)]
                return _leakage_items(leakage[key]) + extra
        return [(str(k), v) for k, v in leakage.items() if not SKIP_LEAKAGE_KEYS.match(str(k))]
    return []


def leakage_entries(found: dict) -> pd.DataFrame:
    """Every leakage measurement a notebook recorded: notebook, paper, protocol, mean, ci_low, ci_high."""
    rows = []
    for stem, result in found.items():
        for name, value in _leakage_items(result.get("leakage")):
            measured = _measurement(value)
            if measured and not math.isnan(measured["mean"]):
                rows.append({"notebook": stem, "paper": REPLICATIONS.get(stem, "?"), "protocol": name, **measured})
    return pd.DataFrame(rows, columns=["notebook", "paper", "protocol", "mean", "ci_low", "ci_high"])


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
    import matplotlib.pyplot as plt

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
    import matplotlib.pyplot as plt

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
    import matplotlib.pyplot as plt

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
    colours = ["tab:red" if is_leaky(p) else "tab:green" for p in entries["protocol"]]
    ax.barh(y, mean, xerr=[low, high], color=colours, alpha=0.75, capsize=3)
    for position, value, top in zip(y, mean, mean + high):
        ax.text(min(top, 1.0) + 0.01, position, f"{value:.1%}", va="center", fontsize=8)
    ax.set_yticks(y, [f"{r.paper}: {r.protocol}" for r in entries.itertuples()], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.12)
    ax.set(title=title, xlabel="test accuracy (fraction); red: leaky protocol, green: clean")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------- README

def readme_table(table: pd.DataFrame) -> str:
    """The compact README version of the main table (protocol differences are in the full table)."""
    return markdown_table(_md_escape(display_table(table, full=False)))


def readme_section(comparison_dir) -> str:
    """Markdown for the README: where the table came from (date, commit) and the table itself."""
    folder = Path(comparison_dir)
    csv = folder / "tables" / "comparison.csv"
    if not csv.is_file():
        shown = "/".join(csv.parts[-6:])  # reports/<profile>/results/90_comparison/tables/comparison.csv
        return (f"No `cpu` comparison yet (`{shown}` does not exist): `make reports` writes it "
                "(`make reports NOTEBOOKS=90` for the comparison alone) and updates this section.")
    meta_path = folder / "results.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    commit = (meta.get("environment") or {}).get("commit") or "unknown"
    date = meta.get("started_utc") or "unknown"
    table = pd.read_csv(csv, keep_default_na=True)
    missing = int(table["mean"].isna().sum())
    return (f"Profile `{meta.get('profile', 'cpu')}`, run of {date} (UTC) at commit `{commit}`; "
            "generated by `make readme` from `reports/cpu/results/90_comparison/tables/comparison.csv`, whose "
            "Markdown twin `comparison.md` also lists each notebook's protocol differences. Mean ± sd over seeds; "
            "95% CI: bootstrap over test images of the seed-mean accuracy. "
            f"{missing} of {len(table)} rows are `missing` (not run yet or not run at this profile).\n\n"
            + readme_table(table))


def replace_section(text: str, body: str) -> str:
    """``text`` with everything between the README markers replaced by ``body``."""
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"README has no {README_START} ... {README_END} section")
    return text[:start + len(README_START)] + "\n" + body.strip() + "\n" + text[end:]


def update_readme(reports=None, readme=None, profile: str = "cpu") -> Path:
    """Rewrite the README's comparison section from ``<reports>/<profile>/results/90_comparison``."""
    from .config import repo_root

    reports = Path(reports or repo_root() / "reports")
    readme = Path(readme or repo_root() / "README.md")
    text = readme.read_text(encoding="utf-8")
    updated = replace_section(text, readme_section(reports / profile / "results" / STEM))
    if updated != text:
        readme.write_text(updated, encoding="utf-8")
    return readme


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Comparison of every replication (table, README section).")
    parser.add_argument("--update-readme", action="store_true",
                        help="rewrite README.md's comparison section from reports/<profile>/results/90_comparison")
    parser.add_argument("--reports", help="reports folder (default: <repo>/reports)")
    parser.add_argument("--readme", help="README to rewrite (default: <repo>/README.md)")
    parser.add_argument("--profile", default="cpu", help="profile whose comparison goes into the README")
    args = parser.parse_args(argv)
    if not args.update_readme:
        parser.print_help()
        return 2
    try:
        path = update_readme(args.reports, args.readme, args.profile)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"updated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
