"""I/O edge: benchmark, many workers: 1 vs 3 `digest run` processes on PostgreSQL.

    python bench/workers.py [--quick] [--subscribers 3000] [--workers 3] [--rounds 2]
                            [--relay-delay-ms 20] [--connections 4]

A real PostgreSQL server (started like the tests do, tests/pgserver.py: initdb into a
temporary folder, unix socket only); N synthetic subscribers (bench/_common.py) seeded
once into a database that every run clones (CREATE DATABASE ... TEMPLATE, so each run
starts from the same state); the recorded HF day served by a local HTTP server; the
counting SMTP sink in a SEPARATE process (bench/smtpsink.py) waiting --relay-delay-ms per
message (a remote relay). Then, alternating within one run (the machine's speed drifts):

  1 worker   `python -m digest run` alone, timed from spawn to exit;
  W workers  W such processes started together for the same day, timed from the first
             spawn to the last exit (they share the fetch and claim leased batches).

The project's modules are byte-compiled first, as pip does at install (this machine sets
PYTHONDONTWRITEBYTECODE, so a checkout would compile them at every process start). A
first 1-worker run warms the vector cache and is not counted. Each W-worker run is
compared with the mean of the 1-worker runs around it; the reported speed-up is the
median of those ratios. Every run must deliver every message exactly once (the sink
counts them). Target: >= 2.5x with 3 workers through a 20 ms relay.
Results: bench/results/workers.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    E2E_DAY,
    HF_DIR,
    PG_URL_ENV,
    ROOT,
    HFServer,
    PgDatabases,
    SmtpSink,
    compile_sources,
    load_day,
    make_subscribers,
    save,
    table,
    use_postgresql,
    write_config,
)

TARGET = 2.5


def run_workers(config: Path, k: int, env: dict[str, str]) -> float:
    cmd = [sys.executable, "-m", "digest", "--config", str(config), "run", "--date",
           E2E_DAY.isoformat(), "--no-progress"]  # fmt: skip
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(k)
    ]
    for p in procs:
        _out, err = p.communicate(timeout=3600)
        if p.returncode != 0:
            raise SystemExit(f"digest run failed ({p.returncode}): {err.decode().strip()}")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="600 subscribers, one round")
    ap.add_argument("--subscribers", type=int, default=None)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=None, help="W-worker runs (default 2)")
    ap.add_argument("--relay-delay-ms", type=float, default=20.0)
    ap.add_argument("--connections", type=int, default=4, help="[smtp] connections per worker")
    args = ap.parse_args(argv)
    n = args.subscribers or (600 if args.quick else 3000)
    rounds = args.rounds or (1 if args.quick else 2)

    from digest.config import load_config
    from digest.store import open_store

    print(
        f"workers: 1 vs {args.workers} `digest run` on PostgreSQL; {n:,} subscribers; relay "
        f"delay {args.relay_delay_ms:g} ms; {args.connections} connection(s) per worker",
        flush=True,
    )
    compile_sources()  # as installed: no module compiled at each worker's start
    pg = PgDatabases()
    day_items = load_day(HF_DIR / f"{E2E_DAY.isoformat()}.json")
    with (
        tempfile.TemporaryDirectory(prefix="digest-bench-workers-") as tmp,
        HFServer({E2E_DAY.isoformat(): day_items}) as hf,
        SmtpSink(delay_ms=args.relay_delay_ms) as sink,
    ):
        config = write_config(
            Path(tmp), hf_url=hf.base_url, smtp_port=sink.port, connections=args.connections
        )
        use_postgresql(config)
        pg.use("bench_seeded")
        cfg = load_config(config)
        store = open_store(cfg.store)  # creates the schema
        try:
            store.put_subscribers(make_subscribers(n))
        finally:
            store.close()

        runs = iter(range(10_000))

        def fresh_env() -> dict[str, str]:
            url = pg.use(f"bench_run_{next(runs)}", like="bench_seeded")
            return {**os.environ, PG_URL_ENV: url}

        def timed(k: int) -> tuple[float, int]:
            env = fresh_env()
            sink.reset()
            secs = run_workers(config, k, env)
            got = sink.stats()["messages"]
            return secs, got

        # not timed: the first run builds the semantic vector cache (38-40 s against
        # 24-28 s for 3,000 subscribers), which would inflate the 1-worker mean
        warm, _ = timed(1)
        print(f"warm-up run (vector cache built, not counted): {warm:.1f} s", flush=True)
        singles: list[tuple[float, int]] = [timed(1)]
        multis: list[tuple[float, int]] = []
        for _ in range(rounds):
            multis.append(timed(args.workers))
            singles.append(timed(1))
    counts = {c for _, c in singles + multis}
    if len(counts) != 1:
        raise SystemExit(f"runs delivered different message counts: {sorted(counts)}")
    (count,) = counts
    ratios = [((singles[i][0] + singles[i + 1][0]) / 2) / multis[i][0] for i in range(len(multis))]
    res: dict[str, Any] = {
        "subscribers": n,
        "messages": count,
        "workers": args.workers,
        "relay_delay_ms": args.relay_delay_ms,
        "smtp_connections_per_worker": args.connections,
        "one_worker_seconds": [round(s, 2) for s, _ in singles],
        "multi_worker_seconds": [round(s, 2) for s, _ in multis],
        "ratios": [round(r, 3) for r in ratios],
        "speedup": round(statistics.median(ratios), 3),
        "one_worker_msgs_per_s": round(count / statistics.mean(s for s, _ in singles), 1),
        "multi_worker_msgs_per_s": round(count / statistics.mean(s for s, _ in multis), 1),
    }
    res["meets_target"] = res["speedup"] >= TARGET
    table(
        ["workers", "seconds (each run)", "msgs/s (mean)"],
        [
            (1, " ".join(f"{s:.1f}" for s, _ in singles), res["one_worker_msgs_per_s"]),
            (args.workers, " ".join(f"{s:.1f}" for s, _ in multis), res["multi_worker_msgs_per_s"]),
        ],
    )
    print(
        f"speed-up {res['speedup']:.2f}x (target >= {TARGET}x; per round "
        f"{', '.join(f'{r:.2f}' for r in ratios)}); {count:,} messages each run",
        flush=True,
    )
    print(f"results: {save('workers', res)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
