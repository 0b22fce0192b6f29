"""kb validate: one bad-input fixture per error, every problem with file:line:col: field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kb.validate import validate_paths

from .conftest import FIXTURES, invoke

INVALID = FIXTURES / "invalid"

# fixture file -> [(line, column, field, code, fragment of the message)]
CASES = {
    "syntax-2020.yaml": [(2, 16, "", "syntax", "YAML syntax error: mapping values are not allowed")],
    "dupkey-2020.yaml": [(6, 1, "year", "duplicate-key", "duplicate key 'year' (first at line 4)")],
    "empty-2020.yaml": [(1, 1, "", "empty", "file is empty")],
    "comments-only-2020.yaml": [(1, 1, "", "empty", "file is empty")],
    "list-2020.yaml": [(1, 1, "", "not-mapping", "this file holds a list")],
    "latin1-2020.yaml": [(2, 11, "", "encoding", "not UTF-8: byte 0xe9")],
    "binary-2020.yaml": [(1, 1, "", "encoding", "binary file")],
    "bomb-2020.yaml": [(None, None, None, "alias-bomb", "expands to more than 100,000 nodes")],
    "unknown-field-2020.yaml": [(2, 1, "titel", "unknown-field", "unknown field 'titel'; did you mean 'title'?")],
    "wrong-type-2020.yaml": [
        (4, 7, "year", "schema", "expected a whole number, got 'twenty-twenty'"),
        (7, 15, "n_randomized", "schema", "expected a whole number, got 'many'"),
    ],
    "vocab-2020.yaml": [
        (6, 9, "design", "vocabulary", "unknown design 'randomised'; did you mean 'rct'?"),
        (7, 14, "conditions[0]", "vocabulary", "unknown condition 'depresion'; did you mean 'depression'?"),
        (7, 25, "conditions[1]", "vocabulary", "unknown condition 'PTSD'; did you mean 'ptsd'?"),
        (8, 22, "intervention.drug", "vocabulary", "unknown drug 'ketamine'; did you mean 'racemic-ketamine'?"),
        (8, 39, "intervention.route", "vocabulary", "unknown route 'intravenus'; did you mean 'iv'?"),
    ],
    "id-mismatch-2020.yaml": [(1, 5, "id", "id-mismatch", "id 'other-name-2020' differs from the file name")],
    "bad-ids-2020.yaml": [
        (5, 6, "doi", "identifier", "write the bare DOI '10.5555/kb.badids'"),
        (6, 7, "pmid", "identifier", "malformed PMID 'PMID12345'"),
        (7, 8, "pmcid", "identifier", "'PMC4851268'"),
        (8, 17, "registrations[0]", "identifier", "malformed NCT number 'NCT123'"),
        (8, 25, "registrations[1]", "identifier", "unrecognised trial registration 'XYZ-1'"),
    ],
    "bad-doi-2020.yaml": [(5, 6, "doi", "identifier", "malformed DOI '10.55/nope'")],
    "year-2020.yaml": [(4, 7, "year", "range", "year 1750 is out of range")],
    "counts-2020.yaml": [(13, 33, "outcomes[0].data.arms[0].events", "counts", "events (25) exceed the arm's total (20)")],
    "arms-2020.yaml": [(13, 5, "outcomes[0].data.arms", "counts", "arm totals add up to 40, above n_randomized (30)")],
    "many-2020.yaml": [
        (7, 14, "conditions[0]", "vocabulary", "did you mean 'depression'?"),
        (8, 15, "n_randomized", "schema", "greater than or equal to 0"),
        (10, 12, "outcomes[0].outcome", "vocabulary", "did you mean 'response'?"),
        (11, 50, "outcomes[0].data.arms[0].events", "counts", "events (3) exceed the arm's total (2)"),
        (12, 11, "sources[0]", "schema", "not a web address: 'not a url'"),
        (13, 8, "added", "schema", "expected a date, YYYY-MM-DD, got '2024-13-01'"),
    ],
}


def test_every_invalid_fixture_has_a_case():
    assert sorted(p.name for p in INVALID.glob("*.yaml")) == sorted([*CASES, "warnings-2020.yaml"])


@pytest.mark.parametrize("name", sorted(CASES))
def test_invalid_fixture(runner, name):
    path = INVALID / name
    result = invoke(runner, "validate", path, "--format", "json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    got = [p for p in report["problems"] if p["severity"] == "error"]
    assert len(got) == len(CASES[name]), got
    for (line, col, field, code, fragment), p in zip(CASES[name], got):
        assert fragment in p["message"]
        assert p["code"] == code
        assert p["file"] == str(path)
        if line is not None:
            assert (p["line"], p["column"], p["field"]) == (line, col, field)


def test_text_format_is_one_line_per_problem(runner):
    result = invoke(runner, "validate", INVALID / "vocab-2020.yaml")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0] == (f"{INVALID / 'vocab-2020.yaml'}:6:9: design: unknown design 'randomised'; "
                        "did you mean 'rct'?")
    assert lines[-1] == "FAILED: 5 errors, 0 warnings; 1 file checked"


def test_every_file_is_reported_in_one_run(runner):
    result = invoke(runner, "validate", INVALID, "--format", "json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    files = {Path(p["file"]).name for p in report["problems"]}
    assert files == {*CASES, "warnings-2020.yaml"}
    assert report["files"] == len(CASES) + 1


def test_too_large_file(runner, tmp_path):
    big = tmp_path / "big-2020.yaml"
    big.write_text("id: big-2020\nabstract: |\n" + ("  " + "x" * 99 + "\n") * 10_500, encoding="utf-8")
    result = invoke(runner, "validate", big)
    assert result.exit_code == 1
    assert "(file): file is 1.1 MB; a record may be at most 1 MB" in result.output


def test_warnings_pass_unless_strict(runner):
    path = INVALID / "warnings-2020.yaml"
    ok = invoke(runner, "validate", path)
    assert ok.exit_code == 0
    assert "warning: no DOI, PMID or PMCID" in ok.output
    assert "outcomes[0].source.url: warning: the source https://example.org/x/table is not in the record's sources" in ok.output
    assert "unverified_fields[0]: warning: 'n_randomized' holds a value that no source confirmed" in ok.output
    assert ok.output.splitlines()[-1] == "ok: 0 errors, 3 warnings; 1 file checked"
    strict = invoke(runner, "validate", path, "--strict")
    assert strict.exit_code == 1
    assert "FAILED (--strict: warnings count as errors)" in strict.output


def test_valid_fixtures_pass_strict_with_retraction_note(runner):
    result = invoke(runner, "validate", FIXTURES / "valid", "--strict")
    assert result.exit_code == 0, result.output
    assert "retraction: note: publication retracted in 2018" in result.output


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(text, encoding="utf-8")
    return p


BASE = """\
id: {id}
title: Cross-file fixture {id}
authors: [Cross AB]
year: 2020
design: rct
sources: [https://example.org/{id}]
added: 2024-01-01
"""


def test_same_doi_pmid_and_registration_in_two_files(runner, tmp_path):
    extra = "doi: 10.5555/SAME\npmid: 123\nregistrations: [NCT12345678]\n"
    _write(tmp_path, "a-2020.yaml", BASE.format(id="a-2020") + extra)
    _write(tmp_path, "b-2020.yaml", BASE.format(id="b-2020") + extra.replace("SAME", "same"))
    result = invoke(runner, "validate", tmp_path, "--format", "json")
    assert result.exit_code == 1
    probs = [(Path(p["file"]).name, p["field"], p["message"]) for p in json.loads(result.output)["problems"]]
    for kind, value, fld in (("DOI", "10.5555/same", "doi"), ("PMID", "123", "pmid"),
                             ("registration", "NCT12345678", "registrations[0]")):
        assert ("a-2020.yaml", fld, f"{kind} {value} is also in {tmp_path / 'b-2020.yaml'}") in probs
        assert ("b-2020.yaml", fld, f"{kind} {value} is also in {tmp_path / 'a-2020.yaml'}") in probs


def test_shared_registration_allowed_when_linked(runner):
    # fixture-2020 and fixture-2021 share NCT99999901 and link each other with `related`
    result = invoke(runner, "validate", FIXTURES / "valid", "--format", "json")
    assert not [p for p in json.loads(result.output)["problems"] if p["code"] == "duplicate"]


def test_same_id_twice(runner, tmp_path):
    _write(tmp_path / "one", "a-2020.yaml", BASE.format(id="a-2020") + "doi: 10.5555/one\n")
    _write(tmp_path / "two", "a-2020.yaml", BASE.format(id="a-2020") + "doi: 10.5555/two\n")
    result = invoke(runner, "validate", tmp_path)
    assert result.exit_code == 1
    assert f"{tmp_path / 'one' / 'a-2020.yaml'}:1:5: id: id a-2020 is also in {tmp_path / 'two' / 'a-2020.yaml'}" in result.output
    assert f"{tmp_path / 'two' / 'a-2020.yaml'}:1:5: id: id a-2020 is also in {tmp_path / 'one' / 'a-2020.yaml'}" in result.output


def test_unknown_related_id(runner, tmp_path):
    _write(tmp_path, "a-2020.yaml", BASE.format(id="a-2020") + "doi: 10.5555/a\nrelated: [{id: b-202, relation: same-trial}]\n")
    _write(tmp_path, "b-2020.yaml", BASE.format(id="b-2020") + "doi: 10.5555/b\n")
    result = invoke(runner, "validate", tmp_path)
    assert result.exit_code == 1
    assert "related[0].id: no record with id 'b-202'; did you mean 'b-2020'?" in result.output


def test_single_file_is_checked_against_the_rest_of_the_kb(runner, kb_dir):
    p = _write(kb_dir / "studies", "clash-2020.yaml", BASE.format(id="clash-2020") + "doi: 10.5555/KB.FIXTURE.2020\n")
    result = invoke(runner, "--kb", kb_dir, "validate", p)
    assert result.exit_code == 1
    assert "doi: DOI 10.5555/kb.fixture.2020 is also in" in result.output
    assert "fixture-2020.yaml" in result.output
    # only the named file's own problems are listed
    assert "retraction" not in result.output


def test_status_rules(tmp_path):
    text = BASE.format(id="s-2020") + "doi: 10.5555/s\njournal: J\nstatus: verified\nunverified_fields: [journal]\n"
    _write(tmp_path, "s-2020.yaml", text)
    report = validate_paths([tmp_path])
    msgs = {p.message for p in report.problems if p.severity == "error"}
    assert "status is verified, but 'journal' holds a value that no source confirmed" in msgs
    assert "a record with status verified needs at least one condition" in msgs
    assert "a record with status verified needs a key_finding (one sentence)" in msgs


def test_missing_title_allowed_only_when_flagged(tmp_path):
    text = BASE.format(id="t-2020").replace("title: Cross-file fixture t-2020\n", "") + "doi: 10.5555/t\n"
    _write(tmp_path, "t-2020.yaml", text)
    assert any("no title" in p.message for p in validate_paths([tmp_path]).problems)
    _write(tmp_path, "t-2020.yaml", text + "unverified_fields: [title]\n")
    assert not validate_paths([tmp_path]).problems


def test_derived_counts_need_a_derivation_and_pool_false_a_note(tmp_path):
    text = BASE.format(id="d-2020") + """\
doi: 10.5555/d
outcomes:
- outcome: response
  data: {type: binary, arms: [{label: k, events: 3, total: 10}, {label: s, events: 1, total: 10}]}
  counts: derived
  pool: false
  source: Table 1
- outcome: remission
  data: {type: binary, arms: [{label: k, events: 3, total: 10}]}
  source: Table 1
- outcome: response
  data: {type: effect, measure: rr, value: -0.5, ci_low: 0.2, ci_high: 0.1}
  source: abstract
"""
    _write(tmp_path, "d-2020.yaml", text)
    msgs = [(p.field, p.message) for p in validate_paths([tmp_path]).problems]
    assert ("outcomes[0].counts", "derived counts need a `derivation` saying how they were computed") in msgs
    assert ("outcomes[0].pool", "pool: false needs a pool_note saying why") in msgs
    assert ("outcomes[1].data", "say whether these numbers were stated in the source or derived") in msgs
    assert ("outcomes[2].data.value", "a RR must be above 0, got -0.5") in msgs
    assert ("outcomes[2].data.ci_low", "ci_low (0.2) is above ci_high (0.1)") in msgs


def test_crossover_arms_are_compared_one_by_one(tmp_path):
    text = BASE.format(id="c-2020").replace("design: rct", "design: crossover-rct") + """\
doi: 10.5555/c
n_randomized: 20
outcomes:
- outcome: response
  definition: '>=50% fall in MADRS from baseline'
  timepoint_days: 1
  data: {type: binary, arms: [{label: k, events: 3, total: 20}, {label: s, events: 1, total: 20}]}
  counts: stated
  source: {url: 'https://example.org/c-2020', locator: Table 1}
"""
    _write(tmp_path, "c-2020.yaml", text)
    assert not validate_paths([tmp_path]).problems


def test_missing_path_is_a_usage_error(runner, tmp_path):
    result = invoke(runner, "validate", tmp_path / "nope.yaml")
    assert result.exit_code == 2
    assert "no such file or folder" in result.output


def test_parallel_run_matches_serial(tmp_path):
    for i in range(30):
        shutil.copy(FIXTURES / "invalid" / "vocab-2020.yaml", tmp_path / f"vocab-2020{chr(97 + i % 26)}{i}.yaml")
    serial = validate_paths([tmp_path], jobs=1)
    import kb.validate as v

    old = v.PARALLEL_THRESHOLD
    v.PARALLEL_THRESHOLD = 1
    try:
        parallel = validate_paths([tmp_path], jobs=2)
    finally:
        v.PARALLEL_THRESHOLD = old
    assert [p.format() for p in serial.problems] == [p.format() for p in parallel.problems]


def test_missing_identifier_flagged_as_searched_is_not_warned(tmp_path):
    _write(tmp_path, "n-2020.yaml", BASE.format(id="n-2020"))
    assert [p.code for p in validate_paths([tmp_path]).problems] == ["no-identifier"]
    _write(tmp_path, "n-2020.yaml", BASE.format(id="n-2020") + "unverified_fields: [doi (no publisher page found)]\n")
    assert not validate_paths([tmp_path]).problems
    _write(tmp_path, "n-2020.yaml", BASE.format(id="n-2020") + "pmcid: PMC3000408\n")
    assert not validate_paths([tmp_path]).problems


def test_numbers_need_a_page_and_a_place_on_it(tmp_path):
    """An outcome's numbers carry source: {url, locator}; the url is one of the record's sources and never
    a bare IP address; the old one-string form still reads (a URL is the url, anything else the locator)."""
    text = BASE.format(id="s-2020").replace("sources: [https://example.org/s-2020]\n", "") + """\
doi: 10.5555/s
outcomes:
- outcome: response
  definition: responders
  timepoint_days: 1
  data: {type: binary, arms: [{label: k, events: 3, total: 10}, {label: s, events: 1, total: 10}]}
  counts: stated
  source: {url: 'https://example.org/s', locator: Table 1}
- outcome: remission
  definition: remitters
  timepoint_days: 1
  data: {type: binary, arms: [{label: k, events: 2, total: 10}, {label: s, events: 1, total: 10}]}
  counts: stated
  source: Table 3
- outcome: dropout
  definition: dropouts
  timepoint_days: 1
  data: {type: binary, arms: [{label: k, events: 1, total: 10}, {label: s, events: 1, total: 10}]}
  counts: stated
  source: https://example.org/s
- outcome: dissociation
  definition: CADSS above 4
  timepoint_days: 1
  data: {type: binary, arms: [{label: k, events: 5, total: 10}, {label: s, events: 0, total: 10}]}
  counts: stated
  source: Figure 2 (http://203.0.113.9:8081/12345678)
- outcome: nausea
  definition: nausea reported
  timepoint_days: 1
  data: {type: binary, arms: [{label: k, events: 2, total: 10}, {label: s, events: 0, total: 10}]}
  counts: stated
- outcome: headache
  definition: headache reported
  timepoint_days: 1
  data: {type: binary, arms: [{label: k, events: 2, total: 10}, {label: s, events: 1, total: 10}]}
  counts: stated
  source: {url: 'https://example.org/other', locator: Table 4}
sources: [https://example.org/s, 'http://192.0.2.7/mirror']
"""
    _write(tmp_path, "s-2020.yaml", text)
    got = [(p.field, p.code, p.severity) for p in validate_paths([tmp_path]).problems]
    assert got == [
        ("outcomes[1].source", "no-source", "error"),  # 'Table 3' of which page?
        ("outcomes[2].source", "no-locator", "error"),  # which table?
        ("outcomes[3].source.url", "bare-ip", "error"),
        ("outcomes[4].data", "no-source", "error"),
        ("outcomes[5].source.url", "source-unlisted", "warning"),
        ("sources[1]", "bare-ip", "error"),
    ]
    from kb.records import OutcomeSource
    assert OutcomeSource._coerce("Figure 2 (https://a.org/x).") == {"url": "https://a.org/x", "locator": "Figure 2"}
    assert str(OutcomeSource(url="https://a.org/x", locator="Table 1")) == "Table 1 (https://a.org/x)"
