"""``kb build`` top to bottom: :meth:`Build.run` reads as the list of its steps.

1. the no-change check: same record files (size and mtime), templates, summaries, build information, drafts,
   and the same earlier commit to compare with (:mod:`kb.site.history`);
2. the plan: which record files must be parsed again (their content changed, or a page they show did);
3. the study pages: parsed, checked, rendered and written on all cores (:mod:`kb.site.studies`);
4. the analyses (:mod:`kb.site.analyses`) and the pages that span studies (:mod:`kb.site.pages`),
   while a forked child writes the downloads (:mod:`kb.site.output`); then the assets, and the pages
   that went away are removed;
5. the search index, when any page changed (:mod:`kb.site.pagefind`);
6. the state for the next build (:mod:`kb.site.state`) and the output folder's manifest.

Each step is timed (``BuildReport.timings``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from ..config import KnowledgeBase
from ..errors import LeftOut, SiteError
from ..export import FILE_NAMES, FORMATS
from ..files import LockTimeout, exclusive_lock, gc_paused, scan, sweep_temps
from ..templating import make_env
from ..validate import Problem
from . import analyses, history, output, pagefind, pages, state, studies
from .output import MANIFEST
from .studies import listed


@dataclass
class BuildReport(LeftOut):
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
    full: bool = False
    up_to_date: bool = False
    search: str = "skipped"  # indexed | unchanged | skipped
    search_seconds: float | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase
    seconds: float = 0.0
    notices: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: what the build did (kb build and kb serve print it)."""
        if self.up_to_date:
            return (f"site up to date: {self.studies:,} studies{self._drafts_note()}, {self.pages_total:,} pages in "
                    f"{self.out} (checked in {self.seconds:.2f} s)")
        search = {"indexed": f"; search indexed in {self.search_seconds:.1f} s" if self.search_seconds is not None else "",
                  "unchanged": "; search index unchanged", "skipped": "; no search index (--no-search)"}[self.search]
        return (f"{'built' if self.full else 'updated'} {self.out}: {self.studies:,} studies{self._drafts_note()}, "
                f"{self.analyses} analyses ({self.pooled} pooled from 2 or more trials), {self.pages_written:,} of {self.pages_total:,} pages written"
                f"{f', {self.pages_removed} removed' if self.pages_removed else ''} in {self.seconds:.1f} s{search}")

    def _drafts_note(self) -> str:
        if not self.drafts:
            return ""
        n = f"{self.drafts:,} draft{'' if self.drafts == 1 else 's'}"
        return f" ({n} shown, marked DRAFT, never pooled)" if self.include_drafts else \
            f" ({n} left out; --include-drafts previews them)"


WAIT = 600.0
"""How long a build waits, by default, for another build of the same output folder to finish."""


def build_site(kb: KnowledgeBase, out: str | Path | None = None, *, base_url: str | None = None,
               jobs: int | None = None, search: bool = True, full: bool = False, strict: bool = False,
               include_drafts: bool = False, progress: Callable[[str, int, int], None] | None = None,
               safe_templates: bool = False, wait: float = WAIT,
               on_wait: Callable[[str], None] | None = None) -> BuildReport:
    """Build (or bring up to date) the static site of ``kb`` in ``out`` (default ``_site``). Drafts are
    left out, unless ``include_drafts`` (a preview): then their pages carry a DRAFT banner and the
    lists mark them, and they are still never pooled, downloaded, in the feed or on the changes page.
    ``safe_templates``: render every page in Jinja's sandbox (kb.templating.make_env), for a knowledge
    base whose templates/ are not trusted; a template that reaches for Python internals fails the build.

    One build at a time writes an output folder: while another holds its lock, this one calls
    ``on_wait`` with a message and waits up to ``wait`` seconds, then raises SiteError (busy).

    The cyclic garbage collector is paused throughout: each full collection over 100k digests would
    cost seconds, and the build makes no garbage cycles to speak of (reading a record makes none)."""
    from jinja2 import TemplateError
    from jinja2.exceptions import SecurityError

    try:
        with gc_paused(), contextlib.ExitStack() as cleanup:  # forked workers inherit the pause
            b = Build(kb, out, base_url=base_url, jobs=jobs, search=search, full=full, strict=strict,
                      drafts=include_drafts, progress=progress, cleanup=cleanup, safe_templates=safe_templates)
            try:
                b.lock(wait, on_wait)
                return b.run()
            except OSError as e:
                raise write_error(e, b.out, kb) from None
    except SecurityError as e:
        raise SiteError(f"--safe-templates: a template did what the sandbox refuses ({e}); the build stopped",
                        hint=f"the knowledge base's own templates in {kb.templates_dir} reach into Python: "
                             "read them before building without --safe-templates") from None
    except TemplateError as e:  # a knowledge base's own template that does not render
        where = f"{e.name}:{e.lineno}: " if getattr(e, "name", None) and getattr(e, "lineno", None) else ""
        raise SiteError(f"a template cannot be rendered: {where}{e.message or type(e).__name__}",
                        hint=f"check the templates in {kb.templates_dir} (they override kb's own file by file)") from None


