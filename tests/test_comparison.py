"""The comparison table, figures and README section, on small fake results dicts."""

import json
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from hemasuite import comparison  # noqa: E402
from hemasuite.results import Run  # noqa: E402


def evaluation(mean, low, high, n=3):
    return {"over_seeds": {"accuracy": {"mean": mean, "sd": 0.01, "n": n}},
            "accuracy_seed_mean_ci": {"value": mean, "ci_low": low, "ci_high": high}}


def p4_result(profile="cpu"):
    return {
        "notebook": "10_p4_sequential_cnn", "profile": profile, "started_utc": "2026-11-20T10:00:00+00:00",
        "environment": {"commit": "abc1234"}, "wall_time_s": 100.0,
        "protocol": {"dataset": "taleqani_all", "synthetic": False, "stand_in": None,
                     "split": {"method": "stratified, group-aware (exact and near duplicates share a group)"}},
        "deviations": ["profile cpu: real images at reduced scale", "input size: 64x64 (paper: not stated)"],
        "comparison": [
            {"model": "Sequential CNN", "weights": "random init", "paper": 0.9216, "mean": 0.85, "sd": 0.02,
             "ci_low": 0.82, "ci_high": 0.88, "seeds": 3},
            {"model": "knn", "weights": "none (no training)", "paper": 0.6542, "mean": 0.6, "sd": None,
             "ci_low": 0.55, "ci_high": 0.65, "seeds": 1},
            {"model": "densenet121", "weights": "random init", "paper": 0.7958, "mean": 0.7, "sd": None,
             "ci_low": 0.66, "ci_high": 0.74, "seeds": 1}]}


def p3_result():
    return {
        "notebook": "20_p3_densenet201_lymphoma", "profile": "cpu",
        "protocol": {"dataset": "iicbu_lymphoma", "synthetic": False,
                     "split": {"method": "group-aware, duplicates share a group"}},
        "deviations": ["profile cpu: reduced", "epochs: 3 (paper: 25)"],
        "comparison": [
            {"model": "DenseNet-201", "weights": "random init", "paper": 0.9956, "mean": 0.97, "sd": 0.01,
             "ci_low": 0.95, "ci_high": 0.99, "seeds": 3, "protocol": "paper protocol: augment, then split"},
            {"model": "DenseNet-201", "weights": "random init", "paper": 0.9956, "mean": 0.71, "sd": 0.03,
             "ci_low": 0.62, "ci_high": 0.80, "seeds": 3, "protocol": "clean: split, then augment train only"}],
        "leakage": {"augment_then_split": evaluation(0.97, 0.95, 0.99),
                    "split_then_augment": {"mean": 0.71, "ci_low": 0.62, "ci_high": 0.80},
                    "difference": 0.26, "notes": "same model, same epochs"}}


def p2_result():
    return {
        "notebook": "21_p2_cnmc_transfer", "profile": "smoke",
        "protocol": {"dataset": "synthetic_binary", "synthetic": True, "stand_in": "C-NMC 2019",
                     "split": {"method": "stratified, duplicates share a group"}},
        "deviations": ["profile smoke: SYNTHETIC"],
        "comparison": [{"model": "VGG-16", "weights": "random init", "paper": 0.9744, "mean": 0.5, "sd": 0.1,
                        "ci_low": 0.3, "ci_high": 0.7, "seeds": 2}]}


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def rows_of(table, paper):
    return table[table["paper"] == paper].reset_index(drop=True)


def test_missing_notebooks_show_every_reported_model_as_missing_and_invent_nothing():
    table = comparison.main_table({})
    assert list(table.columns) == comparison.COLUMNS
    assert set(table["paper"]) == {"P1", "P2", "P3", "P4", "P5"}
    assert table["mean"].isna().all() and table["ci_low"].isna().all() and (table["seeds"] == 0).all()
    assert table["status"].str.startswith("missing").all()
    assert (table["dataset"] == "missing").all() and (table["leakage"] == "missing").all()
    # the paper's own numbers are shown, flattened for P5's two families
    p5 = rows_of(table, "P5")
    assert len(p5) == 10 and "AlexNet (fine-tuning)" in set(p5["model"])
    assert math.isclose(p5.set_index("model").loc["Inception V3 (feature extraction + SVM)", "paper_reported"], 0.875)
    shown = comparison.display_table(table)
    assert (shown["this suite (mean ± sd)"] == "missing").all() and (shown["95% CI"] == "missing").all()


