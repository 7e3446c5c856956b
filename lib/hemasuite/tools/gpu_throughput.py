"""Measured training throughput of the paper networks on one accelerator, Keras 3 only.

``python lib/hemasuite/tools/gpu_throughput.py --output DIR [--steps N] [--limit-s S] [--networks ...]``

What it measures: for each network of the papers (the ``keras.applications`` backbones with
the suite's softmax head, and the suite's own CNNs), at the paper's input size, batch size,
class count and optimizer (as :mod:`hemasuite.tools.paper_stages` lists them for the
``paper`` profile), the images per second of the compiled Keras training step
(forward, loss, backward, optimizer update, accuracy metric) on synthetic pixels in
[0, 255] (the speed depends only on the shapes), under the Keras dtype policy given by
``--policy`` (default ``mixed_bfloat16``). Random initialisation (``weights=None``): no
downloads. Per network: build, compile; the first step is timed on its own and reported
as ``compile_s`` (tracing + XLA compilation + one step); ``--warmup`` more steps, then
``--repeats`` runs of ``--steps`` steps each, blocking on the loss and the new state at the
end of each run; images/s is ``steps * batch / seconds`` of the median run. Not measured:
the input pipeline (the batch stays on the device), data augmentation, validation passes.

On the JAX backend the loop calls the same jitted step that ``Model.fit`` runs
(``Model.train_function`` with the state kept on the device, as ``fit`` keeps it between
steps); on other backends it calls ``Model.train_on_batch`` (which waits for every step).

It imports no ``hemasuite`` module (the package needs TensorFlow): the backend comes from
``KERAS_BACKEND``, and the suite's own CNNs are loaded by file path from
``lib/hemasuite/models/custom.py`` and ``patch.py`` (with ``errors.py``), skipped if that fails.
Results are written after every network to ``DIR/gpu_throughput.json`` and
``DIR/gpu_throughput.md``, so a run stopped from outside keeps what it measured; no
network is started once ``--limit-s`` seconds have passed, and a network stops timing
more runs after ``--network-limit-s``. A compilation once started cannot be interrupted:
the network that is compiling when the limit passes runs to its end.

How it was run for ``reports/benchmarks/gpu_throughput_h200.*`` (2026-12-04): on one NVIDIA
H200 (the workplace's device machine: Python 3.12, JAX 0.11.2 with CUDA preinstalled,
keras 3.15.1 + namex 0.1.0 + optree 0.20.0 carried as wheels), ``KERAS_BACKEND=jax
XLA_PYTHON_CLIENT_PREALLOCATE=false python3 lib/hemasuite/tools/gpu_throughput.py --output
$OUT --label "Keras 3 / JAX on H200" --limit-s 290 --network-limit-s 20 --steps 30 --repeats 3
--warmup 3`` inside a 385 s timeout. Compiling DenseNet-201's training step took 309 s
there (XLA on the GPU, convolution autotuning included), so it was the only network timed
in that budget; the others are listed as not started. To time the rest, pass them with
``--networks`` (cheapest first: the suite's CNNs and VGG-16 compile in seconds).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path

LIB = Path(__file__).resolve().parents[1]  # lib/hemasuite
SHIM = "_hemasuite_models_by_path"


@dataclass(frozen=True)
class Network:
    """One network as a paper trains it: how to build it, its input side, batch, classes and optimizer."""

    key: str
    label: str
    paper: str
    kind: str  # "application" (keras.applications constructor) or "custom" (the suite's builder, by path)
    builder: str  # constructor / function name
    size: int
    batch: int
    classes: int
    optimizer: str  # "adam:LR" or "sgd:LR:MOMENTUM"
    kwargs: dict = field(default_factory=dict)
    dense_units: int | None = None  # applications: Dense(units, relu) before the softmax (P3's Dense 512)
    preprocess: str | None = None  # applications: keras.applications module whose preprocess_input goes inside


# The paper profile's networks (``make paper-check`` / hemasuite.tools.paper_stages, profile "paper"), biggest first.
NETWORKS = [
    Network("densenet201", "DenseNet-201 + Dense 512", "P3 (20)", "application", "DenseNet201", 224, 24, 3,
            "adam:0.0001", dense_units=512, preprocess="densenet"),
    Network("resnet50", "ResNet-50 baseline", "P4 (10)", "application", "ResNet50", 224, 64, 4, "adam:0.001",
            preprocess="resnet"),
    Network("densenet121", "DenseNet-121 baseline", "P4 (10)", "application", "DenseNet121", 224, 64, 4,
            "adam:0.001", preprocess="densenet"),
    Network("inception_v3", "Inception V3", "P5 (22)", "application", "InceptionV3", 224, 30, 4, "sgd:0.01:0.9",
            preprocess="inception_v3"),
    Network("resnet101", "ResNet-101", "P5 (22)", "application", "ResNet101", 224, 30, 4, "sgd:0.01:0.9",
            preprocess="resnet"),
    Network("vgg16", "VGG-16", "P2 (21) / P5 (22)", "application", "VGG16", 224, 32, 2, "sgd:0.01:0.9",
            preprocess="vgg16"),
    Network("p4_sequential_cnn", "Sequential CNN", "P4 (10)", "custom", "p4_sequential_cnn", 224, 64, 4, "adam:0.001"),
    Network("p1_deep_cnn", "deep CNN", "P1 (11)", "custom", "p1_deep_cnn", 224, 32, 4, "adam:0.001"),
    Network("p1_deep_cnn_128_s2", "deep CNN, 128 px, stride-2 stem", "leakage ladder (02)", "custom", "p1_deep_cnn",
            128, 64, 4, "adam:0.001", kwargs={"stem_stride": 2, "stem_kernel": 3}),
    Network("patch_cnn_128", "tile CNN, 128-px tiles", "P3 (20)", "custom", "patch_cnn", 128, 64, 3, "adam:0.001",
            kwargs={"filters": (32, 64, 128, 256), "stem_stride": 1}),
    Network("p2_traditional_cnn", "traditional CNN", "P2 (21)", "custom", "p2_traditional_cnn", 224, 32, 2,
            "sgd:0.01:0.9"),
    Network("alexnet", "AlexNet (FC 4096)", "P2 (21)", "custom", "alexnet", 224, 32, 2, "sgd:0.01:0.9",
            kwargs={"fc_units": 4096}),
    Network("p5_small_cnn", "small CNN", "P5 (22)", "custom", "p5_small_cnn", 224, 30, 4, "sgd:0.01:0.9"),
]
BY_KEY = {n.key: n for n in NETWORKS}


# ---------------------------------------------------------------------------- building

def _load_by_path(name: str, path: Path, package: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = package
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def suite_builders() -> dict:
    """The suite's own CNN builders, loaded by file path under a stand-in package (no ``hemasuite`` import)."""
    if f"{SHIM}.models.patch" not in sys.modules:
        for name, path in ((SHIM, LIB), (f"{SHIM}.models", LIB / "models")):
            package = types.ModuleType(name)
            package.__path__ = [str(path)]
            sys.modules[name] = package
        _load_by_path(f"{SHIM}.errors", LIB / "errors.py", SHIM)
        _load_by_path(f"{SHIM}.models.custom", LIB / "models" / "custom.py", f"{SHIM}.models")
        _load_by_path(f"{SHIM}.models.patch", LIB / "models" / "patch.py", f"{SHIM}.models")
    custom, patch = sys.modules[f"{SHIM}.models.custom"], sys.modules[f"{SHIM}.models.patch"]
    return {**{k: getattr(custom, k) for k in ("p4_sequential_cnn", "p1_deep_cnn", "p2_traditional_cnn",
                                               "p5_small_cnn", "alexnet")}, "patch_cnn": patch.patch_cnn}


