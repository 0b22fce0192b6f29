"""Record files on disk: finding them, their content hashes, and the manifest of their states.

The search index keeps a manifest of the record files it holds (``.kb/index/manifest.marshal`` with
``stamps.marshal`` beside it): a file whose size and mtime match it is unchanged; any other file is
hashed, and only a different hash counts as a change.
"""

from __future__ import annotations

import hashlib
import marshal
import os
from collections import namedtuple
from pathlib import Path

FileState = namedtuple("FileState", "size mtime_ns sha1 ok", defaults=(True,))
FileState.__doc__ = "(size, mtime_ns, sha1, ok) of a record file as indexed; ok is False when it has errors."


def scan(studies: Path) -> dict[str, tuple[int, int]]:
    """relative path -> (size, mtime_ns) for every record file, recursively (one stat each)."""
    out: dict[str, tuple[int, int]] = {}
    stack = [(str(studies), "")]
    stat = os.stat
    while stack:
        folder, prefix = stack.pop()
        try:
            fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except (FileNotFoundError, NotADirectoryError):
            continue
        try:
            with os.scandir(fd) as entries:
                names = []
                for e in entries:
                    name = e.name
                    if name.startswith("."):
                        continue
                    if e.is_dir(follow_symlinks=False):
                        stack.append((os.path.join(folder, name), f"{prefix}{name}/"))
                    elif name.endswith((".yaml", ".yml")):
                        names.append(name)
            for name in names:
                try:
                    st = stat(name, dir_fd=fd)
                except FileNotFoundError:
                    continue
                out[prefix + name] = (st.st_size, st.st_mtime_ns)
        finally:
            os.close(fd)
    return out


def sha1(path: Path) -> str:
    """The content hash of a file (what tells a changed record from a touched one)."""
    return hashlib.sha1(path.read_bytes()).hexdigest()


class gc_paused:
    """Pause the cyclic garbage collector while building large plain structures (no cycles):
    loading a 100k-entry manifest otherwise triggers several full collections."""

    def __enter__(self):
        import gc

        self._was = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc):
        import gc

        if self._was:
            gc.enable()


def read_stamps(manifest_path: Path) -> dict:
    """relative path -> (size, mtime_ns): all a no-change check needs."""
    with open(manifest_path.with_name("stamps.marshal"), "rb") as fh:
        return marshal.loads(fh.read())  # marshal.load(fh) reads in small pieces: 5x slower


def read_manifest(manifest_path: Path) -> dict:
    """relative path -> (size, mtime_ns, sha1, ok) tuples (cheap to load: no objects built)."""
    stamps = read_stamps(manifest_path)
    with open(manifest_path, "rb") as fh:
        info = marshal.loads(fh.read())
    return {rel: (*stamps[rel], *info[rel]) for rel in info}


def write_manifest(path: Path, manifest: dict[str, FileState]) -> None:
    """Two files: the stamps (for the no-change check) and the hashes and status."""
    for target, data in ((path.with_name("stamps.marshal"), {r: (f[0], f[1]) for r, f in manifest.items()}),
                         (path, {r: (f[2], f[3]) for r, f in manifest.items()})):
        tmp = target.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            marshal.dump(data, fh)
        os.replace(tmp, target)
