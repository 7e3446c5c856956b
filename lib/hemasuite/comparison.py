"""All replications side by side: the tables and figures of ``90_comparison``.

Everything here is read from the typed results records (:mod:`hemasuite.record`) that the
notebooks wrote (``<results folder>/<stem>/results.json``); nothing is computed anew and
nothing is filled in. Five views:

- the **headline**: one row per paper, its claim beside this suite's number at the strictest
  split level it ran and the verdict (:func:`headline_table`);
- the **main table**: one row per paper and model, with its split level, its CI and the
  CI's method, its training accuracy; a notebook without results, or a model the paper
  reports (its paper module's ``REPORTED``) that no row of the notebook replicates
  (``ModelRow.paper_model``), appears as ``missing``;
- the **majority-class floor**: each notebook's majority-class row (a row whose key is
  ``majority`` or whose architecture or model name starts with "majority"), and the
  models of that split whose CI does not clear it;
- the **leakage ladders** (``Results.ladder``, from any notebook): one model under
  protocols from leakiest to strictest, test accuracy with CI and training accuracy;
- the **pretraining view**: rows of one architecture (``ModelRow.architecture``) in one
  notebook, random init beside ImageNet.

A results.json that does not follow the format is an error naming the file.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import papers
from .record import ModelRow, Protocol, RecordError, Results, markdown_table, read_all

MISSING = "missing"
NOT_RECORDED = "not recorded"
COLUMNS = ["paper", "notebook", "model", "weights", "dataset", "metric", "paper_reported", "mean", "sd", "ci_low",
           "ci_high", "seeds", "runs", "status", "protocol_differences", "leakage", "weights_source", "architecture",
           "split_level", "ci_method", "n_test", "train_accuracy", "majority"]
NUMBERS = ("paper_reported", "mean", "sd", "ci_low", "ci_high", "train_accuracy")
AUGMENTED = "augmented"
AUGMENT_BEFORE_SPLIT = "augmentation before split (paper protocol: augmented copies of one image on both sides)"
SPLIT_LEVELS = {
    AUGMENTED: AUGMENT_BEFORE_SPLIT,
    "image": "image-level split (duplicates not controlled)",
    "duplicate": "duplicates kept on one side; otherwise image-level (no case ids: one patient's cells can be on "
                 "both sides)",
    "field": "field-level split (duplicates and same-field twins on one side; no case ids: a patient's other "
             "fields can be on both sides)",
    "case": "case-level split (all images of a case on one side)"}
MAJORITY = "majority"
LADDER_COLUMNS = ["dataset", "notebook", "paper", "model", "order", "protocol", "level", "test_accuracy", "ci_low",
                  "ci_high", "ci_method", "n_test", "splits", "sd", "train_accuracy", "change"]
PRETRAINING_COLUMNS = ["paper", "notebook", "dataset", "architecture", "split_level", "random_model", "random_mean",
                       "random_ci_low", "random_ci_high", "random_ci_method", "imagenet_model", "imagenet_source",
                       "imagenet_mean", "imagenet_ci_low", "imagenet_ci_high", "imagenet_ci_method", "difference"]
MAJORITY_COLUMNS = ["paper", "notebook", "dataset", "split_level", "mean", "ci_low", "ci_high", "ci_method", "n_test",
                    "status", "not_above"]


# ---------------------------------------------------------------------------- reading

def results_folder(results_dir, run) -> Path:
    """The folder of the notebooks' results: ``results_dir`` when given (the runner passes the published
    folder of the profile), else the folder this run writes into."""
    return Path(results_dir).expanduser().resolve() if results_dir else run.dir.parent


def load(folder) -> dict[str, Results]:
    """Every notebook's results under ``folder`` but the comparison's own: replications in suite order, then the
    others (such as a leakage-ladder notebook) by name."""
    found = read_all(folder, exclude={papers.COMPARISON})  # its own earlier record may be of an older format
    return {stem: found[stem] for stem in [*[s for s in papers.REGISTRY if s in found],
                                           *sorted(s for s in found if s not in papers.REGISTRY)]}


def sources(found: dict[str, Results], folder) -> pd.DataFrame:
    """One row per replication notebook (found or missing) and per other notebook found: its profile, date,
    commit, wall time and whether it recorded a leakage ladder."""
    stems = [*papers.REGISTRY, *[s for s in found if s not in papers.REGISTRY]]
    rows = []
    for stem in stems:
        result = found.get(stem)
        rows.append({"notebook": stem, "paper": papers.paper_id(stem), "status": "found" if result else MISSING,
                     "profile": result.profile if result else None,
                     "started_utc": result.started_utc if result else None,
                     "commit": result.environment.commit if result else None,
                     "wall_time_s": result.wall_time_s if result else None,
                     "ladder_rungs": len(result.ladder) if result else 0,
                     "path": str(Path(folder) / stem / "results.json")})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- the main table

def _value(value) -> float:
    return math.nan if value is None else float(value)


def protocol_differences(protocol: Protocol | None) -> str:
    """The notebook's deviations from the paper, without the profile line, joined by '; '."""
    items = [d for d in (protocol.deviations if protocol else []) if not d.startswith("profile ")]
    return "; ".join(items) if items else "none recorded"


