"""Evidence synthesis: from study records (or a CSV of study data) to a pooled answer.

The request, its rows and the selection live in :mod:`kb.selection` (re-exported here). The entry
points: :func:`answer_question` answers one outcome with one analysis per time window and
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
4. Reviews (meta-analyses, systematic reviews, guidelines, consensus statements): out. A published
   review is set beside kb's results on the comparison page (:mod:`kb.comparison`), never pooled with
   its own trials; its left-out reason says how many of the trials it included (``related: pooled-in``)
   kb holds, and how many of those give numbers for the question asked.
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

import math
from pathlib import Path

from . import absolute as A
from . import effects as E
from . import metaanalysis as M
from . import wording as W
from .errors import BadRequest, KbError
from .protocol import COMBINED, DEFAULT as DEFAULT_PROTOCOL, Protocol  # noqa: F401  (kb.site reads the default)
# the request, rows and selection (re-exported: the site and the CLI use them through kb.synthesis)
from .selection import (CONTROLS, PUBLISHED_REVIEWS, REVIEW_DESIGNS, REVIEW_REASON, SUBGROUP_FIELDS,  # noqa: F401
                        Excluded, MetaRequest, Row, SynthesisError, check_request, class_of, days_window,
                        describe_reviews, included_map, listed_in_other_cells, listed_without_entry, only_ids,
                        outcomes_with_data, rows_from_csv, select, select_one)

RANDOMISED = frozenset({"rct", "crossover-rct"})
HIGH_RISK = frozenset({"high", "serious", "critical"})
LOW_RISK = frozenset({"low"})  # anything else, or no assessment, counts with some concerns
LEVELS = ("very-low", "low", "moderate", "high")
OIS_EVENTS, OIS_PARTICIPANTS = 300, 400
RULES = {
    "start": "high when every pooled study is randomised, otherwise low",
    "risk_of_bias": "by the share of weight of the pooled results, each judged by its own assessment, else the "
                    "trial's default: -2 when results at high risk (RoB 1 or RoB 2 high; ROBINS-I serious or critical) "
                    "carry >= 50%; -1 when they carry >= 25%, or when results at high risk or with some concerns "
                    "(RoB 2 some concerns, RoB 1 unclear, ROBINS-I moderate, no information) carry >= 50%; results not "
                    "assessed count with some concerns. An assessment without an overall judgement gets kb's: RoB 1 "
                    "high if any of its seven domains is high, else unclear if any is unclear, else low; RoB 2 low if "
                    "all domains are low, high if any is high, else some concerns",
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
    check_request(req, kb.vocab if kb is not None else None)
    summaries: dict = {}
    if data_file is not None:
        if req.ids:
            raise BadRequest("--ids picks records; it cannot restrict a --data file", hint="drop --ids, or --data")
        rows, excluded = rows_from_csv(data_file)
        return analyse_rows(rows, excluded, req, None, None, str(data_file))
    from .load import load_studies, load_summaries

    report = load_studies(kb)
    summaries = load_summaries(kb)
    req.included = included_map((s.id, r.relation, r.id) for s in report.studies for r in s.related)
    rows, excluded = select(report.studies, req, kb.vocab)
    excluded = describe_reviews(rows, excluded, req.included)
    answer = analyse_cells(rows, excluded, req, summaries.get(req.condition) if req.condition else None, kb.vocab)
    first: dict[str, object] = {}  # each record file left out for its errors, with its first error
    loaded = {s.id for s in report.studies}  # a record whose only errors are across files (a link) is kept
    for p in report.problems:
        if p.severity == "error" and Path(p.file).stem not in loaded:
            first.setdefault(p.file, p)
    answer["files_left_out"] = [{"file": p.file, "line": p.line, "message": p.message} for p in first.values()]
    return answer


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

    def left_out(w, c) -> list[Excluded]:
        here = [e for e in excluded if e.concerns(w, c)]
        if req.ids:  # a listed record whose numbers are all in other cells is accounted for in this one too
            here += listed_in_other_cells(req.ids, rows, excluded, w, c, describe=lambda w2, c2: cell_label(
                req.protocol, w2, c2, vocab))
        return here

    if len(found) <= 1:
        w, c = found[0] if found else (req.window, req.comparator_class)
        return analyse_rows(rows, left_out(w, c), req, summary, vocab, loo=loo)
    analyses, not_pooled = [], []
    for w, c in found:
        sub = [r for r in rows if (r.window, r.cls) == (w, c)]
        try:
            analyses.append(analyse_rows(sub, left_out(w, c), req, summary, vocab, loo=loo))
        except SynthesisError as e:
            not_pooled.append({"window": _window_info(req.protocol, w), "comparator_class": _class_info(req.protocol, c, vocab),
                               "message": e.message, "hint": e.hint})
    label = vocab.label if vocab is not None else (lambda _cat, term: term)
    return {"outcome": req.outcome, "condition": req.condition,
            "outcome_label": label("outcome", req.outcome),
            "condition_label": label("condition", req.condition) if req.condition else None,
            "analyses": analyses, "not_pooled": not_pooled,
            "excluded": [e.as_dict() for e in excluded if e.window is None and e.cls is None]}


def cell_label(protocol: Protocol, window_id: str | None, class_id: str | None, vocab=None) -> str:
    """'about 24 h, inert placebo (saline)': a time window and a comparator class in words."""
    w = protocol.window(window_id) if window_id else None
    c = _class_info(protocol, class_id, vocab)
    return ", ".join(x for x in (w.label if w else window_id, c["label"] if c else None) if x)


def _window_info(protocol: Protocol, window_id: str | None) -> dict | None:
    w = protocol.window(window_id) if window_id else None
    return w.as_dict() if w else None


def _class_info(protocol: Protocol, class_id: str | None, vocab) -> dict | None:
    """A comparator class as results carry it: a protocol class, or one comparator named on its own."""
    if class_id is None:
        return None
    c = protocol.comparator_class(class_id)
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
        window=_window_info(req.protocol, window_id), comparator_class=_class_info(req.protocol, class_id, vocab),
        single_study=result["k"] == 1,
        definition=vocab.categories["outcome"][req.outcome].description
        if vocab is not None and req.outcome in vocab.categories.get("outcome", {}) else None,
        options={"comparators": list(req.comparators or req.protocol.controls()), "crossover": req.crossover,
                 "derived": req.derived, "non_iv": req.non_iv, "esketamine": req.esketamine,
                 "any_condition": req.any_condition, "timepoint": req.timepoint, "window": req.window,
                 "comparator_class": req.comparator_class, "combine_placebos": req.combine_placebos,
                 "smd_variant": req.smd_variant, "knha": req.knha, "level": req.level, "ids": list(req.ids)},
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


# -- effect sizes -------------------------------------------------------------------


MAX_EFFECT = 1e6
"""Effects (log ratios, SMDs, differences in a scale's points) beyond this are not data but typos."""
MIN_VARIANCE, MAX_VARIANCE = 1e-12, 1e12
"""Sampling variances outside these make the weights' sums overflow or vanish: such a row is left out."""


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
        except (ArithmeticError, ValueError):  # numbers the schema lets through (an SD of 1e300) but arithmetic cannot
            excluded.append(Excluded(r.id, "data cannot be used: the numbers give an effect or a variance out of any "
                                           "plausible range (overflow)"))
            continue
        if not (abs(r.yi) <= MAX_EFFECT and MIN_VARIANCE <= r.vi <= MAX_VARIANCE):  # NaN fails too
            excluded.append(Excluded(r.id, "data cannot be used: the numbers give an effect or a variance out of any "
                                           f"plausible range (yi {r.yi:.3g}, vi {r.vi:.3g})"))
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
    except ArithmeticError as e:  # a safety net: the range checks in _effects keep the sums finite
        raise SynthesisError(f"the numbers cannot be pooled: {e}") from None


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
            "risk_of_bias": r.rob, "risk_of_bias_assessment": r.rob_detail, "fields": r.fields,
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
        "egger_note": None,
    }
    if len(rows) >= 10:
        try:
            e = M.egger([r.yi for r in rows], [r.vi for r in rows])
        except M.PoolingError as err:  # identical study data and the like: not testable, never a p-value
            out["egger_note"] = str(err)
        else:
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
    # shares rounded so that two results of 25% reach 50% whatever the float sums
    high = round(sum(weights[r.id] for r in rows if r.rob in HIGH_RISK), 9)
    concerns = round(sum(weights[r.id] for r in rows if r.rob not in HIGH_RISK and r.rob not in LOW_RISK), 9)
    unassessed = round(sum(weights[r.id] for r in rows if r.rob is None), 9)
    note = f"; results not assessed carry {unassessed:.0%} and count with some concerns" if unassessed else ""
    if high >= 0.5:
        reasons.append({"domain": "risk_of_bias", "change": -2,
                        "text": f"results at high risk of bias carry {high:.0%} of the weight{note}"})
    elif high >= 0.25:
        reasons.append({"domain": "risk_of_bias", "change": -1,
                        "text": f"results at high risk of bias carry {high:.0%} of the weight{note}"})
    elif high + concerns >= 0.5 and not high and concerns == unassessed:
        reasons.append({"domain": "risk_of_bias", "change": -1,
                        "text": f"risk of bias not assessed for results carrying {unassessed:.0%} of the weight "
                                "(counted with some concerns)"})
    elif high + concerns >= 0.5:
        reasons.append({"domain": "risk_of_bias", "change": -1,
                        "text": f"results at high risk of bias or with some concerns carry {high + concerns:.0%} of the "
                                f"weight (high: {high:.0%}){note}"})
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
    elif result.get("egger_note"):
        reasons.append({"domain": "publication_bias", "change": 0, "text": f"Egger's test {result['egger_note']}"})
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


