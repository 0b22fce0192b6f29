"""kb and the published meta-analyses: `related: pooled-in`, `kb meta --ids`, `kb compare`, the
comparisons/ notes and the comparison page.

Invented knowledge bases (ids like alpha-2001) exercise each rule; the bundled knowledge base is
checked for the Cochrane review's six 24-hour analyses (dean-2021).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT, bundled_copy, invoke
from .test_synthesis import binary, make_kb, trial

DEAN_ENTRIES = 6  # the review's Summary of Findings rows at 24 h recorded in studies/dean-2021.yaml


def review(rid: str, outcomes: list[dict], **extra) -> dict:
    rec = {"id": rid, "title": f"Test review {rid}", "authors": [f"{rid.split('-')[0].title()} R"],
           "year": int(rid.split("-")[1][:4]), "design": "meta-analysis", "conditions": ["depression"],
           "intervention": {"drug": "ketamine-unspecified", "route": "mixed"}, "comparator": {"type": "mixed"},
           "outcomes": outcomes, "key_finding": "A test review.", "sources": [f"https://example.org/{rid}"],
           "status": "extracted", "added": "2026-11-26"}
    rec.update(extra)
    return rec


def effect(outcome: str, measure: str, value: float, lo: float, hi: float, *, comparator="saline", days=1.0,
           k=2, participants=100, certainty="low") -> dict:
    return {"outcome": outcome, "timepoint": "24 h", "timepoint_days": days, "comparator": comparator,
            "data": {"type": "effect", "measure": measure, "value": value, "ci_low": lo, "ci_high": hi, "k": k,
                     "participants": participants, "certainty": certainty},
            "source": {"url": "https://example.org/rev-2020", "locator": "Table 3"}}


def pooled_in(rid: str, note: str = "Table 1 lists it") -> list[dict]:
    return [{"id": rid, "relation": "pooled-in", "note": note}]


def write_notes(root: Path, data: dict) -> Path:
    (root / "comparisons").mkdir(exist_ok=True)
    path = root / "comparisons" / f"{data['review']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def notes(review_id: str = "rev-2020", **extra) -> dict:
    data = {"review": review_id, "reproduce": True, "reason": "a test review of randomised trials", "method": "DL",
            "source": "its Table 1", "analyses": [{"outcome": "response", "comparator": "saline", "timepoint_days": 1.0,
                                                   "candidates": [
                {"trial": "Alpha 2001", "id": "alpha-2001", "membership": "candidate", "basis": "Table 1"},
                {"trial": "Beta 2005", "id": "beta-2005", "membership": "candidate", "basis": "Table 1"},
                {"trial": "Gamma 2010", "id": "gamma-2010", "membership": "unestablished", "basis": "not in Table 1"},
                {"trial": "Nasal 2014", "membership": "candidate", "basis": "Table 1",
                 "reason": "intranasal ketamine: outside this knowledge base's eligibility"}]}]}
    data.update(extra)
    return data


@pytest.fixture
def cmp_kb(tmp_path) -> Path:
    """A review of alpha and beta (pooled-in), gamma held but not linked, and a trial kb lacks."""
    records = [
        trial("alpha-2001", [binary("response", 12, 20, 4, 20)], related=pooled_in("rev-2020")),
        trial("beta-2005", [binary("response", 9, 15, 5, 15)], related=pooled_in("rev-2020")),
        trial("gamma-2010", [binary("response", 10, 18, 6, 18)]),
        trial("delta-2012", [binary("response", 7, 14, 3, 14, timepoint="day 14", timepoint_days=14)],
              related=pooled_in("rev-2020")),
        review("rev-2020", [effect("response", "or", 3.5, 1.4, 8.9)]),
    ]
    root = make_kb(tmp_path, records)
    write_notes(root, notes())
    return root


def meta(runner, root, *args):
    return invoke(runner, "--kb", root, "meta", *args)


def compare_json(runner, root) -> dict:
    r = invoke(runner, "--kb", root, "compare", "--format", "json")
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


# -- related: pooled-in ---------------------------------------------------------------------------


def test_pooled_in_must_name_a_review(runner, tmp_path):
    root = make_kb(tmp_path, [
        trial("alpha-2001", [binary("response", 12, 20, 4, 20)], related=pooled_in("beta-2005")),
        trial("beta-2005", [binary("response", 9, 15, 5, 15)]),
        review("rev-2020", [effect("response", "or", 3.5, 1.4, 8.9)])])
    r = invoke(runner, "--kb", root, "validate")
    assert r.exit_code == 1
    assert "studies/alpha-2001.yaml" in r.output and "related[0].id" in r.output
    assert "'beta-2005' is a rct, not a review or meta-analysis" in r.output
    # the same link to the review is clean, and its note is part of the schema
    rec = yaml.safe_load((root / "studies" / "alpha-2001.yaml").read_text())
    rec["related"] = pooled_in("rev-2020", "Table 1 row 'Alpha 2001'")
    (root / "studies" / "alpha-2001.yaml").write_text(yaml.safe_dump(rec, sort_keys=False))
    assert invoke(runner, "--kb", root, "validate").exit_code == 0


def test_pooled_in_checked_when_one_file_is_validated(runner, tmp_path):
    """A file checked on its own is checked against the other records of its knowledge base."""
    root = make_kb(tmp_path, [trial("alpha-2001", [], related=pooled_in("beta-2005")), trial("beta-2005", [])])
    r = invoke(runner, "--kb", root, "validate", root / "studies" / "alpha-2001.yaml")
    assert r.exit_code == 1 and "not a review or meta-analysis" in r.output


def test_bundled_pooled_in_links_name_reviews():
    reviews = {"meta-analysis", "systematic-review"}
    links = 0
    for path in (ROOT / "studies").glob("*.yaml"):
        rec = yaml.safe_load(path.read_text(encoding="utf-8"))
        for r in rec.get("related") or []:
            if r["relation"] == "pooled-in":
                links += 1
                target = yaml.safe_load((ROOT / "studies" / f"{r['id']}.yaml").read_text(encoding="utf-8"))
                assert target["design"] in reviews, (path.name, r["id"])
                assert r.get("note"), f"{path.name}: a pooled-in link says where it is stated"
    assert links >= 9  # the nine trials whose Dean 2021 characteristics tables were read, at least


# -- kb meta --ids ---------------------------------------------------------------------------------


def test_ids_unknown_is_a_usage_error(runner, cmp_kb):
    r = meta(runner, cmp_kb, "--outcome", "response", "--ids", "alpha-2001,alpha-201,nobody-1999")
    assert r.exit_code == 2
    assert "--ids names no record: alpha-201, nobody-1999" in r.output
    assert "alpha-2001 (for alpha-201)" in r.output
    r = meta(runner, cmp_kb, "--outcome", "response", "--ids", "alpha-2001,,beta-2005")
    assert r.exit_code == 2 and "empty id" in r.output


def test_ids_restrict_the_pool_and_account_for_every_record(runner, cmp_kb):
    every = json.loads(meta(runner, cmp_kb, "--outcome", "response", "--window", "24h", "--format", "json").output)
    assert every["k"] == 3
    r = meta(runner, cmp_kb, "--outcome", "response", "--window", "24h", "--ids", "alpha-2001",
             "--ids", "beta-2005,delta-2012,rev-2020", "--format", "json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["k"] == 2 and [s["id"] for s in res["studies"]] == ["alpha-2001", "beta-2005"]
    assert res["options"]["ids"] == ["alpha-2001", "beta-2005", "delta-2012", "rev-2020"]
    why = {e["id"]: e["reason"] for e in res["excluded"]}
    assert set(why) == {"delta-2012", "rev-2020"}  # gamma was not named: not listed at all
    assert "timepoint day 14 is in the after 7 days window, not 24h" in why["delta-2012"]
    # without --window, each window is its own analysis, and a named record is accounted for in each
    every_window = json.loads(meta(runner, cmp_kb, "--outcome", "response", "--ids", "alpha-2001,delta-2012",
                                   "--format", "json").output)
    day1 = next(a for a in every_window["analyses"] if a["window"]["id"] == "24h")
    assert [s["id"] for s in day1["studies"]] == ["alpha-2001"]
    assert any(e["id"] == "delta-2012" and "its numbers are in: after 7 days, inert placebo (saline)" in e["reason"]
               for e in day1["excluded"])
    assert why["rev-2020"].startswith("a published review")
    assert "kb holds 3 of the trials it included, 2 of them with numbers for this question (Alpha 2001, Beta 2005)" in why["rev-2020"]
    # the pooled numbers are those of the two trials pooled on their own
    two = json.loads(meta(runner, cmp_kb, "--outcome", "response", "--window", "24h", "--ids", "beta-2005,alpha-2001",
                          "--format", "json").output)
    assert math.isclose(two["estimate"], res["estimate"])


def test_ids_of_records_without_the_outcome(runner, cmp_kb):
    r = meta(runner, cmp_kb, "--outcome", "remission", "--ids", "alpha-2001")
    assert r.exit_code == 1
    assert "alpha-2001: listed with --ids, but the record reports no remission" in r.output


def test_ids_cannot_restrict_a_data_file(runner, cmp_kb, tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("study,ai,n1i,ci,n2i\nA,1,10,2,10\n")
    r = meta(runner, cmp_kb, "--data", csv, "--ids", "alpha-2001")
    assert r.exit_code == 2 and "--ids picks records" in r.output


# -- the comparison ---------------------------------------------------------------------------------


def test_reproduction_equals_kb_meta_with_the_same_options(runner, cmp_kb):
    res = compare_json(runner, cmp_kb)
    (rv,) = res["reviews"]
    assert rv["id"] == "rev-2020" and rv["reproduce"]
    assert [h["id"] for h in rv["included"]] == ["alpha-2001", "beta-2005", "delta-2012"]
    (row,) = rv["rows"]
    assert row["reported"]["value"] == 3.5 and row["reported"]["certainty"] == "low"
    assert row["held"] == {"included": ["Alpha 2001", "Beta 2005", "Delta 2012"],
                           "with_numbers": ["Alpha 2001", "Beta 2005"]}
    # kb's side: kb meta's defaults (RR, REML, every eligible trial)
    every = json.loads(meta(runner, cmp_kb, "--outcome", "response", "--condition", "depression", "--window", "24h",
                            "--comparator-class", "inert-placebo", "--format", "json").output)
    assert row["kb"]["k"] == every["k"] == 3
    assert math.isclose(row["kb"]["estimate"], every["natural"]["estimate"])
    assert row["kb"]["certainty"] == every["certainty"]["level"]
    # the reproduction: the command it prints gives the same numbers
    rp = row["reproduction"]
    args = rp["command"].split()[2:]
    same = json.loads(meta(runner, cmp_kb, *args, "--format", "json").output)
    assert rp["result"]["k"] == same["k"] == 2
    for key in ("estimate", "ci_low", "ci_high"):
        assert math.isclose(rp["result"][key], same["natural"][key])
    assert same["method"] == "DL" and same["measure"] == "or"
    assert rp["agrees"] is False  # the review printed 3.5 (1.4 to 8.9) from two trials; kb's two give other numbers
    status = {c["trial"]: c["status"] for c in rp["candidates"]}
    assert status == {"Alpha 2001": "pooled", "Beta 2005": "pooled", "Gamma 2010": "held, not linked to the review",
                      "Nasal 2014": "not in kb"}


def test_agreement_to_the_printed_precision(runner, cmp_kb):
    """A review whose printed numbers are kb's own pool of its trials agrees; one digit off does not."""
    row = compare_json(runner, cmp_kb)["reviews"][0]["rows"][0]
    r = row["reproduction"]["result"]
    path = cmp_kb / "studies" / "rev-2020.yaml"
    rec = yaml.safe_load(path.read_text())
    rec["outcomes"][0]["data"].update(value=round(r["estimate"], 2), ci_low=round(r["ci_low"], 2),
                                      ci_high=round(r["ci_high"], 2))
    path.write_text(yaml.safe_dump(rec, sort_keys=False))
    assert compare_json(runner, cmp_kb)["reviews"][0]["rows"][0]["reproduction"]["agrees"] is True
    rec["outcomes"][0]["data"]["value"] = round(r["estimate"], 2) + 0.01
    path.write_text(yaml.safe_dump(rec, sort_keys=False))
    assert compare_json(runner, cmp_kb)["reviews"][0]["rows"][0]["reproduction"]["agrees"] is False


