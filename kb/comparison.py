"""kb and the published meta-analyses: each review's reported results beside kb's answer to the
same question, and, where a review can be reproduced, kb's pool of that review's own trials.

A review record (design meta-analysis or systematic-review) holds the review's results as outcome
entries, with numbers as ``data: {type: effect}`` (measure, estimate, CI, k, participants and the
review's own certainty) or, when it reports none kb could read, in words. Each trial the review
included links to it with ``related: pooled-in``. ``comparisons/<review-id>.yaml``
(:mod:`kb.review_notes`) says whether kb reproduces the review or only sets its results beside
kb's, and lists, per reproduced analysis, the trials that may belong to it.

For every reported result, one row per question (condition, outcome, time window, comparator class):

- the review's k, effect, CI and certainty, as its record gives them;
- kb's answer to the same question with kb meta's defaults (every eligible trial kb holds);
- how many of the trials the review included kb holds (``pooled-in``), and how many of those give
  numbers to kb's analysis;
- for a reproduced review: kb's pool restricted to those trials (``kb meta --ids``), with the review's
  measure and the model its notes name, whether it agrees to the review's printed precision, and, for
  every trial that may belong to the analysis, why it is or is not in kb's pool: kb pools its numbers;
  kb holds the trial but gives no numbers here (the selection's reasons and the record's
  "No ..." note); kb does not hold it (the notes' reason); or the review's inclusion of it is
  not established.

A question without a time point (the review pools over time) is matched with each of kb's time
windows that have data; a review that pools saline and midazolam together ("mixed" controls) is
matched with kb's inert and active placebo analyses apart, as kb's protocol keeps them.

The same rows feed ``kb compare`` and the site's comparison page (from :func:`compare_kb`, or from the
site's digests through :func:`compare`), so the two cannot drift.
"""

from __future__ import annotations

import re
from typing import Callable

from . import synthesis as S
from .effects import MEASURE_LABELS
from .errors import KbError, NotFound
from .review_notes import MEMBERSHIP, ReviewNotes

PRECISION = 2  # decimals the reviews print their estimates and CIs with
_SENTENCE = re.compile(r"(?<=[.;])\s+(?=[A-Z])")
# the records' own statements of what numbers are missing ("No poolable numbers: ...", "No 24-h numbers: ...",
# "No response counts per condition were found.")
_NO_NUMBERS = re.compile(r"^No\b[^.]*?\b(?:numbers|counts|data)\b")

RowsOf = Callable[[str, str, "str | None"], "tuple[list[S.Row], list[S.Excluded]]"]


class ComparisonError(KbError):
    """A comparisons/ file does not fit its review's record (exit 1)."""


# -- what the comparison needs of one record (plain data: the site keeps it in the digest) ---------


def no_numbers_notes(notes: str | None) -> list[str]:
    """The sentences of a record's notes that say which numbers could not be found and why."""
    if not notes:
        return []
    return [s.strip() for s in _SENTENCE.split(notes) if _NO_NUMBERS.match(s.strip())]


def record_facts(s) -> dict:
    """What the comparison needs of one record, as plain data."""
    entries = []
    if s.design in S.PUBLISHED_REVIEWS:
        default = s.comparator.type if s.comparator else None
        for i, o in enumerate(s.outcomes):
            d = o.data if o.data is not None and o.data.type == "effect" else None
            if o.data is not None and d is None:
                continue  # a review's own raw counts are not a reported result
            entries.append({
                "index": i, "outcome": o.outcome, "instrument": o.instrument, "timepoint": o.timepoint,
                "timepoint_days": o.timepoint_days, "comparator": o.comparator or default, "definition": o.definition,
                "measure": d.measure if d else None, "value": d.value if d else None,
                "ci_low": d.ci_low if d else None, "ci_high": d.ci_high if d else None,
                "ci_level": d.ci_level if d else None, "k": d.k if d else None,
                "participants": d.participants if d else None, "certainty": d.certainty if d else None,
                "result": o.result, "pool_note": None if o.pool else (o.pool_note or "marked pool: false"),
                "source_url": o.source.url if o.source else None,
                "source_locator": o.source.locator if o.source else None})
    return {
        "id": s.id, "label": s.label, "year": s.year, "design": s.design, "conditions": s.condition_terms,
        "draft": not s.is_evidence, "retracted": s.retracted,
        "pooled_in": [[r.id, r.note] for r in s.related if r.relation == "pooled-in"],
        "no_numbers": no_numbers_notes(s.notes), "reported": entries,
        "data_outcomes": sorted({o.outcome for o in s.outcomes if o.data is not None}),
    }


