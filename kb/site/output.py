"""The output folder: the writer that leaves unchanged pages alone, the folder's manifest, the assets,
and the downloads (downloads/studies.{json,csv,bib,ris}), written in a forked child on big builds.

The manifest, ``.kb-build.json``, holds content hashes only (the same inputs give a byte-identical
folder); it also marks the folder as kb's: a folder without one is never written into.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..config import KnowledgeBase
from ..errors import BadRequest, SiteError
from ..files import atomic_write, die_with_parent, fork_context
from ..export import FILE_NAMES, FORMATS, SplitError, assemble, split
from ..templating import default_templates_dir

MANIFEST = ".kb-build.json"
SEPARATORS = {"json": "\n", "csv": "\n", "bibtex": "\n\n", "ris": "\n\n"}  # fragments have no blank line


# -- writing pages ------------------------------------------------------------------------


def unchanged(target: str, data: bytes, sha: str, known: str | None) -> bool:
    """Whether ``target`` already holds ``data``: by the last build's hash of it when known (and the file
    is there), else by reading the file back."""
    if known is None:
        return same_bytes(target, data)
    return known == sha and os.path.exists(target)


def same_bytes(target: str, data: bytes) -> bool:
    """Whether ``target`` already holds exactly ``data``. A full rebuild over an existing site (after
    an upgrade, or --full) then leaves unchanged pages alone: reading a page back costs less than
    truncating and rewriting it, and their dates stay as they were for rsync and static hosts."""
    try:
        with open(target, "rb") as fh:
            if os.fstat(fh.fileno()).st_size != len(data):
                return False
            return fh.read() == data
    except OSError:
        return False


def write_page(target: str, data: bytes) -> None:
    """Write ``data`` to ``target``, making its folder when missing (a study page written by a worker)."""
    try:
        with open(target, "wb") as fh:
            fh.write(data)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as fh:
            fh.write(data)


class Writer:
    """Writes a page only when its bytes differ from the last build's, and remembers every page."""

    def __init__(self, out: Path, previous: dict[str, str]):
        self.out, self.previous, self.pages, self.written = out, previous, {}, 0

    def put(self, rel: str, text: str | bytes) -> None:
        data = text.encode("utf-8") if isinstance(text, str) else text
        sha = hashlib.sha1(data).hexdigest()
        self.pages[rel] = sha
        target = self.out / rel
        if not unchanged(str(target), data, sha, self.previous.get(rel)):
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(target) as fh:
                fh.write(data)
            self.written += 1


def check_out(kb: KnowledgeBase, out: Path) -> None:
    """Never write into a folder kb did not make, nor over the knowledge base itself."""
    root = kb.root.resolve()
    if out == root or root.is_relative_to(out) or out.is_relative_to(kb.studies_dir.resolve()):
        raise BadRequest(f"{out}: the site cannot be written over the knowledge base",
                         hint="choose another folder with --out, e.g. _site")
    if out.exists() and not out.is_dir():
        raise BadRequest(f"{out} is a file, not a folder", hint="choose another folder with --out")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).exists():
        raise BadRequest(f"{out} is not empty and was not built by kb: nothing was written",
                         hint="choose another folder with --out, or empty this one")


def copy_assets(env_kb: KnowledgeBase, writer: Writer) -> None:
    """templates/assets/* (the knowledge base's files override kb's, name by name)."""
    names: dict[str, Path] = {}
    for folder in (default_templates_dir() / "assets", env_kb.templates_dir / "assets"):
        if folder.is_dir():
            for p in sorted(folder.iterdir()):
                if p.is_file():
                    names[p.name] = p
    for name, p in sorted(names.items()):
        writer.put(f"assets/{name}", p.read_bytes())


def write_manifest(out: Path, manifest: dict) -> None:
    """``.kb-build.json``, compact and with sorted keys (content hashes only: no dates of the build machine)."""
    (out / MANIFEST).write_text(json.dumps(manifest, sort_keys=True, separators=(",", ":")) + "\n", encoding="utf-8")


def remove(out: Path, rels) -> int:
    """Delete these pages from ``out``; how many were there."""
    removed = 0
    for rel in rels:
        try:
            (out / rel).unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed


# -- the downloads --------------------------------------------------------------------------


