"""Load-and-validate speed and memory for 1k, 10k and 100k synthetic records.

    python -m benchmarks.validate_bench            # 1k, 10k, 100k (generates records once, ~300 MB for 100k)
    python -m benchmarks.validate_bench 1000 10000 --out /tmp/kb-bench

Each figure is one `kb validate` command, start to exit, with its whole
process tree's peak memory. `grep -ril` over the same files is timed in the
same run as a yardstick for reading that many files on this disk.
Target (issue 2): 100k records in 30 s or less, under 2 GB.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from .proc import measure
from .synth import generate

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sizes", nargs="*", type=int, default=[1000, 10_000, 100_000])
    ap.add_argument("--out", type=Path, default=HERE / "out")
    ap.add_argument("--repeat", type=int, default=2, help="runs per figure; the fastest is reported")
    args = ap.parse_args()
    kb = shutil.which("kb") or sys.exit("kb is not installed: pip install -e .")
    print(f"cores: {os.cpu_count()}; python {sys.version.split()[0]}")
    print(f"{'records':>8} {'kb validate (s)':>16} {'1 core (s)':>11} {'records/s':>10} {'peak MB':>8} "
          f"{'grep -ril (s)':>14} {'vs grep':>8}")
    for n in args.sizes:
        folder = generate(n, args.out / f"synth-{n}")
        runs = [measure([kb, "--kb", str(folder), "validate", "--format", "json"]) for _ in range(args.repeat)]
        best = min(runs, key=lambda r: r.seconds)
        assert best.returncode == 0, f"validation failed on synthetic records:\n{best.stdout[:2000]}"
        one = min((measure([kb, "--kb", str(folder), "validate", "--format", "json", "--jobs", "1"])
                   for _ in range(1)), key=lambda r: r.seconds)
        grep = min((measure(["grep", "-ril", "ketamine", str(folder / "studies")]) for _ in range(args.repeat)),
                   key=lambda r: r.seconds)
        print(f"{n:>8} {best.seconds:>16.2f} {one.seconds:>11.2f} {n / best.seconds:>10.0f} "
              f"{max(r.peak_rss_mb for r in runs):>8.0f} {grep.seconds:>14.2f} {best.seconds / grep.seconds:>7.1f}x",
              flush=True)


if __name__ == "__main__":
    main()
