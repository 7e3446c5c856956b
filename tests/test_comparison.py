"""The comparison table, figures and README section, over the real smoke-profile results of every replication
notebook (made once per session by the ``smoke_reports`` fixture)."""

import json
import math
import shutil

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from hemasuite import comparison, papers  # noqa: E402
from hemasuite.record import RecordError, Run, read  # noqa: E402
from hemasuite.tools import readme  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def results(smoke_reports):
    return smoke_reports / "smoke" / "results"


def rows_of(table, paper):
    return table[table["paper"] == paper].reset_index(drop=True)


def test_missing_notebooks_show_every_reported_model_as_missing_and_invent_nothing():
    table = comparison.main_table({})
    assert list(table.columns) == comparison.COLUMNS
    assert set(table["paper"]) == {"P1", "P2", "P3", "P4", "P5"}
    assert table["mean"].isna().all() and table["ci_low"].isna().all() and (table["seeds"] == 0).all()
    assert table["status"].str.startswith("missing").all()
    assert (table["dataset"] == "missing").all() and (table["leakage"] == "missing").all()
    assert len(table) == sum(len(module.REPORTED) for module in papers.REGISTRY.values())
    p5 = rows_of(table, "P5").set_index("model")
    assert len(p5) == 10 and math.isclose(p5.loc["Inception V3, feature extraction + SVM", "paper_reported"], 0.875)
    shown = comparison.display_table(table)
    assert (shown["this suite (mean ± sd)"] == "missing").all() and (shown["95% CI"] == "missing").all()


def test_table_from_the_smoke_results(results):
    found = comparison.load(results)  # 90's own results are not read; 00-02 are, but replicate no paper
    assert set(found) - set(papers.REGISTRY) == {"00_data_validation", "01_augmentation", "02_leakage_ladder"}
    found = {stem: result for stem, result in found.items() if stem in papers.REGISTRY}
    assert list(found) == list(papers.REGISTRY)
    table = comparison.main_table(found)
    for stem, result in found.items():
        part = table[table["notebook"] == stem]
        measured = part[part["status"] == "ok"]
        assert len(measured) == len(result.models)
        assert list(measured["mean"]) == [row.mean for row in result.models]
        assert list(measured["seeds"]) == [len(row.seeds) for row in result.models]
        assert (measured["dataset"].str.contains("SYNTHETIC")).all()
        # a reported model is missing exactly when no row of the notebook replicates it
        covered = {row.paper_model for row in result.models}
        missing = set(part.loc[part["status"].str.startswith("missing"), "model"])
        assert missing == set(papers.REGISTRY[stem].REPORTED) - covered
    p4 = rows_of(table, "P4").set_index("model")
    assert p4.loc["Sequential CNN", "status"] == "ok" and math.isclose(p4.loc["Sequential CNN", "paper_reported"],
                                                                        0.9216)
    assert p4.loc["ResNet50", "status"] == "missing: not run by this notebook in profile smoke"
    assert p4.loc["Sequential CNN", "protocol_differences"].startswith("input size:")  # the profile line is left out
    assert p4.loc["Sequential CNN", "leakage"] == \
        comparison.SPLIT_LEVELS["duplicate"]
    p3 = rows_of(table, "P3")
    leaky = p3[p3["model"].str.endswith("[P3's protocol: augment, then split]")]
    assert len(leaky) == 1 and (leaky["leakage"] == comparison.AUGMENT_BEFORE_SPLIT).all()
    assert (p3.loc[~p3.index.isin(leaky.index), "leakage"] != comparison.AUGMENT_BEFORE_SPLIT).all()
    assert "stand-in for C-NMC 2019" in rows_of(table, "P2").loc[0, "dataset"]


def test_sources_and_the_views_over_the_smoke_results(results):
    found = comparison.load(results)
    sources = comparison.sources(found, results).set_index("notebook")
    assert (sources["status"] == "found").all() and (sources["profile"] == "smoke").all()
    table = comparison.main_table(found)
    ladder = comparison.ladder_table(found)
    assert len(ladder) == sum(len(result.ladder) for result in found.values())
    for _, rungs in comparison.ladders(ladder):
        assert rungs["order"].is_monotonic_increasing
    floor = comparison.majority_table(table)
    for stem, result in ((s, r) for s, r in found.items() if s in papers.REGISTRY):
        majority = [row for row in result.models if comparison.is_majority(row)]
        assert (floor["notebook"] == stem).sum() == max(1, len(majority))
    pretraining = comparison.pretraining_table(table)
    imagenet = [row for result in found.values() for row in result.models
                if row.architecture and comparison.start_of(row.weights.label) == "ImageNet"]
    assert (pretraining["imagenet_model"] != comparison.MISSING).sum() == len(imagenet)
    p3 = found["20_p3_densenet201_lymphoma"]
    assert len(p3.leakage.measurements) == len(p3.ladder) == 8  # 3 rungs x 2 models + 2 rungs
    assert p3.leakage.difference.ci_low <= p3.leakage.difference.value <= p3.leakage.difference.ci_high
    assert p3.leakage.counts["case-level CV"]["test_images_with_case_in_train"] == 0
    assert p3.leakage.counts["P3's protocol: augment, then split"]["test_images_with_source_in_train"] > 0


