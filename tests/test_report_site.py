"""The report site in a real headless browser: Debian's Chromium driven by Playwright.

Two sites are checked at 1,400 x 900 px, each served over HTTP on localhost:

- the smoke site the real runner builds (00_data_validation and 90_comparison) in a
  temporary reports folder, which must leave the committed front door alone;
- the site built from a copy of the committed ``reports/cpu`` (real training logs,
  tables and figures), whose front page is saved as a screenshot: to
  ``$HEMASUITE_SITE_SCREENSHOT`` when set, else into pytest's temporary folder.

Every page must load without console errors and without a request leaving localhost,
with no horizontal scroll, no machine paths, no ``<NA>``, no TensorFlow noise, and long
logs folded. Playwright's own browser downloads are never used; without Chromium the
test skips.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import threading
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

from hemasuite import config
from hemasuite.tools import runner
from hemasuite.tools import site as report_site

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or next((p for p in ("/usr/bin/chromium",) if Path(p).exists()), None)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
VIEWPORT = {"width": 1400, "height": 900}
COMMITTED = config.repo_root() / "reports"
IMAGES = ("Array.from(document.images)"
          ".map(i => ({src: i.src.slice(0, 80), complete: i.complete, width: i.naturalWidth}))")
ANCHORS = ("Array.from(document.querySelectorAll('article a[href], nav.bd-docs-nav a[href]'))"
           ".map(a => ({href: a.href, raw: a.getAttribute('href')}))")
# Stream outputs with their line count and whether they sit in a closed <details>.
STREAMS = ("Array.from(document.querySelectorAll('div.output.stream pre')).map(p => ({"
           "lines: p.textContent.trimEnd().split('\\n').length, folded: !!p.closest('details:not([open])')}))")
# Cells of output tables under a column whose values must be percentages.
PERCENT_COLUMNS = ("Array.from(document.querySelectorAll('.cell_output table')).flatMap(t => {"
                   "const head = Array.from(t.querySelectorAll('thead tr:last-child th'))"
                   ".map(h => h.textContent.trim());"
                   "return Array.from(t.querySelectorAll('tbody tr')).flatMap(r => Array.from(r.children)"
                   ".map((c, i) => ({column: head[i], text: c.textContent.trim()})))"
                   ".filter(c => ['accuracy', 'mean', 'sd', 'ci_low', 'ci_high', 'ACC', 'SEN', 'share']"
                   ".includes(c.column));})")
NO_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"
NOISE = ("<NA>", "absl::", "I0000 ", "retracing", "oneDNN", ".staging", "/tmp/")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


def serve(folder: Path):
    """An HTTP server on localhost for ``folder``; returns (base url, server)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=folder))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/", server


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("Chromium not found (apt-get install chromium); the report-site browser test needs it")
    sync_api = pytest.importorskip("playwright.sync_api", reason="python package playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def smoke_site(browser, tmp_path_factory):
    """The real runner (smoke) for two quick notebooks, next to a stand-in of the committed front door."""
    reports = tmp_path_factory.mktemp("smoke") / "reports"
    (reports / "cpu").mkdir(parents=True)
    (reports / "index.html").write_text("committed front door")
    (reports / "cpu" / "runs.json").write_text("{}")
    before = snapshot(reports)
    records = runner.run_notebooks("smoke", ["00_data_validation", "90_comparison"], reports=reports)
    assert [r["status"] for r in records] == ["ok", "ok"], [r.get("error", "")[-500:] for r in records]
    base, server = serve(reports)
    try:
        yield base, reports, before
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def cpu_site(browser, tmp_path_factory):
    """The site built from a copy of the committed cpu reports."""
    if not (COMMITTED / "cpu" / "runs.json").exists():
        pytest.skip("no committed reports/cpu in this checkout")
    reports = tmp_path_factory.mktemp("cpu") / "reports"
    shutil.copytree(COMMITTED / "cpu", reports / "cpu")
    assert report_site.build_site(reports, ("cpu",)) == reports / "index.html"
    base, server = serve(reports)
    try:
        yield base, reports
    finally:
        server.shutdown()
        server.server_close()


def open_page(browser, url):
    """A 1,400 px wide page at ``url`` with console errors, page errors and non-local requests recorded."""
    page = browser.new_page(viewport=VIEWPORT)
    problems = []
    page.on("console", lambda message: message.type == "error" and problems.append(f"console: {message.text}"))
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("requestfailed", lambda request: problems.append(f"request failed: {request.url}"))

    def only_local(route):
        host = urlparse(route.request.url).hostname
        if route.request.url.startswith("data:") or host in ("127.0.0.1", "localhost"):
            return route.continue_()
        problems.append(f"external request: {route.request.url}")
        return route.abort()

    page.route("**/*", only_local)
    response = page.goto(url, wait_until="load")
    assert response is not None and response.status == 200, f"{url}: {response and response.status}"
    return page, problems


def check_images(page, url) -> int:
    images = page.evaluate(IMAGES)
    broken = [i for i in images if not i["complete"] or i["width"] <= 0]
    assert not broken, f"{url}: images that do not decode: {broken}"
    return len(images)


def check_links(page, url) -> None:
    for link in page.evaluate(ANCHORS):
        if link["raw"].startswith("#"):  # anchors must point at an element of the page
            target = link["raw"][1:]
            assert not target or page.evaluate("t => !!document.getElementById(decodeURIComponent(t))", target), link
        elif urlparse(link["href"]).hostname in ("127.0.0.1", "localhost"):
            with urllib.request.urlopen(link["href"].split("#")[0], timeout=10) as response:
                assert response.status == 200, (url, link)


def check_readable_page(page, url, reports: Path) -> None:
    """No horizontal scroll, machine paths, TensorFlow noise, raw fractions or unfolded long logs."""
    assert page.evaluate(NO_SCROLL), f"{url} scrolls sideways"
    text = page.evaluate("document.body.textContent")
    for bad in NOISE + (str(config.repo_root()), str(reports.parent)):
        assert bad not in text, f"{url} shows {bad!r}"
    long_open = [s for s in page.evaluate(STREAMS) if s["lines"] > report_site.FOLD_LINES and not s["folded"]]
    assert not long_open, f"{url}: long logs not folded: {long_open}"
    fractions = [c for c in page.evaluate(PERCENT_COLUMNS) if c["text"] != "–" and not c["text"].endswith("%")]
    assert not fractions, f"{url}: fractions not shown as percentages: {fractions[:5]}"
    check_images(page, url)
    check_links(page, url)


def test_smoke_run_leaves_tracked_files_alone(smoke_site):
    _, reports, before = smoke_site
    after = snapshot(reports)
    changed = sorted(p for p in after if before.get(p) != after[p])
    assert changed and all(p.startswith(("smoke/", ".staging/")) for p in changed), changed
    assert set(before) <= set(after)
    repo = config.repo_root()
    if shutil.which("git") and (repo / ".git").exists():
        ignored = subprocess.run(["git", "check-ignore", "-q", "reports/smoke/index.html"], cwd=repo)
        assert ignored.returncode == 0, "reports/smoke/ must stay untracked (.gitignore)"


def test_smoke_front_page_and_pages(browser, smoke_site, tmp_path):
    base, reports, _ = smoke_site
    page, problems = open_page(browser, base + "smoke/index.html")
    try:
        assert not problems, problems
        assert page.evaluate(NO_SCROLL)
        notebooks = page.locator("#notebooks table").inner_text()
        assert "00_data_validation" in notebooks and "90_comparison" in notebooks and notebooks.count("ok") >= 2
        assert "SYNTHETIC" in page.inner_text("article")
        page.screenshot(path=str(tmp_path / "front_page_smoke.png"))
        pages = [link["href"].split("#")[0] for link in page.evaluate(ANCHORS)
                 if re.fullmatch(r"/smoke/\d\d_\w+\.html", urlparse(link["href"]).path)]
    finally:
        page.close()
    assert {urlparse(p).path for p in pages} >= {"/smoke/00_data_validation.html", "/smoke/90_comparison.html"}
    for url in sorted(set(pages)):
        page, problems = open_page(browser, url)
        try:
            assert not problems, f"{url}: {problems}"
            check_readable_page(page, url, reports)
            assert check_images(page, url) >= 3
        finally:
            page.close()


def test_cpu_front_page(browser, cpu_site, tmp_path):
    base, reports = cpu_site
    page, problems = open_page(browser, base + "index.html")
    try:
        assert not problems, problems
        assert page.evaluate(NO_SCROLL), "the front page scrolls sideways at 1,400 px"
        papers = page.locator("table.papers")
        box = papers.bounding_box()
        assert box and box["y"] < VIEWPORT["height"] / 2, f"the papers' table starts at {box}"
        assert papers.locator("tbody tr").count() == 5 and "%" in papers.locator("tbody tr").first.inner_text()
        summary = page.locator("table.summary")
        assert page.evaluate("!document.querySelector('table.summary').closest('details').open")  # folded
        rows = summary.locator("tbody tr")
        expected = report_site.summary_table(reports, "cpu")
        assert rows.count() == len(expected) > 0
        for number in range(rows.count()):
            cells = rows.nth(number).locator("td")
            assert cells.nth(0).locator("a").count() == 1, f"row {number} does not link to its notebook"
            split, paper, suite = (cells.nth(k).text_content().strip() for k in (3, 4, 5))  # folded: not rendered
            assert split in ("image", "duplicate", "field", "case", "augmented", "missing"), split
            assert (paper.endswith("%") or paper == "–") and ("%" in suite or suite == "not run"), (paper, suite)
        nav = page.locator("nav.bd-docs-nav")
        nav_box = nav.bounding_box()
        assert nav_box and nav_box["y"] < VIEWPORT["height"] / 2 and nav.locator("a").count() >= 8
        figures = sorted((reports / "cpu" / "results" / "90_comparison" / "figures").glob("*.png"))
        shown = page.evaluate("Array.from(document.querySelectorAll('figure img')).map(i => i.alt)")
        assert len(shown) == len(figures) > 0
        verdicts = page.locator("#verdicts details")
        assert verdicts.count() >= 5 and any("case-level" in text for text in verdicts.all_inner_texts())
        details = page.locator("#protocol-differences details")
        assert details.count() >= 5 and page.evaluate(
            "Array.from(document.querySelectorAll('#protocol-differences details')).every(d => !d.open)")
        check_readable_page(page, base + "index.html", reports)
        target = Path(os.environ.get("HEMASUITE_SITE_SCREENSHOT") or tmp_path / "front_page_cpu.png")
        page.screenshot(path=str(target))
        assert target.stat().st_size > 10_000
    finally:
        page.close()


def test_cpu_notebook_pages(browser, cpu_site):
    base, reports = cpu_site
    stems = sorted(p.stem for p in (reports / "cpu").glob("*.ipynb"))
    summary = report_site.summary_table(reports, "cpu")
    folded_logs = 0
    for stem in stems:
        url = f"{base}cpu/{stem}.html"
        page, problems = open_page(browser, url)
        try:
            assert not problems, f"{url}: {problems}"
            check_readable_page(page, url, reports)
            folded_logs += sum(s["folded"] for s in page.evaluate(STREAMS))
            if stem in set(summary["notebook"]):
                key = page.locator(".admonition", has_text="Key numbers")
                box = key.bounding_box()
                assert box and box["y"] < VIEWPORT["height"], f"{url}: key numbers start at {box}"
        finally:
            page.close()
    assert folded_logs >= 4  # the training notebooks' per-epoch logs
