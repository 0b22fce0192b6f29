"""Opening an index for reading: every shard and segment as one Whoosh reader; and the seal that
lets Whoosh read only files this user's kb wrote.

Whoosh keeps its table of contents, schema, posting blocks and stored fields as pickles, and
unpickling runs code: an index that came from elsewhere (a ``.kb/`` committed to a repository, an
archive, a shared folder) could run any command on ``kb search``. So every Whoosh file of an index
is sealed when kb writes it: ``kb-seal`` lists each file's size, mtime, ctime and inode and an
HMAC-SHA256 of its content, under the key of :func:`kb.files.cache_key` (outside every knowledge
base), and is itself signed. Before Whoosh opens an index, :func:`check_seal` compares every file
with the seal: a file whose stat is the sealed one is trusted without reading it (its ctime cannot
be set back without root: any write changes it); a file whose stat differs (a copy) is read and its
HMAC compared; a file the seal does not list, or one that fails, makes the whole index untrusted
(:class:`Untrusted`), and kb rebuilds it. kb's own caches beside it are signed files themselves.
"""

from __future__ import annotations

import hmac
import json
import os
from pathlib import Path

from ..files import Untrusted, cache_key, read_signed, write_signed

SEAL = "kb-seal"
OWN = ("kb-seal", "kb-index.json", "manifest.marshal", "stamps.marshal", "words.marshal", "cache-")
"""kb's own files in an index folder: JSON (data only) or signed caches, checked when read."""


def _whoosh_files(index_dir: Path) -> list[str]:
    """The files of the folder that Whoosh may read: not kb's own, temporary or lock files, nor a writer's
    temporary folder (a symbolic link is listed, whatever it points at)."""
    with os.scandir(index_dir) as entries:
        return sorted(e.name for e in entries if not e.name.startswith(OWN) and not e.name.startswith(".")
                      and not e.name.endswith("LOCK") and not e.is_dir(follow_symlinks=False))


def _mac(path: Path) -> str:
    h = hmac.new(cache_key(), path.name.encode() + b"\0", "sha256")
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _identity(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _read_seal(index_dir: Path) -> dict:
    try:
        return json.loads(bytes(read_signed(index_dir / SEAL)))
    except FileNotFoundError:
        raise Untrusted(f"{index_dir}: the index has no seal (not written by this user's kb)") from None
    except (OSError, ValueError) as e:
        raise Untrusted(f"{index_dir}: the index's seal does not hold ({e})") from None


def seal(index_dir: str | Path) -> None:
    """Seal every Whoosh file of the index (after kb wrote to it): a file sealed before with the same
    stat keeps its entry, the others are read and signed."""
    index_dir = Path(index_dir)
    try:
        old = _read_seal(index_dir)
    except Untrusted:
        old = {}
    entries = {}
    for name in _whoosh_files(index_dir):
        path = index_dir / name
        ident = _identity(os.stat(path))
        prev = old.get(name)
        entries[name] = prev if prev and prev[:4] == ident else [*ident, _mac(path)]
    write_signed(index_dir / SEAL, json.dumps(entries, sort_keys=True).encode())


def check_seal(index_dir: str | Path) -> None:
    """Raise :class:`Untrusted` unless every file Whoosh may read in ``index_dir`` is as kb sealed it."""
    index_dir = Path(index_dir)
    entries = _read_seal(index_dir)
    for name in _whoosh_files(index_dir):
        entry = entries.get(name)
        if entry is None:
            raise Untrusted(f"{index_dir / name}: not in the index's seal (not written by this user's kb)")
        path = index_dir / name
        try:
            ident = _identity(os.stat(path))
        except FileNotFoundError:
            continue  # removed by a writer meanwhile: Whoosh will not read it
        if ident != entry[:4] and not hmac.compare_digest(_mac(path), entry[4]):
            raise Untrusted(f"{path}: changed since kb wrote it")


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

    check_seal(index_dir)
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
