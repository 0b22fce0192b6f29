"""The harness, part 2 (issue 18): kill -9 at random moments, and everything at once.

**Fault injection.** ``kb build``, ``kb index --rebuild`` and ``kb import`` run on a 200-record
knowledge base and are killed with SIGKILL after a random delay (the seed of every round is in the
failure message, and printed with ``pytest -s``). Then:

- no process of the killed command is left (its session, read from /proc);
- every record file is byte-identical to what it was, or a complete new record, byte-identical to
  the one a clean import writes;
- the next plain run succeeds, and its output equals a clean run's byte for byte: the whole site
  folder (with SOURCE_DATE_EPOCH fixed, built with --no-search: Pagefind aside), the search results
  of the rebuilt index, the studies/ folder after the import.

CI runs 3 rounds of each (``KB_FAULT_ROUNDS``); ``KB_FAULT_SEED`` replays a run.

**Concurrency.** Two builds, two index rebuilds, an import and three searches start at once on one
knowledge base. Each exits 0 or says clearly that the site or index is busy (exit 1); none corrupts
another: the records are then exactly a clean import's, and a plain build and index give a clean
run's site and search results. ``KB_CONCURRENCY_ROUNDS`` rounds (1 in CI).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT
from .test_synthesis import binary, trial

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

ROUNDS = int(os.environ.get("KB_FAULT_ROUNDS", "3"))
CONCURRENCY_ROUNDS = int(os.environ.get("KB_CONCURRENCY_ROUNDS", "1"))
SEED = int(os.environ.get("KB_FAULT_SEED") or random.SystemRandom().randrange(1 << 30))
ENV = {"SOURCE_DATE_EPOCH": "1790000000"}
SURNAMES = ["adams", "baker", "clark", "dixon", "evans", "fox", "grant", "hughes", "irwin", "jones"]
QUERIES = [["response"], ["ketamine", "trial"], ["condition:ptsd"], ["remission", "--sort", "year"],
           ["design:rct", "condition:depression", "--limit", "50"]]
BUSY = re.compile(r"^Error: the (site .* is busy|search index is busy)", re.M)


def records(n: int = 200, seed: int = 18) -> list[dict]:
    """``n`` invented trials (ids adams-1990 ...), their numbers drawn from ``seed``: never real studies."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        sid = f"{SURNAMES[i % len(SURNAMES)]}-{1990 + i // len(SURNAMES)}"
        n1, n2 = rng.randint(10, 60), rng.randint(10, 60)
        a, c = rng.randint(1, n1), rng.randint(0, n2)
        outcomes = [binary("response", a, n1, c, n2)]
        if rng.random() < 0.5:
            outcomes.append(binary("remission", rng.randint(0, a), n1, rng.randint(0, c), n2, timepoint="day 7",
                                   timepoint_days=7, definition="test remitters"))
        out.append(trial(sid, outcomes, comparator=rng.choice(["saline", "midazolam"]),
                         title=f"Invented test trial {sid} of an imaginary infusion schedule for the harness",
                         conditions=rng.choice([("depression",), ("ptsd",), ("depression", "suicidal-ideation"),
                                                ("anxiety",), ("bipolar",)])))
    return out


def write_kb(root: Path, recs: list[dict]) -> Path:
    (root / "studies").mkdir(parents=True)
    (root / "kb.yaml").write_text("title: Fault injection KB\n")
    for rec in recs:
        (root / "studies" / f"{rec['id']}.yaml").write_text(yaml.safe_dump(rec, sort_keys=False))
    return root


def kb(root: Path, *args, check: bool = True, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "kbcli", "--kb", str(root), *map(str, args)], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT), **ENV}, timeout=600, **kw)
    if check:
        assert res.returncode == 0, f"kb {' '.join(map(str, args))}: {res.stdout}\n{res.stderr}"
    return res


