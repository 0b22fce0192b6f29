"""The search index: what is indexed (schema, analysis, each record's document) and keeping it
up to date. How documents are written to and read from disk is kb.engine's (the one package that
knows Whoosh's internals); this module imports Whoosh only for the schema and the analysis.

Layout in a knowledge base (ignored by git)::

    .kb/index/kb-index.json     version, shard count, vocabulary hash
    .kb/index/manifest.marshal  record file -> (size, mtime_ns, sha1, ok): what the index holds
    .kb/index/words.marshal     the words of the records, for "did you mean"
    .kb/index/_s0_*.toc, s0_*.seg ...   one Whoosh index per shard
    .kb/index/kb-seal           what lets Whoosh read those files (kb.engine.check_seal)
    .kb/index.lock              held by the one process writing the index

The marshal files are signed with a key outside the knowledge base (kb.files.read_signed), and the
Whoosh files sealed (kb.engine.seal): an index this user's kb did not write is rebuilt, never read.

Records are split into shards by path, one per core, so a full build runs on
all cores (each worker parses, validates and indexes its own records) and a
search reads the shards together as one index: statistics for ranking are
summed across shards, so scores are the same as with a single index.

Change detection is by content hash: a file whose size and mtime match the
manifest is unchanged; any other file is hashed, and only a different hash
counts as a change (git checkouts move mtimes backwards and forwards).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import pickle
import re
import shutil
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from typing import TYPE_CHECKING

from . import engine
from .config import KnowledgeBase
from .errors import KbError, LeftOut
from .files import (UNREADABLE, FileState, LockTimeout, atomic_write, exclusive_lock, fork_context, gc_paused,
                    link_outside, read_manifest, read_marshal, read_stamps, scan, sha1, sweep_temps, worker_pool,
                    write_manifest, write_marshal)

if TYPE_CHECKING:  # the search path must not import the schema (pydantic): it is slow to load
    from .records import Study
    from .validate import Problem

INDEX_VERSION = 19
"""Bump when the schema, the analysis or the documents change: every index is rebuilt."""
PARALLEL_MIN = 400
TEXT_BOOSTS = {"text": 1.0}
TITLE_WEIGHT, KEY_FINDING_WEIGHT = 2, 2
"""Field weights, applied BM25F-style: the title and key finding are repeated in the one text field,
so their term frequencies count more before BM25 saturates them, and each query term is one
posting list to read instead of one per field. Chosen on the MEDLINE benchmark (title x1: MAP .517,
x2: .507, x3: .501; title x3 + abstract x2: .498): x2 keeps titles above abstracts and notes and still
beats plain BM25 on all three measures."""
EVIDENCE_RANK = {"meta-analysis": 6, "systematic-review": 5, "guideline": 4, "rct": 4, "crossover-rct": 4,
                 "consensus-statement": 3, "open-label": 2, "cohort": 2, "case-series": 1, "other": 0}
_WORD = re.compile(r"[A-Za-z][A-Za-z\-']{2,}")


class IndexLocked(KbError):
    """Another kb process is writing the index."""


class IndexReadOnly(KbError):
    """The index's folder cannot be written (a read-only knowledge base)."""


# -- analysis and schema ------------------------------------------------------------


def analyzer():
    """English analysis with porter2 (Whoosh's default Porter stems "running" to "runn")."""
    from whoosh.analysis import StemmingAnalyzer
    from whoosh.lang.porter2 import stem

    return StemmingAnalyzer(stemfn=stem, cachesize=-1)  # an unbounded stem cache: English has few stems


def pre_analyzed():
    """For text kb has already analysed into stems: split on spaces, nothing else."""
    from whoosh.analysis import SpaceSeparatedTokenizer

    return SpaceSeparatedTokenizer()


