"""The study record: one pydantic schema, the single source of truth.

Each file in ``studies/`` holds one :class:`Study`. Vocabulary fields are
plain strings checked against the knowledge base's :class:`~kb.vocab.Vocabulary`
(passed as validation context), so a kb.yaml can add terms without code.
``json_schema()`` publishes the same schema, vocabulary included, for editors.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .vocab import Vocabulary, load_vocabulary
from .sources import urls_in

SCHEMA_VERSION = 1
DRAFT = "draft"  # the status of a record not yet extracted: never counted as evidence (Study.is_evidence)
MIN_YEAR = 1800  # imports carry classics (e.g. 1889); ketamine itself dates from 1962
ET_AL = re.compile(r"^(?:and\s+)?(?:et\.?\s*al\.?|others)$", re.I)
NAME_SUFFIX = re.compile(r"(?:Jr|Sr|2nd|3rd|4th)\.?")  # a generational suffix, as records write it: "Zarate CA Jr"
_INITIALS = re.compile(r"[A-Z]{1,4}")
ID_RE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*-(\d{4})[a-z]{0,2}$")
DOI_RE = re.compile(r"^10\.\d{4,9}/\S+$")
PMID_RE = re.compile(r"^[1-9]\d{0,8}$")
PMCID_RE = re.compile(r"^PMC\d{1,9}$")
REGISTRIES: dict[str, re.Pattern[str]] = {
    "ClinicalTrials.gov": re.compile(r"^NCT\d{8}$"),
    "EudraCT": re.compile(r"^(?:EUCTR)?\d{4}-\d{6}-\d{2}(?:-[A-Z]{2})?$"),
    "CTIS": re.compile(r"^\d{4}-\d{6}-\d{2}-\d{2}$"),
    "ISRCTN": re.compile(r"^ISRCTN\d{8}$"),
    "ANZCTR": re.compile(r"^ACTRN\d{14}$"),
    "ChiCTR": re.compile(r"^ChiCTR[-A-Za-z0-9]{6,}$"),
    "IRCT": re.compile(r"^IRCT\d{6,}N\d+$"),
    "CTRI": re.compile(r"^CTRI/\d{4}/\d{2,3}/\d{6}$"),
    "DRKS": re.compile(r"^DRKS\d{8}$"),
    "UMIN": re.compile(r"^UMIN\d{9}$"),
    "jRCT": re.compile(r"^jRCT[a-z]?\d{10}$"),
    "NTR": re.compile(r"^NL-?OMON\d+$|^NTR\d{3,5}$"),
}

# The one rule for the parts of an author's name, as records write it ("Surname Initials [Suffix]"):
# surname() for labels, ids, the index and dedup; split_author() and split_suffix() for citations.


def surname(author: str) -> str:
    """'Murrough JW' -> 'Murrough'; 'aan het Rot M' -> 'aan het Rot'; 'Zarate CA Jr' -> 'Zarate';
    'Smith, John' -> 'Smith'."""
    author = author.strip()
    if "," in author:
        return author.split(",", 1)[0].strip()
    parts = split_suffix(author)[0].split()
    if len(parts) > 1 and _INITIALS.fullmatch(parts[-1].replace(".", "")):
        parts = parts[:-1]
    return " ".join(parts)


def split_suffix(author: str) -> tuple[str, str]:
    """'Zarate CA Jr' -> ('Zarate CA', 'Jr'); a name without a generational suffix -> (name, '')."""
    parts = author.split()
    if len(parts) > 2 and NAME_SUFFIX.fullmatch(parts[-1]):
        return " ".join(parts[:-1]), parts[-1].rstrip(".")
    return author, ""


def split_author(author: str) -> tuple[str, str]:
    """(surname, initials) for a citation: 'Murrough JW' -> ('Murrough', 'JW'); 'Zarate CA Jr' ->
    ('Zarate', 'CA') (the suffix: split_suffix). Initials are only plain capitals ('JW', not 'J.W.')
    after a name without a comma; otherwise they are '' and a citation writes the name as it is."""
    parts = split_suffix(author)[0].split()
    plain = "," not in author and len(parts) > 1 and _INITIALS.fullmatch(parts[-1])
    return surname(author), parts[-1] if plain else ""


def label_from_id(rid: str) -> str:
    """'feder-2021' -> 'Feder 2021', 'riva-posse-2018b' -> 'Riva-Posse 2018b': a record's label when it
    lists no authors (ids are firstauthor-year)."""
    name, _, year = rid.rpartition("-")
    return f"{'-'.join(w.capitalize() for w in name.split('-'))} {year}" if name else rid


_DEFAULT_VOCAB: Vocabulary | None = None


def _vocab(info: ValidationInfo) -> Vocabulary:
    ctx = info.context or {}
    if "vocab" in ctx:
        return ctx["vocab"]
    global _DEFAULT_VOCAB
    if _DEFAULT_VOCAB is None:
        _DEFAULT_VOCAB = load_vocabulary()
    return _DEFAULT_VOCAB


def _term_checker(category: str):
    noun = category.replace("_", " ")

    def check(value: str, info: ValidationInfo) -> str:
        vocab = _vocab(info)
        if vocab.has(category, value):
            new = vocab.replaced_by(category, value)
            if new:
                raise PydanticCustomError(
                    "vocabulary", "'{value}' is a deprecated {noun}: use one of {new}",
                    {"value": value, "noun": noun, "new": ", ".join(new)},
                )
            return value
        suggestion = vocab.suggest(category, value)
        if suggestion:
            raise PydanticCustomError(
                "vocabulary",
                "unknown {noun} '{value}'; did you mean '{suggestion}'?",
                {"noun": noun, "value": value, "suggestion": suggestion},
            )
        allowed = vocab.terms(category)
        raise PydanticCustomError(
            "vocabulary",
            "unknown {noun} '{value}'; allowed: {allowed}",
            {"noun": noun, "value": value, "allowed": ", ".join(allowed)},
        )

    return check


def Term(category: str) -> Any:
    """A string that must be a canonical term of ``category`` in the vocabulary."""
    return Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1),
        AfterValidator(_term_checker(category)),
        Field(json_schema_extra={"x-vocabulary": category}),
    ]


def _to_str(value: Any) -> Any:
    """YAML reads `pmid: 123` and `volume: 21` as numbers; keep identifiers as text."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    return value


