"""Reliability under bad input (issue 18): each case reproduced on a copy of bundled records, with the
behaviour it must have. Each test fails without its fix."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .conftest import ROOT, invoke, new_kb

# commands that read every record (or one), and what each must do with a broken record
EVERY_RECORD = [
    ("validate",),
    ("stats",),
    ("search", "ketamine"),
    ("build", "--no-search", "-o", "{out}"),
    ("export", "--format", "ris"),
    ("meta", "--condition", "depression", "--outcome", "response"),
]


def _commands(root: Path):
    for cmd in EVERY_RECORD:
        yield tuple(str(root / "_site") if a == "{out}" else a for a in cmd)


def _no_internal_error(result) -> None:
    assert "internal error" not in result.output, result.output
    assert "Traceback" not in result.output, result.output


# -- 1. a NUL byte after the first 8 KB of a record --------------------------------------------


def test_a_nul_byte_deep_in_a_record_is_reported_by_every_command_with_file_and_line(runner, tmp_path):
    root = new_kb(tmp_path / "kb", ("singh-2016", "murrough-2013", "hu-2016", "lii-2023"))
    path = root / "studies" / "singh-2016.yaml"
    raw = path.read_bytes()
    assert len(raw) > 9000
    at = raw.index(b"\n", 9000) + 1
    line = raw.count(b"\n", 0, at) + 1
    path.write_bytes(raw[:at] + b"# a comment with a \x00 in it\n" + raw[at:])
    where = f"studies/singh-2016.yaml:{line}:"
    for cmd in _commands(root):
        result = invoke(runner, "--kb", root, *cmd)
        _no_internal_error(result)
        if cmd[0] in ("validate", "build", "search", "meta"):  # the file and line, and why
            assert where in result.output and "NUL byte" in result.output, (cmd, result.output)
        else:  # counted, pointing to kb validate
            assert "with errors left out" in result.output, (cmd, result.output)
    result = invoke(runner, "--kb", root, "validate")
    assert result.exit_code == 1
    meta = json.loads(invoke(runner, "--kb", root, "meta", "--condition", "depression", "--outcome", "response",
                             "--format", "json").stdout)
    assert meta["files_left_out"] == [{"file": "studies/singh-2016.yaml", "line": line,
                                       "message": "a NUL byte (binary zero) in the text; YAML text cannot hold it"}]
    result = invoke(runner, "--kb", root, "show", "singh-2016")
    assert result.exit_code == 1 and where in result.output and "NUL byte" in result.output


@pytest.mark.parametrize("char, name", [("\x1b", "U+001B (ESC)"), ("\x7f", "U+007F (DEL)"), ("\x9b", "U+009B (CSI)"),
                                        ("\x07", "U+0007 (BEL)"), ("\ufffe", "U+FFFE")])
def test_a_raw_control_character_anywhere_is_a_clear_problem_with_its_line(tmp_path, char, name):
    from kb import yamlio

    path = tmp_path / "x-2020.yaml"
    path.write_text("id: x-2020\n" + "# a comment line\n" * 900 + f"title: a {char}title\n", encoding="utf-8")
    with pytest.raises(yamlio.YamlProblem) as e:
        yamlio.load(path)
    assert (e.value.line, e.value.column) == (902, 10)
    assert name in e.value.message and e.value.code == "encoding"


# -- 4. an unreadable record --------------------------------------------------------------------


def make_unreadable(monkeypatch, path: Path) -> None:
    """``path`` cannot be read: chmod 000, or (as root, who reads any file) every open of it raises
    PermissionError, as the kernel would."""
    if os.geteuid() != 0:
        path.chmod(0)
        return
    import builtins
    import io

    real_open = builtins.open
    target = os.path.realpath(path)

    def refusing_open(file, *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and os.path.realpath(file) == target:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)
    monkeypatch.setattr(io, "open", refusing_open)


def test_an_unreadable_record_is_a_problem_for_validate_and_left_out_with_its_reason(runner, tmp_path, monkeypatch):
    root = new_kb(tmp_path / "kb", ("singh-2016", "murrough-2013", "zarate-2006"))
    make_unreadable(monkeypatch, root / "studies" / "singh-2016.yaml")
    why = "studies/singh-2016.yaml:1:1: (file): cannot read file: Permission denied"

    result = invoke(runner, "--kb", root, "validate")
    _no_internal_error(result)
    assert result.exit_code == 1 and why in result.output and "chmod" in result.output
    report = json.loads(invoke(runner, "--kb", root, "validate", "--format", "json").output)
    assert [p["code"] for p in report["problems"] if p["file"] == "studies/singh-2016.yaml"] == ["unreadable"]

    for _ in range(2):  # the second build and search say it again: the file is never silently forgotten
        result = invoke(runner, "--kb", root, "build", "--no-search", "-o", root / "_site")
        _no_internal_error(result)
        assert result.exit_code == 0 and why in result.output
        assert "1 record file(s) with errors left out of the site" in result.output
        assert not (root / "_site" / "studies" / "singh-2016.html").exists()
        result = invoke(runner, "--kb", root, "search", "ketamine")
        _no_internal_error(result)
        assert f"left out of the index: {why}" in result.output
        assert "1 record file with errors left out of the index" in result.output

    for cmd in ("stats", "export"):
        result = invoke(runner, "--kb", root, cmd)
        _no_internal_error(result)
        assert result.exit_code == 0
    result = invoke(runner, "--kb", root, "show", "singh-2016")
    assert result.exit_code == 1 and why in result.output

    monkeypatch.undo()  # readable again (the stamp is unchanged): the next build and search take it back
    (root / "studies" / "singh-2016.yaml").chmod(0o644)
    result = invoke(runner, "--kb", root, "build", "--no-search", "-o", root / "_site")
    assert result.exit_code == 0 and "left out" not in result.output
    assert (root / "_site" / "studies" / "singh-2016.html").exists()
    result = invoke(runner, "--kb", root, "search", "ketamine", "--format", "ids")
    assert "singh-2016" in result.output.split() and "left out" not in result.output


# -- 5. kb.yaml through yamlio (the limits, duplicate keys and a list title are in test_config.py) ----


@pytest.mark.parametrize("text, where, message", [
    (b"title: Test KB\n" + b"# padding\n" * 1000 + b"description: a \x00 here\n", ":1002:16: ", "NUL byte"),
    (b"title: Test \x1b]0;owned\x07KB\n", ":1:13: ", "control character U+001B (ESC)"),
    (b"title: [Test, KB]\n", ":1:8: title: ", "must be text, not a list"),
])
def test_kb_yaml_with_bad_bytes_names_the_file_and_line(runner, tmp_path, text, where, message):
    root = new_kb(tmp_path / "kb")
    (root / "kb.yaml").write_bytes(text)
    result = invoke(runner, "--kb", root, "stats")
    _no_internal_error(result)
    assert result.exit_code == 1
    assert f"Error: {root / 'kb.yaml'}{where}" in result.output and message in result.output
    assert "\x1b" not in result.output


def test_an_unreadable_kb_yaml_is_a_clear_error(runner, tmp_path, monkeypatch):
    root = new_kb(tmp_path / "kb")
    make_unreadable(monkeypatch, root / "kb.yaml")
    result = invoke(runner, "--kb", root, "validate")
    _no_internal_error(result)
    assert result.exit_code == 1
    assert f"Error: {root / 'kb.yaml'}:1:1: cannot read file: Permission denied" in result.output


# -- 17. Egger's test on identical study data ---------------------------------------------------


def clones(root: Path, n: int, source: str = "lii-2023") -> Path:
    """A knowledge base of ``n`` copies of one bundled trial (identifiers dropped, so that none is a
    duplicate of another): every study's data identical."""
    import re

    new_kb(root)
    text = (ROOT / "studies" / f"{source}.yaml").read_text(encoding="utf-8")
    text = re.sub(r"^(doi|pmid|pmcid): .*\n", "", text, flags=re.M)
    text = re.sub(r"^(registrations|related):\n((- |  ).*\n)+", "", text, flags=re.M)
    for i in range(n):
        rid = f"{source}{chr(97 + i // 26)}{chr(97 + i % 26)}"
        (root / "studies" / f"{rid}.yaml").write_text(re.sub(r"^id: .*$", f"id: {rid}", text, count=1, flags=re.M),
                                                      encoding="utf-8")
    return root


