"""PubMed / MEDLINE XML: ``<PubmedArticleSet>`` (efetch, PubMed's "Send to > File > XML") and the
older ``<MedlineCitationSet>`` of the MEDLINE baseline files.

The file is read in chunks through expat, and only the record being read is held as an element
tree, so memory stays flat however large the file. Records are ``PubmedArticle``,
``PubmedBookArticle`` (NCBI Bookshelf chapters and books) and bare ``MedlineCitation`` elements;
``DeleteCitation`` lists (PMIDs withdrawn in an update file) are skipped and not counted.

XML that breaks off (a truncated download) or is malformed yields every complete record before the
break, then one :class:`~kb.biblio.Failure` at the line where expat stopped; nothing after it can be
read. expat decodes the bytes itself, from the XML declaration, so the ``encoding`` argument is not
used.
"""

from __future__ import annotations

from typing import BinaryIO, Iterator
from xml.etree.ElementTree import Element, TreeBuilder
from xml.parsers import expat

from ..biblio import Failure, ParseError, Reference, clean, unique, clean_title, doi, pages, person, pmcid, pmid, \
    registrations_in, year
from ..records import registry_of

CHUNK = 1 << 16
RECORDS = {"PubmedArticle", "PubmedBookArticle", "MedlineCitation"}
ROOTS = {"PubmedArticleSet", "MedlineCitationSet", "PubmedBookArticleSet"} | RECORDS
# DataBankName values that are trial registries (the others are sequence, structure and data banks)
TRIAL_BANKS = {"clinicaltrials.gov", "isrctn", "eudract", "anzctr", "chictr", "ctri", "drks", "irct", "jprn",
               "umin", "umin cr", "jrct", "ntr", "pactr", "rebec", "rpcec", "slctr", "tctr", "cris", "euctr", "ctis"}
TRUNCATED_HINT = "the file may be truncated; download or export it again"


def parse(fh: BinaryIO, encoding: str | None = None) -> Iterator[Reference | Failure]:
    """Every record of a PubMed XML file, in file order. ``encoding`` is ignored: XML declares its own."""
    reader = _Reader()
    while True:
        chunk = fh.read(CHUNK)
        try:
            reader.parser.Parse(chunk, not chunk)
        except expat.ExpatError as e:
            yield from reader.flush()
            if reader.root is None:
                if e.code == expat.errors.codes[expat.errors.XML_ERROR_NO_ELEMENTS] and e.lineno <= 1:
                    raise ParseError("the file is empty", hint="export the references again") from None
                raise ParseError(f"this is not XML: {expat.ErrorString(e.code)} (line {e.lineno})",
                                 hint="check the file, or force another format with --format") from None
            number = reader.count if reader.builder is not None else None
            yield Failure(number, f"the XML is cut off or malformed here: {expat.ErrorString(e.code)}",
                          line=e.lineno, hint=TRUNCATED_HINT)
            return
        yield from reader.flush()
        if not chunk:
            return


class _Reader:
    """expat callbacks that build one record at a time as an ElementTree element."""

    def __init__(self) -> None:
        p = expat.ParserCreate()
        p.buffer_text = True
        p.buffer_size = CHUNK
        p.StartElementHandler = self.start
        p.EndElementHandler = self.end
        p.CharacterDataHandler = self.data
        p.SkippedEntityHandler = self.skipped
        self.parser = p
        self.root: str | None = None
        self.depth = 0
        self.count = 0  # records started so far
        self.builder: TreeBuilder | None = None  # set while inside a record
        self.record_depth = 0
        self.record_line: int | None = None
        self.record_warnings: list[str] = []
        self.done: list[tuple[int, int | None, Element, list[str]]] = []

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        self.depth += 1
        if self.depth == 1:
            self.root = tag
            if tag not in ROOTS:
                raise ParseError(f"this XML is not a PubMed export: its root element is <{tag}>, not "
                                 "<PubmedArticleSet> or <MedlineCitationSet>",
                                 hint="export from PubMed with Send to > File > XML, or use RIS")
        if self.builder is not None:
            self.builder.start(tag, attrs)
        elif tag in RECORDS:
            self.count += 1
            self.record_line = self.parser.CurrentLineNumber
            self.record_depth = self.depth
            self.record_warnings = []
            self.builder = TreeBuilder()
            self.builder.start(tag, attrs)

    def end(self, tag: str) -> None:
        if self.builder is not None:
            self.builder.end(tag)
            if self.depth == self.record_depth:
                self.done.append((self.count, self.record_line, self.builder.close(), self.record_warnings))
                self.builder = None
        self.depth -= 1

    def data(self, text: str) -> None:
        if self.builder is not None:
            self.builder.data(text)

    def skipped(self, name: str, is_parameter_entity: bool) -> None:
        if self.builder is not None and not is_parameter_entity:
            self.record_warnings.append(f"the entity &{name}; is not defined in the file; it was left out of the text")

    def flush(self) -> Iterator[Reference | Failure]:
        done, self.done = self.done, []
        for number, line, element, warnings in done:
            item = record(element, number, line)
            if isinstance(item, Reference):
                item.warnings[:0] = warnings
            yield item


