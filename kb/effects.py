"""Effect sizes of single studies, computed as metafor's ``escalc`` computes them.

Every function returns ``(yi, vi)``: the effect on the analysis scale (log for ratios) and its
sampling variance. Arm order follows metafor: the ketamine (treatment) arm first, so ``ai/n1i``
are ketamine's events and total and ``ci/n2i`` the comparator's.

Zero cells (metafor's default, ``add=1/2, to="only0"``): a study with a zero cell in its 2x2 table
gets 1/2 added to all four cells for RR, OR and RD. A study with no events in either arm (or only
events) has no information on a ratio: :func:`double_zero` finds them, and the caller excludes
them from RR and OR (the risk difference keeps them).
"""

from __future__ import annotations

import math

RATIO_MEASURES = frozenset({"rr", "or", "hr"})
BINARY_MEASURES = ("rr", "or", "rd")
CONTINUOUS_MEASURES = ("smd", "md")
MEASURE_LABELS = {"rr": "risk ratio", "or": "odds ratio", "rd": "risk difference", "hr": "hazard ratio",
                  "smd": "standardised mean difference (Hedges' g)", "md": "mean difference"}
SMD_VARIANTS = ("metafor", "revman5")


class EffectError(ValueError):
    """The data cannot give this effect size (a zero total, a negative SD ...)."""


def is_ratio(measure: str) -> bool:
    return measure in RATIO_MEASURES


def double_zero(ai: float, n1i: float, ci: float, n2i: float) -> bool:
    """No events in either arm, or all participants with events in both: no information on a ratio."""
    return (ai == 0 and ci == 0) or (ai == n1i and ci == n2i)


def has_zero_cell(ai: float, n1i: float, ci: float, n2i: float) -> bool:
    return 0 in (ai, n1i - ai, ci, n2i - ci)


def binary(measure: str, ai: float, n1i: float, ci: float, n2i: float, add: float = 0.5) -> tuple[float, float]:
    """RR (log), OR (log) or RD from events and totals per arm."""
    if n1i <= 0 or n2i <= 0:
        raise EffectError("an arm has no participants")
    if not (0 <= ai <= n1i and 0 <= ci <= n2i):
        raise EffectError("events must lie between 0 and the arm's total")
    bi, di = n1i - ai, n2i - ci
    if add and has_zero_cell(ai, n1i, ci, n2i):
        ai, bi, ci, di = ai + add, bi + add, ci + add, di + add
    n1, n2 = ai + bi, ci + di
    if measure == "rr":
        return math.log((ai / n1) / (ci / n2)), 1 / ai - 1 / n1 + 1 / ci - 1 / n2
    if measure == "or":
        return math.log((ai * di) / (bi * ci)), 1 / ai + 1 / bi + 1 / ci + 1 / di
    if measure == "rd":
        p1, p2 = ai / n1, ci / n2
        return p1 - p2, p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2
    raise EffectError(f"{measure} is not a measure for binary data (use {', '.join(BINARY_MEASURES)})")


def hedges_correction(m: float, variant: str = "metafor") -> float:
    """The small-sample correction J of Hedges' g for m degrees of freedom.

    metafor uses the exact gamma-function form; RevMan 5 (and R's meta with its settings) the
    approximation 1 - 3 / (4 N - 9) with N = m + 2.
    """
    if variant == "revman5":
        return 1 - 3 / (4 * (m + 2) - 9)
    return math.exp(math.lgamma(m / 2) - 0.5 * math.log(m / 2) - math.lgamma((m - 1) / 2))


def continuous(measure: str, m1i: float, sd1i: float, n1i: float, m2i: float, sd2i: float, n2i: float,
               variant: str = "metafor") -> tuple[float, float]:
    """SMD (Hedges' g) or MD from means, SDs and sizes per arm (ketamine minus comparator).

    The SMD's variance is metafor's default large-sample form, 1/n1 + 1/n2 + g^2 / (2 (n1 + n2));
    ``variant="revman5"`` gives RevMan 5's, (n1 + n2)/(n1 n2) + g^2 / (2 (n1 + n2 - 3.94)).
    """
    if n1i < 2 or n2i < 2:
        raise EffectError("each arm needs at least 2 participants for a standard deviation")
    if sd1i < 0 or sd2i < 0:
        raise EffectError("a standard deviation cannot be negative")
    if measure == "md":
        return m1i - m2i, sd1i ** 2 / n1i + sd2i ** 2 / n2i
    if measure != "smd":
        raise EffectError(f"{measure} is not a measure for continuous data (use {', '.join(CONTINUOUS_MEASURES)})")
    if variant not in SMD_VARIANTS:
        raise EffectError(f"unknown SMD variant {variant!r} (use {', '.join(SMD_VARIANTS)})")
    m = n1i + n2i - 2
    sp = math.sqrt(((n1i - 1) * sd1i ** 2 + (n2i - 1) * sd2i ** 2) / m)
    if sp == 0:
        raise EffectError("both standard deviations are 0: a standardised difference is undefined")
    g = hedges_correction(m, variant) * (m1i - m2i) / sp
    if variant == "revman5":
        return g, (n1i + n2i) / (n1i * n2i) + g ** 2 / (2 * (n1i + n2i - 3.94))
    return g, 1 / n1i + 1 / n2i + g ** 2 / (2 * (n1i + n2i))


def reported(measure: str, value: float, ci_low: float | None = None, ci_high: float | None = None,
             se: float | None = None, ci_level: float = 0.95) -> tuple[float, float]:
    """A published estimate used as given: ratios on the log scale, the variance from the SE or CI.

    ``se`` is on the analysis scale (the SE of the log ratio for ratios). Without an SE, the CI gives
    it: (upper - lower) / (2 z), on the log scale for ratios.
    """
    from .metaanalysis import z_crit

    ratio = is_ratio(measure)
    if ratio and value <= 0:
        raise EffectError(f"a {MEASURE_LABELS.get(measure, measure)} must be above 0")
    yi = math.log(value) if ratio else value
    if se is None:
        if ci_low is None or ci_high is None:
            raise EffectError("a reported effect needs its CI or SE to be pooled")
        if ratio and (ci_low <= 0 or ci_high <= 0):
            raise EffectError("the CI of a ratio must lie above 0")
        lo, hi = (math.log(ci_low), math.log(ci_high)) if ratio else (ci_low, ci_high)
        if not lo <= yi <= hi or hi <= lo:
            raise EffectError("the estimate must lie inside its CI")
        se = (hi - lo) / (2 * z_crit(ci_level))
    if se <= 0:
        raise EffectError("the standard error must be above 0")
    return yi, se ** 2


def back(measure: str, x: float | None) -> float | None:
    """A value on the analysis scale in natural units (exp for ratios)."""
    if x is None:
        return None
    return math.exp(x) if is_ratio(measure) else x