@pytest.mark.parametrize("n", [10, 40, 77])
def test_egger_on_identical_study_data_is_not_testable_never_a_crash_or_a_downgrade(runner, tmp_path, n):
    root = clones(tmp_path / "kb", n)
    result = invoke(runner, "--kb", root, "meta", "--condition", "depression", "--outcome", "response",
                    "--format", "json")
    _no_internal_error(result)
    assert result.exit_code == 0, result.output
    analyses = [a for a in json.loads(result.output)["analyses"] if a["k"] == n]
    assert analyses
    for a in analyses:
        assert a["egger"] is None and a["egger_note"].startswith("not testable")
        bias = [r for r in a["certainty"]["reasons"] if r["domain"] == "publication_bias"]
        assert [r["change"] for r in bias] == [0] and "not testable" in bias[0]["text"]
    text = invoke(runner, "--kb", root, "meta", "--condition", "depression", "--outcome", "response").output
    assert "Egger's test: not testable" in text and "p = 0.000" not in text
    result = invoke(runner, "--kb", root, "build", "--no-search", "-o", root / "_site")
    _no_internal_error(result)
    assert result.exit_code == 0, result.output
    page = (root / "_site" / "conditions" / "depression.html").read_text(encoding="utf-8")
    assert "Egger&#39;s test not testable" in page


