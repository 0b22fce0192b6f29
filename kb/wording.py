"""The words a clinician reads, generated from declarations, never guessed.

Every outcome term of the vocabulary declares what its events or scores mean (kb/data/vocabulary.yaml):
whether more events (or lower scores) are good for the patient, and the sentence for each direction.
Instruments declare whether lower or higher scores are better. This module turns a pooled result into
its plain-language sentence with these rules:

1. Direction: for ratios and risk differences, the CI above no effect means more events with ketamine,
   below means fewer; for mean differences, above means higher scores, below lower (ketamine minus
   comparator). A CI that includes no effect gives "the data are compatible with no difference".
2. Words: the term's ``more``/``fewer`` sentence for events, ``higher``/``lower`` for scores.
3. Benefit or harm: from the term's ``better`` (or the instruments' when it says ``instrument``).
   It decides NNTB against NNTH, and the "(better)" or "(worse)" said after a score sentence.
4. Every sentence names the comparator class and the time window, and says "one trial" (not
   "pooled") when k = 1. ``tests/test_wording.py`` checks every outcome term in every case.
"""

from __future__ import annotations

from .effects import MEASURE_LABELS

BINARY_FAMILY = frozenset({"rr", "or", "rd", "hr"})
CONTINUOUS_FAMILY = frozenset({"smd", "md"})


class WordingError(ValueError):
    """The declarations cannot say which way a result points (e.g. instruments that disagree)."""


def fmt(x: float | None, measure: str) -> str:
    if x is None:
        return "n/a"
    if measure == "rd":
        return f"{x:.3f}"
    return f"{x:.2f}"


def direction(ci_low: float, ci_high: float) -> str | None:
    """'up' when the CI (analysis scale: log ratios, differences) lies above 0, 'down' below, None across."""
    if ci_low > 0:
        return "up"
    if ci_high < 0:
        return "down"
    return None


def instrument_better(vocab, instruments) -> str | None:
    """'lower' or 'higher' when every instrument declares the same good direction; None when unknown.
    Instruments that disagree cannot be pooled into one sentence (WordingError)."""
    found = {vocab.meaning("instrument", i).get("better") for i in instruments if i}
    found.discard(None)
    if len(found) > 1:
        raise WordingError("the instruments disagree on which way is better: "
                           + ", ".join(sorted(f"{i} ({vocab.meaning('instrument', i).get('better')})"
                                              for i in set(instruments) if i)))
    return found.pop() if found else None


def better_of(vocab, outcome: str | None, instruments=()) -> str | None:
    """The good direction of an outcome: 'more' or 'fewer' events, 'lower' or 'higher' scores, or None."""
    better = vocab.meaning("outcome", outcome).get("better") if vocab is not None and outcome else None
    if better == "instrument":
        return instrument_better(vocab, instruments)
    return better


def is_benefit(measure: str, way: str | None, better: str | None) -> bool | None:
    """Whether a result pointing ``way`` ('up' or 'down') is good for patients (None: cannot say)."""
    if way is None or better is None:
        return None
    if measure in BINARY_FAMILY:
        return (way == "up") == (better == "more") if better in ("more", "fewer") else None
    if measure in CONTINUOUS_FAMILY:
        return (way == "up") == (better == "higher") if better in ("lower", "higher") else None
    return None


def claim(vocab, outcome: str | None, measure: str, way: str, better: str | None) -> str:
    """'More patients responded', 'Dissociation was more frequent', 'Pain was less intense' ..."""
    meaning = vocab.meaning("outcome", outcome) if vocab is not None and outcome else {}
    if measure in BINARY_FAMILY:
        words = meaning.get("more" if way == "up" else "fewer")
        if words:
            return words
        label = _label(vocab, outcome)
        return f"{label} was {'more' if way == 'up' else 'less'} frequent"
    if measure in CONTINUOUS_FAMILY:
        words = meaning.get("higher" if way == "up" else "lower")
        declared = words is not None and meaning.get("better") != "instrument"
        if words is None:
            words = f"{_label(vocab, outcome)} scores were {'higher' if way == 'up' else 'lower'}"
        if not declared:
            good = is_benefit(measure, way, better)
            words += " (better)" if good else " (worse)" if good is False else " (the instruments do not say which way is better)"
        return words
    return f"The pooled effect on {_label(vocab, outcome).lower()} is {'above' if way == 'up' else 'below'} zero"


