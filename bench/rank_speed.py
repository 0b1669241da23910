"""I/O edge (benchmark): speed and memory of rank() at 10,000 subscribers x 500 papers.

Papers: the first 500 papers of shared/relevance-dev/corpus.jsonl (real titles, abstracts,
ai_keywords, upvotes). Subscribers: synthetic, seeded; 1-5 keywords each drawn from real paper
vocabulary (ai_keywords of the 500 papers and of the recorded days in
shared/fixtures/hf_daily_papers, plus title bigrams), 15% with an exclusion
term, 5% without include keywords, a few with min_score or already-delivered papers.

Reported: best-of-N wall time of one rank() call over everyone (the first call of the
process also loads the semantic model and embeds every matched paper and every distinct
keyword once: reported apart, as "cold"; later calls find the vectors cached, as every
later rank() of a daily run does), the same with `semantic=False` (words only), peak traced memory
(tracemalloc, separate run), and the ratio against a per-subscriber rank-bm25 loop
(BM25Okapi over title+abstract built once, get_scores per subscriber, exclusion filter,
top-k). The loop is timed on a subsample of subscribers and extrapolated linearly to all
of them; the output says so.

    .venv/bin/python bench/rank_speed.py [--subscribers 10000] [--papers 500] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import resource
import sys
import time
import tracemalloc
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared"
sys.path.insert(0, str(ROOT))

from rank_bm25 import BM25Okapi  # noqa: E402

from digest.models import Paper, Subscriber  # noqa: E402
from digest.rank import rank  # noqa: E402
from digest.rank.exclusions import excluded  # noqa: E402

EXCLUSION_POOL = [
    "survey",
    "benchmark",
    "robot",
    "medical",
    "autonomous driving",
    "3D",
    "reinforcement learning",
    "video",
    "agent",
    "dataset",
]


def load_papers(n: int) -> list[Paper]:
    rows = []
    with (SHARED / "relevance-dev" / "corpus.jsonl").open(encoding="utf-8") as f:
        for line in f:
            rows.append(json.loads(line))
            if len(rows) >= n:
                break
    return [
        Paper(
            id=r["id"],
            title=r["title"],
            abstract=r["abstract"],
            ai_keywords=tuple(r.get("ai_keywords") or ()),
            upvotes=r.get("upvotes"),
            listed_on=date.fromisoformat(r["daily_date"]),
        )
        for r in rows
    ]


def fixture_keywords() -> list[str]:
    """ai_keywords of the recorded Hugging Face days in shared/fixtures (other days than
    the ranked papers: subscribers do not type the day's exact phrases)."""
    found: set[str] = set()
    for path in sorted((SHARED / "fixtures" / "hf_daily_papers").rglob("*.json")):
        try:
            items = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for it in items if isinstance(items, list) else []:
            paper = it.get("paper") if isinstance(it, dict) else None
            kws = paper.get("ai_keywords") if isinstance(paper, dict) else None
            found.update(k.strip() for k in kws or () if isinstance(k, str) and k.strip())
    return sorted(found)


def synthetic_subscribers(papers: list[Paper], n: int, seed: int = 7) -> list[Subscriber]:
    rnd = random.Random(seed)
    vocab = sorted({k for p in papers for k in p.ai_keywords}) + fixture_keywords()
    for p in papers:
        words = re.findall(r"[A-Za-z][A-Za-z0-9-]+", p.title)
        vocab += [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)][:3]
    subs = []
    for i in range(n):
        kws: list[str] = []
        if rnd.random() >= 0.05:
            kws = rnd.sample(vocab, rnd.randint(1, 5))
        if rnd.random() < 0.15:
            kws.append("-" + rnd.choice(EXCLUSION_POOL))
        subs.append(
            Subscriber(
                email=f"user{i}@example.org",
                keywords=tuple(kws),
                max_papers=rnd.choice([5, 10, 10, 20]),
                min_score=rnd.choice([None, None, None, 20.0]),
            )
        )
    return subs


def delivered(papers: list[Paper], subs: list[Subscriber], seed: int = 8) -> dict[str, set[str]]:
    rnd = random.Random(seed)
    ids = [p.id for p in papers]
    return {s.email: set(rnd.sample(ids, 3)) for s in subs if rnd.random() < 0.1}


def with_models(
    subs: list[Subscriber], pool: list[Paper], seed: int = 9
) -> tuple[list[Subscriber], dict[str, Paper]]:
    """Every subscriber taught something: 10-40 ratings (two thirds up) of papers of
    earlier days and, for one in five, 1-5 example papers (digest/rank/learn.py)."""
    from digest.models import DOWN, UP

    rnd = random.Random(seed)
    out = []
    for s in subs:
        picked = rnd.sample(pool, rnd.randint(10, 40))
        ratings = tuple((p.id, UP if rnd.random() < 2 / 3 else DOWN, 0, p.title) for p in picked)
        examples = ()
        if rnd.random() < 0.2:
            examples = tuple((p.id, p.title) for p in rnd.sample(pool, rnd.randint(1, 5)))
        out.append(Subscriber(**{**_fields(s), "ratings": ratings, "examples": examples}))
    return out, {p.id: p for p in pool}


