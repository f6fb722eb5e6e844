"""The course website builds (``make site``) and every page works in a real browser.

Builds the site as ``make site`` does (scripts/build_site.py, ``mkdocs build --strict``) into a
temporary folder, then opens every page from disk (file://, as a reader who opens
build/site/index.html does) in headless Chromium through selenium and the system chromedriver:

- no console errors, and nothing loaded from outside the site (every resource is file: or data:);
- no broken internal link (the target file exists and so does its #anchor);
- every notebook page shows all the figures of its notebook (the student edition), each one decoded,
  and none of the solutions;
- every API page has an entry for every name in its package's ``__all__``;
- search finds a page from disk.

Screenshots of the home page and of one notebook page are kept as build artefacts in
build/screenshots/ (not committed). Without Chromium (Debian's ``chromium`` and ``chromium-driver``)
the browser tests skip and say so; ``.ci/run`` installs both when it runs as root and then sets
``TOOLKIT_REQUIRE_BROWSER=1``, which turns that skip into a failure.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import nbformat
import pytest

ROOT = Path(__file__).parents[1]
SCREENSHOTS = ROOT / "build" / "screenshots"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,900")
PAGE_TIMEOUT_S = 30

pytestmark = pytest.mark.slow


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> dict:
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))  # build_site imports editions from beside it
    try:
        build_site = _load("build_site")
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    return build_site.build(tmp_path_factory.mktemp("site"), notebooks)


def _browser_binaries() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    message = ("Chromium is not installed, so the site is not checked in a browser: "
               "apt-get install chromium chromium-driver (.ci/run does this when it runs as root)")
    if os.environ.get("TOOLKIT_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = _browser_binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="toolkit-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    session = webdriver.Chrome(service=Service(driver), options=options)
    session.set_page_load_timeout(PAGE_TIMEOUT_S)
    session.set_script_timeout(PAGE_TIMEOUT_S)
    yield session
    session.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _pages(site_dir: Path) -> list[Path]:
    """The site's pages, but 404.html: a web server shows it at any depth, so its links are absolute."""
    return sorted(path for path in site_dir.rglob("*.html")
                  if "assets" not in path.relative_to(site_dir).parts and path.name != "404.html")


# Waits for MathJax (notebook pages) to finish typesetting, then reports what the page loaded.
_SETTLE = """
const done = arguments[arguments.length - 1];
const report = () => done({
    resources: performance.getEntriesByType("resource").map(r => r.name),
    links: [...document.querySelectorAll("a[href]")].map(a => a.href),
    ids: [...document.querySelectorAll("[id]")].map(e => e.id),
    images: [...document.querySelectorAll("article img")].map(i => [i.complete, i.naturalWidth]),
});
if (window.MathJax && MathJax.startup) { MathJax.startup.promise.then(report); } else { report(); }
"""


@pytest.fixture(scope="module")
def visited(site: dict, browser) -> dict[Path, dict]:
    """Every page of the site, loaded once: what it loaded, linked, named, showed, and its console."""
    reports = {}
    browser.get_log("browser")  # start clean
    for page in _pages(site["site"]):
        browser.get(page.as_uri())
        report = browser.execute_async_script(_SETTLE)
        report["console"] = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        report["source"] = browser.page_source
        reports[page] = report
        relative = page.relative_to(site["site"]).as_posix()
        if relative in ("index.html", f"notebooks/{site['notebooks'][0]}.html"):
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(SCREENSHOTS / relative.replace("/", "_").replace(".html", ".png")))
    return reports


def test_site_has_every_section(site: dict):
    site_dir = site["site"]
    expected = (["index.html", "CONTRIBUTING.html", "datasets/index.html", "reference/index.html"]
                + [f"notebooks/{name}.html" for name in site["notebooks"]]
                + [f"reference/{name}.html" for name in site["modules"]]
                + [f"datasets/{p.stem}.html" for p in (ROOT / "datasets").glob("*.md") if p.name != "README.md"])
    assert [name for name in expected if not (site_dir / name).is_file()] == []
    assert {"toolkit.calibration", "toolkit.training", "toolkit.stats"} <= set(site["modules"])
    assert site["pages"] == len(_pages(site_dir))  # every page is in the search index


