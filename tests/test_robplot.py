"""Risk-of-bias pictures (kb/robplot.py, templates/_robplot.svg): traffic lights per tool, summary bars
weighted by the analysis's weights, the words of each tool, and the assessment carried into kb meta's JSON.

The invented trials here (ids like alpha-2001) are written by the tests and never enter studies/; the
real cases are the bundled records, read as they are (berman-2000 and hu-2016: a Cochrane review's RoB 1;
ionescu-2019 and lii-2023: kb's own RoB 2).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kb.records import rob_overall
from kb.robplot import (LOOKS, NOT_APPLICABLE, NOT_ASSESSED, NOT_JUDGED, OTHER_TOOL, layout, robplot_svg)
from kb.vocab import load_vocabulary

from .conftest import ROOT, invoke
from .test_risk_of_bias import ROB1_DOMAINS, rob2
from .test_synthesis import binary, make_kb, meta_json, trial

VOCAB = load_vocabulary()
SVG = "{http://www.w3.org/2000/svg}"
ROB2_DOMAINS = ["randomization", "deviations", "missing-data", "measurement", "reporting"]


def assessed(tool: str, domains: dict, judgement: str | None = None, **extra) -> dict:
    """An assessment as kb.selection.rob_assessment hands it on (the overall derived as kb derives it)."""
    overall = judgement or rob_overall(tool, domains)
    return {"tool": tool, "judgement": overall, "derived": judgement is None, "domains": domains,
            "source": extra.get("source", "Test review table"), "assessed_by": extra.get("assessed_by", "Reviewer A"),
            "verified_by": extra.get("verified_by"), "single_assessor": not extra.get("verified_by"),
            "applies_to": extra.get("applies_to", "trial")}


def study(sid: str, weight: float, rob: dict | None, design: str = "rct") -> dict:
    return {"id": sid, "label": sid.split("-")[0].title() + " " + sid.split("-")[1], "weight": weight,
            "design": design, "risk_of_bias_assessment": rob}


def result(studies: list[dict]) -> dict:
    return {"outcome": "response", "window": None, "comparator_class": None, "studies": studies}


def shares(bar: dict) -> dict[str, float]:
    return {s["key"]: s["share"] for s in bar["segments"]}


def parse_svg(text: str) -> ET.Element:
    return ET.fromstring(text.strip())


# -- the weighted summary ------------------------------------------------------------------


TOOLS = {"rob1": (ROB1_DOMAINS, ["low", "unclear", "high"]),
         "rob2": (ROB2_DOMAINS + ["carryover"], ["low", "some-concerns", "high"]),
         "robins-i": (["confounding", "selection of participants"], ["low", "moderate", "serious", "critical",
                                                                       "no-information"])}


@st.composite
def analyses(draw):
    """Trials with positive weights, each judged by RoB 1, RoB 2 or ROBINS-I on some of its domains, or not
    assessed at all."""
    n = draw(st.integers(1, 8))
    out = []
    for i in range(n):
        weight = draw(st.floats(0.01, 100, allow_nan=False))
        tool = draw(st.sampled_from([None, *TOOLS]))
        design = draw(st.sampled_from(["rct", "crossover-rct"]))
        rob = None
        if tool:
            domains, scale = TOOLS[tool]
            picked = draw(st.lists(st.sampled_from(domains), unique=True, max_size=len(domains)))
            judged = {d: draw(st.sampled_from(scale)) for d in picked}
            overall = None if judged and tool != "robins-i" else draw(st.sampled_from(scale))
            rob = assessed(tool, judged, overall)
        out.append(study(f"trial-{2000 + i}", weight, rob, design))
    return out


@settings(max_examples=150, deadline=None)
@given(analyses(), st.floats(0.1, 10))
def test_each_bar_sums_to_the_whole_analysis_and_follows_its_weights(studies, scale):
    p = layout(result(studies), VOCAB)
    total = sum(s["weight"] for s in studies)
    w = {s["id"]: s["weight"] / total for s in studies}
    unassessed = sum(w[s["id"]] for s in studies if s["risk_of_bias_assessment"] is None)
    for block in p["blocks"]:
        mine = {r["id"] for r in block["rows"]}
        other = sum(w[s["id"]] for s in studies if s["risk_of_bias_assessment"] is not None and s["id"] not in mine)
        assert len(block["summary"]) == len(block["domains"]) + 1  # each domain, then Overall
        for i, bar in enumerate(block["summary"]):
            got = shares(bar)
            assert math.isclose(sum(got.values()), 1.0, abs_tol=1e-9), bar
            assert math.isclose(got.get(OTHER_TOOL, 0), other, abs_tol=1e-12)
            assert math.isclose(got.get(NOT_ASSESSED, 0), unassessed, abs_tol=1e-12)
            # each judgement's share is the weight of the trials whose mark it is
            expected: dict[str, float] = {}
            for r in block["rows"]:
                mark = r["overall"] if bar["code"] == "Overall" else r["cells"][i]
                expected[mark["key"]] = expected.get(mark["key"], 0) + w[r["id"]]
            for key, share in expected.items():
                assert math.isclose(got[key], share, abs_tol=1e-12), (key, bar)
            # drawn: the segments tile the bar
            assert math.isclose(sum(s["w"] for s in bar["segments"]), p["bar_w"], abs_tol=0.05 * len(bar["segments"]))
    # the same analysis with every weight scaled gives the same shares: only the analysis's weights count
    scaled = layout(result([{**s, "weight": s["weight"] * scale} for s in studies]), VOCAB)
    for a, b in zip(p["blocks"], scaled["blocks"]):
        for x, y in zip(a["summary"], b["summary"]):
            assert shares(x).keys() == shares(y).keys()
            for k in shares(x):
                assert math.isclose(shares(x)[k], shares(y)[k], abs_tol=1e-9)
    # every trial is drawn once: in its tool's block, or as not assessed
    drawn = [r["id"] for b in p["blocks"] for r in b["rows"]] + [r["id"] for r in (p["missing"] or {"rows": []})["rows"]]
    assert sorted(drawn) == sorted(s["id"] for s in studies)


def test_shares_are_of_the_analysis_weight_not_of_the_trial_count():
    studies = [study("alpha-2001", 75.0, assessed("rob2", {d: "low" for d in ROB2_DOMAINS})),
               study("beta-2002", 20.0, assessed("rob2", {**{d: "low" for d in ROB2_DOMAINS}, "measurement": "high"})),
               study("gamma-2003", 5.0, assessed("rob2", {d: "some-concerns" for d in ROB2_DOMAINS}))]
    p = layout(result(studies), VOCAB)
    (block,) = p["blocks"]
    overall = shares(block["summary"][-1])
    assert overall == pytest.approx({"low": 0.75, "some-concerns": 0.05, "high": 0.20})
    d4 = shares(block["summary"][3])
    assert block["summary"][3]["code"] == "D4" and d4 == pytest.approx({"low": 0.75, "some-concerns": 0.05, "high": 0.20})
    d1 = shares(block["summary"][0])
    assert d1 == pytest.approx({"low": 0.95, "some-concerns": 0.05})
    # the words say the same: by share of the weight, in the tool's words
    assert "overall low risk 75%, some concerns 5%, high risk 20%" in p["desc"]


# -- one block per tool, in each tool's own domains and words ---------------------------------


def test_mixed_tools_draw_one_block_per_tool_in_its_own_domains():
    studies = [study("alpha-2001", 40.0, assessed("rob1", {d: "unclear" for d in ROB1_DOMAINS}, verified_by="B")),
               study("beta-2002", 35.0, assessed("rob2", {d: "low" for d in ROB2_DOMAINS})),
               study("gamma-2003", 25.0, assessed("rob1", {"sequence-generation": "low", "other-bias": "high"},
                                                  verified_by="B"))]
    p = layout(result(studies), VOCAB)
    assert [b["tool"] for b in p["blocks"]] == ["rob2", "rob1"]  # the vocabulary's order
    rob2_block, rob1_block = p["blocks"]
    assert [d["code"] for d in rob1_block["domains"]] == [f"D{i}" for i in range(1, 8)]
    assert rob1_block["domains"][0]["name"] == "Random sequence generation (selection bias)"
    assert [d["code"] for d in rob2_block["domains"]] == ["D1", "D2", "D3", "D4", "D5"]  # no crossover: no DS
    assert rob2_block["domains"][0]["name"] == "Bias arising from the randomisation process"
    assert [r["id"] for r in rob1_block["rows"]] == ["alpha-2001", "gamma-2003"]
    # gamma judged two domains: the others are not judged, never guessed
    gamma = rob1_block["rows"][1]
    assert [c["key"] for c in gamma["cells"]] == ["low"] + [NOT_JUDGED] * 5 + ["high"]
    assert gamma["overall"]["key"] == "high" and gamma["derived"]  # kb's rule: any high domain
    # the tools keep their words: RoB 1's unclear is not RoB 2's some concerns
    assert rob1_block["rows"][0]["cells"][0]["label"] == "Unclear risk"
    # weights are shares of the whole analysis: RoB 2's bars carry RoB 1's 65% as "judged with another tool"
    assert shares(rob2_block["summary"][-1]) == pytest.approx({"low": 0.35, OTHER_TOOL: 0.65})
    assert shares(rob1_block["summary"][-1]) == pytest.approx({"unclear": 0.40, "high": 0.25, OTHER_TOOL: 0.35})
    svg = parse_svg(robplot_svg(result(studies), uid="rob-t"))
    blocks = [g for g in svg.iter(f"{SVG}g") if g.get("class") == "rb-block"]
    assert [b.get("data-tool") for b in blocks] == ["rob2", "rob1"]
    heads = [[t.text for t in b.findall(f"{SVG}text")][1:] for b in blocks]
    assert heads[0][:7] == ["D1", "D2", "D3", "D4", "D5", "Overall", "Weight"]
    assert heads[1][:9] == ["D1", "D2", "D3", "D4", "D5", "D6", "D7", "Overall", "Weight"]
    legend = " ".join(t.text for g in svg.iter(f"{SVG}g") if g.get("class") == "rb-legend"
                      for t in g.iter(f"{SVG}text") if t.text)
    assert "Some concerns (RoB 2) / Unclear risk (RoB 1)" in legend and "not judged in this assessment" in legend


def test_rob2_carryover_is_drawn_for_crossover_trials_only():
    studies = [study("alpha-2001", 50.0, assessed("rob2", {**{d: "low" for d in ROB2_DOMAINS}, "carryover": "high"}),
                     design="crossover-rct"),
               study("beta-2002", 30.0, assessed("rob2", {d: "low" for d in ROB2_DOMAINS})),
               study("gamma-2003", 20.0, assessed("rob2", {d: "low" for d in ROB2_DOMAINS}), design="crossover-rct")]
    (block,) = layout(result(studies), VOCAB)["blocks"]
    assert block["domains"][-1]["code"] == "DS" and block["domains"][-1]["term"] == "carryover"
    assert [r["cells"][-1]["key"] for r in block["rows"]] == ["high", NOT_APPLICABLE, NOT_JUDGED]
    assert shares(block["summary"][5]) == pytest.approx({"high": 0.5, NOT_APPLICABLE: 0.3, NOT_JUDGED: 0.2})
    parallel = layout(result(studies[1:2]), VOCAB)["blocks"][0]
    assert "carryover" not in [d["term"] for d in parallel["domains"]]


def test_robins_i_keeps_its_free_text_domains_and_its_scale():
    studies = [study("alpha-2001", 60.0, assessed("robins-i", {"confounding": "serious", "missing data": "low"},
                                                  "serious")),
               study("beta-2002", 40.0, assessed("robins-i", {"confounding": "critical"}, "critical"))]
    (block,) = layout(result(studies), VOCAB)["blocks"]
    assert [(d["code"], d["name"]) for d in block["domains"]] == [("D1", "confounding"), ("D2", "missing data")]
    marks = [[(c["key"], c["symbol"]) for c in r["cells"] + [r["overall"]]] for r in block["rows"]]
    assert marks == [[("serious", "×"), ("low", "+"), ("serious", "×")],
                     [("critical", "!"), (NOT_JUDGED, ""), ("critical", "!")]]
    assert block["rows"][0]["overall"]["label"] == "Serious (ROBINS-I)"


def test_a_trial_without_an_assessment_is_drawn_as_not_assessed():
    studies = [study("alpha-2001", 70.0, assessed("rob2", {d: "low" for d in ROB2_DOMAINS})),
               study("beta-2002", 30.0, None)]
    p = layout(result(studies), VOCAB)
    assert [r["id"] for r in p["missing"]["rows"]] == ["beta-2002"] and p["missing"]["share_text"] == "30%"
    assert shares(p["blocks"][0]["summary"][-1]) == pytest.approx({"low": 0.7, NOT_ASSESSED: 0.3})
    svg = parse_svg(robplot_svg(result(studies), uid="rob-t"))
    block = next(g for g in svg.iter(f"{SVG}g") if g.get("data-tool") == "not-assessed")
    texts = [t.text for t in block.iter(f"{SVG}text")]
    assert "Beta 2002" in texts and "no risk-of-bias assessment recorded" in texts
    assert "Not assessed: 1 trial (Beta 2002), 30% of the weight." in svg.find(f"{SVG}desc").text
    # nothing assessed at all: no tool block, one line says so, and the bars' absence is explained
    none = parse_svg(robplot_svg(result([studies[1]]), uid="rob-n"))
    assert not [g for g in none.iter(f"{SVG}g") if g.get("class") == "rb-block" and g.get("data-tool") != "not-assessed"]
    assert any(t.text == "No trial in this analysis has a risk-of-bias assessment." for t in none.iter(f"{SVG}text"))


# -- accessible SVG ------------------------------------------------------------------------


def test_svg_is_an_image_with_title_desc_and_a_symbol_on_every_mark():
    studies = [study("alpha-2001", 60.0, assessed("rob1", {d: "high" if d == "other-bias" else "low"
                                                           for d in ROB1_DOMAINS})),
               study("beta-2002", 40.0, assessed("rob2", {"randomization": "some-concerns"}))]
    svg = parse_svg(robplot_svg(result(studies), uid="rob-a"))
    assert svg.get("role") == "img"
    title, desc = svg.find(f"{SVG}title"), svg.find(f"{SVG}desc")
    assert svg.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}" == "rob-a-title rob-a-desc"
    assert title.text == "Risk of bias: Response"
    assert desc.text.startswith("Risk of bias of the 2 trials in this analysis, by the share of its weight.")
    assert "Cochrane RoB 1, 1 trial (Alpha 2001), 60% of the weight: overall high risk 60%." in desc.text
    assert "2 of the judgements are a single assessor's." in desc.text
    symbols = {look: sym for look, (sym, _, _) in LOOKS.items()}
    for mark in (g for g in svg.iter(f"{SVG}g") if g.get("class") == "rb-mark"):
        circle = mark.find(f"{SVG}circle")
        text = mark.find(f"{SVG}text")
        if mark.get("data-key") == NOT_JUDGED:  # a hollow circle: its shape, not its colour, says so
            assert circle.get("class") == "rb-o" and text is None
        else:
            assert text is not None and text.text in symbols.values(), mark.get("data-key")
    # the single assessor's trials are marked in the picture and the legend says what the mark means
    labels = [t.text for g in svg.iter(f"{SVG}g") if g.get("class") == "rb-row" for t in g.findall(f"{SVG}text")[:1]]
    assert labels == ["Beta 2002 *", "Alpha 2001 *"]
    assert any(t.text == "* a single assessor's judgement" for t in svg.iter(f"{SVG}text"))


def test_record_text_in_the_picture_is_escaped():
    studies = [{**study("alpha-2001", 100.0, assessed("robins-i", {"<script>alert(1)</script>": "low"}, "low")),
                "label": "<script>alert(2)</script> 2001"}]
    text = robplot_svg(result(studies), uid="rob-e")
    assert "<script>" not in text and "&lt;script&gt;alert(2)&lt;/script&gt; 2001" in text
    svg = parse_svg(text)  # still well-formed
    assert "<script>alert(2)</script> 2001" in svg.find(f"{SVG}desc").text


# -- kb meta carries the assessment -------------------------------------------------------


def test_kb_meta_json_carries_each_results_assessment(runner, tmp_path):
    recs = [trial("alpha-2001", [binary("response", 12, 20, 4, 20, risk_of_bias=rob2(
                domains={"randomization": "low", "measurement": "some-concerns"}, source="kb's own assessment",
                assessed_by="Reviewer A"))],
                  risk_of_bias={"tool": "rob1", "overall": "high", "verified_by": "Reviewer B"}),
            trial("beta-2002", [binary("response", 10, 15, 2, 16)],
                  risk_of_bias={"tool": "rob1", "domains": {"allocation-concealment": "unclear"},
                                "assessed_by": "Reviewer A", "verified_by": "Reviewer B"}),
            trial("gamma-2003", [binary("response", 9, 15, 3, 16)])]
    r = meta_json(runner, make_kb(tmp_path, recs), "--condition", "depression", "--outcome", "response")
    got = {s["id"]: s["risk_of_bias_assessment"] for s in r["studies"]}
    assert got["alpha-2001"] == {"tool": "rob2", "judgement": "some-concerns", "derived": True,
                                 "domains": {"randomization": "low", "measurement": "some-concerns"},
                                 "source": "kb's own assessment", "assessed_by": "Reviewer A", "verified_by": None,
                                 "single_assessor": True, "applies_to": "result"}
    assert got["beta-2002"]["tool"] == "rob1" and got["beta-2002"]["judgement"] == "unclear"
    assert got["beta-2002"]["applies_to"] == "trial" and got["beta-2002"]["single_assessor"] is False
    assert got["gamma-2003"] is None
    # the overall judgement kb meta has always given is the assessment's
    assert {s["id"]: s["risk_of_bias"] for s in r["studies"]} == {"alpha-2001": "some-concerns",
                                                                 "beta-2002": "unclear", "gamma-2003": None}


def test_bundled_mixed_tool_analysis(runner):
    """Remission after 7 days against saline: Hu 2016 judged by a Cochrane review's RoB 1 (three domains),
    Ionescu 2019 by kb's own RoB 2 (a single assessor's): two blocks, never one."""
    answer = meta_json(runner, ROOT, "--condition", "depression", "--outcome", "remission")
    (r,) = [a for a in answer["analyses"] if a["window"]["id"] == "later" and a["comparator_class"]["id"] == "inert-placebo"]
    robs = {s["id"]: s["risk_of_bias_assessment"] for s in r["studies"]}
    assert robs["hu-2016"]["tool"] == "rob1" and not robs["hu-2016"]["single_assessor"]
    assert robs["hu-2016"]["source"].startswith("Dean 2021")
    assert robs["ionescu-2019"]["tool"] == "rob2" and robs["ionescu-2019"]["single_assessor"]
    p = layout(r, VOCAB)
    assert [(b["tool"], [x["id"] for x in b["rows"]]) for b in p["blocks"]] == [("rob2", ["ionescu-2019"]),
                                                                              ("rob1", ["hu-2016"])]
    weights = {s["id"]: s["weight"] / 100 for s in r["studies"]}
    assert shares(p["blocks"][1]["summary"][-1]) == pytest.approx(
        {robs["hu-2016"]["judgement"]: weights["hu-2016"], OTHER_TOOL: weights["ionescu-2019"]})
    # Hu 2016's source judged three of RoB 1's seven domains: the other four are not judged
    hu = p["blocks"][1]["rows"][0]
    assert sum(c["key"] == NOT_JUDGED for c in hu["cells"]) == 7 - len(robs["hu-2016"]["domains"])


def test_kb_meta_text_lists_each_trials_risk_of_bias(runner):
    res = invoke(runner, "--kb", ROOT, "meta", "--condition", "depression", "--outcome", "remission")
    assert res.exit_code == 0, res.output
    lines = [line.strip() for line in res.output.splitlines()]
    assert any(line.startswith("Risk of bias (+ low, - some concerns or unclear, x high") for line in lines)
    hu = next(line for line in lines if line.startswith("Hu 2016") and "RoB 1" in line)
    # the Cochrane review judged three of RoB 1's seven domains, each unclear: the rest are not judged
    assert hu.split("RoB 1", 1)[1].split("overall")[0].split() == [
        "D1", "-", "D2", "-", "D3", "-", "D4", ".", "D5", ".", "D6", ".", "D7", "."]
    assert hu.endswith("overall unclear risk (derived from the domains)")
    ionescu = next(line for line in lines if line.startswith("Ionescu 2019") and "RoB 2" in line)
    assert ionescu.endswith("overall high risk (derived from the domains; a single assessor's)")


def test_an_analysis_too_large_to_list_draws_its_summary_bars_only():
    studies = [study(f"trial-{2000 + i}", 1.0, assessed("rob2", {d: "low" for d in ROB2_DOMAINS}) if i % 2 else None)
               for i in range(6)]
    svg = parse_svg(robplot_svg(result(studies), uid="rob-big", trials=False))
    groups = [g.get("class") for g in svg.iter(f"{SVG}g")]
    assert "rb-block" not in groups and "rb-row" not in groups and groups.count("rb-bar") == 6
    overall = next(g for g in svg.iter(f"{SVG}g") if g.get("class") == "rb-bar" and g.get("data-domain") == "Overall")
    assert [r.get("data-key") for r in overall.iter(f"{SVG}rect") if "rb-seg" in (r.get("class") or "")] == [
        "low", NOT_ASSESSED]
    assert "Not assessed: 3 trials" in svg.find(f"{SVG}desc").text
