"""kb import: bibliographic exports in, draft study records out, never a duplicate, never an overwrite.

The flow is one way: files are parsed (kb.formats) into references; each reference is checked
against the knowledge base and the references before it (kb.dedup); a new one becomes a draft
record, validated like any other; then, unless it is a dry run, the drafts are written, each
atomically and only where no file exists. ``--update`` fills the *empty* fields of records that
a reference duplicates, editing only those lines of the reviewer's file.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from . import formats, yamlio
from .biblio import FIELDS, Failure, ParseError, Reference
from .config import KnowledgeBase
from .dedup import Entry, Index, Match
from .errors import BadRequest, KbError, RecordExists
from .files import sweep_temps
from .records import FIELD_NAMES, Study, record_data, validate_data
from .scaffold import make_id
from .validate import record_files
from .vocab import Vocabulary

# Bibliographic fields an import may fill, in record order: a reference's fields but the year, which
# identifies the record (a different year is a different record, not a gap to fill)
BIB_FIELDS = tuple(f for f in FIELDS if f != "year")
DROPPABLE = {"doi", "pmid", "pmcid", "registrations", "volume", "issue", "pages", "journal", "keywords",
             "retraction"}
# PubMed publication types that name a design (most specific first)
DESIGNS = (
    ("Meta-Analysis", "meta-analysis"),
    ("Systematic Review", "systematic-review"),
    ("Practice Guideline", "guideline"),
    ("Guideline", "guideline"),
    ("Consensus Development Conference, NIH", "consensus-statement"),
    ("Consensus Development Conference", "consensus-statement"),
    ("Randomized Controlled Trial", "rct"),
    ("Observational Study", "cohort"),
    ("Case Reports", "case-series"),
)
FORMAT_NAMES = {"pubmed-xml": "PubMed XML", "medline": "MEDLINE", "ris": "RIS", "bibtex": "BibTeX", "csv": "CSV"}


class ImportTooLarge(KbError):
    """An import file holds more than the size limit once un-gzipped (kb import --max-size)."""


class ImportFailed(KbError):
    """--all-or-nothing: some records failed, so nothing was written. Carries the report."""

    def __init__(self, message: str, hint: str | None = None, report: "ImportReport | None" = None):
        super().__init__(message, hint)
        self.report = report


# -- the report ----------------------------------------------------------------------------


@dataclass
class Draft:
    id: str
    path: Path
    text: str
    source: str  # "file.ris record 3"
    title: str
    conditions: list[str]
    design: str
    warnings: list[str] = field(default_factory=list)
    retracted: bool = False


@dataclass
class Duplicate:
    source: str
    title: str
    match: str  # the record id, or "file.ris record 3"
    reason: str
    in_kb: bool


@dataclass
class FailedRecord:
    source: str
    reason: str
    hint: str | None = None


@dataclass
class Change:
    id: str
    path: Path
    field: str
    value: Any
    source: str


@dataclass
class FileReport:
    path: Path
    format: str
    found: int = 0
    new: int = 0
    duplicates: int = 0
    failed: int = 0
    error: str | None = None  # the whole file could not be read


@dataclass
class ImportReport:
    files: list[FileReport] = field(default_factory=list)
    drafts: list[Draft] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    failures: list[FailedRecord] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)  # --update: records a duplicate could not fill
    skipped_records: list[str] = field(default_factory=list)  # kb records that could not be read for dedup
    written: bool = False
    dry_run: bool = False

    @property
    def found(self) -> int:
        return sum(f.found for f in self.files)

    def as_dict(self) -> dict:
        return {
            "dry_run": self.dry_run,
            "written": self.written,
            "totals": {"found": self.found, "new": len(self.drafts), "duplicate": len(self.duplicates),
                       "failed": len(self.failures), "updated_fields": len(self.changes)},
            "files": [{"path": str(f.path), "format": f.format, "found": f.found, "new": f.new,
                       "duplicate": f.duplicates, "failed": f.failed, "error": f.error} for f in self.files],
            "new": [{"id": d.id, "path": str(d.path), "source": d.source, "title": d.title, "design": d.design,
                     "conditions_suggested": d.conditions, "retracted": d.retracted, "warnings": d.warnings}
                    for d in self.drafts],
            "duplicates": [{"source": d.source, "title": d.title, "matches": d.match, "reason": d.reason,
                            "in_knowledge_base": d.in_kb} for d in self.duplicates],
            "failed": [{"source": f.source, "reason": f.reason, "hint": f.hint} for f in self.failures],
            "updates": [{"id": c.id, "path": str(c.path), "field": c.field, "value": c.value, "source": c.source}
                        for c in self.changes],
            "unreadable_records": self.skipped_records,
        }


# -- suggestions --------------------------------------------------------------------------


class ConditionSuggester:
    """Conditions named in a reference's title, keywords or MeSH headings, by the vocabulary's synonyms.

    Abbreviations (all capitals) match only in capitals, and two-letter ones ('ED', 'SI') never,
    since they mean too many things in titles."""

    def __init__(self, vocab: Vocabulary):
        self.patterns: list[tuple[str, re.Pattern[str]]] = []
        for term, t in vocab.categories.get("condition", {}).items():
            if term == "other":
                continue
            words, abbrevs = [], []
            for alias in {term.replace("-", " "), t.label, *t.synonyms}:
                alias = alias.strip()
                if alias.isupper() and len(alias) <= 6:
                    if len(alias) >= 3:
                        abbrevs.append(re.escape(alias))
                else:
                    words.append(re.escape(alias).replace(r"\ ", r"[\s-]+").replace(r"\-", r"[\s-]?"))
            parts = []
            if words:
                parts.append(r"(?i:\b(?:" + "|".join(sorted(words, key=len, reverse=True)) + r")\b)")
            if abbrevs:
                parts.append(r"\b(?:" + "|".join(sorted(abbrevs, key=len, reverse=True)) + r")\b")
            if parts:
                self.patterns.append((term, re.compile("|".join(parts))))

    def __call__(self, ref: Reference) -> list[tuple[str, str]]:
        """[(condition, the text that named it)], in vocabulary order. A name inside a longer name of
        another condition ('depression' in 'bipolar depression') does not count."""
        found: dict[str, str] = {}
        for text in [ref.title or "", *ref.keywords, *ref.mesh]:
            spans = [(m.start(), m.end(), term, m.group(0)) for term, pat in self.patterns for m in pat.finditer(text)]
            for s, e, term, words in spans:
                inside = any(s2 <= s and e <= e2 and (e2 - s2) > (e - s) and t2 != term for s2, e2, t2, _ in spans)
                if not inside and term not in found:
                    found[term] = words
        return [(term, found[term]) for term, _ in self.patterns if term in found]


def design_of(ref: Reference) -> tuple[str, str | None]:
    """(design, the publication type it came from) or ('other', None) when the export does not say."""
    types = {t.strip().lower() for t in ref.publication_types}
    for name, design in DESIGNS:
        if name.lower() in types:
            if design == "rct" and re.search(r"\bcross[\s-]?over\b", ref.title or "", re.I):
                return "crossover-rct", name
            return design, name
    return "other", None


# -- drafts --------------------------------------------------------------------------------


def _source_url(ref: Reference) -> str | None:
    if ref.pmid:
        return f"https://pubmed.ncbi.nlm.nih.gov/{ref.pmid}/"
    if ref.pmcid:
        return f"https://www.ncbi.nlm.nih.gov/pmc/articles/{ref.pmcid}/"
    if ref.doi:
        return f"https://doi.org/{ref.doi}"
    return None


def draft_data(ref: Reference, study_id: str, *, suggest: ConditionSuggester, origin: str, today: _dt.date) -> dict:
    """The plain data of a draft record for ``ref`` (not yet validated)."""
    design, from_type = design_of(ref)
    conditions = suggest(ref)
    inferred = []
    if conditions:
        named = ", ".join(f"{c} from '{text}'" for c, text in conditions)
        inferred.append(f"conditions (suggested by kb import from the title, keywords and MeSH terms: {named}; "
                        "confirm or correct)")
    if from_type:
        inferred.append(f"design (from the publication type '{from_type}' in the export; confirm)")
    else:
        inferred.append("design (a placeholder: the export does not say; set it during extraction)")
    unverified = [name for name in ("title", "authors") if not getattr(ref, name)]
    data: dict[str, Any] = {
        "id": study_id,
        "title": _record_value(ref, "title"),
        "authors": ref.authors,
        "authors_truncated": ref.authors_truncated or None,
        "year": ref.year,
        "journal": ref.journal,
        "volume": ref.volume,
        "issue": ref.issue,
        "pages": ref.pages,
        "doi": ref.doi,
        "pmid": ref.pmid,
        "pmcid": ref.pmcid,
        "registrations": ref.registrations,
        "abstract": ref.abstract,
        "keywords": ref.keywords,
        "design": design,
        "conditions": [c for c, _ in conditions],
        "retraction": ({"retracted": True, "notice": ref.retraction_notice} if ref.retracted else None),
        "sources": [u for u in [_source_url(ref)] if u],
        "inferred_fields": inferred,
        "unverified_fields": unverified,
        "notes": f"Imported by kb import on {today.isoformat()} from {origin}; the bibliographic fields are as "
                 "exported and not yet checked against the publication.",
        "status": "draft",
        "added": today.isoformat(),
    }
    if data["retraction"] and not data["retraction"]["notice"]:
        del data["retraction"]["notice"]
    return {k: v for k, v in data.items() if v not in (None, [], "")}


def build_draft(data: dict, vocab: Vocabulary) -> tuple[Study, list[str]]:
    """Validate draft data; a malformed optional value (a DOI that is not one, say) is left out with a
    warning rather than losing the whole reference. Raises ValueError with the reason otherwise."""
    warnings: list[str] = []
    for _ in range(8):
        try:
            return validate_data(data, vocab), warnings
        except ValidationError as err:
            fixed = False
            for e in err.errors(include_url=False):
                name = str(e["loc"][0]) if e["loc"] else ""
                if name in DROPPABLE and name in data:
                    value = data.pop(name)
                    if name == "registrations" and len(e["loc"]) > 1 and isinstance(value, list):
                        bad = value[int(e["loc"][1])]
                        value = [v for v in value if v != bad]
                        if value:
                            data[name] = value
                        warnings.append(f"left out registration '{bad}': {e['msg']}")
                    else:
                        warnings.append(f"left out {name} {str(value)[:60]!r}: {e['msg']}")
                    fixed = True
                    break
            if not fixed:
                first = err.errors(include_url=False)[0]
                where = ".".join(str(p) for p in first["loc"])
                raise ValueError(f"{where}: {first['msg']}") from None
    raise ValueError("too many invalid values")  # pragma: no cover


def entry_of_ref(ref: Reference, label: str) -> Entry:
    return Entry.of(label, doi=ref.doi, pmid=ref.pmid, pmcid=ref.pmcid, registrations=ref.registrations,
                    title=ref.title, year=ref.year, authors=ref.authors)


# -- the knowledge base side ---------------------------------------------------------------


def _raw_data(path: Path) -> dict | None:
    try:
        data = yamlio.load_plain(path.read_bytes())
    except (OSError, yamlio.YAMLError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def known_records(files: list[Path], progress: Callable[[int], None] | None = None) -> tuple[Index, set[str], list[str]]:
    """An index of the record ``files`` (read as plain YAML: a record with schema errors still
    counts), the ids taken, and the files that could not be read at all."""
    index = Index()
    taken: set[str] = set()
    unreadable: list[str] = []
    for path in files:
        taken.add(path.stem)
        data = _raw_data(path)
        if progress:
            progress(1)
        if data is None:
            unreadable.append(str(path))
            continue

        def text(name):
            v = data.get(name)
            return str(v) if v not in (None, "") and not isinstance(v, (list, dict)) else None

        regs = data.get("registrations") if isinstance(data.get("registrations"), list) else []
        authors = data.get("authors") if isinstance(data.get("authors"), list) else []
        year = data.get("year") if isinstance(data.get("year"), int) else None
        index.add(Entry.of(str(data.get("id") or path.stem), doi=text("doi"), pmid=text("pmid"), pmcid=text("pmcid"),
                           registrations=[str(r) for r in regs], title=text("title"), year=year,
                           authors=[str(a) for a in authors], path=path, payload=data))
    return index, taken, unreadable


# -- --update: fill empty fields, touching only their lines ---------------------------------

_TOP_KEY = re.compile(r"^([A-Za-z_][\w-]*)[ \t]*:(?:[ \t]|$)")
_EMPTY_VALUE = re.compile(r"^\s*(?:null|~|\[\]|''|\"\")?\s*(?:#.*)?$")


def empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def fill_fields(text: str, fills: dict[str, Any]) -> str:
    """``text`` with each of ``fills`` (field -> value) written where the field is missing or empty.

    Every other line of the file stays byte for byte as it was, comments included. Raises
    ValueError when the file's layout is not a plain block mapping, or when the result would not
    read back as the old data plus the fills."""
    old = yamlio.load_plain(text)
    if not isinstance(old, dict):
        raise ValueError("the record is not a YAML mapping")
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    starts = [(i, m.group(1)) for i, line in enumerate(lines) if (m := _TOP_KEY.match(line))]
    if {k for _, k in starts} != {str(k) for k in old}:
        raise ValueError("the record's layout is not a plain block mapping (one key per line)")

    def block(key: str) -> tuple[int, int] | None:
        for n, (i, k) in enumerate(starts):
            if k == key:
                end = starts[n + 1][0] if n + 1 < len(starts) else len(lines)
                while end > i + 1 and (not lines[end - 1].strip() or lines[end - 1].startswith("#")):
                    end -= 1
                return i, end
        return None

    edits: list[tuple[int, int, str]] = []  # (start, end, new text) on the original lines
    order = list(FIELD_NAMES)
    for key, value in fills.items():
        piece = yamlio.dump({key: value})
        where = block(key)
        if where:
            i, end = where
            rest = lines[i][_TOP_KEY.match(lines[i]).end():]
            if not (_EMPTY_VALUE.match(rest) and all(not ln.strip() or ln.lstrip().startswith("#")
                                                      for ln in lines[i + 1:end])):
                raise ValueError(f"{key} is not empty")
            edits.append((i, end, piece))
            continue
        # insert after the nearest field before it in record order that the file has
        pos = 0
        before = order[: order.index(key)] if key in order else order
        for name in reversed(before):
            b = block(name)
            if b:
                pos = b[1]
                break
        edits.append((pos, pos, piece))
    for start, end, piece in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        lines[start:end] = [piece]
    new_text = "".join(lines)
    new = yamlio.load_plain(new_text)
    if new != {**old, **fills}:
        raise ValueError("the edited record would not read back as intended")
    return new_text


def _record_value(ref: Reference, name: str) -> Any:
    """A reference's field as a record holds it: PubMed ends every title with a period; records do not."""
    value = getattr(ref, name)
    if name == "title" and value and value.endswith(".") and not value.endswith(".."):
        value = value[:-1].rstrip()
    return value


