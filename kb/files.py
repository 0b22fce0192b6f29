"""Files on disk: finding the record files, their content hashes, the manifest of their states,
writing a file whole or not at all, and the pools of worker processes that read them.

The search index keeps a manifest of the record files it holds (``.kb/index/manifest.marshal`` with
``stamps.marshal`` beside it): a file whose size and mtime match it is unchanged; any other file is
hashed, and only a different hash counts as a change.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
from collections import namedtuple
from pathlib import Path
from typing import IO, Any, Iterator

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


def umask() -> int:
    """The process's umask, read without changing it (Linux: /proc/self/status; elsewhere it is set
    and restored at once)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "wb", *, fsync: bool = False, overwrite: bool = True,
                 exclusive: bool = False, encoding: str | None = None, newline: str | None = None) -> Iterator[IO]:
    """``with atomic_write(path) as fh: fh.write(data)``: a reader sees the old file or the new one, never half a file.

    The block writes a temporary file in the same folder (``.<name>.<pid>.tmp``), which is renamed
    over ``path`` when the block ends without an error; on any error (an interrupt too) it is
    removed and ``path`` stays as it was. ``mode`` is ``"wb"`` or ``"w"`` (with ``encoding`` and
    ``newline`` as for :func:`open`).

    - ``fsync``: flush the file to the disk before it takes its place.
    - ``overwrite=False``: never replace an existing file; the temporary file is linked into place
      (atomic create-if-absent) and :class:`FileExistsError` is raised if ``path`` exists.
    - ``exclusive``: make the temporary file with :func:`tempfile.mkstemp` (a random name no other
      writer can take). mkstemp makes it owner-only; it is given the permissions a plain ``open``
      would (0666 less the umask: 0644 under umask 022), or those of the file it replaces.
    """
    path = Path(path)
    if exclusive:
        import tempfile

        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        tmp = Path(name)
        try:
            perm = os.stat(path).st_mode & 0o7777 if overwrite else None
        except OSError:
            perm = None
        try:
            os.fchmod(fd, 0o666 & ~umask() if perm is None else perm)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
    else:
        fd, tmp = None, path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with (open(tmp, mode, encoding=encoding, newline=newline) if fd is None
              else os.fdopen(fd, mode, encoding=encoding, newline=newline)) as fh:
            fd = None
            yield fh
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # atomic create-if-absent: FileExistsError when path exists
            os.unlink(tmp)
    except BaseException:
        if fd is not None:  # mkstemp's file was never opened
            os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_marshal(path: Path) -> Any:
    """The plain data of a marshal file (kb's own caches: only ever data kb wrote)."""
    with open(path, "rb") as fh:
        return marshal.loads(fh.read())  # marshal.load(fh) reads in small pieces: 3-5x slower


def write_marshal(path: Path, data: Any) -> None:
    """Write plain data as a marshal file (4x faster than pickle for plain data), atomically."""
    with atomic_write(path) as fh:
        marshal.dump(data, fh)


def read_stamps(manifest_path: Path) -> dict:
    """relative path -> (size, mtime_ns): all a no-change check needs."""
    return read_marshal(manifest_path.with_name("stamps.marshal"))


def read_manifest(manifest_path: Path) -> dict:
    """relative path -> (size, mtime_ns, sha1, ok) tuples (cheap to load: no objects built)."""
    stamps = read_stamps(manifest_path)
    info = read_marshal(manifest_path)
    return {rel: (*stamps[rel], *info[rel]) for rel in info}


def write_manifest(path: Path, manifest: dict[str, FileState]) -> None:
    """Two files: the stamps (for the no-change check) and the hashes and status."""
    write_marshal(path.with_name("stamps.marshal"), {r: (f[0], f[1]) for r, f in manifest.items()})
    write_marshal(path, {r: (f[2], f[3]) for r, f in manifest.items()})


# -- pools of worker processes ---------------------------------------------------------------


def fork_context():
    """The multiprocessing context for kb's worker processes: fork where the platform has it (a
    worker starts with everything this process has loaded, at no cost), else the platform's default."""
    import multiprocessing as mp  # here, not at the top: a cold search never needs it

    return mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()


def worker_pool(max_workers: int, **kwargs):
    """A :class:`concurrent.futures.ProcessPoolExecutor` of ``max_workers`` processes started by
    :func:`fork_context` (``kwargs``: its initializer and initargs)."""
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=max_workers, mp_context=fork_context(), **kwargs)


# -- append-only files (the screening decisions) ------------------------------------------------


def append_line(path: Path, line: str) -> None:
    """Append one line of text to ``path`` (made if absent) and flush it to the disk before returning,
    so a crash right after loses nothing. The file is opened with O_APPEND: a line is written in one
    ``write`` at the end of the file, never over what is there. A file whose last line lacks its newline
    (a crash mid-line, a hand edit) gets one first, so the new line stands on its own."""
    if "\n" in line:
        raise ValueError("one line at a time")
    data = (line + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    import fcntl

    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # other appenders wait: the torn-line check and the write are one step
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as fh:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    data = b"\n" + data
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock (``fcntl.flock``) on ``lock_path`` for the block: another process that
    asks for it waits. Used around read-modify-write of a small shared file (the search log)."""
    import fcntl

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