def _empty_to_none(value: Any) -> Any:
    """`adverse_events: {}` or `{events: []}` says nothing; store it as absent so that records compare equal."""
    if isinstance(value, BaseModel) and not _prune(value.model_dump(exclude_defaults=True)):
        return None
    return value


def _one_or_many(value: Any) -> Any:
    return [value] if value is not None and not isinstance(value, list) else value


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
IdText = Annotated[str, BeforeValidator(_to_str), StringConstraints(strip_whitespace=True, min_length=1)]


def _check_doi(value: str) -> str:
    if not DOI_RE.match(value):
        stripped = re.sub(r"^(?:https?://(?:dx\.)?doi\.org/|doi:\s*)", "", value, flags=re.I)
        if stripped != value and DOI_RE.match(stripped):
            raise PydanticCustomError(
                "identifier", "write the bare DOI '{doi}', without the prefix", {"doi": stripped}
            )
        raise PydanticCustomError(
            "identifier", "malformed DOI '{value}'; a DOI looks like 10.1176/appi.ajp.2013.13030392",
            {"value": value},
        )
    return value


def _check_pmid(value: str) -> str:
    if not PMID_RE.match(value):
        raise PydanticCustomError(
            "identifier", "malformed PMID '{value}'; a PMID is 1 to 9 digits, e.g. 23982301", {"value": value}
        )
    return value


def _check_pmcid(value: str) -> str:
    if re.fullmatch(r"\d{1,9}", value):
        raise PydanticCustomError("identifier", "write the PMCID with its prefix: 'PMC{value}'", {"value": value})
    if not PMCID_RE.match(value):
        raise PydanticCustomError(
            "identifier", "malformed PMCID '{value}'; a PMCID looks like PMC4851268", {"value": value}
        )
    return value


def registry_of(value: str) -> str | None:
    for name, pattern in REGISTRIES.items():
        if pattern.match(value):
            return name
    return None


def _check_registration(value: str) -> str:
    if registry_of(value) is None:
        if value.upper().startswith("NCT"):
            raise PydanticCustomError(
                "identifier", "malformed NCT number '{value}'; it is NCT followed by 8 digits, e.g. NCT00088699",
                {"value": value},
            )
        raise PydanticCustomError(
            "identifier",
            "unrecognised trial registration '{value}'; expected e.g. NCT00088699, 2011-001520-37 (EudraCT), "
            "ISRCTN12345678, ACTRN12612000123456",
            {"value": value},
        )
    return value


