"""Risk-of-bias pictures of one analysis, as robvis draws them, rendered from a Jinja template
(templates/_robplot.svg).

Two parts, laid out here and drawn by the template:

- a traffic-light table: one row per trial of the analysis, one column per domain of the tool that
  judged it, and the overall judgement; each mark a coloured circle *with a symbol* (+ low, − some
  concerns or unclear, × high, ! critical, ? no information; a hollow circle for a domain the
  assessment does not judge), so colour is never the only cue;
- a summary bar per domain weighted by each trial's weight in the analysis (robvis's
  ``rob_summary(weighted = TRUE)``): the share of the analysis's weight judged low, some concerns, high...

An analysis may mix tools (a Cochrane review's RoB 1 for some trials, kb's own RoB 2 for others). Their
domains are not the same, so each tool gets its own block, in its own domains and words
(kb/data/vocabulary.yaml, :data:`kb.records.ROB_SCALES`), and its own summary bars. Shares are always of
the whole analysis's weight: the weight of trials judged with another tool, and of trials not assessed,
completes each bar to 100%. Trials without an assessment are a block of their own, "not assessed".

The judgement of each trial is the one :func:`kb.selection.rob_assessment` carries in the result's
``studies[].risk_of_bias_assessment``: the result's own assessment, else the trial's default, with the
overall judgement kb derives from the domains when the reviewer gave none (the rule of
:func:`kb.records.rob_overall`, applied there, not here). The same layout feeds the data tables that sit
next to the picture (templates/_sof.html), so the two cannot disagree.
"""

from __future__ import annotations

import re

from .forest import text_width
from .records import ROB_OTHER, ROB_SCALES, ROB_TOOL_NAMES

# the look of a judgement: (symbol, fill, ink). The same meaning looks the same across tools; each tool
# keeps its own words in the legend and the tables (RoB 1's "unclear" is not RoB 2's "some concerns").
LOOKS = {
    "low": ("+", "#1b7837", "#ffffff"),
    "concerns": ("−", "#f1c232", "#1a1a1a"),
    "high": ("×", "#b2182b", "#ffffff"),
    "critical": ("!", "#5c0011", "#ffffff"),
    "no-information": ("?", "#9ecae1", "#1a1a1a"),
}
# judgement term (rob1_judgement, rob2_judgement, rob_judgement) -> look
LOOK_OF = {"low": "low", "unclear": "concerns", "some-concerns": "concerns", "moderate": "concerns",
           "high": "high", "serious": "high", "critical": "critical", "no-information": "no-information"}
# what is not a judgement: (label in the legend and tables, symbol in the tables)
NOT_JUDGED = "not-judged"  # the assessment gives no judgement for this domain
NOT_APPLICABLE = "not-applicable"  # RoB 2's carryover domain for a parallel trial
OTHER_TOOL = "other-tool"  # summary bars: weight of trials judged with another tool
NOT_ASSESSED = "not-assessed"  # no assessment recorded
OTHER_LABELS = {
    NOT_JUDGED: "not judged in this assessment",
    NOT_APPLICABLE: "not applicable (parallel trial)",
    OTHER_TOOL: "judged with another tool",
    NOT_ASSESSED: "not assessed",
}
OTHER_SHORT = {NOT_JUDGED: "not judged", NOT_APPLICABLE: "n/a", OTHER_TOOL: "other tool", NOT_ASSESSED: "not assessed"}
OTHER_FILLS = {NOT_JUDGED: "#ffffff", NOT_APPLICABLE: "#ffffff", OTHER_TOOL: "#d4d4d4", NOT_ASSESSED: "#ffffff"}
CROSSOVER = "crossover-rct"
CARRYOVER = "carryover"  # RoB 2's domain for crossover trials only

PAD = 8
ROW_H = 24
COL_W = 24
RADIUS = 9
OVERALL_W = 54
WEIGHT_W = 56
LABEL_MIN = 96
BAR_H = 16
BAR_ROW = 22
BAR_MIN = 240
LEGEND_H = 20


