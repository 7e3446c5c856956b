"""The runner under faults: stale staging files, two runs at once, killed runs, failed runs' errors, dirty trees;
and a notebook run directly with papermill under another profile."""

import io
import json
import subprocess

import nbformat
import papermill
import pytest

from hemasuite import record, session
from hemasuite.tools import progress, runner

BODY = """
from hemasuite import session
run = session.start("{stem}", globals())
if fail:
    raise RuntimeError("planted failure: value " + str(value))
run.finish(details={{"value": value, "epochs": epochs}})
"""
PARAMETERS = {"profile": "smoke", "data_dir": None, "output_dir": None, "seed": 0, "value": 1, "epochs": 2,
              "fail": False}


@pytest.fixture
def project(tmp_path, monkeypatch, write_notebook):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    write_notebook(notebooks, "00_first", PARAMETERS, BODY.format(stem="00_first"))
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text("smoke:\n  common: {seed: 0}\ncpu:\n  common: {seed: 0}\n  notebooks:\n"
                        "    00_first: {value: 7, epochs: 20}\n")
    monkeypatch.setenv("HEMASUITE_PROFILES", str(profiles))
    return notebooks, tmp_path / "reports"


def run(project, profile="smoke", **kwargs):
    notebooks, reports = project
    return runner.run_notebooks(profile, reports=reports, notebook_dir=notebooks, **kwargs)


def test_stale_staging_files_are_never_published(project):
    reports = project[1]
    stale = reports / ".staging" / "smoke" / "00_first" / "results" / "00_first" / "figures" / "baseline_knn.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left by a killed run")
    assert run(project)[0]["status"] == "ok"
    published = reports / "smoke" / "results" / "00_first"
    assert (published / "results.json").is_file() and not (published / "figures" / "baseline_knn.png").exists()
    assert not (reports / ".staging" / "smoke" / "00_first").exists()


def test_two_runs_of_one_profile_cannot_mix(project):
    reports = project[1]
    with runner.profile_lock(reports, "smoke"):
        with pytest.raises(runner.RunnerError, match=r"another run of profile 'smoke' is in progress \(pid \d+"):
            run(project)
    with runner.profile_lock(reports, "cpu"):  # another profile's lock does not block
        assert run(project)[0]["status"] == "ok"


def test_a_killed_attempt_is_recorded_by_the_next_run(project):
    reports = project[1]
    runner.update_status(reports, "smoke", [{"notebook": "00_first", "status": "running", "pid": 1}])
    assert runner.record_killed(reports, "smoke") == ["00_first"]
    status = json.loads((reports / "smoke" / "runs.json").read_text())["00_first"]["last_attempt"]
    assert status["status"] == "killed" and status["error"].startswith("Killed:")


def test_the_index_shows_the_end_of_a_failed_runs_error(project):
    record_ = run(project, overrides={"fail": True, "value": 5})[0]
    assert record_["status"] == "failed"
    assert record_["error"].splitlines()[-1] == "RuntimeError: planted failure: value 5"
    assert "RuntimeError: planted failure: value 5" in (project[1] / "smoke" / "index.html").read_text()


def test_cpu_and_paper_refuse_a_dirty_tree_unless_allowed(project, monkeypatch):
    monkeypatch.setattr(runner, "dirty_files", lambda: ["lib/hemasuite/training.py"])
    with pytest.raises(runner.RunnerError, match="clean working tree.*training.py.*--allow-dirty"):
        run(project, "cpu")
    assert not (project[1] / "cpu").exists()
    assert run(project, "cpu", allow_dirty=True)[0]["status"] == "ok"
    assert run(project, "smoke")[0]["status"] == "ok"  # smoke results are never committed


