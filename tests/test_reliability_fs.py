"""Reliability on the filesystem, under concurrency and with processes (issue 18): symbolic link loops
and links leading outside the knowledge base, kb serve's watcher and bad requests, one build or index
writer at a time, workers that die with kb, read-only folders, --full builds after a record is
deleted, and caches under .kb/ that are never read unless this user's kb wrote them.

Each test reproduces one probe case on a knowledge base written in a temporary folder.
"""

from __future__ import annotations

import http.client
import json
import os
import pickle
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from kb import files
from kb.config import open_kb
from kb.errors import ConfigError
from kb.index import SearchIndex
from kb.site import build_site, state
from kb.site import pagefind as site_pagefind

from .conftest import ROOT, bundled_copy, invoke, new_kb
from .test_synthesis import binary, make_kb, trial

RECORDS = [trial("alpha-2001", [binary("response", 12, 20, 4, 20)], key_finding="Before."),
           trial("beta-2005", [binary("response", 8, 15, 3, 16)])]


def kb_cli(*args, check: bool = False, **kw) -> subprocess.CompletedProcess:
    """`python -m kbcli ARGS` in a child process, with this checkout's kb."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **kw.pop("env", {})}
    res = subprocess.run([sys.executable, "-m", "kbcli", *map(str, args)], capture_output=True, text=True, env=env,
                         timeout=kw.pop("timeout", 300), **kw)
    if check:
        assert res.returncode == 0, res.stderr
    return res


def loop(folder: Path) -> None:
    """a.yaml -> b.yaml -> a.yaml: stat fails with ELOOP."""
    os.symlink("b-2002.yaml", folder / "a-2001x.yaml")
    os.symlink("a-2001x.yaml", folder / "b-2002.yaml")


# -- 1. a symbolic link loop in studies/ (probe #2) -----------------------------------------------------


def test_scan_lists_files_it_cannot_stat(tmp_path):
    studies = tmp_path / "studies"
    studies.mkdir()
    (studies / "ok-2001.yaml").write_text("id: ok-2001\n")
    loop(studies)
    os.symlink("nowhere.yaml", studies / "dangling-2003.yaml")
    found = files.scan(studies)
    assert found["a-2001x.yaml"] == found["b-2002.yaml"] == found["dangling-2003.yaml"] == files.UNREADABLE
    assert found["ok-2001.yaml"][0] == len("id: ok-2001\n")


def test_symlink_loop_is_a_left_out_file_for_build_index_and_search(runner, tmp_path):
    root = make_kb(tmp_path, RECORDS)
    loop(root / "studies")
    res = invoke(runner, "--kb", root, "build", "--no-search")
    assert res.exit_code == 0, res.output
    assert "studies/a-2001x.yaml:1:1: (file): cannot read file: Too many levels of symbolic links" in res.output
    assert "2 record file(s) with errors left out of the site" in res.output
    assert "symbolic link in a loop" in res.output  # the hint
    assert "internal error" not in res.output
    again = invoke(runner, "--kb", root, "build", "--no-search")
    assert "site up to date" in again.output and "a-2001x.yaml" in again.output  # still listed, not re-read
    res = invoke(runner, "--kb", root, "index", "--rebuild")
    assert res.exit_code == 0 and "studies/b-2002.yaml" in res.output and "2 record file(s)" in res.output
    res = invoke(runner, "--kb", root, "search", "response")
    assert res.exit_code == 0, res.output
    assert "2 record files with errors left out of the index" in res.output
    # the loop removed: everything is as before
    (root / "studies/a-2001x.yaml").unlink()
    (root / "studies/b-2002.yaml").unlink()
    res = invoke(runner, "--kb", root, "build", "--no-search")
    assert res.exit_code == 0 and "left out" not in res.output
    res = invoke(runner, "--kb", root, "search", "response")
    assert "left out" not in res.output and "alpha-2001" in res.output


# -- 2. kb serve's watcher never dies (probe #3) ------------------------------------------------------


def serve(root: Path, out: Path, **kw):
    """A Preview of ``root`` as kb serve runs it (rebuilds through build_site), and its events."""
    from kb.site.serve import Preview

    kb = open_kb(root)
    build_site(kb, out, search=False)
    events: list[str] = []
    seen = threading.Condition()

    def on_event(message: str) -> None:
        with seen:
            events.append(message)
            seen.notify_all()

    def rebuild():
        r = build_site(open_kb(root), out, search=False)
        return f"{r.parsed} parsed, {r.files_left_out} left out"

    preview = Preview(kb, out, kw.pop("rebuild", rebuild), port=0, interval=0.05, on_event=on_event, **kw)

    def wait_for(text: str, timeout: float = 20) -> str:
        with seen:
            assert seen.wait_for(lambda: any(text in e for e in events), timeout), (text, events)
            return next(e for e in events if text in e)

    return preview, events, wait_for


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8")


def test_serve_keeps_watching_through_a_symlink_loop(tmp_path):
    root = make_kb(tmp_path, RECORDS)
    preview, events, wait_for = serve(root, tmp_path / "out")
    preview.start()
    try:
        loop(root / "studies")
        wait_for("rebuilt: 2 parsed, 2 left out")
        for name in ("a-2001x.yaml", "b-2002.yaml"):
            (root / "studies" / name).unlink()
        text = (root / "studies/alpha-2001.yaml").read_text()
        (root / "studies/alpha-2001.yaml").write_text(text.replace("Before.", "After."))
        wait_for("rebuilt: 1 parsed, 0 left out")
        assert "After." in fetch(preview.url + "studies/alpha-2001.html")[1]
    finally:
        preview.stop()


def test_serve_watcher_survives_any_exception(tmp_path, monkeypatch):
    """Whatever fails (looking at the files, or the rebuild), one line is said and the next change rebuilds."""
    from kb.site import serve as serve_mod

    root = make_kb(tmp_path, RECORDS)
    calls = {"rebuild": 0}

    def flaky_rebuild():
        calls["rebuild"] += 1
        if calls["rebuild"] == 1:
            raise RuntimeError("disk on fire")
        return "fine"

    preview, events, wait_for = serve(root, tmp_path / "out", rebuild=flaky_rebuild)
    real = serve_mod.watched_state
    failing = {"n": 1}

    def watched(kb):
        if failing["n"]:
            failing["n"] -= 1
            raise OSError(40, "Too many levels of symbolic links")
        return real(kb)

    monkeypatch.setattr(serve_mod, "watched_state", watched)
    preview.start()
    try:
        assert "OSError" in wait_for("build failed: OSError")
        (root / "studies/alpha-2001.yaml").write_text((root / "studies/alpha-2001.yaml").read_text() + "\n")
        assert "disk on fire" in wait_for("build failed: RuntimeError")
        (root / "studies/beta-2005.yaml").write_text((root / "studies/beta-2005.yaml").read_text() + "\n")
        wait_for("rebuilt: fine")
    finally:
        preview.stop()


# -- 3. kb serve: a NUL in the URL, folders, broken connections, the backlog (probe #18 and the extras) ---


def test_serve_answers_a_nul_in_the_url_with_400(tmp_path, capfd):
    root = make_kb(tmp_path, RECORDS)
    preview, events, _ = serve(root, tmp_path / "out")
    preview.start()
    try:
        host, port = preview.server.server_address[:2]
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request("GET", "/index.html%00.txt")
        assert conn.getresponse().status == 400
        conn.close()
        assert fetch(preview.url + "index.html")[0] == 200  # still serving
    finally:
        preview.stop()
    assert "Traceback" not in capfd.readouterr().err and events == []


def test_serve_shows_the_404_page_for_a_folder_never_a_listing(tmp_path):
    root = make_kb(tmp_path, RECORDS)
    preview, _, _ = serve(root, tmp_path / "out")
    preview.start()
    try:
        for path in ("studies/", "assets/", "downloads"):
            status, body = fetch(preview.url + path)
            assert status == 404 and "Page not found" in body and "Directory listing" not in body, path
        assert fetch(preview.url)[0] == 200  # a folder with index.html is its page
    finally:
        preview.stop()


def test_serve_is_quiet_about_clients_that_leave(tmp_path, capfd):
    root = make_kb(tmp_path, RECORDS)
    preview, events, _ = serve(root, tmp_path / "out")
    preview.start()
    try:
        for exc in (BrokenPipeError(32, "Broken pipe"), ConnectionResetError(104, "Connection reset by peer")):
            try:
                raise exc
            except OSError:
                preview.server.handle_error(None, ("127.0.0.1", 50000))
        assert events == []
        try:
            raise ValueError("a bug")
        except ValueError:
            preview.server.handle_error(None, ("127.0.0.1", 50000))
        assert events == ["request from 127.0.0.1 failed: ValueError: a bug"]  # one line
    finally:
        preview.stop()
    assert "Traceback" not in capfd.readouterr().err


def test_serve_has_a_backlog_for_many_requests_at_once(tmp_path):
    from socketserver import ThreadingMixIn

    root = make_kb(tmp_path, RECORDS)
    preview, events, _ = serve(root, tmp_path / "out")
    assert preview.server.request_queue_size >= 128 and isinstance(preview.server, ThreadingMixIn)
    preview.start()
    try:
        results: list[int] = []

        def get():
            results.append(fetch(preview.url + "studies/alpha-2001.html")[0])

        threads = [threading.Thread(target=get) for _ in range(200)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [200] * 200
    finally:
        preview.stop()


# -- 4. one kb build at a time per output folder (probe #12) ----------------------------------------


def build_lock(root: Path, out: Path) -> Path:
    d = state.state_dir(open_kb(root), out.resolve())
    return d.with_name(d.name + ".lock")


def test_a_second_build_waits_then_says_the_site_is_busy(runner, tmp_path):
    root = make_kb(tmp_path, RECORDS)
    out = root / "_site"
    with files.exclusive_lock(build_lock(root, out), wait=0):  # another kb build, writing the folder
        res = invoke(runner, "--kb", root, "build", "--no-search", "--wait", "0.3")
    assert res.exit_code == 1
    assert f"another kb build is writing {out}; waiting…" in res.output
    assert f"Error: the site {out} is busy: another kb build is writing it (waited 0.3 s)" in res.output
    assert not (out / "index.html").exists()
    res = invoke(runner, "--kb", root, "build", "--no-search")
    assert res.exit_code == 0 and (out / "index.html").exists()


def test_a_waiting_build_goes_on_when_the_other_ends(tmp_path):
    root = make_kb(tmp_path, RECORDS)
    out = root / "_site"
    lock = build_lock(root, out)
    messages: list[str] = []
    result: dict = {}
    with files.exclusive_lock(lock, wait=0):
        t = threading.Thread(target=lambda: result.update(r=build_site(open_kb(root), out, search=False, wait=60,
                                                                        on_wait=messages.append)))
        t.start()
        while not messages:
            time.sleep(0.01)
        assert t.is_alive() and not (out / "index.html").exists()  # waiting, writing nothing
    t.join(60)
    assert result["r"].studies == 2 and messages == [f"another kb build is writing {out}; waiting…"]


def test_three_builds_at_once_all_succeed_with_one_consistent_site(tmp_path):
    root = bundled_copy(tmp_path / "kb")
    env = {"SOURCE_DATE_EPOCH": "1790000000"}
    procs = [subprocess.Popen([sys.executable, "-m", "kbcli", "--kb", str(root), "build", "--no-search", "--full"],
                              env={**os.environ, "PYTHONPATH": str(ROOT), **env}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    assert sum("waiting" in err for _, err in outs) >= 1
    clean = tmp_path / "clean"
    bundled_copy(clean)
    kb_cli("--kb", clean, "build", "--no-search", env=env, check=True)
    assert tree(root / "_site") == tree(clean / "_site")


def tree(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_atomic_write_names_its_temporary_file_uniquely(tmp_path):
    """Two writers of one file in one process (kb serve's threads) never share a temporary file."""
    target = tmp_path / "page.html"
    with files.atomic_write(target) as outer:
        outer.write(b"outer")
        with files.atomic_write(target) as inner:
            inner.write(b"inner")
    assert target.read_bytes() == b"outer"
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]


