"""The report site: the executed notebooks rendered by Sphinx + myst-nb behind a summary front page.

``build_site(reports)`` writes, per profile, a front page and one page per executed
notebook. The front page opens with one row per paper (its claim, this suite's verdict and
number with its 95% CI at the strictest split level run: :func:`papers_table`, from
:func:`hemasuite.comparison.headline_table`), then every model's row folded, the verdicts,
the notebook list, the comparison's headline figures and the folded protocol differences.
The Markdown pages of ``docs/`` are built into the same site (``<site>/docs/<page>.html``).
The committed ``cpu`` profile's front page is ``reports/index.html``; every other profile's
site stays in its own folder (``reports/smoke/index.html``), so smoke runs leave tracked
files alone. Notebook pages replace ``reports/<profile>/<stem>.html``. Notebooks are never
executed here; cleaned copies (machine paths stripped, TensorFlow noise dropped, long logs
folded, fractions shown as percentages) are written to a temporary Sphinx source folder.

After each build of the ``cpu`` site, headless Chromium retakes ``reports/site_screenshot.png``
(the front page at 1,400 x 1,800 px); without Chromium the build says so in one line, and
that the old screenshot is stale, and goes on.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd

from .. import config, rehearsal

# TensorFlow's C++ start-up lines (absl log prefix "I0000 00:00:... file.cc:NN]"), which
# TF_CPP_MIN_LOG_LEVEL does not silence because they are written before logging starts.
STARTUP_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\) is called.*"
                           r"|[IWE]\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\] .*)$")

PROFILES = ("cpu", "paper", "smoke")
FRONT_DOOR_PROFILE = "cpu"  # its site is reports/index.html, the committed front door
COMPARISON = "90_comparison"
DOCS = ("runner", "protocols", "data", "gpu", "errors", "architecture", "results")  # docs/<page>.md, in nav order
SCREENSHOT = "site_screenshot.png"
SCREENSHOT_SIZE = (1400, 1800)
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FOLD_LINES = 15
SLOWEST_STEPS = 3
FOLD_TABLE_ROWS = 30
NOT_PUBLISHED = {".buildinfo", "objects.inv", "_sources", ".doctrees"}
NOT_SERVED = shutil.ignore_patterns("*.map", "locales")  # source maps and gettext catalogues: never loaded
NOISE = re.compile("|".join([
    STARTUP_NOISE.pattern,
    r"^WARNING:tensorflow:.*retracing.*$",
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] (?:tensorflow|external)/.*$",
    r"^.*(?:oneDNN custom operations are on|This TensorFlow binary is optimized|To enable the following "
    r"instructions|Unable to register cu(?:DNN|FFT|BLAS) factory|cuda drivers on your machine).*$",
]))
EPOCH_LINE = re.compile(r"^(Epoch \d+/\d+)\n(?!Epoch )", re.MULTILINE)
UP_TO_REPORTS = re.compile(r"(?<![\w.~])/(?:[^\s'\"<>/]+/)*?(?=reports/)")
MACHINE_ROOTS = r"(?:tmp|home|work|root|Users|mnt|var|opt|srv|scratch|media|private|data)"
MACHINE_PATH = re.compile(rf"(?<![\w.~])/{MACHINE_ROOTS}(?:/[^\s'\"<>/]+)*/")  # a machine folder, shown as "…/"
ABSOLUTE_PATH = re.compile(rf"(?<![\w.~/:])/{MACHINE_ROOTS}(?![\w.-])")  # any path under a machine root: "/root/out"
FRACTION_HEADER = re.compile(r"(?:^|[\s_])(?:acc|accuracy|precision|pre|recall|sen|sensitivity|specificity|sp|f1|"
                             r"auc|ece|share|mean|sd|ci_low|ci_high|difference|this_run|this run|paper)"
                             r"(?:_macro)?(?: \(t\d\))?$", re.IGNORECASE)
FRACTION_ITEM = re.compile(r"'([\w ]+)': (-?\d\.\d+)")  # a printed dict's fraction, as in {'ci_low': 0.92}
MISSING = {"<NA>", "NaN", "nan", "None", "NaT"}
CSS = """
.bd-page-width { max-width: 100%; }
.bd-main .bd-content .bd-article-container { max-width: none; flex-grow: 1; }
.bd-article h1 { font-size: 2rem; }
.bd-article .cell_output pre { white-space: pre-wrap; }
.bd-article table { font-size: .85rem; }
.bd-article table td, .bd-article table th { padding: .15rem .45rem; }
.bd-article .cell_output img { max-width: 100%; height: auto; }
.figures img { max-width: 100%; }
table.summary td:nth-child(n+4), table.summary th:nth-child(n+4) { white-space: nowrap; }
table.papers td:nth-child(5), table.papers td:nth-child(6) { white-space: nowrap; }
"""


def site_root(reports: Path, profile: str) -> Path:
    """Folder whose ``index.html`` is ``profile``'s front page."""
    return reports if profile == FRONT_DOOR_PROFILE else reports / profile