def fields_to_fill(existing: dict, ref: Reference) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in BIB_FIELDS:
        value = _record_value(ref, name)
        if not empty(value) and empty(existing.get(name)):
            out[name] = value
    return out


# -- the import ----------------------------------------------------------------------------


def check_import_args(paths: list[Path], fmt: str | None, encoding: str | None) -> None:
    """Refuse (BadRequest) an unknown format or encoding, or a path that is not a file, before anything is read."""
    if fmt and fmt not in formats.FORMATS:
        raise BadRequest(f"unknown format '{fmt}'", hint="formats: " + ", ".join(formats.FORMATS))
    for p in paths:
        if not p.is_file():
            raise BadRequest(f"{p}: no such file" if not p.exists() else f"{p}: not a file")
    if encoding:
        import codecs

        try:
            codecs.lookup(encoding)
        except LookupError:
            raise BadRequest(f"unknown encoding '{encoding}'", hint="e.g. utf-8, cp1252, latin-1") from None


def import_files(kb: KnowledgeBase, paths: list[Path], *, fmt: str | None = None, encoding: str | None = None,
                 dry_run: bool = False, update: bool = False, all_or_nothing: bool = False,
                 today: _dt.date | None = None, progress: Callable[[str, int, int], None] | None = None,
                 fsync: bool = True, max_size: int = formats.MAX_SIZE) -> ImportReport:
    """Import ``paths`` into ``kb``; see the module docstring. ``progress(phase, done, total)``.
    A file holding more than ``max_size`` bytes (once un-gzipped) stops the import: nothing is written."""
    today = today or _dt.date.today()
    check_import_args(paths, fmt, encoding)
    report = ImportReport(dry_run=dry_run)
    tick = (lambda phase, n, total: progress(phase, n, total)) if progress else (lambda *a: None)

    files = record_files([kb.studies_dir]) if kb.studies_dir.is_dir() else []
    done = [0]

    def read_tick(n: int) -> None:
        done[0] += n
        tick("reading the knowledge base", done[0], len(files))

    index, taken, report.skipped_records = known_records(files, read_tick)
    vocab = kb.vocab
    suggest = ConditionSuggester(vocab)
    kb_drafts: dict[str, Draft] = {}  # id -> draft, for --update within the import
    pending_fills: dict[Path, tuple[Entry, dict[str, Any], dict[str, str]]] = {}  # path -> (entry, fills, from)

    total_bytes = sum(p.stat().st_size for p in paths)
    read_bytes = [0]

    def byte_tick(n: int) -> None:
        read_bytes[0] += n
        tick("importing", read_bytes[0], total_bytes)

    for path in paths:
        try:
            file_fmt = fmt or formats.detect(path)
        except ParseError as e:
            report.files.append(FileReport(path, "?", error=e.message))
            report.failures.append(FailedRecord(f"{path}", e.message, e.hint))
            continue
        fr = FileReport(path, file_fmt)
        report.files.append(fr)
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
                where = f"{label} {ref.where}"
                entry = entry_of_ref(ref, f"{label} record {ref.number}")
                match = index.match(entry)
                if match:
                    fr.duplicates += 1
                    _record_duplicate(report, ref, where, match, update, pending_fills, kb_drafts)
                    continue
                if ref.year is None:
                    fr.failed += 1
                    report.failures.append(FailedRecord(f"{path}: {ref.where}", "no publication year",
                                                        "kb records need a year; add it to the export, or make the "
                                                        "record by hand with kb new"))
                    continue
                try:
                    study_id = make_id(ref.authors[0] if ref.authors else "", ref.year, taken)
                    data = draft_data(ref, study_id, suggest=suggest,
                                      origin=f"{label} ({FORMAT_NAMES[file_fmt]}, {ref.where})", today=today)
                    study, warnings = build_draft(data, vocab)
                except (ValueError, RecordExists) as e:
                    fr.failed += 1
                    report.failures.append(FailedRecord(f"{path}: {ref.where}", str(e).split("\n")[0]))
                    continue
                taken.add(study_id)
                draft = Draft(id=study_id, path=kb.studies_dir / f"{study_id}.yaml",
                              text=yamlio.dump(record_data(study)), source=where, title=study.title or "",
                              conditions=study.condition_terms, design=study.design,
                              warnings=[*ref.warnings, *warnings], retracted=study.retracted)
                entry.label = study_id
                entry.payload = draft
                index.add(entry)
                kb_drafts[study_id] = draft
                report.drafts.append(draft)
                fr.new += 1
        except ParseError as e:  # a parser found the whole file unreadable
            fr.error = e.message
            report.failures.append(FailedRecord(str(path), e.message, e.hint))
        except formats.TooLarge as e:  # a gzip bomb, or an export far beyond any search's: nothing is written
            raise ImportTooLarge(
                f"{path} holds {e}; nothing was imported",
                hint=("a gzip file that expands this much is more likely a 'gzip bomb' than an export; "
                      if e.gzipped else "")
                + f"if the file is genuine, raise the limit with --max-size (e.g. --max-size "
                  f"{formats.format_size(e.limit * 4).replace(' ', '')})") from None

    if update:
        _plan_updates(report, pending_fills)
    if dry_run:
        return report
    if all_or_nothing and report.failures:
        raise ImportFailed(f"{len(report.failures)} record(s) failed, so nothing was written (--all-or-nothing)",
                           hint="fix or remove the failing records listed above, or import without --all-or-nothing",
                           report=report)
    _write(kb, report, tick, fsync)
    return report