def _check_year(value: int) -> int:
    top = _dt.date.today().year + 1
    if not MIN_YEAR <= value <= top:
        raise PydanticCustomError(
            "range", "year {value} is out of range ({low}-{high})", {"value": value, "low": MIN_YEAR, "high": top}
        )
    return value


Doi = Annotated[IdText, AfterValidator(_check_doi)]
Pmid = Annotated[IdText, AfterValidator(_check_pmid)]
Pmcid = Annotated[IdText, AfterValidator(_check_pmcid)]
Registration = Annotated[IdText, AfterValidator(_check_registration)]
Year = Annotated[int, AfterValidator(_check_year)]
Count = Annotated[int, Field(ge=0)]
PosCount = Annotated[int, Field(ge=1)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, validate_default=False)


# -- sub-records ----------------------------------------------------------------


class Condition(Model):
    """A condition from the vocabulary, with an optional free-text subtype."""

    term: Term("condition")
    subtype: Text | None = Field(None, description='free text, e.g. "treatment-resistant" or "CRPS type 1"')

    @classmethod
    def _coerce(cls, value: Any) -> Any:
        return {"term": value} if isinstance(value, str) else value


class Intervention(Model):
    drug: Term("drug")
    route: Term("route")
    dose_mg_per_kg: Annotated[list[Annotated[float, Field(gt=0, le=20)]], BeforeValidator(_one_or_many)] | None = Field(
        None, description="dose(s) per infusion in mg/kg; a list for dose-finding trials"
    )
    infusion_minutes: Annotated[float, Field(gt=0)] | None = None
    infusions: PosCount | None = Field(None, description="number of infusions (or doses) per participant")
    schedule: Text | None = Field(None, description='e.g. "twice weekly for 4 weeks"')
    description: Text | None = None


class Comparator(Model):
    type: Term("comparator")
    description: Text | None = None


class BinaryArm(Model):
    label: Text
    events: Count
    total: PosCount


class ContinuousArm(Model):
    label: Text
    mean: float
    sd: Annotated[float, Field(ge=0)]
    n: PosCount


class BinaryData(Model):
    """Events and totals per arm; the ketamine arm first, as in metafor (ai/n1i, ci/n2i)."""

    type: Literal["binary"]
    arms: Annotated[list[BinaryArm], Field(min_length=1)]


class ContinuousData(Model):
    """Mean, SD and n per arm; the ketamine arm first."""

    type: Literal["continuous"]
    arms: Annotated[list[ContinuousArm], Field(min_length=1)]
    values: Literal["endpoint", "change"] | None = Field(
        None, description="whether means are end-of-period scores or changes from baseline"
    )


class EffectData(Model):
    """An effect as reported (e.g. by a meta-analysis): measure, estimate and its CI or SE.

    Ratios (RR, OR, HR) are ketamine / comparator on their natural scale; differences (MD, SMD,
    RD) are ketamine minus comparator, so a negative MD or SMD means lower scores with ketamine.
    """

    type: Literal["effect"]
    measure: Term("effect_measure")
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    ci_level: Annotated[float, Field(gt=0, lt=1)] = 0.95
    se: Annotated[float, Field(gt=0)] | None = None
    p: Text | None = Field(None, description='as printed, e.g. "<0.001" or "0.03"')
    k: PosCount | None = Field(None, description="studies pooled (reviews)")
    participants: PosCount | None = None
    certainty: Literal["high", "moderate", "low", "very-low"] | None = Field(
        None, description="the GRADE certainty the review itself gives this result, as published (reviews)")


OutcomeData = Annotated[Union[BinaryData, ContinuousData, EffectData], Field(discriminator="type")]


# Each tool judges in its own words and its own domains (kb/data/vocabulary.yaml); no synonyms across tools.
ROB_SCALES: dict[str, tuple[str, str | None]] = {  # tool -> (judgement category, domain category)
    "rob1": ("rob1_judgement", "rob1_domain"),
    "rob2": ("rob2_judgement", "rob2_domain"),
}
ROB_OTHER = ("rob_judgement", None)  # ROBINS-I, AMSTAR 2, another tool: their domains are free text
ROB_TOOL_NAMES = {"rob1": "RoB 1", "rob2": "RoB 2"}


