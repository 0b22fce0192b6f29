"""Evidence coverage of a knowledge base, per condition: records, RCTs, RCTs whose numbers kb pools,
and k per analysis (outcome x time window x comparator class), as `kb meta` computes them.

    python docs/extraction/coverage.py [KB_FOLDER ...]      # Markdown tables, one per folder

Run it on two checkouts (e.g. `git worktree add /tmp/before <commit>`) to compare before and after.
It drives the installed `kb` (its JSON output), so the numbers are the ones a user sees.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import yaml

TRIALS = {"rct", "crossover-rct"}


def kb_json(folder: Path, *args: str) -> dict | None:
    res = subprocess.run(["kb", "--kb", str(folder), *args, "--format", "json"], capture_output=True, text=True)
    return json.loads(res.stdout) if res.returncode in (0, 1) and res.stdout.strip().startswith("{") else None


def coverage(folder: Path) -> str:
    records = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted((folder / "studies").glob("*.yaml"))]
    records = [r for r in records if r.get("status") != "draft"]
    by_cond: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        conds = [c["term"] if isinstance(c, dict) else c for c in r.get("conditions") or []]
        if conds:
            by_cond[conds[0]].append(r)  # its main condition, as kb meta selects by default
    lines = [f"### {folder}", "", "| condition | records | RCTs | RCTs pooled in any analysis | analyses (k) |",
             "|---|---|---|---|---|"]
    for cond in sorted(by_cond):
        recs = by_cond[cond]
        trials = [r for r in recs if r.get("design") in TRIALS]
        pooled_ids: set[str] = set()
        cells = []
        outcomes = sorted({o["outcome"] for r in recs for o in r.get("outcomes") or []
                           if isinstance(o, dict) and o.get("data")})
        for outcome in outcomes:
            res = kb_json(folder, "meta", "--outcome", outcome, "--condition", cond)
            if not res:
                continue
            for a in res.get("analyses", [res] if "k" in res else []):
                ids = [s["id"] for s in a.get("studies", [])]
                pooled_ids.update(ids)
                w, c = (a.get("window") or {}).get("id"), (a.get("comparator_class") or {}).get("id") or \
                    (a.get("comparator") if isinstance(a.get("comparator"), str) else None)
                cells.append(f"{outcome}/{w}/{c} k={a.get('k')}")
        n_pooled = sum(1 for r in trials if r["id"] in pooled_ids)
        lines.append(f"| {cond} | {len(recs)} | {len(trials)} | {n_pooled} | {'; '.join(cells) or '-'} |")
    designs = Counter(r.get("design") for r in records)
    lines += ["", f"{len(records)} records; {sum(designs[d] for d in TRIALS)} RCTs", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    for arg in sys.argv[1:] or ["."]:
        print(coverage(Path(arg)))
