"""`kb search`: run a query against the index and shape the results.

A request becomes a query tree (kb.query, parsed once), which this module
turns into the engine's query objects (with vocabulary expansion); kb.engine
matches, ranks, sorts and counts facets; this module shapes the hits, their
highlighted snippets and "did you mean" suggestions.
"""

from __future__ import annotations

import datetime
import difflib
import html
import re
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Callable

from . import engine
from .config import KnowledgeBase
from .errors import BadRequest, KbError
from .files import gc_paused
from .index import TEXT_BOOSTS, IndexLocked, IndexReadOnly, SearchIndex, analyzer, known_phrases, stems, tag
from .records import MIN_YEAR as RECORD_MIN_YEAR
from .query import (STATUS_ANY, Bool, Filter, Not, Range, Text, filter_node, free_text, names_status, parse_query,
                    parse_range)
from .vocab import Vocabulary, fold

SORTS = ("relevance", "year", "n", "evidence")
MATCHES = ("auto", "all", "any")
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
    toks = _analyze(text)
    if not toks:
        return []
    words = [w for w, _ in toks]
    if len(words) == 1:
        return [engine.term("text", words[0], boost=weight)]
    if tuple(words) in known or _HYPHENATED_WORD.fullmatch(text.strip()):
        return [engine.term("phrases", " ".join(words), boost=weight)]  # indexed as one term: no position checks
    # the text field holds stems without stopwords, one position each: the phrase's stems are adjacent
    return [engine.phrase("text", words, slop=1, boost=weight)]


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
                folded = fold(text)
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
            if all(isinstance(x, Text) and not x.phrase for x in run) and fold(" ".join(x.text for x in run)) in known:
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
        clauses.append(engine.all_of([engine.term("text", w) for w in typed], boost=APART_WEIGHT))
    if clauses:
        # the topics the word names: itself or its abbreviation (side effects, dose), or its
        # expansion entry when that entry is named after a topic (safety, durability, dosing)
        names = (t.text, *variants, *_expansion_table(vocab).get(_analysed(t.text), ()))
        topics = {vocab.canonical("topic", x) for x in names} - {None}
        clauses.extend(engine.term("tags", tag("topic", tp), boost=TOPIC_BONUS) for tp in sorted(topics))
    if not clauses:
        return None
    if len(clauses) == 1:
        return clauses[0]
    # one word as typed with its other spellings: matched as any of them, scored as one term
    return engine.group(clauses, boost=max(1, len(typed)))  # joined words weigh as much as they did apart


def _filter_query(f: Filter):
    if f.field == "title":
        words = [w for w, _ in _analyze(f.values[0])]
        return engine.all_of([engine.term("title", w) for w in words]) if words else engine.nothing()
    if f.field == "status" and STATUS_ANY in f.values:
        return engine.every()
    if f.field == "id":
        terms = [engine.term("id", v) for v in f.values]
    else:
        terms = [engine.term("tags", tag(f.field, v)) for v in f.values]
    return terms[0] if len(terms) == 1 else engine.any_of(terms)


def _range_query(r: Range):
    if r.field == "year":
        low = max(r.low if r.low is not None else MIN_YEAR, MIN_YEAR)
        high = min(r.high if r.high is not None else MAX_YEAR, MAX_YEAR)
        terms = [engine.term("tags", tag("year", y)) for y in range(low, high + 1)]
        return engine.any_of(terms) if len(terms) > 1 else (terms[0] if terms else engine.nothing())
    low = r.low
    if low is None or low < 0:
        low = 0  # unknown sample sizes are stored as -1 and never match an n: filter
    return engine.numeric_range("n", low, r.high)


def compile_query(node, vocab: Vocabulary, match: str):
    """The engine's query for a tree; ``match`` is 'all' or 'any' for adjacent free-text terms."""
    if node is None:
        return engine.every()
    if isinstance(node, Text):
        return text_query(node, vocab) or engine.nothing()
    if isinstance(node, Filter):
        return _filter_query(node)
    if isinstance(node, Range):
        return _range_query(node)
    if isinstance(node, Not):
        return engine.negation(compile_query(node.node, vocab, match))
    assert isinstance(node, Bool)
    if node.op == "or":
        return engine.any_of([compile_query(i, vocab, match) for i in node.items])
    if node.op == "and":
        parts = [compile_query(i, vocab, match) for i in node.items]
        return _and(parts)
    required = [compile_query(i, vocab, match) for i in node.items if isinstance(i, (Filter, Range, Not))]
    free = [compile_query(i, vocab, match) for i in node.items if not isinstance(i, (Filter, Range, Not))]
    free = [q for q in free if not engine.is_nothing(q)]
    if free:
        if match == "any" and len(free) > 1:
            required.insert(0, engine.any_of(free))
        else:
            required = free + required
    return _and(required)


