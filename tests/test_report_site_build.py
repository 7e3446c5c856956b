"""The report site's pieces without a browser: summary table, output cleaning, folding."""

import os
import re
import shutil
import sys

import nbformat
import pandas as pd
import pytest
from bs4 import BeautifulSoup

from hemasuite import config
from hemasuite.tools import site as report_site

ROW = {"paper": "P4", "notebook": "10_p4_sequential_cnn", "model": "Sequential CNN", "weights": "random init",
       "dataset": "taleqani_all", "metric": "accuracy", "paper_reported": 0.9216, "mean": 0.9447, "sd": 0.0082,
       "ci_low": 0.9249, "ci_high": 0.9645, "seeds": 3, "status": "ok", "protocol_differences": "input 64x64",
       "leakage": "duplicates kept on one side"}


def write_comparison(reports, rows):
    folder = reports / "cpu" / "results" / "90_comparison" / "tables"
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "comparison.csv", index=False)


def test_summary_table_shows_percentages_with_cis(tmp_path):
    missing = dict(ROW, model="knn", paper_reported=None, mean=None, sd=None, ci_low=None, ci_high=None,
                   status="missing")
    write_comparison(tmp_path, [ROW, missing])
    table = report_site.summary_table(tmp_path, "cpu")
    first, second = table.iloc[0], table.iloc[1]
    assert first["paper reported"] == "92.16%" and first["this suite"] == "94.47% ± 0.82% (3 seeds)"
    assert first["95% CI"] == "92.49% – 96.45%" and first["model"] == "Sequential CNN (random init)"
    assert second["this suite"] == "not run" and second["paper reported"] == "–" and second["95% CI"] == "–"
    assert report_site.summary_table(tmp_path, "paper").empty


def test_summary_table_names_missing_columns(tmp_path):
    write_comparison(tmp_path, [{k: v for k, v in ROW.items() if k != "ci_low"}])
    with pytest.raises(ValueError, match=r"ci_low.*rerun notebook 90_comparison"):
        report_site.summary_table(tmp_path, "cpu")


def test_streams_lose_noise_paths_and_get_one_line_per_epoch(tmp_path):
    reports = tmp_path / "reports"
    clean = report_site.path_cleaner(reports, {})
    text = ("I0000 00:00:1795323115.738485   15488 port.cc:153] oneDNN custom operations are on.\n"
            "WARNING:tensorflow:5 out of the last 9 calls to <function f at 0x7f> triggered tf.function retracing. "
            "Tracing is expensive\n"
            "Epoch 1/2\n36/36 - 7s - accuracy: 0.5178\n"
            f"reading results from {reports}/.staging/cpu/results\n"
            "CI: {'value': 0.9447, 'ci_low': 0.9249, 'n_boot': 1000}\n")
    assert report_site.clean_stream(text, clean) == ("Epoch 1/2: 36/36 - 7s - accuracy: 0.5178\n"
                                                     "reading results from reports/cpu/results\n"
                                                     "CI: {'value': 94.47%, 'ci_low': 92.49%, 'n_boot': 1000}\n")
    assert clean("/tmp/pytest-1/x/data.png and /home/someone/file.csv") == "…/data.png and …/file.csv"


def test_tables_show_fractions_as_percentages_and_no_na():
    frame = pd.DataFrame({"class": ["a", "macro avg"], "TP": pd.array([3, None], dtype="Int64"),
                          "ACC": [0.945355, 0.5], "epochs": [2.0, 0.5]})
    html = report_site.tidy_html_tables(frame.to_html())
    rows = [[c.get_text() for c in r.find_all(["th", "td"])] for r in BeautifulSoup(html, "html.parser").find_all("tr")]
    assert rows[1:] == [["0", "a", "3", "94.54%", "2.0"], ["1", "macro avg", "–", "50.00%", "0.5"]]


def test_long_outputs_move_to_folded_cells_in_order():
    cell = nbformat.v4.new_code_cell("train()")
    log = nbformat.v4.new_output("stream", name="stdout", text="line\n" * 40)
    table = nbformat.v4.new_output("display_data", data={"text/html": "<tr>" * 3, "text/plain": "t"})
    cell.outputs = [log, table]
    parts = report_site.split_long_outputs(cell)
    assert [p.source for p in parts][0] == "train()" and parts[0].outputs == []
    assert parts[1].outputs == [log] and "hide-output" in parts[1].metadata["tags"]
    assert parts[1].metadata["mystnb"]["code_prompt_show"] == "Show the 40-line log"
    assert parts[2].outputs == [table] and parts[2].metadata["tags"] == ["remove-input"]


