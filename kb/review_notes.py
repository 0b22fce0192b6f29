"""Notes on a published review: comparisons/<review-id>.yaml, what reviewers write about how kb's
results stand beside one review's (records stage; :mod:`kb.comparison` reads them).

A review record (design meta-analysis or systematic-review) holds the review's reported results as
`data: {type: effect}` entries; each trial it included links to it with `related: pooled-in`. What
neither says is written here: whether kb reproduces the review's analyses (restricting its pool to
the review's trials, with the review's measure and model) or only sets its results beside kb's, and
why; and, for each reproduced analysis, the trials that may belong to it, with the trials kb does not
hold and why (an intranasal trial, a trial no primary page confirms). Every sentence here comes
from a document a reviewer can check (`source`), never from memory.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from .records import ID_RE, Model, Term, Text
from .vocab import Vocabulary

MEMBERSHIP = {
    "candidate": "included in the review, and its comparator and outcome fit this analysis; whether the review "
                 "put it in this analysis is not established (its forest plot was not read)",
    "not-listed": "included in the review with a fitting comparator, but its characteristics table lists no such "
                  "outcome",
    "unestablished": "its characteristics table in the review was not found: whether the review included it is "
                     "not established",
}
METHODS = ("DL", "REML", "PM", "FE", "MH")


class Candidate(Model):
    """One trial that may belong to a review's analysis."""

    trial: Text = Field(description='the review\'s name for the trial, e.g. "Zarate 2006a"')
    id: Text | None = Field(None, description="kb's record of the trial; empty when kb does not hold it")
    membership: Literal["candidate", "not-listed", "unestablished"]
    basis: Text = Field(description="what the review's own pages say of the trial (the table read, or that it was not found)")
    reason: Text | None = Field(None, description="why kb holds no record of the trial (required when id is empty)")
    note: Text | None = Field(None, description="what a document (e.g. docs/protocol.md) says of kb's numbers for this "
                                                "trial, when its record does not say it")

    @model_validator(mode="after")
    def _explained(self):
        if self.id is not None and not ID_RE.match(self.id):
            raise PydanticCustomError("identifier", "'{id}' is not a record id", {"id": self.id})
        if self.id is None and not self.reason:
            raise PydanticCustomError(
                "reason", "a trial kb does not hold needs a reason (e.g. intranasal, not intravenous)", {})
        return self


class AnalysisNotes(Model):
    """The trials that may belong to one of the review's analyses: the review record's effect entry of
    this outcome, comparator and time point (in days)."""

    outcome: Term("outcome")
    comparator: Term("comparator")
    timepoint_days: float | None = Field(None, description="the review entry's timepoint_days")
    candidates: list[Candidate] = Field(default_factory=list)


class ReviewNotes(Model):
    """comparisons/<review-id>.yaml."""

    review: Text = Field(description="the review's record id (the file's name)")
    reproduce: bool = Field(description="true: kb pools the review's trials as the review did; false: its results "
                                        "are only set beside kb's")
    reason: Text = Field(description="why kb reproduces the review, or why it cannot (shown on the comparison page)")
    method: Literal["DL", "REML", "PM", "FE", "MH"] | None = Field(
        None, description="the pooling method kb uses to reproduce the review (reproduce: true)")
    smd_variant: Literal["metafor", "revman5"] = Field("metafor", description="how kb computes Hedges' g")
    method_note: Text | None = Field(None, description="how the review's model differs from kb's, if it does")
    source: Text = Field(description="where the candidate lists and reasons were read, e.g. docs/extraction/dean-2021.md")
    analyses: list[AnalysisNotes] = Field(default_factory=list)

    @model_validator(mode="after")
    def _method(self):
        if self.reproduce and self.method is None:
            raise PydanticCustomError("method", "a reproduced review needs the pooling `method` kb uses (e.g. DL)", {})
        return self


def validate_review_notes(data: dict, vocab: Vocabulary | None = None) -> ReviewNotes:
    return ReviewNotes.model_validate(data, context={"vocab": vocab} if vocab else None)
