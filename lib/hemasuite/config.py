"""Profiles, notebook parameters, data and output locations, seeds.

Every profile (``smoke``, ``cpu``, ``paper``) lives in one YAML file,
``notebooks/profiles.yaml``: a ``common`` block shared by all notebooks, one block per
notebook stem, and ``cpu_precision``, the precision policy of training on a CPU (not a
notebook parameter: :func:`hemasuite.session.start` applies it). Anything unknown is an
error that lists what is known.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import yaml

from .errors import DataError, ParameterError

DATA_ENV = "LEUKEMIA_DATA_DIR"
OUTPUT_ENV = "HEMASUITE_OUTPUT_DIR"
PROFILES_ENV = "HEMASUITE_PROFILES"
PROFILE_SECTIONS = ("description", "common", "notebooks", "cpu_precision")
CPU_PRECISIONS = ("float32", "mixed_bfloat16", "auto")  # auto: bfloat16 where the CPU computes it natively


def repo_root() -> Path:
    """The checkout this library was installed from (``lib/hemasuite`` -> two levels up)."""
    return Path(__file__).resolve().parents[2]


def profiles_path() -> Path:
    """The profiles YAML: ``$HEMASUITE_PROFILES`` or ``notebooks/profiles.yaml``."""
    return Path(os.environ.get(PROFILES_ENV, repo_root() / "notebooks" / "profiles.yaml"))


def load_profiles(path: Path | None = None) -> dict:
    """All profiles as a dict ``{name: {description, common, notebooks}}``."""
    path = Path(path) if path else profiles_path()
    if not path.is_file():
        raise ParameterError(f"profiles file {path} does not exist")
    profiles = yaml.safe_load(path.read_text()) or {}
    for name, body in profiles.items():
        unknown = set(body) - set(PROFILE_SECTIONS)
        if unknown:
            raise ParameterError(f"{path}: profile {name!r} has unknown section(s) {sorted(unknown)}; "
                                 f"known: {', '.join(PROFILE_SECTIONS)}")
    return profiles


def profile_names(path: Path | None = None) -> list[str]:
    """Names of the defined profiles."""
    return list(load_profiles(path))


def profile(name: str, path: Path | None = None) -> dict:
    """One profile; unknown names raise a :class:`ParameterError` listing the known ones."""
    profiles = load_profiles(path)
    if name not in profiles:
        raise ParameterError(f"unknown profile {name!r}; known profiles: {', '.join(profiles)}")
    return profiles[name]


def cpu_precision(profile_name: str, path: Path | None = None) -> str:
    """The profile's precision policy for training on a CPU: its ``cpu_precision``, ``float32`` when unset.

    On a GPU the suite always trains under ``mixed_float16``
    (:func:`hemasuite.training.precision_policy`).
    """
    value = profile(profile_name, path).get("cpu_precision", "float32")
    if value not in CPU_PRECISIONS:
        raise ParameterError(f"profile {profile_name!r}: cpu_precision {value!r} is not one of {list(CPU_PRECISIONS)} "
                             f"(in {Path(path) if path else profiles_path()})")
    return value


def notebook_parameters(profile_name: str, stem: str, overrides: dict | None = None,
                        path: Path | None = None) -> dict:
    """Parameters for notebook ``stem`` under a profile: common, then the notebook's block, then overrides."""
    body = profile(profile_name, path)
    params = {"profile": profile_name, **(body.get("common") or {})}
    params.update((body.get("notebooks") or {}).get(stem) or {})
    params.update(overrides or {})
    return params


def check_known(params: dict, known: set[str], where: str) -> None:
    """Raise if ``params`` names a parameter that ``where`` does not define."""
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ParameterError(f"unknown parameter(s) {unknown} for {where}; it defines: {', '.join(sorted(known))}")


def check_choice(name: str, value, choices) -> None:
    """Raise a clear error when ``value`` is not one of ``choices``."""
    if value not in choices:
        raise ParameterError(f"parameter {name}={value!r} is not one of {list(choices)}")


def common_folder(paths) -> str:
    """The deepest folder holding every one of ``paths`` (absolute; the parent folder when there is one)."""
    unique = sorted(set(map(str, paths)))
    return os.path.commonpath(unique) if len(unique) > 1 else os.path.dirname(unique[0])


def portable_paths(paths):
    """Absolute image paths (a pandas Series) made relative to their :func:`common_folder`: no machine folder."""
    if not len(paths) or not all(os.path.isabs(p) for p in paths.unique()):
        return paths
    root = common_folder(paths)
    return paths.map(lambda p: os.path.relpath(p, root))


def resolve_data_dir(data_dir=None) -> Path:
    """The data root: ``data_dir`` if given (it must exist: no fall-back), else ``$LEUKEMIA_DATA_DIR``."""
    if data_dir:
        path = Path(data_dir).expanduser().resolve()
        if not path.is_dir():
            raise DataError(f"data_dir {path} does not exist (given explicitly, so ${DATA_ENV} is not used); pass "
                            "the folder that holds taleqani_all/, iicbu_lymphoma/, ... (see docs/data.md)")
        return path
    candidate = os.environ.get(DATA_ENV)
    if candidate and Path(candidate).expanduser().is_dir():
        return Path(candidate).expanduser().resolve()
    looked = f"${DATA_ENV} = {Path(candidate).expanduser().resolve()} (does not exist)" if candidate \
        else f"${DATA_ENV} (not set)"
    raise DataError(f"no data directory found; looked at: parameter data_dir (not set); {looked}. Set {DATA_ENV} "
                    "or pass data_dir to the folder that holds taleqani_all/, iicbu_lymphoma/, ... (see "
                    "docs/data.md). Outside make, LEUKEMIA_DATA_DIR is not set for you.")


def resolve_output_dir(output_dir=None, profile_name: str = "smoke") -> Path:
    """Where results go: ``output_dir``, else ``$HEMASUITE_OUTPUT_DIR``, else ``reports/<profile>/results``."""
    chosen = output_dir or os.environ.get(OUTPUT_ENV) or repo_root() / "reports" / profile_name / "results"
    return Path(chosen).expanduser().resolve()


def set_seeds(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow / Keras, and ask TF for deterministic ops where it can."""
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    import keras

    keras.utils.set_random_seed(seed)


def cache_dir() -> Path:
    """The user cache of work done once per content (validation, thumbnails, decoded images, backbone features),
    shared by every notebook and checkout: ``$HEMASUITE_CACHE_DIR``, else ``$XDG_CACHE_HOME/hemasuite``, else
    ``~/.cache/hemasuite``. Deleting it loses nothing but time."""
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hemasuite"
    path = Path(os.environ.get("HEMASUITE_CACHE_DIR") or default).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path
