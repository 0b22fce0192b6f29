"""The screening files: the search log, the screening set and the reviewers' decisions.

Layout (all in git but the lock):

- ``searches.yaml``: the search log, one entry per imported export file, and reviewer-added
  ``other_methods:`` counts. Reviewers may edit it. Written only under an exclusive lock
  (``.kb/screening/searches.lock``) and atomically (temporary file, then rename), so two imports at
  once never corrupt it.
- ``screening/references/<search-id>.jsonl``: the references one import added, one JSON object a
  line, written once and never rewritten (``files.atomic_write(overwrite=False)``).
- ``screening/decisions/<reviewer>.jsonl``: one line per decision, appended and flushed
  (``files.append_line``); never rewritten, so two reviewers' branches merge in git without conflicts.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .. import files, yamlio
from ..biblio import Reference, fold, surname_key
from ..config import KnowledgeBase
from ..errors import BadRequest, KbError

SCREENING_DIR = "screening"
SEARCH_LOG = "searches.yaml"
STAGES = ("title-abstract", "full-text")
DECISIONS = {"title-abstract": ("include", "exclude", "maybe"), "full-text": ("include", "exclude")}
UNDO = "undo"  # a line that withdraws the reviewer's last decision on a reference at a stage
OTHER_METHODS = ("websites", "organisations", "citation_searching")
# the fields of a reference kept in the screening set, in this order
REF_FIELDS = ("title", "authors", "authors_truncated", "year", "journal", "volume", "issue", "pages", "doi", "pmid",
              "pmcid", "registrations", "abstract", "keywords", "publication_types", "retracted",
              "retraction_notice")


class ScreeningError(KbError):
    """A screening file that cannot be read or a decision that cannot be recorded."""


def screening_dir(kb: KnowledgeBase) -> Path:
    return kb.root / SCREENING_DIR


def references_dir(kb: KnowledgeBase) -> Path:
    return screening_dir(kb) / "references"


def decisions_dir(kb: KnowledgeBase) -> Path:
    return screening_dir(kb) / "decisions"


def log_path(kb: KnowledgeBase) -> Path:
    return kb.root / SEARCH_LOG


def lock_path(kb: KnowledgeBase) -> Path:
    return kb.state_dir / "screening" / "searches.lock"


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# -- references ----------------------------------------------------------------------------------


def hash_key(title: str | None, year: int | None, first_author: str | None) -> str:
    """The key of a reference with neither DOI nor PMID: a hash of its normalised title, year and
    first author's surname (stable across exports that spell them alike)."""
    text = "|".join((fold(title).replace(" ", ""), str(year or ""), surname_key(first_author)))
    return "t:" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def reference_key(ref: dict) -> str:
    """``doi:<doi>`` (lower case), else ``pmid:<pmid>``, else :func:`hash_key`."""
    if ref.get("doi"):
        return "doi:" + str(ref["doi"]).lower()
    if ref.get("pmid"):
        return f"pmid:{ref['pmid']}"
    authors = ref.get("authors") or []
    return hash_key(ref.get("title"), ref.get("year"), authors[0] if authors else None)


def reference_data(ref: Reference) -> dict:
    """The plain data of a reference as the screening set keeps it (empty values left out)."""
    data = {}
    for name in REF_FIELDS:
        value = getattr(ref, name)
        if value not in (None, "", [], False):
            data[name] = value
    return data


def as_reference(data: dict, number: int = 0) -> Reference:
    """A :class:`Reference` again from a screening-set line (what the draft writer takes)."""
    kw = {k: data[k] for k in REF_FIELDS if k in data}
    return Reference(number=number, **kw)


@dataclass
class ScreeningRef:
    key: str
    search: str  # the search id it came from
    line: int  # its line in the search's file
    data: dict

    @property
    def title(self) -> str:
        return self.data.get("title") or "(no title)"


def reference_line(key: str, number: int, data: dict) -> str:
    return json.dumps({"key": key, "n": number, **data}, ensure_ascii=False, separators=(",", ":"))


def write_references(kb: KnowledgeBase, search_id: str, lines: list[str], fsync: bool = True) -> Path:
    """Write one search's references, once: an existing file is never replaced."""
    path = references_dir(kb) / f"{search_id}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with files.atomic_write(path, "w", encoding="utf-8", newline="\n", fsync=fsync, overwrite=False,
                                exclusive=True) as fh:
            fh.write("".join(line + "\n" for line in lines))
    except FileExistsError:
        raise ScreeningError(f"{path} already exists; not overwriting it",
                             hint="a search's references are written once; import again to log a new search") from None
    return path


