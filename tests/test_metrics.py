"""Per-class tables, summary metrics, bootstrap, seed statistics and calibration."""

import json
import time

import numpy as np
import pytest
from sklearn import metrics as skm

from hemasuite import metrics
from hemasuite.errors import ParameterError
from hemasuite.record import to_jsonable

CLASSES = ["a", "b", "c"]
# confusion matrix rows (true) x columns (predicted): [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
Y_TRUE = np.array([0, 0, 0, 1, 1, 2])
Y_PRED = np.array([0, 0, 1, 1, 2, 2])


def one_hot(pred, k, p=1.0):
    prob = np.full((len(pred), k), (1 - p) / (k - 1))
    prob[np.arange(len(pred)), pred] = p
    return prob


def noisy_problem(n, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    prob = rng.dirichlet(np.ones(k), n)
    prob[np.arange(n), y] += 0.6
    return y, prob / prob.sum(axis=1, keepdims=True)


def test_per_class_table_hand_counts():
    table = metrics.per_class_table(Y_TRUE, Y_PRED, CLASSES).set_index("class")
    cells = table.loc[CLASSES, ["support", "TP", "TN", "FP", "FN"]].to_numpy().tolist()
    assert cells == [[3, 2, 3, 0, 1], [2, 1, 3, 1, 1], [1, 1, 4, 1, 0]]
    expected = {"a": [5 / 6, 1.0, 2 / 3, 0.8, 1.0], "b": [4 / 6, 0.5, 0.5, 0.5, 0.75],
                "c": [5 / 6, 0.5, 1.0, 2 / 3, 0.8]}
    for name, values in expected.items():
        assert table.loc[name, list(metrics.RATES)].to_numpy(float) == pytest.approx(values)
    assert json.loads(json.dumps(to_jsonable(table.reset_index())))[-1]["TP"] is None


def test_specificity_is_tn_over_tn_plus_fp():
    table = metrics.per_class_table(Y_TRUE, Y_PRED, CLASSES).set_index("class").loc[CLASSES]
    assert table["SP"].to_numpy(float) == pytest.approx((table["TN"] / (table["TN"] + table["FP"])).to_numpy(float))


def test_macro_and_weighted_rows():
    table = metrics.per_class_table(Y_TRUE, Y_PRED, CLASSES).set_index("class")
    per_class = table.loc[CLASSES]
    weights = per_class["support"].to_numpy(float) / 6
    for rate in metrics.RATES:
        assert table.loc["macro avg", rate] == pytest.approx(per_class[rate].mean())
        assert table.loc["weighted avg", rate] == pytest.approx((per_class[rate].to_numpy(float) * weights).sum())
    assert table.loc["weighted avg", "SEN"] == pytest.approx(4 / 6)  # weighted recall == accuracy
    assert table.loc["macro avg", "PRE"] == pytest.approx(skm.precision_score(Y_TRUE, Y_PRED, average="macro"))
    assert table.loc["weighted avg", "F1"] == pytest.approx(skm.f1_score(Y_TRUE, Y_PRED, average="weighted"))


def test_class_names_are_accepted_as_labels():
    by_name = metrics.per_class_table(np.array(CLASSES)[Y_TRUE], np.array(CLASSES)[Y_PRED], CLASSES)
    assert by_name.equals(metrics.per_class_table(Y_TRUE, Y_PRED, CLASSES))
    with pytest.raises(ParameterError, match="not among the classes"):
        metrics.as_indices(["a", "z"], CLASSES)


def test_summary_metrics_agree_with_sklearn():
    y, prob = noisy_problem(300, k=4)
    pred = prob.argmax(axis=1)
    s = metrics.summary_metrics(y, prob, list("abcd"))
    assert s["n"] == 300
    assert s["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert s["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    for avg in ("macro", "weighted"):
        assert s[f"precision_{avg}"] == pytest.approx(skm.precision_score(y, pred, average=avg))
        assert s[f"recall_{avg}"] == pytest.approx(skm.recall_score(y, pred, average=avg))
        assert s[f"f1_{avg}"] == pytest.approx(skm.f1_score(y, pred, average=avg))
    assert s["sensitivity_macro"] == s["recall_macro"]
    assert s["roc_auc_macro"] == pytest.approx(skm.roc_auc_score(y, prob, multi_class="ovr"))
    assert s["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()


def test_auc_perfect_and_random():
    y = np.tile([0, 1, 2], 200)
    assert metrics.summary_metrics(y, one_hot(y, 3, 0.9), CLASSES)["roc_auc_macro"] == 1.0
    random = np.random.default_rng(1).dirichlet(np.ones(3), len(y))
    assert metrics.summary_metrics(y, random, CLASSES)["roc_auc_macro"] == pytest.approx(0.5, abs=0.06)


def test_binary_case_has_one_auc():
    y = np.array([0, 0, 1, 1, 1, 0])
    p1 = np.array([0.1, 0.6, 0.8, 0.7, 0.4, 0.2])
    s = metrics.summary_metrics(y, p1, ["neg", "pos"])
    assert list(s["roc_auc"]) == ["pos"]
    assert s["roc_auc_macro"] == pytest.approx(skm.roc_auc_score(y, p1))
    assert s == metrics.summary_metrics(y, np.column_stack([1 - p1, p1]), ["neg", "pos"])
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["specificity_macro"] == pytest.approx((2 / 3 + 2 / 3) / 2)


def test_bootstrap_ci_contains_estimate_narrows_and_is_reproducible():
    widths = []
    for n in (100, 2000):
        y, prob = noisy_problem(n)
        result = metrics.bootstrap_summary(y, prob, CLASSES, n_boot=500, seed=3)
        assert set(result) == set(metrics.BOOTSTRAP_METRICS)
        for name, entry in result.items():
            assert entry["ci_low"] <= entry["value"] <= entry["ci_high"], name
        assert result["accuracy"]["value"] == pytest.approx(skm.accuracy_score(y, prob.argmax(axis=1)))
        assert result == metrics.bootstrap_summary(y, prob, CLASSES, n_boot=500, seed=3)
        widths.append(result["accuracy"]["ci_high"] - result["accuracy"]["ci_low"])
    assert widths[1] < widths[0] / 2


def test_bootstrap_summary_matches_generic_bootstrap_and_is_fast():
    y, prob = noisy_problem(500)
    start = time.perf_counter()
    fast = metrics.bootstrap_summary(y, prob, CLASSES, n_boot=1000, seed=0)
    assert time.perf_counter() - start < 2.0
    generic = metrics.bootstrap_ci(y, prob.argmax(axis=1), skm.accuracy_score, n_boot=1000, seed=0)
    assert generic == pytest.approx(fast["accuracy"])


def test_seed_summary_and_aggregate():
    s = metrics.seed_summary([0.8, 0.9, 1.0])
    assert s["mean"] == pytest.approx(0.9) and s["sd"] == pytest.approx(0.1) and s["n"] == 3
    assert np.isnan(metrics.seed_summary([0.5])["sd"])
    runs = [{"accuracy": 0.8, "roc_auc": {"a": 0.9}, "confusion_matrix": [[1]]},
            {"accuracy": 0.9, "roc_auc": {"a": 0.7}, "confusion_matrix": [[2]]}]
    agg = metrics.aggregate_seeds(runs)
    assert set(agg) == {"accuracy", "roc_auc.a"}
    assert agg["roc_auc.a"]["mean"] == pytest.approx(0.8)
    assert agg["accuracy"]["sd"] == pytest.approx(np.std([0.8, 0.9], ddof=1))


def test_wilson_ci():
    ci = metrics.wilson_ci(45, 50)
    assert ci["value"] == 0.9
    assert ci["ci_low"] == pytest.approx(0.7864, abs=1e-4) and ci["ci_high"] == pytest.approx(0.9565, abs=1e-4)
    assert metrics.wilson_ci(10, 10)["ci_high"] == pytest.approx(1.0)
    with pytest.raises(ParameterError):
        metrics.wilson_ci(3, 0)


def test_calibration_perfect_and_overconfident():
    y = np.array([0] * 8 + [1] * 2 + [1] * 6 + [0] * 4)
    prob = np.array([[0.8, 0.2]] * 10 + [[0.4, 0.6]] * 10)
    table = metrics.reliability_table(y, prob, n_bins=10)
    assert table["count"].sum() == 20 and table["count"].tolist().count(10) == 2
    assert metrics.expected_calibration_error(y, prob) == pytest.approx(0.0, abs=1e-12)
    overconfident = np.array([[0.99, 0.01]] * 10 + [[0.01, 0.99]] * 10)
    assert metrics.expected_calibration_error(y, overconfident) == pytest.approx(0.99 - 0.7)
    assert metrics.expected_calibration_error(y, prob[:, 1]) == pytest.approx(0.0, abs=1e-12)


def test_paper_vs_run_table():
    table = metrics.paper_vs_run_table({"accuracy": 0.95, "f1_macro": 0.9, "auc": 0.99},
                                       {"accuracy": {"mean": 0.93, "sd": 0.01}, "f1_macro": {"value": 0.92}})
    assert table.columns.tolist() == ["metric", "paper", "this_run", "difference"]
    assert table["difference"].iloc[:2].tolist() == pytest.approx([-0.02, 0.02])
    assert np.isnan(table["this_run"].iloc[2])


def test_clopper_pearson_ci():
    ci = metrics.clopper_pearson_ci(324, 326)
    assert ci["value"] == pytest.approx(324 / 326)
    # Reference: R binom.test(324, 326)$conf.int = 0.97800, 0.99926
    assert ci["ci_low"] == pytest.approx(0.97800, abs=1e-4)
    assert ci["ci_high"] == pytest.approx(0.99926, abs=1e-4)
    assert metrics.clopper_pearson_ci(10, 10)["ci_high"] == 1.0
    assert metrics.clopper_pearson_ci(0, 10)["ci_low"] == 0.0
    assert metrics.clopper_pearson_ci(10, 10)["ci_low"] == pytest.approx(0.025 ** 0.1)
    with pytest.raises(ParameterError):
        metrics.clopper_pearson_ci(11, 10)


def test_logistic_regression_chooses_c_by_grouped_inner_cv():
    from hemasuite import baselines

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 20)
    features = rng.normal(0, 1, (60, 5)) + 5 * np.eye(3, 5)[labels]
    groups = np.repeat(np.arange(12), 5)  # 4 groups per class
    train, test = groups % 4 != 3, groups % 4 == 3  # 3 training groups per class, 1 test group
    fitted = baselines.logistic_regression(features[train], labels[train], features[test], groups[train],
                                           [0.001, 1.0])
    assert fitted["probabilities"].shape == (15, 3) and fitted["train_accuracy"] > 0.9
    assert set(fitted["selection"]["tried"]) == {"C=0.001", "C=1"} and fitted["C"] in (0.001, 1.0)
    assert fitted["selection"]["chosen"] == f"C={fitted['C']:g}"
    assert fitted["selection"]["tried"][fitted["selection"]["chosen"]] == max(fitted["selection"]["tried"].values())
    assert "5-fold" in fitted["selection"]["on"]  # 9 groups in the training part: 5 inner folds
    assert (fitted["probabilities"].argmax(axis=1) == labels[test]).mean() > 0.9
    three = np.isin(groups, [0, 4, 8])  # one group per class
    few = baselines.logistic_regression(features[three], labels[three], features[test], groups[three], [1.0])
    assert "3-fold" in few["selection"]["on"]  # only 3 groups: 3 inner folds