# -- the comparison --------------------------------------------------------------------------------


def compare_kb(kb) -> dict:
    """The comparison of every review record of ``kb`` (``kb compare``)."""
    from .load import load_review_notes, load_studies, load_summaries

    report = load_studies(kb)
    studies = report.studies
    facts = {s.id: record_facts(s) for s in studies}
    cache: dict = {}

    def rows_of(cond: str, outcome: str, comparator: str | None):
        key = (cond, outcome, comparator)
        if key not in cache:
            req = S.MetaRequest(outcome=outcome, condition=cond, protocol=kb.protocol,
                                comparators=(comparator,) if comparator else ())
            S.check_request(req, kb.vocab)
            try:
                cache[key] = S.select(studies, req, kb.vocab)
            except NotFound:
                cache[key] = ([], [])
        return cache[key]

    return compare(facts, rows_of, load_review_notes(kb), kb.protocol, kb.vocab, load_summaries(kb))


def compare(facts: dict[str, dict], rows_of: RowsOf, notes: dict[str, ReviewNotes], protocol, vocab,
            summaries: dict | None = None) -> dict:
    """The comparison from each record's :func:`record_facts` and the selection's rows
    (``rows_of(condition, outcome, comparator)``: kb meta's default selection, or with
    ``--comparator C`` for a comparator outside the protocol's classes)."""
    summaries = summaries or {}
    included: dict[str, list[dict]] = {}
    for f in sorted(facts.values(), key=lambda f: f["id"]):
        for review, note in f["pooled_in"]:
            included.setdefault(review, []).append({"id": f["id"], "label": f["label"], "note": note})
    reviews, not_compared = [], []
    for f in sorted(facts.values(), key=lambda f: (f["year"], f["id"])):
        if f["design"] not in S.PUBLISHED_REVIEWS or f["draft"]:
            continue
        if f["retracted"]:
            not_compared.append({"id": f["id"], "label": f["label"], "reason": "retracted publication"})
            continue
        if not f["reported"]:
            not_compared.append({"id": f["id"], "label": f["label"],
                                 "reason": "its record holds no reported result (outcome entries) to set beside kb's"})
            continue
        reviews.append(_review(f, included.get(f["id"], []), notes.get(f["id"]), facts, rows_of, protocol, vocab,
                               summaries))
    for rid in sorted(set(notes) - {r["id"] for r in reviews} - {n["id"] for n in not_compared}):
        if rid not in facts:
            raise ComparisonError(f"comparisons/{rid}.yaml: no record with id '{rid}'",
                                  hint="name the review's record, or remove the file")
        if facts[rid]["design"] not in S.PUBLISHED_REVIEWS:
            raise ComparisonError(f"comparisons/{rid}.yaml: '{rid}' is a {facts[rid]['design']}, not a review or "
                                  "meta-analysis", hint="comparisons/ holds notes on published reviews only")
    return {"reviews": reviews, "not_compared": not_compared, "precision": PRECISION,
            "memberships": MEMBERSHIP}


def _review(f: dict, held: list[dict], n: ReviewNotes | None, facts: dict, rows_of: RowsOf, protocol, vocab,
            summaries: dict) -> dict:
    cond = f["conditions"][0] if f["conditions"] else None
    rows = []
    matched: set[int] = set()
    for e in f["reported"]:
        notes_for = None
        for i, a in enumerate(n.analyses if n is not None else []):
            if (a.outcome, a.comparator, a.timepoint_days) == (e["outcome"], e["comparator"], e["timepoint_days"]):
                notes_for = a
                matched.add(i)
        rows += _rows_for(f, e, cond, held, n, notes_for, facts, rows_of, protocol, vocab, summaries)
    if n is not None:
        for i, a in enumerate(n.analyses):
            if i not in matched:
                raise ComparisonError(
                    f"comparisons/{f['id']}.yaml: analyses[{i}] ({a.outcome}, {a.comparator}, "
                    f"{a.timepoint_days} days) matches no reported result of {f['id']}",
                    hint="its outcome, comparator and timepoint_days must be those of an outcome entry of the review")
    for number, row in enumerate(rows, start=1):
        row["slug"] = f"{f['id']}-{number}"  # the page's anchor of this row
    same = []
    if cond and not any(e["measure"] for e in f["reported"]):
        same = _same_comparison(f, cond, facts, rows_of, protocol, vocab, summaries)
    return {"id": f["id"], "label": f["label"], "year": f["year"], "design": f["design"], "condition": cond,
            "reproduce": bool(n and n.reproduce), "reason": n.reason if n else None,
            "method": n.method if n else None, "method_note": n.method_note if n else None,
            "notes_source": n.source if n else None, "notes_file": f"comparisons/{f['id']}.yaml" if n else None,
            "included": held, "rows": rows, "same_comparison": same}


