"""Selection: which outcome entries of which records answer a question, and why every other entry
is left out (the reasons a reviewer and a clinician read). The request, the rows it selects and the
entries it leaves out are defined here; :mod:`kb.synthesis` pools the rows.

The selection rules, in order, are listed in :mod:`kb.synthesis`'s docstring and docs/meta.md.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from . import effects as E
from . import metaanalysis as M
from .errors import BadRequest, KbError, NotFound
from .protocol import COMBINED, DEFAULT as DEFAULT_PROTOCOL, Protocol
from .sources import outcome_sources

CONTROLS = DEFAULT_PROTOCOL.controls()  # the default comparators: every comparator class of the protocol
REVIEW_DESIGNS = frozenset({"meta-analysis", "systematic-review", "guideline", "consensus-statement"})
PUBLISHED_REVIEWS = frozenset({"meta-analysis", "systematic-review"})  # set beside kb's results (kb.comparison)
REVIEW_REASON = ("a published review: shown beside kb's results on the comparison page, never pooled with its "
                 "own trials")
GUIDELINE_REASON = "a {design}: a statement of practice, never pooled"
SUBGROUP_FIELDS = ("condition", "comparator", "route", "design", "drug", "blinding", "counts", "instrument")


class SynthesisError(KbError):
    """The question cannot be answered from these data (exit 1)."""


@dataclass
class MetaRequest:
    outcome: str | None = None
    condition: str | None = None
    measure: str | None = None
    method: str = "REML"
    knha: bool = False
    subgroup: str | None = None
    comparators: tuple[str, ...] = ()
    timepoint: str | None = None  # days: "1", "1..7", ">=7"
    crossover: bool = True
    derived: bool = True
    non_iv: bool = False
    esketamine: bool = False
    any_condition: bool = False  # also studies where the condition is secondary
    smd_variant: str = "metafor"
    level: float = 0.95
    window: str | None = None  # a time window's id (protocol.windows); None: every window, each its own analysis
    comparator_class: str | None = None  # a comparator class's id; None: every class, each its own analysis
    combine_placebos: bool = False  # pool inert and active placebo together (one class, "any-placebo")
    assumed_risk: float | None = None  # the comparator risk for absolute effects (default: median control risk)
    sensitivity: bool = True  # refit without high-risk, derived or weak-source, and crossover results
    protocol: Protocol = DEFAULT_PROTOCOL
    # the condition the outcome itself measures (vocabulary), set from the request's outcome: its studies
    # feed that condition's analysis whatever their main condition
    outcome_condition: str | None = None
    ids: tuple[str, ...] = ()  # --ids: only these records (each one listed is accounted for in every analysis)
    # review id -> the trials kb records as included in it (related: pooled-in), for the reviews' left-out reason
    included: dict = field(default_factory=dict)


@dataclass
class Row:
    """One study's data for the analysis."""

    id: str
    label: str
    kind: str  # binary | continuous | effect
    values: dict[str, float]
    year: int | None = None
    design: str | None = None
    fields: dict[str, str | None] = field(default_factory=dict)  # for subgroups
    derived: bool = False
    rob: str | None = None  # the overall judgement (the assessment's, else kb's from its domains)
    rob_detail: dict | None = None  # the whole assessment, plain data (rob_assessment): tool, domains, who, where from
    instrument: str | None = None
    measure: str | None = None  # for reported effects
    timepoint: str | None = None
    participants: int | None = None
    events: int | None = None
    yi: float | None = None
    vi: float | None = None
    window: str | None = None  # the time window's id
    cls: str | None = None  # the comparator class's id
    definition: str | None = None  # what one event (or score) is, as the record states it
    crossover: bool = False  # a crossover trial's data as published (not first-period data)
    weak_source: bool = False  # the numbers rest only on a press release, commercial site or copy
    indirect: list[str] = field(default_factory=list)  # why the study answers a different question


@dataclass
class Excluded:
    id: str
    reason: str
    outcome: str | None = None
    timepoint: str | None = None
    window: str | None = None  # set when the reason concerns one time window's analysis only
    cls: str | None = None  # set when it concerns one comparator class's analysis only
    label: str | None = None  # the study's label ("Feder 2014")
    days: float | None = None  # the entry's timepoint_days, when it has one

    def as_dict(self) -> dict:
        # what dataclasses.asdict gives for these flat fields, ~10x faster (it deep-copies every value),
        # which matters when a site build lists hundreds of thousands of left-out rows
        return {"id": self.id, "reason": self.reason, "outcome": self.outcome, "timepoint": self.timepoint,
                "window": self.window, "cls": self.cls, "label": self.label, "days": self.days}

    def concerns(self, window: str | None, cls: str | None) -> bool:
        """Whether this entry belongs in the left-out list of the (window, class) analysis."""
        return (self.window is None or self.window == window) and (self.cls is None or self.cls == cls)