def make_schema():
    from whoosh import columns, fields

    text = analyzer()
    return fields.Schema(
        path=fields.ID(stored=True, unique=True),
        id=fields.ID(stored=True, sortable=True),
        title=fields.TEXT(analyzer=text, phrase=False),  # for title: filters (shown from meta)
        # title and key finding (weighted), abstract and everything else, analysed once by kb
        # (porter2 stems joined by spaces), so Whoosh only splits it
        text=fields.TEXT(analyzer=pre_analyzed()),
        # multi-word vocabulary terms and hyphenated words found in the text, as single terms
        # ("suicid ideat", "follow up"), so that the phrases clinicians type most need no position checks
        phrases=fields.KEYWORD(commas=True, scorable=True),
        abstract=fields.STORED(),  # for snippets; the title and key finding are in meta
        # every filterable value as one keyword field ("condition=ptsd", "year=2015", "author=feder"):
        # one field instead of a dozen keeps indexing fast
        tags=fields.KEYWORD(commas=True, lowercase=True),
        n=fields.COLUMN(columns.NumericColumn("i")),  # n: filters use kb's column cache, not postings
        year=fields.COLUMN(columns.NumericColumn("i")),
        evidence=fields.COLUMN(columns.NumericColumn("b")),
        # exact token counts of the scored fields (Whoosh keeps a one-byte approximation per document):
        # BM25's average length over a part of the index (the records that are not drafts) from them
        len_text=fields.COLUMN(columns.NumericColumn("i")),
        len_phrases=fields.COLUMN(columns.NumericColumn("i")),
        meta=fields.STORED(),
    )


_HYPHENATED = re.compile(r"\b[A-Za-z0-9]+(?:-[A-Za-z0-9]+)+\b")
_KNOWN: dict[str, frozenset] = {}


_TOKEN = re.compile(r"[\w\*]+(?:\.?[\w\*]+)*")
_STEMS: dict[str, str] = {}
_STOP: frozenset = frozenset()
_stem = None


def stems(text: str) -> tuple[str, ...]:
    """``text`` as the analyzer sees it (tokens, lowercase, no stopwords, porter2 stems), fast.

    The same steps as Whoosh's StemmingAnalyzer (which highlighting still uses), written as one
    loop with a stem cache: it runs over every word of every record at index time.
    """
    global _STOP, _stem
    if _stem is None:
        from whoosh.analysis import STOP_WORDS
        from whoosh.lang.porter2 import stem

        _STOP, _stem = frozenset(STOP_WORDS), stem
    out = []
    cache = _STEMS
    for word in _TOKEN.findall(text):
        word = word.lower()
        if len(word) < 2 or word in _STOP:
            continue
        s = cache.get(word)
        if s is None:
            if len(cache) > 500_000:
                cache.clear()
            s = cache[word] = _stem(word)
        out.append(s)
    return tuple(out)


_KNOWN_BY_VOCAB: dict[int, tuple] = {}


def known_phrases(vocab) -> frozenset:
    """Every multi-word term, label, synonym and abbreviation long form of the vocabulary, as stems."""
    got = _KNOWN_BY_VOCAB.get(id(vocab))
    if got is not None and got[0] is vocab:
        return got[1]
    key = json.dumps(vocab.as_dict(), sort_keys=True)
    if key not in _KNOWN:
        out = set()
        for terms in vocab.categories.values():
            for t in terms.values():
                for text in (t.term, t.label, *t.synonyms):
                    st = stems(text)
                    if len(st) >= 2:
                        out.add(st)
        _KNOWN.clear()
        _KNOWN[key] = frozenset(out)
    _KNOWN_BY_VOCAB.clear()
    _KNOWN_BY_VOCAB[id(vocab)] = (vocab, _KNOWN[key])
    return _KNOWN[key]