def summary_table(reports: Path, profile: str) -> pd.DataFrame:
    """Paper vs this suite, one row per model, as display strings (empty when 90_comparison has not run).

    Reads ``reports/<profile>/results/90_comparison/tables/comparison.csv``.
    """
    path = Path(reports) / profile / "results" / COMPARISON / "tables" / "comparison.csv"
    columns = ["paper", "notebook", "model", "dataset", "split", "paper reported", "this suite", "95% CI", "status",
               "protocol differences", "leakage"]
    if not path.exists():
        return pd.DataFrame(columns=columns)
    table = pd.read_csv(path)
    needed = {"paper", "notebook", "model", "weights", "dataset", "paper_reported", "mean", "sd", "ci_low",
              "ci_high", "seeds", "status", "protocol_differences", "leakage"}
    if needed - set(table.columns):
        raise ValueError(f"{path}: columns {sorted(needed - set(table.columns))} are missing; "
                         "rerun notebook 90_comparison to rewrite it")

    def pct(value):
        return "–" if pd.isna(value) else f"{value:.2%}"

    from .. import comparison  # imported here: it loads TensorFlow, which the site itself does not need

    def suite(row):
        return "not run" if pd.isna(row["mean"]) else comparison.fmt_mean_sd(row)

    return pd.DataFrame({
        "paper": table["paper"], "notebook": table["notebook"],
        "model": table["model"] + " (" + table["weights"] + ")", "dataset": table["dataset"],
        "split": table["split_level"].fillna("–") if "split_level" in table else "–",
        "paper reported": table["paper_reported"].map(pct), "this suite": table.apply(suite, axis=1),
        "95% CI": [("–" if pd.isna(lo) else f"{pct(lo)} – {pct(hi)}") for lo, hi in zip(table["ci_low"],
                                                                                         table["ci_high"])],
        "status": table["status"], "protocol differences": table["protocol_differences"].fillna(""),
        "leakage": table["leakage"].fillna(""),
    })[columns]


def papers_table(reports: Path, profile: str) -> pd.DataFrame:
    """One row per paper, as display strings: its claim, this suite's verdict, and this suite's number with its 95% CI
    at the strictest split level it ran (empty when 90_comparison has not run).

    The rows are :func:`hemasuite.comparison.headline_table` of the comparison's
    ``tables/comparison.csv``: the committed record, never numbers written here.
    """
    path = Path(reports) / profile / "results" / COMPARISON / "tables" / "comparison.csv"
    columns = ["paper", "notebook", "paper claims", "verdict", "this suite", "95% CI", "split level",
               "model compared"]
    if not path.exists():
        return pd.DataFrame(columns=columns)
    from .. import comparison  # imported here: it loads TensorFlow, which the site itself does not need

    headline = comparison.headline_table(pd.read_csv(path))
    measured = headline["mean"].notna()
    return pd.DataFrame({
        "paper": headline["paper"] + " " + headline["citation"], "notebook": headline["notebook"],
        "paper claims": [f"{model}: {claim:.2%} ({dataset})" for model, claim, dataset
                          in zip(headline["claim_model"], headline["claim"], headline["paper_dataset"])],
        "verdict": headline["verdict"],
        "this suite": [comparison.fmt_mean_sd(row) if ok else "not run" for (_, row), ok
                       in zip(headline.iterrows(), measured)],
        "95% CI": [f"{lo:.2%} – {hi:.2%}" if ok else "–" for lo, hi, ok
                   in zip(headline["ci_low"], headline["ci_high"], measured)],
        "split level": headline["split_level"].where(measured, "–"),
        "model compared": [f"{model} ({weights}) on {dataset}" if ok else "–" for model, weights, dataset, ok
                           in zip(headline["model"], headline["weights"], headline["dataset"], measured)],
    })[columns]