# -- selection ----------------------------------------------------------------------


def check_request(req: MetaRequest, vocab) -> None:
    """Resolve the request's terms against the vocabulary and refuse what cannot be answered (BadRequest)."""
    if req.method.upper() not in M.METHODS:
        raise BadRequest(f"unknown method '{req.method}'", hint="methods: " + ", ".join(M.METHODS))
    req.method = req.method.upper()
    if req.measure is not None:
        req.measure = req.measure.lower()
        if req.measure not in E.BINARY_MEASURES + E.CONTINUOUS_MEASURES + ("hr",):
            raise BadRequest(f"unknown measure '{req.measure}'", hint="measures: rr, or, rd, smd, md, hr")
    if req.method == "MH" and req.measure not in (None, *E.BINARY_MEASURES):
        raise BadRequest("Mantel-Haenszel pools 2x2 tables: use --measure rr, or or rd")
    if req.knha and req.method in ("FE", "MH"):
        raise BadRequest("the Knapp-Hartung adjustment is for random-effects models (REML, DL, PM)")
    if req.smd_variant not in E.SMD_VARIANTS:
        raise BadRequest(f"unknown SMD variant '{req.smd_variant}'", hint="variants: " + ", ".join(E.SMD_VARIANTS))
    if req.subgroup and req.subgroup not in SUBGROUP_FIELDS:
        raise BadRequest(f"cannot make subgroups by '{req.subgroup}'", hint="fields: " + ", ".join(SUBGROUP_FIELDS))
    if not 0 < req.level < 1:
        raise BadRequest("the confidence level must lie between 0 and 1 (e.g. 0.95)")
    if vocab is None:
        return
    for category, attr in (("outcome", "outcome"), ("condition", "condition")):
        value = getattr(req, attr)
        if value is None:
            continue
        term = vocab.canonical(category, value)
        if term is None:
            close = vocab.suggest(category, value)
            raise BadRequest(f"unknown {category} '{value}'" + (f"; did you mean '{close}'?" if close else ""),
                             hint=f"{category}s: " + ", ".join(vocab.terms(category)))
        setattr(req, attr, term)
    if req.outcome:
        req.outcome_condition = vocab.meaning("outcome", req.outcome).get("condition")
    if req.outcome and vocab.replaced_by("outcome", req.outcome):
        new = vocab.replaced_by("outcome", req.outcome)
        raise BadRequest(f"'{req.outcome}' is a deprecated outcome: it did not say whether its events are good or bad",
                         hint="pool one of the outcomes that replace it: " + ", ".join(new))
    proto = req.protocol
    # window and class ids, like every choice, are case-insensitive: 24H is 24h, INERT-PLACEBO inert-placebo
    if req.window is not None and proto.window(req.window) is None:
        req.window = next((w.id for w in proto.windows if w.id.lower() == req.window.lower()), req.window)
    if req.comparator_class is not None and proto.comparator_class(req.comparator_class) is None:
        ids = [c.id for c in (*proto.classes, COMBINED)]
        found = next((i for i in ids if i.lower() == req.comparator_class.lower()), None)
        req.comparator_class = found or vocab.canonical("comparator", req.comparator_class) or req.comparator_class
    if req.window is not None and proto.window(req.window) is None:
        raise BadRequest(f"unknown time window '{req.window}'", hint="windows: " + ", ".join(
            f"{w.id} ({w.label})" for w in proto.windows))
    if req.comparator_class is not None and proto.comparator_class(req.comparator_class) is None \
            and vocab.canonical("comparator", req.comparator_class) is None:
        raise BadRequest(f"unknown comparator class '{req.comparator_class}'", hint="classes: " + ", ".join(
            c.id for c in (*proto.classes, COMBINED)) + ", or a comparator named with --comparator")
    if req.comparator_class == COMBINED.id:
        req.combine_placebos = True
    resolved = []
    for c in req.comparators:
        term = vocab.canonical("comparator", c)
        if term is None:
            raise BadRequest(f"unknown comparator '{c}'", hint="comparators: " + ", ".join(vocab.terms("comparator")))
        resolved.append(term)
    req.comparators = tuple(resolved)
    if req.timepoint:
        days_window(req.timepoint)