def build(net: Network, size: int):
    """The network at ``size`` x ``size`` x 3 with ``net.classes`` softmax outputs (kept in float32)."""
    import keras
    from keras import layers

    shape = (size, size, 3)
    if net.kind == "custom":
        return suite_builders()[net.builder](shape, net.classes, **net.kwargs)
    base = getattr(keras.applications, net.builder)(include_top=False, weights=None, input_shape=shape,
                                                    pooling="avg")
    for layer in base.layers:  # as hemasuite.models.pretrained.transfer_classifier does from random init
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = 0.9
    inputs = keras.Input(shape=shape)
    x = getattr(keras.applications, net.preprocess).preprocess_input(inputs) if net.preprocess else inputs
    x = base(x)
    if net.dense_units:
        x = layers.Dense(net.dense_units, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(net.classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name=f"{net.key}_classifier")


def optimizer(spec: str):
    import keras

    name, *values = spec.split(":")
    if name == "adam":
        return keras.optimizers.Adam(float(values[0]))
    return keras.optimizers.SGD(float(values[0]), momentum=float(values[1]))


# ---------------------------------------------------------------------------- timing

def _block(tree) -> None:
    """Wait until every array in ``tree`` is computed."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        jax.block_until_ready(tree)
    else:
        import numpy as np

        keras.tree.map_structure(lambda t: np.asarray(keras.ops.convert_to_numpy(t)) if t is not None else t, tree)


def stepper(model, x, y):
    """``(step(n), method)``: ``step(n)`` runs ``n`` training steps on the batch ``(x, y)`` and returns when done."""
    import keras

    if keras.backend.backend() == "jax" and hasattr(model, "_get_jax_state") and model.train_function is not None:
        state = [model._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                                      optimizer_variables=True, metrics_variables=True)]
        data = (x, y, None)

        def step(n: int) -> None:
            logs = None
            for _ in range(n):
                logs, state[0] = model.train_function(state[0], iter([data]))
            _block((logs, state[0]))

        return step, "jitted Model.train_function, state on device (as Model.fit)"

    def step(n: int) -> None:
        logs = None
        for _ in range(n):
            logs = model.train_on_batch(x, y, return_dict=True)
        _block(logs)

    return step, "Model.train_on_batch"


def synthetic_batch(batch: int, size: int, classes: int, seed: int = 0):
    """Pixels uniform in [0, 255] (float32) and one-hot labels, on the backend's default device."""
    import keras
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(batch, size, size, 3)).astype("float32")
    y = np.eye(classes, dtype="float32")[rng.integers(0, classes, size=batch)]
    return keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)


