"""The cpu profile's ``cpu_precision``, chosen on validation accuracy: ``python -m hemasuite.tools.precision_choice``.

P1's deep CNN (:func:`hemasuite.models.p1_deep_cnn`) is trained under ``float32`` and under
``mixed_bfloat16`` with the same seeds, on a seeded, group-aware train / validation split
carved from the *training* part of notebook 11's recorded cpu split
(``reports/cpu/results/11_p1_deep_cnn/splits/field_seed0.csv``, split seed 0); that split's validation and
test images are never read. Both validation accuracies, their paired bootstrap
difference and the training images per second (median epoch after the first, which
includes graph compilation; the policies alternate seed by seed) go to
``reports/cpu/precision_choice.json`` with the choice
(:func:`choose_policy`): ``mixed_bfloat16`` only when it trains faster and its validation
accuracy is not below float32's beyond noise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

import keras
import numpy as np

from .. import augment, config, datasets, models, pipeline, splits, training
from ..record import environment, write_json_atomic

MANIFEST = Path("reports/cpu/results/11_p1_deep_cnn/splits/field_seed0.csv")
OUTPUT = Path("reports/cpu/precision_choice.json")
POLICIES = ("float32", "mixed_bfloat16")


class EpochTimer(keras.callbacks.Callback):
    """Records the wall time of every epoch."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def carve_split(manifest, fraction: float, seed: int, data_dir=None):
    """The manifest's training rows, split again into train / val (stratified, duplicate groups kept together)."""
    root = config.common_folder(datasets.load_dataset("taleqani_all", data_dir).frame["path"])
    frame = splits.load_manifest(manifest, root=root)
    train = frame[frame["split"] == "train"].drop(columns="split").reset_index(drop=True)
    carved = splits.split_dataset(train, (1 - fraction, fraction), seed=seed, groups="duplicate_group")
    carved["split"] = carved["split"].replace({"test": "val"})
    splits.assert_no_leakage(carved, "duplicate_group")
    return carved