def phrase_terms(text: str, known: frozenset, toks: tuple[str, ...] | None = None) -> list[str]:
    """The known phrases and hyphenated words in ``text`` (stems ``toks``), one entry per occurrence."""
    out = [" ".join(st) for word in _HYPHENATED.findall(text) if len(st := _word_stems(word)) >= 2]
    starts = _phrase_starts(known)
    toks = stems(text) if toks is None else toks
    for i, tok in enumerate(toks):
        lengths = starts.get(tok)
        if lengths:
            for n in lengths:
                gram = tuple(toks[i:i + n])
                if gram in known:
                    out.append(" ".join(gram))
    return out


_WORD_STEMS: dict[str, tuple[str, ...]] = {}


def _word_stems(word: str) -> tuple[str, ...]:
    got = _WORD_STEMS.get(word)
    if got is None:
        if len(_WORD_STEMS) > 200_000:
            _WORD_STEMS.clear()
        got = _WORD_STEMS[word] = stems(word)
    return got


_STARTS: dict[int, dict[str, list[int]]] = {}


def _phrase_starts(known: frozenset) -> dict[str, list[int]]:
    """first stem -> the lengths of the known phrases that start with it."""
    got = _STARTS.get(id(known))
    if got is None:
        got = {}
        for k in known:
            got.setdefault(k[0], set()).add(len(k))
        got = {w: sorted(ns) for w, ns in got.items()}
        _STARTS.clear()
        _STARTS[id(known)] = got
    return got


def tag(name: str, value: object) -> str:
    return f"{name}={str(value).lower()}"


def document(study: Study, relpath: str, vocab) -> dict:  # noqa: C901 - a flat list of fields
    """The index document for one record."""
    from .records import surname  # here, not at the top: the search path must not import the schema

    label = vocab.label
    body: list[str] = []
    add = body.append
    if study.authors:
        add(" ".join(study.authors))
    for v in (study.population, study.primary_outcome, study.blinding_details, study.sample_details, study.journal,
              study.notes):
        if v:
            add(v)
    body.extend(study.results)
    body.extend(study.keywords)
    body.extend(study.conflicts)
    for c in study.conditions:
        add(label("condition", c.term))
        if c.subtype:
            add(c.subtype)
    body.extend(label("topic", t) for t in study.topics)
    if study.intervention:
        i = study.intervention
        body.extend(x for x in (label("drug", i.drug), label("route", i.route), i.schedule, i.description) if x)
    if study.comparator:
        body.extend(x for x in (label("comparator", study.comparator.type), study.comparator.description) if x)
    for o in study.outcomes:
        body.extend(x for x in (label("outcome", o.outcome), o.instrument and label("instrument", o.instrument),
                                o.timepoint, o.definition, o.result) if x)
    if study.adverse_events:
        body.extend(x for x in (study.adverse_events.summary, *(label("adverse_event", e) for e in study.adverse_events.events)) if x)
    if study.durability:
        body.extend(x for x in (study.durability.summary, study.durability.relapse) if x)
    if study.review and study.review.details:
        add(study.review.details)
    if study.retracted:
        add("retracted retraction")
    outcomes = sorted({o.outcome for o in study.outcomes})
    n = study.n
    meta = {
        "id": study.id, "title": study.title, "year": study.year, "design": study.design, "n": n,
        "conditions": study.condition_terms, "outcomes": outcomes, "key_finding": study.key_finding,
        "retracted": study.retracted, "status": study.status, "authors": study.authors[:3],
        "authors_truncated": study.authors_truncated or len(study.authors) > 3, "journal": study.journal,
        "doi": study.doi, "pmid": study.pmid,
        "route": study.intervention.route if study.intervention else None,
        "drug": study.intervention.drug if study.intervention else None,
    }
    tags = [tag("design", study.design), tag("status", study.status), tag("year", study.year)]
    tags += [tag("condition", t) for t in set(study.condition_terms)]
    tags += [tag("outcome", o) for o in outcomes]
    tags += [tag("topic", t) for t in set(study.topics)]
    tags += [tag("instrument", i) for i in {o.instrument for o in study.outcomes if o.instrument}]
    comparators = ({study.comparator.type} if study.comparator else set()) | {o.comparator for o in study.outcomes
                                                                          if o.comparator}
    tags += [tag("comparator", c) for c in comparators]
    if study.intervention:
        tags += [tag("route", study.intervention.route), tag("drug", study.intervention.drug)]
    tags += [tag("author", surname(a).lower()) for a in study.authors]
    if study.doi:
        tags.append(tag("doi", study.doi))
    if study.pmid:
        tags.append(tag("pmid", study.pmid))
    if study.retracted:
        tags.append("retracted=yes")
    text = "\n".join([*[study.title or ""] * TITLE_WEIGHT, *[study.key_finding or ""] * KEY_FINDING_WEIGHT,
                      study.abstract or "", *body])
    toks = stems(text)
    phrases = phrase_terms(text, known_phrases(vocab), toks)
    doc = {
        "path": relpath, "id": study.id, "title": list(stems(study.title or "")),  # analysed already
        "abstract": study.abstract or "",
        "text": list(toks),  # a list: Whoosh takes the items as tokens and skips analysis
        "phrases": ",".join(phrases) or None,
        "tags": ",".join(t.replace(",", " ") for t in tags),
        "year": study.year,
        "n": n if n is not None else -1,
        "evidence": EVIDENCE_RANK.get(study.design, 0),
        "len_text": len(toks),
        "len_phrases": len(phrases),
        "meta": meta,
    }
    return {k: v for k, v in doc.items() if v is not None}


