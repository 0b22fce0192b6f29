"""The analysis protocol: time windows, comparator classes, instrument preference, assumed risks.

These are the choices a review fixes before it pools anything (docs/protocol.md, docs/meta.md).
kb ships defaults; a knowledge base sets its own under ``synthesis:`` in kb.yaml::

    synthesis:
      windows:                       # each window is its own Summary of Findings row
        - {id: under-12h, label: under 12 h, from_days: 0, to_days: 0.5,
           phrase: In the first 12 h (during and just after the infusion)}
        - {id: 24h, label: about 24 h, from_days: 0.5, to_days: 2}   # phrase: "At about 24 h"
      comparator_classes:            # comparators pooled together; classes are never mixed by default
        inert-placebo: {label: inert placebo (saline), comparators: [saline, placebo]}
        active-placebo: {label: active placebo (midazolam), comparators: [midazolam]}
      instrument_preference: [HAM-D, MADRS]   # when a trial reports one concept on several scales
      assumed_risk: {response: 0.2}           # per outcome: the comparator risk for absolute effects

A window holds ``from_days <= t < to_days`` (``to_days`` may be left out for "and later"). Windows
must not overlap, so that no entry can count in two rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .errors import ConfigError


@dataclass(frozen=True)
class Window:
    id: str
    label: str  # short, for table headings: "about 24 h"
    from_days: float
    to_days: float = math.inf
    phrase: str | None = None  # how a sentence opens: "At about 24 h (12 h to under 2 days)"

    @property
    def opening(self) -> str:
        return self.phrase or f"At {self.label}"

    def holds(self, days: float | None) -> bool:
        return days is not None and self.from_days <= days < self.to_days

    def as_dict(self) -> dict:
        return {"id": self.id, "label": self.label, "phrase": self.opening, "from_days": self.from_days,
                "to_days": None if math.isinf(self.to_days) else self.to_days}


@dataclass(frozen=True)
class ComparatorClass:
    id: str
    label: str
    comparators: tuple[str, ...]


# The defaults never mix hours with days: during and just after the infusion, the next day,
# the rest of the first week, and later (end of treatment and follow-up).
DEFAULT_WINDOWS = (
    Window("under-12h", "under 12 h", 0.0, 0.5, "In the first 12 h (during and just after the infusion)"),
    Window("24h", "about 24 h", 0.5, 2.0, "At about 24 h (12 h to under 2 days)"),
    Window("2-7d", "2 to 7 days", 2.0, 8.0, "At 2 to 7 days"),
    Window("later", "after 7 days", 8.0, math.inf, "After 7 days (end of treatment and follow-up)"),
)
DEFAULT_CLASSES = (
    ComparatorClass("inert-placebo", "inert placebo (saline)", ("saline", "placebo")),
    ComparatorClass("active-placebo", "active placebo (midazolam)", ("midazolam",)),
)
COMBINED = ComparatorClass("any-placebo", "placebo, inert or active (combined)", ("saline", "placebo", "midazolam"))
# Used when a trial reports one concept (e.g. response) on several instruments: the first listed wins.
# kb's own order (docs/meta.md): clinician-rated before self-rated scales, HAM-D before MADRS as the
# scale listed first in the Cochrane review's Summary of Findings; the review's own preference rule, if
# it has one, could not be read, so a knowledge base should set its protocol's order in kb.yaml.
DEFAULT_INSTRUMENT_PREFERENCE = ("HAM-D", "MADRS", "CGI", "QIDS-SR", "BDI", "PHQ-9", "SSI", "MSSI", "C-SSRS",
                                 "CAPS-5", "PCL-5", "IES-R", "HAM-A", "LSAS", "Y-BOCS", "NRS", "VAS", "BPI")


@dataclass(frozen=True)
class Protocol:
    windows: tuple[Window, ...] = DEFAULT_WINDOWS
    classes: tuple[ComparatorClass, ...] = DEFAULT_CLASSES
    instrument_preference: tuple[str, ...] = DEFAULT_INSTRUMENT_PREFERENCE
    assumed_risk: dict = field(default_factory=dict)  # outcome -> proportion (0..1)
    eligibility: tuple[tuple[str, str], ...] = ()  # (criterion, text), kb.yaml's eligibility:, in ELIGIBILITY order

    def window(self, window_id: str) -> Window | None:
        return next((w for w in self.windows if w.id == window_id), None)

    def window_of(self, days: float | None) -> Window | None:
        return next((w for w in self.windows if w.holds(days)), None)

    def comparator_class(self, class_id: str) -> ComparatorClass | None:
        return next((c for c in (*self.classes, COMBINED) if c.id == class_id), None)

    def controls(self) -> tuple[str, ...]:
        """Every comparator some class holds (the default comparators of an analysis)."""
        return tuple(dict.fromkeys(c for cls in self.classes for c in cls.comparators))

    def instrument_rank(self, instrument: str | None) -> int:
        order = self.instrument_preference
        return order.index(instrument) if instrument in order else len(order)

    def as_dict(self) -> dict:
        return {"windows": [w.as_dict() for w in self.windows],
                "comparator_classes": {c.id: {"label": c.label, "comparators": list(c.comparators)} for c in self.classes},
                "instrument_preference": list(self.instrument_preference), "assumed_risk": dict(self.assumed_risk),
                "eligibility": dict(self.eligibility)}


DEFAULT = Protocol()

# What a knowledge base's eligibility criteria say (kb.yaml `eligibility:`), in the order a protocol
# states them; the methods page shows them with the date of the commit that last changed them.
ELIGIBILITY = {
    "question": "Review question",
    "population": "Population",
    "interventions": "Interventions",
    "comparators": "Comparators",
    "designs": "Study designs",
    "outcomes": "Outcomes",
    "exclusions": "Not eligible",
}


def _known_keys(data: object, where: str, shape: str, noun: str, plural: str, known) -> None:
    """Refuse a kb.yaml section that is not a mapping, or that has keys kb does not know."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} {shape}", hint=f"{plural}: " + ", ".join(known))
    unknown = set(data) - set(known)
    if unknown:
        raise ConfigError(f"{where}: unknown {noun} {', '.join(sorted(map(str, unknown)))}",
                          hint=f"{plural}: " + ", ".join(known))


