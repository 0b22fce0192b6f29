"""``kb screen`` in the terminal: one reference at a time, single keys, reasons by number, undo.

The loop is here, with its input and output passed in (``getkey`` returns one key, ``show`` prints
text), so that the CLI only wires it to the terminal and tests drive it with any input. Each
decision is appended and flushed (:func:`kb.screening.decide.decide`) before the next reference is
shown. Before each decision the screening files are looked at again: if the screening set or the
reviewer's file changed on disk (another import, another window, a git pull), the session says so and
reloads; nothing recorded is lost, because nothing is ever rewritten.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..config import KnowledgeBase
from ..terminal import safe
from . import store
from .decide import decide, load_state, progress, queue

KEYS = {"i": "include", "e": "exclude", "m": "maybe"}
HELP = {"title-abstract": "[i]nclude  [e]xclude  [m]aybe  [u]ndo  [s]kip  [q]uit",
        "full-text": "[i]nclude  [e]xclude (with a reason)  [u]ndo  [s]kip  [q]uit"}


def vocabulary_pattern(kb: KnowledgeBase) -> re.Pattern | None:
    """One regex of every vocabulary term, label and synonym (3+ characters), longest first, whole words."""
    words: set[str] = set()
    for terms in kb.vocab.categories.values():
        for t in terms.values():
            for w in (t.term, t.label, *t.synonyms):
                w = (w or "").replace("-", " ").strip()
                if len(w) >= 3:
                    words.add(w)
    if not words:
        return None
    alts = sorted(words, key=len, reverse=True)
    return re.compile(r"(?<!\w)(" + "|".join(re.escape(w).replace(r"\ ", r"[\s-]") for w in alts) + r")(?!\w)",
                      re.IGNORECASE)


def highlight(text: str, pattern: re.Pattern | None, mark: Callable[[str], str]) -> str:
    return pattern.sub(lambda m: mark(m.group(0)), text) if pattern else text


def render(ref: store.ScreeningRef, *, pattern, mark, stage: str, counts: str, width: int = 88) -> str:
    """The screen for one reference: progress, title, authors, journal and year, keywords, abstract, keys."""
    d = ref.data

    def para(label: str, text: str) -> list[str]:
        wrapped = textwrap.fill(safe(text), width=width, initial_indent=label, subsequent_indent=" " * len(label))
        return [highlight(wrapped, pattern, mark)]

    out = [counts, "-" * min(width, 88)]
    out += para("", ref.title)
    authors = d.get("authors") or []
    by = ", ".join(authors[:6]) + (" et al." if len(authors) > 6 or d.get("authors_truncated") else "")
    out.append(safe(by or "(no authors)"))
    out.append(safe(" ".join(str(x) for x in (d.get("journal") or "(no journal)", d.get("year") or "(no year)"))))
    if d.get("keywords"):
        out += para("Keywords: ", "; ".join(d["keywords"]))
    out.append("")
    out += para("", d.get("abstract") or "(no abstract)")
    out.append("")
    out.append(f"{ref.key}   [{stage}]")
    out.append(HELP[stage])
    return "\n".join(out)


def _signature(kb: KnowledgeBase, reviewer: str) -> tuple:
    paths = sorted(store.references_dir(kb).glob("*.jsonl")) if store.references_dir(kb).is_dir() else []
    paths.append(store.reviewer_file(kb, reviewer))
    out = []
    for p in paths:
        try:
            st = p.stat()
            out.append((p.name, st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            out.append((p.name, None, None))
    return tuple(out)


@dataclass
class SessionResult:
    decided: int = 0
    undone: int = 0
    reloads: int = 0
    finished: bool = False  # nothing left to screen


def run(kb: KnowledgeBase, reviewer: str, *, stage: str, getkey: Callable[[], str], show: Callable[[str], None],
        mark: Callable[[str], str] = lambda w: f"*{w}*", width: int = 88) -> SessionResult:
    """Screen until the queue is empty or the reviewer quits (q, or end of input)."""
    pattern = vocabulary_pattern(kb)
    reasons = kb.exclusion_reasons
    result = SessionResult()
    history: list[str] = []  # keys decided in this session, for undo
    skipped: set[str] = set()
    state = load_state(kb)
    sig = _signature(kb, reviewer)
    for p in state.decisions.problems:
        show(f"warning: {p}")

    def counts() -> str:
        pr = progress(state, reviewer, stage)
        return (f"{reviewer} · {stage}: screened {pr.screened:,} · included {pr.included:,} · "
                f"excluded {pr.excluded:,} · left {pr.left:,} of {pr.total:,}")

    def read_key() -> str:
        try:
            k = getkey()
        except (EOFError, KeyboardInterrupt):
            return "q"
        return (k or "q")[:1].lower() if k not in ("\r", "\n") else "\n"

    while True:
        todo = [k for k in queue(state, reviewer, stage) if k not in skipped]
        if not todo:
            show(counts())
            show("nothing left to screen at this stage" + (" (skipped ones: run kb screen again)" if skipped else ""))
            result.finished = not skipped
            return result
        ref = state.refs[todo[0]]
        show(render(ref, pattern=pattern, mark=mark, stage=stage, counts=counts(), width=width))
        key = read_key()
        if key == "q":
            show(counts())
            return result
        if key == "s":
            skipped.add(ref.key)
            continue
        if key == "u":
            if not history:
                show("nothing to undo in this session")
                continue
            last = history.pop()
            now = _signature(kb, reviewer)
            if now != sig:
                state = load_state(kb)
            state = decide(kb, last, "undo", reviewer=reviewer, stage=stage, state=state).state
            result.undone += 1
            skipped.discard(last)
            sig = _signature(kb, reviewer)
            show(f"undone: {last}")
            continue
        if key not in KEYS or (stage == "full-text" and key == "m"):
            show(f"unknown key {key!r}: " + HELP[stage])
            continue
        decision, reason = KEYS[key], None
        if decision == "exclude":
            show("reason: " + "  ".join(f"[{i}] {r}" for i, r in enumerate(reasons, 1))
                 + ("  [Enter] none" if stage == "title-abstract" else "") + "  [c]ancel")
            while True:
                rk = read_key()
                if rk == "c" or rk == "q":
                    reason = "cancel"
                    break
                if rk == "\n" and stage == "title-abstract":
                    break
                if rk.isdigit() and 1 <= int(rk) <= len(reasons):
                    reason = rk
                    break
                show(f"press a number 1-{len(reasons)}" + (", Enter" if stage == "title-abstract" else "") + " or c")
            if reason == "cancel":
                continue
        now = _signature(kb, reviewer)
        if now != sig:  # changed under us: reload, and show the (possibly different) next reference again
            state = load_state(kb)
            sig = now
            result.reloads += 1
            show("the screening files changed on disk (another import or window, or a git pull); reloaded, "
                 "nothing was lost")
            if reviewer in state.at(ref.key, stage).votes or ref.key not in state.refs:
                continue
        done = decide(kb, ref.key, decision, reviewer=reviewer, stage=stage, reason=reason, state=state)
        history.append(ref.key)
        result.decided += 1
        show(f"{decision}{' (' + done.decision.reason + ')' if done.decision.reason else ''}: {ref.key}"
             + (f"; draft record written: {done.draft}" if done.draft else ""))
        state = done.state
        sig = _signature(kb, reviewer)