def words_of(study: Study) -> Iterable[str]:
    for text in (study.title, study.key_finding, study.abstract, *study.results):
        if text:
            yield from (w.lower() for w in _WORD.findall(text))


# -- changes and reports --------------------------------------------------------------------


def shard_of(relpath: str, shards: int) -> int:
    return zlib.crc32(relpath.encode()) % shards


@dataclass
class Changes:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    touched: dict[str, FileState] = field(default_factory=dict)  # same content, new stat

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.deleted)


@dataclass
class Check:
    """The outcome of SearchIndex.check: a reason to rebuild, or the changes to apply."""

    reason: str | None
    manifest: dict
    changes: Changes

    @property
    def needed(self) -> bool:
        return self.reason is not None or bool(self.changes) or bool(self.changes.touched)


@dataclass
class RefreshReport(LeftOut):
    rebuilt: bool = False
    reason: str | None = None
    added: int = 0
    changed: int = 0
    deleted: int = 0
    records: int = 0
    shards: int = 1
    seconds: float = 0.0
    notices: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        """True when the refresh changed the index."""
        return bool(self.rebuilt or self.added or self.changed or self.deleted)

    def summary(self) -> str:
        """One line: what the refresh did (kb index prints it)."""
        if self.rebuilt:
            return (f"indexed {self.records} records in {self.seconds:.1f} s "
                    f"({self.shards} shard{'s' * (self.shards != 1)}; {self.reason})")
        if self.added or self.changed or self.deleted:
            return (f"updated the index in {self.seconds:.2f} s: {self.added} added, {self.changed} changed, "
                    f"{self.deleted} deleted; {self.records} records")
        return f"index up to date: {self.records} records (checked in {self.seconds:.2f} s)"


# -- building -------------------------------------------------------------------------------

_PROGRESS = None  # a shared counter for worker processes (set before forking)