def test_notes_must_fit_the_review(runner, cmp_kb):
    write_notes(cmp_kb, notes(analyses=[{"outcome": "remission", "comparator": "saline", "timepoint_days": 1.0}]))
    r = invoke(runner, "--kb", cmp_kb, "compare")
    assert r.exit_code == 1
    assert "comparisons/rev-2020.yaml: analyses[0] (remission, saline, 1.0 days) matches no reported result" in r.output


@pytest.mark.parametrize("change, message", [
    ({"analyses": [{"outcome": "response", "comparator": "saline", "candidates": [
        {"trial": "Nasal 2014", "membership": "candidate", "basis": "Table 1"}]}]}, "needs a reason"),
    ({"analyses": [{"outcome": "response", "comparator": "saline", "candidates": [
        {"trial": "X 2000", "id": "nobody-2000", "membership": "candidate", "basis": "Table 1"}]}]},
     "no record with id 'nobody-2000'"),
    ({"review": "alpha-2001"}, "'alpha-2001' is a rct, not a review or meta-analysis"),
    ({"method": None}, "needs the pooling `method`"),
    ({"analyses": [{"outcome": "respones", "comparator": "saline"}]}, "did you mean 'response'"),
])
def test_notes_are_validated(runner, cmp_kb, change, message):
    data = notes(**change)
    if data["review"] != "rev-2020":
        (cmp_kb / "comparisons" / "rev-2020.yaml").unlink()
    path = write_notes(cmp_kb, data)
    r = invoke(runner, "--kb", cmp_kb, "validate")
    assert r.exit_code == 1
    assert f"comparisons/{path.name}" in r.output and message in r.output
    assert invoke(runner, "--kb", cmp_kb, "compare").exit_code == 1  # never a comparison from a broken file


