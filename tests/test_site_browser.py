"""The built site in a real browser: search, filters, forest plots, sortable tables, accessibility.

Drives Debian's Chromium (``/usr/bin/chromium``, or ``KB_CHROMIUM_PATH``) with the ``playwright``
package; Playwright never downloads a browser here. The accessibility checks inject axe-core from
npm (``node_modules/axe-core/axe.min.js`` in the repository, or ``KB_AXE_PATH``).

Locally, a missing Chromium, playwright or axe-core skips these tests with the reason. In CI
(``CI=true``, or ``KB_REQUIRE_BROWSER=1`` as .ci/run sets) a missing piece fails them instead,
so CI cannot pass without running them.
"""
from __future__ import annotations

import functools
import json
import os
import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from kbcli import cli

from .conftest import ROOT, bundled_copy

try:  # the import itself is checked in the fixtures, so that CI can fail rather than skip
    from playwright.sync_api import expect, sync_playwright
except ImportError as exc:  # pragma: no cover - depends on the environment
    sync_playwright = None
    _PLAYWRIGHT_IMPORT_ERROR = str(exc)
else:
    _PLAYWRIGHT_IMPORT_ERROR = ""


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes"}


# CI=true (set by most CI services) or KB_REQUIRE_BROWSER=1 (set by .ci/run): never skip
IN_CI = _flag("CI") or _flag("KB_REQUIRE_BROWSER")
CHROMIUM = Path(os.environ.get("KB_CHROMIUM_PATH") or "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
AXE = Path(os.environ.get("KB_AXE_PATH") or ROOT / "node_modules" / "axe-core" / "axe.min.js")
MOUNT = "sub"  # the site is served under /sub/ as well as at /, to prove that its links are relative
TIMEOUT_MS = 10_000

FEDER = "Efficacy of Intravenous Ketamine for Treatment of Chronic Posttraumatic Stress Disorder: A Randomized Clinical Trial"
FEDER_PAGE = "studies/feder-2014.html"


def _missing(reason: str):
    """Skip locally; fail in CI, where every browser test must run."""
    if IN_CI:
        pytest.fail(f"{reason} (in CI, CI=true or KB_REQUIRE_BROWSER=1, this fails instead of "
                    "skipping: install it as .ci/run does)", pytrace=False)
    pytest.skip(reason)


# --- the site, served ------------------------------------------------------------------------

class SiteHandler(SimpleHTTPRequestHandler):
    """Serves the built site at / and again under /sub/."""

    def translate_path(self, path: str) -> str:
        if path.startswith(f"/{MOUNT}/"):
            path = path[len(MOUNT) + 1:]
        return super().translate_path(path)

    def log_message(self, format, *args):  # keep the test output quiet
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The bundled knowledge base, built once for this module."""
    tmp = tmp_path_factory.mktemp("browser")
    out = tmp / "site"
    kb = bundled_copy(tmp / "kb")  # a build keeps its state beside the records: never in the checkout
    result = CliRunner().invoke(cli, ["--kb", str(kb), "build", "-o", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (out / "pagefind" / "pagefind.js").is_file(), "the build made no Pagefind index"
    return out


@pytest.fixture(scope="module")
def server(site: Path):
    """``http://127.0.0.1:PORT/``: the site at the root, and the same site under /sub/."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(SiteHandler, directory=str(site)))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="site-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def base(server: str) -> str:
    """Where most tests open the site: under a sub-path, as on a project page of a static host."""
    return f"{server}{MOUNT}/"


# --- the browser -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    if sync_playwright is None:
        _missing(f"the playwright package is not installed ({_PLAYWRIGHT_IMPORT_ERROR}); "
                 "pip install -e '.[test]'")
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        _missing(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set KB_CHROMIUM_PATH)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


class Errors(list):
    """Console errors and uncaught exceptions of one page, as readable lines."""

    def text(self) -> str:
        return "\n".join(f"  - {e}" for e in self)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    errors = Errors()

    def on_console(msg):
        if msg.type == "error":
            loc = msg.location or {}
            errors.append(f"console error on {pg.url}: {msg.text} "
                          f"({loc.get('url', '')}:{loc.get('lineNumber', '')})")

    pg.on("console", on_console)
    pg.on("pageerror", lambda exc: errors.append(f"uncaught exception on {pg.url}: {exc}"))
    pg.errors = errors  # type: ignore[attr-defined]
    try:
        yield pg
    finally:
        context.close()


def assert_no_errors(pg) -> None:
    assert not pg.errors, "the browser reported errors:\n" + pg.errors.text()


@pytest.fixture(scope="module")
def axe_path() -> Path:
    if not AXE.is_file():
        _missing(f"axe-core not found at {AXE} (npm install --no-save axe-core@4 in the "
                 "repository, or set KB_AXE_PATH)")
    return AXE


# --- helpers ---------------------------------------------------------------------------------

def result_links(pg):
    return pg.locator("#search-results li > a")


def result_titles(pg) -> list[str]:
    return [t.strip() for t in result_links(pg).all_text_contents()]


def found_count(pg) -> int:
    text = pg.locator("#search-status").inner_text()
    m = re.match(r"(\d[\d,]*) stud(?:y|ies) found", text)
    assert m, f"unexpected search status: {text!r}"
    return int(m.group(1).replace(",", ""))


def settle(pg, action) -> None:
    """Do ``action`` (which starts a search) and wait until that search has answered.

    search.js writes the status only when a search finishes, so clearing it first tells a new
    answer apart from an old one even when the count stays the same.
    """
    pg.locator("#search-status").evaluate("el => { el.textContent = ''; }")
    action()
    expect(pg.locator("#search-status")).to_have_text(re.compile(r"found|No study"))


def search(pg, url: str, words: str) -> None:
    """Open the search page, type ``words`` and submit; wait until results show."""
    pg.goto(url + "search.html")
    pg.locator("#q").fill(words)
    pg.locator("#q").press("Enter")
    expect(pg.locator("#search-status")).to_have_text(re.compile(r"found"))
    expect(result_links(pg).first).to_be_visible()


def column_values(pg, table: str, column: int) -> list[str]:
    return pg.eval_on_selector_all(
        f"{table} tbody tr",
        "(rows, c) => rows.map(r => { const cell = r.cells[c];"
        " return cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent.trim(); })",
        column)


# --- search ----------------------------------------------------------------------------------

@pytest.mark.parametrize("mount", ["", f"{MOUNT}/"], ids=["root", "sub-path"])
def test_search_finds_feder_2014(page, server, mount):
    search(page, server + mount, "PTSD")
    assert FEDER in result_titles(page), result_titles(page)
    link = page.get_by_role("link", name=FEDER, exact=True)
    assert link.get_attribute("href").endswith(FEDER_PAGE)
    assert link.get_attribute("href").startswith(f"/{mount}"), "result link ignores the sub-path"
    # the query is kept in the address, so the result list can be bookmarked
    assert "q=PTSD" in page.url
    assert_no_errors(page)


def test_filter_narrows_results(page, base):
    search(page, base, "PTSD")
    before = found_count(page)
    settle(page, page.get_by_role("checkbox", name="Randomised crossover trial", exact=True).check)
    after = found_count(page)
    assert 0 < after < before, f"the design filter did not narrow {before} results (now {after})"
    assert FEDER in result_titles(page), "Feder 2014 is a crossover trial and should still show"
    assert "design=Randomised+crossover+trial" in page.url

    # a second filter of another kind narrows further (all of them must match)
    settle(page, page.get_by_role("checkbox", name="Post-traumatic stress disorder", exact=True).check)
    assert found_count(page) <= after
    assert FEDER in result_titles(page)

    # filters alone, with no words, still list studies
    page.locator("#q").fill("")
    settle(page, lambda: page.locator("#q").press("Enter"))
    assert found_count(page) >= 1
    assert FEDER in result_titles(page)
    assert_no_errors(page)


def test_filters_are_restored_from_the_address(page, base):
    page.goto(base + "search.html?q=PTSD&design=Randomised+crossover+trial")
    expect(page.get_by_role("checkbox", name="Randomised crossover trial", exact=True)).to_be_checked()
    expect(page.locator("#q")).to_have_value("PTSD")
    expect(page.get_by_role("link", name=FEDER, exact=True)).to_be_visible()
    assert_no_errors(page)


def test_clicking_a_result_opens_the_study(page, base):
    search(page, base, "PTSD")
    page.get_by_role("link", name=FEDER, exact=True).click()
    page.wait_for_url(re.compile(re.escape(base + FEDER_PAGE) + "$"))
    expect(page.locator("h1")).to_have_text(FEDER)
    assert_no_errors(page)


# --- condition pages -------------------------------------------------------------------------

def test_forest_plot_with_its_data_table(page, base):
    page.goto(base + "conditions/depression.html")
    figure = page.locator("figure.forest").first
    expect(figure).to_be_visible()
    svg = figure.locator("svg[role=img]:visible")  # the wide layout here; the phone one is display: none
    expect(svg).to_have_count(1)
    expect(svg).to_be_visible()
    box = svg.bounding_box()
    assert box and box["width"] > 200 and box["height"] > 50, f"forest plot too small: {box}"
    title = svg.locator("title")
    assert title.text_content().strip(), "the forest plot has no <title>"
    # the accessible name comes from the <title> (and <desc>) by aria-labelledby
    for ref in svg.get_attribute("aria-labelledby").split():
        expect(svg.locator(f"[id='{ref}']")).to_have_count(1)
    rows_drawn = svg.locator("g.fp-row").count()
    assert rows_drawn >= 1
    # the first plot (response at about 24 h against saline) holds one trial: no pooled diamond
    assert rows_drawn == 1
    expect(svg.locator("g.fp-pooled")).to_have_count(0)
    assert "Pooled" not in svg.text_content()
    # the same numbers as a table, right after the figure
    table = page.locator("figure.forest + .table-wrap table.data").first
    expect(table).to_be_visible()
    expect(table.locator("caption")).not_to_be_empty()
    assert table.locator("tbody tr").count() == rows_drawn, "table and plot list different studies"
    assert_no_errors(page)


def test_sorting_a_table(page, base):
    page.goto(base + "conditions/depression.html")
    table = "#studies-table"
    year = page.locator(f"{table} thead th").nth(1)
    button = year.get_by_role("button", name="Year")
    expect(button).to_be_visible()  # site.js turned the header into a button
    assert year.get_attribute("aria-sort") is None
    years_before = [int(y) for y in column_values(page, table, 1)]
    assert len(years_before) > 2

    button.click()
    expect(year).to_have_attribute("aria-sort", "ascending")
    ascending = [int(y) for y in column_values(page, table, 1)]
    assert ascending == sorted(years_before)
    button.click()
    expect(year).to_have_attribute("aria-sort", "descending")
    descending = [int(y) for y in column_values(page, table, 1)]
    assert descending == sorted(years_before, reverse=True)
    assert ascending != descending, "the rows did not move"

    # another column takes over aria-sort; numbers sort as numbers, not as text
    n_header = page.locator(f"{table} thead th").nth(3)
    n_header.get_by_role("button").click()
    expect(n_header).to_have_attribute("aria-sort", "ascending")
    assert year.get_attribute("aria-sort") is None
    ns = [float(v) for v in column_values(page, table, 3)]
    assert ns == sorted(ns)
    assert_no_errors(page)


# --- every page type: no console errors ------------------------------------------------------

PAGE_TYPES = {
    "home": "index.html",
    "condition": "conditions/depression.html",
    "outcome": "outcomes/symptom-change.html",
    "outcomes": "outcomes/index.html",
    "study": FEDER_PAGE,
    "retracted study": "studies/parsaik-2015.html",
    "search": "search.html?q=PTSD",
    "methods": "methods.html",
    "changes": "changes.html",
    "downloads": "downloads.html",
    "not found": "404.html",
    "comparison": "comparison.html",
}


def test_no_console_errors_on_any_page_type(page, base):
    failed: list[str] = []
    page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.status} {r.url}"))
    for kind, path in PAGE_TYPES.items():
        response = page.goto(base + path)
        assert response and response.ok, f"{kind}: {path} answered {response and response.status}"
        expect(page.locator("h1")).to_be_visible()
        if kind == "search":
            expect(result_links(page).first).to_be_visible()
        else:
            page.wait_for_load_state("load")
    assert not failed, "requests failed:\n" + "\n".join(failed)
    assert_no_errors(page)


