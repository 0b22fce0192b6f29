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
    ("feder-2014", "authors"),  # the full 12-author list from the JAMA Psychiatry page
    ("dadabayev-2020", "authors"),  # the 7th author (Liberzon I) from the PMC page
}
# Sources the evidence issue replaced with a primary page (or dropped as copies, clinic pages and forum posts
# once the numbers were found on a primary page), each with why. A bare-IP mirror of PubMed
# (http://<ip>/<PMID>) must be replaced by https://pubmed.ncbi.nlm.nih.gov/<PMID>/ (checked by rule below).
REPLACED = {
    ("mandal-2019", "http://79.170.44.78/hostdoctordemo.co.uk/downloads/vpn/index.php?q=aHR0cHM6Ly93d3cubmNiaS5ubG0ubmloLmdvdi9wbWMvYXJ0aWNsZXMvUE1DNjc2NzgxNi8%3D"):
        "https://pmc.ncbi.nlm.nih.gov/articles/PMC6767816/",  # the proxy's target, decoded
    ("dean-2021", "https://pmc.ncbi.nlm.nih.gov/articles/PMC8434915/table/CD011612-tbl-0002/?term=%22Cochrane+Database+Syst+Rev%22%5Bjour%5D"):
        "https://pmc.ncbi.nlm.nih.gov/articles/PMC8434915/table/CD011612-tbl-0002",  # without the search string
    ("abdallah-2022", "https:///distantreader.org/stacks/cord/cord-1030899-zav2vohl.txt"): "https://pubmed.ncbi.nlm.nih.gov/35046508/",
    ("abdallah-2022", "http://www.nature.com/articles/s41386-022-01266-9"): "https://www.nature.com/articles/s41386-022-01266-9",
}
DROPPED = {
    ("zarate-2006", "https://www.semanticscholar.org/paper/Antidepressant-effects-of-ketamine-in-depressed-Berman-Cappiello/acb841616901f46541384f2bca2579c68e814a48"):
        "the page is Berman 2000's, not this trial's",
    ("anand-2023", "https://myhsn.co.uk/ketamine-versus-ect-for-nonpsychotic-major-depression"): "a blog; numbers now cite PubMed",
    ("grunebaum-2018", "https://ichgcp.net/clinical-trials-registry/publications/55527-ketamine-for-rapid-reduction-of-suicidal-thoughts-in-major-depression-a-midazolam-controlled"):
        "a copy; the registry and the journal abstract are cited instead",
    ("diazgranados-2010", "https://mindscapeketamine.com/a-randomized-add-on-trial-of-an-n-methyl-d-aspartate-antagonist-in-treatment-resistant-bipolar-depression/"):
        "a clinic's copy of the abstract; PMC3000408 is cited",
    ("dadabayev-2020", "https://suppr.wilddata.cn/browses/detail/pubmed/33426410"): "an aggregator's copy of PubMed",
    ("taylor-2018", "https://tr.scribd.com/document/400381610/Npp-2017194"): "a copy; PMC5729569 is cited",
    ("taylor-2018", "https://citclinics.com/science-research/ketamine-for-social-anxiety-disorder-a-randomized-placebo-controlled-crossover-trial/"):
        "a clinic's page; PMC5729569 is cited",
    ("rodriguez-2013", "https://citclinics.com/science-research/randomized-controlled-crossover-trial-of-ketamine-in-obsessive-compulsive-disorder-proof-of-concept/"):
        "a clinic's page; PMC3799067 is cited",
    ("schwartzman-2009", "https://www.neurotalk.org/574849-post1.html"): "a patient-forum post",
    ("sigtermans-2009", "https://tomorrow.paperai.life/https://www.scribd.com/document/685452784/Ketamine-produces-effective-and-long-term-pain-relief-in-patients-with-Complex-Regional-Pain-Syndrome-Type-1"):
        "a proxy of a copy; PubMed and the journal's abstract are cited",
    ("pickering-2020", "https://docslib.org/doc/1927268/ketamine-and-magnesium-for-refractory-neuropathic-pain"): "a copy; the journal's page is cited",
    ("pickering-2020", "https://consensus.app/papers/ketamine-magnesium-refractory-neuropathic-pain-pickering/1ec33202f08a5adb9574d607da95b47d/"):
        "an aggregator; the journal's page is cited",
}
# results the evidence issue removed, each with why (the start of the fact sheet's text)
RESULTS_DROPPED = {
    ("zarate-2006", "Secondary summary (Semantic Scholar TLDR)"): "it rested on Berman 2000's page",
    ("feder-2021", "Responders (>=30% CAPS-5 reduction per press release)"): "replaced by the journal abstract's 67% and 20%",
}
BARE_IP_PUBMED = re.compile(r"^http://\d+\.\d+\.\d+\.\d+:\d+/(\d+)$")
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
    kept = [r for r in fact["results"] if not any((fact["id"], p) in RESULTS_DROPPED and r.startswith(p)
                                                  for p in (r[:len(k[1])] for k in RESULTS_DROPPED))]
    assert [r for r in s.results if r in kept] == kept, "results changed"
    urls = {src.url for src in s.sources}
    for entry in fact["sources"]:
        for url in re.findall(r"https?://\S+", entry):
            if (fact["id"], url) in DROPPED:
                assert url not in urls
                continue
            mirror = BARE_IP_PUBMED.match(url)
            if mirror:  # a bare-IP mirror of PubMed became the PubMed page of the same record
                assert mirror.group(1) == str(s.pmid) and f"https://pubmed.ncbi.nlm.nih.gov/{s.pmid}/" in urls, url
                continue
            assert REPLACED.get((fact["id"], url), url) in urls, url
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