def test_pages_have_no_console_errors_and_load_nothing_from_outside(visited: dict):
    errors = {page.name: report["console"] for page, report in visited.items() if report["console"]}
    assert errors == {}
    outside = {page.name: [url for url in report["resources"] if urlparse(url).scheme not in ("file", "data")]
               for page, report in visited.items()}
    assert {name: urls for name, urls in outside.items() if urls} == {}


def test_no_broken_internal_links(visited: dict, site: dict):
    ids = {page.resolve(): set(report["ids"]) for page, report in visited.items()}
    broken, checked = [], 0
    for page, report in visited.items():
        for href in report["links"]:
            url, fragment = urldefrag(href)
            if urlparse(url).scheme != "file":
                continue  # a reference to a paper or a project: the site works without them
            target = Path(unquote(urlparse(url).path)).resolve()
            checked += 1
            if not target.exists():
                broken.append(f"{page.name}: {href} (no such file)")
            elif fragment and target in ids and unquote(fragment) not in ids[target]:
                broken.append(f"{page.name}: {href} (no such anchor)")
    assert checked > 10 * len(visited)  # navigation, table of contents, cross-references
    assert broken == []


def test_notebook_pages_show_every_figure_and_no_solution(visited: dict, site: dict):
    from test_editions import _html_text, _leaks  # the student edition's oracle

    editions = _load("editions")
    for name in site["notebooks"]:
        notebook = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        student = nbformat.reads(editions.notebook_exporter("student").from_notebook_node(notebook)[0],
                                 as_version=4)
        figures = sum(any(key.startswith("image/") for key in output.get("data", {}))
                      for cell in student.cells for output in cell.get("outputs", []))
        report = visited[site["site"] / "notebooks" / f"{name}.html"]
        assert figures > 0 and len(report["images"]) == figures, name
        assert all(complete and width > 0 for complete, width in report["images"]), f"{name}: an image not decoded"
        assert _leaks(notebook, _html_text(report["source"]), report["source"]) == [], f"{name} shows a solution"


def _defined_at(module, member: str) -> set[str]:
    """Where a name may be documented: a class or function's module and name, a constant's submodules."""
    import sys

    obj = getattr(module, member)
    if hasattr(obj, "__qualname__") and hasattr(obj, "__module__"):
        return {f"{obj.__module__}.{obj.__qualname__}"}
    return {f"{name}.{member}" for name, sub in list(sys.modules.items())
            if name.startswith(f"{module.__name__}.") and sub is not None and vars(sub).get(member) is obj}


def test_api_pages_document_every_public_name(visited: dict, site: dict):
    missing = {}
    for name in site["modules"]:
        module = importlib.import_module(name)
        public = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
        ids = set(visited[site["site"] / "reference" / f"{name}.html"]["ids"])
        # a name mkdocstrings cannot see statically (loaded on first use, or shadowed by a submodule)
        # is documented where it is defined
        absent = [member for member in public if f"{name}.{member}" not in ids
                  and not _defined_at(module, member) & ids]
        if absent:
            missing[name] = absent
    assert missing == {}


def test_search_works_from_disk(site: dict, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get((site["site"] / "index.html").as_uri())
    box = WebDriverWait(browser, PAGE_TIMEOUT_S).until(expected_conditions.element_to_be_clickable(
        (By.CSS_SELECTOR, "input[data-md-component='search-query']")))
    box.click()
    box.send_keys("TemperatureScaling")
    WebDriverWait(browser, PAGE_TIMEOUT_S).until(
        lambda b: b.find_elements(By.CSS_SELECTOR, ".md-search-result__item a"))
    targets = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, ".md-search-result__item a")]
    assert any("reference/toolkit.calibration.html" in href for href in targets)
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_lazy_exports_are_found_whatever_was_imported_before():
    """The API pages must not depend on what the process loaded earlier: toolkit.security loads its names
    on first use (and caches them in the package), which a static reader never sees."""
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        build_site = _load("build_site")
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    security = importlib.import_module("toolkit.security")
    for name in security.__all__:
        getattr(security, name)  # as earlier tests do: every lazy name is now cached in vars(security)
    unseen = build_site.unseen_exports("toolkit.security")
    assert set(unseen) == set(security.__all__)
    assert unseen["safe_load"] == "toolkit.security.checkpoints.safe_load"