def _label(vocab, outcome: str | None) -> str:
    if vocab is not None and outcome:
        return vocab.label("outcome", outcome)
    return outcome or "The outcome"


def noun(vocab, outcome: str | None) -> str:
    meaning = vocab.meaning("outcome", outcome) if vocab is not None and outcome else {}
    return meaning.get("noun") or _label(vocab, outcome).lower()


def per_1000_text(d: int) -> str:
    if d == 0:
        return "no difference"
    return f"{abs(d)} {'more' if d > 0 else 'fewer'}"


def absolute_text(result: dict) -> str | None:
    """'243 more per 1000 (95% CI 72 more to 510 more); NNTB 5 (95% CI 3 to 14)' or the points on a scale."""
    a = result.get("absolute")
    if not a:
        return None
    pct = int(round(result["level"] * 100))
    if a.get("note") and not a.get("per_1000"):
        return "no risk per 1000 can be given (" + a["note"].split("(", 1)[1].split(")", 1)[0] + ")"
    if a.get("per_1000"):
        p = a["per_1000"]
        text = (f"{per_1000_text(p['difference'])} per 1000 ({pct}% CI {per_1000_text(p['difference_ci_low'])} "
                f"to {per_1000_text(p['difference_ci_high'])})")
        if a.get("nnt"):
            text += f"; {a['nnt']['text']}"
        return text
    if a.get("points") is not None and a.get("instrument"):
        return (f"{a['points']:+.1f} points on the {a['instrument']} ({pct}% CI {a['points_ci_low']:+.1f} "
                f"to {a['points_ci_high']:+.1f})")
    return None


def who(result: dict) -> str:
    k, n = result["k"], result["participants"]
    people = f", {n:,} participants" if n else ""
    if k == 1:
        return f"one trial{people} (not a pooled result)"
    return f"{k} trials pooled{people}"


def _opening(result: dict, text: str) -> str:
    """The window's phrase before the claim: 'At about 24 h (12 h to under 2 days), more patients ...'."""
    phrase = (result.get("window") or {}).get("phrase")
    return f"{phrase}, {text[0].lower()}{text[1:]}" if phrase else text


def _versus(result: dict) -> str:
    return (result.get("comparator_class") or {}).get("label") or "the comparators"


def _head(result: dict, vocab) -> str:
    """The opening of a sentence: the window, then the claim (or 'no difference') against the comparator,
    then the absolute effect."""
    way = direction(result["ci_low"], result["ci_high"])
    outcome = result.get("outcome")
    if way is None:
        head = f"The data are compatible with no difference in {noun(vocab, outcome)} between ketamine and {_versus(result)}"
    else:
        head = f"{claim(vocab, outcome, result['measure'], way, result.get('better'))} with ketamine than with {_versus(result)}"
    absolute = absolute_text(result)
    return _opening(result, head) + (f": {absolute}" if absolute else "")


def sentence(result: dict, vocab=None) -> str:
    """The Summary of Findings row in plain language (see the module's rules)."""
    m = result["measure"]
    nat = result["natural"]
    pct = int(round(result["level"] * 100))
    label = MEASURE_LABELS.get(m, "effect (yi)")
    est = f"{label[0].upper()}{label[1:]} {fmt(nat['estimate'], m)} ({pct}% CI {fmt(nat['ci_low'], m)} to {fmt(nat['ci_high'], m)})"
    level = result["certainty"]["level"].replace("-", " ")
    return f"{_head(result, vocab)}. {est}; {who(result)}. Certainty of the evidence: {level}."


def headline(result: dict, vocab=None) -> str:
    """The short form for cards: the claim and its absolute effect, with window and comparator."""
    return _head(result, vocab) + ("; one trial, not a pooled result" if result["k"] == 1
                                   else f"; {result['k']} trials pooled")