def write_error(e: OSError, out: Path, kb: KnowledgeBase) -> OSError | SiteError:
    """A folder kb may not write (read-only, or full) as one clear message naming it; any other OSError as it is."""
    if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT):
        return e
    path = Path(e.filename) if e.filename else out
    folder = path.parent  # the folder a file (or folder) could not be made in
    if path.is_relative_to(kb.state_dir):
        what, hint = "kb's build state", f"make {kb.state_dir} writable (it is kb's own folder, ignored by git)"
    else:
        what, hint = "the site", "make the folder writable, or choose another with --out"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return SiteError(f"no space left to write {what} in {folder}", hint="free some space, then build again")
    return SiteError(f"cannot write {what} in {folder}: {e.strerror or e}", hint=hint)


class Build:
    """One run of ``kb build``: what it has read and made so far, and its steps (:meth:`run`)."""

    def __init__(self, kb: KnowledgeBase, out: str | Path | None, *, base_url: str | None, jobs: int | None,
                 search: bool, full: bool, strict: bool, drafts: bool, progress, cleanup: contextlib.ExitStack,
                 safe_templates: bool = False):
        self.t0 = self.clock = time.perf_counter()
        self.kb, self.base_url, self.search, self.full, self.strict = kb, base_url, search, full, strict
        self.sandboxed = safe_templates
        self.drafts = drafts
        self.jobs = jobs or os.cpu_count() or 1
        self.progress, self.cleanup = progress, cleanup
        self.out = Path(out if out is not None else kb.root / "_site").resolve()
        self.report = BuildReport(out=self.out)
        self.downloads: output.DownloadsProcess | None = None  # the child that writes the downloads

    def lock(self, wait: float, on_wait: Callable[[str], None] | None) -> None:
        """Take the output folder's lock (``.kb/site/<out-hash>.lock``) for the time of the build: a second
        build of the same folder waits for the first, or gives up after ``wait`` seconds."""
        self.state_dir = state.state_dir(self.kb, self.out)
        try:
            self.cleanup.enter_context(exclusive_lock(
                self.state_dir.with_name(self.state_dir.name + ".lock"), wait=wait,
                on_wait=(lambda: on_wait(f"another kb build is writing {self.out}; waiting…")) if on_wait else None))
        except LockTimeout:
            raise SiteError(f"the site {self.out} is busy: another kb build is writing it"
                            + (f" (waited {wait:g} s)" if wait else ""),
                            hint="wait for that build to finish, or pass --wait SECONDS to wait longer") from None

    def run(self) -> BuildReport:
        self.claim_output()
        self.read_state()
        if self.nothing_changed():  # 1. the no-change check
            return self.report_up_to_date()
        self.lap("check")
        state.forget(self.state_dir)  # from here on pages change: no state may vouch for them
        self.fork_downloads_process()
        self.load_digests()  # 2. what must be parsed again
        self.plan()
        self.lap("plan")
        self.spool_if_full()  # 3. the study pages
        self.render_study_pages()
        self.render_pages_whose_links_changed()
        self.collect_problems()
        self.refuse_duplicate_ids()
        self.lap("studies")
        self.load_site()  # 4. the analyses and the pages that span studies, while a child writes the downloads
        self.lap("summaries")
        self.start_downloads()
        analyses.run_analyses(self.site)
        self.lap("analyses")
        self.compare_with_last_build()
        self.compare_with_earlier_commit()
        self.lap("commits")
        self.render_aggregate_pages()
        self.lap("pages")
        self.finish_downloads()
        output.copy_assets(self.kb, self.writer)
        self.remove_old_pages()
        self.count_pages()
        self.lap("downloads")
        self.index_search()  # 5. the search index
        self.lap("search")
        self.save_state()  # 6. the state for the next build
        self.lap("state")
        self.report.seconds = time.perf_counter() - self.t0
        return self.report

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.report.timings[phase] = round(self.report.timings.get(phase, 0) + now - self.clock, 3)
        self.clock = now

    # -- 1. the no-change check ------------------------------------------------------------

    def claim_output(self) -> None:
        """Check the output folder, and mark it as kb's from the first file on: a first build that is
        interrupted can then be run again."""
        out = self.out
        output.check_out(self.kb, out)
        if not (out / MANIFEST).exists():
            out.mkdir(parents=True, exist_ok=True)
            placeholder = json.dumps({"kb_site": state.SITE_VERSION, "build": ""}) + "\n"
            (out / MANIFEST).write_text(placeholder, encoding="utf-8")
        else:  # a folder that cannot be written is said at once, before any work
            tempfile.TemporaryFile(dir=out).close()

    def read_state(self) -> None:
        """The record files now, and what the build that made this output folder left."""
        kb, out = self.kb, self.out
        self.stamps_now = scan(kb.studies_dir) if kb.studies_dir.is_dir() else {}
        self.prev_manifest = state.read_json(out / MANIFEST)
        self.meta = meta = state.read_meta(self.state_dir)
        self.summaries_key = state.summaries_key(kb)
        self.old_stamps: dict = {}
        state_ok = False  # the state left by the build that made this output folder
        prev = self.prev_manifest
        if prev and prev.get("build") and meta.get("build") == prev.get("build") and not self.full:
            stamps = state.load_stamps(self.state_dir)
            state_ok = stamps is not None
            self.old_stamps = stamps or {}
        # dates and the commit come from git or the records; cheap, and part of every aggregate page
        self.latest = meta.get("latest")
        self.info = state.build_info(kb, self.base_url, self.latest)
        # a sandboxed build after a plain one renders every page again: each must pass the sandbox
        self.theme = state.theme_key(kb) + ("+sandboxed" if self.sandboxed else "")
        self.same_theme = state_ok and meta.get("theme") == self.theme
        # drafts shown by the last build (--include-drafts) and not by this one, or the reverse
        self.drafts_toggled = meta.get("drafts", False) != self.drafts
        # the earlier commit the changes page compares with: a new commit makes the page current
        self.base, why_not = history.site_base(kb.root)
        self.base_key = self.base.sha if self.base else why_not
        self.why_not = why_not

    def nothing_changed(self) -> bool:
        """Same files (size and mtime), templates, summaries, build information, drafts and earlier
        commit to compare with, and every page the last build wrote still there."""
        meta, old_stamps, out = self.meta, self.old_stamps, self.out
        return (self.same_theme and meta.get("summaries") == self.summaries_key
                and meta.get("info") == asdict(self.info)
                and meta.get("since_commit") == self.base_key
                and not self.drafts_toggled
                and {r: v[:2] for r, v in old_stamps.items()} == self.stamps_now
                and all(os.path.exists(out / p) for p in meta.get("pages", []))
                and all(os.path.exists(out / v[3]) for v in old_stamps.values() if v[3])
                and (not self.search or meta.get("search") == "indexed"))

    def report_up_to_date(self) -> BuildReport:
        report, meta = self.report, self.meta
        report.up_to_date, report.studies = True, meta.get("studies", 0)
        report.drafts, report.include_drafts = meta.get("draft_records", 0), self.drafts
        report.problems = [Problem(*p) for probs in meta.get("problems", {}).values() for p in probs]
        report.pages_total = len(meta.get("pages", [])) + sum(1 for v in self.old_stamps.values() if v[3])
        report.search = "unchanged" if self.search else "skipped"
        report.seconds = time.perf_counter() - self.t0
        return report

    def fork_downloads_process(self) -> None:
        """The process that will write the downloads, forked now, while this one is small: forked once the
        digests are loaded or parsed, every page of them would be copied on write as pooling touches them."""
        if self.jobs > 1 and len(self.stamps_now) >= pages.AGGREGATE_PARALLEL:
            self.downloads = output.DownloadsProcess()
            self.cleanup.callback(self.downloads.stop)

    # -- 2. what must be parsed again ------------------------------------------------------

    def load_digests(self) -> None:
        """The last build's digests (rel -> digest), when its templates are this build's; else a full build."""
        self.digests: dict[str, dict] = {}
        if self.same_theme:
            digests = state.load_digests(self.state_dir)
            if digests is None:
                self.old_stamps, self.same_theme = {}, False
            else:
                self.digests = digests
        self.report.full = not self.same_theme

    def plan(self) -> None:
        """The record files to parse again (``todo``), the stamps of the others, and the pages that go."""
        kb, out, drafts, digests, old_stamps = self.kb, self.out, self.drafts, self.digests, self.old_stamps
        stamps_now, same_theme = self.stamps_now, self.same_theme
        # the ids a study page may link to: not a draft left out (as far as the last build knew; checked
        # again once every record is parsed)
        self.known_ids = known_ids = studies.known_ids(stamps_now, digests, drafts)
        known_before = set(self.meta.get("known", ()))
        todo: list[str] = []
        new_stamps: dict[str, tuple] = {}
        for rel, stamp in sorted(stamps_now.items(), key=lambda kv: (Path(kv[0]).stem, kv[0])):
            old = old_stamps.get(rel)
            d = digests.get(rel)
            if (not same_theme or old is None or (old[3] and d is None)
                    or (self.drafts_toggled and d is not None and d["draft"])):
                todo.append(rel)  # (a draft whose page comes or goes is rendered, or not, again)
                continue
            if tuple(old[:2]) != stamp:
                try:
                    sha = hashlib.sha1((kb.studies_dir / rel).read_bytes()).hexdigest()
                except OSError:  # unreadable now: parsed again, and reported
                    sha = None
                if sha != old[2] or sha is None:
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
        self.todo, self.new_stamps = todo, new_stamps
        self.removed_pages = [v[3] for r, v in old_stamps.items() if r not in stamps_now and v[3]]

    # -- 3. the study pages ------------------------------------------------------------------

    def spool_if_full(self) -> None:
        """A full pass when the downloads must be written whole: every record is parsed once, and its
        download fragments are spooled to files that the downloads are then made from."""
        out = self.out
        self.spool = None
        if self.report.full or not all((out / "downloads" / FILE_NAMES[f]).exists() for f in FORMATS):
            self.todo = sorted(self.stamps_now, key=lambda r: (Path(r).stem, r))  # the downloads need every record once
            self.new_stamps = {}
            self.spool = str(self.state_dir / "spool")
            shutil.rmtree(self.spool, ignore_errors=True)
            os.makedirs(self.spool, exist_ok=True)

    def render_study_pages(self) -> None:
        """Parse, check, render and write the study pages of the plan; collect their digests and fragments."""
        out, digests, todo = self.out, self.digests, self.todo
        out.mkdir(parents=True, exist_ok=True)
        (out / "studies").mkdir(exist_ok=True)
        old_page_sha = {rel: digests[rel].get("page_sha") for rel in todo if rel in digests}
        self.results = results = studies.render_studies(self.kb, out, todo, old_page_sha, self.known_ids, self.spool,
                                                        self.jobs, self.progress, self.drafts, self.sandboxed)
        self.frags_changed: dict[str, dict | None] = {}
        for item in results:
            rel = item["rel"]
            if item.get("gone"):
                digests.pop(rel, None)
                continue
            d = item["digest"]
            if d is None:
                self.report.problems.extend(item["problems"])
                old = digests.pop(rel, None)
                if old:
                    self.removed_pages.append(old["page"])
                    self.frags_changed[old["id"]] = None
                self.new_stamps[rel] = (*item["stamp"], item["sha1"], None)
                continue
            self.take(item)
            if "fragments" in item:
                self.frags_changed[d["id"]] = item["fragments"]
        for rel, v in self.old_stamps.items():
            if rel not in self.stamps_now and v[3]:
                self.frags_changed[Path(v[3]).stem] = None

    def take(self, item: dict) -> None:
        """A record parsed without errors: its digest, its stamp, and its page (or the page that goes)."""
        rel = item["rel"]
        d = item["digest"]
        self.digests[rel] = d
        page = d["page"] if listed(d, self.drafts) else None
        if page is None:  # a draft left out: the page a preview wrote goes
            self.removed_pages.append(d["page"])
        self.new_stamps[rel] = (*item["stamp"], item["sha1"], page)
        self.report.pages_written += bool(item.get("written"))

    def render_pages_whose_links_changed(self) -> None:
        """A record that became a draft, or stopped being one, changes which ids pages may link to: the
        pages that link to it are rendered again (their download fragments do not change)."""
        digests, drafts, known_ids = self.digests, self.drafts, self.known_ids
        known_now = studies.known_ids(self.stamps_now, digests, drafts)
        if known_now != known_ids:
            again = [rel for rel, d in sorted(digests.items()) if rel in self.new_stamps and listed(d, drafts)
                     and any((r in known_now) != (r in known_ids) for r in d["related"])]
            old_page_sha = {rel: digests[rel].get("page_sha") for rel in again}
            for item in studies.render_studies(self.kb, self.out, again, old_page_sha, known_now, None, self.jobs, None,
                                               drafts, self.sandboxed):
                if not item.get("gone") and item["digest"] is not None:
                    self.take(item)
            self.known_ids = known_now

    def collect_problems(self) -> None:
        """The records with errors: parsed now, or still invalid and not parsed again. --strict stops here."""
        report = self.report
        parsed = {item["rel"] for item in self.results}
        for rel, probs in self.meta.get("problems", {}).items():  # still invalid, not parsed again: still listed
            if rel in self.new_stamps and rel not in parsed and self.new_stamps[rel][3] is None:
                report.problems.extend(Problem(*p) for p in probs)
        report.parsed = len(self.results)
        if self.strict and report.problems:
            raise SiteError(f"{report.files_left_out} record file(s) have errors: nothing published",
                            hint="run `kb validate`, or build without --strict to leave them out")

    def refuse_duplicate_ids(self) -> None:
        """Two files, one id: the later file would overwrite the page."""
        by_id: dict[str, list[str]] = defaultdict(list)
        for rel, d in self.digests.items():
            by_id[d["id"]].append(rel)
        clashes = {i: rels for i, rels in by_id.items() if len(rels) > 1}
        if clashes:
            first = sorted(clashes.items())[0]
            raise SiteError(f"id '{first[0]}' is used by {', '.join('studies/' + r for r in first[1])}",
                            hint="run `kb validate`; every id must be unique")

    # -- 4. the analyses and the pages that span studies -------------------------------------

    def load_site(self) -> None:
        from ..load import load_review_notes, load_summaries

        drafts = self.drafts
        self.site = analyses.Site(kb=self.kb, info=self.info, digests={d["id"]: d for d in self.digests.values()
                                                                       if listed(d, drafts)},
                                  summaries=load_summaries(self.kb), review_notes=load_review_notes(self.kb))
        if self.progress:
            self.progress("pooling", 0, 1)

    def start_downloads(self) -> None:
        """The downloads (770 MB at 100k: reading the spooled fragments, hashing, writing) are written by
        a forked process while this one pools and renders the other pages. A thread would not do: each of
        its thousands of reads and writes waits for the GIL behind the pooling, which doubled both."""
        self.previous_pages = (self.prev_manifest or {}).get("pages", {}) if not self.report.full else {}
        self.downloads_args = (str(self.out), self.spool, self.frags_changed, self.previous_pages)
        if self.downloads:
            self.downloads.start(self.downloads_args)

    def compare_with_last_build(self) -> None:
        """The counts of analyses, the changes page's comparison, and the build date when it is the latest record's."""
        site, report = self.site, self.report
        report.analyses = sum(a["ok"] for a in site.analyses.values())
        report.pooled = sum(a["ok"] and a["result"]["k"] > 1 for a in site.analyses.values())
        self.snap = analyses.snapshot(site)
        site.changes = analyses.compute_changes(self.prev_manifest, self.snap, self.info)
        self.latest_now = max((d["updated"] or d["added"] for d in site.evidence()), default=None)
        if self.latest_now != self.latest and self.info.date_source == "latest record date":
            self.info = state.build_info(self.kb, self.base_url, self.latest_now)
            site.info = self.info

    def compare_with_earlier_commit(self) -> None:
        """The changes page's "Since commit" section: this build's estimates against those of the previous
        commit that changed the evidence, whose snapshot is cached in the state by commit (--full pools it again)."""
        self.site.since_commit = history.since_commit(self.kb, self.snap, self.digests, self.state_dir, self.base,
                                                      self.why_not, refresh=self.full)

    def render_aggregate_pages(self) -> None:
        self.writer = output.Writer(self.out, self.previous_pages)
        env = make_env(self.kb, sandboxed=self.sandboxed)
        common = pages.page_globals(self.site)
        pages.write_aggregate_pages(self.site, env, common, self.writer, self.jobs, self.progress)

    def finish_downloads(self) -> None:
        """The downloads' hashes, from the child that wrote them (or written here on a small build)."""
        if self.downloads:
            side_pages, side_written = self.downloads.result()
        else:
            side_pages, side_written = output.downloads_task(*self.downloads_args)
        self.writer.pages.update(side_pages)
        self.writer.written += side_written

    def remove_old_pages(self) -> None:
        """The pages of records gone or left out, and every page the last build wrote and this one did not.
        A full build does not trust the last build's list: every study page in the folder that is not
        this build's goes, and so do the temporary files of a build that was killed."""
        report, out = self.report, self.out
        if report.full:
            self.removed_pages.extend(self.stray_study_pages())
            sweep_temps(out, recursive=True)
            sweep_temps(self.state_dir)
        report.pages_removed += output.remove(out, self.removed_pages)
        stale = set((self.prev_manifest or {}).get("pages", {})) - set(self.writer.pages)
        report.pages_removed += output.remove(out, sorted(stale))

    def stray_study_pages(self) -> list[str]:
        """The study pages in the folder that this build did not make (records deleted before a --full build)."""
        pages = {d["page"] for d in self.digests.values() if listed(d, self.drafts)}
        try:
            names = os.listdir(self.out / "studies")
        except FileNotFoundError:
            return []
        return sorted(rel for n in names if n.endswith(".html") and (rel := f"studies/{n}") not in pages)

    def count_pages(self) -> None:
        report, site = self.report, self.site
        report.pages_written += self.writer.written
        report.studies = sum(not d["draft"] for d in site.digests.values())
        report.drafts = sum(d["draft"] for d in self.digests.values())
        report.include_drafts = self.drafts
        report.pages_total = len(self.writer.pages) + len(site.digests)

    # -- 5. the search index -----------------------------------------------------------------

    def index_search(self) -> None:
        """Pagefind, when any page changed (or the index is missing or was not made by the last build)."""
        report, out = self.report, self.out
        search_state = self.meta.get("search") if not report.full else None
        if self.search:
            if (report.pages_written or report.pages_removed or search_state != "indexed"
                    or not (out / "pagefind").is_dir()):
                report.search_seconds = pagefind.run_pagefind(out, self.progress)
                report.search = "indexed"
            else:
                report.search = "unchanged"
        elif (out / "pagefind").is_dir():
            report.notices.append("search index left as it was (--no-search); it may be out of date")

    # -- 6. the state for the next build -------------------------------------------------------

    def save_state(self) -> None:
        """The digests, stamps and meta.json under .kb/site/, then the output folder's manifest, which
        names the same build."""
        report, writer, info = self.report, self.writer, self.info
        build_id = hashlib.sha1(json.dumps([self.snap, sorted(writer.pages.items()), self.theme],
                                           sort_keys=True).encode()).hexdigest()
        manifest = {"kb_site": state.SITE_VERSION, "build": build_id, "date": info.date, "snapshot": self.snap,
                    "changes": self.site.changes, "pages": dict(sorted(writer.pages.items()))}
        state.save(self.state_dir, self.digests, self.new_stamps, {
            "build": build_id, "theme": self.theme, "summaries": self.summaries_key, "info": asdict(info),
            "latest": self.latest_now, "since_commit": self.base_key, "pages": sorted(writer.pages),
            "known": sorted(self.known_ids),
            "drafts": self.drafts, "studies": report.studies, "draft_records": report.drafts,
            "problems": state.problems_by_file(report.problems),
            "search": report.search if report.search != "unchanged" else "indexed",
        })
        output.write_manifest(self.out, manifest)
        if self.spool:
            shutil.rmtree(self.spool, ignore_errors=True)
        if not info.base_url:
            report.notices.append("feed.xml and sitemap.xml use relative URLs; pass --base-url (or set base_url in "
                                  "kb.yaml) for absolute ones")
