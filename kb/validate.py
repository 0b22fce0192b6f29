"""`kb validate`: every problem in every record file, with file, line, column and field.

The pipeline for one file is: read (size, encoding) -> parse (syntax,
duplicate keys, alias bombs) -> schema (pydantic, vocabulary) -> record
checks (counts, identifiers, verification). Checks across files (ids,
DOIs, PMIDs, registrations, links) run once every file is read. Large
knowledge bases are checked on all cores.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

from pydantic import BaseModel, ValidationError

from . import yamlio
from .errors import BadRequest
from .records import FIELD_NAMES, Study, validate_data
from .evidence_checks import check_arm_counts, evidence_checks
from .vocab import Vocabulary, load_vocabulary

Severity = Literal["error", "warning", "note"]
RECORD_SUFFIXES = (".yaml", ".yml")
PARALLEL_THRESHOLD = 400


@dataclass
class Problem:
    file: str
    line: int
    column: int
    field: str
    message: str
    severity: Severity = "error"
    hint: str | None = None
    code: str = "schema"

    def format(self) -> str:
        prefix = "" if self.severity == "error" else f"{self.severity}: "
        text = f"{self.file}:{self.line}:{self.column}: {self.field or '(file)'}: {prefix}{self.message}"
        return text + (f" (hint: {self.hint})" if self.hint else "")

    def as_dict(self) -> dict:
        return {
            "file": self.file, "line": self.line, "column": self.column, "field": self.field,
            "severity": self.severity, "code": self.code, "message": self.message, "hint": self.hint,
        }


@dataclass
class FileResult:
    path: Path
    display: str
    study: Study | None = None
    problems: list[Problem] = field(default_factory=list)
    # identity keys for checks across files: (kind, value) -> (field, line, col)
    keys: list[tuple[str, str, str, int, int]] = field(default_factory=list)
    related: list[tuple[str, str, int, int, str | None]] = field(default_factory=list)  # (id, field, line, col, relation)
    record_id: str | None = None
    design: str | None = None  # for checks of links across files (a pooled-in link must name a review)


@dataclass
class Report:
    files: int
    problems: list[Problem]
    studies: list[Study]

    def count(self, severity: Severity) -> int:
        return sum(p.severity == severity for p in self.problems)

    @property
    def errors(self) -> int:
        return self.count("error")

    @property
    def warnings(self) -> int:
        return self.count("warning")

    def failed(self, strict: bool = False) -> bool:
        return self.errors > 0 or (strict and self.warnings > 0)

    def files_with_problems(self) -> int:
        return len({p.file for p in self.problems if p.severity != "note"})

    def summary(self, strict: bool = False) -> str:
        e, w, n = self.errors, self.warnings, self.count("note")
        parts = [f"{e} error{'s' * (e != 1)}", f"{w} warning{'s' * (w != 1)}"]
        if n:
            parts.append(f"{n} note{'s' * (n != 1)}")
        verdict = "FAILED" if self.failed(strict) else "ok"
        scope = f"{self.files} file{'s' * (self.files != 1)} checked"
        if strict and w:
            verdict += " (--strict: warnings count as errors)"
        return f"{verdict}: {', '.join(parts)}; {scope}"

    def as_dict(self, strict: bool = False) -> dict:
        return {
            "ok": not self.failed(strict),
            "strict": strict,
            "files": self.files,
            "errors": self.errors,
            "warnings": self.warnings,
            "notes": self.count("note"),
            "problems": [p.as_dict() for p in self.problems],
        }


# -- finding files ---------------------------------------------------------------


def record_files(paths: Iterable[Path]) -> list[Path]:
    """The record files named by ``paths`` (files, or folders searched recursively)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                out.extend(Path(root) / f for f in sorted(files)
                           if f.endswith(RECORD_SUFFIXES) and not f.startswith("."))
        elif p.exists():
            out.append(p)
        else:
            raise BadRequest(f"{p}: no such file or folder")
    return out


def _display(path: Path, base: str | None) -> str:
    """The path as shown in messages: relative to ``base`` (an absolute folder) when inside it."""
    text = str(path)
    if base:
        if not os.path.isabs(text):
            text = os.path.abspath(text)
        if text.startswith(base + os.sep):
            return text[len(base) + 1:]
    return text