def _record_duplicate(report: ImportReport, ref: Reference, where: str, match: Match, update: bool,
                      pending: dict, kb_drafts: dict[str, Draft]) -> None:
    other = match.entry
    in_kb = other.path is not None
    report.duplicates.append(Duplicate(where, ref.title or "", other.label, match.reason, in_kb))
    if not update:
        return
    if in_kb:
        existing = other.payload if isinstance(other.payload, dict) else {}
        entry, fills, sources = pending.setdefault(other.path, (other, {}, {}))
        for name, value in fields_to_fill(existing, ref).items():
            if name not in fills:
                fills[name] = value
                sources[name] = where
    elif isinstance(other.payload, Draft):  # a draft of this import: fill its empty fields before it is written
        draft = other.payload
        data = yamlio.load_plain(draft.text)
        fills = fields_to_fill(data, ref)
        if fills:
            draft.text = yamlio.dump(_ordered({**data, **fills}))
            draft.warnings.append("filled " + ", ".join(fills) + f" from {where}")


def _ordered(data: dict) -> dict:
    order = {k: i for i, k in enumerate(FIELD_NAMES)}
    return dict(sorted(data.items(), key=lambda kv: order.get(kv[0], len(order))))


def _plan_updates(report: ImportReport, pending: dict) -> None:
    for path, (entry, fills, sources) in pending.items():
        if not fills:
            report.unchanged.append(entry.label)
            continue
        for name, value in fills.items():
            report.changes.append(Change(entry.label, path, name, value, sources[name]))


