"""RIS exports (PubMed via EndNote or Zotero, Embase, Scopus, Web of Science, Ovid, ProQuest, Rayyan).

The file is read line by line. A record runs from its ``TY  -`` line to its ``ER  -`` line; the
lines of one record at a time are handed to :mod:`rispy`, so a large export never sits in memory
whole and a broken record fails alone.
"""

from __future__ import annotations

import re
from typing import BinaryIO, Iterator

import rispy

from ..biblio import (Failure, Reference, authors_from, clean, clean_title, doi, ids_from_urls, keyword_list,
                      pages, pmcid, pmid, registrations_in, year)
from . import text_stream

_START = re.compile(r"^TY  -(?: |$)")
_END = re.compile(r"^ER  -")
_OVID_NUMBER = re.compile(r"^\s*\d+\.\s*$")  # Ovid writes "1." before each record
# A line meant as one of the tags read here but written with the wrong spacing ("TI - x", "AU- x"):
# rispy would take it for more text of the field before it (an author glued to the title), so it is
# read as that tag, with a warning.
_BAD_TAG = re.compile(r"^([A-Z][A-Z0-9])(?: {0,1}| {3,})-(?: (.*)|\s*)$|^([A-Z][A-Z0-9])  -(\S.*)$")
_READ_TAGS = frozenset("TY ER TI T1 ST AU A1 PY Y1 DA AB N2 JF JO T2 JA J2 J1 VL IS CP SP EP DO UR L1 L2 L3 LK M3 "
                       "AN DB DP C2 KW N1".split())
# Tags that hold a record's substance: met outside a record they mean a record lost its TY line.
_CONTENT_TAG = re.compile(r"^(?:TI|T1|AU|A1|AB|N2|PY|Y1|DO|JF|JO|T2)  - ")
_PUBMED_DB = re.compile(r"pubmed|medline|\bnlm\b", re.I)
# A note line saying the record is retracted: "RETRACTED ..." at its start, or
# PubMed's publication type "Retracted Publication" on a line of its own (EndNote puts the publication
# types in N1). A RETRACTED inside a line is not enough: Scopus writes the cited references into N1.
_RETRACTED = re.compile(r"^\W*RETRACTED\b")
_RETRACTED_TYPE = re.compile(r"^retracted publication$", re.I)


class _EveryTag(dict):
    """rispy mapping that keeps RIS tags as keys (TI stays TI, T1 stays T1)."""

    def __missing__(self, tag):
        return tag


class _AllLists:
    """rispy list-tags that hold every tag: each tag's value is the list of its lines."""

    def __contains__(self, tag) -> bool:
        return True


# One line per list item: a repeated tag and a continuation line (a line without a tag) both add an
# item. That is what Rayyan's KW means (one keyword per line); TI and AB items are joined with spaces.
_PARSER = rispy.RisParser(mapping=_EveryTag(), list_tags=_AllLists(),  # type: ignore[arg-type]
                          delimiter_tags_mapping={}, ignore=[])

URL_TAGS = ("UR", "L1", "L2", "L3", "LK", "M3")


def parse(fh: BinaryIO, encoding: str | None) -> Iterator[Reference | Failure]:
    number = 0
    record: list[str] | None = None  # lines of the record being read
    start = 0
    warnings: list[str] = []
    stray_reported = False
    pending: list[str] = []  # warnings about lines before the record they belong to
    for n, raw in enumerate(text_stream(fh, encoding), 1):
        line = raw.rstrip("\r\n")
        bad = _BAD_TAG.match(line)
        if bad and (bad.group(1) or bad.group(3)) in _READ_TAGS:
            tag, rest = (bad.group(1), bad.group(2)) if bad.group(1) else (bad.group(3), bad.group(4))
            (warnings if record is not None else pending).append(
                f"line {n}: the tag is written '{line[:line.index('-') + 1]}' (RIS wants '{tag}  - '); read as {tag}")
            line = f"{tag}  - {rest or ''}".rstrip()
        if record is None:
            if _START.match(line):
                number += 1
                record, start, warnings, stray_reported = [line], n, pending, False
                pending = []
            elif not line.strip() or _OVID_NUMBER.match(line):
                stray_reported = False
                pending = []
            elif _CONTENT_TAG.match(line) and not stray_reported:
                # Text outside records is skipped: exporters put headers there, and Ovid even writes
                # an NL tag and a "Link to the Ovid Full Text" line after each ER. But a title, an
                # author or an abstract outside any record means a record lost its TY line; that
                # must not vanish silently, so it is a failure (not a record: number None).
                stray_reported = True
                yield Failure(None, f"RIS fields outside any record: '{line[:60]}'", line=n,
                              hint="each record must start with a 'TY  - ' line; add it, or export the file again")
            continue
        if _END.match(line):
            record.append(line)
            yield _reference(number, start, record, warnings)
            record = None
            continue
        if _START.match(line):
            yield Failure(number, f"the record has no 'ER  -' line: the next record starts at line {n}", line=start,
                          hint="the record may be cut short; export the file again, or end the record with 'ER  - '")
            number += 1
            record, start, warnings = [line], n, []
            continue
        record.append(line)
    if record is not None:
        yield Failure(number, "the file ends inside this record (no 'ER  -' line)", line=start,
                      hint="the export may be cut short; export it again")


