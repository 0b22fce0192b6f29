"""Finding a knowledge base folder and reading its kb.yaml.

kb.yaml is read by :mod:`kb.yamlio`, as records are: the same limits (size, UTF-8, duplicate keys,
alias bombs, tags) and errors that name the file, the line and the key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import re

from dataclasses import dataclass, field
from pathlib import Path

from . import yamlio
from .errors import ConfigError, NoKnowledgeBase
from .protocol import DEFAULT as DEFAULT_PROTOCOL, Protocol, parse as parse_protocol, parse_eligibility
from .vocab import Vocabulary, load_vocabulary

CONFIG_NAME = "kb.yaml"
STUDIES_DIR = "studies"
KNOWN_KEYS = {"title", "description", "base_url", "vocabulary", "language", "synthesis", "eligibility",
              "literature_search", "screening", "allow_external_links"}
TEXT_KEYS = ("title", "description", "base_url", "language")  # one line of text each (or absent)


@dataclass(frozen=True)
class LiteratureSearch:
    """When the evidence was last searched for new studies, and how (what every page says as
    "Evidence searched up to <date>")."""

    up_to: _dt.date  # the day the last search for new studies was run
    note: str | None = None  # how: which databases or pages were searched
    source: str = "kb.yaml"  # where kb read it: kb.yaml's literature_search: (later also the search log)

    def as_dict(self) -> dict:
        return {"up_to": self.up_to.isoformat(), "note": self.note, "source": self.source}


@dataclass
class KnowledgeBase:
    """A folder with a ``studies/`` folder, an optional ``kb.yaml`` and ``templates/``."""

    root: Path
    title: str = "Evidence knowledge base"
    description: str = ""
    base_url: str | None = None
    language: str = "en"
    vocab: Vocabulary = field(default_factory=load_vocabulary)
    protocol: Protocol = DEFAULT_PROTOCOL  # kb.yaml's synthesis: section (time windows, comparator classes ...)
    literature_search: LiteratureSearch | None = None  # kb.yaml's literature_search: section; read it
    # through searched_up_to(kb), which a search log will take precedence in
    exclusion_reasons: tuple[str, ...] = ()  # kb.yaml's screening: {exclusion_reasons: [...]} (or the defaults)

    def __post_init__(self) -> None:
        if not self.exclusion_reasons:
            self.exclusion_reasons = DEFAULT_EXCLUSION_REASONS
    # kb.yaml's allow_external_links: read record files that are symbolic links leading outside the folder
    allow_external_links: bool = False

    @property
    def links_within(self) -> Path | None:
        """The folder a record file's symbolic link must stay inside (None: kb.yaml allows any)."""
        return None if self.allow_external_links else self.root

    @property
    def studies_dir(self) -> Path:
        return self.root / STUDIES_DIR

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    @property
    def state_dir(self) -> Path:
        """Where kb keeps derived state (the search index); ignored by git."""
        return self.root / ".kb"


# kb.yaml's own hints where yamlio's speak of records (by YamlProblem code)
_HINTS = {
    "too-large": "kb.yaml holds a few settings; keep data tables out of it",
    "alias-bomb": "remove the &anchor/*alias chain; kb.yaml does not need aliases",
    "recursive-alias": "remove the *alias; kb.yaml does not need aliases",
}


def _config_error(path: Path, line: int, column: int, key: str, message: str, hint: str | None) -> ConfigError:
    return ConfigError(f"{path}:{line}:{column}: {key + ': ' if key else ''}{message}", hint=hint)


