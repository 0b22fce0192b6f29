"""The record schema: round trips, ids, vocabulary, the published JSON Schema."""

from __future__ import annotations

import json
import re
import string

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from kb import yamlio
from kb.record_schema import json_schema
from kb.records import ET_AL, record_data, surname, validate_data
from kb.scaffold import make_id
from kb.validate import check_file
from kb.vocab import load_vocabulary

from .conftest import FIXTURES, ROOT

VOCAB = load_vocabulary()

# Text a reviewer might type: any printable character, including non-ASCII names and symbols.
_chars = st.characters(blacklist_categories=("Cs", "Cc", "Co", "Cn", "Zl", "Zp"), blacklist_characters="\ufeff")
text = st.text(_chars, min_size=1, max_size=40).map(str.strip).filter(bool)
multiline = st.lists(text, min_size=1, max_size=3).map("\n".join)
ident = st.text(string.digits, min_size=1, max_size=5).map(lambda s: "1" + s)


def term(category: str):
    """A term a record may use: deprecated terms (kept only as search aliases) are refused in records."""
    return st.sampled_from([t for t in VOCAB.terms(category) if not VOCAB.replaced_by(category, t)])


binary = st.builds(lambda arms: {"type": "binary", "arms": arms},
                   st.lists(st.tuples(text, st.integers(0, 50), st.integers(0, 50)).map(
                       lambda t: {"label": t[0], "events": t[1], "total": t[1] + t[2] + 1}), min_size=1, max_size=3))
continuous = st.builds(lambda arms: {"type": "continuous", "arms": arms},
                       st.lists(st.fixed_dictionaries({
                           "label": text,
                           "mean": st.floats(-100, 100, allow_nan=False),
                           "sd": st.floats(0, 50, allow_nan=False),
                           "n": st.integers(1, 500)}), min_size=1, max_size=3))
effect = st.fixed_dictionaries({"type": st.just("effect"), "measure": term("effect_measure"),
                                "value": st.floats(0.01, 10, allow_nan=False)},
                               optional={"ci_low": st.floats(0.001, 0.01), "ci_high": st.floats(10, 20),
                                         "p": text, "k": st.integers(1, 40)})
outcome = st.fixed_dictionaries(
    {"outcome": term("outcome")},
    optional={"instrument": term("instrument"), "timepoint": text, "timepoint_days": st.floats(0, 400),
              "definition": text, "comparator": term("comparator"), "primary": st.booleans(), "data": st.one_of(binary, continuous, effect),
              "counts": st.sampled_from(["stated", "derived"]), "derivation": text, "pool": st.booleans(),
              "pool_note": text, "source": text, "result": multiline})