def split_level(row: ModelRow, protocol: Protocol | None) -> str:
    """The unit a row's split kept on one side: ``augmented`` for a leaky row, else the row's own level or the
    protocol's."""
    if row.leaky:
        return AUGMENTED
    return row.split_level or (protocol.split.level if protocol else NOT_RECORDED)


def is_majority(row: ModelRow) -> bool:
    """A majority-class row: key ``majority``, or an architecture or model name starting with "majority"."""
    return row.key == MAJORITY or any((name or "").lower().startswith(MAJORITY)
                                      for name in (row.architecture, row.model))


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}{'s' if n != 1 else ''}"


def runs_label(row: ModelRow, protocol: Protocol | None) -> str:
    """What a row's mean and sd are over: ``n seeds``, ``k folds`` (cross-validation) or ``k splits x n seeds``."""
    seeds = {s.seed for s in row.seeds}
    groups = {s.fold if s.fold is not None else s.split_seed for s in row.seeds} - {None}  # the resamples
    if len(groups) <= 1:
        return _count(len(row.seeds), "seed")
    unit = "fold" if protocol is not None and protocol.split is not None and protocol.split.folds else "split"
    return _count(len(groups), unit) + (f" x {_count(len(seeds), 'seed')}" if len(seeds) > 1 else "")


def notebook_rows(stem: str, result: Results | None) -> list[dict]:
    """Rows of one notebook: its model rows, then a ``missing`` row per reported model no row replicates."""
    module = papers.REGISTRY[stem]
    blank = {"paper": module.ID, "notebook": stem, "mean": math.nan, "sd": math.nan, "ci_low": math.nan,
             "ci_high": math.nan, "seeds": 0, "runs": "", "metric": "accuracy", "train_accuracy": math.nan,
             "majority": False}
    if result is None:
        return [{**blank, "model": model, "weights": MISSING, "dataset": MISSING, "split_level": MISSING,
                 "paper_reported": values.get("accuracy", math.nan), "status": f"{MISSING}: no results.json",
                 "protocol_differences": MISSING, "leakage": MISSING} for model, values in module.REPORTED.items()]
    protocol = result.protocol
    dataset = protocol.dataset.display_name if protocol else "unknown (no protocol)"
    differences = protocol_differences(protocol)
    rows = []
    for row in result.models:
        level = split_level(row, protocol)
        rows.append({**blank, "model": row.model + (f" [{row.variant}]" if row.variant else ""),
                     "weights": row.weights.label, "weights_source": row.weights.source,
                     "architecture": row.architecture, "dataset": dataset, "metric": row.metric,
                     "paper_reported": _value(row.paper_value), "mean": _value(row.mean), "sd": _value(row.sd),
                     "ci_low": _value(row.ci_low), "ci_high": _value(row.ci_high), "ci_method": row.ci_method,
                     "n_test": row.n_test, "seeds": len(row.seeds), "runs": runs_label(row, protocol),
                     "train_accuracy": _value(row.train_accuracy),
                     "majority": is_majority(row),
                     "status": "ok" if row.mean is not None else f"{MISSING}: no measurement",
                     "protocol_differences": differences, "split_level": level,
                     "leakage": SPLIT_LEVELS.get(level, NOT_RECORDED)})
    covered = {row.paper_model for row in result.models}
    rows += [{**blank, "model": model, "weights": MISSING, "dataset": dataset, "split_level": MISSING,
              "paper_reported": values.get("accuracy", math.nan),
              "status": f"{MISSING}: not run by this notebook in profile {result.profile}",
              "protocol_differences": differences, "leakage": MISSING}
             for model, values in module.REPORTED.items() if model not in covered]
    return rows


