"""The one results format: ``results.json`` as typed, versioned dataclasses.

Every notebook writes a :class:`Results` (through :meth:`Run.finish`) and every tool reads
one back (:func:`read`); both directions are validated against the dataclasses below, so
a key the format does not know, a missing key or a value of the wrong type is an error
that names where it is. Fields:

- :class:`Protocol`: dataset, split (level ``image`` / ``duplicate`` / ``field`` / ``case``,
  fractions or folds, seed, manifest and its SHA-256), seeds, input size, augmentation, what was selected on what
  (:class:`Selection`, with every configuration tried and its validation score), and the
  deviations from the paper;
- one :class:`ModelRow` per model: accuracy per seed (and fold), mean, sd, CI, the paper's
  value, weights and their source, train and inference images/s, the per-image
  predictions file, figures;
- :class:`Leakage`: the same model under a leaky and a clean protocol, and leak counts;
- figures, tables, the verdict, the :class:`Environment`.

``details`` (in :class:`Protocol` and :class:`Results`) holds notebook-specific material
(architectures, optimiser settings, validation summaries) that no tool reads.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import os
import platform
import subprocess
import time
import types
import typing
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import rehearsal
from .config import portable_paths, repo_root
from .errors import SuiteError

VERSION = 1
REHEARSAL_COLUMN = "REHEARSAL (not a result)"  # a column of every table a rehearsal saves
SPLIT_LEVELS = ("image", "duplicate", "field", "case")
PACKAGES = ("hemasuite", "tensorflow", "keras", "numpy", "pandas", "scikit-learn", "scipy", "pillow",
            "matplotlib", "seaborn", "papermill", "nbval")


class RecordError(SuiteError, ValueError):
    """A results.json that does not follow the format."""


# ---------------------------------------------------------------------------- the format

@dataclass
class Weights:
    """What a model started from: ``label`` (random init, imagenet, none) and the weight file it came from.

    Where a rehearsal replaced an absent ImageNet file by random initialisation, the label
    says so too, never "ImageNet".
    """

    label: str
    source: str | None = None

    def __post_init__(self):
        if self.source and rehearsal.ABSENT_WEIGHTS in self.source:
            self.label = rehearsal.ABSENT_WEIGHTS

    @property
    def imagenet(self) -> bool:
        """Meant to start from ImageNet (in a rehearsal without the file: the random init standing in for it)."""
        return self.label in ("ImageNet", rehearsal.ABSENT_WEIGHTS)


@dataclass
class Tried:
    """One configuration considered during selection, with its validation score."""

    configuration: str
    score: float | None


@dataclass
class Selection:
    """What was selected (``what``: epoch, k, C, ...) for ``model``, on what data (``on``), and the candidates."""

    model: str
    what: str
    on: str
    chosen: list[str] = field(default_factory=list)
    tried: list[Tried] = field(default_factory=list)


@dataclass
class DatasetInfo:
    """The data a notebook used, marked when synthetic or a stand-in for the paper's."""

    name: str
    display_name: str
    classes: list[str]
    images: int
    synthetic: bool = False
    stand_in_for: str | None = None


@dataclass
class Split:
    """How training and test data were separated; ``level`` is the unit kept on one side."""

    level: str
    method: str
    seed: int
    fractions: list[float] | None = None
    folds: int | None = None
    manifest: str | None = None
    manifest_sha256: str | None = None
    duplicates_merged: int = 0
    same_field_pairs: int | None = None
    counts: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass
class Protocol:
    """Everything a replication did to data and models, and how it differs from the paper."""

    dataset: DatasetInfo
    split: Split
    seeds: list[int]
    input_size: list[int]
    preprocess: str = "resize (bilinear)"
    augmentation: dict[str, Any] | None = None
    selection: list[Selection] = field(default_factory=list)
    deviations: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class SeedValue:
    """One seed (and fold, or split seed of repeated splits) of a model: its metric value, speed, and what selection
    chose."""

    seed: int
    value: float
    fold: int | None = None
    split_seed: int | None = None
    train_images_per_s: float | None = None
    inference_images_per_s: float | None = None
    chosen: str | None = None


@dataclass
class Spread:
    """Mean and standard deviation over seeds (sd is None for one seed)."""

    mean: float | None
    sd: float | None


@dataclass
class ModelRow:
    """One model of one notebook, beside the paper's value for it.

    ``paper_model`` is the name of the paper's model (a key of the paper module's
    ``REPORTED``) this row replicates, None for a model the paper does not report.
    ``leaky`` marks a row measured under a leaky protocol (P3's augment-then-split).
    """

    key: str
    model: str
    weights: Weights
    seeds: list[SeedValue]
    mean: float | None
    sd: float | None
    ci_low: float | None
    ci_high: float | None
    n_test: int
    paper_model: str | None = None
    paper_value: float | None = None
    metric: str = "accuracy"
    variant: str | None = None
    leaky: bool = False
    train_images_per_s: float | None = None
    inference_images_per_s: float | None = None
    metrics: dict[str, Spread] = field(default_factory=dict)
    predictions: str | None = None
    figures: dict[str, str] = field(default_factory=dict)
    architecture: str | None = None
    split_level: str | None = None
    ci_method: str | None = None
    train_accuracy: float | None = None


