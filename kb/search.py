"""`kb search`: run a query against the index and shape the results.

The query tree comes from kb.query; this module turns it into Whoosh query
objects (with vocabulary expansion), runs it, and computes facet counts,
highlighted snippets and "did you mean" suggestions.
"""

from __future__ import annotations

import datetime
import difflib
import heapq
from array import array
import html
import os
import pickle
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Callable

from .config import KnowledgeBase
from .errors import BadRequest, KbError
from .index import TEXT_BOOSTS, IndexLocked, SearchIndex, gc_paused, analyzer, known_phrases, stems, tag, term_postings
from .records import MIN_YEAR as RECORD_MIN_YEAR
from .query import (STATUS_ANY, Bool, Filter, Not, Range, Text, filter_node, free_text, names_status, parse_query,
                    parse_range)
from .vocab import Vocabulary, _norm

SORTS = ("relevance", "year", "n", "evidence")
MATCHES = ("auto", "all", "any")
FACETS = ("condition", "outcome", "design", "year")
SUGGEST_CATEGORIES = ("condition", "outcome", "topic", "instrument", "comparator", "route", "drug", "design")
MIN_YEAR, MAX_YEAR = RECORD_MIN_YEAR, datetime.date.today().year + 1
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
    """Statuses to show (draft, extracted, verified, or "any"); empty: every status but draft, unless
    the query names a status: drafts are imported references, not evidence."""
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
    draft: bool
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
    return [(w, i) for i, w in enumerate(stems(text))]


def _text_clauses(text: str, weight: float, known: frozenset = frozenset()) -> list:
    from whoosh import query as Q

    toks = _analyze(text)
    if not toks:
        return []
    words = [w for w, _ in toks]
    if len(words) == 1:
        return [Q.Term("text", words[0], boost=weight)]
    if tuple(words) in known or _HYPHENATED_WORD.fullmatch(text.strip()):
        return [Q.Term("phrases", " ".join(words), boost=weight)]  # indexed as one term: no position checks
    # the text field holds stems without stopwords, one position each: the phrase's stems are adjacent
    return [Q.Phrase("text", words, slop=1, boost=weight)]


@lru_cache(maxsize=4096)
def _expansions(vocab: Vocabulary, text: str) -> tuple[str, ...]:
    """Other spellings of ``text``: an abbreviation's long forms, or a long form's abbreviation.

    Abbreviations expand only as typed (TRD, not "trd"), so that ordinary words such as "sad" stay
    words. Vocabulary concepts are not expanded here: "fibromyalgia" must not find every chronic-pain
    record; `condition:` filters do that on purpose.
    """
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


@lru_cache(maxsize=4096)
def _clinician_words(vocab: Vocabulary, text: str) -> tuple[str, ...]:
    """The other words of ``text``'s entries in the vocabulary's ``expansion`` list ("safe" ->
    safety, tolerability, adverse events, side effects ...), matched by stems as the search matches
    words ("infusion" as "infusions")."""
    typed = _analysed(text)
    out: list[str] = []
    for group in _expansion_table(vocab).get(typed, ()):
        out.extend(w for w in vocab.synonyms("expansion", group) if _analysed(w) != typed and w not in out)
    return tuple(out)


@lru_cache(maxsize=64)
def _expansion_table(vocab: Vocabulary) -> dict[tuple[str, ...], list[str]]:
    """The stems of every word and phrase of the ``expansion`` list -> the entries listing it."""
    table: dict[tuple[str, ...], list[str]] = {}
    for group, t in vocab.categories.get("expansion", {}).items():
        for text in (t.term, *t.synonyms):
            key = _analysed(text)
            if key and group not in table.setdefault(key, []):
                table[key].append(group)
    return table


def _optional(vocab: Vocabulary, t: Text) -> bool:
    """A connective ("vs", "compared with") or question word ("how", "does"): never required."""
    return not t.phrase and vocab.canonical("optional", t.text) is not None


@lru_cache(maxsize=64)
def _expressions(vocab: Vocabulary) -> tuple[frozenset[str], int]:
    """The multi-word expressions a query's adjacent words are joined into (the expansion and optional
    entries, abbreviations' long forms), folded; and the longest one's word count."""
    out = set()
    for cat in ("expansion", "optional", "abbreviation"):
        for t in vocab.categories.get(cat, {}).values():
            for text in (t.term, *t.synonyms):
                folded = _norm(text)
                if " " in folded:
                    out.add(folded)
    return frozenset(out), max((len(e.split()) for e in out), default=1)


