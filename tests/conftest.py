"""Shared test helpers: the real-data root, a notebook run opened as a notebook would, one training step of a model,
and the results of the smoke-profile notebooks (run once per test session).

``make test`` spreads the tests over two processes (pytest-xdist, ``--dist loadgroup``). A session fixture runs
once per process, so the tests that share an expensive one run in one process (:data:`SHARED_WORK`), and the
longest of them, the paper-profile rehearsal, starts first.
"""

import contextlib
import os
from pathlib import Path

import keras
import nbformat
import numpy as np
import pytest
import tensorflow as tf

from hemasuite import session, training
from hemasuite.tools import runner

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_WORK = ("rehearsal_reports", "smoke_reports", "real_taleqani")  # longest first: each is one process's group


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    """Tests that use one of :data:`SHARED_WORK`'s fixtures form one xdist group (the fixture runs once), and those
    groups come first, the longest first, so that the rest fills in beside them."""
    def shared(item) -> int:
        return next((i for i, name in enumerate(SHARED_WORK) if name in item.fixturenames), len(SHARED_WORK))

    for item in items:
        if shared(item) < len(SHARED_WORK):
            item.add_marker(pytest.mark.xdist_group(SHARED_WORK[shared(item)]))
    items.sort(key=shared)  # stable: within a group, and among the rest, the collection order stays


def pytest_collection_finish(session):
    """Stop when xdist did not group (its ``loadgroup`` marks a grouped test's id with ``@group``; pytest 9.2 with
    pytest-xdist 3.8.0 silently drops that, pytest-dev/pytest-xdist#1386): every shared fixture would run twice."""
    if not session.config.getoption("loadgroup", default=False):
        return
    lost = [item.nodeid for item in session.items if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
    if lost:
        raise pytest.UsageError(f"pytest-xdist did not group {len(lost)} test(s), e.g. {lost[0]}: the pinned pytest "
                                "and pytest-xdist versions (pyproject.toml) group them")


@pytest.fixture(autouse=True)
def no_weight_downloads(monkeypatch):
    """No test downloads weights: ``HEMASUITE_OFFLINE=1`` (tests of the download step lift it and fake Keras)."""
    monkeypatch.setenv("HEMASUITE_OFFLINE", "1")


@pytest.fixture
def restore_cpu_policy():
    """The CPU precision policy back at its default (float32) after a test that sets it."""
    yield
    training.set_cpu_policy("float32", "default")


def real_data_dir() -> Path:
    """Where the real images are expected: ``$LEUKEMIA_DATA_DIR`` or ``<repo>/../shared/data``."""
    return Path(os.environ.get("LEUKEMIA_DATA_DIR") or REPO_ROOT.parent / "shared" / "data").expanduser().resolve()


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real data root; skips the test when it does not exist."""
    root = real_data_dir()
    if not root.is_dir():
        pytest.skip(f"real images not found at {root}: set LEUKEMIA_DATA_DIR")
    return root


@pytest.fixture(scope="session")
def real_taleqani(real_data):
    """The real Taleqani set and its validation against the data's manifest, computed once per test session (a few
    minutes: every image decoded, hashed and screened for same-field pairs)."""
    from hemasuite.datasets import load_dataset
    from hemasuite.validation import validate_dataset

    if not (real_data / "taleqani_all").is_dir():
        pytest.skip(f"real images not found at {real_data / 'taleqani_all'}: set LEUKEMIA_DATA_DIR")
    dataset = load_dataset("taleqani_all", real_data)
    return dataset, validate_dataset(dataset, manifest=real_data / "MANIFEST.sha256")


def _write_notebook(folder: Path, stem: str, parameters: dict, body: str = "") -> Path:
    """``<folder>/<stem>.ipynb``: a ``parameters`` cell assigning ``parameters``, then ``body``."""
    cells = [nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in parameters.items()))]
    cells[0].metadata["tags"] = ["parameters"]
    if body:
        cells.append(nbformat.v4.new_code_cell(body))
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = Path(folder) / f"{stem}.ipynb"
    nbformat.write(notebook, path)
    return path


@pytest.fixture(scope="session")
def write_notebook():
    """``write_notebook(folder, stem, parameters, body="")``: a notebook with a ``parameters`` cell, then ``body``."""
    return _write_notebook


@pytest.fixture(scope="session")
def start_run(tmp_path_factory):
    """``start_run(stem, **params)``: :func:`hemasuite.session.start` as a notebook whose parameters cell declares
    ``params`` calls it (the notebook file is written to a temporary folder)."""
    def start(stem: str, **params):
        folder = tmp_path_factory.mktemp("notebooks")
        _write_notebook(folder, stem, params)
        with contextlib.chdir(folder):
            return session.start(stem, params)

    return start


@pytest.fixture(scope="session")
def one_step():
    """``one_step(build, shape)``: build a model, train it one step on random data, check its predictions."""
    def step(build, shape, n_classes=3, run_eagerly=False):
        x = np.random.default_rng(0).random((4, *shape), dtype=np.float32)
        y = np.eye(n_classes, dtype=np.float32)[[0, 1, 2, 0]]
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(2)
        result = training.train(build, data, n_train=4, epochs=1, optimizer=lambda: keras.optimizers.Adam(),
                                run_eagerly=run_eagerly)
        assert np.isfinite(result.history["loss"][0])
        probabilities, speed = training.predict(result.model, data)
        assert probabilities.shape == (4, n_classes) and np.allclose(probabilities.sum(1), 1, atol=1e-4)
        assert speed > 0
        return result

    return step


@pytest.fixture(scope="session")
def smoke_reports(tmp_path_factory) -> Path:
    """A reports folder holding the smoke-profile run of every notebook, made by the real runner (a few minutes,
    once per test session; ``tests/test_notebooks.py`` checks the executed notebooks as nbval would)."""
    reports = tmp_path_factory.mktemp("smoke") / "reports"
    records = runner.run_notebooks("smoke", reports=reports)
    failed = {r["notebook"]: r.get("error", "")[-1500:] for r in records if r["status"] != "ok"}
    assert not failed, failed
    return reports
