"""Run the numbered notebooks with a profile through papermill and publish the reports.

``python -m hemasuite.tools.runner --profile cpu [--notebooks 00 10] [-p epochs=3]``

Before any notebook starts, every parameter is checked (:mod:`hemasuite.parameters`), an
explicit ``--data-dir`` must exist, and a ``cpu`` or ``paper`` run refuses a working tree
with uncommitted changes outside ``reports/`` (``--allow-dirty`` lets it run; results.json
then records the diff's SHA-256). One run of a profile at a time holds a lock.

Each notebook executes in its own staging folder, emptied first. Only when it succeeds do
its executed notebook, HTML rendering and results replace the ones under
``reports/<profile>/``; a failure is recorded with its error in ``reports/<profile>/runs.json``
(a killed run is found and recorded as ``killed`` by the next one), the last good report
stays, and the command exits non-zero. A notebook that declares a ``results_dir`` parameter
(the comparison) is given the published results folder of the profile. ``--dataset
folder:/path`` runs the notebooks on your own images (``--reports`` must then name a folder
outside the checkout's ``reports/``). Progress (cell, step, epochs with ETA) is printed as
the notebook runs. ``--profile paper --rehearse`` rehearses the paper profile on this machine
(:mod:`hemasuite.rehearsal`) into ``reports/rehearsal/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import json
import logging
import os
import re
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import nbformat
import papermill
import yaml
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbconvert import HTMLExporter

from .. import config, parameters, rehearsal
from ..errors import ParameterError, SuiteError
from ..record import dirty_files, write_json_atomic
from . import rehearsal_data
from .progress import ANSI, Progress, cell_seconds
from .site import COMPARISON, STARTUP_NOISE, build_site, path_cleaner

KERNEL = "hemasuite"
SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.IGNORECASE | re.DOTALL)
CLEAN_TREE_PROFILES = ("cpu", "paper")  # their results are committed: they must come from committed code
RUNNER_PARAMETERS = {"output_dir", "data_dir", "results_dir"}


class RunnerError(SuiteError):
    """The runner cannot start: another run holds the profile's lock, or the working tree is dirty."""


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


def strip_machine_paths(notebook: Path, reports: Path) -> None:
    """Rewrite this machine's absolute paths in the notebook's papermill record, injected parameters and text outputs
    (:func:`~hemasuite.tools.site.path_cleaner`: data folders as ``$LEUKEMIA_DATA_DIR``, the checkout's files
    relative to it), so a published notebook reads the same on any machine."""
    clean = path_cleaner(reports, {})
    nb = nbformat.read(notebook, 4)
    run_record = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        if isinstance(run_record.get(key), str):
            run_record[key] = clean(run_record[key])
    for key, value in run_record.get("parameters", {}).items():
        if isinstance(value, str):
            run_record["parameters"][key] = clean(value)
    for cell in nb.cells:
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            cell["source"] = clean(cell["source"])
        for output in cell.get("outputs", []):
            if isinstance(output.get("text"), str):
                output["text"] = clean(output["text"])
            for kind, value in output.get("data", {}).items():
                if kind.startswith("text/") and isinstance(value, str):
                    output["data"][kind] = clean(value)
    nbformat.write(nb, notebook)


def strip_machine_paths_in_results(folder: Path, reports: Path) -> None:
    """Rewrite this machine's absolute paths in a run's ``results.json`` and ``tables/`` as
    :func:`strip_machine_paths` does in the notebook. Split manifests are left as written: they
    name images relative to their dataset already, and results.json holds their hashes."""
    clean = path_cleaner(reports, {})
    for path in [folder / "results.json", *sorted((folder / "tables").glob("*"))]:
        if path.suffix in (".json", ".csv", ".md") and path.is_file():
            path.write_text(clean(path.read_text()))


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


