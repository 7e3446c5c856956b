"""The precision policy: mixed_float16 on a GPU, the profile's cpu_precision on a CPU, recorded in results.json."""

import json
from pathlib import Path

import pandas as pd
import pytest

from hemasuite import config, record, training
from hemasuite.errors import ParameterError
from hemasuite.tools import precision_choice

pytestmark = pytest.mark.usefixtures("restore_cpu_policy")


def write_profiles(tmp_path, cpu_precision=None):
    path = tmp_path / "profiles.yaml"
    line = f"  cpu_precision: {cpu_precision}\n" if cpu_precision else ""
    path.write_text(f"fast:\n{line}  common: {{seed: 0}}\n  notebooks: {{}}\n")
    return path


def test_profile_value_and_default(tmp_path):
    assert config.cpu_precision("fast", write_profiles(tmp_path, "mixed_bfloat16")) == "mixed_bfloat16"
    assert config.cpu_precision("fast", write_profiles(tmp_path)) == "float32"


def test_unknown_profile_value_is_refused(tmp_path):
    with pytest.raises(ParameterError, match=r"cpu_precision 'mixed_float16' is not one of \['float32', 'mixed_bf"):
        config.cpu_precision("fast", write_profiles(tmp_path, "mixed_float16"))
    with pytest.raises(ParameterError, match="is not one of"):
        training.set_cpu_policy("float16", "test")


def test_gpu_keeps_mixed_float16_whatever_the_cpu_policy():
    training.set_cpu_policy("mixed_bfloat16", "test")
    assert training.precision_policy(gpu=True) == "mixed_float16"
    assert training.precision_policy(gpu=False) == "mixed_bfloat16"
    training.set_cpu_policy("float32", "test")
    assert training.precision_policy(gpu=False) == "float32"


def test_session_start_applies_the_profile_and_results_record_it(tmp_path, monkeypatch, start_run):
    monkeypatch.setenv(config.PROFILES_ENV, str(write_profiles(tmp_path, "mixed_bfloat16")))
    run = start_run("00_x", profile="fast", data_dir=None, output_dir=str(tmp_path), seed=0)
    recorded = run.finish().environment.precision
    assert recorded["cpu_policy"] == "mixed_bfloat16" and recorded["gpu_policy"] == "mixed_float16"
    assert recorded["cpu_policy_from"] == "profile fast: cpu_precision"
    assert recorded["policy"] == training.precision_policy()
    assert record.environment().precision == recorded


def test_auto_is_bfloat16_only_where_the_cpu_computes_it(monkeypatch):
    avx2 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma avx512f\n"
    assert not training.native_bfloat16(avx2)
    assert training.native_bfloat16(avx2.replace("avx512f", "avx512f avx512_bf16"))
    assert training.native_bfloat16("Features\t: fp asimd bf16 i8mm\n")
    assert not training.native_bfloat16("model name\t: bf16 in a name is not a flag\n")
    for native, policy, reason in ((True, "mixed_bfloat16", "natively"), (False, "float32", "no native bfloat16")):
        monkeypatch.setattr(training, "native_bfloat16", lambda: native)
        training.set_cpu_policy("auto", "profile cpu: cpu_precision")
        recorded = training.precision_record()
        assert recorded["cpu_policy"] == policy and reason in recorded["cpu_policy_from"], recorded


def test_every_profile_names_a_valid_cpu_policy():
    for name in config.profile_names():
        assert config.cpu_precision(name) in config.CPU_PRECISIONS


def test_cpu_profile_follows_the_recorded_validation_choice_where_bfloat16_is_native(monkeypatch):
    record = json.loads((config.repo_root() / precision_choice.OUTPUT).read_text())
    assert config.cpu_precision("cpu") == "auto"
    monkeypatch.setattr(training, "native_bfloat16", lambda: True)
    training.set_cpu_policy(config.cpu_precision("cpu"), "profile cpu: cpu_precision")
    assert training.precision_record()["cpu_policy"] == record["choice"]
    assert record["choice"] == precision_choice.choose_policy(record["bfloat16_minus_float32"], record["speedup"])


def test_choice_rule():
    even = {"ci_low": -0.02, "ci_high": 0.01}
    worse = {"ci_low": -0.05, "ci_high": -0.01}
    assert precision_choice.choose_policy(even, speedup=1.3) == "mixed_bfloat16"
    assert precision_choice.choose_policy(worse, speedup=1.3) == "float32"
    assert precision_choice.choose_policy(even, speedup=0.9) == "float32"


def test_carved_split_reads_only_training_rows(real_data):
    manifest = config.repo_root() / precision_choice.MANIFEST
    if not manifest.is_file():
        pytest.skip(f"{manifest} not there: run notebook 11 with the cpu profile")
    carved = precision_choice.carve_split(manifest, 0.2, seed=0, data_dir=real_data)
    frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    assert all(Path(p).is_file() for p in carved["path"])
    trained = frame.loc[frame["split"] == "train", "path"]
    assert set(config.portable_paths(carved["path"])) == set(config.portable_paths(trained))
    assert set(carved["split"]) == {"train", "val"}
    groups = carved.groupby("duplicate_group")["split"].nunique()
    assert (groups == 1).all()

