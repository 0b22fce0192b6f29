"""kb's effect sizes and pooling reproduce metafor (and R's meta for RevMan 5 settings).

Reference numbers come from metafor's own unit tests and README (repository wviechtb/metafor,
tests/testthat/...), with their data from wviechtb/metadat data-raw/ (the file and test are named
beside each case), and from ../shared/data/PROVENANCE.md for dat.linde2005 and dat.furukawa2003.
Published values are given to 4 decimals, so the checks are to 4 decimals (abs 5e-5), or to the
precision printed.
"""

from __future__ import annotations

import csv
import math
import shlex
from pathlib import Path

import pytest

from kb import effects as E
from kb import metaanalysis as M

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "metadat"

# metadat data-raw/dat.colditz1994.txt (= dat.bcg): tpos, tneg, cpos, cneg
BCG = [(4, 119, 11, 128), (6, 300, 29, 274), (3, 228, 11, 209), (62, 13536, 248, 12619), (33, 5036, 47, 5761),
       (180, 1361, 372, 1079), (8, 2537, 10, 619), (505, 87886, 499, 87892), (29, 7470, 45, 7232),
       (17, 1699, 65, 1600), (186, 50448, 141, 27197), (5, 2493, 3, 2338), (27, 16886, 29, 17825)]
# metafor tests/testthat/test_analysis_example_dersimonian2007.r (CLASP): n1i, n2i, ai, ci
CLASP = list(zip([156, 303, 565, 1570, 103, 4659], [74, 303, 477, 1565, 105, 4650], [5, 5, 12, 69, 9, 313],
                 [8, 17, 9, 94, 11, 352]))
# metadat data-raw/dat.normand1999.txt, studies 1-4: n1i, m1i, sd1i, n2i, m2i, sd2i
NORMAND = [(155, 55, 47, 156, 75, 64), (31, 27, 7, 32, 29, 4), (75, 64, 17, 71, 119, 29), (18, 66, 20, 18, 137, 48)]
# metadat data-raw/dat.raudenbush1985.txt: yi, vi
RAUDENBUSH = [(0.03, 0.0156), (0.12, 0.0216), (-0.14, 0.0279), (1.18, 0.1391), (0.26, 0.1362), (-0.06, 0.0106),
              (-0.02, 0.0106), (-0.32, 0.0484), (0.27, 0.0269), (0.80, 0.0630), (0.54, 0.0912), (0.18, 0.0497),
              (-0.02, 0.0835), (0.23, 0.0841), (-0.18, 0.0253), (-0.06, 0.0279), (0.30, 0.0193), (0.07, 0.0088),
              (-0.07, 0.0303)]


def close(a: float, b: float, places: int = 4) -> bool:
    return abs(a - b) <= 0.5 * 10 ** -places + 1e-12


def bcg(measure: str):
    ys = [E.binary(measure, a, a + b, c, c + d) for a, b, c, d in BCG]
    return [y for y, _ in ys], [v for _, v in ys]


def test_escalc_rr_and_or_on_bcg():
    # test_misc_escalc.r and README: trial 1 RR yi -0.8893 vi 0.3256; OR trials 3, 4: -1.3863, -1.4564
    y, v = bcg("rr")
    assert close(y[0], -0.8893) and close(v[0], 0.3256)
    assert close(y[7], 0.0120) and close(v[3], 0.0200)
    yo, _ = bcg("or")
    assert close(yo[2], -1.3863) and close(yo[3], -1.4564)


@pytest.mark.parametrize("measure, method, expected", [
    # test_misc_metan_vs_rma.uni_with_dat.bcg.r: estimate, ci.lb, ci.ub, zval, QE / tau2, I2
    ("rr", "FE", (-0.4303, -0.5097, -0.3509, -10.6247, 152.2330, None, None)),
    ("rr", "DL", (-0.7141, -1.0644, -0.3638, -3.9952, None, 0.3088, 92.1173)),
    ("or", "FE", (-0.4361, -0.5190, -0.3533, -10.3190, 163.1649, None, None)),
    ("or", "DL", (-0.7474, -1.1242, -0.3706, -3.8873, None, 0.3663, 92.6455)),
    ("rd", "FE", (-0.0009, -0.0014, -0.0005, -4.0448, 276.4737, None, None)),
    ("rd", "DL", (-0.0071, -0.0101, -0.0040, -4.5128, None, 0.0000, 95.6596)),
])
def test_common_and_dersimonian_laird_on_bcg(measure, method, expected):
    fit = M.pool(*bcg(measure), method=method)
    est, lo, hi, z, q, tau2, i2 = expected
    assert close(fit.estimate, est) and close(fit.ci_low, lo) and close(fit.ci_high, hi) and close(fit.stat, z)
    if q is not None:
        assert close(fit.q, q)
    if tau2 is not None:
        assert close(fit.tau2, tau2) and close(fit.i2, i2)


