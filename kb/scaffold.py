"""`kb new` and `kb init`: new records and new knowledge bases, never overwriting."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from . import yamlio
from .biblio import fold
from .config import CONFIG_NAME, STUDIES_DIR, KnowledgeBase
from .errors import BadRequest, RecordError, RecordExists
from .records import Study, record_data, surname, validate_data
from .validate import Problem, record_checks, record_files

_LETTERS = "abcdefghijklmnopqrstuvwxyz"
SUFFIXES = [*_LETTERS[1:], *(a + b for a in _LETTERS[1:] for b in _LETTERS)]


def slug(text: str) -> str:
    """'aan het Rot' -> 'aan-het-rot'; "O'Brien" -> 'obrien'; 'Pawełczyk' -> 'pawelczyk'."""
    return "-".join(fold(text.replace("'", "")).split())


def make_id(first_author: str, year: int, taken: set[str]) -> str:
    """lowercase firstauthor-year, with b, c, ... z, then ba, bb, ... zz appended while the id is taken."""
    base = f"{slug(surname(first_author)) or 'anon'}-{year}"
    if base not in taken:
        return base
    for suffix in SUFFIXES:
        if base + suffix not in taken:
            return base + suffix
    raise RecordExists(f"too many records named {base} ({len(SUFFIXES) + 1})",
                       hint="give the new record its own id")


@dataclass
class NewStudy:
    path: Path
    text: str
    study: Study
    warnings: list[Problem]


def new_study(kb: KnowledgeBase, *, title: str | None, authors: list[str], year: int | None, design: str | None,
              conditions: list[str], sources: list[str], doi: str | None = None, pmid: str | None = None,
              journal: str | None = None, study_id: str | None = None, status: str = "draft",
              today: _dt.date | None = None, write: bool = True) -> NewStudy:
    """Build a new draft record, check it as `kb validate` would, and write it unless it exists."""
    missing = [name for name, v in (("--title", title), ("--author", authors), ("--year", year),
                                    ("--design", design)) if not v]
    if missing:
        raise BadRequest("missing " + ", ".join(missing), hint="e.g. kb new --title \"...\" --author \"Murrough JW\" "
                         "--year 2013 --design rct --condition depression --source https://pubmed.ncbi.nlm.nih.gov/23982301/")
    assert year is not None and design is not None
    vocab = kb.vocab

    def canon(category: str, value: str) -> str:
        term = vocab.canonical(category, value)
        if term is None:
            sug = vocab.suggest(category, value)
            raise BadRequest(f"unknown {category} '{value}'" + (f"; did you mean '{sug}'?" if sug else ""),
                             hint=f"{category}s: " + ", ".join(vocab.terms(category)))
        return term

    taken = {p.stem for p in record_files([kb.studies_dir])} if kb.studies_dir.is_dir() else set()
    if study_id is None:
        study_id = make_id(authors[0], year, taken)
    data: dict = {
        "id": study_id,
        "title": title,
        "authors": authors,
        "year": year,
        "journal": journal,
        "doi": doi,
        "pmid": pmid,
        "design": canon("design", design),
        "conditions": [canon("condition", c) for c in conditions],
        "sources": sources,
        "status": status,
        "added": (today or _dt.date.today()).isoformat(),
    }
    data = {k: v for k, v in data.items() if v not in (None, [])}
    path = kb.studies_dir / f"{study_id}.yaml"
    try:
        study = validate_data(data, vocab)
    except ValidationError as err:
        msgs = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors(include_url=False))
        raise BadRequest(f"the new record would not validate: {msgs}") from None
    problems: list[Problem] = []

    def add(loc, message, severity="error", hint=None, code="record"):
        problems.append(Problem(str(path), 1, 1, yamlio.format_loc(loc), message, severity, hint, code))

    record_checks(study, path, add)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise RecordError("the new record would not validate:\n" + "\n".join(p.format() for p in errors))
    text = yamlio.dump(record_data(study))
    if write:
        yamlio.write_new(path, text)
    return NewStudy(path=path, text=text, study=study, warnings=[p for p in problems if p.severity != "error"])


KB_YAML = """\
# kb.yaml: settings of this knowledge base (all optional).
title: {title}
description: ""
# base_url: https://example.org/evidence/   # absolute URLs for the feed and sitemap
# When the evidence was last searched for new studies; every page says "Evidence searched up to"
# this date (without it, pages say the search date is not recorded):
# literature_search:
#   up_to: 2026-01-31     # the date the last search for new studies was run (YYYY-MM-DD)
#   note: PubMed and ClinicalTrials.gov, searched for ...   # how: which databases or pages
# Extra vocabulary terms or synonyms, in the shape of kb's own vocabulary:
# vocabulary:
#   condition:
#     insomnia: {{label: Insomnia, synonyms: [sleeplessness]}}
"""

GITIGNORE = ".kb/\n_site/\n"


def init_kb(folder: Path, title: str | None = None) -> list[Path]:
    """Create an empty knowledge base in ``folder``; refuses to touch an existing one."""
    folder = folder.resolve()
    if (folder / CONFIG_NAME).exists() or (folder / STUDIES_DIR).exists():
        raise RecordExists(f"{folder} already holds a knowledge base (kb.yaml or studies/ exists); not touching it")
    title = title or folder.name.replace("-", " ").replace("_", " ").strip().capitalize() or "Evidence knowledge base"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / STUDIES_DIR).mkdir()
    created = [folder / STUDIES_DIR]
    yamlio.write_new(folder / CONFIG_NAME, KB_YAML.format(title=yamlio.dump(title).strip().removesuffix("...").strip()))
    created.append(folder / CONFIG_NAME)
    gi = folder / ".gitignore"
    if not gi.exists():
        yamlio.write_new(gi, GITIGNORE)
        created.append(gi)
    return created
