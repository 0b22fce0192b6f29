"""Evidence synthesis: from study records (or a CSV of study data) to a pooled answer.

The entry points: :func:`answer_question` answers one outcome with one analysis per time window and
comparator class (a Summary of Findings table, or one result when there is one), and
:func:`analyse` answers exactly one analysis. Each selects every outcome entry that fits the question,
says why each other entry was left out, computes effect sizes (:mod:`kb.effects`), pools them
(:mod:`kb.metaanalysis`), adds the absolute effect (:mod:`kb.absolute`), suggests a GRADE-style
certainty by the rules in :data:`RULES`, runs the sensitivity analyses and writes the sentence from
the vocabulary's declarations (:mod:`kb.wording`). The time windows, comparator classes and
instrument preference come from the knowledge base's protocol (:mod:`kb.protocol`, kb.yaml).
Nothing is cached or stored: every number is computed from the records at the time it is shown.

Selection, in order (each exclusion is listed with its reason):

1. Drafts (imported, not yet extracted): always out.
2. Studies whose first (primary) condition is not the one asked for: a PTSD trial that also lists
   depression reports PTSD response (``--any-condition`` includes them). An outcome that declares its
   own condition (si-response: suicidal-ideation) takes every study that lists that condition.
3. Retracted publications: always out.
4. Reviews (meta-analyses, systematic reviews, guidelines, consensus statements): out, since their
   trials are pooled one by one and pooling the review too would count them twice.
5. Options, with these defaults: crossover trials in (``--no-crossover``); derived counts in
   (``--no-derived``); routes other than IV out (``--non-iv``); esketamine out (``--esketamine``);
   comparators: the protocol's classes (inert placebo: saline, placebo; active placebo: midazolam),
   each its own analysis, unless ``--comparator`` names others or ``--combine-placebos`` joins them.
6. Entries marked ``pool: false`` (with the record's note); data that cannot be compared: no numbers,
   a single arm, more than two arms; no ``timepoint_days`` (no time window).
7. One entry per study in each time window and comparator class: the preferred instrument's, then
   the one marked ``primary``, then the earliest (``--timepoint`` and ``--window`` narrow first).
8. Entries whose data cannot give the chosen measure, and, for risk and odds ratios, studies with
   no events (or only events) in both arms.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from . import absolute as A
from . import effects as E
from . import metaanalysis as M
from . import wording as W
from .errors import BadRequest, KbError, NotFound
from .sources import outcome_sources
from .protocol import COMBINED, DEFAULT as DEFAULT_PROTOCOL, ComparatorClass, Protocol

CONTROLS = DEFAULT_PROTOCOL.controls()  # the default comparators: every comparator class of the protocol
REVIEW_DESIGNS = frozenset({"meta-analysis", "systematic-review", "guideline", "consensus-statement"})
RANDOMISED = frozenset({"rct", "crossover-rct"})
SUBGROUP_FIELDS = ("condition", "comparator", "route", "design", "drug", "blinding", "counts", "instrument")
HIGH_RISK = frozenset({"high", "serious", "critical"})
LEVELS = ("very-low", "low", "moderate", "high")
OIS_EVENTS, OIS_PARTICIPANTS = 300, 400
RULES = {
    "start": "high when every pooled study is randomised, otherwise low",
    "risk_of_bias": "-1 when studies at high risk carry >= 25% of the weight, or studies at high risk or "
                    "not assessed carry >= 50%; -2 when studies at high risk carry >= 50%",
    "inconsistency": "-1 when I2 >= 50% and the prediction interval crosses no effect; -2 when I2 >= 75% and it does",
    "imprecision": f"-1 when the CI crosses no effect; -1 when fewer than {OIS_EVENTS} events (binary) or "
                   f"{OIS_PARTICIPANTS} participants (continuous) were analysed (optimal information size); at most -2",
    "publication_bias": "-1 when Egger's test gives p < 0.10 (only with 10 or more studies)",
    "indirectness": "-1 when studies that answer a different question carry >= 25% of the weight: a record's "
                    "indirectness (population, intervention, comparator, outcome or setting, e.g. a trial run during "
                    "surgical anaesthesia), or a combined analysis that mixes inert and active placebo",
    "data_provenance": "-1 when counts derived from percentages, or numbers resting only on a press release, "
                       "commercial site or copied document, carry >= 25% of the weight",
}
INDIRECT_SHARE = PROVENANCE_SHARE = 0.25


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
    rob: str | None = None
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

    def as_dict(self) -> dict:
        # what dataclasses.asdict gives for these flat fields, ~10x faster (it deep-copies every value),
        # which matters when a site build lists hundreds of thousands of left-out rows
        return {"id": self.id, "reason": self.reason, "outcome": self.outcome, "timepoint": self.timepoint,
                "window": self.window, "cls": self.cls, "label": self.label}

    def concerns(self, window: str | None, cls: str | None) -> bool:
        """Whether this entry belongs in the left-out list of the (window, class) analysis."""
        return (self.window is None or self.window == window) and (self.cls is None or self.cls == cls)


def analyse(kb, req: MetaRequest, data_file: Path | None = None) -> dict:
    """One analysis, as the documented JSON-ready dict (see docs/meta.md): one time window and one
    comparator class. When the records have data in several and ``req`` names none, the answer is
    ambiguous: BadRequest lists the analyses (``kb meta`` shows them all as a Summary of Findings)."""
    answer = answer_question(kb, req, data_file)
    if "analyses" not in answer:
        return answer
    cells = ", ".join(f"--window {r['window']['id']} --comparator-class {r['comparator_class']['id']} (k = {r['k']})"
                      for r in answer["analyses"])
    raise BadRequest(f"{req.outcome} has data in {len(answer['analyses'])} time windows or comparator classes",
                     hint="choose one: " + cells)


def answer_question(kb, req: MetaRequest, data_file: Path | None = None) -> dict:
    """Every analysis the question has data for: one result (the dict of :func:`analyse_rows`) when there
    is one, else ``{"outcome", "condition", "analyses": [results], "not_pooled": [...]}``, one result per
    time window and comparator class, in the protocol's order (a Summary of Findings table)."""
    if kb is not None:
        req.protocol = kb.protocol
    _check_request(req, kb.vocab if kb is not None else None)
    summaries: dict = {}
    if data_file is not None:
        rows, excluded = rows_from_csv(data_file)
        return analyse_rows(rows, excluded, req, None, None, str(data_file))
    from .store import load_studies, load_summaries

    report = load_studies(kb)
    summaries = load_summaries(kb)
    rows, excluded = select(report.studies, req, kb.vocab)
    return analyse_cells(rows, excluded, req, summaries.get(req.condition) if req.condition else None, kb.vocab)


