"""Meta-analytic pooling, written to give metafor's results (``rma``, ``rma.mh``, ``regtest``).

A small, plain module on purpose: statsmodels has DerSimonian-Laird and Paule-Mandel but no REML,
and kb needs all three with metafor's exact conventions (its I^2 and H^2 for random-effects models,
its prediction interval, its Knapp-Hartung adjustment). scipy supplies the distributions.

Conventions, as in metafor:
- Q is Cochran's, always from common-effect (inverse-variance) weights, on k - 1 df.
- Random effects (REML, DL, PM): I^2 = tau^2 / (tau^2 + s^2) and H^2 = (tau^2 + s^2) / s^2, with
  s^2 the "typical" within-study variance (k - 1) sum(w) / (sum(w)^2 - sum(w^2)). For DL this is
  the familiar (Q - df) / Q. The common-effect model reports (Q - df) / Q and Q / df.
- REML: Fisher scoring from the DL estimate, step-halving to stay at or above 0, converged to 1e-10.
- PM: the tau^2 at which the generalised Q equals k - 1 (0 when Q at tau^2 = 0 is already below).
- Knapp-Hartung: SE scaled by the weighted residual variance (not truncated at 1), t on k - 1 df.
- Prediction interval: estimate +/- crit * sqrt(se^2 + tau^2), crit from the normal distribution,
  or t on k - 1 df with Knapp-Hartung.
- Mantel-Haenszel: RR with Greenland-Robins variance, OR with Robins-Breslow-Greenland, RD with
  Sato-Greenland-Robins; no continuity correction in the pooled estimate; Q from the per-study
  effects (1/2 added to zero cells) about the MH estimate.
- Egger's test: the classical weighted regression of the effect on its SE (``regtest(model="lm")``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

METHODS = ("REML", "DL", "PM", "FE", "MH")
METHOD_LABELS = {"REML": "random effects, REML", "DL": "random effects, DerSimonian-Laird",
                 "PM": "random effects, Paule-Mandel", "FE": "common effect, inverse variance",
                 "MH": "common effect, Mantel-Haenszel"}


class PoolingError(ValueError):
    """The data cannot be pooled as asked (no studies, Knapp-Hartung with one study ...)."""


@dataclass
class Fit:
    method: str
    k: int
    estimate: float
    se: float
    ci_low: float
    ci_high: float
    stat: float
    p: float
    test: str  # "z" or "t"
    df: int | None
    tau2: float
    tau: float
    i2: float | None
    h2: float | None
    q: float
    q_df: int
    q_p: float | None
    pi_low: float
    pi_high: float
    weights: list[float] = field(default_factory=list)  # percent, in input order
    level: float = 0.95
    knha: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def _dist():
    from scipy import stats  # imported when pooling, not when kb starts

    return stats


def _sums(y: list[float], v: list[float], tau2: float) -> tuple[list[float], float, float]:
    w = [1 / (vi + tau2) for vi in v]
    sw = sum(w)
    return w, sw, sum(wi * yi for wi, yi in zip(w, y)) / sw


def z_crit(level: float) -> float:
    """The two-sided normal critical value for a confidence level (1.959964 for 0.95)."""
    return float(_dist().norm.ppf(0.5 + level / 2))


def cochran_q(y: list[float], v: list[float]) -> float:
    w, sw, mu = _sums(y, v, 0.0)
    return sum(wi * (yi - mu) ** 2 for wi, yi in zip(w, y))


def tau2_dl(y: list[float], v: list[float]) -> float:
    k = len(y)
    if k < 2:
        return 0.0
    w = [1 / vi for vi in v]
    sw = sum(w)
    c = sw - sum(wi * wi for wi in w) / sw
    return max(0.0, (cochran_q(y, v) - (k - 1)) / c) if c > 0 else 0.0


def tau2_reml(y: list[float], v: list[float], tol: float = 1e-10, maxiter: int = 1000) -> float:
    """Restricted maximum likelihood by Fisher scoring (intercept-only model), as metafor does."""
    if len(y) < 2:
        return 0.0
    tau2 = tau2_dl(y, v)
    for _ in range(maxiter):
        w, sw, mu = _sums(y, v, tau2)
        sw2 = sum(wi * wi for wi in w)
        sw3 = sum(wi ** 3 for wi in w)
        tr_p = sw - sw2 / sw
        tr_pp = sw2 - 2 * sw3 / sw + (sw2 / sw) ** 2
        ypp_y = sum((wi * (yi - mu)) ** 2 for wi, yi in zip(w, y))
        if tr_pp <= 0:
            return max(0.0, tau2)
        adj = (ypp_y - tr_p) / tr_pp
        step = 1.0
        while tau2 + step * adj < 0:
            step /= 2
            if step < 1e-12:
                return 0.0
        new = tau2 + step * adj
        if abs(new - tau2) < tol:
            return max(0.0, new)
        tau2 = new
    raise PoolingError("REML did not converge; try --method DL or PM")


def tau2_pm(y: list[float], v: list[float]) -> float:
    """Paule-Mandel: generalised Q(tau^2) = k - 1, solved by bracketing and Brent's method."""
    k = len(y)
    if k < 2:
        return 0.0

    def excess(t: float) -> float:
        w, _, mu = _sums(y, v, t)
        return sum(wi * (yi - mu) ** 2 for wi, yi in zip(w, y)) - (k - 1)

    if excess(0.0) <= 0:
        return 0.0
    hi = max(1.0, 10 * (max(y) - min(y)) ** 2)
    while excess(hi) > 0:
        hi *= 10
        if hi > 1e12:
            raise PoolingError("Paule-Mandel found no root; try --method REML or DL")
    from scipy.optimize import brentq

    return brentq(excess, 0.0, hi, xtol=1e-14, rtol=1e-14, maxiter=1000)


