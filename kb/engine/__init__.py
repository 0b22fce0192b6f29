"""kb's search engine: everything that knows Whoosh's internals sits in this package.

whoosh-reloaded has had no release since February 2024, and kb reaches past its public API for
speed (a bulk writer that fills Whoosh's posting blocks, a decoder that reads them back, BM25
computed by kb over bitsets). All of that is here, so that a Whoosh fork or another engine touches
this package only. kb.index says what is indexed (the schema, the analysis, each record's
document) and keeps the index up to date through ShardWriter; kb.search says what a query means
and calls the query builders and IndexView below.

    writer.py     ShardWriter (one shard's writer), the bulk writer, SEGMENT_DOCS
    storage.py    open_reader: every shard and segment as one reader (buffered files); the seal that
                  lets Whoosh read only files this user's kb wrote (check_seal, seal)
    postings.py   term_postings: a term's posting list decoded from the W3 format in one read
    segments.py   per-segment caches (facet bitsets, columns, field lengths) and IndexCache
    matching.py   BitMatcher: a query's matches as a bitset
    scoring.py    rank: BM25 of the matches, statistics summed across shards
    queries.py    the query objects kb.search compiles a query tree into
    highlight.py  snippets' highlighting
"""

from __future__ import annotations

from .highlight import highlight
from .matching import BitMatcher
from .postings import leaves, term_postings
from .queries import (all_of, any_of, every, group, is_negation, is_nothing, negation, nothing, numeric_range,
                      phrase, term)
from .scoring import rank
from .segments import FACETS, SCORED_FIELDS, IndexCache
from .storage import Untrusted, check_seal, open_reader, open_searcher, seal
from .writer import SEGMENT_DOCS, IndexBusy, ShardWriter, bulk_writer, delete_documents

__all__ = [
    "BitMatcher", "FACETS", "IndexBusy", "IndexCache", "IndexView", "SCORED_FIELDS", "SEGMENT_DOCS", "ShardWriter",
    "all_of", "any_of", "bulk_writer", "delete_documents", "every", "group", "highlight", "is_negation", "is_nothing",
    "leaves", "negation", "nothing", "numeric_range", "open_reader", "open_searcher", "phrase", "rank", "seal",
    "term", "term_postings", "Untrusted", "check_seal",
]


class IndexView:
    """An open index as one search uses it: matches as bitsets, ranking, sort orders, facets and
    stored fields. ``reader`` comes from :func:`open_reader`; the caller closes it."""

    def __init__(self, reader, cache_dir):
        self.reader = reader
        self.cache = IndexCache.get(reader, cache_dir)
        self.matcher = BitMatcher(reader, self.cache)

    def matches(self, q) -> int:
        """The documents ``q`` matches, as a bitset (bit i = docnum i), deleted ones left out."""
        return self.matcher.bits(q)

    def rank(self, q, match_bits: int, want: int, population: int | None = None) -> list[tuple[int, float]]:
        """The best ``want`` (docnum, score) pairs of ``match_bits`` for ``q`` (see scoring.rank)."""
        return rank(self.reader, self.cache, self.matcher, q, match_bits, want, population)

    def order(self, sort: str) -> list[int]:
        """Every docnum, best first by ``sort`` (year, n or evidence)."""
        return self.cache.order(sort)

    def facets(self, match_bits: int) -> dict[str, dict[str, int]]:
        """Counts per value of each of FACETS among ``match_bits``."""
        return self.cache.facets(match_bits)

    def stored_fields(self, docnum: int) -> dict:
        return self.reader.stored_fields(docnum)

    def doc_frequency(self, field: str, text: str) -> int:
        return self.reader.doc_frequency(field, text)
