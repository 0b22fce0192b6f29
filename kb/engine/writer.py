"""Writing an index: one shard's writer, and the bulk writer that full builds use.

The bulk writer fills Whoosh's W3 posting blocks itself (it sets the postings writer's private
buffers), so it depends on Whoosh's on-disk format; tests/test_search.py proves that it writes
byte for byte the segments Whoosh's own writer writes. kb/engine/postings.py reads the same blocks.
"""

from __future__ import annotations

SEGMENT_DOCS = 5000
"""A full build commits a segment every this many records: Whoosh's commit costs grow faster than
linearly with segment size (1.2 ms per record up to ~5k, 1.9 ms at 10k, 2.2 ms at 20k here)."""


from .storage import check_seal, seal


class IndexBusy(Exception):
    """Another writer holds the shard's lock."""


class ShardWriter:
    """Writes documents into one shard (one Whoosh index in ``index_dir``, named ``name``).

    With a ``schema`` the shard is created and filled by the bulk writer, a segment every
    SEGMENT_DOCS records; without one the existing shard is opened and updated by Whoosh's own
    writer. Use it as a context manager: leaving it by an exception cancels what was not committed.
    Raises IndexBusy when another process is writing the shard.
    """

    def __init__(self, index_dir: str, name: str, *, schema=None, lock_timeout: float = 5.0):
        from whoosh.filedb.filestore import FileStorage

        storage = FileStorage(index_dir, supports_mmap=False)
        self.create = schema is not None
        self._dir = index_dir
        if not self.create:
            check_seal(index_dir)  # Whoosh unpickles the shard's table of contents on opening it
        self._ix = storage.create_index(schema, indexname=name) if self.create else storage.open_index(name)
        self._timeout = lock_timeout
        self._writer = self._new_writer()

    def _new_writer(self):
        from whoosh.index import LockError

        try:
            if self.create:
                return bulk_writer(self._ix, timeout=self._timeout)
            return self._ix.writer(limitmb=256, timeout=self._timeout)
        except LockError:
            raise IndexBusy(self._ix.indexname) from None

    def record(self, i: int) -> None:
        """Before the ``i``-th record (from 1): a full build starts a new segment every SEGMENT_DOCS."""
        if self.create and i % SEGMENT_DOCS == 0:
            from whoosh.writing import NO_MERGE

            self._writer.commit(mergetype=NO_MERGE)
            self._writer = self._new_writer()

    def put(self, doc: dict) -> None:
        """Add a document (an update replaces the one with the same path)."""
        if self.create:
            self._writer.add_document(**doc)
        else:
            self._writer.update_document(**doc)

    def delete(self, path: str) -> None:
        self._writer.delete_by_term("path", path)

    def commit(self) -> None:
        if self.create:
            from whoosh.writing import NO_MERGE

            self._writer.commit(mergetype=NO_MERGE)  # a full build seals the new index once it is whole
        else:
            self._writer.commit()
            seal(self._dir)  # an update: what it wrote may be read at once

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._writer.cancel()


def delete_documents(index_dir: str, name: str, paths: list[str], *, lock_timeout: float) -> None:
    """Delete the documents of ``paths`` from one shard, in one commit (IndexBusy when it is locked)."""
    from whoosh.filedb.filestore import FileStorage
    from whoosh.index import LockError

    check_seal(index_dir)
    ix = FileStorage(index_dir, supports_mmap=False).open_index(name)
    try:
        w = ix.writer(timeout=lock_timeout)
    except LockError:
        raise IndexBusy(name) from None
    for rel in paths:
        w.delete_by_term("path", rel)
    w.commit()
    seal(index_dir)


_BULK_WRITER = None


def bulk_writer(ix, **kwargs):
    """A Whoosh writer for full builds: the same segment files as Whoosh's own SegmentWriter, with
    less work per posting (measured 2.8 -> 2.0 ms per record per core at 100k).

    Whoosh's writer sends every posting through an external-sort pool as a tuple, then looks each
    posting's field length up again from the column file it just wrote. A full build needs neither:
    documents arrive in docnum order, so postings are kept per term in memory (one segment is at most
    SEGMENT_DOCS records) and lengths are known when the document is added. The pre-analysed ``text``
    field (most of the postings) is turned into positions in one loop instead of through Whoosh's
    token objects. tests/test_search.py checks that both writers produce the same index.
    """
    global _BULK_WRITER
    if _BULK_WRITER is None:
        _BULK_WRITER = _make_bulk_writer()
    return _BULK_WRITER(ix, **kwargs)