def cells(rows: list[Row], protocol: Protocol) -> list[tuple[str | None, str | None]]:
    """The (window, class) pairs the rows fall in, in the protocol's order."""
    w_order = {w.id: i for i, w in enumerate(protocol.windows)}
    c_order = {c.id: i for i, c in enumerate((*protocol.classes, COMBINED))}
    found = {(r.window, r.cls) for r in rows}
    return sorted(found, key=lambda wc: (w_order.get(wc[0], len(w_order)), c_order.get(wc[1], len(c_order)), str(wc)))


def analyse_cells(rows: list[Row], excluded: list[Excluded], req: MetaRequest, summary=None, vocab=None,
                  loo: bool = True) -> dict:
    """Pool each (time window, comparator class) of ``rows`` on its own: one result, or a table of them."""
    found = cells(rows, req.protocol)
    if len(found) <= 1:
        w, c = found[0] if found else (req.window, req.comparator_class)
        return analyse_rows(rows, [e for e in excluded if e.concerns(w, c)], req, summary, vocab, loo=loo)
    analyses, not_pooled = [], []
    for w, c in found:
        sub = [r for r in rows if (r.window, r.cls) == (w, c)]
        try:
            analyses.append(analyse_rows(sub, [e for e in excluded if e.concerns(w, c)], req, summary, vocab, loo=loo))
        except SynthesisError as e:
            not_pooled.append({"window": _window_info(req, w), "comparator_class": _class_info(req, c, vocab),
                               "message": e.message, "hint": e.hint})
    return {"outcome": req.outcome, "condition": req.condition, "analyses": analyses, "not_pooled": not_pooled,
            "excluded": [e.as_dict() for e in excluded if e.window is None and e.cls is None]}


