"""I/O edge: benchmark, what one web write costs at 60,000 pending subscribers, before and
after the subscriber side of the TinyDB store became a journal.

    python bench/store_writes.py [--quick] [--pending 60000] [--writes 40] [--baseline REV]

Both stores run in child processes of this one run, on the same disk, fsync on (the
default): "before" is the store of git revision REV (default 93dd5fa, the last one whose
every subscriber write rewrote subscribers.json; its package is taken with `git archive`),
"after" is this checkout. Each child seeds N pending subscribers, reopens the store, then
times W web subscribes one by one: before, `put_subscribers([one pending])` (what the web
did); after, `update_subscriber` with a Change (the pending subscriber AND its
confirmation mail queued, in one atomic write). After also runs 20*W more subscribes, a
rate-limit hit and a nonce each, to show the amortised cost including the journal folds.
Last, the CPU of one delivery record (fsync off, 5,000 records), before and after.
Ratios are within one run; the machine is shared, so absolute figures are noisy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import ROOT, baseline_tree, save, table

BEFORE = r"""
import json, sys, time
from datetime import date
from pathlib import Path
from digest.config import StoreConfig
from digest.models import Subscriber, digest_id
from digest.store.tinydb import TinyStore

folder, n, w = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
cfg = StoreConfig(path=folder, fsync=True)
s = TinyStore(cfg)
s.put_subscribers([Subscriber(f"p{i}@example.org", ("llm",), status="pending") for i in range(n)])
s.close()
s = TinyStore(cfg)
times = []
for i in range(w):
    t = time.perf_counter()
    s.put_subscribers([Subscriber(f"new{i}@example.org", ("agents",), status="pending")])
    times.append(time.perf_counter() - t)
s.close()
s = TinyStore(StoreConfig(path=folder / "rec", fsync=False))
day = date(2026, 1, 5)
c = time.process_time()
for i in range(5000):
    e = f"u{i}@example.org"
    s.record_digest(digest_id(e, day), e, day, "sent", ["2601.00001", "2601.00002"])
cpu = (time.process_time() - c) / 5000
s.close()
print(json.dumps({"times": times, "record_cpu": cpu}))
"""

AFTER = r"""
import json, os, sys, time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from digest.config import Limit, StoreConfig
from digest.models import DeliveryRecord, OutgoingMessage, RunReport, Subscriber, digest_id
from digest.store import Change
from digest.store.tinydb import TinyStore

folder, n, w = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
cfg = StoreConfig(path=folder, fsync=True)
s = TinyStore(cfg)
s.put_subscribers([Subscriber(f"p{i}@example.org", ("llm",), status="pending") for i in range(n)])
s.flush()
s.close()
s = TinyStore(cfg)
now = datetime.now(UTC)
body = ("Subject: Confirm your subscription\r\n\r\n" + "x" * 70 + "\r\n") * 40

def subscribe(i):
    email = f"new{i}@example.org"
    msg = OutgoingMessage(f"web-confirm-{i}", email, "d@example.org", f"<{i}@x>", body.encode())
    new = Subscriber(email, ("agents",), status="pending", created=now.isoformat())
    s.update_subscriber(email, lambda cur: Change(new, (msg,)), now=now)

times = []
for i in range(w):
    t = time.perf_counter()
    subscribe(i)
    times.append(time.perf_counter() - t)
base = folder / "subscribers.json"
ino, folds, worst = os.stat(base).st_ino, 0, 0.0
t_all = time.perf_counter()
m = 20 * w
for i in range(w, w + m):
    t = time.perf_counter()
    subscribe(i)
    s.hit_limit(f"ip:10.0.{i % 250}.1", Limit(10, 3600), now)
    s.use_nonce(f"form-{i}", now + timedelta(hours=1), now)
    worst = max(worst, time.perf_counter() - t)
    if os.stat(base).st_ino != ino:
        ino, folds = os.stat(base).st_ino, folds + 1
