"""Evidence summaries: summaries/<condition>.yaml, what reviewers write about a condition's evidence
(a bottom line, claims checked against the records, certainty overrides with their justification,
practice statements).

Prose never carries a pooled number typed by hand. It cites results through placeholders, written
as YAML flow mappings inside the text, which the build fills from the current analysis and
``kb validate`` checks (kb/bottomline.py):

- ``{analysis: depression/response/24h/inert-placebo, shows: benefit}``: the analysis' estimate, CI,
  trials, participants, absolute effect and certainty. ``shows`` is required: what the sentence
  around it claims, ``benefit``, ``harm`` or ``no-clear-difference``; validate fails when the
  analysis no longer shows it. ``part: estimate | absolute | trials | certainty`` renders one piece.
- ``{study: lii-2023}``: a record, by id, shown as its label with a link. ``{study: ekstrand-2022,
  outcome: dissociation}`` shows that record's own numbers for the outcome (its first entry with
  numbers; ``entry: 2`` the third), as the record holds them: a single trial's counts, never pooled.
- ``{absent: gad}``: a claim that no study exists, from the file's ``absent:`` section, which names
  the searches that found nothing and the filter validate runs over the records.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any, Literal

import yaml

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from .records import Model, Term, Text
from .vocab import Vocabulary

CERTAINTY_LEVELS = ("high", "moderate", "low", "very-low")


class OutcomeSummary(Model):
    """A reviewer's word on one pooled outcome: a certainty that overrides kb's suggestion, with why."""

    certainty: Literal["high", "moderate", "low", "very-low"] | None = None
    justification: Text | None = Field(None, description="why the certainty differs from kb's suggestion")
    note: Text | None = Field(None, description="shown beside the pooled result")

    @model_validator(mode="after")
    def _justified(self):
        if self.certainty and not self.justification:
            raise PydanticCustomError("justification", "a certainty override needs a justification", {})
        return self


SHOWS = ("benefit", "harm", "no-clear-difference")
PARTS = ("full", "estimate", "absolute", "trials", "certainty")
KINDS = ("analysis", "study", "absent")
PLACEHOLDER_RE = re.compile(r"\{\s*(analysis|study|absent)\s*:[^{}]*\}")
_OPENING_RE = re.compile(r"\{\s*([A-Za-z_-]+)\s*:")


class Placeholder(Model):
    """One placeholder in a summary's prose (see the module's docstring)."""

    text: str  # as written, braces included
    start: int
    kind: Literal["analysis", "study", "absent"]
    ref: str  # the analysis id, record id or absence key
    shows: Literal["benefit", "harm", "no-clear-difference"] | None = None
    part: Literal["full", "estimate", "absolute", "trials", "certainty"] = "full"
    outcome: str | None = None  # {study: ID, outcome: TERM}: the record's own numbers
    entry: int = 0


def _problem(code: str, message: str, **ctx: Any) -> PydanticCustomError:
    return PydanticCustomError(code, message, ctx)


def placeholders(text: str) -> list[Placeholder]:
    """The placeholders of a prose field, in order. Raises PydanticCustomError for one that cannot be
    read: an unknown kind, a missing ``shows``, an unknown key or value."""
    out = []
    for m in _OPENING_RE.finditer(text):
        if m.group(1) not in KINDS:
            raise _problem("placeholder", "'{kind}' in '{opening}' is not a kind of placeholder; kb knows {kinds}",
                           opening=m.group(0), kind=m.group(1), kinds=", ".join("{" + k + ": ...}" for k in KINDS),
                           hint="write {analysis: ID, shows: benefit}, {study: ID} or {absent: KEY}")
    for m in PLACEHOLDER_RE.finditer(text):
        raw = m.group(0)
        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError:
            data = None
        if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
            raise _problem("placeholder", "cannot read the placeholder {raw}", raw=raw,
                           hint="write it as a YAML mapping: {analysis: depression/response/24h/inert-placebo, shows: benefit}")
        kind = next(k for k in KINDS if k in data)
        allowed = {"analysis": {"analysis", "shows", "part"}, "study": {"study", "outcome", "entry"}, "absent": {"absent"}}[kind]
        extra = sorted(set(data) - allowed)
        if extra:
            raise _problem("placeholder", "{raw}: '{key}' is not a key of a {kind} placeholder (keys: {keys})",
                           raw=raw, key=extra[0], kind=kind, keys=", ".join(sorted(allowed)))
        ref = data[kind]
        if not isinstance(ref, str) or not ref.strip():
            raise _problem("placeholder", "{raw}: '{kind}' needs an id", raw=raw, kind=kind)
        if kind == "analysis":
            shows = data.get("shows")
            if shows is None:
                raise _problem("placeholder-shows", "{raw} does not say what the sentence claims it shows", raw=raw,
                               hint="add shows: benefit, shows: harm or shows: no-clear-difference; "
                                    "kb validate then fails if the analysis stops showing it")
            if shows not in SHOWS:
                raise _problem("placeholder-shows", "{raw}: shows is '{shows}'; it can be {allowed}", raw=raw,
                               shows=shows, allowed=", ".join(SHOWS))
            part = data.get("part", "full")
            if part not in PARTS:
                raise _problem("placeholder", "{raw}: part is '{part}'; it can be {allowed}", raw=raw, part=part,
                               allowed=", ".join(PARTS))
            out.append(Placeholder(text=raw, start=m.start(), kind=kind, ref=ref.strip(), shows=shows, part=part))
        elif kind == "study":
            outcome, entry = data.get("outcome"), data.get("entry", 0)
            if outcome is not None and (not isinstance(outcome, str) or not outcome.strip()):
                raise _problem("placeholder", "{raw}: outcome needs an outcome term", raw=raw)
            if not isinstance(entry, int) or isinstance(entry, bool) or entry < 0 or (entry and outcome is None):
                raise _problem("placeholder", "{raw}: entry is a number from 0, with outcome", raw=raw)
            out.append(Placeholder(text=raw, start=m.start(), kind=kind, ref=ref.strip(),
                                   outcome=outcome.strip() if outcome else None, entry=entry))
        else:
            out.append(Placeholder(text=raw, start=m.start(), kind=kind, ref=ref.strip()))
    return out


def _checked_prose(value: str | None) -> str | None:
    if value is not None:
        placeholders(value)
    return value


class Search(Model):
    """One search that was run: where, with what, when, and what it found."""

    where: Text = Field(description="the database or site searched, e.g. PubMed")
    query: Text = Field(description="the query as run")
    date: _dt.date = Field(description="the day it was run")
    found: Text = Field(description="what it found, e.g. 'no randomised trial of IV ketamine in GAD'")
    url: Text | None = None


class AbsenceFilter(Model):
    """The records that would refute an absence claim: an evidence record that matches every field given
    (each a list of alternatives). kb validate fails when one appears."""

    conditions: list[Term("condition")] = Field(default_factory=list)
    subtype_words: list[Text] = Field(default_factory=list, description="words, any of which in a condition's subtype (case-insensitive)")
    designs: list[Term("design")] = Field(default_factory=list)
    routes: list[Term("route")] = Field(default_factory=list)
    topics: list[Term("topic")] = Field(default_factory=list, description="e.g. maintenance: a record with any of them")


class Absence(Model):
    """A claim that no study of something exists, with the searches that found nothing."""

    claim: Text = Field(description="the claim as the page shows it, e.g. 'no randomised trial has tested IV ketamine in generalised anxiety disorder'")
    match: AbsenceFilter
    searched: list[Search] = Field(min_length=1)


class Claim(Model):
    """A claim clinicians meet in the popular literature, and what the records say of it."""

    claim: Text
    verdict: Literal["supported", "partly supported", "not supported", "no evidence"]
    answer: Text = Field(description="the answer, with placeholders for every number")

    @model_validator(mode="after")
    def _answer(self):
        _checked_prose(self.answer)
        return self


class ConditionSummary(Model):
    """summaries/<condition>.yaml: what reviewers write about a condition's evidence."""

    condition: Term("condition")
    bottom_line: Text | None = Field(None, description="two or three sentences for clinicians (the home page's card shows them); pooled numbers only through placeholders")
    details: list[Text] = Field(default_factory=list, description="further paragraphs of the bottom line on the condition's page: duration, dose, harms, certainty, what is missing")
    claims: list[Claim] = Field(default_factory=list, description="claims from the popular literature, checked against the records")
    absent: dict[Text, Absence] = Field(default_factory=dict, description="key -> a claim that no study exists, cited as {absent: key}")
    outcomes: dict[Term("outcome"), OutcomeSummary] = Field(default_factory=dict)
    practice: list[Text] = Field(default_factory=list, description="practice and ethics statements, with sources")
    updated: _dt.date | None = None

    @model_validator(mode="after")
    def _prose(self):
        _checked_prose(self.bottom_line)
        for text in self.details:
            _checked_prose(text)
        return self

    def prose(self) -> list[tuple[str, str]]:
        """(field, text) of every prose field that may hold placeholders, with its path for messages."""
        out = [("bottom_line", self.bottom_line)] if self.bottom_line else []
        out += [(f"details.{i}", text) for i, text in enumerate(self.details)]
        out += [(f"claims.{i}.answer", c.answer) for i, c in enumerate(self.claims)]
        return out


def validate_summary(data: dict, vocab: Vocabulary | None = None) -> ConditionSummary:
    return ConditionSummary.model_validate(data, context={"vocab": vocab} if vocab else None)