# --- accessibility ---------------------------------------------------------------------------

AXE_PAGES = {
    "home": "index.html",
    "condition": "conditions/depression.html",
    "study": FEDER_PAGE,
    "retracted-study": "studies/parsaik-2015.html",
    "outcome-mixed-risk-of-bias-tools": "outcomes/remission.html",
    "search-with-results": "search.html?q=PTSD",
    "methods": "methods.html",
    "comparison": "comparison.html",
}


def describe_violations(violations: list[dict], path: str) -> str:
    lines = []
    for v in violations:
        lines.append(f"[{v['impact']}] {v['id']} on {path}: {v['help']} ({v['helpUrl']})")
        for node in v["nodes"][:10]:
            target = " ".join(json.dumps(t) if not isinstance(t, str) else t for t in node["target"])
            summary = (node.get("failureSummary") or "").replace("\n", " ")
            lines.append(f"    target {target}: {summary}")
        if len(v["nodes"]) > 10:
            lines.append(f"    … and {len(v['nodes']) - 10} more elements")
    return "\n".join(lines)


@pytest.mark.parametrize("path", list(AXE_PAGES.values()), ids=list(AXE_PAGES))
def test_accessibility_axe(page, base, axe_path, path):
    page.goto(base + path)
    if path.startswith("search.html"):
        expect(result_links(page).first).to_be_visible()
    page.add_script_tag(path=str(axe_path))
    results = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    violations = results["violations"]
    if violations:  # shown with -rA or on failure: the minor ones are worth knowing too
        print(describe_violations(violations, path))
    serious = [v for v in violations if v.get("impact") in {"serious", "critical"}]
    assert not serious, (
        f"axe-core {results.get('testEngine', {}).get('version', '')} found serious or critical "
        f"accessibility violations on {path} (fix them in templates/):\n" + describe_violations(serious, path))
    assert_no_errors(page)