def test_present_notebook_rows_and_models_it_did_not_run():
    table = comparison.main_table({"10_p4_sequential_cnn": p4_result()})
    p4 = rows_of(table, "P4").set_index("model")
    assert list(p4.index) == ["Sequential CNN", "knn", "densenet121", "ResNet50"]  # densenet121 covers DenseNet
    assert p4.loc["Sequential CNN", "mean"] == 0.85 and p4.loc["Sequential CNN", "seeds"] == 3
    assert p4.loc["Sequential CNN", "status"] == "ok" and p4.loc["Sequential CNN", "dataset"] == "taleqani_all"
    assert p4.loc["Sequential CNN", "protocol_differences"] == "input size: 64x64 (paper: not stated)"
    assert p4.loc["Sequential CNN", "leakage"].startswith("duplicates kept on one side; image-level split")
    assert math.isnan(p4.loc["ResNet50", "mean"]) and p4.loc["ResNet50", "status"].startswith("missing: not run")
    assert math.isclose(p4.loc["ResNet50", "paper_reported"], 0.598)
    assert rows_of(table, "P1")["status"].iloc[0] == "missing: no results.json"
    shown = comparison.display_table(table).set_index("model")
    assert shown.loc["Sequential CNN", "this suite (mean ± sd)"] == "85.00% ± 2.00% (3 seeds)"
    assert shown.loc["Sequential CNN", "95% CI"] == "[82.00%, 88.00%]"
    assert shown.loc["knn", "this suite (mean ± sd)"] == "60.00% (sd n/a) (1 seed)"


def test_dataset_marks_and_leakage_status():
    found = {"20_p3_densenet201_lymphoma": p3_result(), "21_p2_cnmc_transfer": p2_result()}
    table = comparison.main_table(found)
    p3 = rows_of(table, "P3")
    assert p3.loc[0, "leakage"] == comparison.AUGMENT_BEFORE_SPLIT
    assert p3.loc[1, "leakage"].startswith("duplicates kept on one side")
    assert len(p3) == 2  # the reported DenseNet-201 is covered, no missing row
    assert p3.loc[0, "model"] == "DenseNet-201 [paper protocol: augment, then split]"
    p2 = rows_of(table, "P2").set_index("model")
    assert p2.loc["VGG-16", "dataset"] == "synthetic_binary [SYNTHETIC] [stand-in for C-NMC 2019]"
    assert set(p2.index) == {"VGG-16", "traditional CNN", "AlexNet"}
    subject = {"protocol": {"dataset": "cnmc2019", "split": {"method": "by subject"}}}
    assert comparison.split_leakage(subject) == "duplicates not controlled; subject-level split"
    assert comparison.leakage_status(subject, {"leakage": "custom status"}) == "custom status"
    assert comparison.split_leakage({"protocol": {"dataset": "x", "split": {"method": "m", "level": "subject"}}}) \
        .endswith("subject-level split")


def test_leakage_entries_from_dict_and_list():
    entries = comparison.leakage_entries({"20_p3_densenet201_lymphoma": p3_result(),
                                          "10_p4_sequential_cnn": p4_result()})
    assert list(entries["protocol"]) == ["augment_then_split", "split_then_augment"]
    assert list(entries["mean"]) == [0.97, 0.71] and list(entries["ci_high"]) == [0.99, 0.80]
    assert [comparison.is_leaky(p) for p in entries["protocol"]] == [True, False]
    as_list = {"20_p3_densenet201_lymphoma": {"leakage": {"rows": [
        {"protocol": "paper (augment, then split)", "accuracy": 0.9, "ci_low": 0.8, "ci_high": 0.95},
        {"protocol": "clean", "accuracy": {"mean": 0.7}}]}}}
    entries = comparison.leakage_entries(as_list)
    assert list(entries["mean"]) == [0.9, 0.7] and entries["ci_low"].isna().tolist() == [False, True]
    with_probe = {"20_p3_densenet201_lymphoma": {"leakage": {
        "protocols": [{"protocol": "paper protocol: augment, then split", "mean": 0.44}],
        "counts": {"paper protocol": {"test_images": 360}},
        "nearest_neighbour_probe": {"paper protocol": 0.997, "leakage-free": 0.613}}}}
    entries = comparison.leakage_entries(with_probe)
    assert list(entries["protocol"]) == ["paper protocol: augment, then split",
                                         "nearest neighbour probe: paper protocol",
                                         "nearest neighbour probe: leakage-free"]
    assert list(entries["mean"]) == [0.44, 0.997, 0.613]
    assert [comparison.is_leaky(p) for p in entries["protocol"]] == [True, True, False]
    assert comparison.leakage_entries({}).empty