def _window_info(req: MetaRequest, window_id: str | None) -> dict | None:
    w = req.protocol.window(window_id) if window_id else None
    return w.as_dict() if w else None


def _class_info(req: MetaRequest, class_id: str | None, vocab) -> dict | None:
    if class_id is None:
        return None
    c = req.protocol.comparator_class(class_id)
    if c is not None:
        return {"id": c.id, "label": c.label, "comparators": list(c.comparators)}
    label = vocab.label("comparator", class_id) if vocab is not None else class_id
    return {"id": class_id, "label": label[:1].lower() + label[1:], "comparators": [class_id]}


def analyse_rows(rows: list[Row], excluded: list[Excluded], req: MetaRequest, summary=None, vocab=None,
                 source: str = "records", loo: bool = True) -> dict:
    """Pool selected rows (of one time window and one comparator class) into the documented answer;
    ``summary`` is the condition's summaries/ file, if any. ``loo=False`` skips the leave-one-out refits
    (k extra fits), which the site skips for large k."""
    measure, rows, more = _effects(rows, req)
    excluded = excluded + more
    if not rows:
        raise SynthesisError(_nothing_message(req, excluded), hint=_nothing_hint(excluded))
    result = _pool(rows, measure, req, loo)
    window_id = rows[0].window if source == "records" else None
    class_id = rows[0].cls if source == "records" else None
    result.update(
        outcome=req.outcome, condition=req.condition, source=source,
        window=_window_info(req, window_id), comparator_class=_class_info(req, class_id, vocab),
        single_study=result["k"] == 1,
        definition=vocab.categories["outcome"][req.outcome].description
        if vocab is not None and req.outcome in vocab.categories.get("outcome", {}) else None,
        options={"comparators": list(req.comparators or req.protocol.controls()), "crossover": req.crossover,
                 "derived": req.derived, "non_iv": req.non_iv, "esketamine": req.esketamine,
                 "any_condition": req.any_condition, "timepoint": req.timepoint, "window": req.window,
                 "comparator_class": req.comparator_class, "combine_placebos": req.combine_placebos,
                 "smd_variant": req.smd_variant, "knha": req.knha, "level": req.level},
        excluded=[e.as_dict() for e in excluded],
    )
    try:
        result["better"] = W.better_of(vocab, req.outcome, [r.instrument for r in rows])
    except W.WordingError as e:
        raise SynthesisError(f"cannot pool {req.outcome}: {e}",
                             hint="pool instruments that share a direction (--subgroup instrument shows them)") from None
    result["absolute"] = _absolute(rows, result, measure, req, vocab)
    if req.subgroup:
        result["subgroups"] = _subgroups(rows, measure, req)
    result["sensitivity"] = _sensitivity(rows, measure, req) if req.sensitivity and source == "records" else []
    result["certainty"] = certainty(rows, result, measure,
                                    summary.outcomes.get(req.outcome) if summary and req.outcome else None,
                                    f"summaries/{req.condition}.yaml" if summary else None)
    result["sentence"] = W.sentence(result, vocab)
    result["headline"] = W.headline(result, vocab)
    return result


