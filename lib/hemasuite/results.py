"""results.json, tables and figures of one notebook run, with protocol and environment."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

PACKAGES = ("hemasuite", "tensorflow", "keras", "numpy", "pandas", "scikit-learn", "scipy", "pillow",
            "matplotlib", "seaborn", "papermill", "nbval")


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
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    details = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "gpus": details, "kind": "GPU" if gpus else "CPU"}


def environment() -> dict:
    """Everything needed to say where and with what a result was computed (device, precision policy, versions)."""
    from .training import precision_record

    return {"python": platform.python_version(), "packages": package_versions(), "device": device_description(),
            "precision": precision_record(), "commit": git_commit()}


def git_commit() -> str | None:
    """The checkout's commit (with ``+dirty`` when it has uncommitted changes), if git is there."""
    import subprocess

    from .config import repo_root

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo_root(), capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo_root(),
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def to_jsonable(value):
    """Convert NumPy / pandas / Path values so that ``json.dumps`` accepts them."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
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


class Run:
    """One notebook run: its output folder, its timer, and what it will write to results.json."""

    def __init__(self, notebook: str, output_dir, params: dict):
        self.notebook = notebook
        self.dir = Path(output_dir) / notebook
        self.dir.mkdir(parents=True, exist_ok=True)
        self.params = dict(params)
        self.started = dt.datetime.now(dt.timezone.utc)
        self._t0 = time.perf_counter()
        self.sections: dict = {}

    def path(self, name: str) -> Path:
        """A file in this run's folder (sub-folders created)."""
        target = self.dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def save_figure(self, figure, name: str) -> Path:
        """Save a matplotlib figure as ``figures/<name>.png``."""
        target = self.path(f"figures/{name}.png")
        figure.savefig(target, dpi=110, bbox_inches="tight")
        return target

    def save_table(self, table: pd.DataFrame, name: str, index: bool = False, floatfmt: str = ".4f") -> Path:
        """Save a table as ``tables/<name>.csv`` and ``tables/<name>.md``."""
        csv = self.path(f"tables/{name}.csv")
        table.to_csv(csv, index=index)
        self.path(f"tables/{name}.md").write_text(markdown_table(table, index=index, floatfmt=floatfmt) + "\n")
        return csv

    def record(self, key: str, value) -> None:
        """Add a section (metrics, protocol, deviations, ...) to results.json."""
        self.sections[key] = to_jsonable(value)

    def finish(self) -> Path:
        """Write ``results.json`` with everything recorded, the environment and the wall time."""
        payload = {"notebook": self.notebook, "profile": self.params.get("profile"), "parameters": self.params,
                   "started_utc": self.started.isoformat(timespec="seconds"),
                   "wall_time_s": round(time.perf_counter() - self._t0, 2), "environment": environment(),
                   **self.sections}
        target = self.dir / "results.json"
        write_json_atomic(target, payload)
        return target


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


def load_results(output_dir) -> dict:
    """Every ``<notebook>/results.json`` under ``output_dir``, keyed by notebook stem."""
    found = {}
    for path in sorted(Path(output_dir).glob("*/results.json")):
        found[path.parent.name] = json.loads(path.read_text())
    return found