def test_reml_on_bcg():
    # test_misc_influence.r: tau2 0.313243325980895, QE 152.233008082373; test_misc_cumul.r: -0.714532;
    # test_misc_emmprep.r: exp CI 0.3440743 .. 0.6961661; test_misc_confint.r (DL): H2 12.6861
    fit = M.pool(*bcg("rr"))
    assert fit.method == "REML" and fit.k == 13
    assert abs(fit.tau2 - 0.313243325980895) < 1e-6 and abs(fit.q - 152.233008082373) < 1e-9
    assert abs(fit.estimate - -0.714532) < 1e-6
    assert abs(math.exp(fit.ci_low) - 0.3440743) < 1e-6 and abs(math.exp(fit.ci_high) - 0.6961661) < 1e-6


def test_reml_knapp_hartung_on_bcg():
    # metafor README: rma(yi, vi, data=dat, test="knha"), predict(res, transf=exp, digits=2)
    fit = M.pool(*bcg("rr"), method="REML", knha=True)
    assert fit.test == "t" and fit.df == 12
    assert close(fit.tau2, 0.3132) and close(fit.tau, 0.5597) and close(fit.i2, 92.22, 2) and close(fit.h2, 12.86, 2)
    assert close(fit.estimate, -0.7145) and close(fit.se, 0.1808) and close(fit.stat, -3.9522)
    assert close(fit.p, 0.0019) and close(fit.ci_low, -1.1084) and close(fit.ci_high, -0.3206)
    assert close(math.exp(fit.pi_low), 0.14, 2) and close(math.exp(fit.pi_high), 1.76, 2)


def test_leave_one_out_on_bcg():
    # test_misc_influence.r: leave1out(res)[1], REML, full precision
    y, v = bcg("rr")
    fit = M.pool(y[1:], v[1:])
    assert abs(fit.estimate - -0.707083788031436) < 1e-6 and abs(fit.se - 0.189961024702717) < 1e-6
    assert abs(fit.ci_low - -1.07940055491509) < 1e-6 and abs(fit.q - 151.582572747109) < 1e-9
    assert abs(fit.tau2 - 0.336156745300306) < 1e-6 and abs(fit.i2 - 93.2259349111223) < 1e-4
    assert abs(fit.h2 - 14.762184698253) < 1e-4


@pytest.mark.parametrize("measure, expected", [
    # test_misc_metan_vs_rma.mh_with_dat.bcg.r: estimate, ci.lb, ci.ub, zval, QE
    ("rr", (-0.4537, -0.5308, -0.3766, -11.5338, 152.5676)),
    ("or", (-0.4734, -0.5538, -0.3930, -11.5444, 163.9426)),
    ("rd", (-0.0033, -0.0039, -0.0027, -11.4708, 386.7759)),
])
def test_mantel_haenszel_on_bcg(measure, expected):
    y, v = bcg(measure)
    a = [r[0] for r in BCG]
    n1 = [r[0] + r[1] for r in BCG]
    c = [r[2] for r in BCG]
    n2 = [r[2] + r[3] for r in BCG]
    fit = M.mantel_haenszel(measure, a, n1, c, n2, y, v)
    est, lo, hi, z, q = expected
    assert close(fit.estimate, est) and close(fit.ci_low, lo) and close(fit.ci_high, hi)
    assert close(fit.stat, z) and close(fit.q, q)


def test_mh_leave_one_out_on_bcg():
    # test_misc_influence.r: leave1out(rma.mh(RR))[1]
    y, v = bcg("rr")
    rows = BCG[1:]
    fit = M.mantel_haenszel("rr", [r[0] for r in rows], [r[0] + r[1] for r in rows], [r[2] for r in rows],
                            [r[2] + r[3] for r in rows], y[1:], v[1:])
    assert abs(fit.estimate - -0.451379469928476) < 1e-9 and abs(fit.se - 0.0394350331703394) < 1e-9
    assert abs(fit.q - 151.915260738878) < 1e-6 and abs(fit.i2 - 92.7591211399706) < 1e-6


