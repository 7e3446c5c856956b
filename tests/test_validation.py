"""Validation on a small fixture with every kind of defect planted, and on the real Taleqani set."""

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hemasuite.datasets import Dataset
from hemasuite.datasets.synthetic import write_synthetic
from hemasuite.imageio import is_image_file
from hemasuite.validation import check_manifest, duplicate_group_ids, file_hashes, validate_dataset

CLASSES = ["class_0", "class_1", "class_empty"]


def folder_dataset(root: Path, classes=CLASSES) -> Dataset:
    """A dataset over ``root/<class>/*`` built without the loader (which refuses empty classes)."""
    rows = [{"path": str(p.resolve()), "label": c, "group": f"{c}/{p.name}"}
            for c in classes for p in sorted((root / c).glob("*")) if is_image_file(p)]
    return Dataset("fixture", list(classes), pd.DataFrame(rows), root.resolve(), "test fixture")


def texture(seed: int, size=(64, 64)) -> Image.Image:
    """A smooth random RGB pattern; independent seeds give pHashes far apart (unlike look-alike cells)."""
    coarse = np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize(size, Image.BICUBIC)


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("defects")
    c0, c1 = root / "class_0", root / "class_1"
    for k, folder in enumerate((c0, c1)):
        folder.mkdir()
        for i in range(8):
            texture(10 * k + i).save(folder / f"cell_{i:03d}.png")
    shutil.copyfile(c0 / "cell_000.png", c1 / "copy_of_class_0.png")
    brighter = np.clip(np.asarray(Image.open(c0 / "cell_001.png"), dtype=np.int16) + 12, 0, 255).astype(np.uint8)
    Image.fromarray(brighter).save(c0 / "near_copy.jpg", quality=90)
    (c0 / "zero.jpg").write_bytes(b"")
    texture(50).save(c0 / "whole.jpg", quality=95)
    data = (c0 / "whole.jpg").read_bytes()
    (c0 / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (c0 / "whole.jpg").unlink()
    (c1 / "fake.jpg").write_bytes(b"this is not an image at all" * 10)
    texture(61).convert("L").save(c1 / "gray.png")
    rgba = texture(62).convert("RGBA")
    rgba.putalpha(200)
    rgba.save(c1 / "rgba.png")
    deep = np.asarray(texture(63).convert("L"), dtype=np.uint16) * 257
    Image.fromarray(deep).convert("I;16").save(c1 / "deep.png")
    texture(64).convert("CMYK").save(c1 / "cmyk.jpg")
    texture(65, (80, 64)).save(c1 / "wide.png")
    (root / "class_empty").mkdir()
    (root / "class_empty" / "notes.txt").write_text("no images here")
    return root


@pytest.fixture(scope="module")
def report(fixture_root):
    return validate_dataset(folder_dataset(fixture_root))


def problems(report, kind) -> set[str]:
    return {Path(p).name for p in report.problems.loc[report.problems["kind"] == kind, "path"]}


def test_unreadable_files_are_reported_not_raised(report):
    assert problems(report, "unreadable") == {"zero.jpg", "truncated.jpg", "fake.jpg"}
    details = dict(zip(report.problems["path"].map(lambda p: Path(p).name), report.problems["detail"]))
    assert "0 bytes" in details["zero.jpg"]
    assert "truncated" in details["truncated.jpg"]
    assert report.counts.set_index("label").loc["class_0", "unreadable"] == 2


def test_odd_modes_are_readable_and_tabled(report):
    files = report.files.assign(name=report.files["path"].map(lambda p: Path(p).name)).set_index("name")
    assert files.loc[["gray.png", "rgba.png", "deep.png", "cmyk.jpg"], "error"].isna().all()
    assert files.loc[["gray.png", "rgba.png", "deep.png", "cmyk.jpg"], "mode"].tolist() == ["L", "RGBA", "I;16", "CMYK"]
    assert {"RGB", "L", "RGBA", "I;16", "CMYK"} <= set(report.sizes["mode"])
    assert problems(report, "mode_outlier") == {"gray.png", "rgba.png", "deep.png", "cmyk.jpg"}
    assert problems(report, "size_outlier") == {"wide.png"}
    assert report.sizes.iloc[0][["width", "height", "mode"]].tolist() == [64, 64, "RGB"]


def test_empty_class_is_reported(report, fixture_root):
    empty = report.problems[report.problems["kind"] == "empty_class"]
    assert empty["path"].tolist() == [str((fixture_root / "class_empty").resolve())]
    assert report.counts.set_index("label").loc["class_empty", "images"] == 0


def test_exact_duplicate_across_classes(report):
    assert [[Path(p).parent.name + "/" + Path(p).name for p in g] for g in report.duplicate_groups] == [
        ["class_0/cell_000.png", "class_1/copy_of_class_0.png"]]
    assert problems(report, "exact_duplicate_across_classes") == {"cell_000.png", "copy_of_class_0.png"}


def test_near_duplicate_within_class(report):
    assert [[Path(p).name for p in g] for g in report.near_duplicate_groups] == [["cell_001.png", "near_copy.jpg"]]
    assert problems(report, "near_duplicate_within_class") == {"cell_001.png", "near_copy.jpg"}


def test_summary_is_json_able(report):
    import json

    summary = json.loads(json.dumps(report.summary()))
    assert summary["images"] == len(report.files)
    assert summary["unreadable"] == 3
    assert summary["exact_duplicates"]["across_classes"] == 1
    assert summary["near_duplicates"]["within_class"] == 1
    assert summary["manifest"] is None


def test_duplicate_group_ids_merge_duplicates_and_groups(report, fixture_root):
    frame = folder_dataset(fixture_root).frame
    frame.loc[frame["path"].str.endswith("cell_005.png"), "group"] = "subject_A"
    frame.loc[frame["path"].str.endswith("cell_006.png"), "group"] = "subject_A"
    names = frame["path"].map(lambda p: f"{Path(p).parent.name}/{Path(p).name}")
    ids = duplicate_group_ids(frame, report).set_axis(names)
    assert ids["class_0/cell_000.png"] == ids["class_1/copy_of_class_0.png"]
    assert ids["class_0/cell_001.png"] == ids["class_0/near_copy.jpg"]
    assert ids["class_0/cell_005.png"] == ids["class_1/cell_005.png"] == ids["class_0/cell_006.png"]
    assert ids.nunique() == len(frame) - 1 - 1 - 3  # exact pair, near pair, four rows of subject_A


def test_file_hashes(fixture_root):
    frame = folder_dataset(fixture_root).frame
    expected = [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in frame["path"]]
    assert file_hashes(frame).tolist() == expected


def test_manifest_missing_mismatch_and_unlisted(tmp_path):
    data_root = tmp_path / "data"
    write_synthetic(data_root / "myset", n_classes=2, per_class=3, size=16)
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  ./{p.relative_to(data_root).as_posix()}"
             for p in sorted(data_root.rglob("*.png"))]
    lines.append(f"{'0' * 64}  other_set/a/b.png")
    manifest = data_root / "MANIFEST.sha256"
    manifest.write_text("\n".join(lines) + "\n")
    (data_root / "myset/class_0/cell_001.png").unlink()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(data_root / "myset/class_1/cell_002.png")
    Image.new("RGB", (16, 16), (9, 9, 9)).save(data_root / "myset/class_1/extra.png")
    dataset = folder_dataset(data_root / "myset", ["class_0", "class_1"])

    check = check_manifest(data_root / "myset", manifest, dataset.frame)
    assert not check.ok
    assert check.missing == ["myset/class_0/cell_001.png"]
    assert check.mismatched == ["myset/class_1/cell_002.png"]
    assert check.unlisted == ["myset/class_1/extra.png"]

    found = validate_dataset(dataset, manifest=manifest).problems
    assert set(found["kind"]) >= {"manifest_missing", "hash_mismatch", "not_in_manifest"}
    assert check_manifest(data_root, manifest, dataset.frame).missing == ["myset/class_0/cell_001.png",
                                                                          "other_set/a/b.png"]


