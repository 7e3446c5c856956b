"""Every notebook passes ruff and keeps the standard layout: title, parameters, set-up, steps, verdict."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hemasuite import papers

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
COMMON = ["profile", "data_dir", "output_dir", "seed"]
MAX_CODE_LINES = 70  # non-blank code lines of a replication notebook: the logic lives in the library


def cells(path):
    return [(c["cell_type"], "".join(c["source"]), c.get("metadata", {}).get("tags", []))
            for c in json.loads(path.read_text())["cells"]]


def test_ruff_passes_on_every_notebook():
    found = subprocess.run([sys.executable, "-m", "ruff", "check", *map(str, NOTEBOOKS)], capture_output=True,
                           text=True)
    assert found.returncode == 0, found.stdout + found.stderr


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_standard_layout(path):
    stem, found = path.stem, cells(path)
    kinds = [kind for kind, _, _ in found]
    title, parameters, setup = found[0][1], found[1], found[2]
    assert kinds[0] == "markdown" and title.startswith("# "), "cell 1 must be the title"
    assert parameters[0] == "code" and parameters[2] == ["parameters"], "cell 2 must be the tagged parameters cell"
    names = [t.id for node in ast.parse(parameters[1]).body for t in node.targets]
    assert names[:4] == COMMON, f"the parameters cell starts with {COMMON}"
    assert setup[0] == "code" and f'session.start("{stem}", globals())' in setup[1], "cell 3 is the set-up"
    steps = found[3:]
    assert steps and all(kind == "markdown" for kind, _, _ in steps[::2]), "every step starts with prose"
    assert all(text.startswith("## ") or text.startswith("### ") for kind, text, _ in steps[::2])
    assert all(kind == "code" for kind, _, _ in steps[1::2]) and len(steps) % 2 == 0, "prose, then code, per step"
    code = "\n".join(text for kind, text, _ in found if kind == "code")
    assert code.count("run.finish(") == 1 and "run.finish(" in steps[-1][1], "one finish call, in the last cell"
    assert ".record(" not in code
    if stem in papers.REGISTRY:
        module = papers.REGISTRY[stem]
        assert title.startswith(f"# {module.ID} - "), "the title names the paper"
        assert "**Paper claim.**" in title and "**Which data?**" in title, "the title gives the claim and the data"
        assert "verdict" in steps[-2][1].splitlines()[0].lower(), "the last step is the verdict"
        assert f"papers import {module.__name__.rsplit('.', 1)[1]}" in setup[1]
        lines = [line for line in code.splitlines() if line.strip()]
        assert len(lines) <= MAX_CODE_LINES, f"{len(lines)} code lines"
