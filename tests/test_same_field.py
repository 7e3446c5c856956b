"""Shift-tolerant same-field detection, its calibration, and the leakage check that uses its own similarity."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scenes import crop, look_alike_cells, scene

from hemasuite import same_field
from hemasuite.errors import DataError
from hemasuite.splits import LEAK_THRESHOLD
from hemasuite.validation import NEAR_CONFIRM, perceptual_hash


def grey(image) -> np.ndarray:
    return np.asarray(image.convert("L").resize((same_field.SIZE, same_field.SIZE)), dtype=np.float32)


@pytest.fixture(scope="module")
def fields():
    """Crops 0/1: one scene shifted by (36, 52) px; crops 2-5: other scenes."""
    first = scene(0)
    images = [crop(first, 0, 0), crop(first, 36, 52)] + [crop(scene(seed), 20, 20) for seed in (1, 2, 3, 4)]
    return images, np.stack([grey(i) for i in images])


def test_shifted_crops_defeat_phash_but_not_the_matcher(fields):
    images, thumbs = fields
    bits = bin(perceptual_hash(images[0]) ^ perceptual_hash(images[1])).count("1")
    assert bits > 10
    pairs = same_field.find_pairs(thumbs, ["a"] * len(thumbs))
    assert pairs[["i", "j"]].values.tolist() == [[0, 1]]
    row = pairs.iloc[0]
    assert row["score"] > 0.9
    assert (row["dy"], row["dx"]) == (18, 26)  # 36, 52 px at half scale: a[y, x] = b[y - dy, x - dx]


def test_other_scenes_score_low_and_batched_scores_match_scikit_image(fields):
    _, thumbs = fields
    pairs = np.column_stack(np.triu_indices(len(thumbs), 1))
    batched, shifts = same_field._best_shift_scores(same_field._bank(thumbs), pairs)
    registered = same_field.register_pairs(thumbs, pairs)
    np.testing.assert_allclose(batched, registered["score"], atol=1e-3)
    assert registered["score"].iloc[1:].max() < same_field.THRESHOLD
    assert shifts[0].tolist() == [18, 26]


def test_labels_restrict_pairs_to_a_class(fields):
    _, thumbs = fields
    assert same_field.find_pairs(thumbs, ["a", "b", "a", "a", "b", "b"]).empty
    assert len(same_field.find_pairs(thumbs, ["a", "b", "a", "a", "b", "b"], within_class=False)) == 1


def test_centred_cells_are_refused():
    rng = np.random.default_rng(0)
    from hemasuite.datasets.synthetic import draw_cell

    thumbs = np.stack([grey(Image.fromarray(draw_cell(rng, 112, 1))) for _ in range(12)])
    with pytest.raises(DataError, match="single-cell crops"):
        same_field.find_pairs(thumbs, ["a"] * len(thumbs), n_random=66)


def test_detail_separates_look_alike_cells_from_a_copy():
    a, b = look_alike_cells()
    brighter = np.clip(np.asarray(a, dtype=np.int16) + 12, 0, 255).astype(np.uint8)
    thumbs = np.stack([grey(a), grey(b), grey(Image.fromarray(brighter))])
    table = same_field.register_pairs(thumbs, [[0, 1], [0, 2]]).set_index("j")
    assert table.loc[1, "score"] > 0.8  # the layout agrees ...
    assert table.loc[1, "detail"] < NEAR_CONFIRM  # ... the texture does not
    assert table.loc[2, "detail"] > 0.95


def test_calibration_scores_and_random_pairs(fields):
    _, thumbs = fields
    labels = ["a"] * 3 + ["b"] * 3
    table = same_field.calibration_scores(thumbs, labels, n_random=4)
    assert set(table["kind"]) == {"candidate", "random"}
    assert (table["kind"] == "random").sum() == 4
    pairs = same_field.random_pairs(labels, 100, seed=1)
    assert len(pairs) == 6 and (pairs[:, 0] < pairs[:, 1]).all()
    np.testing.assert_array_equal(same_field.random_pairs(labels, 3, seed=2), same_field.random_pairs(labels, 3, 2))


def test_phase_correlation_is_high_for_shifted_crops_only(fields):
    _, thumbs = fields
    peaks = same_field.phase_correlation(thumbs, thumbs, [[0, 1], [0, 2], [3, 4], [2, 2]])
    assert peaks[0] > LEAK_THRESHOLD and peaks[3] > 0.99
    assert peaks[1] < LEAK_THRESHOLD / 2 and peaks[2] < LEAK_THRESHOLD / 2


def test_cache_key_depends_on_content_and_parameters():
    key = same_field.pair_cache_key(["x", "y"], ["a", "a"], size=112)
    assert key == same_field.pair_cache_key(["x", "y"], ["a", "a"], size=112)
    assert key != same_field.pair_cache_key(["x", "z"], ["a", "a"], size=112)
    assert key != same_field.pair_cache_key(["x", "y"], ["a", "a"], size=56)


def test_empty_and_single_image_sets():
    assert same_field.find_pairs(np.zeros((1, 112, 112), np.float32), ["a"]).empty
    pairs, scores = same_field.screen(np.zeros((2, 112, 112), np.float32), ["a", "b"])
    assert len(pairs) == 0 and len(scores) == 0
    assert isinstance(same_field.register_pairs(np.zeros((2, 112, 112), np.float32), np.empty((0, 2))), pd.DataFrame)


@pytest.mark.real_data
def test_real_taleqani_twins(real_taleqani):
    """The twins named in the data review are found; a random image split leaks them, a field split does not."""
    from hemasuite.splits import assert_no_leakage, split_dataset
    from hemasuite.validation import level_groups

    dataset, report = real_taleqani
    pairs = {frozenset(p.split("-")[-2] + "-" + p.split("-")[-1][:-4] for p in (a, b))
             for a, b in zip(report.same_field_pairs["path_a"], report.same_field_pairs["path_b"])}
    for a, b in (("Early-638", "Early-636"), ("Benign-293", "Benign-290"), ("Pre-189", "Pre-187")):
        assert frozenset((a, b)) in pairs
    assert 350 <= len(pairs) <= 450
    benign = dataset.frame[dataset.frame["label"] == "Benign"].reset_index(drop=True)
    thumbs = same_field.thumbnails(benign["path"])
    with pytest.raises(DataError, match="look-alike"):
        assert_no_leakage(split_dataset(benign, seed=0, groups=None), "path", images=thumbs)
    fields_split = split_dataset(benign, seed=0, groups=level_groups(benign, report, "field"))
    assert_no_leakage(fields_split, level_groups(benign, report, "field"), images=thumbs)