def _absolute(rows: list[Row], result: dict, measure: str, req: MetaRequest, vocab) -> dict | None:
    """The absolute effect (kb.absolute): per 1000 and NNT for binary results, points on a scale for
    continuous ones; None when the measure has no absolute form (HR, a CSV's generic yi)."""
    nat = result["natural"]
    if measure in E.BINARY_MEASURES:
        risks = [r.values["ci"] / r.values["n2i"] for r in rows if r.kind == "binary"]
        override, where = req.assumed_risk, "set with --assumed-risk"
        if override is None and req.outcome in req.protocol.assumed_risk:
            override, where = req.protocol.assumed_risk[req.outcome], "set in kb.yaml (synthesis.assumed_risk)"
        if not risks and override is None:
            return None  # reported effects only: no control-group risk to start from
        acr, source, span = A.assumed_risk(risks, override, where)
        return A.binary(measure, nat["estimate"], nat["ci_low"], nat["ci_high"], acr, result.get("better"), source, span)
    instruments = {r.instrument for r in rows}
    if measure == "smd" and all(r.kind == "continuous" for r in rows) and len(instruments) == 1 and None not in instruments:
        # every study used the same instrument: the mean difference in its points, pooled as the SMD was
        md = MetaRequest(**{**vars(req), "measure": "md"})
        _, md_rows, _ = _effects([Row(**{**vars(r), "yi": None, "vi": None}) for r in rows], md)
        fit = _fit(md_rows, "md", md)
        inst = instruments.pop()
        return {"instrument": inst, "points": fit.estimate, "points_ci_low": fit.ci_low, "points_ci_high": fit.ci_high,
                "method": f"the mean difference in {inst} points, pooled from the same studies"}
    if measure in E.CONTINUOUS_MEASURES:
        return A.continuous(measure, nat["estimate"], nat["ci_low"], nat["ci_high"],
                            [{"instrument": r.instrument, "kind": r.kind, "data": r.values} for r in rows], vocab)
    return None


SENSITIVITY = (
    ("high_risk_of_bias", "without results at high risk of bias", lambda r: r.rob in HIGH_RISK),
    ("derived_or_weak", "without counts derived from percentages or resting on weak sources",
     lambda r: r.derived or r.weak_source),
    ("crossover", "without crossover trials analysed as published (not first-period data)", lambda r: r.crossover),
)


def _sensitivity(rows: list[Row], measure: str, req: MetaRequest) -> list[dict]:
    """The result refitted without each kind of doubtful row, when that leaves out some but not all."""
    out = []
    for name, label, doubtful in SENSITIVITY:
        gone = [r.id for r in rows if doubtful(r)]
        kept = [r for r in rows if not doubtful(r)]
        if not gone or not kept:
            continue
        fit = _fit(kept, measure, req)
        out.append({"name": name, "label": label, "omitted": gone, "k": fit.k, "estimate": fit.estimate,
                    "ci_low": fit.ci_low, "ci_high": fit.ci_high,
                    "natural": {"estimate": _natural(measure, fit.estimate), "ci_low": _natural(measure, fit.ci_low),
                                "ci_high": _natural(measure, fit.ci_high)}})
    return out


# -- selection ----------------------------------------------------------------------


def _check_request(req: MetaRequest, vocab) -> None:
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
    for s in sorted(studies, key=lambda s: s.id):
        seen, found, out = select_one(s, req)
        seen_outcome |= seen
        excluded += out
        rows += found
    if not seen_outcome:
        have = outcomes_with_data(studies, req.condition)
        where = f" for {req.condition}" if req.condition else ""
        raise NotFound(f"no study reports {req.outcome}{where}",
                       hint=("outcomes with data" + where + ": " + ", ".join(have)) if have else
                       "no outcome has pooled data here yet")
    return rows, excluded


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
        excluded.append(Excluded(s.id, reason, req.outcome, o.timepoint if o is not None else None, window, cls, s.label))
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
    if s.design in REVIEW_DESIGNS:
        return out(f"a {s.design}: its trials are pooled one by one (pooling the review too would count them twice)")
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