def train_once(policy: str, carved, images: np.ndarray, seed: int, epochs: int, batch_size: int,
               learning_rate: float) -> dict:
    """Train P1's CNN under ``policy``; validation accuracy, per-image correctness and training images/s."""
    classes = sorted(carved["label"].unique())
    labels = carved["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    is_train = (carved["split"] == "train").to_numpy()
    x_train, y_train, x_val, y_val = images[is_train], labels[is_train], images[~is_train], labels[~is_train]
    training.set_cpu_policy(policy, "precision choice")
    config.set_seeds(seed)
    train_data = pipeline.make_dataset(x_train, y_train, len(classes), batch_size, training=True, seed=seed,
                                       augment=augment.dihedral(seed))
    timer = EpochTimer()
    steps = int(np.ceil(len(y_train) / batch_size))
    result = training.train(lambda: models.p1_deep_cnn(images.shape[1:], len(classes)), train_data, len(y_train),
                            epochs, lambda: training.adam(learning_rate, epochs, "cosine")(steps), callbacks=[timer])
    probabilities, inference_speed = training.predict(
        result.model, pipeline.make_dataset(x_val, y_val, len(classes), 128, training=False))
    correct = probabilities.argmax(axis=1) == y_val
    return {"policy": result.policy, "seed": seed, "val_accuracy": float(correct.mean()),
            "train_accuracy_last_epoch": result.history["accuracy"][-1],
            "train_images_per_s": training.per_second(len(y_train),
                                                      float(np.median(timer.seconds[1:] or timer.seconds))),
            "epoch_seconds": [round(s, 2) for s in timer.seconds], "inference_images_per_s": inference_speed,
            "correct": correct}


def paired_difference(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict:
    """Accuracy of ``b`` minus ``a`` (per-image correctness on the same images) with a 95% bootstrap interval."""
    rng = np.random.default_rng(seed)
    diff = b.astype(float) - a.astype(float)
    samples = diff[rng.integers(0, len(diff), (n_boot, len(diff)))].mean(axis=1)
    low, high = np.quantile(samples, [0.025, 0.975])
    return {"difference": float(diff.mean()), "ci_low": float(low), "ci_high": float(high), "n_boot": n_boot,
            "n_images": int(len(diff))}


def choose_policy(difference: dict, speedup: float) -> str:
    """``mixed_bfloat16`` when it is faster and its accuracy is not lower beyond noise (interval reaches 0)."""
    return "mixed_bfloat16" if speedup > 1 and difference["ci_high"] >= 0 else "float32"


def run(manifest=MANIFEST, output=OUTPUT, size: int = 64, epochs: int = 8, batch_size: int = 64,
        seeds=(0, 1, 2), fraction: float = 0.2, learning_rate: float = 0.001) -> dict:
    """Both policies on the carved split; writes and returns the record."""
    start = time.perf_counter()
    carved = carve_split(manifest, fraction, seeds[0])
    images = pipeline.load_images(carved, size, cache_dir=config.cache_dir())
    load_before = os.getloadavg()
    runs = {policy: [] for policy in POLICIES}
    for seed in seeds:  # policies alternate, so a change in the machine's load hits both alike
        for policy in POLICIES:
            runs[policy].append(train_once(policy, carved, images, seed, epochs, batch_size, learning_rate))
    training.set_cpu_policy("float32", "default")
    mean_correct = {policy: np.mean([r["correct"] for r in records], axis=0) for policy, records in runs.items()}
    difference = paired_difference(mean_correct["float32"], mean_correct["mixed_bfloat16"])
    speed = {policy: float(np.mean([r["train_images_per_s"] for r in records])) for policy, records in runs.items()}
    speedup = speed["mixed_bfloat16"] / speed["float32"]
    record = {
        "question": "cpu profile's cpu_precision: float32 or mixed_bfloat16, on validation accuracy",
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "data": {"source": f"training rows of {_shown(manifest)} (its val and test rows are not read)",
                 "carved_split": {"fractions": [1 - fraction, fraction], "seed": seeds[0],
                                  "method": "stratified, duplicate groups kept on one side",
                                  "counts": splits.split_summary(carved).to_dict(orient="records")}},
        "model": "p1_deep_cnn, no stem", "input_size": size, "epochs": epochs, "batch_size": batch_size,
        "optimizer": f"Adam {learning_rate}, cosine decay", "augmentation": "dihedral", "seeds": list(seeds),
        "runs": {policy: [{k: v for k, v in r.items() if k != "correct"} for r in records]
                 for policy, records in runs.items()},
        "val_accuracy": {policy: float(mean_correct[policy].mean()) for policy in POLICIES},
        "bfloat16_minus_float32": difference, "train_images_per_s": speed, "speedup": round(speedup, 3),
        "rule": "mixed_bfloat16 if it trains faster and the 95% paired bootstrap interval of its validation "
                "accuracy minus float32's reaches 0; else float32",
        "choice": choose_policy(difference, speedup), "wall_time_s": round(time.perf_counter() - start, 1),
        "load_average_1_5_15_min": {"before": [round(v, 2) for v in load_before],
                                    "after": [round(v, 2) for v in os.getloadavg()]},
        "environment": environment()}
    write_json_atomic(Path(output), record)
    return record


def _shown(path) -> str:
    """``path`` relative to the checkout when it lies inside it."""
    path = Path(path).resolve()
    return path.relative_to(config.repo_root()).as_posix() if path.is_relative_to(config.repo_root()) else str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", default=str(config.repo_root() / MANIFEST))
    parser.add_argument("--output", default=str(config.repo_root() / OUTPUT))
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    record = run(args.manifest, args.output, args.size, args.epochs, args.batch_size, tuple(args.seeds))
    print(f"validation accuracy {record['val_accuracy']}, train images/s {record['train_images_per_s']}, "
          f"bf16 - fp32 {record['bfloat16_minus_float32']}; choice: {record['choice']} -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