def measure_network(net: Network, steps: int, repeats: int, warmup: int, network_limit_s: float,
            size: int | None = None, batch: int | None = None) -> dict:
    """Build, compile and time ``net``'s training step; one result row."""
    import keras

    size, batch = size or net.size, batch or net.batch
    keras.utils.set_random_seed(0)
    started = time.perf_counter()
    model = build(net, size)
    model.compile(optimizer=optimizer(net.optimizer), loss="categorical_crossentropy", metrics=["accuracy"])
    x, y = synthetic_batch(batch, size, net.classes)
    build_s = time.perf_counter() - started
    t0 = time.perf_counter()
    first = model.train_on_batch(x, y, return_dict=True)  # traces and compiles the training step, runs it once
    _block(first)
    compile_s = time.perf_counter() - t0
    step, method = stepper(model, x, y)
    if warmup:
        step(warmup)
    runs = []
    timing_started = time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        step(steps)
        runs.append(time.perf_counter() - t0)
        if time.perf_counter() - timing_started > network_limit_s:
            break
    seconds = statistics.median(runs)
    row = {"key": net.key, "network": net.label, "paper": net.paper, "input": f"{size}x{size}x3", "batch": batch,
           "classes": net.classes, "optimizer": net.optimizer, "params": int(model.count_params()),
           "dtype_policy": keras.config.dtype_policy().name, "method": method, "build_s": round(build_s, 2),
           "compile_s": round(compile_s, 2), "warmup_steps": warmup, "steps": steps, "runs": len(runs),
           "run_seconds": [round(s, 4) for s in runs], "step_ms": round(1000 * seconds / steps, 3),
           "images_per_s": round(steps * batch / seconds, 1),
           "images_per_s_runs": [round(steps * batch / s, 1) for s in runs],
           "first_loss": float(keras.ops.convert_to_numpy(first["loss"])), "status": "ok"}
    del model, step, x, y
    keras.backend.clear_session()
    gc.collect()
    return row


# ---------------------------------------------------------------------------- environment and reports

def gpu_environment(policy: str) -> dict:
    import keras

    env = {"date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "python": platform.python_version(), "platform": platform.platform(), "keras": keras.__version__,
           "backend": keras.backend.backend(), "dtype_policy": policy, "synthetic_data": True, "weights": None}
    if env["backend"] == "jax":
        import jax
        import jaxlib

        env.update(jax=jax.__version__, jaxlib=jaxlib.__version__,
                   devices=[f"{d.platform}:{getattr(d, 'device_kind', str(d))}" for d in jax.devices()])
    elif env["backend"] == "tensorflow":
        import tensorflow as tf

        env.update(tensorflow=tf.__version__,
                   devices=[d.name for d in tf.config.list_logical_devices()])
    elif env["backend"] == "torch":
        import torch

        env.update(torch=torch.__version__, devices=[torch.cuda.get_device_name(0)] if torch.cuda.is_available()
                   else ["cpu"])
    env["device"] = (env.get("devices") or ["?"])[0]
    env["xla_env"] = {k: os.environ[k] for k in sorted(os.environ) if k.startswith("XLA_")}
    return env