def _first_clause(text: str) -> str:
    return re.split(r"[;(]", text, maxsplit=1)[0].strip()


def level_of(leakage) -> str | None:
    """The split level a ``leakage`` text describes (its first clause), None when it names none."""
    if not isinstance(leakage, str):
        return None
    return next((level for level, text in SPLIT_LEVELS.items() if _first_clause(text) == _first_clause(leakage)),
                None)


def with_columns(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with every column of :data:`COLUMNS`: a CSV written before a column existed gets it empty, and
    without ``split_level`` the level its ``leakage`` text names."""
    if "split_level" not in table and "leakage" in table:
        table = table.assign(split_level=table["leakage"].map(level_of))
    table = table.reindex(columns=[*COLUMNS, *[c for c in table.columns if c not in COLUMNS]])
    table["majority"] = table["majority"].fillna(False).astype(bool)
    return table.astype({c: float for c in NUMBERS})


def main_table(found: dict[str, Results]) -> pd.DataFrame:
    """One row per paper and model, in suite order."""
    rows = [row for stem in papers.REGISTRY for row in notebook_rows(stem, found.get(stem))]
    return with_columns(pd.DataFrame(rows, columns=COLUMNS))


HEADLINE_COLUMNS = ["paper", "notebook", "citation", "claim_model", "claim", "paper_dataset", "model", "weights",
                    "dataset", "split_level", "mean", "sd", "runs", "ci_low", "ci_high", "ci_method", "verdict"]


def strictness(level) -> int:
    """Rank of a split level from the leakiest (``augmented``: 0) to the strictest (``case``); -1 when unknown."""
    return list(SPLIT_LEVELS).index(level) if level in SPLIT_LEVELS else -1


def claim_verdict(claim: float, mean: float, low: float, high: float, dataset: str = "") -> str:
    """The suite's answer to a paper's claim from the 95% CI of its own number: inside, above or below it."""
    if any(math.isnan(_value(v)) for v in (claim, mean, low, high)):
        return "not run yet"
    if high < claim:
        text = f"not reproduced: {100 * (claim - mean):.1f} points below the claim, which lies above the 95% CI"
    elif low > claim:
        text = f"reproduced: {100 * (mean - claim):.1f} points above the claim, which lies below the 95% CI"
    else:
        text = "consistent: the claim lies inside the 95% CI"
    if "stand-in" in str(dataset):
        text += " (on a stand-in dataset: a check of the method, not of the paper's number)"
    return text


def headline_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per paper: its claim (its best reported accuracy), this suite's number for the rows compared with
    that claim at the strictest split level they were run at (the best of them when several), and the verdict.

    ``table`` is the main table (:func:`main_table`, or its CSV); nothing is computed anew.
    """
    table = with_columns(table)
    rows = []
    for stem, module in papers.REGISTRY.items():
        reported = {model: values["accuracy"] for model, values in module.REPORTED.items() if "accuracy" in values}
        if not reported:  # a notebook beyond the paper (no claim of its own)
            continue
        claim_model = max(reported, key=reported.get)
        claim = reported[claim_model]
        mine = table[(table["notebook"] == stem) & np.isclose(table["paper_reported"].fillna(-1.0), claim)
                     & table["mean"].notna()]
        row = {"paper": module.ID, "notebook": stem, "citation": module.CITATION, "claim_model": claim_model,
               "claim": claim, "paper_dataset": module.DATASET,
               "verdict": claim_verdict(claim, math.nan, math.nan, math.nan)}
        if not mine.empty:
            strictest = mine["split_level"].map(strictness).max()
            best = mine[mine["split_level"].map(strictness) == strictest].sort_values("mean", ascending=False).iloc[0]
            row.update({key: best[key] for key in ("model", "weights", "dataset", "split_level", "mean", "sd",
                                                   "runs", "ci_low", "ci_high", "ci_method")})
            row["verdict"] = claim_verdict(claim, best["mean"], best["ci_low"], best["ci_high"], best["dataset"])
        rows.append(row)
    return pd.DataFrame(rows, columns=HEADLINE_COLUMNS)


# ---------------------------------------------------------------------------- majority-class floor

def majority_table(table: pd.DataFrame) -> pd.DataFrame:
    """Each notebook's majority-class rows (one per split level) and the measured models of the same split whose
    CI reaches down to that accuracy (``not_above``); a notebook with results but no such row is ``missing``."""
    rows = []
    for stem, part in table[table["status"] != f"{MISSING}: no results.json"].groupby("notebook", sort=False):
        majority = part[part["majority"]]
        if majority.empty:
            rows.append({"paper": part["paper"].iloc[0], "notebook": stem, "dataset": part["dataset"].iloc[0],
                         "status": f"{MISSING}: no majority-class row"})
            continue
        for _, row in majority.iterrows():
            others = part[~part["majority"] & part["mean"].notna() & (part["split_level"] == row["split_level"])]
            below = others[others["ci_low"] <= row["mean"]] if not math.isnan(row["mean"]) else others.iloc[:0]
            rows.append({**{c: row[c] for c in ("paper", "notebook", "dataset", "split_level", "mean", "ci_low",
                                                "ci_high", "ci_method", "n_test")},
                         "status": row["status"], "not_above": "; ".join(below["model"]) or "none"})
    return pd.DataFrame(rows, columns=MAJORITY_COLUMNS).astype({"mean": float, "ci_low": float, "ci_high": float})


# ---------------------------------------------------------------------------- leakage ladders

def ladder_table(found: dict[str, Results]) -> pd.DataFrame:
    """Every rung of every notebook's ladders: per dataset, per notebook and model, rungs in order (leakiest
    first), with the change in test accuracy from the rung above."""
    rows = []
    for stem, result in found.items():
        seen = set()
        for rung in result.ladder:
            if (rung.dataset, rung.model, rung.order) in seen:
                raise RecordError(f"{stem}/results.json: ladder of {rung.model} on {rung.dataset} has rung order "
                                  f"{rung.order} twice; number the rungs 0 (leakiest), 1, 2, ...")
            seen.add((rung.dataset, rung.model, rung.order))
            rows.append({"dataset": rung.dataset, "notebook": stem, "paper": result.paper, "model": rung.model,
                         "order": rung.order, "protocol": rung.protocol, "level": rung.level,
                         "test_accuracy": rung.test_accuracy, "ci_low": rung.ci_low, "ci_high": rung.ci_high,
                         "ci_method": rung.ci_method, "n_test": rung.n_test, "splits": rung.splits,
                         "sd": _value(rung.sd), "train_accuracy": _value(rung.train_accuracy)})
    table = pd.DataFrame(rows, columns=LADDER_COLUMNS)
    if table.empty:
        return table
    datasets = {d: i for i, d in enumerate(dict.fromkeys(table["dataset"]))}
    table = table.sort_values(["dataset", "notebook", "model", "order"], key=lambda c: c.map(datasets)
                              if c.name == "dataset" else c, kind="stable").reset_index(drop=True)
    table["change"] = table.groupby(["dataset", "notebook", "model"], sort=False)["test_accuracy"].diff()
    return table


def ladders(table: pd.DataFrame):
    """``(title, rungs)`` of each ladder in :func:`ladder_table` order."""
    for (dataset, stem, model), rungs in table.groupby(["dataset", "notebook", "model"], sort=False):
        yield f"{dataset}: {model} ({stem})", rungs


# ---------------------------------------------------------------------------- pretraining

_WEIGHT_WORDS = re.compile(r"imagenet|random[ -]init\w*|random|pre-?trained|from scratch|[()\[\]]", re.IGNORECASE)


def start_of(label) -> str | None:
    """``ImageNet``, ``random init`` or None (another start, or no weights)."""
    label = str(label).lower()
    return "ImageNet" if "imagenet" in label else ("random init" if label.startswith("random") else None)


def technique(model: str) -> str:
    """A row's model name without the words that name its weights: what pairs a random-init row with an
    ImageNet row of the same architecture (``VGG-16 (ImageNet), fine-tuning`` -> ``vgg-16, fine-tuning``)."""
    text = re.sub(r"\s+", " ", _WEIGHT_WORDS.sub(" ", model))
    return re.sub(r"\s*,(\s*,)*\s*", ", ", text).strip(" ,;-").lower()


def _side(row, prefix: str) -> dict:
    if row is None:
        return {f"{prefix}_model": MISSING}
    side = {f"{prefix}_model": row["model"], f"{prefix}_mean": row["mean"], f"{prefix}_ci_low": row["ci_low"],
            f"{prefix}_ci_high": row["ci_high"], f"{prefix}_ci_method": row["ci_method"]}
    if prefix == "imagenet":
        side["imagenet_source"] = row["weights_source"] or row["weights"]
    return side


def pretraining_table(table: pd.DataFrame) -> pd.DataFrame:
    """Random init beside ImageNet: per notebook, architecture and split level with at least one ImageNet row.

    An ImageNet row is paired with the random-init row of the same technique (:func:`technique`), else with the
    only random-init row of its architecture; a side without a partner is ``missing``. ``difference`` is
    ImageNet minus random init.
    """
    rows = table[table["architecture"].notna() & ~table["majority"]].assign(
        kind=lambda t: t["weights"].map(start_of))
    pairs = []
    for (stem, architecture, level), group in rows.groupby(["notebook", "architecture", "split_level"], sort=False):
        imagenet, random = group[group["kind"] == "ImageNet"], group[group["kind"] == "random init"]
        if imagenet.empty:
            continue
        where = {"paper": group["paper"].iloc[0], "notebook": stem, "dataset": group["dataset"].iloc[0],
                 "architecture": architecture, "split_level": level}
        used = set()
        for _, row in imagenet.iterrows():
            same = random[random["model"].map(technique) == technique(row["model"])]
            partner = same.iloc[0] if len(same) else (random.iloc[0] if len(random) == 1 else None)
            if partner is not None:
                used.add(partner.name)
            pairs.append({**where, **_side(partner, "random"), **_side(row, "imagenet")})
        pairs += [{**where, **_side(row, "random"), **_side(None, "imagenet")}
                  for index, row in random.iterrows() if index not in used]
    result = pd.DataFrame(pairs, columns=PRETRAINING_COLUMNS)
    numbers = [c for c in PRETRAINING_COLUMNS if c.endswith(("_mean", "_ci_low", "_ci_high"))]
    result = result.astype({c: float for c in numbers})
    result["difference"] = result["imagenet_mean"] - result["random_mean"]
    return result


# ---------------------------------------------------------------------------- formatting

def verdicts(found: dict[str, Results]) -> str:
    """Markdown: every notebook's verdict as it recorded it (its answer in its own words), in suite order."""
    parts = [f"### `{stem}`\n\n{result.verdict}" for stem, result in found.items() if result.verdict]
    return "\n\n".join(parts) if parts else "No notebook recorded a verdict."


def fmt_value(value, missing: str = MISSING) -> str:
    """A fraction as a percentage, another number with 3 decimals, NaN as ``missing``."""
    value = _value(value)
    if math.isnan(value):
        return missing
    return f"{value:.2%}" if 0 <= value <= 1 else f"{value:.3f}"


def fmt_mean_sd(row) -> str:
    if math.isnan(_value(row["mean"])):
        return MISSING
    runs = row.get("runs")
    runs = runs if isinstance(runs, str) and runs else _count(int(row["seeds"] or 0), "seed")  # older tables
    sd = _value(row["sd"])
    spread = f" ± {sd:.2%}" if not math.isnan(sd) else " (sd n/a)"
    return f"{_value(row['mean']):.2%}{spread} ({runs})"


def fmt_ci(row, prefix: str = "") -> str:
    """``[low, high]``, followed by the CI's method when the row names one (e.g. an exact Clopper-Pearson CI)."""
    low, high = _value(row[f"{prefix}ci_low"]), _value(row[f"{prefix}ci_high"])
    if math.isnan(low) or math.isnan(high):
        return MISSING
    method = row.get(f"{prefix}ci_method")
    return f"[{low:.2%}, {high:.2%}]" + (f" {method}" if isinstance(method, str) and method else "")


def _weights(row) -> str:
    source = row.get("weights_source")
    return source if isinstance(source, str) and source else row["weights"]


def _text(value, empty: str = NOT_RECORDED) -> str:
    return value if isinstance(value, str) and value else empty


def display_table(table: pd.DataFrame, full: bool = True) -> pd.DataFrame:
    """Human-readable version: percentages, 'mean ± sd (n seeds)', '[low, high] method', 'missing'; ``full``
    False gives the compact version the README shows (no metric, status, protocol differences, leakage text)."""
    table = with_columns(table)
    measured = table["status"] == "ok"
    shown = pd.DataFrame({
        "paper": table["paper"], "model": table["model"], "weights": [_weights(r) for _, r in table.iterrows()],
        "dataset": table["dataset"],
        "split level": [_text(v, NOT_RECORDED if ok else MISSING) for v, ok in zip(table["split_level"], measured)],
        "metric": table["metric"],
        "paper reported": [fmt_value(v, "beyond the paper" if getattr(papers.REGISTRY.get(stem), "BEYOND_PAPER", None)
                                     else "not reported")
                           for v, stem in zip(table["paper_reported"], table["notebook"])],
        "this suite (mean ± sd)": [fmt_mean_sd(r) for _, r in table.iterrows()],
        "95% CI": [fmt_ci(r) for _, r in table.iterrows()],
        "training accuracy": [fmt_value(v, NOT_RECORDED) if ok else MISSING
                              for v, ok in zip(table["train_accuracy"], measured)],
        "status": table["status"], "protocol differences": table["protocol_differences"],
        "leakage": table["leakage"].map(_text)})
    if not full:
        shown = shown.drop(columns=["metric", "status", "protocol differences", "leakage"])
    return shown


def display_majority(table: pd.DataFrame) -> pd.DataFrame:
    """The majority-class floor as display strings."""
    return pd.DataFrame({
        "paper": table["paper"], "notebook": table["notebook"], "dataset": table["dataset"],
        "split level": table["split_level"].map(lambda v: _text(v, MISSING)),
        "majority class": [fmt_value(v) for v in table["mean"]], "95% CI": [fmt_ci(r) for _, r in table.iterrows()],
        "test images": table["n_test"].map(lambda v: MISSING if pd.isna(v) else str(int(v))),
        "status": table["status"], "models whose CI reaches it": table["not_above"].map(lambda v: _text(v, "–"))})


def fmt_rung(row) -> str:
    """Test accuracy of a rung, with the sd across its splits or folds when there are several."""
    splits = int(row["splits"])
    sd = "" if math.isnan(_value(row["sd"])) else f" ± {_value(row['sd']):.2%}"
    return f"{row['test_accuracy']:.2%}{sd} ({splits} split{'s' if splits != 1 else ''})"


def display_ladder(table: pd.DataFrame) -> pd.DataFrame:
    """The ladders as display strings: rung, protocol, level, test accuracy, CI, training accuracy, change."""
    return pd.DataFrame({
        "dataset": table["dataset"], "model": table["model"], "rung": table["order"], "protocol": table["protocol"],
        "level": table["level"], "test accuracy": [fmt_rung(r) for _, r in table.iterrows()],
        "95% CI": [fmt_ci(r) for _, r in table.iterrows()], "test images": table["n_test"],
        "training accuracy": [fmt_value(v, NOT_RECORDED) for v in table["train_accuracy"]],
        "change from the rung above": [("–" if math.isnan(_value(v)) else f"{100 * v:+.1f} points")
                                       for v in table["change"]]})


def display_pretraining(table: pd.DataFrame) -> pd.DataFrame:
    """Random init beside ImageNet as display strings."""
    def side(row, prefix):
        if row[f"{prefix}_model"] == MISSING:
            return MISSING
        return f"{row[f'{prefix}_model']}: {fmt_value(row[f'{prefix}_mean'])} {fmt_ci(row, f'{prefix}_')}"

    return pd.DataFrame({
        "paper": table["paper"], "dataset": table["dataset"], "architecture": table["architecture"],
        "split level": table["split_level"], "random init": [side(r, "random") for _, r in table.iterrows()],
        "ImageNet": [side(r, "imagenet") for _, r in table.iterrows()],
        "ImageNet weights from": table["imagenet_source"].map(lambda v: _text(v, "–")),
        "ImageNet − random init": [("–" if math.isnan(_value(v)) else f"{100 * v:+.1f} points")
                                   for v in table["difference"]]})


def _md_escape(table: pd.DataFrame) -> pd.DataFrame:
    return table.map(lambda v: str(v).replace("|", "\\|").replace("\n", " ") if isinstance(v, str) else v)


def to_markdown(shown: pd.DataFrame) -> str:
    """A display table as Markdown (``|`` escaped)."""
    return markdown_table(_md_escape(shown))


def save(run, name: str, numbers: pd.DataFrame, shown: pd.DataFrame) -> Path:
    """``tables/<name>.csv`` (numbers, recorded in the run) and ``tables/<name>.md`` (the display version)."""
    csv = run.path(f"tables/{name}.csv")
    numbers.round(4).to_csv(csv, index=False)
    run.tables[name] = run.relative(csv)
    run.path(f"tables/{name}.md").write_text(to_markdown(shown) + "\n")
    return csv
# ---------------------------------------------------------------------------- figures

def _label(row) -> str:
    details = [d for d in (row["weights"], row.get("split_level")) if isinstance(d, str) and d != MISSING]
    return f"{row['paper']} {row['model']}" + (f" ({'; '.join(details)})" if details else "")


def _errors(mean: pd.Series, low: pd.Series, high: pd.Series) -> list:
    """Error-bar lengths below and above ``mean`` (0 where the CI is missing)."""
    mean = mean.astype(float)
    return [(mean - low.astype(float)).clip(lower=0).fillna(0), (high.astype(float) - mean).clip(lower=0).fillna(0)]


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
    ax.errorbar(mean, y, xerr=_errors(mean, table["ci_low"], table["ci_high"]), fmt="o", color="tab:blue",
                capsize=3, label="this suite (95% CI)")
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
    """One panel per dataset: its measured models ranked by mean, with 95% CIs and the paper's values; majority-class
    rows in grey."""
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
        colours = ["tab:grey" if majority else "tab:blue" for majority in part["majority"]]
        ax.barh(y, part["mean"], xerr=_errors(part["mean"], part["ci_low"], part["ci_high"]), color=colours,
                alpha=0.7, capsize=3, label="this suite (95% CI; grey: majority class)")
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




LEVEL_COLOURS = {AUGMENTED: "tab:red", "image": "tab:orange", "duplicate": "gold", "field": "tab:green",
                 "case": "tab:green"}


def ladder_figure(table: pd.DataFrame, title: str):
    """One panel per ladder, rungs from leakiest (top) to strictest: test accuracy with its CI (bars coloured by
    level) and the training accuracy (black diamond), both written beside the bar."""
    groups = list(ladders(table))
    fig, axes = plt.subplots(max(1, len(groups)), 1, squeeze=False,
                             figsize=(8, 1.0 + sum(0.7 + 0.45 * len(rungs) for _, rungs in groups)))
    if not groups:
        _placeholder(axes[0, 0], "no notebook recorded a leakage ladder in this profile")
        axes[0, 0].set_title(title)
        return fig
    for ax, (name, rungs) in zip(axes[:, 0], groups):
        y = np.arange(len(rungs))
        ax.barh(y, rungs["test_accuracy"], color=[LEVEL_COLOURS.get(level, "tab:blue") for level in rungs["level"]],
                xerr=_errors(rungs["test_accuracy"], rungs["ci_low"], rungs["ci_high"]), alpha=0.75, capsize=3,
                label="test accuracy (95% CI)")
        ax.scatter(rungs["train_accuracy"], y, marker="D", color="black", zorder=3, label="training accuracy")
        for position, (_, rung) in zip(y, rungs.iterrows()):
            train = "not recorded" if math.isnan(rung["train_accuracy"]) else f"{rung['train_accuracy']:.1%}"
            ax.text(1.02, position, f"test {rung['test_accuracy']:.1%}, train {train}", va="center", fontsize=8,
                    transform=ax.get_yaxis_transform())
        ax.set_yticks(y, [f"{r.order}. {r.protocol} ({r.level})" for r in rungs.itertuples()], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1.0)
        ax.set_title(name, fontsize=9, loc="left")
    axes[0, 0].legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 1.15), ncols=2)
    axes[-1, 0].set_xlabel("accuracy (fraction); red: augmented copies on both sides, orange: image level, "
                           "yellow: duplicates grouped, green: fields or cases grouped")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def pretraining_figure(table: pd.DataFrame, title: str):
    """One panel per dataset: each architecture's random-init (grey) and ImageNet (blue) accuracy with 95% CIs."""
    datasets = list(dict.fromkeys(table["dataset"]))
    fig, axes = plt.subplots(max(1, len(datasets)), 1, squeeze=False,
                             figsize=(8, 1.0 + sum(0.7 + 0.6 * (table["dataset"] == d).sum() for d in datasets)))
    if not datasets:
        _placeholder(axes[0, 0], "no notebook recorded an ImageNet row beside a random-init row of its architecture")
        axes[0, 0].set_title(title)
        return fig
    for ax, dataset in zip(axes[:, 0], datasets):
        part = table[table["dataset"] == dataset]
        y = np.arange(len(part))
        for offset, prefix, colour, label in ((-0.2, "random", "tab:grey", "random init"),
                                              (0.2, "imagenet", "tab:blue", "ImageNet")):
            mean = part[f"{prefix}_mean"]
            ax.barh(y + offset, mean.fillna(0), height=0.38, color=colour, alpha=0.8, label=f"{label} (95% CI)",
                    xerr=_errors(mean, part[f"{prefix}_ci_low"], part[f"{prefix}_ci_high"]), capsize=3)
            for position, value, high in zip(y + offset, mean, part[f"{prefix}_ci_high"].fillna(mean)):
                ax.text(0.01 if math.isnan(value) else high + 0.01, position,
                        MISSING if math.isnan(value) else f"{value:.1%}", va="center", fontsize=7)
        names = [r.imagenet_model if r.imagenet_model != MISSING else r.random_model for r in part.itertuples()]
        ax.set_yticks(y, [f"{r.paper} {name} ({r.split_level})" for r, name in zip(part.itertuples(), names)],
                      fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1.1)
        ax.set_title(dataset, fontsize=9, loc="left")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes[-1, 0].set_xlabel("test accuracy (fraction)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
