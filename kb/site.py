"""The static evidence site: ``kb build``.

Data flows one way: record files -> (parsed where they changed, on all cores) per-study pages and a
small *digest* of each study -> pooled analyses per condition and outcome (computed from the rows
of :func:`kb.synthesis.select_one`, never stored) -> the pages that span studies.

Incremental builds. ``.kb/site/<out-hash>/`` keeps what the last build saw: each record file's size,
mtime and SHA-1 (``stamps.marshal``), the digests (``digests.marshal``) and the key of everything
else a page depends on (``meta.json``). A record is parsed again only when its content changed; a
page is written only when its bytes differ from the last build's. A changed template, kb.yaml,
vocabulary or kb version rebuilds every page. The output folder holds ``.kb-build.json``: content
hashes only, so the same inputs give a byte-identical folder.

Every text from a record goes through Jinja's autoescaping; links are relative, so the folder
works from ``file://``, a sub-path or a domain; ``--base-url`` makes the feed and sitemap absolute.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import hashlib
import json
import marshal
import os
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from markupsafe import Markup

from . import __version__
from . import synthesis as S
from .citations import to_bibtex, to_ris
from .config import KnowledgeBase
from .errors import BadRequest, KbError
from .stats import year_band
from .export import FILE_NAMES, FORMATS, SplitError, assemble, fragments, split
from .index import _scan, gc_paused
from .templating import default_templates_dir, make_env
from .records import label_from_id
from .sources import CLASSES, SourceInfo, outcome_sources, source_info
from .validate import Problem, check_file
from .yamlio import MAX_BYTES

SITE_VERSION = "4"  # 2: digests say whether the study is a draft; 3: rows per time window and comparator class;
# 4: an outcome's own condition (si-response: suicidal-ideation) takes studies whatever their main condition
MANIFEST = ".kb-build.json"
PARALLEL_THRESHOLD = 300
AGGREGATE_PARALLEL = 3000  # studies above which condition and outcome pages are rendered on all cores
FOREST_MAX_K = 80  # larger analyses are summarised, not drawn
LOO_MAX_K = 40  # leave-one-out (sensitivity) up to this many studies
LIST_MAX = 200  # long lists on the changes page are cut here, with a count
SEPARATORS = {"json": "\n", "csv": "\n", "bibtex": "\n\n", "ris": "\n\n"}  # fragments have no blank line
SITEMAP_MAX = 50_000  # URLs per sitemap file (the protocol's limit)
REGISTRY_URLS = {
    "ClinicalTrials.gov": "https://clinicaltrials.gov/study/{}",
    "ISRCTN": "https://www.isrctn.com/{}",
    "ANZCTR": "https://www.anzctr.org.au/Trial/Registration/TrialReview.aspx?ACTRN={}",
    "EudraCT": "https://www.clinicaltrialsregister.eu/ctr-search/search?query={}",
    "DRKS": "https://drks.de/search/en/trial/{}",
}


class SiteError(KbError):
    """The site cannot be built (exit 1)."""


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


def _git(root: Path, *args: str) -> str | None:
    try:
        res = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def build_info(kb: KnowledgeBase, base_url: str | None, latest: str | None) -> SiteInfo:
    """The build date: SOURCE_DATE_EPOCH, else the git commit's date, else the latest record date,
    so that building the same inputs twice gives the same bytes."""
    commit = _git(kb.root, "rev-parse", "HEAD")
    dirty = False
    if commit:
        status = _git(kb.root, "status", "--porcelain", "--", "studies", "summaries", "kb.yaml", "templates")
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
    if url and not url.endswith("/"):
        url += "/"
    return SiteInfo(url, when.strftime("%Y-%m-%dT%H:%M:%SZ"), source, commit, dirty)


# -- per-study work (runs in worker processes for big builds) --------------------------


def study_links(s) -> list[dict]:
    """DOI, PubMed, PMC and registry links of a record."""
    from .records import registry_of

    links = []
    if s.doi:
        links.append({"label": f"DOI {s.doi}", "url": f"https://doi.org/{s.doi}"})
    if s.pmid:
        links.append({"label": f"PubMed {s.pmid}", "url": f"https://pubmed.ncbi.nlm.nih.gov/{s.pmid}/"})
    if s.pmcid:
        links.append({"label": f"PubMed Central {s.pmcid}", "url": f"https://www.ncbi.nlm.nih.gov/pmc/articles/{s.pmcid}/"})
    for r in s.registrations:
        pattern = REGISTRY_URLS.get(registry_of(r) or "")
        links.append({"label": f"{registry_of(r) or 'Registry'} {r}", "url": pattern.format(r) if pattern else None})
    return links


def study_rows(s, outcomes: list[str], protocol=None, vocab=None) -> list[tuple[str, str, list[dict], list[dict]]]:
    """(condition, outcome, rows, entries left out) for every pair the study can feed, with the site's
    analysis options (kb meta's defaults): a row per time window and comparator class; ``outcomes``:
    the study's, sorted."""
    out = []
    proto = protocol or S.DEFAULT_PROTOCOL
    for cond in dict.fromkeys(s.condition_terms):
        for outcome in outcomes:
            req = S.MetaRequest(outcome=outcome, condition=cond, protocol=proto, outcome_condition=(
                vocab.meaning("outcome", outcome).get("condition") if vocab is not None else None))
            seen, rows, excluded = S.select_one(s, req)
            if seen:
                out.append((cond, outcome, [dict(vars(r)) for r in rows], [dict(vars(e)) for e in excluded]))
    return out


def digest(s, sha1: str, protocol=None, vocab=None) -> dict:
    """What the pages that span studies need of one study: plain data (dicts, lists, tuples, text,
    numbers), cheap to send between processes and to cache with marshal."""
    iv = s.intervention
    outcomes = sorted({o.outcome for o in s.outcomes})
    return {
        "id": s.id, "sha1": sha1, "title": s.title, "label": s.label, "year": s.year,
        "design": s.design, "n": s.n, "conditions": s.condition_terms, "topics": list(s.topics),
        "retracted": s.retracted, "draft": not s.is_evidence, "added": s.added.isoformat(),
        "updated": s.updated.isoformat() if s.updated else None, "key_finding": s.key_finding,
        "drug": iv.drug if iv else None, "route": iv.route if iv else None,
        "dose": list(iv.dose_mg_per_kg) if iv and iv.dose_mg_per_kg else [],
        "infusion_minutes": iv.infusion_minutes if iv else None, "infusions": iv.infusions if iv else None,
        "schedule": iv.schedule if iv else None,
        "ae": list(s.adverse_events.events) if s.adverse_events else [],
        "ae_summary": s.adverse_events.summary if s.adverse_events else None,
        "durability": s.durability.summary if s.durability else None,
        "relapse": s.durability.relapse if s.durability else None,
        "outcomes": outcomes,
        "data_outcomes": sorted({o.outcome for o in s.outcomes if o.data is not None}),
        "related": [r.id for r in s.related], "rows": study_rows(s, outcomes, protocol, vocab), "page": f"studies/{s.id}.html",
    }


def study_context(s, d: dict, vocab, known_ids: set[str] | frozenset | dict, frags: dict | None = None,
                  label_of: Callable[[str], str | None] | None = None) -> dict:
    """Everything study.html needs beyond the record: links, citations, the analyses it feeds, each
    source's class and the outcomes whose numbers rest only on weak sources.
    ``frags`` are the study's download fragments, when already made (their BibTeX and RIS are reused);
    ``label_of`` gives a related record's label ("Feder 2014") from its id."""
    fed = {(c, o): [(r["window"], r["cls"]) for r in rows] for c, o, rows, _ in d["rows"] if rows}
    feeds = [(c, o, w, k) for c in _order(vocab, "condition", (c for c, _ in fed))
             for o in sorted(o for cc, o in fed if cc == c) for w, k in fed[(c, o)]]
    return {
        "study": s, "root": "../", "links": study_links(s),
        "bibtex": frags["bibtex"] if frags else to_bibtex([s]).rstrip("\n"),
        "ris": frags["ris"] if frags else to_ris([s]).rstrip("\n"),
        "related": [{"id": r.id, "relation": r.relation, "present": r.id in known_ids,
                     "label": (label_of(r.id) if label_of and r.id in known_ids else None) or label_from_id(r.id)}
                    for r in s.related],
        "feeds": [{"condition": c, "outcome": o, "slug": "-".join(x for x in (c, o, w, k) if x),
                   "window": w, "cls": k} for c, o, w, k in feeds],
        "sources": [source_view(i, vocab) for i in map(source_info, s.sources)],
        "weak": [weak_sources(o, s.sources, vocab) for o in s.outcomes],
        # the page writes its condition, outcome and route filters beside their labels itself
        "filters": {"design": [vocab.label("design", s.design)], "year": [year_band(s.year)]},
    }


def source_view(info: SourceInfo, vocab) -> dict:
    """A source as the study page lists it: URL, class label, note, and whether it is weak."""
    return {"url": info.url, "cls": info.cls, "label": vocab.label("source_class", info.cls), "note": info.note,
            "bare_ip": info.bare_ip, "weak": info.weak}


def weak_sources(outcome, sources, vocab) -> str | None:
    """What an outcome's numbers rest on when every source of them is weak ("a press release", "a
    commercial or clinic site and a bare IP address"), else None: the study page's marker."""
    if outcome.data is None:
        return None
    infos = outcome_sources(outcome, sources)
    if not infos or not all(i.weak for i in infos):
        return None
    kinds = sorted({"bare-ip" if i.bare_ip else i.cls for i in infos},
                   key=lambda k: (k == "bare-ip", CLASSES.index(k) if k in CLASSES else 0))
    return " and ".join("a bare IP address" if k == "bare-ip" else "an " + vocab.label("source_class", k).lower()
                        if vocab.label("source_class", k)[:1].lower() in "aeiou"
                        else "a " + vocab.label("source_class", k).lower() for k in kinds)


def record_label(path: str | Path) -> str | None:
    """'Feder 2014' for the record file at ``path``, as Study.label gives it, read without full
    validation (None if unreadable)."""
    from . import yamlio
    from .records import label_from_id, surname

    try:
        data = yamlio.load(Path(path)).data
    except (yamlio.YamlProblem, OSError):
        return None
    authors, year = data.get("authors"), data.get("year")
    if isinstance(authors, list) and authors and isinstance(authors[0], str) and isinstance(year, int):
        return f"{surname(authors[0])} {year}"
    return label_from_id(Path(path).stem)


def template_helpers(site: "Site") -> dict:
    """Functions the pages that span studies may call: ``study_label(id)`` ("Feder 2014", for links and
    left-out lists that would otherwise show a record id) and ``public_reason(reason)`` (a left-out
    entry's reason without kb meta's options)."""
    digests, vocab = site.digests, site.vocab

    def study_label(rid: str) -> str:
        d = digests.get(rid)
        return d["label"] if d else label_from_id(rid)

    return {"study_label": study_label, "public_reason": lambda reason: public_reason(reason, vocab)}


@functools.lru_cache(maxsize=16384)  # reasons repeat across rows and pages
def public_reason(reason: str, vocab=None) -> str:
    """A left-out entry's reason (or a "nothing to pool" message) from kb.synthesis, as a clinician
    reads it: without the `kb meta` options that would include the entry, which kb meta prints for
    reviewers, and with vocabulary labels instead of terms."""
    text = reason
    m = re.match(r"^comparator (\S+) \(analyse it with --comparator \S+\)$", text)
    if m:
        label = vocab.label("comparator", m.group(1)) if vocab is not None else m.group(1)
        return f"compared with {label[:1].lower() + label[1:]}, not with a placebo control"
    lab = (lambda cat, t: vocab.label(cat, t)) if vocab is not None else (lambda cat, t: t)
    m = re.match(r"^no eligible study for \S+(?: for \S+)?: (\d+ (?:entry was|entries were) left out)$", text)
    if m:  # an analysis's message (kb.synthesis._nothing_message), as "Not pooled: ..." shows it
        return f"no study could be pooled; {m.group(1)}"
    m = re.match(r"^(\S+) is a secondary condition here \(primary: (\S+)\)", text)
    if m:
        return (f"{lab('condition', m.group(1))} is a secondary condition in this study, whose main condition is "
                f"{lab('condition', m.group(2)).lower()}")
    m = re.match(r"^route (\S+): not intravenous", text)
    if m:
        return f"not intravenous (route: {lab('route', m.group(1)).lower()})"
    text = re.sub(r"^marked pool: false \((.+)\)$", r"not pooled: \1", text)
    text = text.replace("marked pool: false", "not pooled")
    text = re.sub(r"outside --timepoint \S+", "outside the time window analysed", text)
    text = re.sub(r";\s*--[a-z][a-z-]* includes it", "", text)  # "...; --any-condition includes it"
    text = re.sub(r"\s*\((?:left out by |analyse it with )?--[a-z][a-z-]*(?: \S+)?(?: includes it)?\)", "", text)
    return text.strip()


_W: dict[str, Any] = {}


def _worker_init(kb: KnowledgeBase, out: str, known_ids: dict, spool: str | None, drafts: bool = False) -> None:
    _W.update(kb=kb, out=out, known=known_ids, spool=spool, drafts=drafts, env=make_env(kb), labels={})
    _W["tpl"] = _W["env"].get_template("study.html")
    _W["globals"] = {"kb": kb, "vocab": kb.vocab}


def listed(d: dict, drafts: bool) -> bool:
    """Whether the site shows the study: evidence always, a draft only in a preview (--include-drafts)."""
    return drafts or not d["draft"]
def _related_label(rid: str) -> str | None:
    """A related record's label, read from its file (known: id -> path under studies/), once per worker."""
    labels = _W["labels"]
    if rid not in labels:
        rel = _W["known"].get(rid)
        labels[rid] = record_label(_W["kb"].studies_dir / rel) if rel else None
    return labels[rid]


ROW_TEMPLATES = {"_study_row.html": "row_html", "_dosing_row.html": "dose_row_html"}


def has_dosing(d: dict) -> bool:
    """Whether a condition page's dosing table lists the study."""
    return bool(d["dose"] or d["infusions"] or d["schedule"])


def study_row_html(env, d: dict, vocab, template: str = "_study_row.html") -> str:
    """The study's row in a table of condition and outcome pages (both one folder deep): rendered
    once per study, where the record is parsed, and joined by every page that lists the study."""
    return env.get_template(template).render(d=d, vocab=vocab).strip("\n")


def _process(batch: tuple[int, list[tuple[str, str | None]]]) -> list[dict]:
    """Parse, check, render and write one batch of record files. Returns per file: stamp, sha1,
    digest (None with problems when the record has errors), page hash, and download fragments
    (in memory, or spooled to files named by the batch number for a full build)."""
    number, items = batch
    kb, out, tpl = _W["kb"], _W["out"], _W["tpl"]
    results = []
    spooled: dict[str, list[str]] = {f: [] for f in FORMATS}
    for rel, old_page_sha in items:
        path = kb.studies_dir / rel
        try:
            with open(path, "rb") as fh:
                st = os.fstat(fh.fileno())
                # read(MAX_BYTES + 1) alone would allocate (and map) a 1 MB buffer per record
                raw = fh.read(min(st.st_size, MAX_BYTES) + 1)
                if len(raw) > st.st_size and len(raw) <= MAX_BYTES:  # grew since the stat
                    raw += fh.read(MAX_BYTES + 1 - len(raw))
        except OSError as e:
            results.append({"rel": rel, "gone": True, "error": str(e)})
            continue
        sha1 = hashlib.sha1(raw).hexdigest()
        # an oversized file is checked from its path, so that the message gives its real size
        res = check_file(path, kb.vocab, f"studies/{rel}", raw=raw if st.st_size <= MAX_BYTES else None)
        errors = [p for p in res.problems if p.severity == "error"]
        item = {"rel": rel, "stamp": (st.st_size, st.st_mtime_ns), "sha1": sha1}
        if res.study is None or errors:
            item.update(digest=None, problems=errors)
            results.append(item)
            continue
        s = res.study
        d = digest(s, sha1, kb.protocol, kb.vocab)
        frags = fragments(s)
        d["page_sha"] = None  # a draft outside a preview has no page
        if listed(d, _W["drafts"]):
            html = tpl.render(**_W["globals"], **study_context(s, d, kb.vocab, _W["known"], frags, _related_label))
            data = html.encode("utf-8")
            page_sha = hashlib.sha1(data).hexdigest()
            target = os.path.join(out, d["page"])
            if not _unchanged(target, data, page_sha, old_page_sha):
                _write(target, data)
                item["written"] = True
            d["page_sha"] = page_sha
        d["row_html"] = study_row_html(_W["env"], d, kb.vocab)
        if has_dosing(d):  # the only studies a dosing table lists
            d["dose_row_html"] = study_row_html(_W["env"], d, kb.vocab, "_dosing_row.html")
        # the downloads hold the evidence only, in a preview too: a draft's fragments never enter them
        if _W["spool"]:
            if not d["draft"]:
                for f in FORMATS:
                    spooled[f].append(frags[f])
        else:
            item["fragments"] = None if d["draft"] else frags
        item["digest"] = d
        results.append(item)
    if _W["spool"]:
        for f in FORMATS:
            with open(os.path.join(_W["spool"], f"{number:07d}.{f}"), "w", encoding="utf-8") as fh:
                fh.write(SEPARATORS[f].join(spooled[f]))
    return results


def _unchanged(target: str, data: bytes, sha: str, known: str | None) -> bool:
    """Whether ``target`` already holds ``data``: by the last build's hash of it when known (and the file
    is there), else by reading the file back."""
    if known is None:
        return _same_bytes(target, data)
    return known == sha and os.path.exists(target)


def _same_bytes(target: str, data: bytes) -> bool:
    """Whether ``target`` already holds exactly ``data``. A full rebuild over an existing site (after
    an upgrade, or --full) then leaves unchanged pages alone: reading a page back costs less than
    truncating and rewriting it, and their dates stay as they were for rsync and static hosts."""
    try:
        with open(target, "rb") as fh:
            if os.fstat(fh.fileno()).st_size != len(data):
                return False
            return fh.read() == data
    except OSError:
        return False


def _write(target: str, data: bytes) -> None:
    try:
        with open(target, "wb") as fh:
            fh.write(data)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as fh:
            fh.write(data)


# -- the whole site ----------------------------------------------------------------------


@dataclass
class BuildReport:
    out: Path
    studies: int = 0  # the evidence (drafts are never counted)
    drafts: int = 0  # draft records: left out, or shown marked with include_drafts
    include_drafts: bool = False
    parsed: int = 0
    pages_written: int = 0
    pages_total: int = 0
    pages_removed: int = 0
    analyses: int = 0  # results shown (one per condition, outcome, time window and comparator class)
    pooled: int = 0  # of them, those pooled from two or more trials
    problems: list[Problem] = field(default_factory=list)
    full: bool = False
    up_to_date: bool = False
    search: str = "skipped"  # indexed | unchanged | skipped
    search_seconds: float | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase
    seconds: float = 0.0
    notices: list[str] = field(default_factory=list)

    @property
    def invalid(self) -> int:
        return len({p.file for p in self.problems})


@dataclass
class Site:
    """Everything the pages that span studies are made from."""

    kb: KnowledgeBase
    info: SiteInfo
    digests: dict[str, dict]  # id -> digest
    summaries: dict
    # (condition, outcome, window, comparator class) -> result or error; window and class are None for a
    # (condition, outcome) with data that nothing could be pooled from
    analyses: dict[tuple, dict] = field(default_factory=dict)
    changes: dict = field(default_factory=dict)
    _by: dict | None = field(default=None, repr=False)

    @property
    def vocab(self):
        return self.kb.vocab

    def studies(self, condition: str | None = None, outcome: str | None = None) -> list[dict]:
        """Studies in id order: all, or those of a condition, or those reporting an outcome."""
        if self._by is None:
            ordered = sorted(self.digests.values(), key=lambda d: d["id"])
            by: dict = {None: ordered}
            for d in ordered:
                for c in dict.fromkeys(d["conditions"]):
                    by.setdefault(("c", c), []).append(d)
                for o in d["outcomes"]:
                    by.setdefault(("o", o), []).append(d)
            self._by = by
        if condition:
            return self._by.get(("c", condition), [])
        if outcome:
            return self._by.get(("o", outcome), [])
        return self._by[None]

    def evidence(self) -> list[dict]:
        """The studies that count, in id order: all but a preview's drafts."""
        return [d for d in self.studies() if not d["draft"]]

    def conditions(self) -> list[str]:
        present = {c for d in self.digests.values() for c in d["conditions"]}
        return [c for c in self.vocab.terms("condition") if c in present]

    def outcomes(self) -> list[str]:
        present = {o for d in self.digests.values() for o in d["outcomes"]}
        return [o for o in self.vocab.terms("outcome") if o in present]


def _order(vocab, category: str, terms: Iterable[str]) -> list[str]:
    order = {t: i for i, t in enumerate(vocab.terms(category))}
    return sorted(set(terms), key=lambda t: (order.get(t, len(order)), t))


def run_analyses(site: Site) -> None:
    """Pool every (condition, outcome) pair some study has numbers for, with kb meta's defaults: one
    analysis per time window and comparator class (never pooled together)."""
    groups: dict[tuple[str, str], tuple[list, list]] = defaultdict(lambda: ([], []))
    with_data = set()
    proto = site.kb.protocol
    for d in sorted(site.digests.values(), key=lambda d: d["id"]):
        if not d["draft"]:  # a preview's drafts are listed as left out, and make no analysis of their own
            for cond, outcome in ((c, o) for c in d["conditions"] for o in d["data_outcomes"]):
                with_data.add((cond, outcome))
        for cond, outcome, rows, excluded in d["rows"]:
            found, out = groups[(cond, outcome)]
            found.extend(S.Row(**row) for row in rows)
            out.extend(S.Excluded(**e) for e in excluded)
    for key in sorted(with_data):
        cond, outcome = key
        rows, excluded = groups[key]
        pooled = False
        for window, cls in S.cells(rows, proto):
            cell = [r for r in rows if (r.window, r.cls) == (window, cls)]
            req = S.MetaRequest(outcome=outcome, condition=cond, measure=_site_measure(cell), protocol=proto)
            left = [x for x in excluded if x.concerns(window, cls)]
            try:
                result = S.analyse_rows(cell, left, req, site.summaries.get(cond), site.vocab, loo=len(cell) <= LOO_MAX_K)
                site.analyses[(cond, outcome, window, cls)] = {"ok": True, "result": result}
                pooled = True
            except KbError as e:
                site.analyses[(cond, outcome, window, cls)] = {"ok": False, "message": e.message, "hint": e.hint,
                                                               "excluded": [x.as_dict() for x in left]}
        if not pooled and not any(k[:2] == key for k in site.analyses):
            site.analyses[(cond, outcome, None, None)] = {
                "ok": False, "message": S._nothing_message(S.MetaRequest(outcome=outcome, condition=cond), excluded),
                "excluded": [x.as_dict() for x in excluded]}

    def _order_key(item):
        (c, o, w, k), _ = item
        return (c, o) + _cell_order(site, w, k)
    site.analyses = dict(sorted(site.analyses.items(), key=_order_key))


def _cell_order(site: Site, window: str | None, cls: str | None) -> tuple:
    proto = site.kb.protocol
    w = [x.id for x in proto.windows]
    c = [x.id for x in proto.classes] + [S.COMBINED.id]
    return (w.index(window) if window in w else len(w), c.index(cls) if cls in c else len(c), str(window), str(cls))


def analyses_of(site: Site, cond: str | None = None, outcome: str | None = None) -> list[tuple[tuple, dict]]:
    """The analyses of a condition, or of an outcome, in protocol order (windows, then classes)."""
    return [(k, a) for k, a in site.analyses.items()
            if (cond is None or k[0] == cond) and (outcome is None or k[1] == outcome)]


def _site_measure(rows: list) -> str | None:
    """kb meta's default measure, except that when studies report the same outcome both as events
    and as means, the site pools the larger group (RR or SMD) and lists the others as left out,
    where kb meta asks for --measure."""
    kinds = [r.kind for r in rows]
    binary, continuous = kinds.count("binary"), kinds.count("continuous")
    if binary and continuous:
        return "rr" if binary >= continuous else "smd"
    return None


def _fmt_pair(result: dict) -> dict:
    m, nat = result["measure"], result["natural"]
    return {"estimate": S.fmt(nat["estimate"], m), "ci_low": S.fmt(nat["ci_low"], m), "ci_high": S.fmt(nat["ci_high"], m),
            "k": result["k"], "measure": m}


def snapshot(site: Site) -> dict:
    """What the changes page compares between builds: the evidence and the pooled estimates (a preview's
    drafts are never reported as added, nor as removed by the next build)."""
    return {"studies": {i: d["sha1"] for i, d in sorted(site.digests.items()) if not d["draft"]},
            "pooled": {"/".join(x for x in k if x): _fmt_pair(a["result"]) for k, a in sorted(
                site.analyses.items(), key=lambda ka: [str(x) for x in ka[0]]) if a["ok"]}}


def compute_changes(prev: dict | None, snap: dict, info: SiteInfo) -> dict:
    """Studies added, changed or removed since the previous build, and pooled estimates that moved.
    A rebuild of the same inputs keeps the previous answer, so the page does not empty itself."""
    if prev and prev.get("snapshot") == snap and "changes" in prev:
        return prev["changes"]
    if not prev or "snapshot" not in prev:
        return {"first": True, "date": info.date, "added": sorted(snap["studies"]), "changed": [], "removed": [],
                "moved": [], "new_pooled": sorted(snap["pooled"]), "gone_pooled": []}
    before, after = prev["snapshot"]["studies"], snap["studies"]
    pb, pa = prev["snapshot"]["pooled"], snap["pooled"]
    moved = [{"key": k, "before": pb[k], "after": pa[k]} for k in sorted(set(pb) & set(pa)) if pb[k] != pa[k]]
    return {"first": False, "date": info.date, "since": prev.get("date"),
            "added": sorted(set(after) - set(before)), "removed": sorted(set(before) - set(after)),
            "changed": sorted(i for i in set(before) & set(after) if before[i] != after[i]),
            "moved": moved, "new_pooled": sorted(set(pa) - set(pb)), "gone_pooled": sorted(set(pb) - set(pa))}


# -- page contexts (unit-tested) ---------------------------------------------------------


def headline(site: Site, cond: str) -> dict | None:
    """What a condition's card and bottom line show: the first outcome, in vocabulary order, pooled from
    at least two trials in one time window and comparator class; else the first single-trial result,
    which the page says rests on one trial."""
    single = None
    for outcome in site.vocab.terms("outcome"):
        for (c, o, w, k), a in analyses_of(site, cond, outcome):
            if a["ok"]:
                if a["result"]["k"] >= 2:
                    return {"outcome": outcome, "result": a["result"], "pooled": True}
                single = single or {"outcome": outcome, "result": a["result"], "pooled": False}
    return single


def home_context(site: Site) -> dict:
    cards = []
    for cond in site.conditions():
        studies = site.studies(cond)
        summary = site.summaries.get(cond)
        evidence = [d for d in studies if not d["draft"]]
        cards.append({"condition": cond, "count": len(evidence), "drafts": len(studies) - len(evidence),
                      "primary": sum(d["conditions"][0] == cond for d in evidence),
                      "bottom_line": summary.bottom_line if summary else None, "headline": headline(site, cond)})
    latest = sorted(site.digests.values(), key=lambda d: (d["added"], d["id"]), reverse=True)[:10]
    evidence = site.evidence()
    return {"root": "", "cards": cards, "latest": latest, "total": len(evidence),
            "drafts": len(site.digests) - len(evidence), "retracted": sum(d["retracted"] for d in evidence)}


def _by_study(studies: list[dict], pick: Callable[[dict], Any]) -> list[dict]:
    return [d for d in studies if pick(d)]


def condition_context(site: Site, cond: str) -> dict:
    studies = site.studies(cond)
    summary = site.summaries.get(cond)
    rows = []
    for outcome in site.vocab.terms("outcome"):
        rows += _sof_group(site, analyses_of(site, cond, outcome))
    ae = []
    for term in _order(site.vocab, "adverse_event", [t for d in studies for t in d["ae"]]):
        reporting = [d for d in studies if term in d["ae"]]
        ae.append({"term": term, "studies": reporting})
    return {
        "root": "../", "condition": cond, "summary": summary, "studies": studies, "sof": rows, "controls": S.CONTROLS,
        "headline": headline(site, cond),
        "durability": _by_study(studies, lambda d: d["durability"] or d["relapse"]
                                or {"durability", "maintenance"} & set(d["topics"])),
        "dosing": _by_study(studies, has_dosing),
        "ae": ae, "ae_summaries": _by_study(studies, lambda d: d["ae_summary"]),
        "practice": _by_study(studies, lambda d: "practice-and-ethics" in d["topics"]
                              or d["design"] in ("guideline", "consensus-statement")),
        "primary_count": sum(d["conditions"][0] == cond and not d["draft"] for d in studies),
        "drafts": sum(d["draft"] for d in studies),
    }


def _sof_group(site: Site, analyses: list[tuple[tuple, dict]]) -> list[dict]:
    """The Summary of Findings rows of one condition and outcome (one per time window and comparator
    class). An entry left out of every one of them (a review, a retraction, a secondary condition) is
    listed once, under the last row (``shared_excluded``), not once per row; each row lists its own."""
    rows = [_sof_row(site, key, a) for key, a in analyses]
    if not rows:
        return rows
    shared = [e for e in rows[0]["excluded"] if e.get("window") is None and e.get("cls") is None]
    for row in rows:
        row["excluded"] = [e for e in row["excluded"] if e.get("window") is not None or e.get("cls") is not None]
    rows[-1]["shared_excluded"] = shared
    return rows


def _sof_row(site: Site, key: tuple, a: dict) -> dict:
    cond, outcome, window, cls = key
    slug = "-".join(x for x in (cond, outcome, window, cls) if x)
    row = {"condition": cond, "outcome": outcome, "ok": a["ok"], "slug": slug,
           "window": site.kb.protocol.window(window) if window else None,
           "cls": S._class_info(S.MetaRequest(protocol=site.kb.protocol), cls, site.vocab)}
    if not a["ok"]:
        row.update(message=a["message"], excluded=a["excluded"])
        return row
    r = a["result"]
    uid = f"forest-{slug}"
    row.update(result=r, pair=_fmt_pair(r), excluded=r["excluded"], uid=uid,
               draw=r["k"] <= FOREST_MAX_K, studies=r["studies"])
    return row


def outcome_context(site: Site, outcome: str) -> dict:
    rows = []
    for cond in site.vocab.terms("condition"):
        rows += _sof_group(site, analyses_of(site, cond, outcome))
    studies = site.studies(outcome=outcome)
    return {"root": "../", "outcome": outcome, "sof": rows, "studies": studies, "drafts": sum(d["draft"] for d in studies)}


SOF_CSV = "summary-of-findings.csv"
SOF_COLUMNS = ("condition", "outcome", "time_window", "comparator", "event", "k", "participants", "relative_effect",
               "comparator_per_1000", "ketamine_per_1000", "difference_per_1000", "nnt", "points", "certainty",
               "sentence")


def sof_table(site: Site) -> list[dict]:
    """Every pooled result as one flat Summary of Findings row (the downloadable CSV and HTML table)."""
    from .wording import per_1000_text

    out = []
    for (cond, outcome, window, cls), a in site.analyses.items():
        if not a["ok"]:
            continue
        r = a["result"]
        m, nat, pct = r["measure"], r["natural"], int(round(r["level"] * 100))
        ab = r.get("absolute") or {}
        p = ab.get("per_1000")
        out.append({
            "condition": site.vocab.label("condition", cond), "outcome": site.vocab.label("outcome", outcome),
            "time_window": r["window"]["label"] if r.get("window") else "",
            "comparator": r["comparator_class"]["label"] if r.get("comparator_class") else "",
            "event": r.get("definition") or "; ".join(dict.fromkeys(x["definition"] for x in r["studies"] if x.get("definition"))), "k": r["k"], "participants": r["participants"],
            "relative_effect": f"{r['measure_label']} {S.fmt(nat['estimate'], m)} ({pct}% CI {S.fmt(nat['ci_low'], m)} "
                               f"to {S.fmt(nat['ci_high'], m)})" + (" (one trial)" if r["k"] == 1 else ""),
            "comparator_per_1000": p["comparator"] if p else "",
            "ketamine_per_1000": f"{p['ketamine']} ({p['ketamine_ci_low']} to {p['ketamine_ci_high']})" if p else "",
            "difference_per_1000": f"{per_1000_text(p['difference'])} ({per_1000_text(p['difference_ci_low'])} to "
                                   f"{per_1000_text(p['difference_ci_high'])})" if p else "",
            "nnt": ab["nnt"]["text"] if ab.get("nnt") else "",
            "points": f"{ab['points']:+.1f} on the {ab['instrument']} ({ab['points_ci_low']:+.1f} to "
                      f"{ab['points_ci_high']:+.1f}); {ab['method']}" if ab.get("points") is not None and ab.get("instrument") else "",
            "certainty": r["certainty"]["level"].replace("-", " "), "sentence": r["sentence"],
        })
    return out


def sof_csv(rows: list[dict]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SOF_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def methods_context(site: Site) -> dict:
    from .effects import MEASURE_LABELS
    from .metaanalysis import METHOD_LABELS

    return {"root": "", "rules": S.RULES, "controls": S.CONTROLS, "measures": MEASURE_LABELS,
            "protocol": site.kb.protocol, "combined": S.COMBINED,
            "methods": METHOD_LABELS, "analyses": sum(a["ok"] for a in site.analyses.values()),
            "pooled": sum(a["ok"] and a["result"]["k"] > 1 for a in site.analyses.values()),
            "total": len(site.evidence()), "forest_max": FOREST_MAX_K, "loo_max": LOO_MAX_K}


# -- writing -----------------------------------------------------------------------------


class _Writer:
    """Writes a page only when its bytes differ from the last build's, and remembers every page."""

    def __init__(self, out: Path, previous: dict[str, str]):
        self.out, self.previous, self.pages, self.written = out, previous, {}, 0

    def put(self, rel: str, text: str | bytes) -> None:
        data = text.encode("utf-8") if isinstance(text, str) else text
        sha = hashlib.sha1(data).hexdigest()
        self.pages[rel] = sha
        target = self.out / rel
        if not _unchanged(str(target), data, sha, self.previous.get(rel)):
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
            self.written += 1


def _theme_key(kb: KnowledgeBase) -> str:
    h = hashlib.sha1()
    h.update(f"{SITE_VERSION}|{__version__}|{kb.title}|{kb.description}|{kb.language}".encode())
    h.update(json.dumps(kb.vocab.as_dict(), sort_keys=True).encode())
    for folder in (default_templates_dir(), kb.templates_dir):
        if folder.is_dir():
            for p in sorted(folder.rglob("*")):
                if p.is_file():
                    h.update(str(p.relative_to(folder)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def _summaries_key(kb: KnowledgeBase) -> str:
    from .store import summaries_dir

    h = hashlib.sha1()
    folder = summaries_dir(kb)
    if folder.is_dir():
        for p in sorted(folder.glob("*.y*ml")):
            h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def _state_dir(kb: KnowledgeBase, out: Path) -> Path:
    return kb.state_dir / "site" / hashlib.sha1(str(out).encode()).hexdigest()[:12]


def _check_out(kb: KnowledgeBase, out: Path) -> None:
    """Never write into a folder kb did not make, nor over the knowledge base itself."""
    root = kb.root.resolve()
    if out == root or root.is_relative_to(out) or out.is_relative_to(kb.studies_dir.resolve()):
        raise BadRequest(f"{out}: the site cannot be written over the knowledge base",
                         hint="choose another folder with --out, e.g. _site")
    if out.exists() and not out.is_dir():
        raise BadRequest(f"{out} is a file, not a folder", hint="choose another folder with --out")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).exists():
        raise BadRequest(f"{out} is not empty and was not built by kb: nothing was written",
                         hint="choose another folder with --out, or empty this one")


def _copy_assets(env_kb: KnowledgeBase, writer: _Writer) -> None:
    """templates/assets/* (the knowledge base's files override kb's, name by name)."""
    names: dict[str, Path] = {}
    for folder in (default_templates_dir() / "assets", env_kb.templates_dir / "assets"):
        if folder.is_dir():
            for p in sorted(folder.iterdir()):
                if p.is_file():
                    names[p.name] = p
    for name, p in sorted(names.items()):
        writer.put(f"assets/{name}", p.read_bytes())


def build_site(kb: KnowledgeBase, out: str | Path | None = None, *, base_url: str | None = None,
               jobs: int | None = None, search: bool = True, full: bool = False, strict: bool = False,
               include_drafts: bool = False, progress: Callable[[str, int, int], None] | None = None) -> BuildReport:
    """Build (or bring up to date) the static site of ``kb`` in ``out`` (default ``_site``). Drafts are
    left out, unless ``include_drafts`` (a preview): then their pages carry a DRAFT banner and the
    lists mark them, and they are still never pooled, downloaded, in the feed or on the changes page.

    The cyclic garbage collector is paused throughout: each full collection over 100k digests would
    cost seconds, and the build makes no garbage cycles to speak of (reading a record makes none)."""
    with gc_paused(), contextlib.ExitStack() as cleanup:  # forked workers inherit the pause
        return _build_site(kb, out, base_url=base_url, jobs=jobs, search=search, full=full, strict=strict,
                           drafts=include_drafts, progress=progress, cleanup=cleanup)


def _build_site(kb: KnowledgeBase, out: str | Path | None, *, base_url: str | None, jobs: int | None,
                search: bool, full: bool, strict: bool, drafts: bool, progress,
                cleanup: contextlib.ExitStack) -> BuildReport:
    t0 = time.perf_counter()
    out = Path(out if out is not None else kb.root / "_site").resolve()
    _check_out(kb, out)
    if not (out / MANIFEST).exists():
        # the folder is kb's from the first file on: a first build that is interrupted can be run again
        out.mkdir(parents=True, exist_ok=True)
        (out / MANIFEST).write_text(json.dumps({"kb_site": SITE_VERSION, "build": ""}) + "\n", encoding="utf-8")
    report = BuildReport(out=out)
    clock = [t0]

    def lap(phase: str) -> None:
        now = time.perf_counter()
        report.timings[phase] = round(report.timings.get(phase, 0) + now - clock[0], 3)
        clock[0] = now

    state_dir = _state_dir(kb, out)
    stamps_now = _scan(kb.studies_dir) if kb.studies_dir.is_dir() else {}
    prev_manifest = _read_json(out / MANIFEST)
    meta = _read_json(state_dir / "meta.json") or {}
    summaries_key = _summaries_key(kb)

    old_stamps: dict = {}
    state_ok = False  # the state left by the build that made this output folder
    if prev_manifest and prev_manifest.get("build") and meta.get("build") == prev_manifest.get("build") and not full:
        try:
            with open(state_dir / "stamps.marshal", "rb") as fh:
                old_stamps = marshal.loads(fh.read())  # marshal.load(fh) reads in small pieces: 3-5x slower
            state_ok = isinstance(old_stamps, dict)
        except (OSError, EOFError, ValueError, TypeError):
            old_stamps = {}
    # dates and the commit come from git or the records; cheap, and part of every aggregate page
    latest = meta.get("latest")
    info = build_info(kb, base_url, latest)
    theme = _theme_key(kb)
    same_theme = state_ok and meta.get("theme") == theme

    # drafts shown by the last build (--include-drafts) and not by this one, or the reverse
    drafts_toggled = meta.get("drafts", False) != drafts

    # 1. the no-change check: same files (size and mtime), templates, summaries, build information, drafts
    if (same_theme and meta.get("summaries") == summaries_key and meta.get("info") == asdict(info)
            and not drafts_toggled
            and {r: v[:2] for r, v in old_stamps.items()} == stamps_now
            and all(os.path.exists(out / p) for p in meta.get("pages", []))
            and all(os.path.exists(out / v[3]) for v in old_stamps.values() if v[3])
            and (not search or meta.get("search") == "indexed")):
        report.up_to_date, report.studies = True, meta.get("studies", 0)
        report.drafts, report.include_drafts = meta.get("draft_records", 0), drafts
        report.problems = [Problem(*p) for probs in meta.get("problems", {}).values() for p in probs]
        report.pages_total = len(meta.get("pages", [])) + sum(1 for v in old_stamps.values() if v[3])
        report.search = "unchanged" if search else "skipped"
        report.seconds = time.perf_counter() - t0
        return report

    lap("check")
    # from here on pages change: an interrupted build must not leave state that vouches for them
    (state_dir / "meta.json").unlink(missing_ok=True)
    jobs = jobs or os.cpu_count() or 1
    side = None
    if jobs > 1 and len(stamps_now) >= AGGREGATE_PARALLEL:
        # the process that will write the downloads, forked now, while this one is small: forked once
        # the digests are loaded or parsed, every page of them would be copied on write as pooling
        # touches them
        side = _Side()
        cleanup.callback(side.stop)
    # 2. what must be parsed again
    digests: dict[str, dict] = {}
    if same_theme:
        try:
            with open(state_dir / "digests.marshal", "rb") as fh:
                digests = marshal.loads(fh.read())  # rel -> digest (our own cache, written below; plain data only)
        except (OSError, EOFError, ValueError, TypeError):
            digests, old_stamps, same_theme = {}, {}, False
    report.full = not same_theme
    # the ids a study page may link to: not a draft left out (as far as the last build knew; checked
    # again once every record is parsed)
    known_ids = _known_ids(stamps_now, digests, drafts)
    known_before = set(meta.get("known", ()))
    todo: list[str] = []
    new_stamps: dict[str, tuple] = {}
    for rel, stamp in sorted(stamps_now.items(), key=lambda kv: (Path(kv[0]).stem, kv[0])):
        old = old_stamps.get(rel)
        d = digests.get(rel)
        if not same_theme or old is None or (old[3] and d is None) or (drafts_toggled and d is not None and d["draft"]):
            todo.append(rel)  # (a draft whose page comes or goes is rendered, or not, again)
            continue
        if tuple(old[:2]) != stamp:
            sha = hashlib.sha1((kb.studies_dir / rel).read_bytes()).hexdigest()
            if sha != old[2]:
                todo.append(rel)
                continue
        if d is not None and listed(d, drafts) and (not (out / d["page"]).exists()
                                                     or any((r in known_ids) != (r in known_before) for r in d["related"])):
            todo.append(rel)
            continue
        new_stamps[rel] = (*stamp, old[2], old[3])
    # a page whose related record changed is rendered again: it shows that record's label
    changed_ids = {Path(rel).stem for rel in todo}
    if changed_ids:
        queued = set(todo)
        for rel, d in digests.items():
            if rel not in queued and rel in stamps_now and changed_ids.intersection(d["related"]):
                todo.append(rel)
    for rel in set(digests) - set(stamps_now):
        del digests[rel]
    removed_pages = [v[3] for r, v in old_stamps.items() if r not in stamps_now and v[3]]

    lap("plan")
    # 3. parse, check, render and write the study pages that need it
    spool = None
    downloads_full = report.full or not all((out / "downloads" / FILE_NAMES[f]).exists() for f in FORMATS)
    if downloads_full:
        todo = sorted(stamps_now, key=lambda r: (Path(r).stem, r))  # the downloads need every record once
        new_stamps = {}
        spool = str(state_dir / "spool")
        shutil.rmtree(spool, ignore_errors=True)
        os.makedirs(spool, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "studies").mkdir(exist_ok=True)
    old_page_sha = {rel: digests[rel].get("page_sha") for rel in todo if rel in digests}
    results = _run(kb, out, todo, old_page_sha, known_ids, spool, jobs, progress, drafts)
    frags_changed: dict[str, dict | None] = {}

    def take(item: dict) -> None:
        rel = item["rel"]
        d = item["digest"]
        digests[rel] = d
        page = d["page"] if listed(d, drafts) else None
        if page is None:  # a draft left out: the page a preview wrote goes
            removed_pages.append(d["page"])
        new_stamps[rel] = (*item["stamp"], item["sha1"], page)
        report.pages_written += bool(item.get("written"))

    for item in results:
        rel = item["rel"]
        if item.get("gone"):
            digests.pop(rel, None)
            continue
        d = item["digest"]
        if d is None:
            report.problems.extend(item["problems"])
            old = digests.pop(rel, None)
            if old:
                removed_pages.append(old["page"])
                frags_changed[old["id"]] = None
            new_stamps[rel] = (*item["stamp"], item["sha1"], None)
            continue
        take(item)
        if "fragments" in item:
            frags_changed[d["id"]] = item["fragments"]
    # a record that became a draft, or stopped being one, changes which ids pages may link to: the
    # pages that link to it are rendered again (their download fragments do not change)
    known_now = _known_ids(stamps_now, digests, drafts)
    if known_now != known_ids:
        again = [rel for rel, d in sorted(digests.items()) if rel in new_stamps and listed(d, drafts)
                 and any((r in known_now) != (r in known_ids) for r in d["related"])]
        for item in _run(kb, out, again, {rel: digests[rel].get("page_sha") for rel in again}, known_now, None,
                         jobs, None, drafts):
            if not item.get("gone") and item["digest"] is not None:
                take(item)
        known_ids = known_now
    for rel, v in old_stamps.items():
        if rel not in stamps_now and v[3]:
            frags_changed[Path(v[3]).stem] = None
    parsed = {item["rel"] for item in results}
    for rel, probs in meta.get("problems", {}).items():  # still invalid, not parsed again: still listed
        if rel in new_stamps and rel not in parsed and new_stamps[rel][3] is None:
            report.problems.extend(Problem(*p) for p in probs)
    report.parsed = len(results)
    if strict and report.problems:
        raise SiteError(f"{report.invalid} record file(s) have errors: nothing published",
                        hint="run `kb validate`, or build without --strict to leave them out")

    # duplicate ids (two files, one id): the later file would overwrite the page; refuse
    by_id: dict[str, list[str]] = defaultdict(list)
    for rel, d in digests.items():
        by_id[d["id"]].append(rel)
    clashes = {i: rels for i, rels in by_id.items() if len(rels) > 1}
    if clashes:
        first = sorted(clashes.items())[0]
        raise SiteError(f"id '{first[0]}' is used by {', '.join('studies/' + r for r in first[1])}",
                        hint="run `kb validate`; every id must be unique")

    lap("studies")
    # 4. the analyses and the pages that span studies
    from .store import load_summaries

    site = Site(kb=kb, info=info, digests={d["id"]: d for d in digests.values() if listed(d, drafts)},
                summaries=load_summaries(kb))
    if progress:
        progress("pooling", 0, 1)
    lap("summaries")
    # the downloads (770 MB at 100k: reading the spooled fragments, hashing, writing) are written by a
    # forked process while this one pools and renders the other pages. A thread would not do: each of
    # its thousands of reads and writes waits for the GIL behind the pooling, which doubled both.
    previous_pages = (prev_manifest or {}).get("pages", {}) if not report.full else {}
    side_args = (str(out), spool, frags_changed, previous_pages)
    if side:
        side.start(side_args)
    run_analyses(site)
    lap("analyses")
    report.analyses = sum(a["ok"] for a in site.analyses.values())
    report.pooled = sum(a["ok"] and a["result"]["k"] > 1 for a in site.analyses.values())
    snap = snapshot(site)
    site.changes = compute_changes(prev_manifest, snap, info)
    latest_now = max((d["updated"] or d["added"] for d in site.evidence()), default=None)
    if latest_now != latest and info.date_source == "latest record date":
        info = build_info(kb, base_url, latest_now)
        site.info = info
    writer = _Writer(out, previous_pages)
    env = make_env(kb)
    from .wording import per_1000_text

    common = {"kb": kb, "vocab": kb.vocab, "info": info, "fmt": S.fmt, "per_1000_text": per_1000_text,
              **template_helpers(site)}
    write_aggregate_pages(site, env, common, writer, jobs, progress)
    lap("pages")
    side_pages, side_written = side.result() if side else _downloads_task(*side_args)
    writer.pages.update(side_pages)
    writer.written += side_written
    _copy_assets(kb, writer)
    for rel in removed_pages:
        try:
            (out / rel).unlink()
            report.pages_removed += 1
        except FileNotFoundError:
            pass
    stale = set((prev_manifest or {}).get("pages", {})) - set(writer.pages)
    for rel in sorted(stale):
        try:
            (out / rel).unlink()
            report.pages_removed += 1
        except FileNotFoundError:
            pass
    report.pages_written += writer.written
    report.studies = sum(not d["draft"] for d in site.digests.values())
    report.drafts = sum(d["draft"] for d in digests.values())
    report.include_drafts = drafts
    report.pages_total = len(writer.pages) + len(site.digests)

    lap("downloads")
    # 5. search index (Pagefind) when any page changed
    search_state = meta.get("search") if not report.full else None
    if search:
        if report.pages_written or report.pages_removed or search_state != "indexed" or not (out / "pagefind").is_dir():
            report.search_seconds = run_pagefind(out, progress)
            report.search = "indexed"
        else:
            report.search = "unchanged"
    elif (out / "pagefind").is_dir():
        report.notices.append("search index left as it was (--no-search); it may be out of date")

    lap("search")
    # 6. remember this build
    build_id = hashlib.sha1(json.dumps([snap, sorted(writer.pages.items()), theme], sort_keys=True).encode()).hexdigest()
    manifest = {"kb_site": SITE_VERSION, "build": build_id, "date": info.date, "snapshot": snap,
                "changes": site.changes, "pages": dict(sorted(writer.pages.items()))}
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "digests.marshal", "wb") as fh:
        marshal.dump(digests, fh)  # 4x faster than pickle for plain data
    with open(state_dir / "stamps.marshal", "wb") as fh:
        marshal.dump(new_stamps, fh)
    (state_dir / "meta.json").write_text(json.dumps({
        "build": build_id, "theme": theme, "summaries": summaries_key, "info": asdict(info),
        "latest": latest_now, "pages": sorted(writer.pages), "known": sorted(known_ids), "drafts": drafts,
        "studies": report.studies, "draft_records": report.drafts,
        "problems": _problems_by_file(report.problems),
        "search": report.search if report.search != "unchanged" else "indexed",
    }), encoding="utf-8")
    (out / MANIFEST).write_text(json.dumps(manifest, sort_keys=True, separators=(",", ":")) + "\n", encoding="utf-8")
    if spool:
        shutil.rmtree(spool, ignore_errors=True)
    if not info.base_url:
        report.notices.append("feed.xml and sitemap.xml use relative URLs; pass --base-url (or set base_url in "
                              "kb.yaml) for absolute ones")
    lap("state")
    report.seconds = time.perf_counter() - t0
    return report


def _problems_by_file(problems: list[Problem]) -> dict[str, list[list]]:
    """studies-relative path -> its problems as plain lists (remembered for the next build's report)."""
    out: dict[str, list[list]] = {}
    for p in problems:
        rel = p.file[len("studies/"):] if p.file.startswith("studies/") else p.file
        out.setdefault(rel, []).append(list(asdict(p).values()))
    return out


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _known_ids(stamps: dict, digests: dict, drafts: bool) -> dict[str, str]:
    """id -> path of the record files a study page may link to (and name by label): every one but the
    drafts left out (those the digests know of)."""
    return {Path(rel).stem: rel for rel in stamps if (d := digests.get(rel)) is None or listed(d, drafts)}


def _run(kb, out: Path, todo: list[str], old_page_sha: dict, known_ids, spool, jobs, progress,
         drafts: bool = False) -> list[dict]:
    """Process the record files in batches: in this process for a few, on all cores for many."""
    jobs = jobs or os.cpu_count() or 1
    size = 100 if len(todo) < 20_000 else 400
    batches = [(i, [(rel, old_page_sha.get(rel)) for rel in todo[j:j + size]])
               for i, j in enumerate(range(0, len(todo), size))]
    results: list[dict] = []
    if progress:
        progress("studies", 0, len(todo))
    if jobs <= 1 or len(todo) < PARALLEL_THRESHOLD:
        _worker_init(kb, str(out), known_ids, spool, drafts)
        for b in batches:
            results.extend(_process(b))
            if progress:
                progress("studies", len(results), len(todo))
        return results
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # jobs - 1 forked workers take the first batches; this process works through the rest meanwhile
    # (a parent that only waited would still compete for a core while unpickling results)
    split = len(batches) * (jobs - 1) // jobs
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    with ProcessPoolExecutor(max_workers=jobs - 1, mp_context=ctx, initializer=_worker_init,
                             initargs=(kb, str(out), known_ids, spool, drafts)) as pool:
        futures = [pool.submit(_process, b) for b in batches[:split]]
        _worker_init(kb, str(out), known_ids, spool, drafts)
        mine: list[dict] = []
        for b in batches[split:]:
            mine.extend(_process(b))
            if progress:
                progress("studies", len(mine) + sum(len(f.result()) for f in futures if f.done()), len(todo))
        for f in futures:
            results.extend(f.result())
            if progress:
                progress("studies", len(results) + len(mine), len(todo))
    results.extend(mine)
    return results


def _downloads_task(out: str, spool: str | None, changed: dict, previous: dict) -> tuple[dict, int]:
    """Write the downloads: their hashes, and how many files were written."""
    side = _Writer(Path(out), previous)
    _write_downloads(Path(out), side, spool, changed)
    return side.pages, side.written


def _side_main(conn) -> None:
    try:
        args = conn.recv()
    except (EOFError, KeyboardInterrupt):
        return
    if args is None:
        return
    try:
        conn.send(("ok", _downloads_task(*args)))
    except BaseException as e:  # noqa: BLE001 - handed to the parent, which raises it
        conn.send(("error", e))
    finally:
        conn.close()


class _Side:
    """A child process that runs _downloads_task when given its arguments. A plain forked Process
    and a pipe: no helper thread in this process, which forks workers after it."""

    def __init__(self):
        import multiprocessing as mp

        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        self.conn, child_end = ctx.Pipe()
        self.proc = ctx.Process(target=_side_main, args=(child_end,), name="kb-downloads", daemon=True)
        self.proc.start()
        child_end.close()
        self.done = False

    def start(self, args: tuple) -> None:
        self.conn.send(args)

    def result(self) -> tuple[dict, int]:
        try:
            status, value = self.conn.recv()
        except EOFError:
            self.proc.join()
            raise SiteError(f"writing the downloads failed (worker exit code {self.proc.exitcode})",
                            hint="run `kb build --full` again") from None
        self.done = True
        if status == "error":
            raise value
        return value

    def stop(self) -> None:
        if not self.done:
            try:
                self.conn.send(None)  # never started: let it end
            except OSError:
                pass
            self.proc.join(timeout=1)
            if self.proc.is_alive():
                self.proc.terminate()
        self.proc.join()
        self.conn.close()


def _write_downloads(out: Path, writer: _Writer, spool: str | None, changed: dict) -> None:
    """downloads/studies.{json,csv,bib,ris}: from the spooled fragments of a full pass (``spool``), or
    the previous files with the changed records' fragments replaced."""
    folder = out / "downloads"
    folder.mkdir(exist_ok=True)
    for f in FORMATS:
        name = f"downloads/{FILE_NAMES[f]}"
        if spool:
            _stream_download(out, writer, name, f, sorted(Path(spool).glob(f"*.{f}")))
            continue
        if not changed:
            writer.pages[name] = writer.previous.get(name) or _sha_file(out / name)
            continue
        try:
            frags = split(f, (out / name).read_text(encoding="utf-8"))
        except (OSError, SplitError, UnicodeDecodeError):
            raise SiteError(f"{out / name} was changed by hand or is damaged",
                            hint="rebuild everything with `kb build --full`") from None
        for i, fr in changed.items():
            if fr is None:
                frags.pop(i, None)
            else:
                frags[i] = fr[f]
        writer.put(name, assemble(f, (frags[i] for i in sorted(frags))))


def _stream_download(out: Path, writer: _Writer, name: str, fmt: str, spooled: list[Path]) -> None:
    """Concatenate spooled fragments into a download file as :func:`assemble` would write it, without
    holding the whole file in memory (the JSON of 100k records is ~0.5 GB)."""
    sep = ",\n" if fmt == "json" else SEPARATORS[fmt]  # a JSON array needs commas between its lines
    head, tail = {"json": ("[\n", "\n]\n"), "csv": (assemble("csv", []), "\n")}.get(fmt, ("", "\n"))
    h = hashlib.sha1()
    target = out / name
    tmp = target.with_name(f".{target.name}.tmp")
    first = True
    with open(tmp, "wb") as fh:
        def put(data: bytes) -> None:
            h.update(data)
            fh.write(data)

        put(head.encode())
        for p in spooled:
            data = p.read_bytes()
            if not data:
                continue
            if fmt == "json":
                data = data.replace(b"\n", b",\n")  # one record per line: JSON escapes newlines in strings
            if not first:
                put(sep.encode())
            put(data)
            first = False
        if first:
            h, fh_empty = hashlib.sha1(), assemble(fmt, []).encode()
            fh.seek(0)
            fh.truncate()
            put(fh_empty)
        else:
            put(tail.encode())
    os.replace(tmp, target)
    writer.pages[name] = h.hexdigest()
    writer.written += 1


def _sha_file(path: Path) -> str:
    try:
        return hashlib.sha1(path.read_bytes()).hexdigest()
    except OSError:
        return ""


class _Pages:
    """Renders the pages that span studies, one task at a time (so that tasks can be shared out)."""

    def __init__(self, site: Site, env, common: dict):
        from .forest import forest_html

        self.site, self.env = site, env
        self.common = {**common, "rows_html": self.rows_html}
        self.forest = lambda result, uid: forest_html(result, site.kb, uid=uid, env=env)

    def rows_html(self, studies: list[dict], template: str = "_study_row.html") -> Markup:
        key = ROW_TEMPLATES[template]
        out = []
        for d in studies:
            if key not in d:
                d[key] = study_row_html(self.env, d, self.site.vocab, template)
            out.append(d[key])
        return Markup("\n".join(out))

    def tasks(self) -> list[tuple[str, str, str | None]]:
        """(path, kind, argument) of every page, the heaviest (condition and outcome pages) first."""
        site = self.site
        heavy = [(f"conditions/{c}.html", "condition", c) for c in site.conditions()]
        heavy += [(f"outcomes/{o}.html", "outcome", o) for o in site.outcomes()]
        heavy.sort(key=lambda t: -len(site.studies(condition=t[2]) if t[1] == "condition" else site.studies(outcome=t[2])))
        light = [(name, name, None) for name in ("index.html", "outcomes/index.html", "search.html", "methods.html",
                                                   "changes.html", "downloads.html", "404.html", "feed.xml",
                                                   "summary-of-findings.html")]
        light.append((f"downloads/{SOF_CSV}", "sof-csv", None))
        return heavy + light

    def render(self, kind: str, arg: str | None) -> str:
        site = self.site

        def render(name: str, **ctx) -> str:
            return self.env.get_template(name).render(**self.common, **ctx)

        if kind == "condition":
            return render("condition.html", forest=self.forest, **condition_context(site, arg))
        if kind == "outcome":
            return render("outcome.html", forest=self.forest, **outcome_context(site, arg))
        if kind == "index.html":
            return render("index.html", **home_context(site))
        if kind == "outcomes/index.html":
            return render("outcomes.html", root="../", outcomes=[
                {"outcome": o, "studies": sum(not d["draft"] for d in site.studies(outcome=o)),
                 "pooled": len({k[0] for k, a in site.analyses.items() if k[1] == o and a["ok"]})}
                for o in site.outcomes()])
        if kind == "search.html":
            ds = site.digests.values()
            filters = {
                "condition": [site.vocab.label("condition", c) for c in site.conditions()],
                "outcome": [site.vocab.label("outcome", o) for o in site.outcomes()],
                "design": [site.vocab.label("design", t) for t in _order(site.vocab, "design", (d["design"] for d in ds))],
                "route": [site.vocab.label("route", t) for t in _order(site.vocab, "route", (d["route"] for d in ds
                                                                                           if d["route"]))],
                "year": list(dict.fromkeys(year_band(y) for y in sorted({d["year"] for d in ds}))),
            }
            return render("search.html", root="", filters=filters, studies=site.studies())
        if kind == "methods.html":
            return render("methods.html", **methods_context(site))
        if kind == "changes.html":
            return render("changes.html", root="", changes=site.changes, digests=site.digests, list_max=LIST_MAX)
        if kind == "downloads.html":
            return render("downloads.html", root="", total=len(site.evidence()), files=FILE_NAMES)
        if kind == "404.html":
            return render("404.html", root=site.info.base_url or "")
        if kind == "summary-of-findings.html":
            return render("summary-of-findings.html", root="", rows=sof_table(site), csv_name=SOF_CSV)
        if kind == "sof-csv":
            return sof_csv(sof_table(site))
        if kind == "feed.xml":
            return render("feed.xml", entries=_feed_entries(site))
        raise ValueError(kind)


_P: dict[str, Any] = {}


def _render_task(task: tuple[str, str, str | None]) -> tuple[str, str, bool]:
    """In a forked worker: render one page and write it if its bytes changed."""
    pages, writer = _P["pages"], _P["writer"]
    rel, kind, arg = task
    before = writer.written
    writer.put(rel, pages.render(kind, arg))
    return rel, writer.pages[rel], writer.written > before


def write_aggregate_pages(site: Site, env, common: dict, writer: _Writer, jobs: int | None = None,
                          progress: Callable | None = None) -> None:
    """Render and write every page that spans studies; for a big site, on all cores."""
    pages = _Pages(site, env, common)
    tasks = pages.tasks()
    jobs = jobs or os.cpu_count() or 1
    done = 0
    if jobs > 1 and len(site.digests) >= AGGREGATE_PARALLEL:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        _P.update(pages=pages, writer=writer)  # inherited by the forked workers
        theirs = [t for i, t in enumerate(tasks) if i % jobs != 0]
        mine = [t for i, t in enumerate(tasks) if i % jobs == 0]
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        with ProcessPoolExecutor(max_workers=jobs - 1, mp_context=ctx) as pool:
            futures = [pool.submit(_render_task, t) for t in theirs]
            for rel, kind, arg in mine:
                writer.put(rel, pages.render(kind, arg))
                done += 1
                if progress:
                    progress("pages", done, len(tasks))
            for f in futures:
                rel, sha, written = f.result()
                writer.pages[rel] = sha
                writer.written += written
                done += 1
                if progress:
                    progress("pages", done, len(tasks))
        _P.clear()
    else:
        for rel, kind, arg in tasks:
            writer.put(rel, pages.render(kind, arg))
            done += 1
            if progress:
                progress("pages", done, len(tasks))
    listed = [rel for rel, _, _ in tasks if rel.endswith(".html") and rel != "404.html"]
    for rel, text in _sitemaps(site, env, listed):
        writer.put(rel, text)


def _feed_entries(site: Site) -> list[dict]:
    ds = sorted(site.evidence(), key=lambda d: (d["updated"] or d["added"], d["id"]), reverse=True)[:50]
    return [{"d": d, "date": (d["updated"] or d["added"]) + "T00:00:00Z"} for d in ds]


def _sitemaps(site: Site, env, pages: list[str]) -> list[tuple[str, str]]:
    urls = sorted(pages) + [d["page"] for d in site.studies()]
    base = site.info.base_url or ""
    tpl = env.get_template("sitemap.xml")
    if len(urls) <= SITEMAP_MAX:
        return [("sitemap.xml", tpl.render(base=base, urls=urls, index=False))]
    parts = [urls[i:i + SITEMAP_MAX] for i in range(0, len(urls), SITEMAP_MAX)]
    out = [(f"sitemap-{n + 1}.xml", tpl.render(base=base, urls=part, index=False)) for n, part in enumerate(parts)]
    out.append(("sitemap.xml", tpl.render(base=base, urls=[name for name, _ in out], index=True)))
    return out


# -- Pagefind ----------------------------------------------------------------------------


def pagefind_command() -> list[str] | None:
    """How to run Pagefind: the binary of the `pagefind` PyPI package (pagefind_bin), if installed."""
    try:
        import pagefind_bin  # noqa: F401
    except ImportError:
        exe = shutil.which("pagefind")
        return [exe] if exe else None
    return [sys.executable, "-m", "pagefind"]


def run_pagefind(out: Path, progress=None) -> float:
    cmd = pagefind_command()
    if cmd is None:
        raise SiteError("Pagefind is not installed, so the site's search cannot be built",
                        hint="pip install 'pagefind[bin]' (it carries its own binary), or build with --no-search")
    if progress:
        progress("search index", 0, 1)
    t = time.perf_counter()
    res = subprocess.run([*cmd, "--site", str(out), "--keep-index-url", "--silent"], capture_output=True, text=True)
    if res.returncode != 0:
        raise SiteError(f"Pagefind failed (exit {res.returncode}): {(res.stderr or res.stdout).strip()[:500]}",
                        hint="build with --no-search to publish without search")
    if progress:
        progress("search index", 1, 1)
    return time.perf_counter() - t
