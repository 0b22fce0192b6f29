"""Bottom lines that cannot go stale: the placeholders of summaries/<condition>.yaml, filled from the
current analyses and checked against them.

A reviewer writes the prose; every pooled number in it comes from a placeholder (kb/summaries.py
reads them), which :func:`render` fills at build time from the analysis it names, and
:func:`check` holds against the records at ``kb validate`` time:

1. ``{analysis: ID, shows: S}``: ID must name an analysis that pools something now, and the analysis
   must show S. What an analysis shows follows :mod:`kb.wording`'s rules: a CI that includes no
   effect shows ``no-clear-difference``; otherwise the direction and the outcome's declared good
   direction say ``benefit`` or ``harm``. A result whose good direction is undeclared shows neither,
   and no claim of benefit or harm can cite it.
2. ``{study: ID}``: ID must be a record of the knowledge base.
3. ``{absent: KEY}``: KEY must be in the file's ``absent:`` section, and no evidence record (not a
   draft, not retracted) may match its filter: the day one does, the claim that none exists fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from markupsafe import Markup, escape

from . import wording as W
from .effects import MEASURE_LABELS
from .summaries import ConditionSummary, placeholders  # noqa: F401  (kb.validate reads placeholders here)

SHOWS_TEXT = {"benefit": "a benefit of ketamine", "harm": "a harm of ketamine",
              "no-clear-difference": "no clear difference (the CI includes no effect)",
              "difference": "a difference whose good direction the vocabulary does not declare"}


@dataclass
class Finding:
    """A placeholder that no longer holds: where it is, what is wrong, and what to do."""

    field: str
    code: str
    message: str
    hint: str
    severity: str = "error"
    text: str | None = None  # the placeholder as written, to find its line


def shows(result: dict) -> str:
    """What a pooled result shows: 'benefit', 'harm', 'no-clear-difference', or 'difference' when the
    outcome does not declare its good direction."""
    way = W.direction(result["ci_low"], result["ci_high"])
    if way is None:
        return "no-clear-difference"
    good = W.is_benefit(result["measure"], way, result.get("better"))
    return "difference" if good is None else "benefit" if good else "harm"


def _close(ids: Iterable[str], wanted: str, n: int = 3) -> list[str]:
    import difflib

    return difflib.get_close_matches(wanted, list(ids), n=n, cutoff=0.6)


def check(summary: ConditionSummary, analyses: dict[str, dict], records: dict) -> list[Finding]:
    """Every placeholder of ``summary`` that does not hold: ``analyses`` maps analysis ids to analyses
    (kb.synthesis.analyse_studies, keyed by analysis_id); ``records`` maps record ids to records."""
    found: list[Finding] = []
    for field, text in summary.prose():
        for p in placeholders(text):
            if p.kind == "study":
                if p.ref not in records:
                    near = _close(records, p.ref)
                    found.append(Finding(field, "summary-study", f"{p.text} cites a record that does not exist",
                                         f"did you mean {', '.join(near)}?" if near else "cite a record id from studies/", text=p.text))
                elif p.outcome and study_entry(records[p.ref], p.outcome, p.entry) is None:
                    have = sorted({o.outcome for o in records[p.ref].outcomes if o.data is not None})
                    found.append(Finding(field, "summary-study", f"{p.text}: {p.ref} has no entry {p.entry} with numbers "
                                         f"for {p.outcome}", "its outcomes with numbers: " + (", ".join(have) or "none"),
                                         text=p.text))
            elif p.kind == "absent":
                if p.ref not in summary.absent:
                    found.append(Finding(field, "summary-absent", f"{p.text}: no '{p.ref}' in this file's absent: section",
                                         "add it under absent:, with the claim, the filter and the searches that found nothing", text=p.text))
            else:
                found.extend(_check_analysis(field, p, analyses))
    for key, absence in summary.absent.items():
        refuting = sorted(s.id for s in records.values() if matches(absence.match, s))
        if refuting:
            found.append(Finding(f"absent.{key}", "summary-absent-refuted",
                                 f"the claim '{absence.claim}' no longer holds: the knowledge base now holds "
                                 + ", ".join(refuting[:5]) + (" ..." if len(refuting) > 5 else ""),
                                 "rewrite the prose that cites {absent: " + key + "} and remove the claim"))
    return found


def _check_analysis(field: str, p, analyses: dict[str, dict]) -> list[Finding]:
    a = analyses.get(p.ref)
    if a is None:
        near = _close(analyses, p.ref)
        return [Finding(field, "summary-analysis", f"{p.text} cites an analysis that does not exist",
                        f"did you mean {', '.join(near)}?" if near else
                        "analysis ids are condition/outcome/window/comparator-class; kb meta --condition C --outcome O lists them",
                        text=p.text)]
    if not a["ok"]:
        return [Finding(field, "summary-analysis", f"{p.text} cites an analysis that pools nothing now: {a['message']}",
                        "cite another analysis, or rewrite the sentence", text=p.text)]
    now = shows(a["result"])
    if now != p.shows:
        r = a["result"]
        return [Finding(field, "summary-direction",
                        f"{p.text}: the prose claims {SHOWS_TEXT[p.shows]}, but the analysis now shows {SHOWS_TEXT[now]} "
                        f"({full_text(r)})",
                        "rewrite the sentence to say what the analysis shows, and set shows: accordingly", text=p.text)]
    return []


def matches(f, s) -> bool:
    """Whether record ``s`` is evidence that matches absence filter ``f`` (every field given)."""
    if not s.is_evidence or s.retracted:
        return False
    if f.conditions and not set(f.conditions) & set(s.condition_terms):
        return False
    if f.subtype_words:
        words = [w.lower() for w in f.subtype_words]
        subtypes = " ".join((c.subtype or "").lower() for c in s.conditions
                            if not f.conditions or c.term in f.conditions)
        if not any(w in subtypes for w in words):
            return False
    if f.designs and s.design not in f.designs:
        return False
    if f.routes and (s.intervention is None or s.intervention.route not in f.routes):
        return False
    if f.topics and not set(f.topics) & set(s.topics):
        return False
    return True


REVIEW_KINDS = {"meta-analysis": "a published meta-analysis's estimate", "systematic-review": "a published review's estimate",
                "guideline": "a guideline's statement", "consensus-statement": "a consensus statement's"}


def source_kind(design: str | None) -> str:
    """What a record's own numbers are, said after them: 'one trial', or a published review's estimate."""
    return REVIEW_KINDS.get(design or "", "one study" if design in ("cohort", "case-series", "open-label") else "one trial")


def study_entry(s, outcome: str, entry: int = 0):
    """The record's ``entry``-th outcome entry for ``outcome`` that holds numbers, or None."""
    found = [o for o in s.outcomes if o.outcome == outcome and o.data is not None]
    return found[entry] if entry < len(found) else None


