"""The Jinja environment: a knowledge base's templates/ override kb's defaults file by file."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import re

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader, StrictUndefined
from markupsafe import Markup

from .config import KnowledgeBase


def default_templates_dir() -> Path:
    """kb's own theme: shipped inside the package, or the repository's templates/ in a checkout."""
    packaged = Path(str(resources.files("kb"))) / "templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "templates"


# What HTML and XML may not hold: C0 controls but tab, newline and CR; DEL; the C1 controls. Autoescaping
# leaves them alone, so a record's ESC or OSC would reach the page (and a terminal showing its source).
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_find_control = _CONTROLS.search


def without_controls(value):
    """Every ``{{ value }}`` of every template passes through here (the environment's ``finalize``):
    control characters are dropped; markup stays markup. (About 150 ns a call, 100-200 calls a study
    page: ~2% of a build.)"""
    if isinstance(value, str) and _find_control(value) is not None:
        cleaned = _CONTROLS.sub("", value)
        return Markup(cleaned) if isinstance(value, Markup) else cleaned
    return value


def make_env(kb: KnowledgeBase | None = None, sandboxed: bool = False) -> Environment:
    """Autoescaping environment; ``{% extends "default:base.html" %}`` reaches kb's own file.

    Each build makes its own environment, so templates are not checked for changes on every
    ``get_template`` (Jinja's default stats the file each time: 100k+ stats in a big build);
    ``kb serve`` picks up template edits because each rebuild starts a new environment.

    A knowledge base's own templates/ are code: in a plain environment a template can reach Python
    objects' internals and run anything the user can (as a theme can in MkDocs or Hugo).
    ``sandboxed`` (kb build --safe-templates) renders with Jinja's ImmutableSandboxedEnvironment,
    for building someone else's repository: unsafe attributes (``__class__``, ``mro`` ...) and
    functions are refused, and nothing passed in can be changed."""
    default = FileSystemLoader(str(default_templates_dir()))
    loaders = []
    if kb is not None and kb.templates_dir.is_dir():
        loaders.append(FileSystemLoader(str(kb.templates_dir)))
    loaders += [default, PrefixLoader({"default": default}, delimiter=":")]
    cls = Environment
    if sandboxed:
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        cls = ImmutableSandboxedEnvironment
    env = cls(loader=ChoiceLoader(loaders), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, auto_reload=False,
                      finalize=without_controls)
    return env