@pytest.mark.real_data
def test_real_taleqani_is_complete_and_readable(real_taleqani):
    dataset, report = real_taleqani
    assert len(dataset.frame) == 3256
    assert dataset.counts().to_dict() == {"Benign": 504, "Early": 985, "Pre": 963, "Pro": 804}
    assert report.manifest.ok and report.manifest.checked == 3256
    assert report.files["error"].isna().all()
    assert report.seconds - report.same_field_seconds < 120
    assert report.same_field_seconds < 600


def test_phash_stays_uint64_with_unreadable_files(report):
    from hemasuite.validation import perceptual_hash

    assert str(report.files["phash"].dtype) == "UInt64"
    readable = report.files[report.files["error"].isna()]
    assert report.files["phash"].isna().sum() == 3
    for path, value in zip(readable["path"], readable["phash"]):
        with Image.open(path) as image:
            assert int(value) == perceptual_hash(image)  # every bit kept, also above 2**53
    assert (readable["phash"].astype("uint64") >= 2 ** 53).any()


def test_look_alike_cells_are_not_near_duplicates(tmp_path):
    from scenes import look_alike_cells

    from hemasuite.validation import NEAR_THRESHOLD, near_duplicate_pairs

    a, b = look_alike_cells(NEAR_THRESHOLD)
    for name in ("class_0", "class_1"):
        (tmp_path / name).mkdir()
    a.save(tmp_path / "class_0" / "BA_1.png")
    b.save(tmp_path / "class_1" / "MMY_2.png")
    texture(7, (224, 224)).save(tmp_path / "class_0" / "other.png")
    dataset = folder_dataset(tmp_path, ["class_0", "class_1"])
    found = validate_dataset(dataset)
    assert found.near_duplicate_groups == []
    assert found.summary()["near_duplicates"] == {"groups": 0, "within_class": 0, "across_classes": 0, "files": 0,
                                                 "threshold_bits": NEAR_THRESHOLD, "phash_pairs": 1,
                                                 "rejected_by_registration": 1}
    assert near_duplicate_pairs(found.files)["confirmed"].tolist() == [True]  # unconfirmed pHash alone groups them
    assert duplicate_group_ids(dataset.frame, found).nunique() == 3