# ---------------------------------------------------------------- cleaning the executed notebooks


def path_cleaner(reports: Path, runs: dict):
    """A function that removes this machine's absolute paths from text.

    Data folders become ``$LEUKEMIA_DATA_DIR``; anything under a reports folder keeps
    only its ``reports/...`` part (staging folders dropped); other paths under common
    machine roots keep their last component.
    """
    data_dirs = {os.environ.get(config.DATA_ENV)}
    data_dirs |= {(entry.get("last_good") or {}).get("parameters", {}).get("data_dir") for entry in runs.values()}
    data_dirs = sorted({str(Path(d)) for d in data_dirs if d} | {str(Path(d).resolve()) for d in data_dirs if d},
                       key=len, reverse=True)
    roots = sorted({str(config.repo_root()), str(Path(reports).resolve().parent)}, key=len, reverse=True)

    def clean(text: str) -> str:
        for data in data_dirs:
            text = text.replace(data, "$LEUKEMIA_DATA_DIR")
        text = UP_TO_REPORTS.sub("", text)
        for root in roots:
            text = text.replace(root + "/", "")
        text = re.sub(r"\.staging/", "", text)
        return MACHINE_PATH.sub("…/", text)

    return clean


def as_percent(text: str) -> str | None:
    """``'0.9447'`` as ``'94.47%'``; None for anything that is not a fraction with decimals."""
    try:
        value = float(text)
    except ValueError:
        return None
    return f"{value:.2%}" if "." in text and -1 <= value <= 1 else None


def tidy_html_tables(html: str) -> str:
    """DataFrame HTML with fraction columns as percentages and missing values as a dash."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for table in soup.find_all("table"):
        header_rows = table.find("thead").find_all("tr") if table.find("thead") else []
        headers = [c.get_text(strip=True) for c in header_rows[-1].find_all(["th", "td"])] if header_rows else []
        for row in (table.find("tbody") or table).find_all("tr"):
            for column, cell in enumerate(row.find_all(["th", "td"])):
                text = cell.get_text(strip=True)
                if text in MISSING:
                    cell.string = "–"
                elif column < len(headers) and FRACTION_HEADER.search(headers[column]) and as_percent(text):
                    cell.string = as_percent(text)
    return str(soup)


def percent_items(text: str) -> str:
    """Fractions of printed dicts (``'ci_low': 0.9249``) as percentages."""
    def replace(match):
        key, number = match.groups()
        shown = as_percent(number) if key == "value" or FRACTION_HEADER.search(key) else None
        return f"'{key}': {shown}" if shown else match.group(0)

    return FRACTION_ITEM.sub(replace, text)


def clean_stream(text: str, clean_paths) -> str:
    """A stream's text without TensorFlow noise, one line per epoch, percentages, no machine paths."""
    kept = "".join(line for line in text.splitlines(keepends=True) if not NOISE.match(line.rstrip("\n")))
    return percent_items(clean_paths(EPOCH_LINE.sub(r"\1: ", kept)))


def clean_output(output: dict, clean_paths) -> dict | None:
    """One output made readable; None when nothing is left of it."""
    if output["output_type"] == "stream":
        output["text"] = clean_stream(output["text"], clean_paths)
        return output if output["text"].strip() else None
    data = output.get("data", {})
    for mime in [m for m in data if m.startswith("text/")]:
        text = clean_paths(data[mime]).replace("<NA>", "–")
        data[mime] = tidy_html_tables(text) if mime == "text/html" else text
    return output


def merge_streams(outputs: list) -> list:
    """Consecutive stream outputs of one name joined into one (the kernel sends a line at a time)."""
    merged = []
    for output in outputs:
        if (merged and output["output_type"] == "stream" and merged[-1]["output_type"] == "stream"
                and merged[-1]["name"] == output["name"]):
            merged[-1]["text"] += output["text"]
        else:
            merged.append(output)
    return merged


def output_size(output) -> str | None:
    """'N-line log' or 'N-row table' for an output long enough to fold, else None."""
    if output["output_type"] == "stream":
        lines = output["text"].count("\n")
        return f"{lines}-line log" if lines > FOLD_LINES else None
    rows = output.get("data", {}).get("text/html", "").count("<tr")
    return f"{rows}-row table" if rows > FOLD_TABLE_ROWS else None


