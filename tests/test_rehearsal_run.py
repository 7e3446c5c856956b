"""The quick rehearsal of the paper profile (``make rehearse QUICK=1``), run once per test session by the real runner:
every notebook 00-23 and 90, its training and inference steps run eagerly, and of each list of networks, stain
variants or candidate settings the first only (``make rehearse`` runs them all, compiled; the smoke run loops over
such lists already).

It needs no real images (absent datasets are generated in their real layout), so it runs
on a fresh machine too; with ``../shared/data`` present it reads the real Taleqani and
IICBU images.
"""

import json

import pytest

from hemasuite import rehearsal
from hemasuite.tools import runner

TRAINING_NOTEBOOKS = ("02_leakage_ladder", "10_p4_sequential_cnn", "11_p1_deep_cnn", "20_p3_densenet201_lymphoma",
                      "21_p2_cnmc_transfer", "22_p5_bone_marrow", "23_p3_unseen_cases")


@pytest.fixture(scope="session")
def rehearsal_reports(tmp_path_factory):
    """The rehearsal's reports: offline, with empty weight folders and its own cache (no file of this machine's
    Keras cache decides what the tests see, and nothing is written into the checkout)."""
    folder = tmp_path_factory.mktemp("rehearsal")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (("HEMASUITE_OFFLINE", "1"), ("KERAS_HOME", folder / "keras"),
                            ("HEMASUITE_WEIGHTS_DIR", folder / "weights"), ("HEMASUITE_CACHE_DIR", folder / "cache")):
            patch.setenv(name, str(value))
        records = runner.run_notebooks("paper", reports=folder / "reports", rehearse=True, quick=True)
    return folder / "reports", records


def results(reports, stem: str) -> dict:
    return json.loads((reports / rehearsal.FOLDER / "results" / stem / "results.json").read_text())


def test_every_notebook_rehearses(rehearsal_reports):
    reports, records = rehearsal_reports
    failed = {r["notebook"]: r.get("error", "")[-1500:] for r in records if r["status"] != "ok"}
    assert not failed, failed
    assert [r["notebook"] for r in records] == [p.stem for p in runner.discover()]
    assert not (reports / "paper").exists(), "a rehearsal never writes into the paper profile's folder"


def test_each_result_says_rehearsal_and_lists_its_cuts(rehearsal_reports):
    reports, records = rehearsal_reports
    for record in records:
        found = results(reports, record["notebook"])
        assert found["rehearsal"] is True and found["profile"] == "paper", record["notebook"]
        assert found["cuts"], record["notebook"]
        if record["notebook"] in TRAINING_NOTEBOOKS:
            assert rehearsal.GRAPHS[True] in found["cuts"], record["notebook"]


def test_every_training_notebook_ran_two_replicas_under_mixed_float16(rehearsal_reports):
    reports, _ = rehearsal_reports
    for stem in TRAINING_NOTEBOOKS:
        distribution = results(reports, stem)["environment"]["distribution"]
        assert distribution["replicas"] == 2 and distribution["strategy"] == "MirroredStrategy", stem
        assert distribution["precision_policy"] == "mixed_float16" and distribution["global_batch_sizes"], stem


def test_every_page_says_rehearsal(rehearsal_reports):
    reports, records = rehearsal_reports
    for record in records:
        assert rehearsal.BANNER in (reports / record["html"]).read_text(), record["notebook"]
    assert rehearsal.BANNER in (reports / rehearsal.FOLDER / "index.html").read_text()


def test_p2_runs_on_a_c_nmc_folder_split_by_subject(rehearsal_reports):
    reports, _ = rehearsal_reports
    found = results(reports, "21_p2_cnmc_transfer")
    assert found["protocol"]["dataset"]["name"] == "cnmc2019"
    assert found["protocol"]["split"]["level"] == "case"  # C-NMC's subject ids are its cases


def test_absent_imagenet_files_are_labelled_random_init(rehearsal_reports):
    reports, _ = rehearsal_reports
    weights = {row["key"]: row["weights"] for row in results(reports, "10_p4_sequential_cnn")["models"]}
    assert weights["baseline_resnet50"] == {"label": rehearsal.ABSENT_WEIGHTS, "source": rehearsal.ABSENT_WEIGHTS}
