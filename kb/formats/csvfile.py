"""CSV: any table with a title column; Embase and Scopus exports are read as they come.

The delimiter (comma, semicolon or tab) is taken from the header line. Column names are matched
ignoring case, spaces and punctuation ("Source title" = "source_title" = "SOURCE TITLE"). Columns:

  title       Title, Article Title, Primary Title, Document Title (required)
  authors     Authors, Author, Author Names, Author(s) ("Smith, J.; Doe, A." or "Smith J., Doe A.")
  year        Year, Publication Year, PY, Date (the first four-digit year)
  journal     Journal, Source Title, Journal/Book, Publication, Secondary Title, Journal Title,
              Publication Title
  volume      Volume; issue: Issue, Number; pages: Pages, or Start Page + End Page (Page Start, Page End)
  doi         DOI, or a doi.org / id=doi: link in Link, URL, Open URL Link
  pmid        PMID, PubMed ID, Medline PMID; pmcid: PMCID, PMC ID; also "PMID: 123" and
              "PMCID: PMC123" in an Extra column (Zotero)
  abstract    Abstract, Abstract Note
  keywords    Author Keywords, Keywords, Index Keywords, MeSH Terms, Emtree Drug Index Terms,
              Emtree Medical Index Terms, Manual Tags, Automatic Tags: all of them, each cell split
              on ";", else on commas outside brackets
  registrations  Clinical Trial Numbers, Trial Registration, and trial numbers (NCT..., ISRCTN...)
              in the abstract

When a row leaves a column empty, the next column for the same field is used. An Embase "Source" cell
("Cancer (2004) 102:4 (253-258). Date of Publication: ...") gives the journal, year, volume, issue and
pages that no other column gave. Cells are read as text: "=HYPERLINK(...)" stays as written.
"""

from __future__ import annotations

import csv
import itertools
import re
from typing import BinaryIO, Iterator

from ..biblio import (Failure, ParseError, Reference, authors_from, clean, clean_title, doi, ids_from_urls,
                      keyword_list, pages, pmcid, pmid, registrations_in, split_author_list, year)
from . import text_stream

# Each Reference field and the column names accepted for it, in order of preference.
COLUMNS: dict[str, tuple[str, ...]] = {
    "title": ("title", "article title", "primary title", "document title"),
    "authors": ("authors", "author", "author names", "author(s)"),
    "year": ("year", "publication year", "py", "date"),
    "journal": ("journal", "source title", "journal/book", "publication", "secondary title", "journal title",
                "publication title"),
    "volume": ("volume",),
    "issue": ("issue", "number"),
    "pages": ("pages",),
    "start_page": ("start page", "page start"),
    "end_page": ("end page", "page end"),
    "doi": ("doi",),
    "urls": ("link", "url", "open url link"),
    "pmid": ("pmid", "pubmed id", "medline pmid"),
    "pmcid": ("pmcid", "pmc id"),
    "extra": ("extra",),  # Zotero: "PMID: 123\nPMCID: PMC456"
    "abstract": ("abstract", "abstract note"),
    # every keyword column is read, in this order (author keywords before index terms)
    "keywords": ("author keywords", "keywords", "index keywords", "mesh terms", "emtree drug index terms",
                 "emtree medical index terms", "manual tags", "automatic tags"),
    "mesh": ("mesh terms",),  # also among the keywords
    "registrations": ("clinical trial numbers", "trial registration"),
}
FIELD_SIZE = 1 << 24  # 16 MB: far above any real cell, yet an unclosed quote fails instead of eating the file
_EMBASE_SOURCE = re.compile(
    r"^(?P<journal>.+?) \((?P<year>\d{4})\)(?: (?P<volume>[^\s:()]+)(?::(?P<issue>[^\s()]+))?)?"
    r"(?: \((?P<pages>[^)]*)\))?(?:[.,;]|$)")