def _reference(number: int, line: int, lines: list[str], warnings: list[str]) -> Reference | Failure:
    try:
        parsed = _PARSER.parse_lines(iter(lines))
    except Exception as e:  # rispy should not raise, but one bad record must not stop the file
        return Failure(number, f"rispy could not read the record: {str(e) or type(e).__name__}", line=line,
                       hint="check the record's tags in a text editor")
    if len(parsed) != 1:
        return Failure(number, "rispy found no record between TY and ER", line=line)
    tags = parsed[0]

    def values(*names: str) -> list[str]:
        out: list[str] = []
        for name in names:
            v = tags.get(name)
            if isinstance(v, str):
                v = [v]
            # "nan": an empty cell written by pandas (ASReview's baseline_zotero.ris has 55 of them)
            out.extend(s.strip() for s in (v or []) if s and s.strip() and s.strip().lower() != "nan")
        return out

    def text(*names: str) -> str | None:
        for name in names:  # the first tag present wins; its lines are one text
            vs = values(name)
            if vs:
                return clean(" ".join(vs))
        return None

    ref = Reference(number=number, line=line, warnings=list(warnings))
    ref.title = clean_title(text("TI", "T1")) or clean_title(text("ST"))
    ref.authors, ref.authors_truncated = authors_from(values("AU") or values("A1"))  # A2/A3: editors
    for v in values("PY", "Y1", "DA"):
        ref.year = year(v)
        if ref.year:
            break
    # Full journal names before abbreviations; Zotero and PubMed/EndNote files write the journal in T2.
    ref.journal = text("JF", "JO", "T2", "JA", "J2", "J1")
    ref.volume = _short(ref, "VL", text("VL"))
    ref.issue = _short(ref, "IS", text("IS", "CP"))
    sp, ep = values("SP"), values("EP")
    ref.pages = pages(sp[0] if sp else None, ep[0] if ep else None)

    for v in values("DO"):
        ref.doi = doi(v)
        if ref.doi:
            break
    else:
        if values("DO"):
            ref.warnings.append(f"DO '{values('DO')[0][:60]}' is not a DOI; left out")
    found = ids_from_urls(values(*URL_TAGS))
    ref.doi = ref.doi or found.get("doi")

    databases = " ".join(values("DB", "DP"))
    for v in values("AN"):  # an accession number is a PMID only in a PubMed/MEDLINE record
        if v.isdigit() and _PUBMED_DB.search(databases):
            ref.pmid = pmid(v)
            break
    for v in values("C2"):
        if re.fullmatch(r"PMC\d+", v, re.I):
            ref.pmcid = ref.pmcid or pmcid(v)
        elif v.isdigit() and re.search(r"\bscopus\b", databases, re.I):
            ref.pmid = ref.pmid or pmid(v)  # Scopus writes the PubMed ID in C2
    ref.pmid = ref.pmid or found.get("pmid")
    ref.pmcid = ref.pmcid or found.get("pmcid")

    ref.abstract = text("AB", "N2")
    ref.keywords = keyword_list(values("KW"))
    ref.registrations = registrations_in(ref.abstract)
    for note in values("N1"):
        if _RETRACTED.match(note) or _RETRACTED_TYPE.match(note):
            ref.retracted = True
            ref.retraction_notice = clean(note)
            break
    return ref


def _short(ref: Reference, tag: str, value: str | None) -> str | None:
    """A volume or issue; a long text in its place is left out (record 3 of ASReview's ovid_zotero.ris
    has a cited reference in IS)."""
    if value and len(value) > 30:
        what = "a volume" if tag == "VL" else "an issue"
        ref.warnings.append(f"{tag} '{value[:40]}...' is too long to be {what} number; left out")
        return None
    return value
