"""The controlled vocabulary: canonical terms, labels and synonyms per category.

Validation, search and the site share one Vocabulary object, built from the
package's ``data/vocabulary.yaml`` plus the optional ``vocabulary:`` section of
a knowledge base's ``kb.yaml``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Iterable, Mapping

from . import yamlio
from .errors import ConfigError


@dataclass
class Term:
    term: str
    label: str
    synonyms: list[str] = field(default_factory=list)
    description: str | None = None
    meaning: dict = field(default_factory=dict)  # outcome and instrument terms: see MEANING_KEYS


# What an outcome or instrument term declares about its meaning, so that every sentence a clinician
# reads is generated from declarations (kb.wording), never guessed. Outcome terms:
#   data      binary (events) or continuous (scores)
#   better    binary: "more" or "fewer" events are good for the patient;
#             continuous: "lower" or "higher" scores are good, or "instrument" (the instrument says)
#   noun      the outcome as a noun phrase, for "no difference in <noun>"
#   more / fewer     binary: the sentence when ketamine has more / fewer events ("More patients responded")
#   higher / lower   continuous: the sentence when scores are higher / lower with ketamine
#   deprecated, replaced_by   a term kept only as an alias of the terms that replace it
#   condition        the condition the outcome measures (si-response: suicidal-ideation): a study that lists
#                    that condition feeds its page's analysis even when its main condition is another
# Instrument terms: better (lower or higher scores are good).
MEANING_KEYS = {
    "outcome": {"data", "better", "noun", "more", "fewer", "higher", "lower", "deprecated", "replaced_by", "condition"},
    "instrument": {"better"},
}
_CHOICES = {"data": ("binary", "continuous"), "better": ("more", "fewer", "lower", "higher", "instrument")}


def fold(text: str) -> str:
    """Fold case, punctuation and spacing so that 'Post-traumatic' == 'post traumatic'."""
    return re.sub(r"[\s_\-–.,'’]+", " ", text.strip().lower()).strip()


class Vocabulary:
    """Terms of every category, with synonym lookup and suggestions."""

    def __init__(self, categories: Mapping[str, Mapping[str, Term]]):
        self.categories: dict[str, dict[str, Term]] = {c: dict(t) for c, t in categories.items()}
        self._lookup: dict[str, dict[str, str]] = {}
        for cat, terms in self.categories.items():
            table: dict[str, str] = {}
            for t in terms.values():
                for alias in (t.term, *t.synonyms):
                    table.setdefault(fold(alias), t.term)
            self._lookup[cat] = table

    # -- queries -----------------------------------------------------------
    def terms(self, category: str) -> list[str]:
        return list(self.categories[category])

    def has(self, category: str, term: str) -> bool:
        return term in self.categories.get(category, {})

    def label(self, category: str, term: str) -> str:
        t = self.categories.get(category, {}).get(term)
        return t.label if t else term

    def canonical(self, category: str, text: str) -> str | None:
        """The canonical term that ``text`` (a term, synonym or abbreviation) names."""
        if text in self.categories.get(category, {}):
            return text
        return self._lookup.get(category, {}).get(fold(text))

    def suggest(self, category: str, text: str) -> str | None:
        """The most likely intended term: a synonym's term, else the closest spelling."""
        found = self.canonical(category, text)
        if found:
            return found
        table = self._lookup.get(category, {})
        close = difflib.get_close_matches(fold(text), list(table), n=1, cutoff=0.75)
        return table[close[0]] if close else None

    def synonyms(self, category: str, term: str) -> list[str]:
        t = self.categories.get(category, {}).get(term)
        return list(t.synonyms) if t else []

    def expansions(self, text: str, categories: Iterable[str] | None = None) -> set[str]:
        """Every spelling of the concept(s) ``text`` names, across categories (for search)."""
        out: set[str] = set()
        for cat in categories or self.categories:
            term = self.canonical(cat, text)
            if term:
                out.add(term)
                out.update(self.categories[cat][term].synonyms)
        return out

    def meaning(self, category: str, term: str) -> dict:
        """What ``term`` declares about its meaning (see MEANING_KEYS); {} for an unknown term."""
        t = self.categories.get(category, {}).get(term)
        return t.meaning if t else {}

    def replaced_by(self, category: str, term: str) -> list[str]:
        """The terms a deprecated term stands for ([] when it is not deprecated)."""
        m = self.meaning(category, term)
        return list(m.get("replaced_by") or []) if m.get("deprecated") else []

    def as_dict(self) -> dict:
        return {
            cat: {t.term: {"label": t.label, "synonyms": t.synonyms, **t.meaning} for t in terms.values()}
            for cat, terms in self.categories.items()
        }