def _row(s, o, comparator: str, window: str | None = None, cls: str | None = None) -> Row:
    d = o.data
    label = s.label
    fields = {"condition": s.condition_terms[0] if s.condition_terms else None, "comparator": comparator,
              "route": s.intervention.route if s.intervention else None, "design": s.design,
              "drug": s.intervention.drug if s.intervention else None, "blinding": s.blinding,
              "counts": o.counts or ("reported" if d.type == "effect" else "stated"), "instrument": o.instrument}
    row = Row(id=s.id, label=label, kind=d.type, values={}, year=s.year, design=s.design, fields=fields,
              derived=o.counts == "derived", rob=s.risk_of_bias.overall if s.risk_of_bias else None,
              instrument=o.instrument, timepoint=o.timepoint, window=window, cls=cls, definition=o.definition,
              crossover=s.design == "crossover-rct" and getattr(o, "period", None) != "first",
              weak_source=_weak(o, s.sources),
              indirect=[f"{i.domain}: {i.reason}" for i in getattr(s, "indirectness", None) or []])
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


# -- effect sizes -------------------------------------------------------------------


def _effects(rows: list[Row], req: MetaRequest) -> tuple[str, list[Row], list[Excluded]]:
    kinds = {r.kind for r in rows}
    measure = req.measure
    if measure is None:
        if kinds == {"effect"}:
            measures = {r.measure for r in rows}
            if len(measures) > 1:
                raise BadRequest("the studies report different effect measures: " + ", ".join(sorted(measures)),
                                 hint="choose one with --measure")
            measure = measures.pop()
        elif {"binary", "continuous"} <= kinds:
            n_b = sum(r.kind == "binary" for r in rows)
            raise BadRequest(f"mixed data shapes: {n_b} studies with events and totals, "
                             f"{len(rows) - n_b} with means and SDs",
                             hint="choose --measure rr, or or rd (binary) or smd or md (continuous)")
        else:
            measure = "rr" if "binary" in kinds else "smd" if "continuous" in kinds else "rr"
    excluded: list[Excluded] = []
    kept: list[Row] = []
    if measure == "md":
        instruments = {r.instrument for r in rows if r.kind == "continuous"}
        if len(instruments) > 1:
            raise BadRequest("a mean difference needs one instrument, but these differ: "
                             + ", ".join(sorted(str(i) for i in instruments)), hint="use --measure smd")
    for r in rows:
        try:
            if r.kind == "binary":
                if measure not in E.BINARY_MEASURES:
                    excluded.append(Excluded(r.id, f"events and totals cannot give a {E.MEASURE_LABELS.get(measure, measure)}"))
                    continue
                v = r.values
                if measure in ("rr", "or") and E.double_zero(v["ai"], v["n1i"], v["ci"], v["n2i"]):
                    excluded.append(Excluded(r.id, "no events (or only events) in both arms: no information on a "
                                                   "ratio (the risk difference includes it)"))
                    continue
                r.yi, r.vi = E.binary(measure, v["ai"], v["n1i"], v["ci"], v["n2i"])
            elif r.kind == "continuous":
                if measure not in E.CONTINUOUS_MEASURES:
                    excluded.append(Excluded(r.id, f"means and SDs cannot give a {E.MEASURE_LABELS.get(measure, measure)}"))
                    continue
                v = r.values
                r.yi, r.vi = E.continuous(measure, v["m1i"], v["sd1i"], v["n1i"], v["m2i"], v["sd2i"], v["n2i"],
                                          variant=req.smd_variant)
            elif r.measure == "yi":
                r.yi, r.vi = r.values["yi"], r.values["vi"]
                if r.vi <= 0:
                    raise E.EffectError("the sampling variance vi must be above 0")
            else:
                if r.measure != measure:
                    excluded.append(Excluded(r.id, f"reported as {r.measure.upper()}; cannot be pooled as {measure.upper()}"))
                    continue
                if req.method == "MH":
                    excluded.append(Excluded(r.id, "a reported effect cannot enter Mantel-Haenszel (counts needed)"))
                    continue
                v = r.values
                r.yi, r.vi = E.reported(measure, v["value"], v.get("ci_low"), v.get("ci_high"), v.get("se"),
                                        v.get("ci_level", 0.95))
        except E.EffectError as e:
            excluded.append(Excluded(r.id, f"data cannot be used: {e}"))
            continue
        kept.append(r)
    if req.method == "MH" and any(r.kind != "binary" for r in kept):
        raise BadRequest("Mantel-Haenszel pools events and totals only")
    return measure, kept, excluded