def _same_comparison(f, cond, facts, rows_of, protocol, vocab, summaries) -> list[dict]:
    """A review that reports no number kb could read: kb's own analyses of the same condition against the
    same comparators, for every outcome some record has numbers for (kb meta's defaults)."""
    outcomes = [o for o in vocab.terms("outcome") if any(o in x["data_outcomes"] for x in facts.values())] \
        if vocab is not None else sorted({o for x in facts.values() for o in x["data_outcomes"]})
    shown = {e["outcome"] for e in f["reported"]}
    outcomes = [o for o in outcomes if o not in shown]  # those have their own rows
    out = []
    label = vocab.label if vocab is not None else (lambda _c, t: t)
    classes = list(dict.fromkeys(c for e in f["reported"] for c in _classes(e["comparator"], protocol)))
    for outcome in outcomes:
        for cls, select_with in classes:
            rows, excluded = rows_of(cond, outcome, select_with)
            for window, c in S.cells(rows, protocol):
                if c != cls:
                    continue
                req = S.MetaRequest(outcome=outcome, condition=cond, protocol=protocol, window=window,
                                    comparator_class=cls, comparators=(select_with,) if select_with else ())
                cell = [r for r in rows if (r.window, r.cls) == (window, cls)]
                win = protocol.window(window) if window else None
                result = _pool(cell, [x for x in excluded if x.concerns(window, cls)], req, summaries.get(cond), vocab)
                if result["ok"]:
                    cls_info = S.class_info(protocol, cls, vocab)
                    out.append({"outcome": outcome, "outcome_label": label("outcome", outcome),
                                "window": win.as_dict() if win else None, "comparator_class": cls_info,
                                "text": f"{label('outcome', outcome)}, {win.label if win else 'no time window'}, "
                                        f"ketamine vs {cls_info['label']}", "kb": result})
    return out


def _classes(comparator: str | None, protocol) -> list[tuple[str, str | None]]:
    """(class id, the comparator to select with) for a review entry's comparator."""
    if comparator in (None, "mixed"):
        return [(c.id, None) for c in protocol.classes]
    cls = next((c for c in protocol.classes if comparator in c.comparators), None)
    return [(cls.id, None)] if cls else [(comparator, comparator)]


def _rows_for(f, e, cond, held, n, notes_for, facts, rows_of, protocol, vocab, summaries) -> list[dict]:
    out = []
    for cls, select_with in _classes(e["comparator"], protocol):
        rows, excluded = rows_of(cond, e["outcome"], select_with) if cond else ([], [])
        if e["timepoint_days"] is not None:
            w = protocol.window_of(e["timepoint_days"])
            windows = [w.id if w else None]
        else:
            windows = [w for w, c in S.cells(rows, protocol) if c == cls] or [None]
        for window in windows:
            out.append(_row(f, e, cond, window, cls, rows, excluded, held, n, notes_for, facts, protocol, vocab,
                            summaries))
    return out


def _pool(cell_rows, left, req, summary, vocab) -> dict:
    """One analysis as the comparison shows it (kb meta's numbers, or why there are none)."""
    try:
        r = S.analyse_rows(cell_rows, left, req, summary, vocab, loo=False)
    except KbError:
        return {"ok": False, "k": 0, "message": "no trial in kb gives numbers for this question",
                "excluded": [x.as_dict() for x in left]}
    m, nat = r["measure"], r["natural"]
    return {"ok": True, "k": r["k"], "measure": m, "measure_label": r["measure_label"], "method": r["method"],
            "method_label": r["method_label"], "estimate": nat["estimate"], "ci_low": nat["ci_low"],
            "ci_high": nat["ci_high"], "text": f"{S.fmt(nat['estimate'], m)} ({S.fmt(nat['ci_low'], m)} to "
                                               f"{S.fmt(nat['ci_high'], m)})",
            "participants": r["participants"], "certainty": r["certainty"]["level"], "sentence": r["sentence"],
            "studies": [{"id": s["id"], "label": s["label"], "data": _data_text(s), "effect": s["effect"]}
                        for s in r["studies"]], "excluded": r["excluded"]}