def _fields(s: Subscriber) -> dict[str, object]:
    return {f: getattr(s, f) for f in Subscriber.__dataclass_fields__}


def bm25_loop(papers: list[Paper], subs: list[Subscriber], ex: dict[str, set[str]]) -> None:
    """The naive approach: one BM25 query per subscriber."""
    bm = BM25Okapi([f"{p.title} {p.abstract}".lower().split() for p in papers])
    texts = [f"{p.title}\n{p.abstract}" for p in papers]
    for s in subs:
        q = s.query
        scores = bm.get_scores(" ".join(q.includes).lower().split())
        order = sorted(range(len(papers)), key=lambda i: (-scores[i], papers[i].id))
        picks = []
        for i in order:
            if papers[i].id in ex.get(s.email, ()) or excluded(q.excludes, texts[i]):
                continue
            picks.append(papers[i].id)
            if len(picks) >= s.max_papers:
                break


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subscribers", type=int, default=10_000)
    ap.add_argument("--papers", type=int, default=500)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--loop-sample", type=int, default=200)
    args = ap.parse_args(argv)

    papers = load_papers(args.papers)
    subs = synthetic_subscribers(papers, args.subscribers)
    ex = delivered(papers, subs)
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        out = rank(papers, subs, exclude=ex)
        times.append(time.perf_counter() - t0)
    best = min(times)
    words = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        rank(papers, subs, exclude=ex, semantic=False)
        words.append(time.perf_counter() - t0)
    # Peak resident memory of this whole process so far (Linux: KiB): interpreter,
    # numpy/scipy, the corpus, 10k subscribers and the timed rank() runs (before tracemalloc,
    # whose own bookkeeping would inflate it).
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # With a model per subscriber (ratings and examples of papers of earlier days).
    pool = load_papers(args.papers + 1000)[args.papers :]
    taught, known = with_models(subs, pool)
    learned = []
    for _ in range(args.runs + 1):  # the first embeds the pool's papers once
        t0 = time.perf_counter()
        rank(papers, taught, exclude=ex, known=known)
        learned.append(time.perf_counter() - t0)
    tracemalloc.start()
    rank(papers, subs, exclude=ex)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()

    sample = subs[: args.loop_sample]
    t0 = time.perf_counter()
    bm25_loop(papers, sample, ex)
    loop_sample = time.perf_counter() - t0
    loop_all = loop_sample * len(subs) / max(len(sample), 1)

    n_picks = sum(len(v) for v in out.values())
    distinct = len({tuple(sorted(s.keywords)) for s in subs})
    result = {
        "papers": len(papers),
        "subscribers": len(subs),
        "distinct_keyword_sets": distinct,
        "picks": n_picks,
        "rank_seconds_best": round(best, 3),
        "rank_seconds_all_runs": [round(t, 3) for t in times],
        "rank_seconds_first_run_cold_caches": round(times[0], 3),
        "rank_seconds_words_only_best": round(min(words), 3),
        "rank_seconds_with_models_best": round(min(learned[1:]), 3),
        "rank_seconds_with_models_all_runs": [round(t, 3) for t in learned],
        "rank_peak_traced_mb": round(peak, 1),
        "process_peak_rss_mb": round(rss, 1),
        "bm25_loop_seconds_sample": round(loop_sample, 3),
        "bm25_loop_sample_size": len(sample),
        "bm25_loop_seconds_extrapolated": round(loop_all, 2),
        "speedup_vs_bm25_loop": round(loop_all / best, 1),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print(f"{'measure':<44}{'value':>12}")
    print(f"{'papers x subscribers':<44}{f'{len(papers)} x {len(subs)}':>12}")
    print(f"{'distinct keyword sets':<44}{distinct:>12}")
    print(f"{'rank() best of ' + str(args.runs) + ' (s)':<44}{best:>12.3f}")
    print(f"{'rank() first run: model load + embeddings (s)':<44}{times[0]:>12.3f}")
    print(f"{'rank() words only (semantic off), best (s)':<44}{min(words):>12.3f}")
    print(f"{'rank() with a model per subscriber, best (s)':<44}{min(learned[1:]):>12.3f}")
    print(f"{'rank() peak traced memory (MB)':<44}{peak:>12.1f}")
    print(f"{'whole process peak RSS (MB)':<44}{rss:>12.1f}")
    print(f"{'rank-bm25 loop, ' + str(len(sample)) + ' subscribers (s)':<44}{loop_sample:>12.3f}")
    print(f"{'rank-bm25 loop, extrapolated to all (s)':<44}{loop_all:>12.2f}")
    print(f"{'speed-up of rank() over the loop':<44}{loop_all / best:>11.1f}x")
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "rank_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
