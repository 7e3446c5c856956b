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


def test_iicbu_accepts_tif_and_png(tmp_path):
    write_image(tmp_path / "iicbu_lymphoma" / "CLL" / "sj-03-476_001.tif")
    write_image(tmp_path / "iicbu_lymphoma" / "FL" / "0.png")
    write_image(tmp_path / "iicbu_lymphoma" / "MCL" / "1.TIF")
    assert load_dataset("iicbu_lymphoma", tmp_path).counts().tolist() == [1, 1, 1]


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