def _data_text(s: dict) -> str:
    d = s["data"]
    if s["kind"] == "binary":
        text = f"{d['ai']:g}/{d['n1i']:g} vs {d['ci']:g}/{d['n2i']:g}"
    elif s["kind"] == "continuous":
        text = f"{d['m1i']:g} ({d['sd1i']:g}) n={d['n1i']:g} vs {d['m2i']:g} ({d['sd2i']:g}) n={d['n2i']:g}"
    else:
        text = "reported effect"
    return text + "".join(f"; {x}" for x in (s.get("instrument"), s.get("timepoint")) if x)


def _row(f, e, cond, window, cls, rows, excluded, held, n, notes_for, facts, protocol, vocab, summaries) -> dict:
    cell = [r for r in rows if (r.window, r.cls) == (window, cls)]
    left = [x for x in excluded if x.concerns(window, cls)]
    summary = summaries.get(cond)
    win = protocol.window(window) if window else None
    cls_info = S.class_info(protocol, cls, vocab)
    label = vocab.label if vocab is not None else (lambda _c, t: t)
    held_ids = [h["id"] for h in held]
    with_numbers = [r.label for r in cell if r.id in held_ids]
    question = {
        "condition": cond, "condition_label": label("condition", cond) if cond else None,
        "outcome": e["outcome"], "outcome_label": label("outcome", e["outcome"]),
        "window": win.as_dict() if win else None, "comparator_class": cls_info,
        "review_comparator": e["comparator"],
        "window_note": None if e["timepoint_days"] is not None else
        (f"the review states no time point; kb's {win.label} window" if win else
         "the review states no time point; kb has no analysis of this question in any time window"),
        "comparator_note": "the review pooled saline and midazolam controls together; kb keeps inert and active "
                           "placebo apart" if e["comparator"] == "mixed" else None,
    }
    question["text"] = (f"{question['outcome_label']}, {win.label if win else 'time point not stated'}, ketamine vs "
                        f"{cls_info['label'] if cls_info else 'control'}")
    reported = dict(e)
    m = e["measure"]
    reported["measure_label"] = MEASURE_LABELS.get(m, m) if m else None
    reported["text"] = (f"{S.fmt(e['value'], m)} ({S.fmt(e['ci_low'], m)} to {S.fmt(e['ci_high'], m)})"
                        if m and e["ci_low"] is not None and e["ci_high"] is not None
                        else S.fmt(e["value"], m) if m else None)
    req = S.MetaRequest(outcome=e["outcome"], condition=cond, protocol=protocol, window=window,
                        comparator_class=cls, comparators=(cls,) if cls_info and cls not in
                        {c.id for c in protocol.classes} else ())
    row = {"review_id": f["id"], "question": question, "reported": reported,
           "kb": _pool(cell, left, req, summary, vocab),
           "held": {"included": [h["label"] for h in held], "with_numbers": with_numbers},
           "beside": None if n and n.reproduce else (n.reason if n else
                                                     "no notes on this review (comparisons/): set beside kb's "
                                                     "results, not reproduced"),
           "reproduction": None}
    if n is not None and n.reproduce and notes_for is not None and m and window is not None:
        row["reproduction"] = _reproduce(e, cond, window, cls, rows, excluded, held_ids, n, notes_for, facts,
                                         req, summary, vocab)
    return row