# -- one file ------------------------------------------------------------------------

_TYPE_MESSAGES = {
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number, not a fraction",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "string_type": "expected text",
    "list_type": "expected a list (one '- item' per line)",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "dict_type": "expected a mapping of field: value",
    "model_type": "expected a mapping of field: value",
    "model_attributes_type": "expected a mapping of field: value",
    "date_type": "expected a date, YYYY-MM-DD",
    "date_parsing": "expected a date, YYYY-MM-DD",
    "date_from_datetime_parsing": "expected a date, YYYY-MM-DD",
    "string_too_short": "empty text; leave the field out instead",
    "too_short": "needs at least one entry",
}
_UNION_TAGS = {"binary", "continuous", "effect"}


def _clean_loc(loc: tuple) -> tuple:
    out: list[Any] = []
    for part in loc:
        if isinstance(part, str) and part in _UNION_TAGS and out and out[-1] == "data":
            continue
        if isinstance(part, str) and part.endswith("[key]"):
            continue
        out.append(part)
    return tuple(out)


def _model_at(loc: tuple, data: Any) -> type[BaseModel] | None:
    """The pydantic model that describes the mapping at ``loc`` (for did-you-mean)."""
    import typing

    model: Any = Study
    node = data
    for part in loc:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
            continue
        fld = model.model_fields.get(part) if isinstance(model, type) else None
        if fld is None:
            return None
        node = node.get(part) if isinstance(node, dict) else None
        candidates = [fld.annotation]
        found = None
        while candidates:
            ann = candidates.pop()
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                if part == "data" and isinstance(node, dict):
                    tag = getattr(ann.model_fields.get("type"), "annotation", None)
                    if tag is not None and node.get("type") not in typing.get_args(tag):
                        continue
                found = ann
                break
            candidates.extend(typing.get_args(ann))
        if found is None:
            return None
        model = found
    return model if isinstance(model, type) else None


def _data_at(data: Any, loc: tuple) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _schema_problems(err: ValidationError, data: dict, loaded: yamlio.Loaded, display: str) -> list[Problem]:
    out = []
    for e in err.errors(include_url=False):
        loc = _clean_loc(tuple(e["loc"]))
        if len(loc) > 1 and isinstance(_data_at(data, loc[:-1]), str):
            loc = loc[:-1]  # shorthand written as a plain string (a condition, a source URL)
        kind = e["type"]
        ctx = e.get("ctx") or {}
        hint = None
        code = "schema"
        field_path = yamlio.format_loc(loc)
        if kind == "extra_forbidden":
            name = str(loc[-1])
            model = _model_at(loc[:-1], data)
            allowed = [f.alias or n for n, f in model.model_fields.items()] if model else list(FIELD_NAMES)
            close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
            message = f"unknown field '{name}'" + (f"; did you mean '{close[0]}'?" if close else "")
            hint = None if close else "allowed here: " + ", ".join(allowed)
            line, col = yamlio.locate(loaded.node, loc, key=True)
            code = "unknown-field"
        elif kind == "missing":
            message = f"missing required field '{loc[-1]}'"
            line, col = yamlio.locate(loaded.node, loc[:-1], key=True)
            code = "missing-field"
        else:
            line, col = yamlio.locate(loaded.node, loc)
            if kind == "rob_judgement":  # a judgement or domain outside its tool's own words (kb.records.RiskOfBias)
                message, hint, code = e["msg"], ctx.get("hint"), "rob-judgement"
            elif kind in ("vocabulary", "identifier", "range", "et_al"):
                message = e["msg"]
                code = "vocabulary" if kind == "vocabulary" else kind.replace("_", "-")
            elif kind == "string_pattern_mismatch" and loc == ("id",):
                message = f"id '{e['input']}' must be lowercase firstauthor-year, e.g. murrough-2013 or murrough-2013b"
            elif kind == "string_pattern_mismatch" and loc and loc[0] == "sources":
                message = f"not a web address: '{e['input']}'"
                hint = "sources are http(s) URLs; put remarks in `note:`"
            elif kind == "union_tag_invalid":
                message = f"unknown data type '{ctx.get('tag')}'; expected binary, continuous or effect"
            elif kind == "union_tag_not_found":
                message = "outcome data needs `type: binary`, `type: continuous` or `type: effect`"
            elif kind in _TYPE_MESSAGES:
                message = _TYPE_MESSAGES[kind]
                inp = e.get("input")
                if not isinstance(inp, (dict, list)) and kind != "string_too_short":
                    message += f", got {inp!r}"
            else:
                message = e["msg"][0].lower() + e["msg"][1:]
                inp = e.get("input")
                if not isinstance(inp, (dict, list)):
                    message += f", got {inp!r}"
        out.append(Problem(display, line, col, field_path, message, "error", hint, code))
    return out


