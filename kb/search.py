"""`kb search`: run a query against the index and shape the results.

The query tree comes from kb.query; this module turns it into Whoosh query
objects (with vocabulary expansion), runs it, and computes facet counts,
highlighted snippets and "did you mean" suggestions.
"""

from __future__ import annotations

import difflib
import html
import re
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Callable

from .config import KnowledgeBase
from .errors import BadRequest, KbError
from .index import EVIDENCE_RANK, KEYWORD_FIELDS, TEXT_BOOSTS, IndexLocked, SearchIndex, analyzer
from .query import Bool, Filter, Not, Range, Text, free_text, parse_query, parse_range
from .vocab import Vocabulary

SORTS = ("relevance", "year", "n", "evidence")
MATCHES = ("auto", "all", "any")
FACETS = ("condition", "outcome", "design", "year")
SUGGEST_CATEGORIES = ("condition", "outcome", "topic", "instrument", "comparator", "route", "drug", "design")
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

    if f.field in KEYWORD_FIELDS:
        terms = [Q.Term(f.field, v) for v in f.values]
    elif f.field == "author":
        terms = [Q.Term("author", v.lower()) for v in f.values]
    elif f.field == "title":
        words = [w for w, _ in _analyze(f.values[0])]
        return Q.And([Q.Term("title", w) for w in words]) if words else Q.NullQuery
    elif f.field == "doi":
        terms = [Q.Term("doi", v.lower()) for v in f.values]
    else:
        terms = [Q.Term(f.field, v) for v in f.values]
    return terms[0] if len(terms) == 1 else Q.Or(terms)


def _range_query(r: Range):
    from whoosh import query as Q

    low = r.low
    if r.field == "n" and (low is None or low < 0):
        low = 0  # unknown sample sizes are stored as -1 and never match an n: filter
    return Q.NumericRange(r.field, low, r.high)


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


# -- facets --------------------------------------------------------------------------------


class Facets:
    """Per-value document sets for the facet fields, cached on disk per index version."""

    def __init__(self, searcher, cache_dir):
        import numpy as np

        self.np = np
        reader = searcher.reader()
        self.size = reader.doc_count_all()
        key = f"{self.size}-" + "-".join(str(getattr(r, "generation", lambda: 0)() if callable(getattr(r, "generation", None)) else 0)
                                           for r in _leaves(reader))
        path = cache_dir / f"facets-{_hash(key + _toc_stamp(cache_dir))}.npz"
        self.sets: dict[str, dict[str, Any]] = {}
        if path.exists():
            try:
                data = np.load(path, allow_pickle=False)
                for k in data.files:
                    fname, value = k.split("\x1f", 1)
                    self.sets.setdefault(fname, {})[value] = np.unpackbits(data[k], count=self.size).astype(bool)
                return
            except Exception:  # noqa: BLE001 - a bad cache is rebuilt
                self.sets = {}
        for fname in ("condition", "outcome", "design"):
            for raw in reader.lexicon(fname):
                value = raw.decode() if isinstance(raw, bytes) else raw
                arr = np.zeros(self.size, dtype=bool)
                arr[np.fromiter(reader.postings(fname, value).all_ids(), dtype=np.int64)] = True
                self.sets.setdefault(fname, {})[value] = arr
        years = np.zeros(self.size, dtype=np.int32)
        for docnum, stored in reader.iter_docs():
            years[docnum] = stored.get("year") or 0
        for band in sorted({y - y % 5 for y in years.tolist() if y}):
            self.sets.setdefault("year", {})[f"{band}-{band + 4}"] = (years >= band) & (years <= band + 4)
        for old in cache_dir.glob("facets-*.npz"):
            old.unlink(missing_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **{f"{f}\x1f{v}": np.packbits(a) for f, vs in self.sets.items() for v, a in vs.items()})
        tmp.replace(path)

    def counts(self, mask) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for fname in FACETS:
            counts = {v: int(self.np.count_nonzero(mask & a)) for v, a in self.sets.get(fname, {}).items()}
            items = sorted(((v, c) for v, c in counts.items() if c),
                           key=(lambda kv: kv[0]) if fname == "year" else (lambda kv: (-kv[1], kv[0])))
            out[fname] = dict(items)
        return out


