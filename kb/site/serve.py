"""``kb serve``: preview the site on localhost, rebuilding when a record, summary or template changes."""

from __future__ import annotations

import functools
import os
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

from ..config import KnowledgeBase
from ..errors import BadRequest, KbError
from ..files import scan
from ..load import comparisons_dir, summaries_dir


def watched_state(kb: KnowledgeBase) -> tuple:
    """(size, mtime) of every input of the site: records, summaries, notes on reviews, templates, kb.yaml."""
    templates = []
    if kb.templates_dir.is_dir():
        for dirpath, dirs, files in os.walk(kb.templates_dir):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for f in files:
                if not f.startswith("."):
                    p = os.path.join(dirpath, f)
                    try:
                        st = os.stat(p)
                    except FileNotFoundError:
                        continue
                    templates.append((p, st.st_size, st.st_mtime_ns))
    cfg = kb.root / "kb.yaml"
    st = cfg.stat() if cfg.is_file() else None
    return (scan(kb.studies_dir), scan(summaries_dir(kb)), scan(comparisons_dir(kb)), sorted(templates),
            (st.st_size, st.st_mtime_ns) if st else None)


class _Handler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # quiet: the terminal shows rebuilds, not every request
        pass

    def send_head(self):
        try:
            return super().send_head()
        except ValueError:  # a NUL byte in the path (/index.html%00.txt): no file has that name
            self.send_error(400, "Bad request")
            return None

    def list_directory(self, path):  # a folder without index.html: the 404 page, never a listing
        self.send_error(404, "File not found")
        return None

    def send_error(self, code, message=None, explain=None):
        page = Path(self.directory) / "404.html"
        if code == 404 and page.is_file():
            body = page.read_bytes()
            self.send_response(404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            return
        super().send_error(code, message, explain)


class _Server(ThreadingHTTPServer):
    """The threaded server, with a listen backlog for a page's bursts of requests (the default 5 made
    0.17% of 200 concurrent requests time out), and one line, never a traceback, for a failed request."""

    request_queue_size = 128
    daemon_threads = True
    log: Callable[[str], None] = staticmethod(lambda message: None)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):  # the browser left (broken pipe, reset): not an error
            return
        self.log(f"request from {client_address[0]} failed: {type(exc).__name__}: {exc}")


class Preview:
    """A local HTTP server for ``out`` and a thread that rebuilds it when its inputs change."""

    def __init__(self, kb: KnowledgeBase, out: Path, rebuild: Callable[[], object], host: str = "127.0.0.1",
                 port: int = 8000, interval: float = 1.0, on_event: Callable[[str], None] | None = None):
        self.kb, self.out, self.rebuild, self.interval = kb, out, rebuild, interval
        self.on_event = on_event or (lambda message: None)
        handler = functools.partial(_Handler, directory=str(out))
        try:
            self.server = _Server((host, port), handler)
        except OSError as e:
            raise BadRequest(f"cannot listen on {host}:{port}: {e.strerror}", hint="choose another --port") from None
        self.server.log = self.on_event
        self.stop_event = threading.Event()
        self.state = watched_state(kb)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/"

    def watch(self) -> None:
        """Every ``interval`` seconds, rebuild if an input changed. Nothing ends this loop but stop(): a
        failed look or rebuild is said in one line, and the next change is rebuilt as usual."""
        while not self.stop_event.wait(self.interval):
            try:
                self.poll()
            except KbError as e:  # a broken record must not stop the preview
                self.on_event(f"build failed: {e.message}" + (f" (hint: {e.hint})" if e.hint else ""))
            except Exception as e:  # noqa: BLE001 - anything else must not stop it either
                self.on_event(f"build failed: {type(e).__name__}: {e} (kb serve keeps watching)")

    def poll(self) -> None:
        now = watched_state(self.kb)
        if now == self.state:
            return
        self.state = now
        self.on_event(f"rebuilt: {self.rebuild()}")

    def start(self) -> None:
        self.started = True
        threading.Thread(target=self.watch, daemon=True).start()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.stop_event.set()
        if getattr(self, "started", False):  # shutdown() waits for serve_forever: never if it never ran
            self.server.shutdown()
        self.server.server_close()
