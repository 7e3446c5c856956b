"""Performance benchmark of the suite: ``python -m hemasuite.tools.bench`` (``make bench``).

Writes ``benchmark.json`` and ``benchmark.md`` under ``--output`` (default
``reports/benchmarks``; a time-stamped copy of the JSON goes to ``raw/``), each with the
machine it ran on. Six parts:

1. **Input pipeline.** Images per second of the suite's tf.data pipeline
   (:func:`hemasuite.pipeline.path_dataset`: decodes inside tf.data and caches) against
   the legacy Keras ``ImageDataGenerator.flow_from_directory`` (``tf_keras``) on the same
   files, size and batch, one full pass each: the first pass (cold: tf.data decodes) and
   the second (warm: tf.data reads its cache; the generator decodes again). The passes
   are interleaved and the files are read once beforehand, so both start from the same
   OS page cache. The headline is the ratio of the two in this one run.
2. **Training and inference** images per second of every model, read from the model rows
   of the ``cpu`` profile's results records (missing notebooks are listed as missing).
3. **Feature cache:** P5's feature-extraction grid (every backbone + SVM C grid of its
   ``cpu`` profile, on a stratified subset), timed with a cold and with a warm cache.
4. **Pretrained backbones:** images per second of the ImageNet backbones that resolve
   offline (VGG-16's convolutions at 112 and 224 px, EfficientNet-Lite0 at 224 px), each
   with its weights source: inference as a frozen feature extractor, and one training
   step of the whole network with a new softmax head (fine-tuning), on synthetic pixels
   (the speed depends only on the shape), through the paper check's timing
   (:func:`hemasuite.tools.paper_check.measure_stage`) under the ``cpu`` profile's precision.
5. **Cores:** P4's CNN trained in a fresh process with TensorFlow on one thread, on
   every core, and in two processes side by side: how much a second core adds to one
   training, and whether two notebooks run side by side would finish sooner.
6. **Suite time:** the ``smoke`` profile is run now, in a temporary folder, and timed;
   the ``cpu`` profile is the sum of each notebook's last good run in
   ``reports/cpu/runs.json``, against the 60-minute goal, with its slowest cells.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from .. import augment, config, experiment, models, papers, pipeline, training
from ..datasets import load_folder
from ..errors import DataError, WeightsError
from ..imageio import is_image_file
from ..papers import p5_bone_marrow as p5
from ..record import RecordError, git_commit, markdown_table, package_versions, read, write_json_atomic
from . import paper_check, paper_stages, runner

CPU_GOAL_S = 60 * 60
SLOWEST = 10  # cells listed in the suite time
WARM_RATIO_GOAL = 5.0
PRETRAINED = (("vgg16", 112), ("vgg16", 224), ("efficientnet_lite0", 224))  # backbone, input side
PRETRAINED_NAMES = {"vgg16": "VGG-16 convolutions", "efficientnet_lite0": "EfficientNet-Lite0"}
MISSING = "missing"


# ---------------------------------------------------------------------------- machine

def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine() -> dict:
    """CPU model (from /proc/cpuinfo), cores, RAM, load, Python and package versions."""
    cpuinfo = _read("/proc/cpuinfo")
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    meminfo = {line.split(":")[0]: line.split(":")[1].strip() for line in _read("/proc/meminfo").splitlines()
               if ":" in line}
    total_kb = int(meminfo.get("MemTotal", "0 kB").split()[0] or 0)
    quota = _read("/sys/fs/cgroup/cpu.max").split()
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    versions = package_versions()
    for extra in ("tf-keras", "playwright"):
        try:
            versions[extra] = metadata.version(extra)
        except metadata.PackageNotFoundError:
            versions[extra] = None
    return {"cpu_model": models[0] if models else platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "cpus_usable": affinity,
            "cgroup_cpu_quota": " ".join(quota) if quota else None,
            "avx512": "avx512f" in flags, "ram_gib": round(total_kb / 2**20, 1),
            "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
            "platform": platform.platform(), "python": platform.python_version(), "packages": versions}


# ---------------------------------------------------------------------------- input pipeline

def folder_frame(folder, limit: int | None = None, seed: int = 0) -> pd.DataFrame:
    """``path, label`` of every image in ``folder/<class>/``; ``limit`` draws a seeded subset of that many."""
    folder = Path(folder)
    rows = [{"path": str(p.resolve()), "label": c.name} for c in sorted(folder.iterdir()) if c.is_dir()
            for p in sorted(c.iterdir()) if is_image_file(p)]
    frame = pd.DataFrame(rows, columns=["path", "label"])
    if frame.empty:
        raise FileNotFoundError(f"no images in class folders under {folder}")
    if limit and limit < len(frame):
        frame = frame.sample(n=limit, random_state=seed).sort_values(["label", "path"]).reset_index(drop=True)
        frame.attrs["subset_of"] = len(rows)
    return frame


def mirror(frame: pd.DataFrame, target: Path) -> Path:
    """``target/<label>/<file>`` symlinks to the frame's files: the layout flow_from_directory reads."""
    for row in frame.itertuples():
        link = target / row.label / Path(row.path).name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(row.path)
    return target


