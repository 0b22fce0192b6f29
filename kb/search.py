"""`kb search`: run a query against the index and shape the results.

The query tree comes from kb.query; this module turns it into Whoosh query
objects (with vocabulary expansion), runs it, and computes facet counts,
highlighted snippets and "did you mean" suggestions.
"""

from __future__ import annotations

import datetime
import difflib
import html
import os
import pickle
import re
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Callable

from .config import KnowledgeBase
from .errors import BadRequest, KbError
from .index import TEXT_BOOSTS, IndexLocked, SearchIndex, analyzer, tag
from .query import Bool, Filter, Not, Range, Text, free_text, parse_query, parse_range
from .vocab import Vocabulary

SORTS = ("relevance", "year", "n", "evidence")
MATCHES = ("auto", "all", "any")
FACETS = ("condition", "outcome", "design", "year")
SUGGEST_CATEGORIES = ("condition", "outcome", "topic", "instrument", "comparator", "route", "drug", "design")
MIN_YEAR, MAX_YEAR = 1900, datetime.date.today().year + 1
AUTO_ALL_MAX = 3
"""With --match auto, up to this many free-text terms must all match; longer queries rank by how many match."""


@dataclass
class SearchRequest:
    query: str = ""
    condition: list[str] = field(default_factory=list)
    outcome: list[str] = field(default_factory=list)
    design: list[str] = field(default_factory=list)
    route: list[str] = field(default_factory=list)
    drug: list[str] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    year: str | None = None
    min_n: int | None = None
    sort: str = "relevance"
    match: str = "auto"
    limit: int = 10
    offset: int = 0
    facets: bool = True


@dataclass
class Hit:
    id: str
    score: float | None
    title: str | None
    year: int
    design: str
    n: int | None
    conditions: list[str]
    outcomes: list[str]
    snippet: str
    key_finding: str | None
    retracted: bool
    status: str
    authors: list[str]
    authors_truncated: bool
    journal: str | None
    doi: str | None
    pmid: str | None
    route: str | None
    drug: str | None
    path: str


@dataclass
class SearchResult:
    query: str
    total: int
    hits: list[Hit]
    facets: dict[str, dict[str, int]]
    sort: str
    match: str
    limit: int
    offset: int
    notices: list[str] = field(default_factory=list)
    suggestions: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        """The documented JSON contract (see README, "kb search JSON")."""
        return {
            "query": self.query, "total": self.total, "offset": self.offset, "limit": self.limit,
            "sort": self.sort, "match": self.match,
            "hits": [{k: v for k, v in asdict(h).items() if k != "path"} for h in self.hits],
            "facets": self.facets, "suggestions": self.suggestions, "notices": self.notices,
        }


# -- compiling the query tree ------------------------------------------------------------

_ANALYZER = None


def _analyze(text: str) -> list[tuple[str, int]]:
    global _ANALYZER
    if _ANALYZER is None:
        _ANALYZER = analyzer()
    return [(t.text, t.pos) for t in _ANALYZER(text, positions=True)]


def _text_clauses(text: str, weight: float) -> list:
    from whoosh import query as Q

    toks = _analyze(text)
    if not toks:
        return []
    words = [w for w, _ in toks]
    slop = max((b - a for (_, a), (_, b) in zip(toks, toks[1:])), default=1)
    out = []
    for fname, boost in TEXT_BOOSTS.items():
        if len(words) == 1:
            out.append(Q.Term(fname, words[0], boost=boost * weight))
        else:
            out.append(Q.Phrase(fname, words, slop=slop, boost=boost * weight))
    return out


@lru_cache(maxsize=4096)
def _expansions(vocab_id: int, text: str) -> tuple[str, ...]:
    """Other spellings of ``text``: an abbreviation's long forms, or a long form's abbreviation.

    Abbreviations expand only as typed (TRD, not "trd"), so that ordinary words such as "sad" stay
    words. Vocabulary concepts are not expanded here: "fibromyalgia" must not find every chronic-pain
    record; `condition:` filters do that on purpose.
    """
    vocab = _VOCABS[vocab_id]
    variants: list[str] = []
    cats = vocab.categories.get("abbreviation", {})
    if text in cats:
        variants.extend(cats[text].synonyms)
    else:
        abbr = vocab.canonical("abbreviation", text)
        if abbr and abbr.lower() != text.lower():
            variants.append(abbr)
            variants.extend(s for s in cats[abbr].synonyms if s.lower() != text.lower())
    return tuple(variants)


_VOCABS: dict[int, Vocabulary] = {}


def _lossy(text: str) -> bool:
    """Whether analysis would drop a one-letter part that carries meaning ("S-ketamine" -> "ketamin")."""
    return any(len(run) == 1 for run in re.findall(r"[A-Za-z0-9]+", text)) and len(re.findall(r"\w+", text)) > 1


