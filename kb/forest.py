"""Forest plots as SVG, rendered from a Jinja template (templates/_forest.svg).

No plotting stack: the layout (rows, axis, ticks) is computed here and the template draws it, so
the static site can include the same figure inline. The SVG carries a <title> and <desc>, and
:func:`forest_svg` is paired with a data table wherever it is shown.
"""

from __future__ import annotations

import functools
import math

from . import effects as E
from .synthesis import fmt

ROW_H = 22
LEFT = 190  # study labels, at least: wider when a label needs it
PLOT_W = 300
RIGHT = 210  # effect, CI, weight
GAP = 14  # between the longest label and the plot
NARROW_W = 360  # the phone layout: drawn at about its own size in a 390 px wide viewport
NARROW_LINE = 17

# average advance widths (px) of a 12 px system sans-serif; an estimate on the generous side, so that
# the plot starts after the longest label (a browser test checks the real boxes)
_CHAR_W = {"upper": 8.2, "lower": 6.7, "digit": 7.0, "space": 3.5, "narrow": 3.6, "other": 7.4}


@functools.lru_cache(maxsize=8192)  # labels and percentages repeat across plots
def text_width(text: str, bold: bool = False, size: float = 12) -> float:
    """Estimated width in px of ``text`` set in the plot's font."""
    w = 0.0
    for ch in text:
        if ch.isupper():
            w += _CHAR_W["upper"]
        elif ch.islower():
            w += _CHAR_W["lower"]
        elif ch.isdigit():
            w += _CHAR_W["digit"]
        elif ch == " ":
            w += _CHAR_W["space"]
        elif ch in ".,;:'!|()[]ilI":
            w += _CHAR_W["narrow"]
        else:
            w += _CHAR_W["other"]
    return w * (1.08 if bold else 1.0) * size / 12


def _ticks(lo: float, hi: float, ratio: bool) -> list[float]:
    """Axis ticks on the analysis scale (log for ratios), at readable natural values."""
    if ratio:
        candidates = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100]
        ticks = [math.log(c) for c in candidates if lo <= math.log(c) <= hi]
        return ticks if len(ticks) >= 2 else [lo, 0.0, hi] if lo < 0 < hi else [lo, hi]
    span = hi - lo
    step = 10 ** math.floor(math.log10(span / 4)) if span > 0 else 1
    for mult in (1, 2, 5, 10):
        if span / (step * mult) <= 6:
            step *= mult
            break
    first = math.ceil(lo / step) * step
    out, x = [], first
    while x <= hi + 1e-12:
        out.append(round(x, 10))
        x += step
    return out


def layout(result: dict, vocab=None, uid: str = "forest") -> dict:
    """Everything the template needs: rows with pixel positions, the diamond, the PI, the axis."""
    m = result["measure"]
    ratio = E.is_ratio(m)
    studies = result["studies"]
    values = [v for s in studies for v in (s["ci_low"], s["ci_high"])]
    values += [result["ci_low"], result["ci_high"], result["pi_low"], result["pi_high"], 0.0]
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.05 or 0.5
    lo, hi = lo - pad, hi + pad

    labels = [s["label"] + (" †" if s["derived"] else "") for s in studies]
    pooled_label = f"Pooled ({result['method_label']})"
    left = max(LEFT, math.ceil(max([text_width(t) for t in labels] + [text_width(pooled_label, bold=True)])
                               + 8 + GAP))

    def x(v: float) -> float:
        return round(left + (min(max(v, lo), hi) - lo) / (hi - lo) * PLOT_W, 2)

    top = 44
    rows = []
    max_w = max(s["weight"] for s in studies) or 1
    for i, s in enumerate(studies):
        y = top + i * ROW_H + ROW_H / 2
        size = 4 + 8 * math.sqrt(s["weight"] / max_w)
        rows.append({
            "label": s["label"], "id": s["id"], "y": y, "x": x(s["yi"]), "x1": x(s["ci_low"]), "x2": x(s["ci_high"]),
            "clipped_low": s["ci_low"] < lo, "clipped_high": s["ci_high"] > hi, "size": round(size, 2),
            "text": f"{fmt(s['effect'], m)} [{fmt(s['effect_ci_low'], m)}, {fmt(s['effect_ci_high'], m)}]",
            "weight": f"{s['weight']:.1f}%", "derived": s["derived"],
        })
    y_pool = top + len(studies) * ROW_H + ROW_H
    nat = result["natural"]
    pct = int(round(result["level"] * 100))
    outcome = vocab.label("outcome", result["outcome"]) if vocab is not None and result.get("outcome") else (
        result.get("outcome") or "")
    label = E.MEASURE_LABELS.get(m, "effect")
    # one trial is not a pooled result: no diamond row, so the axis follows the study's row
    axis_y = y_pool + ROW_H if result["k"] > 1 else y_pool
    return {
        "width": left + PLOT_W + RIGHT, "height": axis_y + 52, "left": left, "plot_w": PLOT_W, "top": top,
        "pooled_label": pooled_label, "lo": lo, "hi": hi,
        "rows": rows, "y_pool": y_pool, "axis_y": axis_y, "null_x": x(0.0),
        "diamond": {"x1": x(result["ci_low"]), "x": x(result["estimate"]), "x2": x(result["ci_high"]), "y": y_pool},
        "pi": {"x1": x(result["pi_low"]), "x2": x(result["pi_high"]), "y": y_pool + ROW_H} if result["k"] > 1 else None,
        "pool_text": f"{fmt(nat['estimate'], m)} [{fmt(nat['ci_low'], m)}, {fmt(nat['ci_high'], m)}]",
        "pi_text": f"PI [{fmt(nat['pi_low'], m)}, {fmt(nat['pi_high'], m)}]",
        "ticks": [{"x": x(t), "v": t, "label": f"{math.exp(t):g}" if ratio else f"{t:g}"} for t in _ticks(lo, hi, ratio)],
        "title": f"Forest plot: {outcome}, {label}".strip(),
        "desc": (f"{result['k']} studies pooled by {result['method_label']}: {label} "
                 f"{fmt(nat['estimate'], m)} ({pct}% CI {fmt(nat['ci_low'], m)} to {fmt(nat['ci_high'], m)}); "
                 f"prediction interval {fmt(nat['pi_low'], m)} to {fmt(nat['pi_high'], m)}; "
                 f"I2 {result['i2']:.0f}%." if result["i2"] is not None else
                 f"{result['k']} study: {label} {fmt(nat['estimate'], m)} "
                 f"({pct}% CI {fmt(nat['ci_low'], m)} to {fmt(nat['ci_high'], m)})."),
        "measure_label": label, "method_label": result["method_label"], "ratio": ratio,
        "level": pct, "any_derived": any(r["derived"] for r in rows), "uid": uid, "k": result["k"],
    }


