"""kb installed non-editable (a wheel), run from another folder on another knowledge base."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from .conftest import FIXTURES, ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("hatchling", reason="building the wheel needs hatchling (the test extra)")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True)
    (whl,) = out.glob("*.whl")
    return whl


def test_wheel_ships_templates_and_vocabulary(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "kbcli.py" in names
    assert "kb/data/vocabulary.yaml" in names
    assert "kb/templates/base.html" in names and "kb/templates/study.html" in names
    assert "kb/templates/assets/site.css" in names and "kb/templates/assets/search.js" in names
    assert not any(n.startswith(("tests/", "studies/")) for n in names)


def test_installed_kb_runs_in_another_folder(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    # kb itself comes from the wheel; its dependencies from the running environment's site-packages
    site = subprocess.run([str(py), "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True,
                          text=True, check=True).stdout.strip()
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    import site as site_mod

    deps = [p for p in site_mod.getsitepackages() if Path(p).is_dir()]
    (Path(site) / "zz-deps.pth").write_text("\n".join(deps) + "\n")
    kbdir = tmp_path / "elsewhere" / "my-kb"
    work = tmp_path / "cwd"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    run = lambda *args: subprocess.run([str(py), "-c", "import kbcli; kbcli.main()", *args], cwd=work,  # noqa: E731
                                      capture_output=True, text=True, env=env)
    where = subprocess.run([str(py), "-c", "import kb; print(kb.__file__)"], cwd=work, capture_output=True,
                           text=True, env=env, check=True).stdout
    assert where.startswith(site), f"kb imported from {where}, not the installed wheel"
    assert run("init", str(kbdir)).returncode == 0
    (kbdir / "studies" / "fixture-2020.yaml").write_text((FIXTURES / "valid" / "fixture-2020.yaml").read_text())
    (kbdir / "studies" / "fixture-2021.yaml").write_text((FIXTURES / "valid" / "fixture-2021.yaml").read_text())
    res = run("--kb", str(kbdir), "validate")
    assert res.returncode == 0, res.stdout + res.stderr
    html = run("--kb", str(kbdir), "show", "fixture-2020", "--format", "html")
    assert html.returncode == 0, html.stderr
    assert "<h1>Synthetic fixture trial" in html.stdout  # the packaged default templates
    # the site, with a template of the knowledge base's own overriding the packaged one
    (kbdir / "templates").mkdir(exist_ok=True)
    (kbdir / "templates" / "study.html").write_text(
        '{% extends "default:study.html" %}{% block title %}Mine: {{ study.id }}{% endblock %}')
    built = run("--kb", str(kbdir), "build", "--no-search", "-o", str(tmp_path / "site"))
    assert built.returncode == 0, built.stdout + built.stderr
    assert "<title>Mine: fixture-2020</title>" in (tmp_path / "site/studies/fixture-2020.html").read_text()
    assert (tmp_path / "site/assets/site.css").is_file() and (tmp_path / "site/index.html").is_file()


def test_the_readmes_two_commands_are_self_contained_and_ci_runs_the_second():
    """Each command of the README's first screen creates and activates its own virtual environment (run in
    a new terminal, neither installs into the system Python), and CI runs the test command as written."""
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    block = readme.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(commands) == 2
    for command in commands:
        assert command.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install ")
    assert commands[1].endswith("python -m pytest")
    ci = (root / ".ci" / "run").read_text(encoding="utf-8")
    assert commands[1].replace("pip install ", "pip install --quiet ") in ci
    assert "axe-core" in readme.split("## ", 1)[0]  # the first screen says where axe-core comes from