def text_query(t: Text, vocab: Vocabulary):
    from whoosh import query as Q

    _VOCABS[id(vocab)] = vocab
    variants = tuple(v for v in _expansions(id(vocab), t.text) if not _lossy(v))
    clauses = [] if (_lossy(t.text) and variants) else _text_clauses(t.text, 1.0)
    for v in variants:
        clauses.extend(_text_clauses(v, 0.8))
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else Q.Or(clauses)


def _filter_query(f: Filter):
    from whoosh import query as Q

    if f.field == "title":
        words = [w for w, _ in _analyze(f.values[0])]
        return Q.And([Q.Term("title", w) for w in words]) if words else Q.NullQuery
    if f.field == "id":
        terms = [Q.Term("id", v) for v in f.values]
    else:
        terms = [Q.Term("tags", tag(f.field, v)) for v in f.values]
    return terms[0] if len(terms) == 1 else Q.Or(terms)


def _range_query(r: Range):
    from whoosh import query as Q

    if r.field == "year":
        low = max(r.low if r.low is not None else MIN_YEAR, MIN_YEAR)
        high = min(r.high if r.high is not None else MAX_YEAR, MAX_YEAR)
        terms = [Q.Term("tags", tag("year", y)) for y in range(low, high + 1)]
        return Q.Or(terms) if len(terms) > 1 else (terms[0] if terms else Q.NullQuery)
    low = r.low
    if low is None or low < 0:
        low = 0  # unknown sample sizes are stored as -1 and never match an n: filter
    return Q.NumericRange("n", low, r.high)


def compile_query(node, vocab: Vocabulary, match: str):
    """Whoosh query for a tree; ``match`` is 'all' or 'any' for adjacent free-text terms."""
    from whoosh import query as Q

    if node is None:
        return Q.Every()
    if isinstance(node, Text):
        return text_query(node, vocab) or Q.NullQuery
    if isinstance(node, Filter):
        return _filter_query(node)
    if isinstance(node, Range):
        return _range_query(node)
    if isinstance(node, Not):
        return Q.Not(compile_query(node.node, vocab, match))
    assert isinstance(node, Bool)
    if node.op == "or":
        return Q.Or([compile_query(i, vocab, match) for i in node.items])
    if node.op == "and":
        parts = [compile_query(i, vocab, match) for i in node.items]
        return _and(parts)
    required = [compile_query(i, vocab, match) for i in node.items if isinstance(i, (Filter, Range, Not))]
    free = [compile_query(i, vocab, match) for i in node.items if not isinstance(i, (Filter, Range, Not))]
    free = [q for q in free if q is not Q.NullQuery]
    if free:
        if match == "any" and len(free) > 1:
            required.insert(0, Q.Or(free))
        else:
            required = free + required
    return _and(required)


def _and(parts: list):
    from whoosh import query as Q

    parts = [p for p in parts if p is not Q.NullQuery]
    if not parts:
        return Q.NullQuery
    if all(isinstance(p, Q.Not) for p in parts):
        parts.insert(0, Q.Every())
    return parts[0] if len(parts) == 1 else Q.And(parts)


def request_tree(req: SearchRequest, vocab: Vocabulary):
    """The query tree for the query text plus the CLI filter options."""
    node = parse_query(req.query, vocab)
    extra: list = []
    for name in ("condition", "outcome", "design", "route", "drug", "status"):
        values = getattr(req, name)
        if values:
            from .query import _filter

            extra.append(_filter(name, ",".join(values), vocab))
    if req.year:
        extra.append(parse_range("year", req.year))
    if req.min_n is not None:
        extra.append(Range("n", req.min_n, None))
    if not extra:
        return node
    items = ([node] if node is not None else []) + extra
    return Bool("and", items) if len(items) > 1 else items[0]


def _free_count(node) -> int:
    if isinstance(node, Bool) and node.op == "implicit":
        return sum(1 for i in node.items if isinstance(i, (Text, Bool)))
    return 1


# -- per-segment caches: facet bitsets and sort columns ---------------------------------------

FACET_PREFIXES = ("condition=", "outcome=", "design=")


