"""Evidence summaries: summaries/<condition>.yaml, what reviewers write about a condition's evidence
(a bottom line, certainty overrides with their justification, practice statements)."""

from __future__ import annotations

import datetime as _dt
from typing import Literal

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


class ConditionSummary(Model):
    """summaries/<condition>.yaml: what reviewers write about a condition's evidence."""

    condition: Term("condition")
    bottom_line: Text | None = Field(None, description="one or two sentences for clinicians")
    outcomes: dict[Term("outcome"), OutcomeSummary] = Field(default_factory=dict)
    practice: list[Text] = Field(default_factory=list, description="practice and ethics statements, with sources")
    updated: _dt.date | None = None


def validate_summary(data: dict, vocab: Vocabulary | None = None) -> ConditionSummary:
    return ConditionSummary.model_validate(data, context={"vocab": vocab} if vocab else None)