# --- straight from disk ----------------------------------------------------------------------

def test_pages_work_from_disk(page, site):
    page.goto((site / "index.html").as_uri())
    expect(page.locator("h1")).to_be_visible()
    # the stylesheet loaded by its relative path (site.css moves the skip link off screen)
    assert page.locator("a.skip").evaluate("a => getComputedStyle(a).position") == "absolute"
    page.locator("main a[href='conditions/depression.html']").first.click()
    page.wait_for_url((site / "conditions" / "depression.html").as_uri())
    expect(page.locator("h1")).to_have_text("Depression")
    assert page.locator("a.skip").evaluate("a => getComputedStyle(a).position") == "absolute"
    expect(page.locator("figure.forest svg[role=img]").first).to_be_visible()
    # site.js (a classic script) runs from disk too: the headers are buttons
    expect(page.locator("#studies-table thead button").first).to_be_visible()
    # one level down, links back up still resolve
    page.locator("#studies-table a[href='../studies/feder-2014.html']").first.click()
    page.wait_for_url((site / "studies" / "feder-2014.html").as_uri())
    expect(page.locator("h1")).to_have_text(FEDER)
    page.get_by_role("navigation", name="Site").get_by_role("link", name="Methods").click()
    page.wait_for_url((site / "methods.html").as_uri())
    expect(page.locator("h1")).to_be_visible()
    assert_no_errors(page)