def split_long_outputs(cell) -> list:
    """The cell, split so that each long output (:func:`output_size`) sits in its own folded cell."""
    import nbformat

    pieces, current = [], []
    for output in cell.outputs:
        if output_size(output):
            pieces += [current, [output]]
            current = []
        else:
            current.append(output)
    pieces.append(current)
    cells = []
    for number, outputs in enumerate(pieces):
        if number and not outputs:
            continue
        part = nbformat.v4.new_code_cell(cell.source if number == 0 else "# outputs continued", outputs=outputs)
        part.metadata = dict(cell.metadata) if number == 0 else {"tags": ["remove-input"]}
        if number % 2:  # a long output
            part.metadata["tags"] = ["remove-input", "hide-output"]
            part.metadata["mystnb"] = {"code_prompt_show": f"Show the {output_size(outputs[0])}",
                                       "code_prompt_hide": "Hide it"}
        cells.append(part)
    return cells


def key_numbers_cell(summary: pd.DataFrame, stem: str):
    """A Markdown cell with the comparison rows of notebook ``stem`` (None if it has none)."""
    import nbformat

    rows = summary[summary["notebook"] == stem]
    if rows.empty:
        return None
    columns = ["model", "dataset", "split", "paper reported", "this suite", "95% CI"]
    return nbformat.v4.new_markdown_cell("```{admonition} Key numbers (from 90_comparison)\n:class: tip\n\n"
                                         + pipe_table(rows[columns]) + "\n```\n")


def slowest_steps_cell(run: dict, n: int = SLOWEST_STEPS):
    """A Markdown cell with the run's time and its ``n`` slowest cells (``cells`` of its runs.json record)."""
    import nbformat

    cells = sorted((c for c in run.get("cells") or [] if c.get("seconds") is not None), key=lambda c: -c["seconds"])
    if not cells or not run.get("seconds"):
        return None
    rows = pd.DataFrame([{"cell": c["cell"], "step": c["step"] or "(no heading)", "minutes": f"{c['seconds'] / 60:.1f}",
                          "share of the run": f"{c['seconds'] / run['seconds']:.0%}"} for c in cells[:n]])
    return nbformat.v4.new_markdown_cell(f"```{{admonition}} Slowest steps (this run took {run['seconds'] / 60:.1f} "
                                         f"min)\n:class: note\n\n{pipe_table(rows)}\n```\n")


def clean_notebook(path: Path, clean_paths, summary: pd.DataFrame, run: dict | None = None):
    """A readable copy of an executed notebook (code folded, outputs cleaned, long logs and tables folded), its key
    numbers and slowest steps (from ``run``, its runs.json record) under the title."""
    import nbformat

    notebook = nbformat.read(path, 4)
    cells = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            cells.append(cell)
            continue
        cell.metadata["tags"] = sorted(set(cell.metadata.get("tags", [])) | {"hide-input"})
        cell.source = clean_paths(cell.source)
        cell.outputs = [o for o in (clean_output(o, clean_paths) for o in merge_streams(cell.outputs)) if o]
        cells += split_long_outputs(cell)
    added = [c for c in (key_numbers_cell(summary, path.stem), slowest_steps_cell(run or {})) if c is not None]
    if added:  # right under the title line, above the notebook's introduction
        title = next((i for i, c in enumerate(cells) if c.cell_type == "markdown"), -1)
        heading, _, rest = cells[title].source.partition("\n") if title >= 0 else ("", "", "")
        if title >= 0 and heading.startswith("# ") and rest.strip():
            cells[title].source = heading
            cells.insert(title + 1, nbformat.v4.new_markdown_cell(rest.strip()))
        cells[title + 1:title + 1] = added
    notebook.cells = cells
    return notebook


# ---------------------------------------------------------------- the front page


