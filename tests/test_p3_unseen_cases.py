"""Case-level CV of IICBU (notebook 23): folds, colour-variant features, linear probe, evidence, Lite0's cut."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from hemasuite import papers, record, splits
from hemasuite.datasets import load_dataset
from hemasuite.errors import ParameterError
from hemasuite.papers import p3_unseen_cases as unseen


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    data = load_dataset("synthetic", cache_dir=tmp_path_factory.mktemp("synthetic"), n_classes=3, per_class=20,
                        size=48, n_duplicates=1)
    return unseen.load_cases(data, synthetic_per_case=4)


class MeanColour:
    """A stand-in extractor: a tile's feature is its mean RGB; records what it was asked to extract."""

    architecture, backbone, weights = "mean colour", "mean_colour", None

    def __init__(self, tile=16):
        self.tile, self.calls = tile, []

    def weights_record(self):
        return unseen.record.Weights("none (no training)")

    def trunk(self, images, paths, variant):
        self.calls.append(variant)
        tiles, source = unseen.tile_grid(images, self.tile)
        return tiles.reshape(len(tiles), -1, 3).mean(axis=1), source

    def pool(self, values, source, n_images):
        return pd.DataFrame(values).groupby(source).mean().reindex(range(n_images)).to_numpy()


def test_registered_as_a_p3_notebook_beyond_the_paper():
    assert papers.REGISTRY[unseen.NOTEBOOK] is unseen and papers.paper_id(unseen.NOTEBOOK) == "P3"
    assert unseen.REPORTED == {} and unseen.BEYOND_PAPER


def test_case_folds_keep_cases_whole_and_image_folds_do_not(cases):
    assert {"case", cases.image_level} == set(plan := unseen.fold_plan(cases, 5, 0))
    table = unseen.fold_table(cases, plan)
    assert (table.loc[table["level"] == "case", "test cases also in training"] == 0).all()
    assert table.loc[table["level"] != "case", "test cases also in training"].sum() > 0
    assert table.groupby("level")["test images"].sum().eq(len(cases.frame)).all()
    # planted duplicates share a fold at both levels
    duplicates = cases.frame["duplicate_group"]
    for folds in plan.values():
        assert pd.Series(folds).groupby(duplicates.to_numpy()).nunique().max() == 1


def test_synthetic_cases_only_for_synthetic_data(cases):
    # 21 images per class (one planted duplicate) in runs of 4: 6 cases per class
    assert cases.frame["case"].str.contains("synthetic_case").all() and cases.frame["case"].nunique() == 18
    real = cases.dataset.__class__(**{**cases.dataset.__dict__, "synthetic": False})
    with pytest.raises(ParameterError, match="SYNTHETIC"):
        unseen.synthetic_cases(real, 4)


def test_linear_probe_matches_plain_logistic_regression_in_the_training_rows_span():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 200)), rng.integers(0, 3, 40)
    probe = unseen.linear_probe(x, y, 0.1, 3)
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    plain = LogisticRegression(C=0.1, tol=1e-10, max_iter=20000).fit(z, y)
    test = rng.normal(size=(15, 200))
    zt = (test - x.mean(axis=0)) / x.std(axis=0)
    np.testing.assert_allclose(probe.probabilities(test), plain.predict_proba(zt), atol=1e-4)
    assert probe.train_accuracy == pytest.approx(plain.score(z, y), abs=1e-9)


def test_linear_probe_with_a_class_missing_never_predicts_it():
    rng = np.random.default_rng(1)
    x = np.vstack([rng.normal(-2, 1, (10, 5)), rng.normal(2, 1, (10, 5))])
    y = np.repeat([0, 2], 10)
    p = unseen.linear_probe(x, y, 1.0, 3).probabilities(x)
    assert p.shape == (20, 3) and p[:, 1].max() < 1e-6
    assert (p.argmax(axis=1) == y).mean() > 0.9