@pytest.mark.parametrize("method, tau, mu, se", [
    # test_analysis_example_dersimonian2007.r (CLASP, log OR)
    ("PM", 0.3681, -0.3811, 0.2060), ("DL", 0.2323, -0.3240, 0.1540), ("REML", 0.1843, -0.2980, 0.1343),
])
def test_estimators_on_clasp(method, tau, mu, se):
    ys = [E.binary("or", a, n1, c, n2) for n1, n2, a, c in CLASP]
    fit = M.pool([y for y, _ in ys], [v for _, v in ys], method=method)
    assert close(fit.tau, tau) and close(fit.estimate, mu) and close(fit.se, se)


@pytest.mark.parametrize("method, knha, expected", [
    # test_analysis_example_raudenbush2009.r: tau2, mu, se, z, ci.lb, ci.ub (3 decimals)
    ("FE", False, (0, 0.06, 0.036, 1.655, -0.011, 0.132)),
    ("REML", False, (0.019, 0.084, 0.052, 1.621, -0.018, 0.185)),
    ("DL", False, (0.026, 0.089, 0.056, 1.601, -0.02, 0.199)),
    ("REML", True, (0.019, 0.084, 0.062, 1.359, -0.046, 0.213)),
    ("DL", True, (0.026, 0.089, 0.064, 1.405, -0.044, 0.223)),
])
def test_knapp_hartung_on_raudenbush(method, knha, expected):
    fit = M.pool([y for y, _ in RAUDENBUSH], [v for _, v in RAUDENBUSH], method=method, knha=knha)
    got = (fit.tau2, fit.estimate, fit.se, fit.stat, fit.ci_low, fit.ci_high)
    assert all(close(g, e, 3) for g, e in zip(got, expected)), got


def test_prediction_interval_on_raudenbush():
    # test_analysis_example_raudenbush2009.r: REML cr.lb -0.204, cr.ub 0.371; QE 35.8295 (raudenbush1985)
    fit = M.pool([y for y, _ in RAUDENBUSH], [v for _, v in RAUDENBUSH])
    assert close(fit.pi_low, -0.204, 3) and close(fit.pi_high, 0.371, 3) and close(fit.q, 35.8295)


def test_hedges_g_and_reml_on_normand():
    # test_misc_escalc.r: SMD yi/vi; test_misc_rma_uni.r: REML tau2 1.0090
    ys = [E.continuous("smd", m1, s1, n1, m2, s2, n2) for n1, m1, s1, n2, m2, s2 in NORMAND]
    assert all(close(y, e) for (y, _), e in zip(ys, (-0.3552, -0.3479, -2.3176, -1.8880)))
    assert all(close(v, e) for (_, v), e in zip(ys, (0.0131, 0.0645, 0.0458, 0.1606)))
    assert close(M.pool([y for y, _ in ys], [v for _, v in ys]).tau2, 1.0090)


def _shared(name: str) -> Path:
    path = SHARED / name
    if not path.is_file():
        pytest.skip(f"{path} is absent (the shared data folder sits beside the repository in CI)")
    return path


def test_linde2005_dl_matches_metafor():
    """PROVENANCE.md 3b: rows 5, 6 and 26 dropped; RR, DL; Halama (10/25 vs 0/25) gets 1/2 per cell."""
    rows = [shlex.split(line) for line in _shared("dat.linde2005.txt").read_text().splitlines() if line.strip()]
    data = [dict(zip(rows[0], r)) for r in rows[1:]]
    data = [d for d in data if d["id"] not in ("5", "6", "26")]
    ys = [E.binary("rr", int(d["ai"]), int(d["n1i"]), int(d["ci"]), int(d["n2i"])) for d in data]
    fit = M.pool([y for y, _ in ys], [v for _, v in ys], method="DL")
    assert fit.k == 23 and fit.q_df == 22
    assert close(fit.estimate, 0.5574) and close(fit.se, 0.1002)
    assert close(fit.ci_low, 0.3610) and close(fit.ci_high, 0.7537)
    assert close(fit.tau2, 0.1413) and close(fit.i2, 73.94, 2) and close(fit.q, 84.4155)
    assert close(fit.h2, 3.84, 2) and close(fit.stat, 5.5631)


def test_furukawa2003_smd_matches_revman5_settings():
    """PROVENANCE.md 3b: metacont(..., sm="SMD") with RevMan 5 settings: -0.5858 [-0.8703, -0.3013],
    tau2 0.2309, I2 73%, Q 58.27 on 16 df."""
    with _shared("dat.furukawa2003.txt").open(newline="") as fh:
        data = list(csv.DictReader(fh))
    ys = [E.continuous("smd", float(d["Me"]), float(d["Se"]), int(d["Ne"]), float(d["Mc"]), float(d["Sc"]),
                       int(d["Nc"]), variant="revman5") for d in data]
    fit = M.pool([y for y, _ in ys], [v for _, v in ys], method="DL")
    assert fit.k == 17 and fit.q_df == 16
    assert close(fit.estimate, -0.5858) and close(fit.ci_low, -0.8703) and close(fit.ci_high, -0.3013)
    assert close(fit.tau2, 0.2309) and round(fit.i2) == 73 and close(fit.q, 58.27, 2)
    assert close(fit.stat, -4.04, 2)