def _read_config(path: Path) -> dict:
    try:
        loaded = yamlio.parse(yamlio.read_text(path))
    except yamlio.YamlProblem as e:
        if e.code == "empty":
            return {}
        message = e.message.replace("more than one YAML document (---) in a record file",
                                    "more than one YAML document (---) in kb.yaml")
        if e.code == "too-large":
            message = message.split(";")[0] + f"; kb.yaml may be at most {yamlio.MAX_BYTES / 1e6:.0f} MB"
        if e.code == "not-mapping":
            message = "kb.yaml must be a mapping (title:, base_url:, vocabulary:)"
        hint = _HINTS.get(e.code, e.hint)
        if hint:
            hint = hint.replace("records hold", "kb.yaml holds").replace("records are", "kb.yaml is")
        else:
            hint = "kb.yaml is plain YAML: `key: value` lines, as `kb init` writes it"
        raise _config_error(path, e.line, e.column, e.field, message, hint) from None
    data = loaded.data
    for key in TEXT_KEYS:
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int, float))):
            kind = {"list": "a list", "dict": "a mapping", "bool": "true or false"}.get(type(value).__name__,
                                                                                     type(value).__name__)
            raise _config_error(path, *yamlio.locate(loaded.node, (key,)), key, f"must be text, not {kind}",
                                f'write it on one line, quoted when in doubt: {key}: "..."')
    if "literature_search" in data:
        data["literature_search"] = _literature_search(data["literature_search"], path, loaded.node)
    if "screening" in data:
        data["screening"] = _screening(data["screening"], path, loaded.node)
    links = data.get("allow_external_links")
    if links is not None and not isinstance(links, bool):
        raise _config_error(path, *yamlio.locate(loaded.node, ("allow_external_links",)), "allow_external_links",
                            "must be true or false", "allow_external_links: true")
    unknown = set(data) - KNOWN_KEYS
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {', '.join(sorted(map(str, unknown)))}",
            hint="kb.yaml knows: " + ", ".join(sorted(KNOWN_KEYS)),
        )
    return data


DEFAULT_EXCLUSION_REASONS = ("wrong population", "wrong intervention", "wrong comparator", "wrong outcome",
                             "wrong study design", "duplicate report", "not retrievable")


def _screening(value: object, path: Path, node) -> tuple[str, ...]:
    """kb.yaml's ``screening:`` section: ``exclusion_reasons``, a list of short texts (the reasons a
    reviewer picks from when excluding at full text). Absent: the defaults."""
    def fail(loc: tuple, message: str):
        return _config_error(path, *yamlio.locate(node, ("screening", *loc)), ".".join(("screening", *map(str, loc))),
                             message, "e.g. screening: {exclusion_reasons: [wrong population, wrong outcome]}")

    if value is None:
        return DEFAULT_EXCLUSION_REASONS
    if not isinstance(value, dict):
        raise fail((), "must be a mapping with exclusion_reasons:")
    unknown = sorted(map(str, set(value) - {"exclusion_reasons"}))
    if unknown:
        raise fail((unknown[0],), f"unknown key(s) {', '.join(unknown)}")
    reasons = value.get("exclusion_reasons")
    if reasons is None:
        return DEFAULT_EXCLUSION_REASONS
    if not isinstance(reasons, list) or not reasons:
        raise fail(("exclusion_reasons",), "must be a list of reasons")
    out: list[str] = []
    for i, r in enumerate(reasons):
        if not isinstance(r, str) or not r.strip() or len(r) > 100:
            raise fail(("exclusion_reasons", i), "each reason is a short text (at most 100 characters)")
        r = " ".join(r.split())
        if r.lower() in (o.lower() for o in out):
            raise fail(("exclusion_reasons", i), f"{r!r} is listed twice")
        out.append(r)
    return tuple(out)


SEARCH_KEYS = ("up_to", "note")
_SEARCH_EXAMPLE = "literature_search: {up_to: 2026-12-05, note: PubMed and ClinicalTrials.gov}"


