"""Drafts are not evidence (issue 14, item 6).

Records with status `draft` (what kb import and kb new write) are left out of `kb stats`, the site
and pooled results; `kb stats --drafts` lists them and `kb build --include-drafts` previews them.
Unit tests use a small knowledge base with a synthetic draft that already holds numbers
(tests/fixtures/drafts); the last tests import the real shared exports into a copy of the bundled
knowledge base and check that nothing a clinician reads changes.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from kb.config import open_kb
from kb.store import load_studies, split_drafts

from .conftest import FIXTURES, bundled_copy, invoke, shared_data

DRAFT = FIXTURES / "drafts" / "draftly-2022.yaml"


@pytest.fixture
def draft_kb(kb_dir: Path) -> Path:
    """The valid fixtures (two extracted records, one retracted) and one draft with numbers."""
    shutil.copy(DRAFT, kb_dir / "studies" / DRAFT.name)
    return kb_dir


def set_status(root: Path, study_id: str, status: str) -> None:
    path = root / "studies" / f"{study_id}.yaml"
    text = path.read_text(encoding="utf-8")
    new = re.sub(r"(?m)^status: \w+$", f"status: {status}", text)
    assert new != text or f"status: {status}" in text
    path.write_text(new, encoding="utf-8")


# -- the one rule ------------------------------------------------------------------------


def test_a_draft_is_not_evidence(draft_kb):
    loaded = load_studies(open_kb(draft_kb))
    evidence, drafts = split_drafts(loaded.studies)
    assert [s.id for s in drafts] == ["draftly-2022"]
    assert sorted(s.id for s in evidence) == ["fixture-2020", "fixture-2021", "retracted-2015"]
    assert all(s.is_evidence for s in evidence) and not drafts[0].is_evidence


# -- kb stats ----------------------------------------------------------------------------


def test_stats_leaves_drafts_out_and_says_so(runner, draft_kb):
    data = json.loads(invoke(runner, "--kb", draft_kb, "stats", "--format", "json").output)
    assert data["scope"] == "evidence" and data["studies"] == 3 and data["drafts"] == 1
    assert "records" not in data
    # the draft's condition (depression), design and status are not counted
    before = json.loads(invoke(runner, "--kb", draft_kb, "stats", "--format", "json").output)
    (draft_kb / "studies" / DRAFT.name).unlink()
    without = json.loads(invoke(runner, "--kb", draft_kb, "stats", "--format", "json").output)
    assert {k: v for k, v in before.items() if k != "drafts"} == {k: v for k, v in without.items() if k != "drafts"}
    assert without["drafts"] == 0
    assert {r["term"] for r in before["status"]} == {"extracted"}

    shutil.copy(DRAFT, draft_kb / "studies" / DRAFT.name)
    text = invoke(runner, "--kb", draft_kb, "stats").output
    assert "3 studies in" in text
    assert "1 draft record not counted; `kb stats --drafts` lists them" in text
    (draft_kb / "studies" / DRAFT.name).unlink()
    assert "not counted" not in invoke(runner, "--kb", draft_kb, "stats").output


def test_stats_drafts_counts_and_lists_the_drafts(runner, draft_kb):
    set_status(draft_kb, "fixture-2021", "draft")
    data = json.loads(invoke(runner, "--kb", draft_kb, "stats", "--drafts", "--format", "json").output)
    assert data["scope"] == "drafts" and data["studies"] == 2 and data["drafts"] == 2
    assert {r["term"]: r["count"] for r in data["status"]} == {"draft": 2}
    assert {r["term"]: r["count"] for r in data["condition"]} == {"depression": 1, "suicidal-ideation": 1}
    assert [r["id"] for r in data["records"]] == ["draftly-2022", "fixture-2021"]
    first = data["records"][0]
    assert first["title"].startswith("Synthetic draft trial") and first["year"] == 2022
    assert first["conditions"] == ["depression"] and first["added"] == "2024-07-01"

    r = invoke(runner, "--kb", draft_kb, "stats", "--drafts")
    assert r.exit_code == 0
    assert "2 draft records in" in r.output and "not counted as evidence" in r.output
    assert re.search(r"draftly-2022\s+│\s+2022\s+│\s+Synthetic draft trial", r.output)
    assert "fixture-2021" in r.output and "fixture-2020" not in r.output


# -- kb meta and kb forest ---------------------------------------------------------------


def test_meta_never_pools_a_draft_and_says_why(runner, draft_kb):
    r = json.loads(invoke(runner, "--kb", draft_kb, "meta", "--outcome", "response", "--format", "json").output)
    assert [s["id"] for s in r["studies"]] == ["fixture-2020"] and r["k"] == 1
    assert {"id": "draftly-2022", "reason": "draft record: not yet extracted", "outcome": "response",
            "timepoint": None} in r["excluded"]
    text = invoke(runner, "--kb", draft_kb, "meta", "--outcome", "response").output
    assert "draftly-2022: draft record: not yet extracted" in text
    # the pooled numbers are those without the draft
    (draft_kb / "studies" / DRAFT.name).unlink()
    alone = json.loads(invoke(runner, "--kb", draft_kb, "meta", "--outcome", "response", "--format", "json").output)
    assert (alone["estimate"], alone["ci_low"], alone["ci_high"]) == (r["estimate"], r["ci_low"], r["ci_high"])


def test_forest_leaves_the_draft_out(runner, draft_kb):
    svg = invoke(runner, "--kb", draft_kb, "forest", "--outcome", "response").output
    assert svg.startswith("<svg") and "Fixture 2020" in svg
    assert "Draftly" not in svg and "draftly" not in svg