def _make_bulk_writer():
    from pickle import dumps

    from whoosh.system import emptybytes, pack_uint
    from whoosh.util.numeric import byte_to_length, length_to_byte
    from whoosh.writing import SegmentWriter

    def quantised(length: int) -> int:
        # what Whoosh's writer passes on: the length as stored in the one-byte lengths column
        return byte_to_length(length_to_byte(length)) if length else 0

    single: dict[int, bytes] = {}  # position -> the pickled positions of a term seen once, there
    one = pack_uint(1)

    class BulkWriter(SegmentWriter):
        def __init__(self, ix, **kwargs):
            super().__init__(ix, **kwargs)
            self._terms: dict[str, dict[bytes, list]] = {}

        def add_document(self, **fields):
            self._check_state()
            schema, docnum, perdoc = self.schema, self.docnum, self.perdocwriter
            perdoc.start_doc(docnum)
            for name in sorted(fields):
                value = fields[name]
                if value is None:
                    continue
                fieldobj = schema[name]
                length = 0
                if fieldobj.indexed:
                    terms = self._terms.get(name)
                    if terms is None:
                        terms = self._terms[name] = {}
                    if name == "text":  # pre-analysed tokens: positions in one pass
                        poses: dict[str, list[int]] = {}
                        for pos, tok in enumerate(value):
                            p = poses.get(tok)
                            if p is None:
                                poses[tok] = [pos]
                            else:
                                p.append(pos)
                        length = len(value)
                        qlen = quantised(length)
                        for tok, p in poses.items():
                            if len(p) == 1:  # most terms: one position, its pickle cached
                                pickled = single.get(p[0])
                                if pickled is None:
                                    pickled = single[p[0]] = dumps(p, 2)
                                # a new bytes object each time: a block's pickle would otherwise
                                # memoise repeats and differ from Whoosh's own bytes
                                posting = (docnum, 1.0, one + pickled, qlen)
                            else:
                                deltas = [p[0]] + [b - a for a, b in zip(p, p[1:])]
                                posting = (docnum, float(len(p)), pack_uint(len(p)) + dumps(deltas, 2), qlen)
                            key = tok.encode("utf-8")
                            lst = terms.get(key)
                            if lst is None:
                                terms[key] = [posting]
                            else:
                                lst.append(posting)
                    else:
                        items = list(fieldobj.index(value))
                        if fieldobj.scorable:
                            length = sum(freq for _, freq, _, _ in items)
                        qlen = quantised(length) if fieldobj.scorable else 0
                        for key, _, weight, vbytes in items:
                            posting = (docnum, weight, vbytes if vbytes is not None else emptybytes, qlen)
                            lst = terms.get(key)
                            if lst is None:
                                terms[key] = [posting]
                            else:
                                lst.append(posting)
                perdoc.add_field(name, fieldobj, value if fieldobj.stored else None, length)
                column = fieldobj.column_type
                if column and value is not None:
                    perdoc.add_column_value(name, column, fieldobj.to_column_value(value))
            perdoc.finish_doc()
            self._added = True
            self.docnum += 1

        def _flush_segment(self):
            self.perdocwriter.close()
            fw = self.fieldwriter
            start_term, finish_term = fw.start_term, fw.finish_term
            for name in sorted(self._terms):
                terms = self._terms[name]
                fw.start_field(name, self.schema[name])
                for key in sorted(terms):
                    start_term(key)
                    _fill_blocks(fw._postwriter, terms[key])
                    finish_term()
                fw.finish_field()
            fw.close()
            self._terms = {}

    def _fill_blocks(pw, postings: list) -> None:
        """What W3PostingsWriter.add_posting does for each posting, a block at a time: a block is
        written when full, the last one stays buffered for finish_postings (which may inline it)."""
        limit = pw._blocklimit
        for start in range(0, len(postings), limit):
            if start:
                pw._write_block()
            chunk = postings[start:start + limit]
            ids, weights, values, lengths = zip(*chunk)
            pw._ids.extend(ids)
            pw._weights.extend(weights)
            pw._values.extend(v for v in values if v)
            pw._maxweight = max(pw._maxweight, *weights)
            lengths = [n for n in lengths if n]
            if lengths:
                low = min(lengths)
                pw._minlength = low if pw._minlength is None else min(pw._minlength, low)
                pw._maxlength = max(pw._maxlength, *lengths)

    return BulkWriter