def rob_overall(tool: str, domains: dict[str, str]) -> str | None:
    """The overall judgement kb derives from the domains when the reviewer gives none.

    RoB 1: high if any domain is high, else unclear if any is unclear, else low (all seven domains count as key).
    RoB 2: low if all domains are low, high if any is high, else some concerns. Other tools: none.
    """
    if not domains or tool not in ROB_SCALES:
        return None
    vals = set(domains.values())
    if "high" in vals:
        return "high"
    if tool == "rob1":
        return "unclear" if "unclear" in vals else "low"
    return "low" if vals == {"low"} else "some-concerns"


class RiskOfBias(Model):
    """One risk-of-bias assessment, in its tool's own domains and words (a result's, or the trial's default)."""

    tool: Term("rob_tool")
    overall: Text | None = Field(None, description="the reviewer's overall judgement; without it kb derives one from the domains")
    domains: dict[Text, Text] = Field(default_factory=dict, description="domain -> judgement, in the tool's own terms")
    signalling: dict[Text, dict[Text, Term("rob2_signal")]] = Field(
        default_factory=dict, description="RoB 2 only: domain -> {question: Y, PY, PN, N or NI}, e.g. {randomization: {'1.1': Y}}"
    )
    source: Text | None = Field(None, description="where the judgement comes from: e.g. a review's table, or \"kb's own assessment\"")
    assessed_by: Text | None = None
    verified_by: Text | None = Field(None, description="a second reviewer who confirmed it; without one it is a single assessor's")
    notes: Text | None = None

    @field_validator("signalling", mode="before")
    @classmethod
    def _signal_text(cls, value: Any) -> Any:  # YAML reads `1.1: Y` with a numeric key
        if isinstance(value, dict):
            return {k: ({str(q): a for q, a in v.items()} if isinstance(v, dict) else v) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _per_tool(self, info: ValidationInfo) -> "RiskOfBias":
        vocab = _vocab(info)
        judgements, domain_cat = ROB_SCALES.get(self.tool, ROB_OTHER)
        name = ROB_TOOL_NAMES.get(self.tool, self.tool)

        def judge(value: str, where: str) -> str:
            if vocab.has(judgements, value):
                return value
            other = [ROB_TOOL_NAMES.get(t, t) for t, (cat, _) in ROB_SCALES.items()
                     if t != self.tool and vocab.canonical(cat, value)]
            allowed = ", ".join(vocab.terms(judgements))
            if other:
                raise PydanticCustomError(
                    "rob_judgement",
                    "{where}: '{value}' is a {other} judgement, not a {name} one; {name} judges {allowed}",
                    {"where": where, "value": value, "other": other[0], "name": name, "allowed": allowed,
                     "hint": "no synonyms across tools: RoB 1's 'unclear' is not RoB 2's 'some-concerns'; "
                             "record the tool the judgement was made with"})
            suggestion = vocab.suggest(judgements, value)
            raise PydanticCustomError(
                "rob_judgement", "{where}: unknown {name} judgement '{value}'; " +
                ("did you mean '{suggestion}'?" if suggestion else "allowed: {allowed}"),
                {"where": where, "value": value, "name": name, "allowed": allowed, "suggestion": suggestion or "",
                 "hint": f"{name} judges {allowed}"})

        if self.overall is not None:
            judge(self.overall, "overall")
        for domain, value in self.domains.items():
            if domain_cat and not vocab.has(domain_cat, domain):
                suggestion = vocab.suggest(domain_cat, domain)
                raise PydanticCustomError(
                    "rob_judgement", "unknown {name} domain '{domain}'" + ("; did you mean '{suggestion}'?" if suggestion else ""),
                    {"name": name, "domain": domain, "suggestion": suggestion or "",
                     "hint": f"{name} domains: " + ", ".join(vocab.terms(domain_cat))})
            judge(value, f"domain {domain}")
        if self.signalling:
            if self.tool != "rob2":
                raise PydanticCustomError("rob_judgement", "signalling answers belong to RoB 2 assessments, not {name}",
                                          {"name": name, "hint": "remove `signalling`, or record a RoB 2 assessment"})
            for domain in self.signalling:
                if not vocab.has("rob2_domain", domain):
                    raise PydanticCustomError(
                        "rob_judgement", "signalling answers for unknown RoB 2 domain '{domain}'",
                        {"domain": domain, "hint": "RoB 2 domains: " + ", ".join(vocab.terms("rob2_domain"))})
        if self.overall is None and self.judgement is None:
            raise PydanticCustomError(
                "rob_judgement", "a {name} assessment needs an overall judgement or its domains",
                {"name": name, "hint": "give `overall:`, or the domains kb derives it from (RoB 1 and RoB 2)"})
        return self

    @property
    def judgement(self) -> str | None:
        """The overall judgement: the reviewer's when given, else the one kb derives from the domains."""
        return self.overall if self.overall is not None else rob_overall(self.tool, self.domains)

    @property
    def derived(self) -> bool:
        """Whether :attr:`judgement` is kb's derivation from the domains (no overall given)."""
        return self.overall is None and self.judgement is not None


class OutcomeSource(Model):
    """Where an outcome's numbers were read: the page, and the place on it a reviewer can check."""

    url: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^https?://\S+$")] | None = Field(
        None, description="the page the numbers were read on (also listed in the record's sources)"
    )
    locator: Text | None = Field(
        None, description='where on that page: a table, figure or page, or the abstract sentence quoted, e.g. "Table 2"'
    )
    note: Text | None = None

    @classmethod
    def _coerce(cls, value: Any) -> Any:
        """The old one-string form: a URL becomes ``url``, anything else ``locator``."""
        if isinstance(value, str):
            v = value.strip()
            urls = urls_in(v)
            if len(urls) != 1:
                return {"locator": v}
            url = urls[0]
            rest = re.sub(r"[\s(\[]*" + re.escape(url) + r"[\s)\].,;:]*", " ", v).strip(" ,;:-")
            return {"url": url, "locator": rest} if rest else {"url": url}
        return value

    @property
    def text(self) -> str:
        """One line for tables and exports: "Table 2 (https://...)"."""
        parts = [p for p in (self.locator, f"({self.url})" if self.locator and self.url else self.url) if p]
        return " ".join(parts)

    def __str__(self) -> str:
        return self.text