@dataclass
class Rung:
    """One protocol of a leakage ladder: the same model and settings under a leakier or stricter split.

    ``order`` 0 is the leakiest protocol; ``level`` is a split level (:data:`SPLIT_LEVELS`)
    or ``augmented`` (augmented copies of one image on both sides). Accuracies are pooled
    over ``splits`` split seeds or folds; ``sd`` is across them.
    """

    dataset: str
    order: int
    protocol: str
    level: str
    model: str
    test_accuracy: float
    ci_low: float
    ci_high: float
    n_test: int
    splits: int = 1
    sd: float | None = None
    train_accuracy: float | None = None
    ci_method: str = "Clopper-Pearson"


@dataclass
class LeakageMeasurement:
    """The accuracy of one model under one protocol, leaky or not."""

    name: str
    model: str
    leaky: bool
    mean: float | None
    ci_low: float | None
    ci_high: float | None


@dataclass
class Difference:
    """Leaky minus clean accuracy, with its bootstrap CI."""

    value: float
    ci_low: float
    ci_high: float
    n_boot: int


@dataclass
class Leakage:
    """Measurements of one model under leaky and clean protocols, their difference, and leak counts."""

    measurements: list[LeakageMeasurement]
    difference: Difference | None = None
    counts: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class Environment:
    """Where and with what a result was computed.

    ``commit`` ends in ``+dirty`` when tracked files outside ``reports/`` differ from it;
    ``diff_sha256`` is then the SHA-256 of that difference (``git diff HEAD``), so two
    results from the same uncommitted code can be told apart from others.
    """

    python: str
    packages: dict[str, str | None]
    device: dict[str, Any]
    commit: str | None
    precision: dict[str, Any] | None = None
    diff_sha256: str | None = None
    distribution: dict[str, Any] | None = None


@dataclass
class Results:
    """The whole ``results.json`` of one notebook run."""

    notebook: str
    profile: str
    started_utc: str
    wall_time_s: float
    environment: Environment
    parameters: dict[str, Any]
    version: int = VERSION
    paper: str | None = None
    protocol: Protocol | None = None
    models: list[ModelRow] = field(default_factory=list)
    leakage: Leakage | None = None
    ladder: list[Rung] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)
    verdict: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    rehearsal: bool = False
    cuts: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------- validation