def test_search_from_disk_shows_the_fallback(page, site):
    page.goto((site / "search.html").as_uri())
    expect(page.locator("h1")).to_be_visible()
    # the list of all studies is there to browse instead
    expect(page.locator("#search-fallback")).to_be_visible()
    expect(page.locator("#search-fallback a[href='studies/feder-2014.html']")).to_have_count(1)
    # an error about loading the index may be logged; what matters is what the reader sees
    try:
        expect(page.get_by_text("Search is not available here")).to_be_visible(timeout=3_000)
        shown = True
    except AssertionError:
        shown = False
    if not shown:
        pytest.fail(
            "search.html opened from file:// does not show \"Search is not available here\".\n"
            "Chromium refuses module scripts from file:// (origin 'null'), so "
            "<script type=\"module\" src=\"assets/search.js\"> never runs and cannot print its "
            "fallback message. The browser said:\n" + (page.errors.text() or "  (nothing)"),
            pytrace=False)


# --- forest plots at phone width ---------------------------------------------------------------

_GEOMETRY = """svg => {
  const box = e => { const b = e.getBoundingClientRect(); return [b.left, b.top, b.right, b.bottom]; };
  return {
    cls: svg.getAttribute('class'), svg: box(svg), scale: svg.getBoundingClientRect().width / svg.viewBox.baseVal.width,
    texts: [...svg.querySelectorAll('text')].map(t => [t.textContent, box(t)]),
    diamond: svg.querySelector('g.fp-pooled polygon') ? box(svg.querySelector('g.fp-pooled polygon')) : null,
    rows: svg.querySelectorAll('g.fp-row').length,
    marks: [...svg.querySelectorAll('g.fp-row rect')].map(box),
    figure: [svg.closest('figure').scrollWidth, svg.closest('figure').clientWidth],
  };
}"""


