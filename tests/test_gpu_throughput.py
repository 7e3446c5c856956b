"""The GPU throughput script (lib/hemasuite/tools/gpu_throughput.py) runs end to end on the CPU, at a tiny size."""

import importlib.util
import json
import sys
from pathlib import Path

import keras

SCRIPT = Path(__file__).resolve().parents[1] / "lib" / "hemasuite" / "tools" / "gpu_throughput.py"


def load_script():
    """The script as a module, loaded by path as it is run on the device (not through the hemasuite package)."""
    spec = importlib.util.spec_from_file_location("gpu_throughput_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_one_small_network_is_timed_and_reported(tmp_path):
    script = load_script()
    policy = keras.config.dtype_policy().name
    record = script.main(["--output", str(tmp_path), "--networks", "p4_sequential_cnn", "--size", "32",
                          "--batch", "4", "--steps", "2", "--repeats", "2", "--warmup", "1", "--label", "test run"])
    assert keras.config.dtype_policy().name == policy  # the global policy is restored
    text = (tmp_path / "gpu_throughput.json").read_text()
    assert str(tmp_path) not in text  # where it was written is no setting of the measurement
    written = json.loads(text)
    assert written["results"] == json.loads(json.dumps(record["results"]))
    env = written["environment"]
    assert env["keras"] == keras.__version__ and env["backend"] == keras.backend.backend()
    assert env["dtype_policy"] == "mixed_bfloat16" and env["devices"] and env["date_utc"]
    (row,) = written["results"]
    assert row["status"] == "ok", row["status"]
    assert (row["key"], row["input"], row["batch"], row["classes"]) == ("p4_sequential_cnn", "32x32x3", 4, 4)
    assert row["dtype_policy"] == "mixed_bfloat16" and row["params"] > 0
    assert row["compile_s"] > 0 and row["step_ms"] > 0 and row["images_per_s"] > 0
    assert 1 <= row["runs"] <= 2 and len(row["images_per_s_runs"]) == row["runs"]
    assert written["skipped"] == []
    table = (tmp_path / "gpu_throughput.md").read_text()
    assert table.startswith("# test run") and "| Sequential CNN | P4 (10) | 32x32x3 | 4 |" in table


def test_paper_settings_of_the_listed_networks():
    """Input sides, batches and class counts as hemasuite.tools.paper_stages lists them for the paper profile."""
    nets = load_script().BY_KEY
    expected = {"densenet201": (224, 24, 3), "resnet50": (224, 64, 4), "densenet121": (224, 64, 4),
                "inception_v3": (224, 30, 4), "resnet101": (224, 30, 4), "vgg16": (224, 32, 2),
                "p4_sequential_cnn": (224, 64, 4), "p1_deep_cnn": (224, 32, 4), "p2_traditional_cnn": (224, 32, 2),
                "alexnet": (224, 32, 2), "p5_small_cnn": (224, 30, 4)}
    for key, settings in expected.items():
        assert (nets[key].size, nets[key].batch, nets[key].classes) == settings, key


def test_limit_skips_networks_not_started(tmp_path):
    record = load_script().main(["--output", str(tmp_path), "--networks", "p5_small_cnn", "alexnet",
                                 "--limit-s", "-1"])
    assert record["results"] == [] and record["skipped"] == ["p5_small_cnn", "alexnet"]
    assert "Not started (time limit): p5_small_cnn, alexnet." in (tmp_path / "gpu_throughput.md").read_text()
