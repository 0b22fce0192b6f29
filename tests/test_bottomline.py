"""Bottom lines that cannot go stale: summaries/<condition>.yaml placeholders, checked by kb validate
against the current analyses and filled by the build (kb/bottomline.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from kb import bottomline
from kb.summaries import placeholders
from kbcli import cli
from tests.conftest import ROOT as REPO
from tests.test_synthesis import binary, make_kb, trial

RESPONSE = "depression/response/24h/inert-placebo"
DISSOCIATION = "depression/dissociation/under-12h/inert-placebo"


def _records(events_k=(12, 14), events_c=(4, 5), diss=(9, 1)) -> list[dict]:
    return [
        trial("alpha-2001", [binary("response", events_k[0], 20, events_c[0], 20),
                             binary("dissociation", diss[0], 20, diss[1], 20, timepoint="40 min", timepoint_days=0.03,
                                    definition="CADSS above 4")]),
        trial("beta-2005", [binary("response", events_k[1], 22, events_c[1], 21)]),
    ]


def _summary(text: str, **extra) -> dict:
    return {"condition": "depression", "bottom_line": text, **extra}


def _validate(root: Path) -> tuple[int, str]:
    res = CliRunner().invoke(cli, ["--kb", str(root), "validate"])
    return res.exit_code, res.output


def _meta(root: Path, outcome: str, window: str, cls: str) -> dict:
    res = CliRunner().invoke(cli, ["--kb", str(root), "meta", "--condition", "depression", "--outcome", outcome,
                                   "--window", window, "--comparator-class", cls, "--format", "json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


# -- reading placeholders -------------------------------------------------------------------

def test_placeholders_are_read_in_order():
    text = f"A {{analysis: {RESPONSE}, shows: benefit}} b {{study: alpha-2001}} c {{absent: gad}}"
    found = placeholders(text)
    assert [(p.kind, p.ref, p.shows) for p in found] == [("analysis", RESPONSE, "benefit"), ("study", "alpha-2001", None),
                                                         ("absent", "gad", None)]
    assert text[found[1].start:].startswith("{study: alpha-2001}")


@pytest.mark.parametrize("text,expected", [
    (f"x {{analysis: {RESPONSE}}}", "does not say what the sentence claims it shows"),
    (f"x {{analysis: {RESPONSE}, shows: better}}", "shows is 'better'"),
    (f"x {{analysis: {RESPONSE}, shows: benefit, part: nnt}}", "part is 'nnt'"),
    (f"x {{analysis: {RESPONSE}, shows: benefit, colour: red}}", "'colour' is not a key"),
    ("x {analyses: depression/response}", "'analyses' in '{analyses:' is not a kind of placeholder"),
    ("x {study: }", "needs an id"),
])
def test_a_placeholder_that_cannot_be_read_fails_validate(tmp_path, text, expected):
    root = make_kb(tmp_path, _records(), {"depression": _summary(text)})
    code, out = _validate(root)
    assert code == 1
    assert "summaries/depression.yaml" in out and expected in out


# -- the checks -------------------------------------------------------------------------------

def test_true_claims_pass(tmp_path):
    text = (f"More responded ({{analysis: {RESPONSE}, shows: benefit}}), in {{study: alpha-2001}}; dissociation "
            f"was more frequent ({{analysis: {DISSOCIATION}, shows: harm, part: absolute}}).")
    root = make_kb(tmp_path, _records(), {"depression": _summary(text)})
    code, out = _validate(root)
    assert code == 0, out


def test_a_flipped_direction_fails(tmp_path):
    """The claim held; new counts make the result point the other way: validate fails, naming the file,
    the line, the placeholder, what the prose claims and what the analysis shows now."""
    text = f"Ketamine helps:\n  ({{analysis: {RESPONSE}, shows: benefit}})."
    root = make_kb(tmp_path, _records(), {"depression": _summary(text)})
    assert _validate(root)[0] == 0
    flipped = make_kb(tmp_path / "flipped", _records(events_k=(3, 4), events_c=(14, 15)), {"depression": _summary(text)})
    code, out = _validate(flipped)
    assert code == 1
    line = next(x for x in out.splitlines() if "summary" in x or "summaries" in x)
    assert line.startswith("summaries/depression.yaml:")
    assert "claims a benefit of ketamine, but the analysis now shows a harm of ketamine" in line
    assert "shows: accordingly" in line  # the hint


def test_a_result_that_loses_significance_fails_a_benefit_claim(tmp_path):
    text = f"Ketamine helps ({{analysis: {RESPONSE}, shows: benefit}})."
    root = make_kb(tmp_path, _records(events_k=(6, 6), events_c=(5, 5)), {"depression": _summary(text)})
    code, out = _validate(root)
    assert code == 1 and "now shows no clear difference" in out
    ok = make_kb(tmp_path / "ok", _records(events_k=(6, 6), events_c=(5, 5)), {"depression": _summary(
        f"No clear difference ({{analysis: {RESPONSE}, shows: no-clear-difference}}).")})
    assert _validate(ok)[0] == 0


def test_a_missing_analysis_or_record_fails_with_a_suggestion(tmp_path):
    text = (f"{{analysis: depression/response/25h/inert-placebo, shows: benefit}} and {{study: alpha-2002}} and "
            "{analysis: depression/remission/24h/inert-placebo, shows: benefit}")
    root = make_kb(tmp_path, _records(), {"depression": _summary(text)})
    code, out = _validate(root)
    assert code == 1
    assert "cites an analysis that does not exist (hint: did you mean depression/response/24h/inert-placebo" in out
    assert "{study: alpha-2002} cites a record that does not exist (hint: did you mean alpha-2001" in out
    assert out.count("cites an analysis that does not exist") == 2


def test_an_absence_claim_fails_the_day_a_study_appears(tmp_path):
    absent = {"gad": {"claim": "no randomised trial has tested IV ketamine in generalised anxiety disorder",
                      "match": {"conditions": ["anxiety"], "subtype_words": ["generalised", "generalized", "GAD"],
                                "designs": ["rct", "crossover-rct"], "routes": ["iv"]},
                      "searched": [{"where": "PubMed", "query": "ketamine AND generalized anxiety", "date": "2026-12-06",
                                    "found": "no IV trial"}]}}
    summary = {"condition": "anxiety", "bottom_line": "None yet {absent: gad}.", "absent": absent}
    root = make_kb(tmp_path, _records(), {"anxiety": summary})
    assert _validate(root)[0] == 0
    gad = trial("gamma-2024", [binary("response", 5, 10, 2, 10)], conditions=[{"term": "anxiety", "subtype": "generalized anxiety disorder"}])
    sc = trial("delta-2024", [binary("response", 5, 10, 2, 10)], route="sc", conditions=[{"term": "anxiety", "subtype": "GAD"}])
    assert _validate(make_kb(tmp_path / "sc", _records() + [sc], {"anxiety": summary}))[0] == 0  # not IV: no refutation
    code, out = _validate(make_kb(tmp_path / "iv", _records() + [gad], {"anxiety": summary}))
    assert code == 1 and "no longer holds: the knowledge base now holds gamma-2024" in out
    missing = {"condition": "anxiety", "bottom_line": "None yet {absent: sad}.", "absent": absent}
    assert "no 'sad' in this file's absent: section" in _validate(make_kb(tmp_path / "m", _records(), {"anxiety": missing}))[1]


# -- filling --------------------------------------------------------------------------------

def test_the_build_fills_placeholders_with_kb_meta_numbers(tmp_path):
    text = (f"More responded ({{analysis: {RESPONSE}, shows: benefit}}) <script>x</script> in {{study: alpha-2001}}.")
    root = make_kb(tmp_path, _records(), {"depression": _summary(text)})
    res = CliRunner().invoke(cli, ["--kb", str(root), "build", "--out", str(tmp_path / "site"), "--no-search"])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "site" / "conditions" / "depression.html").read_text()
    home = (tmp_path / "site" / "index.html").read_text()
    r = _meta(root, "response", "24h", "inert-placebo")
    expected = (f"risk ratio {r['natural']['estimate']:.2f}, 95% CI {r['natural']['ci_low']:.2f} to "
                f"{r['natural']['ci_high']:.2f}; 2 trials, {r['participants']} participants; "
                f"{r['absolute']['per_1000']['difference']} more per 1000")
    for html in (page, home):
        assert expected in html
        assert "&lt;script&gt;" in html and "<script>x" not in html  # prose is escaped
    assert 'href="../studies/alpha-2001.html">Alpha 2001</a>' in page
    anchor = re.search(r'href="\.\./conditions/depression\.html#([^"]+)">risk ratio', page).group(1)
    assert f'id="{anchor}"' in page  # the link lands on the Summary of Findings entry


def test_render_shows_a_gap_never_a_stale_number():
    html = bottomline.render(f"X {{analysis: {RESPONSE}, shows: benefit}} {{study: nobody-2000}}", {}, lambda i: None,
                             lambda i: i, lambda i: i)
    assert "no longer shows what this sentence says" in html and "unknown study nobody-2000" in html
    assert not re.search(r"\d\.\d", str(html))


@settings(max_examples=60, deadline=None)
@given(lo=st.floats(-3, 3), width=st.floats(0.01, 3), better=st.sampled_from(["more", "fewer", None]),
       measure=st.sampled_from(["rr", "or", "rd"]))
def test_shows_follows_the_ci_and_the_declared_direction(lo, width, better, measure):
    r = {"ci_low": lo, "ci_high": lo + width, "measure": measure, "better": better}
    got = bottomline.shows(r)
    if lo <= 0 <= lo + width:
        assert got == "no-clear-difference"
    elif better is None:
        assert got == "difference"
    else:
        up = lo > 0
        assert got == ("benefit" if up == (better == "more") else "harm")


# -- the bundled knowledge base -------------------------------------------------------------

def test_every_condition_of_the_bundled_kb_has_a_checked_bottom_line():
    conditions = {c["term"] if isinstance(c, dict) else c
                  for p in (REPO / "studies").glob("*.yaml")
                  for c in (yaml.safe_load(p.read_text()).get("conditions") or [])}
    conditions.discard("other")
    written = {p.stem for p in (REPO / "summaries").glob("*.yaml")}
    assert conditions <= written, f"no bottom line for {sorted(conditions - written)}"
    for cond in written:
        data = yaml.safe_load((REPO / "summaries" / f"{cond}.yaml").read_text())
        assert data.get("bottom_line"), cond
        text = " ".join([data["bottom_line"], *data.get("details", []), *(c["answer"] for c in data.get("claims", []))])
        # no result typed by hand: no effect, CI, percentage, count of events or per-1000 figure outside a
        # placeholder (doses and infusion times, e.g. 0.5 mg/kg over 40 minutes, are not results)
        bare = re.sub(r"\{[^{}]*\}", "", text)
        bare = re.sub(r"\b\d+(?:\.\d+)?(?:\s*(?:to|-|–)\s*\d+(?:\.\d+)?)?\s*(?:mg/kg|mg|minutes|min|hours|h|days|weeks|infusions)\b", "", bare)
        assert not re.search(r"\d+\.\d+|\d+\s*%|\d+/\d+|per 1000|95% CI|risk ratio|odds ratio|NNT", bare), \
            (cond, re.findall(r"[^.]*(?:\d+\.\d+|\d+\s*%|\d+/\d+)[^.]*", bare))


def test_a_study_placeholder_shows_the_records_own_numbers(tmp_path):
    text = "In one trial, {study: alpha-2001, outcome: dissociation}; {study: beta-2005, outcome: dissociation}."
    root = make_kb(tmp_path, _records(), {"depression": _summary(text)})
    code, out = _validate(root)
    assert code == 1 and "beta-2005 has no entry 0 with numbers for dissociation" in out
    assert "its outcomes with numbers: response" in out
    ok = make_kb(tmp_path / "ok", _records(), {"depression": _summary(
        "In one trial, {study: alpha-2001, outcome: dissociation}.")})
    assert _validate(ok)[0] == 0
    res = CliRunner().invoke(cli, ["--kb", str(ok), "build", "--out", str(tmp_path / "site"), "--no-search"])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "site" / "conditions" / "depression.html").read_text()
    assert ('9/20 with ketamine vs 1/20 with control, 40 min (<a href="../studies/alpha-2001.html">Alpha 2001</a>, '
            'one trial)') in page


def test_a_reviews_own_numbers_are_called_a_reviews_estimate_not_one_trial():
    assert bottomline.source_kind("meta-analysis") == "a published meta-analysis's estimate"
    assert bottomline.source_kind("rct") == bottomline.source_kind("crossover-rct") == "one trial"
    assert bottomline.source_kind("open-label") == "one study"
    html = bottomline.render("{study: dean-2021, outcome: response}", {}, lambda i: "Dean 2021", lambda i: i,
                             lambda i: i, lambda rid, o, e: "odds ratio 3.94, 95% CI 1.54 to 10.1, 24 h",
                             lambda rid: bottomline.source_kind("systematic-review"))
    assert "Dean 2021</a>, a published review&#39;s estimate)" in html and "one trial" not in html


def test_kb_summary_prints_the_bottom_lines_filled_and_exits_1_on_a_stale_one(tmp_path):
    text = f"More responded ({{analysis: {RESPONSE}, shows: benefit}}) in {{study: alpha-2001}}."
    root = make_kb(tmp_path, _records(), {"depression": _summary(text)})
    res = CliRunner().invoke(cli, ["--kb", str(root), "summary", "--format", "json"])
    assert res.exit_code == 0, res.output
    [s] = json.loads(res.output)
    r = _meta(root, "response", "24h", "inert-placebo")
    assert s["condition"] == "depression" and s["problems"] == []
    assert s["bottom_line"].startswith(f"More responded (risk ratio {r['natural']['estimate']:.2f}, 95% CI ")
    assert "in Alpha 2001." in s["bottom_line"]
    stale = make_kb(tmp_path / "stale", _records(events_k=(3, 4), events_c=(14, 15)), {"depression": _summary(text)})
    res = CliRunner().invoke(cli, ["--kb", str(stale), "summary", "depression"])
    assert res.exit_code == 1
    assert "[result depression/response/24h/inert-placebo no longer shows what this sentence says" in res.output
    assert "problem: " in res.output
    res = CliRunner().invoke(cli, ["--kb", str(root), "summary", "ptsd"])
    assert res.exit_code == 1 and "no summary for condition 'ptsd'" in res.output
