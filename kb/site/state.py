"""What a build leaves under ``.kb/site/<out-hash>/`` for the next one, and the keys it is checked by.

- ``stamps.marshal``: each record file's size, mtime, SHA-1 and page (``rel -> (size, mtime_ns, sha1, page)``);
- ``digests.marshal``: each record's digest (:func:`kb.site.studies.digest`), plain data;
- ``meta.json``: the key of everything else a page depends on: the build id (the output folder's
  manifest names the same one), the theme key (templates, kb.yaml, vocabulary, kb version), the
  summaries key, the build information, the commit the changes page compares with, the pages
  written, the ids pages may link to, and the problems of the records left out;
- ``commits/<sha>.json``: the pooled estimates of an earlier commit (:mod:`kb.site.history`), so that
  only the first build after a new commit pools that commit's records.

The build information (date, commit) is here too: it is part of that key, and of every page that spans studies.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import __version__
from ..config import KnowledgeBase, searched_up_to
from ..errors import BadRequest
from ..files import read_marshal, write_marshal
from ..templating import default_templates_dir
from ..validate import Problem

SITE_VERSION = "6"  # 2: digests say whether the study is a draft; 3: rows per time window and comparator class;
# 4: an outcome's own condition (si-response: suicidal-ideation) takes studies whatever their main condition;
# 5: digests carry each outcome's own numbers (entry_texts) for bottom lines, and the comparison page's facts
#    (reported results, pooled-in links, rows for other comparators)
# 6: rows carry the whole risk-of-bias assessment (rob_detail), for the risk-of-bias pictures


# -- build information ------------------------------------------------------------------


@dataclass
class SiteInfo:
    """What the methods page, the feed and the footer of aggregate pages say about this build."""

    base_url: str | None
    date: str  # ISO 8601, UTC
    date_source: str  # SOURCE_DATE_EPOCH | git commit | latest record
    commit: str | None
    dirty: bool
    kb_version: str = __version__
    protocol_changed: str | None = None  # "2026-12-06 (abc1234)": the last commit that changed the protocol


def _git(root: Path, *args: str) -> str | None:
    try:
        res = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


BASE_URL = re.compile(r"^(?:https?://[A-Za-z0-9.-]+(?::\d+)?(?:/[^\s\"'<>`\\]*)?|/[^\s\"'<>`\\]*)$")


def check_base_url(url: str, where: str) -> None:
    """A site's base URL becomes every absolute link (404 page, feed): only an http(s) URL or a path
    starting with / is accepted, never javascript:, data: or a relative path."""
    if not BASE_URL.match(url) or url.startswith("//"):
        raise BadRequest(f"{where} {url!r} is not an http(s) URL or a path starting with /",
                         hint="e.g. --base-url https://evidence.example.org/ or --base-url /ketamine/")


def build_info(kb: KnowledgeBase, base_url: str | None, latest: str | None) -> SiteInfo:
    """The build date: SOURCE_DATE_EPOCH, else the git commit's date, else the latest record date,
    so that building the same inputs twice gives the same bytes."""
    commit = _git(kb.root, "rev-parse", "HEAD")
    dirty = False
    if commit:
        status = _git(kb.root, "status", "--porcelain", "--", "studies", "summaries", "comparisons", "kb.yaml",
                      "templates")
        dirty = bool(status)
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        try:
            when = _dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc)
        except (ValueError, OverflowError, OSError):
            raise BadRequest(f"SOURCE_DATE_EPOCH={epoch!r} is not a Unix time in seconds") from None
        source = "SOURCE_DATE_EPOCH"
    elif commit and (stamp := _git(kb.root, "log", "-1", "--format=%ct")):
        when, source = _dt.datetime.fromtimestamp(int(stamp), _dt.timezone.utc), "git commit"
    else:
        day = _dt.date.fromisoformat(latest) if latest else _dt.date(1970, 1, 1)
        when, source = _dt.datetime(day.year, day.month, day.day, tzinfo=_dt.timezone.utc), "latest record date"
    url = base_url if base_url is not None else kb.base_url
    if url:
        check_base_url(url, "--base-url" if base_url is not None else "kb.yaml base_url")
    if url and not url.endswith("/"):
        url += "/"
    changed = _git(kb.root, "log", "-1", "--format=%cs (%h)", "--", "kb.yaml", "docs/protocol.md") if commit else None
    return SiteInfo(url, when.strftime("%Y-%m-%dT%H:%M:%SZ"), source, commit, dirty, protocol_changed=changed or None)


# -- the keys a build is checked by ------------------------------------------------------


def theme_key(kb: KnowledgeBase) -> str:
    """The key of what every page depends on beyond its record: the site and kb versions, kb.yaml's title,
    description and language, the vocabulary, the analysis protocol (a study's rows depend on its time
    windows and comparator classes), when the evidence was last searched (every page says it), and
    every template (kb's and the knowledge base's own)."""
    h = hashlib.sha1()
    h.update(f"{SITE_VERSION}|{__version__}|{kb.title}|{kb.description}|{kb.language}".encode())
    h.update(json.dumps(kb.vocab.as_dict(), sort_keys=True).encode())
    h.update(json.dumps(kb.protocol.as_dict(), sort_keys=True, default=str).encode())
    searched = searched_up_to(kb)  # every page says when the evidence was last searched
    h.update(json.dumps(searched.as_dict() if searched else None, sort_keys=True).encode())
    for folder in (default_templates_dir(), kb.templates_dir):
        if folder.is_dir():
            for p in sorted(folder.rglob("*")):
                if p.is_file():
                    h.update(str(p.relative_to(folder)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def summaries_key(kb: KnowledgeBase) -> str:
    """The key of the reviewers' files the pages that span studies show: the condition summaries
    (summaries/*.yaml) and the notes on published reviews (comparisons/*.yaml)."""
    from ..load import comparisons_dir, summaries_dir

    h = hashlib.sha1()
    for folder in (summaries_dir(kb), comparisons_dir(kb)):
        h.update(folder.name.encode() + b"\0")
        if folder.is_dir():
            for p in sorted(folder.glob("*.y*ml")):
                h.update(p.name.encode() + b"\0" + p.read_bytes())
    # the screening files the methods page's PRISMA diagram is drawn from: the search log and decisions
    # by content, the references (written once, never rewritten) by name and size
    screening = kb.root / "screening"
    for p in [kb.root / "searches.yaml", *sorted(screening.glob("*.yaml")), *sorted(screening.glob("decisions/*"))]:
        if p.is_file():
            h.update(str(p.relative_to(kb.root)).encode() + b"\0" + p.read_bytes())
    for p in sorted(screening.glob("references/*")):
        h.update(p.name.encode() + b"\0" + str(p.stat().st_size).encode())
    return h.hexdigest()


def state_dir(kb: KnowledgeBase, out: Path) -> Path:
    """``.kb/site/<out-hash>/``: one folder of state per output folder."""
    return kb.state_dir / "site" / hashlib.sha1(str(out).encode()).hexdigest()[:12]


# -- reading and writing the state -------------------------------------------------------


def read_json(path: Path) -> dict | None:
    """A JSON file's content, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_meta(folder: Path) -> dict:
    """The last build's ``meta.json`` ({} when there is none, or it is unreadable)."""
    return read_json(folder / "meta.json") or {}


def forget(folder: Path) -> None:
    """Drop ``meta.json``: from here on pages change, and an interrupted build must not leave state
    that vouches for them (the next build is then a full one)."""
    (folder / "meta.json").unlink(missing_ok=True)


def load_stamps(folder: Path) -> dict | None:
    """rel -> (size, mtime_ns, sha1, page) as the last build left them; None when missing or unreadable."""
    try:
        stamps = read_marshal(folder / "stamps.marshal")
    except (OSError, EOFError, ValueError, TypeError):
        return None
    return stamps if isinstance(stamps, dict) else None


def load_digests(folder: Path) -> dict | None:
    """rel -> digest as the last build left them (our own cache: plain data only); None when missing or unreadable."""
    try:
        return read_marshal(folder / "digests.marshal")
    except (OSError, EOFError, ValueError, TypeError):
        return None


def save(folder: Path, digests: dict, stamps: dict, meta: dict) -> None:
    """Remember this build: the digests, the stamps, then ``meta.json``, which vouches for both."""
    folder.mkdir(parents=True, exist_ok=True)
    write_marshal(folder / "digests.marshal", digests)
    write_marshal(folder / "stamps.marshal", stamps)
    (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")


def problems_by_file(problems: list[Problem]) -> dict[str, list[list]]:
    """studies-relative path -> its problems as plain lists (remembered for the next build's report)."""
    out: dict[str, list[list]] = {}
    for p in problems:
        rel = p.file[len("studies/"):] if p.file.startswith("studies/") else p.file
        out.setdefault(rel, []).append(list(asdict(p).values()))
    return out


COMMITS_KEPT = 4  # snapshots of earlier commits kept (the newest by use)


def load_commit_snapshot(folder: Path, sha: str, key: str) -> dict | None:
    """The snapshot of commit ``sha`` a build saved, if it was made with the same ``key`` (kb's version)."""
    data = read_json(folder / "commits" / f"{sha}.json")
    if not isinstance(data, dict) or data.get("key") != key or not isinstance(data.get("snapshot"), dict):
        return None
    os.utime(folder / "commits" / f"{sha}.json")  # in use: kept longest
    return data["snapshot"]


def save_commit_snapshot(folder: Path, sha: str, key: str, snapshot: dict) -> None:
    """Remember the snapshot of commit ``sha``; only the few used last are kept."""
    commits = folder / "commits"
    commits.mkdir(parents=True, exist_ok=True)
    tmp = commits / f".{sha}.json.tmp"
    tmp.write_text(json.dumps({"key": key, "commit": sha, "snapshot": snapshot}, sort_keys=True), encoding="utf-8")
    os.replace(tmp, commits / f"{sha}.json")
    kept = sorted(commits.glob("*.json"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for old in kept[COMMITS_KEPT:]:
        old.unlink(missing_ok=True)
