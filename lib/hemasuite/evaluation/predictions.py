"""The one per-image predictions CSV every notebook writes (``predictions/<name>.csv`` of a run).

One row per test image, per resample and per training seed, with the columns of
:data:`COLUMNS` in that order, then optional extra columns (e.g. ``relative_in_train``),
then one ``p_<class>`` probability per class. ``resample_kind`` is ``split_seed`` (a
seeded group-aware split) or ``fold`` (a cross-validation fold) and ``resample`` its
number, so a reader never has to guess which one a row came from.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import ParameterError

COLUMNS = ("split_level", "resample_kind", "resample", "seed", "path", "split", "true", "predicted")
KINDS = ("split_seed", "fold")


def frame(split_level: str, kind: str, resample: int | np.ndarray, seed: int, paths, classes,
          y_true, probabilities, **extra) -> pd.DataFrame:
    """Predictions of one (resample, training seed) in the schema of this module.

    ``resample`` is one number, or one per image (a cross-validation's folds); ``extra``
    columns (one value per image) go between the fixed columns and the probabilities.
    """
    if kind not in KINDS:
        raise ParameterError(f"resample kind {kind!r}: expected one of {KINDS}")
    probabilities = np.asarray(probabilities, dtype=float)
    y_true = np.asarray(y_true)
    if probabilities.shape != (len(y_true), len(classes)):
        raise ParameterError(f"{probabilities.shape} probabilities for {len(y_true)} images of {len(classes)} classes")
    part = pd.DataFrame({"split_level": split_level, "resample_kind": kind, "resample": resample, "seed": int(seed),
                         "path": np.asarray(paths, dtype=str), "split": "test",
                         "true": [classes[i] for i in y_true],
                         "predicted": [classes[i] for i in probabilities.argmax(axis=1)], **extra})
    return pd.concat([part, pd.DataFrame(probabilities, columns=[f"p_{c}" for c in classes]).round(5)], axis=1)


def save_predictions(run, name: str, table: pd.DataFrame | list[pd.DataFrame]) -> str:
    """``predictions/<name>.csv`` of ``run`` (one frame or parts from :func:`frame`); returns its relative path."""
    table = pd.concat(table, ignore_index=True) if isinstance(table, list) else table
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing or not any(c.startswith("p_") for c in table.columns):
        raise ParameterError(f"predictions {name!r} lack the columns {missing or ['p_<class>']}")
    return run.save_predictions(table, name)