# -- every analysis of a knowledge base -------------------------------------------------

def analysis_id(key: tuple) -> str:
    """An analysis' id, as bottom lines cite it and the changes page lists it:
    condition/outcome/window/comparator-class, e.g. ``depression/response/24h/inert-placebo``."""
    return "/".join(x for x in key if x)


def pooled_measure(rows: list[Row]) -> str | None:
    """kb meta's default measure, except that when studies report the same outcome both as events
    and as means, the whole-knowledge-base analyses pool the larger group (RR or SMD) and list the
    others as left out, where kb meta asks for --measure."""
    kinds = [r.kind for r in rows]
    binary, continuous = kinds.count("binary"), kinds.count("continuous")
    if binary and continuous:
        return "rr" if binary >= continuous else "smd"
    return None


def analyse_groups(groups: dict, with_data: set, protocol: Protocol, summaries: dict, vocab,
                   loo_max: int | None = None) -> dict[tuple, dict]:
    """Every analysis of a knowledge base: ``groups`` maps (condition, outcome) to (rows, entries left
    out); ``with_data`` is every (condition, outcome) some evidence record has numbers for. One
    analysis per time window and comparator class (never pooled together), keyed (condition, outcome,
    window, class), each ``{"ok": True, "result": ...}`` or ``{"ok": False, "message", "hint",
    "excluded"}``; a pair nothing could be pooled from is keyed with window and class None. In
    protocol order (windows, then classes)."""
    analyses: dict[tuple, dict] = {}
    for key in sorted(with_data):
        cond, outcome = key
        rows, excluded = groups.get(key, ([], []))
        pooled = False
        for window, cls in cells(rows, protocol):
            cell = [r for r in rows if (r.window, r.cls) == (window, cls)]
            req = MetaRequest(outcome=outcome, condition=cond, measure=pooled_measure(cell), protocol=protocol)
            left = [x for x in excluded if x.concerns(window, cls)]
            loo = loo_max is None or len(cell) <= loo_max
            try:
                result = analyse_rows(cell, left, req, summaries.get(cond), vocab, loo=loo)
                analyses[(cond, outcome, window, cls)] = {"ok": True, "result": result}
                pooled = True
            except KbError as e:
                analyses[(cond, outcome, window, cls)] = {"ok": False, "message": e.message, "hint": e.hint,
                                                          "excluded": [x.as_dict() for x in left]}
        if not pooled and not any(k[:2] == key for k in analyses):
            analyses[(cond, outcome, None, None)] = {
                "ok": False, "message": _nothing_message(MetaRequest(outcome=outcome, condition=cond), excluded),
                "excluded": [x.as_dict() for x in excluded]}
    w = [x.id for x in protocol.windows]
    c = [x.id for x in protocol.classes] + [COMBINED.id]

    def order(item):
        (cond, outcome, window, cls), _ = item
        return (cond, outcome, w.index(window) if window in w else len(w), c.index(cls) if cls in c else len(c),
                str(window), str(cls))
    return dict(sorted(analyses.items(), key=order))


def analyse_studies(studies, protocol: Protocol, vocab, summaries: dict | None = None,
                    loo_max: int | None = None) -> dict[tuple, dict]:
    """:func:`analyse_groups` over loaded records (the site does the same from its cached digests):
    every analysis kb meta's defaults make, keyed (condition, outcome, window, class)."""
    groups: dict[tuple[str, str], tuple[list, list]] = {}
    with_data: set = set()
    for s in sorted(studies, key=lambda s: s.id):
        outcomes = sorted({o.outcome for o in s.outcomes})
        if s.is_evidence:
            with_data.update((c, o.outcome) for c in s.condition_terms for o in s.outcomes if o.data is not None)
        for cond in dict.fromkeys(s.condition_terms):
            for outcome in outcomes:
                req = MetaRequest(outcome=outcome, condition=cond, protocol=protocol, outcome_condition=(
                    vocab.meaning("outcome", outcome).get("condition") if vocab is not None else None))
                seen, rows, excluded = select_one(s, req)
                if seen:
                    found, out = groups.setdefault((cond, outcome), ([], []))
                    found.extend(rows)
                    out.extend(excluded)
    return analyse_groups(groups, with_data, protocol, summaries or {}, vocab, loo_max)


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