def read_references(kb: KnowledgeBase) -> dict[str, ScreeningRef]:
    """Every reference of the screening set, key -> reference, in import order (the search log's
    order, then each file's). A line that does not parse stops with its file and line named."""
    out: dict[str, ScreeningRef] = {}
    folder = references_dir(kb)
    if not folder.is_dir():
        return out
    order = [s["id"] for s in read_log(kb).searches]
    paths = sorted(folder.glob("*.jsonl"), key=lambda p: (order.index(p.stem) if p.stem in order else len(order),
                                                          p.name))
    for path in paths:
        with open(path, "rb") as fh:
            for i, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                try:
                    data = json.loads(raw.decode("utf-8"))
                    if not isinstance(data, dict) or not isinstance(data.get("key"), str):
                        raise ValueError("not an object with a key")
                except (ValueError, RecursionError) as e:
                    raise ScreeningError(f"{path}:{i}: not a screening reference ({e})",
                                         hint="each line is one JSON object as kb import wrote it; restore the "
                                              "file from git (git checkout -- FILE)") from None
                key = data.pop("key")
                data.pop("n", None)
                out.setdefault(key, ScreeningRef(key, path.stem, i, data))
    return out


# -- the search log ------------------------------------------------------------------------------


@dataclass
class SearchLog:
    searches: list[dict] = field(default_factory=list)
    other_methods: dict[str, int] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # anything else a reviewer wrote, kept as it is

    def as_data(self) -> dict:
        data: dict[str, Any] = {"searches": self.searches}
        if self.other_methods:
            data["other_methods"] = self.other_methods
        data.update(self.extra)
        return data


_COUNTS = ("found", "new", "duplicates", "failed")


