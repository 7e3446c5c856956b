"""One way to evaluate: a model scored over resamples x training seeds, pooled into one results row.

A *resample* is a seeded group-aware split (its ``split_seed``) or a cross-validation fold
(its ``fold``) at a split level (:data:`hemasuite.validation.SPLIT_LEVELS`); each is trained
with one or more training seeds. Every notebook uses this package for every protocol:

- :mod:`.resamples`: making the splits and folds (manifests ``splits/<level>_seed<k>.csv``,
  ``folds/<level>_k<n>.csv``), cross-validating, choosing settings on validation data;
- :mod:`.pooling`: the pooled row (mean; sd across resamples and across training seeds;
  exact and bootstrap CIs), the majority-class floor, and what a row carries;
- :mod:`.predictions`: the one per-image predictions CSV;
- :mod:`.ladder`: leakage-ladder rungs from the same pooled predictions.
"""

from .ladder import ORDER, PROTOCOLS, figure, rung, rungs, rungs_table, table, verdict
from .pooling import (
    BOOTSTRAP,
    EXACT,
    NEAR_PERFECT,
    POOLED,
    ResampleRun,
    as_runs,
    ci_table,
    complete,
    cv_majority_row,
    cv_model_row,
    cv_predictions,
    cv_summary,
    exact_ci,
    fit_splits,
    fold_table,
    group_table,
    majority,
    majority_predictions,
    majority_row,
    measure_train_accuracy,
    model_row,
    pool,
    pooled,
    runs_table,
    selection,
    spread_summary,
    spread_table,
    train_accuracy,
)
from .predictions import save_predictions
from .resamples import (
    cross_validate,
    prediction_frame,
    resplit,
    select_on_validation,
    shared_images,
    split_once,
    split_records,
    split_seeds,
    splits_table,
)

__all__ = [
    "BOOTSTRAP", "EXACT", "NEAR_PERFECT", "ORDER", "POOLED", "PROTOCOLS", "ResampleRun", "as_runs", "ci_table",
    "complete", "cross_validate", "cv_majority_row", "cv_model_row", "cv_predictions", "cv_summary", "exact_ci",
    "figure", "fit_splits", "fold_table", "group_table", "majority", "majority_predictions", "majority_row",
    "measure_train_accuracy", "model_row", "pool", "pooled", "prediction_frame", "resplit", "rung", "rungs",
    "rungs_table", "runs_table", "save_predictions", "select_on_validation", "selection", "shared_images",
    "split_once", "split_records", "split_seeds", "splits_table", "spread_summary", "spread_table", "table",
    "train_accuracy", "verdict",
]
