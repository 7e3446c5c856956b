"""Run the numbered notebooks with a profile through papermill and publish the reports.

``python -m hemasuite.tools.runner --profile cpu [--notebooks 00 10] [-p epochs=3]``

Each notebook executes in a staging folder. Only when it succeeds do its executed
notebook, HTML rendering and results replace the ones under ``reports/<profile>/``; a
failure is recorded with its error in ``reports/<profile>/runs.json``, the last good
report stays, and the command exits non-zero. A notebook that declares a ``results_dir``
parameter (the comparison) is given the published results folder of the profile.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import sys
import time
from pathlib import Path

import nbformat
import papermill
import yaml
from jupyter_client.kernelspec import KernelSpecManager
from nbconvert import HTMLExporter

from .. import config
from ..errors import ParameterError
from ..papers import COMPARISON
from ..record import write_json_atomic
from .readme import update_readme
from .site import STARTUP_NOISE, build_site

KERNEL = "hemasuite"
SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.IGNORECASE | re.DOTALL)


def notebooks_dir() -> Path:
    """Folder of the numbered notebooks."""
    return config.repo_root() / "notebooks"


def discover(selection: list[str] | None = None, folder: Path | None = None) -> list[Path]:
    """The numbered notebooks, all or those whose stem starts with a selected prefix."""
    found = sorted(p for p in Path(folder or notebooks_dir()).glob("[0-9][0-9]_*.ipynb"))
    if not selection:
        return found
    chosen = []
    for prefix in selection:
        matches = [p for p in found if p.stem == prefix or p.stem.startswith(prefix + "_")]
        if not matches:
            raise ParameterError(f"no notebook matches {prefix!r}; available: {', '.join(p.stem for p in found)}")
        chosen += [m for m in matches if m not in chosen]
    return chosen


def parse_overrides(pairs: list[str]) -> dict:
    """``key=value`` strings (values parsed as YAML) into a dict."""
    overrides = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ParameterError(f"parameter override {pair!r} must look like key=value")
        key, value = pair.split("=", 1)
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def notebook_parameter_names(path: Path) -> set[str]:
    """Names defined in the notebook's ``parameters`` cell (papermill's own inspection)."""
    return set(papermill.inspect_notebook(str(path)))


def kernel_name() -> str:
    """The suite's registered kernel when present (``make kernel``), else the current Python."""
    return KERNEL if KERNEL in KernelSpecManager().find_kernel_specs() else "python3"


def drop_startup_noise(notebook: Path) -> int:
    """Remove TensorFlow's C++ start-up log lines from stderr outputs; returns how many.

    Only lines matching :data:`STARTUP_NOISE` go; any other stderr text (warnings,
    errors) stays in the report.
    """
    nb = nbformat.read(notebook, 4)
    dropped = 0
    for cell in nb.cells:
        kept = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                lines = output["text"].splitlines(keepends=True)
                clean = [line for line in lines if not STARTUP_NOISE.match(line.rstrip("\n"))]
                dropped += len(lines) - len(clean)
                if not "".join(clean).strip():
                    continue
                output["text"] = "".join(clean)
            kept.append(output)
        if "outputs" in cell:
            cell["outputs"] = kept
    if dropped:
        nbformat.write(nb, notebook)
    return dropped


def render_html(notebook: Path, target: Path) -> None:
    """Render an executed notebook to self-contained HTML that needs no network.

    Outputs are static (PNG figures embedded, tables as HTML), so every script, all of
    which nbconvert's template loads from CDNs (MathJax, RequireJS, Mermaid), is removed.
    """
    body, _ = HTMLExporter(template_name="lab", embed_images=True).from_notebook_node(nbformat.read(notebook, 4))
    target.write_text(SCRIPT.sub("", body), encoding="utf-8")


def replace_tree(source: Path, target: Path) -> None:
    """Swap ``target`` for ``source`` (old copy removed only after the new one is in place)."""
    old = target.with_name(target.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        target.rename(old)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(source), str(target))
    if old.exists():
        shutil.rmtree(old)


