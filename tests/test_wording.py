"""Every sentence a clinician reads, for every outcome term and every case, against a table.

The table below was written by reading each term's meaning, not by running the code: for each
outcome, the claim when ketamine's CI lies above no effect (more events, higher scores), whether that
is good for patients, and the same below no effect. A binary benefit must come with an NNTB and a
harm with an NNTH; a CI across no effect must say "compatible with no difference", never a direction.
"""

from __future__ import annotations

import math

import pytest

from kb import absolute as A
from kb import wording as W
from kb.vocab import load_vocabulary

VOCAB = load_vocabulary()

# (term, measure, claim when up, up is good, claim when down, down is good); symptom scales: MADRS
TABLE = [
    ("response", "rr", "More patients responded", True, "Fewer patients responded", False),
    ("remission", "rr", "More patients remitted", True, "Fewer patients remitted", False),
    ("symptom-change", "smd", "Symptom scores were higher (worse)", False, "Symptom scores were lower (better)", True),
    ("si-resolution", "rr", "Suicidal ideation resolved in more patients", True,
     "Suicidal ideation resolved in fewer patients", False),
    ("si-response", "rr", "Suicidal ideation fell by at least half in more patients", True,
     "Suicidal ideation fell by at least half in fewer patients", False),
    ("si-severity", "smd", "Suicidal ideation was more severe", False, "Suicidal ideation was less severe", True),
    ("suicidality-worsening", "rr", "Worsening or emergent suicidality was more frequent", False,
     "Worsening or emergent suicidality was less frequent", True),
    ("relapse", "rr", "More patients relapsed", False, "Fewer patients relapsed", True),
    ("time-to-relapse", "smd", "Relapse came later", True, "Relapse came sooner", False),
    ("pain-relief", "rr", "More patients had pain relief", True, "Fewer patients had pain relief", False),
    ("pain-intensity", "smd", "Pain was more intense", False, "Pain was less intense", True),
    ("anxiety-symptoms", "smd", "Anxiety symptoms were more severe", False, "Anxiety symptoms were less severe", True),
    ("functioning", "smd", "Functioning scores were higher (worse)", False, "Functioning scores were lower (better)", True),
    ("quality-of-life", "smd", "Quality of life was better", True, "Quality of life was worse", False),
    ("cognition", "smd", "Cognition scores were higher (worse)", False, "Cognition scores were lower (better)", True),
    ("adverse-events", "rr", "Adverse events were more frequent", False, "Adverse events were less frequent", True),
    ("serious-adverse-events", "rr", "Serious adverse events were more frequent", False,
     "Serious adverse events were less frequent", True),
    ("dissociation", "rr", "Dissociation was more frequent", False, "Dissociation was less frequent", True),
    ("blood-pressure", "rr", "Raised blood pressure was more frequent", False, "Raised blood pressure was less frequent", True),
    ("heart-rate", "rr", "Raised heart rate was more frequent", False, "Raised heart rate was less frequent", True),
    ("nausea", "rr", "Nausea or vomiting was more frequent", False, "Nausea or vomiting was less frequent", True),
    ("dizziness", "rr", "Dizziness was more frequent", False, "Dizziness was less frequent", True),
    ("headache", "rr", "Headache was more frequent", False, "Headache was less frequent", True),
    ("mania-switch", "rr", "Switches to mania or hypomania were more frequent", False,
     "Switches to mania or hypomania were less frequent", True),
    ("dropout", "rr", "More patients dropped out", False, "Fewer patients dropped out", True),
    ("blinding-integrity", "rr", "More participants guessed their allocation correctly", False,
     "Fewer participants guessed their allocation correctly", True),
]


def test_the_table_covers_every_outcome_term():
    live = {t for t, term in VOCAB.categories["outcome"].items() if not term.meaning.get("deprecated")}
    assert {row[0] for row in TABLE} == live