# -- one record ---------------------------------------------------------------------


def text(el: Element | None) -> str | None:
    """All the text of an element, inside inline markup (<i>, <b>, <sub> ...) too, whitespace collapsed.
    A superscript is written after a caret ('10<sup>3</sup>' -> '10^3'), so that a power or a
    charge does not run into the number before it ('103')."""
    return None if el is None else clean("".join(_inline(el)))


def _inline(el: Element) -> Iterator[str]:
    yield el.text or ""
    for child in el:
        if child.tag == "sup":
            yield "^" + "".join(child.itertext())
        else:
            yield from _inline(child)
        yield child.tail or ""


def record(el: Element, number: int, line: int | None) -> Reference | Failure:
    """One ``PubmedArticle``, ``PubmedBookArticle`` or ``MedlineCitation`` as a reference."""
    if el.tag == "PubmedBookArticle":
        return book(el, number, line)
    citation = el if el.tag == "MedlineCitation" else el.find("MedlineCitation")
    if citation is None:
        return Failure(number, "this PubmedArticle has no MedlineCitation", line=line,
                       hint="the record is incomplete; export it from PubMed again")
    ref = Reference(number=number, line=line)
    article = citation.find("Article")
    if article is None:
        article = Element("Article")
        ref.warnings.append("the record has no <Article>: no title, authors, journal or abstract")
    data = el.find("PubmedData")

    ref.pmid = _pmid(citation.findtext("PMID"), ref)
    ref.title = clean_title(text(article.find("ArticleTitle")))
    if not ref.title:
        ref.title = clean_title(text(article.find("VernacularTitle")))
        if ref.title:
            ref.warnings.append("no English title; the title is the original-language one (VernacularTitle)")
    ref.authors, ref.authors_truncated = _authors(article.find("AuthorList"), ref)

    journal = article.find("Journal")
    if journal is None:
        journal = Element("Journal")
    issue = journal.find("JournalIssue")
    if issue is None:
        issue = Element("JournalIssue")
    ref.journal = clean(journal.findtext("Title")) or clean(journal.findtext("ISOAbbreviation")) \
        or clean(citation.findtext("MedlineJournalInfo/MedlineTA"))
    ref.volume = clean(issue.findtext("Volume"))
    ref.issue = clean(issue.findtext("Issue"))
    ref.year = year(issue.findtext("PubDate/Year")) or year(issue.findtext("PubDate/MedlineDate"))
    if ref.year is None:
        for where, path, what in (
                (article, "ArticleDate/Year", "the electronic publication date (ArticleDate)"),
                (citation, "DateCompleted/Year", "the date MEDLINE indexing was completed (DateCompleted)"),
                (citation, "DateCreated/Year", "the date the record was created (DateCreated)")):
            ref.year = year(where.findtext(path))
            if ref.year:
                ref.warnings.append(f"no journal issue date; the year is from {what}")
                break
    ref.pages = pages(article.findtext("Pagination/MedlinePgn")) or pages(
        article.findtext("Pagination/StartPage"), article.findtext("Pagination/EndPage"))

    ids = data.findall("ArticleIdList/ArticleId") if data is not None else []  # not ReferenceList's
    for loc in article.findall("ELocationID"):
        if loc.get("EIdType") == "doi" and loc.get("ValidYN") != "N":
            ref.doi = doi(loc.text)
            if ref.doi:
                break
    if not ref.doi:
        ref.doi = next((d for d in (doi(a.text) for a in ids if a.get("IdType") == "doi") if d), None)
    ref.pmcid = next((p for p in (pmcid(a.text) for a in ids if a.get("IdType") == "pmc") if p), None)
    if not ref.pmcid:  # MEDLINE baseline files carry the PMCID as an OtherID
        ref.pmcid = next((p for p in (pmcid(o.text) for o in citation.findall("OtherID")
                                      if o.get("Source") == "NLM" and (o.text or "").strip().startswith("PMC"))
                          if p), None)

    ref.abstract = _abstract(article.find("Abstract"))
    ref.mesh = unique(text(d) for d in citation.findall("MeshHeadingList/MeshHeading/DescriptorName"))
    ref.keywords = unique([text(k) for k in citation.findall("KeywordList/Keyword")] + ref.mesh)
    ref.publication_types = unique(text(p) for p in article.findall("PublicationTypeList/PublicationType"))
    ref.registrations = _registrations(article.findall("DataBankList/DataBank"), ref)
    _retraction(ref, citation.findall("CommentsCorrectionsList/CommentsCorrections"))
    return ref


