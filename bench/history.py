"""I/O edge: benchmark, a year of history: does the store stay small and a run stay fast?

    python bench/history.py [--quick] [--days 365] [--subscribers 1000] [--backend postgresql]

1,000 synthetic subscribers; run k = 1..365 is one `run_daily` (in-process) on the k-th
listing weekday: first the 22 recorded weekdays of 2026-01 (fixtures/hf_daily_papers/
2026-01/), then synthetic weekdays made by perturbing real papers (a random recorded
day's size, papers drawn from every recorded day, new arXiv-style ids, new listing day,
jittered upvotes and shuffled ai_keywords). A local HTTP server answers /api/daily_papers
for them (look-back 3 days, the product default).

What is real: the config, fetch over HTTP, the TinyDB store (run_daily opens and closes
it each run, as a cron run would), rank, render, build, records. What is not: the Sender
is an in-process counter (delivery speed is bench/e2e.py's job), and the store's fsync is
off (its per-record cost is constant per day, measured in e2e; here the growth matters).

Reports store size (bytes of the store folder) and run seconds per day: a table every
~30 days, all days in JSON. Targets: day 365 within 1.1x of day 10 (median of days 6-14
vs median of days 357-365, the machine is shared) and the store under 10 MB. The same
ratio is also given on CPU seconds (this process and its reaped children: the forked
builder), which a shared machine's load moves far less than wall time.
"""

from __future__ import annotations