def assessment(study: dict) -> dict | None:
    """The risk-of-bias assessment a result's study entry carries (None: not assessed)."""
    return study.get("risk_of_bias_assessment")


def tool_name(tool: str, vocab) -> str:
    """"Cochrane RoB 2", as the vocabulary names the tool."""
    return vocab.label("rob_tool", tool)


def short_name(tool: str, vocab) -> str:
    """"RoB 2", for places where the tool is named beside a judgement."""
    return ROB_TOOL_NAMES.get(tool) or vocab.label("rob_tool", tool)


def judgement_label(tool: str, term: str, vocab) -> str:
    """A judgement in the tool's own words ("Unclear risk" for RoB 1, "Some concerns" for RoB 2)."""
    return vocab.label(ROB_SCALES.get(tool, ROB_OTHER)[0], term)


def _pct(share: float) -> str:
    """A share of the weight as a whole percentage ("<1%" for a sliver, never "0%" for something)."""
    p = share * 100
    return "<1%" if 0 < p < 0.5 else f"{p:.0f}%"


def domains_of(tool: str, assessments: list[dict], designs: list[str | None], vocab) -> list[dict]:
    """The columns of a tool's block: the tool's domains in its own order, each with a short code ("D1",
    "DS") and its name. RoB 1: all seven; RoB 2: the five, and carryover when a trial of the block is a
    crossover trial (or judges it); another tool: the domains its assessments name, in their order."""
    cat = ROB_SCALES.get(tool, ROB_OTHER)[1]
    if cat is None:
        terms = list(dict.fromkeys(d for a in assessments for d in a["domains"]))
        return [{"term": t, "code": f"D{i + 1}", "name": t} for i, t in enumerate(terms)]
    out = []
    for i, term in enumerate(vocab.terms(cat)):
        if term == CARRYOVER and not (CROSSOVER in designs or any(term in a["domains"] for a in assessments)):
            continue
        label = vocab.label(cat, term)
        m = re.match(r"^(D\w{1,2}):\s*(.+)$", label)
        code, name = (m.group(1), m.group(2)[:1].upper() + m.group(2)[1:]) if m else (f"D{i + 1}", label)
        out.append({"term": term, "code": code, "name": name})
    return out


def _judged(tool: str, term: str | None, vocab) -> dict:
    """A mark for one judgement (or for a missing one: term None)."""
    if term is None:
        return {"key": NOT_JUDGED, "look": None, "label": OTHER_LABELS[NOT_JUDGED], "symbol": "", "fill": "", "ink": ""}
    look = LOOK_OF.get(term, "no-information")
    symbol, fill, ink = LOOKS[look]
    return {"key": term, "look": look, "label": judgement_label(tool, term, vocab), "symbol": symbol, "fill": fill,
            "ink": ink}


def _cell(tool: str, domain: str, a: dict, design: str | None, vocab) -> dict:
    if domain in a["domains"]:
        return _judged(tool, a["domains"][domain], vocab)
    if tool == "rob2" and domain == CARRYOVER and design != CROSSOVER:
        return {"key": NOT_APPLICABLE, "look": None, "label": OTHER_LABELS[NOT_APPLICABLE], "symbol": "",
                "fill": "", "ink": ""}
    return _judged(tool, None, vocab)


def _order(vocab, tools) -> list[str]:
    """The tools present, in the vocabulary's order (RoB 2, RoB 1, ROBINS-I, ...)."""
    known = vocab.terms("rob_tool")
    return sorted(set(tools), key=lambda t: (known.index(t) if t in known else len(known), t))


