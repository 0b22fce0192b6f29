"""Absolute effects, as a GRADE Summary of Findings presents them.

Binary outcomes (Cochrane Handbook 5.1 §12.5.4; Handbook 6 §15.4.4):

- the assumed comparator risk (ACR) is a point value: by default the median control-group risk of
  the pooled studies (their range is shown beside it); kb.yaml (``synthesis.assumed_risk``) or
  ``kb meta --assumed-risk`` sets another;
- the risk with ketamine is ``ACR x RR`` for a risk ratio, ``OR x ACR / (1 - ACR + OR x ACR)`` for an
  odds ratio and ``ACR + RD`` for a risk difference, each bound of the CI transformed the same way;
- per 1000: risks times 1000, rounded to the nearest whole number;
- the number needed to treat is ``1 / |risk difference|``, rounded up (Handbook 5.1 §12.5.4.3). It is
  an NNTB when ketamine's difference is good for patients and an NNTH when it is bad (Altman 1998).
  When the CI of the difference includes 0, the CI of the NNT runs through infinity and is written as
  Altman writes it: "NNTB a to ∞ to NNTH b".

Continuous outcomes (Handbook 6 §15.5): a mean difference in points where every pooled study used
the same instrument; otherwise the SMD times a representative SD of a named instrument: the median
control-arm SD of the pooled studies that used it.
"""

from __future__ import annotations

import math
import statistics

from .effects import is_ratio


def risk_with(measure: str, acr: float, x: float) -> float:
    """The risk with the intervention at comparator risk ``acr`` for an effect ``x`` (natural scale)."""
    if measure == "rr":
        return min(1.0, acr * x)
    if measure == "or":
        return x * acr / (1 - acr + x * acr)
    if measure == "rd":
        return min(1.0, max(0.0, acr + x))
    raise ValueError(f"no absolute risk for a {measure}")


def per_1000(p: float) -> int:
    """A risk per 1000 people, rounded half up (0.2383 -> 238, 0.0625 -> 63)."""
    return int(math.floor(p * 1000 + 0.5))


def nnt(difference: float) -> int | None:
    """1 / |risk difference| rounded up; None for no difference (the NNT is infinite)."""
    if difference == 0:
        return None
    return math.ceil(round(1 / abs(difference), 9))  # round() keeps 1/0.25 = 4.000000001 at 4


def binary(measure: str, estimate: float, ci_low: float, ci_high: float, acr: float, better: str | None,
           acr_source: str, acr_range: tuple[float, float] | None = None) -> dict:
    """The absolute effect of a pooled binary result (natural-scale estimate and CI) at ``acr``.

    ``better`` is the outcome's declared good direction ("more" or "fewer" events); it decides
    whether the NNT is a number needed to treat for one more patient to benefit (NNTB) or for one more
    to be harmed (NNTH)."""
    if measure in ("rr", "or") and not 0 < acr < 1:
        return {"assumed_risk": acr, "assumed_risk_source": acr_source,
                "assumed_risk_range": list(acr_range) if acr_range else None, "per_1000": None, "nnt": None,
                "note": f"the comparator risk is {acr:.0%} ("
                        + ("no events in the comparator groups" if acr == 0 else "every comparator participant had the event")
                        + "), so a ratio gives no risk per 1000; an assumed comparator risk (kb.yaml synthesis.assumed_risk) "
                          "gives one"}
    control = per_1000(acr)
    risks = [risk_with(measure, acr, x) for x in (estimate, ci_low, ci_high)]
    with_k = [per_1000(r) for r in risks]
    diff = [w - control for w in with_k]  # per 1000, in the order estimate, low, high
    lo, hi = sorted(diff[1:])
    exact = [r - acr for r in risks]  # the NNT comes from the unrounded differences
    out = {
        "assumed_risk": acr, "assumed_risk_source": acr_source,
        "assumed_risk_range": list(acr_range) if acr_range else None,
        "per_1000": {"comparator": control, "ketamine": with_k[0], "ketamine_ci_low": with_k[1],
                     "ketamine_ci_high": with_k[2], "difference": diff[0], "difference_ci_low": lo,
                     "difference_ci_high": hi},
    }
    out["nnt"] = nnt_summary(exact[0], *sorted(exact[1:]), better)
    return out