def markdown_cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def pipe_table(frame: pd.DataFrame) -> str:
    """A DataFrame of display strings as a Markdown pipe table."""
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(markdown_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def notebook_title(notebook) -> str:
    """First Markdown heading of a notebook, or ''."""
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            match = re.search(r"^#+\s+(.+)$", cell.source, re.MULTILINE)
            if match:
                return match.group(1).strip()
    return ""


def status_table(runs: dict, pages: dict, titles: dict) -> pd.DataFrame:
    """Notebook list from ``runs.json``: link, status, run time, date, end of the error of a failed run."""
    rows = []
    for stem, entry in sorted(runs.items()):
        attempt = entry.get("last_attempt", {})
        link = f"[{stem}]({pages[stem]})" if stem in pages else stem
        status = attempt.get("status", "?")
        if status != "ok":
            error = (attempt.get("error") or "").strip().splitlines() or [""]
            status = f"**{status}**: {error[-1][-200:]}" + (" (page: last good run)" if stem in pages else "")
        seconds = attempt.get("seconds")
        rows.append({"notebook": link, "title": titles.get(stem, ""), "status": status,
                     "run time": "–" if seconds is None else f"{seconds / 60:.1f} min",
                     "date (UTC)": (attempt.get("started_utc") or "")[:16].replace("T", " ")})
    return pd.DataFrame(rows, columns=["notebook", "title", "status", "run time", "date (UTC)"])


def front_page(profile: str, summary: pd.DataFrame, status: pd.DataFrame, pages: dict, figures: list[Path],
               verdicts: dict[str, str] | None = None, titles: dict[str, str] | None = None,
               papers: pd.DataFrame | None = None, docs: list[str] | None = None) -> str:
    """MyST Markdown of the front page: ``papers`` (:func:`papers_table`) first, the full ``summary`` folded below
    it, then ``verdicts`` (notebook stem: Markdown), notebooks, figures, protocol differences; ``docs`` (document
    names) go into the navigation."""
    titles = titles or {}
    about = {"cpu": "the reduced-scale run on the real images (2 CPU cores)",
             "paper": "the papers' own settings on the real images",
             "smoke": "SYNTHETIC images, a quick check that everything runs; its numbers mean nothing",
             rehearsal.FOLDER: "the paper profile's code paths on a CPU with the work cut; its numbers mean nothing"}
    parts = [f"# Leukemia / lymphoma replication suite: profile `{profile}`\n",
             f"Profile `{profile}`: {about.get(profile, 'a custom profile')}. One row per paper: the accuracy it "
             "claims (its best reported number), this suite's verdict, and this suite's number with its 95% CI at "
             "the strictest split level it ran for that claim (`split level`: the unit kept on one side of every "
             "split, `case` and `field` being the strict ones; mean ± sd over the runs in brackets). The paper "
             "column links to the notebook's page; every model's row is folded below the table.\n"]
    if profile == rehearsal.FOLDER:
        parts.insert(1, f"```{{warning}}\n{rehearsal.BANNER}. Every page, table and figure below comes from a "
                        "few images, one epoch and one resample (results.json lists the cuts).\n```\n")
    if papers is not None and not papers.empty:
        shown = papers.copy()
        shown["paper"] = [f"[{p}]({pages[n]})" if n in pages else p for p, n in zip(shown["paper"], shown["notebook"])]
        parts.append("```{table}\n:class: papers\n\n" + pipe_table(shown.drop(columns=["notebook"])) + "```\n")
    if summary.empty:
        parts.append("No comparison yet for this profile: run notebook 90_comparison.\n")
    else:
        shown = summary.copy()
        shown["paper"] = [f"[{p}]({pages[n]})" if n in pages else p for p, n in zip(shown["paper"], shown["notebook"])]
        parts.append(f"::::{{dropdown}} Every model and split level ({len(shown)} rows)\n\n"
                     "```{table}\n:class: summary\n\n" + pipe_table(
                         shown[["paper", "model", "dataset", "split", "paper reported", "this suite", "95% CI"]])
                     + "```\n::::\n")
    if verdicts:
        parts.append("## Verdicts\n")
        parts += [f":::{{dropdown}} {titles.get(stem, stem)}\n:open:\n\n{text}\n:::\n"
                  for stem, text in verdicts.items()]
    parts += ["## Notebooks\n", pipe_table(status)]
    if figures:
        parts.append("## Headline figures\n")
        for figure in figures:
            caption = figure.stem.replace("_", " ").capitalize()
            parts.append(f"```{{figure}} {figure.as_posix()}\n:class: figures\n:alt: {caption}\n\n{caption}\n```\n")
    if not summary.empty:
        parts.append("## Protocol differences\n")
        for notebook, rows in summary.groupby("notebook", sort=False):
            first = rows.iloc[0]
            parts.append(f":::{{dropdown}} {first['paper']}: {notebook}\n\n**Protocol differences:** "
                         f"{first['protocol differences']}\n\n**Leakage:** "
                         f"{'; '.join(dict.fromkeys(rows['leakage']))}\n:::\n")
    parts.append("```{toctree}\n:hidden:\n:caption: Notebooks\n\n" + "\n".join(pages.values()) + "\n```\n")
    if docs:
        parts.append("```{toctree}\n:hidden:\n:caption: Documentation\n\n" + "\n".join(docs) + "\n```\n")
    return "\n".join(parts)


def copy_docs(source: Path, docs_dir: Path | None = None) -> list[str]:
    """The pages of ``docs/`` (:data:`DOCS` first, then any other) copied into the Sphinx source folder; their
    document names."""
    docs_dir = Path(docs_dir or config.repo_root() / "docs")
    found = {p.stem: p for p in sorted(docs_dir.glob("*.md"))} if docs_dir.is_dir() else {}
    names = [n for n in DOCS if n in found] + [n for n in found if n not in DOCS]
    if names:
        (source / "docs").mkdir(exist_ok=True)
    for name in names:
        shutil.copy2(found[name], source / "docs" / f"{name}.md")
    return [f"docs/{name}" for name in names]


# ---------------------------------------------------------------- Sphinx


def sphinx_conf(profile: str) -> dict:
    """Sphinx configuration of a profile's site (notebooks are rendered, never executed)."""
    return {
        "project": "Leukemia / lymphoma replication suite",
        "html_title": f"Reports ({profile})",
        "extensions": ["myst_nb", "sphinx_design"],
        "myst_enable_extensions": ["colon_fence"],
        "myst_heading_anchors": 3,  # docs/ pages link to each other's sections (page.md#section)
        "nb_execution_mode": "off",
        "nb_merge_streams": True,
        "nb_code_prompt_show": "Show {type}",
        "nb_code_prompt_hide": "Hide {type}",
        "html_theme": "sphinx_book_theme",
        "html_theme_options": {"use_download_button": False, "use_fullscreen_button": False,
                               "show_toc_level": 1, "navigation_with_keys": False,
                               "secondary_sidebar_items": {"**": ["page-toc"], "index": []}},
        "html_context": {"default_mode": "light"},
        "html_static_path": ["_static"],
        "html_css_files": ["site.css"],
        "html_copy_source": False,
        "html_show_sourcelink": False,
        "html_permalinks": False,
        "exclude_patterns": ["_build"],
        "suppress_warnings": ["mystnb.unknown_mime_type", "misc.highlighting_failure", "myst.header"],
    }


def write_sources(reports: Path, profile: str, source: Path) -> None:
    """The Sphinx source folder of one profile's site: conf.py, index.md, cleaned notebooks, figures."""
    import nbformat

    root, results = site_root(reports, profile), reports / profile / "results"
    runs_path = reports / profile / "runs.json"
    runs = json.loads(runs_path.read_text()) if runs_path.exists() else {}
    summary = summary_table(reports, profile)
    clean_paths = path_cleaner(reports, runs)
    prefix = (reports / profile).relative_to(root).as_posix()
    pages, titles = {}, {}
    for stem, entry in sorted(runs.items()):
        executed = reports / profile / f"{stem}.ipynb"
        if not (entry.get("last_good") and executed.exists()):
            continue
        docname = f"{prefix}/{stem}" if prefix != "." else stem
        notebook = clean_notebook(executed, clean_paths, summary, entry["last_good"])
        (source / docname).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, source / f"{docname}.ipynb")
        pages[stem], titles[stem] = f"{docname}.ipynb", notebook_title(notebook)
    figures = []
    for figure in sorted((results / COMPARISON / "figures").glob("*.png")):
        target = source / "_figures" / figure.name
        target.parent.mkdir(exist_ok=True)
        shutil.copy2(figure, target)
        figures.append(target.relative_to(source))
    from .. import comparison  # imported here: it loads TensorFlow, which the site itself does not need

    verdicts = {stem: result.verdict for stem, result in comparison.load(results).items() if result.verdict}
    docs = copy_docs(source)
    (source / "index.md").write_text(front_page(profile, summary, status_table(runs, pages, titles), pages, figures,
                                                {stem: clean_paths(text) for stem, text in verdicts.items()}, titles,
                                                papers_table(reports, profile), docs))
    (source / "_static").mkdir(exist_ok=True)
    (source / "_static" / "site.css").write_text(CSS)
    (source / "conf.py").write_text("".join(f"{key} = {value!r}\n" for key, value in sphinx_conf(profile).items()))