COMMITTED = config.repo_root() / "reports" / "cpu" / "results" / "90_comparison" / "tables" / "comparison.csv"
FAKE_CHROMIUM = """#!{python}
import sys
shot = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--screenshot="))
open(shot, "wb").write({png!r})
"""


def test_claims_table_first_full_table_folded_docs_built_and_screenshot_retaken(tmp_path, monkeypatch, capsys):
    """A cpu site built from the committed comparison: one row per paper first (claim, verdict, CI), every model's
    row folded below it, the docs pages in the site, and the screenshot retaken by the (fake) Chromium on PATH."""
    if not COMMITTED.exists():
        pytest.skip("no committed cpu comparison in this checkout")
    reports = tmp_path / "reports"
    (reports / "cpu" / "results" / "90_comparison" / "tables").mkdir(parents=True)
    shutil.copy2(COMMITTED, reports / "cpu" / "results" / "90_comparison" / "tables" / "comparison.csv")
    (reports / "cpu" / "runs.json").write_text("{}")
    png = report_site.PNG_SIGNATURE + b"fake screenshot"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "chromium"
    fake.write_text(FAKE_CHROMIUM.format(python=sys.executable, png=png))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    (reports / report_site.SCREENSHOT).write_bytes(b"old")

    assert report_site.build_site(reports, ("cpu",)) == reports / "index.html"

    assert (reports / report_site.SCREENSHOT).read_bytes() == png
    assert "screenshot of the front page retaken" in capsys.readouterr().out
    soup = BeautifulSoup((reports / "index.html").read_text(), "html.parser")
    article = soup.find("article")
    first = article.find("table")
    assert "papers" in first["class"]
    headers = [th.get_text(strip=True) for th in first.find("thead").find_all("th")]
    assert headers[:5] == ["paper", "paper claims", "verdict", "this suite", "95% CI"]
    rows = [[td.get_text(" ", strip=True) for td in tr.find_all("td")] for tr in first.find("tbody").find_all("tr")]
    assert [row[0].split()[0] for row in rows] == ["P4", "P1", "P3", "P2", "P5"]  # one row per paper, suite order
    for row in rows:
        assert re.search(r"\d+\.\d\d%", row[1]), row  # the paper's claim, from its module
        assert row[2].startswith(("consistent", "reproduced", "not reproduced")), row
        assert re.fullmatch(r"\d+\.\d\d% – \d+\.\d\d%", row[4]), row
        assert row[5] in ("field", "case"), row  # the strictest level run for the claim
    p3 = next(row for row in rows if row[0].startswith("P3"))
    assert p3[5] == "case" and p3[2].startswith("not reproduced") and p3[4] == "45.35% – 55.71%"
    folded = soup.find("table", class_="summary")
    assert folded is not None and folded.find_parent("details") is not None and not folded.find_parent(
        "details").has_attr("open")
    for page in report_site.DOCS:
        assert (reports / "docs" / f"{page}.html").exists(), page
    assert "docs/gpu.html" in (reports / "index.html").read_text()


def test_without_chromium_the_screenshot_stays_and_is_called_stale(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    target = tmp_path / report_site.SCREENSHOT
    target.write_bytes(b"old")
    line = report_site.take_screenshot(tmp_path / "index.html", target)
    assert "\n" not in line and "no Chromium" in line and "stale" in line and target.read_bytes() == b"old"


def test_a_notebook_page_shows_its_slowest_steps():
    from hemasuite.tools import site

    run = {"seconds": 600.0, "cells": [{"cell": 1, "step": "Setup", "seconds": 6.0},
                                       {"cell": 2, "step": "Split", "seconds": 120.0},
                                       {"cell": 3, "step": "Train", "seconds": 420.0},
                                       {"cell": 4, "step": "", "seconds": 30.0}]}
    text = site.slowest_steps_cell(run).source
    assert "this run took 10.0 min" in text
    assert text.index("Train") < text.index("Split") < text.index("(no heading)") and "Setup" not in text
    assert "70%" in text and site.slowest_steps_cell({"seconds": 5.0}) is None
