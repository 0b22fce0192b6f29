"""Loading a knowledge base's records: the one way every command reads studies/."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .config import KnowledgeBase
from .errors import BadRequest, NotFound, RecordError
from .records import ID_RE, Study
from .review_notes import ReviewNotes
from .summaries import ConditionSummary
from .files import link_outside
from .validate import EXTERNAL_LINK_HINT, Report, check_file, check_review_notes_file, check_summary_file, record_files, validate_paths


def load_studies(kb: KnowledgeBase, progress: Callable[[int, int], None] | None = None) -> Report:
    """Every record of ``kb``, validated. Invalid files are left out and listed in the report."""
    if not kb.studies_dir.is_dir():
        return Report(files=0, problems=[], studies=[])
    return validate_paths([kb.studies_dir], kb.vocab, base=kb.root, progress=progress, links_within=kb.links_within)


def split_drafts(studies: list[Study]) -> tuple[list[Study], list[Study]]:
    """(evidence, drafts): the records that count, and the drafts left out of counts, the site and
    pooled results (:attr:`Study.is_evidence`), each in the order given."""
    evidence: list[Study] = []
    drafts: list[Study] = []
    for s in studies:
        (evidence if s.is_evidence else drafts).append(s)
    return evidence, drafts


def study_path(kb: KnowledgeBase, study_id: str) -> Path:
    """The record file of an id. The id must match the id pattern before any path is built from it, so
    that no id ('../../x', '/etc/x', 'a/b-2013') can reach a file outside studies/."""
    if not ID_RE.match(study_id or ""):
        raise BadRequest(f"'{study_id}' is not a study id",
                         hint="an id is lowercase firstauthor-year, e.g. murrough-2013 (`kb stats` or `ls studies/` lists them)")
    for suffix in (".yaml", ".yml"):
        p = kb.studies_dir / f"{study_id}{suffix}"
        if p.is_file():
            return p
    ids = sorted(p.stem for p in record_files([kb.studies_dir])) if kb.studies_dir.is_dir() else []
    import difflib

    close = difflib.get_close_matches(study_id, ids, n=3, cutoff=0.6)
    raise NotFound(
        f"no study '{study_id}' in {kb.studies_dir}",
        hint=("did you mean " + ", ".join(close) + "?") if close else "`kb stats` or `ls studies/` lists the ids",
    )


def load_study(kb: KnowledgeBase, study_id: str) -> Study:
    """One record by id; a record with errors is refused with its first problems."""
    path = study_path(kb, study_id)
    target = link_outside(path, kb.links_within) if kb.links_within is not None else None
    if target is not None:
        raise RecordError(f"{path} is a symbolic link to {target}, outside the knowledge base: not read",
                          hint=EXTERNAL_LINK_HINT)
    res = check_file(path, kb.vocab, str(path.relative_to(kb.root)) if path.is_relative_to(kb.root) else str(path))
    errors = [p for p in res.problems if p.severity == "error"]
    if res.study is None or errors:
        shown = "\n".join(p.format() for p in errors[:5])
        more = f"\n... and {len(errors) - 5} more" if len(errors) > 5 else ""
        raise RecordError(f"{path} has errors:\n{shown}{more}", hint=f"run `kb validate {path}`")
    return res.study


def summaries_dir(kb: KnowledgeBase) -> Path:
    return kb.root / "summaries"


def load_summaries(kb: KnowledgeBase) -> dict[str, ConditionSummary]:
    """condition -> the reviewers' summary (summaries/<condition>.yaml). A file with errors is refused
    with its problems: a certainty override must never be dropped silently."""
    return _load_folder(kb, summaries_dir(kb), check_summary_file, lambda s: s.condition,
                        "fix the summary file, or move it aside")


def _load_folder(kb: KnowledgeBase, folder: Path, check, key, hint: str) -> dict:
    """key(item) -> item for every reviewers' file in ``folder``, each read by ``check(path, vocab,
    display)``; a file with errors stops the load with its first problems (never dropped silently)."""
    out: dict = {}
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.y*ml")):
        display = str(path.relative_to(kb.root))
        item, problems = check(path, kb.vocab, display)
        if problems:
            shown = "\n".join(p.format() for p in problems[:5])
            raise RecordError(f"{display} has errors:\n{shown}", hint=hint)
        out[key(item)] = item
    return out


def comparisons_dir(kb: KnowledgeBase) -> Path:
    return kb.root / "comparisons"


def load_review_notes(kb: KnowledgeBase) -> dict[str, ReviewNotes]:
    """review id -> the reviewers' notes on it (comparisons/<review-id>.yaml). A file with errors is
    refused with its problems, as a summary is."""
    return _load_folder(kb, comparisons_dir(kb), check_review_notes_file, lambda n: n.review,
                        "fix the file, or move it aside (`kb validate` checks it)")
