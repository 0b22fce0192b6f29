"""Records in studies/ against the verified fact sheet, so that an edit cannot silently change a sourced number.

Every record that came from ../shared/evidence/studies.yaml is compared field by field: bibliographic
fields, sample size, every stated or derived count, key finding, results and sources. Facts verified
after the fact sheet (PATCHED) are listed here with the field they changed, so a change is deliberate.
"""

from __future__ import annotations

import re

import pytest
import yaml

from kb.config import open_kb
from kb.load import load_studies

from .conftest import ROOT, SHARED

FACTS = SHARED / "evidence" / "studies.yaml"
pytestmark = pytest.mark.skipif(not FACTS.is_file(), reason=f"fact sheet not found at {FACTS} (../shared is absent)")

RENAMED = {"xiong-2020": "xiong-2021"}  # the id follows the print year (2021)
# fields filled or corrected from sources read after the fact sheet (see each record's sources)
PATCHED = {
    ("murrough-2013", "authors"), ("sanacora-2017", "authors"), ("sanacora-2017", "doi"), ("sanacora-2017", "issue"),
}
BIBLIO = ("title", "year", "journal", "volume", "issue", "pages", "doi", "pmid", "pmcid", "n_randomized")


@pytest.fixture(scope="module")
def facts() -> dict:
    return {r["id"]: r for r in yaml.safe_load(FACTS.read_text(encoding="utf-8"))}


@pytest.fixture(scope="module")
def studies() -> dict:
    report = load_studies(open_kb(ROOT))
    assert not [p for p in report.problems if p.severity == "error"]
    return {s.id: s for s in report.studies}


def _counts(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    events, total = text.split("/")
    return int(events), int(total)


def _arms(o) -> tuple:
    arms = tuple((a.events, a.total) for a in o.data.arms)
    return arms if len(arms) > 1 else (arms[0], None)


def test_every_fact_sheet_study_is_in_the_knowledge_base(facts, studies):
    missing = [i for i in facts if RENAMED.get(i, i) not in studies]
    assert not missing
    assert len(studies) >= 58


FACT_IDS = [r["id"] for r in yaml.safe_load(FACTS.read_text(encoding="utf-8"))] if FACTS.is_file() else []


@pytest.mark.parametrize("fact_id", FACT_IDS)
def test_record_matches_fact_sheet(facts, studies, fact_id):
    fact = facts[fact_id]
    s = studies[RENAMED.get(fact["id"], fact["id"])]
    for name in BIBLIO:
        if fact.get(name) is not None and (fact["id"], name) not in PATCHED:
            assert str(getattr(s, name)) == str(fact[name]), name
    if (fact["id"], "authors") not in PATCHED:
        assert s.authors == [a for a in fact["authors"] or [] if a != "et al."]
        assert s.authors_truncated == ("et al." in (fact["authors"] or []))
    assert s.key_finding == fact["key_finding"]
    assert [r for r in s.results if r in fact["results"]] == fact["results"], "results changed"
    urls = {src.url for src in s.sources}
    for entry in fact["sources"]:
        for url in re.findall(r"https?://\S+", entry):
            assert url in urls, url
    if fact["nct_id"]:
        assert s.registrations and s.registrations[0] in fact["nct_id"]
    # every count in the fact sheet, stated or derived, with its flag
    binary = [o for o in s.outcomes if o.data is not None and o.data.type == "binary"]
    for kind, flag in (("event_counts", None), ("derived_counts", "derived")):
        for c in fact[kind]:
            want = (_counts(c["ketamine"]), _counts(c["control"]))
            match = [o for o in binary if _arms(o) == want]
            assert match, f"{kind} {c} not found in the record's outcomes"
            if flag:
                assert all(o.counts == "derived" and o.derivation for o in match)
    if fact.get("do_not_pool_derived_counts"):
        assert all(not o.pool and o.pool_note for o in binary if o.counts == "derived")
    if fact.get("retracted"):
        assert s.retracted and s.retraction.notice == fact["retracted"]["notice"]
        assert s.retraction.date == str(fact["retracted"]["year"])


def test_only_the_retracted_study_is_retracted(studies):
    assert [s.id for s in studies.values() if s.retracted] == ["parsaik-2015"]


def test_route_labels(studies):
    """Non-IV and esketamine records are labelled so that an IV racemic search can exclude them."""
    assert studies["glue-2017"].intervention.route == "sc"
    assert studies["glue-2018"].intervention.route == "sc"
    for i in ("sigtermans-2009", "noppers-2011", "kiefer-2008"):
        assert studies[i].intervention.drug == "esketamine"
    for i in ("xiong-2021", "bahji-2021", "bahji-2022", "mcintyre-2021", "vankawala-2021"):
        assert studies[i].intervention.drug == "mixed"
    for i in ("xu-2016", "xiong-2021", "bahji-2021", "bahji-2022", "whittaker-2021", "almeida-2024"):
        assert studies[i].intervention.route == "mixed"
