"""docs/architecture.md stays true: every module it names exists, and every module in kb/ is named."""

from __future__ import annotations

import re

from .conftest import ROOT

DOC = ROOT / "docs" / "architecture.md"


def named() -> set[str]:
    text = DOC.read_text(encoding="utf-8")
    # `kb/x.py`, `kb/pkg/` and `site/x.py` / `engine/x.py` (written inside their package's section)
    names = set(re.findall(r"`(kb/[\w/]+(?:\.py|/))`", text))
    names |= {f"kb/{m}" for m in re.findall(r"`((?:site|engine)/\w+\.py)`", text)}
    return names


def test_every_module_named_exists():
    missing = sorted(n for n in named() if not (ROOT / n).exists())
    assert missing == [], f"docs/architecture.md names modules that do not exist: {missing}"


def test_every_module_is_named():
    names = named()
    packages = {n for n in names if n.endswith("/")}
    unnamed = []
    for path in sorted((ROOT / "kb").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in names:
            continue
        parent = rel.rsplit("/", 1)[0] + "/"
        if parent in packages and parent not in ("kb/site/", "kb/engine/"):
            continue  # a package named as a whole (kb/formats/)
        unnamed.append(rel)
    assert unnamed == [], f"modules docs/architecture.md does not name: {unnamed}"


def test_the_check_can_fail(tmp_path, monkeypatch):
    """A page that leaves a module out, or names one that is gone, fails both checks."""
    import pytest

    from . import test_architecture as me

    page = tmp_path / "architecture.md"
    page.write_text(DOC.read_text(encoding="utf-8").replace("`kb/absolute.py`", "`kb/absolutely.py`"), encoding="utf-8")
    monkeypatch.setattr(me, "DOC", page)
    with pytest.raises(AssertionError, match="absolutely"):
        test_every_module_named_exists()
    with pytest.raises(AssertionError, match="kb/absolute.py"):
        test_every_module_is_named()