def narrow_layout(result: dict, vocab=None, uid: str = "forest") -> dict:
    """The phone layout (NARROW_W wide): each study on two lines, its label and effect above its
    confidence interval, so that the plot spans the whole width and no text shares a line with a mark."""
    wide = layout(result, vocab, uid)
    lo, hi = wide["lo"], wide["hi"]
    pad = 8
    plot_w = NARROW_W - 2 * pad

    def x(v: float) -> float:
        return round(pad + (min(max(v, lo), hi) - lo) / (hi - lo) * plot_w, 2)

    y = 40  # below the header line
    rows = []
    for r, s in zip(wide["rows"], result["studies"]):
        label = r["label"] + (" †" if r["derived"] else "")
        split = text_width(label) + text_width(r["text"]) + 16 > NARROW_W - 2 * pad
        text_y = y + NARROW_LINE if split else y  # the effect on a line of its own when both do not fit
        mark_y = text_y + NARROW_LINE - 4
        rows.append({**r, "label_y": y + 4, "text_y": text_y + 4, "y": mark_y,
                     "x": x(s["yi"]), "x1": x(s["ci_low"]), "x2": x(s["ci_high"]),
                     "size": round(r["size"] * 0.85, 2)})
        y = mark_y + NARROW_LINE
    y += 4
    pool_text_y = y
    diamond_y = y + NARROW_LINE - 2
    if result["k"] > 1:  # one trial is not a pooled result: no diamond
        y = diamond_y + NARROW_LINE
    pi = None
    if wide["pi"]:
        pi = {"x1": x(result["pi_low"]), "x2": x(result["pi_high"]), "text_y": y + 4, "y": y + NARROW_LINE - 4}
        y = pi["y"] + NARROW_LINE
    axis_y = y
    ticks = [{**t, "x": x(t["v"])} for t in wide["ticks"]]
    return {**wide, "width": NARROW_W, "pad": pad, "plot_w": plot_w, "rows": rows, "null_x": x(0.0),
            "pool_text_y": pool_text_y + 4,
            "diamond": {"x1": x(result["ci_low"]), "x": x(result["estimate"]), "x2": x(result["ci_high"]),
                        "y": diamond_y},
            "pi": pi, "axis_y": axis_y, "ticks": ticks,
            "height": axis_y + (56 if wide["any_derived"] else 40), "uid": uid + "-narrow"}


def forest_svg(result: dict, kb=None, uid: str = "forest", env=None, narrow: bool = False) -> str:
    """The SVG; ``uid`` keeps the ids of its title and desc unique when a page shows several plots;
    ``narrow``: the phone layout."""
    from .templating import make_env

    env = env or make_env(kb)
    vocab = kb.vocab if kb is not None else None
    if narrow:
        return env.get_template("_forest_narrow.svg").render(f=narrow_layout(result, vocab, uid))
    return env.get_template("_forest.svg").render(f=layout(result, vocab, uid))


def forest_html(result: dict, kb=None, uid: str = "forest", env=None) -> str:
    """Both layouts, for a web page: the stylesheet shows the wide one on wide screens and the
    narrow one on phones (the hidden one is display: none, so out of the accessibility tree too)."""
    return forest_svg(result, kb, uid, env) + forest_svg(result, kb, uid, env, narrow=True)
