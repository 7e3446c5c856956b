"""The data root of a rehearsal: the real datasets that are here, and generated folders in the real layouts of the
others, so that every loader the ``paper`` profile can reach runs end to end.

A generated folder has the loader's folder structure and file naming (C-NMC 2019's
``fold_<k>/{all,hem}/UID_<subject>_<image>_<cell>_<all|hem>.bmp``, Taleqani's
``Original/<class>/*.jpg``, IICBU's ``<class>/<n>.png`` with ``case_ids.csv``, the bone-marrow
subtypes' ``<subtype>/*.bmp``) and a few
synthetic cells per subject or case; its images mean nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .. import config
from ..datasets import present, spec
from ..datasets.synthetic import draw_cell
from ..errors import DataError

SUBJECTS = 6  # per class
CELLS = 3  # per subject (C-NMC), images per case (IICBU), images per class and subject (Taleqani)
GENERATED = "GENERATED.txt"


def _save(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def write_cnmc(root: Path, seed: int = 0, size: int = 96) -> None:
    """C-NMC 2019's training folds: subjects ``<n>`` (ALL) and ``H<n>`` (normal), each in one fold."""
    rng = np.random.default_rng(seed)
    for label, prefix, index in (("all", "", 0), ("hem", "H", 1)):
        for subject in range(1, SUBJECTS + 1):
            fold = f"fold_{subject % 3}"
            for cell in range(1, CELLS + 1):
                name = f"UID_{prefix}{subject}_{cell}_1_{label}.bmp"
                _save(draw_cell(rng, size, index), root / "C-NMC_training_data" / fold / label / name)


def write_taleqani(root: Path, seed: int = 0, size: int = 224) -> None:
    """Taleqani's ``Original/{Benign,Early,Pre,Pro}/WBC-<Benign|Malignant>-<class>-<nnn>.jpg``."""
    rng = np.random.default_rng(seed)
    for index, label in enumerate(("Benign", "Early", "Pre", "Pro")):
        kind = "Benign" if label == "Benign" else f"Malignant-{label}"
        for number in range(1, SUBJECTS * CELLS + 1):
            _save(draw_cell(rng, size, index), root / "Original" / label / f"WBC-{kind}-{number:03d}.jpg")


def write_iicbu(root: Path, seed: int = 0) -> None:
    """IICBU's ``{CLL,FL,MCL}/<n>.png`` (417x312) and ``case_ids.csv`` (file, class, specimen, case)."""
    rng = np.random.default_rng(seed)
    rows = []
    for index, label in enumerate(("CLL", "FL", "MCL")):
        for number in range(SUBJECTS * CELLS):
            tiles = [draw_cell(rng, 104, index) for _ in range(12)]
            image = np.vstack([np.hstack(tiles[r * 4:(r + 1) * 4]) for r in range(3)])[:312, :417]
            file = f"{label}/{number}.png"
            _save(np.pad(image, ((0, 0), (0, 417 - image.shape[1]), (0, 0)), mode="edge"), root / file)
            case = f"{label.lower()}-case-{number // CELLS}"
            rows.append({"file": file, "class": label, "original_name": f"{case}_{number % CELLS + 1:03d}.tif",
                         "specimen": case, "case": case, "evidence": "generated for the rehearsal"})
    pd.DataFrame(rows).to_csv(root / "case_ids.csv", index=False)


def write_bone_marrow(root: Path, seed: int = 0, size: int = 224) -> None:
    """The bone-marrow subtype set's ``{L1,L2,M2,M3,M5}/*.bmp`` (P5)."""
    rng = np.random.default_rng(seed)
    for index, label in enumerate(("L1", "L2", "M2", "M3", "M5")):
        for number in range(1, SUBJECTS * CELLS + 1):
            _save(draw_cell(rng, size, index), root / label / f"{label}_{number:03d}.bmp")


WRITERS = {"cnmc2019": write_cnmc, "taleqani_all": write_taleqani, "iicbu_lymphoma": write_iicbu,
           "bone_marrow_subtypes": write_bone_marrow}


def data_root(target: Path, data_dir=None) -> Path:
    """``target`` holding each dataset of :data:`WRITERS`: a link to the real one where the data root has it,
    otherwise a generated folder (marked by ``GENERATED.txt``, made again when the generator changed).

    ``data_dir`` None means ``$LEUKEMIA_DATA_DIR`` or no data root at all; an explicit one must exist.
    """
    real = config.resolve_data_dir(data_dir) if data_dir or present_root() else None
    target.mkdir(parents=True, exist_ok=True)
    for name, write in WRITERS.items():
        folder = target / spec(name).folder
        source = real / spec(name).folder if real is not None and present(name, real) else None
        marker = f"Generated for the rehearsal in the layout of {name} ({SUBJECTS} x {CELLS}); not real images.\n"
        if folder.is_symlink():
            folder.unlink()
        elif folder.exists() and (source is not None or _marker(folder) != marker):
            shutil.rmtree(folder)  # a folder of our own under target, never a real dataset (those are links)
        if source is not None:
            folder.symlink_to(source.resolve(), target_is_directory=True)
        elif not folder.exists():
            write(folder)
            (folder / GENERATED).write_text(marker)
    return target


def present_root() -> bool:
    """True when ``$LEUKEMIA_DATA_DIR`` names an existing folder."""
    try:
        config.resolve_data_dir(None)
        return True
    except DataError:
        return False


def _marker(folder: Path) -> str | None:
    return (folder / GENERATED).read_text() if (folder / GENERATED).is_file() else None
