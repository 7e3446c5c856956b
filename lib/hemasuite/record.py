"""The one results format: ``results.json`` as typed, versioned pydantic dataclasses.

Every notebook writes a :class:`Results` (through :meth:`Run.finish`) and every tool reads
one back (:func:`read`); both directions are validated by the dataclasses below, so a key
the format does not know, a missing key, a value of the wrong type or a broken rule is a
:class:`RecordError` that names where it is. Fields:

- :class:`Protocol`: dataset, split (level ``image`` / ``duplicate`` / ``field`` / ``case``,
  fractions or folds, seed, manifest and its SHA-256), seeds, input size, augmentation, what was selected on what
  (:class:`Selection`, with every configuration tried and its validation score), and the
  deviations from the paper;
- one :class:`ModelRow` per model: accuracy per seed and fold (cross-validation) or split
  seed (repeated splits), mean, sd, CI, the paper's value, weights and their source, train
  and inference images/s, the per-image predictions file, figures;
- :class:`Leakage`: the same model under a leaky and a clean protocol, and leak counts;
- figures, tables, the verdict, the :class:`Environment`.

``details`` (in :class:`Protocol` and :class:`Results`) holds notebook-specific material
(architectures, optimiser settings, validation summaries) that no tool reads.

:func:`json_schema` is the format as a JSON Schema (``python -m hemasuite.record --schema``
writes it; ``docs/results.schema.json`` is the published copy). The rules that tie fields
together (a rehearsal and its cuts, folds only in a cross-validation) are the record's alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
import hashlib
import json
import math
import os
import platform
import subprocess
import time
import typing
from dataclasses import field
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BeforeValidator, ConfigDict, Field, Strict, TypeAdapter, ValidationError, model_validator
from pydantic.dataclasses import dataclass

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


# ---------------------------------------------------------------------------- value types

def _plain(value):
    """A NumPy scalar as the Python value it holds."""
    return value.item() if isinstance(value, np.generic) else value


# Numbers and flags are strict (no "1" for 1, no true for 1, no 1.5 for an integer); NumPy scalars are welcome.
Int = Annotated[int, Strict(), BeforeValidator(_plain)]
Float = Annotated[float, Strict(), BeforeValidator(_plain)]
Bool = Annotated[bool, Strict(), BeforeValidator(_plain)]
Key = Annotated[str, BeforeValidator(str)]  # keys of objects: written as strings
Level = Literal[SPLIT_LEVELS]
RungLevel = Literal[(*SPLIT_LEVELS, "augmented")]


@typing.dataclass_transform(field_specifiers=(field,))
def _record(cls):
    """``cls`` as a pydantic dataclass that refuses unknown fields and raises :class:`RecordError` when built
    from values off the format."""
    cls = dataclass(config=ConfigDict(extra="forbid"))(cls)
    validated_init, names = cls.__init__, [f.name for f in dataclasses.fields(cls)]

    @functools.wraps(validated_init)
    def __init__(self, *args, **kwargs):
        if len(args) > len(names):
            raise TypeError(f"{cls.__name__} has {len(names)} fields, {len(args)} positional arguments given")
        try:  # positional arguments by name, so that an error names the field
            validated_init(self, **dict(zip(names, args)), **kwargs)
        except ValidationError as error:
            raise _record_error(error, cls.__name__) from None

    cls.__init__ = __init__
    return cls


# ---------------------------------------------------------------------------- the format

@_record
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


@_record
class Tried:
    """One configuration considered during selection, with its validation score."""

    configuration: str
    score: Float | None


@_record
class Selection:
    """What was selected (``what``: epoch, k, C, ...) for ``model``, on what data (``on``), and the candidates."""

    model: str
    what: str
    on: str
    chosen: list[str] = field(default_factory=list)
    tried: list[Tried] = field(default_factory=list)


@_record
class DatasetInfo:
    """The data a notebook used, marked when synthetic or a stand-in for the paper's."""

    name: str
    display_name: str
    classes: list[str]
    images: Int
    synthetic: Bool = False
    stand_in_for: str | None = None


@_record
class Split:
    """How training and test data were separated; ``level`` is the unit kept on one side.

    A cross-validation sets ``folds`` (and its ``method`` names folds); a single or a
    repeated split sets ``fractions``.
    """

    level: Level
    method: str
    seed: Int
    fractions: list[Float] | None = None
    folds: Int | None = None
    manifest: str | None = None
    manifest_sha256: str | None = None
    duplicates_merged: Int = 0
    same_field_pairs: Int | None = None
    counts: dict[Key, dict[Key, Int]] = field(default_factory=dict)

    @property
    def cross_validation(self) -> bool:
        """Folds rather than one or several train/test splits."""
        return self.folds is not None or "fold" in self.method.lower()