def _and(parts: list):
    parts = [p for p in parts if not engine.is_nothing(p)]
    if not parts:
        return engine.nothing()
    if all(engine.is_negation(p) for p in parts):
        parts.insert(0, engine.every())
    return parts[0] if len(parts) == 1 else engine.all_of(parts)


def parse_request(req: SearchRequest, vocab: Vocabulary):
    """The query text as a clinician means it (see :func:`natural`): parsed once per search."""
    return natural(parse_query(req.query, vocab), vocab)


def request_tree(req: SearchRequest, node, vocab: Vocabulary):
    """The query tree for the parsed query text ``node`` plus the CLI filter options."""
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


# -- snippets and suggestions ---------------------------------------------------------------

_MARK = re.compile(r'<(/?)(?:b|mark|strong)(?: class="[^"]*")?>')


def _highlight_terms(tree, vocab: Vocabulary) -> frozenset[str]:
    words: set[str] = set()
    for t in free_text(tree):
        for text in (t.text, *_expansions(vocab, t.text)):
            words.update(w for w, _ in _analyze(text))
    return frozenset(words)


def snippet(stored: dict, terms: frozenset[str]) -> str:
    global _ANALYZER
    if _ANALYZER is None:
        _ANALYZER = analyzer()
    if terms:
        for fname in ("abstract", "key_finding", "title"):
            text = stored.get(fname) or ""
            if not text:
                continue
            out = engine.highlight(text, terms, _ANALYZER, maxchars=240, surround=70, tagname="mark", between=" … ",
                                   top=2)
            if out:
                return _MARK.sub(lambda m: f"<{m.group(1)}mark>", out)
    kf = stored.get("key_finding") or stored.get("title") or ""
    return html.escape(kf[:240] + ("…" if len(kf) > 240 else ""))


def _suggest(words: list[str], known: dict[str, int], view: engine.IndexView, vocab: Vocabulary) -> list[str]:
    out: list[str] = []
    for word in words:
        low = word.lower()
        stems = [w for w, _ in _analyze(word)]
        present = any(view.doc_frequency(f, s) for s in stems for f in TEXT_BOOSTS)
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


MAX_NESTING = 32  # parentheses or NOTs deep: far beyond any real question, far below Python's recursion limit
NESTING_HINT = f"a query may nest parentheses and NOT at most {MAX_NESTING} deep; write it flatter"


def check_nesting(query: str | None) -> None:
    """Refuse a query nested deeper than :data:`MAX_NESTING` (parentheses, or NOT/- chains) before parsing:
    a usage error, not a RecursionError."""
    depth = deepest = 0
    for ch in query or "":
        if ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth = max(0, depth - 1)
    nots = max((len(m.group(0).split()) for m in re.finditer(r"(?:(?:\bNOT\b|-)\s*){2,}", query or "")), default=0)
    if deepest > MAX_NESTING or nots > MAX_NESTING:
        raise BadRequest(f"the query is nested {max(deepest, nots)} deep", hint=NESTING_HINT)


def search(kb: KnowledgeBase, req: SearchRequest, *, refresh: bool = True,
           progress: Callable[[int, int], None] | None = None) -> SearchResult:
    """Search ``kb``, refreshing its index first when records changed."""
    started = time.perf_counter()
    if req.sort not in SORTS:
        raise BadRequest(f"unknown sort '{req.sort}'", hint="sorts: " + ", ".join(SORTS))
    if req.match not in MATCHES:
        raise BadRequest(f"unknown match mode '{req.match}'", hint="modes: " + ", ".join(MATCHES))
    check_nesting(req.query)
    try:
        node = parse_request(req, kb.vocab)
        tree = request_tree(req, node, kb.vocab)
    except RecursionError:
        raise BadRequest("the query is nested too deeply", hint=NESTING_HINT) from None
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
            reader = _reopen(idx, e, notices, progress)
        result = _run(kb, idx, reader, req, node, tree, notices, started)
    if pending is not None:
        check = pending()
        if check.needed:
            _apply_refresh(idx, check, notices, progress)
            # another kb process may be writing the index meanwhile (this refresh then left it alone)
            try:
                reader = idx.open_reader()
            except Exception as e:  # noqa: BLE001 - as above
                if isinstance(e, KbError):
                    raise
                reader = _reopen(idx, e, notices, progress)
            result = _run(kb, idx, reader, req, node, tree, notices, started)
    return result