def test_results_record_the_hash_of_uncommitted_changes(tmp_path, monkeypatch):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "r.json").write_text("{}\n")
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c"],
                   check=True)
    monkeypatch.setattr(record, "repo_root", lambda: tmp_path)
    (tmp_path / "reports" / "r.json").write_text('{"new": 1}\n')  # results written by a run: still clean
    assert record.dirty_files() == [] and record.git_diff_sha256() is None
    assert not record.git_commit().endswith("+dirty")
    (tmp_path / "code.py").write_text("x = 2\n")
    digest = record.git_diff_sha256()
    assert record.dirty_files() == ["code.py"] and len(digest) == 64 and record.git_commit().endswith("+dirty")
    (tmp_path / "code.py").write_text("x = 3\n")
    assert record.git_diff_sha256() != digest
    environment = record.environment()
    assert environment.diff_sha256 == record.git_diff_sha256()
    assert record.from_dict(record.Environment, record.to_dict(environment)).diff_sha256 == environment.diff_sha256


def test_papermill_with_profile_cpu_loads_the_cpu_parameters(project, tmp_path):
    notebooks = project[0]
    output = tmp_path / "out"
    papermill.execute_notebook(str(notebooks / "00_first.ipynb"), str(tmp_path / "ran.ipynb"),
                               parameters={"profile": "cpu", "output_dir": str(output), "value": 3},
                               cwd=str(notebooks), kernel_name=runner.kernel_name(), progress_bar=False)
    results = json.loads((output / "00_first" / "results.json").read_text())
    # epochs was not given: the cpu value, never the smoke one; value was given: kept
    assert results["profile"] == "cpu" and results["details"] == {"value": 3, "epochs": 20}
    assert results["parameters"]["epochs"] == 20


def test_profile_loading_rules():
    defaults = {"profile": "smoke", "epochs": 2, "value": 1}
    namespace = {"profile": "smoke", "epochs": 2, "value": 1}
    assert session.load_profile("00_first", dict(namespace), defaults, set(), namespace) == {}  # the cell's profile
    assert session.given_parameters({}) is None
    assert session.given_parameters({"In": ["", "x = 1", "# Parameters\nprofile = 'cpu'\nvalue = 3\n"]}) == \
        {"profile", "value"}


def test_progress_prints_cells_and_epochs_with_an_eta(tmp_path, write_notebook):
    path = write_notebook(tmp_path, "00_x", {"profile": "smoke"}, "print('hello')")
    ticks = iter([0, 0, 0, 10, 30])  # start, cell, first epoch, end of epoch 1, end of epoch 2
    out = io.StringIO()
    printer = progress.Progress(path, "[smoke] 00_x", out, clock=lambda: next(ticks))
    printer.emit(type("R", (), {"getMessage": lambda self: "Executing Cell 3---"})())
    printer.write("I0000 00:00:1795323115.738485   15488 port.cc:153] oneDNN custom operations are on.\nEpo")
    printer.write("ch 1/3\n4/4 - 2s - 500ms/step - accuracy: 0.50 - loss: 1.2\nEpoch 2/3\n")
    printer.write("4/4 - 2s - 500ms/step - accuracy: 0.75 - loss: 0.9\nhello\n")
    lines = out.getvalue().splitlines()
    assert lines[0] == "[smoke] 00_x: cell 3/3"  # parameters, papermill's injected cell, the body
    assert lines[1] == "    epoch 1/3  accuracy: 0.50 - loss: 1.2  (10 s/epoch, ETA 20 s)"
    assert lines[2] == "    epoch 2/3  accuracy: 0.75 - loss: 0.9  (15 s/epoch, ETA 15 s)"
    assert lines[3] == "    hello" and "oneDNN" not in out.getvalue()


def test_progress_knows_the_steps_of_a_notebook(tmp_path):
    cells = [nbformat.v4.new_markdown_cell("# Title"), nbformat.v4.new_code_cell("a = 1"),
             nbformat.v4.new_markdown_cell("## Train the model\nmore"), nbformat.v4.new_code_cell("fit()")]
    cells[1].metadata["tags"] = ["parameters"]
    path = tmp_path / "n.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    assert progress.step_titles(path) == {2: (1, 3, "Title"), 3: (2, 3, "Title"), 5: (3, 3, "Train the model")}
