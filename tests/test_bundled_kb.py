"""The knowledge base that ships in this repository's studies/ validates strictly."""

from __future__ import annotations

from .conftest import ROOT, invoke


def test_bundled_studies_validate_strict(runner):
    result = invoke(runner, "--kb", ROOT, "validate", "--strict")
    assert result.exit_code == 0, result.output
    assert " 0 errors, 0 warnings" in result.output.splitlines()[-1]


def test_bundled_stats(runner):
    result = invoke(runner, "--kb", ROOT, "stats", "--format", "json")
    assert result.exit_code == 0
