"""Finding a knowledge base folder and reading its kb.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import ConfigError, NoKnowledgeBase
from .protocol import DEFAULT as DEFAULT_PROTOCOL, Protocol, parse as parse_protocol
from .vocab import Vocabulary, load_vocabulary

CONFIG_NAME = "kb.yaml"
STUDIES_DIR = "studies"
KNOWN_KEYS = {"title", "description", "base_url", "vocabulary", "language", "synthesis"}


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


def _read_config(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: YAML syntax error: {getattr(e, 'problem', e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: kb.yaml must be a mapping (title:, base_url:, vocabulary:)")
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
        protocol=parse_protocol(cfg.get("synthesis"), str(cfg_path), vocab),
    )
