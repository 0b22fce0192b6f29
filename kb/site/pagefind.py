"""The site's offline search index: running Pagefind over the built folder (``kb build`` without --no-search)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..errors import SiteError
from ..files import child_dies_with_parent


def pagefind_command() -> list[str] | None:
    """How to run Pagefind: the binary of the `pagefind` PyPI package (pagefind_bin), if installed."""
    try:
        import pagefind_bin  # noqa: F401
    except ImportError:
        exe = shutil.which("pagefind")
        return [exe] if exe else None
    return [sys.executable, "-m", "pagefind"]


def run_pagefind(out: Path, progress=None) -> float:
    """Index the pages of ``out`` (into out/pagefind/); how many seconds it took."""
    cmd = pagefind_command()
    if cmd is None:
        raise SiteError("Pagefind is not installed, so the site's search cannot be built",
                        hint="pip install 'pagefind[bin]' (it carries its own binary), or build with --no-search")
    if progress:
        progress("search index", 0, 1)
    t = time.perf_counter()
    # Pagefind dies with this process (Linux), so kill -9 of kb build never leaves it writing into the site
    res = subprocess.run([*cmd, "--site", str(out), "--keep-index-url", "--silent"], capture_output=True, text=True,
                         preexec_fn=child_dies_with_parent())
    if res.returncode != 0:
        raise SiteError(f"Pagefind failed (exit {res.returncode}): {(res.stderr or res.stdout).strip()[:500]}",
                        hint="build with --no-search to publish without search")
    if progress:
        progress("search index", 1, 1)
    return time.perf_counter() - t
