"""Cross-validation bookkeeping: selection on validation, per-image predictions, summaries."""

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import StratifiedGroupKFold

from hemasuite import evaluation
from hemasuite.errors import ParameterError
from hemasuite.evaluation.predictions import COLUMNS as PREDICTION_COLUMNS

CLASSES = ["CLL", "FL", "MCL"]


def test_selection_keeps_the_best_validation_score_and_records_every_candidate():
    candidates = {"small": {"size": 64}, "large": {"size": 128}, "tie": {"size": 128}}
    best, tried = evaluation.select_on_validation(candidates, lambda s: s["size"] / 128)
    assert best == "large"
    assert list(tried["candidate"]) == ["small", "large", "tie"]
    assert tried["validation_score"].tolist() == [0.5, 1.0, 1.0]
    assert tried["selected"].tolist() == [False, True, False]
    with pytest.raises(ParameterError):
        evaluation.select_on_validation({}, lambda s: 0.0)


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

    predictions = evaluation.cross_validate(labels, folds, CLASSES, oracle_except_group_0)
    assert predictions["index"].tolist() == list(range(60))
    assert set(predictions.columns) >= {"fold", "true", "predicted", "p_CLL", "p_FL", "p_MCL"}
    summary = evaluation.cv_summary(predictions)
    assert summary["correct"] == 55 and summary["accuracy"] == pytest.approx(55 / 60)
    assert summary["ci"]["ci_low"] < 55 / 60 < summary["ci"]["ci_high"]
    assert summary["folds"] == 4 and summary["fold_sd"] > 0
    per_group = evaluation.group_table(predictions, groups, CLASSES)
    assert len(per_group) == 12
    assert per_group.set_index("group").loc[0, "fraction_correct"] == 0.0
    assert per_group["fraction_correct"].sum() == 11
    assert evaluation.fold_table(predictions)["images"].sum() == 60


def test_cross_validate_refuses_bad_folds_and_shapes():
    labels, _, folds = grouped_problem()
    with pytest.raises(ParameterError, match="cover every image once"):
        evaluation.cross_validate(labels, folds[:2], CLASSES, lambda f, tr, te: np.full((len(te), 3), 1 / 3))
    with pytest.raises(ParameterError, match="shape"):
        evaluation.cross_validate(labels, folds, CLASSES, lambda f, tr, te: np.zeros((len(te), 2)))
    overlapping = [(np.arange(60), np.arange(10))]
    with pytest.raises(ParameterError, match="both"):
        evaluation.cross_validate(labels, overlapping, CLASSES, lambda f, tr, te: np.zeros((len(te), 3)))


def test_repeated_split_summary_separates_split_and_seed_spread():
    table = pd.DataFrame({"split_seed": [0, 0, 1, 1, 2, 2], "train_seed": [0, 1] * 3,
                          "accuracy": [0.90, 0.92, 0.80, 0.82, 0.85, 0.87]})
    summary = evaluation.spread_summary(table)
    assert summary["mean"] == pytest.approx(0.86)
    assert summary["per_split_mean"] == pytest.approx({0: 0.91, 1: 0.81, 2: 0.86})
    assert summary["sd_across_splits"] == pytest.approx(0.05)
    assert summary["sd_across_training_seeds"] == pytest.approx(np.std([0.90, 0.92], ddof=1))
    with pytest.raises(ParameterError, match="split_seed"):
        evaluation.spread_summary(table.drop(columns="split_seed"))


def test_model_row_and_rung_pool_every_fold_with_an_exact_ci(tmp_path):
    from hemasuite import record

    labels, groups, folds = grouped_problem()
    truth = np.eye(3)[labels]
    predictions = evaluation.cross_validate(labels, folds, CLASSES, lambda f, tr, te: np.roll(truth[te], int(f == 0),
                                                                                              axis=1))
    run = record.Run("nb", tmp_path, {})
    paths = [f"/data/{i}.png" for i in range(60)]
    row = evaluation.cv_model_row(run, "m", "model", predictions, paths, CLASSES, record.Weights("random init"), "case",
                             "tile CNN", 0.97, [f"fold {k}: a" for k in range(4)])
    wrong = len(folds[0][1])
    assert row.mean == pytest.approx(1 - wrong / 60) and row.n_test == 60 and row.split_level == "case"
    assert row.ci_low < row.mean < row.ci_high and row.ci_method == "Clopper-Pearson, pooled over 4 folds"
    assert [s.fold for s in row.seeds] == [0, 1, 2, 3] and row.seeds[0].value == 0 and row.seeds[1].value == 1
    assert row.seeds[2].chosen == "fold 2: a" and row.train_accuracy == 0.97 and row.sd > 0
    saved = pd.read_csv(run.dir / row.predictions)
    assert saved.columns.tolist() == [*PREDICTION_COLUMNS, "p_CLL", "p_FL", "p_MCL"]
    assert set(saved["resample_kind"]) == {"fold"} and sorted(set(saved["resample"])) == [0, 1, 2, 3]
    assert saved["path"].tolist() == [p.removeprefix("/data/") for p in paths]
    assert (saved["true"] != saved["predicted"]).sum() == wrong
    rung = evaluation.rung("IICBU", 2, "case-level CV", "case", "model", predictions, 0.97)
    assert rung.test_accuracy == row.mean and rung.splits == 4 and rung.sd == row.sd and rung.ci_high == row.ci_high
    one = evaluation.prediction_frame(labels, folds[0][1], truth[folds[0][1]], CLASSES)
    single = evaluation.rung("IICBU", 0, "augment, then split", "augmented", "model", one)
    assert single.test_accuracy == 1.0 and single.ci_high == 1.0 and single.ci_low < 1 and single.sd is None
    table = evaluation.rungs_table([single, rung])
    assert table["order"].tolist() == [0, 2] and np.isnan(table["train_accuracy"][0])


def test_majority_floor_predicts_each_folds_most_frequent_training_class():
    predictions = pd.DataFrame({"index": range(6), "fold": [0, 0, 1, 1, 2, 2], "true": [0, 0, 1, 1, 1, 0]})
    floor = evaluation.majority_predictions(predictions, ["a", "b"])
    # fold 0 trains on [1, 1, 1, 0] -> b; fold 1 on [0, 0, 1, 0] -> a; fold 2 on [0, 0, 1, 1] -> a (first of a tie)
    assert floor["predicted"].tolist() == [1, 1, 0, 0, 0, 0]
    assert (floor[["p_a", "p_b"]].sum(axis=1) == 1).all() and floor["p_b"].tolist() == [1, 1, 0, 0, 0, 0]