import argparse
import copy
import random
import resource
import statistics
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from _common import (
    HF_DIR,
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

SIZE_TARGET = 10 * 1024 * 1024
GROWTH_TARGET = 1.10


class CountingSender:
    """A Sender that accepts everything and counts (no network)."""

    name = "count"

    def __init__(self) -> None:
        self.sent = 0
        self.bytes = 0

    def __enter__(self) -> CountingSender:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def send(self, msg: Any) -> None:
        self.sent += 1
        self.bytes += len(msg.data)


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def weekdays(start: date) -> Any:
    d = start
    while True:
        if d.weekday() < 5:
            yield d
        d += timedelta(days=1)


def synthetic_day(day: date, pool: list[Any], sizes: list[int], rng: random.Random) -> list[Any]:
    """A listing for `day`: real items with new ids (unique per day), dated `day`."""
    out = []
    for i, item in enumerate(rng.sample(pool, min(rng.choice(sizes), len(pool)))):
        it = copy.deepcopy(item)
        p = it["paper"]
        # 29YY.MMDDN style: never collides with a real 25xx/26xx id or another day's.
        p["id"] = f"{29 + day.year - 2026}{day.month:02d}.{day.day:02d}{i:03d}"
        p["submittedOnDailyAt"] = f"{day.isoformat()}T01:00:00.000Z"
        p["upvotes"] = max(0, int((p.get("upvotes") or 0) * rng.uniform(0.3, 1.7)))
        if p.get("ai_keywords"):
            kws = list(p["ai_keywords"])
            rng.shuffle(kws)
            p["ai_keywords"] = kws[: max(1, len(kws) - rng.randint(0, 2))]
        out.append(it)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="60 days")
    ap.add_argument("--days", type=int, default=None)
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument(
        "--backend",
        choices=("tinydb", "postgresql"),
        default="tinydb",
        help="postgresql: a real server started like the tests do (store bytes: the "
        "database's size, pg_database_size)",
    )
    args = ap.parse_args(argv)
    pg = PgDatabases() if args.backend == "postgresql" else None
    total = args.days or (60 if args.quick else 365)

    from digest.config import load_config
    from digest.pipeline import run_daily

    recorded = {p.stem: load_day(p) for p in sorted((HF_DIR / "2026-01").glob("*.json"))}
    pool = [it for items in recorded.values() for it in items]
    sizes = [len(items) for items in recorded.values()]
    rng = random.Random(2026)
    rows: list[dict[str, Any]] = []
    print(
        f"history: {total} runs, {args.subscribers:,} subscribers, 22 recorded days then "
        "synthetic weekdays; in-process run_daily, counting sender, fsync off",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="digest-bench-history-") as tmp, HFServer() as hf:
        folder = Path(tmp)
        config = write_config(folder, hf_url=hf.base_url, fsync=False)
        if pg is not None:
            use_postgresql(config)
            pg.use("history")
        cfg = load_config(config)
        seed_store(cfg, make_subscribers(args.subscribers))
        data = Path(cfg.store.path)
        t_all = time.perf_counter()
        for k, day in enumerate(weekdays(date(2026, 1, 1)), start=1):
            if k > total:
                break
            iso = day.isoformat()
            hf.days[iso] = recorded.get(iso) or synthetic_day(day, pool, sizes, rng)
            sender = CountingSender()
            c0 = cpu_seconds()
            t0 = time.perf_counter()
            report = run_daily(cfg, day, sender=sender, progress=False)
            secs = time.perf_counter() - t0
            cpu = cpu_seconds() - c0
            if report.source_errors:
                raise SystemExit(f"day {iso}: source failed: {report.source_errors}")
            rows.append(
                {
                    "run": k,
                    "day": iso,
                    "seconds": round(secs, 4),
                    "cpu_seconds": round(cpu, 4),
                    "store_bytes": folder_bytes(data) if pg is None else pg.size("history"),
                    "new_papers": report.new_papers,
                    "sent": report.sent,
                    "empty": report.empty,
                    "recorded": iso in recorded,
                }
            )
            if k % 30 == 0 or k in (1, 10) or k == total:
                print(
                    f"  run {k:3d} {iso}: {secs:.2f}s, store {rows[-1]['store_bytes']:,} B, "
                    f"sent {report.sent}",
                    flush=True,
                )
        elapsed = time.perf_counter() - t_all

    def med(lo: int, hi: int, key: str = "seconds") -> float:
        xs = [r[key] for r in rows if lo <= r["run"] <= hi]
        return statistics.median(xs) if xs else float("nan")

    early, late = med(6, 14), med(total - 8, total)
    growth = late / early
    cpu_growth = med(total - 8, total, "cpu_seconds") / med(6, 14, "cpu_seconds")
    # The store fills for ~30 runs (history_days); past that, does a run get slower?
    plateau = med(total - 29, total) / med(31, 60) if total >= 90 else float("nan")
    peak = max(r["store_bytes"] for r in rows)
    table(
        ["run", "day", "seconds", "store bytes", "new papers", "sent"],
        [
            (r["run"], r["day"], r["seconds"], r["store_bytes"], r["new_papers"], r["sent"])
            for r in rows
            if r["run"] % 30 == 0 or r["run"] in (1, 10) or r["run"] == total
        ],
    )
    table(
        ["measure", "value", "target", ""],
        [
            ("run time, median runs 6-14 (s)", early, "", ""),
            (f"run time, median runs {total - 8}-{total} (s)", late, "", ""),
            (
                "late / early",
                growth,
                f"<= {GROWTH_TARGET}",
                "met" if growth <= GROWTH_TARGET else "MISSED",
            ),
            ("late / early, on CPU seconds", cpu_growth, "(info: load-proof)", ""),
            (f"plateau: median runs {total - 29}-{total} / 31-60", plateau, "(info)", ""),
            (
                "largest store (bytes)",
                peak,
                f"< {SIZE_TARGET:,}",
                "met" if peak < SIZE_TARGET else "MISSED",
            ),
        ],
    )
    save(
        "history" if pg is None else "history-postgresql",
        {
            "store_backend": args.backend,
            "target": "last run within 1.1x of run 10 (medians of 9 runs); store < 10 MB",
            "subscribers": args.subscribers,
            "runs": total,
            "sender": "in-process counter",
            "fsync": False,
            "elapsed_seconds": round(elapsed, 1),
            "early_median_seconds": early,
            "late_median_seconds": late,
            "growth": growth,
            "cpu_growth": cpu_growth,
            "plateau_growth": plateau,
            "max_store_bytes": peak,
            "meets_time_target": growth <= GROWTH_TARGET,
            "meets_size_target": peak < SIZE_TARGET,
            "days": rows,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