def natural(node, vocab: Vocabulary):
    """A query as a clinician means it: in adjacent free text, the words of one listed expression
    are read together ("nasal spray", "compared with", "side effects"), and connectives and question
    words are dropped, unless nothing else would be left ("is ketamine safe" -> ketamine, safe)."""
    if not isinstance(node, Bool):
        return node
    items = [natural(i, vocab) for i in node.items]
    if node.op != "implicit":
        return Bool(node.op, items)
    joined = _join(items, vocab)
    kept = [x for x in joined if not (isinstance(x, Text) and _optional(vocab, x))]
    if not any(isinstance(x, (Text, Bool)) for x in kept):
        return joined[0] if len(joined) == 1 else Bool("implicit", joined)
    kept = _join(kept, vocab)  # "the effect lasts": joined once "the" is gone
    return kept[0] if len(kept) == 1 else Bool("implicit", kept)


def _join(items: list, vocab: Vocabulary) -> list:
    """Adjacent plain words that make one listed expression, as one Text (longest first)."""
    known, longest = _expressions(vocab)
    joined: list = []
    i = 0
    while i < len(items):
        size = 1
        for n in range(min(longest, len(items) - i), 1, -1):
            run = items[i:i + n]
            if all(isinstance(x, Text) and not x.phrase for x in run) and _norm(" ".join(x.text for x in run)) in known:
                size = n
                break
        joined.append(items[i] if size == 1 else Text(" ".join(x.text for x in items[i:i + size])))
        i += size
    return joined


def _lossy(text: str) -> bool:
    """Whether analysis would drop a one-letter part that carries meaning ("S-ketamine" -> "ketamin")."""
    return any(len(run) == 1 for run in re.findall(r"[A-Za-z0-9]+", text)) and len(re.findall(r"\w+", text)) > 1


_HYPHENATED_WORD = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)+")
ABBREVIATION_WEIGHT = 0.8
"""An abbreviation's long form (or a long form's abbreviation) scores this much of the word typed."""
EXPANSION_WEIGHT = 0.8
"""A clinician's word's alternatives (vocabulary ``expansion``) score this much of the word typed."""
APART_WEIGHT = 0.5
"""Words a query joined into one expression ("suicidal ideation") also match apart, scoring this much."""
TOPIC_BONUS = 0.5
"""A word naming a topic (dose -> dosing, side effects -> safety, how long -> durability) also finds the
records a reviewer tagged with it, and adds this much of the topic's idf to their score."""


def _analysed(text: str) -> tuple[str, ...]:
    return tuple(w for w, _ in _analyze(text))


def text_query(t: Text, vocab: Vocabulary):
    from whoosh import query as Q

    known = known_phrases(vocab)
    variants = tuple(v for v in _expansions(vocab, t.text) if not _lossy(v))
    words = tuple(v for v in _clinician_words(vocab, t.text) if not _lossy(v))
    joined = not t.phrase and " " in t.text and len(_analysed(t.text)) > 1  # "suicidal ideation" typed
    clauses = [] if (_lossy(t.text) and (variants or words)) else _text_clauses(t.text, 1.0, known)
    seen = {_analysed(t.text)}
    for v, weight in [*((v, ABBREVIATION_WEIGHT) for v in variants), *((w, EXPANSION_WEIGHT) for w in words)]:
        if _analysed(v) not in seen:  # "tolerated", "tolerability": one stem, scored once
            seen.add(_analysed(v))
            clauses.extend(_text_clauses(v, weight, known))
    typed = _analysed(t.text)
    if joined:
        # words joined from the query ("suicidal ideation"): also where they occur apart, as before
        clauses.append(Q.And([Q.Term("text", w) for w in typed], boost=APART_WEIGHT))
    if clauses:
        # the topics the word names: itself or its abbreviation (side effects, dose), or its
        # expansion entry when that entry is named after a topic (safety, durability, dosing)
        names = (t.text, *variants, *_expansion_table(vocab).get(_analysed(t.text), ()))
        topics = {vocab.canonical("topic", x) for x in names} - {None}
        clauses.extend(Q.Term("tags", tag("topic", tp), boost=TOPIC_BONUS) for tp in sorted(topics))
    if not clauses:
        return None
    if len(clauses) == 1:
        return clauses[0]
    group = _Group(clauses)
    group.boost = max(1, len(typed))  # joined words weigh as much as they did apart
    return group


def _group_class():
    from whoosh import query as Q

    class Group(Q.Or):
        """One word as typed with its other spellings (abbreviation, clinicians' words): it matches
        where any of them does, and scores as one term whose frequency is the (weighted) sum of
        theirs, so that a record is not ranked up for using many synonyms of one concept."""

    return Group


def _Group(clauses):
    global _GROUP
    if _GROUP is None:
        _GROUP = _group_class()
    return _GROUP(clauses)


_GROUP = None


