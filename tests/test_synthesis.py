"""kb meta and kb forest: selection with reasons, pooling from records, certainty, outputs.

The knowledge bases here are written by the tests: invented trials (ids like alpha-2001) whose
numbers are chosen to exercise each rule. They never enter studies/.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from kb import effects as E
from kb import metaanalysis as M

from .conftest import ROOT, SHARED, invoke


def trial(sid: str, outcomes: list[dict], *, design: str = "rct", conditions=("depression",), route: str = "iv",
          drug: str = "racemic-ketamine", comparator: str = "saline", **extra) -> dict:
    rec = {"id": sid, "title": f"Test trial {sid}", "authors": [f"{sid.split('-')[0].title()} A"],
           "year": int(sid.split("-")[1][:4]), "design": design, "conditions": list(conditions),
           "intervention": {"drug": drug, "route": route}, "comparator": {"type": comparator},
           "outcomes": outcomes, "key_finding": f"Test finding of {sid}.", "sources": [f"https://example.org/{sid}"],
           "status": "extracted", "added": "2026-11-26"}  # extracted: a draft is never pooled
    rec.update(extra)
    for o in rec["outcomes"]:  # numbers are read on the trial's page: give "Table 2" its url
        if isinstance(o.get("source"), str) and not o["source"].startswith("http"):
            o["source"] = {"url": rec["sources"][0], "locator": o["source"]}
    return rec


def binary(outcome: str, a: int, n1: int, c: int, n2: int, **extra) -> dict:
    extra = {"timepoint": "day 1", "timepoint_days": 1, "definition": "test responders", **extra}
    return {"outcome": outcome, "data": {"type": "binary", "arms": [
        {"label": "ketamine", "events": a, "total": n1}, {"label": "control", "events": c, "total": n2}]},
        "counts": "stated", "source": "Table 2", **extra}


def continuous(outcome: str, m1, s1, n1, m2, s2, n2, instrument="MADRS", **extra) -> dict:
    extra = {"timepoint": "day 1", "timepoint_days": 1, **extra}
    return {"outcome": outcome, "instrument": instrument, "data": {"type": "continuous", "arms": [
        {"label": "ketamine", "mean": m1, "sd": s1, "n": n1}, {"label": "control", "mean": m2, "sd": s2, "n": n2}]},
        "counts": "stated", "source": "Table 2", **extra}


def make_kb(tmp_path: Path, records: list[dict], summaries: dict | None = None) -> Path:
    root = tmp_path / "kb"
    (root / "studies").mkdir(parents=True)
    (root / "kb.yaml").write_text("title: Test KB\n")
    for rec in records:
        (root / "studies" / f"{rec['id']}.yaml").write_text(yaml.safe_dump(rec, sort_keys=False))
    for cond, data in (summaries or {}).items():
        (root / "summaries").mkdir(exist_ok=True)
        (root / "summaries" / f"{cond}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return root


BASE = [
    trial("alpha-2001", [binary("response", 12, 20, 4, 20)]),
    # two entries in one time window (about 24 h): the earliest is pooled
    trial("beta-2005", [binary("response", 8, 15, 3, 16, timepoint="day 1.5", timepoint_days=1.5),
                        binary("response", 10, 15, 2, 16, timepoint="day 1", timepoint_days=1)]),
    trial("gamma-2010", [binary("response", 20, 40, 9, 38)], design="crossover-rct", comparator="saline"),
    trial("delta-2012", [binary("response", 6, 10, 1, 10, counts="derived", derivation="from percentages")]),
    trial("retro-2015", [binary("response", 30, 30, 1, 30)], retraction={"retracted": True, "notice": "Test 2018"}),
    trial("nopool-2016", [binary("response", 9, 10, 1, 10, pool=False, pool_note="blog figures")]),
    trial("subq-2017", [binary("response", 5, 10, 1, 10)], route="sc"),
    trial("esk-2018", [binary("response", 7, 10, 2, 10)], drug="esketamine"),
    trial("ect-2019", [binary("response", 10, 20, 12, 20)], comparator="ect"),
    trial("ptsd-2020", [binary("response", 9, 12, 2, 12)], conditions=("ptsd", "depression")),
    trial("review-2021", [{"outcome": "response", "data": {"type": "effect", "measure": "rr", "value": 2.0,
                                                            "ci_low": 1.5, "ci_high": 2.7}}], design="meta-analysis"),
    trial("single-2022", [{"outcome": "response", "data": {"type": "binary", "arms": [
        {"label": "ketamine", "events": 10, "total": 20}]}, "counts": "stated", "source": "Table 1"}],
        design="open-label", comparator="none"),
]


@pytest.fixture
def kb(tmp_path) -> Path:
    return make_kb(tmp_path, BASE)


def meta_json(runner, root, *args) -> dict:
    res = invoke(runner, "--kb", root, "meta", "--format", "json", *args)
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def reasons(result: dict) -> dict[str, str]:
    return {e["id"]: e["reason"] for e in result["excluded"]}


def test_defaults_select_and_explain(runner, kb):
    r = meta_json(runner, kb, "--condition", "depression", "--outcome", "response")
    assert [s["id"] for s in r["studies"]] == ["alpha-2001", "beta-2005", "delta-2012", "gamma-2010"]
    why = reasons(r)
    assert "retracted" in why["retro-2015"]
    assert "blog figures" in why["nopool-2016"]
    assert "not intravenous" in why["subq-2017"] and "--non-iv" in why["subq-2017"]
    assert "esketamine" in why["esk-2018"]
    assert "comparator ect" in why["ect-2019"] and "--comparator ect" in why["ect-2019"]
    assert "secondary condition" in why["ptsd-2020"] and "primary: ptsd" in why["ptsd-2020"]
    assert "never pooled with its own trials" in why["review-2021"] and "kb records none" in why["review-2021"]
    assert "single arm" in why["single-2022"] or "no control arm" in why["single-2022"]
    # one entry per study and time window: beta's earliest timepoint (day 1) is pooled, day 1.5 is listed
    beta = next(s for s in r["studies"] if s["id"] == "beta-2005")
    assert beta["data"] == {"ai": 10, "n1i": 15, "ci": 2, "n2i": 16}
    assert any(e["id"] == "beta-2005" and e["timepoint"] == "day 1.5" for e in r["excluded"])
    assert next(s for s in r["studies"] if s["id"] == "delta-2012")["derived"] is True


def test_pooled_numbers_are_computed_from_the_counts(runner, kb):
    r = meta_json(runner, kb, "--condition", "depression", "--outcome", "response", "--method", "DL")
    tables = [(12, 20, 4, 20), (10, 15, 2, 16), (6, 10, 1, 10), (20, 40, 9, 38)]
    ys = [E.binary("rr", *t) for t in tables]
    fit = M.pool([y for y, _ in ys], [v for _, v in ys], "DL")
    assert r["k"] == 4 and r["method"] == "DL" and r["measure"] == "rr" and r["scale"] == "log"
    assert r["estimate"] == pytest.approx(fit.estimate) and r["tau2"] == pytest.approx(fit.tau2)
    assert r["natural"]["estimate"] == pytest.approx(math.exp(fit.estimate))
    assert r["participants"] == sum(t[1] + t[3] for t in tables) and r["events"] == sum(t[0] + t[2] for t in tables)
    assert sum(s["weight"] for s in r["studies"]) == pytest.approx(100)
    for key in ("measure", "method", "k", "estimate", "se", "ci_low", "ci_high", "pi_low", "pi_high", "tau2", "i2",
                "h2", "q", "q_df", "q_p", "certainty", "excluded", "studies", "natural", "sentence"):
        assert key in r
    assert {"id", "yi", "ci_low", "ci_high", "weight", "effect"} <= set(r["studies"][0])


@pytest.mark.parametrize("option, study, included", [
    ("--no-crossover", "gamma-2010", False), ("--no-derived", "delta-2012", False),
    ("--non-iv", "subq-2017", True), ("--esketamine", "esk-2018", True), ("--any-condition", "ptsd-2020", True),
])
def test_inclusion_options(runner, kb, option, study, included):
    r = meta_json(runner, kb, "--condition", "depression", "--outcome", "response", option)
    assert (study in [s["id"] for s in r["studies"]]) is included
    if not included:
        assert option in reasons(r)[study]
    assert r["options"]


def test_comparator_and_timepoint(runner, kb):
    r = meta_json(runner, kb, "--outcome", "response", "--comparator", "ECT")
    assert [s["id"] for s in r["studies"]] == ["ect-2019"]
    r = meta_json(runner, kb, "--condition", "depression", "--outcome", "response", "--timepoint", "1.2..1.8")
    assert [s["id"] for s in r["studies"]] == ["beta-2005"] and r["studies"][0]["data"]["ai"] == 8


def test_retracted_never_pooled_whatever_the_options(runner, kb):
    r = meta_json(runner, kb, "--outcome", "response", "--non-iv", "--esketamine", "--any-condition", "--method", "DL",
                  "--comparator", "saline", "--comparator", "midazolam", "--comparator", "ect")
    # saline and ECT are separate analyses; the retraction is listed once, for all of them
    assert [a["comparator_class"]["id"] for a in r["analyses"]] == ["inert-placebo", "ect"]
    assert all("retro-2015" not in [s["id"] for s in a["studies"]] for a in r["analyses"])
    assert "retracted" in reasons(r)["retro-2015"]


def test_double_zero_left_out_of_ratios_kept_for_rd(runner, tmp_path):
    root = make_kb(tmp_path, [trial("one-2001", [binary("response", 5, 20, 2, 20)]),
                              trial("two-2002", [binary("response", 0, 12, 0, 11)]),
                              trial("three-2003", [binary("response", 3, 10, 0, 10)])])
    r = meta_json(runner, root, "--outcome", "response")
    assert [s["id"] for s in r["studies"]] == ["one-2001", "three-2003"]
    assert "no events" in reasons(r)["two-2002"]
    three = next(s for s in r["studies"] if s["id"] == "three-2003")
    assert three["yi"] == pytest.approx(math.log((3.5 / 11) / (0.5 / 11)))  # 1/2 added to each cell
    r = meta_json(runner, root, "--outcome", "response", "--measure", "rd")
    assert [s["id"] for s in r["studies"]] == ["one-2001", "three-2003", "two-2002"]


def test_mantel_haenszel_from_records(runner, kb):
    r = meta_json(runner, kb, "--condition", "depression", "--outcome", "response", "--method", "MH")
    assert r["method"] == "MH" and r["k"] == 4 and r["tau2"] == 0
    res = invoke(runner, "--kb", kb, "meta", "--outcome", "response", "--method", "MH", "--measure", "smd")
    assert res.exit_code == 2 and "Mantel-Haenszel" in res.output


def test_continuous_smd_md_and_mixed_shapes(runner, tmp_path):
    recs = [trial("one-2001", [continuous("symptom-change", -15, 8, 20, -6, 9, 20)]),
            trial("two-2002", [continuous("symptom-change", -12, 7, 15, -8, 8, 14)]),
            trial("three-2003", [continuous("symptom-change", -9, 5, 12, -4, 5, 12, instrument="HAM-D")])]
    root = make_kb(tmp_path, recs)
    r = meta_json(runner, root, "--outcome", "symptom-change")
    assert r["measure"] == "smd" and r["k"] == 3
    g, _ = E.continuous("smd", -15, 8, 20, -6, 9, 20)
    assert r["studies"][0]["yi"] == pytest.approx(g)
    res = invoke(runner, "--kb", root, "meta", "--outcome", "symptom-change", "--measure", "md")
    assert res.exit_code == 2 and "one instrument" in res.output and "--measure smd" in res.output
    mixed = make_kb(tmp_path / "mixed", recs[:1] + [trial("four-2004", [binary("symptom-change", 5, 10, 2, 10)])])
    res = invoke(runner, "--kb", mixed, "meta", "--outcome", "symptom-change")
    assert res.exit_code == 2 and "mixed data shapes" in res.output


def test_bad_requests(runner, kb):
    res = invoke(runner, "--kb", kb, "meta", "--outcome", "respnse")
    assert res.exit_code == 2 and "unknown outcome 'respnse'" in res.output and "did you mean 'response'" in res.output
    res = invoke(runner, "--kb", kb, "meta", "--outcome", "remission")
    assert res.exit_code == 1 and "no study reports remission" in res.output
    res = invoke(runner, "--kb", kb, "meta", "--condition", "ptsd", "--outcome", "response", "--comparator", "ect")
    assert res.exit_code == 1 and "no eligible study" in res.output and "ptsd-2020" in res.output
    res = invoke(runner, "--kb", kb, "meta")
    assert res.exit_code == 2 and "--outcome" in res.output
    res = invoke(runner, "--kb", kb, "meta", "--outcome", "response", "--timepoint", "soon")
    assert res.exit_code == 2 and "--timepoint" in res.output
    res = invoke(runner, "--kb", kb, "meta", "--outcome", "response", "--method", "FE", "--knha")
    assert res.exit_code == 2 and "Knapp-Hartung" in res.output


def test_certainty_rules_and_override(runner, tmp_path):
    recs = [trial("one-2001", [binary("response", 12, 20, 4, 20)],
                  risk_of_bias={"tool": "rob2", "overall": "high"}),
            trial("two-2002", [binary("response", 10, 15, 2, 16)], risk_of_bias={"tool": "rob2", "overall": "low"})]
    root = make_kb(tmp_path, recs)
    r = meta_json(runner, root, "--condition", "depression", "--outcome", "response")
    c = r["certainty"]
    domains = {x["domain"]: x["change"] for x in c["reasons"]}
    assert c["start"] == "high" and domains["risk_of_bias"] <= -1 and domains["imprecision"] == -1
    assert c["level"] == c["suggested"] and c["override"] is None
    assert c["level"] == ["very-low", "low", "moderate", "high"][3 + sum(domains.values())] if 3 + sum(
        domains.values()) >= 0 else c["level"] == "very-low"
    root2 = make_kb(tmp_path / "o", recs, summaries={"depression": {
        "condition": "depression", "bottom_line": "Test.",
        "outcomes": {"response": {"certainty": "moderate", "justification": "blinded outcome assessors"}}}})
    r = meta_json(runner, root2, "--condition", "depression", "--outcome", "response")
    assert r["certainty"]["level"] == "moderate" and r["certainty"]["suggested"] == c["suggested"]
    assert r["certainty"]["override"]["justification"] == "blinded outcome assessors"
    text = invoke(runner, "--kb", root2, "meta", "--condition", "depression", "--outcome", "response").output
    assert "override" in text and "blinded outcome assessors" in text
    bad = make_kb(tmp_path / "b", recs, summaries={"depression": {
        "condition": "depression", "outcomes": {"response": {"certainty": "high"}}}})
    res = invoke(runner, "--kb", bad, "meta", "--condition", "depression", "--outcome", "response")
    assert res.exit_code == 1 and "summaries/depression.yaml" in res.output and "justification" in res.output


def test_subgroups_and_leave_one_out(runner, kb):
    r = meta_json(runner, kb, "--condition", "depression", "--outcome", "response", "--subgroup", "design")
    sg = r["subgroups"]
    assert {g["value"] for g in sg["groups"]} == {"rct", "crossover-rct"} and sg["df"] == 1
    assert [x["omitted"] for x in r["leave_one_out"]] == [s["id"] for s in r["studies"]]


def test_table_output_reads_like_a_summary_of_findings(runner, kb):
    res = invoke(runner, "--kb", kb, "meta", "--condition", "depression", "--outcome", "response")
    assert res.exit_code == 0
    first = res.output.splitlines()[0]
    assert first.startswith("At about 24 h (12 h to under 2 days), more patients responded with ketamine than with "
                            "inert placebo (saline): ")
    assert "Risk ratio" in first and "4 trials pooled" in first and "Certainty" in first and "NNTB" in first
    assert "Left out" in res.output and "Retro 2015: retracted publication" in res.output


def test_csv_data_matches_metafor_linde(runner, tmp_path):
    import shlex

    src = SHARED / "data" / "metadat" / "dat.linde2005.txt"
    if not src.is_file():
        pytest.skip(f"{src} is absent (the shared data folder sits beside the repository in CI)")
    rows = [shlex.split(line) for line in src.read_text().splitlines() if line.strip()]
    data = [dict(zip(rows[0], r)) for r in rows[1:] if r[0] not in ("5", "6", "26")]
    csv_path = tmp_path / "linde.csv"
    csv_path.write_text("study,ai,n1i,ci,n2i\n" + "".join(
        f"\"{d['study']}\",{d['ai']},{d['n1i']},{d['ci']},{d['n2i']}\n" for d in data))
    r = json.loads(invoke(runner, "meta", "--data", csv_path, "--method", "DL", "--format", "json").output)
    assert r["k"] == 23 and round(r["estimate"], 4) == 0.5574 and round(r["tau2"], 4) == 0.1413
    assert round(r["i2"], 2) == 73.94 and round(r["q"], 4) == 84.4155


def test_csv_data_shapes_and_errors(runner, tmp_path):
    p = tmp_path / "yi.csv"
    p.write_text("study,yi,vi\nA,0.5,0.04\nB,0.3,0.09\nC,NA,0.1\n")
    r = json.loads(invoke(runner, "meta", "--data", p, "--format", "json").output)
    assert r["k"] == 2 and r["excluded"][0]["id"] == "C" and "line 4" in r["excluded"][0]["reason"]
    bad = tmp_path / "bad.csv"
    bad.write_text("trial,x,y\n1,2,3\n")
    res = invoke(runner, "meta", "--data", bad)
    assert res.exit_code == 2 and "match no data shape" in res.output and "study,ai,n1i,ci,n2i" in res.output


def test_forest_svg_is_accessible_and_escaped(runner, tmp_path):
    recs = [trial("one-2001", [binary("response", 12, 20, 4, 20)], authors=["<script>alert(1)</script> A"]),
            trial("two-2002", [binary("response", 10, 15, 2, 16)])]
    root = make_kb(tmp_path, recs)
    out = tmp_path / "f.svg"
    res = invoke(runner, "--kb", root, "forest", "--outcome", "response", "-o", out)
    assert res.exit_code == 0, res.output
    svg = out.read_text()
    tree = ET.fromstring(svg)  # well-formed XML
    ns = "{http://www.w3.org/2000/svg}"
    assert tree.find(f"{ns}title").text.startswith("Forest plot: Response")
    assert "2 studies pooled" in tree.find(f"{ns}desc").text
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert len(tree.findall(f".//{ns}g[@class='fp-row']")) == 2 and tree.find(f".//{ns}polygon") is not None
    res = invoke(runner, "--kb", root, "forest", "--outcome", "response", "-o", out)
    assert res.exit_code == 1 and "--force" in res.output and out.read_text() == svg


def test_bundled_kb_depression_response(runner):
    """The bundled records: the pooled trials are exactly the eligible controlled IV trials."""
    answer = meta_json(runner, ROOT, "--condition", "depression", "--outcome", "response")
    # each time window and comparator class on its own: saline at 24 h and days 2-7 (lii-2023), escitalopram
    # plus saline at 4 weeks (hu-2016), midazolam at days 2-7 (su-2023); murrough-2013's 24-h counts rest on a
    # press release and are kept out (pool: false)
    cells = {(a["window"]["id"], a["comparator_class"]["id"]): [s["id"] for s in a["studies"]] for a in answer["analyses"]}
    assert cells == {("24h", "inert-placebo"): ["lii-2023"], ("2-7d", "inert-placebo"): ["lii-2023"],
                     ("later", "inert-placebo"): ["hu-2016"], ("2-7d", "active-placebo"): ["su-2023"]}
    ids = {i for v in cells.values() for i in v}
    assert "parsaik-2015" not in ids and "jelovac-2025" not in ids and "anand-2023" not in ids
    assert "murrough-2013" not in ids
    lii = next(a for a in answer["analyses"] if a["window"]["id"] == "2-7d" and a["studies"][0]["id"] == "lii-2023")
    assert lii["studies"][0]["timepoint"] == "day 3"  # the earliest entry of the window (day 3, not day 7)
    left = {e["id"]: e["reason"] for e in answer["excluded"]}
    assert "press release" in left["murrough-2013"]
