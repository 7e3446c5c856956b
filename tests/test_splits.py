"""Seeded, stratified, group-aware splits, their manifests and the leakage check."""

import numpy as np
import pandas as pd
import pytest

from hemasuite.errors import DataError, ParameterError
from hemasuite.splits import assert_no_leakage, load_manifest, save_manifest, split_dataset, split_summary

CLASS_SIZES = {"Benign": 100, "Early": 200, "Pre": 60, "Pro": 40}


def make_frame(group_size_max: int = 1, seed: int = 0) -> pd.DataFrame:
    """Rows per CLASS_SIZES; groups of 1..group_size_max rows within a class."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, n in CLASS_SIZES.items():
        sizes = rng.integers(1, group_size_max + 1, n)
        group_of = np.repeat(np.arange(n), sizes)[:n]
        rows += [{"path": f"/data/{label}/{i:04d}.jpg", "label": label, "group": f"{label}-{g:03d}"}
                 for i, g in enumerate(group_of)]
    return pd.DataFrame(rows)


def test_singleton_groups_are_stratified_to_within_one_image():
    frame = split_dataset(make_frame(), (0.7, 0.15, 0.15), seed=1)
    counts = pd.crosstab(frame["label"], frame["split"])
    for label, n in CLASS_SIZES.items():
        for split, fraction in zip(("train", "val", "test"), (0.7, 0.15, 0.15)):
            assert abs(counts.loc[label, split] - fraction * n) <= 1


def test_two_way_split():
    frame = split_dataset(make_frame(), (0.8, 0.2), seed=0)
    assert set(frame["split"]) == {"train", "test"}
    assert abs((frame["split"] == "test").mean() - 0.2) < 0.01


def test_same_seed_same_split_other_seed_differs():
    frame = make_frame(group_size_max=3)
    first = split_dataset(frame, seed=7)["split"]
    assert first.equals(split_dataset(frame, seed=7)["split"])
    assert not first.equals(split_dataset(frame, seed=8)["split"])


def test_groups_never_straddle_and_classes_stay_balanced():
    frame = split_dataset(make_frame(group_size_max=5, seed=2), (0.6, 0.2, 0.2), seed=3)
    assert (frame.groupby("group")["split"].nunique() == 1).all()
    assert_no_leakage(frame, "group")
    shares = pd.crosstab(frame["label"], frame["split"], normalize="index")
    assert np.allclose(shares[["train", "val", "test"]], [0.6, 0.2, 0.2], atol=0.06)


def test_groups_given_as_series_and_none():
    frame = make_frame()
    pairs = pd.Series(np.arange(len(frame)) // 2, index=frame.index)
    split = split_dataset(frame, seed=0, groups=pairs)
    assert (split.groupby(pairs)["split"].nunique() == 1).all()
    assert_no_leakage(split, pairs)
    assert len(split_dataset(frame, seed=0, groups=None)) == len(frame)


@pytest.mark.parametrize("fractions", [(0.5, 0.4), (0.7, 0.3, 0.0), (1.0,), (0.8, 0.3, -0.1), "abc", (0.25,) * 4])
def test_bad_fractions_raise(fractions):
    with pytest.raises(ParameterError, match="fractions"):
        split_dataset(make_frame(), fractions, seed=0)


def test_unknown_group_column_and_too_few_groups():
    with pytest.raises(ParameterError, match="subject"):
        split_dataset(make_frame(), seed=0, groups="subject")
    tiny = make_frame().assign(group=lambda f: np.where(f.index % 2, "a", "b"))
    with pytest.raises(DataError, match="2 group"):
        split_dataset(tiny, seed=0)


def test_leakage_checker_names_the_planted_leak():
    frame = split_dataset(make_frame(group_size_max=4), seed=0)
    group = frame["group"].value_counts().index[0]
    rows = frame.index[frame["group"] == group]
    other = "test" if frame.loc[rows[0], "split"] != "test" else "train"
    frame.loc[rows[-1], "split"] = other
    with pytest.raises(DataError, match=f"1 group.*{group}"):
        assert_no_leakage(frame, "group")


def test_manifest_round_trip(tmp_path):
    frame = split_dataset(make_frame().assign(group=lambda f: [f"{i:05d}" for i in range(len(f))]), seed=0)
    path = save_manifest(frame, tmp_path / "runs" / "split_manifest.csv")
    assert "/data/" not in path.read_text()  # paths relative to the images' common folder
    assert load_manifest(path)["path"].iloc[0].count("/") == 1
    loaded = load_manifest(path, root="/data")
    assert list(loaded.columns) == ["path", "label", "group", "split"]
    pd.testing.assert_frame_equal(loaded, frame[["path", "label", "group", "split"]], check_dtype=False)
    assert loaded["group"].iloc[0] == "00000"


def test_manifest_groups_named_by_path_are_relative_too(tmp_path):
    frame = split_dataset(make_frame().assign(group=lambda f: f["path"]), seed=0)
    path = save_manifest(frame, tmp_path / "split_manifest.csv")
    loaded = load_manifest(path)
    assert "/data/" not in path.read_text() and (loaded["group"] == loaded["path"]).all()


def test_load_manifest_rejects_bad_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_manifest(tmp_path / "none.csv")
    (tmp_path / "bad.csv").write_text("path,label,split\na,b,train\n")
    with pytest.raises(DataError, match="group"):
        load_manifest(tmp_path / "bad.csv")
    (tmp_path / "odd.csv").write_text("path,label,group,split\na,b,g,holdout\n")
    with pytest.raises(DataError, match="holdout"):
        load_manifest(tmp_path / "odd.csv")


def test_split_summary_counts_every_image():
    frame = split_dataset(make_frame(), seed=0)
    table = split_summary(frame)
    assert table["split"].tolist() == ["train", "val", "test"]
    assert table[list(CLASS_SIZES)].sum().to_dict() == CLASS_SIZES
    assert table["total"].sum() == len(frame)
    assert table["share"].sum() == pytest.approx(1, abs=1e-3)


def test_grouped_folds_keep_groups_whole_stratified_and_seeded():
    from hemasuite.splits import grouped_folds

    frame = make_frame(group_size_max=4, seed=3)
    folds = grouped_folds(frame, n_folds=5, seed=0)
    assert sorted(folds.unique()) == [0, 1, 2, 3, 4]
    assert (frame.assign(fold=folds).groupby("group")["fold"].nunique() == 1).all()
    assert_no_leakage(frame.assign(fold=folds), "group", split_col="fold")
    shares = pd.crosstab(frame["label"], folds, normalize="index")
    assert np.allclose(shares, 0.2, atol=0.08)
    assert folds.equals(grouped_folds(frame, n_folds=5, seed=0))
    assert not folds.equals(grouped_folds(frame, n_folds=5, seed=1))
    with pytest.raises(DataError, match="cannot fill 5 folds"):
        grouped_folds(frame.assign(group="one"), n_folds=5)


def shifted_pairs():
    """Rows and greyscale thumbnails: three scenes, each as two crops shifted by (12, 16) px."""
    from PIL import Image
    from scenes import crop, scene

    thumbs, rows = [], []
    for k in range(3):
        field = scene(k)
        for t, (top, left) in enumerate(((0, 0), (12, 16))):
            thumbs.append(np.asarray(crop(field, top, left).convert("L").resize((112, 112), Image.BOX), np.float32))
            rows.append({"path": f"/data/x/s{k}_{t}.png", "label": "x", "group": f"s{k}_{t}"})
    return pd.DataFrame(rows), np.stack(thumbs)


def test_leakage_check_finds_twins_its_groups_do_not_know():
    frame, thumbs = shifted_pairs()
    leaky = frame.assign(split=["train", "test"] * 3)
    assert_no_leakage(leaky, "group")  # the groups cannot see it ...
    with pytest.raises(DataError, match="3 pair.*look-alike"):
        assert_no_leakage(leaky, "group", images=thumbs)  # ... the independent similarity can
    clean = frame.assign(split=["train", "train", "test", "test", "train", "train"])
    assert_no_leakage(clean, "group", images=thumbs)


def test_a_cross_validations_manifest_is_named_by_level_and_fold_count(tmp_path):
    from hemasuite import record
    from hemasuite.splits import save_folds_manifest

    frame = pd.DataFrame({"path": [str(tmp_path / f"{i}.png") for i in range(6)], "label": list("aabbab")})
    run = record.Run("20_p3_densenet201_lymphoma", tmp_path / "run", {})
    saved = save_folds_manifest(run, frame, ["g0", "g0", "g1", "g1", "g2", "g2"], [0, 0, 1, 1, 2, 2], "case")
    assert saved == "folds/case_k3.csv"
    manifest = load_manifest(run.dir / saved)
    assert manifest["fold"].tolist() == ["0", "0", "1", "1", "2", "2"] and set(manifest["split"]) == {"test"}
    assert manifest["group"].tolist() == ["g0", "g0", "g1", "g1", "g2", "g2"]
