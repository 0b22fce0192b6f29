"""Records in studies/ against the verified fact sheet, so that an edit cannot silently change a sourced number."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kb.config import open_kb
from kb.store import load_study

from .conftest import ROOT, SHARED

FACTS = SHARED / "evidence" / "studies.yaml"
pytestmark = pytest.mark.skipif(not FACTS.is_file(), reason=f"fact sheet not found at {FACTS} (../shared is absent)")


@pytest.fixture(scope="module")
def facts() -> dict:
    return {r["id"]: r for r in yaml.safe_load(FACTS.read_text(encoding="utf-8"))}


@pytest.fixture(scope="module")
def kb():
    return open_kb(ROOT)


def _counts(text: str) -> tuple[int, int]:
    events, total = text.split("/")
    return int(events), int(total)


BIBLIO = ("title", "year", "journal", "doi", "pmid")


@pytest.mark.parametrize("study_id", ["su-2023", "parsaik-2015", "feder-2014"])
def test_bibliographic_fields_match(kb, facts, study_id):
    fact, s = facts[study_id], load_study(kb, study_id)
    for name in BIBLIO:
        if fact.get(name) is not None:
            assert str(getattr(s, name)) == str(fact[name]), name
    for name in ("volume", "issue", "pages", "n_randomized"):
        if fact.get(name) is not None:
            assert str(getattr(s, name)) == str(fact[name]), name
    real_authors = [a for a in fact["authors"] or [] if a != "et al."]
    assert s.authors == real_authors
    assert s.authors_truncated == ("et al." in (fact["authors"] or []))
    assert {src.url for src in s.sources} >= {u for u in fact["sources"] if " " not in u}


def test_su_2023_stated_counts(kb, facts):
    s = load_study(kb, "su-2023")
    fact_counts = {(c["timepoint"], _counts(c["ketamine"]), _counts(c["control"])) for c in facts["su-2023"]["event_counts"]}
    ours = set()
    for o in s.outcomes:
        assert o.counts == "stated"
        k, c = o.data.arms
        ours.add(((k.events, k.total), (c.events, c.total)))
    assert ours == {(k, c) for _, k, c in fact_counts}


def test_retraction_recorded(kb, facts):
    s = load_study(kb, "parsaik-2015")
    fact = facts["parsaik-2015"]["retracted"]
    assert s.retracted and fact["retracted"]
    assert s.retraction.date == str(fact["year"])
    assert s.retraction.notice == fact["notice"]
