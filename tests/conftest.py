"""Shared test helpers."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_weight_downloads(monkeypatch):
    """No test downloads weights: ``HEMASUITE_OFFLINE=1`` (tests of the download step lift it and fake Keras)."""
    monkeypatch.setenv("HEMASUITE_OFFLINE", "1")


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
