"""Validation, thumbnails and look-alike pairs computed once per dataset content, and computed again when it changes."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hemasuite import content_cache, same_field, splits, validation
from hemasuite.datasets import load_folder


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HEMASUITE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def write(path, seed, size=40):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    for label in ("a", "b"):
        for i in range(4):
            write(root / label / f"{i}.png", hash((label, i)) % 1000)
    return root


def test_a_changed_added_or_removed_file_gives_another_key(folder):
    paths = sorted(str(p) for p in folder.rglob("*.png"))
    key = content_cache.fingerprint(paths)
    assert content_cache.fingerprint(list(reversed(paths))) == key  # the order does not matter
    assert content_cache.fingerprint(paths, 64) != key  # nor do the settings go unnoticed
    first = Path(paths[0])
    stat, data = first.stat(), bytearray(first.read_bytes())
    data[-20] ^= 0xFF  # changed in place: the same byte size and modification time, one other byte
    first.write_bytes(bytes(data))
    os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed = content_cache.fingerprint(paths)
    assert changed != key
    write(folder / "b" / "new.png", 5)
    assert content_cache.fingerprint([*paths, str(folder / "b" / "new.png")]) != changed
    (folder / "b" / "1.png").unlink()
    assert content_cache.fingerprint(paths) != changed


def test_a_copy_with_new_modification_times_keeps_its_key(folder, tmp_path):
    paths = sorted(str(p) for p in folder.rglob("*.png"))
    key = content_cache.fingerprint(paths)
    for path in paths:  # the same bytes, downloaded or mounted again
        Path(path).write_bytes(Path(path).read_bytes())
        os.utime(path, ns=(0, 10**18))
    assert content_cache.fingerprint(paths) == key
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    assert content_cache.fingerprint(sorted(str(p) for p in copy.rglob("*.png"))) != key  # paths are reported


def test_validation_is_read_from_the_cache_until_the_files_change(folder, cache):
    first = validation.validate_dataset(load_folder(folder))
    again = validation.validate_dataset(load_folder(folder))
    assert not first.cached and again.cached and again.summary()["cached"]
    assert again.files.equals(first.files) and len(list((cache / "validation").glob("*.pkl"))) == 1
    write(folder / "a" / "9.png", 7)  # added
    added = validation.validate_dataset(load_folder(folder))
    assert not added.cached and len(added.files) == len(first.files) + 1
    (folder / "a" / "9.png").unlink()  # removed: the first entry is valid again
    assert validation.validate_dataset(load_folder(folder)).cached
    write(folder / "a" / "0.png", 4, size=30)  # changed in place
    assert not validation.validate_dataset(load_folder(folder)).cached


def test_an_unreadable_entry_is_computed_again(cache):
    calls = []
    value, hit = content_cache.cached("thing", "k", lambda: calls.append(1) or 41)
    assert (value, hit) == (41, False)
    content_cache.entry("thing", "k").write_bytes(b"not a pickle")
    value, hit = content_cache.cached("thing", "k", lambda: calls.append(1) or 42)
    assert (value, hit, len(calls)) == (42, False, 2)
    assert content_cache.cached("thing", "k", lambda: 43) == (42, True)


def test_thumbnails_are_decoded_once_and_follow_the_order_asked(folder, cache, monkeypatch):
    paths = sorted(str(p) for p in folder.rglob("*.png"))
    first = same_field.thumbnails(paths, 16)
    monkeypatch.setattr(same_field, "thumbnail", lambda *a: pytest.fail("decoded again"))
    assert np.array_equal(same_field.thumbnails(paths, 16), first)
    assert np.array_equal(same_field.thumbnails(paths[::-1], 16), first[::-1])


def test_the_leak_check_reads_all_look_alike_pairs_once(cache, monkeypatch):
    import pandas as pd

    rng = np.random.default_rng(0)
    images = rng.random((6, 56, 56), dtype=np.float32)
    images[3] = images[0]  # a look-alike pair of class a
    frame = pd.DataFrame({"path": [f"{i}.png" for i in range(6)], "label": ["a"] * 4 + ["b"] * 2,
                          "split": ["train", "train", "test", "test", "train", "test"]})
    found = splits.cross_side_matches(frame, images)
    assert found[["path_a", "path_b"]].values.tolist() == [["0.png", "3.png"]] and found["peak"].iloc[0] > 0.99
    monkeypatch.setattr(same_field, "phase_correlation", lambda *a, **k: pytest.fail("computed again"))
    same_side = frame.assign(split=["train", "train", "test", "train", "train", "test"])
    assert splits.cross_side_matches(same_side, images).empty  # another split: read from the cache