class Outcome(Model):
    outcome: Term("outcome")
    instrument: Term("instrument") | None = None
    timepoint: Text | None = Field(None, description='as reported, e.g. "24 h", "day 7", "end of treatment"')
    timepoint_days: Annotated[float, Field(ge=0)] | None = Field(None, description="the timepoint in days (1 h = 0.042)")
    definition: Text | None = Field(None, description='e.g. ">=50% reduction in MADRS from baseline"')
    comparator: Term("comparator") | None = Field(
        None, description="what this result compares ketamine with, when not the record's comparator (reviews)"
    )
    primary: bool = False
    data: OutcomeData | None = None
    counts: Literal["stated", "derived"] | None = Field(
        None, description="stated: the numbers appear in the source; derived: computed (counts from percentages, "
                          "SDs from SEs or CIs), with a `derivation`"
    )
    derivation: Text | None = Field(None, description="how derived counts were computed, and from what")
    period: Literal["first", "all"] | None = Field(
        None, description="crossover trials: first-period data (pooled as a parallel trial) or all periods as published"
    )
    pool: bool = Field(True, description="false keeps these numbers out of every pooled analysis")
    pool_note: Text | None = Field(None, description="why the numbers must not be pooled")
    source: Annotated[OutcomeSource, BeforeValidator(OutcomeSource._coerce)] | None = Field(
        None, description="where the numbers were read: {url, locator}, the url one of the record's sources"
    )
    result: Text | None = Field(None, description="the result in words, numbers quoted from the source")
    risk_of_bias: RiskOfBias | None = Field(None, description="this result's risk of bias; without it the record's applies")


class Indirectness(Model):
    """Why a study answers a different question from the knowledge base's (GRADE indirectness)."""

    domain: Literal["population", "intervention", "comparator", "outcome", "setting"]
    reason: Text = Field(description='e.g. "ketamine given during surgical anaesthesia"')


class Review(Model):
    """For systematic reviews and meta-analyses."""

    studies_included: PosCount | None = None
    participants_included: PosCount | None = None
    search_date: Text | None = Field(None, description='e.g. "2019-12-17" or "August 2014"')
    details: Text | None = None