def _reproduce(e, cond, window, cls, rows, excluded, held_ids, n, notes_for, facts, req, summary, vocab) -> dict:
    """kb's pool of the review's trials (kb meta --ids), and why each candidate trial is in it or not."""
    ids = tuple(held_ids)
    labels = {i: facts[i]["label"] for i in ids if i in facts}
    mine = [r for r in rows if r.id in ids]
    left = [x for x in excluded if x.id in ids]
    rreq = S.MetaRequest(**{**vars(req), "measure": e["measure"], "method": n.method, "smd_variant": n.smd_variant,
                            "ids": ids})
    left = left + S.listed_without_entry(ids, mine, left, rreq, labels)
    cell = [r for r in mine if (r.window, r.cls) == (window, cls)]
    cell_left = [x for x in left if x.concerns(window, cls)] + S.listed_in_other_cells(
        ids, mine, left, window, cls, labels, describe=lambda w, c: S.cell_label(req.protocol, w, c, vocab))
    result = _pool(cell, cell_left, rreq, summary, vocab)
    agrees = bool(result["ok"] and result["k"] == e["k"] and all(
        x is not None and round(y, PRECISION) == round(x, PRECISION)
        for x, y in ((e["value"], result["estimate"]), (e["ci_low"], result["ci_low"]), (e["ci_high"], result["ci_high"]))))
    pooled = {s["id"]: s for s in result.get("studies", [])}
    default_cell = {r.id: r for r in rows if (r.window, r.cls) == (window, cls)}
    candidates = []
    for c in notes_for.candidates:
        item = {"trial": c.trial, "id": c.id, "label": facts[c.id]["label"] if c.id in facts else c.trial,
                "membership": c.membership, "membership_text": MEMBERSHIP[c.membership], "basis": c.basis}
        if c.id is None or c.id not in facts:
            item.update(status="not in kb", reasons=[c.reason or "kb holds no record of this trial"])
        elif c.id in pooled:
            item.update(status="pooled", reasons=[f"kb pools its numbers: {pooled[c.id]['data']}"])
        else:
            why = [x.reason for x in excluded if x.id == c.id and x.concerns(window, cls) and _in_window(
                x.days, window, req.protocol)]
            if c.id in default_cell:
                why = [f"kb has numbers for it in this analysis ({_row_data(default_cell[c.id])})"]
            elif not why:
                other = [S.cell_label(req.protocol, r.window, r.cls, vocab) for r in rows if r.id == c.id]
                elsewhere = list(dict.fromkeys(f"{x.timepoint or 'no time point'}: {x.reason}" for x in excluded
                                               if x.id == c.id and x.concerns(window, cls)))
                if other:
                    why = [f"its numbers for this outcome are in another time window or class ({'; '.join(other)})"]
                elif elsewhere:
                    why = [f"its {e['outcome']} entries are for other time points ({'; '.join(elsewhere)})"]
                else:
                    why = [f"the record has no {e['outcome']} entry" + (f" for {cond}" if cond else "")]
            why += facts[c.id]["no_numbers"] + ([c.note] if c.note else [])
            if c.id in held_ids:
                item.update(status="held, no numbers here", reasons=why)
            else:
                item.update(status="held, not linked to the review", reasons=[
                    "not in kb's restricted pool: no record links it to the review (related: pooled-in), because the "
                    "review's inclusion of it is not established"] + why)
        candidates.append(item)
    return {"ids": list(ids), "measure": e["measure"], "method": n.method, "smd_variant": n.smd_variant,
            "result": result, "agrees": agrees, "candidates": candidates,
            "command": _command(e, cond, window, cls, ids, n)}


def _in_window(days: float | None, window: str | None, protocol) -> bool:
    """Whether a left-out entry concerns ``window``: it has no time point, or its time point lies there."""
    if days is None:
        return True
    w = protocol.window_of(days)
    return w is not None and w.id == window


def _row_data(r) -> str:
    v = r.values
    if r.kind == "binary":
        return f"{v['ai']:g}/{v['n1i']:g} vs {v['ci']:g}/{v['n2i']:g}"
    if r.kind == "continuous":
        return f"{v['m1i']:g} ({v['sd1i']:g}) n={v['n1i']:g} vs {v['m2i']:g} ({v['sd2i']:g}) n={v['n2i']:g}"
    return "reported effect"


def _command(e, cond, window, cls, ids, n) -> str:
    """The kb meta command that gives the reproduction's numbers."""
    parts = ["kb meta", f"--condition {cond}", f"--outcome {e['outcome']}", f"--window {window}",
             f"--comparator-class {cls}", f"--measure {e['measure']}", f"--method {n.method}"]
    if n.smd_variant != "metafor" and e["measure"] == "smd":
        parts.append(f"--smd-variant {n.smd_variant}")
    if ids:
        parts.append("--ids " + ",".join(ids))
    return " ".join(parts)