def test_sweep_temps_removes_only_dead_processes_files(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    (tmp_path / f".page.html.{dead}.ab12cd34.tmp").write_text("half")
    (tmp_path / f".smith-2013.yaml.{dead}.q7_x2m9k.tmp").write_text("half")
    mine = tmp_path / f".page.html.{os.getpid()}.ef56ab78.tmp"
    mine.write_text("being written")
    digits = tmp_path / f".x.2013.html.{os.getpid()}.12345678.tmp"  # a random part of digits only: still mine
    digits.write_text("being written")
    (tmp_path / "page.html").write_text("page")
    assert files.sweep_temps(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, digits.name, "page.html"])


# -- 5. one index writer at a time (probe #13) ------------------------------------------------------


def test_a_second_index_rebuild_waits_or_says_the_index_is_busy(runner, tmp_path):
    root = bundled_copy(tmp_path / "kb")
    with SearchIndex(open_kb(root)).writing(wait=0):
        res = invoke(runner, "--kb", root, "index", "--rebuild", "--wait", "0.2")
    assert res.exit_code == 1, res.output
    assert "another kb process is writing the search index; waiting…" in res.output
    assert "Error: the search index is busy: another kb process is writing it" in res.output
    assert "FileExistsError" not in res.output and "internal error" not in res.output


