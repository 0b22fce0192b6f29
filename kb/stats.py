"""`kb stats`: what the knowledge base holds, by condition, design, outcome, year and status."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .config import KnowledgeBase
from .records import Study


@dataclass
class Stats:
    studies: int
    invalid_files: int
    retracted: list[str]
    tables: dict[str, list[tuple[str, str, int]]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "studies": self.studies,
            "invalid_files": self.invalid_files,
            "retracted": self.retracted,
            **{name: [{"term": t, "label": lbl, "count": n} for t, lbl, n in rows] for name, rows in self.tables.items()},
        }


def year_band(year: int) -> str:
    """Five-year bands ('2010-2014'), as kb stats and the site's year filter show them."""
    start = year - year % 5
    return f"{start}-{start + 4}"


def compute_stats(kb: KnowledgeBase, studies: list[Study], invalid_files: int = 0) -> Stats:
    """Counts of studies per vocabulary term. A study counts once per condition and outcome it has."""
    vocab = kb.vocab

    def table(category: str | None, counter: Counter, order: list[str] | None = None) -> list[tuple[str, str, int]]:
        keys = order if order is not None else [k for k, _ in counter.most_common()]
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
    )