def error_text(error: Exception) -> str:
    """A failed notebook's error for runs.json: the end of the traceback, then ``Exception: message`` as the last
    line (what the report index shows)."""
    name = getattr(error, "ename", None) or type(error).__name__
    message = getattr(error, "evalue", None) if getattr(error, "ename", None) else str(error)
    summary = f"{name}: {ANSI.sub('', str(message or '')).strip()}"
    tail = ANSI.sub("", str(error)).strip()[-2000:]
    return f"{tail}\n{summary}" if tail and not tail.endswith(summary) else summary


def mark_rehearsal(notebook: Path) -> None:
    """Put the rehearsal banner above the executed notebook's first cell (its page and HTML open with it)."""
    nb = nbformat.read(notebook, 4)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(f"> **{rehearsal.BANNER}.** Every number below comes from a "
                                                     "few images, one epoch and one resample; see `cuts` in "
                                                     "results.json."))
    nbformat.write(nb, notebook)


def folder_name(profile: str) -> str:
    """The reports sub-folder of a run: the profile's name, or ``rehearsal`` in a rehearsal."""
    return rehearsal.FOLDER if rehearsal.active() else profile


def run_one(path: Path, profile: str, overrides: dict, reports: Path, data_dir: str | None) -> dict:
    """Execute one notebook in its own (emptied) staging folder; publish it only on success. Returns its record."""
    stem = path.stem
    folder = folder_name(profile)
    staging = reports / ".staging" / folder / stem
    if staging.exists():
        shutil.rmtree(staging)  # a failed or killed run's files are never published by a later one
    staging_results = staging / "results"
    (staging / "tmp").mkdir(parents=True)
    params = notebook_run_parameters(path, profile, overrides, reports, data_dir)
    params["output_dir"] = str(staging_results)
    executed = staging / f"{stem}.ipynb"
    record = {"notebook": stem, "profile": profile, "parameters": portable_parameters(params, reports, folder),
              "pid": os.getpid(),
              "started_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    update_status(reports, folder, [{**record, "status": "running"}])
    start = time.perf_counter()
    try:
        with progress_printer(path, f"[{folder}] {stem}") as progress, \
                open(staging / "kernel_stderr.log", "ab") as kernel_log:
            papermill.execute_notebook(str(path), str(executed), parameters=params, kernel_name=kernel_name(),
                                       cwd=str(path.parent), progress_bar=False, log_output=True,
                                       stdout_file=progress, stderr_file=progress,
                                       kernel_manager_class=staged_kernel_manager(kernel_log, staging / "tmp"))
    except KeyboardInterrupt:
        record.update(status="killed", seconds=round(time.perf_counter() - start, 1),
                      error="KeyboardInterrupt: the run was interrupted")
        update_status(reports, folder, [record])
        raise
    except Exception as error:  # papermill raises PapermillExecutionError with the cell's traceback
        record.update(status="failed", seconds=round(time.perf_counter() - start, 1), error=error_text(error),
                      failed_notebook=str(executed))
        return record
    published = reports / folder
    published.mkdir(parents=True, exist_ok=True)
    cells = cell_seconds(executed, path)
    drop_startup_noise(executed)
    strip_machine_paths(executed, reports)
    if rehearsal.active():
        mark_rehearsal(executed)
    render_html(executed, staging / f"{stem}.html")
    if (staging_results / stem).exists():
        strip_machine_paths_in_results(staging_results / stem, reports)
        replace_tree(staging_results / stem, published / "results" / stem)
    for suffix in (".ipynb", ".html"):
        shutil.move(str(staging / f"{stem}{suffix}"), str(published / f"{stem}{suffix}"))
    shutil.rmtree(staging, ignore_errors=True)
    record.update(status="ok", seconds=round(time.perf_counter() - start, 1),
                  html=f"{folder}/{stem}.html", notebook_file=f"{folder}/{stem}.ipynb", cells=cells)
    return record


def staged_kernel_manager(log, temp: Path):
    """A kernel manager class whose kernels write their process stderr (TensorFlow's C++ start-up lines, the kernel
    app's own messages) to the file ``log`` instead of the terminal, and their temporary files (TensorFlow's
    autograph modules, for one) into the folder ``temp``, removed with the staging folder; cell outputs reach the
    notebook as always."""
    class StagedKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd, **kw):
            kw["stderr"] = log
            kw["env"] = {**(kw.get("env") or os.environ), "TMPDIR": str(temp)}
            return await super()._async_launch_kernel(kernel_cmd, **kw)

    return StagedKernelManager


