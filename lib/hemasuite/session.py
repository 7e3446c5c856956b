"""The first call of every notebook: collect its parameters, seed everything, open the run folder."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from . import config, papers, training
from .datasets import Dataset, load_dataset
from .errors import ParameterError
from .record import Run

COMMON = ("profile", "data_dir", "output_dir", "seed")


def notebook_path(notebook: str) -> Path:
    """``<notebook>.ipynb`` in the working directory (where Jupyter, nbval and the runner start the kernel), else in
    the checkout's ``notebooks/``."""
    for folder in (Path.cwd(), config.repo_root() / "notebooks"):
        if (folder / f"{notebook}.ipynb").is_file():
            return folder / f"{notebook}.ipynb"
    raise ParameterError(f"notebook {notebook}.ipynb not found in {Path.cwd()} or {config.repo_root() / 'notebooks'}")


def parameter_names(path) -> list[str]:
    """The names the notebook's cell tagged ``parameters`` assigns, in order."""
    cells = [c for c in json.loads(Path(path).read_text())["cells"]
             if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ParameterError(f"{path}: expected one cell tagged 'parameters', found {len(cells)}")
    tree = ast.parse("".join(cells[0]["source"]))
    return [target.id for node in tree.body if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name)]


def start(notebook: str, namespace: dict) -> Run:
    """Validate the notebook's parameters, set seeds and return its :class:`Run`.

    Call it as ``session.start("<stem>", globals())``: the parameters are the names the
    notebook's ``parameters`` cell declares, with their current values (papermill's
    injected cell may have replaced them). ``profile`` must be a profile defined in
    ``notebooks/profiles.yaml`` and ``seed`` an integer. The profile's ``cpu_precision``
    becomes the CPU training policy (recorded in results.json's environment).
    """
    names = parameter_names(notebook_path(notebook))
    missing = [name for name in (*COMMON, *names) if name not in namespace]
    if missing:
        raise ParameterError(f"{notebook}: the parameters cell must define {missing}")
    params = {name: namespace[name] for name in names}
    config.profile(params["profile"])
    training.set_cpu_policy(config.cpu_precision(params["profile"]), f"profile {params['profile']}: cpu_precision")
    if not isinstance(params["seed"], int):
        raise ParameterError(f"seed must be an integer, not {params['seed']!r}")
    config.set_seeds(params["seed"])
    configure_plots()
    return Run(notebook, config.resolve_output_dir(params["output_dir"], params["profile"]), params,
               papers.paper_id(notebook))


def dataset(run: Run, name: str, **options) -> Dataset:
    """Load ``name`` with the run's data directory.

    Synthetic data is generated beside the results, with two planted duplicates per
    class so that duplicate detection and group-aware splits have work to do.
    """
    if name == "synthetic":
        options.setdefault("cache_dir", run.dir.parent / ".synthetic")
        options.setdefault("seed", run.params.get("seed", 0))
        options.setdefault("n_duplicates", 2)
        return load_dataset("synthetic", **options)
    return load_dataset(name, run.params.get("data_dir"), **options)


def configure_plots() -> None:
    """One figure style for the whole suite.

    In a notebook, figures are shown as JPEG: image grids of smears are photographs, and
    as PNG they would make executed notebooks and HTML reports several times larger. The
    files saved beside the results stay PNG.
    """
    import matplotlib

    if _in_notebook():
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("jpeg")
    else:
        matplotlib.use("Agg")
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid")


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython

        return get_ipython() is not None
    except ImportError:
        return False