def markdown(record: dict) -> str:
    env = record["environment"]
    lines = [f"# {record['label']}", "",
             f"Training images per second of the compiled Keras training step, {env['dtype_policy']}, synthetic data, "
             f"random initialisation; measured {env['date_utc'][:10]} on {env['device']} "
             f"(keras {env['keras']}, backend {env['backend']}"
             + (f", jax {env['jax']}" if "jax" in env else "") + ").", "",
             "| network | paper | input | batch | classes | optimizer | params | compile s | step ms | images/s |",
             "| --- | --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |"]
    for r in record["results"]:
        if r["status"] == "ok":
            lines.append(f"| {r['network']} | {r['paper']} | {r['input']} | {r['batch']} | {r['classes']} | "
                         f"{r['optimizer']} | {r['params'] / 1e6:.1f} M | {r['compile_s']:.1f} | {r['step_ms']:.1f} | "
                         f"{r['images_per_s']:,.0f} |")
        else:
            lines.append(f"| {r['network']} | {r['paper']} | {r['input']} | {r['batch']} | {r['classes']} | "
                         f"{r['optimizer']} | | | | {r['status']} |")
    first = next((r for r in record["results"] if r["status"] == "ok"), None)
    lines += ["", f"Method: {first['method'] if first else '-'}; the first step (tracing + compilation + one step) is "
              f"'compile s'; then {record['args']['warmup']} warm-up steps and up to {record['args']['repeats']} runs "
              f"of {record['args']['steps']} steps, blocking at the end of each; images/s = steps x batch / seconds "
              "of the median run. The input pipeline, augmentation and validation passes are not included.",
              f"Total wall time {record['wall_s']:.0f} s."]
    if record.get("skipped"):
        lines.append(f"Not started (time limit): {', '.join(record['skipped'])}.")
    return "\n".join(lines) + "\n"


def write_record(record: dict, output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    (output / "gpu_throughput.json").write_text(json.dumps(record, indent=2) + "\n")
    (output / "gpu_throughput.md").write_text(markdown(record))


# ---------------------------------------------------------------------------- main

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, type=Path, help="folder for gpu_throughput.json and .md")
    parser.add_argument("--networks", nargs="+", default=[n.key for n in NETWORKS], choices=list(BY_KEY),
                        metavar="NAME", help=f"networks to time, in order (default all: {' '.join(BY_KEY)})")
    parser.add_argument("--steps", type=int, default=20, help="training steps per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per network (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps after the compiling one")
    parser.add_argument("--limit-s", type=float, default=300.0, help="start no new network after this many seconds")
    parser.add_argument("--network-limit-s", type=float, default=60.0,
                        help="start no more timed runs of a network after this many seconds of timing")
    parser.add_argument("--policy", default="mixed_bfloat16", help="Keras dtype policy")
    parser.add_argument("--size", type=int, default=None, help="override every input side (a quick test only)")
    parser.add_argument("--batch", type=int, default=None, help="override every batch size (a quick test only)")
    parser.add_argument("--label", default=None, help="title of the table (default: Keras 3 / BACKEND on DEVICE)")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(args.policy)
    try:
        return _run(args, started)
    finally:
        keras.config.set_dtype_policy(previous)


def _run(args: argparse.Namespace, started: float) -> dict:
    import keras

    env = gpu_environment(args.policy)
    label = args.label or f"Keras 3 / {env['backend']} on {env['device']}"
    record = {"label": label, "environment": env,
              "args": {k: v for k, v in vars(args).items() if k != "output"},  # where it is written: no setting
              "networks": {key: asdict(BY_KEY[key]) for key in args.networks}, "results": [], "skipped": [],
              "wall_s": 0.0}
    print(f"[gpu-throughput] {label}: keras {env['keras']} ({env['backend']}), devices {env.get('devices')}, "
          f"policy {args.policy}", flush=True)
    for i, key in enumerate(args.networks):
        net = BY_KEY[key]
        if time.perf_counter() - started > args.limit_s:
            record["skipped"] = list(args.networks[i:])
            break
        size, batch = args.size or net.size, args.batch or net.batch
        pending = {"key": key, "network": net.label, "paper": net.paper, "input": f"{size}x{size}x3", "batch": batch,
                   "classes": net.classes, "optimizer": net.optimizer, "status": "running (stopped from outside)"}
        record["results"].append(pending)
        record["wall_s"] = time.perf_counter() - started
        write_record(record, args.output)
        print(f"[gpu-throughput] {time.perf_counter() - started:.0f} s: {key} {size}px batch {batch} ...", flush=True)
        try:
            row = measure_network(net, args.steps, args.repeats, args.warmup, args.network_limit_s, args.size,
                                  args.batch)
        except Exception as error:  # noqa: BLE001 -- one network's failure is recorded, the others still run
            row = {**pending, "status": f"failed: {type(error).__name__}: {str(error)[:300]}"}
            keras.backend.clear_session()
            gc.collect()
        record["results"][-1] = row
        record["wall_s"] = time.perf_counter() - started
        write_record(record, args.output)
        if row["status"] == "ok":
            print(f"[gpu-throughput] {key}: compile {row['compile_s']:.1f} s, {row['step_ms']:.1f} ms/step, "
                  f"{row['images_per_s']:,.0f} images/s (runs {row['images_per_s_runs']})", flush=True)
        else:
            print(f"[gpu-throughput] {key}: {row['status']}", flush=True)
    record["wall_s"] = time.perf_counter() - started
    write_record(record, args.output)
    print(markdown(record), flush=True)
    return record


if __name__ == "__main__":
    main()