def _overlap(a, b, tol=0.5) -> bool:
    return a[0] < b[2] - tol and b[0] < a[2] - tol and a[1] < b[3] - tol and b[1] < a[3] - tol


@pytest.mark.parametrize("width, layout", [(390, "forest-narrow"), (1280, "forest-wide")])
def test_forest_plots_fit_the_screen_and_no_text_touches_a_mark(browser, base, width, layout):
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    try:
        # every bundled plot holds one trial today: it draws no pooled diamond (one trial is not a pooled
        # result); the diamond's own layout is tested with two trials in test_site
        for cond in ("conditions/depression", "conditions/ocd", "outcomes/response"):
            pg.goto(base + f"{cond}.html")
            figures = pg.locator("figure.forest")
            assert figures.count() >= 1, cond
            assert pg.evaluate("document.documentElement.scrollWidth") <= width, f"{cond} overflows at {width} px"
            for i in range(figures.count()):
                svg = figures.nth(i).locator("svg[role=img]:visible")
                expect(svg).to_have_count(1)
                g = svg.evaluate(_GEOMETRY)
                where = f"{cond} plot {i + 1} at {width} px"
                assert g["cls"] == layout, where
                assert g["svg"][0] >= 0 and g["svg"][2] <= width, f"{where}: the plot leaves the screen {g['svg']}"
                assert g["figure"][0] <= g["figure"][1], f"{where}: the plot scrolls sideways {g['figure']}"
                assert 12 * g["scale"] >= 11, f"{where}: text drawn at {12 * g['scale']:.1f} px"
                assert (g["diamond"] is None) is (g["rows"] == 1), f"{where}: a diamond only when trials are pooled"
                for text, box in g["texts"]:
                    assert g["diamond"] is None or not _overlap(box, g["diamond"]), f"{where}: {text!r} overlaps the pooled diamond"
                    for mark in g["marks"]:
                        assert not _overlap(box, mark), f"{where}: {text!r} overlaps a study's square"
    finally:
        context.close()


# --- risk-of-bias pictures ---------------------------------------------------------------------

_ROB_GEOMETRY = """svg => {
  const box = e => { const b = e.getBoundingClientRect(); return [b.left, b.top, b.right, b.bottom]; };
  const texts = [...svg.querySelectorAll('text')];
  return {
    svg: box(svg), scale: svg.getBoundingClientRect().width / svg.viewBox.baseVal.width,
    name: svg.getAttribute('aria-labelledby').split(' ').map(id => svg.querySelector(`[id='${id}']`).textContent).join(' '),
    texts: texts.filter(t => !t.matches('.rb-sym, .rb-seg-text')).map(t => [t.textContent, box(t)]),
    symbols: [...svg.querySelectorAll('g.rb-mark')].map(g => [g.querySelector('circle') && box(g.querySelector('circle')),
                                                               g.querySelector('text') && box(g.querySelector('text'))]),
    circles: [...svg.querySelectorAll('circle')].map(box),
    segments: [...svg.querySelectorAll('rect.rb-seg')].map(r => [box(r), r.nextElementSibling && r.nextElementSibling.matches('.rb-seg-text') ? box(r.nextElementSibling) : null]),
    figure: [svg.closest('figure').scrollWidth, svg.closest('figure').clientWidth],
  };
}"""


def _inside(inner, outer, tol=0.5) -> bool:
    return inner[0] >= outer[0] - tol and inner[1] >= outer[1] - tol and inner[2] <= outer[2] + tol and inner[3] <= outer[3] + tol


