"""``kb import`` into the screening set: each export file is one search in the search log, and its
new references go to ``screening/references/<search-id>.jsonl`` (``kb import --as-draft`` keeps the
path to draft records in ``studies/``, :mod:`kb.importer`).

A reference is new unless it duplicates (kb.dedup, as ``kb import`` always has) a record in
``studies/``, a reference already in the screening set, or one earlier in this import. A reference
in the screening set stays there whatever is decided about it, so an excluded reference is found
again as a duplicate and is never resurrected by a re-import. A file whose exact bytes (sha256) are
already in the log is not imported again: nothing is written. Every reference enters the set,
missing fields and all: only a draft study record needs the schema's required fields.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import formats
from ..biblio import Failure, ParseError
from ..config import KnowledgeBase
from ..dedup import Entry, Index
from ..errors import BadRequest
from ..importer import (FORMAT_NAMES, FailedRecord, ImportFailed, ImportTooLarge, check_import_args, entry_of_ref,
                        known_records)
from ..validate import record_files
from . import store


@dataclass
class SearchReport:
    path: Path
    format: str
    search_id: str | None = None  # None when nothing was logged (a dry run, an unreadable or repeated file)
    references: Path | None = None
    found: int = 0
    new: int = 0
    duplicates: int = 0
    dup_studies: int = 0  # of which: in studies/
    dup_screening: int = 0  # in the screening set
    dup_import: int = 0  # earlier in this import
    failed: int = 0
    missing_year: int = 0  # new references with no year (screenable; a draft would need one)
    same_as: str | None = None  # the search id whose file has these exact bytes
    error: str | None = None


@dataclass
class ScreeningImportReport:
    files: list[SearchReport] = field(default_factory=list)
    failures: list[FailedRecord] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)  # source, title, matches, reason
    skipped_records: list[str] = field(default_factory=list)
    dry_run: bool = False
    written: bool = False

    def as_dict(self) -> dict:
        tot = {n: sum(getattr(f, n) for f in self.files) for n in ("found", "new", "duplicates", "failed")}
        return {
            "to": "screening set",
            "dry_run": self.dry_run, "written": self.written,
            "totals": {"found": tot["found"], "new": tot["new"], "duplicate": tot["duplicates"],
                       "failed": tot["failed"]},
            "searches": [{"path": str(f.path), "format": f.format, "search": f.search_id,
                          "references": str(f.references) if f.references else None, "found": f.found,
                          "new": f.new, "duplicate": f.duplicates,
                          "duplicate_of": {"studies": f.dup_studies, "screening_set": f.dup_screening,
                                           "this_import": f.dup_import},
                          "failed": f.failed, "no_year": f.missing_year, "already_imported_as": f.same_as,
                          "error": f.error} for f in self.files],
            "duplicates": self.duplicates,
            "failed": [{"source": f.source, "reason": f.reason, "hint": f.hint} for f in self.failures],
            "unreadable_records": self.skipped_records,
        }


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def screening_index(kb: KnowledgeBase, index: Index) -> dict[str, store.ScreeningRef]:
    """Add every reference of the screening set to ``index``; returns the set."""
    refs = store.read_references(kb)
    for key, r in refs.items():
        d = r.data
        index.add(Entry.of(key, doi=d.get("doi"), pmid=d.get("pmid"), pmcid=d.get("pmcid"),
                           registrations=d.get("registrations") or (), title=d.get("title"), year=d.get("year"),
                           authors=d.get("authors") or (), payload=("screening", r.search)))
    return refs


def import_to_screening(kb: KnowledgeBase, paths: list[Path], *, fmt: str | None = None,
                        encoding: str | None = None, database: str | None = None,
                        date_searched: _dt.date | None = None, query: str | None = None, dry_run: bool = False,
                        all_or_nothing: bool = False, progress: Callable[[str, int, int], None] | None = None,
                        fsync: bool = True, max_size: int = formats.MAX_SIZE) -> ScreeningImportReport:
    """Import ``paths`` into the screening set, one logged search per file; see the module docstring."""
    check_import_args(paths, fmt, encoding)
    if date_searched and date_searched > _dt.date.today() + _dt.timedelta(days=1):
        raise BadRequest(f"--date-searched {date_searched.isoformat()} is in the future",
                         hint="the day the database was searched, as YYYY-MM-DD")
    tick = progress or (lambda *a: None)
    report = ScreeningImportReport(dry_run=dry_run)
    studies = record_files([kb.studies_dir]) if kb.studies_dir.is_dir() else []
    index, _, report.skipped_records = known_records(studies)
    screening = screening_index(kb, index)
    log = store.read_log(kb)
    by_sha = {s.get("sha256"): s["id"] for s in log.searches if s.get("sha256")}
    keys: set[str] = set(screening)
    planned: list[tuple[SearchReport, str, list[tuple[str, str]]]] = []  # (report, sha, [(key, line)])
    total = sum(p.stat().st_size for p in paths)
    done = [0]

    def byte_tick(n: int) -> None:
        done[0] += n
        tick("importing", done[0], total)

    for path in paths:
        digest = sha256(path)
        try:
            file_fmt = fmt or formats.detect(path)
        except ParseError as e:
            report.files.append(SearchReport(path, "?", error=e.message))
            report.failures.append(FailedRecord(f"{path}", e.message, e.hint))
            continue
        fr = SearchReport(path, file_fmt)
        report.files.append(fr)
        if digest in by_sha:
            fr.same_as = by_sha[digest]
            continue
        by_sha[digest] = f"(earlier in this import: {path.name})"
        lines: list[tuple[str, str]] = []
        label = path.name
        try:
            for item in formats.read(path, file_fmt, encoding, byte_tick, max_size=max_size):
                if isinstance(item, Failure):
                    fr.failed += 1
                    if item.number is not None:
                        fr.found += 1
                    report.failures.append(FailedRecord(f"{path}: {item.where}", item.reason, item.hint))
                    continue
                fr.found += 1
                ref = item
                entry = entry_of_ref(ref, f"{label} record {ref.number}")
                match = index.match(entry)
                if match:
                    other = match.entry
                    fr.duplicates += 1
                    if other.path is not None:
                        fr.dup_studies += 1
                        where = "studies"
                    elif isinstance(other.payload, tuple) and other.payload[0] == "screening":
                        fr.dup_screening += 1
                        where = f"screening set (search {other.payload[1]})"
                    else:
                        fr.dup_import += 1
                        where = "this import"
                    report.duplicates.append({"source": f"{label} {ref.where}", "title": ref.title or "",
                                              "matches": other.label, "in": where, "reason": match.reason})
                    continue
                data = store.reference_data(ref)
                key = store.reference_key(data)
                if key in keys:  # a shared DOI that dedup judged to be two publications (a book's chapters)
                    key = store.hash_key(ref.title, ref.year, ref.authors[0] if ref.authors else None)
                if key in keys:
                    fr.duplicates += 1
                    fr.dup_import += 1
                    report.duplicates.append({"source": f"{label} {ref.where}", "title": ref.title or "",
                                              "matches": key, "in": "screening key", "reason": "same key"})
                    continue
                keys.add(key)
                entry.label = key
                entry.payload = ("import", label)
                index.add(entry)
                if ref.year is None:
                    fr.missing_year += 1
                lines.append((key, store.reference_line(key, ref.number, data)))
                fr.new += 1
        except ParseError as e:
            fr.error = e.message
            report.failures.append(FailedRecord(str(path), e.message, e.hint))
            continue
        except formats.TooLarge as e:
            raise ImportTooLarge(f"{path} holds {e}; nothing was imported",
                                 hint="raise the limit with --max-size if the file is genuine") from None
        planned.append((fr, digest, lines))
    if dry_run:
        return report
    if all_or_nothing and report.failures:
        raise ImportFailed(f"{len(report.failures)} record(s) failed, so nothing was written (--all-or-nothing)",
                           hint="fix or remove the failing records listed above, or import without --all-or-nothing",
                           report=report)
    for fr, digest, lines in planned:
        _log(kb, fr, digest, lines, database, date_searched, query, fsync)
    report.written = True
    return report


def _log(kb: KnowledgeBase, fr: SearchReport, digest: str, lines: list[tuple[str, str]], database, date_searched,
         query, fsync: bool) -> None:
    def make(log: store.SearchLog, new_id):
        same = [s["id"] for s in log.searches if s.get("sha256") == digest]
        if same:  # another import of this file finished first
            fr.same_as = same[0]
            return None
        # another import may have added some of these references since they were read: keep them once
        have = set(store.read_references(kb))
        kept = [(k, line) for k, line in lines if k not in have]
        dropped = len(lines) - len(kept)
        fr.new -= dropped
        fr.duplicates += dropped
        fr.dup_screening += dropped
        sid = new_id(database or "search")
        if kept:
            fr.references = store.write_references(kb, sid, [line for _, line in kept], fsync=fsync)
        fr.search_id = sid
        entry = {"id": sid, "database": database, "date_searched": date_searched.isoformat() if date_searched else None,
                 "query": query, "file": fr.path.name, "format": FORMAT_NAMES.get(fr.format, fr.format),
                 "sha256": digest, "found": fr.found, "new": fr.new, "duplicates": fr.duplicates,
                 "failed": fr.failed,
                 "references": (fr.references.relative_to(kb.root).as_posix() if fr.references else None),
                 "imported": store.now()}
        return {k: v for k, v in entry.items() if v is not None}

    store.log_search(kb, make, fsync=fsync)


def text_report(report: ScreeningImportReport, verbose: bool = False, limit: int = 20) -> list[str]:
    out: list[str] = []
    for f in report.files:
        name = FORMAT_NAMES.get(f.format, "unreadable")
        if f.error and not f.found:
            out.append(f"{f.path} ({name}): not read: {f.error}")
            continue
        if f.same_as:
            out.append(f"{f.path} ({name}): already imported as search {f.same_as} (the same bytes); nothing written")
            continue
        out.append(f"{f.path} ({name}): {f.found:,} found, {f.new:,} new, {f.duplicates:,} duplicate "
                   f"({f.dup_studies:,} in studies/, {f.dup_screening:,} in the screening set, "
                   f"{f.dup_import:,} within this import), {f.failed:,} failed")
        if f.search_id:
            out.append(f"  logged as search {f.search_id} in searches.yaml"
                       + (f"; references in {f.references.name}" if f.references else ""))
        if f.missing_year:
            out.append(f"  note: {f.missing_year:,} new reference(s) have no year: screenable; a draft record made "
                       "from one will need it")
    if report.duplicates and verbose:
        out.append(f"duplicates ({len(report.duplicates):,}):")
        for d in report.duplicates:
            out.append(f"  {d['source']}: {d['title'][:60]!r} = {d['matches']} ({d['in']}): {d['reason']}")
    if report.skipped_records:
        out.append(f"warning: {len(report.skipped_records)} record file(s) in studies/ could not be read, so "
                   "duplicates of them cannot be detected: " + ", ".join(report.skipped_records[:5]))
    if report.failures:
        out.append(f"failures ({len(report.failures):,}):")
        for f in (report.failures if verbose else report.failures[:limit]):
            out.append(f"  {f.source}: {f.reason}")
            if f.hint:
                out.append(f"    hint: {f.hint}")
        if not verbose and len(report.failures) > limit:
            out.append(f"  ... and {len(report.failures) - limit:,} more (--verbose lists them all)")
    if report.dry_run:
        out.append("dry run: nothing was written")
    elif report.written and any(f.new for f in report.files):
        out.append("next: kb screen (screen the new references), kb screen --help")
    return out
