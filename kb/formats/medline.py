"""MEDLINE / PubMed tagged text (.nbib), as PubMed's "Send to > Citation manager" and the MEDLINE
display write it::

    PMID- 26524502
    TI  - Bioinformatic survey of ABC transporters in dermatophytes.
    AB  - ATP binding cassette (ABC) transporters constitute a very large and ubiquitous
          superfamily of membrane proteins. ...
    FAU - Gadzalski, Marek
    AU  - Gadzalski M

A tag is four characters, left-justified, then ``- ``; a value runs on over continuation lines that
begin with six spaces; records are separated by blank lines. The file is read line by line.
"""

from __future__ import annotations

import re
from typing import BinaryIO, Iterator

from ..biblio import Failure, ParseError, Reference, clean, unique, clean_title, doi, keyword_list, pages, person, pmcid, \
    pmid, registrations_in, split_name, year
from ..records import registry_of
from . import text_stream

TAG_LINE = re.compile(r"^([A-Z][A-Z0-9]{1,3}) {0,3}-(?: (.*)|\s*)$")
SUFFIX = re.compile(r"^(?:Jr|Sr|2nd|3rd|II|III|IV)\.?$")
AU_FORM = re.compile(r"^(.+?) ([A-Z]{1,4})$")  # "Murrough JW"
TRIAL_BANKS = {"clinicaltrials.gov", "isrctn", "eudract", "anzctr", "chictr", "ctri", "drks", "irct", "jprn",
               "umin", "umin cr", "jrct", "ntr", "pactr", "rebec", "rpcec", "slctr", "tctr", "cris", "euctr", "ctis"}
NOT_A_RECORD_HINT = "these lines are not a MEDLINE record; check the file around this line"