def _reopen(idx: SearchIndex, error: Exception, notices: list[str], progress):
    """The reader, after a first look at the index failed (a segment another kb process has written but
    not yet sealed, or a damaged index): opened under the writer's lock, rebuilt if it still fails."""
    reader, rebuilt = idx.reopen(progress=progress)
    if rebuilt:
        notices.append(f"the index could not be read ({type(error).__name__}); rebuilt it")
    return reader


def _apply_refresh(idx: SearchIndex, check, notices: list[str], progress) -> None:
    try:
        report = idx.refresh(progress=progress, lock_timeout=0.5, checked=check)
        for p in report.problems[:3]:  # the reasons, as this refresh found them (kb validate lists them all)
            notices.append(f"left out of the index: {p.format()}")
        if report.rebuilt:
            notices.append(f"index {'built' if report.reason == 'no index yet' else 'rebuilt'} "
                           f"({report.reason}): {report.records} records")
    except IndexLocked:
        if idx.read_meta() is None:  # no index to search meanwhile: wait for the one being built
            idx.refresh(progress=progress, lock_timeout=600.0)
            return
        notices.append("another kb process is updating the index; these results may miss its latest changes")
    except IndexReadOnly as e:
        if idx.read_meta() is None:
            raise
        notices.append(f"{e.message}: these results may miss the latest changes to the records")


def _run(kb: KnowledgeBase, idx: SearchIndex, reader, req: SearchRequest, node, tree, notices: list[str],
         started: float) -> SearchResult:
    """One search of an open index: ``node`` is the parsed query text, ``tree`` it with the filters."""
    notices = [*notices]
    invalid = idx.invalid_count()
    if invalid:
        notices.append(f"{invalid} record file{'s' * (invalid != 1)} with errors left out of the index; "
                       "`kb validate` lists them")
    try:
        match = req.match
        words = _free_count(node)
        if match == "auto":
            # counted without the question words: "is ketamine safe" needs both ketamine and safe
            match = "all" if words <= AUTO_ALL_MAX else "any"
        q = compile_query(tree, kb.vocab, match)
        sort = req.sort if (req.sort != "relevance" or free_text(tree)) else "evidence"
        view = engine.IndexView(reader, idx.dir)
        match_bits = view.matches(q)
        total = match_bits.bit_count()
        fell_back = False
        if not total and req.match == "auto" and match == "all" and words > 1:
            # a question whose words no record has all of ("does ketamine cause mania"): rank by how many
            match = "any"
            q = compile_query(tree, kb.vocab, match)
            match_bits = view.matches(q)
            total = match_bits.bit_count()
            fell_back = True
            if total:
                notices.append("no record has every word of the query; records with the most of them come first")
        want = req.offset + req.limit
        scores: dict[int, float] = {}
        if sort == "relevance":
            scope = status_scope(req, node, kb.vocab)
            population = view.matches(compile_query(scope, kb.vocab, match)) if scope is not None else None
            best = view.rank(q, match_bits, want, population)
            page_docs = [d for d, _ in best[req.offset:]]
            scores = dict(best)
        else:
            page_docs = []
            if want:
                for docnum in view.order(sort):  # every document, best first for this sort
                    if match_bits >> docnum & 1:
                        page_docs.append(docnum)
                        if len(page_docs) == want:
                            break
                page_docs = page_docs[req.offset:]
        terms = _highlight_terms(tree, kb.vocab)
        hits = []
        for docnum in page_docs:
            stored = view.stored_fields(docnum)
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
        facets = view.facets(match_bits) if req.facets else {}
        suggestions: list[str] = []
        if total < 3 or fell_back:  # "ketamine ptsdd": did you mean ptsd
            words = [t.text for t in free_text(tree) if not t.phrase]
            suggestions = _suggest(words, idx.words(), view, kb.vocab)
    finally:
        reader.close()
    return SearchResult(query=req.query, total=total, hits=hits, facets=facets, sort=sort, match=match,
                        limit=req.limit, offset=req.offset, notices=notices, suggestions=suggestions,
                        seconds=time.perf_counter() - started)
