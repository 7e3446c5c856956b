"""Loaders for datasets stored as one folder per class."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ..errors import DataError
from ..imageio import IMAGE_SUFFIXES, is_image_file
from .registry import FOLDER_PREFIX, Dataset, frame_from_rows, register, register_folder_loader

# image formats the suite does not read: reported as ``unsupported_format``, never silently skipped
OTHER_IMAGE_SUFFIXES = (".gif", ".webp", ".jp2", ".j2k", ".heic", ".heif", ".avif", ".jxl", ".svg", ".ico", ".ppm",
                        ".pgm", ".pbm", ".tga", ".psd", ".dcm", ".raw", ".eps")


def scan_class_folders(root: Path, classes: list[str] | None, name: str, layout: str,
                       recursive: bool = False) -> tuple[list[str], list[dict]]:
    """Rows ``{path, label, group}`` for ``root/<class>/<image>``.

    With ``classes`` given, every one must exist and hold at least one image; without,
    the class list is the sorted sub-folders. Empty class folders are an error.
    """
    if classes is None:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise DataError(f"dataset {name!r}: no class folders in {root}.\nExpected layout: {layout}")
    missing = [c for c in classes if not (root / c).is_dir()]
    if missing:
        raise DataError(f"dataset {name!r}: class folder(s) {missing} missing in {root}.\nExpected layout: {layout}")
    rows, empty = [], []
    for label in classes:
        pattern = "**/*" if recursive else "*"
        files = sorted(p for p in (root / label).glob(pattern) if is_image_file(p))
        if not files:
            empty.append(str(root / label))
        rows += [{"path": str(p.resolve()), "label": label, "group": f"{label}/{p.relative_to(root / label)}"}
                 for p in files]
    if empty:
        raise DataError(f"dataset {name!r}: empty class folder(s) with no image files: {empty}")
    return classes, rows


TALEQANI_LAYOUT = "<data root>/taleqani_all/{Original,Segmented}/{Benign,Early,Pre,Pro}/*.jpg"
TALEQANI_SOURCE = ("Kaggle 'Leukemia' by Mehrad Aria (kaggle.com/datasets/mehradaria/leukemia) or Mendeley Data "
                   "doi:10.17632/tg9jt5m4kd; unzip so that Original/ and Segmented/ sit in taleqani_all/")


@register("taleqani_all", "taleqani_all", TALEQANI_LAYOUT, TALEQANI_SOURCE)
def load_taleqani(root: Path, variant: str = "Original") -> Dataset:
    """Taleqani ALL (Aria et al. 2021): 4 classes, 224x224 JPEG, no patient ids published."""
    if variant not in ("Original", "Segmented"):
        raise DataError(f"taleqani_all: variant must be 'Original' or 'Segmented', not {variant!r}")
    folder = root / variant
    if not folder.is_dir():
        raise DataError(f"dataset 'taleqani_all': {folder} does not exist.\nExpected layout: {TALEQANI_LAYOUT}")
    classes, rows = scan_class_folders(folder, ["Benign", "Early", "Pre", "Pro"], "taleqani_all", TALEQANI_LAYOUT)
    return Dataset("taleqani_all", classes, frame_from_rows(rows, folder, "taleqani_all", TALEQANI_LAYOUT), folder,
                   f"Taleqani Hospital ALL peripheral blood smears ({variant}), 89 patients, no per-image patient id",
                   info={"variant": variant, "subject_ids": False, "image_kind": "field"})


IICBU_LAYOUT = ("<data root>/iicbu_lymphoma/{CLL,FL,MCL}/*.tif (originals, named <specimen>_<nnn>.tif) or *.png "
                "with iicbu_lymphoma/case_ids.csv (columns file,class,specimen,case; file relative to iicbu_lymphoma/)")
IICBU_SOURCE = ("IICBU 2008 benchmark, 'Malignant Lymphoma' (ome.grc.nia.nih.gov/iicbu2008/lymphoma/index.html); "
                "unpack the three class folders into iicbu_lymphoma/")
IICBU_CASES = "case_ids.csv"
# sj-05-1396-R3_003.tif: specimen sj-05-1396-R3, case sj-05-1396
IICBU_NAME = re.compile(r"^(?P<specimen>(?P<case>sj-\d+-\d+)(?:-R\d+)?)_\d+$", re.IGNORECASE)


def iicbu_cases(root: Path, rows: list[dict]) -> pd.DataFrame:
    """Specimen and case of every row: from ``case_ids.csv``, or else from original file names.

    Raises :class:`DataError` naming the files the table misses, the rows it lists that
    do not exist, and class disagreements.
    """
    table_path = root / IICBU_CASES
    files = pd.DataFrame({"file": [Path(r["path"]).relative_to(root.resolve()).as_posix() for r in rows],
                          "label": [r["label"] for r in rows]})
    if not table_path.is_file():
        matches = [IICBU_NAME.match(Path(f).stem) for f in files["file"]]
        if all(matches):
            return files.assign(specimen=[m["specimen"] for m in matches], case=[m["case"] for m in matches])
        unnamed = [f for f, m in zip(files["file"], matches) if not m][:5]
        raise DataError(f"dataset 'iicbu_lymphoma': {table_path} is missing and file names such as {unnamed} do not "
                        f"name their specimen (<specimen>_<nnn>.tif), so cases are unknown. Put the case table "
                        f"there (columns file,class,specimen,case).\nExpected layout: {IICBU_LAYOUT}")
    table = pd.read_csv(table_path, dtype=str)
    missing_columns = {"file", "class", "specimen", "case"} - set(table.columns)
    if missing_columns:
        raise DataError(f"{table_path}: missing column(s) {sorted(missing_columns)}; expected file,class,specimen,case")
    merged = files.merge(table, on="file", how="outer", indicator=True)
    unlisted = merged.loc[merged["_merge"] == "left_only", "file"].tolist()
    absent = merged.loc[merged["_merge"] == "right_only", "file"].tolist()
    both = merged[merged["_merge"] == "both"]
    wrong = both.loc[both["label"] != both["class"], "file"].tolist()
    empty = both.loc[both[["specimen", "case"]].isna().any(axis=1), "file"].tolist()
    if unlisted or absent or wrong or empty:
        parts = [f"{len(v)} {what} (e.g. {v[:3]})" for v, what in
                 ((unlisted, "image(s) not in the table"), (absent, "table row(s) without an image"),
                  (wrong, "row(s) whose class differs from the folder"), (empty, "row(s) without specimen or case"))
                 if v]
        raise DataError(f"{table_path} does not match the images under {root}: {'; '.join(parts)}")
    return files.merge(table[["file", "specimen", "case"]], on="file", how="left")


@register("iicbu_lymphoma", "iicbu_lymphoma", IICBU_LAYOUT, IICBU_SOURCE)
def load_iicbu(root: Path) -> Dataset:
    """IICBU 2008 malignant lymphoma: CLL / FL / MCL H&E biopsy sections; group = case (patient)."""
    classes, rows = scan_class_folders(root, ["CLL", "FL", "MCL"], "iicbu_lymphoma", IICBU_LAYOUT)
    cases = iicbu_cases(root, rows)
    for row, specimen, case in zip(rows, cases["specimen"], cases["case"]):
        row.update(group=case, subject=case, case=case, specimen=specimen)
    frame = frame_from_rows(rows, root, "iicbu_lymphoma", IICBU_LAYOUT)
    return Dataset("iicbu_lymphoma", classes, frame, root,
                   "IICBU 2008 lymphoma biopsies (H&E); group = case from the specimen names",
                   info={"subject_ids": True, "image_kind": "field", "cases": int(frame["case"].nunique()),
                         "specimens": int(frame["specimen"].nunique())})


BONE_MARROW_LAYOUT = "<data root>/bone_marrow/{L1,L2,M2,M3,M5}/*.(bmp|jpg|png|tif)"
BONE_MARROW_SOURCE = ("Reta et al. 2015 bone-marrow acute-leukemia subtype cells (633 images); not published, "
                      "obtainable only from the authors")


@register("bone_marrow_subtypes", "bone_marrow", BONE_MARROW_LAYOUT, BONE_MARROW_SOURCE)
def load_bone_marrow(root: Path) -> Dataset:
    """The five-subtype bone-marrow cell set of P5 (L1 L2 M2 M3 M5)."""
    classes, rows = scan_class_folders(root, ["L1", "L2", "M2", "M3", "M5"], "bone_marrow_subtypes",
                                       BONE_MARROW_LAYOUT)
    return Dataset("bone_marrow_subtypes", classes,
                   frame_from_rows(rows, root, "bone_marrow_subtypes", BONE_MARROW_LAYOUT), root,
                   "bone-marrow acute leukemia subtypes (Reta et al. 2015)", info={"subject_ids": False})


FOLDER_LAYOUT = "<root>/<class name>/<images>, one sub-folder per class"


def _file_problem(path: Path, label: str, nested: bool) -> dict | None:
    """The problem row of one entry below a class folder, None for an image the loader uses."""
    suffix = path.suffix.lower()
    if path.is_symlink() and not path.exists():
        return {"kind": "broken_link", "path": str(path), "detail": f"symbolic link to {path.readlink()}, "
                "which does not exist"}
    if nested and suffix in IMAGE_SUFFIXES:
        return {"kind": "nested_image", "path": str(path),
                "detail": f"in a sub-folder of class {label!r}; only images directly in {label}/ are used"}
    if suffix in IMAGE_SUFFIXES:
        return None
    if suffix in OTHER_IMAGE_SUFFIXES:
        return {"kind": "unsupported_format", "path": str(path),
                "detail": f"{suffix} images are not read; convert to one of {', '.join(IMAGE_SUFFIXES)}"}
    return {"kind": "not_an_image", "path": str(path),
            "detail": f"not an image file (suffix {suffix or 'none'!r}; read: {', '.join(IMAGE_SUFFIXES)})"}


def scan_own_folder(root: Path) -> tuple[list[str], list[dict], list[dict]]:
    """Classes, image rows and problem rows of ``root/<class>/<image>``; nothing found is fatal but an empty root.

    Every entry the loader does not use becomes a problem row ``{kind, path, detail}``:
    ``empty_class`` (a class folder without images; the class is left out),
    ``outside_class_folder``, ``nested_image``, ``unsupported_format``, ``not_an_image``,
    ``broken_link``. Hidden files (``.name``) are ignored.
    """
    rows, problems, classes = [], [], []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            kind = "broken_link" if entry.is_symlink() and not entry.exists() else "outside_class_folder"
            problems.append({"kind": kind, "path": str(entry),
                             "detail": "not in a class folder; put images in <root>/<class>/"})
            continue
        label, found = entry.name, 0
        for path in sorted(entry.rglob("*")):
            relative = path.relative_to(entry)
            if any(part.startswith(".") for part in relative.parts) or (path.is_dir() and not path.is_symlink()):
                continue
            problem = _file_problem(path, label, nested=len(relative.parts) > 1)
            if problem:
                problems.append(problem)
            elif path.is_file():
                rows.append({"path": str(path.resolve()), "label": label, "group": f"{label}/{path.name}"})
                found += 1
        if found:
            classes.append(label)
        else:
            problems.append({"kind": "empty_class", "path": str(entry),
                             "detail": f"class folder {label!r} holds no readable image files; class left out"})
    return classes, rows, problems


@register_folder_loader
def load_own_folder(path: str) -> Dataset:
    """``folder:<path>``: your own images, one sub-folder per class; marked ``own`` (never judged against a paper).

    The dataset's name is the folder's name. What the loader does not use (empty class
    folders, other files, nested images, broken links) is kept in ``Dataset.problems``
    for validation's problems table; only a root without any image is an error.
    """
    if not path:
        raise DataError(f"dataset {FOLDER_PREFIX!r} needs a folder: {FOLDER_PREFIX}/path/to/root "
                        f"({FOLDER_LAYOUT})")
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"dataset {FOLDER_PREFIX}{path}: folder {root} does not exist.\nExpected layout: "
                        f"{FOLDER_LAYOUT}")
    classes, rows, problems = scan_own_folder(root)
    if len(classes) < 2:
        raise DataError(f"dataset {FOLDER_PREFIX}{path}: {len(classes)} class folder(s) with images ({classes}); "
                        f"at least two are needed.\nExpected layout: {FOLDER_LAYOUT}\nFound: "
                        + "; ".join(f"{p['kind']}: {p['path']}" for p in problems[:10]))
    name = root.name or "folder"
    return Dataset(name, classes, frame_from_rows(rows, root, name, FOLDER_LAYOUT), root,
                   f"own class-per-folder images ({name}/)", info={"subject_ids": False, "source": "folder"},
                   own=True, problems=problems)


def load_folder(root, classes: list[str] | None = None, name: str = "folder") -> Dataset:
    """Any class-per-folder collection at an explicit path (no registry folder)."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"dataset {name!r}: folder {root} does not exist.\nExpected layout: {FOLDER_LAYOUT}")
    classes, rows = scan_class_folders(root, classes, name, FOLDER_LAYOUT)
    return Dataset(name, classes, frame_from_rows(rows, root, name, FOLDER_LAYOUT), root,
                   f"class-per-folder images from {root}")