def parse(fh: BinaryIO, encoding: str | None = None) -> Iterator[Reference | Failure]:
    """Every record of a MEDLINE file, in file order."""
    fields: list[list] = []  # [tag, value, line] in file order
    odd: list[str] = []  # warnings for lines that are neither tags nor continuations
    start: int | None = None
    number = 0
    seen_tag = False
    every_record_has_so = True
    references = 0  # records read as references so far
    lineno = 0
    for lineno, raw in enumerate(text_stream(fh, encoding), 1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            if start is not None:
                number += 1
                item = record(fields, odd, number, start)
                if isinstance(item, Reference):
                    references += 1
                    every_record_has_so &= any(f[0] == "SO" for f in fields)
                yield item
                fields, odd, start = [], [], None
            continue
        m = TAG_LINE.match(line)
        if not seen_tag:
            if not m:
                raise ParseError(f"this is not a MEDLINE file: line {lineno} is not a tag line such as 'PMID- '",
                                 hint="export from PubMed with Send to > Citation manager, or force another format "
                                      "with --format")
            seen_tag = True
        if start is None:
            start = lineno
        if m:
            fields.append([m.group(1), (m.group(2) or "").strip(), lineno])
        elif line[:1].isspace() and fields:
            fields[-1][1] = f"{fields[-1][1]} {line.strip()}".strip()
        else:
            shown = line.strip()
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            odd.append(f"line {lineno} is neither a MEDLINE tag line nor a continuation of one; "
                       f"it was left out: '{shown}'")
    if start is not None:
        number += 1
        item = record(fields, odd, number, start)
        if isinstance(item, Reference) and references and every_record_has_so and \
                not any(f[0] == "SO" for f in fields):
            item.warnings.append(f"the file ends inside this record (line {lineno}) without its SO (source) line, "
                                 "which every record before it has: the file may be cut off here; check the "
                                 "last fields")
        yield item


def record(fields: list[list], odd: list[str], number: int, line: int) -> Reference | Failure:
    """One record's tag values as a reference."""
    values: dict[str, list[str]] = {}
    for tag, value, _ in fields:
        values.setdefault(tag, []).append(value)

    def first(tag: str) -> str | None:
        return next((v for v in values.get(tag, []) if clean(v)), None)

    title = clean_title(first("TI"))
    raw_pmid = first("PMID")
    if not raw_pmid and not title:
        return Failure(number, "no PMID or title", line=line, hint=NOT_A_RECORD_HINT)
    ref = Reference(number=number, line=line, warnings=list(odd))
    ref.pmid = pmid(raw_pmid)
    if raw_pmid and not ref.pmid:
        ref.warnings.append(f"the PMID '{raw_pmid}' is malformed; left out")
    ref.title = title
    if not ref.title:
        for tag, what in (("TT", "the original-language title (TT)"), ("BTI", "the book title (BTI)")):
            ref.title = clean_title(first(tag))
            if ref.title:
                ref.warnings.append(f"no TI line; the title is {what}")
                break
    ref.authors = authors(fields)
    ref.year = year(first("DP"))
    ref.journal = clean(first("JT")) or clean(first("TA"))
    ref.volume = clean(first("VI"))
    ref.issue = clean(first("IP"))
    ref.pages = pages(first("PG"))
    for tag in ("LID", "AID"):
        for v in values.get(tag, []):
            if ref.doi is None and v.rstrip().endswith("[doi]"):
                ref.doi = doi(v.rstrip()[:-5])
    ref.pmcid = next((p for p in map(pmcid, values.get("PMC", [])) if p), None)
    ref.abstract = clean(" ".join(values.get("AB", []))) or None
    # MeSH headings: "*Asthma/drug therapy" -> "Asthma" (split here too, for headings such as
    # "beta-Lactamases/metabolism" that start in lower case)
    ref.mesh = keyword_list([v.split("/", 1)[0] for v in values.get("MH", [])])
    ref.keywords = unique([clean(v) for v in values.get("OT", [])] + ref.mesh)
    ref.publication_types = unique(clean(v) for v in values.get("PT", []))
    notices = unique(clean(re.sub(r"^Retraction in:\s*", "", v, flags=re.I)) for v in values.get("RIN", []))
    ref.retraction_notice = "; ".join(notices) or None
    ref.retracted = "Retracted Publication" in ref.publication_types or bool(notices)
    for v in values.get("SI", []):
        bank, _, accession = v.partition("/")
        accession = clean(accession) or ""
        if registry_of(accession):
            if accession not in ref.registrations:
                ref.registrations.append(accession)
        elif bank.strip().lower() in TRIAL_BANKS and accession:
            ref.warnings.append(f"the {bank.strip()} registration '{accession}' is not in a form kb knows; left out")
    for r in registrations_in(ref.abstract):
        if r not in ref.registrations:
            ref.registrations.append(r)
    return ref


def authors(fields: list[list]) -> list[str]:
    """FAU ("Murrough, James W") preferred, AU ("Murrough JW") when an author has no FAU, CN (a group) as
    written; in file order."""
    out: list[str] = []
    last_fau = False  # the previous author tag was an FAU not yet paired with its AU
    for tag, value, _ in fields:
        if tag == "FAU":
            name = _full_name(value)
            if name:
                out.append(name)
            last_fau = bool(name)
        elif tag == "AU":
            if not last_fau:
                name = _short_name(value)
                if name:
                    out.append(name)
            last_fau = False
        elif tag == "CN":
            name = clean(value)
            if name:
                out.append(name)
            last_fau = False
    return out


def _full_name(value: str) -> str:
    value = clean(value) or ""
    if "," in value:
        surname, given = value.split(",", 1)
        return person(surname, given)
    return split_name(value)


def _short_name(value: str) -> str:
    """'Murrough JW' -> 'Murrough JW'. Initials are passed letter by letter so that JR and SR are not
    read as the suffixes Jr and Sr; a suffix after the initials ('Smith JR Jr') is dropped."""
    parts = (clean(value) or "").split()
    if len(parts) > 2 and SUFFIX.match(parts[-1]):
        parts = parts[:-1]
    m = AU_FORM.match(" ".join(parts))
    if m:
        return person(m.group(1), " ".join(m.group(2)))
    return split_name(" ".join(parts))

