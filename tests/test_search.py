"""kb index and kb search on a copy of the bundled knowledge base."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from kb.config import open_kb
from kb.index import SearchIndex, analyzer
from kb.search import SearchRequest, search

from .conftest import BUNDLED, ROOT, bundled_copy, invoke


@pytest.fixture(scope="module")
def kbroot(tmp_path_factory) -> Path:
    """A copy of the bundled knowledge base with its index built once."""
    root = bundled_copy(tmp_path_factory.mktemp("ketamine-kb"))
    SearchIndex(open_kb(root)).refresh()
    return root


def _copy(tmp_path: Path) -> Path:
    return bundled_copy(tmp_path / "kb")


def run(runner, root, *args):
    return invoke(runner, "--kb", root, "search", *args)


def data(runner, root, *args) -> dict:
    result = run(runner, root, *args, "--format", "json")
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def ids(runner, root, *args) -> list[str]:
    result = run(runner, root, *args, "--format", "ids", "--limit", "100")
    return result.stdout.split()


def test_the_issue_example(runner, kbroot):
    result = run(runner, kbroot, "suicidal ideation rapid", "--condition", "depression", "--design", "rct")
    assert result.exit_code == 0, result.output
    d = data(runner, kbroot, "suicidal ideation rapid", "--condition", "depression", "--design", "rct")
    assert d["total"] >= 2
    for h in d["hits"]:
        assert h["design"] == "rct" and "depression" in h["conditions"]
        assert "<mark>" in h["snippet"]
    assert set(d["facets"]) == {"condition", "outcome", "design", "year"}
    assert d["facets"]["design"] == {"rct": d["total"]}
    # a study about rapid reduction of suicidal ideation ranks first
    assert d["hits"][0]["id"] in {"grunebaum-2018", "murrough-2015", "zolghadriha-2024"}


def test_json_contract(runner, kbroot):
    d = data(runner, kbroot, "ketamine", "--limit", "3")
    assert set(d) >= {"query", "total", "hits", "facets", "offset", "limit", "sort", "match", "suggestions", "notices"}
    hit = d["hits"][0]
    for key in ("id", "score", "title", "year", "design", "n", "conditions", "outcomes", "snippet", "retracted"):
        assert key in hit
    assert d["total"] == BUNDLED
    assert sum(d["facets"]["design"].values()) == BUNDLED


@pytest.mark.parametrize("query,expected", [
    ("TRD", "treatment-resistant depression"),
    ('"treatment-resistant depression"', "TRD"),
    ("PTSD", "posttraumatic stress disorder"),
    ("SI", "suicidal ideation"),
    ("ECT", "electroconvulsive therapy"),
    ("CRPS", "complex regional pain syndrome"),
    ("Spravato", "esketamine"),
])
def test_abbreviations_expand_both_ways(runner, kbroot, query, expected):
    found = set(ids(runner, kbroot, query))
    direct = set(ids(runner, kbroot, f'"{expected}"' if " " in expected else expected))
    assert found and direct and found & direct
    assert direct <= found or found <= direct or len(found & direct) >= 1


def test_ptsd_finds_the_ptsd_trials(runner, kbroot):
    found = ids(runner, kbroot, "PTSD")
    assert {"feder-2014", "feder-2021", "abdallah-2022"} <= set(found)


def test_esketamine_and_racemic_stay_distinct(runner, kbroot):
    open_kb(kbroot)
    found = ids(runner, kbroot, "esketamine")
    assert "noppers-2011" in found  # S-ketamine infusion trial
    assert "feder-2014" not in found and "murrough-2013" not in found  # racemic/unspecified, no esketamine
    for sid in found:
        text = (kbroot / "studies" / f"{sid}.yaml").read_text().lower()
        assert any(w in text for w in ("esketamine", "s-ketamine", "s(+)-ketamine", "spravato")), sid


def test_porter2_stemming():
    stem = [t.text for t in analyzer()("running randomized associations associated")]
    assert stem == ["run", "random", "associ", "associ"]


def test_word_families_match(runner, kbroot):
    assert set(ids(runner, kbroot, "randomised")) == set(ids(runner, kbroot, "randomized")) or \
        set(ids(runner, kbroot, "infusion")) == set(ids(runner, kbroot, "infusions"))
    assert set(ids(runner, kbroot, "infusion")) == set(ids(runner, kbroot, "infusions"))


def test_field_filters(runner, kbroot):
    d = data(runner, kbroot, "condition:ptsd design:rct,crossover-rct route:iv year:2014..2022", "--limit", "50")
    assert d["total"] >= 3
    for h in d["hits"]:
        assert "ptsd" in h["conditions"] and h["design"] in ("rct", "crossover-rct") and 2014 <= h["year"] <= 2022
    d = data(runner, kbroot, "n:>=100", "--limit", "100")
    assert d["total"] and all(h["n"] is not None and h["n"] >= 100 for h in d["hits"])


def test_options_equal_query_filters(runner, kbroot):
    a = ids(runner, kbroot, "ketamine condition:bipolar year:>=2015 n:>=13")
    b = ids(runner, kbroot, "ketamine", "--condition", "bipolar", "--year", ">=2015", "--min-n", "13")
    assert a == b and a


def test_boolean_operators(runner, kbroot):
    both = set(ids(runner, kbroot, "fibromyalgia AND CRPS"))
    either = set(ids(runner, kbroot, "fibromyalgia OR CRPS"))
    fib = set(ids(runner, kbroot, "fibromyalgia"))
    crps = set(ids(runner, kbroot, "CRPS"))
    assert both == fib & crps and either == fib | crps
    assert set(ids(runner, kbroot, "CRPS NOT fibromyalgia")) == crps - fib
    assert set(ids(runner, kbroot, "CRPS -fibromyalgia")) == crps - fib


def test_sorting_and_paging(runner, kbroot):
    years = [h["year"] for h in data(runner, kbroot, "depression", "--sort", "year", "--limit", "20")["hits"]]
    assert years == sorted(years, reverse=True)
    ns = [h["n"] for h in data(runner, kbroot, "depression", "--sort", "n", "--limit", "10")["hits"]]
    assert ns == sorted(ns, key=lambda n: -1 if n is None else n, reverse=True)
    rank = {"meta-analysis": 6, "systematic-review": 5, "rct": 4, "crossover-rct": 4, "consensus-statement": 3,
            "open-label": 2, "cohort": 2, "case-series": 1}
    designs = [h["design"] for h in data(runner, kbroot, "depression", "--sort", "evidence", "--limit", "40")["hits"]]
    assert [rank[d] for d in designs] == sorted((rank[d] for d in designs), reverse=True)
    first = ids(runner, kbroot, "depression", "--sort", "year")
    page = data(runner, kbroot, "depression", "--sort", "year", "--limit", "5", "--offset", "5")
    assert [h["id"] for h in page["hits"]] == first[5:10]


def test_retracted_is_marked_everywhere(runner, kbroot):
    d = data(runner, kbroot, "bipolar meta-analysis", "--limit", "50")
    hit = next(h for h in d["hits"] if h["id"] == "parsaik-2015")
    assert hit["retracted"] is True
    table = run(runner, kbroot, "parsaik")
    assert "RETRACTED" in table.output
    assert "retracted" in run(runner, kbroot, "parsaik", "--format", "csv").output.splitlines()[0] + "yes"
    assert "RETRACTED" in run(runner, kbroot, "parsaik", "--format", "bibtex").output
    assert "N1  - RETRACTED" in run(runner, kbroot, "parsaik", "--format", "ris").output


def test_no_results_exit_1_with_suggestion(runner, kbroot):
    result = run(runner, kbroot, "ketamnie")
    assert result.exit_code == 1
    assert "did you mean: ketamine" in result.output


def test_a_short_question_no_record_fully_matches_ranks_by_words_matched(runner, kbroot):
    d = data(runner, kbroot, "ketamine ptsdd")  # every record lacks 'ptsdd'
    assert d["match"] == "any" and d["total"] == BUNDLED
    assert d["notices"] == ["no record has every word of the query; records with the most of them come first"]
    assert d["suggestions"] == ["ptsd"]
    d = data(runner, kbroot, "ketamine ptsd", "--match", "all")
    assert d["notices"] == [] and d["match"] == "all"
    assert data(runner, kbroot, "ketamine ptsdd", "--match", "all")["total"] == 0  # asked for all: no fallback


@pytest.mark.parametrize("query,message", [
    ('"suicidal ideation', "unbalanced quote"),
    ("cond:ptsd", "unknown field 'cond'; did you mean 'condition'?"),
    ("year:20x5", "bad range 'year:20x5'"),
    ("year:2024..2015", "empty range"),
    ("condition:depresion", "did you mean 'depression'?"),
    ("(ketamine", "unbalanced parenthesis"),
])
def test_bad_queries_exit_2(runner, kbroot, query, message):
    result = run(runner, kbroot, query)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_unknown_field_lists_valid_ones(runner, kbroot):
    result = run(runner, kbroot, "flavour:sweet")
    assert "fields: condition, outcome, design" in result.output


def test_formats(runner, kbroot):
    csv = run(runner, kbroot, "PTSD", "--format", "csv").stdout.splitlines()
    assert csv[0] == "id,score,title,year,design,n,conditions,outcomes,retracted,doi,pmid"
    bib = run(runner, kbroot, "feder", "--format", "bibtex").stdout
    assert "@article{feder_2014," in bib and "doi = {10.1001/jamapsychiatry.2014.62}" in bib
    ris = run(runner, kbroot, "feder", "--format", "ris").stdout
    assert "TY  - JOUR" in ris and "DO  - 10.1001/jamapsychiatry.2014.62" in ris and ris.count("ER  - ") >= 1


def test_snippets_escape_record_text(runner, tmp_path):
    root = tmp_path / "kb"
    (root / "studies").mkdir(parents=True)
    (root / "studies" / "xss-2020.yaml").write_text(
        "id: xss-2020\ntitle: A <script>alert(1)</script> ketamine trial\nauthors: [Xss A]\nyear: 2020\n"
        "doi: 10.5555/xss\ndesign: rct\nabstract: <b>bold</b> ketamine & more\nsources: [https://example.org/x]\n"
        "added: 2024-01-01\n")
    d = data(runner, root, "ketamine", "--status", "any")  # a record without a status is a draft
    snippet = d["hits"][0]["snippet"]
    assert "<script>" not in snippet and "<b>" not in snippet
    assert "&lt;/b&gt;" in snippet and "&amp;" in snippet and "<mark>ketamine</mark>" in snippet


# -- keeping the index fresh -------------------------------------------------------------------


def test_incremental_refresh_by_content_hash(tmp_path):
    root = _copy(tmp_path)
    kb = open_kb(root)
    idx = SearchIndex(kb)
    first = idx.refresh()
    assert first.rebuilt and first.records == BUNDLED
    assert not idx.refresh()  # nothing changed: nothing to do
    # new mtime, same content (a git checkout): not re-indexed
    p = root / "studies" / "feder-2014.yaml"
    os.utime(p, ns=(1, 1))
    r = idx.refresh()
    assert (r.added, r.changed, r.deleted) == (0, 0, 0)
    # changed content with an OLDER mtime is still noticed
    st = p.stat()
    p.write_text(p.read_text().replace("proof-of-concept", "zanzibarian proof-of-concept"))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))
    r = idx.refresh()
    assert r.changed == 1
    assert [h.id for h in search(kb, SearchRequest(query="zanzibarian")).hits] == ["feder-2014"]
    # deleted and added files
    (root / "studies" / "feder-2014.yaml").unlink()
    shutil.copy(ROOT / "studies" / "feder-2014.yaml", root / "studies" / "feder-2014b.yaml")
    r = idx.refresh()
    assert (r.added, r.deleted) == (1, 1)
    res = search(kb, SearchRequest(query="zanzibarian"))
    assert res.total == 0
    # feder-2014b.yaml has id feder-2014: an error, so it is left out and said so
    res = search(kb, SearchRequest(query="ketamine", limit=100))
    assert res.total == BUNDLED - 1
    assert any("with errors left out" in n for n in res.notices)


def test_search_refreshes_automatically(runner, tmp_path):
    root = _copy(tmp_path)
    assert ids(runner, root, "quokka") == []
    p = root / "studies" / "su-2023.yaml"
    p.write_text(p.read_text().replace("key_finding: One ketamine", "key_finding: One quokka-friendly ketamine"))
    assert ids(runner, root, "quokka") == ["su-2023"]


def test_version_bump_rebuilds(tmp_path, monkeypatch):
    root = _copy(tmp_path)
    kb = open_kb(root)
    SearchIndex(kb).refresh()
    import kb.index as index_module

    monkeypatch.setattr(index_module, "INDEX_VERSION", index_module.INDEX_VERSION + 1)
    r = SearchIndex(kb).refresh()
    assert r.rebuilt and "format changed" in r.reason


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # Whoosh leaks a file handle
def test_corrupt_index_is_rebuilt_with_a_notice(runner, tmp_path):
    root = _copy(tmp_path)
    SearchIndex(open_kb(root)).refresh()
    for seg in (root / ".kb" / "index").glob("*.seg"):
        seg.write_bytes(b"garbage")
    result = run(runner, root, "PTSD")
    assert result.exit_code == 0, result.output
    # its seal no longer holds: rebuilt before Whoosh reads a byte of it
    assert "note: index rebuilt (index files changed since kb wrote them" in result.output


def test_missing_index_metadata_rebuilds(runner, tmp_path):
    root = _copy(tmp_path)
    SearchIndex(open_kb(root)).refresh()
    (root / ".kb" / "index" / "kb-index.json").unlink()
    result = run(runner, root, "PTSD")
    assert result.exit_code == 0
    assert "index rebuilt (index metadata missing or unreadable)" in result.output


def test_locked_index_is_a_clear_message_not_a_hang(runner, tmp_path):
    root = _copy(tmp_path)
    SearchIndex(open_kb(root)).refresh()
    p = root / "studies" / "su-2023.yaml"
    p.write_text(p.read_text().replace("key_finding: One ketamine", "key_finding: One wombat ketamine"))
    with SearchIndex(open_kb(root)).writing(wait=0):  # another kb process writing the index (.kb/index.lock)
        result = invoke(runner, "--kb", root, "index", "--wait", "0")
        assert result.exit_code == 1
        assert "the search index is busy: another kb process is writing it" in result.output
        searched = run(runner, root, "PTSD")
        assert searched.exit_code == 0
        assert "another kb process is updating the index" in searched.output
    assert ids(runner, root, "wombat") == ["su-2023"]


def test_kb_index_command(runner, tmp_path):
    root = _copy(tmp_path)
    first = invoke(runner, "--kb", root, "index")
    assert first.exit_code == 0 and f"indexed {BUNDLED} records" in first.output
    again = invoke(runner, "--kb", root, "index")
    assert f"index up to date: {BUNDLED} records" in again.output
    rebuilt = invoke(runner, "--kb", root, "index", "--rebuild")
    assert f"indexed {BUNDLED} records" in rebuilt.output and "--rebuild" in rebuilt.output


def test_parallel_build_matches_single(tmp_path, monkeypatch):
    """Shards built on two cores rank exactly like one index."""
    import kb.index as index_module

    one = _copy(tmp_path / "one")
    two = _copy(tmp_path / "two")
    SearchIndex(open_kb(one)).refresh(jobs=1)
    monkeypatch.setattr(index_module, "PARALLEL_MIN", 10)
    report = SearchIndex(open_kb(two)).refresh(jobs=2)
    assert report.shards == 2
    for q in ("suicidal ideation", "blood pressure dissociation", "PTSD midazolam"):
        a = search(open_kb(one), SearchRequest(query=q, match="any", limit=20))
        b = search(open_kb(two), SearchRequest(query=q, match="any", limit=20))
        assert [(h.id, h.score) for h in a.hits] == [(h.id, h.score) for h in b.hits]
        assert a.facets == b.facets and a.total == b.total


def test_shards_with_several_segments_search_as_one(tmp_path, monkeypatch):
    """After updates a shard holds several segments; all of them are searched, with exact ranking."""
    import kb.index as index_module

    monkeypatch.setattr(index_module, "PARALLEL_MIN", 10)
    root = _copy(tmp_path)
    kb = open_kb(root)
    SearchIndex(kb).refresh(jobs=2)
    for sid in ("su-2023", "feder-2014", "bloch-2012", "noppers-2011"):
        p = root / "studies" / f"{sid}.yaml"
        p.write_text(p.read_text().replace("key_finding: ", "key_finding: Okapi ", 1))
        SearchIndex(kb).refresh()
    reader = SearchIndex(kb).open_reader()
    try:
        assert len(reader.leaf_readers()) > 2
    finally:
        reader.close()
    res = search(kb, SearchRequest(query="okapi", limit=10))
    assert sorted(h.id for h in res.hits) == ["bloch-2012", "feder-2014", "noppers-2011", "su-2023"]
    full = search(kb, SearchRequest(query="ketamine depression", match="any", limit=5))
    assert full.total >= 40 and len(full.hits) == 5


def test_fast_stems_equal_whoosh_analysis():
    """kb's own analysis loop (used at index and query time) gives exactly Whoosh's stems."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from kb.index import stems

    ana = analyzer()

    @settings(max_examples=300, deadline=None)
    @given(st.text())
    def check(text):
        assert stems(text) == tuple(t.text for t in ana(text))

    check()
    for p in (ROOT / "studies").glob("*.yaml"):
        text = p.read_text()
        assert stems(text) == tuple(t.text for t in ana(text))