def _pass(batches) -> dict:
    """Iterate one full pass; images, seconds and images per second."""
    start = time.perf_counter()
    images = 0
    for x, _ in batches:
        images += int(x.shape[0])
    seconds = time.perf_counter() - start
    return {"images": images, "seconds": round(seconds, 3), "images_per_s": round(images / max(seconds, 1e-9), 1)}


def pipeline_benchmark(folder, size: int = 128, batch_size: int = 64, limit: int | None = None,
                       seed: int = 0) -> dict:
    """tf.data (``path_dataset``) vs ImageDataGenerator.flow_from_directory: cold and warm images/s and ratios."""
    # deferred: tf-keras is a development extra that only this measurement needs
    from tf_keras.preprocessing.image import ImageDataGenerator

    frame = folder_frame(folder, limit, seed)
    classes = sorted(frame["label"].unique())
    read_bytes = sum(len(Path(p).read_bytes()) for p in frame["path"])  # same OS page cache for both
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    with tempfile.TemporaryDirectory(prefix="hemasuite_bench_") as tmp:
        subset_of = frame.attrs.get("subset_of")
        layout = mirror(frame, Path(tmp) / "images") if subset_of else Path(folder)
        tfdata = pipeline.path_dataset(frame, size, len(classes), batch_size, classes=classes, training=False)
        generator = ImageDataGenerator(rescale=1 / 255).flow_from_directory(
            str(layout), target_size=(size, size), batch_size=batch_size, class_mode="categorical",
            classes=classes, shuffle=False, interpolation="bilinear")
        if generator.samples != len(frame):
            raise RuntimeError(f"flow_from_directory found {generator.samples} images, tf.data {len(frame)}")
        epoch = lambda: (generator[i] for i in range(len(generator)))  # noqa: E731  (one full pass)
        results = {"tf_data_cold": _pass(tfdata), "imagedatagenerator_pass1": _pass(epoch()),
                   "tf_data_warm": _pass(tfdata), "imagedatagenerator_pass2": _pass(epoch())}
    for name, result in results.items():
        if result["images"] != len(frame):
            raise RuntimeError(f"{name} iterated {result['images']} images, expected {len(frame)}")
    warm = results["tf_data_warm"]["images_per_s"] / results["imagedatagenerator_pass2"]["images_per_s"]
    cold = results["tf_data_cold"]["images_per_s"] / results["imagedatagenerator_pass1"]["images_per_s"]
    return {"folder": _shown(folder), "images": len(frame), "subset_of": subset_of,
            "classes": classes, "size": [size, size], "batch_size": batch_size, "bytes_read_beforehand": read_bytes,
            "load_average_before": [round(x, 2) for x in load_before] if load_before else None,
            "load_average_after": [round(x, 2) for x in os.getloadavg()] if load_before else None,
            "passes": results, "warm_ratio": round(warm, 2), "cold_ratio": round(cold, 2),
            "warm_ratio_goal": WARM_RATIO_GOAL, "warm_goal_met": bool(round(warm, 2) >= WARM_RATIO_GOAL),
            "method": "one full pass each, interleaved: tf.data cold, generator pass 1, tf.data warm, generator "
                      "pass 2; both output float32 batches rescaled by 1/255 with one-hot labels; the files were "
                      "read once beforehand so both start from the same OS page cache"}


# ---------------------------------------------------------------------------- training / inference