def _write(kb: KnowledgeBase, report: ImportReport, tick, fsync: bool) -> None:
    total = len(report.drafts) + len({c.path for c in report.changes})
    n = 0
    written: list[Path] = []
    kb.studies_dir.mkdir(parents=True, exist_ok=True)
    sweep_temps(kb.studies_dir)  # what an import killed while writing left (never a live process's)
    try:
        for d in report.drafts:
            yamlio.write_new(d.path, d.text, fsync=fsync)
            written.append(d.path)
            n += 1
            tick("writing", n, total)
        by_path: dict[Path, dict[str, Any]] = {}
        for c in report.changes:
            by_path.setdefault(c.path, {})[c.field] = c.value
        failed_updates: set[Path] = set()
        for path, fills in by_path.items():
            try:
                new_text = fill_fields(path.read_text(encoding="utf-8"), fills)
            except (ValueError, OSError, UnicodeDecodeError, yamlio.YAMLError) as e:
                failed_updates.add(path)
                report.failures.append(FailedRecord(f"{path}", f"not updated: {e}",
                                                    "fill the fields by hand; the file was left as it was"))
                continue
            yamlio.write_new(path, new_text, overwrite=True, fsync=fsync)
            n += 1
            tick("writing", n, total)
        report.changes = [c for c in report.changes if c.path not in failed_updates]
    except RecordExists as e:
        raise KbError(f"{e.message}; {len(written)} new record(s) were written before it",
                      hint="another process wrote into studies/ during the import; run the import again: "
                           "the records already written are recognised as duplicates") from None
    finally:
        if not fsync and written:
            os.sync()
    report.written = True