def test_a_review_without_notes_is_set_beside(runner, cmp_kb):
    (cmp_kb / "comparisons" / "rev-2020.yaml").unlink()
    (rv,) = compare_json(runner, cmp_kb)["reviews"]
    assert not rv["reproduce"] and rv["rows"][0]["reproduction"] is None
    assert "set beside kb's results, not reproduced" in rv["rows"][0]["beside"]


def test_no_reviews_is_nothing_found(runner, tmp_path):
    root = make_kb(tmp_path, [trial("alpha-2001", [binary("response", 12, 20, 4, 20)])])
    r = invoke(runner, "--kb", root, "compare")
    assert r.exit_code == 1 and "no review records" in r.output


# -- the bundled knowledge base: the Cochrane review's six 24-hour analyses ---------------------------


@pytest.fixture(scope="module")
def bundled_compare():
    from click.testing import CliRunner

    from kbcli import cli

    r = CliRunner().invoke(cli, ["--kb", str(ROOT), "compare", "--format", "json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def dean(result: dict) -> dict:
    return next(rv for rv in result["reviews"] if rv["id"] == "dean-2021")


def test_dean_rows_give_the_review_numbers_exactly_as_the_record(bundled_compare):
    rec = yaml.safe_load((ROOT / "studies" / "dean-2021.yaml").read_text(encoding="utf-8"))
    entries = [o for o in rec["outcomes"] if (o.get("data") or {}).get("type") == "effect"]
    rows = dean(bundled_compare)["rows"]
    assert len(entries) == len(rows) == DEAN_ENTRIES
    for o, row in zip(entries, rows):
        rep, d = row["reported"], o["data"]
        assert (rep["outcome"], rep["comparator"], rep["timepoint_days"]) == (o["outcome"], o["comparator"], 1.0)
        for key in ("measure", "value", "ci_low", "ci_high", "k", "participants", "certainty"):
            assert rep[key] == d[key], (o["outcome"], o["comparator"], key)
        assert rep["source_url"] == o["source"]["url"] and rep["source_locator"] == o["source"]["locator"]
        assert row["question"]["window"]["id"] == "24h"
        cls = {"placebo": "inert-placebo", "midazolam": "active-placebo"}[o["comparator"]]
        assert row["question"]["comparator_class"]["id"] == cls


def test_dean_kb_numbers_equal_kb_meta(runner, bundled_compare):
    for row in dean(bundled_compare)["rows"]:
        q = row["question"]
        args = ["--condition", "depression", "--outcome", q["outcome"], "--window", "24h",
                "--comparator-class", q["comparator_class"]["id"], "--format", "json"]
        r = meta(runner, ROOT, *args)
        if row["kb"]["ok"]:
            res = json.loads(r.output)
            assert row["kb"]["k"] == res["k"]
            for key in ("estimate", "ci_low", "ci_high"):
                assert math.isclose(row["kb"][key], res["natural"][key])
            assert row["kb"]["certainty"] == res["certainty"]["level"]
        else:
            assert r.exit_code == 1 and "no eligible study" in r.output
        rp = row["reproduction"]
        r = meta(runner, ROOT, *rp["command"].split()[2:], "--format", "json")
        if rp["result"]["ok"]:
            res = json.loads(r.output)
            assert rp["result"]["k"] == res["k"]
            assert math.isclose(rp["result"]["estimate"], res["natural"]["estimate"])
        else:
            assert r.exit_code == 1 and rp["result"]["k"] == 0
        assert not rp["agrees"] or rp["result"]["k"] == row["reported"]["k"]


def test_dean_held_trials_are_the_pooled_in_records(bundled_compare):
    linked = sorted(p.stem for p in (ROOT / "studies").glob("*.yaml") if any(
        r["id"] == "dean-2021" and r["relation"] == "pooled-in"
        for r in yaml.safe_load(p.read_text(encoding="utf-8")).get("related") or []))
    rv = dean(bundled_compare)
    assert [h["id"] for h in rv["included"]] == linked
    for row in rv["rows"]:
        assert len(row["held"]["included"]) == len(linked)
        assert row["reproduction"]["ids"] == linked


def test_every_candidate_of_every_reproduced_analysis_has_a_reason(bundled_compare):
    rows = [row for rv in bundled_compare["reviews"] if rv["reproduce"] for row in rv["rows"]]
    assert len(rows) >= DEAN_ENTRIES
    notes_file = yaml.safe_load((ROOT / "comparisons" / "dean-2021.yaml").read_text(encoding="utf-8"))
    assert len(notes_file["analyses"]) == DEAN_ENTRIES
    for row in rows:
        rp = row["reproduction"]
        assert rp is not None, row["question"]["text"]
        assert rp["candidates"], row["question"]["text"]
        for c in rp["candidates"]:
            assert c["status"] in {"pooled", "held, no numbers here", "held, not linked to the review", "not in kb"}
            assert c["reasons"] and all(r.strip() for r in c["reasons"]), (row["question"]["text"], c["trial"])
            assert c["membership_text"] and c["basis"]
            if c["status"] == "not in kb":
                assert c["id"] is None
            if c["status"] == "held, not linked to the review":
                assert c["membership"] == "unestablished"  # a trial whose inclusion is established is linked
    # Lapidus 2014 (intranasal) is explained by the notes, Zarate 2006a by its record's own note
    response = rows[0]["reproduction"]["candidates"]
    lapidus = next(c for c in response if c["trial"] == "Lapidus 2014")
    assert "intranasal" in lapidus["reasons"][0]
    zarate = next(c for c in response if c["trial"] == "Zarate 2006a")
    assert any(r.startswith("No poolable numbers:") for r in zarate["reasons"])


def test_review_left_out_reason_is_computed(runner):
    res = json.loads(meta(runner, ROOT, "--condition", "depression", "--outcome", "response", "--format", "json").output)
    why = {e["id"]: e["reason"] for e in res["excluded"]}
    assert "pooled one by one" not in " ".join(why.values())
    linked = [p.stem for p in (ROOT / "studies").glob("*.yaml") if any(
        r["id"] == "dean-2021" and r["relation"] == "pooled-in"
        for r in yaml.safe_load(p.read_text(encoding="utf-8")).get("related") or [])]
    with_numbers = {s["id"] for a in res["analyses"] for s in a["studies"]} & set(linked)
    assert f"kb holds {len(linked)} of the trials it included, {len(with_numbers)} of them" in why["dean-2021"]
    assert "kb records none of the trials it included" in why["bahji-2022"]


def test_markdown_is_the_docs_table(runner):
    r = invoke(runner, "--kb", ROOT, "compare", "--format", "markdown")
    assert r.exit_code == 0
    doc = ROOT / "docs" / "comparison-table.md"
    assert r.output == doc.read_text(encoding="utf-8"), (
        "docs/comparison-table.md is out of date: kb compare --format markdown > docs/comparison-table.md")
    assert "### Dean 2021: Response, about 24 h, ketamine vs inert placebo (saline), trial by trial" in r.output


def test_text_output(runner):
    r = invoke(runner, "--kb", ROOT, "compare")
    assert r.exit_code == 0
    assert "Dean 2021 (systematic-review): reproduction attempted" in r.output
    assert "review      50% reduction: OR 3.94 (1.54 to 10.10); k = 7, 185 participants; certainty very low" in r.output
    assert "Wilkinson 2018 (meta-analysis): set beside kb's results, not reproduced" in r.output


# -- the site page -----------------------------------------------------------------------------------


def test_comparison_page_is_built_and_linked(runner, tmp_path, bundled_compare):
    root = bundled_copy(tmp_path / "kb")
    shutil.copytree(ROOT / "comparisons", root / "comparisons")
    out = tmp_path / "site"
    r = invoke(runner, "--kb", root, "build", "--out", out, "--no-search")
    assert r.exit_code == 0, r.output
    page = (out / "comparison.html").read_text(encoding="utf-8")
    assert "<h1>kb and the published meta-analyses</h1>" in page
    assert 'href="comparison.html">Published reviews</a>' in (out / "index.html").read_text(encoding="utf-8")
    assert 'href="comparison.html"' in (out / "methods.html").read_text(encoding="utf-8")
    # the page's numbers are kb compare's
    for row in dean(bundled_compare)["rows"]:
        rep = row["reported"]
        assert f"{rep['measure'].upper()} {rep['text']}" in page
        assert row["question"]["text"] in page
    assert "Lapidus 2014" in page and "intranasal ketamine" in page
    for row in dean(bundled_compare)["rows"]:  # each row's "trial by trial" link has its section
        assert f'href="#repro-{row["slug"]}"' in page and f'id="repro-{row["slug"]}"' in page
    # a change to the notes is a change to the page: the next build is not "up to date"
    notes_path = root / "comparisons" / "dean-2021.yaml"
    notes_path.write_text(notes_path.read_text(encoding="utf-8").replace(
        "kb restricts its pool", "kb restricts its pool (edited)"), encoding="utf-8")
    r = invoke(runner, "--kb", root, "build", "--out", out, "--no-search")
    assert r.exit_code == 0 and "(edited)" in (out / "comparison.html").read_text(encoding="utf-8")