def summary_bars(block: dict, weights: dict[str, float], others: float, unassessed: float) -> list[dict]:
    """The weighted summary of one tool's block: per domain (and Overall) the share of the whole
    analysis's weight in each judgement of the tool, then not judged / not applicable, then the weight
    judged with another tool (``others``) and not assessed (``unassessed``). Each bar sums to 1."""
    bars = []
    scale = block["scale"]  # the tool's judgement terms, in its order
    columns = [(d["code"], d["name"], i) for i, d in enumerate(block["domains"])] + [("Overall", "Overall", None)]
    for code, name, i in columns:
        shares: dict[str, float] = {}
        for row in block["rows"]:
            mark = row["overall"] if i is None else row["cells"][i]
            shares[mark["key"]] = shares.get(mark["key"], 0.0) + weights[row["id"]]
        keys = [t for t in scale if t in shares] + [k for k in shares if k not in scale]
        segments = [{"key": k, "share": shares[k]} for k in keys]
        segments += [{"key": OTHER_TOOL, "share": others}, {"key": NOT_ASSESSED, "share": unassessed}]
        bars.append({"code": code, "name": name, "segments": [s for s in segments if s["share"] > 0]})
    return bars


def layout(result: dict, vocab, uid: str = "rob", trials: bool = True) -> dict:
    """Everything the template and the data tables need: one block per tool (and one of trials not
    assessed), each row's marks, the summary bars with pixel positions, the legend, title and desc.
    ``trials=False`` draws the summary bars only (an analysis too large to list trial by trial)."""
    studies = result["studies"]
    total = sum(s["weight"] for s in studies)
    weights = {s["id"]: (s["weight"] / total if total > 0 else 1 / len(studies)) for s in studies}
    by_tool: dict[str, list[dict]] = {}
    unassessed_studies = []
    for s in studies:
        a = assessment(s)
        if a is None:
            unassessed_studies.append(s)
        else:
            by_tool.setdefault(a["tool"], []).append(s)
    unassessed = sum(weights[s["id"]] for s in unassessed_studies)
    blocks = []
    for tool in _order(vocab, by_tool):
        members = by_tool[tool]
        domains = domains_of(tool, [assessment(s) for s in members], [s.get("design") for s in members], vocab)
        rows = []
        for s in members:
            a = assessment(s)
            rows.append({
                "id": s["id"], "label": s["label"], "weight": s["weight"], "weight_text": f"{s['weight']:.1f}%",
                "cells": [_cell(tool, d["term"], a, s.get("design"), vocab) for d in domains],
                "overall": _judged(tool, a["judgement"], vocab), "derived": bool(a.get("derived")),
                "source": a.get("source"), "assessed_by": a.get("assessed_by"), "verified_by": a.get("verified_by"),
                "single": bool(a.get("single_assessor", not a.get("verified_by"))),
                "applies_to": a.get("applies_to", "trial"),
            })
        share = sum(weights[s["id"]] for s in members)
        block = {"tool": tool, "name": tool_name(tool, vocab), "short": short_name(tool, vocab), "domains": domains,
                 "rows": rows, "share": share, "share_text": _pct(share),
                 "scale": vocab.terms(ROB_SCALES.get(tool, ROB_OTHER)[0])}
        others = sum(weights[s["id"]] for t, group in by_tool.items() if t != tool for s in group)
        block["summary"] = summary_bars(block, weights, others, unassessed)
        block["rest_text"] = _pct(others + unassessed)
        block["rest_label"] = " or ".join(OTHER_LABELS[k] for k, v in ((OTHER_TOOL, others), (NOT_ASSESSED, unassessed)) if v)
        blocks.append(block)
    missing = {"rows": [{"id": s["id"], "label": s["label"], "weight": s["weight"], "weight_text": f"{s['weight']:.1f}%"}
                        for s in unassessed_studies], "share": unassessed, "share_text": _pct(unassessed)}
    out = {"uid": uid, "blocks": blocks, "missing": missing if unassessed_studies else None, "trials": trials,
           "k": len(studies), "single": sum(r["single"] for b in blocks for r in b["rows"]), "looks": styles()}
    out.update(_geometry(out, vocab))
    out["title"], out["desc"] = _words(result, out, vocab)
    return out


