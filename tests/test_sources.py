"""Source classes: the URL classifier, a record's stated class, and what an outcome's numbers rest on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kb.records import validate_data
from kb.sources import (CLASSES, classify_url, host_of, is_bare_ip, outcome_sources, rests_only_on,
                        source_info, urls_in, WARN_CLASSES, WEAK_CLASSES)
from kb.vocab import load_vocabulary

from .conftest import FIXTURES, ROOT, invoke

TABLE = [
    # PubMed and PMC, whichever host spells them
    ("https://pubmed.ncbi.nlm.nih.gov/23982301/", "pubmed-pmc"),
    ("https://www.ncbi.nlm.nih.gov/pubmed/31082965", "pubmed-pmc"),
    ("https://www.ncbi.nlm.nih.gov/pmc/articles/PMC4851268/", "pubmed-pmc"),
    ("https://pmc.ncbi.nlm.nih.gov/articles/PMC8434915/table/CD011612-tbl-0001", "pubmed-pmc"),
    ("https://www.pubmed.gov/35510346/", "pubmed-pmc"),
    ("https://europepmc.org/article/MED/23982301", "pubmed-pmc"),
    ("https://www.ncbi.nlm.nih.gov/books/NBK1/", "other"),  # NCBI, but neither PubMed nor PMC
    # registries, their results pages included
    ("https://clinicaltrials.gov/ct2/show/NCT00579085", "registry"),
    ("https://classic.clinicaltrials.gov/ct2/show/results/NCT01920555", "registry"),
    ("https://www.isrctn.com/ISRCTN12345678", "registry"),
    ("https://www.anzctr.org.au/Trial/Registration/TrialReview.aspx?ACTRN=12612000123456", "registry"),
    # DOI resolvers
    ("https://doi.org/10.1176/appi.ajp.2013.13030392", "doi"),
    ("http://dx.doi.org/10.3389/fpsyt.2021.549080", "doi"),
    ("https://www.doi.org/10.1176/APPI.AJP.2015.15040465", "doi"),
    # preprints and conference abstracts
    ("https://medrxiv.org/content/10.1101/2023.04.28.23289210v2.full.txt", "preprint-or-conference"),
    ("https://www.biorxiv.org/content/10.1101/1", "preprint-or-conference"),
    ("https://www.researchsquare.com/article/rs-1/v1", "preprint-or-conference"),
    ("https://papers.ssrn.com/sol3/papers.cfm?abstract_id=1", "preprint-or-conference"),
    # press releases
    ("https://www.prnewswire.com/news-releases/x.html", "press-release"),
    ("https://www.businesswire.com/news/home/1/en/", "press-release"),
    ("https://www.globenewswire.com/news-release/2020/01/01/1/0/en/x.html", "press-release"),
    ("https://press-news.org/103816-ketamine-shows-significant-therapeutic-benefit.html", "press-release"),
    # publishers
    ("https://jamanetwork.com/journals/jamapsychiatry/article-abstract/2605202", "journal"),
    ("http://archpsyc.jamanetwork.com/article.aspx?articleid=1860851", "journal"),
    ("https://www.thelancet.com/journals/lanpsy/article/PIIS2215-0366(20)30001-1/fulltext", "journal"),
    ("https://www.nejm.org/doi/full/10.1056/NEJMoa2302399", "journal"),
    ("https://www.bmj.com/content/1/bmj.1", "journal"),
    ("https://ajp.psychiatryonline.org/doi/full/10.1176/appi.ajp.2020.20050596", "journal"),
    ("https://www.sciencedirect.com/science/article/abs/pii/S000632230901097X", "journal"),
    ("https://link.springer.com/article/10.1007/x", "journal"),
    ("https://onlinelibrary.wiley.com/doi/10.1111/bdi.12487", "journal"),
    ("https://www.tandfonline.com/doi/full/10.1080/x", "journal"),
    ("https://www.nature.com/articles/s41380-018-0256-5", "journal"),
    ("https://academic.oup.com/ijnp/article/26/5/331/7069253", "journal"),
    ("http://core-cms.prod.aop.cambridge.org/core/journals/psychological-medicine/article/x", "journal"),
    ("https://www.frontiersin.org/journals/psychiatry/articles/10.3389/fpsyt.2021.549080/full", "journal"),
    ("https://www.mdpi.com/2077-0383/1/1/1", "journal"),
    ("https://journals.lww.com/pain/Abstract/2009/12150/x.21.aspx", "journal"),
    ("https://journals.sagepub.com/doi/10.1177/x", "journal"),
    ("https://karger.com/psp/article/1/1/1", "journal"),
    ("https://www.dovepress.com/x-peer-reviewed-fulltext-article-NDT", "journal"),
    ("https://bmcpsychiatry.biomedcentral.com/articles/10.1186/s12888-024-05716-0", "journal"),
    # copies of documents, mirrors and archives
    ("https://www.scribd.com/document/143076815/Ketamine-Abstract", "copy"),
    ("https://tr.scribd.com/document/400381610/Npp-2017194", "copy"),
    ("https://vdocuments.pub/ni-hms-572203.html", "copy"),
    ("https://docslib.org/doc/1927268/x", "copy"),
    ("https://d.docksci.com/x.html", "copy"),
    ("https://web.archive.org/web/2016/https://example.org/", "copy"),
    ("http://wayback.clockss.org:8000/wayback/20151219065800/http://mdc.sagepub.com/x", "copy"),
    ("https:///distantreader.org/stacks/cord/cord-1030899-zav2vohl.txt", "copy"),  # three slashes, as written
    # clinics and sellers, by the words in their host
    ("https://mindscapeketamine.com/a-randomized-add-on-trial/", "commercial"),
    ("https://citclinics.com/science-research/x/", "commercial"),
    # what no rule knows, and bare IP addresses
    ("https://www.semanticscholar.org/paper/x/acb841616901f46541384f2bca2579c68e814a48", "other"),
    ("https://www.medscape.com/viewarticle/914701", "other"),
    ("http://47.251.13.51:8081/33022440", "other"),
    ("http://[2001:db8::1]/x", "other"),
    ("https://notjamanetwork.com/x", "other"),  # a parent domain matches whole labels only
]


@pytest.mark.parametrize("url, cls", TABLE)
def test_classify_url(url, cls):
    assert classify_url(url) == cls


def test_bare_ip_addresses_are_flagged():
    assert is_bare_ip("http://47.251.13.51:8081/33022440")
    assert is_bare_ip("http://79.170.44.78/hostdoctordemo.co.uk/downloads/vpn/index.php?q=x")
    assert is_bare_ip("http://[2001:db8::1]/x")
    assert not is_bare_ip("https://pubmed.ncbi.nlm.nih.gov/23982301/")
    assert not is_bare_ip("https://1.2.3.4.example.org/")
    assert host_of("https://WWW.Nature.com:443/articles/x") == "nature.com"


def test_the_vocabulary_holds_every_class_and_weak_classes_are_classes():
    vocab = load_vocabulary()
    assert vocab.terms("source_class") == list(CLASSES)
    assert WARN_CLASSES <= WEAK_CLASSES <= set(CLASSES)


def _study(**extra):
    data = yaml.safe_load((ROOT / "studies" / "murrough-2013.yaml").read_text(encoding="utf-8"))
    data.update(extra)
    return validate_data(data)


def test_a_stated_class_overrides_the_computed_one():
    s = _study(sources=[{"url": "https://example.org/a", "class": "press-release", "note": "hospital news"},
                        "https://pubmed.ncbi.nlm.nih.gov/23982301/"])
    first, second = (source_info(x) for x in s.sources)
    assert (first.cls, first.stated, first.note, first.weak) == ("press-release", True, "hospital news", True)
    assert (second.cls, second.stated, second.weak) == ("pubmed-pmc", False, False)


def test_urls_in_free_text():
    assert urls_in("Table 1 (https://pmc.ncbi.nlm.nih.gov/articles/PMC1/table/T1).") == [
        "https://pmc.ncbi.nlm.nih.gov/articles/PMC1/table/T1"]
    assert urls_in("abstract") == []
    assert urls_in(None) == []


def test_what_an_outcomes_numbers_rest_on():
    s = _study()
    response = s.outcomes[0]  # its source: the press release
    infos = outcome_sources(response, s.sources)
    assert [i.cls for i in infos] == ["press-release"]
    assert rests_only_on(infos, WARN_CLASSES)
    # without a URL in its source text, an outcome rests on all the record's sources
    response.source = "abstract"
    infos = outcome_sources(response, s.sources)
    assert len(infos) == len(s.sources) and not rests_only_on(infos, WARN_CLASSES)
    # a URL the record lists takes the class stated there
    s = _study(sources=[{"url": "https://example.org/table", "class": "journal"}])
    response = s.outcomes[0]
    response.source = "Table 2 (https://example.org/table/)"
    assert [i.cls for i in outcome_sources(response, s.sources)] == ["journal"]
    assert not rests_only_on([], WARN_CLASSES)


SOURCES = FIXTURES / "sources"


def test_validate_warns_about_weak_sources_and_refuses_bare_ips_and_unplaced_numbers(runner):
    result = invoke(runner, "validate", SOURCES, "--format", "json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    got = [(Path(p["file"]).name, p["line"], p["field"], p["code"], p["severity"]) for p in report["problems"]]
    assert got == [
        ("commercial-2021.yaml", 18, "outcomes[0].source", "no-source", "error"),  # 'abstract' names no page
        ("commercial-2021.yaml", 18, "outcomes[0].source", "weak-source", "warning"),  # the record's sources
        ("weak-2020.yaml", 18, "outcomes[0].source", "weak-source", "warning"),  # a press release
        ("weak-2020.yaml", 38, "outcomes[2].source", "weak-source", "warning"),  # a clinic's page
        ("weak-2020.yaml", 48, "outcomes[3].source", "no-source", "error"),  # "the clinic's summary": no page
        ("weak-2020.yaml", 54, "sources[2]", "bare-ip", "error"),
    ]  # remission cites PubMed; dissociation names no URL, so it rests on every source, PubMed among them
    by = {(Path(p["file"]).name, p["field"], p["code"]): p for p in report["problems"]}
    p = by[("weak-2020.yaml", "outcomes[0].source", "weak-source")]
    assert p["message"] == ("these numbers rest only on a press release (its `source`: "
                            "https://www.prnewswire.com/news-releases/ketamine-trial-results.html)")
    assert "PubMed" in p["hint"]
    assert "a press release and a commercial or clinic site (the record's sources:" in \
        by[("commercial-2021.yaml", "outcomes[0].source", "weak-source")]["message"]
    bare = by[("weak-2020.yaml", "sources[2]", "bare-ip")]
    assert "http://192.0.2.7:8081/12345678 is a bare IP address" in bare["message"]
    assert "https://pubmed.ncbi.nlm.nih.gov/<PMID>/" in bare["hint"]
    assert by[("weak-2020.yaml", "outcomes[3].source", "no-source")]["message"] == \
        "the source 'the clinic's summary' names no page"


def test_kb_show_lists_each_sources_class(runner, tmp_path):
    from .conftest import new_kb

    root = new_kb(tmp_path / "kb", ("murrough-2013", "bahji-2021"))
    out = invoke(runner, "--kb", root, "show", "murrough-2013").output
    assert ("  - [Press release; weak source] https://press-news.org/103816-ketamine-shows-significant-therapeutic-"
            "benefit-in-people-with-treatment-resistant-depression.html") in out
    assert "  - [PubMed or PMC] https://pmc.ncbi.nlm.nih.gov/articles/PMC4851268/table/T2" in out
    assert ("  - [Commercial or clinic site; weak source] https://www.betterucare.com/post/"
            "antidepressant-efficacy-of-ketamine-in-treatment-resistant-major-depression-a-two-site-randomized-"
            "controlled-trial (ketamine therapy company's blog reposting the abstract (extra source; no numbers taken "
            "from it))") in out
    out = invoke(runner, "--kb", root, "show", "bahji-2021").output
    assert "  - [PubMed or PMC] https://pubmed.ncbi.nlm.nih.gov/33022440/ (PubMed record (first read on a mirror))" in out
