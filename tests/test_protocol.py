"""Time windows, comparator classes, events defined by concept, and the rules that keep a pooled answer
honest: what kb meta pools together and what it never does (issue 14, parts 2 to 5)."""

from __future__ import annotations

import json

import pytest
import yaml

from .conftest import ROOT, invoke
from .test_synthesis import binary, continuous, make_kb, meta_json, trial


def kb_with(tmp_path, records, synthesis=None):
    root = make_kb(tmp_path, records)
    if synthesis is not None:
        (root / "kb.yaml").write_text(yaml.safe_dump({"title": "Test KB", "synthesis": synthesis}))
    return root


WINDOWS = [
    trial("hours-2001", [binary("response", 9, 20, 3, 20, timepoint="4 h", timepoint_days=0.167)]),
    trial("day-2002", [binary("response", 10, 20, 4, 20, timepoint="24 h", timepoint_days=1)]),
    trial("week-2003", [binary("response", 8, 20, 5, 20, timepoint="day 7", timepoint_days=7)]),
    trial("mida-2004", [binary("response", 12, 25, 6, 25, timepoint="24 h", timepoint_days=1)], comparator="midazolam"),
]


def test_hours_days_and_comparator_classes_are_never_pooled_together(runner, tmp_path):
    root = kb_with(tmp_path, WINDOWS)
    answer = meta_json(runner, root, "--outcome", "response")
    cells = [(a["window"]["id"], a["comparator_class"]["id"], [s["id"] for s in a["studies"]]) for a in answer["analyses"]]
    assert cells == [("under-12h", "inert-placebo", ["hours-2001"]), ("24h", "inert-placebo", ["day-2002"]),
                     ("24h", "active-placebo", ["mida-2004"]), ("2-7d", "inert-placebo", ["week-2003"])]
    for a in answer["analyses"]:  # every headline names its window, comparator and what an event is
        assert a["window"]["label"] in a["sentence"] or a["window"]["phrase"] in a["sentence"]
        assert a["comparator_class"]["label"] in a["sentence"] and a["definition"]
        assert "one trial" in a["sentence"] and a["single_study"] is True
    one = meta_json(runner, root, "--outcome", "response", "--window", "24h", "--comparator-class", "active-placebo")
    assert [s["id"] for s in one["studies"]] == ["mida-2004"] and "analyses" not in one


def test_combined_placebos_is_an_option_that_costs_certainty(runner, tmp_path):
    root = kb_with(tmp_path, WINDOWS)
    r = meta_json(runner, root, "--outcome", "response", "--window", "24h", "--combine-placebos")
    assert r["comparator_class"]["id"] == "any-placebo" and [s["id"] for s in r["studies"]] == ["day-2002", "mida-2004"]
    indirect = next(x for x in r["certainty"]["reasons"] if x["domain"] == "indirectness")
    assert indirect["change"] == -1 and "inert and active placebo" in indirect["text"]
    assert "2 trials pooled" in r["sentence"]


def test_kb_forest_asks_which_analysis_when_there_are_several(runner, tmp_path):
    root = kb_with(tmp_path, WINDOWS)
    res = invoke(runner, "--kb", root, "forest", "--outcome", "response")
    assert res.exit_code == 2 and "--window 24h --comparator-class active-placebo" in res.output


def test_windows_and_classes_come_from_kb_yaml(runner, tmp_path):
    root = kb_with(tmp_path, WINDOWS, {
        "windows": [{"id": "first-day", "label": "first day", "from_days": 0, "to_days": 2},
                    {"id": "week", "label": "first week", "from_days": 2, "to_days": 8}],
        "comparator_classes": {"any-control": {"label": "saline or midazolam", "comparators": ["saline", "midazolam"]}},
        "assumed_risk": {"response": 0.2},
    })
    answer = meta_json(runner, root, "--outcome", "response")
    cells = [(a["window"]["id"], a["comparator_class"]["id"], a["k"]) for a in answer["analyses"]]
    assert cells == [("first-day", "any-control", 3), ("week", "any-control", 1)]
    first = answer["analyses"][0]
    assert first["absolute"]["assumed_risk"] == 0.2 and first["absolute"]["per_1000"]["comparator"] == 200
    assert "kb.yaml" in first["absolute"]["assumed_risk_source"]


