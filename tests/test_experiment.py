"""The shared train-and-evaluate workflow on synthetic data."""

import keras
import numpy as np
import pandas as pd
import pytest

from hemasuite import experiment, record, session, training
from hemasuite.errors import ParameterError
from hemasuite.papers import p4_sequential_cnn as p4
from hemasuite.splits import load_manifest


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, start_run):
    out = tmp_path_factory.mktemp("out")
    run = start_run("t_exp", profile="smoke", data_dir=None, output_dir=str(out), seed=0)
    data = session.dataset(run, "synthetic", per_class=12, size=32)
    return run, experiment.prepare(run, data, (0.6, 0.2, 0.2), seed=0, size=16)


def tiny_model(n_classes=4):
    return keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                             keras.layers.GlobalAveragePooling2D(),
                             keras.layers.Dense(n_classes, activation="softmax")])


def test_prepare_keeps_duplicates_on_one_side_and_saves_manifest(prepared):
    run, prep = prepared
    manifest = load_manifest(run.dir / prep.split.manifest)
    assert len(manifest) == len(prep.frame) == len(prep.images)
    assert (manifest.groupby("duplicate_group")["split"].nunique() == 1).all()
    assert prep.split.duplicates_merged >= 4 and prep.split.level == "duplicate"
    assert prep.split.manifest == f"splits/duplicate_seed{prep.split.seed}.csv"
    assert sum(prep.split.counts["test"].values()) == int((prep.frame["split"] == "test").sum())
    assert prep.images.shape[1:] == (16, 16, 3) and set(prep.frame["split"]) == {"train", "val", "test"}


def test_train_evaluate_report(prepared):
    run, prep = prepared
    runs = experiment.train_seeds(prep, tiny_model, [0, 1], epochs=1, batch_size=8,
                                  optimizer=training.adam(1e-2, 1), tta=True, verbose=0)
    assert [r.seed for r in runs] == [0, 1] and runs[0].model is not None and runs[1].model is None
    n_test = int((prep.frame["split"] == "test").sum())
    assert runs[0].probabilities.shape == (n_test, 4)
    evaluation = experiment.evaluate(prep, runs, n_boot=50)
    acc = evaluation["over_seeds"]["accuracy"]
    assert acc["n"] == 2 and 0 <= acc["mean"] <= 1
    ci = evaluation["accuracy_seed_mean_ci"]
    assert ci["ci_low"] <= ci["value"] <= ci["ci_high"]
    figures = experiment.report(run, "tiny", "tiny", prep, runs, evaluation)
    assert {"training_curves", "confusion_matrix", "roc", "reliability"} <= set(figures)
    assert all((run.dir / path).exists() for path in figures.values())
    assessed = experiment.assess(run, "tiny", "tiny", prep, runs, 50, record.Weights("random init"), "Sequential CNN",
                                 0.9)
    row = assessed.row
    assert len(row.seeds) == 2 and row.paper_value == 0.9 and row.mean == acc["mean"] and row.n_test == n_test
    assert row.train_images_per_s > 0 and row.inference_images_per_s > 0 and assessed.selection is None
    predictions = pd.read_csv(run.dir / row.predictions)
    assert len(predictions) == 2 * n_test and set(predictions["seed"]) == {0, 1}
    probabilities = predictions[[f"p_{c}" for c in prep.dataset.classes]].to_numpy()
    assert (predictions["predicted"] == [prep.dataset.classes[i] for i in probabilities.argmax(axis=1)]).all()
    correct = p4.per_class_correct(prep, runs[0])
    assert correct["total"].sum() == n_test


def test_restore_best_keeps_the_best_validation_epoch(prepared):
    _, prep = prepared
    runs = experiment.train_seeds(prep, tiny_model, [0], epochs=4, batch_size=8,
                                  optimizer=training.adam(5e-2, 4, "constant"), restore_best=True, verbose=0)
    history, losses = runs[0].history["val_accuracy"], runs[0].history["val_loss"]
    best = max(range(4), key=lambda epoch: (history[epoch], -losses[epoch]))  # ties: lowest validation loss
    assert runs[0].training["selection"]["chosen"] == f"epoch {best + 1}"
    assert list(runs[0].training["selection"]["tried"].values()) == history
    selection = experiment.selection_record("m", runs)
    assert selection.what == "epoch" and len(selection.tried) == 4 and selection.chosen == [f"epoch {best + 1}"]
    x_val, y_val = prep.arrays("val")
    kept = runs[0].model.predict(x_val.astype("float32") / 255, verbose=0).argmax(axis=1)
    assert np.isclose((kept == y_val).mean(), history[best], atol=1e-6)