def _parse(data: object, origin: str) -> dict[str, dict[str, Term]]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: vocabulary must be a mapping of category -> terms")
    out: dict[str, dict[str, Term]] = {}
    for cat, terms in data.items():
        if not isinstance(terms, dict):
            raise ConfigError(
                f"{origin}: vocabulary.{cat} must be a mapping of term -> {{label, synonyms}}",
                hint="write e.g.  condition: {insomnia: {label: Insomnia, synonyms: [sleeplessness]}}",
            )
        out[cat] = {}
        for term, spec in terms.items():
            spec = spec or {}
            if not isinstance(spec, dict):
                raise ConfigError(f"{origin}: vocabulary.{cat}.{term} must be a mapping")
            syn = spec.get("synonyms") or []
            if not isinstance(syn, list):
                raise ConfigError(f"{origin}: vocabulary.{cat}.{term}.synonyms must be a list")
            out[cat][str(term)] = Term(
                term=str(term),
                label=str(spec.get("label") or term),
                synonyms=[str(s) for s in syn],
                description=spec.get("description"),
                meaning=_meaning(spec, cat, str(term), origin),
            )
    return out


def _meaning(spec: dict, cat: str, term: str, origin: str) -> dict:
    allowed = MEANING_KEYS.get(cat, set())
    unknown = set(spec) - {"label", "synonyms", "description"} - allowed
    where = f"{origin}: vocabulary.{cat}.{term}"
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}",
                          hint="keys: label, synonyms, description" + (", " + ", ".join(sorted(allowed)) if allowed else ""))
    out = {k: spec[k] for k in allowed if spec.get(k) is not None}
    for key, choices in _CHOICES.items():
        if key in out and out[key] not in choices:
            raise ConfigError(f"{where}.{key}: '{out[key]}' is not one of {', '.join(choices)}")
    if cat == "outcome" and out and not out.get("deprecated"):
        data = out.get("data")
        need = {"binary": ("better", "noun", "more", "fewer"),
                "continuous": ("better", "noun", "higher", "lower")}.get(data)
        if need is None:
            raise ConfigError(f"{where}: an outcome that declares its meaning needs data: binary or continuous")
        missing = [k for k in need if not out.get(k)]
        if missing:
            raise ConfigError(f"{where}: a {data} outcome needs {', '.join(missing)}",
                              hint="see the outcome section of kb's data/vocabulary.yaml for examples")
        good = ("more", "fewer") if data == "binary" else ("lower", "higher", "instrument")
        if out["better"] not in good:
            raise ConfigError(f"{where}.better: a {data} outcome's better is one of {', '.join(good)}")
    if out.get("deprecated") and not isinstance(out.get("replaced_by"), list):
        raise ConfigError(f"{where}: a deprecated term needs replaced_by: [terms]")
    if cat == "instrument" and "better" in out and out["better"] not in ("lower", "higher"):
        raise ConfigError(f"{where}.better: an instrument's better is lower or higher")
    return out


_DEFAULT: dict[str, dict[str, Term]] | None = None


def default_categories() -> dict[str, dict[str, Term]]:
    global _DEFAULT
    if _DEFAULT is None:
        text = resources.files("kb").joinpath("data/vocabulary.yaml").read_text(encoding="utf-8")
        _DEFAULT = _parse(yamlio.parse(text).data, "kb/data/vocabulary.yaml")
    return _DEFAULT


def load_vocabulary(extra: object = None, origin: str = "kb.yaml") -> Vocabulary:
    """The default vocabulary, extended by ``extra`` (a kb.yaml ``vocabulary:`` section).

    Extra terms are added; an extra entry for an existing term adds synonyms
    (and may relabel it). Categories that kb does not know are rejected,
    because no record field would use them.
    """
    cats = {c: dict(t) for c, t in default_categories().items()}
    for cat, terms in _parse(extra, origin).items():
        if cat not in cats:
            raise ConfigError(
                f"{origin}: unknown vocabulary category '{cat}'",
                hint="categories: " + ", ".join(sorted(cats)),
            )
        for term, t in terms.items():
            if term in cats[cat]:
                old = cats[cat][term]
                merged = old.synonyms + [s for s in t.synonyms if s not in old.synonyms]
                label = t.label if t.label != term else old.label
                cats[cat][term] = Term(term, label, merged, t.description or old.description,
                                       {**old.meaning, **t.meaning})
            else:
                cats[cat][term] = t
    return Vocabulary(cats)