def _field_name(entry: str) -> str:
    return entry.split(".")[0].split("[")[0].split(" ")[0].strip()


def _has_value(study: Study, path: str) -> bool:
    """Whether the field at ``path`` ('title', 'durability.relapse', 'outcomes[0].data') holds a value."""
    value: Any = study
    for part in re.findall(r"[^.\[\]]+", path.split(" ")[0]):
        if isinstance(value, list):
            value = value[int(part)] if part.isdigit() and int(part) < len(value) else None
        else:
            value = getattr(value, part, None)
        if value is None:
            return False
    return value not in ([], {}, "")


def raw_count_checks(data: dict, add: Callable[..., None]) -> None:
    """The count checks that need no valid record, so that a file with schema errors still gets them."""
    outcomes = data.get("outcomes")
    for i, o in enumerate(outcomes if isinstance(outcomes, list) else []):
        d = o.get("data") if isinstance(o, dict) else None
        arms = d.get("arms") if isinstance(d, dict) and d.get("type") == "binary" else None
        for j, arm in enumerate(arms if isinstance(arms, list) else []):
            if isinstance(arm, dict):
                check_arm_counts(arm.get("events"), arm.get("total"), ("outcomes", i, "data", "arms", j), add)


def record_checks(study: Study, path: Path, add: Callable[..., None]) -> None:
    """Checks that need the whole record: counts, ids, verification, trust."""
    # id equals the file name
    if study.id != path.stem:
        add(("id",), f"id '{study.id}' differs from the file name '{path.name}'",
            hint=f"rename the file to {study.id}{path.suffix}, or set id: {path.stem}", code="id-mismatch")
    id_year = study.id.rsplit("-", 1)[-1][:4]
    if id_year.isdigit() and int(id_year) != study.year:
        add(("id",), f"id year {id_year} differs from year {study.year}", severity="warning", code="id-year")

    # required-for-trust fields, which may stay empty only when flagged unverified
    unverified = {_field_name(f) for f in study.unverified_fields}
    for name in ("title", "authors"):
        if not _has_value(study, name) and name not in unverified:
            add((name,) if name == "title" else ("id",),
                f"no {name}; fill it in, or list '{name}' under unverified_fields if no source shows it",
                code="missing-field")
    if not study.sources:
        sev = "warning" if study.status == "draft" else "error"
        add(("id",), "no sources: every record needs at least one URL it was read from", severity=sev,
            code="no-source")
    if study.status != "draft":
        if not study.conditions:
            add(("conditions",), f"a record with status {study.status} needs at least one condition",
                code="missing-field")
        if not study.key_finding:
            add(("status",), f"a record with status {study.status} needs a key_finding (one sentence)",
                code="missing-field")

    # verification bookkeeping
    listed: dict[str, str] = {}
    for list_name in ("verified_fields", "unverified_fields", "inferred_fields"):
        for i, entry in enumerate(getattr(study, list_name)):
            name = _field_name(entry)
            if name not in FIELD_NAMES:
                close = difflib.get_close_matches(name, FIELD_NAMES, n=1, cutoff=0.6)
                add((list_name, i), f"'{entry}' does not name a record field"
                    + (f"; did you mean '{close[0]}'?" if close else ""), code="unknown-field")
            elif list_name != "inferred_fields":
                other = listed.get(name)
                if other and other != list_name:
                    add((list_name, i), f"'{name}' is listed under both {other} and {list_name}", code="verification")
                listed[name] = list_name
    for i, entry in enumerate(study.unverified_fields):
        name = entry.split(" ")[0]
        if _field_name(entry) in FIELD_NAMES and _has_value(study, name):
            if study.status == "verified":
                add(("status",), f"status is verified, but '{name}' holds a value that no source confirmed",
                    hint="a record is verified only when every number in it was seen in a source", code="verification")
            else:
                add(("unverified_fields", i), f"'{name}' holds a value that no source confirmed",
                    severity="warning", hint="check it against a source, or remove the value", code="unverified")

    searched = {"doi", "pmid"} & unverified  # looked for and not found: an honest, flagged gap
    if not (study.doi or study.pmid or study.pmcid or searched):
        add(("id",), "no DOI, PMID or PMCID, so duplicates of this study cannot be detected",
            severity="warning", hint="look the study up on PubMed or the publisher's page, or list 'doi' under "
            "unverified_fields if no source shows one", code="no-identifier")

    if study.retracted:
        r = study.retraction
        when = f" in {r.date}" if r and r.date else ""
        notice = f" ({r.notice})" if r and r.notice else ""
        add(("retraction",), f"publication retracted{when}{notice}: it is shown as retracted everywhere and never pooled",
            severity="note", code="retracted")

    evidence_checks(study, add)


