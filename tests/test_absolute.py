"""Absolute effects against the printed worked examples (Cochrane Handbook 5.1 §12.5.4, the Cochrane
ketamine review's Summary of Findings 2, Altman 1998 as Newcombe quotes it). Sources and quotes:
docs/meta.md."""

from __future__ import annotations

import pytest

from kb import absolute as A


def test_handbook_risk_ratio_example():
    # "RR = 0.92 ... ACR = 0.3 (300 per 1000) ... 24 fewer per 1000 ... The NNT is 42"
    a = A.binary("rr", 0.92, 0.92, 0.92, 0.3, "fewer", "test")
    assert a["per_1000"]["comparator"] == 300 and a["per_1000"]["ketamine"] == 276
    assert a["per_1000"]["difference"] == -24
    assert a["nnt"]["value"] == 42 and a["nnt"]["kind"] == "NNTB"


def test_handbook_odds_ratio_example():
    # "OR = 0.73, and a control risk of ACR = 0.3 ... 62 fewer per 1000 ... The NNT is 17"
    assert A.risk_with("or", 0.3, 0.73) == pytest.approx(0.219 / 0.919)
    a = A.binary("or", 0.73, 0.73, 0.73, 0.3, "fewer", "test")
    assert a["per_1000"]["ketamine"] == 238 and a["per_1000"]["difference"] == -62
    assert a["nnt"]["value"] == 17


def test_handbook_nnt_from_a_risk_difference():
    # "if the risk difference is -0.12 the NNT is 9; if the risk difference is -0.22 the NNT is 5"
    assert A.nnt(-0.12) == 9 and A.nnt(-0.22) == 5 and A.nnt(0) is None


def test_cochrane_ketamine_review_summary_of_findings_remission_vs_midazolam():
    # SoF 2: remission at 24 h, OR 2.21 (0.67 to 7.32), midazolam 18.0%, ketamine 32.7% (12.8 to 61.6),
    # 14.7% more (5.2 fewer to 43.6 more)
    a = A.binary("or", 2.21, 0.67, 7.32, 0.18, "more", "test")
    p = a["per_1000"]
    assert (p["comparator"], p["ketamine"], p["ketamine_ci_low"], p["ketamine_ci_high"]) == (180, 327, 128, 616)
    assert (p["difference"], p["difference_ci_low"], p["difference_ci_high"]) == (147, -52, 436)
    # the CI includes no effect: NNTB ... to infinity to NNTH ...
    assert a["nnt"]["ci"]["through_infinity"] and a["nnt"]["kind"] == "NNTB"
    assert a["nnt"]["text"] == "NNTB 7 (95% CI NNTB 3 to ∞ to NNTH 20)"


def test_altman_notation_through_infinity():
    # Newcombe on Altman 1998: "an absolute risk reduction (ARR) from -5% to +25% inverts to a confidence
    # interval that goes from ... NNTB of 4, through infinity to ... NNTH of 20"
    n = A.nnt_summary(0.10, -0.05, 0.25, "more")  # more events (e.g. responders) are good
    assert n["kind"] == "NNTB" and n["value"] == 10
    assert (n["ci"]["nntb"], n["ci"]["nnth"]) == (4, 20)
    assert n["text"] == "NNTB 10 (95% CI NNTB 4 to ∞ to NNTH 20)"


def test_harm_gives_an_nnth_and_a_zero_control_risk_gives_no_absolute_difference():
    a = A.binary("rr", 4.14, 2.05, 8.39, 7 / 42, "fewer", "test")  # dissociation, su-2023
    assert a["nnt"]["kind"] == "NNTH" and a["per_1000"]["difference"] > 0
    z = A.binary("rr", 8.0, 0.51, 126.67, 0.0, "more", "test")
    assert z["per_1000"] is None and "no events in the comparator groups" in z["note"] and "no risk per 1000" in z["note"]


def test_assumed_risk_is_the_median_control_risk_with_its_range():
    acr, source, span = A.assumed_risk([0.1, 0.3, 0.2])
    assert acr == 0.2 and span == (0.1, 0.3) and "median control-group risk of the 3 pooled studies" in source
    assert A.assumed_risk([0.1, 0.3], 0.25, "kb.yaml")[:2] == (0.25, "kb.yaml")


def test_smd_in_points_of_a_named_scale():
    # Cochrane open learning, module A1: SMD 0.25 on a scale with SD 5 is 1.25 points
    c = A.continuous("smd", 0.25, 0.1, 0.4, [{"instrument": "MADRS", "kind": "continuous", "data": {"sd2i": 5.0}}])
    assert c["points"] == pytest.approx(1.25) and c["representative_sd"] == 5.0 and "MADRS" in c["method"]
