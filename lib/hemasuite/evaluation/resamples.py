"""Resamples of one dataset: seeded group-aware splits and cross-validation folds, and choosing settings on them.

- :func:`split_once`: one seeded split at a level over shared decoded images, with each
  test image marked when an image of its field group is on the training side;
- :func:`split_seeds`: the usable images split with every seed (one validation, the
  groups of the first split reused for the others);
- :func:`cross_validate`: ``fit_predict`` on each fold, per-image predictions;
- :func:`select_on_validation`: candidate settings tried on validation data, best kept.

Every split's manifest is ``splits/<level>_seed<k>.csv`` and every cross-validation's
``folds/<level>_k<n>.csv`` (:func:`hemasuite.splits.manifest_name`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from .. import experiment, metrics, record, rehearsal, same_field, splits, validation
from ..errors import ParameterError
from ..experiment import Prepared
from ..progress_lines import LoopProgress


def split_once(run, dataset, report: validation.ValidationReport, level: str, seed: int, fractions,
               images: np.ndarray, size: int, preprocess_name: str | None = None) -> Prepared:
    """A seeded split at ``level`` (:func:`hemasuite.experiment.make_split`) over the shared ``images`` (frame order).

    Adds ``relative_in_train``: the image's field group (duplicates and same-field twins of
    ``report``) has a member in the training part.
    """
    if len(images) != len(dataset.frame):
        raise ParameterError(f"{len(images)} images for {len(dataset.frame)} rows of {dataset.name}")
    frame, split = experiment.make_split(run, dataset, fractions, seed, level, report)
    field = validation.level_groups(frame, report, "field")
    trained_groups = set(field[frame["split"] == "train"])
    frame["relative_in_train"] = field.isin(trained_groups) & (frame["split"] != "train")
    return Prepared(dataset, frame, images, size, {"preprocess": preprocess_name or "resize (bilinear)"}, split)


def resplit(run, prepared: Prepared, seed: int) -> Prepared:
    """``prepared``'s groups (``split_group``) split again with ``seed``, checked for leakage like the first split,
    its manifest saved; the decoded images are shared."""
    frame = splits.split_dataset(prepared.frame.drop(columns="split"), prepared.split.fractions, seed,
                                 groups="split_group")
    scenes = prepared.dataset.info.get("image_kind") == "field"
    thumbs = same_field.thumbnails(frame["path"]) if scenes and prepared.split.level in ("field", "case") else None
    splits.assert_no_leakage(frame, "split_group", images=thumbs)
    manifest = sha = None
    if run is not None:
        saved = splits.save_manifest(frame, run.path(splits.manifest_name(prepared.split.level, seed)))
        manifest, sha = run.relative(saved), validation.sha256_file(saved)
    counts = pd.crosstab(frame["label"], frame["split"])
    split = replace(prepared.split, seed=seed, manifest=manifest, manifest_sha256=sha,
                    counts={name: {str(k): int(v) for k, v in counts[name].items()} for name in counts.columns})
    return replace(prepared, frame=frame, split=split)


def split_seeds(run, dataset, fractions, seeds, size: int) -> list[Prepared]:
    """:func:`hemasuite.experiment.prepare` with the first of ``seeds`` (one validation), :func:`resplit` for the
    others."""
    if not seeds:
        raise ParameterError("split_seeds needs at least one split seed")
    first = experiment.prepare(run, dataset, fractions, seeds[0], size)
    return [first, *(resplit(run, first, seed) for seed in seeds[1:])]


def shared_images(prepared: Prepared, images: np.ndarray, size: int) -> Prepared:
    """``prepared`` over another decoding of the same frame (e.g. another input size)."""
    if len(images) != len(prepared.frame):
        raise ParameterError(f"{len(images)} images for a split of {len(prepared.frame)} rows")
    return replace(prepared, images=images, size=size)


def split_records(prepared: list[Prepared]) -> list[dict]:
    """Each split's level, seed, manifest and its SHA-256, and counts, for results.json."""
    return [record.to_jsonable(vars(part.split)) for part in prepared]


