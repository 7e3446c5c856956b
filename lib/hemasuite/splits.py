"""Seeded, stratified, group-aware train / validation / test splits and folds, their CSV manifests.

A group (case or subject, or a set of duplicate or same-field images from
:func:`hemasuite.validation.level_groups`) always lands in one split or fold; within
that constraint every class is divided as close to the requested fractions as possible.
:func:`assert_no_leakage` checks the groups and, given the images, looks for look-alike
images on different sides with a similarity of its own.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .config import common_folder
from .errors import DataError, ParameterError

SPLIT_NAMES = {2: ("train", "test"), 3: ("train", "val", "test")}
MANIFEST_COLUMNS = ["path", "label", "group", "split"]
EXTRA_COLUMNS = ("duplicate_group", "split_group", "subject", "case", "specimen", "subset", "fold")
# Phase-correlation peak (hemasuite.same_field.phase_correlation) at which two images on different
# sides count as a leak. On Taleqani ALL the largest of 1.4 million same-class pairs that are not
# same-field twins is 0.42; about 40% of the twins and every copy reach it, so a split that
# scatters twins fails, though a single stray twin can pass.
LEAK_THRESHOLD = 0.45


def check_fractions(fractions) -> tuple[float, ...]:
    """Two (train, test) or three (train, val, test) positive fractions summing to 1."""
    try:
        values = tuple(float(f) for f in fractions)
    except (TypeError, ValueError) as error:
        raise ParameterError(f"fractions must be a sequence of numbers, not {fractions!r}") from error
    if len(values) not in SPLIT_NAMES or not all(0 < f < 1 for f in values) or abs(sum(values) - 1) > 1e-6:
        raise ParameterError(f"fractions must be 2 (train, test) or 3 (train, val, test) numbers in (0, 1) "
                             f"summing to 1, not {fractions!r}")
    return values


def _group_keys(frame: pd.DataFrame, groups) -> pd.Series:
    """The group of each row: a column name, a Series / array aligned with ``frame``, or None (one per row)."""
    if groups is None:
        return pd.Series(np.arange(len(frame)), index=frame.index)
    if isinstance(groups, str):
        if groups not in frame.columns:
            raise ParameterError(f"group column {groups!r} not in the frame; columns: {list(frame.columns)}")
        return frame[groups]
    if len(groups) != len(frame):
        raise ParameterError(f"groups has {len(groups)} entries but the frame has {len(frame)} rows")
    return pd.Series(np.asarray(groups), index=frame.index)


def split_dataset(frame: pd.DataFrame, fractions=(0.7, 0.15, 0.15), seed: int = 0, groups="group",
                  label_col: str = "label") -> pd.DataFrame:
    """A copy of ``frame`` with a ``split`` column (train / val / test, or train / test).

    Groups are visited largest first (random order among equal sizes, from ``seed``) and
    each goes to the split where it most reduces the squared distance between the
    per-class counts and their targets ``fraction x class total``.
    """
    fractions = check_fractions(fractions)
    names = SPLIT_NAMES[len(fractions)]
    group_codes, group_names = pd.factorize(_group_keys(frame, groups))
    if len(group_names) < len(names):
        raise DataError(f"{len(group_names)} group(s) cannot fill the {len(names)} splits {names}")
    label_codes, classes = pd.factorize(frame[label_col])
    composition = np.zeros((len(group_names), len(classes)))
    np.add.at(composition, (group_codes, label_codes), 1)
    target = np.outer(fractions, composition.sum(axis=0))
    current = np.zeros_like(target)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(group_names))
    order = order[np.argsort(-composition[order].sum(axis=1), kind="stable")]
    assignment = np.empty(len(group_names), dtype=int)
    for group in order:
        counts = composition[group]
        cost = (counts * (2 * (current - target) + counts)).sum(axis=1)
        best = rng.choice(np.flatnonzero(np.isclose(cost, cost.min())))
        assignment[group] = best
        current[best] += counts
    result = frame.copy()
    result["split"] = np.asarray(names)[assignment[group_codes]]
    return result


def grouped_folds(frame: pd.DataFrame, n_folds: int = 5, seed: int = 0, groups="group",
                  label_col: str = "label") -> pd.Series:
    """Fold number (0 .. n_folds - 1) of each row: stratified by class, whole groups per fold, seeded.

    scikit-learn's ``StratifiedGroupKFold`` with shuffling; ``groups`` as in
    :func:`split_dataset`.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    keys = _group_keys(frame, groups)
    if keys.nunique() < n_folds:
        raise DataError(f"{keys.nunique()} group(s) cannot fill {n_folds} folds")
    folds = np.empty(len(frame), dtype=int)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for fold, (_, test) in enumerate(splitter.split(np.zeros(len(frame)), frame[label_col], pd.factorize(keys)[0])):
        folds[test] = fold
    return pd.Series(folds, index=frame.index, name="fold")


def look_alike_pairs(images: np.ndarray, labels, threshold: float = LEAK_THRESHOLD) -> np.ndarray:
    """Index pairs ``(i, j)``, ``i < j``, of same-class thumbnails whose phase-correlation peak reaches ``threshold``,
    and their peaks (``(n, 3)``: i, j, peak).

    Independent of any split, so each pair of images is scored once, whatever the labels
    (:mod:`hemasuite.pair_scores`, in the user cache); every split is then checked against
    it (:func:`cross_side_matches`).
    """
    from .pair_scores import at_least
    from .same_field import index_pairs, phase_correlation

    def peaks(images, pairs):
        return phase_correlation(images, images, pairs, what="look-alike check")

    found, scores = at_least("look_alike", images, index_pairs(labels), peaks, threshold)
    return np.column_stack([found, scores])


