"""Opening an index for reading: every shard and segment as one Whoosh reader."""

from __future__ import annotations


def _read_storage(path: str):
    """Whoosh file storage for searching: files opened with a 256 kB read buffer.

    A posting list is read block by block with a seek and a small read each; with Python's
    default 8 kB buffer that was ~40k read() calls (a third of a cold search) at 100k records.
    Memory-mapping is no answer: Whoosh then copies whole segment parts into memory.
    """
    from whoosh.filedb.filestore import FileStorage
    from whoosh.filedb.structfile import StructFile

    class BufferedStorage(FileStorage):
        def open_file(self, name, **kwargs):
            return StructFile(open(self._fpath(name), "rb", buffering=256 * 1024), name=name, **kwargs)

    return BufferedStorage(path, supports_mmap=False)


def open_reader(index_dir: str, shards: int):
    """One reader over every segment of every shard (one index as far as ranking is concerned)."""
    from whoosh import reading

    storage = _read_storage(index_dir)
    readers = []
    try:
        for i in range(shards):
            r = storage.open_index(f"s{i}").reader()
            # one flat list of segment readers: Whoosh's matchers do not nest multi-readers
            readers.extend(r.readers if isinstance(r, reading.MultiReader) else [r])
    except BaseException:
        for r in readers:
            r.close()
        raise
    return readers[0] if len(readers) == 1 else reading.MultiReader(readers)


def open_searcher(reader):
    """A Whoosh searcher over ``reader`` (for Whoosh's own matching of phrases)."""
    from whoosh.searching import Searcher

    return Searcher(reader)