# -- pooling ------------------------------------------------------------------------


def _fit(rows: list[Row], measure: str, req: MetaRequest) -> M.Fit:
    y = [r.yi for r in rows]
    v = [r.vi for r in rows]
    try:
        if req.method == "MH":
            return M.mantel_haenszel(measure, [r.values["ai"] for r in rows], [r.values["n1i"] for r in rows],
                                     [r.values["ci"] for r in rows], [r.values["n2i"] for r in rows], y, v, req.level)
        return M.pool(y, v, req.method, knha=req.knha and len(rows) > 1, level=req.level)
    except M.PoolingError as e:
        raise SynthesisError(str(e)) from None


def _natural(measure: str, x: float | None) -> float | None:
    return E.back(measure, x) if measure != "yi" else x


def _pool(rows: list[Row], measure: str, req: MetaRequest, loo: bool = True) -> dict:
    fit = _fit(rows, measure, req)
    ratio = E.is_ratio(measure)
    crit = M.z_crit(req.level)  # per-study CIs are normal-theory, as in metafor's forest plots
    studies = []
    for r, w in zip(rows, fit.weights):
        se = math.sqrt(r.vi)
        lo, hi = r.yi - crit * se, r.yi + crit * se
        studies.append({
            "id": r.id, "label": r.label, "year": r.year, "design": r.design, "yi": r.yi, "vi": r.vi, "se": se,
            "ci_low": lo, "ci_high": hi, "effect": _natural(measure, r.yi), "effect_ci_low": _natural(measure, lo),
            "effect_ci_high": _natural(measure, hi), "weight": w, "data": r.values, "kind": r.kind,
            "derived": r.derived, "participants": r.participants, "events": r.events, "timepoint": r.timepoint,
            "instrument": r.instrument, "definition": r.definition, "crossover": r.crossover,
            "weak_source": r.weak_source, "indirect": r.indirect,
            "risk_of_bias": r.rob, "fields": r.fields,
        })
    out = {
        "measure": measure, "measure_label": E.MEASURE_LABELS.get(measure, "effect (yi)"), "scale": "log" if ratio else "natural",
        "method": fit.method, "method_label": M.METHOD_LABELS[fit.method], "knha": fit.knha, "level": fit.level,
        "k": fit.k, "estimate": fit.estimate, "se": fit.se, "ci_low": fit.ci_low, "ci_high": fit.ci_high,
        "pi_low": fit.pi_low, "pi_high": fit.pi_high, "test": fit.test, "stat": fit.stat, "df": fit.df, "p": fit.p,
        "natural": {"estimate": _natural(measure, fit.estimate), "ci_low": _natural(measure, fit.ci_low),
                    "ci_high": _natural(measure, fit.ci_high), "pi_low": _natural(measure, fit.pi_low),
                    "pi_high": _natural(measure, fit.pi_high)},
        "tau2": fit.tau2, "tau": fit.tau, "i2": fit.i2, "h2": fit.h2, "q": fit.q, "q_df": fit.q_df, "q_p": fit.q_p,
        "participants": sum(r.participants or 0 for r in rows),
        "participants_known": all(r.participants is not None for r in rows),
        "events": sum(r.events for r in rows) if all(r.events is not None for r in rows) else None,
        "studies": studies,
        "leave_one_out": _leave_one_out(rows, measure, req) if loo and len(rows) >= 3 else [],
        "egger": None,
    }
    if len(rows) >= 10:
        e = M.egger([r.yi for r in rows], [r.vi for r in rows])
        out["egger"] = {"intercept": e.intercept, "se": e.se, "t": e.t, "df": e.df, "p": e.p}
    return out