@pytest.mark.parametrize("synthesis, message", [
    ({"windows": [{"id": "a", "label": "a", "from_days": 0, "to_days": 2},
                  {"id": "b", "label": "b", "from_days": 1, "to_days": 3}]}, "overlap"),
    ({"windows": [{"id": "a", "label": "a", "from_days": "soon"}]}, "must be a number of days"),
    ({"comparator_classes": {"x": {"comparators": ["saline"]}, "y": {"comparators": ["saline"]}}}, "is in both"),
    ({"assumed_risk": {"response": 1.5}}, "not a risk between 0 and 1"),
    ({"assumed_risk": {"respnse": 0.2}}, "unknown outcome"),
    ({"windowz": []}, "unknown key"),
])
def test_bad_protocols_are_refused_with_the_key_named(runner, tmp_path, synthesis, message):
    root = kb_with(tmp_path, WINDOWS, synthesis)
    res = invoke(runner, "--kb", root, "meta", "--outcome", "response")
    assert res.exit_code != 0 and message in res.output and "kb.yaml" in res.output and "Traceback" not in res.output


def test_assumed_risk_option_and_default_median(runner, tmp_path):
    root = kb_with(tmp_path, [trial("one-2001", [binary("response", 10, 20, 2, 20)]),
                              trial("two-2002", [binary("response", 12, 20, 6, 20)]),
                              trial("three-2003", [binary("response", 9, 20, 4, 20)])])
    r = meta_json(runner, root, "--outcome", "response")
    assert r["absolute"]["assumed_risk"] == pytest.approx(0.2)  # median of 0.1, 0.3 and 0.2
    assert r["absolute"]["assumed_risk_range"] == [pytest.approx(0.1), pytest.approx(0.3)]
    r = meta_json(runner, root, "--outcome", "response", "--assumed-risk", "0.05")
    assert r["absolute"]["per_1000"]["comparator"] == 50 and "--assumed-risk" in r["absolute"]["assumed_risk_source"]


def test_the_deprecated_suicidal_ideation_term(runner, tmp_path):
    from .conftest import bundled_copy

    # search and filters expand it to the terms that replace it
    copy = bundled_copy(tmp_path / "copy")
    for args in (("--outcome", "suicidal-ideation"), ("outcome:suicidal-ideation",)):
        res = invoke(runner, "--kb", copy, "search", *args, "--format", "json")
        assert res.exit_code == 0, res.output
        ids = {h["id"] for h in json.loads(res.stdout)["hits"]}
        assert {"grunebaum-2018", "su-2023", "ionescu-2016", "bartoli-2017"} <= ids
    res = invoke(runner, "--kb", ROOT, "meta", "--outcome", "suicidal-ideation")
    assert res.exit_code == 2 and "deprecated" in res.output
    for term in ("si-resolution", "si-response", "si-severity", "suicidality-worsening"):
        assert term in res.output
    root = kb_with(tmp_path, [trial("old-2020", [binary("suicidal-ideation", 5, 10, 2, 10)])])
    res = invoke(runner, "--kb", root, "validate")
    assert res.exit_code == 1 and "'suicidal-ideation' is a deprecated outcome: use one of si-resolution" in res.output


def test_binary_data_need_a_definition_and_a_shared_control_is_flagged(runner, tmp_path):
    arms = [binary("response", 5, 10, 2, 10), binary("response", 6, 10, 2, 10)]  # two doses, one saline arm
    rec = trial("multi-2020", arms)
    del rec["outcomes"][0]["definition"]
    root = kb_with(tmp_path, [rec])
    res = invoke(runner, "--kb", root, "validate")
    assert "outcomes[0].data: binary data need a `definition`" in res.output
    assert "outcomes[1].data.arms[1]: warning: the control arm 'control' is the same as in outcomes[0]" in res.output
    assert "Cochrane Handbook 23.3.4" in res.output
    rec["outcomes"][1] |= {"pool": False, "pool_note": "other dose arm; the first is pooled against the shared control"}
    root = kb_with(tmp_path / "again", [rec])
    assert "is the same as in outcomes[0]" not in invoke(runner, "--kb", root, "validate").output