def read_log(kb: KnowledgeBase) -> SearchLog:
    """The search log, checked: errors name searches.yaml, the line and the field."""
    path = log_path(kb)
    if not path.is_file():
        return SearchLog()
    try:
        loaded = yamlio.parse(yamlio.read_text(path))
    except yamlio.YamlProblem as e:
        if e.code == "empty":
            return SearchLog()
        raise ScreeningError(f"{path}:{e.line}:{e.column}: {e.message}",
                             hint="searches.yaml is plain YAML as kb import writes it; git diff shows what changed")
    data = loaded.data

    def fail(loc: tuple, message: str, hint: str):
        line, col = yamlio.locate(loaded.node, loc)
        return ScreeningError(f"{path}:{line}:{col}: {'.'.join(map(str, loc))}: {message}", hint=hint)

    if not isinstance(data, dict):
        raise fail((), "must be a mapping with searches: and optional other_methods:", "see kb import --help")
    searches = data.get("searches") or []
    if not isinstance(searches, list):
        raise fail(("searches",), "must be a list of searches", "one '- id: ...' entry per imported file")
    seen: set[str] = set()
    for i, s in enumerate(searches):
        if not isinstance(s, dict) or not isinstance(s.get("id"), str) or not s["id"]:
            raise fail(("searches", i), "each search needs an id", "keep the id kb import wrote")
        if s["id"] in seen:
            raise fail(("searches", i, "id"), f"search id {s['id']!r} appears twice",
                       "each imported file has its own id; two branches may have logged searches with one id")
        seen.add(s["id"])
        for name in _COUNTS:
            v = s.get(name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise fail(("searches", i, name), f"must be a whole number, not {v!r}",
                           "kb import writes the counts; restore them from git")
        for name in ("date_searched",):
            v = s.get(name)
            if isinstance(v, _dt.date):
                s[name] = v.isoformat()
            elif v is not None and not (isinstance(v, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", v)):
                raise fail(("searches", i, name), f"{v!r} is not a date", "write it as YYYY-MM-DD")
    other = data.get("other_methods") or {}
    if not isinstance(other, dict):
        raise fail(("other_methods",), "must be a mapping", "e.g. other_methods: {citation_searching: 4}")
    for name, v in other.items():
        if name not in OTHER_METHODS:
            raise fail(("other_methods", name), "unknown method", "other_methods knows: " + ", ".join(OTHER_METHODS))
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise fail(("other_methods", name), f"must be a whole number, not {v!r}",
                       "the number of records found by this method")
    extra = {k: v for k, v in data.items() if k not in ("searches", "other_methods")}
    return SearchLog(list(searches), dict(other), extra)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", fold(text)).strip("-")[:30] or "search"


def log_search(kb: KnowledgeBase, make_entry, fsync: bool = True) -> dict:
    """Add one search to the log, under the lock. ``make_entry(log, search_id)`` is called with the
    log as it is now (so it can check for the same file again) and returns the entry to add, or None
    to add nothing. Returns the entry (or None)."""
    with files.locked(lock_path(kb)):
        log = read_log(kb)
        taken = {s["id"] for s in log.searches}
        n = len(log.searches) + 1

        def new_id(database: str) -> str:
            nonlocal n
            while True:
                sid = f"{n:03d}-{_slug(database)}"
                if sid not in taken and not (references_dir(kb) / f"{sid}.jsonl").exists():
                    return sid
                n += 1

        entry = make_entry(log, new_id)
        if entry is None:
            return None
        log.searches.append(entry)
        yamlio.write_new(log_path(kb), yamlio.dump(log.as_data()), overwrite=True, fsync=fsync)
        return entry


# -- decisions -----------------------------------------------------------------------------------


@dataclass
class Decision:
    key: str
    stage: str
    decision: str  # include | exclude | maybe | undo
    reviewer: str
    time: str
    reason: str | None = None
    resolves: bool = False  # a resolution of a conflict
    where: str = ""  # file:line

    def line(self) -> str:
        data: dict[str, Any] = {"key": self.key, "stage": self.stage, "decision": self.decision}
        if self.reason:
            data["reason"] = self.reason
        data["time"] = self.time
        data["reviewer"] = self.reviewer
        if self.resolves:
            data["resolves"] = True
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def reviewer_file(kb: KnowledgeBase, reviewer: str) -> Path:
    name = _slug(reviewer)
    return decisions_dir(kb) / f"{name}.jsonl"


def check_reviewer(reviewer: str) -> str:
    reviewer = " ".join(str(reviewer or "").split())
    if not reviewer or not re.search(r"[A-Za-z0-9]", reviewer):
        raise BadRequest("no reviewer name", hint="pass --reviewer NAME, or set git config user.name")
    return reviewer


def parse_decision(text: str, where: str) -> Decision:
    """One decision line, checked; ValueError says what is wrong."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    for name in ("key", "stage", "decision", "time", "reviewer"):
        if not isinstance(data.get(name), str) or not data[name]:
            raise ValueError(f"{name} is missing")
    if data["stage"] not in STAGES:
        raise ValueError(f"unknown stage {data['stage']!r}")
    if data["decision"] not in (*DECISIONS[data["stage"]], UNDO):
        raise ValueError(f"decision {data['decision']!r} is not one of the {data['stage']} decisions")
    reason = data.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ValueError("reason must be text")
    return Decision(data["key"], data["stage"], data["decision"], data["reviewer"], data["time"], reason,
                    bool(data.get("resolves")), where)


@dataclass
class Decisions:
    lines: list[Decision] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "file:line: what is wrong": lines left out
    owners: dict[str, str] = field(default_factory=dict)  # reviewer -> the file their lines are in


def read_decisions(kb: KnowledgeBase) -> Decisions:
    """Every decision line of every reviewer, in file order. A line that does not parse is left out
    and named in ``problems`` (nothing else is lost); a line in a reviewer's file that names another
    reviewer is a problem too (two people writing one file)."""
    out = Decisions()
    folder = decisions_dir(kb)
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.jsonl")):
        with open(path, encoding="utf-8", errors="replace") as fh:
            for i, text in enumerate(fh, 1):
                if not text.strip():
                    continue
                where = f"{path}:{i}"
                try:
                    d = parse_decision(text, where)
                except ValueError as e:
                    out.problems.append(f"{where}: line left out: {e}")
                    continue
                owner = out.owners.setdefault(d.reviewer, path.name)
                if owner != path.name:
                    out.problems.append(f"{where}: reviewer {d.reviewer!r} also writes {owner}; line left out")
                    continue
                if reviewer_file(kb, d.reviewer).name != path.name:
                    out.problems.append(f"{where}: names reviewer {d.reviewer!r}, whose file is "
                                        f"{reviewer_file(kb, d.reviewer).name}; line left out")
                    continue
                out.lines.append(d)
    return out


def append_decision(kb: KnowledgeBase, d: Decision) -> Path:
    path = reviewer_file(kb, d.reviewer)
    files.append_line(path, d.line())
    return path


def iter_effective(lines: list[Decision]) -> Iterator[tuple[tuple[str, str, str], Decision]]:
    """(reviewer, key, stage) -> the reviewer's standing decision (the last one, an undo withdrawing
    the one before it), resolutions apart."""
    stacks: dict[tuple[str, str, str], list[Decision]] = {}
    for d in lines:
        if d.resolves:
            continue
        stack = stacks.setdefault((d.reviewer, d.key, d.stage), [])
        if d.decision == UNDO:
            if stack:
                stack.pop()
        else:
            stack.append(d)
    for k, stack in stacks.items():
        if stack:
            yield k, stack[-1]
