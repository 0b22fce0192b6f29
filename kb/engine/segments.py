"""Per-segment caches: what a search needs of every document, computed once per segment.

Whoosh segments never change once written, so each segment's facet bitsets and columns (ids,
year, n, evidence, field lengths) are computed on first use and kept beside the index as a
signed marshal file (plain data, read only when its signature is this user's kb's);
IndexCache joins the segments of every shard into one view in global docnums.
"""

from __future__ import annotations

import sys
from array import array

from ..files import read_marshal, write_marshal
from .postings import leaves

FACETS = ("condition", "outcome", "design", "year")
FACET_PREFIXES = ("condition=", "outcome=", "design=")
SCORED_FIELDS = ("text", "phrases")


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
        path = cache_dir / cache_name(reader)
        try:
            data = read_marshal(path)
            self.ids = data["ids"].split("\n") if size else []
            self.cols = {c: array("i", data[c]) for c in self.COLUMNS}
            self.bits = {t: int.from_bytes(b, "little") for t, b in data["bits"].items()}
            return
        except (OSError, EOFError, KeyError, AttributeError, ValueError, TypeError):  # Untrusted is a ValueError
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
                self.bits[term] = bitset(reader.postings("tags", term).all_ids(), size)
        bands: dict[str, list[int]] = {}
        for docnum, y in enumerate(self.cols["year"]):
            if y:
                start = y - y % 5
                bands.setdefault(f"year={start}-{start + 4}", []).append(docnum)
        for term, docs in bands.items():
            self.bits[term] = bitset(docs, size)
        data = {"ids": "\n".join(ids), **{c: self.cols[c].tobytes() for c in self.COLUMNS},
                "bits": {t: b.to_bytes((size >> 3) + 1, "little") for t, b in self.bits.items()}}
        try:
            write_marshal(path, data)
        except OSError:
            pass  # a read-only index still searches; it just recomputes


def bitset(docnums, size: int) -> int:
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
        segments = leaves(reader)
        key = (str(cache_dir), tuple(cache_name(r) if r.segment() is not None else f"empty{o}" for r, o in segments),
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
        self.np_cache: dict = {}
        terms = {t for cache, _ in self.segments for t in cache.bits}
        self.bits = {t: sum(cache.bits.get(t, 0) << offset for cache, offset in self.segments) for t in terms}
        _prune_caches(cache_dir, {cache_name(r) for r, _ in leaves if r.segment() is not None})

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

                inside = bool_array(population, self.size)
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


def bool_array(bits: int, n: int):
    import numpy as np

    raw = np.frombuffer(bits.to_bytes((n + 7) // 8 + 1, "little"), dtype=np.uint8)
    return np.unpackbits(raw, bitorder="little")[:n].astype(bool)


def cache_name(reader) -> str:
    seg = reader.segment()
    return f"cache-{seg.indexname}-{seg.segment_id()}.marshal"


def _prune_caches(cache_dir, keep: set[str]) -> None:
    for p in cache_dir.glob("cache-*.*"):
        if p.name not in keep:
            p.unlink(missing_ok=True)