def test_two_index_rebuilds_at_once_both_succeed(tmp_path):
    root = bundled_copy(tmp_path / "kb")
    procs = [subprocess.Popen([sys.executable, "-m", "kbcli", "--kb", str(root), "index", "--rebuild"],
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert all("indexed" in out for out, _ in outs)
    res = kb_cli("--kb", root, "search", "ketamine", "--format", "ids", "--limit", "3", check=True)
    assert len(res.stdout.split()) == 3


# -- 6. workers die with kb (probe #14) ----------------------------------------------------------------


def children(pid: int, like: bytes = b"") -> list[int]:
    """The live processes whose parent is ``pid`` (from /proc), whose command line holds ``like``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z" and like in cmdline:
                out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


def kill_when(cmd: list[str], ready, timeout: float = 120) -> list[int]:
    """Start ``cmd``, kill -9 it once ``ready(pid)`` gives the processes to watch; return them."""
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            watched = ready(proc.pid)
            if watched:
                os.kill(proc.pid, signal.SIGKILL)
                return watched
            if proc.poll() is not None:
                pytest.fail("the command ended before its workers could be seen")
            time.sleep(0.005)
        pytest.fail("no workers seen")
    finally:
        proc.kill()
        proc.wait()


def gone(pids: list[int], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.05)
    for p in pids:  # not to leave them behind when the test fails
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_an_index_rebuild_leaves_no_worker(tmp_path):
    from benchmarks.synth import generate

    root = generate(900, tmp_path / "kb")  # 2 shards (PARALLEL_MIN 400): one worker each
    cmd = [sys.executable, "-m", "kbcli", "--kb", str(root), "index", "--rebuild", "-j", "2"]
    workers = kill_when(cmd, lambda pid: (c if len(c := children(pid, b"kbcli")) >= 2 else None))
    assert gone(workers), "the index workers outlived kb index"


SLOW_PAGEFIND = """
import sys
from kb.site import pagefind
# Pagefind, slowed down: a program that runs for a minute unless it is killed
pagefind.pagefind_command = lambda: [sys.executable, "-c", "import time; time.sleep(60) # fake-pagefind"]
from kbcli import cli
cli(sys.argv[1:])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_a_build_leaves_no_pagefind(tmp_path):
    root = make_kb(tmp_path, RECORDS)
    cmd = [sys.executable, "-c", SLOW_PAGEFIND, "--kb", str(root), "build"]
    left = kill_when(cmd, lambda pid: children(pid, b"fake-pagefind") or None)
    assert gone(left), "Pagefind outlived kb build"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_a_build_leaves_no_study_page_worker(tmp_path):
    from benchmarks.synth import generate

    root = generate(600, tmp_path / "kb")  # over PARALLEL_THRESHOLD: a forked worker renders study pages
    cmd = [sys.executable, "-m", "kbcli", "--kb", str(root), "build", "--no-search", "-j", "2"]
    left = kill_when(cmd, lambda pid: children(pid, b"kbcli") or None)
    assert gone(left), "build workers outlived kb build"


# -- 7. a read-only output folder (probe #15) ---------------------------------------------------------


def read_only(folder: Path):
    """Make ``folder`` unwritable even for root (chattr +i), else by its mode; None if neither works."""
    folder.chmod(0o555)
    probe = folder / ".probe"
    try:
        probe.write_text("")
    except PermissionError:
        return lambda: folder.chmod(0o755)
    probe.unlink()
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
        return lambda: (subprocess.run(["chattr", "-i", str(folder)]), folder.chmod(0o755))
    folder.chmod(0o755)
    return None


@pytest.mark.parametrize("existing", [False, True])
def test_read_only_output_folder_is_a_clear_message(runner, tmp_path, existing):
    root = make_kb(tmp_path, RECORDS)
    parent = tmp_path / "published"
    parent.mkdir()
    out = parent / "site" if not existing else parent
    if existing:
        assert invoke(runner, "--kb", root, "build", "--no-search", "-o", out).exit_code == 0
        (root / "studies/alpha-2001.yaml").write_text((root / "studies/alpha-2001.yaml").read_text()
                                                      .replace("Before.", "After."))
    undo = read_only(parent)
    if undo is None:
        pytest.skip("cannot make a folder read-only here")
    try:
        res = invoke(runner, "--kb", root, "build", "--no-search", "-o", out)
    finally:
        undo()
    assert res.exit_code == 1, res.output
    assert f"Error: cannot write the site in {parent}:" in res.output
    assert "internal error" not in res.output and "Traceback" not in res.output
    assert "hint: make the folder writable, or choose another with --out" in res.output
    res = invoke(runner, "--kb", root, "build", "--no-search", "-o", out)
    assert res.exit_code == 0, res.output


# -- 8. --full after a record is deleted (probe #16) --------------------------------------------------


def test_full_build_removes_the_pages_of_deleted_records(runner, tmp_path):
    root = make_kb(tmp_path, RECORDS)
    out = root / "_site"
    assert invoke(runner, "--kb", root, "build", "--no-search").exit_code == 0
    assert (out / "studies/beta-2005.html").exists()
    (root / "studies/beta-2005.yaml").unlink()
    res = invoke(runner, "--kb", root, "build", "--no-search", "--full")
    assert res.exit_code == 0 and "removed" in res.output, res.output
    assert not (out / "studies/beta-2005.html").exists()
    assert sorted(p.name for p in (out / "studies").iterdir()) == ["alpha-2001.html"]
    assert "site up to date" in invoke(runner, "--kb", root, "build", "--no-search").output


@pytest.mark.skipif(site_pagefind.pagefind_command() is None, reason="Pagefind is not installed")
def test_full_build_after_a_deletion_indexes_only_the_studies_left(runner, tmp_path):
    root = make_kb(tmp_path, RECORDS)
    assert invoke(runner, "--kb", root, "build").exit_code == 0
    (root / "studies/beta-2005.yaml").unlink()
    assert invoke(runner, "--kb", root, "build", "--full").exit_code == 0
    entry = json.loads((root / "_site/pagefind/pagefind-entry.json").read_text())
    assert entry["languages"]["en"]["page_count"] == 1


# -- 9. a symbolic link leading outside the knowledge base ----------------------------------------------


def outside_link(tmp_path: Path) -> Path:
    import yaml

    root = make_kb(tmp_path, RECORDS)
    elsewhere = tmp_path / "shared"
    elsewhere.mkdir()
    rec = trial("gamma-2010", [binary("response", 20, 40, 9, 38)], key_finding="Shared finding.")
    (elsewhere / "gamma-2010.yaml").write_text(yaml.safe_dump(rec, sort_keys=False))
    os.symlink(elsewhere / "gamma-2010.yaml", root / "studies/gamma-2010.yaml")
    return root


def test_a_link_outside_the_knowledge_base_is_an_error(runner, tmp_path):
    root = outside_link(tmp_path)
    target = tmp_path / "shared/gamma-2010.yaml"
    message = f"a symbolic link to {target}, outside the knowledge base: not read"
    res = invoke(runner, "--kb", root, "validate")
    assert res.exit_code == 1 and f"studies/gamma-2010.yaml:1:1: (file): {message}" in res.output
    assert "allow_external_links: true" in res.output
    res = invoke(runner, "--kb", root, "build", "--no-search")
    assert res.exit_code == 0 and message in res.output and "1 record file(s) with errors left out" in res.output
    assert not (root / "_site/studies/gamma-2010.html").exists()
    assert "Shared finding" not in (root / "_site/downloads/studies.csv").read_text()
    res = invoke(runner, "--kb", root, "index")
    assert message in res.output
    res = invoke(runner, "--kb", root, "search", "response", "--format", "ids")
    assert res.exit_code == 0 and "gamma-2010" not in res.output
    res = invoke(runner, "--kb", root, "show", "gamma-2010")
    assert res.exit_code == 1 and "outside the knowledge base: not read" in res.output
    res = invoke(runner, "--kb", root, "meta", "--format", "json")
    assert "gamma-2010" not in res.output


def test_kb_yaml_can_allow_links_outside(runner, tmp_path):
    root = outside_link(tmp_path)
    (root / "kb.yaml").write_text("title: Test KB\nallow_external_links: true\n")
    assert invoke(runner, "--kb", root, "validate").exit_code == 0
    res = invoke(runner, "--kb", root, "build", "--no-search")
    assert res.exit_code == 0 and "left out" not in res.output
    assert "Shared finding." in (root / "_site/studies/gamma-2010.html").read_text()
    res = invoke(runner, "--kb", root, "search", "response", "--format", "ids")
    assert "gamma-2010" in res.output


def test_a_link_inside_the_knowledge_base_is_fine(runner, tmp_path):
    root = make_kb(tmp_path, RECORDS)
    (root / "drafts").mkdir()
    (root / "studies/beta-2005.yaml").rename(root / "drafts/beta-2005.yaml")
    os.symlink("../drafts/beta-2005.yaml", root / "studies/beta-2005.yaml")
    assert invoke(runner, "--kb", root, "validate").exit_code == 0
    res = invoke(runner, "--kb", root, "build", "--no-search")
    assert res.exit_code == 0 and "left out" not in res.output


def test_allow_external_links_must_be_true_or_false(tmp_path):
    root = make_kb(tmp_path, RECORDS)
    (root / "kb.yaml").write_text("title: Test KB\nallow_external_links: yes please\n")
    with pytest.raises(ConfigError, match=r"kb.yaml:2:\d+: allow_external_links: must be true or false"):
        open_kb(root)


# -- 10. caches under .kb/ are read only when this user's kb wrote them -------------------------------


class Evil:
    """A pickle that, once loaded, leaves a file behind: what a planted cache would run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def key(tmp_path, monkeypatch) -> Path:
    """This test's own key (never the user's)."""
    path = tmp_path / "keys" / "mine"
    monkeypatch.setenv("KB_KEY_FILE", str(path))
    monkeypatch.setattr(files, "_KEY", None, raising=False)
    return path


def test_a_planted_segment_cache_is_never_unpickled(runner, tmp_path, key):
    root = bundled_copy(tmp_path / "kb")
    assert invoke(runner, "--kb", root, "search", "ketamine").exit_code == 0
    caches = list((root / ".kb/index").glob("cache-*"))
    assert caches
    marker = tmp_path / "PWNED"
    for p in caches:
        p.write_bytes(pickle.dumps(Evil(marker)))
    res = kb_cli("--kb", root, "search", "ketamine", "--limit", "1", env={"KB_KEY_FILE": str(key)})
    assert res.returncode == 0, res.stderr
    assert not marker.exists()


def test_a_planted_table_of_contents_is_never_unpickled(runner, tmp_path, key, monkeypatch):
    import types

    from whoosh import index as whoosh_index
    from whoosh.filedb.filestore import FileStorage

    root = bundled_copy(tmp_path / "kb")
    assert invoke(runner, "--kb", root, "index").exit_code == 0
    storage = FileStorage(str(root / ".kb/index"))
    toc = whoosh_index.TOC.read(storage, "s0")
    marker = tmp_path / "PWNED"
    # a table of contents of a later generation (the one Whoosh opens) whose schema pickle runs a command
    with monkeypatch.context() as m:
        m.setattr(whoosh_index, "pickle", types.SimpleNamespace(
            dumps=lambda obj, protocol: pickle.dumps(Evil(marker), protocol), PicklingError=pickle.PicklingError))
        toc.generation += 5
        toc.write(storage, "s0")
    res = kb_cli("--kb", root, "search", "ketamine", "--limit", "1", env={"KB_KEY_FILE": str(key)})
    assert res.returncode == 0, res.stderr
    assert not marker.exists()
    assert "index rebuilt (index files changed since kb wrote them" in res.stdout + res.stderr


def test_a_kb_folder_from_elsewhere_is_rebuilt_not_trusted(runner, tmp_path, key, monkeypatch):
    """A .kb/ written under another key (another user, a repository, an archive) is neither searched nor
    used to skip work: its index is rebuilt and the site is built in full."""
    root = bundled_copy(tmp_path / "kb")
    assert invoke(runner, "--kb", root, "index").exit_code == 0
    assert invoke(runner, "--kb", root, "build", "--no-search").exit_code == 0
    monkeypatch.setenv("KB_KEY_FILE", str(tmp_path / "keys" / "someone-else"))
    monkeypatch.setattr(files, "_KEY", None, raising=False)
    res = invoke(runner, "--kb", root, "index")
    assert res.exit_code == 0 and "index files changed since kb wrote them, or not written by this user's kb" in res.output
    res = invoke(runner, "--kb", root, "build", "--no-search")
    assert res.exit_code == 0 and res.output.splitlines()[-1].startswith("built "), res.output  # not "updated"
    assert "site up to date" in invoke(runner, "--kb", root, "build", "--no-search").output


def test_signed_caches_refuse_other_keys_and_bare_data(tmp_path, key):
    path = tmp_path / "stamps.marshal"
    files.write_marshal(path, {"a.yaml": (1, 2)})
    assert files.read_marshal(path) == {"a.yaml": (1, 2)}
    import marshal

    path.write_bytes(marshal.dumps({"a.yaml": (1, 2)}))  # unsigned
    with pytest.raises(files.Untrusted):
        files.read_marshal(path)
    files.write_marshal(path, {"a.yaml": (1, 2)})
    (tmp_path / "digests.marshal").write_bytes(path.read_bytes())  # signed, but for another file
    with pytest.raises(files.Untrusted):
        files.read_marshal(tmp_path / "digests.marshal")


def test_the_key_is_made_once_owner_only_outside_the_knowledge_base(tmp_path, monkeypatch):
    monkeypatch.delenv("KB_KEY_FILE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(files, "_KEY", None)
    key = files.cache_key()
    path = tmp_path / "cache/kb/key"
    assert path.read_bytes() == key and len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    monkeypatch.setattr(files, "_KEY", None)
    assert files.cache_key() == key  # read again, not made again


def test_a_read_only_knowledge_base_is_still_searched(runner, tmp_path):
    """kb search on a knowledge base it may not write (a shared read-only checkout): the index as it
    is, with a notice, when a record changed since; a clear message when there is no index."""
    root = make_kb(tmp_path, RECORDS)
    bare = make_kb(tmp_path / "bare", RECORDS)
    assert invoke(runner, "--kb", root, "index").exit_code == 0
    (root / "studies/beta-2005.yaml").write_text((root / "studies/beta-2005.yaml").read_text() + "\n")
    undo = [read_only(root / ".kb/index"), read_only(root / ".kb"), read_only(bare)]
    try:
        if None in undo:
            pytest.skip("cannot make a folder read-only here")
        res = invoke(runner, "--kb", root, "search", "response")
        assert res.exit_code == 0, res.output
        assert f"cannot write the search index in {root / '.kb'}" in res.output and "alpha-2001" in res.output
        res = invoke(runner, "--kb", bare, "search", "response")
        assert res.exit_code == 1 and f"Error: cannot write the search index in {bare / '.kb'}" in res.output
        assert "internal error" not in res.output
    finally:
        for u in reversed(undo):
            if u:
                u()


def test_a_search_that_meets_a_half_written_segment_waits_for_the_writer_never_an_internal_error(tmp_path, monkeypatch):
    """Found by 20 rounds of the concurrency test: a search opened the index while another kb process had
    written a new segment but not yet sealed it, took the segment for a planted file (Untrusted), and the
    retry met the next writer the same way: an internal error. The retry now opens the reader under the
    writer's lock (no writer mid-commit), and rebuilds only an index that still cannot be read."""
    from kb import engine
    from kb.search import SearchRequest, search

    root = new_kb(tmp_path / "kb", ("singh-2016", "lii-2023"))
    kb = open_kb(root)
    SearchIndex(kb).refresh()
    real = SearchIndex.open_reader
    calls = {"n": 0}

    def half_written(self):  # the first look meets a segment file the writer has not sealed yet
        calls["n"] += 1
        if calls["n"] == 1:
            raise engine.Untrusted(f"{self.dir}/s0_new.pst: not in the index's seal (not written by this user's kb)")
        return real(self)

    monkeypatch.setattr(SearchIndex, "open_reader", half_written)
    result = search(kb, SearchRequest(query="ketamine"), refresh=False)
    assert result.total >= 1 and not any("rebuilt" in n for n in result.notices)
    assert calls["n"] == 2

    def planted(self):  # a file that stays unsealed: the index is rebuilt, and the search still answers
        calls["n"] += 1
        if calls["n"] <= 4:
            raise engine.Untrusted("planted")
        return real(self)

    calls["n"] = 2
    monkeypatch.setattr(SearchIndex, "open_reader", planted)
    result = search(kb, SearchRequest(query="ketamine"), refresh=False)
    assert result.total >= 1 and any("rebuilt it" in n for n in result.notices)


def test_a_search_that_refreshed_meets_a_half_written_segment_never_an_internal_error(tmp_path, monkeypatch):
    """Found by 20 rounds of the concurrency test (on main after the fix above): a search whose background
    check found a changed record refreshed the index (or left it to the kb process writing it), then opened
    it again outside the writer's lock and met that process's unsealed segment: an internal error. That
    second look falls back the same way as the first."""
    from kb import engine
    from kb.search import SearchRequest, search

    root = new_kb(tmp_path / "kb", ("singh-2016", "lii-2023"))
    kb = open_kb(root)
    SearchIndex(kb).refresh()
    path = root / "studies/singh-2016.yaml"
    path.write_text(path.read_text() + "\n")  # the background check finds a change: the search looks twice
    real = SearchIndex.open_reader
    calls = {"n": 0}

    def half_written(self):  # the look after the refresh meets a segment the writer has not sealed yet
        calls["n"] += 1
        if calls["n"] == 2:
            raise engine.Untrusted(f"{self.dir}/s0_new.pst: not in the index's seal (not written by this user's kb)")
        return real(self)

    monkeypatch.setattr(SearchIndex, "open_reader", half_written)
    result = search(kb, SearchRequest(query="ketamine"))
    assert result.total >= 1 and not any("rebuilt" in n for n in result.notices)
    assert calls["n"] == 3  # the first look, the failed second, the one under the writer's lock


def test_a_reason_to_rebuild_found_before_the_lock_is_looked_at_again(tmp_path):
    """A search's background check may see another process's segment before it is sealed and call for a
    rebuild; once this process holds the lock, that reason is checked again, and nothing is rebuilt."""
    from kb.index import Changes, Check

    root = new_kb(tmp_path / "kb", ("singh-2016", "lii-2023"))
    idx = SearchIndex(open_kb(root))
    idx.refresh()
    stale = Check("index files changed since kb wrote them, or not written by this user's kb", {}, Changes())
    report = idx.refresh(checked=stale)
    assert not report.rebuilt and "index up to date" in report.summary()
