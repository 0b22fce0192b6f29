"""Is this reference already known? Duplicate detection for kb import.

A reference matches a known one (a record of the knowledge base, or an earlier reference of
the same import) by, in order:

1. the same PMID or PMCID;
2. the same DOI, unless both titles are present and clearly different: book and supplement
   DOIs (one DOI for a whole book or abstract supplement) are never trusted alone;
3. the same trial registration, unless both carry a PMID or DOI and they differ (then they
   are two publications of one trial, which is not a duplicate);
4. the same normalised title, year and first author;
5. a fuzzy match: a title at least 90% similar (RapidFuzz's normalised Indel similarity) with
   the same first author and year, or at least 95% similar with the same first author a year
   apart (online-first versus print), or the same title and year when a first author is
   missing on one side. Titles shorter than 20 characters ("Editorial", "Reply") never match
   by title alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from rapidfuzz import fuzz

from .biblio import fold, surname_key

MIN_TITLE = 20
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
    path: Path | None = None  # the record file, for records of the knowledge base
    payload: object = None  # the caller's own data (the planned draft, or the record's raw data)

    @classmethod
    def of(cls, label: str, *, doi=None, pmid=None, pmcid=None, registrations=(), title=None, year=None,
           authors=(), path=None, payload=None) -> "Entry":
        return cls(label=label, doi=doi.lower() if doi else None, pmid=str(pmid) if pmid else None,
                   pmcid=str(pmcid).upper() if pmcid else None, registrations=list(registrations or ()),
                   title=fold(title), year=year if isinstance(year, int) else None,
                   author=surname_key(authors[0]) if authors else "", path=path, payload=payload)


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
        self.by_block: dict[tuple[int | None, str], list[Entry]] = {}
        self.by_title_year: dict[tuple[str, int | None], list[Entry]] = {}
        self.size = 0

    def add(self, e: Entry) -> None:
        self.size += 1
        if e.pmid:
            self.by_pmid.setdefault(e.pmid, e)
        if e.pmcid:
            self.by_pmcid.setdefault(e.pmcid, e)
        if e.doi:
            self.by_doi.setdefault(e.doi, []).append(e)
        for r in e.registrations:
            self.by_reg.setdefault(r, []).append(e)
        if len(e.title) >= MIN_TITLE:
            self.by_block.setdefault((e.year, e.author), []).append(e)
            self.by_title_year.setdefault((e.title, e.year), []).append(e)

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
        for other in self.by_block.get((e.year, e.author), ()):
            if other.title == e.title:
                return Match(other, "same title, year and first author")
        best: tuple[float, Entry | None, str] = (0.0, None, "")
        for year, cutoff in ((e.year, SAME_YEAR), *(((e.year - 1, NEXT_YEAR), (e.year + 1, NEXT_YEAR)) if e.year else ())):
            for other in self.by_block.get((year, e.author), ()) if e.author else ():
                score = fuzz.ratio(e.title, other.title, score_cutoff=cutoff)
                if score > best[0]:
                    when = "same year" if year == e.year else f"years {e.year} and {other.year}"
                    best = (score, other, f"similar title ({score:.0f}%), same first author, {when}")
        if best[1] is not None:
            return Match(best[1], best[2])
        for other in self.by_title_year.get((e.title, e.year), ()):
            if not other.author or not e.author:
                return Match(other, "same title and year (no first author to compare)")
        return None


def _different_publications(a: Entry, b: Entry) -> bool:
    """Two reports of one trial: both have a PMID (or DOI) and they differ."""
    if a.pmid and b.pmid and a.pmid != b.pmid:
        return True
    return bool(a.doi and b.doi and a.doi != b.doi)


__all__ = ["Entry", "Match", "Index", "WEAK_DOI"]
