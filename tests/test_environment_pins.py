"""environment.yml and pyproject.toml pin the same versions."""

import re
import tomllib

import yaml

from hemasuite.config import repo_root


def pins(requirements):
    found = {}
    for line in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line.strip())
        if match:
            found[match[1].lower().replace("_", "-")] = match[2]
    return found


def test_pins_agree():
    project = tomllib.loads((repo_root() / "pyproject.toml").read_text())["project"]
    declared = pins(project["dependencies"] + project["optional-dependencies"]["dev"])
    environment = yaml.safe_load((repo_root() / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    conda_python = next(d for d in environment["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert pins(pip_section) == declared
    assert conda_python == "python=3.11" and project["requires-python"].startswith(">=3.11")
    assert all("==" in r for r in project["dependencies"]), "every runtime dependency is pinned"