_NUM = r"(\d+(?:\.\d+)?)"


def days_window(text: str) -> tuple[float | None, float | None]:
    """'1' -> (1, 1); '1..7', '..3', '7..'; '>=7', '<=1' (days, fractions allowed)."""
    import re

    v = text.strip()
    if (m := re.fullmatch(_NUM, v)):
        return float(m.group(1)), float(m.group(1))
    if (m := re.fullmatch(_NUM + r"?\.\." + _NUM + "?", v)) and (m.group(1) or m.group(2)):
        lo, hi = (float(g) if g else None for g in m.groups())
        if lo is not None and hi is not None and lo > hi:
            raise BadRequest(f"empty --timepoint '{text}': {lo:g} is above {hi:g}")
        return lo, hi
    if (m := re.fullmatch(r"(>=|<=)" + _NUM, v)):
        x = float(m.group(2))
        return (x, None) if m.group(1) == ">=" else (None, x)
    raise BadRequest(f"bad --timepoint '{text}'", hint="days: 1, 0.5..7, ..3, >=7 or <=1")


def _in_window(days: float | None, window: str | None) -> bool:
    if not window:
        return True
    if days is None:
        return False
    lo, hi = days_window(window)
    return (lo is None or days >= lo) and (hi is None or days <= hi)


def select(studies: Iterable, req: MetaRequest, vocab) -> tuple[list[Row], list[Excluded]]:
    """The outcome entries that answer ``req``: per study, one per time window and comparator class;
    every entry left out, with why."""
    if req.outcome is None:
        raise BadRequest("name an outcome with --outcome", hint="outcomes with data: "
                         + ", ".join(outcomes_with_data(studies)))
    rows: list[Row] = []
    excluded: list[Excluded] = []
    seen_outcome = False
    if req.ids:
        studies = only_ids(studies, req.ids)
    for s in sorted(studies, key=lambda s: s.id):
        seen, found, out = select_one(s, req)
        seen_outcome |= seen
        excluded += out
        rows += found
    if req.ids:  # every listed record is accounted for, even one that reports nothing to pool
        return rows, excluded + listed_without_entry(req.ids, rows, excluded, req, {s.id: s.label for s in studies})
    if not seen_outcome:
        have = outcomes_with_data(studies, req.condition)
        where = f" for {req.condition}" if req.condition else ""
        raise NotFound(f"no study reports {req.outcome}{where}",
                       hint=("outcomes with data" + where + ": " + ", ".join(have)) if have else
                       "no outcome has pooled data here yet")
    return rows, excluded


def only_ids(studies: Iterable, ids: tuple[str, ...]) -> list:
    """The records ``ids`` names (--ids), or BadRequest naming every id no record has."""
    import difflib

    studies = list(studies)
    known = {s.id for s in studies}
    unknown = [i for i in dict.fromkeys(ids) if i not in known]
    if unknown:
        close = {i: difflib.get_close_matches(i, sorted(known), n=1, cutoff=0.7) for i in unknown}
        guesses = [f"{c[0]} (for {i})" for i, c in close.items() if c]
        raise BadRequest(f"--ids names no record: {', '.join(unknown)}",
                         hint=("did you mean " + ", ".join(guesses) + "?") if guesses
                         else "`kb stats` or `ls studies/` lists the ids; separate ids with commas or repeat --ids")
    wanted = set(ids)
    return [s for s in studies if s.id in wanted]


def listed_without_entry(ids: tuple[str, ...], rows: list[Row], excluded: list[Excluded], req: MetaRequest,
                         labels: dict[str, str] | None = None) -> list[Excluded]:
    """--ids: a left-out entry for each listed record that gave neither numbers nor a left-out entry
    for this outcome (it reports no such outcome, or not for this condition)."""
    seen = {r.id for r in rows} | {e.id for e in excluded}
    where = f" for {req.condition}" if req.condition else ""
    return [Excluded(i, f"listed with --ids, but the record reports no {req.outcome}{where}", req.outcome,
                     label=(labels or {}).get(i)) for i in dict.fromkeys(ids) if i not in seen]


