"""Is this reference already known? Duplicate detection for kb import.

A reference matches a known one (a record of the knowledge base, or an earlier reference of
the same import) by, in order:

1. the same PMID or PMCID;
2. the same DOI, unless both titles are present and clearly different: book and supplement
   DOIs (one DOI for a whole book or abstract supplement) are never trusted alone;
3. the same trial registration, unless both carry a PMID or DOI and they differ (then they
   are two publications of one trial, which is not a duplicate);
4. the same normalised title, year and first author, unless both carry a PMID or a DOI and
   they differ: a conference abstract and the full paper, with one title, are two publications;
5. a fuzzy match: a title at least 90% similar (RapidFuzz's normalised Indel similarity) with
   the same first author and year, or at least 95% similar with the same first author a year
   apart (online-first versus print); the same title and year when a first author is missing on
   one side; the same long title (40 characters or more) and first author when a year is
   missing on one side or the years are two apart (a conference abstract, then the paper).

An erratum, correction, retraction notice, comment or reply never matches the article it is
about by title, and a fuzzy title match needs the same numbers in both titles ("... and the
MMPI-2" is not "... and the MCMI-II"; titles under 50 characters need 95%).

Titles are compared folded (lowercase ASCII letters and digits, spaces dropped, so that
"post-traumatic" equals "posttraumatic"); first authors by folded surname, where for a fuzzy
match one surname may hold the other ("Cardozo" and "Lopes Cardozo", "De La Garza" and "De La
Garza II", as exports split compound names differently) or differ by a letter ("Moyer" and
"Mover"). Titles shorter than 20 characters ("Editorial", "Reply") never match by title alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from rapidfuzz import fuzz, process

from .biblio import fold, surname_key

MIN_TITLE = 20
LONG_TITLE = 40
SHORT_FUZZY = 50  # titles shorter than this need NEXT_YEAR similarity even in the same year
NOTICE = re.compile(r"^(?:erratum|errata|corrigendum|corrigenda|correction|retraction|withdrawal|withdrawn|"
                    r"expression of concern|comment|commentary on|reply|response to|in reply|re)\b")
# PsycINFO's errata: '"The original title": Erratum'
NOTICE_END = re.compile(r'(?i)(?:^["\u201c].*["\u201d]\s*:\s*(?:erratum|errata|corrigendum|correction|retraction)'
                        r'|\b(?:erratum|errata|corrigendum))\W*$')
SAME_YEAR = 90.0
NEXT_YEAR = 95.0
DIFFERENT_TITLE = 60.0  # a shared DOI with titles less similar than this is not a duplicate
# DOIs of whole books (ISBN-based) and supplements: shared by many chapters or abstracts
WEAK_DOI = re.compile(r"^10\.\d+/97[89][\d-]|suppl|\.ch\d+$", re.I)


@dataclass
class Entry:
    """What dedup compares: the identifiers and the title, year and first author of one reference."""

    label: str  # a record id, or "file.ris record 12"
    doi: str | None = None
    pmid: str | None = None
    pmcid: str | None = None
    registrations: list[str] = field(default_factory=list)
    title: str = ""  # folded
    year: int | None = None
    author: str = ""  # folded surname of the first author
    notice: bool = False  # an erratum, correction, retraction notice, comment or reply
    numbers: tuple[str, ...] = ()  # the numbers in the title
    path: Path | None = None  # the record file, for records of the knowledge base
    payload: object = None  # the caller's own data (the planned draft, or the record's raw data)

    @classmethod
    def of(cls, label: str, *, doi=None, pmid=None, pmcid=None, registrations=(), title=None, year=None,
           authors=(), path=None, payload=None) -> "Entry":
        folded = fold(title)
        return cls(label=label, doi=doi.lower() if doi else None, pmid=str(pmid) if pmid else None,
                   pmcid=str(pmcid).upper() if pmcid else None, registrations=list(registrations or ()),
                   title=folded.replace(" ", ""), year=year if isinstance(year, int) else None,
                   author=surname_key(authors[0]) if authors else "",
                   notice=bool(NOTICE.match(folded) or (title and NOTICE_END.search(title.strip()))),
                   numbers=tuple(re.findall(r"\d+", folded)), path=path, payload=payload)


@dataclass
class Match:
    entry: Entry  # the known reference it duplicates
    reason: str


class Index:
    """Known references, looked up by identifier and by (year, first author) blocks of titles."""

    def __init__(self) -> None:
        self.by_pmid: dict[str, Entry] = {}
        self.by_pmcid: dict[str, Entry] = {}
        self.by_doi: dict[str, list[Entry]] = {}
        self.by_reg: dict[str, list[Entry]] = {}
        self.by_year: dict[int | None, tuple[list[str], list[Entry]]] = {}  # titles, entries
        self.by_title: dict[str, list[Entry]] = {}

    def add(self, e: Entry) -> None:
        if e.pmid:
            self.by_pmid.setdefault(e.pmid, e)
        if e.pmcid:
            self.by_pmcid.setdefault(e.pmcid, e)
        if e.doi:
            self.by_doi.setdefault(e.doi, []).append(e)
        for r in e.registrations:
            self.by_reg.setdefault(r, []).append(e)
        if len(e.title) >= MIN_TITLE:
            titles, entries = self.by_year.setdefault(e.year, ([], []))
            titles.append(e.title)
            entries.append(e)
            self.by_title.setdefault(e.title, []).append(e)

    def match(self, e: Entry) -> Match | None:
        if e.pmid and e.pmid in self.by_pmid:
            return Match(self.by_pmid[e.pmid], f"same PMID {e.pmid}")
        if e.pmcid and e.pmcid in self.by_pmcid:
            return Match(self.by_pmcid[e.pmcid], f"same PMCID {e.pmcid}")
        if e.doi:
            for other in self.by_doi.get(e.doi, ()):
                if e.title and other.title:
                    score = fuzz.ratio(e.title, other.title)
                    if WEAK_DOI.search(e.doi) and score < SAME_YEAR:
                        continue  # one book or supplement DOI, different chapters or abstracts
                    if score < DIFFERENT_TITLE:
                        continue
                elif WEAK_DOI.search(e.doi):
                    continue
                return Match(other, f"same DOI {e.doi}")
        for r in e.registrations:
            for other in self.by_reg.get(r, ()):
                if _different_publications(e, other):
                    continue
                return Match(other, f"same trial registration {r}")
        if len(e.title) < MIN_TITLE:
            return None
        same_title = [o for o in self.by_title.get(e.title, ())
                      if not _different_publications(e, o) and o.notice == e.notice]
        for other in same_title:
            if other.year == e.year and _same_author(e, other, strict=True):
                return Match(other, "same title, year and first author")
        best: tuple[float, Entry | None, str] = (0.0, None, "")
        if e.year is None:  # compare with every year
            blocks = [(y, NEXT_YEAR) for y in self.by_year]
        else:
            blocks = [(e.year, SAME_YEAR), (e.year - 1, NEXT_YEAR), (e.year + 1, NEXT_YEAR), (None, NEXT_YEAR)]
        short = len(e.title) < SHORT_FUZZY
        for year, cutoff in blocks:
            cutoff = max(cutoff, NEXT_YEAR) if short else cutoff
            titles, entries = self.by_year.get(year, ((), ()))
            if not titles:
                continue
            for _, score, i in process.extract(e.title, titles, scorer=fuzz.ratio, score_cutoff=cutoff, limit=8):
                other = entries[i]
                if (score > best[0] and other.notice == e.notice and other.numbers == e.numbers
                        and _same_author(e, other) and not _different_publications(e, other)):
                    when = ("same year" if year == e.year else f"years {e.year} and {other.year}"
                            if e.year and other.year else "no year on one side")
                    best = (score, other, f"similar title ({score:.0f}%), same first author, {when}")
        if best[1] is not None:
            return Match(best[1], best[2])
        for other in same_title:
            if other.year == e.year and (not other.author or not e.author):
                return Match(other, "same title and year (no first author to compare)")
            if len(e.title) >= LONG_TITLE and _same_author(e, other) and e.author:
                if e.year is None or other.year is None:
                    return Match(other, "same title and first author (no year on one side)")
                if abs(e.year - other.year) <= 2:
                    return Match(other, f"same title and first author, years {e.year} and {other.year}")
        return None


def _same_author(a: Entry, b: Entry, strict: bool = False) -> bool:
    """The same first author: equal folded surnames, or (unless strict) one holding the other
    ("cardozo" / "lopescardozo") or differing by a letter or so ("moyer" / "mover")."""
    if a.author == b.author:
        return bool(a.author) or strict
    if strict or not a.author or not b.author:
        return False
    short, long_ = sorted((a.author, b.author), key=len)
    return (len(short) >= 3 and short in long_) or fuzz.ratio(a.author, b.author) >= 80


def _different_publications(a: Entry, b: Entry) -> bool:
    """Two reports of one trial: both have a PMID (or DOI) and they differ."""
    if a.pmid and b.pmid and a.pmid != b.pmid:
        return True
    return bool(a.doi and b.doi and a.doi != b.doi)


__all__ = ["Entry", "Match", "Index", "WEAK_DOI"]