def splits_table(prepared: dict[str, list[Prepared]]) -> pd.DataFrame:
    """Per level and split seed: groups merged, test images, and test images with a relative on the training side."""
    rows = []
    for level, parts in prepared.items():
        for part in parts:
            test = part.frame[part.frame["split"] == "test"]
            rows.append({"level": level, "split_seed": part.split.seed, "groups_merged": part.split.duplicates_merged,
                         "test": len(test), "test_with_relative_in_train": int(test["relative_in_train"].sum())})
    return pd.DataFrame(rows)


def select_on_validation(candidates: dict[str, dict], score: Callable[[dict], float]) -> tuple[str, pd.DataFrame]:
    """The name of the candidate with the highest validation ``score``, and every candidate tried.

    ``score(settings)`` trains on the inner training part and returns the validation
    accuracy; the test part is never seen here. Ties keep the earlier candidate (list the
    cheaper or simpler setting first).
    """
    if not candidates:
        raise ParameterError("select_on_validation needs at least one candidate setting")
    rows = [{"candidate": name, **settings, "validation_score": float(score(settings))}
            for name, settings in candidates.items()]
    tried = pd.DataFrame(rows)
    best = str(tried.loc[tried["validation_score"].idxmax(), "candidate"])
    tried["selected"] = tried["candidate"] == best
    return best, tried


def cross_validate(labels, folds: Iterable[tuple[np.ndarray, np.ndarray]], classes,
                   fit_predict: Callable[[int, np.ndarray, np.ndarray], np.ndarray]) -> pd.DataFrame:
    """Per-image test predictions over all folds.

    ``folds`` yields ``(train_index, test_index)`` pairs into ``labels``; the test parts must
    cover every image exactly once. ``fit_predict(fold, train_index, test_index)`` returns
    the ``(len(test_index), n_classes)`` probabilities of the test images. The result has
    columns ``index``, ``fold``, ``true``, ``predicted`` and ``p_<class>``, sorted by index.
    """
    labels = metrics.as_indices(labels, classes)
    parts, seen = [], np.zeros(len(labels), dtype=int)
    folds = list(folds)
    chosen = rehearsal.first_resamples(folds)  # all of them, except in a rehearsal
    progress = LoopProgress(len(chosen), "cross-validation", "folds")
    for fold, (train_index, test_index) in enumerate(chosen):
        train_index, test_index = np.asarray(train_index), np.asarray(test_index)
        if np.intersect1d(train_index, test_index).size:
            raise ParameterError(f"fold {fold}: images in both the training and the test part")
        probabilities = np.asarray(fit_predict(fold, train_index, test_index), dtype=float)
        if probabilities.shape != (len(test_index), len(classes)):
            raise ParameterError(f"fold {fold}: fit_predict returned shape {probabilities.shape}, "
                                 f"expected {(len(test_index), len(classes))}")
        seen[test_index] += 1
        parts.append(prediction_frame(labels, test_index, probabilities, classes, fold))
        progress.update(note=f"fold {fold + 1} done")
    progress.close()
    if len(chosen) == len(folds) and not np.all(seen == 1):
        raise ParameterError(f"the folds' test parts must cover every image once: {int((seen == 0).sum())} never "
                             f"tested, {int((seen > 1).sum())} tested more than once")
    return pd.concat(parts).sort_values("index").reset_index(drop=True)


def prediction_frame(labels, index, probabilities, classes, fold: int = 0) -> pd.DataFrame:
    """Per-image predictions of the images ``index`` (columns as :func:`cross_validate`'s), e.g. of one split."""
    labels, index = metrics.as_indices(labels, classes), np.asarray(index)
    part = pd.DataFrame({"index": index, "fold": fold, "true": labels[index],
                         "predicted": np.asarray(probabilities).argmax(axis=1)})
    for k, name in enumerate(classes):
        part[f"p_{name}"] = np.asarray(probabilities)[:, k]
    return part