def _filter_query(f: Filter):
    from whoosh import query as Q

    if f.field == "title":
        words = [w for w, _ in _analyze(f.values[0])]
        return Q.And([Q.Term("title", w) for w in words]) if words else Q.NullQuery
    if f.field == "status" and STATUS_ANY in f.values:
        return Q.Every()
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
    node = natural(parse_query(req.query, vocab), vocab)
    extra: list = []
    for name in ("condition", "outcome", "design", "route", "drug"):
        values = getattr(req, name)
        if values:
            extra.append(filter_node(name, ",".join(values), vocab))
    if req.year:
        extra.append(parse_range("year", req.year))
    if req.min_n is not None:
        extra.append(Range("n", req.min_n, None))
    scope = status_scope(req, node, vocab)
    if scope is not None:
        extra.append(scope)
    if not extra:
        return node
    items = ([node] if node is not None else []) + extra
    return Bool("and", items) if len(items) > 1 else items[0]


def status_scope(req: SearchRequest, node, vocab: Vocabulary):
    """The records a search covers, by status: --status's values; every record when the query itself
    names a status (status:draft); otherwise every record that is not a draft (drafts are imported
    references, not evidence). None: the whole index."""
    if req.status:
        return filter_node("status", ",".join(req.status), vocab)
    if names_status(node):
        return None
    return Not(Filter("status", ["draft"]))


def _free_count(node) -> int:
    """How many free-text words a query has (an expression joined from several counts them all)."""
    if isinstance(node, Bool) and node.op == "implicit":
        return sum(len(i.text.split()) if isinstance(i, Text) and not i.phrase else 1
                   for i in node.items if isinstance(i, (Text, Bool)))
    return 1


# -- per-segment caches: facet bitsets and sort columns ---------------------------------------

FACET_PREFIXES = ("condition=", "outcome=", "design=")
SCORED_FIELDS = ("text", "phrases")
K1, B = 2.0, 0.75
"""BM25's term-frequency saturation and length normalisation. k1 = 2.0, the top of the usual 1.2-2.0
range: a word scored with its alternatives sums their frequencies, which k1 = 1.2 flattened. On the
MEDLINE benchmark MAP 0.5078 -> 0.5185, nDCG@10 0.676 -> 0.696, P@10 0.627 -> 0.647; every clinician
question that passed at 1.2 still passes."""
_PY_SCORING_MAX = 150_000
"""Up to this many postings, scores are summed in Python; beyond, with numpy (same arithmetic)."""


