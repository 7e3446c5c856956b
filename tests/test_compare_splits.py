"""Comparing two runs' split manifests, across the earlier and the present manifest names."""

import pandas as pd

from hemasuite.tools import compare_splits


def write(path, rows, column="split"):
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["path", "label", column]).to_csv(path, index=False)


def test_earlier_names_are_matched_and_moved_images_counted(tmp_path, capsys):
    old, new = tmp_path / "old", tmp_path / "new"
    same = [("a/1.jpg", "a", "train"), ("b/2.jpg", "b", "test")]
    write(old / "10_p4" / "split_manifest.csv", same)
    write(new / "10_p4" / "splits" / "field_seed0.csv", same)
    write(old / "10_p4" / "split_manifest_seed1.csv", same)
    write(new / "10_p4" / "splits" / "field_seed1.csv", [("a/1.jpg", "a", "test"), ("b/2.jpg", "b", "test"),
                                                          ("c/3.jpg", "c", "train")])
    write(old / "20_p3" / "folds_case.csv", [("a/1.jpg", "a", 1), ("b/2.jpg", "b", 2)], "fold")
    write(new / "20_p3" / "folds" / "case_k5.csv", [("a/1.jpg", "a", 1), ("b/2.jpg", "b", 2)], "fold")
    write(new / "20_p3" / "folds" / "image_k5.csv", [("a/1.jpg", "a", 1)], "fold")
    write(new / "20_p3" / "predictions" / "model.csv", [("a/1.jpg", "a", "test")])  # not a manifest

    table = compare_splits.compare(old, new).set_index(["notebook", "resample"])
    counts = ["images", "moved", "only_old", "only_new"]
    assert table.loc[("10_p4", "split field seed 0"), counts].tolist() == [2, 0, 0, 0]
    assert table.loc[("10_p4", "split field seed 1"), ["images", "moved", "only_new"]].tolist() == [2, 1, 1]
    assert table.loc[("20_p3", "fold case"), "moved"] == 0
    assert pd.isna(table.loc[("20_p3", "fold image"), "old"]) and len(table) == 4
    assert not compare_splits.same(table.reset_index())
    assert compare_splits.main([str(old), str(new)]) == 1 and "the splits differ" in capsys.readouterr().out


def test_identical_runs_are_the_same_and_a_missing_folder_is_an_error(tmp_path, capsys):
    for run in ("old", "new"):
        write(tmp_path / run / "02_ladder" / "splits" / "image_seed0.csv", [("a/1.jpg", "a", "train")])
    assert compare_splits.main([str(tmp_path / "old"), str(tmp_path / "new")]) == 0
    assert "same images on each side of every split" in capsys.readouterr().out
    assert compare_splits.main([str(tmp_path / "old"), str(tmp_path / "gone")]) == 2