class AdverseEvents(Model):
    summary: Text | None = None
    events: list[Term("adverse_event")] = Field(default_factory=list, description="which adverse events are reported")


class Durability(Model):
    summary: Text | None = None
    relapse: Text | None = Field(None, description="relapse or loss of response, as reported")


class Retraction(Model):
    retracted: bool = True
    date: Annotated[str, BeforeValidator(_to_str), StringConstraints(pattern=r"^\d{4}(-\d{2}(-\d{2})?)?$")] | None = Field(
        None, description="YYYY, YYYY-MM or YYYY-MM-DD"
    )
    notice: Text | None = Field(None, description='the retraction notice citation, e.g. "J Psychiatr Pract 2018;24:307"')
    reason: Text | None = None
    url: Text | None = None


class Related(Model):
    """A link to another record: e.g. `pooled-in` names a review that included this trial."""

    id: Text
    relation: Term("relation")
    note: Text | None = Field(None, description="where the link is stated, e.g. the review's table that lists the trial")


class Source(Model):
    model_config = ConfigDict(extra="forbid", serialize_by_alias=True)

    url: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^https?://\S+$")]
    note: Text | None = None
    source_class: Term("source_class") | None = Field(
        None, alias="class", description="what kind of page it is, when the class kb computes from the URL is wrong"
    )

    @classmethod
    def _coerce(cls, value: Any) -> Any:
        return {"url": value} if isinstance(value, str) else value


def _conditions(value: Any) -> Any:
    return [Condition._coerce(v) for v in value] if isinstance(value, list) else value


def _sources(value: Any) -> Any:
    return [Source._coerce(v) for v in value] if isinstance(value, list) else value


# -- the record ---------------------------------------------------------------