# -- the words ------------------------------------------------------------------------------

def _num(x: float) -> str:
    return f"{x:g}"


def entry_text(o) -> str:
    """A record's own numbers for one outcome entry, as the record holds them: '55/91 with ketamine vs
    14/90 with ECT, over the treatment course'."""
    d = o.data
    if d.type == "binary":
        text = " vs ".join(f"{a.events}/{a.total} with {a.label}" for a in d.arms)
    elif d.type == "continuous":
        text = " vs ".join(f"mean {_num(a.mean)} (SD {_num(a.sd)}, n = {a.n}) with {a.label}" for a in d.arms)
        if o.instrument:
            text = f"{o.instrument} {text}"
    else:
        ci = (f", {int(round(d.ci_level * 100))}% CI {_num(d.ci_low)} to {_num(d.ci_high)}"
              if d.ci_low is not None and d.ci_high is not None else "")
        text = f"{MEASURE_LABELS.get(d.measure, d.measure)} {_num(d.value)}{ci}"
    return f"{text}, {o.timepoint}" if o.timepoint else text

def estimate_text(r: dict) -> str:
    m, nat = r["measure"], r["natural"]
    pct = int(round(r["level"] * 100))
    return (f"{MEASURE_LABELS.get(m, m)} {W.fmt(nat['estimate'], m)}, {pct}% CI {W.fmt(nat['ci_low'], m)} "
            f"to {W.fmt(nat['ci_high'], m)}")


def trials_text(r: dict) -> str:
    k, n = r["k"], r["participants"]
    people = f", {n:,} participants" if n else ""
    return f"one trial{people}" if k == 1 else f"{k} trials{people}"


def absolute_text(r: dict) -> str | None:
    """The absolute effect without nested brackets: '183 more per 1000, 95% CI 9 more to 372 more'."""
    a = r.get("absolute")
    if not a:
        return None
    pct = int(round(r["level"] * 100))
    if a.get("per_1000"):
        p = a["per_1000"]
        return (f"{W.per_1000_text(p['difference'])} per 1000, {pct}% CI {W.per_1000_text(p['difference_ci_low'])} "
                f"to {W.per_1000_text(p['difference_ci_high'])}")
    if a.get("points") is not None and a.get("instrument"):
        return (f"{a['points']:+.1f} points on the {a['instrument']}, {pct}% CI {a['points_ci_low']:+.1f} "
                f"to {a['points_ci_high']:+.1f}")
    return None


def certainty_text(r: dict) -> str:
    return r["certainty"]["level"].replace("-", " ")


def full_text(r: dict) -> str:
    parts = [estimate_text(r), trials_text(r)]
    absolute = absolute_text(r)
    if absolute:
        parts.append(absolute)
    parts.append(f"{certainty_text(r)} certainty")
    return "; ".join(parts)


