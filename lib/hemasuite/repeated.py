"""Repeated splits: one dataset validated once, split with several seeds, and one results row over all of them.

One test split of a few hundred images cannot tell 93% from 97%, and a second split of the
same data moves the accuracy more than a second training seed does. Here:

- :func:`resplit`: the groups of a prepared split (``split_group``: duplicates, same-field
  twins, cases) split again with another seed, checked for leakage and saved like the first;
- :func:`split_seeds`: :func:`hemasuite.experiment.prepare` with the first seed (one
  validation), then :func:`resplit` for the others;
- :func:`pool`: a model trained on every split, each with its training seeds, as one row:
  the mean over all runs, the sd across splits (the row's ``sd``) and across training
  seeds (:func:`hemasuite.crossval.repeated_split_summary`), a bootstrap CI over the test
  images of all splits, and every per-image prediction in one CSV. The row's
  ``seeds[].fold`` holds the split seed;
- :func:`spread_table`: both sources of spread of every pooled row.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from . import crossval, experiment, metrics, record, same_field, splits
from .errors import ParameterError
from .experiment import Assessed, Prepared, TrainedSeed

Runs = list[tuple[Prepared, list[TrainedSeed]]]
POOLED = "bootstrap over the test images of all split seeds (correctness averaged over training seeds)"


def resplit(run, prepared: Prepared, seed: int) -> Prepared:
    """``prepared``'s groups split again with ``seed``, checked like the first split, its manifest saved
    as ``split_manifest_seed<seed>.csv`` of ``run``; the decoded images are shared."""
    frame = splits.split_dataset(prepared.frame.drop(columns="split"), prepared.split.fractions, seed,
                                 groups="split_group")
    scenes = prepared.dataset.info.get("image_kind") == "field"
    thumbs = same_field.thumbnails(frame["path"]) if scenes and prepared.split.level != "image" else None
    splits.assert_no_leakage(frame, "split_group", images=thumbs)
    manifest = None
    if run is not None:
        manifest = run.relative(splits.save_manifest(frame, run.path(f"split_manifest_seed{seed}.csv")))
    counts = pd.crosstab(frame["label"], frame["split"])
    split = replace(prepared.split, seed=seed, manifest=manifest,
                    counts={name: {str(k): int(v) for k, v in counts[name].items()} for name in counts.columns})
    return replace(prepared, frame=frame, split=split)


def split_seeds(run, dataset, fractions, seeds, size: int) -> list[Prepared]:
    """The split of every seed in ``seeds`` at input ``size`` (the first keeps the run's ``split_manifest.csv``)."""
    if not seeds:
        raise ParameterError("split_seeds needs at least one split seed")
    first = experiment.prepare(run, dataset, fractions, seeds[0], size)
    return [first, *(resplit(run, first, seed) for seed in seeds[1:])]


def accuracy_table(runs: Runs) -> pd.DataFrame:
    """Test accuracy of every (split seed, training seed)."""
    rows = []
    for prepared, trained in runs:
        _, y_test = prepared.arrays("test")
        rows += [{"split_seed": prepared.split.seed, "train_seed": r.seed,
                  "accuracy": float(np.mean(r.probabilities.argmax(axis=1) == y_test))} for r in trained]
    return pd.DataFrame(rows)


def pooled_ci(runs: Runs, n_boot: int, seed: int = 0, alpha: float = 0.05) -> dict:
    """Bootstrap CI of the mean accuracy over the test images of all splits (each image's correctness averaged
    over training seeds; an image tested in two splits counts twice)."""
    correct = np.concatenate([np.mean([r.probabilities.argmax(axis=1) == prepared.arrays("test")[1]
                                       for r in trained], axis=0) for prepared, trained in runs])
    samples = correct[np.random.default_rng(seed).integers(0, len(correct), (n_boot, len(correct)))].mean(axis=1)
    low, high = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    return {"value": float(correct.mean()), "ci_low": float(low), "ci_high": float(high), "n_boot": n_boot,
            "n_test": int(len(correct))}


def save_predictions(run, name: str, runs: Runs) -> str:
    """``predictions/<name>.csv``: split seed, training seed, path, split, true and predicted class, probabilities."""
    parts = []
    for prepared, trained in runs:
        classes = prepared.dataset.classes
        test = prepared.frame[prepared.frame["split"] == "test"].reset_index(drop=True)
        _, y_test = prepared.arrays("test")
        for result in trained:
            part = pd.DataFrame({"split_seed": prepared.split.seed, "seed": result.seed, "path": test["path"],
                                 "split": "test", "true": [classes[i] for i in y_test],
                                 "predicted": [classes[i] for i in result.probabilities.argmax(axis=1)]})
            probabilities = pd.DataFrame(result.probabilities, columns=[f"p_{c}" for c in classes]).round(5)
            parts.append(pd.concat([part, probabilities], axis=1))
    return run.save_predictions(pd.concat(parts, ignore_index=True), name)


def selection(model: str, runs: Runs) -> record.Selection | None:
    """The selections made on every split, each entry prefixed with its split seed."""
    found = [(prepared.split.seed, experiment.selection_record(model, trained)) for prepared, trained in runs]
    found = [(seed, chosen) for seed, chosen in found if chosen]
    if not found:
        return None
    first = found[0][1]
    return record.Selection(model=model, what=first.what, on=first.on,
                            chosen=[f"split {seed}, {c}" for seed, s in found for c in s.chosen],
                            tried=[record.Tried(f"split {seed}, {t.configuration}", t.score)
                                   for seed, s in found for t in s.tried])


def pool(run, key: str, title: str, runs: Runs, n_boot: int, weights: record.Weights,
         paper_model: str | None = None, paper_value: float | None = None, variant: str | None = None) -> Assessed:
    """One row for a model trained on every split of ``runs`` (see the module doc).

    Figures and the per-class table are those of the first split; ``evaluation['over_seeds']``
    summarises every metric over all (split, training seed) runs, and
    ``evaluation['repeated_splits']`` gives both sources of spread.
    """
    first = experiment.assess(run, key, title, *runs[0], n_boot, weights, paper_model, paper_value, variant)
    evaluations = [first.evaluation] + [experiment.evaluate(p, t, n_boot) for p, t in runs[1:]]
    per_run = [s for e in evaluations for s in e["per_seed"]]
    over = {k: metrics.seed_summary([s[k] for s in per_run]) for k in first.evaluation["over_seeds"]}
    table = accuracy_table(runs)
    summary = crossval.repeated_split_summary(table)
    ci = pooled_ci(runs, n_boot)
    seeds = [record.SeedValue(seed=int(r.train_seed), value=r.accuracy, fold=int(r.split_seed),
                              train_images_per_s=s["training"].get("train_images_per_s"),
                              inference_images_per_s=s["training"].get("inference_images_per_s"),
                              chosen=(s["training"].get("selection") or {}).get("chosen"))
             for r, s in zip(table.itertuples(), per_run)]
    sd = summary["sd_across_splits"] if len(runs) > 1 else summary["sd_across_training_seeds"]
    row = replace(first.row, seeds=seeds, mean=summary["mean"], sd=sd, ci_low=ci["ci_low"], ci_high=ci["ci_high"],
                  n_test=ci["n_test"], ci_method=f"bootstrap over the {ci['n_test']} test images of {len(runs)} "
                                                  "split(s), each averaged over training seeds",
                  predictions=save_predictions(run, key.replace("+", "_and_"), runs),
                  metrics={k: record.Spread(v["mean"], v["sd"]) for k, v in over.items() if k != "accuracy"})
    evaluation = {**first.evaluation, "over_seeds": over, "accuracy_seed_mean_ci": ci, "repeated_splits": summary,
                  "accuracy_table": table.to_dict(orient="records")}
    return Assessed(row, evaluation, first.trained, first.prepared, selection(title, runs), dict(first.details))




def spread_table(assessed: list[Assessed]) -> pd.DataFrame:
    """Per pooled row: mean accuracy, sd across splits and across training seeds, and each split's mean."""
    rows = []
    for result in assessed:
        spread = result.evaluation["repeated_splits"]
        rows.append({"model": result.row.model, "weights": result.row.weights.label, "mean": spread["mean"],
                     "sd across splits": spread["sd_across_splits"],
                     "sd across training seeds": spread["sd_across_training_seeds"], "splits": spread["splits"],
                     "training seeds per split": spread["training_seeds_per_split"],
                     **{f"split {k}": v for k, v in spread["per_split_mean"].items()}})
    return pd.DataFrame(rows)
