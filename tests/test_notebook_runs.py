"""Every notebook, executed once per test session by the smoke run (``smoke_reports``), checked as ``nbval --nbval-lax``
checks a notebook: every code cell ran, none raised. The notebook as a user opens it (no runner, no papermill: the
parameters cell's own values) is executed for one notebook here; ``make nbval`` runs nbval itself on all of them."""

import json

import nbformat
import pytest
from nbclient import NotebookClient

from hemasuite.tools import runner

NOTEBOOKS = runner.discover()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_cell_of_the_notebook_ran_without_error(path, smoke_reports):
    executed = nbformat.read(smoke_reports / "smoke" / f"{path.stem}.ipynb", 4)
    source = [c.source for c in nbformat.read(path, 4).cells if c.cell_type == "code"]
    code = [c for c in executed.cells if c.cell_type == "code"
            and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    assert [c.source for c in code] == source, "the executed copy is not of the notebook as it is now"
    for number, cell in enumerate(code, 1):
        assert cell.execution_count is not None, f"cell {number} did not run"
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"cell {number} raised {errors[0].ename}: {errors[0].evalue}"


def test_a_notebook_runs_as_opened_in_jupyterlab(tmp_path, monkeypatch):
    """No papermill: the kernel starts in notebooks/ and the parameters cell's values are the run's."""
    path = runner.notebooks_dir() / "00_data_validation.ipynb"
    monkeypatch.setenv("HEMASUITE_OUTPUT_DIR", str(tmp_path))
    notebook = nbformat.read(path, 4)
    NotebookClient(notebook, timeout=600, kernel_name=runner.kernel_name(),
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    assert all(o.output_type != "error" for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    assert (tmp_path / "00_data_validation" / "results.json").is_file()


def test_runs_json_records_each_cells_seconds_and_no_machine_folder(smoke_reports):
    status = json.loads((smoke_reports / "smoke" / "runs.json").read_text())
    for path in NOTEBOOKS:
        run = status[path.stem]["last_good"]
        code = [c for c in nbformat.read(path, 4).cells if c.cell_type == "code"]
        assert len(run["cells"]) == len(code) + 1, path.stem  # + the parameters papermill injects
        assert all(c["seconds"] is not None and c["step"] is not None for c in run["cells"]), path.stem
        assert sum(c["seconds"] for c in run["cells"]) <= run["seconds"], path.stem
        assert not [v for v in run["parameters"].values() if str(v).startswith("/")], path.stem