def _shown(path) -> str:
    """``path`` relative to the checkout, or under ``$LEUKEMIA_DATA_DIR``, when it is inside one (reports are
    committed and name no machine folder), else absolute."""
    path = Path(path).resolve()
    roots = [(config.repo_root(), "")]
    if os.environ.get(config.DATA_ENV):
        roots.append((Path(os.environ[config.DATA_ENV]).resolve(), f"${config.DATA_ENV}/"))
    for root, prefix in roots:
        if path.is_relative_to(root):
            return prefix + str(path.relative_to(root))
    return str(path)


def training_speeds(results_dir, notebooks=tuple(papers.REGISTRY)) -> pd.DataFrame:
    """Train / inference images per second of each model (mean over seeds), from the profile's results records."""
    rows = []
    columns = ["notebook", "model", "weights", "seeds", "train_images_per_s", "inference_images_per_s", "status",
               "profile", "started_utc"]
    for stem in notebooks:
        path = Path(results_dir) / stem / "results.json"
        if not path.is_file():
            rows.append({"notebook": stem, "model": MISSING, "seeds": 0, "train_images_per_s": math.nan,
                         "inference_images_per_s": math.nan, "status": "missing: no results.json"})
            continue
        try:
            result = read(path)
        except RecordError as error:
            rows.append({"notebook": stem, "model": MISSING, "seeds": 0, "train_images_per_s": math.nan,
                         "inference_images_per_s": math.nan,
                         "status": f"unreadable: {str(error).splitlines()[0][:160]} (rerun the notebook)"})
            continue
        for row in result.models:
            measured = row.train_images_per_s is not None or row.inference_images_per_s is not None
            rows.append({"notebook": stem, "model": row.key, "weights": row.weights.source or row.weights.label,
                         "seeds": len(row.seeds),
                         "train_images_per_s": math.nan if row.train_images_per_s is None else row.train_images_per_s,
                         "inference_images_per_s": math.nan if row.inference_images_per_s is None
                         else row.inference_images_per_s,
                         "status": "ok" if measured else "missing: no images/s recorded",
                         "profile": result.profile, "started_utc": result.started_utc})
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------------------- feature cache (P5)

def p5_grid_benchmark(folder=None, n_images: int = 160, seed: int = 0, backbones=None, size: int | None = None,
                      c_grid=None) -> dict:
    """P5's feature-extraction grid (every backbone's cached features + the SVM C grid), cold vs warm cache.

    Backbones, input size and C grid default to those of the ``cpu`` profile of
    ``22_p5_bone_marrow``; ``n_images`` (stratified, seeded) of ``folder`` are split 75/25
    and the training part rotated x4, as in the notebook. Images are decoded beforehand
    (not timed). Cold: empty temporary cache, so every backbone is built and run; warm:
    the same grid again, features read from the cache. The SVM grid runs both times.
    """
    if folder is None:
        return {"status": "not measured: no image folder given"}
    params = config.notebook_parameters("cpu", p5.NOTEBOOK)
    backbones = backbones or params["backbones"]
    size, c_grid = size or params["image_size"], c_grid or params["c_grid"]
    dataset = p5.stratified_subset(load_folder(folder, name="benchmark"), n_images, seed)
    rotated = p5.rotated_training_set(experiment.prepare(None, dataset, (0.75, 0.25), seed, size))

    def grid(cache_dir) -> dict:
        start, computed, outputs = time.perf_counter(), [], []
        for backbone in backbones:
            _, trained, extracted = p5.feature_svm(rotated, backbone, None, seed, c_grid, cache_dir=cache_dir)
            computed.append(bool(extracted.get("computed")))
            outputs.append(trained[0].probabilities)
        return {"seconds": time.perf_counter() - start, "computed": computed, "outputs": outputs}

    with tempfile.TemporaryDirectory(prefix="hemasuite_features_") as tmp:
        cold, warm = grid(tmp), grid(tmp)
    return {"status": "measured", "backbones": list(backbones), "weights": "random init", "images": len(dataset.frame),
            "feature_rows": len(rotated.frame), "size": [size, size], "c_grid": list(c_grid),
            "cold_seconds": round(cold["seconds"], 2), "warm_seconds": round(warm["seconds"], 2),
            "ratio": round(cold["seconds"] / max(warm["seconds"], 1e-9), 1),
            "computed_cold": sum(cold["computed"]), "computed_warm": sum(warm["computed"]),
            "identical": all(np.array_equal(a, b) for a, b in zip(cold["outputs"], warm["outputs"])),
            "method": f"{n_images} images (stratified, seed {seed}) split 75/25, training part rotated x4; images "
                      "decoded beforehand (not timed); cold: empty temporary cache, every backbone built and run; "
                      "warm: the same grid again, features read from the cache; the SVM C grid runs both times"}


