"""Risk of bias per result and per tool: the schema, the choice of judgement, the GRADE downgrade, the study page.

The records here are invented test trials written by the tests (ids like alpha-2001); they carry no real
judgement and never enter studies/.
"""

from __future__ import annotations

import json

import pytest

from kb.records import rob_overall, validate_data

from .conftest import invoke
from .test_synthesis import binary, make_kb, meta_json, trial

IDS = ["alpha-2001", "beta-2002", "gamma-2003", "delta-2004", "epsilon-2005"]
ROB1_DOMAINS = ["sequence-generation", "allocation-concealment", "blinding-participants", "blinding-assessment",
                "incomplete-data", "selective-reporting", "other-bias"]


def rob2(overall=None, **extra):
    return {"tool": "rob2", **({"overall": overall} if overall else {}), **extra}


def rec(rob=None, **extra):
    return trial("alpha-2001", [binary("response", 12, 20, 4, 20)],
                 **({"risk_of_bias": rob} if rob is not None else {}), **extra)


def validate_problems(runner, tmp_path, record) -> list[dict]:
    root = make_kb(tmp_path, [record])
    res = invoke(runner, "--kb", root, "validate", "--format", "json")
    return json.loads(res.output)["problems"]


# -- schema, per tool -----------------------------------------------------------------


@pytest.mark.parametrize("rob", [
    {"tool": "rob1", "overall": "unclear", "domains": {d: "unclear" for d in ROB1_DOMAINS}},
    {"tool": "rob1", "domains": {"sequence-generation": "low", "allocation-concealment": "high"}},
    rob2("some-concerns", domains={"randomization": "low", "deviations": "some-concerns", "carryover": "low"}),
    rob2(domains={"randomization": "low"}, signalling={"randomization": {"1.1": "Y", "1.2": "PY", "1.3": "NI"}},
         source="kb's own assessment", assessed_by="Reviewer A", verified_by="Reviewer B"),
    {"tool": "robins-i", "overall": "serious"},
])
def test_each_tool_accepts_its_own_words(rob):
    study = validate_data(rec(rob))
    assert study.risk_of_bias.tool == rob["tool"]


@pytest.mark.parametrize("rob,words", [
    ({"tool": "rob1", "overall": "some-concerns"}, ["'some-concerns' is a RoB 2 judgement, not a RoB 1 one"]),
    (rob2("unclear"), ["'unclear' is a RoB 1 judgement, not a RoB 2 one"]),
    (rob2("low", domains={"randomization": "unclear"}), ["domain randomization", "RoB 1 judgement"]),
    ({"tool": "rob1", "overall": "low", "domains": {"randomization": "low"}}, ["unknown RoB 1 domain 'randomization'"]),
    (rob2("low", domains={"allocation-concealment": "low"}), ["unknown RoB 2 domain 'allocation-concealment'"]),
    ({"tool": "rob1", "overall": "low", "signalling": {"randomization": {"1.1": "Y"}}}, ["belong to RoB 2"]),
    (rob2("low", signalling={"randomization": {"1.1": "yes"}}), ["rob2 signal"]),
    (rob2(), ["needs an overall judgement or its domains"]),
])
def test_each_tool_refuses_another_tools_words(runner, tmp_path, rob, words):
    probs = validate_problems(runner, tmp_path, rec(rob))
    assert probs and probs[0]["severity"] == "error" and probs[0]["field"].startswith("risk_of_bias")
    for w in words:
        assert w in probs[0]["message"], probs[0]
    if "RoB 1 judgement" in probs[0]["message"] or "RoB 2 judgement" in probs[0]["message"]:
        assert probs[0]["code"] == "rob-judgement" and "no synonyms across tools" in probs[0]["hint"]


def test_unclear_is_no_longer_a_synonym_of_some_concerns():
    from kb.vocab import load_vocabulary
    v = load_vocabulary()
    assert v.canonical("rob2_judgement", "unclear") is None and v.canonical("rob1_judgement", "some concerns") is None
    assert "unclear" not in v.terms("rob2_judgement") and "some-concerns" not in v.terms("rob1_judgement")


def test_a_result_carries_its_own_assessment_and_the_trial_a_default():
    study = validate_data(trial("alpha-2001", [binary("response", 12, 20, 4, 20, risk_of_bias=rob2("low"))],
                                risk_of_bias={"tool": "rob1", "overall": "high"}))
    assert study.outcomes[0].risk_of_bias.judgement == "low" and study.risk_of_bias.judgement == "high"


def test_overall_is_the_reviewers_when_given_else_derived():
    assert rob_overall("rob1", {d: "low" for d in ROB1_DOMAINS}) == "low"
    assert rob_overall("rob1", {"sequence-generation": "low", "other-bias": "unclear"}) == "unclear"
    assert rob_overall("rob1", {"sequence-generation": "unclear", "other-bias": "high"}) == "high"
    assert rob_overall("rob2", {"randomization": "low", "reporting": "low"}) == "low"
    assert rob_overall("rob2", {"randomization": "low", "reporting": "some-concerns"}) == "some-concerns"
    assert rob_overall("rob2", {"randomization": "some-concerns", "reporting": "high"}) == "high"
    given = validate_data(rec(rob2("high", domains={"randomization": "low"}))).risk_of_bias
    assert given.judgement == "high" and not given.derived  # the reviewer's overall stands
    derived = validate_data(rec(rob2(domains={"randomization": "low", "measurement": "some-concerns"}))).risk_of_bias
    assert derived.judgement == "some-concerns" and derived.derived and derived.overall is None


# -- selection: the result's own judgement, else the trial's default --------------------