_UNREADABLE_HINTS = {
    "ELOOP": "the file is a symbolic link in a loop: point it at a record file, or remove it",
    "ENOENT": "the file is a symbolic link to a file that is not there: fix the link, or remove it",
    "EACCES": "make the file readable (chmod a+r)",
    "EPERM": "make the file readable (chmod a+r)",
}


def unreadable_problem(display: str, err: OSError) -> Problem:
    """The problem of a record file that could not be opened (a link loop, a dangling link, no permission):
    the file is left out and named, as ``kb validate`` names it."""
    import errno

    hint = _UNREADABLE_HINTS.get(errno.errorcode.get(err.errno or 0, ""))
    return Problem(display, 1, 1, "", f"cannot read file: {err.strerror or err}", "error", hint, "unreadable")


EXTERNAL_LINK_HINT = ("copy the record into studies/; or, if reviewers share records through such links on "
                      "purpose, set `allow_external_links: true` in kb.yaml")


def external_link_problem(display: str, target: str) -> Problem:
    """The problem of a record file that is a symbolic link leading outside the knowledge base (not read)."""
    return Problem(display, 1, 1, "", f"a symbolic link to {target}, outside the knowledge base: not read", "error",
                   EXTERNAL_LINK_HINT, "external-link")


_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # kb.terminal.CONTROLS: C0 but tab and newline, DEL, C1


def control_problems(data: Any, loaded: yamlio.Loaded, display: str) -> list[Problem]:
    """A warning for each text field holding a control character (ESC, OSC, BEL ...: YAML's "\\e" and
    "\\x9b" escapes make them): kb shows them as \\x1b in a terminal and drops them from pages and
    exports, but a record should not hold them."""
    out: list[Problem] = []
    if "\\" not in loaded.text and "\x85" not in loaded.text:
        return out  # the reader refuses raw controls (but NEL): only a double-quoted escape makes one
    stack: list[tuple[Any, tuple]] = [(data, ())]
    while stack:
        value, loc = stack.pop()
        if isinstance(value, str):
            m = _CONTROLS.search(value)
            if m:
                line, col = yamlio.locate(loaded.node, loc)
                out.append(Problem(display, line, col, yamlio.format_loc(loc),
                                   f"control character {yamlio.char_name(m.group())} in the text; terminals would "
                                   "obey it (kb shows it as \\x" + f"{ord(m.group()):02x}" + " and drops it from pages)",
                                   "warning", "remove it: it usually comes from copying out of a terminal, a PDF or "
                                   "a word processor", "control-characters"))
        elif isinstance(value, dict):
            stack.extend((v, (*loc, k)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, (*loc, i)) for i, v in enumerate(value))
    out.sort(key=lambda p: (p.line, p.column))
    return out


