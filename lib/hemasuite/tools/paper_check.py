"""Preflight of the ``paper`` profile: ``python -m hemasuite.tools.paper_check`` (``make paper-check``).

:func:`hemasuite.tools.paper_stages.stages` lists every network of the profile's notebooks,
built as the notebook builds it, with the work of its full run. :func:`measure` then runs,
on synthetic pixels (or features), on the visible device, under the suite's strategy and
precision policy (:mod:`hemasuite.training`), one warm-up step, then ``steps`` timed
training steps at the notebook's training batch and ``steps`` timed inference batches at
its inference batch. The table gives images/s and the estimated wall time of the full run
on this device.

- ``--limit N``: at most N networks per notebook and batches of 2, a CPU check in minutes.
- ``--estimate-gpu-tflops T [T ...]``: no timing; the wall time from counted FLOPs
  (:func:`forward_flops`): 3 x forward FLOPs per training image (forward + backward),
  1 x per inference image, at T sustained TFLOPS (:func:`flops_table`).

The terminal gets short lines (at most :data:`WIDTH` characters: one per network under one
per notebook, :func:`terminal_lines`); the full table goes to ``<name>.{csv,md}`` under
``--output``. The command prints its progress lines and tables only: TensorFlow is imported inside
:func:`quiet_startup`, which drops its C++ start-up log, and its warning that functions
are traced again is filtered (every network measured traces its own steps).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import io
import os
import re
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .. import config
from ..record import device_description, markdown_table
from .site import STARTUP_NOISE

if TYPE_CHECKING:
    from .paper_stages import Stage

LIMIT_BATCH = 2
WIDTH = 80  # the terminal lines' width (a long network name is cut; the written table has it whole)
STAND_IN_NOTICE = re.compile(r"^(\S+) is not in the data folder \(.*\); running on the stand-in (\S+) instead$")


@contextlib.contextmanager
def quiet_startup():
    """Inside, lines of TensorFlow's C++ start-up log (:data:`hemasuite.tools.site.STARTUP_NOISE`) written to file
    descriptor 2 are dropped; every other line passes. Import TensorFlow and find its devices inside: those lines
    come before its logging is set up, so ``TF_CPP_MIN_LOG_LEVEL`` (set to 2 here when unset) does not stop them."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    original = os.dup(2)
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)
    thread = threading.Thread(target=_pass_lines, args=(read, original), daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)  # closes the pipe's last write end: the thread reads to its end
        thread.join()
        os.close(original)


def _pass_lines(source: int, target: int) -> None:
    with open(source, "rb") as lines:
        for line in lines:
            if not STARTUP_NOISE.match(line.decode(errors="replace").rstrip("\r\n")):
                os.write(target, line)


def _not_retracing(record) -> bool:
    """False for TensorFlow's warning that a function was traced again: every network measured here traces its own
    training and inference steps."""
    return "triggered tf.function retracing" not in record.getMessage()


# ---------------------------------------------------------------------------- measuring