def _leave_one_out(rows: list[Row], measure: str, req: MetaRequest) -> list[dict]:
    out = []
    for i, r in enumerate(rows):
        fit = _fit(rows[:i] + rows[i + 1:], measure, req)
        out.append({"omitted": r.id, "estimate": fit.estimate, "ci_low": fit.ci_low, "ci_high": fit.ci_high,
                    "natural": {"estimate": _natural(measure, fit.estimate), "ci_low": _natural(measure, fit.ci_low),
                                "ci_high": _natural(measure, fit.ci_high)},
                    "tau2": fit.tau2, "i2": fit.i2})
    return out


def _subgroups(rows: list[Row], measure: str, req: MetaRequest) -> dict:
    groups: dict[str, list[Row]] = {}
    for r in rows:
        groups.setdefault(str(r.fields.get(req.subgroup) or "not recorded"), []).append(r)
    fits = {name: _fit(members, measure, req) for name, members in sorted(groups.items())}
    q, df, p = M.subgroup_test(fits)
    return {
        "field": req.subgroup,
        "groups": [{"value": name, "k": f.k, "ids": [r.id for r in groups[name]], "estimate": f.estimate,
                    "ci_low": f.ci_low, "ci_high": f.ci_high, "tau2": f.tau2, "i2": f.i2,
                    "natural": {"estimate": _natural(measure, f.estimate), "ci_low": _natural(measure, f.ci_low),
                                "ci_high": _natural(measure, f.ci_high)}} for name, f in fits.items()],
        "q_between": q, "df": df, "p": p,
        "note": "each subgroup pooled with its own heterogeneity; the test compares subgroup estimates "
                "(Q between, weights 1/SE^2)",
    }


# -- certainty ----------------------------------------------------------------------