def _leaves(reader) -> list:
    return list(reader.readers) if hasattr(reader, "readers") else [reader]


def _toc_stamp(index_dir) -> str:
    return ",".join(sorted(p.name for p in index_dir.glob("_s*_*.toc")))


def _hash(text: str) -> str:
    import hashlib

    return hashlib.sha1(text.encode()).hexdigest()[:16]


# -- snippets and suggestions ---------------------------------------------------------------

_MARK = re.compile(r'<(/?)(?:b|mark|strong)(?: class="[^"]*")?>')


def _snippet(hit, fields=("abstract", "key_finding", "title")) -> str:
    for fname in fields:
        try:
            text = hit.highlights(fname, top=2)
        except KeyError:
            text = ""
        if text:
            return _MARK.sub(lambda m: f"<{m.group(1)}mark>", text.replace("...", " … "))
    kf = hit.get("key_finding") or hit.get("title") or ""
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
    from whoosh import sorting

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
            elif report:
                pass
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
        # ties are broken by id, so that the order never depends on how records were sharded
        sortedby = [sorting.ScoreFacet(), sorting.FieldFacet("id")]
        if sort == "year":
            sortedby = [sorting.FieldFacet("year", reverse=True), sorting.FieldFacet("evidence", reverse=True),
                        sorting.FieldFacet("id")]
        elif sort == "n":
            sortedby = [sorting.FieldFacet("n", reverse=True), sorting.FieldFacet("year", reverse=True),
                        sorting.FieldFacet("id")]
        elif sort == "evidence":
            sortedby = [sorting.FieldFacet("evidence", reverse=True), sorting.FieldFacet("year", reverse=True),
                        sorting.FieldFacet("id")]
        want = req.offset + req.limit
        results = searcher.search(q, limit=max(want, 1), sortedby=sortedby)
        from whoosh import highlight

        results.fragmenter = highlight.ContextFragmenter(maxchars=240, surround=70)
        results.formatter = highlight.HtmlFormatter(tagname="mark", between=" … ")
        page = results[req.offset:want] if want else []
        hits = []
        for h in page:
            meta = h["meta"]
            score = h.score
            if isinstance(score, tuple):  # sorted by (score, id): Whoosh gives the sort key, score negated
                score = -score[0] if sort == "relevance" else None
            hits.append(Hit(
                id=meta["id"], score=round(score, 4) if sort == "relevance" and score is not None else None,
                title=meta["title"], year=meta["year"], design=meta["design"], n=meta["n"],
                conditions=meta["conditions"], outcomes=meta["outcomes"], snippet=_snippet(h),
                key_finding=meta["key_finding"], retracted=meta["retracted"], status=meta["status"],
                authors=meta["authors"], authors_truncated=meta["authors_truncated"], journal=meta["journal"],
                doi=meta["doi"], pmid=meta["pmid"], route=meta["route"], drug=meta["drug"], path=h["path"]))
        import numpy as np

        mask = np.zeros(searcher.reader().doc_count_all(), dtype=bool)
        ids = np.fromiter(searcher.docs_for_query(q), dtype=np.int64)
        mask[ids] = True
        total = int(ids.size)
        facets = Facets(searcher, idx.dir).counts(mask) if req.facets else {}
        suggestions: list[str] = []
        if total == 0 or total < 3:
            words = [t.text for t in free_text(tree) if not t.phrase]
            suggestions = [s for s in _suggest(words, idx.words(), searcher, kb.vocab)]
    return SearchResult(query=req.query, total=total, hits=hits, facets=facets, sort=sort, match=match,
                        limit=req.limit, offset=req.offset, notices=notices, suggestions=suggestions,
                        seconds=time.perf_counter() - started)


def evidence_label(design: str) -> int:
    return EVIDENCE_RANK.get(design, 0)