def check_file(path: Path, vocab: Vocabulary, display: str | None = None, raw: bytes | None = None) -> FileResult:
    """Every problem of one record file (checks across files are separate); ``raw``: its bytes, if read."""
    display = display or str(path)
    res = FileResult(path=path, display=display)
    try:
        loaded = yamlio.load(path, raw)
    except yamlio.YamlProblem as p:
        res.problems.append(Problem(display, p.line, p.column, p.field, p.message, "error", p.hint, p.code))
        return res
    data = loaded.data
    rid = data.get("id")
    res.record_id = rid if isinstance(rid, str) else path.stem
    res.problems.extend(control_problems(data, loaded, display))
    def add(loc: tuple, message: str, severity: Severity = "error", hint: str | None = None,
            code: str = "record") -> None:
        line, col = yamlio.locate(loaded.node, loc)
        res.problems.append(Problem(display, line, col, yamlio.format_loc(loc), message, severity, hint, code))

    try:
        study = validate_data(data, vocab)
    except ValidationError as err:
        res.problems.extend(_schema_problems(err, data, loaded, display))
        raw_count_checks(data, add)
        _collect_keys(res, data, loaded)
        return res

    record_checks(study, path, add)
    res.study = study
    _collect_keys(res, data, loaded)
    return res


def _collect_keys(res: FileResult, data: dict, loaded: yamlio.Loaded) -> None:
    def put(kind: str, value: Any, loc: tuple) -> None:
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            norm = str(value).strip()
            norm = norm.lower() if kind == "doi" else norm.upper() if kind == "registration" else norm
            line, col = yamlio.locate(loaded.node, loc)
            res.keys.append((kind, norm, yamlio.format_loc(loc), line, col))

    put("id", data.get("id"), ("id",))
    put("doi", data.get("doi"), ("doi",))
    put("pmid", data.get("pmid"), ("pmid",))
    regs = data.get("registrations")
    if isinstance(regs, list):
        for i, r in enumerate(regs):
            put("registration", r, ("registrations", i))
    design = data.get("design")
    res.design = design if isinstance(design, str) else None
    rel = data.get("related")
    if isinstance(rel, list):
        for i, r in enumerate(rel):
            if isinstance(r, dict) and isinstance(r.get("id"), str):
                line, col = yamlio.locate(loaded.node, ("related", i, "id"))
                relation = r.get("relation") if isinstance(r.get("relation"), str) else None
                res.related.append((r["id"], f"related[{i}].id", line, col, relation))


# -- across files ---------------------------------------------------------------------


REVIEW_DESIGNS = frozenset({"meta-analysis", "systematic-review"})  # what a `pooled-in` link may name


def cross_checks(results: list[FileResult], context: list[FileResult], known_ids: set[str]) -> list[Problem]:
    """Ids, DOIs, PMIDs and registrations shared by two files; links to unknown records; a `pooled-in`
    link that names a record which is not a review or meta-analysis."""
    out: list[Problem] = []
    designs = {r.record_id: r.design for r in (*results, *context) if r.record_id}
    links: set[frozenset[str]] = set()
    for r in (*results, *context):
        for target, *_ in r.related:
            if r.record_id:
                links.add(frozenset((r.record_id, target)))
    seen: dict[tuple[str, str], FileResult] = {}
    checked = {id(r) for r in results}
    labels = {"id": "id", "doi": "DOI", "pmid": "PMID", "registration": "registration"}
    for r in (*results, *context):
        for kind, value, fld, line, col in r.keys:
            first = seen.get((kind, value))
            if first is None:
                seen[(kind, value)] = r
                continue
            if kind == "registration" and frozenset((first.record_id, r.record_id)) in links:
                continue  # reports of one trial, linked by `related`
            if first.record_id == r.record_id and kind != "id":
                continue  # the id clash is reported already
            hint = ("link the records with `related: [{id: ..., relation: same-trial}]` if both report one trial"
                    if kind == "registration" else "merge the two records, or correct the identifier")
            if id(r) in checked:
                out.append(Problem(r.display, line, col, fld,
                                   f"{labels[kind]} {value} is also in {first.display}", "error", hint, "duplicate"))
            if id(first) in checked:
                fline, fcol, ffld = next((ln, c, f) for k, v, f, ln, c in first.keys if (k, v) == (kind, value))
                out.append(Problem(first.display, fline, fcol, ffld,
                                   f"{labels[kind]} {value} is also in {r.display}", "error", hint, "duplicate"))
    for r in results:
        for target, fld, line, col, relation in r.related:
            if target == r.record_id:
                out.append(Problem(r.display, line, col, fld, "a record cannot be related to itself", "error",
                                   code="related"))
            elif target not in known_ids:
                close = difflib.get_close_matches(target, sorted(known_ids), n=1, cutoff=0.7)
                out.append(Problem(r.display, line, col, fld, f"no record with id '{target}'"
                                   + (f"; did you mean '{close[0]}'?" if close else ""), "error", code="related"))
            elif relation == "pooled-in" and designs.get(target) not in REVIEW_DESIGNS:
                out.append(Problem(
                    r.display, line, col, fld,
                    f"pooled-in names the review that included this trial, but '{target}' is a "
                    f"{designs.get(target) or 'record without a design'}, not a review or meta-analysis", "error",
                    "link the review's record (design: meta-analysis or systematic-review), or use another relation "
                    "(same-trial, secondary-analysis, companion)", "related"))
    return out