def _index_files(storage_dir: str, indexname: str, studies: str, relpaths: list[str], root: str, vocab,
                 create: bool, lock_timeout: float = 5.0,
                 links_within: str | None = None) -> tuple[dict, list[Problem], Counter]:
    """Parse, validate and add ``relpaths`` to one shard. Runs in a worker process or inline. A file that
    cannot be read (a link loop, a dangling link) is kept in the manifest as a file with errors, and a
    symbolic link leading outside ``links_within`` is not read at all."""
    from .validate import check_file, external_link_problem, unreadable_problem

    manifest: dict[str, FileState] = {}
    problems: list[Problem] = []
    words: Counter = Counter()
    with engine.ShardWriter(storage_dir, indexname, schema=make_schema() if create else None,
                            lock_timeout=lock_timeout) as writer:
        for i, rel in enumerate(relpaths, 1):
            writer.record(i)
            path = Path(studies) / rel
            display = os.path.relpath(path, root)
            target = link_outside(path, links_within) if links_within is not None else None
            stamp, sha, err = UNREADABLE, "", None
            try:
                st = path.stat()
                stamp = (st.st_size, st.st_mtime_ns)
                if target is None:
                    sha = sha1(path)
            except FileNotFoundError as e:
                if not os.path.islink(path):
                    continue  # deleted meanwhile: the next refresh notices
                err = e  # a dangling link
            except OSError as e:  # a link loop, no permission
                err = e
            if target is not None:
                errors = [external_link_problem(display, target)]
                res = None
            elif err is not None:
                errors = [unreadable_problem(display, err)]
                res = None
            else:
                res = check_file(path, vocab, display)
                errors = [p for p in res.problems if p.severity == "error"]
            if res is None:
                # unreadable: an impossible mtime, so that every refresh tries it again, says why it is left
                # out, and takes it back once it can be read
                manifest[rel] = FileState(stamp[0], -1, sha, ok=False) if err is not None else FileState(*stamp, sha, ok=False)
                problems.extend(errors)
                if not create:
                    writer.delete(rel)
                continue
            manifest[rel] = FileState(*stamp, sha, ok=not errors and res.study is not None)
            if res.study is None or errors:
                problems.extend(errors)
                if not create:
                    writer.delete(rel)
            else:
                writer.put(document(res.study, rel, vocab))
                words.update(words_of(res.study))
            if _PROGRESS is not None and i % 50 == 0:
                with _PROGRESS.get_lock():
                    _PROGRESS.value += 50
        writer.commit()
    if _PROGRESS is not None:
        with _PROGRESS.get_lock():
            _PROGRESS.value += len(relpaths) % 50
    return manifest, problems, words


def _shard_task(args):
    return _index_files(*args)


