"""Records out: JSON, CSV, BibTeX and RIS files of any list of studies (the site's downloads).

Every format is built from per-study *fragments* (one JSON line, one CSV row, one BibTeX entry,
one RIS record) joined in id order. Fragments never contain a blank line, so a file written here
can be split back into fragments by :func:`split`: an incremental site build replaces only the
fragments of the records that changed, without reading every record again.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Iterable

from .citations import bibtex_key, to_bibtex, to_ris
from .records import Study

FORMATS = ("json", "csv", "bibtex", "ris")
FILE_NAMES = {"json": "studies.json", "csv": "studies.csv", "bibtex": "studies.bib", "ris": "studies.ris"}
CSV_COLUMNS = (
    "id", "title", "authors", "authors_truncated", "year", "journal", "volume", "issue", "pages", "doi", "pmid",
    "pmcid", "registrations", "design", "blinding", "n_randomized", "n_analysed", "conditions", "topics", "drug",
    "route", "dose_mg_per_kg", "infusions", "comparator", "outcomes", "key_finding", "status", "retracted",
    "retraction_notice", "added", "updated",
)
_FORMULA = re.compile(r"^[=+@\t\r]")


class SplitError(ValueError):
    """A previous download file does not have the shape this module writes."""


def _cell(value) -> str:
    """One CSV cell: lists joined by '; ', whitespace collapsed (a row is one line), and a leading
    character that spreadsheets read as a formula neutralised with an apostrophe."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        value = "; ".join(str(v) for v in value)
    text = " ".join(str(value).split())
    return "'" + text if _FORMULA.match(text) else text


def csv_row(s: Study) -> dict[str, str]:
    iv = s.intervention
    row = {
        "id": s.id, "title": s.title, "authors": s.authors, "authors_truncated": s.authors_truncated, "year": s.year,
        "journal": s.journal, "volume": s.volume, "issue": s.issue, "pages": s.pages, "doi": s.doi, "pmid": s.pmid,
        "pmcid": s.pmcid, "registrations": s.registrations, "design": s.design, "blinding": s.blinding,
        "n_randomized": s.n_randomized, "n_analysed": s.n_analysed, "conditions": s.condition_terms,
        "topics": s.topics, "drug": iv.drug if iv else None, "route": iv.route if iv else None,
        "dose_mg_per_kg": [f"{d:g}" for d in iv.dose_mg_per_kg] if iv and iv.dose_mg_per_kg else None,
        "infusions": iv.infusions if iv else None, "comparator": s.comparator.type if s.comparator else None,
        "outcomes": sorted({o.outcome for o in s.outcomes}), "key_finding": s.key_finding, "status": s.status,
        "retracted": s.retracted, "retraction_notice": s.retraction.notice if s.retraction else None,
        "added": s.added.isoformat(), "updated": s.updated.isoformat() if s.updated else None,
    }
    return {k: _cell(row[k]) for k in CSV_COLUMNS}


def _csv_line(cells: Iterable[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(list(cells))
    return buf.getvalue().rstrip("\n")


def fragments(s: Study) -> dict[str, str]:
    """The study in every download format, one fragment each (no trailing newline, no blank line)."""
    return {
        # pydantic's own serializer: every field that has a value, in schema order, id first
        "json": s.model_dump_json(exclude_none=True),
        "csv": _csv_line(csv_row(s).values()),
        "bibtex": to_bibtex([s]).rstrip("\n"),
        "ris": to_ris([s]).rstrip("\n"),
    }


def assemble(fmt: str, parts: Iterable[str]) -> str:
    """A whole file from fragments (already in order)."""
    parts = list(parts)
    if fmt == "json":
        return "[\n" + ",\n".join(parts) + "\n]\n" if parts else "[]\n"
    if fmt == "csv":
        return _csv_line(CSV_COLUMNS) + "\n" + "".join(p + "\n" for p in parts)
    return "\n\n".join(parts) + "\n" if parts else ""


def split(fmt: str, text: str) -> dict[str, str]:
    """study id -> fragment, from a file :func:`assemble` wrote; :class:`SplitError` otherwise."""
    out: dict[str, str] = {}
    if fmt == "json":
        lines = text.split("\n")
        if text == "[]\n":
            return out
        if lines[0] != "[" or lines[-2:] != ["]", ""]:
            raise SplitError("not a kb JSON download")
        for line in lines[1:-2]:
            frag = line[:-1] if line.endswith(",") else line
            m = re.match(r'\{"id":"([a-z0-9-]+)"', frag)
            if not m:
                raise SplitError("a JSON line without an id first")
            out[m.group(1)] = frag
        return out
    if fmt == "csv":
        lines = text.split("\n")
        if lines[0] != _csv_line(CSV_COLUMNS) or lines[-1] != "":
            raise SplitError("not a kb CSV download (columns differ)")
        for line in lines[1:-1]:
            out[line.split(",", 1)[0]] = line
        return out
    if not text:
        return out
    for block in text.rstrip("\n").split("\n\n"):
        if fmt == "ris":
            m = re.search(r"^ID  - ([a-z0-9-]+)$", block, re.M)
        else:
            m = re.match(r"@\w+\{([a-z0-9_]+),", block)
        if not m:
            raise SplitError(f"a {fmt} entry without an id")
        out[m.group(1).replace("_", "-")] = block
    return out


def export_text(studies: Iterable[Study], fmt: str) -> str:
    """The studies in ``fmt``, in id order."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt}")
    return assemble(fmt, (fragments(s)[fmt] for s in sorted(studies, key=lambda s: s.id)))


__all__ = ["FORMATS", "FILE_NAMES", "CSV_COLUMNS", "fragments", "assemble", "split", "export_text", "bibtex_key",
           "SplitError"]