@pytest.mark.parametrize("width", [390, 1280])
def test_risk_of_bias_pictures_fit_the_screen_and_no_text_touches_a_mark(browser, base, width):
    """Every risk-of-bias picture of the depression page and the remission page (one mixes RoB 1 and RoB 2):
    on screen without sideways scrolling, text at a readable size, no label on a mark, each symbol inside
    its circle, each percentage inside its bar segment, no two texts on top of each other."""
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    try:
        for path in ("conditions/depression", "outcomes/remission"):
            pg.goto(base + f"{path}.html")
            figures = pg.locator("section.rob figure.robplot")
            assert figures.count() >= 1, path
            assert figures.count() == pg.locator("figure.forest").count(), f"{path}: a forest plot without its risk of bias"
            assert pg.evaluate("document.documentElement.scrollWidth") <= width, f"{path} overflows at {width} px"
            for i in range(figures.count()):
                svg = figures.nth(i).locator("svg[role=img]")
                expect(svg).to_be_visible()
                g = svg.evaluate(_ROB_GEOMETRY)
                where = f"{path} picture {i + 1} at {width} px"
                assert g["name"].startswith("Risk of bias: "), where
                assert g["svg"][0] >= 0 and g["svg"][2] <= width, f"{where}: leaves the screen {g['svg']}"
                assert g["figure"][0] <= g["figure"][1], f"{where}: scrolls sideways {g['figure']}"
                assert 12 * g["scale"] >= 10.5, f"{where}: text drawn at {12 * g['scale']:.1f} px"
                for circle, symbol in g["symbols"]:
                    if circle and symbol:
                        assert _inside(symbol, circle, tol=1.5), f"{where}: a symbol leaves its circle"
                for seg, text in g["segments"]:
                    if text:
                        assert _inside(text, seg, tol=1), f"{where}: a share leaves its bar segment"
                for n, (text, box) in enumerate(g["texts"]):
                    for circle in g["circles"]:
                        assert not _overlap(box, circle), f"{where}: {text!r} overlaps a mark"
                    for other, obox in g["texts"][n + 1:]:
                        assert not _overlap(box, obox), f"{where}: {text!r} overlaps {other!r}"
    finally:
        context.close()


def test_suicidal_ideation_rows_read_as_the_benefit_they_are(page, base):
    """Issue 14's worst bug: 'Suicidal ideation: it was more frequent with ketamine' for patients whose
    ideation resolved or halved. In a real browser, each suicidal-ideation row of the condition page (and
    of the depression page) says its events improved (or that the data are compatible with no difference),
    names its window and comparator, and gives an NNTB wherever it gives an absolute effect."""
    for path in ("conditions/suicidal-ideation.html", "conditions/depression.html"):
        page.goto(base + path)
        rows = page.locator("section.sof[id*='-si-']")
        assert rows.count() >= 2, path
        seen = set()
        for i in range(rows.count()):
            row = rows.nth(i)
            heading = row.locator("h3").inner_text()
            sentence = row.locator("p.sof-sentence")
            if sentence.count() == 0:  # si-severity: only a review reports it, so nothing is pooled
                continue
            text = sentence.inner_text()
            expect(sentence).to_be_visible()
            # a good event never reads as harm: no "more frequent", no NNTH as the point estimate (an NNTH may
            # only close a CI that crosses no effect, as Altman writes it: "NNTB 2 to infinity to NNTH 147")
            assert "more frequent" not in text and not re.search(r"(?<!to )NNTH \d+ \(", text), text
            if "per 1000" in text:  # an absolute effect (counts): its number needed to treat is a benefit's
                assert "NNTB" in text, text
            comparator = next(c for c in ("active placebo (midazolam)", "inert placebo (saline)") if c in heading)
            assert comparator in text, text
            window = next(w for h, w in (("under 12 h", "In the first 12 h (during and just after the infusion), "),
                                         ("about 24 h", "At about 24 h (12 h to under 2 days), "),
                                         ("2 to 7 days", "At 2 to 7 days, "),
                                         ("after 7 days", "After 7 days (end of treatment and follow-up), "))
                          if h in heading)
            if "resolved" in heading:
                assert text.startswith(window + "suicidal ideation resolved in more patients with ketamine") or \
                    text.startswith(window + "the data are compatible with no difference in resolution of suicidal "
                                             "ideation"), text
                seen.add("resolution")
            if "halved" in heading:
                assert text.startswith("At about 24 h (12 h to under 2 days), suicidal ideation fell by at least half "
                                       "in more patients with ketamine"), text
                seen.add("response")
            assert re.search(r"one trial|\b(\d+|two|three|four) trials\b", row.inner_text()), row.inner_text()
        assert seen == {"resolution", "response"}, path