records = st.fixed_dictionaries(
    {
        "id": st.tuples(st.from_regex(r"[a-z]{1,8}(-[a-z]{1,5})?", fullmatch=True), st.integers(1950, 2025),
                        st.sampled_from(["", "b", "c"])).map(lambda t: f"{t[0]}-{t[1]}{t[2]}"),
        "year": st.integers(1950, 2025),
        "design": term("design"),
        "added": st.dates().map(lambda d: d.isoformat()),
    },
    optional={
        "title": text,
        "authors": st.lists(text.filter(lambda a: not ET_AL.match(a)), max_size=4),
        "authors_truncated": st.booleans(),
        "journal": text,
        "volume": st.one_of(ident, st.integers(1, 400)),
        "pages": text,
        "doi": st.tuples(st.integers(1000, 99999), text.filter(lambda s: not re.search(r"\s", s))).map(
            lambda t: f"10.{t[0]}/{t[1]}"),
        "pmid": ident,
        "pmcid": ident.map(lambda s: "PMC" + s),
        "registrations": st.lists(st.integers(0, 99999999).map(lambda n: f"NCT{n:08d}"), max_size=2),
        "abstract": multiline,
        "keywords": st.lists(text, max_size=3),
        "blinding": term("blinding"),
        "n_randomized": st.integers(0, 5000),
        "review": st.fixed_dictionaries({}, optional={"studies_included": st.integers(1, 99), "search_date": text}),
        "conditions": st.lists(st.one_of(term("condition"),
                                         st.fixed_dictionaries({"term": term("condition"), "subtype": text})),
                               max_size=3),
        "topics": st.lists(term("topic"), max_size=3),
        "intervention": st.fixed_dictionaries(
            {"drug": term("drug"), "route": term("route")},
            optional={"dose_mg_per_kg": st.lists(st.floats(0.01, 5), min_size=1, max_size=3),
                      "infusion_minutes": st.floats(1, 600), "infusions": st.integers(1, 30), "schedule": text}),
        "comparator": st.fixed_dictionaries({"type": term("comparator")}, optional={"description": text}),
        "outcomes": st.lists(outcome, max_size=3),
        "results": st.lists(multiline, max_size=2),
        "adverse_events": st.fixed_dictionaries({}, optional={"summary": text,
                                                              "events": st.lists(term("adverse_event"), max_size=3)}),
        "key_finding": text,
        "risk_of_bias": st.one_of(*(  # each tool in its own words (kb.records.ROB_SCALES)
            st.fixed_dictionaries({"tool": st.just(tool), "overall": term(judgements)},
                                  optional={"domains": st.dictionaries(term(domains), term(judgements)),
                                            "source": text, "assessed_by": text, "verified_by": text})
            for tool, judgements, domains in (("rob1", "rob1_judgement", "rob1_domain"),
                                              ("rob2", "rob2_judgement", "rob2_domain")))),
        "retraction": st.fixed_dictionaries({}, optional={"date": st.sampled_from(["2018", "2018-05", 2019]),
                                                          "notice": text}),
        "related": st.lists(st.fixed_dictionaries({"id": text, "relation": term("relation")}), max_size=2),
        "sources": st.lists(st.one_of(text.filter(lambda s: not re.search(r"\s", s)).map(lambda s: "https://example.org/" + s),
                                      st.fixed_dictionaries({"url": st.just("https://example.org/x"), "note": text})),
                            max_size=3),
        "verified_fields": st.lists(st.sampled_from(["title", "authors", "outcomes"]), max_size=2),
        "status": term("status"),
        "notes": multiline,
    },
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(records)
def test_record_yaml_record_round_trip(data):
    """record -> YAML -> record gives the same record, for any valid record."""
    study = validate_data(data, VOCAB)  # the strategy only makes valid records
    text = yamlio.dump(record_data(study))
    again = validate_data(yamlio.parse(text).data, VOCAB)
    assert again == study
    # and the canonical text is a fixed point
    assert yamlio.dump(record_data(again)) == text


def test_a_deprecated_outcome_is_refused_and_its_replacements_named():
    data = {"id": "dep-2020", "title": "t", "authors": ["Dep AB"], "year": 2020, "design": "rct",
            "outcomes": [{"outcome": "suicidal-ideation"}], "added": "2024-01-01"}
    with pytest.raises(ValidationError) as err:
        validate_data(data, VOCAB)
    assert ("'suicidal-ideation' is a deprecated outcome: use one of si-resolution, si-response, si-severity, "
            "suicidality-worsening") in str(err.value)


@pytest.mark.parametrize("path", sorted((FIXTURES / "valid").glob("*.yaml")), ids=lambda p: p.name)
def test_fixture_round_trip_keeps_every_value(path):
    res = check_file(path, VOCAB)
    assert res.study is not None
    again = validate_data(yaml.safe_load(yamlio.dump(record_data(res.study))), VOCAB)
    assert again == res.study


def test_make_id():
    assert make_id("Murrough JW", 2013, set()) == "murrough-2013"
    assert make_id("Murrough JW", 2013, {"murrough-2013"}) == "murrough-2013b"
    assert make_id("Murrough JW", 2013, {"murrough-2013", "murrough-2013b"}) == "murrough-2013c"
    assert make_id("aan het Rot M", 2010, set()) == "aan-het-rot-2010"
    assert make_id("Riva-Posse P", 2018, set()) == "riva-posse-2018"
    assert make_id("Gálvez V", 2016, set()) == "galvez-2016"
    assert surname("Smith, John") == "Smith"


def test_vocabulary_synonyms_and_suggestions():
    assert VOCAB.canonical("condition", "TRD") == "depression"
    assert VOCAB.canonical("condition", "Post-traumatic stress disorder") == "ptsd"
    assert VOCAB.canonical("drug", "Spravato") == "esketamine"
    assert VOCAB.canonical("drug", "ketamine") == "racemic-ketamine"
    assert VOCAB.canonical("comparator", "ECT") == "ect"
    assert VOCAB.canonical("condition", "CRPS") == "chronic-pain"
    # what clinicians type: abbreviations, MeSH headings, brand names, instrument names
    for cat, typed, term in [("condition", "MDD", "depression"), ("condition", "Depressive Disorder, Treatment-Resistant", "depression"),
                             ("condition", "Stress Disorders, Post-Traumatic", "ptsd"), ("condition", "SI", "suicidal-ideation"),
                             ("condition", "social phobia", "anxiety"), ("condition", "GAD", "anxiety"), ("condition", "OCD", "ocd"),
                             ("condition", "fibromyalgia", "chronic-pain"), ("condition", "Neuralgia", "chronic-pain"),
                             ("drug", "Ketalar", "racemic-ketamine"), ("drug", "Ketanest S", "esketamine"),
                             ("instrument", "HDRS", "HAM-D"), ("instrument", "BSS", "SSI"), ("instrument", "YBOCS", "Y-BOCS"),
                             ("instrument", "CAPS", "CAPS-5"), ("route", "intravenous", "iv"), ("route", "subcutaneous", "sc"),
                             ("outcome", "hypertension", "blood-pressure"), ("outcome", "hypomania", "mania-switch")]:
        assert VOCAB.canonical(cat, typed) == term, (cat, typed)
    assert VOCAB.suggest("condition", "depresion") == "depression"
    assert "esketamine" not in VOCAB.expansions("ketamine", ["drug"])
    assert "Spravato" in VOCAB.expansions("esketamine", ["drug"])
    for cat in VOCAB.categories:
        for t in VOCAB.terms(cat):
            assert VOCAB.canonical(cat, t) == t


def test_bundled_vocabulary_labels_are_read_whole():
    """A comma inside an unquoted flow mapping splits a label ("Methodology (blinding" plus a key
    "active placebo)" with no value): every label of kb/data/vocabulary.yaml must come back whole."""
    raw = yaml.safe_load((ROOT / "kb" / "data" / "vocabulary.yaml").read_text(encoding="utf-8"))
    for cat, terms in raw.items():
        for t, spec in terms.items():
            spec = spec or {}
            assert all(v is not None for v in spec.values()), (cat, t, spec)  # no key left by a split
            label = VOCAB.label(cat, t)
            assert label.count("(") == label.count(")") and label.count("[") == label.count("]"), (cat, t, label)
    assert VOCAB.label("topic", "methodology") == "Methodology (blinding, active placebo)"
    assert VOCAB.label("blinding", "not-applicable") == "Not applicable (reviews, statements)"


def test_published_schema_accepts_valid_and_rejects_invalid_records():
    schema = json_schema(VOCAB)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in sorted((FIXTURES / "valid").glob("*.yaml")) + sorted((ROOT / "studies").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        errors = list(validator.iter_errors(json.loads(json.dumps(data, default=str))))
        assert not errors, (path.name, [e.message for e in errors])
    for name in ("unknown-field-2020.yaml", "vocab-2020.yaml", "wrong-type-2020.yaml"):
        data = yaml.safe_load((FIXTURES / "invalid" / name).read_text())
        assert list(validator.iter_errors(json.loads(json.dumps(data, default=str)))), name


def test_citation():
    study = check_file(FIXTURES / "valid" / "fixture-2020.yaml", VOCAB).study
    assert study.citation() == (
        "Fixture AB, Example CD, et al. Synthetic fixture trial of intravenous ketamine (test data, not a real study). "
        "Journal of Test Fixtures 2020;12(3):100-110. doi:10.5555/kb.fixture.2020")


_plain = st.one_of(
    st.sampled_from(["yes", "No", "on", "off", "~", "null", "true", "False", ".5", "1e3", "0x1F", "0o17", "017",
                     "1_000", "+12", "-0", ".inf", "-.Inf", ".nan", "12:30", "190:20:30", "1.0", "6.8e-1"]),
    st.integers().map(str), st.floats(allow_nan=False).map(repr),
    st.text(alphabet="abcxyz019.+-_:eE ", min_size=1, max_size=12).map(str.strip).filter(
        lambda t: t and t[0] not in "-:?" and ": " not in t and not t.endswith(":") and " #" not in t
        and not re.match(r"\d{4}-\d\d?-\d\d?", t)),  # dates stay text in records, by design
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_plain, min_size=1, max_size=8))
def test_plain_scalars_read_as_pyyaml_reads_them(values):
    """yamlio remembers the tag of short plain scalars between documents: the second read of the same
    text (answered from that memory) gives exactly PyYAML's values, types included."""
    text = "".join(f"k{i}: {v}\nq{i}: '{v}'\n" for i, v in enumerate(values))  # plain, then quoted
    want = yaml.safe_load(text)
    for _ in range(2):
        got = yamlio.parse(text).data
        assert got == want or (str(got) == str(want) and any(v != v for v in want.values()))
        assert [type(v) for v in got.values()] == [type(v) for v in want.values()]