def certainty(rows: list[Row], result: dict, measure: str, override=None, override_file: str | None = None) -> dict:
    """A GRADE-style certainty with every reason, from :data:`RULES`; a reviewer's override wins."""
    reasons: list[dict] = []
    randomised = all(r.design in RANDOMISED for r in rows) if rows and rows[0].design else None
    start = "high" if randomised or randomised is None else "low"
    reasons.append({"domain": "start", "change": 0,
                    "text": "all studies randomised: start high" if randomised else
                    "study-level data without designs: start high (check the designs)" if randomised is None else
                    "not all studies randomised: start low"})
    weights = {s["id"]: s["weight"] / 100 for s in result["studies"]}
    high = sum(weights[r.id] for r in rows if r.rob in HIGH_RISK)
    unknown = sum(weights[r.id] for r in rows if r.rob in (None, "no-information"))
    if high >= 0.5:
        reasons.append({"domain": "risk_of_bias", "change": -2, "text": f"studies at high risk of bias carry {high:.0%} of the weight"})
    elif high >= 0.25:
        reasons.append({"domain": "risk_of_bias", "change": -1, "text": f"studies at high risk of bias carry {high:.0%} of the weight"})
    elif high + unknown >= 0.5:
        reasons.append({"domain": "risk_of_bias", "change": -1,
                        "text": f"risk of bias not assessed for studies carrying {unknown:.0%} of the weight"
                                + (f" (and high for {high:.0%})" if high else "")})
    null = 0.0
    pi_crosses = result["pi_low"] < null < result["pi_high"]
    i2 = result["i2"]
    if i2 is not None and pi_crosses and i2 >= 75:
        reasons.append({"domain": "inconsistency", "change": -2, "text": f"I2 {i2:.0f}% and the prediction interval crosses no effect"})
    elif i2 is not None and pi_crosses and i2 >= 50:
        reasons.append({"domain": "inconsistency", "change": -1, "text": f"I2 {i2:.0f}% and the prediction interval crosses no effect"})
    impr = 0
    texts = []
    if result["ci_low"] < null < result["ci_high"]:
        impr += 1
        texts.append("the CI includes no effect")
    binary = all(r.kind == "binary" for r in rows)
    if binary and result["events"] is not None and result["events"] < OIS_EVENTS:
        impr += 1
        texts.append(f"{result['events']} events, fewer than {OIS_EVENTS}")
    elif not binary and result["participants"] < OIS_PARTICIPANTS:
        impr += 1
        texts.append(f"{result['participants']} participants, fewer than {OIS_PARTICIPANTS}")
    if impr:
        reasons.append({"domain": "imprecision", "change": -min(impr, 2), "text": "; ".join(texts)})
    indirect = sum(weights[r.id] for r in rows if r.indirect)
    classes = {r.fields.get("comparator") for r in rows}
    mixed = result.get("comparator_class", {}) and (result["comparator_class"] or {}).get("id") == COMBINED.id \
        and bool(classes & {"saline", "placebo"}) and "midazolam" in classes
    if indirect >= INDIRECT_SHARE or mixed:
        why = []
        if indirect >= INDIRECT_SHARE:
            named = sorted({i for r in rows for i in r.indirect})
            why.append(f"studies that answer a different question carry {indirect:.0%} of the weight ({'; '.join(named)})")
        if mixed:
            why.append("inert and active placebo are pooled together")
        reasons.append({"domain": "indirectness", "change": -1, "text": "; ".join(why)})
    else:
        reasons.append({"domain": "indirectness", "change": 0, "text": "no study flagged as indirect"})
    weak = sum(weights[r.id] for r in rows if r.derived or r.weak_source)
    if weak >= PROVENANCE_SHARE:
        named = [f"{r.label} (" + ", ".join(x for x, on in (("counts derived from percentages", r.derived),
                                                           ("only weak sources", r.weak_source)) if on) + ")"
                 for r in rows if r.derived or r.weak_source]
        reasons.append({"domain": "data_provenance", "change": -1,
                        "text": f"{weak:.0%} of the weight rests on " + "; ".join(named)})
    if result["egger"] is not None and result["egger"]["p"] < 0.10:
        reasons.append({"domain": "publication_bias", "change": -1,
                        "text": f"Egger's test p = {result['egger']['p']:.3f} (small-study effects)"})
    elif result["k"] < 10:
        reasons.append({"domain": "publication_bias", "change": 0, "text": "fewer than 10 studies: not testable"})
    score = LEVELS.index(start) + sum(r["change"] for r in reasons)
    suggested = LEVELS[max(0, score)]
    out = {"level": suggested, "suggested": suggested, "start": start, "reasons": reasons, "override": None,
           "rules": RULES}
    if override is not None and override.certainty:
        out["level"] = override.certainty
        out["override"] = {"level": override.certainty, "justification": override.justification, "file": override_file}
    if override is not None and override.note:
        out["note"] = override.note
    return out


# -- words ----------------------------------------------------------------------------

fmt = W.fmt  # the site and kb meta format numbers as the sentences do


def _nothing_message(req: MetaRequest, excluded: list[Excluded]) -> str:
    where = f" for {req.condition}" if req.condition else ""
    return (f"no eligible study for {req.outcome or 'this analysis'}{where}: "
            f"{len(excluded)} {'entry was' if len(excluded) == 1 else 'entries were'} left out")


def _nothing_hint(excluded: list[Excluded]) -> str:
    if not excluded:
        return "no record has pooled data for this question"
    lines = [f"{e.id}: {e.reason}" for e in excluded[:8]]
    more = f"\n  ... and {len(excluded) - 8} more" if len(excluded) > 8 else ""
    return "left out:\n  " + "\n  ".join(lines) + more


# the site shows a comparator class and an empty analysis as kb meta does
class_info = _class_info
nothing_message = _nothing_message