def test_selection_takes_the_results_judgement_over_the_trial_default(runner, tmp_path):
    recs = [trial("alpha-2001", [binary("response", 12, 20, 4, 20, risk_of_bias=rob2("low"))],
                  risk_of_bias=rob2("high")),
            trial("beta-2002", [binary("response", 10, 15, 2, 16)], risk_of_bias=rob2("high")),
            trial("gamma-2003", [binary("response", 9, 15, 3, 16)])]
    r = meta_json(runner, make_kb(tmp_path, recs), "--condition", "depression", "--outcome", "response")
    robs = {s["id"]: s["risk_of_bias"] for s in r["studies"]}
    assert robs == {"alpha-2001": "low", "beta-2002": "high", "gamma-2003": None}


# -- the GRADE downgrade, by share of weight --------------------------------------------


def rob_reason(runner, tmp_path, judgements: list[str | None]) -> dict | None:
    """The risk-of-bias reason for identical trials (equal weights) with these overall RoB 2 judgements."""
    recs = [trial(sid, [binary("response", 12, 20, 4, 20)], **({"risk_of_bias": rob2(j)} if j else {}))
            for sid, j in zip(IDS, judgements)]
    r = meta_json(runner, make_kb(tmp_path, recs), "--condition", "depression", "--outcome", "response")
    assert [s["weight"] for s in r["studies"]] == [pytest.approx(100 / len(judgements))] * len(judgements)
    found = [x for x in r["certainty"]["reasons"] if x["domain"] == "risk_of_bias"]
    assert len(found) <= 1
    return found[0] if found else None


@pytest.mark.parametrize("judgements,change,words", [
    (["high", "high", "low", "low"], -2, "high risk of bias carry 50%"),
    (["high", "high", "high", "low"], -2, "high risk of bias carry 75%"),
    (["high", "low", "low", "low"], -1, "high risk of bias carry 25%"),
    (["high", "low", "low", "low", "low"], None, None),  # 20% at high risk, 20% in all: no downgrade
    (["high", "some-concerns", "some-concerns", "low", "low"], -1, "high risk of bias or with some concerns carry 60%"),
    (["some-concerns", "some-concerns", "low", "low"], -1, "with some concerns carry 50%"),
    (["some-concerns", "low", "low", "low"], None, None),
    (["low", "low", "low", "low"], None, None),
    ([None, None, "low", "low"], -1, "not assessed for results carrying 50% of the weight (counted with some concerns)"),
    ([None, "some-concerns", "low", "low"], -1, "results not assessed carry 25% and count with some concerns"),
    ([None, "high", "low", "low"], -1, "results not assessed carry 25% and count with some concerns"),
    ([None, "low", "low", "low"], None, None),
])
def test_risk_of_bias_downgrade_by_share_of_weight(runner, tmp_path, judgements, change, words):
    reason = rob_reason(runner, tmp_path, judgements)
    if change is None:
        assert reason is None
    else:
        assert reason["change"] == change and words in reason["text"], reason


def test_rob1_unclear_counts_with_some_concerns_and_derived_overall_counts(runner, tmp_path):
    recs = [trial("alpha-2001", [binary("response", 12, 20, 4, 20)],
                  risk_of_bias={"tool": "rob1", "domains": {"allocation-concealment": "unclear"}}),
            trial("beta-2002", [binary("response", 12, 20, 4, 20)],
                  risk_of_bias={"tool": "rob1", "domains": {d: "low" for d in ROB1_DOMAINS}})]
    r = meta_json(runner, make_kb(tmp_path, recs), "--condition", "depression", "--outcome", "response")
    assert {s["id"]: s["risk_of_bias"] for s in r["studies"]} == {"alpha-2001": "unclear", "beta-2002": "low"}
    reason = [x for x in r["certainty"]["reasons"] if x["domain"] == "risk_of_bias"][0]
    assert reason["change"] == -1 and "some concerns carry 50%" in reason["text"]


# -- the study page ---------------------------------------------------------------------


def test_study_page_shows_tool_domains_source_and_single_assessor(runner, tmp_path):
    recs = [trial("alpha-2001", [binary("response", 12, 20, 4, 20, risk_of_bias=rob2(
                domains={"randomization": "low", "measurement": "some-concerns"},
                signalling={"randomization": {"1.1": "Y"}}, source="kb's own assessment", assessed_by="Reviewer A"))],
                  risk_of_bias={"tool": "rob1", "overall": "unclear", "domains": {"allocation-concealment": "unclear"},
                                "source": "Test review, risk-of-bias table", "assessed_by": "Reviewer A",
                                "verified_by": "Reviewer B"}),
            trial("beta-2002", [binary("response", 10, 15, 2, 16)])]
    root = make_kb(tmp_path, recs)
    res = invoke(runner, "--kb", root, "build", "--no-search", "-o", tmp_path / "out")
    assert res.exit_code == 0, res.output
    html = (tmp_path / "out/studies/alpha-2001.html").read_text()
    rob = html[html.index('id="risk-of-bias"'):]
    assert "Cochrane RoB 1" in rob and "Allocation concealment (selection bias): unclear risk" in rob
    assert "Test review, risk-of-bias table" in rob and "verified by Reviewer B" in rob
    assert "Cochrane RoB 2" in rob and "D4: bias in measurement of the outcome: some concerns" in rob
    assert "kb&#39;s own assessment" in rob or "kb's own assessment" in rob
    assert "derived by kb from the domains" in rob and "1.1 Y" in rob
    assert rob.count("single assessor") == 1  # the result's assessment; the trial's default is verified
    assert "risk-of-bias" not in (tmp_path / "out/studies/beta-2002.html").read_text()
