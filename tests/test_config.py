"""kb.yaml is read as records are (kb.yamlio): the same limits and errors, naming kb.yaml, the line and the key."""

from __future__ import annotations

import pytest

from .conftest import invoke

BOMB = "".join(f"{k}: &{k} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['1'] * 9)}]\n"
               for p, k in zip(["", "a", "b", "c", "d", "e"], "abcdef"))


@pytest.fixture
def kb_yaml(runner, tmp_path):
    """Write kb.yaml in a new knowledge base; return what `kb stats` says of it."""
    root = tmp_path / "kb"
    assert invoke(runner, "init", root).exit_code == 0

    def run(text: str):
        (root / "kb.yaml").write_text(text, encoding="utf-8")
        return invoke(runner, "--kb", root, "stats")

    return run


@pytest.mark.parametrize("text, where, message, hint", [
    ("title: One\ndescription: x\ntitle: Two\n", ":3:1: title: ", "duplicate key 'title' (first at line 1)",
     "merge the two entries into one"),
    (BOMB, ":6:4: f: ", "expands to more than 100,000 nodes through aliases", "remove the &anchor/*alias chain"),
    ("title: [Ketamine, depression]\n", ":1:8: title: ", "must be text, not a list", 'title: "..."'),
    ("title: Ketamine\ndescription:\n  short: x\n", ":3:3: description: ", "must be text, not a mapping",
     'description: "..."'),
    ("title: Ketamine\nlanguage: no\n", ":2:11: language: ", "must be text, not true or false", 'language: "..."'),
    ("title: !!python/name:os.system x\n", ":1:8: title: ", "unsupported YAML tag", "kb.yaml holds plain values"),
    ("- title: Ketamine\n", ":1:1: ", "kb.yaml must be a mapping", "field: value"),
])
def test_bad_kb_yaml_names_the_file_line_and_key_with_a_hint(kb_yaml, text, where, message, hint):
    res = kb_yaml(text)
    assert res.exit_code == 1, res.output
    first, _, rest = res.output.partition("\n")
    assert f"kb.yaml{where}" in first and message in first
    assert rest.startswith("hint: ") and hint in rest
    assert "Traceback" not in res.output


def test_kb_yaml_that_reads_stays_as_it_was(kb_yaml):
    assert kb_yaml("").exit_code == 0
    assert kb_yaml("# only a comment\n").exit_code == 0
    res = kb_yaml("title: 2024-01-01\ndescription: 42\n")  # dates and numbers are text, as before
    assert res.exit_code == 0 and res.output.startswith("2024-01-01: 0 studies"), res.output
