"""kb import and kb export, as a reviewer uses them: real files on disk, the real parsers, the CLI.

The fixtures are written here from real records of the bundled knowledge base (Feder 2014,
Murrough 2013, the retracted Parsaik 2015), never invented studies. Tests on the real exports
in ../shared/data are in test_import_shared.py.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
import yaml

from kb import yamlio
from kb.biblio import Reference, registrations_in
from kb.config import open_kb
from kb.dedup import Entry, Index
from kb.importer import ConditionSuggester, design_of, fill_fields, import_files
from kb.load import load_studies

from .conftest import ROOT, bundled_copy, invoke, new_kb

BIB_FIELDS = ("title", "authors", "year", "journal", "volume", "issue", "pages", "doi", "pmid", "pmcid",
              "abstract", "keywords")

FEDER_NBIB = """\
PMID- 24740528
OWN - NLM
STAT- MEDLINE
DP  - 2014 Jun
TI  - Efficacy of intravenous ketamine for treatment of chronic posttraumatic stress
      disorder: a randomized clinical trial.
PG  - 681-8
LID - 10.1001/jamapsychiatry.2014.62 [doi]
FAU - Feder, Adriana
AU  - Feder A
FAU - Parides, Michael K
AU  - Parides MK
FAU - Murrough, James W
AU  - Murrough JW
LA  - eng
PT  - Journal Article
PT  - Randomized Controlled Trial
TA  - JAMA Psychiatry
JT  - JAMA psychiatry
MH  - Stress Disorders, Post-Traumatic/*drug therapy
MH  - Ketamine/*therapeutic use
"""

PARSAIK_XML = """<?xml version="1.0" ?>
<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2019//EN" "https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_190101.dtd">
<PubmedArticleSet>
<PubmedArticle>
  <MedlineCitation Status="MEDLINE" Owner="NLM">
    <PMID Version="1">26554325</PMID>
    <Article PubModel="Print">
      <Journal>
        <JournalIssue CitedMedium="Internet">
          <Volume>21</Volume><Issue>6</Issue>
          <PubDate><Year>2015</Year><Month>Nov</Month></PubDate>
        </JournalIssue>
        <Title>Journal of psychiatric practice</Title>
      </Journal>
      <ArticleTitle>Efficacy of Ketamine in Bipolar Depression: Systematic Review and Meta-analysis.</ArticleTitle>
      <Pagination><MedlinePgn>427-35</MedlinePgn></Pagination>
      <ELocationID EIdType="doi" ValidYN="Y">10.1097/PRA.0000000000000106</ELocationID>
      <AuthorList CompleteYN="Y">
        <Author ValidYN="Y"><LastName>Parsaik</LastName><ForeName>Ajay K</ForeName><Initials>AK</Initials></Author>
        <Author ValidYN="Y"><LastName>Singh</LastName><ForeName>Balwinder</ForeName><Initials>B</Initials></Author>
      </AuthorList>
      <PublicationTypeList>
        <PublicationType UI="D016428">Journal Article</PublicationType>
        <PublicationType UI="D017418">Meta-Analysis</PublicationType>
        <PublicationType UI="D016441">Retracted Publication</PublicationType>
      </PublicationTypeList>
    </Article>
    <CommentsCorrectionsList>
      <CommentsCorrections RefType="RetractionIn"><RefSource>J Psychiatr Pract. 2018 Sep;24(5):307</RefSource></CommentsCorrections>
    </CommentsCorrectionsList>
    <MeshHeadingList>
      <MeshHeading><DescriptorName UI="D001714" MajorTopicYN="N">Bipolar Disorder</DescriptorName></MeshHeading>
    </MeshHeadingList>
  </MedlineCitation>
  <PubmedData>
    <ArticleIdList>
      <ArticleId IdType="pubmed">26554325</ArticleId>
      <ArticleId IdType="doi">10.1097/PRA.0000000000000106</ArticleId>
    </ArticleIdList>
  </PubmedData>
</PubmedArticle>
</PubmedArticleSet>
"""


def _files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "studies").iterdir())}


def _bib(data: dict) -> dict:
    return {k: data.get(k) for k in BIB_FIELDS if data.get(k) not in (None, [], "")}


# -- round trip -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["ris", "bibtex"])
def test_round_trip_through_export_and_import(runner, tmp_path, fmt):
    """Exporting the bundled knowledge base and importing it into an empty one gives the same
    bibliographic fields for every record (RIS as the issue asks; BibTeX too)."""
    out = tmp_path / f"all.{fmt}"
    r = invoke(runner, "--kb", ROOT, "export", "--format", fmt, "-o", out)
    assert r.exit_code == 0, r.output
    bundled = load_studies(open_kb(ROOT)).studies
    fresh = new_kb(tmp_path / "kb")
    r = invoke(runner, "--kb", fresh, "import", "--as-draft", out)
    assert r.exit_code == 0, r.output
    assert f"{len(bundled)} found, {len(bundled)} new, 0 duplicate, 0 failed" in r.output
    new = load_studies(open_kb(fresh))
    assert new.files == len(bundled) and len(new.studies) == len(bundled), "every draft validates"
    by_key = {(s.doi or s.pmid or s.title): s for s in new.studies}
    fields = [f for f in BIB_FIELDS if not (fmt == "bibtex" and f in ("abstract", "keywords"))]
    for s in bundled:
        twin = by_key[s.doi or s.pmid or s.title]
        for f in fields:
            assert getattr(twin, f) == getattr(s, f), (s.id, f)
        assert twin.status == "draft"
    # importing it again finds every record already there and changes nothing
    before = _files(fresh)
    r = invoke(runner, "--kb", fresh, "import", "--as-draft", out)
    assert r.exit_code == 0, r.output
    assert f"{len(bundled)} found, 0 new, {len(bundled)} duplicate, 0 failed" in r.output
    assert _files(fresh) == before


# -- drafts -----------------------------------------------------------------------------------


def test_medline_reference_becomes_a_valid_draft_with_suggestions(runner, tmp_path):
    root = new_kb(tmp_path / "kb")
    f = tmp_path / "feder.nbib"
    f.write_text(FEDER_NBIB, encoding="utf-8")
    r = invoke(runner, "--kb", root, "import", "--as-draft", f)
    assert r.exit_code == 0, r.output
    path = root / "studies" / "feder-2014.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert data["pmid"] == "24740528" and data["doi"] == "10.1001/jamapsychiatry.2014.62"
    assert data["authors"] == ["Feder A", "Parides MK", "Murrough JW"]
    assert data["title"].startswith("Efficacy of intravenous ketamine for treatment of chronic posttraumatic")
    assert data["status"] == "draft" and data["design"] == "rct"
    assert data["conditions"] == ["ptsd"]
    assert any(x.startswith("conditions (suggested by kb import") for x in data["inferred_fields"])
    assert any("Randomized Controlled Trial" in x for x in data["inferred_fields"])
    assert data["sources"] == ["https://pubmed.ncbi.nlm.nih.gov/24740528/"]
    assert "Stress Disorders, Post-Traumatic" in data["keywords"]
    r = invoke(runner, "--kb", root, "validate")
    assert r.exit_code == 0, r.output


def test_retracted_publication_is_flagged(runner, tmp_path):
    root = new_kb(tmp_path / "kb")
    f = tmp_path / "parsaik.xml.gz"
    f.write_bytes(gzip.compress(PARSAIK_XML.encode()))
    r = invoke(runner, "--kb", root, "import", "--as-draft", f)
    assert r.exit_code == 0, r.output
    assert "RETRACTED" in r.output
    data = yaml.safe_load((root / "studies" / "parsaik-2015.yaml").read_text(encoding="utf-8"))
    assert data["retraction"]["retracted"] is True
    assert "2018" in data["retraction"]["notice"]
    assert data["design"] == "meta-analysis" and data["conditions"] == ["bipolar"]


def test_duplicate_of_knowledge_base_record_is_reported_and_not_written(runner, tmp_path):
    root = new_kb(tmp_path / "kb", ("feder-2014",))
    before = _files(root)
    f = tmp_path / "feder.nbib"
    f.write_text(FEDER_NBIB, encoding="utf-8")
    r = invoke(runner, "--kb", root, "import", "--as-draft", f)
    assert r.exit_code == 0, r.output
    assert "1 found, 0 new, 1 duplicate, 0 failed" in r.output
    assert "= feder-2014: same PMID 24740528" in r.output
    assert _files(root) == before


def test_duplicates_within_one_import(runner, tmp_path):
    """The same paper from PubMed (PMID) and from another database (no PMID, DOI in capitals; then
    neither identifier, a title differing in case and punctuation) is written once."""
    root = new_kb(tmp_path / "kb")
    f = tmp_path / "two.ris"
    f.write_text(
        "TY  - JOUR\nTI  - Efficacy of intravenous ketamine for treatment of chronic posttraumatic stress disorder: "
        "a randomized clinical trial\nAU  - Feder, Adriana\nPY  - 2014\nDO  - 10.1001/jamapsychiatry.2014.62\n"
        "AN  - 24740528\nDP  - NLM\nER  - \n\n"
        "TY  - JOUR\nTI  - Efficacy of Intravenous Ketamine for Treatment of Chronic Posttraumatic Stress Disorder\n"
        "AU  - Feder, A.\nPY  - 2014\nDO  - 10.1001/JAMAPSYCHIATRY.2014.62\nER  - \n\n"
        "TY  - JOUR\nTI  - Efficacy of intravenous ketamine for treatment of chronic post-traumatic stress disorder. "
        "A randomized clinical trial.\nAU  - Feder, A.\nPY  - 2014\nER  - \n",
        encoding="utf-8")
    r = invoke(runner, "--kb", root, "import", "--as-draft", f, "--report", "json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["totals"] == {"found": 3, "new": 1, "duplicate": 2, "failed": 0, "updated_fields": 0}
    reasons = [d["reason"] for d in report["duplicates"]]
    assert reasons[0] == "same DOI 10.1001/jamapsychiatry.2014.62"
    assert reasons[1].startswith("similar title") or reasons[1] == "same title, year and first author"
    assert [d["matches"] for d in report["duplicates"]] == ["feder-2014", "feder-2014"]
    assert [p.name for p in (root / "studies").iterdir()] == ["feder-2014.yaml"]


def test_dry_run_writes_nothing(runner, tmp_path):
    root = new_kb(tmp_path / "kb")
    f = tmp_path / "feder.nbib"
    f.write_text(FEDER_NBIB, encoding="utf-8")
    r = invoke(runner, "--kb", root, "import", "--as-draft", f, "--dry-run")
    assert r.exit_code == 0, r.output
    assert "would write 1 draft record(s)" in r.output and "dry run: nothing was written" in r.output
    assert _files(root) == {}


def test_an_existing_file_is_never_overwritten(runner, tmp_path):
    """A reviewer's half-edited file (a YAML syntax error) holds the id the import would use: it is
    left exactly as it is, reported as unreadable, and the draft takes the next suffix."""
    root = new_kb(tmp_path / "kb")
    theirs = b"id: murrough-2015\ntitle: [unfinished\n"
    (root / "studies" / "murrough-2015.yaml").write_bytes(theirs)
    bundle = tmp_path / "one.ris"
    r = invoke(runner, "--kb", bundled_copy(tmp_path / "bundled"), "export", "murrough", "--year", "2015", "-o", bundle)
    assert r.exit_code == 0, r.output
    r = invoke(runner, "--kb", root, "import", "--as-draft", bundle)
    assert r.exit_code == 0, r.output
    assert "1 record file(s) in studies/ could not be read" in r.output
    assert (root / "studies" / "murrough-2015.yaml").read_bytes() == theirs
    assert (root / "studies" / "murrough-2015b.yaml").is_file()


# -- --update -----------------------------------------------------------------------------------


def test_update_fills_only_empty_fields_and_keeps_every_other_byte(runner, tmp_path):
    root = new_kb(tmp_path / "kb", ("wilkinson-2018",))  # the review feder-2014 links to (related: pooled-in)
    path = root / "studies" / "feder-2014.yaml"
    original = (ROOT / "studies" / "feder-2014.yaml").read_text(encoding="utf-8")
    # the reviewer's copy: a comment, no doi, a title of their own
    lines = [ln for ln in original.splitlines(keepends=True) if not ln.startswith("doi:")]
    lines.insert(1, "# checked against the JAMA Psychiatry PDF\n")
    mine = "".join(lines)
    path.write_text(mine, encoding="utf-8")
    f = tmp_path / "feder.nbib"
    f.write_text(FEDER_NBIB, encoding="utf-8")
    r = invoke(runner, "--kb", root, "import", "--as-draft", f, "--update")
    assert r.exit_code == 0, r.output
    assert "feder-2014: doi = 10.1001/jamapsychiatry.2014.62" in r.output
    new = path.read_text(encoding="utf-8")
    # the record had no doi and no keywords: exactly those are added, every other line is kept
    assert "feder-2014: keywords = Stress Disorders, Post-Traumatic; Ketamine" in r.output
    piece = "keywords:\n- Stress Disorders, Post-Traumatic\n- Ketamine\n"
    assert new.replace("doi: 10.1001/jamapsychiatry.2014.62\n", "").replace(piece, "") == mine
    # the title differs from PubMed's, but it has a value: it is never changed
    assert yaml.safe_load(new)["title"] == yaml.safe_load(mine)["title"]
    assert new.index("doi:") > new.index("pages:") and new.index("doi:") < new.index("pmid:")
    r = invoke(runner, "--kb", root, "validate", path)
    assert r.exit_code == 0, r.output
    # again: nothing left to fill
    r = invoke(runner, "--kb", root, "import", "--as-draft", f, "--update")
    assert "nothing to fill in 1 matched record(s)" in r.output
    assert path.read_text(encoding="utf-8") == new


def test_fill_fields_replaces_empty_values_and_refuses_full_ones():
    text = "id: a-2020\ntitle:\n# a note\nyear: 2020\nkeywords: []\nstatus: draft\nadded: 2020-01-01\n"
    out = fill_fields(text, {"title": "A title", "keywords": ["x", "y"], "doi": "10.1000/xyz"})
    data = yaml.safe_load(out)
    assert data["title"] == "A title" and data["keywords"] == ["x", "y"] and data["doi"] == "10.1000/xyz"
    assert "# a note\n" in out
    with pytest.raises(ValueError, match="not empty"):
        fill_fields(out, {"title": "Another"})
    with pytest.raises(ValueError, match="block mapping"):
        fill_fields("{id: a-2020, year: 2020}\n", {"title": "x"})


# -- bad input ----------------------------------------------------------------------------------


def test_binary_file_is_refused_with_a_reason(runner, tmp_path):
    root = new_kb(tmp_path / "kb")
    f = tmp_path / "photo.ris"
    f.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    r = invoke(runner, "--kb", root, "import", "--as-draft", f)
    assert r.exit_code == 1
    assert f"{f}: this is a binary file" in r.output and "hint:" in r.output
    assert "Traceback" not in r.output and _files(root) == {}


def test_empty_file_is_named_as_empty(runner, tmp_path):
    root = new_kb(tmp_path / "kb")
    f = tmp_path / "empty.ris"
    f.write_text("\n\n")
    r = invoke(runner, "--kb", root, "import", "--as-draft", f)
    assert r.exit_code == 1 and f"{f}: the file is empty" in r.output


def test_truncated_xml_imports_the_records_before_the_break(runner, tmp_path):
    root = new_kb(tmp_path / "kb")
    whole = PARSAIK_XML.replace("<PubmedArticleSet>\n", "<PubmedArticleSet>\n" + _feder_xml())
    cut = whole[: whole.index("<ArticleTitle>Efficacy of Ketamine in Bipolar") + 40]
    f = tmp_path / "cut.xml"
    f.write_text(cut, encoding="utf-8")
    r = invoke(runner, "--kb", root, "import", "--as-draft", f)
    assert r.exit_code == 1, r.output
    assert "2 found, 1 new, 0 duplicate, 1 failed" in r.output
    assert f"{f}: record 2 (line" in r.output and "hint:" in r.output
    assert list(_files(root)) == ["feder-2014.yaml"]


def test_all_or_nothing_writes_nothing_when_a_record_fails(runner, tmp_path):
    root = new_kb(tmp_path / "kb")
    whole = PARSAIK_XML.replace("<PubmedArticleSet>\n", "<PubmedArticleSet>\n" + _feder_xml())
    f = tmp_path / "cut.xml"
    f.write_text(whole[: whole.index("<ArticleTitle>Efficacy of Ketamine in Bipolar") + 40], encoding="utf-8")
    r = invoke(runner, "--kb", root, "import", "--as-draft", f, "--all-or-nothing")
    assert r.exit_code == 1
    assert "nothing was written (--all-or-nothing)" in r.output
    assert _files(root) == {}


def test_wrong_encoding_fails_only_the_record_with_a_bad_byte(runner, tmp_path):
    root = new_kb(tmp_path / "kb")
    f = tmp_path / "latin1.ris"
    text = ("TY  - JOUR\nTI  - Efficacy of ketamine in bipolar depression: systematic review and meta-analysis\n"
            "AU  - Parsaik, Ajay K\nPY  - 2015\nDO  - 10.1097/PRA.0000000000000106\nER  - \n\n"
            "TY  - JOUR\nTI  - Efficacy of intravenous ketamine for treatment of chronic posttraumatic stress disorder\n"
            "AU  - Feder, Adriana\nAU  - Charney, Dennis S\nPY  - 2014\nN1  - Mount Sinai, New York; caf\u00e9\n"
            "AB  - Ketamine in PTSD \u2013 a proof of concept\nER  - \n")
    f.write_bytes(text.encode("cp1252"))
    r = invoke(runner, "--kb", root, "import", "--as-draft", f)
    assert r.exit_code == 1
    assert "record 2 (line 8): the abstract is not valid utf-8 text" in r.output
    assert "--encoding cp1252" in r.output
    assert list(_files(root)) == ["parsaik-2015.yaml"]
    r = invoke(runner, "--kb", root, "import", "--as-draft", f, "--encoding", "cp1252")
    assert r.exit_code == 0, r.output
    data = yaml.safe_load((root / "studies" / "feder-2014.yaml").read_text(encoding="utf-8"))
    assert data["abstract"] == "Ketamine in PTSD \u2013 a proof of concept"


def test_usage_errors(runner, tmp_path):
    root = new_kb(tmp_path / "kb")
    r = invoke(runner, "--kb", root, "import", "--as-draft", tmp_path / "missing.ris")
    assert r.exit_code == 2 and "no such file" in r.output
    f = tmp_path / "x.ris"
    f.write_text("TY  - JOUR\nER  - \n")
    r = invoke(runner, "--kb", root, "import", "--as-draft", f, "--encoding", "klingon")
    assert r.exit_code == 2 and "unknown encoding" in r.output


def test_interrupted_import_leaves_no_half_written_file(runner, tmp_path, monkeypatch):
    """Ctrl-C in the middle of writing: the records already written are whole, and nothing else
    (no temporary file, no partial record) is left in studies/."""
    bundle = tmp_path / "all.ris"
    invoke(runner, "--kb", ROOT, "export", "-o", bundle)
    root = new_kb(tmp_path / "kb")
    real_link = os.link
    calls = {"n": 0}

    def flaky_link(src, dst, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        return real_link(src, dst, *a, **kw)

    monkeypatch.setattr(os, "link", flaky_link)
    with pytest.raises(KeyboardInterrupt):
        import_files(open_kb(root), [bundle])
    names = sorted(p.name for p in (root / "studies").iterdir())
    assert len(names) == 9 and all(n.endswith(".yaml") and not n.startswith(".") for n in names)
    assert load_studies(open_kb(root)).problems == [] or all(
        p.severity != "error" for p in load_studies(open_kb(root)).problems)
    monkeypatch.setattr(os, "link", real_link)
    report = import_files(open_kb(root), [bundle])  # running it again completes the import
    assert len(report.drafts) + 9 == report.found and len(report.duplicates) == 9


# -- units ----------------------------------------------------------------------------------------


def test_registration_numbers_in_abstracts():
    """Every registry the schema accepts is found in free text, and a number is taken whole."""
    text = ("Registered: CTIS 2023-503456-12-00; ChiCTR2000029734, UMIN000012345 and NCT01234567 "
            "(EUCTR2011-001520-37-GB; EudraCT 2011-001520-37). CTRI/2019/05/019012. NCT0123456789 is too long.")
    assert registrations_in(text) == ["2023-503456-12-00", "ChiCTR2000029734", "UMIN000012345", "NCT01234567",
                                      "EUCTR2011-001520-37-GB", "2011-001520-37", "CTRI/2019/05/019012"]


def test_filled_title_drops_pubmeds_final_period_as_drafts_do():
    from kb.importer import fields_to_fill

    ref = Reference(number=1, title="Ketamine for depression.", year=2020, authors=["Smith J"])
    assert fields_to_fill({"title": None, "year": 2020}, ref)["title"] == "Ketamine for depression"


def test_dedup_rules():
    idx = Index()
    feder = Entry.of("feder-2014", doi="10.1001/jamapsychiatry.2014.62", pmid="24740528",
                     title="Efficacy of Intravenous Ketamine for Treatment of Chronic Posttraumatic Stress Disorder",
                     year=2014, authors=["Feder A"])
    idx.add(feder)
    assert idx.match(Entry.of("x", pmid="24740528")).reason == "same PMID 24740528"
    # (below, 10.5555 is Crossref's prefix for test DOIs, and the titles and names are placeholders:
    # these entries exercise the rules, they describe no study)
    # a shared DOI with a clearly different title (an abstract supplement, say) is not a duplicate
    assert idx.match(Entry.of("x", doi="10.1001/JAMAPSYCHIATRY.2014.62", title="Placeholder letters section title",
                              year=2014, authors=["Placeholder A"])) is None
    # a book DOI alone is not trusted
    idx.add(Entry.of("book", doi="10.5555/978-0-000-00000-0", title="Placeholder book, chapter one",
                     year=2016, authors=["Placeholder A"]))
    assert idx.match(Entry.of("x", doi="10.5555/978-0-000-00000-0", title="Placeholder book, chapter two on dosing",
                              year=2016, authors=["Placeholder B"])) is None
    # the same title a year apart with the same first author (online first, then print)
    m = idx.match(Entry.of("x", title="Efficacy of intravenous ketamine for treatment of chronic posttraumatic "
                                      "stress disorder.", year=2013, authors=["Feder, Adriana"]))
    assert m and m.entry is feder and "years 2013 and 2014" in m.reason
    # two reports of one trial (different PMIDs, same registration) are not duplicates
    idx.add(Entry.of("a", pmid="1", registrations=["NCT00000000"], title="Placeholder primary report", year=2014))
    assert idx.match(Entry.of("b", pmid="2", registrations=["NCT00000000"], title="Placeholder secondary analysis",
                              year=2015)) is None
    assert idx.match(Entry.of("c", registrations=["NCT00000000"], title="Placeholder conference abstract",
                              year=2013)).entry.label == "a"
    # an erratum is not the article; a title differing in its numbers is another paper (both pairs
    # are real titles from the van de Schoot 2017 screening set)
    idx.add(Entry.of("wu", title="Posttraumatic stress after a motor vehicle accident: a six-month follow-up study "
                                 "utilizing latent growth modeling", year=2006, authors=["Wu KK"]))
    assert idx.match(Entry.of("x", title='Erratum for "Posttraumatic stress after a motor vehicle accident: A six-month '
                                         'follow-up study utilizing latent growth modeling"', year=2007,
                              authors=["Wu KK"])) is None
    assert idx.match(Entry.of("x", title='"Posttraumatic stress after a motor vehicle accident: a six-month follow-up '
                                         'study utilizing latent growth modeling": Erratum', year=2006,
                              authors=["Wu KK"])) is None
    idx.add(Entry.of("munley", title="Post-traumatic stress disorder and the MMPI-2", year=1995, authors=["Munley PH"]))
    assert idx.match(Entry.of("x", title="Posttraumatic stress disorder and the MCMI-II", year=1995,
                              authors=["Munley PH"])) is None
    assert idx.match(Entry.of("x", title="Posttraumatic stress disorder and the MMPI-2", year=1995,
                              authors=["Munley, P. H."])).entry.label == "munley"
    # short titles never match by title alone
    idx.add(Entry.of("ed", title="Editorial", year=2014, authors=["Feder A"]))
    assert idx.match(Entry.of("x", title="Editorial", year=2014, authors=["Feder A"])) is None


def test_condition_suggestions_and_design():
    vocab = open_kb(ROOT).vocab
    suggest = ConditionSuggester(vocab)
    ref = Reference(1, title="Ketamine for treatment-resistant depression in the ED", keywords=["PTSD"],
                    mesh=["Bipolar Disorder"])
    assert [c for c, _ in suggest(ref)] == ["depression", "bipolar", "ptsd"]
    assert suggest(Reference(1, title="Sad faces in adolescents")) == []  # 'SAD' only in capitals
    assert design_of(Reference(1, publication_types=["Journal Article", "Randomized Controlled Trial"],
                               title="A randomized crossover trial")) == ("crossover-rct", "Randomized Controlled Trial")
    assert design_of(Reference(1, publication_types=["Journal Article"])) == ("other", None)


# -- export -----------------------------------------------------------------------------------------


def test_export_command_offers_every_export_format():
    """kbcli lists the formats itself (importing kb.export would slow every command's start)."""
    import click

    from kb.export import EXPORT_FORMATS
    from kbcli import cli

    option = next(p for p in cli.commands["export"].params if p.name == "fmt")
    assert isinstance(option.type, click.Choice) and tuple(option.type.choices) == EXPORT_FORMATS


def test_export_formats_parse_with_real_parsers(runner, tmp_path):
    import bibtexparser
    import rispy

    r = invoke(runner, "--kb", ROOT, "export", "--format", "csl-json")
    items = json.loads(r.output)
    n = len(load_studies(open_kb(ROOT)).studies)
    assert len(items) == n and all(i["issued"]["date-parts"][0][0] >= 1800 for i in items)
    feder = next(i for i in items if i["id"] == "feder-2014")
    assert feder["DOI"] == "10.1001/jamapsychiatry.2014.62" and feder["author"][0] == {"family": "Feder", "given": "A."}
    r = invoke(runner, "--kb", ROOT, "export", "--format", "bibtex")
    assert len(bibtexparser.parse_string(r.output).entries) == n
    r = invoke(runner, "--kb", ROOT, "export", "--format", "ris")
    assert len(rispy.loads(r.output)) == n
    r = invoke(runner, "--kb", ROOT, "export", "--format", "json")
    assert len(json.loads(r.output)) == n


def test_export_a_search_and_refuse_to_overwrite(runner, tmp_path):
    root = bundled_copy(tmp_path / "bundled")  # a search builds an index: never inside the repository
    r = invoke(runner, "--kb", root, "export", "--condition", "ptsd", "--format", "csv")
    assert r.exit_code == 0
    rows = r.stdout.strip().splitlines()
    assert rows[0].startswith("id,title") and any(row.startswith("feder-2014,") for row in rows)
    assert not any(row.startswith("murrough-2013,") for row in rows)
    out = tmp_path / "x.ris"
    out.write_text("mine\n")
    r = invoke(runner, "--kb", ROOT, "export", "-o", out)
    assert r.exit_code == 1 and "not overwriting" in r.output and out.read_text() == "mine\n"
    r = invoke(runner, "--kb", root, "export", "zzzqqq-no-such-word")
    assert r.exit_code == 1 and "no records to export" in r.output


def test_metapsy_export_has_one_row_per_comparison_with_raw_arms(runner):
    import csv
    import io

    r = invoke(runner, "--kb", ROOT, "export", "--format", "metapsy")
    rows = list(csv.DictReader(io.StringIO(r.output)))
    studies = load_studies(open_kb(ROOT)).studies
    expected = sum(1 for s in studies for o in s.outcomes if o.data and o.data.type != "effect" and len(o.data.arms) == 2)
    assert len(rows) == expected
    by_id = {s.id: s for s in studies}
    for row in rows:
        s = by_id[row["study_id"]]
        if row["outcome_type"] == "binary":
            o = next(o for o in s.outcomes if o.outcome == row["outcome"] and o.data and o.data.type == "binary"
                     and str(o.data.arms[0].events) == row["event_arm1"] and str(o.data.arms[1].total) == row["totaln_arm2"])
            assert row["condition_arm1"] == o.data.arms[0].label
    parsaik = [row for row in rows if row["study_id"] == "parsaik-2015"]
    assert all(row["retracted"] == "true" for row in parsaik)


def test_help_teaches(runner):
    r = invoke(runner, "import", "--as-draft", "--help")
    for word in ("pubmed-xml", "--update", "--dry-run", "--all-or-nothing", "Exit status", "Examples"):
        assert word in r.output
    r = invoke(runner, "export", "--help")
    for word in ("csl-json", "metapsy", "Zotero", "Examples"):
        assert word in r.output


def _feder_xml() -> str:
    return """<PubmedArticle>
  <MedlineCitation Status="MEDLINE" Owner="NLM">
    <PMID Version="1">24740528</PMID>
    <Article PubModel="Print">
      <Journal><JournalIssue><Volume>71</Volume><Issue>6</Issue><PubDate><Year>2014</Year></PubDate></JournalIssue>
        <Title>JAMA psychiatry</Title></Journal>
      <ArticleTitle>Efficacy of intravenous ketamine for treatment of chronic posttraumatic stress disorder: a randomized clinical trial.</ArticleTitle>
      <AuthorList CompleteYN="Y">
        <Author ValidYN="Y"><LastName>Feder</LastName><ForeName>Adriana</ForeName><Initials>A</Initials></Author>
      </AuthorList>
    </Article>
  </MedlineCitation>
</PubmedArticle>
"""


def test_yaml_written_by_import_reads_back(tmp_path):
    """Drafts go through the same dumper as kb new: a title with a colon survives."""
    text = yamlio.dump({"title": "Ketamine: a review"})
    assert yaml.safe_load(text) == {"title": "Ketamine: a review"}


def test_progress_reports_every_phase(tmp_path):
    """Long imports show progress: reading the knowledge base, the bytes of the files, the writing."""
    bundle = tmp_path / "all.ris"
    from click.testing import CliRunner

    invoke(CliRunner(), "--kb", ROOT, "export", "-o", bundle)
    root = new_kb(tmp_path / "kb", ("feder-2014",))
    seen: dict[str, tuple[int, int]] = {}
    import_files(open_kb(root), [bundle], progress=lambda phase, done, total: seen.__setitem__(phase, (done, total)))
    assert seen["reading the knowledge base"] == (1, 1)
    assert seen["importing"] == (bundle.stat().st_size, bundle.stat().st_size)
    assert seen["writing"][0] == seen["writing"][1] == len(list((root / "studies").iterdir())) - 1


def test_all_or_nothing_json_report_lists_the_failures(runner, tmp_path):
    root = new_kb(tmp_path / "kb")
    f = tmp_path / "bin.ris"
    f.write_bytes(bytes(range(256)))
    r = invoke(runner, "--kb", root, "import", "--as-draft", f, "--all-or-nothing", "--report", "json")
    assert r.exit_code == 1
    report = json.loads(r.stdout)
    assert report["written"] is False and report["failed"][0]["reason"].startswith("this is a binary file")