def test_choose_c_records_every_candidate_and_keeps_groups_together():
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1, 2], 12)
    groups = np.repeat(np.arange(9), 4)
    x = rng.normal(size=(36, 8)) + labels[:, None] * 1.5
    rows = np.arange(36)
    c, tried = unseen.choose_c(x, labels, groups, rows, [10.0, 0.01, 1.0], 3, 0, 3)
    assert list(tried["candidate"]) == ["C=0.01", "C=1", "C=10"] and c in (0.01, 1.0, 10.0)
    assert tried["selected"].sum() == 1 and tried["validation_score"].between(0, 1).all()
    for train, val in unseen.inner_folds(groups, labels, 3, 0):
        assert not set(groups[train]) & set(groups[val])


def test_hed_jitter_changes_training_rows_only_and_reinhard_fits_on_training_images(cases):
    extractor = MeanColour()
    train, test = np.arange(0, 40), np.arange(40, 60)
    jitter = unseen.VariantFeatures(extractor, cases, "hed_jitter", copies=2, seed=0)
    x_train, rows, x_test = jitter.fold(train, test)
    plain = unseen.VariantFeatures(MeanColour(), cases, "none").fold(train, test)
    assert len(x_train) == 2 * len(train) and np.array_equal(rows, np.tile(train, 2))
    np.testing.assert_array_equal(x_test, plain[2])  # test images untouched
    assert not np.allclose(x_train[:len(train)], plain[0])
    again = unseen.VariantFeatures(MeanColour(), cases, "hed_jitter", copies=2, seed=0).fold(train, test)[0]
    np.testing.assert_array_equal(x_train, again)  # seeded

    reinhard = unseen.VariantFeatures(MeanColour(), cases, "reinhard")
    first = reinhard.fold(train, test)
    other = cases.images.copy()
    other[test] = 255 - other[test]  # the test images change; the reference must not
    swapped = unseen.VariantFeatures(MeanColour(), unseen.Cases(cases.dataset, cases.frame, other, cases.labels,
                                                                 cases.image_level), "reinhard").fold(train, test)
    np.testing.assert_allclose(first[0], swapped[0])
    reference = unseen.stain.StainNormalizer().fit(cases.images[train]).reference
    np.testing.assert_allclose(reinhard.records[0]["lab_mean"], reference["lab_mean"], rtol=1e-6)
    with pytest.raises(ParameterError, match="colour variant"):
        unseen.VariantFeatures(extractor, cases, "sepia")


def test_probe_cv_tests_every_image_once_with_a_selection_per_fold(cases):
    plan = unseen.fold_plan(cases, 5, 0)
    result = unseen.probe_cv(cases, plan["case"], "case", unseen.VariantFeatures(MeanColour(), cases, "none"),
                             [0.1, 1.0], 2, 0)
    assert sorted(result.predictions["index"]) == list(range(len(cases.frame)))
    assert len(result.selection.chosen) == 5 and len(result.selection.tried) == 10
    assert set(result.predictions["case"]) == set(cases.frame["case"])
    assert 0 <= result.summary["accuracy"] <= 1 and 0 <= result.train_accuracy <= 1
    table = unseen.case_table(result)
    assert len(table) == 18 and table["images"].sum() == len(cases.frame)


def fake_result(variant, level, correct, cases_, model="m"):
    n = len(correct)
    predictions = pd.DataFrame({"index": np.arange(n), "fold": np.arange(n) % 5, "true": 0,
                                "predicted": np.where(correct, 0, 1), "p_a": 0.5, "p_b": 0.5, "p_c": 0.0,
                                "case": cases_, "path": [f"{i}.png" for i in range(n)]})
    return unseen.CVResult(f"{model}_{variant}_{level}", model, "A", None, variant, level, predictions, None, 1.0)


