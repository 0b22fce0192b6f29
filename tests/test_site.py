"""kb build and kb serve: pages, links, escaping, determinism, incremental builds, downloads, feed.

Golden pages: tests/golden/*.html are pages of the bundled records built outside git with a fixed
SOURCE_DATE_EPOCH. After an intended change to templates or records, regenerate them with

    KB_REGEN_GOLDEN=1 python -m pytest tests/test_site.py -k golden
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import threading
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from kb import site as site_mod
from kb.config import open_kb
from kb.errors import BadRequest
from kb.site import analyses as site_analyses
from kb.site import build_site
from kb.site import pages as site_pages
from kb.site import studies as site_studies

from .conftest import ROOT, bundled_copy, invoke
from .test_synthesis import binary, make_kb, trial

GOLDEN = Path(__file__).resolve().parent / "golden"
EPOCH = "1790000000"  # 2026-09-21


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("site")
    root = bundled_copy(tmp / "ketamine")
    os.environ["SOURCE_DATE_EPOCH"] = EPOCH
    try:
        build_site(open_kb(root), tmp / "out", search=False)
    finally:
        del os.environ["SOURCE_DATE_EPOCH"]
    return tmp / "out"


# -- a link checker over the whole site ----------------------------------------------------


class _Page(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.scripts: list[str] = []
        self.headings: list[int] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and "name" in a:
            self.ids.add(a["name"])
        for attr in ("href", "src"):
            if a.get(attr):
                self.links.append(a[attr])
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self.headings.append(int(tag[1]))
        if tag == "script":
            self._in_script = True

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)


def parse(path: Path) -> _Page:
    p = _Page()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def check_links(out: Path) -> list[str]:
    """Every internal link and anchor of every page resolves; returns the broken ones."""
    pages = {p: parse(p) for p in out.rglob("*.html") if "pagefind" not in p.parts}
    broken = []
    for page, parsed in pages.items():
        for link in parsed.links:
            if link.startswith(("http://", "https://", "mailto:", "data:")):
                continue
            target, _, anchor = link.partition("#")
            dest = (page.parent / target).resolve() if target else page
            if "?" in target:
                dest = (page.parent / target.split("?")[0]).resolve()
            if not dest.exists():
                broken.append(f"{page.relative_to(out)}: {link} (no such file)")
                continue
            if anchor and dest.suffix == ".html":
                ids = pages[dest].ids if dest in pages else parse(dest).ids
                if anchor not in ids:
                    broken.append(f"{page.relative_to(out)}: {link} (no such anchor)")
    return broken


def test_every_internal_link_and_anchor_resolves(built):
    assert len(list((built / "studies").glob("*.html"))) == len(list((ROOT / "studies").glob("*.yaml")))
    assert check_links(built) == []


def test_link_checker_finds_a_broken_link(tmp_path):
    """The checker can fail: a page with a dead link and a dead anchor."""
    (tmp_path / "a.html").write_text('<a href="b.html">x</a><a href="a.html#nope">y</a><p id="here"></p>'
                                     '<a href="#here">z</a>')
    assert check_links(tmp_path) == ["a.html: b.html (no such file)", "a.html: a.html#nope (no such anchor)"]


def test_headings_in_order_and_one_h1(built):
    for page in ["index.html", "conditions/depression.html", "studies/feder-2014.html", "studies/parsaik-2015.html",
                 "search.html", "methods.html", "changes.html", "outcomes/response.html", "downloads.html"]:
        levels = parse(built / page).headings
        assert levels.count(1) == 1, page
        for a, b in zip(levels, levels[1:]):
            assert b <= a + 1, f"{page}: h{a} followed by h{b}"


def test_pages_carry_no_external_resources(built):
    for page in built.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        for attr in ("src=\"http", "href=\"//", "src=\"//", "@import"):
            assert attr not in text, f"{page}: {attr}"
        assert '<link rel="stylesheet" href="http' not in text


# -- what a clinician sees ---------------------------------------------------------------


def test_condition_page_summary_of_findings(built):
    html = (built / "conditions/depression.html").read_text(encoding="utf-8")
    # response as kb meta computes it: one section per time window and comparator class, never pooled
    # together, each with its study one click away. By hand: Lii 2023 12/20 vs 10/20 saline (day 1) and
    # 9/20 vs 10/20 (day 3); Hu 2016 12/13 vs 8/14 escitalopram plus saline (4 weeks); Su 2023 15/42 vs 5/42
    # midazolam (day 2-3); RR = (a/n1)/(c/n2), 95% CI exp(log RR +- 1.96 sqrt(1/a - 1/n1 + 1/c - 1/n2)).
    # Murrough 2013's 24-h counts rest on a press release and are kept out: no 24-h midazolam section.
    sections = {s.split('"', 1)[0]: s.split("</section>", 1)[0] for s in html.split('<section class="sof" id="')[1:]}
    expected = {
        "o-depression-response-24h-inert-placebo": ("lii-2023", "Risk ratio 1.20 (95% CI 0.68 to 2.11); one trial, 40 participants", "very-low"),
        "o-depression-response-2-7d-inert-placebo": ("lii-2023", "Risk ratio 0.90 (95% CI 0.47 to 1.73); one trial, 40 participants", "very-low"),
        "o-depression-response-later-inert-placebo": ("hu-2016", "Risk ratio 1.62 (95% CI 1.00 to 2.61); one trial, 27 participants", "very-low"),
        "o-depression-response-2-7d-active-placebo": ("su-2023", "Risk ratio 3.00 (95% CI 1.20 to 7.51); one trial, 84 participants", "very-low"),  # -1: its Table 1 is read from a copied page (weak source)
    }
    assert sorted(k for k in sections if k.startswith("o-depression-response-")) == sorted(expected)
    for anchor, (sid, estimate, certainty) in expected.items():
        sec = sections[anchor]
        assert estimate in sec, anchor
        assert f'href="../studies/{sid}.html"' in sec.split('<table class="data">')[1].split("</table>")[0], anchor
        assert f'class="certainty certainty-{certainty}"' in sec, anchor
        assert "One trial: this is a single study's result, not a pooled one." in sec, anchor
    # the absolute effect against a 119 per 1000 midazolam risk (5/42): 119 x 3.00 = 357 per 1000
    midazolam = sections["o-depression-response-2-7d-active-placebo"]
    assert "<dd>357 per 1000 (95% CI 143 to 894)</dd>" in midazolam
    assert "238 more per 1000 (95% CI 24 more to 775 more)" in midazolam and "NNTB 5 (95% CI 2 to 43)" in midazolam
    assert "<svg" in midazolam and 'role="img"' in midazolam
    # two tables on the page hold response at 2 to 7 days: each caption names its comparator
    assert "<caption>Study data for Response in depression, 2 to 7 days, vs active placebo (midazolam)</caption>" in midazolam
    # its forest plot draws the trial, but no pooled diamond: one trial is not a pooled result
    assert '<g class="fp-row">' in midazolam and '<g class="fp-pooled">' not in midazolam and "Pooled (" not in midazolam
    # every pooled trial now carries a judgement: the downgrade says by whose weight (Lii 2023: kb's own RoB 2,
    # some concerns)
    assert "risk of bias: results at high risk of bias or with some concerns carry 100% of the weight" in html
    assert "risk of bias not assessed" not in html
    for heading in ("Durability and maintenance", "Dosing used across studies", "Adverse events across studies",
                    "Practice and ethics", "All studies"):
        assert heading in html
    assert 'class="sortable"' in html


def test_retracted_study_has_a_banner_and_is_never_pooled(built):
    page = (built / "studies/parsaik-2015.html").read_text(encoding="utf-8")
    assert 'class="retracted"' in page and "never pooled" in page
    for cond_page in (built / "conditions").glob("*.html"):
        html = cond_page.read_text(encoding="utf-8")
        # it may be listed as left out, with the reason, but never in a forest plot's data table
        for table in html.split('<table class="data">')[1:]:
            assert "parsaik-2015" not in table.split("</table>")[0], cond_page.name
        if "parsaik-2015" in html and "retracted publication: never pooled" not in html:
            assert "Retracted" in html


def test_study_page_links_citations_and_verification(built):
    html = (built / "studies/feder-2014.html").read_text(encoding="utf-8")
    assert 'href="https://doi.org/10.1001/jamapsychiatry.2014.62"' in html
    assert 'href="https://pubmed.ncbi.nlm.nih.gov/24740528/"' in html
    assert "@article{feder_2014," in html and "TY  - JOUR" in html
    assert "Verified against a source" in html and "Inferred, not read" in html
    assert 'data-pagefind-body' in html and 'data-pagefind-filter="condition"' in html


def test_methods_page_states_the_build(built):
    html = (built / "methods.html").read_text(encoding="utf-8")
    assert "2026-09-21T" in html and "SOURCE_DATE_EPOCH" in html and "not under git" in html


def test_home_page_cards(built):
    html = (built / "index.html").read_text(encoding="utf-8")
    assert 'href="conditions/depression.html"' in html and 'href="conditions/ptsd.html"' in html
    assert 'action="search.html"' in html and "Latest additions" in html


def test_feed_and_sitemap_are_xml(built):
    feed = ET.parse(built / "feed.xml").getroot()
    ns = {"a": "http://www.w3.org/2005/Atom"}
    entries = feed.findall("a:entry", ns)
    assert 0 < len(entries) <= 50
    assert feed.find("a:updated", ns).text == "2026-09-21T14:13:20Z"
    urls = [u.text for u in ET.parse(built / "sitemap.xml").getroot().iter("{http://www.sitemaps.org/schemas/sitemap/0.9}loc")]
    assert "studies/feder-2014.html" in urls and "index.html" in urls and "404.html" not in urls


def test_base_url_makes_feed_and_sitemap_absolute(tmp_path, runner):
    root = make_kb(tmp_path, [trial("alpha-2001", [binary("response", 12, 20, 4, 20)])])
    res = invoke(runner, "--kb", root, "build", "--no-search", "-o", tmp_path / "out", "--base-url", "https://ev.example.org/k")
    assert res.exit_code == 0, res.output
    sitemap = (tmp_path / "out/sitemap.xml").read_text()
    assert "<loc>https://ev.example.org/k/studies/alpha-2001.html</loc>" in sitemap
    assert 'href="https://ev.example.org/k/studies/alpha-2001.html"' in (tmp_path / "out/feed.xml").read_text()
    # pages themselves stay relative
    assert "https://ev.example.org" not in (tmp_path / "out/index.html").read_text()


def test_big_sitemaps_are_split_with_an_index(tmp_path, monkeypatch):
    monkeypatch.setattr(site_pages, "SITEMAP_MAX", 5)
    root = make_kb(tmp_path, [trial(f"t{i}-2001", [binary("response", 5, 20, 4, 20)]) for i in range(8)])
    build_site(open_kb(root), tmp_path / "out", search=False)
    index = ET.parse(tmp_path / "out/sitemap.xml").getroot()
    assert index.tag.endswith("sitemapindex")
    parts = [e.text for e in index.iter("{http://www.sitemaps.org/schemas/sitemap/0.9}loc")]
    total = sum(len(list(ET.parse(tmp_path / "out" / p).getroot())) for p in parts)
    assert len(parts) >= 3 and total == 8 + len(list((tmp_path / "out").glob("*.html"))) - 1 + len(
        list((tmp_path / "out/conditions").glob("*.html"))) + len(list((tmp_path / "out/outcomes").glob("*.html")))


# -- escaping ------------------------------------------------------------------------------

EVIL = "<script>alert('x')</script> & <img src=x onerror=alert(1)>"


def test_text_from_records_is_always_escaped(tmp_path):
    rec = trial("evil-2020", [binary("response", 12, 20, 4, 20, result=EVIL)], title=f"Title {EVIL}",
                abstract=f"Abstract {EVIL}", key_finding=f"Finding {EVIL}", authors=["Evil A"],
                keywords=[EVIL], population=EVIL)
    root = make_kb(tmp_path, [rec, trial("alpha-2001", [binary("response", 10, 20, 4, 20)])])
    build_site(open_kb(root), tmp_path / "out", search=False)
    for page in list((tmp_path / "out").rglob("*.html")) + [tmp_path / "out/feed.xml"]:
        text = page.read_text(encoding="utf-8")
        assert "<script>alert" not in text, page
        assert "<img src=x" not in text, page
        parsed = parse(page) if page.suffix == ".html" else None
        if parsed:
            assert not any("alert" in s for s in parsed.scripts), page
    study = (tmp_path / "out/studies/evil-2020.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in study
    ET.parse(tmp_path / "out/feed.xml")  # still well-formed XML
    downloads = json.loads((tmp_path / "out/downloads/studies.json").read_text())
    assert downloads[1]["title"] == f"Title {EVIL}"  # data files keep the text as data


# -- determinism and incremental builds -------------------------------------------------------


def tree(out: Path, skip=("pagefind",)) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and not set(skip) & set(p.relative_to(out).parts)}


def test_same_input_gives_byte_identical_output(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    root = bundled_copy(tmp_path / "ketamine")
    kb = open_kb(root)
    build_site(kb, tmp_path / "a", search=False)
    shutil.rmtree(root / ".kb")
    build_site(kb, tmp_path / "b", search=False, jobs=1)
    a, b = tree(tmp_path / "a"), tree(tmp_path / "b")
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []


def test_source_date_epoch_is_honoured(tmp_path, monkeypatch):
    root = make_kb(tmp_path, [trial("alpha-2001", [binary("response", 10, 20, 4, 20)])])
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    build_site(open_kb(root), tmp_path / "out", search=False)
    assert "2023-11-14T22:13:20Z" in (tmp_path / "out/methods.html").read_text()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(BadRequest, match="SOURCE_DATE_EPOCH"):
        build_site(open_kb(root), tmp_path / "out2", search=False)


def test_without_git_or_epoch_the_date_is_the_latest_record(tmp_path, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    root = make_kb(tmp_path, [trial("alpha-2001", [binary("response", 10, 20, 4, 20)], added="2025-03-04")])
    build_site(open_kb(root), tmp_path / "out", search=False)
    assert "2025-03-04T00:00:00Z (from latest record date)" in (tmp_path / "out/methods.html").read_text()


def mtimes(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}


def test_incremental_build_rewrites_only_what_changed(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    records = [trial("alpha-2001", [binary("response", 12, 20, 4, 20)]),
               trial("beta-2005", [binary("response", 8, 15, 3, 16)]),
               trial("gamma-2010", [binary("response", 9, 30, 5, 30)], conditions=["ptsd"])]
    root = make_kb(tmp_path, records)
    kb = open_kb(root)
    out = tmp_path / "out"
    first = build_site(kb, out, search=False)
    assert first.full and first.parsed == 3
    again = build_site(kb, out, search=False)
    assert again.up_to_date and again.pages_written == 0
    before = mtimes(out)
    time.sleep(0.01)
    # a new mtime alone (git checkout) is not a change
    os.utime(root / "studies/beta-2005.yaml")
    touched = build_site(kb, out, search=False)
    assert touched.parsed == 0 and touched.pages_written == 0
    # one record's numbers change: its page, its condition's pages, downloads and changes move; the rest do not
    rec = records[1]
    rec["outcomes"] = [binary("response", 14, 15, 3, 16, source={"url": rec["sources"][0], "locator": "Table 2"})]
    (root / "studies/beta-2005.yaml").write_text(yaml.safe_dump(rec, sort_keys=False))
    second = build_site(kb, out, search=False)
    assert second.parsed == 1 and not second.full
    after = mtimes(out)
    changed = {k for k in after if after[k] != before.get(k)}
    assert "studies/beta-2005.html" in changed and "conditions/depression.html" in changed
    assert "studies/alpha-2001.html" not in changed and "studies/gamma-2010.html" not in changed
    assert "conditions/ptsd.html" not in changed and "assets/site.css" not in changed
    changes = (out / "changes.html").read_text()
    assert "Studies changed (1)" in changes and "Estimates that moved (1)" in changes
    # the moved estimate names its time window and comparator class, and links to its own row
    assert ('<a href="conditions/depression.html#o-depression-response-24h-inert-placebo">Depression: response, '
            'about 24 h, vs inert placebo (saline)</a>') in changes
    assert check_links(out) == []
    # the downloads of an incremental build equal those of a full build of the same records
    full = tmp_path / "full"
    build_site(kb, full, search=False, full=True)
    for name in ("studies.json", "studies.csv", "studies.bib", "studies.ris"):
        assert (out / "downloads" / name).read_bytes() == (full / "downloads" / name).read_bytes(), name
    # a rebuild with nothing new keeps the changes page as it was
    build_site(kb, out, search=False, full=False)
    assert (out / "changes.html").read_text() == changes


def test_deleted_and_added_records(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    root = make_kb(tmp_path, [trial("alpha-2001", [binary("response", 12, 20, 4, 20)]),
                              trial("beta-2005", [binary("response", 8, 15, 3, 16)],
                                    related=[{"id": "delta-2012", "relation": "secondary-analysis"}])])
    kb, out = open_kb(root), tmp_path / "out"
    build_site(kb, out, search=False)
    assert "Delta 2012 (not in this knowledge base)" in (out / "studies/beta-2005.html").read_text()
    (root / "studies/alpha-2001.yaml").unlink()
    (root / "studies/delta-2012.yaml").write_text(yaml.safe_dump(trial("delta-2012", [binary("response", 5, 10, 2, 10)])))
    report = build_site(kb, out, search=False)
    assert not (out / "studies/alpha-2001.html").exists() and (out / "studies/delta-2012.html").exists()
    assert report.pages_removed >= 1
    # the related record now exists, so beta's page links to it
    assert 'href="delta-2012.html"' in (out / "studies/beta-2005.html").read_text()
    ids = [r["id"] for r in json.loads((out / "downloads/studies.json").read_text())]
    assert ids == ["beta-2005", "delta-2012"]
    changes = (out / "changes.html").read_text()
    assert "Studies added (1)" in changes and "Studies removed (1)" in changes
    assert check_links(out) == []


def test_changes_page_follows_a_result_into_another_time_window(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    recs = [trial("alpha-2001", [binary("response", 12, 20, 4, 20)]), trial("beta-2005", [binary("response", 8, 15, 3, 16)])]
    root = make_kb(tmp_path, recs)
    kb, out = open_kb(root), tmp_path / "out"
    build_site(kb, out, search=False)
    # both trials turn out to have measured response on day 3, not day 1: the result moves from the
    # about-24-h row to the 2-to-7-days row, and the changes page says so in words
    for rec in recs:
        rec["outcomes"] = [{**rec["outcomes"][0], "timepoint": "day 3", "timepoint_days": 3}]
        (root / f"studies/{rec['id']}.yaml").write_text(yaml.safe_dump(rec, sort_keys=False))
    build_site(kb, out, search=False)
    changes = (out / "changes.html").read_text()
    new = changes.split('id="new-pooled"')[1].split("</ul>")[0]
    assert ('<li><a href="conditions/depression.html#o-depression-response-2-7d-inert-placebo">Depression: response, '
            '2 to 7 days, vs inert placebo (saline)</a></li>') in new
    gone = changes.split('id="gone-pooled"')[1].split("</ul>")[0]
    assert "<li>Depression: response, about 24 h, vs inert placebo (saline)</li>" in gone
    assert "depression/response" not in changes
    assert check_links(out) == []


def test_template_change_rebuilds_every_page_and_overrides_apply(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    root = make_kb(tmp_path, [trial("alpha-2001", [binary("response", 12, 20, 4, 20)])])
    kb, out = open_kb(root), tmp_path / "out"
    build_site(kb, out, search=False)
    (root / "templates").mkdir()
    (root / "templates/study.html").write_text(
        '{% extends "default:study.html" %}{% block title %}OVERRIDDEN {{ study.id }}{% endblock %}')
    report = build_site(kb, out, search=False)
    assert report.full
    assert "<title>OVERRIDDEN alpha-2001</title>" in (out / "studies/alpha-2001.html").read_text()
    assert "OVERRIDDEN" not in (out / "index.html").read_text()


# -- bad input and refusals ------------------------------------------------------------------


def test_invalid_records_are_left_out_and_listed(tmp_path, runner):
    root = make_kb(tmp_path, [trial("alpha-2001", [binary("response", 12, 20, 4, 20)])])
    (root / "studies/bad-2020.yaml").write_text("id: bad-2020\ntitle: x\nyear: 20x0\n")
    res = invoke(runner, "--kb", root, "build", "--no-search", "-o", tmp_path / "out")
    assert res.exit_code == 0
    assert "studies/bad-2020.yaml:3:" in res.output and "left out of the site" in res.output
    assert not (tmp_path / "out/studies/bad-2020.html").exists()
    res = invoke(runner, "--kb", root, "build", "--no-search", "--strict", "-o", tmp_path / "out2")
    assert res.exit_code == 1 and "nothing published" in res.output
    # a record over the size limit is refused by the build as kb validate refuses it, not read whole
    (root / "studies/bad-2020.yaml").unlink()
    (root / "studies/huge-2021.yaml").write_text("id: huge-2021\nnotes: '" + "x" * 2_500_000 + "'\n")
    res = invoke(runner, "--kb", root, "build", "--no-search", "-o", tmp_path / "out")
    assert res.exit_code == 0 and "studies/huge-2021.yaml" in res.output and "at most 1 MB" in res.output
    assert "file is 2.5 MB" in res.output
    assert not (tmp_path / "out/studies/huge-2021.html").exists()


def test_refuses_to_write_into_a_folder_it_did_not_make(tmp_path, runner):
    root = make_kb(tmp_path, [trial("alpha-2001", [binary("response", 12, 20, 4, 20)])])
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("a reviewer's notes")
    res = invoke(runner, "--kb", root, "build", "--no-search", "-o", mine)
    assert res.exit_code == 2 and "not empty and was not built by kb" in res.output
    assert (mine / "notes.txt").read_text() == "a reviewer's notes" and len(list(mine.iterdir())) == 1
    res = invoke(runner, "--kb", root, "build", "--no-search", "-o", root)
    assert res.exit_code == 2 and "over the knowledge base" in res.output


def test_a_bad_summary_file_stops_the_build_with_its_line(tmp_path, runner):
    root = make_kb(tmp_path, [trial("alpha-2001", [binary("response", 12, 20, 4, 20)])],
                   summaries={"depression": {"condition": "depression", "outcomes": {"response": {"certainty": "high"}}}})
    res = invoke(runner, "--kb", root, "build", "--no-search", "-o", tmp_path / "out")
    assert res.exit_code == 1 and "summaries/depression.yaml" in res.output and "justification" in res.output


def test_reviewer_summary_shows_bottom_line_and_override(tmp_path):
    root = make_kb(tmp_path, [trial("alpha-2001", [binary("response", 12, 20, 4, 20)]),
                              trial("beta-2005", [binary("response", 8, 15, 3, 16)])],
                   summaries={"depression": {"condition": "depression", "bottom_line": "Test bottom line.",
                                             "outcomes": {"response": {"certainty": "very-low",
                                                                       "justification": "test reason"}}}})
    build_site(open_kb(root), tmp_path / "out", search=False)
    html = (tmp_path / "out/conditions/depression.html").read_text()
    assert "Test bottom line." in html and "test reason" in html and "very low certainty" in html
    assert "Test bottom line." in (tmp_path / "out/index.html").read_text()


# -- downloads -----------------------------------------------------------------------------


def test_downloads_hold_every_valid_record(built):
    n = len(list((built / "studies").glob("*.html")))
    records = json.loads((built / "downloads/studies.json").read_text(encoding="utf-8"))
    assert len(records) == n and records == sorted(records, key=lambda r: r["id"])
    rows = list(csv.DictReader(io.StringIO((built / "downloads/studies.csv").read_text(encoding="utf-8"))))
    assert len(rows) == n and rows[0]["id"] == records[0]["id"]
    assert (built / "downloads/studies.bib").read_text(encoding="utf-8").count("@article{") == n
    assert (built / "downloads/studies.ris").read_text(encoding="utf-8").count("ER  - ") == n
    feder = next(r for r in rows if r["id"] == "feder-2014")
    assert feder["doi"] == "10.1001/jamapsychiatry.2014.62" and feder["conditions"] == "ptsd; depression"
    parsaik = next(r for r in rows if r["id"] == "parsaik-2015")
    assert parsaik["retracted"] == "true"


def test_summary_of_findings_page_and_csv(built):
    rows = list(csv.DictReader(io.StringIO((built / "downloads/summary-of-findings.csv").read_text(encoding="utf-8"))))
    assert rows and list(rows[0]) == list(site_mod.SOF_COLUMNS)
    # one row per condition, outcome, time window and comparator class: none mixes windows or classes
    cells = [(r["condition"], r["outcome"], r["time_window"], r["comparator"]) for r in rows]
    assert len(set(cells)) == len(cells) and all(r["time_window"] and r["comparator"] for r in rows)
    by_cell = dict(zip(cells, rows))
    # Su 2023, 15/42 vs 5/42: comparator risk 5/42 = 119 per 1000, RR 3.00 (1.20 to 7.51), so 357 (143 to 894)
    # per 1000 with ketamine; NNTB 1/0.238 -> 5 (1/0.775 -> 2 to 1/0.0237 -> 43)
    r = by_cell[("Depression", "Response", "2 to 7 days", "active placebo (midazolam)")]
    assert (r["k"], r["participants"], r["relative_effect"]) == ("1", "84", "risk ratio 3.00 (95% CI 1.20 to 7.51) (one trial)")
    assert (r["comparator_per_1000"], r["ketamine_per_1000"], r["difference_per_1000"], r["nnt"]) == (
        "119", "357 (143 to 894)", "238 more (24 more to 775 more)", "NNTB 5 (95% CI 2 to 43)")
    assert r["certainty"] == "very low"
    # Su 2023, 14/42 vs 3/42 at 4 h: suicidal ideation resolved, a good event, so more of it reads as benefit
    si = by_cell[("Depression", "Suicidal ideation resolved", "under 12 h", "active placebo (midazolam)")]
    assert si["relative_effect"] == "risk ratio 4.67 (95% CI 1.45 to 15.06) (one trial)"
    assert (si["comparator_per_1000"], si["ketamine_per_1000"], si["nnt"]) == ("71", "333 (103 to 1000)", "NNTB 4 (95% CI 2 to 32)")
    assert "suicidal ideation resolved in more patients with ketamine" in si["sentence"]
    # the HTML page holds the same rows and links the CSV
    html = (built / "summary-of-findings.html").read_text(encoding="utf-8")
    assert 'href="downloads/summary-of-findings.csv"' in html
    body = html.split('<table class="data sof-table">')[1].split("</tbody>")[0]
    assert body.count("<tr><td>") == len(rows)
    assert "<td>357 (143 to 894)</td><td>238 more (24 more to 775 more)</td><td>NNTB 5 (95% CI 2 to 43)</td>" in body


# -- risk-of-bias pictures -------------------------------------------------------------------

SVG_NS = "{http://www.w3.org/2000/svg}"


class _RobTables(HTMLParser):
    """The risk-of-bias data tables of one Summary of Findings entry: per trial (tr data-id), its tool (the
    table's data-tool), the data-key of each judgement cell and its weight text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.rows: dict[str, dict] = {}
        self.captions: list[str] = []
        self._tool = self._row = None
        self._cell: list[str] | None = None
        self._caption: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and "rob-data" in (a.get("class") or ""):
            self._tool = a["data-tool"]
        elif tag == "tr" and self._tool and a.get("data-id"):
            self._row = self.rows[a["data-id"]] = {"tool": self._tool, "keys": [], "cells": []}
        elif tag == "td" and self._row is not None:
            if a.get("data-key"):
                self._row["keys"].append(a["data-key"])
            self._cell = []
        elif tag == "caption" and self._tool:
            self._caption = []

    def handle_endtag(self, tag):
        if tag == "table":
            self._tool = None
        elif tag == "tr":
            self._row = None
        elif tag == "td" and self._cell is not None and self._row is not None:
            self._row["cells"].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "caption" and self._caption is not None:
            self.captions.append("".join(self._caption).strip())
            self._caption = None

    def handle_data(self, data):
        for buf in (self._cell, self._caption):
            if buf is not None:
                buf.append(data)


def sof_sections(html: str) -> dict[str, str]:
    """Summary of Findings entries by anchor: each up to the next one (the last, up to the page's end)."""
    return {s.split('"', 1)[0]: s for s in html.split('<section class="sof" id="')[1:]}


def rob_picture(section: str) -> tuple[ET.Element, _RobTables]:
    """The risk-of-bias SVG (as XML) and tables of one Summary of Findings entry."""
    rob = section.split('<section class="rob"', 1)[1]
    svg = ET.fromstring(rob[rob.index("<svg"):rob.index("</svg>") + len("</svg>")])
    tables = _RobTables()
    tables.feed(rob)
    return svg, tables


def test_every_pooled_analysis_has_its_risk_of_bias_picture(built):
    """On every condition and outcome page, each Summary of Findings entry with a result shows its
    risk-of-bias picture after the forest plot: an accessible SVG and tables holding the same judgements,
    the same trials as the forest plot's table, each in its tool's block."""
    csv_rows = list(csv.DictReader(io.StringIO((built / "downloads/summary-of-findings.csv").read_text(encoding="utf-8"))))
    pictured: dict[str, set[str]] = {"conditions": set(), "outcomes": set()}
    tools_seen = set()
    for page in sorted((built / "conditions").glob("*.html")) + sorted((built / "outcomes").glob("*.html")):
        for anchor, sec in sof_sections(page.read_text(encoding="utf-8")).items():
            where = f"{page.name}#{anchor}"
            if '<p class="sof-sentence">' not in sec:
                assert '<section class="rob"' not in sec, where  # nothing pooled: no picture
                continue
            assert '<section class="rob"' in sec, f"{where}: no risk-of-bias picture"
            assert sec.index('<figure class="forest">') < sec.index('<section class="rob"'), where
            assert ">Risk of bias in this analysis</h4>" in sec, where
            svg, tables = rob_picture(sec)
            assert svg.get("role") == "img", where
            title, desc = svg.find(f"{SVG_NS}title"), svg.find(f"{SVG_NS}desc")
            assert title.text.startswith("Risk of bias: ") and desc.text.startswith("Risk of bias of the "), where
            assert svg.get("aria-labelledby").split() == [title.get("id"), desc.get("id")], where
            # the picture and the tables hold the same trials, tools and judgements
            drawn = {}
            for block in (g for g in svg.iter(f"{SVG_NS}g") if g.get("class") == "rb-block"):
                for row in (g for g in block.iter(f"{SVG_NS}g") if g.get("class") == "rb-row"):
                    keys = [m.get("data-key") for m in row.iter(f"{SVG_NS}g") if m.get("class") == "rb-mark"]
                    weight = [t.text for t in row.findall(f"{SVG_NS}text")][-1]
                    drawn[row.get("data-id")] = (block.get("data-tool"), keys or ["not-assessed"], weight)
            tabled = {i: (r["tool"], r["keys"], next(c for c in r["cells"] if c.endswith("%")))
                      for i, r in tables.rows.items()}
            assert drawn == tabled, where
            forest_ids = set(re.findall(r'href="\.\./studies/([a-z0-9-]+)\.html"',
                                        sec.split('<table class="data">')[1].split("</table>")[0]))
            assert set(drawn) == forest_ids, where
            tools_seen |= {tool for tool, _, _ in drawn.values()}
            pictured[page.parent.name].add(anchor[2:])
    # each analysis once on its condition's page and once on its outcome's page
    assert len(pictured["conditions"]) == len(csv_rows) and pictured["conditions"] == pictured["outcomes"]
    assert {"rob1", "rob2"} <= tools_seen


def test_a_mixed_tool_analysis_shows_one_block_per_tool(built):
    """Remission after 7 days against saline (depression): Hu 2016 judged by the Cochrane review's RoB 1,
    Ionescu 2019 by kb's own RoB 2, a single assessor's. Two blocks, two tables, each in its own domains."""
    sec = sof_sections((built / "conditions/depression.html").read_text(encoding="utf-8"))[
        "o-depression-remission-later-inert-placebo"]
    svg, tables = rob_picture(sec)
    assert [g.get("data-tool") for g in svg.iter(f"{SVG_NS}g") if g.get("class") == "rb-block"] == ["rob2", "rob1"]
    assert {i: r["tool"] for i, r in tables.rows.items()} == {"ionescu-2019": "rob2", "hu-2016": "rob1"}
    assert tables.captions == [
        "Cochrane RoB 2 judgements for Remission in depression, after 7 days, vs inert placebo (saline)",
        "Cochrane RoB 1 judgements for Remission in depression, after 7 days, vs inert placebo (saline)"]
    rob = sec.split('<section class="rob"', 1)[1]
    assert "<th scope=\"col\">D1: Random sequence generation (selection bias)</th>" in rob
    assert "<th scope=\"col\">D1: Bias arising from the randomisation process</th>" in rob
    hu, ionescu = tables.rows["hu-2016"], tables.rows["ionescu-2019"]
    assert hu["cells"][0] == "Cochrane RoB 1" and ionescu["cells"][0] == "Cochrane RoB 2"
    assert hu["cells"][-1] == "no" and ionescu["cells"][-1] == "yes"  # verified by the review's authors; kb alone
    assert hu["cells"][-3].startswith("Dean 2021 (Cochrane CD011612)")
    assert "whole weight, so the weight of trials judged with another tool completes each bar" in rob


# -- page contexts ---------------------------------------------------------------------------


def test_page_contexts(tmp_path):
    root = make_kb(tmp_path, [trial("alpha-2001", [binary("response", 12, 20, 4, 20)], key_finding="A finding."),
                              trial("beta-2005", [binary("response", 8, 15, 3, 16)], topics=["durability"],
                                    durability={"summary": "Lasted a week."},
                                    adverse_events={"events": ["dissociation", "nausea"]}),
                              trial("gamma-2010", [binary("response", 9, 30, 5, 30)], conditions=["ptsd", "depression"])])
    kb = open_kb(root)
    from kb.load import load_studies

    studies = load_studies(kb).studies
    site = site_mod.Site(kb=kb, info=site_mod.build_info(kb, None, "2026-01-01"),
                         digests={s.id: site_mod.digest(s, "x") for s in studies}, summaries={})
    site_mod.run_analyses(site)
    home = site_mod.home_context(site)
    assert [(c["condition"], c["count"], c["primary"]) for c in home["cards"]] == [("depression", 3, 2), ("ptsd", 1, 1)]
    assert home["cards"][0]["headline"]["result"]["k"] == 2
    ctx = site_mod.condition_context(site, "depression")
    (row,) = ctx["sof"]
    assert row["outcome"] == "response" and row["result"]["k"] == 2
    # PTSD is its main condition: left out of every analysis of the outcome, listed once under the last row
    assert row["excluded"] == [] and [e["id"] for e in row["shared_excluded"]] == ["gamma-2010"]
    assert [d["id"] for d in ctx["durability"]] == ["beta-2005"]
    assert [(a["term"], [d["id"] for d in a["studies"]]) for a in ctx["ae"]] == [("dissociation", ["beta-2005"]),
                                                                              ("nausea", ["beta-2005"])]
    out = site_mod.outcome_context(site, "response")
    assert [r["condition"] for r in out["sof"]] == ["depression", "ptsd"]
    prev = {"snapshot": site_mod.snapshot(site), "changes": {"first": True}}
    assert site_mod.compute_changes(prev, site_mod.snapshot(site), site.info) == {"first": True}


# -- golden pages ----------------------------------------------------------------------------

GOLDEN_PAGES = {"index.html": "index.html", "condition-depression.html": "conditions/depression.html",
                "study-feder-2014.html": "studies/feder-2014.html", "study-parsaik-2015.html": "studies/parsaik-2015.html"}


@pytest.mark.parametrize("golden,page", sorted(GOLDEN_PAGES.items()))
def test_golden_pages(built, golden, page):
    actual = (built / page).read_text(encoding="utf-8")
    path = GOLDEN / golden
    if os.environ.get("KB_REGEN_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), "no golden file: run KB_REGEN_GOLDEN=1 python -m pytest tests/test_site.py -k golden"
    assert actual == path.read_text(encoding="utf-8"), (
        f"{page} differs from tests/golden/{golden}; if the change is intended, regenerate with "
        "KB_REGEN_GOLDEN=1 python -m pytest tests/test_site.py -k golden")


# -- Pagefind and kb serve ---------------------------------------------------------------------


@pytest.mark.skipif(site_mod.pagefind_command() is None, reason="Pagefind is not installed (pip install 'pagefind[bin]')")
def test_pagefind_indexes_the_study_pages(tmp_path, runner):
    root = make_kb(tmp_path, [trial("alpha-2001", [binary("response", 12, 20, 4, 20)]),
                              trial("beta-2005", [binary("response", 8, 15, 3, 16)], conditions=["ptsd"])])
    res = invoke(runner, "--kb", root, "build", "-o", tmp_path / "out")
    assert res.exit_code == 0 and "search indexed" in res.output, res.output
    entry = json.loads((tmp_path / "out/pagefind/pagefind-entry.json").read_text())
    assert entry["languages"]["en"]["page_count"] == 2  # only study pages carry data-pagefind-body
    res = invoke(runner, "--kb", root, "build", "-o", tmp_path / "out")
    assert "site up to date" in res.output


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8")


def test_serve_previews_and_rebuilds_when_a_record_changes(tmp_path):
    from kb.site.serve import Preview

    root = make_kb(tmp_path, [trial("alpha-2001", [binary("response", 12, 20, 4, 20)], key_finding="Before.")])
    kb, out = open_kb(root), tmp_path / "out"
    build_site(kb, out, search=False)
    events: list[str] = []
    done = threading.Event()

    def rebuild():
        return f"{build_site(kb, out, search=False).parsed} parsed"

    def on_event(message: str) -> None:  # set once the event is recorded, not when the build returns
        events.append(message)
        done.set()

    preview = Preview(kb, out, rebuild, port=0, interval=0.05, on_event=on_event)
    preview.start()
    try:
        status, body = fetch(preview.url + "studies/alpha-2001.html")
        assert status == 200 and "Before." in body
        status, body = fetch(preview.url + "no/such/page.html")
        assert status == 404 and "Page not found" in body
        text = (root / "studies/alpha-2001.yaml").read_text().replace("Before.", "After.")
        (root / "studies/alpha-2001.yaml").write_text(text)
        assert done.wait(10), "no rebuild after the record changed"
        assert "After." in fetch(preview.url + "studies/alpha-2001.html")[1]
        assert events and events[0] == "rebuilt: 1 parsed"
        # a broken record is reported and the preview keeps serving
        done.clear()
        (root / "studies/alpha-2001.yaml").write_text(text.replace("year: 2001", "year: twenty"))
        assert done.wait(10)
        assert fetch(preview.url + "index.html")[0] == 200
    finally:
        preview.stop()


def test_cli_build_help_and_summary(tmp_path, runner):
    res = invoke(runner, "build", "--help")
    assert res.exit_code == 0 and "--base-url" in res.output and "Examples" in res.output
    root = make_kb(tmp_path, [trial("alpha-2001", [binary("response", 12, 20, 4, 20)])])
    res = invoke(runner, "--kb", root, "build", "--no-search")
    assert res.exit_code == 0 and f"built {root / '_site'}: 1 studies" in res.output
    assert (root / "_site/index.html").exists()
    res = invoke(runner, "--kb", root, "build", "--no-search")
    assert "site up to date" in res.output


def test_validate_checks_summaries_too(tmp_path, runner):
    root = make_kb(tmp_path, [trial("alpha-2001", [binary("response", 12, 20, 4, 20)])],
                   summaries={"ptsd": {"condition": "depression", "outcomes": {"response": {"certainty": "high"}}}})
    res = invoke(runner, "--kb", root, "validate")
    assert res.exit_code == 1
    assert "summaries/ptsd.yaml" in res.output and "justification" in res.output
    assert "2 files checked" in res.output


def test_parallel_build_equals_serial_build(tmp_path, monkeypatch):
    """Study pages in forked workers and aggregate pages shared out give the same bytes as one process."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    monkeypatch.setattr(site_studies, "PARALLEL_THRESHOLD", 0)
    monkeypatch.setattr(site_pages, "AGGREGATE_PARALLEL", 0)
    root = bundled_copy(tmp_path / "ketamine")
    kb = open_kb(root)
    serial = build_site(kb, tmp_path / "one", search=False, jobs=1)
    parallel = build_site(kb, tmp_path / "two", search=False, jobs=2)
    assert serial.pages_written == parallel.pages_written
    a, b = tree(tmp_path / "one"), tree(tmp_path / "two")
    assert a.keys() == b.keys() and [k for k in a if a[k] != b[k]] == []
    # an incremental parallel rebuild after one change touches what a serial one touches
    path = root / "studies/feder-2014.yaml"
    path.write_text(path.read_text().replace("proof-of-concept", "proof of concept"))
    again = build_site(kb, tmp_path / "two", search=False, jobs=2)
    assert again.parsed == 1 and check_links(tmp_path / "two") == []


def test_mixed_data_shapes_pool_the_larger_group(tmp_path):
    from .test_synthesis import continuous

    root = make_kb(tmp_path, [trial("alpha-2001", [binary("response", 12, 20, 4, 20)]),
                              trial("beta-2005", [binary("response", 8, 15, 3, 16)]),
                              trial("gamma-2010", [continuous("response", 10, 5, 20, 15, 5, 20)])])
    build_site(open_kb(root), tmp_path / "out", search=False)
    html = (tmp_path / "out/conditions/depression.html").read_text()
    assert "risk ratio" in html and "Not pooled" not in html
    # two trials pooled: the forest plot draws both and the pooled diamond
    # (each plot is drawn twice: the wide layout and the phone layout)
    assert html.count('<g class="fp-row">') == 4 and html.count('<g class="fp-pooled">') == 2
    assert "Gamma 2010</a>: means and SDs cannot give a risk ratio" in html  # named by its label


def test_records_with_errors_are_listed_on_every_build(tmp_path, runner):
    root = make_kb(tmp_path, [trial("alpha-2001", [binary("response", 12, 20, 4, 20)]),
                              trial("beta-2005", [binary("response", 8, 15, 3, 16)])])
    (root / "studies/bad-2020.yaml").write_text("id: bad-2020\ntitle: x\nyear: 20x0\n")
    out = tmp_path / "out"
    for _ in range(2):  # the second build has nothing to do, and still names the bad file
        res = invoke(runner, "--kb", root, "build", "--no-search", "-o", out)
        assert res.exit_code == 0 and "studies/bad-2020.yaml:3:" in res.output, res.output
    (root / "studies/beta-2005.yaml").write_text((root / "studies/beta-2005.yaml").read_text().replace(
        "Test trial", "Tested trial"))
    res = invoke(runner, "--kb", root, "build", "--no-search", "-o", out)
    assert "updated" in res.output and "studies/bad-2020.yaml:3:" in res.output


def test_an_empty_knowledge_base_builds_and_stays_up_to_date(tmp_path, runner):
    assert invoke(runner, "init", tmp_path / "empty").exit_code == 0
    res = invoke(runner, "--kb", tmp_path / "empty", "build", "--no-search")
    assert res.exit_code == 0 and "0 studies" in res.output
    res = invoke(runner, "--kb", tmp_path / "empty", "build", "--no-search")
    assert "site up to date" in res.output
    assert check_links(tmp_path / "empty/_site") == []


def interrupt_build(monkeypatch, kb, out, page: bytes) -> None:
    """A build killed while it writes the study pages: alpha-2001's page is left as ``page``."""
    def killed(*args, **kwargs):
        (out / "studies/alpha-2001.html").write_bytes(page)
        raise KeyboardInterrupt

    monkeypatch.setattr(site_studies, "render_studies", killed)
    with pytest.raises(KeyboardInterrupt):
        build_site(kb, out, search=False)
    monkeypatch.undo()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)


def test_an_interrupted_build_is_redone_in_full(tmp_path, monkeypatch):
    """A build killed while writing pages leaves no state vouching for them: the next one is full."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    root = make_kb(tmp_path, [trial("alpha-2001", [binary("response", 12, 20, 4, 20)], key_finding="One.")])
    kb, out = open_kb(root), tmp_path / "out"
    build_site(kb, out, search=False)
    good = (out / "studies/alpha-2001.html").read_bytes()
    text = (root / "studies/alpha-2001.yaml").read_text()
    (root / "studies/alpha-2001.yaml").write_text(text.replace("One.", "Two."))

    interrupt_build(monkeypatch, kb, out, good[:100])  # half a page, then the process dies
    (root / "studies/alpha-2001.yaml").write_text(text)  # back as it was: only the half page differs
    report = build_site(kb, out, search=False)
    assert report.full and (out / "studies/alpha-2001.html").read_bytes() == good


def test_an_interrupted_first_build_can_be_run_again(tmp_path, monkeypatch):
    """Ctrl-C during the very first build leaves a folder kb still recognises as its own."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    root = make_kb(tmp_path, [trial("alpha-2001", [binary("response", 12, 20, 4, 20)])])
    kb, out = open_kb(root), tmp_path / "out"

    interrupt_build(monkeypatch, kb, out, b"<html>half a page")
    report = build_site(kb, out, search=False)
    assert report.full and b"half a page" not in (out / "studies/alpha-2001.html").read_bytes()
    build_site(kb, tmp_path / "clean", search=False)
    a, b = tree(out), tree(tmp_path / "clean")
    assert a.keys() == b.keys() and [k for k in a if a[k] != b[k]] == []


def test_full_rebuild_rewrites_only_study_pages_whose_bytes_differ(tmp_path, monkeypatch):
    """--full trusts nothing the last build left, but compares with the pages on disk: a damaged page
    is rewritten, an intact one is left alone (its date too)."""
    import os

    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    root = bundled_copy(tmp_path / "ketamine")
    kb, out = open_kb(root), tmp_path / "out"
    build_site(kb, out, search=False)
    good = (out / "studies/feder-2014.html").read_bytes()
    (out / "studies/feder-2014.html").write_bytes(good.replace(b"Feder", b"Fedex"))  # same size, other bytes
    pages = sorted((out / "studies").glob("*.html"))
    past = 1_000_000_000 * 10**9
    for p in pages:
        os.utime(p, ns=(past, past))
    build_site(kb, out, search=False, full=True)
    assert (out / "studies/feder-2014.html").read_bytes() == good
    rewritten = [p.name for p in pages if p.stat().st_mtime_ns != past]
    assert rewritten == ["feder-2014.html"]


def test_only_web_addresses_become_links(tmp_path):
    """Free-text URL fields never become javascript: links."""
    rec = trial("evil-2020", [binary("response", 12, 20, 4, 20, source="javascript:alert(1)")],
                retraction={"retracted": True, "url": "javascript:alert(2)"})
    root = make_kb(tmp_path, [rec])
    build_site(open_kb(root), tmp_path / "out", search=False)
    html = (tmp_path / "out/studies/evil-2020.html").read_text()
    assert 'href="javascript:' not in html and "javascript:alert(1)" in html


@pytest.mark.parametrize("jobs", [1, 2])
def test_downloads_edited_by_hand_stop_an_incremental_build_with_a_hint(tmp_path, monkeypatch, jobs):
    """The downloads are spliced, not rewritten, on an incremental build; a hand-edited one is refused
    with the fix, whether they are written in this process or (big sites, several cores) in a child."""
    import multiprocessing

    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    monkeypatch.setattr(site_pages, "AGGREGATE_PARALLEL", 0)
    root = bundled_copy(tmp_path / "ketamine")
    kb, out = open_kb(root), tmp_path / "out"
    build_site(kb, out, search=False, jobs=jobs)
    (out / "downloads/studies.ris").write_text("TY  - JOUR\nTI  - my own list\n", encoding="utf-8")
    path = root / "studies/feder-2014.yaml"
    path.write_text(path.read_text().replace("proof-of-concept", "proof of concept"))
    with pytest.raises(site_mod.SiteError) as err:
        build_site(kb, out, search=False, jobs=jobs)
    assert "studies.ris was changed by hand or is damaged" in err.value.message and "--full" in err.value.hint
    assert multiprocessing.active_children() == []  # the downloads process is gone
    report = build_site(kb, out, search=False, jobs=jobs, full=True)
    assert report.full and "feder-2014" in (out / "downloads/studies.ris").read_text(encoding="utf-8")


def test_an_interrupted_parallel_build_leaves_no_process_behind(tmp_path, monkeypatch):
    import multiprocessing

    monkeypatch.setattr(site_pages, "AGGREGATE_PARALLEL", 0)
    root = bundled_copy(tmp_path / "ketamine")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(site_analyses, "run_analyses", killed)
    with pytest.raises(KeyboardInterrupt):
        build_site(open_kb(root), tmp_path / "out", search=False, jobs=2)
    assert multiprocessing.active_children() == []