@contextmanager
def progress_printer(path: Path, label: str):
    """A :class:`Progress` attached to papermill's logger (cell markers) for the duration of one notebook."""
    logger = logging.getLogger("papermill")
    progress = Progress(path, label)
    saved = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False  # papermill logs the kernel's stderr as warnings: printed once, filtered, by Progress
    logger.addHandler(progress)
    try:
        yield progress
    finally:
        logger.removeHandler(progress)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def update_status(reports: Path, profile: str, records: list[dict]) -> Path:
    """Merge records into ``reports/<profile>/runs.json``, keeping the last good run of each notebook."""
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


def record_killed(reports: Path, profile: str) -> list[str]:
    """Attempts still marked ``running`` in runs.json (their run was killed: the lock is ours now) become ``killed``."""
    path = reports / profile / "runs.json"
    if not path.exists():
        return []
    stale = [entry["last_attempt"] for entry in json.loads(path.read_text()).values()
             if entry.get("last_attempt", {}).get("status") == "running"]
    update_status(reports, profile, [{**attempt, "status": "killed",
                                      "error": "Killed: the run ended without recording a result (killed, or the "
                                               "machine stopped)"} for attempt in stale])
    return [attempt["notebook"] for attempt in stale]


@contextmanager
def profile_lock(reports: Path, profile: str):
    """Hold ``reports/.staging/<profile>.lock`` so that two runs of one profile cannot mix their files."""
    path = reports / ".staging" / f"{profile}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown process"
            raise RunnerError(f"another run of profile {profile!r} is in progress ({holder}; lock {path}); wait "
                              "for it to finish or stop that process") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}, started {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}")
        handle.flush()
        try:
            yield path
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def portable_parameters(params: dict, reports: Path, folder: str) -> dict:
    """``params`` as runs.json records them, naming no folder of this machine: the results folders as published
    (``reports/<profile>/results``), a data folder relative to the checkout."""
    shown = dict(params)
    for name in ("output_dir", "results_dir"):
        if name in shown:
            shown[name] = f"{reports.name}/{folder}/results"
    if shown.get("data_dir") and Path(shown["data_dir"]).is_absolute():
        shown["data_dir"] = os.path.relpath(shown["data_dir"], config.repo_root())
    return shown


def notebook_run_parameters(path: Path, profile: str, overrides: dict, reports: Path, data_dir: str | None) -> dict:
    """The parameters the runner gives one notebook: the profile's (cut in a rehearsal), the overrides, the data and
    results folders."""
    params = config.notebook_parameters(profile, path.stem)
    if rehearsal.active():
        params = rehearsal.cut_parameters(params)[0]
    params.update(overrides or {})
    declared = notebook_parameter_names(path)
    if "results_dir" in declared:
        params["results_dir"] = str((reports / folder_name(profile) / "results").resolve())
    if data_dir:
        params["data_dir"] = data_dir
    return params


def own_dataset_overrides(path: Path, dataset: str | None) -> dict:
    """``--dataset``'s value as the notebook's ``dataset`` or ``datasets`` parameter (whichever it declares)."""
    if not dataset:
        return {}
    declared = notebook_parameter_names(path)
    if "dataset" in declared:
        return {"dataset": dataset}
    return {"datasets": [dataset]} if "datasets" in declared else {}


