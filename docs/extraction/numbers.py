"""Every outcome number in a knowledge base, with the page and the place it was read: a list a reviewer
can check by hand. With --since COMMIT, only the entries that are new or changed since that commit.

    python docs/extraction/numbers.py [--kb FOLDER] [--since COMMIT] > numbers.md
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import yaml


def entries(records: dict[str, dict]) -> dict[tuple, dict]:
    out = {}
    for rid, r in records.items():
        for i, o in enumerate(r.get("outcomes") or []):
            if isinstance(o, dict) and o.get("data"):
                out[(rid, i)] = o
    return out


def load_folder(folder: Path) -> dict[str, dict]:
    return {p.stem: yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted((folder / "studies").glob("*.yaml"))}


def load_commit(folder: Path, commit: str) -> dict[str, dict]:
    names = subprocess.run(["git", "-C", str(folder), "ls-tree", "--name-only", commit, "studies/"],
                           capture_output=True, text=True, check=True).stdout.split()
    out = {}
    for name in names:
        if name.endswith(".yaml"):
            text = subprocess.run(["git", "-C", str(folder), "show", f"{commit}:{name}"],
                                  capture_output=True, text=True, check=True).stdout
            out[Path(name).stem] = yaml.safe_load(text)
    return out


def numbers(d: dict) -> str:
    if d["type"] == "binary":
        return " vs ".join(f"{a['events']}/{a['total']} ({a['label']})" for a in d["arms"])
    if d["type"] == "continuous":
        return " vs ".join(f"{a['mean']} (SD {a['sd']}, n {a['n']}; {a['label']})" for a in d["arms"])
    ci = f" ({d.get('ci_low')} to {d.get('ci_high')})" if d.get("ci_low") is not None else ""
    se = f", SE {d['se']}" if d.get("se") else ""
    return f"{d['measure'].upper()} {d['value']}{ci}{se}"


def source(o: dict) -> tuple[str, str]:
    s = o.get("source")
    if isinstance(s, dict):
        return s.get("url") or "", s.get("locator") or ""
    return (s, "") if isinstance(s, str) and s.startswith("http") else ("", s or "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kb", type=Path, default=Path("."))
    ap.add_argument("--since", help="list only entries new or changed since this commit")
    args = ap.parse_args()
    now = entries(load_folder(args.kb))
    before = {}
    if args.since:
        old = entries(load_commit(args.kb, args.since))
        before = {(k[0], yaml.safe_dump(v.get("data"), sort_keys=True), v.get("timepoint_days"), v.get("outcome"))
                  for k, v in old.items()}
    print("| record | outcome | time | numbers | counts | pooled | source | locator |")
    print("|---|---|---|---|---|---|---|---|")
    for (rid, i), o in sorted(now.items()):
        key = (rid, yaml.safe_dump(o.get("data"), sort_keys=True), o.get("timepoint_days"), o.get("outcome"))
        if args.since and key in before:
            continue
        url, loc = source(o)
        cells = [rid, o["outcome"] + (f" ({o['instrument']})" if o.get("instrument") else ""),
                 str(o.get("timepoint") or ""), numbers(o["data"]), o.get("counts") or "",
                 "yes" if o.get("pool", True) else "no", url, loc]
        print("| " + " | ".join(c.replace("|", "/").replace("\n", " ") for c in cells) + " |")


if __name__ == "__main__":
    main()