def test_restore_best_without_validation_split_is_refused(prepared):
    _, prep = prepared
    no_val = experiment.Prepared(prep.dataset, prep.frame.assign(split=prep.frame["split"].replace("val", "train")),
                                 prep.images, prep.size, prep.protocol)
    with pytest.raises(ParameterError, match="validation split"):
        experiment.train_seeds(no_val, tiny_model, [0], epochs=1, batch_size=8,
                               optimizer=training.adam(1e-2, 1), restore_best=True, verbose=0)


def test_dihedral_predict_matches_plain_prediction_for_an_invariant_model(prepared):
    _, prep = prepared
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(4, activation="softmax")])
    x, y = prep.arrays("test")
    averaged, speed = experiment.dihedral_predict(model, x, y, 4)
    plain = model.predict(x.astype("float32") / 255, verbose=0)
    assert np.allclose(averaged, plain, atol=1e-5) and speed > 0


def test_seed_mean_ci_and_verdict():
    y = np.array([0, 1, 1, 0])
    perfect = np.eye(2)[y]
    wrong = np.eye(2)[1 - y]
    ci = experiment.seed_mean_accuracy_ci(y, [perfect, wrong], n_boot=100)
    assert ci["value"] == 0.5
    seeds = [record.SeedValue(s, 0.9) for s in range(3)]
    row = record.ModelRow("m", "m", record.Weights("random init"), seeds, 0.9, 0.01, 0.85, 0.95, 100)
    assert "missed by 5.00%" in experiment.target_verdict("m", row, 0.95)
    reached = experiment.target_verdict("m", row, 0.85)
    assert "reached" in reached and "over 3 seeds" in reached
    assert "SYNTHETIC" in experiment.target_verdict("m", row, 0.85, synthetic=True)


def test_knn_baseline_records_its_speed(prepared):
    run, prep = prepared
    knn = p4.knn_baseline(run, [prep], 0, 10)
    fitted = knn.trained[0].training
    assert fitted["k"] in (1, 3, 5, 7, 9, 15) and "probabilities" not in fitted
    assert knn.row.train_images_per_s > 0 and knn.row.inference_images_per_s > 0
    assert knn.selection.what == "k" and len(knn.selection.tried) == 6
    assert knn.selection.chosen == [f"split {prep.split.seed}, k={fitted['k']}"]


def test_unknown_baseline_is_rejected(prepared):
    run, prep = prepared
    with pytest.raises(Exception, match="unknown parameter"):
        p4.network_baselines(run, [prep], ["svm"], 16, 1, 8, 1e-3, None, 0, 10)


def test_deviations_lead_with_the_profile():
    lines = experiment.deviations("cpu", {"epochs": "3"})
    assert lines[0].startswith("profile cpu") and lines[1] == "epochs: 3"


def test_learning_evidence_flags_underfitting():
    fitted = experiment.TrainedSeed(0, np.zeros((1, 2)),
                                    {"accuracy": [0.5, 0.9, 0.99], "val_accuracy": [0.5, 0.8, 0.97]}, {})
    under = experiment.TrainedSeed(1, np.zeros((1, 2)),
                                   {"accuracy": [0.5, 0.7, 0.8], "val_accuracy": [0.4, 0.6, 0.7]}, {})
    assert "not fitted" not in experiment.learning_evidence([fitted])
    text = experiment.learning_evidence([fitted, under])
    assert "seed 1: final training accuracy 80.0%" in text and "not fitted its training data" in text


def test_best_validation_epoch_breaks_accuracy_ties_by_loss():
    class Model:
        def __init__(self):
            self.weights = None

        def get_weights(self):
            return self.weights

        def set_weights(self, weights):
            self.weights = weights

    selector, model = training.BestValidationEpoch(), Model()
    selector.set_model(model)
    for epoch, (accuracy, loss) in enumerate([(0.90, 0.3), (0.95, 0.2), (0.95, 0.1), (0.95, 0.15), (0.93, 0.05)]):
        model.weights = f"epoch {epoch}"
        selector.on_epoch_end(epoch, {"val_accuracy": accuracy, "val_loss": loss})
    selector.on_train_end()
    assert selector.best_epoch == 2 and model.weights == "epoch 2"