def parse_eligibility(data: object, origin: str) -> tuple[tuple[str, str], ...]:
    """kb.yaml's ``eligibility:`` section: criterion -> text, criteria from :data:`ELIGIBILITY`."""
    if data is None:
        return ()
    _known_keys(data, f"{origin}: eligibility", "must map criteria to text", "criterion", "criteria", ELIGIBILITY)
    out = []
    for key in ELIGIBILITY:
        if key in data:
            text = data[key]
            if not isinstance(text, str) or not text.strip():
                raise ConfigError(f"{origin}: eligibility.{key} must be text", hint="write it as one paragraph")
            out.append((key, " ".join(text.split())))
    return tuple(out)


def _num(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where} must be a number of days, not {value!r}")
    return float(value)


def parse(data: object, origin: str, vocab) -> Protocol:
    """The ``synthesis:`` section of kb.yaml as a :class:`Protocol` (defaults for what it leaves out)."""
    if data is None:
        return DEFAULT
    _known_keys(data, f"{origin}: synthesis", "must be a mapping", "key(s)", "keys", _KEYS)
    windows, classes, prefs, risks = DEFAULT_WINDOWS, DEFAULT_CLASSES, DEFAULT_INSTRUMENT_PREFERENCE, {}
    if "windows" in data:
        windows = _windows(data["windows"], f"{origin}: synthesis.windows")
    if "comparator_classes" in data:
        classes = _classes(data["comparator_classes"], f"{origin}: synthesis.comparator_classes", vocab)
    if "instrument_preference" in data:
        raw = data["instrument_preference"]
        if not isinstance(raw, list):
            raise ConfigError(f"{origin}: synthesis.instrument_preference must be a list of instruments")
        prefs = tuple(_term(vocab, "instrument", x, f"{origin}: synthesis.instrument_preference") for x in raw)
    if "assumed_risk" in data:
        raw = data["assumed_risk"]
        if not isinstance(raw, dict):
            raise ConfigError(f"{origin}: synthesis.assumed_risk must map outcomes to a risk between 0 and 1")
        for outcome, risk in raw.items():
            term = _term(vocab, "outcome", outcome, f"{origin}: synthesis.assumed_risk")
            if isinstance(risk, bool) or not isinstance(risk, (int, float)) or not 0 < risk < 1:
                raise ConfigError(f"{origin}: synthesis.assumed_risk.{outcome}: {risk!r} is not a risk between 0 and 1",
                                  hint="write a proportion, e.g. 0.2 for 200 per 1000")
            risks[term] = float(risk)
    return Protocol(windows, classes, prefs, risks)


_KEYS = ("windows", "comparator_classes", "instrument_preference", "assumed_risk")


def _term(vocab, category: str, value, where: str) -> str:
    term = vocab.canonical(category, str(value)) if vocab is not None else str(value)
    if term is None:
        raise ConfigError(f"{where}: unknown {category} '{value}'", hint=f"{category}s: " + ", ".join(vocab.terms(category)))
    return term


def _windows(raw, where: str) -> tuple[Window, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where} must be a non-empty list of {{id, label, from_days, to_days}}")
    out: list[Window] = []
    for i, w in enumerate(raw):
        here = f"{where}[{i}]"
        if not isinstance(w, dict) or not {"id", "label", "from_days"} <= set(w) \
                or set(w) - {"id", "label", "from_days", "to_days", "phrase"}:
            raise ConfigError(f"{here} must be {{id, label, from_days, to_days, phrase}} "
                              "(to_days may be left out for 'and later'; phrase opens its sentences)")
        lo = _num(w["from_days"], f"{here}.from_days")
        hi = _num(w["to_days"], f"{here}.to_days") if w.get("to_days") is not None else math.inf
        if not 0 <= lo < hi:
            raise ConfigError(f"{here}: from_days must be at least 0 and below to_days")
        out.append(Window(str(w["id"]), str(w["label"]), lo, hi, str(w["phrase"]) if w.get("phrase") else None))
    ids = [w.id for w in out]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{where}: window ids must differ")
    ordered = sorted(out, key=lambda w: w.from_days)
    for a, b in zip(ordered, ordered[1:]):
        if b.from_days < a.to_days:
            raise ConfigError(f"{where}: windows '{a.id}' and '{b.id}' overlap",
                              hint="an entry must fall in one window only")
    return tuple(ordered)


def _classes(raw, where: str, vocab) -> tuple[ComparatorClass, ...]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where} must map class ids to {{label, comparators}}")
    out, seen = [], {}
    for cid, spec in raw.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("comparators"), list) or not spec["comparators"]:
            raise ConfigError(f"{where}.{cid} must be {{label, comparators: [...]}}")
        comps = tuple(_term(vocab, "comparator", c, f"{where}.{cid}") for c in spec["comparators"])
        for c in comps:
            if c in seen:
                raise ConfigError(f"{where}: comparator '{c}' is in both '{seen[c]}' and '{cid}'")
            seen[c] = cid
        out.append(ComparatorClass(str(cid), str(spec.get("label") or cid), comps))
    return tuple(out)