def run_one(path: Path, profile: str, overrides: dict, reports: Path, data_dir: str | None) -> dict:
    """Execute one notebook in staging; publish it only on success. Returns its status record."""
    stem = path.stem
    staging = reports / ".staging" / profile
    staging_results = staging / "results"
    staging.mkdir(parents=True, exist_ok=True)
    params = config.notebook_parameters(profile, stem, overrides)
    params["output_dir"] = str(staging_results)
    if "results_dir" in notebook_parameter_names(path):
        params["results_dir"] = str((reports / profile / "results").resolve())
    if data_dir:
        params["data_dir"] = data_dir
    executed = staging / f"{stem}.ipynb"
    record = {"notebook": stem, "profile": profile, "parameters": params,
              "started_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    start = time.perf_counter()
    try:
        papermill.execute_notebook(str(path), str(executed), parameters=params, kernel_name=kernel_name(),
                                   cwd=str(path.parent), progress_bar=False, log_output=False)
    except Exception as error:  # papermill raises PapermillExecutionError with the cell's traceback
        record.update(status="failed", seconds=round(time.perf_counter() - start, 1),
                      error=f"{type(error).__name__}: {str(error).strip()[-2000:]}", failed_notebook=str(executed))
        return record
    published = reports / profile
    published.mkdir(parents=True, exist_ok=True)
    drop_startup_noise(executed)
    render_html(executed, staging / f"{stem}.html")
    if (staging_results / stem).exists():
        replace_tree(staging_results / stem, published / "results" / stem)
    for suffix in (".ipynb", ".html"):
        shutil.move(str(staging / f"{stem}{suffix}"), str(published / f"{stem}{suffix}"))
    record.update(status="ok", seconds=round(time.perf_counter() - start, 1),
                  html=f"{profile}/{stem}.html", notebook_file=f"{profile}/{stem}.ipynb")
    return record


def update_status(reports: Path, profile: str, records: list[dict]) -> Path:
    """Merge this run's records into ``reports/<profile>/runs.json``, keeping the last good run of each."""
    path = reports / profile / "runs.json"
    status = json.loads(path.read_text()) if path.exists() else {}
    for record in records:
        entry = status.get(record["notebook"], {})
        entry["last_attempt"] = record
        if record["status"] == "ok":
            entry["last_good"] = record
        status[record["notebook"]] = entry
    write_json_atomic(path, status)
    return path


def run_notebooks(profile: str, selection: list[str] | None = None, overrides: dict | None = None,
                  reports: Path | None = None, data_dir: str | None = None,
                  notebook_dir: Path | None = None) -> list[dict]:
    """Run the selected notebooks under ``profile``; returns one status record per notebook."""
    config.profile(profile)
    reports = Path(reports or config.repo_root() / "reports")
    paths = discover(selection, notebook_dir)
    for path in paths:  # fail on unknown parameters before spending time on any notebook
        params = config.notebook_parameters(profile, path.stem, overrides)
        config.check_known(params, notebook_parameter_names(path) | {"output_dir", "data_dir", "results_dir"},
                           f"notebook {path.stem}")
    records = []
    for path in paths:
        print(f"[{profile}] {path.stem} ...", flush=True)
        record = run_one(path, profile, overrides or {}, reports, data_dir)
        print(f"[{profile}] {path.stem}: {record['status']} in {record['seconds']} s", flush=True)
        if record["status"] != "ok":
            print(f"  error: {record['error'][-800:]}\n  executed notebook kept at {record['failed_notebook']}",
                  file=sys.stderr)
        records.append(record)
        update_status(reports, profile, [record])
    print(f"report site: {build_site(reports, (profile,))}", flush=True)
    if profile == "cpu" and any(r["notebook"] == COMPARISON and r["status"] == "ok" for r in records):
        print(f"README comparison section updated: {update_readme(reports)}", flush=True)
    return records


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line: ``--profile``, ``--notebooks``, ``-p key=value [key=value ...]`` (repeatable)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke", help="profile name from notebooks/profiles.yaml")
    parser.add_argument("--notebooks", nargs="*", help="notebook stems or number prefixes (default: all)")
    parser.add_argument("-p", "--param", nargs="+", action="extend", default=[],
                        help="override parameters: key=value [key=value ...]")
    parser.add_argument("--data-dir", help="data root (default: $LEUKEMIA_DATA_DIR)")
    parser.add_argument("--reports", help="reports folder (default: <repo>/reports)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    try:
        records = run_notebooks(args.profile, args.notebooks, parse_overrides(args.param), args.reports, args.data_dir)
    except ParameterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    failed = [r["notebook"] for r in records if r["status"] != "ok"]
    if failed:
        print(f"{len(failed)} notebook(s) failed: {', '.join(failed)} (last good reports kept)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