def publish(built: Path, root: Path) -> None:
    """Copy a Sphinx build into ``root``: asset folders replaced whole, pages file by file."""
    for item in built.iterdir():
        if item.name in NOT_PUBLISHED:
            continue
        target = root / item.name
        if item.is_dir() and item.name.startswith("_"):
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(item, target, ignore=NOT_SERVED)
        elif item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True)
        else:
            shutil.copy2(item, target)


def take_screenshot(page: Path, target: Path) -> str:
    """Headless Chromium's picture of ``page`` (:data:`SCREENSHOT_SIZE`) written to ``target``; one line saying what
    happened. Without Chromium, or when it fails, ``target`` is left as it was and the line says it is stale."""
    def stale(why: str) -> str:
        if not target.exists():
            return f"site: {why}: no {target.name} taken (none exists yet)"
        when = dt.datetime.fromtimestamp(target.stat().st_mtime, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        return f"site: {why}: {target.name} not retaken, the one of {when} is stale"

    browser = next((found for found in map(shutil.which, BROWSERS) if found), None)
    if browser is None:
        return stale(f"no Chromium on PATH ({', '.join(BROWSERS)}; apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="hemasuite-screenshot-") as folder:
        shot = Path(folder) / "shot.png"
        command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                   "--disable-background-networking", "--disable-component-update", "--disable-sync",
                   f"--user-data-dir={Path(folder) / 'profile'}", "--virtual-time-budget=5000",
                   f"--window-size={SCREENSHOT_SIZE[0]},{SCREENSHOT_SIZE[1]}", f"--screenshot={shot}",
                   Path(page).resolve().as_uri()]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=180)
        except (OSError, subprocess.TimeoutExpired) as error:
            return stale(f"Chromium ({browser}) failed: {error}")
        if not shot.is_file() or shot.read_bytes()[:8] != PNG_SIGNATURE:
            last = (done.stderr.strip().splitlines() or [""])[-1][:160]
            return stale(f"Chromium ({browser}) wrote no PNG (exit {done.returncode}{': ' + last if last else ''})")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(shot, target)
    return f"site: screenshot of the front page retaken: {target}"