_TAU2 = {"REML": tau2_reml, "DL": tau2_dl, "PM": tau2_pm}


def pool(y: list[float], v: list[float], method: str = "REML", knha: bool = False, level: float = 0.95) -> Fit:
    """Inverse-variance pooling: a random-effects model (REML, DL, PM) or the common-effect model (FE)."""
    method = method.upper()
    if method not in _TAU2 and method != "FE":
        raise PoolingError(f"unknown method {method!r} (use REML, DL, PM or FE; MH pools counts)")
    k = len(y)
    if k == 0:
        raise PoolingError("no studies to pool")
    if len(v) != k or any(not (vi > 0 and math.isfinite(vi)) for vi in v) or any(not math.isfinite(yi) for yi in y):
        raise PoolingError("every study needs a finite effect and a sampling variance above 0")
    if knha and k < 2:
        raise PoolingError("the Knapp-Hartung adjustment needs at least 2 studies")
    stats = _dist()
    tau2 = 0.0 if method == "FE" else _TAU2[method](y, v)
    w, sw, mu = _sums(y, v, tau2)
    se = math.sqrt(1 / sw)
    df = None
    if knha:
        s2 = sum(wi * (yi - mu) ** 2 for wi, yi in zip(w, y)) / (k - 1)
        se = math.sqrt(s2 / sw)
        df = k - 1
        crit = float(stats.t.ppf(0.5 + level / 2, df))
    else:
        crit = z_crit(level)
    stat = mu / se if se > 0 else math.inf
    p = 2 * (stats.t.sf(abs(stat), df) if knha else stats.norm.sf(abs(stat)))
    q = cochran_q(y, v)
    q_df = k - 1
    i2, h2 = heterogeneity(v, tau2, q, q_df, random=method != "FE")
    pi_half = crit * math.sqrt(se ** 2 + tau2)
    return Fit(
        method=method, k=k, estimate=mu, se=se, ci_low=mu - crit * se, ci_high=mu + crit * se, stat=stat,
        p=float(p), test="t" if knha else "z", df=df, tau2=tau2, tau=math.sqrt(tau2), i2=i2, h2=h2, q=q,
        q_df=q_df, q_p=float(stats.chi2.sf(q, q_df)) if q_df > 0 else None, pi_low=mu - pi_half,
        pi_high=mu + pi_half, weights=[100 * wi / sw for wi in w], level=level, knha=knha)


