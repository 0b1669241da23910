"""I/O edge: benchmark, peak memory of a daily run at 10,000 and 100,000 subscribers.

    python bench/memory.py [--quick] [--sizes 10000,100000]

For each N the parent seeds a fresh TinyDB store with N synthetic subscribers, then
starts a CHILD process (`python bench/memory.py --child CONFIG`) that imports the
product, notes its RSS, and runs `run_daily` for the recorded day 2026-03-10 (served by
a local HTTP server in the parent). The peak is the child's ru_maxrss as the kernel
reports it to the parent (os.wait4), so nothing of the parent counts.

What is real: config, fetch over HTTP, the store (open, load, journal, fold), rank,
render, build of every message. Not real: the Sender is an in-process counter (an
SMTP connection holds one message at a time, so it adds nothing that grows with N) and
fsync is off (no effect on memory; it keeps 100,000 records fast).
Target: peak RSS <= 250 MB at 10,000 subscribers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    E2E_DAY,
    HF_DIR,
    ROOT,
    HFServer,
    PgDatabases,
    folder_bytes,
    load_day,
    make_subscribers,
    save,
    seed_store,
    table,
    use_postgresql,
    write_config,
)

TARGET_MB = 250.0


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(config: str) -> int:
    """Runs in the child: one run, then a JSON line on stdout."""
    from digest.config import load_config
    from digest.pipeline import run_daily

    class CountingSender:
        name = "count"
        sent = 0

        def __enter__(self) -> CountingSender:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def send(self, msg: Any) -> None:
            self.sent += 1

    cfg = load_config(config)
    base = rss_mb()
    t0 = time.perf_counter()
    report = run_daily(cfg, E2E_DAY, sender=CountingSender(), progress=False)
    secs = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "after_imports_mb": base,
                "self_peak_mb": peak,
                "seconds": secs,
                "sent": report.sent,
                "empty": report.empty,
            }
        ),
        flush=True,
    )
    return 0


PG: PgDatabases | None = None  # --backend postgresql


def one_size(n: int) -> dict[str, Any]:
    items = load_day(HF_DIR / f"{E2E_DAY.isoformat()}.json")
    with (
        tempfile.TemporaryDirectory(prefix="digest-bench-memory-") as tmp,
        HFServer({E2E_DAY.isoformat(): items}) as hf,
    ):
        config = write_config(Path(tmp), hf_url=hf.base_url, fsync=False)
        if PG is not None:
            use_postgresql(config)
            PG.use(f"memory_{n}")
        from digest.config import load_config

        cfg = load_config(config)
        t0 = time.perf_counter()
        seed_store(cfg, make_subscribers(n))
        seeded = time.perf_counter() - t0
        store_bytes = folder_bytes(Path(cfg.store.path)) if PG is None else PG.size(f"memory_{n}")
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--child", str(config)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        out = proc.stdout.read()  # type: ignore[union-attr]
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"memory child failed ({proc.returncode}) at N={n}")
    got = json.loads(out.strip().splitlines()[-1])
    peak = usage.ru_maxrss / 1024  # KiB on Linux
    print(
        f"  N={n:,}: peak {peak:.0f} MB (seeded in {seeded:.1f}s, run {got['seconds']:.1f}s)",
        flush=True,
    )
    return {
        "subscribers": n,
        "peak_rss_mb": round(peak, 1),
        "after_imports_mb": round(got["after_imports_mb"], 1),
        "run_seconds": round(got["seconds"], 2),
        "sent": got["sent"],
        "store_bytes_before": store_bytes,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10,000 only")
    ap.add_argument("--sizes", default=None)
    ap.add_argument("--child", metavar="CONFIG", help=argparse.SUPPRESS)
    ap.add_argument("--backend", choices=("tinydb", "postgresql"), default="tinydb")
    args = ap.parse_args(argv)
    if args.child:
        return child(args.child)
    global PG
    if args.backend == "postgresql":
        PG = PgDatabases()
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else ([10000] if args.quick else [10000, 100000])
    )
    print(f"memory: peak RSS of a child running the daily run; sizes {sizes}", flush=True)
    results = [one_size(n) for n in sizes]
    for r in results:
        r["meets_target"] = r["peak_rss_mb"] <= TARGET_MB if r["subscribers"] <= 10000 else None
    table(
        ["subscribers", "messages", "after imports MB", "peak RSS MB", "run s", "target"],
        [
            (
                r["subscribers"],
                r["sent"],
                r["after_imports_mb"],
                r["peak_rss_mb"],
                r["run_seconds"],
                "" if r["meets_target"] is None else ("met" if r["meets_target"] else "MISSED"),
            )
            for r in results
        ],
    )
    save(
        "memory" if PG is None else "memory-postgresql",
        {
            "store_backend": args.backend,
            "target": f"peak RSS <= {TARGET_MB:.0f} MB at 10,000 subscribers",
            "sender": "in-process counter",
            "fsync": False,
            "results": results,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
