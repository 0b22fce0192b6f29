from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from kbcli import cli

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = ROOT.parent / "shared"
BUNDLED = len(list((ROOT / "studies").glob("*.yaml")))  # the bundled records (all extracted, none a draft)


@pytest.fixture(autouse=True, scope="session")
def _cache_key(tmp_path_factory):
    """The key that signs kb's caches (kb.files.cache_key), for the tests and the commands they run: never
    the user's own ~/.cache/kb/key."""
    os.environ["KB_KEY_FILE"] = str(tmp_path_factory.mktemp("key") / "key")


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path_factory, monkeypatch):
    """Run every test from an empty folder, so that no test depends on where pytest was started."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def kb_dir(tmp_path: Path) -> Path:
    """A knowledge base in a temporary folder holding the valid fixture records."""
    root = tmp_path / "kb"
    (root / "studies").mkdir(parents=True)
    for f in (FIXTURES / "valid").glob("*.yaml"):
        shutil.copy(f, root / "studies" / f.name)
    (root / "kb.yaml").write_text("title: Test KB\n", encoding="utf-8")
    return root


def shared_data(rel: str) -> Path:
    """A file of ../shared/data; the test skips, saying why, when the folder is absent."""
    path = SHARED / "data" / rel
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared/data sits beside the repository in CI)")
    return path


def bundled_copy(root: Path) -> Path:
    """A copy of the bundled knowledge base at ``root`` (tests that build an index or write)."""
    shutil.copytree(ROOT / "studies", root / "studies")
    shutil.copy(ROOT / "kb.yaml", root / "kb.yaml")
    return root


def new_kb(root: Path, ids: tuple[str, ...] = ()) -> Path:
    """An empty knowledge base at ``root``, holding copies of the bundled records ``ids``."""
    (root / "studies").mkdir(parents=True)
    (root / "kb.yaml").write_text("title: Test KB\n", encoding="utf-8")
    for i in ids:
        shutil.copy(ROOT / "studies" / f"{i}.yaml", root / "studies" / f"{i}.yaml")
    return root


def invoke(runner: CliRunner, *args: str, **kw):
    return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False, **kw)
