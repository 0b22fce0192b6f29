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
import re
import signal
import sys
import time
from collections import namedtuple
from pathlib import Path
from typing import IO, Any, Callable, Iterator

FileState = namedtuple("FileState", "size mtime_ns sha1 ok", defaults=(True,))
FileState.__doc__ = "(size, mtime_ns, sha1, ok) of a record file as indexed; ok is False when it has errors."


UNREADABLE = (-1, -1)
"""The stamp :func:`scan` gives a record file it cannot stat: a symbolic link in a loop, or to a file
that is not there. The file is listed all the same, so that the commands that read it report it
(and leave it out) instead of failing or skipping it silently."""


def scan(studies: Path) -> dict[str, tuple[int, int]]:
    """relative path -> (size, mtime_ns) for every record file, recursively (one stat each);
    :data:`UNREADABLE` for a file that cannot be stat'd. Symbolic links to folders are not followed."""
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
                    if os.path.islink(os.path.join(folder, name)):  # a dangling link: listed, and reported
                        out[prefix + name] = UNREADABLE
                    continue  # deleted meanwhile
                except OSError:  # a symbolic link loop (ELOOP), a name too long ...: listed, and reported
                    out[prefix + name] = UNREADABLE
                    continue
                out[prefix + name] = (st.st_size, st.st_mtime_ns)
        finally:
            os.close(fd)
    return out


def link_outside(path: Path | str, root: Path | str) -> str | None:
    """Where ``path`` leads when it is a symbolic link to a file outside the folder ``root`` (a knowledge
    base's); None otherwise (not a link, or a link within ``root``). One lstat for a file that is not a link."""
    if not os.path.islink(path):
        return None
    target = os.path.realpath(path)
    inside = os.path.realpath(root)
    if target == inside or target.startswith(inside.rstrip(os.sep) + os.sep):
        return None
    return target


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

    The block writes a temporary file in the same folder (``.<name>.<pid>.<random>.tmp``: no other
    writer, in this process or another, can take the name), which is renamed
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

        fd, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
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
        fd, tmp = None, path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
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


_TEMP = re.compile(r"^\..+\.(\d+)\.[0-9A-Za-z_]+\.tmp$")  # the pid is the next-to-last part, whatever the name


def sweep_temps(folder: Path, *, recursive: bool = False) -> int:
    """Remove the temporary files :func:`atomic_write` left in ``folder`` when its process was killed
    (``.<name>.<pid>.<random>.tmp`` of a process that is no longer running); how many went.
    A live process's temporary file is never touched."""
    removed = 0
    for dirpath, dirs, files in os.walk(folder) if recursive else [(str(folder), [], _names(folder))]:
        for name in files:
            m = _TEMP.match(name)
            if m and not _alive(int(m.group(1))):
                try:
                    os.unlink(os.path.join(dirpath, name))
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


