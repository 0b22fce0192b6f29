"""The commands as a user runs them: exit codes, messages, --kb, never overwriting."""

from __future__ import annotations

import json

import pytest

from kbcli import cli

from .conftest import invoke


def test_version(runner):
    result = invoke(runner, "--version")
    assert result.exit_code == 0
    assert result.output.startswith("kb, version ")


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_has_help_with_an_example(runner, name):
    result = invoke(runner, name, "--help")
    assert result.exit_code == 0
    assert "Example" in result.output, f"`kb {name} --help` has no example"


def test_unknown_command_and_option_are_usage_errors(runner):
    assert invoke(runner, "frobnicate").exit_code == 2
    assert invoke(runner, "validate", "--nope").exit_code == 2
    assert invoke(runner, "stats", "--format", "xml").exit_code == 2


def test_no_knowledge_base_here(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(runner, "stats")
    assert result.exit_code == 1
    assert "Error: no knowledge base at" in result.output
    assert "hint: run `kb init DIR`" in result.output


def test_kb_option_and_parent_discovery(runner, kb_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert invoke(runner, "--kb", kb_dir, "stats").exit_code == 0
    sub = kb_dir / "studies"
    monkeypatch.chdir(sub)
    result = invoke(runner, "stats", "--format", "json")
    assert result.exit_code == 0
    assert json.loads(result.output)["studies"] == 3


def test_validate_defaults_to_the_kb_studies(runner, kb_dir):
    result = invoke(runner, "--kb", kb_dir, "validate")
    assert result.exit_code == 0
    assert "studies/retracted-2015.yaml:16:3: retraction: note:" in result.output
    assert result.output.splitlines()[-1] == "ok: 0 errors, 0 warnings, 1 note; 3 files checked"


def test_stats(runner, kb_dir):
    result = invoke(runner, "--kb", kb_dir, "stats", "--format", "json")
    data = json.loads(result.output)
    assert data["studies"] == 3
    assert data["retracted"] == ["retracted-2015"]
    cond = {row["term"]: row["count"] for row in data["condition"]}
    assert cond == {"suicidal-ideation": 2, "depression": 1, "bipolar": 1}
    design = {row["term"]: row["count"] for row in data["design"]}
    assert design == {"rct": 2, "meta-analysis": 1}
    assert {row["term"]: row["count"] for row in data["status"]} == {"extracted": 3}
    assert {row["term"]: row["count"] for row in data["year"]} == {"2015-2019": 1, "2020-2024": 2}
    table = invoke(runner, "--kb", kb_dir, "stats")
    assert table.exit_code == 0
    assert "Test KB: 3 studies" in table.output
    assert "Retracted (never pooled): retracted-2015" in table.output


def test_stats_counts_invalid_files(runner, kb_dir):
    (kb_dir / "studies" / "broken-2020.yaml").write_text("id: [\n", encoding="utf-8")
    data = json.loads(invoke(runner, "--kb", kb_dir, "stats", "--format", "json").output)
    assert data["studies"] == 3
    assert data["invalid_files"] == 1


def test_show_formats(runner, kb_dir):
    text = invoke(runner, "--kb", kb_dir, "show", "fixture-2020")
    assert text.exit_code == 0
    assert "fixture-2020  [extracted]" in text.output
    assert "Response (MADRS, 24 h)" in text.output
    assert "ketamine 15/30; midazolam 6/28 [counts stated]" in text.output
    data = json.loads(invoke(runner, "--kb", kb_dir, "show", "fixture-2020", "--format", "json").output)
    assert data["outcomes"][0]["data"]["arms"][0] == {"label": "ketamine", "events": 15, "total": 30}
    yml = invoke(runner, "--kb", kb_dir, "show", "fixture-2020", "--format", "yaml").output
    assert yml.startswith("id: fixture-2020\n")


def test_show_retracted_banner_everywhere(runner, kb_dir):
    text = invoke(runner, "--kb", kb_dir, "show", "retracted-2015").output
    assert "!! RETRACTED in 2018: Synthetic Notice 2018;1:1" in text
    html = invoke(runner, "--kb", kb_dir, "show", "retracted-2015", "--format", "html").output
    assert '<div class="retracted" role="note" aria-label="Retraction notice">' in html


def test_show_unknown_id_suggests(runner, kb_dir):
    result = invoke(runner, "--kb", kb_dir, "show", "fixture-2022")
    assert result.exit_code == 1
    assert "Error: no study 'fixture-2022'" in result.output
    assert "did you mean fixture-2021, fixture-2020?" in result.output


def test_show_invalid_record_is_refused_with_its_problems(runner, kb_dir):
    (kb_dir / "studies" / "broken-2020.yaml").write_text("id: broken-2020\nyear: 1750\n", encoding="utf-8")
    result = invoke(runner, "--kb", kb_dir, "show", "broken-2020")
    assert result.exit_code == 1
    assert "year: year 1750 is out of range" in result.output
    assert "hint: run `kb validate" in result.output


def test_html_escapes_record_text(runner, kb_dir):
    p = kb_dir / "studies" / "fixture-2020.yaml"
    p.write_text(p.read_text().replace("title: Synthetic", "title: <script>alert(1)</script> Synthetic"))
    html = invoke(runner, "--kb", kb_dir, "show", "fixture-2020", "--format", "html").output
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_kb_templates_override_defaults_file_by_file(runner, kb_dir):
    (kb_dir / "templates").mkdir()
    (kb_dir / "templates" / "base.html").write_text(
        '<html><body class="custom">{% block main %}{% endblock %}</body></html>\n')
    html = invoke(runner, "--kb", kb_dir, "show", "fixture-2020", "--format", "html").output
    assert '<body class="custom">' in html
    assert "<h1>Synthetic fixture trial" in html  # study.html still comes from kb


NEW = ["new", "--title", "A new synthetic record", "--author", "Newman AB", "--year", "2024",
       "--design", "RCT", "--condition", "TRD", "--source", "https://example.org/new", "--doi", "10.5555/new"]


def test_new_writes_a_valid_record_and_never_overwrites(runner, kb_dir):
    result = invoke(runner, "--kb", kb_dir, *NEW)
    assert result.exit_code == 0, result.output
    path = kb_dir / "studies" / "newman-2024.yaml"
    assert f"wrote {path}" in result.output
    text = path.read_text()
    assert "design: rct\n" in text and "- depression\n" in text and "status: draft\n" in text
    assert invoke(runner, "--kb", kb_dir, "validate", "--strict").exit_code == 0
    # a second record by the same author and year gets a letter suffix
    again = invoke(runner, "--kb", kb_dir, *NEW[:-2], "--doi", "10.5555/new2")
    assert again.exit_code == 0
    assert (kb_dir / "studies" / "newman-2024b.yaml").exists()
    assert path.read_text() == text
    # an explicit id that exists is refused, and the file is untouched
    clash = invoke(runner, "--kb", kb_dir, *NEW, "--id", "newman-2024")
    assert clash.exit_code == 1
    assert "already exists; not overwriting it" in clash.output
    assert path.read_text() == text


def test_new_requires_values_when_not_interactive(runner, kb_dir):
    result = invoke(runner, "--kb", kb_dir, "new", "--title", "x")
    assert result.exit_code == 2
    assert "Error: missing --author, --year, --design" in result.output


def test_new_rejects_unknown_terms(runner, kb_dir):
    result = invoke(runner, "--kb", kb_dir, *NEW[:9], "--design", "randomized-ish")
    assert result.exit_code == 2
    assert "unknown design 'randomized-ish'" in result.output


def test_new_print_does_not_write(runner, kb_dir):
    result = invoke(runner, "--kb", kb_dir, *NEW, "--print")
    assert result.exit_code == 0
    assert result.output.startswith("id: newman-2024\n")
    assert not (kb_dir / "studies" / "newman-2024.yaml").exists()


def test_init_then_use_from_another_folder(runner, tmp_path, monkeypatch):
    target = tmp_path / "psilocybin-kb"
    result = invoke(runner, "init", target, "--title", "Psilocybin evidence")
    assert result.exit_code == 0
    assert (target / "studies").is_dir()
    assert "title: Psilocybin evidence" in (target / "kb.yaml").read_text()
    monkeypatch.chdir(tmp_path)
    assert invoke(runner, "--kb", target, *NEW).exit_code == 0
    assert invoke(runner, "--kb", target, "validate", "--strict").exit_code == 0
    again = invoke(runner, "init", target)
    assert again.exit_code == 1
    assert "already holds a knowledge base" in again.output


def test_kb_yaml_vocabulary_extends_terms(runner, tmp_path):
    target = tmp_path / "sleep"
    invoke(runner, "init", target)
    (target / "kb.yaml").write_text("title: Sleep\nvocabulary:\n  condition:\n    insomnia: {label: Insomnia, synonyms: [sleeplessness]}\n")
    result = invoke(runner, "--kb", target, *NEW[:9], "--condition", "sleeplessness", "--design", "rct",
                    "--source", "https://example.org/s")
    assert result.exit_code == 0, result.output
    assert "- insomnia\n" in (target / "studies" / "newman-2024.yaml").read_text()
    schema = json.loads(invoke(runner, "--kb", target, "schema").output)
    assert "insomnia" in schema["$defs"]["Condition"]["properties"]["term"]["enum"]


def test_bad_kb_yaml(runner, tmp_path):
    target = tmp_path / "bad"
    invoke(runner, "init", target)
    (target / "kb.yaml").write_text("title: x\ncolour: blue\n")
    result = invoke(runner, "--kb", target, "stats")
    assert result.exit_code == 1
    assert "unknown key(s) colour" in result.output
    (target / "kb.yaml").write_text("vocabulary:\n  flavour: {x: {}}\n")
    result = invoke(runner, "--kb", target, "stats")
    assert "unknown vocabulary category 'flavour'" in result.output


def test_schema_to_file_never_overwrites(runner, kb_dir, tmp_path):
    out = tmp_path / "s.json"
    assert invoke(runner, "--kb", kb_dir, "schema", "-o", out).exit_code == 0
    assert json.loads(out.read_text())["title"] == "kb study record"
    again = invoke(runner, "--kb", kb_dir, "schema", "-o", out)
    assert again.exit_code == 1
    assert invoke(runner, "--kb", kb_dir, "schema", "-o", out, "--force").exit_code == 0


def test_internal_errors_are_one_line(runner, kb_dir, monkeypatch):
    import kb.stats

    def boom(*a, **k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(kb.stats, "compute_stats", boom)
    monkeypatch.delenv("KB_DEBUG", raising=False)
    result = runner.invoke(cli, ["--kb", str(kb_dir), "stats"])
    assert result.exit_code == 1
    assert "internal error in kb (RuntimeError: kaboom)" in result.output
    assert "Traceback" not in result.output


def test_show_refuses_an_id_that_is_a_path(runner, kb_dir):
    """Reliability issue, defect 8: `kb show ../../somewhere/secret-2013` read any YAML file reachable from
    studies/. An id must match the id pattern before a path is built from it: a usage error, nothing read."""
    secret = kb_dir.parent / "secret-2013.yaml"
    secret.write_text("id: secret-2013\ntitle: SECRET CONTENT\nyear: 2013\ndesign: rct\n")
    for bad in ("../secret-2013", "../../secret-2013", str(secret.with_suffix("")), "studies/../secret-2013"):
        result = invoke(runner, "--kb", kb_dir, "show", bad)
        assert result.exit_code == 2, (bad, result.output)
        assert "SECRET" not in result.output and "is not a study id" in result.output


@pytest.mark.parametrize("url", ["javascript:alert(1)//", "data:text/html,x", "//evil.example/", "ketamine/",
                                 'https://a.example/"><script>'])
def test_build_accepts_only_http_urls_or_paths_as_base_url(runner, kb_dir, tmp_path, url):
    """Reliability issue, defect 6: --base-url 'javascript:alert(1)//' became every href of the 404 page and the
    feed. Only an http(s) URL or a path starting with / is accepted, from the option or from kb.yaml."""
    out = tmp_path / "site"
    result = invoke(runner, "--kb", kb_dir, "build", "--no-search", "-o", out, "--base-url", url)
    assert result.exit_code == 2 and "is not an http(s) URL or a path starting with /" in result.output
    assert not (out / "404.html").exists()
    (kb_dir / "kb.yaml").write_text(f"title: Test\nbase_url: '{url}'\n" if "'" not in url else 'title: Test\nbase_url: "x:y"\n')
    result = invoke(runner, "--kb", kb_dir, "build", "--no-search", "-o", out)
    assert result.exit_code == 2 and "kb.yaml base_url" in result.output
    ok = invoke(runner, "--kb", kb_dir, "build", "--no-search", "-o", out, "--base-url", "/ketamine/")
    assert ok.exit_code == 0, ok.output
