"""Loaders on small fixtures that reproduce each published layout and naming."""

import numpy as np
import pytest
from PIL import Image

from hemasuite.datasets import available, load_dataset, load_folder
from hemasuite.datasets.cnmc import parse_subject
from hemasuite.errors import DataError, ParameterError


def write_image(path, size=(8, 8), colour=(200, 100, 150)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def test_registry_names_every_layout():
    assert {"taleqani_all", "iicbu_lymphoma", "cnmc2019", "all_idb2", "bone_marrow_subtypes", "synthetic"} <= set(
        available())


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(ParameterError, match="known datasets: .*taleqani_all"):
        load_dataset("no_such_set", "/tmp")


def test_missing_data_root_says_where_it_looked(monkeypatch, tmp_path):
    monkeypatch.delenv("LEUKEMIA_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="LEUKEMIA_DATA_DIR.*not set"):
        load_dataset("taleqani_all")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("taleqani_all", tmp_path / "nowhere")


def test_missing_dataset_folder_names_layout_and_source(tmp_path):
    with pytest.raises(DataError, match=r"(?s)taleqani_all.*Expected layout.*Original.*Kaggle"):
        load_dataset("taleqani_all", tmp_path)


def test_taleqani_layout(tmp_path):
    for label in ("Benign", "Early", "Pre", "Pro"):
        kind = "Benign" if label == "Benign" else f"Malignant-{label}"
        for i in range(2):
            write_image(tmp_path / "taleqani_all" / "Original" / label / f"WBC-{kind}-{i:03d}.jpg")
    dataset = load_dataset("taleqani_all", tmp_path)
    assert dataset.classes == ["Benign", "Early", "Pre", "Pro"]
    assert dataset.counts().tolist() == [2, 2, 2, 2]
    assert dataset.frame["group"].is_unique
    with pytest.raises(DataError, match="Segmented"):
        load_dataset("taleqani_all", tmp_path, variant="Segmented")


def test_empty_class_folder_is_an_error(tmp_path):
    for label in ("CLL", "FL"):
        write_image(tmp_path / "iicbu_lymphoma" / label / "0.png")
    (tmp_path / "iicbu_lymphoma" / "MCL").mkdir()
    (tmp_path / "iicbu_lymphoma" / "MCL" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match="empty class folder.*MCL"):
        load_dataset("iicbu_lymphoma", tmp_path)


def test_iicbu_accepts_tif_and_png_and_reads_cases_from_original_names(tmp_path):
    write_image(tmp_path / "iicbu_lymphoma" / "CLL" / "sj-03-476_001.tif")
    write_image(tmp_path / "iicbu_lymphoma" / "FL" / "sj-05-6124-R3_002.png")
    write_image(tmp_path / "iicbu_lymphoma" / "MCL" / "sj-05-1396-R3_003.TIF")
    dataset = load_dataset("iicbu_lymphoma", tmp_path)
    assert dataset.counts().tolist() == [1, 1, 1]
    assert dataset.frame["case"].tolist() == ["sj-03-476", "sj-05-6124", "sj-05-1396"]
    assert dataset.frame["specimen"].tolist() == ["sj-03-476", "sj-05-6124-R3", "sj-05-1396-R3"]
    assert dataset.frame["group"].equals(dataset.frame["case"].rename("group"))


@pytest.fixture
def iicbu_root(tmp_path):
    """Indexed PNGs as in the downscaled copy, with their case table."""
    root = tmp_path / "iicbu_lymphoma"
    rows = ["file,class,original_name,specimen,case,evidence"]
    for label, specimens in (("CLL", ["sj-03-2810", "sj-03-476"]), ("FL", ["sj-05-6124-R3", "sj-05-6124-R4"]),
                             ("MCL", ["sj-05-1396-R3", "sj-05-588-R1"])):
        for i, specimen in enumerate(specimens * 2):
            write_image(root / label / f"{i}.png")
            rows.append(f"{label}/{i}.png,{label},{specimen}_{i:03d}.tif,{specimen},{specimen[:10].rstrip('-')},rank")
    (root / "case_ids.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def test_iicbu_case_table_gives_case_and_specimen(iicbu_root):
    dataset = load_dataset("iicbu_lymphoma", iicbu_root)
    frame = dataset.frame.set_index(dataset.frame["path"].str.split("iicbu_lymphoma/").str[1])
    assert frame.loc["FL/0.png", ["specimen", "case", "group"]].tolist() == ["sj-05-6124-R3", "sj-05-6124",
                                                                           "sj-05-6124"]
    assert frame.loc["FL/1.png", "case"] == "sj-05-6124"  # two specimens, one case
    assert dataset.info["cases"] == 5 and dataset.info["specimens"] == 6 and dataset.info["subject_ids"]


def test_iicbu_without_case_table_or_with_a_wrong_one_fails_clearly(iicbu_root):
    table = iicbu_root / "iicbu_lymphoma" / "case_ids.csv"
    lines = table.read_text().splitlines()
    table.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataError, match=r"1 image\(s\) not in the table.*MCL/3.png"):
        load_dataset("iicbu_lymphoma", iicbu_root)
    table.write_text("\n".join(lines + ["MCL/9.png,MCL,x_001.tif,x,x,rank"]) + "\n")
    with pytest.raises(DataError, match="1 table row\\(s\\) without an image"):
        load_dataset("iicbu_lymphoma", iicbu_root)
    table.write_text("\n".join(lines).replace("CLL/0.png,CLL", "CLL/0.png,FL") + "\n")
    with pytest.raises(DataError, match="class differs from the folder"):
        load_dataset("iicbu_lymphoma", iicbu_root)
    table.write_text("file,class,case\nCLL/0.png,CLL,a\n")
    with pytest.raises(DataError, match="missing column.*specimen"):
        load_dataset("iicbu_lymphoma", iicbu_root)
    table.unlink()
    with pytest.raises(DataError, match="case_ids.csv is missing"):
        load_dataset("iicbu_lymphoma", iicbu_root)


@pytest.mark.real_data
def test_real_iicbu_cases_stay_on_one_side(real_data):
    from hemasuite.splits import assert_no_leakage, grouped_folds, split_dataset

    if not (real_data / "iicbu_lymphoma" / "case_ids.csv").is_file():
        pytest.skip(f"IICBU case table not found under {real_data}")
    dataset = load_dataset("iicbu_lymphoma", real_data)
    assert len(dataset.frame) == 374
    assert (dataset.info["cases"], dataset.info["specimens"]) == (29, 30)
    assert dataset.frame.groupby("case")["label"].nunique().max() == 1
    for seed in range(3):
        split = split_dataset(dataset.frame, (0.75, 0.25), seed=seed, groups="case")
        assert (split.groupby("case")["split"].nunique() == 1).all()
        assert_no_leakage(split, "case")
        folds = grouped_folds(dataset.frame, n_folds=5, seed=seed, groups="case")
        assert (dataset.frame.assign(fold=folds).groupby("case")["fold"].nunique() == 1).all()
        assert set(folds) == set(range(5))


@pytest.fixture
def cnmc_root(tmp_path):
    root = tmp_path / "cnmc2019"
    names = {"fold_0": ["UID_11_10_1_all.bmp", "UID_11_11_2_all.bmp", "UID_H10_43_1_hem.bmp"],
             "fold_1": ["UID_12_1_1_all.bmp", "UID_H22_5_3_hem.bmp"]}
    for fold, files in names.items():
        for name in files:
            write_image(root / "C-NMC_training_data" / fold / name.rsplit("_", 1)[1][:-4] / name)
    prelim = root / "C-NMC_test_prelim_phase_data"
    write_image(prelim / "1.bmp")
    write_image(prelim / "2.bmp")
    (prelim / "C-NMC_test_prelim_phase_data_labels.csv").write_text(
        "Patient_ID,new_names,labels\nUID_57_29_1_all.bmp,1.bmp,1\nUID_H49_35_1_hem.bmp,2.bmp,0\n")
    return tmp_path


def test_cnmc_subjects_from_file_names(cnmc_root):
    dataset = load_dataset("cnmc2019", cnmc_root)
    frame = dataset.frame.set_index(dataset.frame["path"].map(lambda p: p.rsplit("/", 1)[1]))
    assert frame.loc["UID_11_10_1_all.bmp", "group"] == "11"
    assert frame.loc["UID_H10_43_1_hem.bmp", "group"] == "H10"
    assert frame.loc["1.bmp", ["label", "subject", "subset"]].tolist() == ["all", "57", "prelim_test"]
    assert frame.loc["2.bmp", "label"] == "hem"
    assert dataset.info["subjects"] == 6


def test_cnmc_bad_names_and_labels(cnmc_root):
    assert parse_subject("UID_H10_43_1_hem.bmp") == ("H10", "hem")
    with pytest.raises(DataError, match="does not follow"):
        parse_subject("cell_1.bmp")
    csv = cnmc_root / "cnmc2019" / "C-NMC_test_prelim_phase_data" / "C-NMC_test_prelim_phase_data_labels.csv"
    csv.write_text("Patient_ID,new_names,labels\nUID_57_29_1_all.bmp,1.bmp,7\n")
    with pytest.raises(DataError, match="neither 1"):
        load_dataset("cnmc2019", cnmc_root)


def test_all_idb2_labels_from_suffix(tmp_path):
    for name in ("Im001_1.tif", "Im002_1.tif", "Im131_0.tif"):
        write_image(tmp_path / "all_idb2" / "img" / name)
    dataset = load_dataset("all_idb2", tmp_path)
    assert dataset.counts().to_dict() == {"normal": 1, "blast": 2}


def test_bone_marrow_five_subtypes(tmp_path):
    for label in ("L1", "L2", "M2", "M3", "M5"):
        write_image(tmp_path / "bone_marrow" / label / f"{label}_001.bmp")
    dataset = load_dataset("bone_marrow_subtypes", tmp_path)
    assert dataset.classes == ["L1", "L2", "M2", "M3", "M5"]
    (tmp_path / "bone_marrow" / "M5" / "M5_001.bmp").unlink()
    with pytest.raises(DataError, match="M5"):
        load_dataset("bone_marrow_subtypes", tmp_path)


def test_generic_folder_dataset(tmp_path):
    write_image(tmp_path / "a" / "x.png")
    write_image(tmp_path / "b" / "y.jpeg")
    dataset = load_folder(tmp_path, name="mine")
    assert dataset.classes == ["a", "b"]
    with pytest.raises(DataError, match="does not exist"):
        load_folder(tmp_path / "missing")


def test_synthetic_is_deterministic_and_labelled(tmp_path):
    first = load_dataset("synthetic", cache_dir=tmp_path / "one", per_class=3, size=16, seed=1)
    second = load_dataset("synthetic", cache_dir=tmp_path / "two", per_class=3, size=16, seed=1)
    pixels = [np.asarray(Image.open(p)) for p in (first.frame.path[0], second.frame.path[0])]
    assert np.array_equal(*pixels)
    assert first.synthetic and "SYNTHETIC" in first.display_name