def downloads_task(out: str, spool: str | None, changed: dict, previous: dict) -> tuple[dict, int]:
    """Write the downloads: their hashes, and how many files were written."""
    side = Writer(Path(out), previous)
    write_downloads(Path(out), side, spool, changed)
    return side.pages, side.written


def _side_main(conn, parent: int) -> None:
    die_with_parent(parent)  # kill -9 of the build must not leave it writing the downloads
    try:
        args = conn.recv()
    except (EOFError, KeyboardInterrupt):
        return
    if args is None:
        return
    try:
        conn.send(("ok", downloads_task(*args)))
    except BaseException as e:  # noqa: BLE001 - handed to the parent, which raises it
        conn.send(("error", e))
    finally:
        conn.close()


class DownloadsProcess:
    """A child process that runs downloads_task when given its arguments. A plain forked Process
    and a pipe: no helper thread in this process, which forks workers after it."""

    def __init__(self):
        ctx = fork_context()
        self.conn, child_end = ctx.Pipe()
        self.proc = ctx.Process(target=_side_main, args=(child_end, os.getpid()), name="kb-downloads", daemon=True)
        self.proc.start()
        child_end.close()
        self.done = False

    def start(self, args: tuple) -> None:
        self.conn.send(args)

    def result(self) -> tuple[dict, int]:
        try:
            status, value = self.conn.recv()
        except EOFError:
            self.proc.join()
            raise SiteError(f"writing the downloads failed (worker exit code {self.proc.exitcode})",
                            hint="run `kb build --full` again") from None
        self.done = True
        if status == "error":
            raise value
        return value

    def stop(self) -> None:
        if not self.done:
            try:
                self.conn.send(None)  # never started: let it end
            except OSError:
                pass
            self.proc.join(timeout=1)
            if self.proc.is_alive():
                self.proc.terminate()
        self.proc.join()
        self.conn.close()


def write_downloads(out: Path, writer: Writer, spool: str | None, changed: dict) -> None:
    """downloads/studies.{json,csv,bib,ris}: from the spooled fragments of a full pass (``spool``), or
    the previous files with the changed records' fragments replaced."""
    folder = out / "downloads"
    folder.mkdir(exist_ok=True)
    for f in FORMATS:
        name = f"downloads/{FILE_NAMES[f]}"
        if spool:
            _stream_download(out, writer, name, f, sorted(Path(spool).glob(f"*.{f}")))
            continue
        if not changed:
            writer.pages[name] = writer.previous.get(name) or _sha_file(out / name)
            continue
        try:
            frags = split(f, (out / name).read_text(encoding="utf-8"))
        except (OSError, SplitError, UnicodeDecodeError):
            raise SiteError(f"{out / name} was changed by hand or is damaged",
                            hint="rebuild everything with `kb build --full`") from None
        for i, fr in changed.items():
            if fr is None:
                frags.pop(i, None)
            else:
                frags[i] = fr[f]
        writer.put(name, assemble(f, (frags[i] for i in sorted(frags))))


def _stream_download(out: Path, writer: Writer, name: str, fmt: str, spooled: list[Path]) -> None:
    """Concatenate spooled fragments into a download file as :func:`assemble` would write it, without
    holding the whole file in memory (the JSON of 100k records is ~0.5 GB)."""
    sep = ",\n" if fmt == "json" else SEPARATORS[fmt]  # a JSON array needs commas between its lines
    head, tail = {"json": ("[\n", "\n]\n"), "csv": (assemble("csv", []), "\n")}.get(fmt, ("", "\n"))
    h = hashlib.sha1()
    target = out / name
    first = True
    with atomic_write(target) as fh:
        def put(data: bytes) -> None:
            h.update(data)
            fh.write(data)

        put(head.encode())
        for p in spooled:
            data = p.read_bytes()
            if not data:
                continue
            if fmt == "json":
                data = data.replace(b"\n", b",\n")  # one record per line: JSON escapes newlines in strings
            if not first:
                put(sep.encode())
            put(data)
            first = False
        if first:
            h, fh_empty = hashlib.sha1(), assemble(fmt, []).encode()
            fh.seek(0)
            fh.truncate()
            put(fh_empty)
        else:
            put(tail.encode())
    writer.pages[name] = h.hexdigest()
    writer.written += 1


def _sha_file(path: Path) -> str:
    try:
        return hashlib.sha1(path.read_bytes()).hexdigest()
    except OSError:
        return ""