class SegmentCache:
    """For one index segment: a bitset (a Python int) of its documents per facet value, and its
    id, year, n, evidence and field-length columns. Segments never change once written, so each
    is computed once, on first use, and kept beside the index; an update adds a small segment."""

    COLUMNS = ("year", "n", "evidence", *(f"dl_{f}" for f in ("text", "phrases")),
               *(f"len_{f}" for f in ("text", "phrases")))

    def __init__(self, reader, cache_dir):
        size = reader.doc_count_all()
        seg = reader.segment()
        if seg is None:  # an empty reader (a shard with no records)
            self.ids = [""] * size
            self.cols = {c: array("i", [0]) * size for c in self.COLUMNS}
            self.bits: dict[str, int] = {}
            return
        path = cache_dir / _cache_name(reader)
        try:
            with open(path, "rb") as fh:
                data = pickle.load(fh)
            self.ids = data["ids"].split("\n") if size else []
            self.cols = {c: array("i", data[c]) for c in self.COLUMNS}
            self.bits = {t: int.from_bytes(b, "little") for t, b in data["bits"].items()}
            return
        except (OSError, EOFError, pickle.PickleError, KeyError, AttributeError, ValueError):
            pass
        ids = [i.decode() if isinstance(i, bytes) else i for i in reader.column_reader("id")]
        self.ids = ids
        n_col = reader.column_reader("n") if reader.has_column("n") else None  # noqa: SIM108
        self.cols = {
            "year": array("i", list(reader.column_reader("year"))),
            "n": array("i", list(n_col) if n_col is not None else [-1] * size),
            "evidence": array("i", list(reader.column_reader("evidence"))),
        }
        # field lengths as Whoosh stores them (one byte, lossy), for BM25's length normalisation
        for f in SCORED_FIELDS:
            self.cols[f"dl_{f}"] = array("i", [reader.doc_field_length(d, f, 0) or 0 for d in range(size)])
            # and exact, for average lengths over a part of the index
            col = reader.column_reader(f"len_{f}") if reader.has_column(f"len_{f}") else None
            self.cols[f"len_{f}"] = array("i", list(col) if col is not None else [0] * size)
        self.bits = {}
        for raw in reader.lexicon("tags"):
            term = raw.decode() if isinstance(raw, bytes) else raw
            if term.startswith(FACET_PREFIXES):
                self.bits[term] = _bitset(reader.postings("tags", term).all_ids(), size)
        bands: dict[str, list[int]] = {}
        for docnum, y in enumerate(self.cols["year"]):
            if y:
                start = y - y % 5
                bands.setdefault(f"year={start}-{start + 4}", []).append(docnum)
        for term, docs in bands.items():
            self.bits[term] = _bitset(docs, size)
        data = {"ids": "\n".join(ids), **{c: self.cols[c].tobytes() for c in self.COLUMNS},
                "bits": {t: b.to_bytes((size >> 3) + 1, "little") for t, b in self.bits.items()}}
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as fh:
                pickle.dump(data, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only index still searches; it just recomputes


def _bitset(docnums, size: int) -> int:
    """A Python-int bitset with the bits ``docnums`` set (numpy only for very long lists: importing
    it costs a cold search ~0.1 s)."""
    if isinstance(docnums, array) and len(docnums) > 60_000:
        import numpy as np

        mask = np.zeros(size + 8, dtype=bool)
        mask[np.frombuffer(docnums, dtype=np.int32)] = True
        return int.from_bytes(np.packbits(mask, bitorder="little").tobytes(), "little")
    buf = bytearray((size >> 3) + 1)
    for d in docnums:
        buf[d >> 3] |= 1 << (d & 7)
    return int.from_bytes(buf, "little")


class IndexCache:
    """The segment caches of a whole (multi-shard, multi-segment) index, in global docnums.

    Kept for the life of the process while the index does not change (a warm process pays once).
    """

    _last: "tuple[tuple, IndexCache] | None" = None

    @classmethod
    def get(cls, reader, cache_dir) -> "IndexCache":
        leaves = _leaf_list(reader)
        key = (str(cache_dir), tuple(_cache_name(r) if r.segment() is not None else f"empty{o}" for r, o in leaves),
               reader.doc_count_all())
        if cls._last is not None and cls._last[0] == key:
            return cls._last[1]
        cache = cls(reader, cache_dir)
        cls._last = (key, cache)
        return cache

    def __init__(self, reader, cache_dir):
        self._orders: dict[str, list[int]] = {}
        leaves = reader.leaf_readers() if not reader.is_atomic() else [(reader, 0)]
        self.segments = [(SegmentCache(r, cache_dir), offset) for r, offset in leaves]
        self.size = reader.doc_count_all()
        self.ids: list[str] = []
        cols = {c: array("i") for c in SegmentCache.COLUMNS}
        for cache, _ in self.segments:
            self.ids += cache.ids
            for c in SegmentCache.COLUMNS:
                cols[c] += cache.cols[c]
        self.year, self.n, self.evidence = cols["year"], cols["n"], cols["evidence"]
        self.dl = {f: cols[f"dl_{f}"] for f in SCORED_FIELDS}
        self.lengths = {f: cols[f"len_{f}"] for f in SCORED_FIELDS}
        self.avgdl = {f: reader.field_length(f) / (self.size or 1) for f in SCORED_FIELDS}
        self._avgdl_over: dict[int, dict[str, float]] = {}
        self.df_total = self.size
        self._np: dict = {}
        terms = {t for cache, _ in self.segments for t in cache.bits}
        self.bits = {t: sum(cache.bits.get(t, 0) << offset for cache, offset in self.segments) for t in terms}
        _prune_caches(cache_dir, {_cache_name(r) for r, _ in leaves if r.segment() is not None})

    def order(self, sort: str) -> list[int]:
        """Every docnum, best first for ``sort`` (ties by id), computed once per index version."""
        if sort not in self._orders:
            y, n, ev, ids = self.year, self.n, self.evidence, self.ids
            key = {"year": lambda d: (-y[d], -ev[d], ids[d]), "n": lambda d: (-n[d], -y[d], ids[d]),
                   "evidence": lambda d: (-ev[d], -y[d], ids[d])}[sort]
            self._orders[sort] = sorted(range(self.size), key=key)
        return self._orders[sort]

    def avgdl_over(self, population: int) -> dict[str, float]:
        """The average exact length of each scored field over the documents of ``population`` (a bitset)."""
        got = self._avgdl_over.get(population)
        if got is None:
            count = population.bit_count() or 1
            if "numpy" in sys.modules or self.size > 20_000:
                import numpy as np

                inside = _bool_array(population, self.size)
                got = {f: float(np.frombuffer(self.lengths[f], dtype=np.int32)[inside].sum()) / count
                       for f in SCORED_FIELDS}
            else:
                docs = [d for d in range(self.size) if population >> d & 1]
                got = {f: sum(self.lengths[f][d] for d in docs) / count for f in SCORED_FIELDS}
            if len(self._avgdl_over) >= 4:
                self._avgdl_over.pop(next(iter(self._avgdl_over)))
            self._avgdl_over[population] = got
        return got

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


class BitMatcher:
    """Which documents match a query, as a Python-int bitset (bit i = global docnum i).

    Term postings become bitsets once and are kept (per index version) for later queries;
    And, Or and Not are then single integer operations, and counting is int.bit_count(). Only
    phrases of arbitrary words still walk Whoosh's position-checking matcher.
    """

    _terms: "dict[tuple, int]" = {}
    _key: tuple = ()
    LIMIT = 4096

    def __init__(self, reader, cache: IndexCache):
        from whoosh import query as Q

        self.Q = Q
        self.reader = reader
        self.cache = cache
        key = tuple(_cache_name(r) for r, _ in _leaf_list(self.reader) if r.segment() is not None)
        if key != BitMatcher._key:
            BitMatcher._terms, BitMatcher._postings, BitMatcher._key = {}, {}, key
        self.live = self._live()

    def _live(self) -> int:
        everything = (1 << self.cache.size) - 1
        if not self.reader.has_deletions():
            return everything
        deleted = [offset + d for r, offset in _leaf_list(self.reader) for d in (r.deleted_docs_set or ())]
        return everything & ~_bitset(deleted, self.cache.size)

    def term(self, field: str, text: str) -> int:
        key = (field, text)
        bits = BitMatcher._terms.get(key)
        if bits is None:
            ids, _ = self.postings(field, text)
            bits = _bitset(ids, self.cache.size)
            if len(BitMatcher._terms) >= self.LIMIT:
                BitMatcher._terms.pop(next(iter(BitMatcher._terms)))
            BitMatcher._terms[key] = bits
        return bits

    def bits(self, q) -> int:
        return self._bits(q) & self.live

    def _bits(self, q) -> int:
        Q = self.Q
        if isinstance(q, Q.Term):
            return self.term(q.fieldname, q.text)
        if isinstance(q, Q.Every):
            return self.live
        if q is Q.NullQuery or isinstance(q, type(Q.NullQuery)):
            return 0
        if isinstance(q, Q.Not):
            return self.live & ~self._bits(q.query)
        if isinstance(q, Q.And):
            out = self.live
            for sub in q.subqueries:
                out &= self._bits(sub)
                if not out:
                    break
            return out
        if isinstance(q, Q.Or):
            out = 0
            for sub in q.subqueries:
                out |= self._bits(sub)
            return out
        if isinstance(q, Q.NumericRange) and q.fieldname == "n":
            low = q.start if q.start is not None else -(2 ** 31)
            high = q.end if q.end is not None else 2 ** 31
            return _bitset((d for d, v in enumerate(self.cache.n) if low <= v <= high), self.cache.size)
        return _bitset(self._whoosh_docs(q), self.cache.size)  # phrases: Whoosh checks positions

    def _whoosh_docs(self, q):
        from whoosh.searching import Searcher

        searcher = Searcher(self.reader, closereader=False)
        return list(searcher.docs_for_query(q))

    _postings: "dict[tuple, tuple]" = {}

    def postings(self, field: str, text: str):
        """(docnums, weights) of a term, as arrays; kept for later queries."""
        key = (field, text)
        got = BitMatcher._postings.get(key)
        if got is None:
            got = term_postings(self.reader, field, text)
            if len(BitMatcher._postings) >= self.LIMIT:
                BitMatcher._postings.pop(next(iter(BitMatcher._postings)))
            BitMatcher._postings[key] = got
        return got


def _scoring_leaves(q, boost: float = 1.0, out: list | None = None) -> list:
    """The (leaf query, boost) pairs that contribute to a score: text terms and phrases, not filters."""
    from whoosh import query as Q

    out = [] if out is None else out
    if isinstance(q, Q.Not):
        return out
    if isinstance(q, (Q.Term, Q.Phrase)) and q.fieldname in SCORED_FIELDS:
        out.append((q, boost * q.boost))
    elif _GROUP is not None and isinstance(q, _GROUP):
        out.append((q, boost * q.boost))
    elif isinstance(q, (Q.And, Q.Or)):
        for sub in q.subqueries:
            _scoring_leaves(sub, boost * q.boost, out)
    return out


def rank(reader, cache: IndexCache, matcher: BitMatcher, q, match_bits: int, want: int,
         population: int | None = None) -> list[tuple[int, float]]:
    """The best ``want`` (docnum, score) pairs among the matches, by BM25 over the weighted text.

    Scores are summed over the query's text terms (idf and average length from the whole index,
    so shards and segments never change a score); ties are ordered by record id. ``population``
    (a bitset), when it leaves documents out, is the collection the statistics are taken over:
    the records that are not drafts, so that importing drafts changes no default score.
    """
    import math

    n = cache.size
    part = population is not None and population != matcher.live
    if not want or not match_bits:
        return []
    leaves = _scoring_leaves(q)
    terms: list[tuple[str, str, float, object]] = []  # field, text, boost, phrase-match bits or None
    groups = []
    for leaf, boost in leaves:
        if _GROUP is not None and isinstance(leaf, _GROUP):
            groups.append((leaf, boost))
        elif hasattr(leaf, "words"):  # a phrase: its words score where the phrase itself matched
            where = matcher.bits(leaf)
            terms.extend((leaf.fieldname, word, boost, where) for word in leaf.words)
        else:
            terms.append((leaf.fieldname, leaf.text, boost, None))
    postings = [matcher.postings(f, t) for f, t, _, _ in terms]
    weights = []
    if part:
        docs, avgdl = population.bit_count(), cache.avgdl_over(population)
    else:
        docs, avgdl = n, cache.avgdl
    for (fname, text, boost, _), _ in zip(terms, postings):
        df = (matcher.term(fname, text) & population).bit_count() if part else reader.doc_frequency(fname, text)
        weights.append((boost * (math.log(docs / (df + 1)) + 1), avgdl[fname] or 1.0))
    grouped: dict[int, float] = {}
    for group, boost in groups:
        for d, sc in _group_scores(cache, matcher, group, boost, match_bits, population if part else matcher.live,
                                   docs, avgdl).items():
            grouped[d] = grouped.get(d, 0.0) + sc
    if _use_numpy(sum(len(ids) for ids, _ in postings), match_bits.bit_count()):
        scored = _scores_numpy(cache, terms, postings, weights, match_bits, n, want + 20, grouped)
    else:  # the same arithmetic, in Python: no numpy import for a cold search of a few terms
        scored = dict(grouped)
        for (fname, _, _, where), (ids, tfs), (idf, avg) in zip(terms, postings, weights):
            dl = cache.dl[fname]
            for d, tf in zip(ids, tfs):
                if match_bits >> d & 1 and (where is None or where >> d & 1):
                    scored[d] = scored.get(d, 0.0) + idf * (tf * (K1 + 1)) / (tf + K1 * ((1 - B) + B * dl[d] / avg))
        for d in _bits_not_in(match_bits, scored, n):  # matches that no scoring term touched
            scored[d] = 0.0
    ids = cache.ids
    if isinstance(scored, dict):
        items = scored.items()
        best = heapq.nsmallest(want + 20, items, key=lambda kv: (-round(kv[1], 9), ids[kv[0]]))
        best = [(float(sc), d) for d, sc in best]
    else:
        best = scored
    best.sort(key=lambda t: (-round(t[0], 9), ids[t[1]]))
    return [(d, sc) for sc, d in best[:want]]


def _group_scores(cache, matcher, group, boost: float, match_bits: int, population: int, docs: int,
                  avgdl: dict) -> dict[int, float]:
    """BM25 of a word and its other spellings as one term: per record, the length-normalised
    frequencies of the spellings summed (each times its weight relative to the word typed), one
    saturation, and the idf of the records holding any of them."""
    import math

    from whoosh import query as Q

    tfn: dict[int, float] = {}
    union = 0
    bonus: dict[int, float] = {}
    for sub in group.subqueries:
        rel = sub.boost
        if getattr(sub, "fieldname", None) == "tags":  # a topic tag: its idf, once, beside the words' saturated score
            tagged = matcher.term("tags", sub.text) & population
            idf_tag = math.log(docs / (tagged.bit_count() + 1)) + 1
            for d in _docs_of(tagged & match_bits, cache.size):
                bonus[d] = bonus.get(d, 0.0) + boost * rel * idf_tag
            continue
        words = [x.text for x in sub.subqueries] if isinstance(sub, Q.And) else getattr(sub, "words", None)
        fieldname = "text" if isinstance(sub, Q.And) else sub.fieldname
        if words:  # a phrase, or words apart: how often the rarest word occurs where all matched
            where = matcher.bits(sub)
            union |= where
            per = [dict(zip(*matcher.postings(fieldname, w))) for w in words]
            pairs = [(d, min(p.get(d, 0) for p in per)) for d in _docs_of(where & match_bits, cache.size)]
        else:
            union |= matcher.term(fieldname, sub.text)
            ids, tfs = matcher.postings(fieldname, sub.text)
            pairs = [(d, tf) for d, tf in zip(ids, tfs) if match_bits >> d & 1]
        dl, avg = cache.dl[fieldname], avgdl[fieldname] or 1.0
        for d, tf in pairs:
            if tf:
                tfn[d] = tfn.get(d, 0.0) + rel * tf / ((1 - B) + B * dl[d] / avg)
    idf = math.log(docs / ((union & population).bit_count() + 1)) + 1
    out = {d: boost * idf * t * (K1 + 1) / (t + K1) for d, t in tfn.items()}
    for d, extra in bonus.items():
        out[d] = out.get(d, 0.0) + extra
    return out


def _docs_of(bits: int, n: int) -> list[int]:
    raw = bits.to_bytes((n >> 3) + 1, "little")
    return [i * 8 + j for i, byte in enumerate(raw) if byte for j in range(8) if byte >> j & 1]


def _use_numpy(postings: int, matches: int) -> bool:
    """numpy once it is loaded (a warm process) or for large work; plain Python for a cold search
    of a few selective terms, where importing numpy would cost more than the arithmetic."""
    return "numpy" in sys.modules or postings > _PY_SCORING_MAX or matches > 20_000


def _bits_not_in(bits: int, scored: dict, n: int):
    """Set bits of ``bits`` missing from ``scored`` (called only for at most 20k matches)."""
    if bits.bit_count() == len(scored):
        return []
    raw = bits.to_bytes((n >> 3) + 1, "little")
    return [i * 8 + j for i, byte in enumerate(raw) if byte for j in range(8)
            if byte >> j & 1 and (i * 8 + j) not in scored]


def _scores_numpy(cache, terms, postings, weights, match_bits: int, n: int, keep: int,
                  grouped: dict[int, float] | None = None) -> list[tuple[float, int]]:
    import numpy as np

    if "dl" not in cache._np:
        cache._np["dl"] = {f: np.frombuffer(cache.dl[f], dtype=np.int32).astype(np.float64) for f in SCORED_FIELDS}
    dls = cache._np["dl"]
    scores = np.zeros(n, dtype=np.float64)
    for (fname, _, _, where), (ids, tfs), (idf, avg) in zip(terms, postings, weights):
        if not ids:
            continue
        docs = np.frombuffer(ids, dtype=np.int32)
        tf = np.frombuffer(tfs, dtype=np.float32).astype(np.float64)
        contrib = idf * (tf * (K1 + 1)) / (tf + K1 * ((1 - B) + B * dls[fname][docs] / avg))
        if where is not None:
            inside = _bool_array(where, n)[docs]
            docs, contrib = docs[inside], contrib[inside]
        scores[docs] += contrib
    if grouped:
        scores[np.fromiter(grouped.keys(), dtype=np.int64)] += np.fromiter(grouped.values(), dtype=np.float64)
    cand = np.flatnonzero(_bool_array(match_bits, n))
    cand_scores = scores[cand]
    if len(cand) > keep:  # the best `keep` (a margin past the page, so that ties at the cut sort by id)
        top = np.argpartition(-cand_scores, keep - 1)[:keep]
    else:
        top = np.arange(len(cand))
    return [(float(cand_scores[i]), int(cand[i])) for i in top]


def _bool_array(bits: int, n: int):
    import numpy as np

    raw = np.frombuffer(bits.to_bytes((n + 7) // 8 + 1, "little"), dtype=np.uint8)
    return np.unpackbits(raw, bitorder="little")[:n].astype(bool)


def _leaf_list(reader) -> list:
    return reader.leaf_readers() if not reader.is_atomic() else [(reader, 0)]


def _cache_name(reader) -> str:
    seg = reader.segment()
    return f"cache-{seg.indexname}-{seg.segment_id()}.pickle"


def _prune_caches(cache_dir, keep: set[str]) -> None:
    for p in cache_dir.glob("cache-*.pickle"):
        if p.name not in keep:
            p.unlink(missing_ok=True)


# -- snippets and suggestions ---------------------------------------------------------------

_MARK = re.compile(r'<(/?)(?:b|mark|strong)(?: class="[^"]*")?>')


def _highlight_terms(tree, vocab: Vocabulary) -> frozenset[str]:
    words: set[str] = set()
    for t in free_text(tree):
        for text in (t.text, *_expansions(vocab, t.text)):
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


def _suggest(words: list[str], known: dict[str, int], reader, vocab: Vocabulary) -> list[str]:
    out: list[str] = []
    for word in words:
        low = word.lower()
        stems = [w for w, _ in _analyze(word)]
        present = any(reader.doc_frequency(f, s) for s in stems for f in TEXT_BOOSTS)
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
    started = time.perf_counter()
    if req.sort not in SORTS:
        raise BadRequest(f"unknown sort '{req.sort}'", hint="sorts: " + ", ".join(SORTS))
    if req.match not in MATCHES:
        raise BadRequest(f"unknown match mode '{req.match}'", hint="modes: " + ", ".join(MATCHES))
    tree = request_tree(req, kb.vocab)
    idx = SearchIndex(kb)
    notices: list[str] = []
    pending = None
    if refresh:
        if idx.why_rebuild() is None:
            # the usual case: check for changed records while this search runs, and search
            # again only if something changed
            pending = idx.check_in_background()
        else:
            _apply_refresh(idx, None, notices, progress)
    with gc_paused():  # a search makes many objects and no garbage cycles worth collecting now
        try:
            reader = idx.open_reader()
        except Exception as e:  # noqa: BLE001 - a corrupt index is rebuilt once
            if isinstance(e, KbError):
                raise
            if pending is not None:
                pending()
                pending = None
            notices.append(f"the index could not be read ({type(e).__name__}); rebuilt it")
            idx.refresh(rebuild=True, progress=progress)
            reader = idx.open_reader()
        result = _run(kb, idx, reader, req, tree, notices, started)
    if pending is not None:
        check = pending()
        if check.needed:
            _apply_refresh(idx, check, notices, progress)
            result = _run(kb, idx, idx.open_reader(), req, tree, notices, started)
    return result


def _apply_refresh(idx: SearchIndex, check, notices: list[str], progress) -> None:
    try:
        report = idx.refresh(progress=progress, lock_timeout=0.5, checked=check)
        if report.rebuilt:
            notices.append(f"index {'built' if report.reason == 'no index yet' else 'rebuilt'} "
                           f"({report.reason}): {report.records} records")
    except IndexLocked:
        if idx.read_meta() is None:
            raise
        notices.append("another kb process is updating the index; these results may miss its latest changes")


def _run(kb: KnowledgeBase, idx: SearchIndex, reader, req: SearchRequest, tree, notices: list[str],
         started: float) -> SearchResult:
    notices = [*notices]
    invalid = idx.invalid_count()
    if invalid:
        notices.append(f"{invalid} record file{'s' * (invalid != 1)} with errors left out of the index; "
                       "`kb validate` lists them")
    try:
        match = req.match
        words = _free_count(natural(parse_query(req.query, kb.vocab), kb.vocab))
        if match == "auto":
            # counted without the question words: "is ketamine safe" needs both ketamine and safe
            match = "all" if words <= AUTO_ALL_MAX else "any"
        q = compile_query(tree, kb.vocab, match)
        sort = req.sort if (req.sort != "relevance" or free_text(tree)) else "evidence"
        cache = IndexCache.get(reader, idx.dir)
        matcher = BitMatcher(reader, cache)
        match_bits = matcher.bits(q)
        total = match_bits.bit_count()
        fell_back = False
        if not total and req.match == "auto" and match == "all" and words > 1:
            # a question whose words no record has all of ("does ketamine cause mania"): rank by how many
            match = "any"
            q = compile_query(tree, kb.vocab, match)
            match_bits = matcher.bits(q)
            total = match_bits.bit_count()
            fell_back = True
            if total:
                notices.append("no record has every word of the query; records with the most of them come first")
        want = req.offset + req.limit
        scores: dict[int, float] = {}
        if sort == "relevance":
            scope = status_scope(req, parse_query(req.query, kb.vocab), kb.vocab)
            population = matcher.bits(compile_query(scope, kb.vocab, match)) if scope is not None else None
            best = rank(reader, cache, matcher, q, match_bits, want, population)
            page_docs = [d for d, _ in best[req.offset:]]
            scores = dict(best)
        else:
            page_docs = []
            if want:
                for docnum in cache.order(sort):  # every document, best first for this sort
                    if match_bits >> docnum & 1:
                        page_docs.append(docnum)
                        if len(page_docs) == want:
                            break
                page_docs = page_docs[req.offset:]
        terms = _highlight_terms(tree, kb.vocab)
        hits = []
        for docnum in page_docs:
            stored = reader.stored_fields(docnum)
            meta = stored["meta"]
            stored = {"abstract": stored.get("abstract"), "key_finding": meta.get("key_finding"),
                      "title": meta.get("title"), "path": stored["path"]}
            score = scores.get(docnum)
            hits.append(Hit(
                id=meta["id"], score=round(score, 4) if score is not None else None,
                title=meta["title"], year=meta["year"], design=meta["design"], n=meta["n"],
                conditions=meta["conditions"], outcomes=meta["outcomes"], snippet=snippet(stored, terms),
                key_finding=meta["key_finding"], retracted=meta["retracted"], status=meta["status"],
                draft=meta["status"] == "draft",
                authors=meta["authors"], authors_truncated=meta["authors_truncated"], journal=meta["journal"],
                doi=meta["doi"], pmid=meta["pmid"], route=meta["route"], drug=meta["drug"], path=stored["path"]))
        facets = cache.facets(match_bits) if req.facets else {}
        suggestions: list[str] = []
        if total < 3 or fell_back:  # "ketamine ptsdd": did you mean ptsd
            words = [t.text for t in free_text(tree) if not t.phrase]
            suggestions = _suggest(words, idx.words(), reader, kb.vocab)
    finally:
        reader.close()
    return SearchResult(query=req.query, total=total, hits=hits, facets=facets, sort=sort, match=match,
                        limit=req.limit, offset=req.offset, notices=notices, suggestions=suggestions,
                        seconds=time.perf_counter() - started)