@_record
class Protocol:
    """Everything a replication did to data and models, and how it differs from the paper."""

    dataset: DatasetInfo
    split: Split
    seeds: list[Int]
    input_size: list[Int]
    preprocess: str = "resize (bilinear)"
    augmentation: dict[Key, Any] | None = None
    selection: list[Selection] = field(default_factory=list)
    deviations: list[str] = field(default_factory=list)
    details: dict[Key, Any] = field(default_factory=dict)


@_record
class SeedValue:
    """One training seed of a model on one fold (cross-validation) or one split seed (repeated splits), never both:
    its metric value, speed, and what selection chose."""

    seed: Int
    value: Float
    fold: Int | None = None
    split_seed: Int | None = None
    train_images_per_s: Float | None = None
    inference_images_per_s: Float | None = None
    chosen: str | None = None

    @model_validator(mode="after")
    def _fold_or_split_seed(self):
        if self.fold is not None and self.split_seed is not None:
            raise ValueError(f"fold {self.fold} and split_seed {self.split_seed}: a run is a fold of a "
                             "cross-validation or one of repeated splits, not both")
        return self


@_record
class Spread:
    """Mean and standard deviation over seeds (sd is None for one seed)."""

    mean: Float | None
    sd: Float | None


@_record
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
    mean: Float | None
    sd: Float | None
    ci_low: Float | None
    ci_high: Float | None
    n_test: Int
    paper_model: str | None = None
    paper_value: Float | None = None
    metric: str = "accuracy"
    variant: str | None = None
    leaky: Bool = False
    train_images_per_s: Float | None = None
    inference_images_per_s: Float | None = None
    metrics: dict[Key, Spread] = field(default_factory=dict)
    predictions: str | None = None
    figures: dict[Key, str] = field(default_factory=dict)
    architecture: str | None = None
    split_level: Level | None = None
    ci_method: str | None = None
    train_accuracy: Float | None = None


@_record
class Rung:
    """One protocol of a leakage ladder: the same model and settings under a leakier or stricter split.

    ``order`` 0 is the leakiest protocol; ``level`` is a split level (:data:`SPLIT_LEVELS`)
    or ``augmented`` (augmented copies of one image on both sides). Accuracies are pooled
    over ``splits`` split seeds or folds; ``sd`` is across them.
    """

    dataset: str
    order: Int
    protocol: str
    level: RungLevel
    model: str
    test_accuracy: Float
    ci_low: Float
    ci_high: Float
    n_test: Int
    splits: Int = 1
    sd: Float | None = None
    train_accuracy: Float | None = None
    ci_method: str = "Clopper-Pearson"


@_record
class LeakageMeasurement:
    """The accuracy of one model under one protocol, leaky or not."""

    name: str
    model: str
    leaky: Bool
    mean: Float | None
    ci_low: Float | None
    ci_high: Float | None


@_record
class Difference:
    """Leaky minus clean accuracy, with its bootstrap CI."""

    value: Float
    ci_low: Float
    ci_high: Float
    n_boot: Int


@_record
class Leakage:
    """Measurements of one model under leaky and clean protocols, their difference, and leak counts."""

    measurements: list[LeakageMeasurement]
    difference: Difference | None = None
    counts: dict[Key, dict[Key, Float]] = field(default_factory=dict)


@_record
class Environment:
    """Where and with what a result was computed.

    ``commit`` ends in ``+dirty`` when tracked files outside ``reports/`` differ from it;
    ``diff_sha256`` is then the SHA-256 of that difference (``git diff HEAD``), so two
    results from the same uncommitted code can be told apart from others.
    """

    python: str
    packages: dict[Key, str | None]
    device: dict[Key, Any]
    commit: str | None
    precision: dict[Key, Any] | None = None
    diff_sha256: str | None = None
    distribution: dict[Key, Any] | None = None


@_record
class Results:
    """The whole ``results.json`` of one notebook run.

    Beyond the types: the format ``version`` is this library's; a rehearsal records its
    ``cuts`` and only a rehearsal has cuts; a row's ``paper_value`` names its
    ``paper_model``; and under a cross-validation a row's runs are folds (``seeds[].fold``),
    under a single or repeated split they are split seeds (``seeds[].split_seed``), never the
    other way round.
    """

    notebook: str
    profile: str
    started_utc: str
    wall_time_s: Float
    environment: Environment
    parameters: dict[Key, Any]
    version: Annotated[Int, Field(json_schema_extra={"const": VERSION})] = VERSION
    paper: str | None = None
    protocol: Protocol | None = None
    models: list[ModelRow] = field(default_factory=list)
    leakage: Leakage | None = None
    ladder: list[Rung] = field(default_factory=list)
    figures: dict[Key, str] = field(default_factory=dict)
    tables: dict[Key, str] = field(default_factory=dict)
    verdict: str | None = None
    details: dict[Key, Any] = field(default_factory=dict)
    rehearsal: Bool = False
    cuts: list[str] = field(default_factory=list)

    @model_validator(mode="after")
    def _rules(self):
        if self.version != VERSION:
            raise ValueError(f"format version {self.version}, this library reads version {VERSION}; rerun the "
                             "notebook to rewrite it")
        if self.rehearsal != bool(self.cuts):
            raise ValueError(f"a rehearsal records its cuts, and only a rehearsal has cuts (rehearsal="
                             f"{self.rehearsal}, {len(self.cuts)} cut(s))")
        split = self.protocol.split if self.protocol else None
        for i, row in enumerate(self.models):
            if row.paper_value is not None and row.paper_model is None:
                raise ValueError(f"models[{i}]: paper_value without paper_model (which of the paper's models is it?)")
            for j, run in enumerate(row.seeds):
                if split and split.cross_validation and run.split_seed is not None:
                    raise ValueError(f"models[{i}].seeds[{j}]: split_seed {run.split_seed} in a cross-validation "
                                     "(protocol.split): its runs are folds, recorded as fold")
                if split and not split.cross_validation and run.fold is not None:
                    raise ValueError(f"models[{i}].seeds[{j}]: fold {run.fold} in a split that is no cross-validation "
                                     "(protocol.split): a repeated split's seed is recorded as split_seed")
        return self