# -- running over many files ------------------------------------------------------------

_WORKER_VOCAB: Vocabulary | None = None


_WORKER_KEEP = True


def _init_worker(vocab: Vocabulary, keep_studies: bool) -> None:
    global _WORKER_VOCAB, _WORKER_KEEP
    _WORKER_VOCAB, _WORKER_KEEP = vocab, keep_studies


def _check_batch(batch: list[tuple[Path, str]], vocab: Vocabulary, keep_studies: bool) -> list[FileResult]:
    out = []
    for p, d in batch:
        r = check_file(p, vocab, d)
        if not keep_studies:
            r.study = None
        out.append(r)
    return out


def _work(batch: list[tuple[Path, str]]) -> list[FileResult]:
    assert _WORKER_VOCAB is not None
    return _check_batch(batch, _WORKER_VOCAB, _WORKER_KEEP)


def check_files(files: list[Path], vocab: Vocabulary, *, base: Path | None = None, jobs: int | None = None,
                progress: Callable[[int, int], None] | None = None, keep_studies: bool = True) -> list[FileResult]:
    """check_file over ``files``, on all cores when there are many.

    ``keep_studies=False`` drops the parsed records once checked, which saves
    sending them back from the worker processes when only problems are wanted.
    """
    base_text = os.path.abspath(base) if base else None
    items = [(p, _display(p, base_text)) for p in files]
    jobs = jobs or (os.cpu_count() or 1)
    size = 200 if jobs <= 1 or len(items) < PARALLEL_THRESHOLD else max(50, min(500, len(items) // (jobs * 16) or 1))
    batches = [items[i:i + size] for i in range(0, len(items), size)]
    out: list[FileResult] = []
    if jobs <= 1 or len(items) < PARALLEL_THRESHOLD:
        for batch in batches:
            out.extend(_check_batch(batch, vocab, keep_studies))
            if progress:
                progress(len(out), len(items))
        return out
    from .files import worker_pool

    with worker_pool(jobs, initializer=_init_worker, initargs=(vocab, keep_studies)) as pool:
        for res in pool.map(_work, batches):
            out.extend(res)
            if progress:
                progress(len(out), len(items))
    return out


def validate_paths(paths: Iterable[Path], vocab: Vocabulary | None = None, *, kb_studies: Path | None = None,
                   base: Path | None = None, jobs: int | None = None,
                   progress: Callable[[int, int], None] | None = None, keep_studies: bool = True,
                   summaries: Path | None = None, protocol=None, comparisons: Path | None = None,
                   links_within: Path | None = None) -> Report:
    """Validate the record files under ``paths``, the summaries/<condition>.yaml files in
    ``summaries`` and the comparisons/<review-id>.yaml files in ``comparisons`` when given.

    When the files are part of a knowledge base (``kb_studies``), its other
    records take part in the checks across files, but only problems of the
    named files are reported. With ``links_within`` (the knowledge base's folder, unless kb.yaml
    allows external links), a record file that is a symbolic link leading outside it is reported
    and not read.
    """
    from .files import link_outside

    vocab = vocab or load_vocabulary()
    files = record_files(paths)
    outside: list[Problem] = []
    if links_within is not None:
        base_text = os.path.abspath(base) if base else None
        kept = []
        for p in files:
            target = link_outside(p, links_within)
            if target is None:
                kept.append(p)
            else:
                outside.append(external_link_problem(_display(p, base_text), target))
        files = kept
    # bottom lines that cite analyses or absences are checked against the records: keep them
    keep_studies = keep_studies or (summaries is not None and summaries_cite_evidence(summaries))
    results = check_files(files, vocab, base=base, jobs=jobs, progress=progress, keep_studies=keep_studies)
    context: list[FileResult] = []
    known_ids = {r.record_id for r in results if r.record_id}
    if kb_studies is not None and kb_studies.is_dir():
        named = {os.path.abspath(p) for p in files}
        rest = [p for p in record_files([kb_studies]) if os.path.abspath(p) not in named
                and (links_within is None or link_outside(p, links_within) is None)]
        if rest:
            context = check_files(rest, vocab, base=base, jobs=jobs, keep_studies=False)
            known_ids |= {r.record_id for r in context if r.record_id}
    problems = [*outside, *(p for r in results for p in r.problems)]
    problems.extend(cross_checks(results, context, known_ids))
    problems.sort(key=lambda p: (p.file, p.line, p.column))
    n_summaries = 0
    studies = [r.study for r in results if r.study is not None]
    if summaries is not None:
        n_summaries, summary_problems = check_summaries(summaries, vocab, base, studies, protocol)
        problems.extend(summary_problems)  # after the records', as the files are listed
    n_notes = 0
    if comparisons is not None:
        designs = {r.record_id: r.design for r in (*results, *context) if r.record_id}
        n_notes, notes_problems = check_review_notes(comparisons, vocab, designs, base)
        problems.extend(notes_problems)
    return Report(files=len(files) + len(outside) + n_summaries + n_notes, problems=problems, studies=studies)


def summaries_cite_evidence(folder: Path) -> bool:
    """Whether any summary file cites an analysis, a record or an absence (a cheap look at the text)."""
    if not folder.is_dir():
        return False
    for path in folder.glob("*.y*ml"):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if re.search(r"\{\s*(analysis|study|absent)\s*:|^absent\s*:", text, re.M):
            return True
    return False


def check_summaries(folder: Path, vocab: Vocabulary, base: Path | None = None, studies: list[Study] | None = None,
                    protocol=None) -> tuple[int, list[Problem]]:
    """(files, problems) of every summaries/<condition>.yaml in ``folder`` (missing folder: none). With
    ``studies`` (every record of the knowledge base), each bottom line's placeholders are checked
    against the analyses computed from them (kb.bottomline.check)."""
    if not folder.is_dir():
        return 0, []
    files = sorted(folder.glob("*.y*ml"))
    problems: list[Problem] = []
    checked = []
    for path in files:
        display = str(path.relative_to(base)) if base and path.is_relative_to(base) else str(path)
        summary, found = check_summary_file(path, vocab, display)
        problems.extend(found)
        if summary is not None and not found and studies is not None:
            checked.append((path, display, summary))
    if checked:
        problems.extend(check_bottom_lines(checked, studies, vocab, protocol))
    return len(files), problems


def check_bottom_lines(checked: list, studies: list[Study], vocab: Vocabulary, protocol=None) -> list[Problem]:
    """The placeholders of each summary, against the analyses of ``studies`` (kb.bottomline)."""
    from . import bottomline, synthesis

    records = {s.id: s for s in studies}
    need = any(p.kind == "analysis" for _path, _d, summary in checked for _f, text in summary.prose()
               for p in bottomline.placeholders(text))
    analyses = {}
    if need:
        by_cond = {summary.condition: summary for _p, _d, summary in checked}
        computed = synthesis.analyse_studies(studies, protocol or synthesis.DEFAULT_PROTOCOL, vocab, by_cond)
        analyses = {synthesis.analysis_id(k): a for k, a in computed.items()}
    problems = []
    for path, display, summary in checked:
        node, raw = None, ""
        found = bottomline.check(summary, analyses, records)
        if found:  # read again only to place the problems (the summary was read and checked before)
            try:
                loaded = yamlio.load(path)
                node, raw = loaded.node, loaded.text
            except yamlio.YamlProblem:
                pass
        for f in found:
            loc = [int(x) if x.isdigit() else x for x in f.field.split(".")]
            line, col = yamlio.locate(node, loc) if node is not None else (0, 0)
            at = raw.find(f.text) if f.text else -1
            if at >= 0:  # the placeholder's own line, when it is not folded across two
                line = raw.count("\n", 0, at) + 1
                col = at - raw.rfind("\n", 0, at)
            problems.append(Problem(display, line, col, f.field, f.message, f.severity, f.hint, f.code))
    return problems


def _reviewers_file(path: Path, display: str, validate: Callable[[Any], Any]):
    """(model or None, loaded or None, problems) for one reviewers' YAML file (a summary, notes on a
    review): read through yamlio, then validated by ``validate(data)``."""
    try:
        loaded = yamlio.load(path)
    except yamlio.YamlProblem as p:
        return None, None, [Problem(display, p.line, p.column, p.field, p.message, "error", p.hint, p.code)]
    try:
        return validate(loaded.data), loaded, []
    except ValidationError as err:
        return None, loaded, _schema_problems(err, loaded.data, loaded, display)


def check_summary_file(path: Path, vocab: Vocabulary, display: str | None = None):
    """(summary or None, problems) for one summaries/<condition>.yaml file."""
    from .summaries import validate_summary

    display = display or str(path)
    summary, loaded, problems = _reviewers_file(path, display, lambda data: validate_summary(data, vocab))
    if summary is None:
        return None, problems
    if path.stem != summary.condition:
        line, col = yamlio.locate(loaded.node, ("condition",))
        return summary, [Problem(display, line, col, "condition",
                                 f"the file is named {path.name} but is about '{summary.condition}'", "error",
                                 f"rename it to {summary.condition}.yaml", "summary-name")]
    return summary, []


def check_review_notes(folder: Path, vocab: Vocabulary, designs: dict[str, str | None] | None = None,
                       base: Path | None = None) -> tuple[int, list[Problem]]:
    """(files, problems) of every comparisons/<review-id>.yaml in ``folder`` (missing folder: none).
    With ``designs`` (record id -> design), the review must be a review record and every trial id a record."""
    if not folder.is_dir():
        return 0, []
    files = sorted(folder.glob("*.y*ml"))
    problems: list[Problem] = []
    for path in files:
        display = str(path.relative_to(base)) if base and path.is_relative_to(base) else str(path)
        problems.extend(check_review_notes_file(path, vocab, display, designs)[1])
    return len(files), problems


def check_review_notes_file(path: Path, vocab: Vocabulary, display: str | None = None,
                            designs: dict[str, str | None] | None = None):
    """(notes or None, problems) for one comparisons/<review-id>.yaml file."""
    from .review_notes import validate_review_notes

    display = display or str(path)
    notes, loaded, found = _reviewers_file(path, display, lambda data: validate_review_notes(data, vocab))
    if notes is None:
        return None, found
    problems: list[Problem] = []

    def add(loc: tuple, message: str, hint: str) -> None:
        line, col = yamlio.locate(loaded.node, loc)
        problems.append(Problem(display, line, col, yamlio.format_loc(loc), message, "error", hint, "comparison"))

    if path.stem != notes.review:
        add(("review",), f"the file is named {path.name} but is about '{notes.review}'",
            f"rename it to {notes.review}.yaml")
    if designs is not None:
        if notes.review not in designs:
            add(("review",), f"no record with id '{notes.review}'", "name the review's record id")
        elif designs[notes.review] not in REVIEW_DESIGNS:
            add(("review",), f"'{notes.review}' is a {designs[notes.review]}, not a review or meta-analysis",
                "comparisons/ holds notes on published reviews only")
        for i, a in enumerate(notes.analyses):
            for j, c in enumerate(a.candidates):
                if c.id is not None and c.id not in designs:
                    add(("analyses", i, "candidates", j, "id"), f"no record with id '{c.id}'",
                        "leave `id` empty (with a `reason`) for a trial kb does not hold")
    return notes, problems
