"""Screening (issue 19, part 1): the search log, the screening set, decisions, dual blind screening.

Tests use real files on disk and the CLI (CliRunner); those on the shared exports skip, saying why,
when ../shared/data is absent.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pytest

from kb import files
from kb.config import DEFAULT_EXCLUSION_REASONS, open_kb
from kb.errors import ConfigError
from kb.screening import store
from kb.screening.store import Decision

from .conftest import invoke, new_kb, shared_data


# -- step 1: the data model ---------------------------------------------------------------------


def test_reference_keys_prefer_doi_then_pmid_then_a_stable_hash():
    assert store.reference_key({"doi": "10.1000/ABC", "pmid": "1"}) == "doi:10.1000/abc"
    assert store.reference_key({"pmid": "123"}) == "pmid:123"
    a = store.reference_key({"title": "Ketamine for depression.", "year": 2013, "authors": ["Murrough JW"]})
    b = store.reference_key({"title": "KETAMINE  for Depression", "year": 2013, "authors": ["Murrough J"]})
    c = store.reference_key({"title": "Ketamine for depression", "year": 2014, "authors": ["Murrough JW"]})
    assert a.startswith("t:") and a == b and a != c
    assert store.reference_key({}).startswith("t:")  # no field at all still has a key


def _append_many(path: str, tag: str, n: int) -> None:
    for i in range(n):
        files.append_line(Path(path), json.dumps({"tag": tag, "i": i, "pad": "x" * 500}))


def test_concurrent_appends_never_interleave_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(path), t, 200)) for t in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    lines = path.read_text().splitlines()
    assert len(lines) == 400
    got = [json.loads(x) for x in lines]
    for t in "ab":
        assert [g["i"] for g in got if g["tag"] == t] == list(range(200))


def test_append_after_a_torn_last_line_starts_a_new_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"key":"a"}\n{"key":"b","dec')  # a crash mid-line
    files.append_line(path, '{"key":"c"}')
    assert path.read_text().splitlines()[-1] == '{"key":"c"}'


def _log_one(root: str, i: int) -> None:
    kb = open_kb(root)

    def make(log, new_id):
        return {"id": new_id("PubMed"), "database": "PubMed", "file": f"f{i}.xml", "found": i}

    store.log_search(kb, make)


def test_concurrent_search_logging_keeps_every_entry(tmp_path):
    root = new_kb(tmp_path / "kb")
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_log_one, args=(str(root), i)) for i in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    log = store.read_log(open_kb(root))
    assert sorted(s["found"] for s in log.searches) == list(range(8))
    assert len({s["id"] for s in log.searches}) == 8


def test_a_search_s_references_are_written_once(tmp_path):
    kb = open_kb(new_kb(tmp_path / "kb"))
    store.write_references(kb, "001-pubmed", ['{"key":"pmid:1","n":1}'])
    with pytest.raises(store.ScreeningError, match="already exists"):
        store.write_references(kb, "001-pubmed", ['{"key":"pmid:2","n":1}'])
    assert list(store.read_references(kb)) == ["pmid:1"]


def test_a_hand_edited_search_log_error_names_file_line_and_field(tmp_path):
    root = new_kb(tmp_path / "kb")
    (root / "searches.yaml").write_text("searches:\n- id: 001-pubmed\n  found: lots\n")
    with pytest.raises(store.ScreeningError, match=r"searches.yaml:3:\d+: searches.0.found: must be a whole number"):
        store.read_log(open_kb(root))
    (root / "searches.yaml").write_text("searches: []\nother_methods:\n  pigeons: 3\n")
    with pytest.raises(store.ScreeningError, match="unknown method"):
        store.read_log(open_kb(root))


def test_a_decision_line_that_no_longer_parses_is_named_and_the_rest_kept(tmp_path):
    kb = open_kb(new_kb(tmp_path / "kb"))
    store.append_decision(kb, Decision("pmid:1", "title-abstract", "include", "Ann", "2026-12-06T00:00:00Z"))
    path = store.reviewer_file(kb, "Ann")
    with open(path, "a") as fh:
        fh.write('{"key": "pmid:2", "stage": "title-abstract", "decision": "yes please"\n')
        fh.write('{"key":"pmid:3","stage":"full-text","decision":"maybe","time":"t","reviewer":"Ann"}\n')
    store.append_decision(kb, Decision("pmid:4", "title-abstract", "exclude", "Ann", "2026-12-06T00:00:01Z"))
    got = store.read_decisions(kb)
    assert [d.key for d in got.lines] == ["pmid:1", "pmid:4"]
    assert len(got.problems) == 2 and f"{path}:2:" in got.problems[0] and "not one of the full-text" in got.problems[1]


def test_undo_withdraws_the_last_decision():
    lines = [Decision("k", "title-abstract", d, "Ann", "t") for d in ("exclude", "include", "undo")]
    eff = dict(store.iter_effective(lines))
    assert eff[("Ann", "k", "title-abstract")].decision == "exclude"


def test_exclusion_reasons_default_and_from_kb_yaml(tmp_path):
    root = new_kb(tmp_path / "kb")
    assert open_kb(root).exclusion_reasons == DEFAULT_EXCLUSION_REASONS
    (root / "kb.yaml").write_text("title: T\nscreening:\n  exclusion_reasons: [not ketamine, not IV]\n")
    assert open_kb(root).exclusion_reasons == ("not ketamine", "not IV")
    (root / "kb.yaml").write_text("title: T\nscreening:\n  exclusion_reasons: [a, a]\n")
    with pytest.raises(ConfigError, match=r"kb.yaml:3:\d+: screening.exclusion_reasons.1: 'a' is listed twice"):
        open_kb(root)
    (root / "kb.yaml").write_text("title: T\nscreening:\n  reasons: [a]\n")
    with pytest.raises(ConfigError, match="unknown key"):
        open_kb(root)


# -- step 2: kb import into the screening set --------------------------------------------------

FIX = Path(__file__).parent / "fixtures" / "imports"


def _studies(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "studies").glob("*.yaml"))}


def _imp(runner, root, *args, code=0):
    r = invoke(runner, "--kb", root, "import", *args, "--report", "json")
    assert r.exit_code == code, r.output
    return json.loads(r.stdout)


def test_import_goes_to_the_screening_set_and_logs_the_search(runner, tmp_path):
    root = new_kb(tmp_path / "kb")
    f = FIX / "ris_asreview_drafts.ris"
    before = _studies(root)
    rep = _imp(runner, root, f, "--database", "Embase", "--date-searched", "2026-11-30", "--query", "ketamine AND iv")
    assert _studies(root) == before  # studies/ untouched
    s = rep["searches"][0]
    assert s["new"] >= 1 and s["new"] + s["duplicate"] + s["failed"] == s["found"]
    log = store.read_log(open_kb(root))
    (entry,) = log.searches
    assert entry["id"] == s["search"] == "001-embase"
    assert entry["database"] == "Embase" and entry["date_searched"] == "2026-11-30"
    assert entry["query"] == "ketamine AND iv" and entry["file"] == f.name
    assert entry["sha256"] == __import__("hashlib").sha256(f.read_bytes()).hexdigest()
    assert (entry["found"], entry["new"], entry["duplicates"]) == (s["found"], s["new"], s["duplicate"])
    refs = store.read_references(open_kb(root))
    assert len(refs) == s["new"]
    lines = (root / entry["references"]).read_text().splitlines()
    assert len(lines) == s["new"] and all(json.loads(x)["key"] in refs for x in lines)


def test_reimporting_changes_nothing_and_an_excluded_reference_never_comes_back(runner, tmp_path):
    root = new_kb(tmp_path / "kb")
    f = FIX / "ris_asreview_drafts.ris"
    _imp(runner, root, f)
    snapshot = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and ".kb" not in p.parts}
    rep = _imp(runner, root, f)
    assert rep["searches"][0]["already_imported_as"] == "001-search"
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and ".kb" not in p.parts} == snapshot
    # the same references in a different file (other bytes): all duplicates of the screening set
    other = tmp_path / "again.ris"
    other.write_bytes(f.read_bytes() + b"\n")
    n = len(store.read_references(open_kb(root)))
    rep = _imp(runner, root, other)
    s = rep["searches"][0]
    assert s["new"] == 0 and s["duplicate_of"]["screening_set"] == s["found"] - s["failed"] == n
    assert len(store.read_references(open_kb(root))) == n
    assert len(store.read_log(open_kb(root)).searches) == 2  # the search is logged, with its counts


def test_duplicates_of_studies_are_counted(runner, tmp_path):
    root = new_kb(tmp_path / "kb")
    f = FIX / "ris_asreview_drafts.ris"
    _imp(runner, root, "--as-draft", f)
    drafts = _studies(root)
    assert drafts
    rep = _imp(runner, root, f)
    s = rep["searches"][0]
    assert s["duplicate_of"]["studies"] == len(drafts) and s["new"] == 0
    assert _studies(root) == drafts


def test_update_needs_as_draft(runner, tmp_path):
    root = new_kb(tmp_path / "kb")
    r = invoke(runner, "--kb", root, "import", FIX / "ris_asreview_drafts.ris", "--update")
    assert r.exit_code == 2 and "--as-draft" in r.output


def test_dry_run_writes_nothing(runner, tmp_path):
    root = new_kb(tmp_path / "kb")
    rep = _imp(runner, root, FIX / "ris_asreview_drafts.ris", "--dry-run")
    assert rep["totals"]["new"] >= 1 and not (root / "searches.yaml").exists() and not (root / "screening").exists()


def test_van_de_schoot_export_enters_the_screening_set_whole(runner, tmp_path):
    """Issue 19's 'done when': the export into a copy of the bundled knowledge base, studies/ unchanged,
    every row accounted for (its 15 rows with no year are screenable), and a re-import changes nothing."""
    from .conftest import bundled_copy

    path = shared_data("asreview_van_de_Schoot_2017/van_de_Schoot_2017.DERIVED_from_xlsx.csv")
    root = tmp_path / "kb"
    bundled_copy(root)
    before = _studies(root)
    r = invoke(runner, "--kb", root, "import", path, "--database", "PsycINFO", "--report", "json")
    assert r.exit_code in (0, 1), r.output
    rep = json.loads(r.stdout)
    s = rep["searches"][0]
    assert s["found"] == 6189 and s["failed"] == 0
    assert s["new"] + s["duplicate"] == 6189
    import csv

    with open(path, encoding="utf-8-sig", newline="") as fh:
        no_year = sum(1 for row in csv.DictReader(fh) if not (row.get("year") or "").strip())
    assert no_year >= 15  # the rows `kb import --as-draft` fails for want of a year (issue 19 counts 15)
    assert 1 <= s["no_year"] <= no_year  # the others are duplicates, counted; none failed
    assert _studies(root) == before
    refs = store.read_references(open_kb(root))
    assert len(refs) == s["new"]
    size = (root / store.read_log(open_kb(root)).searches[0]["references"]).stat().st_size
    print(f"van de Schoot: {s['new']} references, {size:,} bytes in the screening set, "
          f"{size / s['new']:.0f} bytes each; {s['duplicate']} duplicates")
    r = invoke(runner, "--kb", root, "import", path, "--report", "json")
    assert json.loads(r.stdout)["searches"][0]["already_imported_as"] == s["search"]