def heterogeneity(v: list[float], tau2: float, q: float, q_df: int, random: bool) -> tuple[float | None, float | None]:
    """I^2 (percent) and H^2, as metafor reports them (undefined for one study)."""
    if q_df < 1:
        return None, None
    if not random:
        return (max(0.0, 100 * (q - q_df) / q) if q > 0 else 0.0), q / q_df
    w = [1 / vi for vi in v]
    sw = sum(w)
    spread = sw * sw - sum(wi * wi for wi in w)
    if not spread > 0 or not math.isfinite(spread):  # one study carries all the weight: undefined
        return None, None
    s2 = q_df * sw / spread
    return 100 * tau2 / (tau2 + s2), (tau2 + s2) / s2


def mantel_haenszel(measure: str, ai: list[float], n1i: list[float], ci: list[float], n2i: list[float],
                    y: list[float], v: list[float], level: float = 0.95) -> Fit:
    """Mantel-Haenszel pooling of 2x2 tables (``rma.mh``). ``y``/``v`` are the per-study effects
    (with the zero-cell correction), used for Q and for the common-effect prediction interval."""
    k = len(ai)
    if k == 0:
        raise PoolingError("no studies to pool")
    stats = _dist()
    bi = [n - a for a, n in zip(ai, n1i)]
    di = [n - c for c, n in zip(ci, n2i)]
    ni = [a + b + c + d for a, b, c, d in zip(ai, bi, ci, di)]
    if measure == "or":
        r = [a * d / n for a, d, n in zip(ai, di, ni)]
        s = [b * c / n for b, c, n in zip(bi, ci, ni)]
        R, S = sum(r), sum(s)
        if R == 0 or S == 0:
            raise PoolingError("the Mantel-Haenszel odds ratio is 0 or infinite for these tables")
        pp = [(a + d) / n for a, d, n in zip(ai, di, ni)]
        qq = [(b + c) / n for b, c, n in zip(bi, ci, ni)]
        est = math.log(R / S)
        var = (sum(p * ri for p, ri in zip(pp, r)) / (2 * R * R)
               + sum(p * si + q_ * ri for p, q_, ri, si in zip(pp, qq, r, s)) / (2 * R * S)
               + sum(q_ * si for q_, si in zip(qq, s)) / (2 * S * S))
        weights = s
    elif measure == "rr":
        r = [a * n2 / n for a, n2, n in zip(ai, n2i, ni)]
        s = [c * n1 / n for c, n1, n in zip(ci, n1i, ni)]
        R, S = sum(r), sum(s)
        if R == 0 or S == 0:
            raise PoolingError("the Mantel-Haenszel risk ratio is 0 or infinite for these tables")
        est = math.log(R / S)
        var = sum((n1 * n2 * (a + c) - a * c * n) / n ** 2 for a, c, n1, n2, n in zip(ai, ci, n1i, n2i, ni)) / (R * S)
        weights = s
    elif measure == "rd":
        wts = [n1 * n2 / n for n1, n2, n in zip(n1i, n2i, ni)]
        sw = sum(wts)
        est = sum((a * n2 - c * n1) / n for a, c, n1, n2, n in zip(ai, ci, n1i, n2i, ni)) / sw
        pp = [(n1 * n1 * c - n2 * n2 * a + n1 * n2 * (n2 - n1) / 2) / n ** 2
              for a, c, n1, n2, n in zip(ai, ci, n1i, n2i, ni)]
        qq = [(a * (n2 - c) + c * (n1 - a)) / (2 * n) for a, c, n1, n2, n in zip(ai, ci, n1i, n2i, ni)]
        var = (est * sum(pp) + sum(qq)) / sw ** 2
        weights = wts
    else:
        raise PoolingError(f"Mantel-Haenszel pools rr, or or rd, not {measure}")
    se = math.sqrt(var)
    crit = z_crit(level)
    q = sum((yi - est) ** 2 / vi for yi, vi in zip(y, v))
    q_df = k - 1
    i2, h2 = heterogeneity(v, 0.0, q, q_df, random=False)
    sw = sum(weights)
    stat = est / se
    return Fit(
        method="MH", k=k, estimate=est, se=se, ci_low=est - crit * se, ci_high=est + crit * se, stat=stat,
        p=float(2 * stats.norm.sf(abs(stat))), test="z", df=None, tau2=0.0, tau=0.0, i2=i2, h2=h2, q=q,
        q_df=q_df, q_p=float(stats.chi2.sf(q, q_df)) if q_df > 0 else None, pi_low=est - crit * se,
        pi_high=est + crit * se, weights=[100 * x / sw for x in weights], level=level)