# ---------------------------------------------------------------------------- validation

_EXPECTED = {"float_type": "a number", "int_type": "an integer", "bool_type": "true or false",
             "string_type": "a string"}
_CONTAINERS = {"list_type": "a list", "dict_type": "an object", "dataclass_type": "an object",
               "dataclass_args_type": "an object"}


def _where(loc) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)


def _message(error: dict) -> str:
    """One pydantic error in the words of this format."""
    kind, value = error["type"], error.get("input")
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {value!r}"
    if kind in _CONTAINERS:
        return f"expected {_CONTAINERS[kind]}, got {type(value).__name__}"
    if kind == "literal_error":
        return f"{value!r} is not one of {error['ctx']['expected']}"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    return error["msg"]


def _record_error(error: ValidationError, where: str) -> RecordError:
    """A :class:`RecordError` naming ``where`` (a file or a class) and the field of every problem in ``error``."""
    unknown, missing, problems = {}, {}, []
    for item in error.errors():
        *parent, name = item["loc"] or ("",)
        if item["type"] == "unexpected_keyword_argument":
            unknown.setdefault(_where(parent), []).append(name)
        elif item["type"] in ("missing", "missing_argument"):
            missing.setdefault(_where(parent), []).append(name)
        else:
            problems.append(f"{where}{_where(item['loc'])}: {_message(item)}")
    problems += [f"{where}{at}: unknown field(s) {sorted(names)}" for at, names in unknown.items()]
    problems += [f"{where}{at}: missing field(s) {names}" for at, names in missing.items()]
    return RecordError("; ".join(problems))


@functools.cache
def _adapter(cls) -> TypeAdapter:
    return TypeAdapter(cls)


def from_dict(cls, data: dict, where: str | None = None):
    """A ``cls`` record dataclass built from ``data``; anything off the format raises :class:`RecordError`."""
    try:
        return _adapter(cls).validate_python(data)
    except ValidationError as error:
        raise _record_error(error, where or cls.__name__) from None


def validate(results: Results, where: str | None = None) -> Results:
    """``results`` after a round trip through JSON and :func:`from_dict` (raises on anything off-format)."""
    return from_dict(Results, json.loads(json.dumps(to_dict(results))), where)


def to_dict(results) -> dict:
    """The JSON-able dict of a record dataclass (non-finite floats become None)."""
    return to_jsonable(dataclasses.asdict(results))


def write(results: Results, path) -> Path:
    """Validate ``results`` and write it atomically as JSON."""
    checked = validate(results, str(path))
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


def json_schema() -> dict:
    """The JSON Schema (draft 2020-12) of ``results.json``, generated from :class:`Results`."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **_adapter(Results).json_schema()}


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
        env = environment()
        cuts = []
        if self.rehearsal_cuts is not None:
            cuts = rehearsal.record(self.rehearsal_cuts, env.distribution) or [
                "none: this notebook ran as the paper profile would"]
        results = Results(notebook=self.notebook, paper=paper, profile=self.params.get("profile"),
                          parameters=to_jsonable(self.params),
                          started_utc=self.started.isoformat(timespec="seconds"),
                          wall_time_s=round(time.perf_counter() - self._t0, 2), environment=env,
                          protocol=protocol, models=list(models), leakage=leakage, ladder=list(ladder),
                          figures=dict(self.figures), tables=dict(self.tables), verdict=verdict,
                          details=to_jsonable(details or {}), rehearsal=self.rehearsal_cuts is not None, cuts=cuts)
        write(results, self.dir / "results.json")
        return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The results.json format.")
    parser.add_argument("--schema", action="store_true", help="print its JSON Schema (docs/results.schema.json)")
    if parser.parse_args().schema:
        print(json.dumps(json_schema(), indent=2))
    else:
        parser.print_help()
