"""What changed in the evidence between git commits: ``kb changes`` and the "Since commit" section of
the site's changes page.

The evidence of a commit is its ``studies/``, ``summaries/`` and ``kb.yaml``, read from git's object
store (``git ls-tree`` and ``git cat-file``: the working tree and the index are never touched) and
pooled exactly as the site pools it: a digest per record (:func:`kb.site.studies.digest`), then
:func:`kb.site.analyses.run_analyses` and :func:`kb.site.analyses.snapshot`. A record that is the same
in the commit as in the working tree is not parsed again: its working-tree digest is used (when the
commit's kb.yaml gives the same analysis protocol and vocabulary, which is all a digest depends on
besides the record). Two snapshots are compared by :func:`kb.site.analyses.diff_snapshots`, as the
changes page compares two builds.

The comparison point, unless one is asked for, is the previous commit that changed the evidence
(:func:`default_base`): of the commits that changed studies/, summaries/ or kb.yaml, the one before
the latest. What changed since is then the latest such commit's work, and any uncommitted work on
top of it (``kb changes --since HEAD`` shows the uncommitted work alone). Whether the working tree
has uncommitted changes never moves the comparison point, so that a draft record, which is not
evidence, changes nothing on the changes page.

Each side is pooled by this version of kb: a change to kb's own code or vocabulary is not what this
compares (the site's cache of a commit's snapshot is keyed by kb's version too).
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

from .. import __version__
from ..config import CONFIG_NAME, STUDIES_DIR, KnowledgeBase, open_kb
from ..errors import BadRequest, KbError, NotFound, RecordError
from ..load import load_summaries
from ..validate import RECORD_SUFFIXES, check_files, record_files
from . import analyses, state
from .studies import digest

EVIDENCE = (STUDIES_DIR, "summaries", CONFIG_NAME)  # what a commit's evidence is made of
HISTORY_VERSION = "1"  # bump when a snapshot of the same commit would come out differently
LOG_HINT = "`git log --oneline -- studies` lists the commits that changed the records"

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Commit:
    sha: str
    short: str
    date: str  # the committer date, YYYY-MM-DD
    subject: str

    def as_dict(self) -> dict:
        return {"commit": self.sha, "short": self.short, "date": self.date, "subject": self.subject}


@dataclass
class Evidence:
    """The evidence of one side of a comparison, pooled."""

    snapshot: dict  # kb.site.analyses.snapshot: id -> SHA-1 of the record, result key -> estimate
    digests: dict[str, dict]  # studies-relative path -> digest (every record without errors, drafts too)
    left_out: int  # record files with errors (left out, as a build leaves them out)

    def labels(self) -> dict[str, str]:
        """id -> "Feder 2014"."""
        return {d["id"]: d["label"] for d in self.digests.values()}


# -- git -----------------------------------------------------------------------------------


def _git(root: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess | None:
    """git run in ``root`` (so that paths are relative to the knowledge base); None if git is not installed."""
    try:
        return subprocess.run(["git", "-C", str(root), *args], input=stdin, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None


def _out(res: subprocess.CompletedProcess | None) -> str | None:
    return res.stdout.decode("utf-8", "replace").strip() if res is not None and res.returncode == 0 else None


def in_git(root: Path) -> bool:
    """Whether ``root`` is inside a git working tree."""
    return _out(_git(root, "rev-parse", "--is-inside-work-tree")) == "true"


def require_git(root: Path) -> None:
    if not in_git(root):
        raise BadRequest(f"{root} is not in a git repository (or git is not installed), so there are no commits "
                         "to compare with",
                         hint="commit the knowledge base with git (`git init`, `git add`, `git commit`); the site's "
                              "changes page compares builds without git")


def commit_info(root: Path, rev: str) -> Commit | None:
    text = _out(_git(root, "log", "-1", "--no-show-signature", "--format=%H%x00%h%x00%cs%x00%s", rev, "--"))
    if not text:
        return None
    sha, short, date, subject = (text.split("\0") + ["", "", "", ""])[:4]
    return Commit(sha, short, date, subject)


def resolve(root: Path, rev: str) -> Commit:
    """The commit ``rev`` names (a sha, a branch, a tag, HEAD~2 ...); an unknown one is a usage error."""
    if not rev or rev.startswith("-") or any(c in rev for c in "\0\n"):
        raise BadRequest(f"'{rev}' is not a revision", hint=LOG_HINT)
    sha = _out(_git(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"))
    info = commit_info(root, sha) if sha else None
    if info is None:
        raise BadRequest(f"unknown revision '{rev}' in the git repository of {root}", hint=LOG_HINT)
    return info


def evidence_dirty(root: Path) -> bool:
    """Whether studies/, summaries/ or kb.yaml have changes not committed (new files too)."""
    return bool(_out(_git(root, "--no-optional-locks", "status", "--porcelain", "--", *EVIDENCE)))


def default_base(root: Path) -> Commit | None:
    """The previous commit that changed the evidence (see the module's docstring); None when there is none."""
    log = _out(_git(root, "log", "-2", "--format=%H", "--", *EVIDENCE))
    shas = log.split() if log else []
    return commit_info(root, shas[1]) if len(shas) > 1 else None


def site_base(root: Path) -> tuple[Commit | None, str | None]:
    """What the changes page compares the build with: (commit, None), or (None, why not): "not-git" or
    "no-earlier"."""
    if not in_git(root):
        return None, "not-git"
    base = default_base(root)
    return (base, None) if base else (None, "no-earlier")


def _tree(root: Path, commit: Commit) -> list[tuple[str, str]]:
    """(path relative to the knowledge base, blob id) of the evidence files of ``commit``."""
    res = _git(root, "ls-tree", "-r", "-z", commit.sha, "--", *EVIDENCE)
    if res is None or res.returncode != 0:
        raise KbError(f"git could not list the files of commit {commit.short}",
                      hint=(res.stderr.decode("utf-8", "replace").strip() if res is not None else "is git installed?"))
    out = []
    for entry in res.stdout.split(b"\0"):
        if not entry:
            continue
        meta, _, path = entry.partition(b"\t")
        mode, kind, oid = meta.decode().split()
        rel = path.decode("utf-8", "surrogateescape")
        parts = PurePosixPath(rel).parts
        if kind != "blob" or mode == "120000" or ".." in parts or rel.startswith("/"):
            continue  # submodules, symbolic links and anything that would leave the folder are not evidence
        out.append((rel, oid))
    return out


def _blobs(root: Path, oids: list[str]) -> list[bytes]:
    """The contents of git blobs, in one ``git cat-file --batch``."""
    if not oids:
        return []
    res = _git(root, "cat-file", "--batch", stdin=("\n".join(oids) + "\n").encode())
    if res is None or res.returncode != 0:
        raise KbError("git could not read the files of the commit", hint="is the repository complete (not shallow)?")
    data, pos, out = res.stdout, 0, []
    for oid in oids:
        end = data.index(b"\n", pos)
        header = data[pos:end].split()
        if len(header) < 3 or header[1] != b"blob":
            raise KbError(f"git could not read blob {oid}")
        size = int(header[2])
        out.append(data[end + 1:end + 1 + size])
        pos = end + 1 + size + 1
    return out


def _changed_since(root: Path, commit: Commit) -> set[str]:
    """The evidence files that differ between ``commit`` and the working tree (relative to the knowledge base)."""
    res = _git(root, "diff", "--no-renames", "--no-ext-diff", "--name-only", "-z", "--relative", commit.sha, "--",
               *EVIDENCE)
    if res is None or res.returncode != 0:
        return set()
    return {p.decode("utf-8", "surrogateescape") for p in res.stdout.split(b"\0") if p}


def _is_record(rel: str) -> bool:
    """A record file, as kb.files.scan and kb.validate.record_files find them: .yaml or .yml under studies/,
    no part of the path hidden."""
    parts = PurePosixPath(rel).parts
    return (len(parts) > 1 and parts[0] == STUDIES_DIR and rel.endswith(RECORD_SUFFIXES)
            and not any(p.startswith(".") for p in parts[1:]))


# -- pooling one side ----------------------------------------------------------------------------


def _digests(kb: KnowledgeBase, files: list[Path], progress: Progress | None, phase: str) -> tuple[dict, int]:
    """studies-relative path -> digest of the record files that have no errors; and how many have errors."""
    results = check_files(files, kb.vocab, base=kb.root,
                          progress=(lambda done, total: progress(phase, done, total)) if progress else None)
    out: dict[str, dict] = {}
    bad = 0
    for r in results:
        if r.study is None or any(p.severity == "error" for p in r.problems):
            bad += 1
            continue
        rel = Path(r.path).relative_to(kb.studies_dir).as_posix()
        out[rel] = digest(r.study, hashlib.sha1(Path(r.path).read_bytes()).hexdigest(), kb.protocol, kb.vocab)
    return out, bad


def _pool(kb: KnowledgeBase, digests: dict[str, dict], summaries: dict) -> dict:
    """The site's snapshot of these digests: the site's analyses, pooled as a build pools them (drafts
    are never pooled, and a build without --include-drafts leaves them out)."""
    site = analyses.Site(kb=kb, info=None, digests={d["id"]: d for _, d in sorted(digests.items()) if not d["draft"]},
                         summaries=summaries)
    analyses.run_analyses(site)
    return analyses.snapshot(site)


def working_tree(kb: KnowledgeBase, progress: Progress | None = None) -> Evidence:
    """The evidence as it is now in ``kb``'s folder."""
    files = record_files([kb.studies_dir]) if kb.studies_dir.is_dir() else []
    digests, bad = _digests(kb, files, progress, "reading the records")
    return Evidence(_pool(kb, digests, load_summaries(kb)), digests, bad)


def _same_digest_inputs(a: KnowledgeBase, b: KnowledgeBase) -> bool:
    """Whether a record's digest is the same under both: the protocol (time windows, classes ...) and the vocabulary."""
    def key(kb: KnowledgeBase) -> tuple:
        proto = {k: v for k, v in kb.protocol.as_dict().items() if k != "eligibility"}
        return proto, kb.vocab.as_dict()
    return key(a) == key(b)


def at_commit(kb: KnowledgeBase, commit: Commit, now: dict[str, dict] | None = None,
              progress: Progress | None = None) -> Evidence:
    """The evidence of ``kb`` at ``commit``, pooled by this kb. ``now``: the working tree's digests
    (studies-relative path -> digest of every record without errors), reused for the records the
    commit has unchanged."""
    tree = _tree(kb.root, commit)
    changed = _changed_since(kb.root, commit) if now is not None else set()
    config = [(rel, oid) for rel, oid in tree if rel == CONFIG_NAME or rel.startswith("summaries/")]
    records = [(rel, oid) for rel, oid in tree if _is_record(rel)]
    phase = f"reading the records of {commit.short}"
    with tempfile.TemporaryDirectory(prefix="kb-commit-") as tmp:
        folder = Path(tmp)
        (folder / STUDIES_DIR).mkdir()
        _write(kb.root, folder, config)
        try:
            then = open_kb(folder, search_parents=False)
        except KbError as e:
            message = e.message.replace(str(folder.resolve()) + "/", "").replace(str(folder) + "/", "")
            raise KbError(f"the knowledge base at commit {commit.short} cannot be read by this kb: {message}",
                          hint=e.hint) from None
        digests: dict[str, dict] = {}
        todo, had_errors = records, 0
        if now is not None and _same_digest_inputs(kb, then):
            todo = []
            for rel, oid in records:
                srel = rel[len(STUDIES_DIR) + 1:]
                if rel in changed:
                    todo.append((rel, oid))
                elif srel in now:
                    digests[srel] = now[srel]
                else:
                    had_errors += 1  # the same file as now, which has errors: it had them then
        if progress:
            progress(phase, 0, len(todo))
        _write(kb.root, folder, todo)
        parsed, bad = _digests(then, [then.root / rel for rel, _ in todo], progress, phase)
        digests.update(parsed)
        try:
            summaries = load_summaries(then)
        except RecordError:
            summaries = {}  # a summary the commit got wrong changes no estimate: it only overrides a certainty
        if progress:
            progress(f"pooling the records of {commit.short}", 0, 1)
        return Evidence(_pool(then, digests, summaries), digests, bad + had_errors)


def _write(root: Path, folder: Path, items: list[tuple[str, str]], chunk: int = 2000) -> None:
    """The blobs ``items`` ((path, blob id)) written under ``folder``, a few thousand at a time."""
    for i in range(0, len(items), chunk):
        part = items[i:i + chunk]
        for (rel, _), data in zip(part, _blobs(root, [oid for _, oid in part])):
            target = folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


# -- kb changes ------------------------------------------------------------------------------------


def result_label(kb: KnowledgeBase, key: str) -> str:
    """A result's key ("depression/response/24h/inert-placebo") as the changes page names it:
    "Depression: response, about 24 h, vs inert placebo (saline)"."""
    parts = key.split("/")
    vocab, proto = kb.vocab, kb.protocol
    text = f"{vocab.label('condition', parts[0])}: {vocab.label('outcome', parts[1]).lower()}" if len(parts) > 1 else key
    if len(parts) > 2:
        w = proto.window(parts[2])
        text += f", {w.label if w else parts[2]}"
    if len(parts) > 3:
        k = proto.comparator_class(parts[3])
        text += f", vs {k.label if k else vocab.label('comparator', parts[3]).lower()}"
    return text


def changes_since(kb: KnowledgeBase, since: str | None = None, progress: Progress | None = None) -> dict:
    """``kb changes``: the pooled estimates of ``kb`` at commit ``since`` (default: :func:`default_base`)
    and in the working tree, and what differs: studies added, changed and removed, estimates that
    moved (before and after: measure, estimate, CI, k), results new and gone."""
    root = kb.root
    require_git(root)
    if since is not None:
        base = resolve(root, since)
    else:
        base = default_base(root)
        if base is None:
            raise NotFound("no earlier commit changed studies/, summaries/ or kb.yaml: nothing to compare with",
                           hint=LOG_HINT + "; --since REV compares with any commit")
    now = working_tree(kb, progress)
    then = at_commit(kb, base, now.digests, progress)
    diff = analyses.diff_snapshots(then.snapshot, now.snapshot)
    labels = {**then.labels(), **now.labels()}
    head = commit_info(root, "HEAD")

    def studies(ids: list[str]) -> list[dict]:
        return [{"id": i, "label": labels.get(i, i)} for i in ids]

    def estimate(pair: dict) -> dict:
        return {k: pair[k] for k in ("measure", "estimate", "ci_low", "ci_high", "k")}

    return {
        "since": base.as_dict(),
        "now": {"commit": head.sha if head else None, "short": head.short if head else None,
                "uncommitted_changes": evidence_dirty(root)},
        "studies": {"added": studies(diff["added"]), "changed": studies(diff["changed"]),
                    "removed": studies(diff["removed"])},
        "moved": [{"key": m["key"], "label": result_label(kb, m["key"]), "before": estimate(m["before"]),
                   "after": estimate(m["after"])} for m in diff["moved"]],
        "new_results": [{"key": k, "label": result_label(kb, k), "estimate": estimate(now.snapshot["pooled"][k])}
                        for k in diff["new_pooled"]],
        "gone_results": [{"key": k, "label": result_label(kb, k), "estimate": estimate(then.snapshot["pooled"][k])}
                         for k in diff["gone_pooled"]],
        "left_out": {"since": then.left_out, "now": now.left_out},
    }


# -- the site's changes page -----------------------------------------------------------------------


def cache_key() -> str:
    """What a cached snapshot of a commit depends on beyond the commit: this kb (its version, the site's
    and this module's versions, and its own vocabulary)."""
    from importlib import resources

    vocab = resources.files("kb").joinpath("data/vocabulary.yaml").read_bytes()
    return f"{HISTORY_VERSION}|{state.SITE_VERSION}|{__version__}|{hashlib.sha1(vocab).hexdigest()}"


def since_commit(kb: KnowledgeBase, snap: dict, digests: dict[str, dict], folder: Path,
                 base: Commit | None, why_not: str | None, refresh: bool = False) -> dict:
    """The changes page's "Since commit" section: the build's snapshot ``snap`` compared with the one of
    ``base`` (:func:`site_base`), which is cached in the build's state ``folder`` by commit, so that only
    the first build after a new commit pools it (``refresh``: pool it again). ``digests``: the build's
    (studies-relative path -> digest), reused for the records the commit has unchanged."""
    if base is None:
        return {"available": False, "reason": why_not}
    key = cache_key()
    then = None if refresh else state.load_commit_snapshot(folder, base.sha, key)
    if then is None:
        try:
            then = at_commit(kb, base, digests).snapshot
        except KbError:  # e.g. the commit's kb.yaml has a key this kb does not know: the build goes on
            return {"available": False, "reason": "unreadable", **base.as_dict()}
        state.save_commit_snapshot(folder, base.sha, key, then)
    return {"available": True, **base.as_dict(), **analyses.diff_snapshots(then, snap)}