def _label_text(row: dict) -> str:
    return row["label"] + (" *" if row.get("single") else "")


def _flow(items: list[dict], x0: float, width: float, y: float) -> tuple[list[dict], float]:
    """Legend items (each with ``w``, its width) placed left to right, wrapping at ``width``."""
    x, placed = x0, []
    for it in items:
        if x > x0 and x + it["w"] > x0 + width:
            x, y = x0, y + LEGEND_H
        placed.append({**it, "x": round(x, 1), "y": y})
        x += it["w"] + 14
    return placed, y + LEGEND_H


def _legend_items(out: dict, vocab) -> list[dict]:
    """The marks of the traffic-light table, each once, in each tool's words."""
    seen: dict[str, dict[str, list[str]]] = {}  # look -> label -> tools
    others: list[str] = []
    for b in out["blocks"]:
        terms = set(b["scale"]) if b["tool"] in ROB_SCALES else {m["key"] for r in b["rows"] for m in r["cells"] + [r["overall"]]}
        for term in b["scale"]:
            if term in terms:
                look = LOOK_OF.get(term, "no-information")
                seen.setdefault(look, {}).setdefault(judgement_label(b["tool"], term, vocab), []).append(b["short"])
        for r in b["rows"]:
            for m in r["cells"]:
                if m["look"] is None and m["key"] not in others:
                    others.append(m["key"])
    items = []
    for look in LOOKS:
        if look not in seen:
            continue
        labels = seen[look]
        text = " / ".join(lab if len(labels) == 1 else f"{lab} ({', '.join(dict.fromkeys(tools))})"
                                     for lab, tools in labels.items())
        symbol, fill, ink = LOOKS[look]
        items.append({"kind": "mark", "look": look, "symbol": symbol, "fill": fill, "ink": ink, "text": text,
                      "w": 2 * RADIUS + 6 + text_width(text)})
    for key in (NOT_JUDGED, NOT_APPLICABLE):
        if key in others:
            items.append({"kind": key, "symbol": "", "fill": "", "ink": "", "text": OTHER_LABELS[key],
                          "w": 2 * RADIUS + 6 + text_width(OTHER_LABELS[key])})
    if out["single"]:
        text = "* a single assessor's judgement"
        items.append({"kind": "note", "symbol": "", "fill": "", "ink": "", "text": text, "w": text_width(text)})
    return items


def _bar_legend(out: dict, vocab) -> list[dict]:
    """The fills of the summary bars, each once, in each tool's words."""
    items, seen = [], set()
    for b in out["blocks"]:
        for bar in b["summary"]:
            for seg in bar["segments"]:
                key = seg["key"]
                text = seg["label"] if key in OTHER_LABELS or len(out["blocks"]) == 1 else f"{seg['label']} ({b['short']})"
                if text in seen:
                    continue
                seen.add(text)
                items.append({"key": key, "symbol": seg["symbol"], "fill": seg["fill"], "ink": seg["ink"],
                              "cls": seg["cls"], "ink_cls": seg["ink_cls"], "text": text, "w": 22 + text_width(text)})
    order = {k: i for i, k in enumerate(LOOKS)}
    items.sort(key=lambda it: (it["key"] in OTHER_LABELS,
                               list(OTHER_LABELS).index(it["key"]) if it["key"] in OTHER_LABELS
                               else order.get(LOOK_OF.get(it["key"], ""), 9)))
    return items