# --- what a search hit shows (issue 14, item 7) ------------------------------------------------

PARSAIK = "Efficacy of Ketamine in Bipolar Depression: Systematic Review and Meta-analysis"


def hit_of(pg, title: str):
    """The result item whose link is ``title``."""
    return pg.locator("#search-results > li").filter(has=pg.get_by_role("link", name=title, exact=True))


def test_search_hit_shows_the_retraction_design_n_and_year(page, base):
    search(page, base, "parsaik")
    hit = hit_of(page, PARSAIK)
    expect(hit).to_have_count(1)
    badge = hit.locator(".badge-retracted")
    expect(badge).to_have_text("Retracted")
    expect(badge).to_be_visible()
    facts = hit.locator(".hit-facts")
    expect(facts).to_contain_text("Meta-analysis · n = 125 · 2015")
    expect(hit.locator(".hit-finding")).to_contain_text("Key finding: RETRACTED (2018)")
    expect(hit.locator(".badge-draft")).to_have_count(0)
    # a study that is not retracted carries no badge, and its own facts
    search(page, base, "PTSD")
    feder = hit_of(page, FEDER)
    expect(feder.locator(".hit-facts")).to_have_text("Randomised crossover trial · n = 41 · 2014")
    expect(feder.locator(".badge")).to_have_count(0)
    expect(feder.locator(".hit-finding")).to_contain_text("A single ketamine infusion rapidly reduced chronic PTSD")
    assert_no_errors(page)


def test_search_hits_insert_record_text_as_text(page, tmp_path):
    """Metadata with markup in it (a key finding, a title) is shown as text, never parsed as HTML."""
    from .conftest import new_kb

    kb = new_kb(tmp_path / "kb", ("feder-2014",))
    record = kb / "studies" / "feder-2014.yaml"
    text = record.read_text(encoding="utf-8")
    finding = "<img src=x onerror=\"document.title='pwned'\"> & <b>bold</b>"
    text = re.sub(r"(?m)^key_finding:.*(\n  .*)*", "key_finding: '" + finding.replace("'", "''") + "'", text)
    record.write_text(text, encoding="utf-8")
    out = tmp_path / "site"
    result = CliRunner().invoke(cli, ["--kb", str(kb), "build", "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(SiteHandler, directory=str(out)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        search(page, f"http://127.0.0.1:{httpd.server_address[1]}/", "PTSD")
        finding_el = hit_of(page, FEDER).locator(".hit-finding")
        expect(finding_el).to_contain_text(finding)
        assert finding_el.locator("img, b").count() == 0
        assert page.title() != "pwned"
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert_no_errors(page)


def test_search_hit_of_a_draft_shows_the_draft_badge(page, tmp_path):
    """A preview that includes drafts marks each draft's search hit (imported, not yet extracted)."""
    from .conftest import FIXTURES, new_kb

    kb = new_kb(tmp_path / "kb", ("feder-2014",))
    runner = CliRunner()
    result = runner.invoke(cli, ["--kb", str(kb), "import", "--as-draft", str(FIXTURES / "imports" / "ris_asreview_drafts.ris")],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = tmp_path / "site"
    build = ["--kb", str(kb), "build", "-o", str(out)]
    if "--include-drafts" in runner.invoke(cli, ["build", "--help"]).output:  # drafts are left out otherwise
        build.append("--include-drafts")
    result = runner.invoke(cli, build, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(SiteHandler, directory=str(out)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        search(page, f"http://127.0.0.1:{httpd.server_address[1]}/", "EMDR")
        hit = page.locator("#search-results > li").first
        expect(hit.locator(".badge-draft")).to_have_text("Draft: imported, not yet extracted")
        expect(hit.locator(".hit-facts")).to_contain_text("2020")
        search(page, f"http://127.0.0.1:{httpd.server_address[1]}/", "PTSD")
        expect(hit_of(page, FEDER).locator(".badge-draft")).to_have_count(0)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert_no_errors(page)