@dataclass
class Egger:
    intercept: float  # the bias coefficient (the slope on the SE in this parameterisation)
    se: float
    t: float
    df: int
    p: float


EGGER_MAX_CONDITION = 1e10
"""Above this condition number the regression's design is singular in all but rounding: not testable."""


def egger(y: list[float], v: list[float]) -> Egger:
    """Egger's regression test: weighted least squares of the effect on its SE (weights 1/v), with the
    residual variance estimated; the coefficient of the SE is tested with t on k - 2 df.

    Raises PoolingError ("not testable: ...") when the regression cannot test anything: every study
    with the same standard error (the design is singular: identical study data give this), or effects
    that lie exactly on a line of their standard errors (no residual variation, so any t would be
    rounding noise or infinite). Neither may ever read as a p-value."""
    k = len(y)
    if k < 3:
        raise PoolingError("Egger's test needs at least 3 studies")
    import numpy as np

    yv, vv = np.asarray(y, float), np.asarray(v, float)
    if not (np.all(np.isfinite(yv)) and np.all(np.isfinite(vv)) and np.all(vv > 0)):
        raise PoolingError("not testable: a study has no finite effect or positive variance")
    sei = np.sqrt(vv)
    if float(np.ptp(sei)) <= 1e-9 * float(np.max(sei)):
        raise PoolingError("not testable: every study has the same standard error (identical study data?), "
                           "so there is no small-study trend to test")
    X = np.column_stack([np.ones(k), sei])
    W = 1 / vv
    xtwx = X.T @ (X * W[:, None])
    if not np.isfinite(np.linalg.cond(xtwx)) or np.linalg.cond(xtwx) > EGGER_MAX_CONDITION:
        raise PoolingError("not testable: the studies' standard errors barely differ (singular regression)")
    beta = np.linalg.solve(xtwx, X.T @ (W * yv))
    resid = yv - X @ beta
    ss = float(np.sum(W * resid ** 2))
    spread = float(np.sum(W * (yv - np.sum(W * yv) / np.sum(W)) ** 2))
    if ss <= 1e-20 * max(spread, float(np.sum(W * yv ** 2)), 1e-300):
        raise PoolingError("not testable: the effects lie exactly on a line of their standard errors "
                           "(identical effects?), leaving no residual variation to test against")
    s2 = ss / (k - 2)
    cov = s2 * np.linalg.inv(xtwx)
    var = float(cov[1, 1])
    if not math.isfinite(var) or var <= 0:  # pragma: no cover - excluded by the checks above
        raise PoolingError("not testable: the regression's variance is not positive")
    se = math.sqrt(var)
    t = float(beta[1] / se)
    return Egger(intercept=float(beta[1]), se=se, t=t, df=k - 2, p=float(2 * _dist().t.sf(abs(t), k - 2)))


def subgroup_test(fits: dict[str, Fit]) -> tuple[float, int, float | None]:
    """The test for subgroup differences: Q between the subgroup estimates (each from its own model,
    weighted by 1 / se^2), on (groups - 1) df, as RevMan and R's meta report it."""
    groups = [f for f in fits.values() if f.k > 0]
    if len(groups) < 2:
        return 0.0, 0, None
    y = [f.estimate for f in groups]
    v = [f.se ** 2 for f in groups]
    q = cochran_q(y, v)
    df = len(groups) - 1
    return q, df, float(_dist().chi2.sf(q, df))