@pytest.mark.parametrize("y, v, why", [
    ([0.2] * 12, [0.04] * 12, "same standard error"),
    ([0.2] * 12, [0.04 * (1 + 1e-13 * i) for i in range(12)], "same standard error"),
    ([0.2] * 12, [0.01 * (i + 1) for i in range(12)], "exactly on a line"),
    ([0.1 + 0.5 * (0.01 * (i + 1)) ** 0.5 for i in range(12)], [0.01 * (i + 1) for i in range(12)], "exactly on a line"),
    ([0.2] * 11 + [float("nan")], [0.04] * 11 + [0.05], "no finite effect"),
])
def test_egger_refuses_a_regression_that_cannot_test(y, v, why):
    from kb import metaanalysis as M

    with pytest.raises(M.PoolingError, match="not testable") as e:
        M.egger(y, v)
    assert why in str(e.value)


# -- click choices are case-insensitive ---------------------------------------------------------


def test_meta_measure_in_metafors_spelling_is_the_same_as_lower_case(runner, tmp_path):
    root = new_kb(tmp_path / "kb", ("lii-2023", "su-2023", "hu-2016"))
    args = ("--kb", root, "meta", "--condition", "depression", "--outcome", "response", "--format")
    upper = invoke(runner, *args, "JSON", "--measure", "RR", "--method", "reml")
    lower = invoke(runner, *args, "json", "--measure", "rr", "--method", "REML")
    assert upper.exit_code == 0, upper.output
    assert upper.output == lower.output
    assert json.loads(upper.output)["analyses"][0]["measure"] == "rr"


def test_every_choice_of_every_command_is_case_insensitive():
    import click

    from kbcli import cli

    choices = [(name, p.name) for name, cmd in cli.commands.items() for p in cmd.params
               if isinstance(p.type, click.Choice)]
    assert len(choices) >= 10
    for name, cmd in cli.commands.items():
        for p in cmd.params:
            if isinstance(p.type, click.Choice):
                listed = p.type.choices[0]
                assert p.type.convert(listed.swapcase(), p, None) == listed, (name, p.name)


# -- 9. a gzip bomb -----------------------------------------------------------------------------

RIS_RECORD = ("TY  - JOUR\nTI  - Efficacy of intravenous ketamine for treatment of chronic posttraumatic stress "
              "disorder: a randomized clinical trial\nAU  - Feder, A.\nPY  - 2014\nDO  - 10.1001/jamapsychiatry.2014.62\n"
              "ER  - \n\n")