def listed_in_other_cells(ids: tuple[str, ...], rows: list[Row], excluded: list[Excluded], window: str | None,
                          cls: str | None, labels: dict[str, str] | None = None,
                          describe=None) -> list[Excluded]:
    """--ids: a left-out entry, in the analysis of (``window``, ``cls``), for each listed record with no
    numbers and no left-out entry there because its numbers are in other time windows or classes.
    ``describe(window, cls)`` names a cell ("after 7 days, inert placebo (saline)")."""
    here = {r.id for r in rows if (r.window, r.cls) == (window, cls)}
    said = {e.id for e in excluded if e.concerns(window, cls)}
    out = []
    for i in dict.fromkeys(ids):
        if i in here or i in said:
            continue
        cells = list(dict.fromkeys((r.window, r.cls) for r in rows if r.id == i))
        if not cells:
            continue
        names = "; ".join(describe(w, c) if describe else f"{w}, {c}" for w, c in cells)
        label = (labels or {}).get(i) or next((r.label for r in rows if r.id == i), None)
        out.append(Excluded(i, f"listed with --ids: no numbers in this time window and comparator class (its numbers "
                               f"are in: {names})", None, None, window, cls, label))
    return out


def included_map(links: Iterable[tuple[str, str, str]]) -> dict[str, tuple[str, ...]]:
    """review id -> the trials kb records as included in it, from (trial id, relation, review id) links."""
    out: dict[str, list[str]] = {}
    for trial, relation, review in links:
        if relation == "pooled-in":
            out.setdefault(review, []).append(trial)
    return {k: tuple(sorted(set(v))) for k, v in out.items()}


def describe_reviews(rows: list[Row], excluded: list[Excluded], included: dict) -> list[Excluded]:
    """The reviews' left-out entries of one condition and outcome, saying truthfully how many of the
    trials each review included kb holds, and how many of those give numbers to the question asked
    (``rows``: every row of the request; without --window or --comparator-class, every time window and
    class of the condition and outcome)."""
    with_rows = {r.id: r.label for r in rows}
    out = []
    for e in excluded:
        if e.reason != REVIEW_REASON:
            out.append(e)
            continue
        held = included.get(e.id, ())
        if not held:
            extra = " (kb records none of the trials it included: no record links to it with related: pooled-in)"
        else:
            numbers = [with_rows[t] for t in held if t in with_rows]
            extra = (f"; kb holds {len(held)} of the trials it included, "
                     + (f"{len(numbers)} of them with numbers for this question ({', '.join(numbers)})" if numbers
                        else "none of them with numbers for this question"))
        out.append(Excluded(e.id, e.reason + extra, e.outcome, e.timepoint, e.window, e.cls, e.label, e.days))
    return out


def class_of(comparator: str | None, req: MetaRequest) -> str | None:
    """The comparator class an entry's comparator pools in, or None when this request leaves it out."""
    proto = req.protocol
    wanted = set(req.comparators or proto.controls())
    if comparator not in wanted:
        return None
    if req.combine_placebos and comparator in COMBINED.comparators:
        return COMBINED.id
    cls = next((c for c in proto.classes if comparator in c.comparators), None)
    return cls.id if cls else comparator


