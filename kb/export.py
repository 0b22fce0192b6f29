"""Records out: JSON, CSV, BibTeX, RIS, CSL-JSON and MetaPsy-style CSV of any list of studies.

kb export and the site's downloads both write from here.

Every format is built from per-study *fragments* (one JSON line, one CSV row, one BibTeX entry,
one RIS record) joined in id order. Fragments never contain a blank line, so a file written here
can be split back into fragments by :func:`split`: an incremental site build replaces only the
fragments of the records that changed, without reading every record again.
"""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Iterable

from .citations import bibtex_key, to_bibtex, to_ris
from .records import Study, split_author, split_suffix, surname
from .terminal import safe_json, without_controls

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
    """The study in every download format, one fragment each (no trailing newline, no blank line).
    A record's control characters (ESC, OSC ...) are dropped from the text formats and escaped in JSON:
    an export shown in a terminal obeys none of them."""
    return {
        # pydantic's own serializer: every field that has a value, in schema order, id first
        "json": safe_json(s.model_dump_json(exclude_none=True)),
        "csv": without_controls(_csv_line(csv_row(s).values())),
        "bibtex": without_controls(to_bibtex([s]).rstrip("\n")),
        "ris": without_controls(to_ris([s]).rstrip("\n")),
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


def export_text(studies: Iterable[Study], fmt: str, keep_order: bool = False) -> str:
    """The studies in ``fmt`` (any of EXPORT_FORMATS), in id order, or in the order given with
    ``keep_order`` (kb search lists its hits by rank)."""
    studies = list(studies) if keep_order else sorted(studies, key=lambda s: s.id)
    if fmt == "csl-json":
        return safe_json(json.dumps([csl_item(s) for s in studies], indent=2, ensure_ascii=False)) + "\n"
    if fmt == "metapsy":
        return without_controls(metapsy_csv(studies))
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt}")
    return assemble(fmt, (fragments(s)[fmt] for s in studies))


# -- CSL-JSON (Zotero, Pandoc, citeproc) ----------------------------------------------------

CSL_TYPES = {"guideline": "report", "consensus-statement": "article-journal"}


def _csl_name(author: str) -> dict[str, str]:
    surname, initials = split_author(author)
    if not initials:
        return {"literal": author}
    name = {"family": surname, "given": " ".join(f"{c}." for c in initials)}
    suffix = split_suffix(author)[1]
    if suffix:
        name["suffix"] = suffix + ("." if suffix in ("Jr", "Sr") else "")
    return name


def csl_item(s: Study) -> dict:
    """One study as a CSL-JSON item (the citation format of Zotero, Pandoc and citeproc)."""
    item: dict = {"id": s.id, "type": CSL_TYPES.get(s.design, "article-journal")}
    if s.title:
        item["title"] = s.title
    if s.authors:
        item["author"] = [_csl_name(a) for a in s.authors]
    item["issued"] = {"date-parts": [[s.year]]}
    for key, value in (("container-title", s.journal), ("volume", s.volume), ("issue", s.issue),
                       ("page", s.pages), ("DOI", s.doi), ("PMID", s.pmid), ("PMCID", s.pmcid),
                       ("abstract", s.abstract)):
        if value:
            item[key] = value
    if s.keywords:
        item["keyword"] = ", ".join(s.keywords)
    if s.pmid:
        item["URL"] = f"https://pubmed.ncbi.nlm.nih.gov/{s.pmid}/"
    elif s.doi:
        item["URL"] = f"https://doi.org/{s.doi}"
    if s.retracted:
        r = s.retraction
        item["note"] = "RETRACTED" + (f" {r.date}" if r and r.date else "") + (f": {r.notice}" if r and r.notice else "")
    return item


# -- MetaPsy-style comparisons (R: metapsyTools, meta, metafor) -----------------------------

METAPSY_COLUMNS = (
    "study", "study_id", "year", "doi", "pmid", "design", "condition", "outcome", "primary", "instrument", "time",
    "time_weeks", "condition_arm1", "condition_arm2", "multi_arm1", "multi_arm2", "outcome_type",
    "mean_arm1", "mean_arm2", "sd_arm1", "sd_arm2", "n_arm1", "n_arm2",
    "mean_change_arm1", "mean_change_arm2", "sd_change_arm1", "sd_change_arm2", "n_change_arm1", "n_change_arm2",
    "event_arm1", "event_arm2", "totaln_arm1", "totaln_arm2", "counts", "pool", "pool_note", "retracted", "source",
)