def test_paired_case_bootstrap_and_the_verdict_follow_the_numbers():
    cases_ = np.repeat(np.arange(10), 10)
    base = fake_result("none", "case", np.arange(100) % 2 == 0, cases_)
    grey = fake_result("greyscale", "case", np.ones(100, bool), cases_)
    same = unseen.paired_case_bootstrap(base.predictions, base.predictions)
    assert same["difference"] == 0 and same["ci_low"] == 0 == same["ci_high"]
    evidence = unseen.colour_evidence([base, grey], n_boot=500)
    assert list(evidence["variant"]) == ["greyscale"] and evidence.loc[0, "difference"] == pytest.approx(0.5)
    assert evidence.loc[0, "ci_low"] > 0
    text = unseen.verdict([base, grey], evidence, 0.37, synthetic=True)
    assert "100.0%" in text and "greyscale raises" in text and "nuclear morphology" in text and "SYNTHETIC" in text
    worse = fake_result("greyscale", "case", np.zeros(100, bool), cases_)
    text = unseen.verdict([base, worse], unseen.colour_evidence([base, worse], n_boot=500), 0.37, False)
    assert "greyscale lowers" in text and "part of what transfers is carried by colour" in text
    assert unseen.best_by_level([base, grey])["case"]["variant"] == "greyscale"


def test_lite0_cut_reproduces_the_whole_backbone_and_the_probe_network_the_probe(tmp_path):
    from hemasuite import models

    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (2, 64, 96, 3)).astype(np.uint8)
    extractor = unseen.TileExtractor("efficientnet_lite0", 32, weights="imagenet")
    extractor.cache.cache_dir = tmp_path
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    for path in paths:
        path.write_bytes(b"stand-in file: the cache key needs a file to stat")
    values, source = extractor.trunk(images, [str(p) for p in paths], "test")
    assert values.shape[1:] == extractor.shape and np.bincount(source).tolist() == [6, 6]
    pooled = extractor.pool(values, source, 2)
    tiles, _ = unseen.tile_grid(images, 32)
    whole = models.backbone_features("efficientnet_lite0", (32, 32, 3), "imagenet").predict(
        tiles.astype("float32"), verbose=0)
    np.testing.assert_allclose(pooled, [whole[:6].mean(axis=0), whole[6:].mean(axis=0)], rtol=1e-3, atol=1e-3)
    probe = unseen.linear_probe(rng.normal(size=(6, 1280)), np.array([0, 1, 2, 0, 1, 2]), 1.0, 3)
    network = unseen.probe_network(extractor, probe)
    np.testing.assert_allclose(network.predict(extractor.preprocess(tiles[:3]), verbose=0),
                               probe.probabilities(whole[:3]), atol=1e-3)


def test_comparison_says_beyond_the_paper_and_uses_each_rows_split_level():
    from hemasuite import comparison

    table = comparison.main_table({}).iloc[:1].assign(notebook=unseen.NOTEBOOK, paper_reported=float("nan"))
    assert comparison.display_table(table)["paper reported"].tolist() == ["beyond the paper"]
    other = table.assign(notebook="22_p5_bone_marrow")
    assert comparison.display_table(other)["paper reported"].tolist() == ["not reported"]


def test_tile_features_use_bfloat16_only_where_it_was_measured_faster():
    assert unseen.extraction_precision("vgg16", gpu=False) == "mixed_bfloat16"
    assert unseen.extraction_precision("efficientnet_lite0", gpu=False) == "float32"
    assert unseen.extraction_precision("vgg16", gpu=True) == "mixed_float16"  # no bfloat16 on GPUs such as the T4


def test_each_levels_folds_are_saved_as_its_manifest(cases, tmp_path):
    plan = unseen.fold_plan(cases, 5, 0)
    run = record.Run(unseen.NOTEBOOK, tmp_path, {})
    manifests = unseen.save_folds(run, cases, plan)
    assert manifests == {"case": "folds/case_k5.csv", cases.image_level: f"folds/{cases.image_level}_k5.csv"}
    for level, folds in plan.items():
        saved = splits.load_manifest(run.dir / manifests[level])
        assert saved["fold"].astype(int).tolist() == folds.tolist() and set(saved["split"]) == {"test"}
    by_case = splits.load_manifest(run.dir / manifests["case"]).groupby("group")["fold"].nunique()
    assert by_case.max() == 1 and len(by_case) == cases.frame["case_group"].nunique()