def _literature_search(value: object, path: Path, node) -> LiteratureSearch | None:
    """kb.yaml's ``literature_search:`` section: ``up_to`` (the date the last search for new studies was
    run: a date, not after tomorrow) and an optional ``note`` (how). Errors name kb.yaml, the line and the field."""
    def fail(loc: tuple, message: str, hint: str = f"e.g. {_SEARCH_EXAMPLE}"):
        return _config_error(path, *yamlio.locate(node, ("literature_search", *loc)),
                             ".".join(("literature_search", *loc)), message, hint)

    if value is None:
        return None
    if not isinstance(value, dict):
        raise fail((), "must be a mapping with up_to: (a date) and note: (how the evidence was searched)")
    unknown = sorted(map(str, set(value) - set(SEARCH_KEYS)))
    if unknown:
        raise fail((unknown[0],), f"unknown key(s) {', '.join(unknown)}", "literature_search knows: up_to, note")
    if "up_to" not in value or value["up_to"] in (None, ""):
        raise fail((), "up_to is missing: the date the last search for new studies was run")
    raw = value["up_to"]
    day = raw if isinstance(raw, _dt.date) and not isinstance(raw, _dt.datetime) else None
    if isinstance(raw, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw.strip()):
        with contextlib.suppress(ValueError):
            day = _dt.date.fromisoformat(raw.strip())
    if day is None:
        raise fail(("up_to",), f"{raw!r} is not a date",
                   "write the day the last search was run as YYYY-MM-DD, e.g. up_to: 2026-12-05")
    if day > _dt.date.today() + _dt.timedelta(days=1):
        raise fail(("up_to",), f"{day.isoformat()} is in the future",
                   "write the day the last search for new studies was actually run")
    note = value.get("note")
    if note is not None and not isinstance(note, str):
        raise fail(("note",), "must be text", 'write it as one paragraph, quoted when in doubt: note: "..."')
    note = " ".join(note.split()) if note else None
    return LiteratureSearch(up_to=day, note=note or None)


def searched_up_to(kb: KnowledgeBase) -> LiteratureSearch | None:
    """When the evidence of ``kb`` was last searched for new studies: the one answer every page, the
    methods page and `kb stats` show. The search log (``searches.yaml``, kept by ``kb import``) is
    asked first and takes precedence: its latest ``date_searched``, with the databases searched as
    the note. kb.yaml's ``literature_search:`` section is the fallback. None when neither says: pages
    then say that the search date is not recorded. A search log that cannot be read is an error
    (kb.screening.store.ScreeningError, naming the file, line and field)."""
    if (kb.root / "searches.yaml").is_file():
        from .screening.store import read_log  # the search log is screening's file

        dated = [s for s in read_log(kb).searches if s.get("date_searched")]
        if dated:
            day = max(_dt.date.fromisoformat(s["date_searched"]) for s in dated)
            databases = sorted({str(s["database"]) for s in dated if s.get("database")})
            note = (f"{len(dated)} database search{'es' if len(dated) != 1 else ''} logged in searches.yaml"
                    + (f" ({', '.join(databases)})" if databases else ""))
            return LiteratureSearch(up_to=day, note=note, source="searches.yaml")
    return kb.literature_search


def find_root(start: Path) -> Path | None:
    """``start`` or the nearest parent that holds a studies/ folder or a kb.yaml."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / STUDIES_DIR).is_dir() or (folder / CONFIG_NAME).is_file():
            return folder
    return None


def open_kb(path: str | Path | None = None, *, search_parents: bool = True) -> KnowledgeBase:
    """Open the knowledge base at ``path`` (default: the current folder or a parent)."""
    start = Path(path) if path is not None else Path.cwd()
    if path is not None and not start.is_dir():
        raise NoKnowledgeBase(f"{start}: no such folder")
    root = find_root(start) if search_parents and path is None else start.resolve()
    if root is None or not ((root / STUDIES_DIR).is_dir() or (root / CONFIG_NAME).is_file()):
        raise NoKnowledgeBase(
            f"no knowledge base at {start.resolve()} (no studies/ folder or kb.yaml"
            + (" here or in a parent folder)" if path is None else ")"),
            hint="run `kb init DIR` to start one, or pass --kb DIR",
        )
    cfg_path = root / CONFIG_NAME
    cfg = _read_config(cfg_path) if cfg_path.is_file() else {}
    vocab = load_vocabulary(cfg.get("vocabulary"), origin=str(cfg_path))
    return KnowledgeBase(
        root=root,
        title=str(cfg.get("title") or "Evidence knowledge base"),
        description=str(cfg.get("description") or ""),
        base_url=cfg.get("base_url"),
        language=str(cfg.get("language") or "en"),
        vocab=vocab,
        allow_external_links=bool(cfg.get("allow_external_links", False)),
        protocol=dataclasses.replace(parse_protocol(cfg.get("synthesis"), str(cfg_path), vocab),
                                     eligibility=parse_eligibility(cfg.get("eligibility"), str(cfg_path))),
        literature_search=cfg.get("literature_search"),
        exclusion_reasons=cfg.get("screening") or DEFAULT_EXCLUSION_REASONS,
    )