def smoke_suite_benchmark() -> dict:
    """Wall time of the whole ``smoke`` profile, run now through the runner into a temporary reports folder."""
    with tempfile.TemporaryDirectory(prefix="hemasuite_smoke_") as tmp:
        start = time.perf_counter()
        records = runner.run_notebooks("smoke", reports=Path(tmp))
        seconds = time.perf_counter() - start
    failed = [r["notebook"] for r in records if r["status"] != "ok"]
    return {"profile": "smoke", "measured": "run now (python -m hemasuite.tools.runner --profile smoke)",
            "total_seconds": round(seconds, 1), "total_minutes": round(seconds / 60, 1),
            "notebooks": {r["notebook"]: r["seconds"] for r in records}, "failed": failed,
            "status": "ok" if not failed else f"failed: {', '.join(failed)}"}


# ---------------------------------------------------------------------------- pretrained backbones

def pretrained_benchmark(configs=PRETRAINED, steps: int = 3, infer_batch: int = 16, train_batch: int | None = 8,
                         n_classes: int = 4) -> dict:
    """Images/s of each ImageNet backbone (``configs``: ``(name, side)``) with its weights source.

    Inference: the frozen feature extractor (``models.backbone_features``, global average
    pooling, float32 as the feature cache runs it), ``steps`` batches of ``infer_batch``.
    Training (``train_batch`` None skips it): ``steps`` steps of the whole network with a
    new softmax head (``models.transfer_classifier``, Adam) under the training precision.
    Both after one untimed warm-up batch, on synthetic pixels. A backbone whose weights do
    not resolve is listed with the reason.
    """
    rows = []
    for name, side in configs:
        shape = (side, side, 3)
        row = {"backbone": PRETRAINED_NAMES.get(name, name), "name": name, "input": f"{side}x{side}"}
        try:
            source = models.weights_source(name, "imagenet")
        except WeightsError as error:
            rows.append({**row, "weights_source": MISSING, "status": f"unavailable: {str(error).splitlines()[0]}"})
            continue
        stage = functools.partial(paper_stages.Stage, "bench", name, input_shape=shape, n_classes=n_classes,
                                  workload=paper_stages.Workload(0, 0, "bench"), weights_source=source, rescale=1.0)
        features = paper_check.measure_stage(stage(build=functools.partial(models.backbone_features, name, shape,
                                                                     "imagenet"), train_batch=None,
                                             infer_batch=infer_batch), steps)
        row.update(weights_source=source, inference_images_per_s=features["infer_images_per_s"],
                   inference_batch=infer_batch, train_images_per_s=math.nan, train_batch=None, train_policy=None)
        if train_batch:
            fitted = paper_check.measure_stage(stage(build=functools.partial(models.transfer_classifier, name, shape,
                                                                       n_classes, weights="imagenet"),
                                               train_batch=train_batch, infer_batch=train_batch,
                                               optimizer=training.adam(1e-4, 1, "constant")), steps)
            row.update(train_images_per_s=fitted["train_images_per_s"], train_batch=train_batch,
                       train_policy=fitted["policy"])
        rows.append({**row, "status": "measured"})
    return {"rows": rows, "steps": steps, "precision": training.precision_record(),
            "method": f"synthetic pixels; one untimed warm-up batch, then {steps} timed batches each: inference of "
                      "the frozen, globally pooled backbone (float32) and training steps of the whole network with "
                      "a new softmax head (Adam, the training precision policy)"}


# ---------------------------------------------------------------------------- cores

CORE_PROBE = {"images": 2048, "size": 64, "epochs": 4, "batch_size": 64}  # about 10 s of training per process