def _synthetic(stage: Stage, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random uint8 images (or standard-normal features) and labels of the stage's input."""
    rng = np.random.default_rng(seed)
    if len(stage.input_shape) == 3 and stage.input_shape[-1] == 3:
        x = rng.integers(0, 256, (n, *stage.input_shape), dtype=np.uint8)
    else:
        x = rng.standard_normal((n, *stage.input_shape)).astype(np.float32)
    return x, rng.integers(0, stage.n_classes, n)


def measure_stage(stage: Stage, steps: int = 3, batch_size: int | None = None) -> dict:
    """Warm-up, then ``steps`` timed training steps and ``steps`` timed inference batches; images/s of each."""
    import keras

    from .. import pipeline, training

    train_batch = batch_size or stage.train_batch
    infer_batch = batch_size or stage.infer_batch
    x, y = _synthetic(stage, max(train_batch or 0, infer_batch))
    config.set_seeds(0)
    record = {"train_images_per_s": float("nan"), "policy": stage.precision, "strategy": "none", "replicas": 1}
    if stage.train_batch is None:
        with training.policy_scope(stage.precision):
            model = stage.build()
    else:
        with training.policy_scope() as policy:
            strategy = training.distribution_strategy()
            model = training.compiled_model(stage.build, lambda: stage.optimizer(steps), strategy)
            data = pipeline.make_dataset(x[:train_batch], y[:train_batch], stage.n_classes, train_batch, training=True,
                                         augment=stage.augment(0) if stage.augment else None,
                                         rescale=stage.rescale).repeat()
            model.fit(data, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)  # traces the training step
            start = time.perf_counter()
            model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
            record.update(train_images_per_s=training.per_second(steps * train_batch, time.perf_counter() - start),
                          policy=policy, strategy=type(strategy).__name__.lstrip("_"),
                          replicas=strategy.num_replicas_in_sync)
    batch = pipeline.make_dataset(x[:infer_batch], y[:infer_batch], stage.n_classes, infer_batch, training=False,
                                  rescale=stage.rescale)
    training.predict(model, batch)  # traces the inference step
    _, record["infer_images_per_s"] = training.predict(model, batch.repeat(steps))
    del model
    keras.backend.clear_session()
    gc.collect()
    return {**record, "train_batch": train_batch, "infer_batch": infer_batch}


def device_label() -> str:
    """The device TensorFlow trains on here."""
    device = device_description()
    if device["gpus"]:
        return f"{len(device['gpus'])} x GPU: {', '.join(sorted(set(device['gpus'])))}"
    return f"CPU: {device['processor']}, {device['cpu_count']} cores"


def time_stages(stage_list: list[Stage], steps: int = 3, batch_size: int | None = None) -> pd.DataFrame:
    """:func:`measure` every stage; one table row each with the estimated wall time of its full run."""
    device, rows = device_label(), []
    for stage in stage_list:
        print(clip(f"[paper-check] {stage.notebook}: {stage.model}", 96) + " ...", flush=True)
        speed = measure_stage(stage, steps, batch_size)
        train = speed["train_images_per_s"]
        seconds = stage.workload.seconds(None if np.isnan(train) else train, speed["infer_images_per_s"])
        rows.append({"notebook": stage.notebook, "model": stage.model, "device": device, "policy": speed["policy"],
                     "strategy": f"{speed['strategy']} x{speed['replicas']}", "weights source": stage.weights_source,
                     "input": "x".join(map(str, stage.input_shape)), "train batch": speed["train_batch"],
                     "infer batch": speed["infer_batch"], "train img/s": train,
                     "infer img/s": speed["infer_images_per_s"], "full run": stage.workload.detail,
                     "est. wall h": seconds / 3600})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- FLOPs estimate

def forward_flops(model, input_shape) -> int:
    """Floating-point operations of one forward pass of one input (TensorFlow's profiler on the frozen graph;
    a multiply-add counts 2)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    function = tf.function(lambda x: model(x, training=False))
    graph = convert_variables_to_constants_v2(
        function.get_concrete_function(tf.TensorSpec([1, *input_shape], tf.float32))).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return int(tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op",
                                             options=options).total_float_ops)


def flops_table(stage_list: list[Stage], tflops) -> pd.DataFrame:
    """Estimated wall time of every stage at each sustained throughput in ``tflops`` (TFLOP/s).

    Training images cost 3 x the forward FLOPs (forward + backward), inference images 1 x.
    """
    import keras

    rows = []
    for stage in stage_list:
        print(clip(f"[paper-check] FLOPs of {stage.notebook}: {stage.model}", 96) + " ...", flush=True)
        config.set_seeds(0)
        model = stage.build()
        flops = forward_flops(model, stage.input_shape)
        del model
        keras.backend.clear_session()
        gc.collect()
        total = 3 * flops * stage.workload.trained + flops * stage.workload.inferred
        rows.append({"notebook": stage.notebook, "model": stage.model, "input": "x".join(map(str, stage.input_shape)),
                     "forward GFLOPs/image": flops / 1e9, "full run": stage.workload.detail,
                     "total PFLOPs": total / 1e15,
                     **{f"est. h at {t:g} TFLOPS": total / (t * 1e12) / 3600 for t in tflops}})
    return pd.DataFrame(rows)


def per_notebook(table: pd.DataFrame) -> pd.DataFrame:
    """The estimated hours of every notebook (sum over its networks)."""
    hours = [c for c in table.columns if c.startswith("est.")]
    return table.groupby("notebook", sort=False)[hours].sum().reset_index()


# ---------------------------------------------------------------------------- terminal

def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, an ellipsis marking the cut."""
    text = str(text)
    return text if len(text) <= width else text[:max(width - 1, 0)] + "…"


def short_source(source: str) -> str:
    """A weights source in a few words: ``ImageNet``, ``random init`` or ``NO ImageNet file`` (timed with random
    init); the written table has the whole source."""
    source = str(source)
    if source.startswith("unavailable"):
        return "NO ImageNet file"
    return "ImageNet" if source.startswith("ImageNet") else "random init"


def _number(value) -> str:
    """A short number: images/s as ``12,345``, small values with 3 significant digits, a dash for none."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def terminal_lines(table: pd.DataFrame, width: int = WIDTH) -> list[str]:
    """The table for a terminal: a heading line, then per notebook a line with its estimated hours and one short line
    per network (images/s and estimated hours measured, or GFLOPs and hours per throughput estimated). No line is
    longer than ``width`` (unless ``width`` is below the numbers' own columns)."""
    hours = [c for c in table.columns if c.startswith("est.")]
    measured = "train img/s" in table.columns
    if measured:
        numbers = {"train/s": "train img/s", "infer/s": "infer img/s", "est. h": "est. wall h"}
        tail = 2 + 16  # the weights kind
    else:
        numbers = {"GFLOPs": "forward GFLOPs/image",
                   **{c.removeprefix("est. h at ").replace(" TFLOPS", "T") + " h": c for c in hours}}
        tail = 0
    cell = max(9, *(len(label) + 1 for label in numbers))
    name = max(12, width - 4 - cell * len(numbers) - tail)
    lines = []
    if measured and len(table):
        first = table.iloc[0]
        lines.append(clip(f"device: {first['device']}", width))
        lines.append(clip(f"policy: {', '.join(dict.fromkeys(table['policy']))}; strategy: "
                         f"{', '.join(dict.fromkeys(table['strategy']))}", width))
    header = "    " + f"{'network':<{name}}" + "".join(" " + f"{label:>{cell - 1}}" for label in numbers)
    lines.append((header + ("  weights" if measured else "")).rstrip())
    totals = per_notebook(table).set_index("notebook")
    for notebook, rows in table.groupby("notebook", sort=False):
        sums = ", ".join(f"{_number(totals.loc[notebook, c])} h" + ("" if measured else f" at {c[10:]}")
                         for c in hours)
        lines.append(clip(f"{notebook}: {sums}", width))
        for _, row in rows.iterrows():
            line = "    " + f"{clip(row['model'], name - 1):<{name}}" + "".join(
                " " + f"{_number(row[column]):>{cell - 1}}" for column in numbers.values())
            if measured:
                line += "  " + short_source(row["weights source"])
            lines.append(line)
    return lines


def short_notice(line: str, width: int = 100) -> list[str]:
    """A line printed while the networks are listed, made short: a dataset counted on its stand-in in one line,
    anything else wrapped."""
    match = STAND_IN_NOTICE.match(line)
    if match:
        return [clip(f"{match[1]} is not in the data folder: counted on its stand-in {match[2]}", width)]
    return textwrap.wrap(line, width, subsequent_indent="  ", break_on_hyphens=False) or [""]


# ---------------------------------------------------------------------------- command line

def write_tables(table: pd.DataFrame, output: Path, name: str, notes: list[str]) -> tuple[Path, Path]:
    """``<name>.csv`` and ``<name>.md`` (notes, the table, and the per-notebook sums) under ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    csv, md = output / f"{name}.csv", output / f"{name}.md"
    table.to_csv(csv, index=False)
    md.write_text("\n\n".join([*notes, markdown_table(table, floatfmt=".3g"),
                               markdown_table(per_notebook(table), floatfmt=".3g")]) + "\n")
    return csv, md


def shown_path(path: Path) -> str:
    """``path`` relative to the working folder when it lies under it (a shorter line), else whole."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def parse_paper_check_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="paper")
    parser.add_argument("--notebooks", nargs="*", help="default: every notebook that trains networks")
    parser.add_argument("--limit", type=int, help=f"at most N networks per notebook, batch {LIMIT_BATCH}")
    parser.add_argument("--batch-size", type=int, help="one batch for every network (default: the notebooks')")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps and inference batches")
    parser.add_argument("--input-size", type=int, help="replace every image side (tests only: not the paper's)")
    parser.add_argument("--data-dir", help="data root (default: $LEUKEMIA_DATA_DIR)")
    parser.add_argument("--output", default=str(config.repo_root() / "reports" / "paper" / "paper_check"))
    parser.add_argument("--estimate-gpu-tflops", type=float, nargs="+", metavar="T",
                        help="no timing: wall time from counted FLOPs at T sustained TFLOPS")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_paper_check_arguments(argv)
    with quiet_startup():
        import tensorflow as tf

        from .. import training
        from .paper_stages import stages

        training.precision_policy()  # finds the devices
    tf.get_logger().addFilter(_not_retracing)
    training.set_cpu_policy(config.cpu_precision(args.profile), f"profile {args.profile}: cpu_precision")
    notices = io.StringIO()
    try:
        with contextlib.redirect_stdout(notices):  # the loaders' notices, made short below
            found = stages(args.profile, args.notebooks, args.data_dir, args.input_size, args.limit)
    finally:
        for line in notices.getvalue().splitlines():
            print("\n".join(short_notice(line)))
    when = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    scope = f"profile `{args.profile}`" + (f", first {args.limit} network(s) per notebook" if args.limit else "")
    if args.input_size:
        scope += f", input side {args.input_size} (NOT the paper's)"
    if args.estimate_gpu_tflops:
        table = flops_table(found, args.estimate_gpu_tflops)
        notes = [(f"ESTIMATE of the {scope} wall time, {when} (UTC): forward FLOPs counted by TensorFlow's profiler "
                  "x (3 per training image + 1 per inference image) / sustained throughput. Input pipeline, "
                  "augmentation and CPU steps are not counted: small networks will be input-bound and slower.")]
        name = "gpu_estimate"
    else:
        table = time_stages(found, args.steps, args.batch_size or (LIMIT_BATCH if args.limit else None))
        notes = [(f"Measured {when} (UTC), {scope}, {args.steps} timed step(s) after a warm-up, synthetic pixels "
                  "(or features). Estimated wall time = training images of the full run / train img/s + inference "
                  "images / infer img/s, at the batches shown.")]
        name = "paper_check"
    print("\n".join(terminal_lines(table)))
    csv, md = write_tables(table, Path(args.output), name, notes)
    print(f"[paper-check] written: {shown_path(csv)}")
    print(f"[paper-check] written: {shown_path(md)} (the full table)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