def test_postings_decoding_equals_whoosh(kbroot):
    """kb's one-read posting decoder returns exactly what Whoosh's matcher iterates."""
    from kb.engine import term_postings

    reader = SearchIndex(open_kb(kbroot)).open_reader()
    try:
        checked = 0
        for field in ("text", "phrases", "tags"):
            for raw in list(reader.lexicon(field))[:200]:
                term = raw.decode() if isinstance(raw, bytes) else raw
                ids, weights = term_postings(reader, field, term)
                m = reader.postings(field, term)
                expect_ids, expect_w = [], []
                while m.is_active():
                    expect_ids.append(m.id())
                    expect_w.append(m.weight())
                    m.next()
                assert list(ids) == expect_ids and list(weights) == [float(w) for w in expect_w], (field, term)
                checked += 1
        assert checked > 300
    finally:
        reader.close()


def test_python_and_numpy_scoring_agree(kbroot, monkeypatch):
    """Small result sets are scored in Python (no numpy import on a cold search); large ones with
    numpy. Both compute the same BM25 and give the same order."""
    import kb.engine.scoring as scoring_module

    kb = open_kb(kbroot)
    queries = ["ketamine depression", "suicidal ideation rapid", "blood pressure dissociation", "PTSD midazolam",
               '"single infusion" ketamine', '"randomized controlled" OR placebo']
    monkeypatch.setattr(scoring_module, "use_numpy", lambda postings, matches: False)
    python = [search(kb, SearchRequest(query=q, match="any", limit=30), refresh=False) for q in queries]
    monkeypatch.setattr(scoring_module, "use_numpy", lambda postings, matches: True)
    numpy = [search(kb, SearchRequest(query=q, match="any", limit=30), refresh=False) for q in queries]
    for a, b in zip(python, numpy):
        assert [(h.id, h.score) for h in a.hits] == [(h.id, h.score) for h in b.hits]
        assert a.total == b.total