def _names(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # another user's process (or a name that only looks like ours): left alone
    return True


# -- locks --------------------------------------------------------------------------------


class LockTimeout(Exception):
    """Another process held the lock for longer than the caller would wait."""


@contextlib.contextmanager
def exclusive_lock(path: Path, *, wait: float, on_wait: Callable[[], None] | None = None) -> Iterator[bool]:
    """``with exclusive_lock(path, wait=600):`` hold an exclusive lock on the file ``path`` (made when
    missing, never removed) for the time of the block; yields whether it had to wait.

    The lock is ``flock``'s, so the kernel releases it when its holder dies, even by kill -9. A
    holder's forked children share it (a worker still running keeps it). When another process holds
    it, ``on_wait`` is called once, and the lock is tried again every 0.1 s for up to ``wait``
    seconds; then :class:`LockTimeout`. Where there is no ``fcntl`` (Windows) nothing is locked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        yield False
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    waited = False
    try:
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(str(path)) from None
                if not waited and on_wait is not None:
                    on_wait()
                waited = True
                time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        try:
            yield waited
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)  # for every process sharing the lock (forked children too)
    finally:
        os.close(fd)


# -- kb's own caches, signed ----------------------------------------------------------------

_SIGNED = b"KBS1"  # the first bytes of a signed cache file, then its 32-byte HMAC-SHA256, then the data
_KEY: bytes | None = None


class Untrusted(ValueError):
    """A cache file that this user's kb did not write (no signature, or a wrong one)."""


def key_path() -> Path:
    """Where the key that signs kb's caches lives: ``$KB_KEY_FILE``, else ``$XDG_CACHE_HOME/kb/key``,
    else ``~/.cache/kb/key``. It is outside every knowledge base, so a ``.kb/`` folder that came with
    a repository, an archive or a shared folder is never trusted."""
    env = os.environ.get("KB_KEY_FILE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kb" / "key"


def cache_key() -> bytes:
    """The key that signs kb's caches: 32 random bytes, made on first use (mode 0600, its folder
    0700), then read once per process."""
    global _KEY
    if _KEY is None:
        path = key_path()
        try:
            key = path.read_bytes()
        except FileNotFoundError:
            key = _make_key(path)
        if len(key) < 32:
            raise OSError(f"{path}: the key that signs kb's caches is damaged (delete it: kb makes a new one)")
        _KEY = key
    return _KEY


def _make_key(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = os.urandom(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # two processes making it at once: the first one's key wins
    except FileExistsError:
        key = path.read_bytes()
    finally:
        os.unlink(tmp)
    return key


def signature(name: str, data: bytes) -> bytes:
    """HMAC-SHA256 of ``data`` under :func:`cache_key`, bound to the file's name (a cache cannot be
    passed off as another)."""
    import hmac

    return hmac.digest(cache_key(), name.encode() + b"\0" + data, "sha256")


def write_signed(path: Path, data: bytes) -> None:
    """Write a cache file atomically, signed (read it back with :func:`read_signed`)."""
    with atomic_write(path) as fh:
        fh.write(_SIGNED + signature(path.name, data))
        fh.write(data)


def read_signed(path: Path) -> bytes:
    """The data of a signed cache file; :class:`Untrusted` when this user's kb did not write it
    (its content is then never interpreted)."""
    import hmac

    with open(path, "rb") as fh:
        raw = fh.read()
    head = len(_SIGNED) + 32
    if raw[:len(_SIGNED)] != _SIGNED or len(raw) < head:
        raise Untrusted(f"{path}: not a signed kb cache")
    data = memoryview(raw)[head:]
    if not hmac.compare_digest(raw[len(_SIGNED):head], signature(path.name, data)):
        raise Untrusted(f"{path}: signed with another key")
    return data


def read_marshal(path: Path) -> Any:
    """The plain data of a signed marshal file (kb's own caches): the signature is checked before a
    byte is unmarshalled (:class:`Untrusted`, a ValueError, when it does not match)."""
    return marshal.loads(read_signed(path))


def write_marshal(path: Path, data: Any) -> None:
    """Write plain data as a signed marshal file (4x faster than pickle for plain data), atomically."""
    write_signed(path, marshal.dumps(data))


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


def worker_pool(max_workers: int, initializer: Callable | None = None, initargs: tuple = ()):
    """A :class:`concurrent.futures.ProcessPoolExecutor` of ``max_workers`` processes started by
    :func:`fork_context`, each running ``initializer(*initargs)`` first. Every worker dies with this
    process (:func:`die_with_parent`): kill -9 of kb leaves no worker behind."""
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=max_workers, mp_context=fork_context(), initializer=_start_worker,
                               initargs=(os.getpid(), initializer, initargs))


def _start_worker(parent: int, initializer: Callable | None, initargs: tuple) -> None:
    die_with_parent(parent)
    if initializer is not None:
        initializer(*initargs)


_PRCTL = None


def _prctl():
    """libc's prctl, looked up once (in the parent: a child between fork and exec only calls it)."""
    global _PRCTL
    if _PRCTL is None:
        _PRCTL = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
            except (OSError, AttributeError):
                pass
    return _PRCTL or None


PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """In a child process: end when the process ``parent`` ends, however it ends (kill -9 too).

    On Linux the kernel sends the child SIGKILL when its parent dies (prctl PR_SET_PDEATHSIG); the
    parent is checked right after, in case it died before the call. Elsewhere a daemon thread checks
    every half second whether the child was handed to another parent, and ends it if so."""
    prctl = _prctl()
    if prctl is not None and prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
        if os.getppid() != parent:
            os._exit(1)
        return
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, name="kb-parent-watch", daemon=True).start()


def child_dies_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` for :mod:`subprocess` that makes an external program (Pagefind) die with this
    process; None where only Linux's parent-death signal could do it (the program then outlives a
    kb killed with kill -9 until it finishes)."""
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


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
