"""ALL-IDB2 (Labati et al. 2011): single-cell crops, label in the file-name suffix."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import DataError
from ..imageio import is_image_file
from .registry import Dataset, frame_from_rows, register

LAYOUT = "<data root>/all_idb2/**/Im<NNN>_<0|1>.tif (suffix 1 = blast, 0 = normal)"
SOURCE = "Universita degli Studi di Milano, ALL-IDB (scotti.di.unimi.it/all); access on request"
NAME_PATTERN = re.compile(r"^Im(?P<number>\d+)_(?P<label>[01])$", re.IGNORECASE)
LABELS = {"1": "blast", "0": "normal"}


def parse_label(file_name: str) -> str:
    """``Im001_1.tif -> 'blast'``, ``Im131_0.tif -> 'normal'``."""
    match = NAME_PATTERN.match(Path(file_name).stem)
    if not match:
        raise DataError(f"ALL-IDB2 file name {file_name!r} does not follow Im<NNN>_<0|1>")
    return LABELS[match["label"]]


@register("all_idb2", "all_idb2", LAYOUT, SOURCE)
def load_all_idb2(root: Path) -> Dataset:
    """ALL-IDB2: 260 cells, 130 blast / 130 normal; each image is its own group."""
    rows = [{"path": str(p.resolve()), "label": parse_label(p.name), "group": p.stem}
            for p in sorted(root.rglob("*")) if is_image_file(p)]
    frame = frame_from_rows(rows, root, "all_idb2", LAYOUT)
    return Dataset("all_idb2", ["normal", "blast"], frame, root, "ALL-IDB2 single-cell crops, blast vs normal",
                   info={"subject_ids": False})
