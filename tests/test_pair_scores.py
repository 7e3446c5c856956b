"""Each pair of an image set scored once, whatever labels, order or split ask for it."""

import numpy as np
import pandas as pd
import pytest

from hemasuite import pair_scores, same_field, splits


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HEMASUITE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def images():
    return np.random.default_rng(0).random((8, 6, 6), dtype=np.float32)


class Counting:
    """A score (the mean of the two images' pixel products) that records the pairs it was asked for."""

    def __init__(self):
        self.asked = []

    def __call__(self, images, pairs):
        self.asked.append({tuple(p) for p in pairs.tolist()})
        return np.array([(images[i] * images[j]).mean() for i, j in pairs], np.float32)


def direct(images, pairs, threshold):
    scores = np.array([(images[i] * images[j]).mean() for i, j in pairs], np.float32)
    return pairs[scores >= threshold], scores[scores >= threshold]


def test_a_superset_of_pairs_scores_only_the_new_ones(images):
    score, threshold = Counting(), 0.25
    few = same_field.index_pairs(["a", "a", "a", "a", "b", "b", "b", "b"])
    every = same_field.index_pairs(["x"] * 8)  # the same images, labelled as one class
    first = pair_scores.at_least("test", images, few, score, threshold)
    second = pair_scores.at_least("test", images, every, score, threshold)
    assert score.asked == [{tuple(p) for p in few.tolist()}, {tuple(p) for p in every.tolist()} - {
        tuple(p) for p in few.tolist()}]
    for (found, values), pairs in ((first, few), (second, every)):
        expected_pairs, expected_scores = direct(images, pairs, threshold)
        assert np.array_equal(found, expected_pairs) and np.array_equal(values, expected_scores)
    again = pair_scores.at_least("test", images, every, score, threshold)
    assert len(score.asked) == 2 and np.array_equal(again[0], second[0])  # nothing scored a third time


def test_another_order_of_the_same_images_reads_the_same_store(images):
    score, threshold = Counting(), 0.25
    pairs = same_field.index_pairs(["x"] * 8)
    found, values = pair_scores.at_least("test", images, pairs, score, threshold)
    order = np.random.default_rng(1).permutation(8)  # shuffled[k] = images[order[k]]
    shuffled_found, shuffled_values = pair_scores.at_least("test", images[order], pairs, score, threshold)
    assert len(score.asked) == 1
    expected = {frozenset((order[i], order[j])): v for (i, j), v in zip(shuffled_found.tolist(), shuffled_values)}
    assert expected == {frozenset(p): v for p, v in zip(found.tolist(), values)}


def test_pixel_identical_images_score_alike_in_any_order(images):
    images[5] = images[2]
    score, threshold = Counting(), 0.2
    pairs = same_field.index_pairs(["x"] * 8)
    pair_scores.at_least("test", images, pairs, score, threshold)
    swapped = images[[0, 1, 5, 3, 4, 2, 6, 7]]  # the two copies trade places
    found, values = pair_scores.at_least("test", swapped, pairs, score, threshold)
    expected_pairs, expected_scores = direct(swapped, pairs, threshold)
    assert len(score.asked) == 1
    assert np.array_equal(found, expected_pairs) and np.array_equal(values, expected_scores)


def test_other_images_thresholds_or_settings_keep_stores_of_their_own(images):
    score = Counting()
    pairs = same_field.index_pairs(["x"] * 8)
    pair_scores.at_least("test", images, pairs, score, 0.25)
    pair_scores.at_least("test", images, pairs, score, 0.3)
    pair_scores.at_least("test", images, pairs, score, 0.25, size=4)
    changed = images.copy()
    changed[0, 0, 0] += 1
    pair_scores.at_least("test", changed, pairs, score, 0.25)
    assert len(score.asked) == 4 and all(len(asked) == len(pairs) for asked in score.asked)


def test_an_unreadable_store_is_scored_again(images, cache):
    score = Counting()
    pairs = same_field.index_pairs(["x"] * 8)
    first = pair_scores.at_least("test", images, pairs, score, 0.25)
    for entry in (cache / "pair_scores").glob("*.pkl"):
        entry.write_bytes(b"broken")
    second = pair_scores.at_least("test", images, pairs, score, 0.25)
    assert len(score.asked) == 2 and np.array_equal(first[0], second[0])


def test_the_leak_check_of_a_relabelled_view_scores_only_its_new_pairs(monkeypatch):
    rng = np.random.default_rng(0)
    images = rng.random((6, 56, 56), dtype=np.float32)
    images[4] = images[2]  # look-alikes in classes b and c: one class once b and c are merged
    four = np.array(["a", "a", "b", "b", "c", "c"])
    merged = np.where(four == "a", "neg", "pos")
    asked = []
    phase_correlation = same_field.phase_correlation

    def counting(a, b, pairs, **kwargs):
        asked.append(len(pairs))
        return phase_correlation(a, b, pairs, **kwargs)

    monkeypatch.setattr(same_field, "phase_correlation", counting)
    assert splits.look_alike_pairs(images, four).shape == (0, 3)
    found = splits.look_alike_pairs(images, merged)
    assert asked == [3, 4]  # a, b and c's pairs once; then the 4 pairs across b and c
    assert found[:, :2].tolist() == [[2, 4]] and found[0, 2] > 0.99
    frame = pd.DataFrame({"path": [f"{i}.png" for i in range(6)], "label": merged,
                          "split": ["train", "test", "train", "test", "test", "train"]})
    assert splits.cross_side_matches(frame, images)[["path_a", "path_b"]].values.tolist() == [["2.png", "4.png"]]
