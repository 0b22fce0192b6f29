"""The RIS, BibTeX and CSV parsers (kb/formats/ris.py, bibtex.py, csvfile.py).

Two kinds of input: small fixtures written for these tests (tests/fixtures/imports/ris_*, bibtex_*,
csv_*), each showing one way exports go wrong, and the real exports in ../shared/data (see its
PROVENANCE.md), whose record counts and spot-checked fields are asserted as read in the files.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path

import bibtexparser
import pytest

from kb import formats
from kb.biblio import Failure, ParseError, Reference, clean
from kb.formats import bibtex, csvfile

from .conftest import SHARED as SHARED_ROOT
from .conftest import shared_data

FIX = Path(__file__).resolve().parent / "fixtures" / "imports"
SHARED = SHARED_ROOT / "data"
shared = shared_data


def read(path: Path, fmt: str | None = None, encoding: str | None = None) -> list[Reference | Failure]:
    return list(formats.read(path, fmt, encoding))


def refs(items) -> list[Reference]:
    return [i for i in items if isinstance(i, Reference)]


def failures(items) -> list[Failure]:
    return [i for i in items if isinstance(i, Failure)]


def only_refs(path: Path, fmt: str | None = None) -> list[Reference]:
    items = _cached(path, fmt) if path.is_relative_to(SHARED) else read(path, fmt)
    assert failures(items) == []
    return refs(items)


@functools.cache
def _cached(path: Path, fmt: str | None) -> tuple[Reference | Failure, ...]:
    """The real exports are read once for all the tests that look at them (the tests only read)."""
    return tuple(read(path, fmt))


# -- RIS fixtures ---------------------------------------------------------------------------------


def test_ris_bom_crlf_doi_url_pmcid_retraction():
    path = FIX / "ris_bom_crlf.ris"
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfTY  - ") and b"\r\n" in raw
    assert formats.detect(path) == "ris"
    one, two = only_refs(path)
    assert (one.number, one.line, two.number, two.line) == (1, 1, 2, 17)
    assert one.title == "Fixture trial one: ketamine infusion in treatment-resistant depression"
    assert one.authors == ["Brönte ÉJ", "O'Neil A"]
    assert (one.year, one.journal, one.volume, one.issue, one.pages) == (2019, "Fixture Journal of Psychiatry", "12",
                                                                         "3", "101-109")
    assert one.doi == "10.5555/fixture.2019.001"  # DO held a https://doi.org/ URL
    assert one.pmcid == "PMC900001234" and one.pmid is None
    assert one.registrations == ["NCT00000000"]
    assert one.keywords == ["depression", "ketamine"]
    assert not one.retracted
    assert two.retracted and two.retraction_notice == "RETRACTED: see the retraction notice in Fixture Journal 2021;3:4"


def test_ris_ovid_record_numbers_and_trailing_lines():
    one, two = only_refs(FIX / "ris_ovid.ris")  # the NL tag and link line after ER are not failures
    assert (one.line, two.line) == (2, 19)  # each record starts at its TY line, after "1."
    assert one.title == "Fixture Ovid record one."
    assert one.authors == ["Trindade IA", "Irons C"]  # A1
    assert one.year == 2019  # Y1  - 2019//
    assert one.abstract == "First Ovid fixture abstract."  # N2
    assert one.journal == "Fixture Clinical Psychology"  # JF, not the JA abbreviation
    assert one.pages == "349-69"
    assert one.doi == "10.5555/fixture.ovid.1"  # DO  - http://dx.doi.org/...
    assert two.pages is None  # SP  - No / EP  - Specified


def test_ris_accession_numbers_and_multiline_keywords():
    endnote, rayyan, proquest, linked = only_refs(FIX / "ris_accession.ris")
    assert endnote.line == 2  # the file begins with a blank line
    assert endnote.pmid == "900000501"  # AN with DP  - NLM
    assert rayyan.pmid is None  # AN  - rayyan-...
    assert rayyan.keywords == ["Health Facility Administration", "Joint Commission", "Standards", "Medication Errors"]
    assert proquest.pmid is None  # an all-digit AN from a database that is not PubMed
    assert linked.pmid == "900000502" and linked.doi == "10.5555/fixture.link"


def test_ris_broken_record_between_good_ones():
    before, broken, after = read(FIX / "ris_broken_record.ris")
    assert isinstance(before, Reference) and before.title == "Fixture good record before"
    assert isinstance(broken, Failure) and (broken.number, broken.line) == (2, 6)
    assert "ER" in broken.reason and "line 10" in broken.reason and broken.hint
    assert isinstance(after, Reference) and (after.number, after.line) == (3, 10)
    assert after.title == "Fixture good record after" and after.authors == ["After C"]


def test_ris_fields_outside_records_wrong_spacing_and_cut_file():
    first, orphan, cut = read(FIX / "ris_truncated.ris")
    assert isinstance(first, Reference)
    assert first.title == "Fixture complete record"  # "AU - Spacing, Wrong" is not glued to the title
    assert first.authors == ["Spacing W"]
    assert first.warnings and "line 3" in first.warnings[0]
    assert isinstance(orphan, Failure) and orphan.number is None and orphan.line == 7
    assert isinstance(cut, Failure) and (cut.number, cut.line) == (2, 11) and "ER" in cut.reason


def test_ris_latin1_file_fails_only_the_bad_record_until_the_encoding_is_given():
    path = FIX / "ris_latin1.ris"
    assert b"\xe9tude" in path.read_bytes()  # latin-1 bytes, not UTF-8
    first, bad, third = read(path)
    assert isinstance(first, Reference) and isinstance(third, Reference)
    assert isinstance(bad, Failure) and (bad.number, bad.line) == (2, 6)
    assert "--encoding" in bad.hint
    good = read(path, encoding="latin-1")
    assert failures(good) == [] and len(good) == 3
    assert good[1].title == "Fixture étude de cohorte" and good[1].authors == ["Müller J"]


# -- BibTeX fixtures ------------------------------------------------------------------------------


def test_bibtex_web_of_science_style():
    path = FIX / "bibtex_wos.bib"
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert formats.detect(path) == "bibtex"
    article, chapter, paper = only_refs(path)
    assert (article.number, article.line, chapter.line, paper.line) == (1, 2, 21, 30)
    assert article.title == "A fixture Über-trial of ketamine & esketamine in treatment-resistant depression"
    # {\"u}, {\'\i} decoded; "Smith, III, John R." is BibTeX's Last, Jr, First (III as PubMed writes it:
    # 3rd); "others" -> truncated
    assert article.authors == ["Müller J", "Smith JR 3rd", "García M"] and article.authors_truncated
    assert (article.year, article.journal, article.volume, article.issue) == (2019, "FIXTURE JOURNAL OF PSYCHIATRY",
                                                                              "176", "5")
    assert article.pages == "121-128"  # 121--128
    assert article.doi == "10.5555/fixture.wos.1"
    assert article.abstract == "About 50% of patients responded (NCT00000000). Costs were $100 per dose; ~5 visits."
    assert article.registrations == ["NCT00000000"]
    assert article.keywords == ["Ketamine", "Esketamine", "Treatment-resistant depression", "RANDOMIZED-TRIAL"]
    assert chapter.journal == "Fixture Handbook of Psychopharmacology"  # Booktitle, no Journal
    assert chapter.authors == ["Doe J"]  # the Editor is not an author
    assert paper.journal == "Fixture Conference on Mood Disorders" and paper.year == 2017


def test_bibtex_malformed_entry_between_good_ones():
    before, broken, after = read(FIX / "bibtex_malformed.bib")
    assert isinstance(before, Reference) and before.line == 1
    assert before.abstract == "About 59% of sites burned; fire & drought."  # bare % and & are text
    assert before.authors == ["Zlonis EJ", "Walton NG"] and before.pmid == "30000001"
    assert before.keywords == ["fire", "drought", "Birds"]  # author keywords first, "Fire" once
    assert isinstance(broken, Failure) and (broken.number, broken.line) == (2, 16)
    assert "Broken2019b" in broken.reason and "abstract" in broken.reason and "line 21" in broken.reason
    assert isinstance(after, Reference) and (after.number, after.line) == (3, 25)
    assert after.title == "Fixture good entry after"


def test_bibtex_stray_closing_brace_fails_the_entry_instead_of_dropping_its_fields():
    broken, after = read(FIX / "bibtex_stray_brace.bib")
    assert isinstance(broken, Failure) and (broken.number, broken.line) == (1, 1)
    assert "abstract" in broken.reason
    assert isinstance(after, Reference) and after.title == "Fixture entry after it" and after.number == 2


def test_bibtex_strings_comments_books_and_repeated_fields():
    entry, book = only_refs(FIX / "bibtex_misc.bib")  # @comment, @preamble, @string are not records
    assert (entry.number, entry.line, book.number, book.line) == (1, 6, 2, 15)
    assert entry.journal == "Fixture Journal of Strings"  # journal = fj, from @string
    assert entry.year == 2015 and entry.pmid == "12345678"  # note = {PMID: 12345678}
    assert entry.authors == ["Plain A", "van Beethoven L"]  # BibTeX's First von Last
    assert book.authors == ["Fixture Study Group"]
    assert book.journal == "Fixture Series"  # booktitle
    assert book.keywords == ["alpha", "beta", "gamma"]
    assert book.warnings and "keywords" in book.warnings[0]


# -- CSV fixtures ---------------------------------------------------------------------------------


def test_csv_semicolons_blank_and_ragged_rows():
    path = FIX / "csv_semicolon.csv"
    assert formats.detect(path) == "csv"
    one, two, three = only_refs(path)
    assert [r.line for r in (one, two, three)] == [2, 5, 6]  # a blank line and a ";;;;" row are skipped
    assert [r.number for r in (one, two, three)] == [1, 2, 3]
    assert one.authors == ["Smith J", "Doe AB"]
    assert (one.year, one.journal, one.volume, one.issue, one.pages) == (2019, "Fixture Journal", "12", "3", "101-109")
    assert one.abstract == "An abstract; with a semicolon" and one.keywords == ["alpha", "beta"]
    assert two.authors == ["Liu R", "Adler DG"] and two.journal is None  # a short row
    assert three.doi == "10.5555/fixture.csv.3" and three.keywords == ["gamma"]  # a long row: extra cells ignored


def test_csv_without_title_column():
    path = FIX / "csv_no_title.csv"
    with pytest.raises(ParseError) as e:
        read(path, "csv")
    assert "title column" in e.value.message and "'Name'" in e.value.message and "'Year'" in e.value.message
    assert "Article Title" in e.value.hint
    with pytest.raises(ParseError):  # without --format, detection already refuses it
        read(path)


def test_csv_formula_cells_are_text_and_generic_headers():
    one, two = only_refs(FIX / "csv_formula.csv")
    assert one.title == '=HYPERLINK("https://example.org/x","Fixture formula title")'
    assert one.authors == ["+Smith J"] and one.journal == "@Fixture Journal"
    assert (one.year, one.doi, one.pmid) == (2018, "10.5555/fixture.csv.f", "900000503")
    assert one.abstract == "First line of the abstract, second line of the abstract."
    assert one.keywords == ["Kw one", "Kw two"]
    assert two.line == 4  # row one spans lines 2-3
    assert two.title == "-Fixture second title" and two.abstract is None  # "[No abstract available]"


def test_csv_tab_separated_embase_columns():
    one, two = only_refs(FIX / "csv_embase_tab.csv")
    assert one.authors == ["Liu R", "Adler DG"]
    assert (one.journal, one.year, one.volume, one.issue, one.pages) == ("Fixture Endoscopy Journal", 2014, "3", "3",
                                                                         "152-160")
    assert one.doi == "10.5555/fixture.embase.1"  # from id=doi:10.5555%2F... in the Open URL Link
    assert one.pmid == "900000504"
    assert one.registrations == ["NCT00000000", "ISRCTN00000000"]
    assert one.keywords == ["endoscopic ultrasonography", "duplication cyst (diagnosis, surgery)", "adult"]
    assert (two.journal, two.year, two.volume, two.issue, two.pages) == ("Fixture Surgery Case Reports", 2019, "54",
                                                                         None, "83-86")


def test_csv_zotero_columns():
    (one,) = only_refs(FIX / "csv_zotero.csv")
    assert one.authors == ["Smith J", "Doe AB"] and one.title == "A fixture Zotero record"
    assert (one.year, one.journal, one.volume, one.pages) == (2016, "Fixture Journal of Zotero", "7", "12-19")
    assert one.issue is None  # pandas' "nan" is no value
    assert (one.pmid, one.pmcid) == ("27000001", "PMC900004800")  # from the Extra column
    assert one.keywords == ["tag one", "tag two", "Humans", "Adult"]  # Manual Tags, then Automatic Tags


def test_csv_broken_quotes_fail_their_rows():
    good, stray, after, unclosed = read(FIX / "csv_unclosed_quote.csv")
    assert isinstance(good, Reference) and good.line == 2
    assert isinstance(stray, Failure) and (stray.number, stray.line) == (2, 3)
    assert isinstance(after, Reference) and (after.number, after.line) == (3, 4)
    assert isinstance(unclosed, Failure) and (unclosed.number, unclosed.line) == (4, 5)
    assert "never closed" in unclosed.reason and "5-6" in unclosed.reason


def test_csv_cells_longer_than_the_csv_modules_default_limit(tmp_path):
    long = "word " * 60_000  # 300 000 characters; the csv module refuses cells over 131 072 by default
    path = tmp_path / "long.csv"
    path.write_text(f'title,abstract\nFixture long abstract,"{long}"\nFixture next,short\n', encoding="utf-8")
    csv.field_size_limit(131_072)  # the default, as if no CSV had been read in this process yet
    one, two = only_refs(path)
    assert len(one.abstract) == len(long.strip()) and two.line == 3


def test_csv_docstring_documents_every_column_name():
    doc = csvfile.__doc__.lower()
    missing = [a for aliases in csvfile.COLUMNS.values() for a in aliases if a not in doc]
    assert missing == []


# -- real exports: counts -------------------------------------------------------------------------

COUNTS = [
    ("asreview_demo_data/pubmed_endnote.txt", "ris", 6),
    ("asreview_demo_data/pubmed_zotero.ris", "ris", 6),
    ("asreview_demo_data/ovid_psycinfo.ris", "ris", 6),
    ("asreview_demo_data/ovid_zotero.ris", "ris", 6),
    ("asreview_demo_data/embase.ris", "ris", 6),
    ("asreview_demo_data/scopus.ris", "ris", 6),
    ("asreview_demo_data/web_of_science.txt", "ris", 10),
    ("asreview_demo_data/proquest.ris", "ris", 6),
    ("asreview_demo_data/_baseline.ris", "ris", 100),
    ("asreview_demo_data/baseline_zotero.ris", "ris", 100),
    ("asreview_demo_data/ris_issue_992.txt", "ris", 19),
    ("litsearchr_exports/scopus.ris", "ris", 92),
    ("litsearchr_exports/WoS_corecollection_final_1.bib", "bibtex", 500),
    ("asreview_demo_data/embase.csv", "csv", 6),
    ("metaknowledge_tests/scopus_testing.csv.scopus", "csv", 220),
    ("asreview_van_de_Schoot_2017/van_de_Schoot_2017.DERIVED_from_xlsx.csv", "csv", 6189),
]


@pytest.mark.parametrize("rel,fmt,count", COUNTS, ids=[c[0].split("/")[-1] for c in COUNTS])
def test_real_export_counts(rel, fmt, count):
    path = shared(rel)
    assert formats.detect(path) == fmt
    found = only_refs(path)
    assert len(found) == count
    assert [r.number for r in found] == list(range(1, count + 1))
    assert all(r.line for r in found)


@pytest.mark.parametrize("rel,count", [("asreview_demo_data/_baseline.ris", 98), ("litsearchr_exports/scopus.ris", 89),
                                       ("litsearchr_exports/WoS_corecollection_final_1.bib", 500),
                                       ("metaknowledge_tests/scopus_testing.csv.scopus", 204),
                                       ("asreview_van_de_Schoot_2017/van_de_Schoot_2017.DERIVED_from_xlsx.csv", 5425)])
def test_real_export_abstract_counts(rel, count):
    assert sum(1 for r in only_refs(shared(rel)) if r.abstract) == count


def test_scopus_bibtex_1115_entries_two_truly_broken():
    path = shared("litsearchr_exports/scopus_final.bib")
    assert formats.detect(path) == "bibtex"
    items = _cached(path, None)
    assert len(items) == 1115
    assert [i.number for i in items] == list(range(1, 1116))
    # Two abstracts really hold an unbalanced "{" ("Crayfish {Austropotamobius pallipes)", "Imazopyr
    # {Arsenal Applicators Concentrate)"): BibTeX cannot tell where those values end, so those entries
    # fail with the field and line named, and every other entry is read.
    broken = failures(items)
    assert [(f.number, f.line) for f in broken] == [(427, 8576), (677, 13718)]
    assert "Michelat2012101" in broken[0].reason and "abstract field (line 8587)" in broken[0].reason
    assert "Sladek2008111" in broken[1].reason and "abstract field (line 13729)" in broken[1].reason
    lines = path.read_text(encoding="utf-8").split("\n")
    assert "{Austropotamobius pallipes)" in lines[8586] and "{Arsenal Applicators Concentrate)" in lines[13728]
    good = refs(items)
    # 1114 entries have an abstract: 1112 read ones and the two broken ones
    assert sum(1 for r in good if r.abstract) == 1112
    assert [r.number for r in good if not r.abstract] == [1079]
    assert sum(1 for line in lines if line.startswith("abstract={")) == 1114


# -- real exports: fields as the files write them ---------------------------------------------------


def test_pubmed_endnote_fields():
    first = only_refs(shared("asreview_demo_data/pubmed_endnote.txt"))[0]
    assert first.line == 2  # the file begins with a blank line
    assert first.title == ("Boswellia serrata: an overall assessment of in vitro, preclinical, pharmacokinetic and "
                           "clinical data")
    assert first.authors == ["Abdel-Tawab M", "Werz O", "Schubert-Zsilavecz M"]
    assert (first.year, first.journal, first.volume, first.issue, first.pages) == (2011, "Clin Pharmacokinet", "50",
                                                                                   "6", "349-69")
    assert first.doi == "10.2165/11586800-000000000-00000"
    assert first.pmid == "21553931"  # AN with DP  - NLM
    assert "Boswellia" in first.keywords and "Anti-Inflammatory Agents" in first.keywords  # MeSH, qualifiers cut


def test_pubmed_zotero_fields():
    first = only_refs(shared("asreview_demo_data/pubmed_zotero.ris"))[0]
    assert first.title.startswith("The importance of cognitive flexibility and flexibility in coping with stress")
    assert first.authors == ["Rudnik A", "Piotrowicz G", "Basinska MA", "Rashedi V"]
    assert first.journal == "Przeglad gastroenterologiczny"  # T2, not the J2 abbreviation
    assert (first.year, first.volume, first.issue, first.pages) == (2019, "14", "2", "121-128")
    assert first.doi == "10.5114/pg.2018.81081"
    assert first.keywords == ["biological treatment", "Crohn's disease", "mindfulness", "quality of life",
                              "ulcerative colitis"]


def test_ovid_psycinfo_matches_its_zotero_export():
    ovid = only_refs(shared("asreview_demo_data/ovid_psycinfo.ris"))
    zotero = only_refs(shared("asreview_demo_data/ovid_zotero.ris"))
    first = ovid[0]
    assert first.line == 2  # after the "1." line
    assert first.title == ("The influence of self-criticism on depression symptoms among ambulatory patients with "
                           "inflammatory bowel disease.")
    assert first.authors == ["Trindade IA", "Irons C", "Ferreira C", "Portela F", "Pinto-Gouveia J"]
    assert (first.year, first.journal, first.pages) == (2019, "Clinical Psychology & Psychotherapy", None)
    assert first.doi == "10.1002/cpp.2398"  # DO  - http://dx.doi.org/10.1002/cpp.2398
    for a, b in zip(ovid, zotero):
        assert (a.title, a.authors, a.year, a.doi, a.volume, a.pages) == (b.title, b.authors, b.year, b.doi, b.volume,
                                                                          b.pages)
    # Zotero wrote a cited reference into record 3's IS; it is left out with a warning
    assert ovid[2].issue is None and zotero[2].issue is None
    assert "IS 'Achenbach, T. (1991)" in zotero[2].warnings[0]


def test_embase_ris_and_csv_agree():
    ris = only_refs(shared("asreview_demo_data/embase.ris"))
    table = only_refs(shared("asreview_demo_data/embase.csv"))
    first = ris[0]
    assert first.title == "Duplication cysts: Diagnosis, management, and the role of endoscopic ultrasound"
    assert first.authors == ["Liu R", "Adler DG"]
    assert (first.year, first.journal, first.volume, first.issue, first.pages) == (2014, "Endoscopic Ultrasound", "3",
                                                                                   "3", "152-160")
    assert first.doi == "10.4103/2303-9027.138783"
    for a, b in zip(ris, table):
        assert (a.title, a.authors, a.year, a.journal, a.volume, a.issue, a.pages, a.doi, a.abstract) == (
            b.title, b.authors, b.year, b.journal, b.volume, b.issue, b.pages, b.doi, b.abstract)
    # the CSV's Source cell "International Journal of Surgery Case Reports (2019) 54 (83-86)" has no issue
    assert (table[2].journal, table[2].volume, table[2].issue, table[2].pages) == (
        "International Journal of Surgery Case Reports", "54", None, "83-86")
    assert "bronchogenic duplication cyst (diagnosis, surgery)" in table[0].keywords


def test_scopus_ris_fields():
    found = only_refs(shared("asreview_demo_data/scopus.ris"))
    first = found[0]
    assert first.title == ("Stress and the brain-gut axis in functional and chronic-inflammatory gastrointestinal "
                           "diseases: A transdisciplinary challenge")
    assert first.authors[:2] == ["Labanski A", "Langhorst J"]
    assert (first.year, first.journal, first.volume) == (2020, "Psychoneuroendocrinology", "111")
    assert first.doi == "10.1016/j.psyneuen.2019.104501"
    assert first.pmid is None  # no C2 in this record
    assert found[1].pmid == "31421429"  # Scopus writes the PubMed ID in C2
    assert [r.pmid for r in found] == [None, "31421429", "31627144", "31574429", "30704343", "31175206"]


def test_web_of_science_ris_fields():
    first = only_refs(shared("asreview_demo_data/web_of_science.txt"))[0]
    assert first.title == "Holding Yourself Captive: Perceptions of Custody During Interviews and Interrogations"
    assert first.authors == ["Alceste F", "Luke TJ", "Kassin SM"]
    assert (first.year, first.journal, first.volume, first.issue, first.pages) == (
        2018, "JOURNAL OF APPLIED RESEARCH IN MEMORY AND COGNITION", "7", "3", "387-397")
    assert first.doi == "10.1016/j.jarmac.2018.03.001"
    assert first.pmid is None  # AN  - WOS:000444108200009


def test_proquest_fields():
    first = only_refs(shared("asreview_demo_data/proquest.ris"))[0]
    assert first.title == ("Predictors of posttraumatic stress symptom trajectories following the fatal 2011 "
                           "Christchurch, New Zealand earthquake")
    assert first.authors[0] == "Jones H" and first.authors[1] == "Dorahy MJ"
    assert (first.year, first.journal, first.doi) == (2019, "Journal of Traumatic Stress", "10.1002/jts.22387")
    assert first.pmid is None  # AN  - 2214991469; 51887 from PTSDpubs


def test_baseline_ris_fields_and_its_zotero_export():
    base = only_refs(shared("asreview_demo_data/_baseline.ris"))
    first = base[0]
    assert first.line == 1  # after the byte-order mark
    assert first.title.startswith("The Value of Radiologic Interventions and 18 F-DOPA PET in Diagnosing")
    assert first.authors[0] == "Blomberg BA"  # "Blomberg, Björn A."
    assert (first.year, first.journal, first.volume, first.issue, first.pages) == (
        2012, "Molecular imaging and biology", "15", "1", "97-105")
    assert first.doi == "10.1007/s11307-012-0572-0"
    assert first.pmid == "22752652" and first.pmcid == "PMC3553406"  # from the L2 links
    zotero = {r.doi.lower(): r for r in only_refs(shared("asreview_demo_data/baseline_zotero.ris"))}
    assert len(zotero) == 100
    z = zotero["10.1038/s42256-020-00287-7"]
    assert z.title == "An open source machine learning framework for efficient and transparent systematic reviews"
    assert z.authors[:2] == ["van de Schoot R", "de Bruin J"]
    assert (z.year, z.journal, z.volume, z.issue, z.pages) == (2021, "Nature Machine Intelligence", "3", "2", "125-133")
    assert all(r.issue != "nan" and r.volume != "nan" for r in zotero.values())  # pandas' "nan" is no value
    for r in base:  # the same 100 records, as Zotero exported them
        z = zotero[r.doi.lower()]
        assert (r.title, r.year, r.volume, r.pages) == (z.title, z.year, z.volume, z.pages)
        assert r.issue in (z.issue, None)


def test_rayyan_fields():
    found = only_refs(shared("asreview_demo_data/ris_issue_992.txt"))
    first = found[0]
    assert first.title == "Overcoming Medication Reconciliation Challenges"
    assert first.authors == [] and first.pmid is None  # AN  - rayyan-264552525
    assert (first.year, first.journal, first.volume, first.issue, first.pages) == (
        2011, "Joint Commission Perspectives on Patient Safety", "11", "11", "1-5")
    assert len(first.keywords) == 13  # one KW tag, then 12 lines without a tag
    assert first.keywords[0] == "Health Facility Administration" and first.keywords[-1] == "Patient Education"
    assert {r.pmid for r in found if r.pmid} == {"23162881", "24584310"}  # from UR links to PubMed


def test_litsearchr_scopus_ris_fields():
    first = only_refs(shared("litsearchr_exports/scopus.ris"))[0]
    assert first.title == ("Black-backed woodpecker occupancy in burned and beetle-killed forests: Disturbance agent "
                           "matters")
    assert first.authors == ["Tingley MW", "Stillman AN", "Wilkerson RL", "Sawyer SC", "Siegel RB"]
    assert (first.year, first.journal, first.volume) == (2020, "Forest Ecology and Management", "455")
    assert first.doi == "10.1016/j.foreco.2019.117694"


def test_scopus_bibtex_fields():
    found = refs(_cached(shared("litsearchr_exports/scopus_final.bib"), None))
    first = found[0]
    assert (first.number, first.line) == (1, 2)
    assert first.title == "Burn severity and heterogeneity mediate avian response to wildfire in a hemiboreal forest"
    assert first.authors == ["Zlonis EJ", "Walton NG", "Sturtevant BR", "Wolter PT", "Niemi GJ"]
    assert (first.year, first.journal, first.volume, first.pages) == (2019, "Forest Ecology and Management", "439",
                                                                      "70-80")
    assert first.doi == "10.1016/j.foreco.2019.02.043"
    by_line = {r.line: r for r in found}
    assert "Sá Sousa P" in by_line[656].authors  # UTF-8 names as written
    assert by_line[1345].authors == [] and by_line[1345].title.startswith("Temporal changes of the breeding bird")
    # two citation keys are used twice (Krüger199782: the same article twice; Menke1992141: a book and an
    # article): every entry is still a record, for kb import's duplicate check to judge
    assert by_line[21438].title == by_line[21535].title and by_line[21438].year == 1997
    assert (by_line[22107].title, by_line[22122].title) == ("Rangelands", "Rangelands")
    book = by_line[2293]  # @BOOK{Symes2017309, journal={Ecology and Conservation of Birds in Urban Environments}
    assert (book.journal, book.pages, book.doi) == ("Ecology and Conservation of Birds in Urban Environments",
                                                    "309-341", "10.1007/978-3-319-43314-1_16")


def test_scopus_bibtex_sici_dois_are_kept_whole():
    by_line = {r.line: r for r in refs(_cached(shared("litsearchr_exports/scopus_final.bib"), None))}
    # doi={10.2193/0022-541X(2005)069<0185:VIVEOD>2.0.CO;2} (line 16676) and ...<0198:GBUORF>... (16697)
    dois = {r.doi for r in by_line.values() if r.doi and r.doi.startswith("10.2193/0022-541X(2005)069")}
    assert dois == {"10.2193/0022-541X(2005)069<0185:VIVEOD>2.0.CO;2",
                    "10.2193/0022-541X(2005)069<0198:GBUORF>2.0.CO;2"}


def test_web_of_science_bibtex_fields():
    found = only_refs(shared("litsearchr_exports/WoS_corecollection_final_1.bib"))
    first = found[0]
    assert (first.number, first.line) == (1, 2)
    assert first.title == ("Effects of pine-oak woodland restoration on breeding bird densities in the "
                           "Ozark-Ouachita Interior Highlands")  # {{...}} over two lines
    assert first.authors == ["Roach MC", "Thompson FR 3rd", "Jones-Farrand T"]  # "Thompson, III, Frank R."
    assert (first.year, first.journal, first.volume, first.pages) == (2019, "FOREST ECOLOGY AND MANAGEMENT", "437",
                                                                      "443-459")
    assert first.doi == "10.1016/j.foreco.2018.12.057"
    assert first.keywords[:5] == ["Woodland", "Distance sampling", "Canopy cover", "Prescribed fire",
                                  "Tree thinning"]  # "Tree\n   thinning" is one keyword
    assert "SAVANNA RESTORATION" in first.keywords  # Keywords-Plus after the author keywords
    by_line = {r.line: r for r in found}
    assert "forest regeneration at $21-$49 million" in by_line[7039].abstract  # \$21-\$49
    assert "more than 10 % of the area" in by_line[6808].abstract  # 10 \% of


def test_bibtex_latex_shortcut_decodes_as_pylatexenc_does():
    # kb.formats.bibtex decodes common LaTeX (\\&, {[}, ``x{''}, --) without pylatexenc; on the Web of
    # Science export that shortcut must give exactly what pylatexenc gives.
    text = shared("litsearchr_exports/WoS_corecollection_final_1.bib").read_text(encoding="utf-8-sig")
    checked = 0
    for entry in bibtexparser.parse_string(text).entries[:100]:
        for key in ("Title", "Journal", "Abstract", "Keywords", "Keywords-Plus"):
            if key in entry:
                value = entry[key]
                assert bibtex.field_text(value) == clean(bibtex.decode_latex(bibtex.unwrap(value))), (entry.key, key)
                checked += 1
    assert checked > 400


def test_scopus_csv_fields():
    path = shared("metaknowledge_tests/scopus_testing.csv.scopus")
    assert path.read_bytes().startswith(b"\xef\xbb\xbfAuthors,Title,Year")
    found = only_refs(path)
    first = found[0]
    assert first.title == "Strain Distribution of Complex-Bending YBCO Tape in Force-Balanced Coil Applied to SMES"
    assert first.authors[:3] == ["Yagai T", "Kimura Y", "Kamada H"] and len(first.authors) == 11
    assert (first.year, first.journal, first.volume, first.issue) == (2016, "IEEE Transactions on Applied "
                                                                            "Superconductivity", "26", "4")
    assert first.doi == "10.1109/TASC.2016.2541670"
    assert first.keywords[:3] == ["complex bending", "force-balanced coil", "SMES"]  # Author Keywords first
    assert "Carbon footprint" in first.keywords  # then Index Keywords
    with path.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r.pmid for r in found] == [row["PubMed ID"].strip() or None for row in rows]
    assert found[15].pmid == "3546744"
    no_author = [r.number for r in found if not r.authors]
    assert len(no_author) == 3  # "[No author name available]" is not an author
    assert all(rows[n - 1]["Authors"] == "[No author name available]" for n in no_author)


def test_van_de_schoot_csv_through_the_generic_columns():
    found = only_refs(shared("asreview_van_de_Schoot_2017/van_de_Schoot_2017.DERIVED_from_xlsx.csv"))
    first = found[0]
    assert (first.line, first.title) == (2, "Manual for ASEBA School-Age Forms & Profiles")
    assert first.authors == ["Achenbach TM", "Rescorla LA"]  # "Achenbach, T. M., Rescorla, L. A."
    assert first.year == 2001
    assert found[-1].line == 6190
    # 16 rows leave the year cell empty; record_id 105 has "1997" in its date cell, which gives its year
    no_year = [r for r in found if r.year is None]
    assert len(no_year) == 15
    assert found[105].year == 1997 and found[105].title.startswith("Temperature, stress, disorder and crystallization")
    assert sum(1 for r in found if r.title is None) == 5
    assert sum(1 for r in found if r.doi) == 1408  # 1410 DOI cells; two are not DOIs
    bad = [w for r in found for w in r.warnings]
    assert bad == ["DOI '10.1037.a0037593' is not a DOI; left out",
                   "DOI 'ss1016/j.cpem.2014.09.002' is not a DOI; left out"]
    ptsd = found[22]  # record_id 22, line 24: keywords "Genetic factors, Neurobiological factors, ..."
    assert ptsd.line == 24 and ptsd.title.startswith("Neurobiological risk factors and predictors of vulnerability")
    assert ptsd.keywords == ["Genetic factors", "Neurobiological factors", "Psychosocial factors", "PTSD resilience",
                             "PTSD risk"]
