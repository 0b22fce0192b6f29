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