def cross_side_matches(frame: pd.DataFrame, images: np.ndarray, split_col: str = "split", label_col: str = "label",
                       threshold: float = LEAK_THRESHOLD) -> pd.DataFrame:
    """Same-class image pairs on different sides whose phase-correlation peak reaches ``threshold``.

    ``images`` are greyscale thumbnails (``hemasuite.same_field.thumbnails``) in frame
    order. The similarity is independent of the groups the split was made from
    (:func:`look_alike_pairs`).
    """
    if len(images) != len(frame):
        raise ParameterError(f"images has {len(images)} entries but the frame has {len(frame)} rows")
    sides = frame[split_col].to_numpy()
    found = look_alike_pairs(images, frame[label_col].to_numpy(), threshold)
    i, j = found[:, 0].astype(np.int64), found[:, 1].astype(np.int64)
    hits = sides[i] != sides[j]
    paths = frame["path"].to_numpy()
    return pd.DataFrame({"path_a": paths[i[hits]], "side_a": sides[i[hits]], "path_b": paths[j[hits]],
                         "side_b": sides[j[hits]], "peak": found[hits, 2].astype(np.float32)})


def assert_no_leakage(frame: pd.DataFrame, group_col="group", split_col: str = "split", images=None,
                      label_col: str = "label", threshold: float = LEAK_THRESHOLD) -> None:
    """Raise :class:`DataError` naming every group found on more than one side, and look-alike images across sides.

    ``group_col`` is a column name or a Series aligned with ``frame`` (e.g. duplicate
    groups); ``split_col`` may hold splits or folds. With ``images`` (thumbnails in frame
    order), same-class images on different sides are also compared by phase correlation
    (:func:`cross_side_matches`), which does not use the group labels.
    """
    keys = frame[group_col] if isinstance(group_col, str) else group_col
    splits = frame[split_col].groupby(keys).unique()
    leaked = splits[splits.map(len) > 1]
    if len(leaked):
        named = "; ".join(f"{group!r} in {sorted(where)}" for group, where in leaked.items())
        raise DataError(f"{len(leaked)} group(s) straddle splits: {named}")
    if images is not None:
        matches = cross_side_matches(frame, images, split_col, label_col, threshold)
        if len(matches):
            named = "; ".join(f"{Path(r.path_a).name} ({r.side_a}) ~ {Path(r.path_b).name} ({r.side_b}): "
                              f"{r.peak:.2f}" for r in matches.head(10).itertuples())
            raise DataError(f"{len(matches)} pair(s) of look-alike images on different sides (phase-correlation "
                            f"peak >= {threshold}), though their groups do not straddle: {named}. The grouping "
                            f"missed them: check the same-field and duplicate detection of this dataset")


def split_summary(frame: pd.DataFrame, label_col: str = "label") -> pd.DataFrame:
    """Images per split x class, with each split's total and share of all images."""
    table = pd.crosstab(frame["split"], frame[label_col])
    table = table.reindex([s for s in SPLIT_NAMES[3] if s in table.index])
    table["total"] = table.sum(axis=1)
    table["share"] = (table["total"] / table["total"].sum()).round(4)
    table.columns.name = None
    return table.reset_index()


def manifest_name(level: str, seed: int) -> str:
    """Where a run keeps the manifest of its split at ``level`` with ``seed``: ``splits/<level>_seed<seed>.csv``."""
    return f"splits/{level}_seed{seed}.csv"


def folds_manifest_name(level: str, n_folds: int) -> str:
    """Where a run keeps the manifest of its ``n_folds``-fold CV at ``level``: ``folds/<level>_k<n>.csv``."""
    return f"folds/{level}_k{n_folds}.csv"


def save_folds_manifest(run, frame: pd.DataFrame, groups, folds, level: str) -> str:
    """A cross-validation's manifest in ``run``'s folder, ``folds/<level>_k<n>.csv`` (every image with its group and
    test fold); its run-relative path."""
    folds = np.asarray(folds)
    frame = frame.assign(group=groups, split="test", fold=folds)
    return run.relative(save_manifest(frame, run.path(folds_manifest_name(level, len(np.unique(folds))))))


def save_manifest(frame: pd.DataFrame, path) -> Path:
    """Write the split as CSV: path, label, group, split, and the columns of ``EXTRA_COLUMNS`` present.

    Paths, and groups named by a path, are written relative to the images' common folder
    (:func:`hemasuite.config.common_folder`); :func:`load_manifest` joins paths to a given root again.
    """
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"cannot save split manifest: frame lacks column(s) {missing}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = [c for c in EXTRA_COLUMNS if c in frame.columns]
    written = frame[MANIFEST_COLUMNS + extra].astype(str)
    if len(written) and all(os.path.isabs(p) for p in written["path"]):
        root = common_folder(written["path"]) + os.sep
        written = written.apply(lambda column: column.str.removeprefix(root))  # paths, and groups named by path
    written.to_csv(path, index=False)
    return path


def load_manifest(path, root=None) -> pd.DataFrame:
    """Read a manifest written by :func:`save_manifest` (all columns as strings), checking its columns and splits.

    With ``root`` (the images' common folder), relative paths become absolute again.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"split manifest {path} does not exist")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"split manifest {path} lacks column(s) {missing}")
    unknown = sorted(set(frame["split"]) - set(SPLIT_NAMES[3]))
    if unknown:
        raise DataError(f"split manifest {path} has unknown split name(s) {unknown}")
    if root is not None:
        frame["path"] = [p if Path(p).is_absolute() else str(Path(root) / p) for p in frame["path"]]
    return frame