def select_one(s, req: MetaRequest) -> tuple[bool, list[Row], list[Excluded]]:
    """One study's part of :func:`select`: (reports the outcome, its rows, its entries left out).

    A study gives at most one row per (time window, comparator class): the entry on the preferred
    instrument (protocol.instrument_preference), then the one marked primary, then the earliest.
    Selection looks at one study at a time, so the site builds rows where records are parsed."""
    excluded: list[Excluded] = []
    if req.condition and req.condition not in s.condition_terms:
        return False, [], excluded
    entries = [o for o in s.outcomes if o.outcome == req.outcome]
    if not entries:
        return False, [], excluded

    def out(reason: str, o=None, window: str | None = None, cls: str | None = None) -> tuple[bool, list, list[Excluded]]:
        excluded.append(Excluded(s.id, reason, req.outcome, o.timepoint if o is not None else None, window, cls, s.label,
                                 o.timepoint_days if o is not None else None))
        return True, [], excluded

    if not s.is_evidence:
        return out("draft record: not yet extracted")
    if req.condition and s.condition_terms[0] != req.condition and not req.any_condition \
            and req.outcome_condition != req.condition:
        # a PTSD trial that also lists depression measures PTSD response, not depression response
        return out(f"{req.condition} is a secondary condition here (primary: {s.condition_terms[0]}); "
                   "--any-condition includes it")
    if s.retracted:
        return out("retracted publication: never pooled")
    if s.design in PUBLISHED_REVIEWS:
        return out(REVIEW_REASON)
    if s.design in REVIEW_DESIGNS:
        return out(GUIDELINE_REASON.format(design=s.design))
    if s.design == "crossover-rct" and not req.crossover:
        return out("crossover trial (left out by --no-crossover)")
    route = s.intervention.route if s.intervention else None
    drug = s.intervention.drug if s.intervention else None
    if route != "iv" and not req.non_iv:
        return out(f"route {route or 'not recorded'}: not intravenous (--non-iv includes it)")
    if drug == "esketamine" and not req.esketamine:
        return out("esketamine, not racemic ketamine (--esketamine includes it)")
    proto = req.protocol
    cells: dict[tuple[str, str], list] = {}
    for o in entries:
        comparator = o.comparator or (s.comparator.type if s.comparator else None)
        cls = class_of(comparator, req)
        window = proto.window_of(o.timepoint_days)
        if not o.pool:
            out(f"marked pool: false ({o.pool_note})" if o.pool_note else "marked pool: false", o)
        elif o.data is None:
            out("reported without numbers that can be pooled", o)
        elif o.counts == "derived" and not req.derived:
            out("derived counts (left out by --no-derived)", o)
        elif cls is None:
            out(f"comparator {comparator or 'not recorded'} (analyse it with --comparator {comparator})"
                if comparator not in (None, "none", "pre-post") else "no control arm: nothing to compare", o)
        elif o.data.type != "effect" and len(o.data.arms) == 1:
            out("a single arm: no comparison to pool", o)
        elif o.data.type != "effect" and len(o.data.arms) > 2:
            out("more than two arms: record one outcome entry per comparison", o)
        elif not _in_window(o.timepoint_days, req.timepoint):
            out(f"timepoint {o.timepoint or 'not recorded'} outside --timepoint {req.timepoint}", o)
        elif o.timepoint_days is None:
            out("no timepoint in days: it cannot be placed in a time window", o)
        elif window is None:
            out(f"timepoint {o.timepoint_days:g} days lies in no time window of the protocol", o)
        elif req.window and window.id != req.window:
            out(f"timepoint {o.timepoint or o.timepoint_days} is in the {window.label} window, not {req.window}", o)
        elif req.comparator_class and cls != req.comparator_class:
            out(f"comparator {comparator} is in class {cls}, not {req.comparator_class}", o)
        else:
            cells.setdefault((window.id, cls), []).append((o, comparator))
    rows = []
    for (window, cls), usable in cells.items():
        usable.sort(key=lambda oc: (proto.instrument_rank(oc[0].instrument), not oc[0].primary,
                                    oc[0].timepoint_days))
        chosen, comparator = usable[0]
        for o, _ in usable[1:]:
            why = ("the preferred instrument's" if proto.instrument_rank(chosen.instrument) < proto.instrument_rank(o.instrument)
                   else "the primary" if chosen.primary and not o.primary else "the earliest")
            out(f"another entry of the same study in this time window ({why}, {chosen.timepoint or 'timepoint not recorded'}"
                f"{', ' + chosen.instrument if chosen.instrument else ''}, is pooled)", o, window, cls)
        rows.append(_row(s, chosen, comparator, window, cls))
    return True, rows, excluded


def outcomes_with_data(studies: Iterable, condition: str | None = None) -> list[str]:
    return sorted({o.outcome for s in studies if not condition or condition in s.condition_terms
                   for o in s.outcomes if o.data is not None})


def _weak(o, sources) -> bool:
    """Whether an entry's numbers rest only on weak sources (press release, commercial site, copy, bare IP)."""
    infos = outcome_sources(o, sources)
    return bool(infos) and all(i.weak for i in infos)


def rob_assessment(s, o) -> dict | None:
    """The result's own risk-of-bias assessment, else the trial's default (RoB 2 judges results, not trials),
    as plain data (JSON- and marshal-able, for the site's digests): ``tool``,
    ``judgement`` (the reviewer's overall, else kb's from the domains: :attr:`RiskOfBias.judgement`),
    ``derived``, ``domains`` (domain -> judgement, in the record's order), ``source``, ``assessed_by``,
    ``verified_by``, ``single_assessor`` (no one verified it) and ``applies_to``: ``result`` when the
    outcome entry carries its own, else ``trial`` (the record's default)."""
    own = getattr(o, "risk_of_bias", None)
    rob = own or getattr(s, "risk_of_bias", None)
    if rob is None:
        return None
    return {"tool": rob.tool, "judgement": rob.judgement, "derived": rob.derived, "domains": dict(rob.domains),
            "source": rob.source, "assessed_by": rob.assessed_by, "verified_by": rob.verified_by,
            "single_assessor": not rob.verified_by, "applies_to": "result" if own is not None else "trial"}