def book(el: Element, number: int, line: int | None) -> Reference | Failure:
    """A ``PubmedBookArticle`` (an NCBI Bookshelf book or chapter, e.g. GeneReviews)."""
    doc = el.find("BookDocument")
    if doc is None:
        return Failure(number, "this PubmedBookArticle has no BookDocument", line=line,
                       hint="the record is incomplete; export it from PubMed again")
    bk = doc.find("Book")
    if bk is None:
        bk = Element("Book")
    ref = Reference(number=number, line=line)
    book_title = clean_title(text(bk.find("BookTitle")))
    ref.pmid = _pmid(doc.findtext("PMID"), ref)
    ref.title = clean_title(text(doc.find("ArticleTitle"))) or book_title
    ref.warnings.append(f"a book record (NCBI Bookshelf{': ' + book_title if book_title else ''}), not a journal "
                        "article: there is no journal, volume, issue or pages")
    lists = doc.findall("AuthorList") or bk.findall("AuthorList")
    authors = [a for a in lists if a.get("Type", "authors") == "authors"]
    if authors:
        ref.authors, ref.authors_truncated = _authors(authors[0], ref)
    elif lists:
        ref.warnings.append("the book lists only editors, not authors; the authors are left empty")
    ref.year = year(bk.findtext("PubDate/Year")) or year(bk.findtext("PubDate/MedlineDate")) \
        or year(bk.findtext("BeginningDate/Year"))
    ids = doc.findall("ArticleIdList/ArticleId")
    ref.doi = next((d for d in (doi(a.text) for a in ids if a.get("IdType") == "doi") if d), None)
    ref.abstract = _abstract(doc.find("Abstract"))
    ref.keywords = unique(text(k) for k in doc.findall("KeywordList/Keyword"))
    ref.publication_types = unique(text(p) for p in doc.findall("PublicationType"))
    ref.registrations = registrations_in(ref.abstract)
    ref.retracted = "Retracted Publication" in ref.publication_types
    return ref


def _pmid(value: str | None, ref: Reference) -> str | None:
    found = pmid(value)
    if value and value.strip() and not found:
        ref.warnings.append(f"the PMID '{value.strip()}' is malformed; left out")
    return found


def _authors(author_list: Element | None, ref: Reference) -> tuple[list[str], bool]:
    if author_list is None:
        return [], False
    out: list[str] = []
    for a in author_list.findall("Author"):
        collective = text(a.find("CollectiveName"))
        surname = text(a.find("LastName"))
        if a.get("ValidYN") == "N":
            ref.warnings.append(f"the author '{surname or collective}' is marked not valid (ValidYN=\"N\"); left out")
            continue
        if surname:
            out.append(person(surname, _given(text(a.find("Initials")), text(a.find("ForeName")))))
        elif collective:
            out.append(collective)
    return out, author_list.get("CompleteYN") == "N"


def _given(initials: str | None, forename: str | None) -> str:
    """What :func:`~kb.biblio.person` should read as the given names. NLM's own Initials ('JR') are
    passed letter by letter ('J R'), so that initials such as JR and SR are not taken for the
    suffixes Jr and Sr."""
    if initials and initials.isalpha() and initials.isupper():
        return " ".join(initials)
    return forename or initials or ""


def _abstract(abstract: Element | None) -> str | None:
    if abstract is None:
        return None
    parts = []
    for part in abstract.findall("AbstractText"):
        body = text(part)
        if not body:
            continue
        label = clean(part.get("Label"))
        parts.append(f"{label}: {body}" if label and label.upper() != "UNLABELLED" else body)
    return " ".join(parts) or None


def _registrations(banks: list[Element], ref: Reference) -> list[str]:
    out: list[str] = []
    for bank in banks:
        name = clean(bank.findtext("DataBankName")) or ""
        for acc in bank.findall("AccessionNumberList/AccessionNumber"):
            value = clean(acc.text)
            if not value:
                continue
            if registry_of(value):
                if value not in out:
                    out.append(value)
            elif name.lower() in TRIAL_BANKS:
                ref.warnings.append(f"the {name} registration '{value}' is not in a form kb knows; left out")
    for r in registrations_in(ref.abstract):
        if r not in out:
            out.append(r)
    return out


def _retraction(ref: Reference, comments: list[Element]) -> None:
    notices = [text(c.find("RefSource")) for c in comments if c.get("RefType") == "RetractionIn"]
    notices = [n for n in notices if n]
    ref.retracted = "Retracted Publication" in ref.publication_types or bool(notices)
    ref.retraction_notice = "; ".join(unique(notices)) or None