class SegmentCache:
    """For one index segment: a bitset (a Python int) of its documents per facet value, and its
    id, year, n and evidence columns. Segments never change once written, so each is computed
    once, on first use, and kept beside the index; an update adds a small new segment."""

    def __init__(self, reader, cache_dir):
        seg = reader.segment()
        name = f"cache-{seg.indexname}-{seg.segment_id()}.pickle"
        path = cache_dir / name
        try:
            with open(path, "rb") as fh:
                self.__dict__.update(pickle.load(fh))
            return
        except (OSError, EOFError, pickle.PickleError, AttributeError):
            pass
        size = reader.doc_count_all()
        self.ids = list(reader.column_reader("id"))
        self.ids = [i.decode() if isinstance(i, bytes) else i for i in self.ids]
        self.year = list(reader.column_reader("year"))
        self.evidence = list(reader.column_reader("evidence"))
        n_col = reader.column_reader("n") if reader.has_column("n") else None
        self.n = list(n_col) if n_col is not None else [-1] * size
        self.bits: dict[str, int] = {}
        for raw in reader.lexicon("tags"):
            term = raw.decode() if isinstance(raw, bytes) else raw
            if term.startswith(FACET_PREFIXES):
                self.bits[term] = _bitset(reader.postings("tags", term).all_ids(), size)
        bands: dict[str, list[int]] = {}
        for docnum, y in enumerate(self.year):
            if y:
                start = y - y % 5
                bands.setdefault(f"year={start}-{start + 4}", []).append(docnum)
        for term, docs in bands.items():
            self.bits[term] = _bitset(docs, size)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as fh:
                pickle.dump(self.__dict__, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only index still searches; it just recomputes


def _bitset(docnums, size: int) -> int:
    buf = bytearray((size >> 3) + 1)
    for d in docnums:
        buf[d >> 3] |= 1 << (d & 7)
    return int.from_bytes(buf, "little")


class IndexCache:
    """The segment caches of a whole (multi-shard, multi-segment) index, in global docnums."""

    def __init__(self, searcher, cache_dir):
        reader = searcher.reader()
        leaves = reader.leaf_readers() if not reader.is_atomic() else [(reader, 0)]
        self.segments = [(SegmentCache(r, cache_dir), offset) for r, offset in leaves]
        self.size = reader.doc_count_all()
        self.ids: list[str] = []
        self.year: list[int] = []
        self.n: list[int] = []
        self.evidence: list[int] = []
        for cache, _ in self.segments:
            self.ids += cache.ids
            self.year += cache.year
            self.n += cache.n
            self.evidence += cache.evidence
        terms = {t for cache, _ in self.segments for t in cache.bits}
        self.bits = {t: sum(cache.bits.get(t, 0) << offset for cache, offset in self.segments) for t in terms}
        _prune_caches(cache_dir, {f"cache-{r.segment().indexname}-{r.segment().segment_id()}.pickle"
                                  for r, _ in leaves})

    def facets(self, match: int) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {name: {} for name in FACETS}
        for term, bits in self.bits.items():
            count = (match & bits).bit_count()
            if count:
                name, value = term.split("=", 1)
                out["year" if name == "year" else name][value] = count
        for name, counts in out.items():
            items = sorted(counts.items(), key=(lambda kv: kv[0]) if name == "year" else (lambda kv: (-kv[1], kv[0])))
            out[name] = dict(items)
        return out


def _prune_caches(cache_dir, keep: set[str]) -> None:
    for p in cache_dir.glob("cache-*.pickle"):
        if p.name not in keep:
            p.unlink(missing_ok=True)


# -- snippets and suggestions ---------------------------------------------------------------

_MARK = re.compile(r'<(/?)(?:b|mark|strong)(?: class="[^"]*")?>')


def _highlight_terms(tree, vocab: Vocabulary) -> frozenset[str]:
    words: set[str] = set()
    for t in free_text(tree):
        _VOCABS[id(vocab)] = vocab
        for text in (t.text, *_expansions(id(vocab), t.text)):
            words.update(w for w, _ in _analyze(text))
    return frozenset(words)


def snippet(stored: dict, terms: frozenset[str]) -> str:
    from whoosh import highlight

    global _ANALYZER
    if _ANALYZER is None:
        _ANALYZER = analyzer()
    if terms:
        for fname in ("abstract", "key_finding", "title"):
            text = stored.get(fname) or ""
            if not text:
                continue
            out = highlight.highlight(text, terms, _ANALYZER, highlight.ContextFragmenter(maxchars=240, surround=70),
                                      highlight.HtmlFormatter(tagname="mark", between=" … "), top=2)
            if out:
                return _MARK.sub(lambda m: f"<{m.group(1)}mark>", out)
    kf = stored.get("key_finding") or stored.get("title") or ""
    return html.escape(kf[:240] + ("…" if len(kf) > 240 else ""))


def _suggest(words: list[str], known: dict[str, int], searcher, vocab: Vocabulary) -> list[str]:
    out: list[str] = []
    for word in words:
        low = word.lower()
        stems = [w for w, _ in _analyze(word)]
        present = any(searcher.doc_frequency(f, s) for s in stems for f in TEXT_BOOSTS)
        if present or not stems:
            continue
        candidates = [w for w in known if abs(len(w) - len(low)) <= 2 and w[:1] == low[:1]]
        close = difflib.get_close_matches(low, candidates, n=3, cutoff=0.75)
        if close:
            out.append(max(close, key=lambda w: (difflib.SequenceMatcher(None, low, w).ratio(), known[w])))
            continue
        for cat in SUGGEST_CATEGORIES:
            sug = vocab.suggest(cat, word)
            if sug:
                out.append(sug)
                break
    return out


# -- running a search ------------------------------------------------------------------------


def search(kb: KnowledgeBase, req: SearchRequest, *, refresh: bool = True,
           progress: Callable[[int, int], None] | None = None) -> SearchResult:
    """Search ``kb``, refreshing its index first when records changed."""
    import heapq

    started = time.perf_counter()
    if req.sort not in SORTS:
        raise BadRequest(f"unknown sort '{req.sort}'", hint="sorts: " + ", ".join(SORTS))
    if req.match not in MATCHES:
        raise BadRequest(f"unknown match mode '{req.match}'", hint="modes: " + ", ".join(MATCHES))
    tree = request_tree(req, kb.vocab)
    idx = SearchIndex(kb)
    notices: list[str] = []
    if refresh:
        try:
            report = idx.refresh(progress=progress, lock_timeout=0.5)
            if report.rebuilt:
                notices.append(f"index {'built' if report.reason == 'no index yet' else 'rebuilt'} "
                               f"({report.reason}): {report.records} records")
        except IndexLocked:
            if idx.read_meta() is None:
                raise
            notices.append("another kb process is updating the index; these results may miss its latest changes")
    try:
        searcher = idx.open_searcher()
    except Exception as e:  # noqa: BLE001 - a corrupt index is rebuilt once
        if isinstance(e, KbError):
            raise
        notices.append(f"the index could not be read ({type(e).__name__}); rebuilt it")
        idx.refresh(rebuild=True, progress=progress)
        searcher = idx.open_searcher()
    invalid = idx.invalid_count()
    if invalid:
        notices.append(f"{invalid} record file{'s' * (invalid != 1)} with errors left out of the index; "
                       "`kb validate` lists them")
    with searcher:
        match = req.match
        if match == "auto":
            match = "all" if _free_count(parse_query(req.query, kb.vocab)) <= AUTO_ALL_MAX else "any"
        q = compile_query(tree, kb.vocab, match)
        sort = req.sort if (req.sort != "relevance" or free_text(tree)) else "evidence"
        cache = IndexCache(searcher, idx.dir)
        matched = sorted(searcher.docs_for_query(q))
        total = len(matched)
        want = req.offset + req.limit
        scores: dict[int, float] = {}
        if sort == "relevance":
            # top hits by score; equal scores are ordered by id, never by where a record sits in the index
            results = searcher.search(q, limit=want + 20 if want else 1)
            scored = sorted(((h.score, cache.ids[h.docnum], h.docnum) for h in results),
                            key=lambda t: (-round(t[0], 9), t[1]))
            page_docs = [d for _, _, d in scored[req.offset:want]]
            scores = {d: s for s, _, d in scored}
        else:
            y, n, ev, ids = cache.year, cache.n, cache.evidence, cache.ids
            key = {"year": lambda d: (-y[d], -ev[d], ids[d]), "n": lambda d: (-n[d], -y[d], ids[d]),
                   "evidence": lambda d: (-ev[d], -y[d], ids[d])}[sort]
            page_docs = heapq.nsmallest(want, matched, key=key)[req.offset:] if want else []
        terms = _highlight_terms(tree, kb.vocab)
        hits = []
        for docnum in page_docs:
            stored = searcher.stored_fields(docnum)
            meta = stored["meta"]
            score = scores.get(docnum)
            hits.append(Hit(
                id=meta["id"], score=round(score, 4) if score is not None else None,
                title=meta["title"], year=meta["year"], design=meta["design"], n=meta["n"],
                conditions=meta["conditions"], outcomes=meta["outcomes"], snippet=snippet(stored, terms),
                key_finding=meta["key_finding"], retracted=meta["retracted"], status=meta["status"],
                authors=meta["authors"], authors_truncated=meta["authors_truncated"], journal=meta["journal"],
                doi=meta["doi"], pmid=meta["pmid"], route=meta["route"], drug=meta["drug"], path=stored["path"]))
        facets = cache.facets(_bitset(matched, cache.size)) if req.facets else {}
        suggestions: list[str] = []
        if total < 3:
            words = [t.text for t in free_text(tree) if not t.phrase]
            suggestions = _suggest(words, idx.words(), searcher, kb.vocab)
    return SearchResult(query=req.query, total=total, hits=hits, facets=facets, sort=sort, match=match,
                        limit=req.limit, offset=req.offset, notices=notices, suggestions=suggestions,
                        seconds=time.perf_counter() - started)