def training_probe(threads: int | None, images: int, size: int, epochs: int, batch_size: int) -> dict:
    """Images/s of P4's CNN (its augmentation, the ``cpu`` profile's precision) trained on synthetic pixels through
    :func:`hemasuite.training.train`, timed over the epochs after the first (which builds the graph).

    ``threads`` limits TensorFlow's thread pools (None: its default, every core). They are fixed by TensorFlow's
    first operation, so run this in a fresh process (:func:`core_scaling_benchmark`).
    """
    import keras
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    training.set_cpu_policy(config.cpu_precision("cpu"), "profile cpu: cpu_precision")
    rng = np.random.default_rng(0)
    pixels, labels = rng.integers(0, 256, (images, size, size, 3), dtype=np.uint8), rng.integers(0, 4, images)
    data = pipeline.make_dataset(pixels, labels, 4, batch_size, training=True, seed=0,
                                 augment=augment.imagedatagenerator_layers(seed=0))
    ends = []
    clock = keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: ends.append(time.perf_counter()))
    fitted = training.train(lambda: models.p4_sequential_cnn((size, size, 3), 4), data, images, epochs,
                            lambda: keras.optimizers.Adam(1e-3), callbacks=[clock])
    return {"threads": threads or "default (every core)", "policy": fitted.policy,
            "images_per_s": round(training.per_second(images * (epochs - 1), ends[-1] - ends[0]), 1)}