def _check(value, hint, where: str):
    """``value`` converted to ``hint`` (dataclasses built from dicts), or a :class:`RecordError`."""
    if hint is Any:
        return to_jsonable(value)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _check(value, option, where)
            except RecordError as error:
                errors.append(str(error))
        raise RecordError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {options}")
    if dataclasses.is_dataclass(hint):
        if dataclasses.is_dataclass(value):
            value = dataclasses.asdict(value)
        if not isinstance(value, dict):
            raise RecordError(f"{where}: expected an object ({hint.__name__}), got {type(value).__name__}")
        return from_dict(hint, value, where)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise RecordError(f"{where}: expected a list, got {type(value).__name__}")
        return [_check(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where}: expected an object, got {type(value).__name__}")
        return {str(k): _check(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise RecordError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise RecordError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if hint is bool:
        if not isinstance(value, (bool, np.bool_)):
            raise RecordError(f"{where}: expected true or false, got {value!r}")
        return bool(value)
    if hint is str:
        if not isinstance(value, str):
            raise RecordError(f"{where}: expected a string, got {value!r}")
        return value
    raise RecordError(f"{where}: the format has no rule for {hint}")


def from_dict(cls, data: dict, where: str | None = None):
    """A ``cls`` dataclass built from ``data``; unknown or missing keys and wrong types raise :class:`RecordError`."""
    where = where or cls.__name__
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise RecordError(f"{where}: unknown field(s) {unknown}; {cls.__name__} knows {sorted(fields)}")
    missing = [name for name, f in fields.items() if name not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise RecordError(f"{where}: missing field(s) {missing}")
    values = {name: _check(data[name], hints[name], f"{where}.{name}") for name in fields if name in data}
    built = cls(**values)
    _rules(built, where)
    return built


def _rules(built, where: str) -> None:
    """Constraints beyond types."""
    if isinstance(built, Results) and built.version != VERSION:
        raise RecordError(f"{where}: format version {built.version}, this library reads version {VERSION}; "
                          "rerun the notebook to rewrite it")
    if isinstance(built, Split) and built.level not in SPLIT_LEVELS:
        raise RecordError(f"{where}.level: {built.level!r} is not one of {list(SPLIT_LEVELS)}")
    if isinstance(built, ModelRow) and built.split_level is not None and built.split_level not in SPLIT_LEVELS:
        raise RecordError(f"{where}.split_level: {built.split_level!r} is not one of {list(SPLIT_LEVELS)}")
    if isinstance(built, Rung) and built.level not in (*SPLIT_LEVELS, "augmented"):
        raise RecordError(f"{where}.level: {built.level!r} is not one of {[*SPLIT_LEVELS, 'augmented']}")
    if isinstance(built, ModelRow) and built.paper_value is not None and built.paper_model is None:
        raise RecordError(f"{where}: paper_value without paper_model (which of the paper's models is it?)")
    if isinstance(built, Results) and built.rehearsal != bool(built.cuts):
        raise RecordError(f"{where}: a rehearsal records its cuts, and only a rehearsal has cuts (rehearsal="
                          f"{built.rehearsal}, {len(built.cuts)} cut(s))")


def validate(results: Results) -> Results:
    """``results`` after a round trip through JSON and :func:`from_dict` (raises on anything off-format)."""
    return from_dict(Results, json.loads(json.dumps(to_dict(results))))


def to_dict(results) -> dict:
    """The JSON-able dict of a record dataclass (non-finite floats become None)."""
    return to_jsonable(dataclasses.asdict(results))


def write(results: Results, path) -> Path:
    """Validate ``results`` and write it atomically as JSON."""
    checked = validate(results)
    write_json_atomic(Path(path), to_dict(checked))
    return Path(path)


def read(path) -> Results:
    """A validated :class:`Results` from a ``results.json``."""
    path = Path(path)
    try:
        return from_dict(Results, json.loads(path.read_text()), str(path))
    except json.JSONDecodeError as error:
        raise RecordError(f"{path}: not JSON ({error})") from error


def read_all(folder, exclude=()) -> dict[str, Results]:
    """Every ``<notebook>/results.json`` under ``folder`` but those of the ``exclude`` stems (not read at all),
    keyed by notebook stem."""
    return {path.parent.name: read(path) for path in sorted(Path(folder).glob("*/results.json"))
            if path.parent.name not in exclude}


# ---------------------------------------------------------------------------- environment and files

def package_versions() -> dict:
    """Installed versions of the packages a result depends on."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_description() -> dict:
    """CPU / GPU the run used, as TensorFlow sees them."""
    import tensorflow as tf  # here, so that reading and writing records (the runner, the tools) needs no TensorFlow

    gpus = tf.config.list_physical_devices("GPU")
    details = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "gpus": details, "kind": "GPU" if gpus else "CPU"}


def environment() -> Environment:
    """Everything needed to say where and with what a result was computed (device, precision policy, versions)."""
    from . import training

    return Environment(platform.python_version(), package_versions(), device_description(), git_commit(),
                       training.precision_record(), git_diff_sha256(), training.distribution_record())


OUTSIDE_REPORTS = (".", ":(exclude)reports")  # results written by runs do not make the code dirty


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo_root(), capture_output=True, text=True, check=True).stdout


def dirty_files() -> list[str] | None:
    """Tracked files outside ``reports/`` that differ from the commit (None without git)."""
    try:
        status = _git("status", "--porcelain", "--untracked-files=no", "--", *OUTSIDE_REPORTS)
    except (OSError, subprocess.CalledProcessError):
        return None
    return [line[3:] for line in status.splitlines() if line.strip()]


def git_commit() -> str | None:
    """The checkout's commit (with ``+dirty`` when code outside ``reports/`` has uncommitted changes), if git is
    there."""
    try:
        head = _git("rev-parse", "--short", "HEAD").strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty_files() else "")


def git_diff_sha256() -> str | None:
    """SHA-256 of ``git diff HEAD`` outside ``reports/`` when the tree is dirty, else None."""
    if not dirty_files():
        return None
    return hashlib.sha256(_git("diff", "--binary", "HEAD", "--", *OUTSIDE_REPORTS).encode()).hexdigest()


def to_jsonable(value):
    """Convert NumPy / pandas / Path values so that ``json.dumps`` accepts them."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pd.DataFrame):
        return to_jsonable(value.to_dict(orient="records"))
    if isinstance(value, Path):
        return str(value)
    return value


def write_json_atomic(path: Path, payload) -> None:
    """Write JSON to a temporary file and rename it, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(payload), indent=2, sort_keys=False))
    os.replace(tmp, path)


def markdown_table(table: pd.DataFrame, index: bool = False, floatfmt: str = ".4f") -> str:
    """A GitHub-flavoured Markdown table (no extra dependency)."""
    frame = table.reset_index() if index else table

    def cell(v):
        if v is None or v is pd.NA or (not isinstance(v, str) and pd.isna(v)):
            return ""
        if isinstance(v, (float, np.floating)):
            return "" if not np.isfinite(v) else format(v, floatfmt)
        return str(v)
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


# ---------------------------------------------------------------------------- one notebook run

class Run:
    """One run of a notebook: its output folder, its timer, and the :class:`Results` it writes at the end."""

    def __init__(self, notebook: str, output_dir, params: dict, paper: str | None = None):
        self.notebook = notebook
        self.paper = paper
        self.dir = Path(output_dir) / notebook
        self.dir.mkdir(parents=True, exist_ok=True)
        self.params = dict(params)
        self.started = dt.datetime.now(dt.timezone.utc)
        self._t0 = time.perf_counter()
        self.figures: dict[str, str] = {}
        self.tables: dict[str, str] = {}
        self.own_data: str | None = None  # display name of the user's own images, when the run used them
        self.rehearsal_cuts: list[str] | None = None  # the parameters' cuts, in a rehearsal of the paper profile

    def path(self, name: str) -> Path:
        """A file in this run's folder (sub-folders created)."""
        target = self.dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def relative(self, path) -> str:
        """``path`` relative to this run's folder, as results.json names files."""
        return str(Path(path).relative_to(self.dir))

    def save_figure(self, figure, name: str) -> str:
        """Save a matplotlib figure as ``figures/<name>.png``; returns (and records) its relative path."""
        target = self.path(f"figures/{name}.png")
        if self.rehearsal_cuts is not None and not getattr(figure, "_rehearsal_marked", False):
            figure.text(0.5, 1.0, rehearsal.BANNER, ha="center", va="bottom", color="darkred", fontweight="bold")
            figure._rehearsal_marked = True
        figure.savefig(target, dpi=110, bbox_inches="tight")
        self.figures[name] = self.relative(target)
        return self.figures[name]

    def save_predictions(self, table: pd.DataFrame, name: str) -> str:
        """Save per-image predictions as ``predictions/<name>.csv``; returns its relative path.

        The ``path`` column is written relative to the images' common folder (the dataset
        root), so that the file names no folder of this machine.
        """
        table = table.copy()
        if "path" in table:
            table["path"] = portable_paths(table["path"].astype(str))
        target = self.path(f"predictions/{name}.csv")
        table.to_csv(target, index=False)
        return self.relative(target)

    def save_table(self, table: pd.DataFrame, name: str, index: bool = False, floatfmt: str = ".4f") -> str:
        """Save a table as ``tables/<name>.csv`` and ``tables/<name>.md``; returns (and records) the CSV's path."""
        csv = self.path(f"tables/{name}.csv")
        banner = ""
        if self.rehearsal_cuts is not None:
            table = table.assign(**{REHEARSAL_COLUMN: True})
            banner = f"**{rehearsal.BANNER}**\n\n"
        table.to_csv(csv, index=index)
        self.path(f"tables/{name}.md").write_text(banner + markdown_table(table, index=index, floatfmt=floatfmt) + "\n")
        self.tables[name] = self.relative(csv)
        return self.tables[name]

    def finish(self, protocol: Protocol | None = None, models: list[ModelRow] = (), leakage: Leakage | None = None,
               verdict: str | None = None, details: dict | None = None, ladder: list[Rung] = ()) -> Results:
        """Write ``results.json`` (validated) with everything saved, the environment and the wall time.

        A run on own images (``own_data``) is judged against no paper: its rows carry no
        paper model or value, ``paper`` is empty, and the verdict names the images.
        """
        paper = self.paper
        if self.own_data:
            paper = None
            models = [dataclasses.replace(m, paper_model=None, paper_value=None) for m in models]
            if verdict is not None and self.own_data not in verdict:
                verdict = f"Own images {self.own_data}. {verdict}"
        results = Results(notebook=self.notebook, paper=paper, profile=self.params.get("profile"),
                          parameters=to_jsonable(self.params),
                          started_utc=self.started.isoformat(timespec="seconds"),
                          wall_time_s=round(time.perf_counter() - self._t0, 2), environment=environment(),
                          protocol=protocol, models=list(models), leakage=leakage, ladder=list(ladder),
                          figures=dict(self.figures),
                          tables=dict(self.tables), verdict=verdict, details=to_jsonable(details or {}),
                          rehearsal=self.rehearsal_cuts is not None)
        if self.rehearsal_cuts is not None:
            results.cuts = rehearsal.record(self.rehearsal_cuts, results.environment.distribution) or [
                "none: this notebook ran as the paper profile would"]
        write(results, self.dir / "results.json")
        return results
