"""Matching: which documents a query matches, as a bitset."""

from __future__ import annotations

from .postings import leaves, term_postings
from .segments import IndexCache, bitset, cache_name


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
        key = tuple(cache_name(r) for r, _ in leaves(self.reader) if r.segment() is not None)
        if key != BitMatcher._key:
            BitMatcher._terms, BitMatcher._postings, BitMatcher._key = {}, {}, key
        self.live = self._live()

    def _live(self) -> int:
        everything = (1 << self.cache.size) - 1
        if not self.reader.has_deletions():
            return everything
        deleted = [offset + d for r, offset in leaves(self.reader) for d in (r.deleted_docs_set or ())]
        return everything & ~bitset(deleted, self.cache.size)

    def term(self, field: str, text: str) -> int:
        key = (field, text)
        bits = BitMatcher._terms.get(key)
        if bits is None:
            ids, _ = self.postings(field, text)
            bits = bitset(ids, self.cache.size)
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
            return bitset((d for d, v in enumerate(self.cache.n) if low <= v <= high), self.cache.size)
        return bitset(self._whoosh_docs(q), self.cache.size)  # phrases: Whoosh checks positions

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