def start(root: Path, *args) -> subprocess.Popen:
    """A kb command in a session of its own (so that whatever it starts can be found)."""
    return subprocess.Popen([sys.executable, "-m", "kbcli", "--kb", str(root), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **ENV})


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too: a leftover temporary file is a difference)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def session(sid: int) -> list[str]:
    """The live processes of session ``sid``, as 'pid command'."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(f"{entry.name} {cmd[:120]}")
    return found


def none_left(sid: int, timeout: float = 10.0) -> list[str]:
    """The processes of the killed command's session still alive after ``timeout`` (then killed)."""
    deadline = time.monotonic() + timeout
    while (left := session(sid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    if left:
        try:
            os.killpg(sid, signal.SIGKILL)  # not to leave them running after a failed test
        except ProcessLookupError:
            pass
    return left


def kill_at_random(root: Path, args: list, rng: random.Random, typical: float, log: list[str],
                   files: tuple[Path, int] | None = None) -> None:
    """Run ``kb ARGS`` and kill -9 it after a random part of ``typical`` seconds, or, with ``files``
    (folder, count), as soon as the folder holds that many files (a kill in the middle of the writing,
    whatever the time spent before it); check that nothing is left."""
    delay = rng.uniform(0.0, typical * 1.1)
    proc = start(root, *args)
    t0 = time.monotonic()
    if files is None:
        try:
            proc.wait(timeout=delay)
            ended = True
        except subprocess.TimeoutExpired:
            ended = False
        when = f"delay {delay:.3f} s"
    else:
        folder, count = files
        while (ended := proc.poll() is not None) is False and len(os.listdir(folder)) < count:
            time.sleep(0.001)
        when = f"at {count} files in {folder.name}/"
    if not ended:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    log.append(f"kb {' '.join(map(str, args))}: {'ended by itself' if ended else 'killed'} after "
               f"{time.monotonic() - t0:.3f} s ({when})")
    proc.communicate()
    left = none_left(proc.pid)
    assert not left, f"left behind by {log[-1]}: {left}"


def timed(fn) -> float:
    t = time.monotonic()
    fn()
    return time.monotonic() - t


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The 200-record knowledge base, the references it exports, and clean runs to compare with."""
    tmp = tmp_path_factory.mktemp("faults")
    recs = records()
    full = write_kb(tmp / "full", recs)
    refs = tmp / "refs.ris"
    kb(full, "export", "--format", "ris", "-o", refs)
    w = {"tmp": tmp, "full": full, "refs": refs, "partial": write_kb(tmp / "partial", recs[:50])}
    # clean runs: a first build, a --full build over a site, the index, an import
    clean = copy(w, "full", "clean-build")
    w["t_build"] = timed(lambda: kb(clean, "build", "--no-search"))
    w["site"] = tree(clean / "_site")
    (clean / "studies/adams-1990.yaml").write_text((clean / "studies/adams-1990.yaml").read_text() + "\n")
    w["t_full"] = timed(lambda: kb(clean, "build", "--no-search", "--full"))
    w["site_after_full"] = tree(clean / "_site")
    w["t_index"] = timed(lambda: kb(clean, "index", "--rebuild"))
    w["searches"] = searches(clean)
    clean_import = copy(w, "partial", "clean-import")
    w["t_import"] = timed(lambda: kb(clean_import, "import", "--as-draft", refs))
    w["imported"] = tree(clean_import / "studies")
    w["before_import"] = tree(w["partial"] / "studies")
    assert len(w["imported"]) == 200 and len(w["before_import"]) == 50
    return w


def copy(w: dict, which: str, name: str) -> Path:
    dest = w["tmp"] / f"{name}-{time.monotonic_ns()}"
    shutil.copytree(w[which], dest, symlinks=True)
    return dest


def searches(root: Path) -> list:
    """The results of QUERIES as JSON, without timings."""
    out = []
    for q in QUERIES:
        data = json.loads(kb(root, "search", *q, "--format", "json").stdout)
        out.append(strip_times(data))
    return out


HISTORY = re.compile(r"^(index (built|rebuilt)|another kb process)")  # notices of what this run did to the index


def strip_times(data):
    """A search's JSON without what differs from run to run: timings, and notices of the index refresh it did."""
    if isinstance(data, dict):
        return {k: [n for n in v if not HISTORY.match(n)] if k == "notices" else strip_times(v)
                for k, v in data.items() if not re.search(r"ms|seconds|took|time", k)}
    if isinstance(data, list):
        return [strip_times(v) for v in data]
    return data


def rounds(n: int):
    for i in range(n):
        yield i, random.Random(SEED + i)


def replay(log: list[str], i: int) -> str:
    return f"KB_FAULT_SEED={SEED} round {i} (seed {SEED + i}): " + "; ".join(log)


# -- fault injection --------------------------------------------------------------------------


def test_kill_9_during_kb_build(world):
    for i, rng in rounds(ROUNDS):
        log: list[str] = []
        root = copy(world, "full", "build")
        over_a_site = rng.random() < 0.5
        if over_a_site:  # killed during a --full build over a complete site (after a record changed)
            kb(root, "build", "--no-search")
            (root / "studies/adams-1990.yaml").write_text((root / "studies/adams-1990.yaml").read_text() + "\n")
            kill_at_random(root, ["build", "--no-search", "--full"], rng, world["t_full"], log)
            expected = world["site_after_full"]
        else:  # killed during the first build
            kill_at_random(root, ["build", "--no-search"], rng, world["t_build"], log)
            expected = world["site"]
        res = kb(root, "build", "--no-search", check=False)
        assert res.returncode == 0, replay(log, i) + res.stderr
        site = tree(root / "_site")
        differ = sorted(k for k in set(site) | set(expected) if site.get(k) != expected.get(k))
        assert differ == [], replay(log, i) + f": the site differs from a clean build's in {differ[:10]}"
        print(replay(log, i), "ok")
        shutil.rmtree(root)


def test_kill_9_during_kb_index_rebuild(world):
    for i, rng in rounds(ROUNDS):
        log: list[str] = []
        root = copy(world, "full", "index")
        if rng.random() < 0.5:
            kb(root, "index")  # an index to replace; else killed while making the first
        kill_at_random(root, ["index", "--rebuild", "-j", "2"], rng, world["t_index"], log)
        res = kb(root, "index", check=False)
        assert res.returncode == 0, replay(log, i) + res.stderr
        assert searches(root) == world["searches"], replay(log, i) + ": search results differ from a clean index's"
        assert "index up to date: 200 records" in kb(root, "index").stdout, replay(log, i)
        print(replay(log, i), "ok")
        shutil.rmtree(root)


def test_kill_9_during_kb_import(world):
    before, imported = world["before_import"], world["imported"]
    for i, rng in rounds(ROUNDS):
        log: list[str] = []
        root = copy(world, "partial", "import")
        # half the rounds at a random moment, half while it writes (after 1 to 149 of its 150 records)
        writing = (root / "studies", len(before) + rng.randint(1, len(imported) - len(before) - 1))
        kill_at_random(root, ["import", "--as-draft", world["refs"]], rng, world["t_import"], log,
                       files=writing if rng.random() < 0.5 else None)
        now = {k: v for k, v in tree(root / "studies").items() if not Path(k).name.startswith(".")}
        for name, data in now.items():
            expected = before.get(name, imported.get(name))
            assert data == expected, replay(log, i) + f": studies/{name} is neither as it was nor a complete record"
        assert set(before) <= set(now), replay(log, i) + ": a record file went missing"
        res = kb(root, "import", "--as-draft", world["refs"], check=False)
        assert res.returncode == 0, replay(log, i) + res.stdout + res.stderr
        studies = tree(root / "studies")
        differ = sorted(k for k in set(studies) | set(imported) if studies.get(k) != imported.get(k))
        assert differ == [], replay(log, i) + f": studies/ differs from a clean import's in {differ[:10]}"
        print(replay(log, i), f"ok ({len(now) - len(before)} written before the kill)")
        shutil.rmtree(root)


# -- concurrency --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def after_import(world):
    """A clean run over the records as they are once the import is done: the site and the searches."""
    root = copy(world, "partial", "clean-all")
    kb(root, "import", "--as-draft", world["refs"])
    assert tree(root / "studies") == world["imported"]
    kb(root, "build", "--no-search")
    return {"site": tree(root / "_site"), "searches": searches(root)}


def test_everything_at_once(world, after_import):
    for i in range(CONCURRENCY_ROUNDS):
        root = copy(world, "partial", "together")
        kb(root, "build", "--no-search")
        kb(root, "index")
        commands = [["build", "--no-search"], ["build", "--no-search", "--full"], ["index", "--rebuild"],
                    ["index", "--rebuild", "-j", "2"], ["import", "--as-draft", world["refs"]], ["search", "response"],
                    ["search", "ketamine", "trial", "--format", "json"], ["search", "condition:ptsd", "--sort", "year"],
                    ["index"], ["build", "--no-search", "--wait", "0"]]
        procs = [(c, start(root, *c)) for c in commands]
        results = [(c, p, *p.communicate(timeout=600)) for c, p in procs]
        for c, p, out, err in results:
            what = f"round {i}: kb {' '.join(map(str, c))} exited {p.returncode}: {err[-2000:]}"
            assert "internal error" not in err and "Traceback" not in err, what
            assert p.returncode == 0 or (p.returncode == 1 and BUSY.search(err)), what
            assert not none_left(p.pid, timeout=5), what
        # nothing corrupted: the records are a clean import's, and plain runs give a clean run's output
        assert tree(root / "studies") == world["imported"], f"round {i}: studies/ differs from a clean import's"
        kb(root, "build", "--no-search")
        site = tree(root / "_site")
        differ = sorted(k for k in set(site) | set(after_import["site"]) if site.get(k) != after_import["site"].get(k))
        assert differ == [], f"round {i}: the site differs from a clean build's in {differ[:10]}"
        assert searches(root) == after_import["searches"], f"round {i}: search results differ from a clean index's"
        busy = sum(p.returncode == 1 for _, p, _, _ in results)
        print(f"round {i}: ok ({busy} of {len(results)} said busy)")
        shutil.rmtree(root)
