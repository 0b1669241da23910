"""I/O edge: how fast the papers page answers for a 50-paper day (issue 13: < 50 ms).

    python bench/papers_page.py [--papers 50] [--runs 40] [--quick]

50 real papers (the recorded Hugging Face days in shared/fixtures, parsed by the product's
own source code, with their authors, AI summaries, upvotes and stars) are recorded as one
day in a fresh TinyDB store; the real web app (digest.web.make_app) answers in-process
(Starlette's TestClient: the whole request path, store reads, ranking, templates and
headers, without a socket). Timed, each `--runs` times after one untimed first request:

- GET /papers/DAY             the day, most popular first
- GET /papers/DAY + ETag      a revalidation: 304, no body
- GET /papers/DAY?q=...       a search, words only ([ranking] semantic = false)
- GET /papers/DAY?q=...       a search with the semantic model (the default; its first
                              call loads the model and embeds the papers: shown apart)
- GET /papers                 the latest day (same page, resolved from the store's days)
- a store holding 30 days of 100 papers each: its oldest day and its latest (/papers)

Prints first / median / p95 milliseconds per case beside the 50 ms target (measured and
printed, not asserted) and writes bench/results/papers_page.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from _common import HF_DIR, SECRET, machine, save, table

from digest.config import Config, RankingConfig, StoreConfig, WebConfig
from digest.models import Paper
from digest.sources.hf import parse_daily_papers

DAY = date(2026, 3, 10)
TARGET_MS = 50.0
HISTORY_DAYS = 30  # the history case: [store] history_days of 100-paper days
QUERY = 'language model, "reinforcement learning", -survey'


def real_papers(n: int) -> list[Paper]:
    """`n` distinct papers from the recorded Hugging Face days, all listed on DAY."""
    out: dict[str, Paper] = {}
    for path in sorted(HF_DIR.rglob("*.json")):
        papers, _ = parse_daily_papers(json.loads(path.read_bytes()), listed_on=DAY)
        for p in papers:
            out.setdefault(p.id, replace(p, listed_on=DAY))
        if len(out) >= n:
            break
    if len(out) < n:
        sys.exit(f"papers_page: only {len(out)} recorded papers found under {HF_DIR}")
    return list(out.values())[:n]


def timed(client, path: str, runs: int, headers: dict[str, str] | None = None) -> dict:
    t0 = time.perf_counter()
    r = client.get(path, headers=headers or {})
    first = (time.perf_counter() - t0) * 1000
    status = r.status_code
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = client.get(path, headers=headers or {})
        times.append((time.perf_counter() - t0) * 1000)
        if r.status_code != status:
            sys.exit(f"papers_page: {path} answered {r.status_code}, then {status}")
    times.sort()
    p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
    return {
        "status": status,
        "bytes": len(r.content),
        "first_ms": round(first, 2),
        "median_ms": round(statistics.median(times), 2),
        "p95_ms": round(p95, 2),
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--papers", type=int, default=50)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--quick", action="store_true", help="10 runs, no semantic case")
    args = ap.parse_args(argv)
    runs = 10 if args.quick else args.runs

    import os

    from starlette.testclient import TestClient

    from digest.store import open_store
    from digest.web import make_app
    from digest.web.settings import WebSettings

    os.environ.setdefault("DIGEST_SECRET", SECRET)
    papers = real_papers(args.papers)
    now = datetime(DAY.year, DAY.month, DAY.day, 9, 0, tzinfo=UTC)
    rows, results = [], {}
    with tempfile.TemporaryDirectory(prefix="digest-papers-bench-") as tmp:
        store_cfg = StoreConfig(path=Path(tmp) / "data", fsync=False)
        cases = [("words only", False)] + ([] if args.quick else [("semantic", True)])
        for label, semantic in cases:
            cfg = replace(
                Config(),
                store=store_cfg,
                web=WebConfig(base_url="http://127.0.0.1:8000"),
                ranking=RankingConfig(semantic=semantic),
            )
            store = open_store(cfg.store)
            store.record_seen(papers, DAY)
            settings = WebSettings.from_config(cfg.web, env={})
            # no limit on searches here: the bench asks many times a minute
            settings = replace(settings, rate_preview=replace(settings.rate_preview, count=10**9))
            # the mail queue's clock too: its housekeeping prunes by that clock's day, and
            # on the real date the recorded day is past the store's history_days
            app = make_app(
                cfg, store=store, now=lambda: now, mail_clock=lambda: now, settings=settings
            )
            plan = [(f"/papers/{DAY.isoformat()}?q={QUERY}", f"search ({label})")]
            if not semantic:
                plan = [
                    (f"/papers/{DAY.isoformat()}", "day page"),
                    ("/papers", "latest day (/papers)"),
                    *plan,
                ]
            with TestClient(app) as client:
                for path, name in plan:
                    res = timed(client, path, runs)
                    results[name] = res
                    rows.append(_row(name, res))
                    if name == "day page":
                        etag = client.get(path).headers["etag"]
                        res = timed(client, path, runs, {"If-None-Match": etag})
                        results["revalidation (304)"] = res
                        rows.append(_row("revalidation (304)", res))
            store.close()
        # A full history: 30 days of 100 papers each; the oldest day, then the latest.
        cfg = replace(
            Config(),
            store=replace(store_cfg, path=Path(tmp) / "history"),
            web=WebConfig(base_url="http://127.0.0.1:8000"),
            ranking=RankingConfig(semantic=False),
        )
        store = open_store(cfg.store)
        hundred = real_papers(100)
        first = DAY - timedelta(days=HISTORY_DAYS - 1)
        for i in range(HISTORY_DAYS):
            d = first + timedelta(days=i)
            store.record_seen([replace(p, id=f"{p.id}{i:02d}", listed_on=d) for p in hundred], d)
        app = make_app(cfg, store=store, now=lambda: now, mail_clock=lambda: now, settings=settings)
        with TestClient(app) as client:
            for path, name in [
                (f"/papers/{first.isoformat()}", f"oldest of {HISTORY_DAYS} days x 100 papers"),
                ("/papers", f"latest of {HISTORY_DAYS} days x 100 papers"),
            ]:
                res = timed(client, path, runs)
                results[name] = res
                rows.append(_row(name, res))
        store.close()
    print(f"papers page, a {args.papers}-paper day, {runs} timed requests per case (in-process)")
    table(["request", "status", "KB", "first ms", "median ms", "p95 ms", "< 50 ms"], rows)
    save(
        "papers_page",
        {"machine": machine(), "papers": args.papers, "query": QUERY, "results": results},
    )
    return 0


def _row(name: str, res: dict) -> tuple:
    ok = "yes" if res["median_ms"] < TARGET_MS else "no"
    return (
        name,
        res["status"],
        round(res["bytes"] / 1024, 1),
        res["first_ms"],
        res["median_ms"],
        res["p95_ms"],
        ok,
    )


if __name__ == "__main__":
    sys.exit(main())