def nnt_summary(d: float, lo: float, hi: float, better: str | None) -> dict:
    """NNTB or NNTH with its CI from a risk difference ``d`` (ketamine minus comparator) and its CI."""
    good = {"more": 1, "fewer": -1}.get(better or "")

    def kind(x: float) -> str | None:
        if good is None or x == 0:
            return None
        return "NNTB" if (x > 0) == (good > 0) else "NNTH"

    point = {"kind": kind(d), "value": nnt(d)}
    if lo < 0 < hi or lo == 0 or hi == 0:
        # The CI of the difference includes no effect: the NNT's CI runs through infinity (Altman 1998).
        ends = {kind(lo): nnt(lo), kind(hi): nnt(hi)}
        point["ci"] = {"through_infinity": True, "nntb": ends.get("NNTB"), "nnth": ends.get("NNTH")}
    else:
        near, far = (lo, hi) if abs(lo) < abs(hi) else (hi, lo)
        point["ci"] = {"through_infinity": False, "low": nnt(far), "high": nnt(near)}
    point["text"] = nnt_text(point)
    return point


def nnt_text(n: dict) -> str:
    """'NNTB 5 (3 to 14)', 'NNTH 4 (3 to 8)' or, through infinity, 'NNTB 14 to ∞ to NNTH 18'."""
    ci = n["ci"]
    if n["kind"] is None and not ci["through_infinity"]:
        return f"NNT {n['value']}"
    if ci["through_infinity"]:
        parts = []
        if ci["nntb"] is not None:
            parts.append(f"NNTB {ci['nntb']}")
        parts.append("∞")
        if ci["nnth"] is not None:
            parts.append(f"NNTH {ci['nnth']}")
        point = f"{n['kind']} {n['value']}" if n["kind"] and n["value"] else "no difference"
        return f"{point} (95% CI {' to '.join(parts)})"
    return f"{n['kind']} {n['value']} (95% CI {ci['low']} to {ci['high']})"


def assumed_risk(control_risks: list[float], override: float | None = None,
                 override_source: str | None = None) -> tuple[float, str, tuple[float, float] | None]:
    """(ACR, where it comes from, range of the pooled studies' control risks)."""
    span = (min(control_risks), max(control_risks)) if control_risks else None
    if override is not None:
        return override, override_source or "set by the reviewer", span
    k = len(control_risks)
    return (statistics.median(control_risks),
            f"median control-group risk of the {k} pooled {'study' if k == 1 else 'studies'}", span)


def continuous(measure: str, estimate: float, ci_low: float, ci_high: float, studies: list[dict],
               vocab=None) -> dict | None:
    """Points on a named scale: the MD itself, or the SMD times a representative SD (Handbook 6 §15.5)."""
    if is_ratio(measure) or measure not in ("md", "smd"):
        return None
    instruments = [s.get("instrument") for s in studies]
    if measure == "md":
        inst = instruments[0] if len(set(instruments)) == 1 else None
        return {"instrument": inst, "points": estimate, "points_ci_low": ci_low, "points_ci_high": ci_high,
                "method": "mean difference in the instrument's points"}
    # SMD: the most used instrument among studies with control-arm SDs; ties go to the earlier study.
    sds: dict[str, list[float]] = {}
    for s in studies:
        data = s.get("data") or {}
        if s.get("kind") == "continuous" and s.get("instrument") and "sd2i" in data:
            sds.setdefault(s["instrument"], []).append(float(data["sd2i"]))
    if not sds:
        return None
    inst = max(sds, key=lambda i: len(sds[i]))
    sd = statistics.median(sds[inst])
    n = len(sds[inst])
    label = vocab.label("instrument", inst) if vocab is not None else inst
    return {"instrument": inst, "points": estimate * sd, "points_ci_low": ci_low * sd, "points_ci_high": ci_high * sd,
            "representative_sd": sd,
            "method": f"SMD x {sd:g}, the median control-arm SD of the {n} pooled "
                      f"{'study' if n == 1 else 'studies'} that used the {label} ({inst})"}