__all__ = ["import_files", "ImportReport", "ImportFailed", "fill_fields", "ConditionSuggester", "design_of",
           "draft_data", "build_draft", "known_records"]


def text_report(report: ImportReport, verbose: bool = False, limit: int = 20) -> list[str]:
    """The import report as lines for a terminal: per file and total counts, then what was (or would
    be) written, the duplicates and what each matches, the updates, and every failure with its hint."""
    out: list[str] = []

    def counts(found, new, dup, failed) -> str:
        return f"{found:,} found, {new:,} new, {dup:,} duplicate, {failed:,} failed"

    for f in report.files:
        name = FORMAT_NAMES.get(f.format, "unreadable")
        out.append(f"{f.path} ({name}): " + (f"not read: {f.error}" if f.error and not f.found
                                              else counts(f.found, f.new, f.duplicates, f.failed)))
    if len(report.files) > 1:
        out.append("total: " + counts(report.found, len(report.drafts), len(report.duplicates), len(report.failures)))

    def shown(items):
        return items if verbose else items[:limit]

    def more(items) -> None:
        if not verbose and len(items) > limit:
            out.append(f"  ... and {len(items) - limit:,} more (--verbose lists them all; so does --report json)")

    if report.drafts:
        verb = "would write" if report.dry_run else "wrote"
        out.append(f"new: {verb} {len(report.drafts):,} draft record(s):")
        for d in shown(report.drafts):
            bits = [f"design {d.design}"] + ([f"conditions suggested: {', '.join(d.conditions)}"] if d.conditions else [])
            flag = "RETRACTED " if d.retracted else ""
            out.append(f"  {d.path.name}  {flag}{d.title[:70]}  [{'; '.join(bits)}]")
            for w in d.warnings:
                out.append(f"    note: {w}")
        more(report.drafts)
    if report.duplicates:
        out.append(f"duplicates: {len(report.duplicates):,} (not written):")
        for d in shown(report.duplicates):
            where = "" if d.in_kb else " (new in this import)"
            out.append(f"  {d.source}: {d.title[:60]!r} = {d.match}{where}: {d.reason}")
        more(report.duplicates)
    if report.changes:
        verb = "would fill" if report.dry_run else "filled"
        out.append(f"updates: {verb} {len(report.changes):,} empty field(s):")
        for c in shown(report.changes):
            value = c.value if not isinstance(c.value, list) else "; ".join(map(str, c.value))
            value = str(value)
            out.append(f"  {c.id}: {c.field} = {value[:70]}{'...' if len(value) > 70 else ''}  (from {c.source})")
        more(report.changes)
    if report.unchanged:
        out.append(f"--update: nothing to fill in {len(report.unchanged):,} matched record(s)")
    if report.skipped_records:
        out.append(f"warning: {len(report.skipped_records)} record file(s) in studies/ could not be read, so "
                   "duplicates of them cannot be detected: " + ", ".join(report.skipped_records[:5]))
    if report.failures:
        out.append(f"failures ({len(report.failures):,}):")
        for f in shown(report.failures):  # a junk file fails on every line: the first ones say what is wrong
            out.append(f"  {f.source}: {f.reason}")
            if f.hint:
                out.append(f"    hint: {f.hint}")
        more(report.failures)
    if report.dry_run:
        out.append("dry run: nothing was written")
    return out
