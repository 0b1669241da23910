"""I/O edge: benchmark, compute only: rank + render + build the message, no network.

    python bench/compute.py [--quick] [--sizes 1000,10000] [--repeat 3]

The papers of the recorded HF day 2026-03-10, parsed by the product's HF parser; N
synthetic subscribers (real vocabulary, bench/_common.py). In-process, one thread, with
numpy/BLAS held to one thread (the env vars are set before numpy is imported), so the
figure is "digests per second on one core". Stages timed separately:

  rank    digest.rank.rank over all subscribers (vectorised)
  build   digest.pipeline.build_all: links (signed tokens), render, build_message

Both wall time and CPU time (time.process_time) are reported; the machine is shared, so
CPU time is the steadier figure and the target is judged on it. Median of `--repeat`.
Target: >= 2,000 digests/s.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core: before numpy is imported

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402

from _common import (  # noqa: E402
    E2E_DAY,
    HF_DIR,
    load_day,
    make_subscribers,
    save,
    table,
    write_config,
)

TARGET = 2000.0


class Timer:
    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __enter__(self) -> Timer:
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall += time.perf_counter() - self._w
        self.cpu += time.process_time() - self._c


def taught(subs: list[Any], pool: list[Any], seed: int = 9) -> list[Any]:
    """--models: every subscriber has an id (so every card carries its rating links),
    10-40 ratings of papers of other days and, one in five, 1-5 example papers."""
    import random

    from digest.models import DOWN, UP

    rnd = random.Random(seed)
    out = []
    for i, s in enumerate(subs):
        picked = rnd.sample(pool, min(len(pool), rnd.randint(10, 40)))
        ratings = tuple((p.id, UP if rnd.random() < 2 / 3 else DOWN, 0, p.title) for p in picked)
        ex = ()
        if rnd.random() < 0.2:
            ex = tuple((p.id, p.title) for p in rnd.sample(pool, rnd.randint(1, 5)))
        out.append(replace(s, id=f"sub{i:07d}", ratings=ratings, examples=ex))
    return out


def one_pass(
    cfg: Any, papers: list[Any], subs: list[Any], known: dict[str, Any] | None = None
) -> dict[str, float]:
    from digest.models import Digest
    from digest.pipeline import build_all
    from digest.rank import rank

    stamp = datetime(2026, 3, 10, 7, 0, tzinfo=UTC)
    t_rank, t_build = Timer(), Timer()
    with t_rank:
        picks = rank(
            papers,
            subs,
            exclude={},
            popularity_weight=cfg.ranking.popularity_weight,
            known=known or {},
        )
        digests = [Digest(s, E2E_DAY, picks.get(s.email, ())) for s in subs]
    digests = [d for d in digests if d.picks]
    by_id = {p.id: p for p in papers}
    size = 0
    with t_build:
        for _d, msg in build_all(cfg, cfg.secret() or "bench", digests, by_id, stamp):
            size += len(msg.data)
    n = len(subs)
    return {
        "rank_wall": t_rank.wall,
        "rank_cpu": t_rank.cpu,
        "build_wall": t_build.wall,
        "build_cpu": t_build.cpu,
        "messages": len(digests),
        "bytes": size,
        "per_s_wall": n / (t_rank.wall + t_build.wall),
        "per_s_cpu": n / (t_rank.cpu + t_build.cpu),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1,000 subscribers, 1 repeat")
    ap.add_argument("--sizes", default=None)
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument(
        "--models", action="store_true", help="every subscriber with ratings and rating links"
    )
    args = ap.parse_args(argv)
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else ([1000] if args.quick else [1000, 10000])
    )
    repeat = args.repeat or (1 if args.quick else 3)

    import tempfile
    from pathlib import Path

    from digest.config import load_config
    from digest.sources.hf import parse_daily_papers

    with tempfile.TemporaryDirectory(prefix="digest-bench-compute-") as tmp:
        cfg = load_config(write_config(Path(tmp), hf_url="http://127.0.0.1:9"))
    papers, _ = parse_daily_papers(
        load_day(HF_DIR / f"{E2E_DAY.isoformat()}.json"), listed_on=E2E_DAY
    )
    print(
        f"compute: {len(papers)} papers of {E2E_DAY}, sizes {sizes}, median of {repeat}", flush=True
    )
    known: dict[str, Any] = {}
    if args.models:  # rated papers: the other recorded days
        for f in sorted(HF_DIR.glob("*.json")):
            if f.stem != E2E_DAY.isoformat():
                known.update({p.id: p for p in parse_daily_papers(load_day(f), listed_on=None)[0]})
    pool = list(known.values())

    def subscribers(n: int, seed: int = 7) -> list[Any]:
        # Ids as the store gives them: every mail's links are signed with the id.
        subs = [replace(s, id=f"sub{i:07d}") for i, s in enumerate(make_subscribers(n, seed))]
        return taught(subs, pool) if args.models else subs

    one_pass(cfg, papers, subscribers(200, seed=1), known)  # warm-up: imports, templates
    results = []
    for n in sizes:
        subs = subscribers(n)
        runs = [one_pass(cfg, papers, subs, known) for _ in range(repeat)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        results.append(
            {
                "subscribers": n,
                "papers": len(papers),
                "repeats": repeat,
                "messages": int(med["messages"]),
                "mean_message_bytes": int(med["bytes"] / max(med["messages"], 1)),
                "rank_seconds_cpu": med["rank_cpu"],
                "build_seconds_cpu": med["build_cpu"],
                "rank_seconds_wall": med["rank_wall"],
                "build_seconds_wall": med["build_wall"],
                "digests_per_s_cpu": med["per_s_cpu"],
                "digests_per_s_wall": med["per_s_wall"],
                "first_pass_digests_per_s_cpu": runs[0]["per_s_cpu"],
                "meets_target": med["per_s_cpu"] >= TARGET,
                "runs": runs,
            }
        )
    table(
        [
            "subscribers",
            "messages",
            "rank s (cpu)",
            "build s (cpu)",
            "digests/s (cpu)",
            "digests/s (wall)",
            "1st pass /s (cpu)",
            "target 2,000/s",
        ],
        [
            (
                r["subscribers"],
                r["messages"],
                r["rank_seconds_cpu"],
                r["build_seconds_cpu"],
                r["digests_per_s_cpu"],
                r["digests_per_s_wall"],
                r["first_pass_digests_per_s_cpu"],
                "met" if r["meets_target"] else "MISSED",
            )
            for r in results
        ],
    )
    save(
        "compute_models" if args.models else "compute",
        {
            "models": args.models,
            "target": f">= {TARGET:,.0f} digests/s on one core (CPU time)",
            "results": results,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
