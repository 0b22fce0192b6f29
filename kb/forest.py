"""Forest plots as SVG, rendered from a Jinja template (templates/_forest.svg).

No plotting stack: the layout (rows, axis, ticks) is computed here and the template draws it, so
the static site can include the same figure inline. The SVG carries a <title> and <desc>, and
:func:`forest_svg` is paired with a data table wherever it is shown.
"""

from __future__ import annotations

import math

from . import effects as E
from .synthesis import fmt

ROW_H = 22
LEFT = 190  # study labels
PLOT_W = 300
RIGHT = 210  # effect, CI, weight


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

    def x(v: float) -> float:
        return round(LEFT + (min(max(v, lo), hi) - lo) / (hi - lo) * PLOT_W, 2)

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
        "width": LEFT + PLOT_W + RIGHT, "height": axis_y + 52, "left": LEFT, "plot_w": PLOT_W, "top": top,
        "rows": rows, "y_pool": y_pool, "axis_y": axis_y, "null_x": x(0.0),
        "diamond": {"x1": x(result["ci_low"]), "x": x(result["estimate"]), "x2": x(result["ci_high"]), "y": y_pool},
        "pi": {"x1": x(result["pi_low"]), "x2": x(result["pi_high"]), "y": y_pool + ROW_H} if result["k"] > 1 else None,
        "pool_text": f"{fmt(nat['estimate'], m)} [{fmt(nat['ci_low'], m)}, {fmt(nat['ci_high'], m)}]",
        "pi_text": f"PI [{fmt(nat['pi_low'], m)}, {fmt(nat['pi_high'], m)}]",
        "ticks": [{"x": x(t), "label": f"{math.exp(t):g}" if ratio else f"{t:g}"} for t in _ticks(lo, hi, ratio)],
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


def forest_svg(result: dict, kb=None, uid: str = "forest", env=None) -> str:
    """The SVG; ``uid`` keeps the ids of its title and desc unique when a page shows several plots."""
    from .templating import make_env

    env = env or make_env(kb)
    return env.get_template("_forest.svg").render(f=layout(result, kb.vocab if kb is not None else None, uid))
