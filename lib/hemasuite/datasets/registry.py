"""The dataset record every loader returns, and the registry of named datasets."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from ..config import resolve_data_dir
from ..errors import DataError, ParameterError

FRAME_COLUMNS = ("path", "label", "group")


@dataclass
class Dataset:
    """A labelled image collection.

    ``frame`` has one row per image with columns ``path`` (absolute), ``label`` (class
    name), ``group`` (the unit that must never straddle a split: subject id where the
    dataset publishes one, otherwise the file itself) and, for some sets, ``subset``
    (a published split such as C-NMC's preliminary test set).

    ``own`` marks a user's own class-per-folder images (``folder:/path``): no paper is
    judged on them. ``problems`` holds what the loader found but did not load (rows
    ``{kind, path, detail}``, reported by :func:`hemasuite.validation.validate`).
    """

    name: str
    classes: list[str]
    frame: pd.DataFrame
    root: Path | None
    description: str
    synthetic: bool = False
    stand_in: str | None = None
    info: dict = field(default_factory=dict)
    own: bool = False
    problems: list[dict] = field(default_factory=list)

    @property
    def label_ids(self):
        """Integer class index of every row, in the order of ``classes``."""
        lookup = {name: index for index, name in enumerate(self.classes)}
        return self.frame["label"].map(lookup).to_numpy()

    @property
    def display_name(self) -> str:
        """Name as shown in tables: marks synthetic data and stand-in tasks."""
        name = self.name
        if self.synthetic:
            name += " [SYNTHETIC]"
        if self.stand_in:
            name += f" [stand-in for {self.stand_in}]"
        if self.own:
            name += " [own images]"
        return name

    def counts(self) -> pd.Series:
        """Images per class, in class order (zeros included)."""
        return self.frame["label"].value_counts().reindex(self.classes, fill_value=0)

    def summary(self) -> dict:
        """Short JSON-able description for results.json."""
        return {"name": self.name, "display_name": self.display_name,
                "root": str(self.root) if self.root else None, "classes": self.classes,
                "images": int(len(self.frame)), "per_class": {k: int(v) for k, v in self.counts().items()},
                "synthetic": self.synthetic, "stand_in": self.stand_in, "own": self.own,
                "description": self.description, **self.info}


@dataclass
class DatasetSpec:
    """How to find and load one named dataset."""

    name: str
    folder: str
    layout: str
    source: str
    loader: Callable[..., Dataset]


REGISTRY: dict[str, DatasetSpec] = {}
FOLDER_PREFIX = "folder:"  # ``folder:/path/to/root``: a user's own class-per-folder images
_FOLDER_LOADER: list[Callable[..., Dataset]] = []


def register(name: str, folder: str, layout: str, source: str):
    """Decorator adding a loader ``f(root: Path, **options) -> Dataset`` to the registry."""

    def decorate(loader):
        REGISTRY[name] = DatasetSpec(name, folder, layout, source, loader)
        return loader

    return decorate


def register_folder_loader(loader):
    """Decorator: the loader of ``folder:<path>`` names, ``f(path: str, **options) -> Dataset``."""
    _FOLDER_LOADER[:] = [loader]
    return loader


def is_folder_name(name) -> bool:
    """True for a dataset name of the form ``folder:/path/to/root`` (a user's own images)."""
    return isinstance(name, str) and name.startswith(FOLDER_PREFIX)


def available() -> list[str]:
    """Names of every registered dataset."""
    return sorted(REGISTRY)


def spec(name: str) -> DatasetSpec:
    """The registry entry of ``name``; a clear error for unknown names."""
    if name not in REGISTRY:
        raise ParameterError(f"unknown dataset {name!r}; known datasets: {', '.join(available())}, "
                             f"or {FOLDER_PREFIX}/path/to/root for your own images (one sub-folder per class)")
    return REGISTRY[name]


def present(name: str, data_dir=None) -> bool:
    """True when registered dataset ``name`` needs no folder or its folder exists in the data root."""
    folder = spec(name).folder
    if folder is None:
        return True
    try:
        return (resolve_data_dir(data_dir) / folder).is_dir()
    except DataError:
        return False


def choose(name: str, stand_in: str | None, data_dir=None) -> str:
    """``name`` when it is present (or no ``stand_in`` is given), else ``stand_in``, saying so.

    Only an absent dataset is replaced: one whose folder is there but broken still stops
    the run with its loader's error.
    """
    if stand_in is None or is_folder_name(name) or present(name, data_dir):
        return name
    print(f"{name} is not in the data folder (expected: {spec(name).layout}; source: {spec(name).source}); "
          f"running on the stand-in {stand_in} instead")
    return stand_in


def load_dataset(name: str, data_dir=None, **options) -> Dataset:
    """Load the dataset ``name`` from ``<data root>/<its folder>``.

    The data root is ``data_dir`` or, when that is None, the environment variable
    ``LEUKEMIA_DATA_DIR`` (see :func:`hemasuite.config.resolve_data_dir`). The
    ``synthetic`` dataset needs no data root, nor does ``folder:/path/to/root`` (your own
    images, one sub-folder per class; :func:`hemasuite.datasets.folders.load_own_folder`).
    """
    if is_folder_name(name):
        return _FOLDER_LOADER[0](name[len(FOLDER_PREFIX):], **options)
    entry = spec(name)
    if entry.folder is None:
        return entry.loader(None, **options)
    root = resolve_data_dir(data_dir) / entry.folder
    if not root.is_dir():
        raise DataError(
            f"dataset {name!r} not found: {root} does not exist.\n"
            f"Expected layout: {entry.layout}\nWhere to get it: {entry.source}")
    return entry.loader(root, **options)


def frame_from_rows(rows: list[dict], root: Path, name: str, layout: str) -> pd.DataFrame:
    """Build the image frame, failing clearly when a loader found no image at all."""
    if not rows:
        raise DataError(f"dataset {name!r}: no image files found under {root}.\nExpected layout: {layout}")
    frame = pd.DataFrame(rows)
    return frame.sort_values(["label", "path"], kind="stable").reset_index(drop=True)