def result(outcome: str, measure: str, est: float, lo: float, hi: float, k: int = 3, acr: float = 0.3) -> dict:
    """A pooled result as kb.synthesis returns it, from a natural-scale estimate and CI."""
    log = measure in ("rr", "or")
    f = math.log if log else (lambda x: x)
    r = {"outcome": outcome, "measure": measure, "level": 0.95, "k": k, "participants": 200,
         "ci_low": f(lo), "ci_high": f(hi), "natural": {"estimate": est, "ci_low": lo, "ci_high": hi},
         "window": {"id": "24h", "label": "about 24 h", "phrase": "At about 24 h"},
         "comparator_class": {"id": "active-placebo", "label": "active placebo (midazolam)"},
         "certainty": {"level": "low"}}
    r["better"] = W.better_of(VOCAB, outcome, ["MADRS"])
    if measure == "rr":
        r["absolute"] = A.binary("rr", est, lo, hi, acr, r["better"], "test")
    return r


CASES = {"up": (2.0, 1.5, 2.6), "down": (0.5, 0.3, 0.8), "none": (1.1, 0.8, 1.5)}
SMD_CASES = {"up": (0.6, 0.3, 0.9), "down": (-0.6, -0.9, -0.3), "none": (-0.1, -0.4, 0.2)}


@pytest.mark.parametrize("term, measure, up, up_good, down, down_good", TABLE)
@pytest.mark.parametrize("case", ["up", "down", "none"])
def test_every_term_and_case_reads_the_right_way(term, measure, up, up_good, down, down_good, case):
    est, lo, hi = (CASES if measure == "rr" else SMD_CASES)[case]
    text = W.sentence(result(term, measure, est, lo, hi), VOCAB)
    assert text.startswith("At about 24 h, ")
    assert "active placebo (midazolam)" in text and text.endswith("Certainty of the evidence: low.")
    if case == "none":
        noun = VOCAB.meaning("outcome", term)["noun"]
        assert f"the data are compatible with no difference in {noun} between ketamine and active placebo" in text
        for claim in (up, down):
            assert claim[0].lower() + claim[1:] not in text
        if measure == "rr":
            assert "∞" in text  # the NNT's CI runs through infinity
        return
    claim, good = (up, up_good) if case == "up" else (down, down_good)
    other = down if case == "up" else up
    assert f"At about 24 h, {claim[0].lower()}{claim[1:]} with ketamine than with active placebo (midazolam)" in text
    assert other[0].lower() + other[1:] not in text
    if measure == "rr":
        assert ("NNTB" in text) is good and ("NNTH" in text) is (not good)
        assert (" more per 1000" in text) is (case == "up") and (" fewer per 1000" in text) is (case == "down")


def test_instrument_direction_decides_symptom_scales():
    """A symptom outcome on a scale where higher is better (Q-LES-Q) reads the other way."""
    assert W.better_of(VOCAB, "symptom-change", ["Q-LES-Q"]) == "higher"
    assert W.claim(VOCAB, "symptom-change", "smd", "up", "higher") == "Symptom scores were higher (better)"
    with pytest.raises(W.WordingError, match="disagree"):
        W.better_of(VOCAB, "symptom-change", ["MADRS", "Q-LES-Q"])
    assert W.claim(VOCAB, "symptom-change", "smd", "down", None).endswith("(the instruments do not say which way is better)")


def test_one_trial_is_never_called_pooled():
    one = W.sentence(result("response", "rr", 2.0, 1.5, 2.6, k=1), VOCAB)
    assert "one trial" in one and "not a pooled result" in one and "trials pooled" not in one
    many = W.sentence(result("response", "rr", 2.0, 1.5, 2.6, k=4), VOCAB)
    assert "4 trials pooled" in many and "one trial" not in many
    assert W.headline(result("response", "rr", 2.0, 1.5, 2.6, k=1), VOCAB).endswith("one trial, not a pooled result")


def test_the_old_suicidal_ideation_sentence_cannot_come_back():
    """Grunebaum 2018's events are responders (SSI halved): more events is good, and the sentence says so."""
    text = W.sentence(result("si-response", "rr", 1.83, 1.06, 3.18, k=1, acr=0.3), VOCAB)
    assert "suicidal ideation fell by at least half in more patients with ketamine" in text
    assert "more frequent" not in text and "NNTB" in text