def build_profile(reports: Path, profile: str) -> Path:
    """Build one profile's site into :func:`site_root`; returns its front page."""
    from sphinx.application import Sphinx

    root = site_root(reports, profile)
    with tempfile.TemporaryDirectory(prefix="hemasuite-site-") as folder:
        source, built = Path(folder) / "source", Path(folder) / "build" / "html"
        source.mkdir()
        write_sources(reports, profile, source)
        warnings = io.StringIO()
        app = Sphinx(str(source), str(source), str(built), str(Path(folder) / "build" / "doctrees"), "html",
                     status=None, warning=warnings, freshenv=True)
        app.build()
        if app.statuscode:
            raise RuntimeError(f"the report site of profile {profile!r} did not build:\n{warnings.getvalue()[-3000:]}")
        root.mkdir(parents=True, exist_ok=True)
        publish(built, root)
    if profile == FRONT_DOOR_PROFILE:
        print(take_screenshot(root / "index.html", root / SCREENSHOT), flush=True)
    return root / "index.html"


def build_site(reports: Path, profiles=PROFILES) -> Path:
    """Build the site of each of ``profiles`` that has runs; returns the first one's front page.

    The cpu profile's front page is ``reports/index.html``; the others' are
    ``reports/<profile>/index.html``.
    """
    reports = Path(reports)
    built = [build_profile(reports, p) for p in profiles if (reports / p / "runs.json").exists()]
    if not built:
        raise FileNotFoundError(f"no runs.json under {reports} for profiles {list(profiles)}; run the notebooks "
                                "first (make reports)")
    return built[0]


def main(argv: list[str] | None = None) -> int:
    """``python -m hemasuite.tools.site [--reports DIR] [PROFILE ...]``: rebuild the site from published runs."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("profiles", nargs="*", default=list(PROFILES))
    parser.add_argument("--reports", default=str(config.repo_root() / "reports"))
    args = parser.parse_args(argv)
    print(build_site(Path(args.reports), tuple(args.profiles)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
