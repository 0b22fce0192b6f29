"""Evidence synthesis: from study records (or a CSV of study data) to a pooled answer.

The one entry point, :func:`analyse`, selects every outcome entry that fits the question, says
why each other entry was left out, computes effect sizes (:mod:`kb.effects`), pools them
(:mod:`kb.metaanalysis`) and suggests a GRADE-style certainty by the rules in :data:`RULES`.
Nothing is cached or stored: every number is computed from the records at the time it is shown.

Selection, in order (each exclusion is listed with its reason):

1. Retracted publications: always out.
2. Reviews (meta-analyses, systematic reviews, guidelines, consensus statements): out, since their
   trials are pooled one by one and pooling the review too would count them twice.
3. Entries marked ``pool: false``: out, with the record's note.
4. Studies whose first (primary) condition is not the one asked for: a PTSD trial that also lists
   depression reports PTSD response (``--any-condition`` includes them).
5. Options, with these defaults: crossover trials in (``--no-crossover``); derived counts in
   (``--no-derived``); routes other than IV out (``--non-iv``); esketamine out (``--esketamine``);
   comparators: the controls (saline, placebo, midazolam) unless ``--comparator`` names others.
6. Data that cannot be compared: no numbers, a single arm, more than two arms.
7. One entry per study: the one marked ``primary``, else the earliest timepoint (``--timepoint``
   picks a time window first).
8. Entries whose data cannot give the chosen measure, and, for risk and odds ratios, studies with
   no events (or only events) in both arms.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from . import effects as E
from . import metaanalysis as M
from .errors import BadRequest, KbError, NotFound

CONTROLS = ("saline", "placebo", "midazolam")
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
}


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


@dataclass
class Excluded:
    id: str
    reason: str
    outcome: str | None = None
    timepoint: str | None = None

    def as_dict(self) -> dict:
        # what dataclasses.asdict gives for these flat fields, ~10x faster (it deep-copies every value),
        # which matters when a site build lists hundreds of thousands of left-out rows
        return {"id": self.id, "reason": self.reason, "outcome": self.outcome, "timepoint": self.timepoint}


def analyse(kb, req: MetaRequest, data_file: Path | None = None) -> dict:
    """The full answer for ``req`` as the documented JSON-ready dict (see docs/meta.md)."""
    _check_request(req, kb.vocab if kb is not None else None)
    summaries: dict = {}
    if data_file is not None:
        rows, excluded = rows_from_csv(data_file)
        source = str(data_file)
    else:
        from .store import load_studies, load_summaries

        report = load_studies(kb)
        summaries = load_summaries(kb)
        rows, excluded = select(report.studies, req, kb.vocab)
        source = "records"
    return analyse_rows(rows, excluded, req, summaries.get(req.condition) if req.condition else None,
                        kb.vocab if kb is not None else None, source)


def analyse_rows(rows: list[Row], excluded: list[Excluded], req: MetaRequest, summary=None, vocab=None,
                 source: str = "records", loo: bool = True) -> dict:
    """Pool selected rows (from :func:`select`, or :func:`select_one` study by study) into the
    documented answer; ``summary`` is the condition's summaries/ file, if any. ``loo=False`` skips
    the leave-one-out refits (k extra fits), which the site skips for large k."""
    measure, rows, more = _effects(rows, req)
    excluded = excluded + more
    if not rows:
        raise SynthesisError(_nothing_message(req, excluded), hint=_nothing_hint(excluded))
    result = _pool(rows, measure, req, loo)
    result.update(
        outcome=req.outcome, condition=req.condition, source=source,
        options={"comparators": list(req.comparators or CONTROLS), "crossover": req.crossover, "derived": req.derived,
                 "non_iv": req.non_iv, "esketamine": req.esketamine, "any_condition": req.any_condition, "timepoint": req.timepoint,
                 "smd_variant": req.smd_variant, "knha": req.knha, "level": req.level},
        excluded=[e.as_dict() for e in excluded],
    )
    if req.subgroup:
        result["subgroups"] = _subgroups(rows, measure, req)
    result["certainty"] = certainty(rows, result, measure,
                                    summary.outcomes.get(req.outcome) if summary and req.outcome else None,
                                    f"summaries/{req.condition}.yaml" if summary else None)
    result["sentence"] = sentence(result, vocab)
    return result


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
    """The outcome entries that answer ``req``, one per study, and every entry left out with why."""
    if req.outcome is None:
        raise BadRequest("name an outcome with --outcome", hint="outcomes with data: "
                         + ", ".join(outcomes_with_data(studies)))
    rows: list[Row] = []
    excluded: list[Excluded] = []
    seen_outcome = False
    for s in sorted(studies, key=lambda s: s.id):
        seen, row, out = select_one(s, req)
        seen_outcome |= seen
        excluded += out
        if row is not None:
            rows.append(row)
    if not seen_outcome:
        have = outcomes_with_data(studies, req.condition)
        where = f" for {req.condition}" if req.condition else ""
        raise NotFound(f"no study reports {req.outcome}{where}",
                       hint=("outcomes with data" + where + ": " + ", ".join(have)) if have else
                       "no outcome has pooled data here yet")
    return rows, excluded


def select_one(s, req: MetaRequest) -> tuple[bool, Row | None, list[Excluded]]:
    """One study's part of :func:`select`: (reports the outcome, its row or None, its entries left out).

    Selection looks at one study at a time, so the site builds rows where records are parsed."""
    excluded: list[Excluded] = []
    comparators = set(req.comparators or CONTROLS)
    if req.condition and req.condition not in s.condition_terms:
        return False, None, excluded
    entries = [o for o in s.outcomes if o.outcome == req.outcome]
    if not entries:
        return False, None, excluded

    def out(reason: str, o=None) -> tuple[bool, None, list[Excluded]]:
        excluded.append(Excluded(s.id, reason, req.outcome, o.timepoint if o is not None else None))
        return True, None, excluded

    if not s.is_evidence:
        return out("draft record: not yet extracted")
    if req.condition and s.condition_terms[0] != req.condition and not req.any_condition:
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
    usable = []
    for o in entries:
        comparator = o.comparator or (s.comparator.type if s.comparator else None)
        if not o.pool:
            out(f"marked pool: false ({o.pool_note})" if o.pool_note else "marked pool: false", o)
        elif o.data is None:
            out("reported without numbers that can be pooled", o)
        elif o.counts == "derived" and not req.derived:
            out("derived counts (left out by --no-derived)", o)
        elif comparator not in comparators:
            out(f"comparator {comparator or 'not recorded'} (analyse it with --comparator {comparator})"
                if comparator not in (None, "none", "pre-post") else "no control arm: nothing to compare", o)
        elif o.data.type != "effect" and len(o.data.arms) == 1:
            out("a single arm: no comparison to pool", o)
        elif o.data.type != "effect" and len(o.data.arms) > 2:
            out("more than two arms: record one outcome entry per comparison", o)
        elif not _in_window(o.timepoint_days, req.timepoint):
            out(f"timepoint {o.timepoint or 'not recorded'} outside --timepoint {req.timepoint}", o)
        else:
            usable.append((o, comparator))
    if not usable:
        return True, None, excluded
    usable.sort(key=lambda oc: (not oc[0].primary, oc[0].timepoint_days if oc[0].timepoint_days is not None
                                else math.inf))
    chosen, comparator = usable[0]
    for o, _ in usable[1:]:
        out(f"another entry of the same study (the {'primary' if chosen.primary else 'earliest'} one, "
            f"{chosen.timepoint or 'timepoint not recorded'}, is pooled)", o)
    return True, _row(s, chosen, comparator), excluded


def outcomes_with_data(studies: Iterable, condition: str | None = None) -> list[str]:
    return sorted({o.outcome for s in studies if not condition or condition in s.condition_terms
                   for o in s.outcomes if o.data is not None})


def _row(s, o, comparator: str) -> Row:
    d = o.data
    label = s.label
    fields = {"condition": s.condition_terms[0] if s.condition_terms else None, "comparator": comparator,
              "route": s.intervention.route if s.intervention else None, "design": s.design,
              "drug": s.intervention.drug if s.intervention else None, "blinding": s.blinding,
              "counts": o.counts or ("reported" if d.type == "effect" else "stated"), "instrument": o.instrument}
    row = Row(id=s.id, label=label, kind=d.type, values={}, year=s.year, design=s.design, fields=fields,
              derived=o.counts == "derived", rob=s.risk_of_bias.overall if s.risk_of_bias else None,
              instrument=o.instrument, timepoint=o.timepoint)
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


def fmt(x: float | None, measure: str) -> str:
    if x is None:
        return "n/a"
    if measure == "rd":
        return f"{x:.3f}"
    return f"{x:.2f}"


def sentence(result: dict, vocab=None) -> str:
    """The Summary of Findings row in one plain-language sentence."""
    m = result["measure"]
    nat = result["natural"]
    outcome = vocab.label("outcome", result["outcome"]) if vocab is not None and result.get("outcome") else (
        result.get("outcome") or "the outcome")
    k = result["k"]
    n = result["participants"]
    who = f"{k} {'study' if k == 1 else 'studies'}" + (f" ({n:,} participants)" if n else "")
    level = result["certainty"]["level"].replace("-", " ")
    pct = int(round(result["level"] * 100))
    est = (f"{result['measure_label']} {fmt(nat['estimate'], m)} "
           f"({pct}% CI {fmt(nat['ci_low'], m)} to {fmt(nat['ci_high'], m)})")
    lo, hi = result["ci_low"], result["ci_high"]
    if lo < 0 < hi:
        direction = "the data are compatible with no difference between ketamine and the comparators"
    elif m in ("smd", "md"):
        direction = f"scores were {'lower' if hi < 0 else 'higher'} with ketamine than with the comparators"
    elif m == "yi":
        direction = f"the pooled effect is {'below' if hi < 0 else 'above'} zero"
    else:
        direction = f"it was {'more' if lo > 0 else 'less'} frequent with ketamine than with the comparators"
    return f"{outcome}: {direction}; {est}, from {who}. Certainty of the evidence: {level}."


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
