"""Clinicians' words (issue 14, item 8): natural questions find what a clinician asking them needs.

Each question is typed as a clinician would type it into `kb search`, and names the bundled
records (studies/<id>.yaml) that must rank in the top 5. The expected records were chosen by
reading the records (title, key finding, topics, durability and safety fields), not by running the
search: they are what a clinician asking that question would need to read first. A tuple means
"at least one of these". When the evidence issue added 16 trials, the new trials that answer a
question as directly (the largest suicidal-ideation trial, dose-comparison and PTSD trials) joined the
alternatives; zarate-2006 lost the "onset within 2 h" text that had rested on another trial's page.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kb.config import open_kb
from kb.index import SearchIndex

from .conftest import bundled_copy, invoke

QUESTIONS: list[tuple[str, tuple]] = [
    # safety: the two reviews whose subject is ketamine's side effects and tolerability
    ("is ketamine safe", ("wan-2015", "short-2018")),
    ("ketamine safety", ("wan-2015", "short-2018")),
    ("ketamine tolerability", ("wan-2015", "short-2018")),
    ("ketamine side effects", ("short-2018", "wan-2015")),
    ("what are the adverse events of ketamine infusions", ("short-2018", "wan-2015")),
    ("dissociation side effects", ("short-2018", "wan-2015")),
    # ECT: the two head-to-head trials, and the review pooling ketamine-augmented ECT trials
    ("ketamine vs ECT", ("anand-2023", "ekstrand-2022")),  # newport-2015: test_vs_is_a_connective
    ("ketamine versus electroconvulsive therapy", ("anand-2023", "ekstrand-2022")),
    ("ketamine compared with ECT", ("anand-2023", "ekstrand-2022")),
    # how many infusions: trials of one against several infusions, and of repeated courses
    ("how many infusions", ("phillips-2019", "shiroma-2020", "aan-het-rot-2010")),
    ("repeated infusions", ("phillips-2019", "aan-het-rot-2010", "shiroma-2020")),
    ("maintenance infusions", ("phillips-2019", "aan-het-rot-2010")),
    ("twice weekly or three times a week", ("singh-2016",)),
    # esketamine: the reviews comparing or pooling intranasal esketamine with IV ketamine
    ("esketamine nasal spray", ("bahji-2021", "xiong-2021")),
    ("Spravato or IV ketamine", ("bahji-2021", "bahji-2022")),
    ("racemic ketamine vs esketamine", ("bahji-2021", "bahji-2022")),
    # older patients: the only record reporting on older patients
    ("ketamine for older adults", ("riva-posse-2018",)),
    ("is ketamine safe in elderly patients", ("riva-posse-2018",)),
    # how long, how fast
    ("how long does the effect last", ("aan-het-rot-2010", "mcinnes-2022")),
    ("relapse after stopping infusions", ("aan-het-rot-2010", ("ekstrand-2022", "feder-2021"))),
    ("how fast does ketamine work for depression", (("zarate-2006", "han-2016"),)),
    # suicidal thoughts: the largest controlled trial and the patient-level meta-analysis
    ("does ketamine help suicidal thoughts", ("grunebaum-2018", "wilkinson-2018")),
    ("ketamine for suicidal ideation", (("wilkinson-2018", "abbar-2022"), "grunebaum-2018")),
    # conditions
    ("ketamine for PTSD", (("feder-2014", "duek-2023", "abdallah-2022"), "feder-2021")),
    ("ketamine in veterans", ("abdallah-2022", "shiroma-2020")),
    ("ketamine for bipolar depression", (("diazgranados-2010", "grunebaum-2017"), "zarate-2012")),
    ("does ketamine cause mania", ("diazgranados-2010", "wilkowska-2021")),
    ("ketamine for chronic pain", ("orhurhu-2019", "cohen-2018")),
    ("ketamine for CRPS", ("schwartzman-2009", "sigtermans-2009")),
    ("ketamine for fibromyalgia", ("noppers-2011",)),
    ("ketamine for social anxiety", ("taylor-2018",)),
    ("ketamine for anxiety", ("tully-2022", "whittaker-2021")),
    ("ketamine for OCD", ("rodriguez-2013", "bloch-2012")),
    # practice
    ("blood pressure during infusion", ("riva-posse-2018", "szarmach-2020", "vankawala-2021")),
    ("heart rate", ("vankawala-2021",)),
    ("dose of ketamine", (("fava-2020", "su-2017", "abdallah-2022"), "xu-2016")),
    ("what dose of ketamine should I use", (("fava-2020", "su-2017", "abdallah-2022"), "xu-2016")),
    ("guidelines for ketamine infusions", ("cohen-2018", "sanacora-2017")),
    ("memory problems after ketamine", ("anand-2023",)),
    ("ketamine with psychotherapy", ("rodriguez-2016",)),
    ("does midazolam or saline placebo change the effect", ("wilkinson-2019",)),
    ("is ketamine better than placebo for depression", ("dean-2021", "bahji-2022")),
    ("does ketamine work for treatment-resistant depression", ("murrough-2013",)),
    ("real world outcomes of ketamine clinics", ("mcinnes-2022",)),
]


# Failing before the search was tuned, the questions left the list as tuning made them pass; these
# three still fail, and stay visible as strict xfails (an unexpected pass fails the run) rather than
# being rewritten after the fact. In each, every candidate record holds every concept asked, BM25
# saturates on them, and length normalisation orders the near-ties: durability-tagged records all
# score within 10% for "how long does the effect last" (aan-het-rot-2010 ranks 8th, mcinnes-2022,
# a long record, 12th); bahji-2022 and murrough-2013, long records whose titles answer the
# question, rank 9th and 15th. Field-aware scoring (BM25F: title and key finding normalised by their own length) is
# the likely fix; it was not attempted here.
NOT_YET = {
    "how long does the effect last": "durability records tie: aan-het-rot-2010 ranks 8th, mcinnes-2022 12th",
    "is ketamine better than placebo for depression": "bahji-2022 ranks 9th",
    "does ketamine work for treatment-resistant depression": "murrough-2013 ranks 15th",
}


@pytest.fixture(scope="module")
def kbroot(tmp_path_factory) -> Path:
    root = bundled_copy(tmp_path_factory.mktemp("clinician-kb"))
    SearchIndex(open_kb(root)).refresh()
    return root


def top(runner, root, question: str, limit: int = 5) -> list[str]:
    r = invoke(runner, "--kb", root, "search", question, "--format", "ids", "--limit", str(limit))
    assert r.exit_code in (0, 1), r.output
    return r.stdout.split()


def total(runner, root, question: str) -> int:
    r = invoke(runner, "--kb", root, "search", question, "--format", "json", "--limit", "0")
    assert r.exit_code in (0, 1), r.output
    return json.loads(r.stdout)["total"]


def test_there_are_at_least_30_questions():
    assert len(QUESTIONS) >= 30
    for _, expected in QUESTIONS:
        for want in expected:
            for i in (want if isinstance(want, tuple) else (want,)):
                assert (Path(__file__).resolve().parent.parent / "studies" / f"{i}.yaml").is_file(), i


@pytest.mark.parametrize("question,expected", [
    pytest.param(q, e, id=q, marks=[pytest.mark.xfail(strict=True, reason=NOT_YET[q])] if q in NOT_YET else [])
    for q, e in QUESTIONS])
def test_question_finds_what_a_clinician_needs(runner, kbroot, question, expected):
    got = top(runner, kbroot, question)
    missing = [w for w in expected if not (set(w) & set(got) if isinstance(w, tuple) else w in got)]
    assert not missing, f"{question!r}: top 5 {got} lacks {missing}"


# the four failures the issue reports, by number
def test_is_ketamine_safe_finds_what_ketamine_safety_finds(runner, kbroot):
    assert total(runner, kbroot, "ketamine safety") >= 17
    assert total(runner, kbroot, "is ketamine safe") == total(runner, kbroot, "ketamine safety")


def test_vs_is_a_connective_not_a_required_word(runner, kbroot):
    assert "newport-2015" in top(runner, kbroot, "ketamine vs ECT", limit=100)
    assert total(runner, kbroot, "ketamine vs ECT") == total(runner, kbroot, "ketamine ECT")


def test_how_many_infusions_finds_the_repeated_infusion_trials(runner, kbroot):
    assert total(runner, kbroot, "how many infusions") >= 5


def test_esketamine_nasal_spray_finds_the_esketamine_reviews(runner, kbroot):
    assert total(runner, kbroot, "esketamine nasal spray") >= 2


def test_kb_yaml_extends_the_expansion_and_optional_lists(runner, tmp_path):
    root = bundled_copy(tmp_path / "kb")
    assert set(top(runner, root, "military", 100)) == {"abdallah-2022", "feder-2021"}
    r = invoke(runner, "--kb", root, "search", "ketamine PTSD please", "--format", "json")
    assert "no record has every word of the query" in " ".join(json.loads(r.stdout)["notices"])  # please is a word
    with open(root / "kb.yaml", "a", encoding="utf-8") as fh:
        fh.write("vocabulary:\n"
                 "  expansion:\n    service-members: {label: service members, synonyms: [military, veterans]}\n"
                 "  optional:\n    question: {synonyms: [please]}\n")
    found = set(top(runner, root, "military", 100))
    assert {"abdallah-2022", "feder-2021", "shiroma-2020", "dadabayev-2020", "su-2023"} <= found
    r = invoke(runner, "--kb", root, "search", "ketamine PTSD please", "--format", "json")
    assert json.loads(r.stdout)["notices"] == [] and json.loads(r.stdout)["match"] == "all"
    assert top(runner, root, "ketamine PTSD please", 100) == top(runner, root, "ketamine PTSD", 100) != []


def test_an_unknown_vocabulary_category_is_still_refused(runner, tmp_path):
    root = bundled_copy(tmp_path / "kb")
    with open(root / "kb.yaml", "a", encoding="utf-8") as fh:
        fh.write("vocabulary:\n  expansions:\n    x: {label: x, synonyms: [y]}\n")
    r = invoke(runner, "--kb", root, "search", "ketamine")
    assert r.exit_code == 2 or r.exit_code == 1
    assert "unknown vocabulary category 'expansions'" in r.output and "expansion" in r.output