def check_before_running(paths: list[Path], profile: str, overrides: dict, reports: Path, data_dir: str | None,
                         dataset: str | None, allow_dirty: bool) -> dict[Path, dict]:
    """Every check that needs no work, for every notebook, before the first starts; returns each one's overrides.

    Unknown parameters, values outside :data:`hemasuite.parameters.SCHEMA`, a ``--data-dir``
    that does not exist, own images written into the checkout's ``reports/``, and (``cpu``,
    ``paper``) a dirty working tree are errors.
    """
    if data_dir and not Path(data_dir).expanduser().is_dir():
        raise ParameterError(f"--data-dir {data_dir} does not exist (given explicitly, so ${config.DATA_ENV} is not "
                             "used)")
    per_notebook = {}
    for path in paths:
        chosen = {**(overrides or {}), **own_dataset_overrides(path, dataset)}
        params = notebook_run_parameters(path, profile, chosen, reports, data_dir)
        config.check_known(params, notebook_parameter_names(path) | RUNNER_PARAMETERS, f"notebook {path.stem}")
        parameters.check(params, parameters.notebook_defaults(path), f"notebook {path.stem}")
        if parameters.own_image_names(params) and Path(reports).resolve().is_relative_to(
                (config.repo_root() / "reports").resolve()):
            raise ParameterError(f"notebook {path.stem} runs on your own images: give --reports DIR, a folder "
                                 "outside the checkout's reports/ (which holds the committed results)")
        per_notebook[path] = chosen
    if profile in CLEAN_TREE_PROFILES and not allow_dirty and not rehearsal.active():
        dirty = dirty_files()
        if dirty:
            raise RunnerError(f"profile {profile!r} needs a clean working tree (its results are committed) but "
                              f"{len(dirty)} tracked file(s) outside reports/ have uncommitted changes: "
                              f"{', '.join(dirty[:8])}. Commit them, or pass --allow-dirty (results.json then "
                              "records the diff's SHA-256).")
    return per_notebook


@contextmanager
def rehearsal_mode(on: bool, eager: bool = False, quick: bool = False):
    """``$HEMASUITE_REHEARSAL`` set to 1 (``on``), ``eager`` or ``quick``, or removed while the notebooks run; their
    kernels inherit it."""
    saved = os.environ.pop(rehearsal.ENV, None)
    if on:
        os.environ[rehearsal.ENV] = rehearsal.QUICK if quick else rehearsal.EAGER if eager else "1"
    try:
        yield
    finally:
        os.environ.pop(rehearsal.ENV, None)
        if saved is not None:
            os.environ[rehearsal.ENV] = saved


def run_notebooks(profile: str, selection: list[str] | None = None, overrides: dict | None = None,
                  reports: Path | None = None, data_dir: str | None = None,
                  notebook_dir: Path | None = None, dataset: str | None = None,
                  allow_dirty: bool = False, rehearse: bool = False, eager: bool = False,
                  quick: bool = False) -> list[dict]:
    """Run the selected notebooks under ``profile``; returns one status record per notebook.

    ``dataset`` (a dataset name or ``folder:/path/to/root``) becomes each notebook's
    ``dataset`` or ``datasets`` parameter. ``rehearse`` runs the ``paper`` profile as a
    rehearsal (:mod:`hemasuite.rehearsal`) into ``reports/rehearsal/``, on a data root that
    links the real datasets present and generates the others (:func:`rehearsal_data.data_root`);
    ``eager`` runs its training and inference steps eagerly; ``quick`` (the test suite's rehearsal) does too, and
    keeps the first of each list of alternatives only (:data:`hemasuite.rehearsal.ALTERNATIVES`).
    """
    config.profile(profile)
    for flag, given in (("--eager", eager), ("--quick", quick)):
        if given and not rehearse:
            raise ParameterError(f"{flag} applies to a rehearsal only: add --rehearse")
    if rehearse and profile != rehearsal.PROFILE:
        raise ParameterError(f"--rehearse rehearses the {rehearsal.PROFILE!r} profile, not {profile!r}: give "
                             f"--profile {rehearsal.PROFILE} or no --profile")
    default_reports = config.repo_root() / "reports"
    reports = Path(reports or default_reports)
    with rehearsal_mode(rehearse, eager, quick):
        if rehearse:
            if data_dir and not Path(data_dir).expanduser().is_dir():
                raise ParameterError(f"--data-dir {data_dir} does not exist")
            data_dir = str(rehearsal_data.data_root(reports / rehearsal.FOLDER / ".data", data_dir))
        return _run_all(profile, discover(selection, notebook_dir), overrides, reports, data_dir, dataset,
                        allow_dirty)


