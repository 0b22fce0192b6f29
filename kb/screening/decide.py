"""Decisions, blind dual screening, conflicts, agreement, and a full-text include becoming a draft.

Stages and decisions (:data:`store.DECISIONS`): at title/abstract include, exclude or maybe (a maybe
goes on to full text); at full text include or exclude, an exclusion with a reason from kb.yaml's
``screening: {exclusion_reasons: [...]}``. A reviewer's standing decision on a reference at a stage
is their last line for it (``undo`` withdraws the one before). Conflicts follow Rayyan and Covidence:
include against exclude; maybe against exclude at title/abstract; at full text, two exclusions with
different reasons. A resolution is a decision line with ``resolves: true``; it settles the reference
at that stage whoever wrote it.

Blinding: until ``kb screen unblind`` writes ``screening/unblinded.yaml``, a reviewer sees only their
own decisions, and conflicts and agreement (which show the others') are refused.
"""

from __future__ import annotations

import datetime as _dt
import math
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .. import yamlio
from ..config import KnowledgeBase
from ..errors import BadRequest, KbError, NotFound
from . import store
from .store import DECISIONS, STAGES, Decision


class Blinded(KbError):
    """Screening is still blind: the others' decisions are not shown."""


def git_user(root: Path) -> str | None:
    """git config user.name in ``root``, or None."""
    try:
        out = subprocess.run(["git", "config", "user.name"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def unblinded_path(kb: KnowledgeBase) -> Path:
    return store.screening_dir(kb) / "unblinded.yaml"


def is_blind(kb: KnowledgeBase) -> bool:
    return not unblinded_path(kb).is_file()


def unblind(kb: KnowledgeBase, reviewer: str) -> dict:
    """Lift blinding for everyone (a file in git: every reviewer's copy sees it once merged)."""
    reviewer = store.check_reviewer(reviewer)
    if not is_blind(kb):
        return yamlio.load_plain(unblinded_path(kb).read_text(encoding="utf-8")) or {}
    data = {"unblinded": store.now(), "by": reviewer}
    yamlio.write_new(unblinded_path(kb), yamlio.dump(data))
    return data


def require_unblinded(kb: KnowledgeBase, what: str) -> None:
    if is_blind(kb):
        raise Blinded(f"screening is blind: {what} would show the other reviewers' decisions",
                      hint="when every reviewer has finished, run `kb screen unblind` (it is recorded in "
                           "screening/unblinded.yaml)")


def reason_of(kb: KnowledgeBase, reason: str | None) -> str | None:
    """A reason from the list, by number (1-based) or by its text (any case); None stays None."""
    if reason is None:
        return None
    reasons = kb.exclusion_reasons
    text = " ".join(str(reason).split())
    if text.isdigit() and 1 <= int(text) <= len(reasons):
        return reasons[int(text) - 1]
    for r in reasons:
        if r.lower() == text.lower():
            return r
    raise BadRequest(f"{reason!r} is not an exclusion reason of this knowledge base",
                     hint="reasons (by number or text): " + "; ".join(f"{i} {r}" for i, r in enumerate(reasons, 1))
                          + " (kb.yaml's screening: {exclusion_reasons: [...]} sets them)")


# -- status ---------------------------------------------------------------------------------------


@dataclass
class KeyStage:
    """Everything decided about one reference at one stage."""

    key: str
    stage: str
    votes: dict[str, Decision] = field(default_factory=dict)  # reviewer -> standing decision
    resolution: Decision | None = None

    @property
    def conflict(self) -> bool:
        if self.resolution is not None:
            return False
        return is_conflict(self.stage, list(self.votes.values()))

    @property
    def outcome(self) -> str:
        """'unscreened', 'conflict', or the stage's result: at title/abstract 'full-text' (include or
        maybe) or 'excluded'; at full text 'included' or 'excluded'."""
        if self.resolution is not None:
            d = self.resolution.decision
        elif not self.votes:
            return "unscreened"
        elif self.conflict:
            return "conflict"
        else:
            ds = {v.decision for v in self.votes.values()}
            d = "exclude" if ds == {"exclude"} else "include"
        if self.stage == "title-abstract":
            return "excluded" if d == "exclude" else "full-text"
        return "excluded" if d == "exclude" else "included"

    @property
    def reason(self) -> str | None:
        """The exclusion reason (full text): the resolution's, or the reviewers' shared one."""
        if self.resolution is not None:
            return self.resolution.reason
        reasons = {v.reason for v in self.votes.values() if v.decision == "exclude"}
        return reasons.pop() if len(reasons) == 1 else None


def is_conflict(stage: str, votes: list[Decision]) -> bool:
    ds = {v.decision for v in votes}
    if "exclude" in ds and "include" in ds:
        return True
    if stage == "title-abstract" and "exclude" in ds and "maybe" in ds:
        return True
    if stage == "full-text":
        reasons = {v.reason for v in votes if v.decision == "exclude"}
        if len(reasons) > 1:
            return True
    return False


@dataclass
class State:
    refs: dict[str, store.ScreeningRef]
    decisions: store.Decisions
    stages: dict[tuple[str, str], KeyStage]  # (key, stage) -> what was decided

    @property
    def reviewers(self) -> list[str]:
        return sorted({r for ks in self.stages.values() for r in ks.votes})

    def at(self, key: str, stage: str) -> KeyStage:
        return self.stages.get((key, stage)) or KeyStage(key, stage)


def load_state(kb: KnowledgeBase) -> State:
    refs = store.read_references(kb)
    decisions = store.read_decisions(kb)
    return State(refs, decisions, stages_of(decisions.lines))


def stages_of(lines: list[Decision]) -> dict[tuple[str, str], KeyStage]:
    """(key, stage) -> what was decided, from the decision lines in order."""
    stages: dict[tuple[str, str], KeyStage] = {}
    for (reviewer, key, stage), d in store.iter_effective(lines):
        stages.setdefault((key, stage), KeyStage(key, stage)).votes[reviewer] = d
    resolutions: dict[tuple[str, str], list[Decision]] = {}
    for d in lines:
        if d.resolves:
            stack = resolutions.setdefault((d.key, d.stage), [])
            if d.decision == store.UNDO:
                if stack:
                    stack.pop()
            else:
                stack.append(d)
    for k, stack in resolutions.items():
        if stack:
            stages.setdefault(k, KeyStage(*k)).resolution = stack[-1]
    return stages


# -- deciding ------------------------------------------------------------------------------------


@dataclass
class Decided:
    decision: Decision
    path: Path  # the reviewer's file
    outcome: str  # the reference's outcome at the stage now (what the reviewer may see: blind -> their own)
    draft: Path | None = None  # the draft record a full-text include became
    draft_note: str | None = None  # why no draft was written (already a study, no year ...)
    state: State | None = None  # the state with this decision in it (for the next one)


def decide(kb: KnowledgeBase, key: str, decision: str, *, reviewer: str, stage: str = "title-abstract",
           reason: str | None = None, resolves: bool = False, when: str | None = None,
           today: _dt.date | None = None, state: State | None = None) -> Decided:
    """Record one decision (one flushed line in the reviewer's file); see the module docstring.
    ``state``: the screening files as already read (a session passes it; it must be current)."""
    reviewer = store.check_reviewer(reviewer)
    if stage not in STAGES:
        raise BadRequest(f"unknown stage {stage!r}", hint="stages: " + ", ".join(STAGES))
    allowed = DECISIONS[stage] + (store.UNDO,)
    if decision not in allowed:
        raise BadRequest(f"{decision!r} is not a {stage} decision", hint=f"{stage}: " + ", ".join(allowed))
    state = state or load_state(kb)
    path = store.reviewer_file(kb, reviewer)
    others = sorted(r for r, f in state.decisions.owners.items() if f == path.name and r != reviewer)
    if others:
        raise BadRequest(f"{path.name} holds the decisions of reviewer {others[0]!r}, not {reviewer!r}",
                         hint=f"if you are {others[0]}, pass --reviewer {others[0]!r}; two people need two names "
                              "that differ in more than case and punctuation")
    if key not in state.refs:
        raise NotFound(f"no reference with key {key!r} in the screening set",
                       hint="keys are doi:..., pmid:... or t:...; kb screen list shows them")
    reason = reason_of(kb, reason)
    if reason and decision != "exclude":
        raise BadRequest("a reason goes with exclude only", hint="leave out --reason")
    if stage == "full-text" and decision == "exclude" and not reason:
        raise BadRequest("an exclusion at full text needs a reason",
                         hint="--reason N or TEXT; reasons: " + "; ".join(
                             f"{i} {r}" for i, r in enumerate(kb.exclusion_reasons, 1)))
    if stage == "full-text" and decision != store.UNDO:
        ta = state.at(key, "title-abstract")
        if ta.outcome != "full-text":
            raise BadRequest(f"{key} is not at full text (title/abstract: {ta.outcome})",
                             hint="a reference goes to full text when included or marked maybe at title/abstract"
                                  + (" and its conflict is resolved" if ta.outcome == "conflict" else ""))
    if resolves:
        require_unblinded(kb, "resolving a conflict")
        if not state.at(key, stage).conflict and decision != store.UNDO:
            raise BadRequest(f"{key} has no conflict at {stage} to resolve",
                             hint="kb screen conflicts lists them")
    d = Decision(key, stage, decision, reviewer, when or store.now(), reason, resolves)
    path = store.append_decision(kb, d)
    state.decisions.lines.append(d)
    state.stages = stages_of(state.decisions.lines)
    ks = state.at(key, stage)
    outcome = ks.outcome if not is_blind(kb) else _own_outcome(ks, reviewer)
    done = Decided(d, path, outcome, state=state)
    if stage == "full-text" and ks.outcome == "included":
        done.draft, done.draft_note = promote(kb, state.refs[key], today=today)
    return done


def _own_outcome(ks: KeyStage, reviewer: str) -> str:
    mine = KeyStage(ks.key, ks.stage, {reviewer: ks.votes[reviewer]} if reviewer in ks.votes else {})
    return mine.outcome


def promote(kb: KnowledgeBase, ref: store.ScreeningRef, today: _dt.date | None = None) -> tuple[Path | None, str | None]:
    """A reference included at full text becomes a draft study record (kb import --as-draft's writer),
    its notes naming its screening key and search. Not written when it duplicates a record in
    studies/ (returned with a note) or lacks a field a record needs."""
    from ..importer import ConditionSuggester, build_draft, entry_of_ref, known_records
    from ..records import record_data
    from ..scaffold import make_id
    from ..validate import record_files

    today = today or _dt.date.today()
    reference = store.as_reference(ref.data)
    studies = record_files([kb.studies_dir]) if kb.studies_dir.is_dir() else []
    index, taken, _ = known_records(studies)
    match = index.match(entry_of_ref(reference, ref.key))
    if match:
        return None, f"already in studies/ as {match.entry.label} ({match.reason})"
    if reference.year is None:
        return None, ("no draft written: the reference has no year; add the study with kb new "
                      f"(its screening key is {ref.key})")
    from ..importer import draft_data

    log = {s["id"]: s for s in store.read_log(kb).searches}
    search = log.get(ref.search, {})
    origin = (f"screening key {ref.key}, search {ref.search}"
              + (f" ({search.get('database')}, file {search.get('file')})" if search.get("file") else "")
              + ", included at full text")
    study_id = make_id(reference.authors[0] if reference.authors else "", reference.year, taken)
    data = draft_data(reference, study_id, suggest=ConditionSuggester(kb.vocab), origin=origin, today=today)
    try:
        study, _ = build_draft(data, kb.vocab)
    except ValueError as e:
        return None, f"no draft written: {e}"
    path = kb.studies_dir / f"{study_id}.yaml"
    yamlio.write_new(path, yamlio.dump(record_data(study)))
    return path, None


# -- what a reviewer sees -------------------------------------------------------------------------


@dataclass
class Progress:
    total: int
    screened: int
    included: int  # include or maybe at title/abstract (the reviewer's own)
    excluded: int

    @property
    def left(self) -> int:
        return self.total - self.screened


def progress(state: State, reviewer: str, stage: str = "title-abstract") -> Progress:
    mine = [ks.votes[reviewer] for ks in state.stages.values() if ks.stage == stage and reviewer in ks.votes
            and ks.key in state.refs]
    if stage == "title-abstract":
        total = len(state.refs)
    else:
        total = sum(1 for k in state.refs if state.at(k, "title-abstract").outcome == "full-text")
    inc = sum(1 for d in mine if d.decision in ("include", "maybe"))
    return Progress(total, len(mine), inc, len(mine) - inc)


def queue(state: State, reviewer: str, stage: str = "title-abstract") -> list[str]:
    """The references the reviewer has still to screen at ``stage``, in import order."""
    out = []
    for key in state.refs:
        if reviewer in state.at(key, stage).votes:
            continue
        if stage == "full-text" and state.at(key, "title-abstract").outcome != "full-text":
            continue
        out.append(key)
    return out


def conflicts(kb: KnowledgeBase, state: State | None = None) -> list[KeyStage]:
    require_unblinded(kb, "conflicts")
    state = state or load_state(kb)
    return [ks for (key, stage), ks in sorted(state.stages.items(), key=lambda kv: (STAGES.index(kv[0][1]),))
            if ks.conflict and key in state.refs]


# -- agreement ----------------------------------------------------------------------------------


@dataclass
class Agreement:
    stage: str
    reviewers: tuple[str, str]
    n: int
    categories: tuple[str, ...]
    table: list[list[int]]  # rows: the first reviewer's decision, columns: the second's
    observed: float | None  # raw agreement
    expected: float | None
    kappa: float | None
    se: float | None
    ci: tuple[float, float] | None
    pabak: float | None
    note: str | None = None

    def as_dict(self) -> dict:
        return {"stage": self.stage, "reviewers": list(self.reviewers), "n": self.n,
                "categories": list(self.categories), "table": self.table, "raw_agreement": self.observed,
                "expected_agreement": self.expected, "kappa": self.kappa, "kappa_se": self.se,
                "kappa_ci95": list(self.ci) if self.ci else None, "pabak": self.pabak, "note": self.note,
                "ci_method": CI_METHOD}


CI_METHOD = ("95% CI: kappa ± 1.96 SE (cut at -1 and 1), with the large-sample SE of Fleiss, Cohen and Everitt (1969); "
             "PABAK = (k·po − 1)/(k − 1) over the stage's k decisions (Byrt, Bishop and Carlin 1993 for k = 2)")


def cohen_kappa(table: list[list[int]]) -> tuple[float, float, float | None, float | None]:
    """(po, pe, kappa, se) of a square table of counts; kappa and se are None when pe is 1 (both
    reviewers used one and the same category: kappa is not defined)."""
    k = len(table)
    n = sum(map(sum, table))
    p = [[c / n for c in row] for row in table]
    rows = [sum(p[i]) for i in range(k)]
    cols = [sum(p[i][j] for i in range(k)) for j in range(k)]
    po = sum(p[i][i] for i in range(k))
    pe = sum(rows[i] * cols[i] for i in range(k))
    if pe >= 1 - 1e-12:
        return po, pe, None, None
    kappa = (po - pe) / (1 - pe)
    a = sum(p[i][i] * (1 - (rows[i] + cols[i]) * (1 - kappa)) ** 2 for i in range(k))
    b = (1 - kappa) ** 2 * sum(p[i][j] * (cols[i] + rows[j]) ** 2 for i in range(k) for j in range(k) if i != j)
    c = (kappa - pe * (1 - kappa)) ** 2
    var = max(a + b - c, 0.0) / (n * (1 - pe) ** 2)
    return po, pe, kappa, math.sqrt(var)


def agreement(kb: KnowledgeBase, state: State | None = None) -> list[Agreement]:
    """Per stage and pair of reviewers, over the references both screened (resolutions left out)."""
    require_unblinded(kb, "agreement")
    state = state or load_state(kb)
    out: list[Agreement] = []
    reviewers = state.reviewers
    for stage in STAGES:
        cats = DECISIONS[stage]
        for i, a in enumerate(reviewers):
            for b in reviewers[i + 1:]:
                table = [[0] * len(cats) for _ in cats]
                n = 0
                for (key, st), ks in state.stages.items():
                    if st != stage or key not in state.refs or a not in ks.votes or b not in ks.votes:
                        continue
                    table[cats.index(ks.votes[a].decision)][cats.index(ks.votes[b].decision)] += 1
                    n += 1
                if n == 0:
                    continue
                po, pe, kappa, se = cohen_kappa(table)
                # kappa lies in [-1, 1]: a Wald interval that runs past either end is cut there
                ci = (max(-1.0, kappa - 1.96 * se), min(1.0, kappa + 1.96 * se)) \
                    if kappa is not None and se is not None else None
                k = len(cats)
                out.append(Agreement(stage, (a, b), n, cats, table, po, pe, kappa, se, ci, (k * po - 1) / (k - 1),
                                     None if kappa is not None else
                                     "kappa is not defined: both reviewers made one and the same decision throughout"))
    return out
