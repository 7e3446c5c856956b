"""C-NMC 2019 (ISBI 2019 challenge): single-cell ALL vs normal (hem) images, split by subject."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ..errors import DataError
from ..imageio import is_image_file
from .registry import Dataset, frame_from_rows, register

LAYOUT = ("<data root>/cnmc2019/C-NMC_training_data/fold_{0,1,2}/{all,hem}/UID_<subject>_<image>_<cell>_<all|hem>.bmp, "
          "optionally <data root>/cnmc2019/C-NMC_test_prelim_phase_data/<n>.bmp with "
          "C-NMC_test_prelim_phase_data_labels.csv (columns Patient_ID,new_names,labels; 1 = all, 0 = hem)")
SOURCE = ("The Cancer Imaging Archive, collection C_NMC_LEUKEMIA (doi:10.7937/tcia.2019.dc64i46r); "
          "unpack it into cnmc2019/")
NAME_PATTERN = re.compile(r"^UID_(?P<subject>H?\d+)_(?P<image>\d+)_(?P<cell>\d+)_(?P<label>all|hem)$", re.IGNORECASE)
PRELIM_FOLDER = "C-NMC_test_prelim_phase_data"
PRELIM_LABELS = "C-NMC_test_prelim_phase_data_labels.csv"


def parse_subject(file_name: str) -> tuple[str, str]:
    """``UID_11_10_1_all.bmp -> ('11', 'all')``; ``UID_H10_43_1_hem.bmp -> ('H10', 'hem')``."""
    match = NAME_PATTERN.match(Path(file_name).stem)
    if not match:
        raise DataError(f"C-NMC file name {file_name!r} does not follow UID_<subject>_<image>_<cell>_<all|hem>")
    return match["subject"].upper(), match["label"].lower()


def training_rows(root: Path) -> list[dict]:
    """Rows of the three training folds, labelled and grouped by subject."""
    rows = []
    for fold in sorted((root / "C-NMC_training_data").glob("fold_*")):
        for label in ("all", "hem"):
            for path in sorted(p for p in (fold / label).glob("*") if is_image_file(p)):
                subject, name_label = parse_subject(path.name)
                if name_label != label:
                    raise DataError(f"{path}: file name says {name_label!r} but it lies in the {label!r} folder")
                rows.append({"path": str(path.resolve()), "label": label, "group": subject,
                             "subject": subject, "subset": fold.name})
    return rows


def prelim_rows(root: Path) -> list[dict]:
    """Rows of the preliminary test set, labels and subjects taken from its CSV."""
    folder = root / PRELIM_FOLDER
    if not folder.is_dir():
        return []
    csv = next((p for p in (folder / PRELIM_LABELS, root / PRELIM_LABELS) if p.is_file()), None)
    if csv is None:
        raise DataError(f"{folder} exists but its label file {PRELIM_LABELS} is missing (looked in {folder} and "
                        f"{root})")
    table = pd.read_csv(csv)
    missing = {"Patient_ID", "new_names", "labels"} - set(table.columns)
    if missing:
        raise DataError(f"{csv}: missing column(s) {sorted(missing)}")
    rows = []
    for record in table.itertuples(index=False):
        path = folder / str(record.new_names)
        if not path.is_file():
            raise DataError(f"{csv} lists {record.new_names} but {path} does not exist")
        subject, _ = parse_subject(str(record.Patient_ID))
        label = {1: "all", 0: "hem"}.get(int(record.labels))
        if label is None:
            raise DataError(f"{csv}: label {record.labels!r} for {record.new_names} is neither 1 (all) nor 0 (hem)")
        rows.append({"path": str(path.resolve()), "label": label, "group": subject,
                     "subject": subject, "subset": "prelim_test"})
    return rows


@register("cnmc2019", "cnmc2019", LAYOUT, SOURCE)
def load_cnmc(root: Path, include_prelim_test: bool = True) -> Dataset:
    """C-NMC 2019 training folds (and the labelled preliminary test set)."""
    if not (root / "C-NMC_training_data").is_dir():
        raise DataError(f"dataset 'cnmc2019': {root / 'C-NMC_training_data'} does not exist.\n"
                        f"Expected layout: {LAYOUT}")
    rows = training_rows(root) + (prelim_rows(root) if include_prelim_test else [])
    frame = frame_from_rows(rows, root, "cnmc2019", LAYOUT)
    return Dataset("cnmc2019", ["all", "hem"], frame, root,
                   "C-NMC 2019 single-cell images, ALL vs normal (hem); group = subject from the file name",
                   info={"subject_ids": True, "subjects": int(frame["subject"].nunique())})
