"""Domain exceptions. The CLI maps each to one clear message and an exit code; and the part of a
report that keeps the problems of the record files a command left out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class KbError(Exception):
    """A failure the user can fix; exit code 1."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nhint: {self.hint}"


class BadRequest(KbError):
    """The request itself is wrong (unknown option value, bad range); exit code 2."""

    exit_code = 2


class NotFound(KbError):
    """Nothing matched (an unknown id, an empty result)."""


class NoKnowledgeBase(KbError):
    """No knowledge base folder (one with a studies/ folder) was found."""


class ConfigError(KbError):
    """kb.yaml is unreadable or invalid."""


class RecordExists(KbError):
    """Refusing to overwrite a file that already exists."""


class RecordError(KbError):
    """A record file could not be loaded (syntax, encoding, schema)."""


class SiteError(KbError):
    """The site cannot be built (exit 1)."""


@dataclass
class LeftOut:
    """The problems (kb.validate.Problem) of the record files a command left out for their errors:
    kb index's and kb build's reports keep them, and say how many files they name."""

    problems: list[Any] = field(default_factory=list, kw_only=True)  # kw_only: subclasses may have required fields

    @property
    def files_left_out(self) -> int:
        return len({p.file for p in self.problems})