def test_figures_with_and_without_data(results, tmp_path):
    found = comparison.load(results)
    table = comparison.main_table(found)
    for figure in (comparison.paper_vs_reproduced_figure(table, "t"), comparison.ranking_figure(table, "t"),
                   comparison.ladder_figure(comparison.ladder_table(found), "t"),
                   comparison.pretraining_figure(comparison.pretraining_table(table), "t"),
                   comparison.ranking_figure(comparison.main_table({}), "t")):
        target = tmp_path / f"{id(figure)}.png"
        figure.savefig(target)
        assert target.stat().st_size > 1000
    assert len(comparison.ranking_figure(table, "t").axes) == table.loc[table["mean"].notna(), "dataset"].nunique()


def test_the_comparison_notebook_read_the_published_results(smoke_reports, results):
    own = read(results / papers.COMPARISON / "results.json")
    assert own.details["results_dir"] == "reports/smoke/results"  # the published folder, machine part removed
    assert own.details["measured"] == int(pd.read_csv(results / papers.COMPARISON / own.tables["comparison"])
                                          ["mean"].notna().sum())
    assert set(own.tables) >= {"sources", "comparison", "majority", "ladder", "pretraining"}
    assert set(own.figures) == {"paper_vs_reproduced", "ranking_per_dataset", "leakage_ladder", "pretraining"}
    assert own.details["ladder_rungs"] == len(pd.read_csv(results / papers.COMPARISON / own.tables["ladder"]))


def test_a_results_file_in_another_format_is_an_error_naming_it(results, tmp_path):
    stem = "10_p4_sequential_cnn"
    shutil.copytree(results / stem, tmp_path / stem)
    old = json.loads((tmp_path / stem / "results.json").read_text())
    old["comparison"] = old.pop("models")
    (tmp_path / stem / "results.json").write_text(json.dumps(old))
    with pytest.raises(RecordError, match=rf"{stem}/results.json: unknown field\(s\) \['comparison'\]"):
        comparison.load(tmp_path)
    assert comparison.load(tmp_path / "nowhere") == {}


def test_the_comparisons_own_earlier_record_is_not_read(results, tmp_path):
    stem = "10_p4_sequential_cnn"
    shutil.copytree(results / stem, tmp_path / stem)
    (tmp_path / papers.COMPARISON).mkdir()
    (tmp_path / papers.COMPARISON / "results.json").write_text(json.dumps({"comparison": [], "summary": {}}))
    assert list(comparison.load(tmp_path)) == [stem]


def test_readme_section_from_the_comparison(results, tmp_path):
    reports = tmp_path / "reports"
    shutil.copytree(results / papers.COMPARISON, reports / "cpu" / "results" / papers.COMPARISON)
    target = tmp_path / "README.md"
    target.write_text(f"# T\n\n## Results (cpu profile)\n\n{readme.README_START}\nOLD\n{readme.README_END}\n"
                      f"\n## Ladder\n\n{readme.LADDER_START}\nOLD\n{readme.LADDER_END}\n\n## After\n")
    assert readme.main(["--reports", str(reports), "--readme", str(target)]) == 0
    text = target.read_text()
    assert "OLD" not in text and "## After" in text and text.startswith("# T")
    ladder = text.split(readme.LADDER_START)[1].split(readme.LADDER_END)[0]
    rungs = sum(len(result.ladder) for result in comparison.load(results).values())
    assert ("| dataset | model | rung |" in ladder) if rungs else ladder.strip().startswith("No notebook recorded")
    section = text.split(readme.README_START)[1].split(readme.README_END)[0]
    assert "| P4 | Sequential CNN | random init | synthetic [SYNTHETIC] |" in section
    meta = read(reports / "cpu" / "results" / papers.COMPARISON / "results.json")
    assert f"`{meta.environment.commit}`" in section and meta.started_utc in section
    assert f"{meta.details['missing']} of {meta.details['rows']} rows are `missing`" in section
    once = target.read_text()
    readme.update_readme(reports, target)
    assert target.read_text() == once  # idempotent
    assert "No `cpu` comparison yet" in readme.readme_section(tmp_path / "other" / "cpu" / "results" / "90")
    bad = tmp_path / "BAD.md"
    bad.write_text("no markers")
    assert readme.main(["--reports", str(reports), "--readme", str(bad)]) == 1


def test_saved_tables(results, tmp_path):
    table = comparison.main_table(comparison.load(results))
    run = Run(papers.COMPARISON, tmp_path, {"profile": "smoke"})
    back = pd.read_csv(comparison.save(run, "comparison", table, comparison.display_table(table)))
    assert len(back) == len(table) and back["mean"].notna().sum() == table["mean"].notna().sum()
    assert list(back.columns) == comparison.COLUMNS and run.tables["comparison"] == "tables/comparison.csv"
    assert "| P4 | Sequential CNN |" in (run.dir / "tables" / "comparison.md").read_text()
    shown = comparison.display_table(comparison.with_columns(back))
    assert shown.equals(comparison.display_table(table))  # the CSV gives the README the same table