amortised = (time.perf_counter() - t_all) / m
journal = (folder / "changes.jsonl").stat().st_size
t = time.perf_counter()
s.flush()  # one fold: the rewrite the journal saves all but once per ~base-size of writes
fold = time.perf_counter() - t
s.close()
s = TinyStore(StoreConfig(path=folder / "rec", fsync=False))
day = date(2026, 1, 5)
with s.run(day, RunReport(day=day)) as run:
    c = time.process_time()
    for i in range(5000):
        e = f"u{i}@example.org"
        run.record(DeliveryRecord(digest_id(e, day), e, day, "sent", ("2601.00001", "2601.00002")))
    cpu = (time.process_time() - c) / 5000
s.close()
print(json.dumps({"times": times, "record_cpu": cpu, "amortised": amortised,
                  "amortised_writes": m, "folds": folds, "worst": worst, "fold": fold,
                  "journal_bytes": journal, "base_bytes": base.stat().st_size}))
"""


def child(code: str, path: Path, folder: Path, n: int, w: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", code, str(folder), str(n), str(w)],
        cwd=folder.parent,
        env={"PYTHONPATH": str(path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise SystemExit(f"child failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="6,000 pending, 15 writes")
    ap.add_argument("--pending", type=int, default=None)
    ap.add_argument("--writes", type=int, default=None)
    ap.add_argument("--baseline", default="93dd5fa")
    args = ap.parse_args(argv)
    n = args.pending or (6000 if args.quick else 60000)
    w = args.writes or (15 if args.quick else 40)
    print(f"store writes: {n:,} pending subscribers, {w} timed web writes each, fsync on")
    with tempfile.TemporaryDirectory(prefix="digest-bench-writes-") as tmp:
        tmp_path = Path(tmp)
        old_tree = baseline_tree(args.baseline, tmp_path / "old")
        after = child(AFTER, ROOT, tmp_path / "after", n, w)
        before = child(BEFORE, old_tree, tmp_path / "before", n, w) if old_tree else None

    def ms(xs: list[float], q: float) -> float:
        return round(1000 * statistics.quantiles(xs, n=20)[int(q * 20) - 1], 2)

    rows = []
    if before:
        rows.append(
            (
                f"before ({args.baseline}): put_subscribers",
                round(1000 * statistics.median(before["times"]), 2),
                ms(before["times"], 0.9),
                round(1000 * max(before["times"]), 2),
            )
        )
    rows.append(
        (
            "after: update_subscriber + queued mail",
            round(1000 * statistics.median(after["times"]), 2),
            ms(after["times"], 0.9),
            round(1000 * max(after["times"]), 2),
        )
    )
    table(["web subscribe write", "median ms", "p90 ms", "max ms"], rows)
    ratio = (
        statistics.median(before["times"]) / statistics.median(after["times"]) if before else None
    )
    table(
        ["measure", "value"],
        [
            ("before / after, median write", round(ratio, 1) if ratio else "n/a"),
            (
                f"after, amortised over {after['amortised_writes']} subscribes + hit + nonce (ms)",
                round(1000 * after["amortised"], 2),
            ),
            ("after, journal folds meanwhile", after["folds"]),
            ("after, slowest of those (ms)", round(1000 * after["worst"], 1)),
            (
                f"after, one fold of {after['journal_bytes']:,} B of journal (ms)",
                round(1000 * after["fold"], 1),
            ),
            ("after, subscribers.json after it (bytes)", after["base_bytes"]),
            (
                "record CPU before (us, fsync off)",
                round(1e6 * before["record_cpu"], 1) if before else "n/a",
            ),
            ("record CPU after (us, fsync off)", round(1e6 * after["record_cpu"], 1)),
        ],
    )
    save(
        "store_writes",
        {
            "pending": n,
            "writes": w,
            "baseline": args.baseline,
            "before": before,
            "after": after,
            "ratio_median": ratio,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