def _bomb(path: Path, expands_to: int, newlines: bool = False) -> Path:
    import gzip

    with gzip.open(path, "wb", compresslevel=9) as fh:
        fh.write(RIS_RECORD.encode())
        block = (b"N1  - " + b"A" * 1000 + b"\n") * 1024 if newlines else b"A" * (1 << 20)
        for _ in range(expands_to // len(block) + 1):
            fh.write(block)
    return path


@pytest.mark.parametrize("newlines", [False, True])
def test_a_gzip_bomb_stops_at_the_size_limit_with_a_clear_message_and_nothing_written(runner, tmp_path, newlines):
    root = new_kb(tmp_path / "kb")
    bomb = _bomb(tmp_path / "export.ris.gz", 8 << 20, newlines)
    assert bomb.stat().st_size < 1 << 20
    result = invoke(runner, "--kb", root, "import", "--as-draft", bomb, "--max-size", "2MB")
    _no_internal_error(result)
    assert result.exit_code == 1
    assert f"Error: {bomb} holds more than 2 MB once un-gzipped; nothing was imported" in result.output
    assert "gzip bomb" in result.output and "--max-size 8MB" in result.output
    assert list((root / "studies").iterdir()) == []
    result = invoke(runner, "--kb", root, "import", "--as-draft", bomb, "--max-size", "20MB", "--report", "json")
    assert json.loads(result.output)["written"] is True
    assert [p.name for p in (root / "studies").iterdir()] == ["feder-2014.yaml"]


def test_the_size_limit_applies_to_plain_files_and_defaults_to_512_mb(runner, tmp_path):
    from kb import formats
    from kb.importer import import_files

    import inspect

    assert formats.MAX_SIZE == 512 << 20
    assert inspect.signature(import_files).parameters["max_size"].default == formats.MAX_SIZE
    root = new_kb(tmp_path / "kb")
    plain = tmp_path / "export.ris"
    plain.write_text(RIS_RECORD * 50, encoding="utf-8")
    result = invoke(runner, "--kb", root, "import", "--as-draft", plain, "--max-size", "1KB")
    assert result.exit_code == 1 and f"{plain} holds more than 1 KB; nothing was imported" in result.output
    assert "gzip" not in result.output
    result = invoke(runner, "--kb", root, "import", "--as-draft", plain, "--max-size", "a lot")
    assert result.exit_code == 2 and "'a lot' is not a size" in result.output


@pytest.mark.parametrize("text, size", [("512MB", 512 << 20), ("2GB", 2 << 30), ("2g", 2 << 30), ("1.5 kb", 1536),
                                        ("100", 100), ("3MiB", 3 << 20)])
def test_sizes_read_as_powers_of_1024(text, size):
    from kb.formats import parse_size

    assert parse_size(text) == size


def test_a_record_the_ris_reader_cannot_read_always_says_why(tmp_path, monkeypatch):
    from kb import formats
    from kb.biblio import Failure
    from kb.formats import ris

    def out_of_memory(lines):
        raise MemoryError()

    monkeypatch.setattr(ris._PARSER, "parse_lines", out_of_memory)
    path = tmp_path / "x.ris"
    path.write_text(RIS_RECORD, encoding="utf-8")
    (failure,) = list(formats.read(path))
    assert isinstance(failure, Failure)
    assert failure.reason == "rispy could not read the record: MemoryError"


# -- 10. files kb writes honour the umask -------------------------------------------------------


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_files_written_by_import_new_and_export_honour_the_umask(runner, tmp_path, mask, expected):
    root = new_kb(tmp_path / "kb")
    ris = tmp_path / "export.ris"
    ris.write_text(RIS_RECORD, encoding="utf-8")
    old = os.umask(mask)
    try:
        assert invoke(runner, "--kb", root, "import", "--as-draft", ris).exit_code == 0
        assert invoke(runner, "--kb", root, "new", "--title", "A trial", "--author", "Smith J", "--year", "2020",
                      "--design", "rct", "--condition", "depression",
                      "--source", "https://pubmed.ncbi.nlm.nih.gov/24740528/").exit_code == 0
        assert invoke(runner, "--kb", root, "export", "-o", tmp_path / "out.ris").exit_code == 0
        assert invoke(runner, "--kb", root, "schema", "-o", tmp_path / "schema.json").exit_code == 0
    finally:
        os.umask(old)
    written = [root / "studies" / "feder-2014.yaml", root / "studies" / "smith-2020.yaml", tmp_path / "out.ris",
               tmp_path / "schema.json"]
    assert {p.name: oct(_mode(p)) for p in written} == {p.name: oct(expected) for p in written}


def test_a_replaced_file_keeps_its_permissions_and_nothing_is_overwritten(runner, tmp_path, umask_022):
    root = new_kb(tmp_path / "kb")
    out = tmp_path / "out.ris"
    ris = tmp_path / "export.ris"
    ris.write_text(RIS_RECORD, encoding="utf-8")
    assert invoke(runner, "--kb", root, "import", "--as-draft", ris).exit_code == 0
    out.write_text("mine\n")
    out.chmod(0o640)
    result = invoke(runner, "--kb", root, "export", "-o", out)
    assert result.exit_code == 1 and out.read_text() == "mine\n"
    assert invoke(runner, "--kb", root, "export", "-o", out, "--force").exit_code == 0
    assert out.read_text() != "mine\n" and _mode(out) == 0o640


# -- a junk import lists the first failures, not every one ---------------------------------------


def test_a_junk_import_lists_the_first_failures_and_json_lists_them_all(runner, tmp_path):
    root = new_kb(tmp_path / "kb")
    junk = tmp_path / "junk.ris"
    junk.write_text("".join(f"TY  - JOUR\nTI  - Record {i} without a year\nER  - \n\n" for i in range(500)),
                    encoding="utf-8")
    result = invoke(runner, "--kb", root, "import", "--as-draft", junk, "--dry-run")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert "failures (500):" in lines
    assert sum(": no publication year" in ln for ln in lines) == 20
    assert "  ... and 480 more (--verbose lists them all; so does --report json)" in lines
    assert len(lines) < 60
    report = json.loads(invoke(runner, "--kb", root, "import", "--as-draft", junk, "--dry-run", "--report", "json").output)
    assert len(report["failed"]) == 500
    verbose = invoke(runner, "--kb", root, "import", "--as-draft", junk, "--dry-run", "--verbose").output
    assert verbose.count(": no publication year") == 500


# -- 7. terminal escape sequences in records and imports ---------------------------------------

import re  # noqa: E402

RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # what no output of kb may hold raw
# an OSC that retitles the terminal, one that clears the screen and colours, and a C1 CSI
ESCAPES = r"\e]0;pwned\a\e[2J\e[31m"
ESCAPED_TITLE = f'"{ESCAPES}Ketamine\\x9b31m for rapid reduction of suicidal ideation: a randomized controlled trial"'


def _escaped_kb(root: Path) -> Path:
    new_kb(root, ("murrough-2015", "murrough-2013", "price-2014", "grunebaum-2018"))
    path = root / "studies" / "murrough-2015.yaml"
    text = path.read_text(encoding="utf-8")
    old = "title: 'Ketamine for rapid reduction of suicidal ideation: a randomized controlled trial'"
    assert old in text
    population = ("population: patients with mood and anxiety spectrum disorders and clinically significant suicidal "
                  "ideation\n")
    assert population in text
    path.write_text(text.replace(old, f"title: {ESCAPED_TITLE}")
                    .replace(population, 'population: "\\x1b]8;;https://evil.example\\x07patients\\x1b]8;;\\x07"\n'),
                    encoding="utf-8")
    return root


def test_control_characters_in_a_record_are_never_printed_raw(runner, tmp_path):
    root = _escaped_kb(tmp_path / "kb")
    outputs = {}
    for args in (("show", "murrough-2015"), ("show", "murrough-2015", "--format", "json"),
                 ("show", "murrough-2015", "--format", "html"), ("show", "murrough-2015", "--format", "yaml"),
                 ("search", "suicidal", "rapid"), ("search", "suicidal", "--format", "json"),
                 ("search", "suicidal", "--format", "csv"), ("search", "suicidal", "--format", "ris"),
                 ("search", "suicidal", "--format", "bibtex"), ("validate",),
                 ("meta", "--condition", "suicidal-ideation", "--outcome", "si-severity"),
                 *(("export", "--format", f) for f in ("ris", "bibtex", "csv", "csl-json", "json", "metapsy"))):
        result = invoke(runner, "--kb", root, *args)
        _no_internal_error(result)
        assert not RAW_CONTROL.search(result.output), (args, RAW_CONTROL.search(result.output))
        outputs[args] = result.output
    text = outputs[("show", "murrough-2015")]
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\x1b[31mKetamine\\x9b31m for rapid" in text  # visible, not obeyed
    shown = json.loads(invoke(runner, "--kb", root, "show", "murrough-2015", "--format", "json").output)
    assert shown["title"].startswith("\x1b]0;pwned\x07\x1b[2J\x1b[31mKetamine\x9b31m")  # JSON keeps the value
    assert "\\x1b]0;pwned" in outputs[("search", "suicidal", "rapid")]


def test_validate_warns_about_control_characters_naming_the_field(runner, tmp_path):
    root = _escaped_kb(tmp_path / "kb")
    report = json.loads(invoke(runner, "--kb", root, "validate", "--format", "json").output)
    found = [(p["file"], p["field"], p["severity"]) for p in report["problems"] if p["code"] == "control-characters"]
    assert found == [("studies/murrough-2015.yaml", "title", "warning"),
                     ("studies/murrough-2015.yaml", "population", "warning")]
    text = invoke(runner, "--kb", root, "validate").output
    assert "studies/murrough-2015.yaml:2:8: title: warning: control character U+001B (ESC) in the text" in text


def test_pages_feed_and_downloads_hold_no_control_characters(runner, tmp_path):
    root = _escaped_kb(tmp_path / "kb")
    result = invoke(runner, "--kb", root, "build", "--no-search", "-o", root / "_site")
    assert result.exit_code == 0, result.output
    for f in (root / "_site").rglob("*"):
        if f.is_file() and f.suffix in (".html", ".xml", ".json", ".csv", ".ris", ".bib", ".svg", ".txt"):
            text = f.read_text(encoding="utf-8")
            assert not RAW_CONTROL.search(text), (f, RAW_CONTROL.search(text))
    page = (root / "_site" / "studies" / "murrough-2015.html").read_text(encoding="utf-8")
    assert "]0;pwned[2J[31mKetamine31m for rapid" in page


def test_the_jinja_finalize_drops_controls_and_keeps_markup():
    from markupsafe import Markup

    from kb.templating import make_env, without_controls

    assert without_controls("a\x1bb\x9bc\td\ne") == "a" + "b" + "c\td\ne"
    kept = without_controls(Markup("<b>\x07x</b>"))
    assert isinstance(kept, Markup) and kept == Markup("<b>x</b>")
    env = make_env()
    assert env.from_string("{{ a }}|{{ b }}").render(a="<\x1b[31m>", b=Markup("<i>\x9b</i>")) == "&lt;[31m&gt;|<i></i>"


def test_an_import_with_escape_sequences_writes_clean_drafts_and_a_clean_report(runner, tmp_path):
    root = new_kb(tmp_path / "kb")
    ris = tmp_path / "export.ris"
    ris.write_text(RIS_RECORD.replace("TI  - Efficacy", "TI  - \x1b]0;pwned\x07\x1b[31mEfficacy")
                   + "TI  - \x1b]2;stray\x07 a title outside any record\n", encoding="utf-8")
    for fmt in ("text", "json"):
        result = invoke(runner, "--kb", root, "import", "--as-draft", ris, "--dry-run", "--report", fmt)
        _no_internal_error(result)
        assert not RAW_CONTROL.search(result.output), (fmt, result.output)
    result = invoke(runner, "--kb", root, "import", "--as-draft", ris)
    assert "RIS fields outside any record: 'TI  - \\x1b]2;stray\\x07" in result.output
    draft = (root / "studies" / "feder-2014.yaml").read_text(encoding="utf-8")
    assert "title: ']0;pwned[31mEfficacy of intravenous ketamine" in draft
    assert "\\e" not in draft and not RAW_CONTROL.search(draft)


# -- kb build --safe-templates ------------------------------------------------------------------


def _hostile_templates(root: Path, marker: Path) -> None:
    """templates/404.html that, unsandboxed, reaches os through a Jinja global and makes ``marker``."""
    (root / "templates").mkdir()
    (root / "templates" / "404.html").write_text(
        '{% extends "default:404.html" %}{% block main %}'
        f"{{{{ cycler.__init__.__globals__.os.mkdir('{marker}') }}}}{{% endblock %}}", encoding="utf-8")


def test_safe_templates_refuses_a_template_that_reaches_python(runner, tmp_path):
    root = new_kb(tmp_path / "kb", ("murrough-2015", "lii-2023"))
    marker = tmp_path / "ran"
    _hostile_templates(root, marker)
    result = invoke(runner, "--kb", root, "build", "--no-search", "--safe-templates", "-o", root / "_site")
    _no_internal_error(result)
    assert result.exit_code == 1 and not marker.exists()
    assert "Error: --safe-templates: a template did what the sandbox refuses" in result.output
    assert "unsafe" in result.output and str(root / "templates") in result.output
    # what --safe-templates is for: without it, a knowledge base's templates run as code
    result = invoke(runner, "--kb", root, "build", "--no-search", "-o", root / "_site")
    assert result.exit_code == 0 and marker.is_dir()


def test_safe_templates_builds_kbs_own_theme_byte_for_byte(runner, tmp_path):
    root = new_kb(tmp_path / "kb", ("murrough-2015", "lii-2023", "su-2023", "parsaik-2015"))
    assert invoke(runner, "--kb", root, "build", "--no-search", "-o", root / "plain").exit_code == 0
    result = invoke(runner, "--kb", root, "build", "--no-search", "--safe-templates", "-o", root / "safe")
    assert result.exit_code == 0, result.output
    plain = {p.relative_to(root / "plain"): p.read_bytes() for p in (root / "plain").rglob("*") if p.is_file()}
    safe = {p.relative_to(root / "safe"): p.read_bytes() for p in (root / "safe").rglob("*") if p.is_file()}
    assert set(plain) == set(safe)
    assert [p for p in plain if plain[p] != safe[p]] == [Path(".kb-build.json")]  # its build id names the mode
    # a sandboxed build after a plain one into the same folder renders every page again
    result = invoke(runner, "--kb", root, "build", "--no-search", "--safe-templates", "-o", root / "plain")
    assert result.exit_code == 0 and "site up to date" not in result.output


def test_a_template_that_does_not_render_is_a_clear_error(runner, tmp_path):
    root = new_kb(tmp_path / "kb", ("murrough-2015",))
    (root / "templates").mkdir()
    (root / "templates" / "404.html").write_text('{% extends "default:404.html" %}{% block main %}'
                                                 "{{ no_such_thing.title }}{% endblock %}", encoding="utf-8")
    result = invoke(runner, "--kb", root, "build", "--no-search", "-o", root / "_site")
    _no_internal_error(result)
    assert result.exit_code == 1 and "Error: a template cannot be rendered:" in result.output
    assert "no_such_thing" in result.output


# -- found by tests/test_fuzz.py ----------------------------------------------------------------


def test_numbers_beyond_any_plausible_range_are_left_out_of_pooling_with_a_reason(runner, tmp_path):
    """An SD of 1e300 passes the schema (it is a positive number) but overflowed the SMD's arithmetic:
    OverflowError, an internal error in kb meta and kb build. The row is left out, saying why."""
    root = clones(tmp_path / "kb", 3)
    path = root / "studies" / "lii-2023aa.yaml"
    text = path.read_text(encoding="utf-8")
    assert "{label: ketamine, mean: 12.7, sd: 7.6, n: 20}" in text
    path.write_text(text.replace("{label: ketamine, mean: 12.7, sd: 7.6, n: 20}",
                                 "{label: ketamine, mean: 12.7, sd: 1.0e+300, n: 20}"), encoding="utf-8")
    assert invoke(runner, "--kb", root, "validate").exit_code == 0
    result = invoke(runner, "--kb", root, "meta", "--condition", "depression", "--outcome", "symptom-change",
                    "--format", "json")
    _no_internal_error(result)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    rows = answer["analyses"] if "analyses" in answer else [answer]
    left = [x for r in rows for x in r["excluded"] if x["id"] == "lii-2023aa"]
    assert left and "out of any plausible range" in left[0]["reason"]
    assert all(r["k"] == 2 for r in rows)
    result = invoke(runner, "--kb", root, "build", "--no-search", "-o", root / "_site")
    _no_internal_error(result)
    assert result.exit_code == 0


def test_heterogeneity_is_undefined_when_one_study_carries_all_the_weight():
    from kb import metaanalysis as M

    assert M.heterogeneity([1e-300, 1e300, 1e300], 0.5, 3.0, 2, random=True) == (None, None)


# -- held in the probe: XML entity bombs and external entities -----------------------------------

_LAUGHS = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
_ARTICLE = ("<PubmedArticleSet><PubmedArticle><MedlineCitation><PMID>24740528</PMID><Article><ArticleTitle>{title}"
            "</ArticleTitle><Journal><JournalIssue><PubDate><Year>2014</Year></PubDate></JournalIssue></Journal>"
            "<AuthorList><Author><LastName>Feder</LastName><Initials>A</Initials></Author></AuthorList></Article>"
            "</MedlineCitation></PubmedArticle></PubmedArticleSet>\n")


def test_an_xml_entity_bomb_is_refused_and_an_external_entity_never_read(runner, tmp_path):
    root = new_kb(tmp_path / "kb")
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET", encoding="utf-8")
    bomb = tmp_path / "bomb.xml"
    bomb.write_text(f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY lol0 "lol">{_LAUGHS}]>'
                    + _ARTICLE.format(title="A &lol9; trial"), encoding="utf-8")
    result = invoke(runner, "--kb", root, "import", "--as-draft", bomb, "--dry-run")
    _no_internal_error(result)
    assert result.exit_code == 1 and "amplification" in result.output and "lollol" not in result.output
    xxe = tmp_path / "xxe.xml"
    xxe.write_text(f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file://{secret}">]>'
                   + _ARTICLE.format(title="Ketamine for PTSD &xxe;"), encoding="utf-8")
    result = invoke(runner, "--kb", root, "import", "--as-draft", xxe, "--report", "json")
    _no_internal_error(result)
    assert "TOPSECRET" not in result.output
    assert "TOPSECRET" not in "".join(p.read_text(encoding="utf-8") for p in (root / "studies").iterdir())


def test_a_record_kept_despite_a_link_error_is_not_said_to_be_left_out(runner, tmp_path):
    """hu-2016 links to dean-2021 (pooled-in); without dean-2021 that link is an error across files, but
    the record still loads and is pooled, so kb meta must not say it was left out."""
    root = new_kb(tmp_path / "kb", ("hu-2016", "ionescu-2019"))
    result = invoke(runner, "--kb", root, "meta", "--condition", "depression", "--outcome", "remission",
                    "--window", "later", "--comparator-class", "inert-placebo", "--format", "json")
    meta = json.loads(result.stdout)
    assert "hu-2016" in [s["id"] for s in meta["studies"]]
    assert meta["files_left_out"] == []


def test_window_and_comparator_class_ids_are_case_insensitive(runner, tmp_path):
    """Like every choice: --window 24H --comparator-class INERT-PLACEBO is the same analysis as the lower-case
    ids, never an empty one."""
    root = new_kb(tmp_path / "kb", ("lii-2023",))
    args = ["meta", "--condition", "depression", "--outcome", "response", "--format", "json"]
    lower = json.loads(invoke(runner, "--kb", root, *args, "--window", "24h", "--comparator-class", "inert-placebo").stdout)
    upper = json.loads(invoke(runner, "--kb", root, *args, "--window", "24H", "--comparator-class", "INERT-PLACEBO").stdout)
    assert upper["k"] == lower["k"] == 1 and upper["estimate"] == lower["estimate"]