def _geometry(out: dict, vocab) -> dict:
    """Pixel positions of every block, row, mark, bar and legend item."""
    rows = [r for b in out["blocks"] for r in b["rows"]] + (out["missing"]["rows"] if out["missing"] else [])
    left = max([LABEL_MIN] + [text_width(_label_text(r)) + PAD + 12 for r in rows]) if out["trials"] else LABEL_MIN
    left = round(left)
    cols = max([len(b["domains"]) for b in out["blocks"]] + [5])
    light_w = left + cols * COL_W + OVERALL_W + WEIGHT_W + PAD
    # summary bars: codes on the left ("Overall" the widest), the bar to the right edge
    bar_x = PAD + round(text_width("Overall", bold=True)) + 10
    width = max(light_w, bar_x + BAR_MIN + PAD)
    y = PAD
    for b in out["blocks"]:
        for seg_bar in b["summary"]:
            for seg in seg_bar["segments"]:
                seg.update(_segment_look(b["tool"], seg["key"], vocab))
    if out["trials"]:
        for b in out["blocks"]:
            b["title_y"] = y + 14
            b["head_y"] = y + 34
            b["cols"] = [{**d, "x": left + i * COL_W + COL_W / 2} for i, d in enumerate(b["domains"])]
            b["overall_x"] = left + len(b["domains"]) * COL_W + OVERALL_W / 2
            y += 42
            for r in b["rows"]:
                r["y"] = y + ROW_H / 2
                r["text"] = _label_text(r)
                for c, col in zip(r["cells"], b["cols"]):
                    c["x"] = col["x"]
                r["overall"]["x"] = b["overall_x"]
                r["marks"] = r["cells"] + [r["overall"]]
                y += ROW_H
            y += 10
        if out["missing"]:
            m = out["missing"]
            m["title_y"] = y + 14
            m["head_y"] = y + 34
            y += 42
            for r in m["rows"]:
                r["y"] = y + ROW_H / 2
                r["text"] = r["label"]
                y += ROW_H
            y += 10
        out["legend"], y = _flow(_legend_items(out, vocab), PAD, width - 2 * PAD, y + 8)
    else:
        out["legend"] = []
    # the weighted summary
    summary_y = y + 18
    y = summary_y + 10
    bar_w = width - bar_x - PAD
    for b in out["blocks"]:
        b["bars_title_y"] = y + 18
        y += 28
        for bar in b["summary"]:
            bar["y"] = y
            x = bar_x
            for seg in bar["segments"]:
                w = seg["share"] * bar_w
                seg.update(x=round(x, 2), w=round(w, 2), pct=_pct(seg["share"]))
                short = seg["symbol"] or OTHER_SHORT.get(seg["key"], "")
                fits = [t for t in (f"{short} {seg['pct']}", seg["pct"] if not seg["symbol"] else seg["symbol"])
                        if w >= text_width(t, bold=True, size=11) + 6]
                seg["text"] = fits[0] if fits else ""
                x += w
            y += BAR_ROW
        y += 4
    if not out["blocks"]:  # nothing assessed: one bar says so
        out["none_y"] = y + 18
        y += 28
    bar_legend, y = _flow(_bar_legend(out, vocab), PAD, width - 2 * PAD, y + 8)
    return {"width": round(width), "height": round(y + PAD), "left": left, "bar_x": bar_x, "bar_w": bar_w,
            "summary_y": summary_y, "bar_legend": bar_legend, "weight_x": width - PAD}


def _segment_look(tool: str, key: str, vocab) -> dict:
    """A summary segment's label, symbol and style classes (``rb-f-*`` fills, ``rb-i-*`` inks: :func:`styles`)."""
    if key in OTHER_LABELS:  # not assessed is hatched (its fill is the picture's pattern, not a class)
        return {"label": OTHER_LABELS[key], "symbol": "", "fill": OTHER_FILLS[key], "ink": "#1a1a1a",
                "cls": "" if key == NOT_ASSESSED else f"rb-f-{key}", "ink_cls": "rb-text"}
    look = LOOK_OF.get(key, "no-information")
    symbol, fill, ink = LOOKS[look]
    return {"label": judgement_label(tool, key, vocab), "symbol": symbol, "fill": fill, "ink": ink,
            "cls": f"rb-f-{look}", "ink_cls": f"rb-i-{look}"}