class Study(Model):
    """One published study (or review, or statement)."""

    # identity
    id: Annotated[str, StringConstraints(pattern=ID_RE.pattern)] = Field(
        description="lowercase firstauthor-year, with a suffix (b ... z, then ba ... zz) on clashes; equals the file name"
    )
    title: Text | None = None
    authors: list[Text] = Field(default_factory=list, description='"Surname Initials", in order')
    authors_truncated: bool = Field(False, description="true when only the first authors are listed (et al.)")
    year: Year
    journal: Text | None = None
    volume: IdText | None = None
    issue: IdText | None = None
    pages: IdText | None = None
    doi: Doi | None = None
    pmid: Pmid | None = None
    pmcid: Pmcid | None = None
    registrations: list[Registration] = Field(default_factory=list, description="NCT, EudraCT, ISRCTN ... numbers")
    abstract: Text | None = None
    keywords: list[Text] = Field(default_factory=list, description="keywords and MeSH terms")

    # design and sample
    design: Term("design")
    blinding: Term("blinding") | None = None
    blinding_details: Text | None = None
    n_randomized: Count | None = None
    n_analysed: Count | None = None
    sample_details: Text | None = Field(None, description="arm sizes, completers, discrepancies between sources")
    review: Annotated[Review | None, AfterValidator(_empty_to_none)] = None
    population: Text | None = None
    conditions: Annotated[list[Condition], BeforeValidator(_conditions)] = Field(default_factory=list)
    topics: list[Term("topic")] = Field(default_factory=list)

    # intervention and results
    intervention: Intervention | None = None
    comparator: Comparator | None = None
    primary_outcome: Text | None = None
    outcomes: list[Outcome] = Field(default_factory=list)
    results: list[Text] = Field(default_factory=list, description="results in words, numbers quoted from sources")
    adverse_events: Annotated[AdverseEvents | None, AfterValidator(_empty_to_none)] = None
    durability: Annotated[Durability | None, AfterValidator(_empty_to_none)] = None
    key_finding: Text | None = Field(None, description="one sentence, in the reviewer's own words")
    risk_of_bias: RiskOfBias | None = Field(None, description="the trial's default risk of bias, for results without their own")
    indirectness: list[Indirectness] = Field(
        default_factory=list, description="ways the study differs from the question (lowers certainty when pooled)"
    )

    # trust
    retraction: Retraction | None = None
    related: list[Related] = Field(default_factory=list)
    sources: Annotated[list[Source], BeforeValidator(_sources)] = Field(
        default_factory=list, description="URLs the facts were read from; at least one"
    )
    verified_fields: list[Text] = Field(default_factory=list, description="fields confirmed against a source")
    unverified_fields: list[Text] = Field(default_factory=list, description="fields nobody could confirm yet")
    inferred_fields: list[Text] = Field(default_factory=list, description="fields filled by inference, not reading")
    conflicts: list[Text] = Field(default_factory=list, description="disagreements between sources, and how resolved")
    notes: Text | None = None
    status: Term("status") = "draft"
    added: _dt.date
    updated: _dt.date | None = None

    @field_validator("authors")
    @classmethod
    def _no_et_al(cls, value: list[str]) -> list[str]:
        for a in value:
            if ET_AL.match(a.strip()):
                raise PydanticCustomError(
                    "et_al", "'et al.' is not an author; list the authors you know and set authors_truncated: true", {}
                )
        return value

    # -- helpers used across kb ---------------------------------------------
    @property
    def retracted(self) -> bool:
        return bool(self.retraction and self.retraction.retracted)

    @property
    def is_evidence(self) -> bool:
        """Whether the record counts as evidence. A draft (imported or scaffolded, not yet extracted)
        is left out of kb stats, the site and pooled results: the one rule every command applies."""
        return self.status != DRAFT

    @property
    def condition_terms(self) -> list[str]:
        return [c.term for c in self.conditions]

    @property
    def n(self) -> int | None:
        """The sample size to show: analysed, else randomised, else review participants."""
        if self.n_analysed is not None:
            return self.n_analysed
        if self.n_randomized is not None:
            return self.n_randomized
        return self.review.participants_included if self.review else None

    @property
    def first_author(self) -> str | None:
        return self.authors[0] if self.authors else None

    @property
    def label(self) -> str:
        """'Feder 2014': the first author's surname and the year; without authors, read from the id
        ('feder-2021' -> 'Feder 2021', 'riva-posse-2018' -> 'Riva-Posse 2018')."""
        return f"{surname(self.authors[0])} {self.year}" if self.authors else label_from_id(self.id)

    def source_line(self) -> str:
        """'Journal 2013;170(10):1134-1142', as far as known."""
        src = f"{self.journal} {self.year}" if self.journal else str(self.year)
        if self.volume:
            src += f";{self.volume}"
            if self.issue:
                src += f"({self.issue})"
        if self.pages:
            src += f":{self.pages}"
        return src

    def citation(self) -> str:
        """A short Vancouver-style citation."""
        authors = ", ".join(self.authors[:6]) + (", et al." if len(self.authors) > 6 or self.authors_truncated else "")
        parts = [p for p in [authors or None, self.title, self.source_line()] if p]
        text = ". ".join(p.rstrip(".") for p in parts) + "."
        if self.doi:
            text += f" doi:{self.doi}"
        return text

    def to_data(self) -> dict:
        """The record as plain data in field order, leaving out empty and default values."""
        return _prune(self.model_dump(mode="json", exclude_defaults=True))


def _prune(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            v = _prune(v)
            if v is None or v == [] or v == {}:
                continue
            out[k] = v
        # shorthand forms reviewers write by hand
        return out
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def record_data(study: Study) -> dict:
    """Plain data for YAML, using the shorthand forms (condition strings, source URLs)."""
    data = study.to_data()
    if "status" not in data:  # always write the status, even the default
        data = {k: v for k, v in data.items() if k != "added"} | {"status": study.status, "added": data["added"]}
        if "updated" in data:
            data["updated"] = data.pop("updated")
    if study.retraction is not None:  # `retracted` is never left to a default
        data["retraction"] = {"retracted": study.retraction.retracted, **data.get("retraction", {})}
    if "conditions" in data:
        data["conditions"] = [c["term"] if set(c) == {"term"} else c for c in data["conditions"]]
    if "sources" in data:
        data["sources"] = [s["url"] if set(s) == {"url"} else s for s in data["sources"]]
    return data


FIELD_NAMES = tuple(Study.model_fields)


def validate_data(data: dict, vocab: Vocabulary | None = None) -> Study:
    """Validate plain data as a Study (raises pydantic.ValidationError)."""
    return Study.model_validate(data, context={"vocab": vocab} if vocab else None)