class SearchIndex:
    """The index of one knowledge base."""

    def __init__(self, kb: KnowledgeBase):
        self.kb = kb
        self.dir = kb.state_dir / "index"
        self.meta_path = self.dir / "kb-index.json"
        self.manifest_path = self.dir / "manifest.marshal"
        self.words_path = self.dir / "words.marshal"
        self.lock_path = self.dir.with_name("index.lock")  # beside the folder, which a rebuild replaces

    # -- state --------------------------------------------------------------------
    def vocab_hash(self) -> str:
        return hashlib.sha1(json.dumps(self.kb.vocab.as_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def read_meta(self) -> dict | None:
        try:
            return json.loads(self.meta_path.read_text())
        except (OSError, ValueError):
            return None

    def why_rebuild(self) -> str | None:
        meta = self.read_meta()
        if meta is None:
            return "no index yet" if not self.dir.exists() else "index metadata missing or unreadable"
        if meta.get("version") != INDEX_VERSION:
            return f"index format changed (version {meta.get('version')} -> {INDEX_VERSION})"
        if meta.get("vocab") != self.vocab_hash():
            return "vocabulary changed"
        if not self.manifest_path.exists() or not self.manifest_path.with_name("stamps.marshal").exists():
            return "index manifest missing"
        try:
            engine.check_seal(self.dir)
        except engine.Untrusted:
            return "index files changed since kb wrote them, or not written by this user's kb"
        return None

    def changes(self, manifest: dict, current: dict | None = None) -> Changes:
        """What differs between studies/ and the manifest (by content hash).

        ``manifest`` maps a relative path to (size, mtime_ns, sha1, ok) tuples or FileStates.
        """
        current = scan(self.kb.studies_dir) if current is None else current
        ch = Changes()
        get = manifest.get
        for rel, stamp in current.items():
            known = get(rel)
            if known is None:
                ch.added.append(rel)
            elif (known[0], known[1]) != stamp:
                try:
                    sha = sha1(self.kb.studies_dir / rel)
                except OSError:  # unreadable now: indexed again, which reports it
                    sha = None
                if sha != known[2] or sha is None:
                    ch.changed.append(rel)
                else:
                    ch.touched[rel] = FileState(stamp[0], stamp[1], sha, known[3])
        if len(current) != len(manifest) or ch.added:
            ch.deleted = [rel for rel in manifest if rel not in current]
        return ch

    # -- building and refreshing ------------------------------------------------------
    def check(self, rebuild: bool = False) -> "Check":
        """What a refresh would have to do (reads the manifest and stats every record file)."""
        with gc_paused():
            reason = "--rebuild" if rebuild else self.why_rebuild()
            manifest: dict = {}
            changes = Changes()
            if reason is None:
                try:
                    stamps = read_stamps(self.manifest_path)
                    current = scan(self.kb.studies_dir)
                    if current != stamps:  # one comparison in C: the common case costs nothing more
                        manifest = read_manifest(self.manifest_path)
                        changes = self.changes(manifest, current)
                except Exception:  # noqa: BLE001 - unreadable manifest: rebuild
                    reason = "index manifest unreadable"
        return Check(reason, manifest, changes)

    def check_in_background(self) -> "Callable[[], Check]":
        """Start :meth:`check` on another core; call the returned function for its result.

        A forked child stats the record files (a third of a second at 100k) while this process
        opens the index and searches; only the differences come back, through a pipe. Where
        fork is not available, the check simply runs when its result is asked for.
        """
        if not hasattr(os, "fork"):  # pragma: no cover - Windows
            return self.check
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: check, send the result, leave at once
            code = 0
            try:
                os.close(read_fd)
                check = self.check()
                payload = pickle.dumps((check.reason, check.changes), protocol=pickle.HIGHEST_PROTOCOL)
                with os.fdopen(write_fd, "wb") as fh:
                    fh.write(payload)
            except BaseException:  # noqa: BLE001 - the parent then checks by itself
                code = 1
            finally:
                os._exit(code)
        os.close(write_fd)

        def result() -> Check:
            with os.fdopen(read_fd, "rb") as fh:
                payload = fh.read()
            _, status = os.waitpid(pid, 0)
            if status != 0 or not payload:
                return self.check()
            reason, changes = pickle.loads(payload)
            manifest = read_manifest(self.manifest_path) if reason is None and (changes or changes.touched) else {}
            return Check(reason, manifest, changes)

        return result

    @contextlib.contextmanager
    def writing(self, wait: float, on_wait: Callable[[str], None] | None = None):
        """Hold ``.kb/index.lock`` while the block writes the index: one writer at a time (a second one
        waits up to ``wait`` seconds, then IndexLocked). Yields whether it had to wait."""
        try:
            with exclusive_lock(self.lock_path, wait=wait, on_wait=(
                    (lambda: on_wait("another kb process is writing the search index; waiting…")) if on_wait else None)
                    ) as waited:
                yield waited
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            raise IndexReadOnly(f"cannot write the search index in {self.dir.parent}: {e.strerror}",
                                hint=f"make {self.dir.parent} writable (it is kb's own folder, ignored by git)") from None
        except LockTimeout:
            raise IndexLocked("the search index is busy: another kb process is writing it"
                              + (f" (waited {wait:g} s)" if wait else ""),
                              hint="wait for it to finish, then try again (kb index --wait SECONDS waits longer)") from None

    def refresh(self, *, rebuild: bool = False, jobs: int | None = None,
                progress: Callable[[int, int], None] | None = None, lock_timeout: float = 2.0,
                checked: "Check | None" = None, on_wait: Callable[[str], None] | None = None) -> RefreshReport:
        """Bring the index up to date: a full build when needed, else only what changed. While another
        process writes the index, this one waits up to ``lock_timeout`` seconds (then IndexLocked)."""
        start = time.perf_counter()
        with self.writing(lock_timeout, on_wait) as waited:
            self._sweep()
            # what the other writer did is looked at again
            # and so is a reason to rebuild found before the lock was taken: it may have been a segment
            # another process had written but not yet sealed (a full rebuild for nothing)
            check = (checked if checked is not None and not rebuild and not waited and checked.reason is None
                     else self.check(rebuild))
            if check.reason is not None:
                report = self._build(jobs=jobs, progress=progress)
                report.rebuilt, report.reason = True, check.reason
            else:
                # Whoosh's own shard locks: under kb's lock only another program can hold them
                report = self._update(check.manifest, check.changes, progress=progress,
                                      lock_timeout=min(lock_timeout, 2.0))
        report.seconds = time.perf_counter() - start
        return report

    def _sweep(self) -> None:
        """What a writer killed midway left (it held the lock, which this one holds now): a half-built
        index, the index a rebuild was replacing, temporary files."""
        if self.dir.exists():  # else a killed rebuild's old index may be all there is: _build removes it
            for name in ("index.building", "index.old"):
                shutil.rmtree(self.dir.with_name(name), ignore_errors=True)
        sweep_temps(self.dir)

    def reopen(self, *, progress: Callable[[int, int], None] | None = None, wait: float = 600.0):
        """(reader, rebuilt) for a search whose first look at the index failed: the reader is opened while
        this process holds the writer's lock, so no other kb process is half-way through writing (and
        sealing) a segment, which a search that read the index meanwhile would take for a planted file;
        an index that still cannot be read is rebuilt first."""
        with self.writing(wait):
            try:
                return self.open_reader(), False
            except Exception:  # noqa: BLE001 - damaged, or not written by this user's kb: rebuilt
                self._build(jobs=None, progress=progress)
            return self.open_reader(), True

    def _build(self, *, jobs: int | None, progress: Callable[[int, int], None] | None) -> RefreshReport:
        files = sorted(scan(self.kb.studies_dir))
        jobs = jobs or os.cpu_count() or 1
        shards = max(1, min(jobs, len(files) // PARALLEL_MIN or 1))
        tmp = self.dir.with_name("index.building")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        groups: list[list[str]] = [[] for _ in range(shards)]
        for rel in files:
            groups[shard_of(rel, shards)].append(rel)
        within = str(self.kb.links_within) if self.kb.links_within is not None else None
        tasks = [(str(tmp), f"s{i}", str(self.kb.studies_dir), groups[i], str(self.kb.root), self.kb.vocab, True,
                  5.0, within) for i in range(shards)]
        manifest: dict[str, FileState] = {}
        problems: list = []
        words: Counter = Counter()
        global _PROGRESS
        if shards == 1:
            results = [_index_files(*tasks[0])]
            if progress:
                progress(len(files), len(files))
        else:
            _PROGRESS = fork_context().Value("i", 0)
            try:
                with worker_pool(shards) as pool:
                    futures = [pool.submit(_shard_task, t) for t in tasks]
                    while not all(f.done() for f in futures):
                        if progress:
                            progress(_PROGRESS.value, len(files))
                        time.sleep(0.1)
                    results = [f.result() for f in futures]
            finally:
                _PROGRESS = None
            if progress:
                progress(len(files), len(files))
        for m, p, w in results:
            manifest.update(m)
            problems.extend(p)
            words.update(w)
        write_manifest(tmp / "manifest.marshal", manifest)
        write_marshal(tmp / "words.marshal", dict(words))
        (tmp / "kb-index.json").write_text(json.dumps(
            {"version": INDEX_VERSION, "shards": shards, "vocab": self.vocab_hash(), "built": time.time(),
             "invalid": sum(1 for f in manifest.values() if not f[3]),
             "records": sum(1 for f in manifest.values() if f[3])}))
        engine.seal(tmp)
        # swap the new index in; a search running meanwhile keeps its open files
        old = self.dir.with_name("index.old")
        shutil.rmtree(old, ignore_errors=True)
        if self.dir.exists():
            os.replace(self.dir, old)
        os.replace(tmp, self.dir)
        shutil.rmtree(old, ignore_errors=True)
        problems.sort(key=lambda p: (p.file, p.line))
        return RefreshReport(added=len(manifest), records=sum(1 for f in manifest.values() if f[3]),
                             shards=shards, problems=problems)

    def _update(self, manifest: dict, ch: "Changes", *, progress, lock_timeout: float) -> RefreshReport:
        meta = self.read_meta() or {}
        shards = int(meta.get("shards", 1))
        report = RefreshReport(shards=shards)
        if not ch and not ch.touched:
            report.records = int(meta.get("records", len(manifest) - int(meta.get("invalid", 0))))
            return report
        problems: list[Problem] = []
        words: Counter = Counter()
        if ch:
            by_shard: dict[int, list[str]] = {}
            for rel in ch.added + ch.changed:
                by_shard.setdefault(shard_of(rel, shards), []).append(rel)
            deleted_by_shard: dict[int, list[str]] = {}
            for rel in ch.deleted:
                deleted_by_shard.setdefault(shard_of(rel, shards), []).append(rel)
            for shard in sorted(set(by_shard) | set(deleted_by_shard)):
                name = f"s{shard}"
                try:
                    if deleted_by_shard.get(shard):
                        engine.delete_documents(str(self.dir), name, deleted_by_shard[shard], lock_timeout=lock_timeout)
                except engine.IndexBusy:
                    raise IndexLocked("the search index is being updated by another kb process",
                                      hint="wait for it to finish, then try again") from None
                for rel in deleted_by_shard.get(shard, []):
                    manifest.pop(rel, None)
                if by_shard.get(shard):
                    try:
                        m, p, w_ = _index_files(str(self.dir), name, str(self.kb.studies_dir), by_shard[shard],
                                                str(self.kb.root), self.kb.vocab, False, lock_timeout,
                                                str(self.kb.links_within) if self.kb.links_within else None)
                    except engine.IndexBusy:
                        raise IndexLocked("the search index is being updated by another kb process",
                                          hint="wait for it to finish, then try again") from None
                    manifest.update(m)
                    problems.extend(p)
                    words.update(w_)
        manifest.update(ch.touched)
        write_manifest(self.manifest_path, manifest)
        if words:
            known = self.words()
            for w, c in words.items():
                known[w] = known.get(w, 0) + c
            write_marshal(self.words_path, known)
        report.added, report.changed, report.deleted = len(ch.added), len(ch.changed), len(ch.deleted)
        report.records = sum(1 for f in manifest.values() if f[3])
        report.problems = problems
        meta["invalid"] = len(manifest) - report.records
        meta["records"] = report.records
        with atomic_write(self.meta_path, "w") as fh:
            fh.write(json.dumps(meta))
        engine.seal(self.dir)  # the segments and table of contents Whoosh just wrote
        return report

    # -- reading ------------------------------------------------------------------------
    def open_reader(self):
        """One reader over every segment of every shard (one index as far as ranking is concerned)."""
        meta = self.read_meta() or {}
        return engine.open_reader(str(self.dir), int(meta.get("shards", 1)))

    def open_searcher(self):
        """A Whoosh searcher over :meth:`open_reader` (for Whoosh's own matching of phrases)."""
        return engine.open_searcher(self.open_reader())

    def invalid_count(self) -> int:
        return int((self.read_meta() or {}).get("invalid", 0))

    def words(self) -> dict[str, int]:
        try:
            words = read_marshal(self.words_path)
        except (OSError, EOFError, ValueError, TypeError):  # missing, damaged, or not signed by this user's kb
            return {}
        return words if isinstance(words, dict) else {}
