"""Cross-validation bookkeeping: selection on validation, per-image predictions, summaries."""

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import StratifiedGroupKFold

from hemasuite import crossval
from hemasuite.errors import ParameterError

CLASSES = ["CLL", "FL", "MCL"]


def test_selection_keeps_the_best_validation_score_and_records_every_candidate():
    candidates = {"small": {"size": 64}, "large": {"size": 128}, "tie": {"size": 128}}
    best, tried = crossval.select_on_validation(candidates, lambda s: s["size"] / 128)
    assert best == "large"
    assert list(tried["candidate"]) == ["small", "large", "tie"]
    assert tried["validation_score"].tolist() == [0.5, 1.0, 1.0]
    assert tried["selected"].tolist() == [False, True, False]
    with pytest.raises(ParameterError):
        crossval.select_on_validation({}, lambda s: 0.0)


def grouped_problem():
    labels = np.repeat([0, 1, 2], 20)
    groups = np.repeat(np.arange(12), 5)
    folds = list(StratifiedGroupKFold(n_splits=4, shuffle=True, random_state=0).split(labels, labels, groups))
    return labels, groups, folds


def test_cross_validate_tests_each_image_once_and_summarises():
    labels, groups, folds = grouped_problem()
    truth = np.eye(3)[labels]

    def oracle_except_group_0(fold, train_index, test_index):
        assert not set(groups[train_index]) & set(groups[test_index])
        probabilities = truth[test_index].copy()
        wrong = groups[test_index] == 0
        probabilities[wrong] = np.roll(probabilities[wrong], 1, axis=1)
        return probabilities

    predictions = crossval.cross_validate(labels, folds, CLASSES, oracle_except_group_0)
    assert predictions["index"].tolist() == list(range(60))
    assert set(predictions.columns) >= {"fold", "true", "predicted", "p_CLL", "p_FL", "p_MCL"}
    summary = crossval.pooled_summary(predictions)
    assert summary["correct"] == 55 and summary["accuracy"] == pytest.approx(55 / 60)
    assert summary["ci"]["ci_low"] < 55 / 60 < summary["ci"]["ci_high"]
    assert summary["folds"] == 4 and summary["fold_sd"] > 0
    per_group = crossval.group_table(predictions, groups, CLASSES)
    assert len(per_group) == 12
    assert per_group.set_index("group").loc[0, "fraction_correct"] == 0.0
    assert per_group["fraction_correct"].sum() == 11
    assert crossval.fold_table(predictions)["images"].sum() == 60


def test_cross_validate_refuses_bad_folds_and_shapes():
    labels, _, folds = grouped_problem()
    with pytest.raises(ParameterError, match="cover every image once"):
        crossval.cross_validate(labels, folds[:2], CLASSES, lambda f, tr, te: np.full((len(te), 3), 1 / 3))
    with pytest.raises(ParameterError, match="shape"):
        crossval.cross_validate(labels, folds, CLASSES, lambda f, tr, te: np.zeros((len(te), 2)))
    overlapping = [(np.arange(60), np.arange(10))]
    with pytest.raises(ParameterError, match="both"):
        crossval.cross_validate(labels, overlapping, CLASSES, lambda f, tr, te: np.zeros((len(te), 3)))


def test_repeated_split_summary_separates_split_and_seed_spread():
    table = pd.DataFrame({"split_seed": [0, 0, 1, 1, 2, 2], "train_seed": [0, 1] * 3,
                          "accuracy": [0.90, 0.92, 0.80, 0.82, 0.85, 0.87]})
    summary = crossval.repeated_split_summary(table)
    assert summary["mean"] == pytest.approx(0.86)
    assert summary["per_split_mean"] == pytest.approx({0: 0.91, 1: 0.81, 2: 0.86})
    assert summary["sd_across_splits"] == pytest.approx(0.05)
    assert summary["sd_across_training_seeds"] == pytest.approx(np.std([0.90, 0.92], ddof=1))
    with pytest.raises(ParameterError, match="split_seed"):
        crossval.repeated_split_summary(table.drop(columns="split_seed"))