def _probe_process(threads: int | None, probe: dict) -> subprocess.Popen:
    code = ("import json; from hemasuite.tools.bench import training_probe; "
            f"print(json.dumps(training_probe({threads!r}, **{probe!r})))")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def _probe_result(process: subprocess.Popen) -> dict:
    out, err = process.communicate()
    if process.returncode:
        raise RuntimeError(f"the training probe failed (exit {process.returncode}): {err.strip()[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


def core_scaling(rounds: list[dict], probe: dict) -> dict:
    """The cores part of the report from the rounds of :func:`core_scaling_benchmark`: each mode's images/s per
    round, their median and range, and the ratios of the medians."""
    modes = {"one_thread": [r["one_thread"]["images_per_s"] for r in rounds],
             "all_cores": [r["all_cores"]["images_per_s"] for r in rounds],
             "side_by_side_total": [round(sum(p["images_per_s"] for p in r["side_by_side"]), 1) for r in rounds]}
    median = {mode: float(np.median(values)) for mode, values in modes.items()}
    return {"probe": probe, "rounds": len(rounds), "policy": rounds[0]["all_cores"]["policy"], "images_per_s": modes,
            "median_images_per_s": {mode: round(value, 1) for mode, value in median.items()},
            "all_cores_over_one_thread": round(median["all_cores"] / median["one_thread"], 2),
            "side_by_side_over_one_process": round(median["side_by_side_total"] / median["all_cores"], 2),
            "method": (f"P4's CNN with its augmentation on {probe['images']} synthetic {probe['size']} px images, "
                       f"batch {probe['batch_size']}, {probe['epochs']} epochs, images/s over the epochs after the "
                       f"first, each in a fresh process; {len(rounds)} rounds, each of: one TensorFlow thread, "
                       "TensorFlow's default threads (every core), and two default processes started together "
                       "(their sum)")}


def core_scaling_benchmark(probe: dict = CORE_PROBE, rounds: int = 3) -> dict:
    """Whether the cores that a training leaves idle could run a second notebook: P4's CNN trained with one thread,
    with every core, and in two processes at once (:func:`training_probe`, one fresh process each), the three
    modes interleaved over ``rounds`` rounds, as the speed of one training varies from run to run."""
    measured = []
    for _ in range(rounds):
        one_thread = _probe_result(_probe_process(1, probe))
        all_cores = _probe_result(_probe_process(None, probe))
        pair = [_probe_process(None, probe) for _ in range(2)]
        measured.append({"one_thread": one_thread, "all_cores": all_cores,
                         "side_by_side": [_probe_result(process) for process in pair]})
    return core_scaling(measured, probe)


# ---------------------------------------------------------------------------- suite time

def expected_notebooks(profile: str) -> list[str]:
    """Notebooks a full run of ``profile`` executes: the numbered notebooks plus any profiles.yaml names."""
    stems = [p.stem for p in runner.discover()]
    try:
        stems += [s for s in (config.profile(profile).get("notebooks") or {}) if s not in stems]
    except Exception:  # noqa: BLE001  (unknown profile: the notebooks on disk are the list)
        pass
    return sorted(stems)


def slowest_cells(runs: dict[str, dict], n: int = SLOWEST) -> list[dict]:
    """The ``n`` slowest cells of the runs ``{notebook: runs.json record}`` (their ``cells`` timings)."""
    cells = [{"notebook": stem, **cell} for stem, run in runs.items() for cell in run.get("cells") or []
             if cell.get("seconds") is not None]
    return sorted(cells, key=lambda cell: -cell["seconds"])[:n]


def suite_time(reports, profile: str, expected: list[str] | None = None) -> dict:
    """Sum of the last good run of each notebook of ``profile``, with the notebooks included and missing."""
    expected = expected if expected is not None else expected_notebooks(profile)
    path = Path(reports) / profile / "runs.json"
    status = json.loads(path.read_text()) if path.is_file() else {}
    included = {stem: entry["last_good"] for stem, entry in status.items() if entry.get("last_good")}
    missing = sorted(set(expected) - set(included))
    seconds = round(sum(float(r.get("seconds") or 0) for r in included.values()), 1)
    dates = sorted(r.get("started_utc") for r in included.values() if r.get("started_utc"))
    result = {"profile": profile, "runs_json": _shown(path), "total_seconds": seconds,
              "total_minutes": round(seconds / 60, 1),
              "notebooks": {stem: included[stem].get("seconds") for stem in sorted(included)},
              "missing": missing, "first_run_utc": dates[0] if dates else None,
              "last_run_utc": dates[-1] if dates else None, "slowest_cells": slowest_cells(included)}
    if profile == "cpu":
        result["goal_seconds"] = CPU_GOAL_S
        if missing:
            result["goal_met"] = None
            result["goal_note"] = (f"not determinable: {len(missing)} notebook(s) have no good cpu run "
                                   f"({', '.join(missing)}); the {seconds / 60:.1f} min so far "
                                   f"{'already exceed' if seconds > CPU_GOAL_S else 'are within'} the "
                                   f"{CPU_GOAL_S // 60} min goal")
        else:
            result["goal_met"] = seconds <= CPU_GOAL_S
            result["goal_note"] = (f"{seconds / 60:.1f} min for the whole cpu profile: {CPU_GOAL_S // 60} min goal "
                                   f"{'met' if seconds <= CPU_GOAL_S else 'missed'}")
    return result


# ---------------------------------------------------------------------------- report

def _fmt(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "missing"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def report_markdown(report: dict) -> str:
    """The benchmark as Markdown: ratios first, absolute numbers for context."""
    m = report["machine"]
    lines = [f"# Benchmark ({report['started_utc']})", "",
             f"Machine: {m['cpu_model']}, {m['cpu_count']} logical CPUs ({m['cpus_usable']} usable), "
             f"{m['ram_gib']} GiB RAM, load average at start {m['load_average']}; Python {m['python']}, TensorFlow "
             f"{m['packages'].get('tensorflow')}, Keras {m['packages'].get('keras')}, tf-keras "
             f"{m['packages'].get('tf-keras')}, NumPy {m['packages'].get('numpy')}. "
             f"Commit: {report.get('commit')}.", "",
             "## Input pipeline: tf.data vs ImageDataGenerator", ""]
    p = report.get("pipeline") or {}
    if p.get("passes"):
        passes = p["passes"]
        subset = f" (seeded subset of {p['subset_of']})" if p.get("subset_of") else ""
        lines += [f"{p['images']} images{subset} from `{p['folder']}`, "
                  f"{p['size'][0]}x{p['size'][1]}, batch {p['batch_size']}; {p['method']}.", "",
                  f"- **warm ratio** (tf.data cached epoch / generator epoch): **{p['warm_ratio']:.2f}x** "
                  f"(goal >= {p['warm_ratio_goal']:.0f}x: {'met' if p['warm_goal_met'] else 'not met'})",
                  f"- **cold ratio** (tf.data first epoch / generator epoch): **{p['cold_ratio']:.2f}x**", "",
                  "Absolute numbers, for context only (they depend on the machine and its load; load average "
                  f"before {p.get('load_average_before')}, after {p.get('load_average_after')}):", "",
                  markdown_table(pd.DataFrame([{"pass": k, **v} for k, v in passes.items()]), floatfmt=".2f")]
    else:
        lines.append(f"not measured: {p.get('status', 'skipped')}")
    lines += ["", "## Training and inference (cpu profile results)", "",
              "Mean over seeds of each model's `train_images_per_s` and `inference_images_per_s` as recorded in "
              f"`{report['training']['results_dir']}`. P5's `feature_extraction/*` rows are end to end (the frozen "
              "backbone's forward pass + the SVM); its `fine_tuning/*` rows, with `fine_tune_layers` 0, train and run "
              "only the new softmax layer on cached backbone features, so the backbone's cost is not in them. "
              "KNN's training is its thumbnails + scaler + index.", ""]
    speeds = pd.DataFrame(report["training"]["rows"])
    lines.append(markdown_table(speeds.drop(columns=["profile"], errors="ignore"), floatfmt=".1f")
                 if len(speeds) else "no results")
    f = report["feature_cache"]
    lines += ["", "## Feature cache: the P5 grid, cold and warm", ""]
    if f.get("cold_seconds") is None:
        lines.append(f["status"])
    else:
        lines += [f"Backbones {', '.join(f['backbones'])} ({f['weights']}), {f['size'][0]}x{f['size'][1]}, "
                  f"{f['feature_rows']} feature rows from {f['images']} images, linear SVM over C in {f['c_grid']}; "
                  f"{f['method']}.", "",
                  f"- **cold / warm time ratio: {f['ratio']}x** (backbones run cold: {f['computed_cold']}, warm: "
                  f"{f['computed_warm']}; identical SVM scores: {f['identical']})",
                  f"- absolute, for context: cold {f['cold_seconds']} s, warm {f['warm_seconds']} s"]
    lines += ["", "## Pretrained backbones (ImageNet weights)", ""]
    t = report.get("pretrained") or {}
    if t.get("rows"):
        lines += [f"{t['method']}; training precision policy {t['precision']['policy']} "
                  f"({t['precision']['cpu_policy_from']}). Absolute numbers, for context: they depend on the machine "
                  "and its load.", "",
                  markdown_table(pd.DataFrame(t["rows"]).drop(columns=["name"]), floatfmt=".1f")]
    else:
        lines.append(f"not measured: {t.get('status', 'skipped')}")
    lines += ["", "## Cores: would two notebooks side by side finish sooner?", ""]
    c = report.get("cores") or {}
    if c.get("method"):
        speeds = c["images_per_s"]

        def spread(mode):
            return f"median {c['median_images_per_s'][mode]:.0f}, {min(speeds[mode]):.0f}-{max(speeds[mode]):.0f}"

        lines += [f"{c['method']}; precision policy {c['policy']}, {m['cpus_usable']} usable CPUs. Images/s "
                  f"(median, range over the rounds): one thread {spread('one_thread')}; every core "
                  f"{spread('all_cores')}; two processes side by side, together {spread('side_by_side_total')}.", "",
                  f"- **every core / one thread: {c['all_cores_over_one_thread']:.2f}x** (medians)",
                  f"- **two processes side by side / one process: {c['side_by_side_over_one_process']:.2f}x** "
                  "(medians): how much sooner two notebooks run side by side would finish their training than one "
                  "after the other"]
    else:
        lines.append(f"not measured: {c.get('status', 'skipped')}")
    lines += ["", "## Suite wall time", ""]
    for profile, s in report["suite"].items():
        if s.get("measured"):
            lines.append(f"- `{profile}`: {s['total_minutes']} min for {len(s['notebooks'])} notebook(s), "
                         f"{s['measured']}; {s['status']}")
            continue
        span = (f"sum of last good runs, {s['first_run_utc']} to {s['last_run_utc']}" if s["notebooks"]
                else f"no good run recorded in {s['runs_json']}")
        lines.append(f"- `{profile}`: {s['total_minutes']} min over {len(s['notebooks'])} notebook(s) ({span}); "
                     f"missing: {', '.join(s['missing']) or 'none'}"
                     + (f". Goal {CPU_GOAL_S // 60} min: {s['goal_note']}" if profile == "cpu" else ""))
    cpu = report["suite"].get("cpu") or {}
    if cpu.get("slowest_cells"):
        lines += ["", "Slowest cells of the `cpu` run:", "",
                  markdown_table(pd.DataFrame(cpu["slowest_cells"]), floatfmt=".1f")]
    if any(s.get("measured") for s in report["suite"].values()):
        table = pd.DataFrame({profile: s["notebooks"] for profile, s in report["suite"].items()})
        lines += ["", "Seconds per notebook:", "", markdown_table(table.rename_axis("notebook").reset_index(),
                                                                  floatfmt=".1f")]
    return "\n".join(lines) + "\n"


def write_report(report: dict, output) -> tuple[Path, Path]:
    """``benchmark.json`` and ``benchmark.md`` in ``output``, plus ``raw/benchmark_<time>.json``."""
    output = Path(output)
    json_path, md_path = output / "benchmark.json", output / "benchmark.md"
    write_json_atomic(json_path, report)
    stamp = report["started_utc"].replace(":", "").replace("-", "").replace("+0000", "Z")
    write_json_atomic(output / "raw" / f"benchmark_{stamp}.json", report)
    md_path.write_text(report_markdown(report), encoding="utf-8")
    return json_path, md_path


def benchmark_report(folder=None, size: int = 128, batch_size: int = 64, limit: int | None = None, reports=None,
                     skip_pipeline: bool = False, grid_images: int = 160, measure_smoke: bool = True) -> dict:
    """Every part of the benchmark as one dict (see the module docstring)."""
    reports = Path(reports or config.repo_root() / "reports")
    report = {"started_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "commit": git_commit(), "machine": machine()}
    if folder is None:
        try:
            folder = config.resolve_data_dir() / "taleqani_all" / "Original"
        except DataError:
            if not skip_pipeline:
                raise
    if skip_pipeline:
        report["pipeline"] = {"status": "skipped (--skip-pipeline)"}
    else:
        report["pipeline"] = pipeline_benchmark(folder, size, batch_size, limit)
    results_dir = reports / "cpu" / "results"
    report["training"] = {"results_dir": _shown(results_dir),
                          "rows": training_speeds(results_dir).to_dict(orient="records")}
    report["feature_cache"] = (p5_grid_benchmark(folder, grid_images) if not skip_pipeline
                               else {"status": "skipped (--skip-pipeline)"})
    report["pretrained"] = (pretrained_benchmark() if not skip_pipeline
                            else {"status": "skipped (--skip-pipeline)"})
    report["cores"] = core_scaling_benchmark() if not skip_pipeline else {"status": "skipped (--skip-pipeline)"}
    report["suite"] = {"smoke": smoke_suite_benchmark() if measure_smoke else suite_time(reports, "smoke"),
                       "cpu": suite_time(reports, "cpu")}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=None, help="output folder (default: <repo>/reports/benchmarks)")
    parser.add_argument("--folder", help="class-per-folder images (default: <data root>/taleqani_all/Original)")
    parser.add_argument("--size", type=int, default=128, help="square input size (default 128)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    parser.add_argument("--limit", type=int, help="benchmark the pipeline on a seeded subset of this many images")
    parser.add_argument("--reports",
                        help="reports folder with <profile>/runs.json and results (default: <repo>/reports)")
    parser.add_argument("--skip-pipeline", action="store_true",
                        help="skip the timed measurements (pipeline, P5 grid, pretrained backbones, cores); only "
                             "collect the recorded numbers")
    parser.add_argument("--grid-images", type=int, default=160, help="images for the P5 grid (default 160)")
    parser.add_argument("--no-smoke", action="store_true",
                        help="do not run the smoke profile; report its last recorded runs instead")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > 1.5 and not args.limit and not args.skip_pipeline:
        print(f"warning: load average {load:.2f} > 1.5; absolute times will be low, consider --limit 500",
              file=sys.stderr)
    training.set_cpu_policy(config.cpu_precision("cpu"), "profile cpu: cpu_precision")
    report = benchmark_report(args.folder, args.size, args.batch_size, args.limit, args.reports, args.skip_pipeline,
                           args.grid_images, not args.no_smoke)
    json_path, md_path = write_report(report, args.output or config.repo_root() / "reports" / "benchmarks")
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