def _num(x) -> str:
    if x is None:
        return ""
    return f"{x:g}" if isinstance(x, float) else str(x)


def metapsy_rows(s: Study) -> list[dict[str, str]]:
    """One row per comparison and outcome, with raw arm data, in the wide layout of the Metapsy data
    standard: arm 1 is the ketamine arm, as in the record. Reported effects (no arm data) and
    single-arm results are not comparisons and are left out."""
    rows = []
    label = f"{surname(s.authors[0])}, {s.year}" if s.authors else s.id
    for o in s.outcomes:
        d = o.data
        if d is None or d.type == "effect" or len(d.arms) < 2:
            continue
        for i in range(len(d.arms)):
            for j in range(i + 1, len(d.arms)):
                a, b = d.arms[i], d.arms[j]
                row = {
                    "study": label, "study_id": s.id, "year": s.year, "doi": s.doi, "pmid": s.pmid,
                    "design": s.design, "condition": "; ".join(s.condition_terms), "outcome": o.outcome,
                    "primary": int(o.primary), "instrument": o.instrument, "time": o.timepoint,
                    "time_weeks": round(o.timepoint_days / 7, 3) if o.timepoint_days is not None else None,
                    "condition_arm1": a.label, "condition_arm2": b.label,
                    "multi_arm1": a.label if len(d.arms) > 2 else None,
                    "multi_arm2": b.label if len(d.arms) > 2 else None,
                    "counts": o.counts, "pool": str(o.pool).lower(), "pool_note": o.pool_note,
                    "retracted": str(s.retracted).lower(), "source": o.source.text if o.source else None,
                }
                if d.type == "binary":
                    row |= {"outcome_type": "binary", "event_arm1": a.events, "event_arm2": b.events,
                            "totaln_arm1": a.total, "totaln_arm2": b.total}
                elif getattr(d, "values", None) == "change":
                    row |= {"outcome_type": "change", "mean_change_arm1": a.mean, "mean_change_arm2": b.mean,
                            "sd_change_arm1": a.sd, "sd_change_arm2": b.sd, "n_change_arm1": a.n, "n_change_arm2": b.n}
                else:
                    row |= {"outcome_type": "msd", "mean_arm1": a.mean, "mean_arm2": b.mean, "sd_arm1": a.sd,
                            "sd_arm2": b.sd, "n_arm1": a.n, "n_arm2": b.n}
                rows.append({k: _cell(_num(row.get(k))) if not isinstance(row.get(k), str) else _cell(row[k])
                             for k in METAPSY_COLUMNS})
    return rows


def metapsy_csv(studies: Iterable[Study]) -> str:
    lines = [_csv_line(METAPSY_COLUMNS)]
    for s in studies:
        lines.extend(_csv_line(r.values()) for r in metapsy_rows(s))
    return "\n".join(lines) + "\n"


EXPORT_FORMATS = ("bibtex", "ris", "csl-json", "csv", "json", "metapsy")


__all__ = ["EXPORT_FORMATS", "METAPSY_COLUMNS", "csl_item", "metapsy_rows", "metapsy_csv",
           "FORMATS", "FILE_NAMES", "CSV_COLUMNS", "fragments", "assemble", "split", "export_text", "bibtex_key",
           "SplitError"]


def select(kb, req=None, progress=None) -> tuple[list[Study], list[str]]:
    """The studies to export: every valid record when ``req`` (a SearchRequest) selects nothing,
    else the search's matches, drafts included unless ``req.status`` says otherwise. Returns
    (studies, notices)."""
    from .load import load_studies, load_study

    if req is None:
        report = load_studies(kb, progress)
        invalid = report.files - len(report.studies)
        notes = [f"{invalid} record(s) with errors left out; run `kb validate`"] if invalid else []
        return report.studies, notes
    from dataclasses import replace

    from .query import STATUS_ANY
    from .search import search

    if not req.status:  # an export keeps drafts unless --status says otherwise (search leaves them out)
        req = replace(req, status=[STATUS_ANY])
    result = search(kb, req, progress=progress)
    return [load_study(kb, h.id) for h in result.hits], list(result.notices)
