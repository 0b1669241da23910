"""I/O edge: runs every benchmark, one after the other (they must not share the 2 cores).

    python bench/run_all.py [--quick] [--only e2e,compute]      (`make bench` runs it)

Each benchmark prints its table and writes bench/results/<name>.json; this prints how
long each took and writes bench/results/run_all.json. The default run is meant to take
under 10 minutes on a 2-core machine; --quick is a smoke run (about 2 minutes).
Benchmarks owned by other modules (rank_speed, rank_quality, digest_quality,
render_mail) run when present, with their own defaults.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from _common import BENCH, ROOT, save, table

# name, arguments for the default run, arguments for --quick (None: skip in --quick)
PLAN: list[tuple[str, list[str], list[str] | None]] = [
    ("compute", [], ["--quick"]),
    ("compute", ["--models"], ["--quick", "--models"]),  # every subscriber rated 10-40 papers
    ("e2e", ["--sizes", "10000"], ["--quick"]),  # the target is at 10,000
    # a relay that spends 20 ms per message, over 8 connections (one round here; the
    # figures in bench/README.md are --rounds 3)
    (
        "e2e",
        ["--sizes", "10000", "--rounds", "1", "--relay-delay-ms", "20", "--connections", "8"],
        ["--quick", "--relay-delay-ms", "20", "--connections", "8"],
    ),
    # 1 vs 3 `digest run` workers sharing a day on PostgreSQL through a 20 ms relay
    ("workers", [], ["--quick"]),
    ("memory", [], ["--quick"]),
    ("history", [], ["--quick"]),
    ("store_writes", [], ["--quick"]),
    ("web_subscribe", [], ["--quick"]),  # a real `digest web`, before/after durability
    ("rank_speed", [], ["--runs", "1"]),
    ("rank_quality", [], None),
    ("digest_quality", [], ["--fast"]),  # what is mailed: the real `digest run`, 41 days
    ("learning", [], ["--fast"]),  # readers who rate, and subscribers by example, 41 days
    ("render_mail", [], ["--subscribers", "1000", "--smtp", "500"]),
    ("papers_page", [], ["--quick"]),  # the web's papers page, a 50-paper day (< 50 ms)
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short smoke run of each")
    ap.add_argument("--only", default="", help="comma-separated benchmark names")
    args = ap.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    rows, failed = [], []
    t_all = time.perf_counter()
    for name, default, quick in PLAN:
        script = BENCH / f"{name}.py"
        if (only and name not in only) or not script.exists():
            continue
        extra = quick if args.quick else default
        if extra is None:
            continue
        print(f"\n=== {name} {' '.join(extra)}".rstrip(), flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run([sys.executable, str(script), *extra], cwd=ROOT).returncode
        secs = time.perf_counter() - t0
        rows.append(
            (
                name,
                " ".join(extra) or "(defaults)",
                "ok" if rc == 0 else f"exit {rc}",
                round(secs, 1),
            )
        )
        if rc != 0:
            failed.append(name)
    total = time.perf_counter() - t_all
    print()
    table(
        ["benchmark", "arguments", "status", "seconds"], rows + [("total", "", "", round(total, 1))]
    )
    save(
        "run_all",
        {
            "quick": args.quick,
            "total_seconds": round(total, 1),
            "benchmarks": [
                {"name": r[0], "arguments": r[1], "status": r[2], "seconds": r[3]} for r in rows
            ],
        },
    )
    return 1 if failed else 0


if __name__ == "__main__":
    Path(BENCH / "results").mkdir(exist_ok=True)
    raise SystemExit(main())
