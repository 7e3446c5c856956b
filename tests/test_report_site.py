"""The report site in a real headless browser: Debian's Chromium driven by Playwright.

A small reports tree is built by the real runner (smoke profile: 00_data_validation and
90_comparison) in a temporary folder and served over HTTP on localhost. The index must
load without console errors, show the comparison table, and every link and image on it
and on each linked report must resolve / decode, with no request leaving localhost.
Playwright's own browser downloads are never used; without Chromium the test skips.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

from hemasuite.tools import runner

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or next((p for p in ("/usr/bin/chromium",) if Path(p).exists()), None)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
IMAGES = ("Array.from(document.images)"
          ".map(i => ({src: i.src.slice(0, 60), complete: i.complete, width: i.naturalWidth}))")
ANCHORS = ("Array.from(document.querySelectorAll('a[href]')).map(a => ({href: a.href, raw: a.getAttribute('href')}))")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


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
def site(browser, tmp_path_factory):
    """Run the real runner (smoke) for two quick notebooks and serve the reports folder on localhost."""
    reports = tmp_path_factory.mktemp("site") / "reports"
    records = runner.run_notebooks("smoke", ["00_data_validation", "90_comparison"], reports=reports)
    assert [r["status"] for r in records] == ["ok", "ok"], [r.get("error", "")[-500:] for r in records]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=reports))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", reports
    finally:
        server.shutdown()
        server.server_close()


def open_page(browser, url):
    """A page at ``url`` with its console errors, page errors and any request that leaves localhost recorded."""
    page = browser.new_page()
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


def check_images(page, url, expect_some: bool):
    images = page.evaluate(IMAGES)
    if expect_some:
        assert images, f"{url}: no <img> at all"
    broken = [i for i in images if not i["complete"] or i["width"] <= 0]
    assert not broken, f"{url}: images that do not decode: {broken}"
    return len(images)


def test_index_loads_without_errors_and_shows_status_and_comparison(browser, site):
    base, _ = site
    page, problems = open_page(browser, base + "index.html")
    try:
        assert not problems, problems
        text = page.inner_text("body")
        assert "Profile smoke" in text and "00_data_validation" in text and "90_comparison" in text
        tables = page.locator("table")
        assert tables.count() == 2  # the comparison table, then the notebook status table
        comparison = tables.nth(0).inner_text()
        assert "paper_reported" in comparison and "P4" in comparison and "missing" in comparison
        status = tables.nth(1).inner_text()
        assert status.count("ok") >= 2 and "run time" in status
        check_images(page, base + "index.html", expect_some=False)
    finally:
        page.close()


def test_every_link_resolves_and_every_image_decodes(browser, site):
    base, _ = site
    index, problems = open_page(browser, base + "index.html")
    links = index.evaluate(ANCHORS)
    index.close()
    assert not problems, problems
    reports = [link["href"] for link in links if link["href"].endswith(".html")]
    assert len(reports) == 2, links
    for link in links:
        with urllib.request.urlopen(link["href"].split("#")[0], timeout=10) as response:
            assert response.status == 200, link
    for url in reports:
        page, problems = open_page(browser, url)
        try:
            assert not problems, f"{url}: {problems}"
            assert check_images(page, url, expect_some=True) >= 3
            for link in page.evaluate(ANCHORS):
                if link["raw"].startswith("#"):  # heading anchors must point at an element of the page
                    target = link["raw"][1:]
                    assert page.evaluate("t => !!document.getElementById(decodeURIComponent(t))", target), link
                elif urlparse(link["href"]).hostname in ("127.0.0.1", "localhost"):
                    with urllib.request.urlopen(link["href"].split("#")[0], timeout=10) as response:
                        assert response.status == 200, link
        finally:
            page.close()