def _segment_files(reader) -> list[dict[str, bytes]]:
    """The bytes of every file in every segment of an index (names without the random segment id)."""
    out = []
    for leaf in reader.leaf_readers():
        leaf = leaf[0] if isinstance(leaf, tuple) else leaf
        segment = leaf.segment()
        files = segment.open_compound_file(leaf.storage())
        contents = {}
        for name in files.list():
            with files.open_file(name) as f:
                contents[name.replace(segment.segid, "")] = f.read()
        out.append(contents)
    return out


@pytest.mark.parametrize("blocklimit", [128, 4])
def test_bulk_writer_writes_what_whoosh_writes(tmp_path, monkeypatch, blocklimit):
    """A full build uses kb's lean bulk writer; the index it writes holds exactly what Whoosh's own
    writer writes from the same records, byte for byte: every file of every segment (terms, postings
    with positions and block statistics, lengths, stored fields, columns). A small block limit makes
    posting lists span several blocks, as they do in large knowledge bases."""
    from whoosh.codec.whoosh3 import W3Codec

    import kb.engine.writer as writer_module

    monkeypatch.setattr(W3Codec.__init__, "__defaults__", (blocklimit, *W3Codec.__init__.__defaults__[1:]))

    monkeypatch.setattr(writer_module, "SEGMENT_DOCS", 25)  # several segments per shard
    bulk, plain = _copy(tmp_path / "bulk"), _copy(tmp_path / "plain")
    SearchIndex(open_kb(bulk)).refresh(jobs=1)
    monkeypatch.setattr(writer_module, "bulk_writer", lambda ix, **kw: ix.writer(**kw))
    SearchIndex(open_kb(plain)).refresh(jobs=1)
    readers = [SearchIndex(open_kb(root)).open_reader() for root in (bulk, plain)]
    try:
        assert sum(r.doc_count_all() for r in readers) == 2 * len(list((bulk / "studies").glob("*.yaml")))
        a, b = (_segment_files(r) for r in readers)
        assert len(a) == -(-BUNDLED // 25) and {".pst", ".trm", "._stored.col", "._text_len.col"} <= {n[n.index("."):] for n in a[0]}
        assert a == b
    finally:
        for r in readers:
            r.close()


@pytest.mark.parametrize("query", ["(" * 300 + "ketamine" + ")" * 300, "NOT " * 3000 + "ketamine",
                                   "- " * 3000 + "ketamine", "(" * 40 + "ketamine"])
def test_a_query_nested_too_deep_is_a_usage_error(runner, tmp_path, query):
    """Reliability issue, defect 11: a query nested 300 deep (or 3,000 NOTs) gave an internal RecursionError."""
    root = bundled_copy(tmp_path)
    result = invoke(runner, "--kb", root, "search", "--", query)
    assert result.exit_code == 2, result.output
    assert "nested" in result.output and "at most 32 deep" in result.output and "internal error" not in result.output
    ok = invoke(runner, "--kb", root, "search", "((ketamine AND (ECT OR electroconvulsive)) NOT esketamine)")
    assert ok.exit_code == 0, ok.output