PART_TEXT = {"full": full_text, "estimate": estimate_text, "absolute": lambda r: absolute_text(r) or estimate_text(r),
             "trials": trials_text, "certainty": certainty_text}


def render(text: str, analyses: dict[str, dict], label_of: Callable[[str], str | None],
           study_href: Callable[[str], str], analysis_href: Callable[[str], str],
           entry_of: Callable[[str, str, int], str | None] = lambda rid, outcome, entry: None,
           kind_of: Callable[[str], str] = lambda rid: "one trial") -> Markup:
    """The prose as HTML: text escaped, each placeholder filled from the current analyses (linked to its
    Summary of Findings entry) or the records (linked to the study page). A placeholder that does not
    resolve, which kb validate reports, renders as a visible gap, never as a stale number."""
    out, at = [], 0
    for p in placeholders(text):
        out.append(escape(text[at:p.start]))
        at = p.start + len(p.text)
        if p.kind == "study":
            label = label_of(p.ref)
            numbers = entry_of(p.ref, p.outcome, p.entry) if p.outcome and label else None
            if p.outcome and numbers is None:
                out.append(Markup('<span class="gap">[no {} numbers in {}: run kb validate]</span>').format(p.outcome, p.ref))
            elif numbers:
                out.append(Markup('{} (<a href="{}">{}</a>, {})').format(numbers, study_href(p.ref), label, kind_of(p.ref)))
            else:
                out.append(Markup('<a href="{}">{}</a>').format(study_href(p.ref), label) if label
                           else Markup('<span class="gap">[unknown study {}]</span>').format(p.ref))
        elif p.kind == "absent":
            out.append(Markup('<a href="#absent-{}">[searches]</a>').format(p.ref))
        else:
            a = analyses.get(p.ref)
            if a is None or not a["ok"] or shows(a["result"]) != p.shows:
                out.append(Markup('<span class="gap">[result {} no longer shows what this sentence says: run kb validate]</span>')
                           .format(p.ref))
            else:
                out.append(Markup('<a href="{}">{}</a>').format(analysis_href(p.ref), PART_TEXT[p.part](a["result"])))
    out.append(escape(text[at:]))
    return Markup("").join(out)


# -- the whole knowledge base's summaries, as text ---------------------------------------------

def rendered_summaries(kb, condition: str | None = None) -> list[dict]:
    """Every condition's summary (or one), its prose filled from the current analyses as plain text:
    [{condition, label, bottom_line, details, claims: [{claim, verdict, answer}], absent: [...],
    problems: [messages]}], in vocabulary order. Placeholders that do not hold are listed under
    ``problems`` (kb validate fails on them) and render as visible gaps."""
    from .errors import NotFound
    from .load import load_studies, load_summaries
    from . import synthesis

    summaries = load_summaries(kb)
    if condition is not None:
        term = kb.vocab.canonical("condition", condition) or condition
        if term not in summaries:
            raise NotFound(f"no summary for condition '{condition}'",
                           hint="summaries/ holds: " + (", ".join(sorted(summaries)) or "nothing yet"))
        summaries = {term: summaries[term]}
    studies = load_studies(kb).studies
    records = {s.id: s for s in studies}
    computed = synthesis.analyse_studies(studies, kb.protocol, kb.vocab, summaries)
    analyses = {synthesis.analysis_id(k): a for k, a in computed.items()}

    def label_of(rid: str) -> str | None:
        return records[rid].label if rid in records else None

    def entry_of(rid: str, outcome: str, entry: int) -> str | None:
        found = study_entry(records[rid], outcome, entry) if rid in records else None
        return entry_text(found) if found is not None else None

    def text(prose: str) -> str:
        html = render(prose, analyses, label_of, lambda i: "", lambda i: "", entry_of,
                      lambda rid: source_kind(records[rid].design if rid in records else None))
        return html.striptags()

    order = {t: i for i, t in enumerate(kb.vocab.terms("condition"))}
    out = []
    for cond, summary in sorted(summaries.items(), key=lambda cs: order.get(cs[0], len(order))):
        out.append({
            "condition": cond, "label": kb.vocab.label("condition", cond),
            "updated": summary.updated.isoformat() if summary.updated else None,
            "bottom_line": text(summary.bottom_line) if summary.bottom_line else None,
            "details": [text(t) for t in summary.details],
            "claims": [{"claim": c.claim, "verdict": c.verdict, "answer": text(c.answer)} for c in summary.claims],
            "absent": [{"key": k, "claim": a.claim, "searched": [q.model_dump(mode="json") for q in a.searched]}
                       for k, a in summary.absent.items()],
            "problems": [f.message for f in check(summary, analyses, records)],
        })
    return out