def _run_all(profile, paths, overrides, reports, data_dir, dataset, allow_dirty) -> list[dict]:
    folder = folder_name(profile)
    per_notebook = check_before_running(paths, profile, overrides or {}, reports, data_dir, dataset, allow_dirty)
    records = []
    with profile_lock(reports, folder):
        killed = record_killed(reports, folder)
        if killed:
            print(f"[{folder}] recorded as killed (their run ended without a result): {', '.join(killed)}",
                  flush=True)
        for path in paths:
            print(f"[{folder}] {path.stem} ...", flush=True)
            record = run_one(path, profile, per_notebook[path], reports, data_dir)
            print(f"[{folder}] {path.stem}: {record['status']} in {record['seconds']} s", flush=True)
            if record["status"] != "ok":
                print(f"  error: {record['error'][-800:]}\n  executed notebook kept at {record['failed_notebook']}",
                      file=sys.stderr)
            records.append(record)
            update_status(reports, folder, [record])
        print(f"report site: {build_site(reports, (folder,))}", flush=True)
    if (folder == "cpu" and reports.resolve() == (config.repo_root() / "reports").resolve()
            and any(r["notebook"] == COMPARISON and r["status"] == "ok" for r in records)):
        from .readme import update_readme  # here: it reads the comparison, which loads TensorFlow

        print(f"results page (comparison and ladder tables) updated: {update_readme(reports)}", flush=True)
    return records


def parse_runner_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line: ``--profile``, ``--notebooks``, ``-p key=value [key=value ...]`` (repeatable), ``--dataset``,
    ``--data-dir``, ``--reports``, ``--allow-dirty``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", help="profile name from notebooks/profiles.yaml (default: smoke; paper with "
                                          "--rehearse)")
    parser.add_argument("--notebooks", nargs="*", help="notebook stems or number prefixes (default: all)")
    parser.add_argument("-p", "--param", nargs="+", action="extend", default=[],
                        help="override parameters: key=value [key=value ...]")
    parser.add_argument("--dataset", help="dataset of every selected notebook, e.g. folder:/path/to/images "
                                          "(one sub-folder per class); sets 'dataset' or 'datasets'")
    parser.add_argument("--data-dir", help="data root (default: $LEUKEMIA_DATA_DIR); must exist")
    parser.add_argument("--reports", help="reports folder (default: <repo>/reports; own images need their own)")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="run the cpu / paper profile on uncommitted code (results.json records the diff's hash)")
    parser.add_argument("--rehearse", action="store_true",
                        help="rehearse the paper profile on this machine: its code paths with the work cut, into "
                             "reports/rehearsal/ (make rehearse)")
    parser.add_argument("--eager", action="store_true",
                        help="with --rehearse: training and inference steps run eagerly, not as compiled graphs "
                             "(quicker here)")
    parser.add_argument("--quick", action="store_true",
                        help="with --rehearse: eager steps, and the first of each list of networks, stain variants "
                             "or candidate settings only (make test's rehearsal)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_runner_arguments(argv)
    args.profile = args.profile or (rehearsal.PROFILE if args.rehearse else "smoke")
    try:
        records = run_notebooks(args.profile, args.notebooks, parse_overrides(args.param), args.reports,
                                args.data_dir, dataset=args.dataset, allow_dirty=args.allow_dirty,
                                rehearse=args.rehearse, eager=args.eager, quick=args.quick)
    except SuiteError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    failed = [r["notebook"] for r in records if r["status"] != "ok"]
    if failed:
        print(f"{len(failed)} notebook(s) failed: {', '.join(failed)} (last good reports kept)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