def styles() -> list[dict]:
    """The fill and ink of each look, and the fills of the segments that are not judgements, for the
    picture's stylesheet (class ``rb-f-<key>`` fills a mark or segment, ``rb-i-<key>`` inks its symbol)."""
    return [{"key": k, "fill": fill, "ink": ink} for k, (_, fill, ink) in LOOKS.items()] + [
        {"key": k, "fill": OTHER_FILLS[k], "ink": "#1a1a1a"} for k in (NOT_JUDGED, NOT_APPLICABLE, OTHER_TOOL)]


def _words(result: dict, out: dict, vocab) -> tuple[str, str]:
    """The <title> and the <desc>: the picture in words, overall judgements by share of weight."""
    outcome = vocab.label("outcome", result["outcome"]) if result.get("outcome") else "this analysis"
    where = "".join(x for x in (f", {result['window']['label']}" if result.get("window") else "",
                                f", vs {result['comparator_class']['label']}" if result.get("comparator_class") else ""))
    title = f"Risk of bias: {outcome}{where}"
    k = out["k"]
    parts = [f"Risk of bias of the {k} {'trial' if k == 1 else 'trials'} in this analysis, by the share of its weight."]
    for b in out["blocks"]:
        n = len(b["rows"])
        overall = b["summary"][-1]["segments"]
        judged = [f"{s['label'].lower()} {s['pct']}" for s in overall if s["key"] not in (OTHER_TOOL, NOT_ASSESSED)]
        parts.append(f"{b['name']}, {n} {'trial' if n == 1 else 'trials'} ({', '.join(r['label'] for r in b['rows'])}), "
                     f"{b['share_text']} of the weight: overall {', '.join(judged)}.")
    if out["missing"]:
        rows = out["missing"]["rows"]
        parts.append(f"Not assessed: {len(rows)} {'trial' if len(rows) == 1 else 'trials'} "
                     f"({', '.join(r['label'] for r in rows)}), {out['missing']['share_text']} of the weight.")
    if out["single"]:
        parts.append(f"{out['single']} of the judgements {'is' if out['single'] == 1 else 'are'} a single assessor's.")
    return title, " ".join(parts)


TEXT_SYMBOLS = {"low": "+", "concerns": "-", "high": "x", "critical": "!", "no-information": "?",
                NOT_JUDGED: ".", NOT_APPLICABLE: "n/a"}
TEXT_KEY = "+ low, - some concerns or unclear, x high, ! critical, ? no information, . not judged, n/a not applicable"


def text_lines(result: dict, vocab) -> list[str]:
    """The picture as plain text lines for ``kb meta --format text``: per trial its tool, each domain's
    mark (ASCII), the overall judgement in the tool's words and whether one assessor alone judged it."""
    p = layout(result, vocab, trials=True)
    lines = []
    for b in p["blocks"]:
        for r in b["rows"]:
            marks = " ".join(f"{d['code']} {TEXT_SYMBOLS[c['look'] or c['key']]}" for d, c in zip(b["domains"], r["cells"]))
            notes = "; ".join(n for n, on in (("derived from the domains", r["derived"]),
                                              ("a single assessor's", r["single"])) if on)
            lines.append(f"{r['label']:<24} {b['short']:<8} {marks + '  ' if marks else ''}overall "
                         f"{r['overall']['label'].lower()}" + (f" ({notes})" if notes else ""))
    for r in (p["missing"] or {"rows": []})["rows"]:
        lines.append(f"{r['label']:<24} not assessed")
    return lines


def robplot_svg(result: dict, kb=None, uid: str = "rob", env=None, trials: bool = True) -> str:
    """The SVG of one analysis (``result`` as :func:`kb.synthesis.analyse_rows` gives it)."""
    from .templating import make_env
    from .vocab import load_vocabulary

    env = env or make_env(kb)
    vocab = kb.vocab if kb is not None else load_vocabulary()
    return env.get_template("_robplot.svg").render(p=layout(result, vocab, uid, trials))
