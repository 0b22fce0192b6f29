"""Ranking: BM25 over the weighted text, for the documents a query matched.

kb scores candidates itself rather than through Whoosh's searcher: posting lists are read whole
(kb/engine/postings.py), statistics are summed across shards and segments (so sharding never
changes a score) and can be taken over a part of the index (the records that are not drafts).
"""

from __future__ import annotations

import heapq
import sys

from .matching import BitMatcher
from .queries import is_group
from .segments import SCORED_FIELDS, IndexCache, bool_array

K1, B = 2.0, 0.75
"""BM25's term-frequency saturation and length normalisation. k1 = 2.0, the top of the usual 1.2-2.0
range: a word scored with its alternatives sums their frequencies, which k1 = 1.2 flattened. On the
MEDLINE benchmark MAP 0.5078 -> 0.5185, nDCG@10 0.676 -> 0.696, P@10 0.627 -> 0.647; every clinician
question that passed at 1.2 still passes."""
_PY_SCORING_MAX = 150_000
"""Up to this many postings, scores are summed in Python; beyond, with numpy (same arithmetic)."""


def _scoring_leaves(q, boost: float = 1.0, out: list | None = None) -> list:
    """The (leaf query, boost) pairs that contribute to a score: text terms and phrases, not filters."""
    from whoosh import query as Q

    out = [] if out is None else out
    if isinstance(q, Q.Not):
        return out
    if isinstance(q, (Q.Term, Q.Phrase)) and q.fieldname in SCORED_FIELDS:
        out.append((q, boost * q.boost))
    elif is_group(q):
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
        if is_group(leaf):
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
    if use_numpy(sum(len(ids) for ids, _ in postings), match_bits.bit_count()):
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


def use_numpy(postings: int, matches: int) -> bool:
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

    if "dl" not in cache.np_cache:
        cache.np_cache["dl"] = {f: np.frombuffer(cache.dl[f], dtype=np.int32).astype(np.float64) for f in SCORED_FIELDS}
    dls = cache.np_cache["dl"]
    scores = np.zeros(n, dtype=np.float64)
    for (fname, _, _, where), (ids, tfs), (idf, avg) in zip(terms, postings, weights):
        if not ids:
            continue
        docs = np.frombuffer(ids, dtype=np.int32)
        tf = np.frombuffer(tfs, dtype=np.float32).astype(np.float64)
        contrib = idf * (tf * (K1 + 1)) / (tf + K1 * ((1 - B) + B * dls[fname][docs] / avg))
        if where is not None:
            inside = bool_array(where, n)[docs]
            docs, contrib = docs[inside], contrib[inside]
        scores[docs] += contrib
    if grouped:
        scores[np.fromiter(grouped.keys(), dtype=np.int64)] += np.fromiter(grouped.values(), dtype=np.float64)
    cand = np.flatnonzero(bool_array(match_bits, n))
    cand_scores = scores[cand]
    if len(cand) > keep:  # the best `keep` (a margin past the page, so that ties at the cut sort by id)
        top = np.argpartition(-cand_scores, keep - 1)[:keep]
    else:
        top = np.arange(len(cand))
    return [(float(cand_scores[i]), int(cand[i])) for i in top]