def test_one_study():
    fit = M.pool([0.5], [0.04])
    assert fit.k == 1 and fit.tau2 == 0 and fit.q == 0 and fit.q_df == 0 and fit.q_p is None
    assert fit.i2 is None and fit.h2 is None
    assert close(fit.ci_low, 0.5 - 1.959964 * 0.2) and fit.weights == [100.0]
    with pytest.raises(M.PoolingError, match="at least 2"):
        M.pool([0.5], [0.04], knha=True)


@pytest.mark.parametrize("method", ["REML", "DL", "PM", "FE"])
def test_identical_studies_have_no_heterogeneity(method):
    fit = M.pool([0.3] * 5, [0.02] * 5, method=method)
    assert fit.tau2 == 0 and fit.q == pytest.approx(0) and fit.estimate == pytest.approx(0.3)
    assert fit.se == pytest.approx(math.sqrt(0.02 / 5)) and fit.weights == pytest.approx([20.0] * 5)
    assert fit.i2 == pytest.approx(0) and fit.pi_low == pytest.approx(fit.ci_low)


def test_zero_cells_follow_metafor():
    """A zero cell adds 1/2 to all four cells (RR, OR and RD); a double-zero study is detected."""
    y, v = E.binary("rr", 10, 25, 0, 25)
    assert close(y, math.log((10.5 / 26) / (0.5 / 26))) and close(v, 1 / 10.5 - 1 / 26 + 1 / 0.5 - 1 / 26)
    y, v = E.binary("or", 0, 10, 3, 12)
    assert close(y, math.log((0.5 * 9.5) / (10.5 * 3.5)))
    y, _ = E.binary("rd", 0, 10, 3, 12)
    assert close(y, 0.5 / 11 - 3.5 / 13)
    assert E.double_zero(0, 22, 0, 23) and E.double_zero(5, 5, 7, 7) and not E.double_zero(0, 10, 1, 10)
    assert E.binary("rr", 4, 20, 2, 20) == pytest.approx((math.log(2), 1 / 4 - 1 / 20 + 1 / 2 - 1 / 20))


def test_reported_effects_on_the_log_scale():
    y, v = E.reported("or", 2.0, 1.2, 3.3333333)
    assert close(y, math.log(2)) and close(math.sqrt(v), (math.log(3.3333333) - math.log(1.2)) / (2 * 1.959964))
    y, v = E.reported("md", -3.0, se=1.5)
    assert (y, v) == (-3.0, 2.25)
    with pytest.raises(E.EffectError, match="CI or SE"):
        E.reported("rr", 1.5)
    with pytest.raises(E.EffectError, match="inside its CI"):
        E.reported("rr", 1.5, 1.6, 2.0)


def test_egger_classical_regression():
    """Classical Egger: the test is the same as regressing the standardised effect on precision,
    whose intercept is the bias coefficient (an identity checked here with numpy's least squares)."""
    import numpy as np

    y, v = bcg("rr")
    e = M.egger(y, v)
    se = np.sqrt(v)
    X = np.column_stack([np.ones(len(y)), 1 / se])
    coef, *_ = np.linalg.lstsq(X, np.asarray(y) / se, rcond=None)
    assert e.intercept == pytest.approx(coef[0]) and e.df == 11
    resid = np.asarray(y) / se - X @ coef
    s2 = resid @ resid / (len(y) - 2)
    se0 = math.sqrt(s2 * np.linalg.inv(X.T @ X)[0, 0])
    assert e.se == pytest.approx(se0) and e.t == pytest.approx(coef[0] / se0)


def test_subgroup_difference_test():
    y, v = bcg("rr")
    fits = {"a": M.pool(y[:6], v[:6]), "b": M.pool(y[6:], v[6:])}
    q, df, p = M.subgroup_test(fits)
    w = [1 / f.se ** 2 for f in fits.values()]
    mean = sum(wi * f.estimate for wi, f in zip(w, fits.values())) / sum(w)
    assert df == 1 and q == pytest.approx(sum(wi * (f.estimate - mean) ** 2 for wi, f in zip(w, fits.values())))
    assert 0 < p < 1
