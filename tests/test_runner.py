"""The papermill runner: publishes successes, keeps the last good report on failure."""

import json
import tempfile
from pathlib import Path

import nbformat
import pytest

from hemasuite.errors import ParameterError
from hemasuite.tools import runner

BODY = """
from hemasuite import session
import pandas as pd
import tempfile
run = session.start("{stem}", globals())
run.save_table(pd.DataFrame({{"where": [str(run.dir)]}}), "where")
tempfile.NamedTemporaryFile(prefix="left_by_{stem}_", delete=False).close()
if fail:
    raise RuntimeError("planted failure")
run.finish(details={{"value": value, "temp_in_staging": ".staging" in tempfile.gettempdir()}})
print("value", value, run.dir)
"""
PARAMETERS = {"profile": "smoke", "data_dir": None, "output_dir": None, "seed": 0, "value": 1, "fail": False}


@pytest.fixture
def project(tmp_path, monkeypatch, write_notebook):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    for stem in ("00_first", "01_second"):
        write_notebook(notebooks, stem, PARAMETERS, BODY.format(stem=stem))
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text("smoke:\n  common: {seed: 0}\n  notebooks:\n    01_second: {value: 2}\n")
    monkeypatch.setenv("HEMASUITE_PROFILES", str(profiles))
    return notebooks, tmp_path / "reports"


def run(project, **kwargs):
    notebooks, reports = project
    return runner.run_notebooks("smoke", reports=reports, notebook_dir=notebooks, **kwargs)


def test_success_publishes_notebook_page_results_and_site(project):
    records = run(project)
    reports = project[1]
    assert [r["status"] for r in records] == ["ok", "ok"]
    results = json.loads((reports / "smoke" / "results" / "01_second" / "results.json").read_text())
    assert results["details"]["value"] == 2 and results["profile"] == "smoke"
    assert "value 2" in (reports / "smoke" / "01_second.html").read_text()
    assert "01_second.html" in (reports / "smoke" / "index.html").read_text()
    assert not (reports / "index.html").exists()  # the front door belongs to the committed cpu profile
    published = (reports / "smoke" / "01_second.ipynb").read_text()
    assert "value 2" in published and str(reports) not in published and str(reports.parent) not in published
    folder = reports / "smoke" / "results" / "01_second"
    for written in (folder / "results.json", folder / "tables" / "where.csv", folder / "tables" / "where.md"):
        assert str(reports.parent) not in written.read_text(), written
    assert json.loads((folder / "results.json").read_text())["details"]["value"] == 2  # still valid JSON
    assert results["details"]["temp_in_staging"] and not (reports / ".staging" / "smoke" / "01_second").exists()
    assert not list(Path(tempfile.gettempdir()).glob("left_by_0*"))  # the kernels' temporary files went with it


def test_failure_keeps_last_good_report(project):
    run(project)
    reports = project[1]
    good_html = (reports / "smoke" / "01_second.html").read_text()
    records = run(project, selection=["01"], overrides={"fail": True, "value": 9})
    assert records[0]["status"] == "failed" and "planted failure" in records[0]["error"]
    assert (reports / "smoke" / "01_second.html").read_text() == good_html
    results = json.loads((reports / "smoke" / "results" / "01_second" / "results.json").read_text())
    assert results["details"]["value"] == 2
    status = json.loads((reports / "smoke" / "runs.json").read_text())["01_second"]
    assert status["last_attempt"]["status"] == "failed" and status["last_good"]["status"] == "ok"
    assert "failed" in (reports / "smoke" / "index.html").read_text()


def test_unknown_parameter_or_notebook_fails_before_running(project):
    with pytest.raises(ParameterError, match="epochs"):
        run(project, overrides={"epochs": 3})
    with pytest.raises(ParameterError, match="no notebook matches '07'"):
        run(project, selection=["07"])
    assert not (project[1] / "smoke").exists()


def test_command_line_exit_codes(project, capsys):
    notebooks, reports = project
    assert runner.main(["--profile", "nightly", "--reports", str(reports)]) == 2
    assert "unknown profile 'nightly'" in capsys.readouterr().err
    assert runner.parse_overrides(["epochs=3", "names=[a, b]"]) == {"epochs": 3, "names": ["a", "b"]}
    with pytest.raises(ParameterError):
        runner.parse_overrides(["epochs"])


def test_one_p_flag_takes_several_overrides_and_repeats():
    args = runner.parse_runner_arguments(["--profile", "cpu", "-p", "tile_size=96", "tile_epochs=12", "-p", "seeds=[0]",
                                   "--notebooks", "20"])
    assert runner.parse_overrides(args.param) == {"tile_size": 96, "tile_epochs": 12, "seeds": [0]}
    assert args.notebooks == ["20"]


def test_startup_noise_is_dropped_but_other_stderr_stays(tmp_path):
    noise = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
             "I0000 00:00:1795323115.738485   15488 port.cc:153] oneDNN custom operations are on.\n"
             "I0000 00:00:1795323115.740467   15488 cudart_stub.cc:31] Could not find cuda drivers.\n")
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text=noise),
                    nbformat.v4.new_output("stream", name="stderr", text=noise + "UserWarning: keep me\n"),
                    nbformat.v4.new_output("stream", name="stdout", text=noise)]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), path)
    assert runner.drop_startup_noise(path) == 6
    outputs = nbformat.read(path, 4).cells[0].outputs
    assert [o["text"] for o in outputs] == ["UserWarning: keep me\n", noise]


def test_comparison_gets_the_published_results_folder_and_cpu_updates_the_readme(tmp_path, monkeypatch,
                                                                                 write_notebook):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    body = 'from hemasuite import session\nrun = session.start("90_comparison", globals())\n' \
           'run.finish(details={"results_dir": results_dir})'
    write_notebook(notebooks, "90_comparison", {"profile": "smoke", "data_dir": None, "output_dir": None, "seed": 0,
                                                 "results_dir": None}, body)
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text("smoke:\n  common: {seed: 0}\ncpu:\n  common: {seed: 0}\n")
    monkeypatch.setenv("HEMASUITE_PROFILES", str(profiles))
    calls = []
    from hemasuite.tools import readme

    monkeypatch.setattr(readme, "update_readme", lambda reports: calls.append(reports) or tmp_path / "README.md")
    reports = tmp_path / "reports"
    assert runner.run_notebooks("smoke", reports=reports, notebook_dir=notebooks)[0]["status"] == "ok"
    results = json.loads((reports / "smoke" / "results" / "90_comparison" / "results.json").read_text())
    assert results["details"]["results_dir"] == "reports/smoke/results"  # the published folder, machine part removed
    assert calls == []
    assert runner.run_notebooks("cpu", reports=reports, notebook_dir=notebooks, allow_dirty=True)[0]["status"] == "ok"
    assert calls == []  # a reports folder other than the checkout's never rewrites the README
    monkeypatch.setattr(runner.config, "repo_root", lambda: tmp_path)  # now reports/ is the checkout's
    assert runner.run_notebooks("cpu", reports=reports, notebook_dir=notebooks, allow_dirty=True)[0]["status"] == "ok"
    assert calls == [reports]


def test_the_runner_starts_without_tensorflow():
    """A runner that refuses to start (lock held, bad parameter) prints no TensorFlow start-up lines: it imports
    TensorFlow only where it needs it."""
    import subprocess
    import sys

    code = "import sys, hemasuite.tools.runner; print('tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr[-2000:]
    assert "cuda" not in done.stderr.lower()