_NO_AUTHOR = re.compile(r"^\[no author name available\]$", re.I)
_NO_ABSTRACT = re.compile(r"^\[no abstract available\]$", re.I)


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _delimiter(header: str) -> str:
    """The most frequent of comma, semicolon and tab in the header line, outside quotes."""
    outside = re.sub(r'"[^"]*"', "", header)
    counts = {d: outside.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def parse(fh: BinaryIO, encoding: str | None) -> Iterator[Reference | Failure]:
    if csv.field_size_limit() < FIELD_SIZE:
        csv.field_size_limit(FIELD_SIZE)
    stream = text_stream(fh, encoding)
    blank = 0  # blank lines before the header
    first = stream.readline()
    while first and not first.strip():
        blank += 1
        first = stream.readline()
    if not first.strip():
        raise ParseError("the CSV file is empty", hint="export the references again")
    # csv.reader rather than DictReader: the row's cells are matched to the header by position
    # (as DictReader does) while line_num still tells where each row starts. strict: a stray quote
    # fails its row instead of silently running cells (or the rest of the file) together.
    reader = csv.reader(itertools.chain([first], stream), delimiter=_delimiter(first), strict=True)
    try:
        header = next(reader)
    except csv.Error as e:
        raise ParseError(f"the CSV header cannot be read: {e}") from None
    columns: dict[str, list[int]] = {}
    for i, name in enumerate(header):
        columns.setdefault(_key(name), []).append(i)
    wanted = {field: [i for alias in aliases for i in columns.get(_key(alias), [])] for field, aliases in
              COLUMNS.items()}
    if not wanted["title"]:
        found = ", ".join(f"'{h}'" for h in header if h.strip()) or "none"
        raise ParseError(f"the CSV file has no title column (columns: {found})",
                         hint="name the title column one of: " + ", ".join(a.title() for a in COLUMNS["title"]))
    source = columns.get("source", [])
    number = 0
    while True:
        line = blank + reader.line_num + 1  # line_num: lines read so far, from the header on
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            number += 1
            yield _broken(number, line, blank + reader.line_num, str(e))
            continue
        if not any(cell.strip() for cell in row):
            continue  # an empty row (blank line or only delimiters) is not a record
        number += 1
        yield _reference(number, line, row, wanted, source)


def _broken(number: int, line: int, end: int, error: str) -> Failure:
    if "unexpected end of data" in error:
        return Failure(number, f"a quote opened in this row is never closed: lines {line}-{end} (the end of the "
                               "file) were read as one cell", line=line,
                       hint='close the quote; a quote inside a cell is written twice ("")')
    return Failure(number, f"the row is not valid CSV: {error}", line=line,
                   hint='a quote inside a cell is written twice (""), and only the delimiter may follow a '
                        "closing quote")


def _reference(number: int, line: int, row: list[str], wanted: dict[str, list[int]], source: list[int]) -> Reference:
    def cells(field: str) -> list[str]:
        # "nan": an empty cell written by pandas
        return [row[i].strip() for i in wanted[field] if i < len(row) and row[i].strip()
                and row[i].strip().lower() != "nan"]

    def first(field: str) -> str | None:
        found = cells(field)
        return found[0] if found else None

    ref = Reference(number=number, line=line)
    ref.title = clean_title(first("title"))
    names = [n for n in split_author_list(first("authors") or "") if not _NO_AUTHOR.match(n.strip())]
    ref.authors, ref.authors_truncated = authors_from(names)
    ref.year = next((y for y in map(year, cells("year")) if y), None)
    ref.journal = clean(first("journal"))
    ref.volume = clean(first("volume"))
    ref.issue = clean(first("issue"))
    ref.pages = pages(first("pages")) or pages(first("start_page"), first("end_page"))
    ref.doi = next((d for d in map(doi, cells("doi")) if d), None)
    if not ref.doi and cells("doi"):
        ref.warnings.append(f"DOI '{cells('doi')[0][:60]}' is not a DOI; left out")
    found = ids_from_urls(cells("urls"))
    ref.doi = ref.doi or found.get("doi")
    extra = " ".join(cells("extra"))
    in_extra = re.search(r"\bPMID:\s*(\d+)", extra), re.search(r"\bPMCID:\s*(PMC\d+)", extra)
    ref.pmid = (next((p for p in map(pmid, cells("pmid")) if p), None) or found.get("pmid")
                or (pmid(in_extra[0].group(1)) if in_extra[0] else None))
    ref.pmcid = (next((p for p in map(pmcid, cells("pmcid")) if p), None) or found.get("pmcid")
                 or (pmcid(in_extra[1].group(1)) if in_extra[1] else None))
    abstract = clean(first("abstract"))
    ref.abstract = None if abstract and _NO_ABSTRACT.match(abstract) else abstract
    ref.keywords = keyword_list([t for cell in cells("keywords") for t in _terms(cell)])
    ref.mesh = keyword_list([t for cell in cells("mesh") for t in _terms(cell)])
    ref.registrations = registrations_in(*cells("registrations"), ref.abstract)
    for i in source:  # Embase: "Journal (2014) 3:3 (152-160). Date of Publication: 2014"
        m = _EMBASE_SOURCE.match(row[i].strip()) if i < len(row) else None
        if m:
            ref.journal = ref.journal or clean(m.group("journal"))
            ref.year = ref.year or year(m.group("year"))
            ref.volume = ref.volume or m.group("volume")
            ref.issue = ref.issue or m.group("issue")
            ref.pages = ref.pages or pages(m.group("pages"))
            break
    return ref


def _terms(cell: str) -> list[str]:
    """Keywords of one cell: split on ";" when there is one, else on commas outside brackets
    (Emtree writes "duplication cyst (diagnosis, surgery)")."""
    cell = clean(cell) or ""
    if ";" in cell:
        return [t.strip() for t in cell.split(";") if t.strip()]
    if "(" not in cell and "[" not in cell:
        return [t.strip() for t in cell.split(",") if t.strip()]
    out, depth, cur = [], 0, []
    for ch in cell:
        if ch in "([":
            depth += 1
        elif ch in ")]" and depth:
            depth -= 1
        if ch == "," and not depth:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur).strip())
    return [t for t in out if t]
