"""The first call of every notebook: collect and check its parameters, seed everything, open the run folder."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from . import config, papers, parameters, rehearsal, training
from .datasets import Dataset, load_dataset
from .errors import ParameterError
from .record import Run

INJECTED_HEADER = "# Parameters"  # first line of the cell papermill injects with the values it was given

COMMON = ("profile", "data_dir", "output_dir", "seed")


def notebook_path(notebook: str) -> Path:
    """``<notebook>.ipynb`` in the working directory (where Jupyter, nbval and the runner start the kernel), else in
    the checkout's ``notebooks/``."""
    for folder in (Path.cwd(), config.repo_root() / "notebooks"):
        if (folder / f"{notebook}.ipynb").is_file():
            return folder / f"{notebook}.ipynb"
    raise ParameterError(f"notebook {notebook}.ipynb not found in {Path.cwd()} or {config.repo_root() / 'notebooks'}")


def parameter_defaults(path) -> dict:
    """The names the notebook's cell tagged ``parameters`` assigns, in order, with their values there."""
    return parameters.notebook_defaults(path)


def parameter_names(path) -> list[str]:
    """The names the notebook's cell tagged ``parameters`` assigns, in order."""
    return list(parameter_defaults(path))


def given_parameters(namespace: dict) -> set[str] | None:
    """Names papermill was given for this run (its injected ``# Parameters`` cell, read from IPython's input
    history); None outside IPython, where every value counts as given."""
    history = namespace.get("In")
    if not isinstance(history, list):
        return None
    injected = [cell for cell in history if isinstance(cell, str) and cell.startswith(INJECTED_HEADER)]
    return set(parameters.assignments(injected[-1])) if injected else set()


def load_profile(notebook: str, params: dict, defaults: dict, given: set[str] | None, namespace: dict) -> dict:
    """Under a profile other than the parameters cell's own (the cell holds the smoke values), take the profile's
    value of every parameter this run was not given, so that a run labelled ``cpu`` never uses the smoke settings
    and synthetic data (papermill given only ``-p profile cpu``).

    A parameter counts as given when papermill injected it (``given``) or its value differs
    from the cell's. Changed names are set in ``namespace`` too (the notebook's globals);
    returns them with their new values. With ``given`` None (not in IPython) nothing changes.
    """
    if given is None or params["profile"] == defaults.get("profile"):
        return {}
    wanted = config.notebook_parameters(params["profile"], notebook)
    loaded = {name: value for name, value in wanted.items()
              if name in params and name not in given and params[name] == defaults.get(name) and value != params[name]}
    params.update(loaded)
    namespace.update(loaded)
    return loaded


def check_own_output(params: dict) -> None:
    """Own images never write into the checkout's ``reports/`` (the committed results live there)."""
    own = parameters.own_image_names(params)
    if not own:
        return
    output = config.resolve_output_dir(params.get("output_dir"), params["profile"])
    committed = config.repo_root() / "reports"
    if output.is_relative_to(committed):
        raise ParameterError(f"own images ({', '.join(own)}) would write into {output}, inside the checkout's "
                             "reports/; give a folder of your own: papermill -p output_dir DIR, or "
                             "the runner's --reports DIR")


def start(notebook: str, namespace: dict) -> Run:
    """Validate the notebook's parameters, set seeds and return its :class:`Run`.

    Call it as ``session.start("<stem>", globals())``: the parameters are the names the
    notebook's ``parameters`` cell declares, with their current values (papermill's
    injected cell may have replaced them). ``profile`` must be a profile defined in
    ``notebooks/profiles.yaml``; parameters papermill was not given take the profile's
    values (:func:`load_profile`); every value is checked against
    :data:`hemasuite.parameters.SCHEMA`. The profile's ``cpu_precision`` becomes the CPU
    training policy (recorded in results.json's environment).
    """
    defaults = parameter_defaults(notebook_path(notebook))
    missing = [name for name in (*COMMON, *defaults) if name not in namespace]
    if missing:
        raise ParameterError(f"{notebook}: the parameters cell must define {missing}")
    params = {name: namespace[name] for name in defaults}
    config.profile(params["profile"])
    loaded = load_profile(notebook, params, defaults, given_parameters(namespace), namespace)
    if loaded:
        print(f"profile {params['profile']}: {len(loaded)} parameter(s) not given to this run taken from "
              f"{config.profiles_path().name}: " + ", ".join(f"{k}={v!r}" for k, v in loaded.items()))
    parameters.check(params, defaults, notebook)
    check_own_output(params)
    cuts = start_rehearsal(notebook, params)
    training.set_cpu_policy(config.cpu_precision(params["profile"]), f"profile {params['profile']}: cpu_precision")
    config.set_seeds(params["seed"])
    configure_plots()
    folder = rehearsal.FOLDER if cuts is not None else params["profile"]
    run = Run(notebook, config.resolve_output_dir(params["output_dir"], folder), params, papers.paper_id(notebook))
    run.rehearsal_cuts = cuts
    return run


def start_rehearsal(notebook: str, params: dict) -> list[str] | None:
    """In a rehearsal (:mod:`hemasuite.rehearsal`): the logical devices, a banner, and every parameter that differs
    from the ``paper`` profile's value (the rehearsal's cuts and any value given to the run); None otherwise."""
    training.forget_fits()
    rehearsal.forget_cuts()
    if not rehearsal.active():
        return None
    profile = params["profile"]
    if profile != rehearsal.PROFILE:
        raise ParameterError(f"${rehearsal.ENV}=1 rehearses the {rehearsal.PROFILE!r} profile, not {profile!r}; "
                             f"unset it, or run: python -m hemasuite.tools.runner --profile paper --rehearse")
    rehearsal.configure_devices()
    print(f"*** {rehearsal.BANNER} ***")
    return rehearsal.differences(config.notebook_parameters(profile, notebook), params)


def dataset(run: Run, name: str, **options) -> Dataset:
    """Load ``name`` with the run's data directory.

    Synthetic data is generated beside the results, with two planted duplicates per
    class so that duplicate detection and group-aware splits have work to do. Own images
    (``folder:/path``) mark the run, so that no paper is judged on them (:meth:`Run.finish`).
    """
    if name == "synthetic":
        options.setdefault("cache_dir", run.dir.parent / ".synthetic")
        options.setdefault("seed", run.params.get("seed", 0))
        options.setdefault("n_duplicates", 2)
        return load_dataset("synthetic", **options)
    data = load_dataset(name, run.params.get("data_dir"), **options)
    if rehearsal.active():
        frame = rehearsal.subsample(data.frame, data.name, run.params.get("seed", 0))
        info = {**data.info, **({"subjects": int(frame["subject"].nunique())} if "subjects" in data.info else {})}
        data = dataclasses.replace(data, frame=frame, info=info)
    if data.own:
        run.own_data = data.display_name
    return data


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