@pytest.fixture(scope="module")
def field_set(tmp_path_factory):
    """Class a: two shifted crops of one scene and two other scenes; class b: one more scene."""
    from scenes import crop, scene

    root = tmp_path_factory.mktemp("fields")
    (root / "a").mkdir()
    (root / "b").mkdir()
    first = scene(0)
    crop(first, 0, 0).save(root / "a" / "f1.png")
    crop(first, 40, 30).save(root / "a" / "f1_shifted.png")
    crop(scene(1), 0, 0).save(root / "a" / "f2.png")
    crop(scene(2), 0, 0).save(root / "a" / "f3.png")
    crop(scene(3), 0, 0).save(root / "b" / "g1.png")
    dataset = folder_dataset(root, ["a", "b"])
    dataset.frame["group"] = ["case1", "case1", "case2", "case3", "case3"]
    return dataset


def test_validate_groups_same_field_twins(field_set, monkeypatch, tmp_path):
    monkeypatch.setenv("HEMASUITE_CACHE_DIR", str(tmp_path))
    found = validate_dataset(field_set, same_field=True)
    names = [[Path(p).name for p in g] for g in found.same_field_groups]
    assert names == [["f1.png", "f1_shifted.png"]]
    assert found.near_duplicate_groups == []
    summary = found.summary()["same_field"]
    assert summary["pairs"] == 1 and summary["groups"] == 1 and summary["files"] == 2
    assert list((tmp_path / "same_field").glob("*.csv"))
    assert validate_dataset(field_set).same_field_candidates is None  # folder data are not declared field images
    again = validate_dataset(field_set, same_field=True)
    pd.testing.assert_frame_equal(again.same_field_pairs, found.same_field_pairs)


def test_level_groups(field_set, monkeypatch, tmp_path):
    from hemasuite.errors import ParameterError
    from hemasuite.validation import grouping_table, level_groups

    monkeypatch.setenv("HEMASUITE_CACHE_DIR", str(tmp_path))
    found = validate_dataset(field_set, same_field=True)
    frame = field_set.frame
    sizes = {level: level_groups(frame, found, level).nunique() for level in ("image", "duplicate", "field", "case")}
    assert sizes == {"image": 5, "duplicate": 5, "field": 4, "case": 3}
    assert duplicate_group_ids(frame.assign(group=frame["path"]), found).nunique() == 4
    with pytest.raises(ParameterError, match="split level"):
        level_groups(frame, found, "patient")
    table = grouping_table([found]).iloc[0]
    assert (table["same_field_groups"], table["images_in_merged_groups"]) == (1, 2)
    assert table["share_in_merged_groups"] == pytest.approx(0.4)
