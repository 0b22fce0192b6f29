"""Finding a knowledge base folder and reading its kb.yaml.

kb.yaml is read by :mod:`kb.yamlio`, as records are: the same limits (size, UTF-8, duplicate keys,
alias bombs, tags) and errors that name the file, the line and the key.
"""

from __future__ import annotations

import dataclasses

from dataclasses import dataclass, field
from pathlib import Path

from . import yamlio
from .errors import ConfigError, NoKnowledgeBase
from .protocol import DEFAULT as DEFAULT_PROTOCOL, Protocol, parse as parse_protocol, parse_eligibility
from .vocab import Vocabulary, load_vocabulary

CONFIG_NAME = "kb.yaml"
STUDIES_DIR = "studies"
KNOWN_KEYS = {"title", "description", "base_url", "vocabulary", "language", "synthesis", "eligibility",
              "allow_external_links"}
TEXT_KEYS = ("title", "description", "base_url", "language")  # one line of text each (or absent)


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
    )
