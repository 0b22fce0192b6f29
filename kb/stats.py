"""`kb stats`: what the knowledge base holds, by condition, design, outcome, year and status."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .config import KnowledgeBase, LiteratureSearch, searched_up_to
from .records import Study
from .load import split_drafts


@dataclass
class Stats:
    studies: int  # the records counted: the evidence, or with scope "drafts" the drafts
    invalid_files: int
    retracted: list[str]
    tables: dict[str, list[tuple[str, str, int]]] = field(default_factory=dict)
    drafts: int = 0  # draft records in the knowledge base (never counted as evidence)
    scope: str = "evidence"  # evidence | drafts
    listing: list[dict] = field(default_factory=list)  # scope drafts: id, year, title, conditions of each
    searched: LiteratureSearch | None = None  # when the evidence was last searched for new studies

    def as_dict(self) -> dict:
        return {
            "scope": self.scope,
            "studies": self.studies,
            "drafts": self.drafts,
            "invalid_files": self.invalid_files,
            "retracted": self.retracted,
            "searched_up_to": self.searched.as_dict() if self.searched else None,
            **{name: [{"term": t, "label": lbl, "count": n} for t, lbl, n in rows] for name, rows in self.tables.items()},
            **({"records": self.listing} if self.scope == "drafts" else {}),
        }


def year_band(year: int) -> str:
    """Five-year bands ('2010-2014'), as kb stats and the site's year filter show them."""
    start = year - year % 5
    return f"{start}-{start + 4}"


def compute_stats(kb: KnowledgeBase, studies: list[Study], invalid_files: int = 0, drafts: bool = False) -> Stats:
    """Counts of studies per vocabulary term. A study counts once per condition and outcome it has.
    Drafts are not evidence and are left out (:attr:`Study.is_evidence`); ``drafts`` counts and lists
    them instead, for the reviewers who extract them."""
    vocab = kb.vocab
    evidence, draft_records = split_drafts(studies)
    studies = draft_records if drafts else evidence

    def table(category: str | None, counter: Counter, order: list[str] | None = None) -> list[tuple[str, str, int]]:
        # most frequent first; ties in vocabulary order (then by name), never in set or hash order
        rank = {t: i for i, t in enumerate(vocab.terms(category))} if category in vocab.categories else {}
        keys = order if order is not None else sorted(counter, key=lambda k: (-counter[k], rank.get(k, len(rank)), str(k)))
        return [(k, vocab.label(category, k) if category else k, counter[k]) for k in keys if counter[k]]

    cond = Counter(t for s in studies for t in set(s.condition_terms))
    design = Counter(s.design for s in studies)
    outcome = Counter(t for s in studies for t in {o.outcome for o in s.outcomes})
    topic = Counter(t for s in studies for t in set(s.topics))
    route = Counter(s.intervention.route if s.intervention else "not-reported" for s in studies)
    status = Counter(s.status for s in studies)
    years = Counter(year_band(s.year) for s in studies)
    tables = {
        "condition": table("condition", cond),
        "design": table("design", design, vocab.terms("design")),
        "outcome": table("outcome", outcome),
        "topic": table("topic", topic),
        "route": table("route", route),
        "year": table(None, years, sorted(years)),
        "status": table("status", status, vocab.terms("status")),
    }
    return Stats(
        studies=len(studies),
        invalid_files=invalid_files,
        retracted=sorted(s.id for s in studies if s.retracted),
        tables=tables,
        drafts=len(draft_records),
        scope="drafts" if drafts else "evidence",
        listing=[{"id": s.id, "year": s.year, "title": s.title, "conditions": s.condition_terms, "added": s.added.isoformat()}
                 for s in sorted(draft_records, key=lambda s: s.id)] if drafts else [],
        searched=searched_up_to(kb),
    )