def test_figures_with_and_without_data(tmp_path):
    found = {"10_p4_sequential_cnn": p4_result(), "20_p3_densenet201_lymphoma": p3_result()}
    table = comparison.main_table(found)
    for figure in (comparison.paper_vs_reproduced_figure(table, "t"), comparison.ranking_figure(table, "t"),
                   comparison.leakage_figure(comparison.leakage_entries(found), "t"),
                   comparison.ranking_figure(comparison.main_table({}), "t"),
                   comparison.leakage_figure(comparison.leakage_entries({}), "t")):
        target = tmp_path / f"{id(figure)}.png"
        figure.savefig(target)
        assert target.stat().st_size > 1000
    ranking = comparison.ranking_figure(table, "t")
    assert len(ranking.axes) == 2  # two datasets measured


def test_load_ignores_other_notebooks_and_sources_marks_missing(tmp_path):
    for stem, payload in {"10_p4_sequential_cnn": p4_result(), "00_data_validation": {"notebook": "00"},
                          "90_comparison": {"notebook": "90"}}.items():
        (tmp_path / stem).mkdir()
        (tmp_path / stem / "results.json").write_text(json.dumps(payload))
    found = comparison.load(tmp_path)
    assert list(found) == ["10_p4_sequential_cnn"]
    sources = comparison.sources(found, tmp_path).set_index("notebook")
    assert sources.loc["10_p4_sequential_cnn", "status"] == "found"
    assert sources.loc["10_p4_sequential_cnn", "commit"] == "abc1234"
    assert (sources.drop(index="10_p4_sequential_cnn")["status"] == "missing").all()
    assert comparison.load(tmp_path / "nowhere") == {}


def test_results_dir_maps_runner_staging_to_published(tmp_path):
    staging = tmp_path / "reports" / ".staging" / "cpu" / "results"
    assert comparison.results_dir(str(staging), "cpu") == (tmp_path / "reports" / "cpu" / "results").resolve()
    assert comparison.results_dir(str(tmp_path / "out"), "smoke") == (tmp_path / "out").resolve()


def test_save_writes_csv_and_markdown_and_readme_section(tmp_path):
    found = {"10_p4_sequential_cnn": p4_result()}
    table = comparison.main_table(found)
    reports = tmp_path / "reports"
    run = Run(comparison.STEM, reports / "cpu" / "results", {"profile": "cpu"})
    csv = comparison.save(run, table)
    run.finish()
    back = pd.read_csv(csv)
    assert len(back) == len(table) and back["mean"].notna().sum() == 3
    markdown = (csv.parent / "comparison.md").read_text()
    assert "| P4 | Sequential CNN |" in markdown and "85.00% ± 2.00% (3 seeds)" in markdown
    assert "missing" in markdown

    readme = tmp_path / "README.md"
    readme.write_text(f"# T\n\n## Results (cpu profile)\n\n{comparison.README_START}\nold\n"
                      f"{comparison.README_END}\n\n## After\n")
    assert comparison.main(["--update-readme", "--reports", str(reports), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old" not in text and "## After" in text and text.startswith("# T")
    section = text.split(comparison.README_START)[1].split(comparison.README_END)[0]
    assert "| P4 | Sequential CNN | random init | taleqani_all |" in section
    commit = json.loads((reports / "cpu" / "results" / comparison.STEM / "results.json").read_text())
    assert str(commit["environment"]["commit"] or "unknown") in section and commit["started_utc"] in section
    once = readme.read_text()
    comparison.update_readme(reports, readme)
    assert readme.read_text() == once  # idempotent

    empty = tmp_path / "other"
    assert "No `cpu` comparison yet" in comparison.readme_section(empty / "cpu" / "results" / comparison.STEM)
    bad = tmp_path / "BAD.md"
    bad.write_text("no markers")
    assert comparison.main(["--update-readme", "--reports", str(reports), "--readme", str(bad)]) == 1


def test_runner_updates_readme_only_after_a_successful_cpu_comparison(tmp_path, monkeypatch):
    import nbformat

    from hemasuite import runner

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    cells = [nbformat.v4.new_code_cell("profile = 'smoke'\ndata_dir = None\noutput_dir = None\nseed = 0"),
             nbformat.v4.new_code_cell("print('comparison', profile)")]
    cells[0].metadata["tags"] = ["parameters"]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, notebooks / "90_comparison.ipynb")
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text("smoke:\n  common: {seed: 0}\ncpu:\n  common: {seed: 0}\n")
    monkeypatch.setenv("HEMASUITE_PROFILES", str(profiles))
    calls = []
    monkeypatch.setattr(comparison, "update_readme", lambda reports: calls.append(reports) or tmp_path / "README.md")
    reports = tmp_path / "reports"
    assert runner.run("smoke", reports=reports, notebook_dir=notebooks)[0]["status"] == "ok"
    assert calls == []
    assert runner.run("cpu", reports=reports, notebook_dir=notebooks)[0]["status"] == "ok"
    assert calls == [reports]