def test_crossover_as_published_is_marked_and_left_out_in_a_sensitivity_analysis(runner, tmp_path):
    recs = [trial("par-2001", [binary("response", 10, 20, 4, 20)]),
            trial("par-2002", [binary("response", 11, 20, 5, 20)]),
            trial("cross-2003", [binary("response", 9, 15, 3, 15)], design="crossover-rct"),
            trial("first-2004", [binary("response", 6, 12, 2, 12, period="first")], design="crossover-rct")]
    r = meta_json(runner, kb_with(tmp_path, recs), "--outcome", "response")
    by = {s["id"]: s for s in r["studies"]}
    assert by["cross-2003"]["crossover"] is True and by["first-2004"]["crossover"] is False
    sens = {x["name"]: x for x in r["sensitivity"]}
    assert sens["crossover"]["omitted"] == ["cross-2003"] and sens["crossover"]["k"] == 3


def test_instruments_that_disagree_on_direction_are_not_pooled(runner, tmp_path):
    recs = [trial("down-2001", [continuous("symptom-change", -10, 8, 20, -4, 8, 20, instrument="MADRS")]),
            trial("up-2002", [continuous("symptom-change", 12, 8, 20, 6, 8, 20, instrument="Q-LES-Q")])]
    res = invoke(runner, "--kb", kb_with(tmp_path, recs), "meta", "--outcome", "symptom-change")
    assert res.exit_code == 1 and "disagree on which way is better" in res.output


def test_every_bundled_analysis_stays_inside_its_window():
    """Over the bundled records: every pooled study's timepoint lies in its analysis's window."""
    from kb.config import open_kb
    from kb.synthesis import MetaRequest, answer_question

    kb = open_kb(ROOT)
    seen = 0
    for outcome in ("response", "remission", "symptom-change", "si-resolution", "si-response", "dissociation"):
        answer = answer_question(kb, MetaRequest(outcome=outcome, any_condition=True))
        for a in answer.get("analyses", [answer]):
            w = a["window"]
            for s in a["studies"]:
                seen += 1
                days = next(o.timepoint_days for st in [__import__("kb.load", fromlist=["load_study"]).load_study(kb, s["id"])]
                            for o in st.outcomes if o.outcome == outcome and o.timepoint == s["timepoint"])
                assert w["from_days"] <= days < (w["to_days"] or float("inf")), (outcome, s["id"], days, w)
    assert seen >= 8


def test_a_changed_protocol_rebuilds_the_site(tmp_path):
    """The time windows are part of what every page depends on: changing them in kb.yaml rebuilds."""
    from kb.config import open_kb
    from kb.site import build_site

    root = kb_with(tmp_path, WINDOWS)
    out = tmp_path / "out"
    build_site(open_kb(root), out, search=False)
    assert "about 24 h" in (out / "conditions/depression.html").read_text(encoding="utf-8")
    (root / "kb.yaml").write_text(yaml.safe_dump({"title": "Test KB", "synthesis": {
        "windows": [{"id": "any-time", "label": "any time after the infusion", "from_days": 0}]}}))
    report = build_site(open_kb(root), out, search=False)
    page = (out / "conditions/depression.html").read_text(encoding="utf-8")
    assert report.full and "any time after the infusion" in page and "about 24 h" not in page


def test_eligibility_is_shown_with_the_date_of_its_last_change(tmp_path, runner):
    import subprocess

    from kb.config import open_kb
    from kb.site import build_site

    root = kb_with(tmp_path, WINDOWS)
    (root / "kb.yaml").write_text(yaml.safe_dump({"title": "Test KB", "eligibility": {
        "question": "Does ketamine work?", "designs": "Randomised trials."}}))
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "protocol", "--date", "2026-01-02T03:04:05Z"], check=True,
                   env={**__import__("os").environ, "GIT_COMMITTER_DATE": "2026-01-02T03:04:05Z"})
    build_site(open_kb(root), tmp_path / "out", search=False)
    page = (tmp_path / "out/methods.html").read_text(encoding="utf-8")
    assert "<dt>Review question</dt><dd>Does ketamine work?</dd>" in page
    assert "<dt>Study designs</dt><dd>Randomised trials.</dd>" in page
    assert "Last changed on 2026-01-02 (" in page
    (root / "kb.yaml").write_text(yaml.safe_dump({"title": "Test KB", "eligibility": {"setting": "x"}}))
    res = invoke(runner, "--kb", root, "meta", "--outcome", "response")
    assert res.exit_code != 0 and "unknown criterion setting" in res.output and "criteria: question" in res.output