def _row(s, o, comparator: str, window: str | None = None, cls: str | None = None) -> Row:
    d = o.data
    label = s.label
    rob = rob_assessment(s, o)
    fields = {"condition": s.condition_terms[0] if s.condition_terms else None, "comparator": comparator,
              "route": s.intervention.route if s.intervention else None, "design": s.design,
              "drug": s.intervention.drug if s.intervention else None, "blinding": s.blinding,
              "counts": o.counts or ("reported" if d.type == "effect" else "stated"), "instrument": o.instrument}
    row = Row(id=s.id, label=label, kind=d.type, values={}, year=s.year, design=s.design, fields=fields,
              derived=o.counts == "derived", rob=rob["judgement"] if rob else None, rob_detail=rob,
              instrument=o.instrument, timepoint=o.timepoint, window=window, cls=cls, definition=o.definition,
              crossover=s.design == "crossover-rct" and o.period != "first",
              weak_source=_weak(o, s.sources),
              indirect=[f"{i.domain}: {i.reason}" for i in s.indirectness])
    if d.type == "binary":
        (a, c) = d.arms
        row.values = {"ai": a.events, "n1i": a.total, "ci": c.events, "n2i": c.total}
        row.participants, row.events = a.total + c.total, a.events + c.events
    elif d.type == "continuous":
        (a, c) = d.arms
        row.values = {"m1i": a.mean, "sd1i": a.sd, "n1i": a.n, "m2i": c.mean, "sd2i": c.sd, "n2i": c.n}
        row.participants = a.n + c.n
    else:
        row.measure = d.measure
        row.values = {k: v for k, v in (("value", d.value), ("ci_low", d.ci_low), ("ci_high", d.ci_high),
                                        ("se", d.se), ("ci_level", d.ci_level)) if v is not None}
        row.participants = d.participants or s.n
    return row


CSV_SHAPES = {
    "binary": ("ai", "n1i", "ci", "n2i"),
    "continuous": ("m1i", "sd1i", "n1i", "m2i", "sd2i", "n2i"),
    "effect": ("yi", "vi"),
}


def rows_from_csv(path: Path) -> tuple[list[Row], list[Excluded]]:
    """Study-level data with metafor's column names (one shape per file; a `study` column labels rows)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise KbError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise KbError(f"{path} is not UTF-8 text", hint="save the CSV as UTF-8") from None
    reader = csv.DictReader(text.splitlines())
    cols = {c.strip() for c in (reader.fieldnames or [])}
    shape = next((k for k, need in CSV_SHAPES.items() if set(need) <= cols), None)
    if shape is None:
        raise BadRequest(f"{path}: columns {', '.join(sorted(cols)) or '(none)'} match no data shape",
                         hint="use study,ai,n1i,ci,n2i (events and totals, treatment first), "
                              "study,m1i,sd1i,n1i,m2i,sd2i,n2i (continuous) or study,yi,vi")
    rows, excluded = [], []
    for i, rec in enumerate(reader, start=2):
        rec = {k.strip(): (v or "").strip() for k, v in rec.items() if k}
        label = rec.get("study") or f"row {i}"
        values: dict[str, float] = {}
        try:
            for col in CSV_SHAPES[shape]:
                if rec.get(col, "").upper() in ("", "NA"):
                    raise ValueError(f"{col} is empty")
                values[col] = float(rec[col])
        except ValueError as e:
            excluded.append(Excluded(label, f"{path.name} line {i}: {str(e).replace('could not convert string to float', 'not a number')}"))
            continue
        row = Row(id=label, label=label, kind="effect" if shape == "effect" else shape, values=values,
                  fields={"counts": "stated"})
        if shape == "binary":
            row.participants = int(values["n1i"] + values["n2i"])
            row.events = int(values["ai"] + values["ci"])
        elif shape == "continuous":
            row.participants = int(values["n1i"] + values["n2i"])
        else:
            row.measure = "yi"
        rows.append(row)
    return rows, excluded
