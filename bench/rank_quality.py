"""I/O edge (benchmark): ranking quality on shared/relevance-dev (nDCG@10, P@5, R@20).

Rankers, all with the exclusion filter of the dev set's README applied:
  product          digest.rank.rank() as `digest rank` uses it (the daily run's scores,
                   without the cut and the trending section), through its loaders
  BM25             rank-bm25 BM25Okapi over title + abstract, query = keywords joined
  upvotes          popularity alone
and ablations of the product (each switches ONE part off by patching a module constant
for the duration of the call) to show what each part contributes.

Metrics come from the dev set's own evaluate.py (imported, not copied). Only the four
public profiles are here; the quality bar is measured on 12 hidden ones, so the ablation
numbers are indicative, not a tuning target.

    .venv/bin/python bench/rank_quality.py
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEV = Path(__file__).resolve().parents[2] / "shared" / "relevance-dev"
sys.path.insert(0, str(ROOT))

from rank_bm25 import BM25Okapi  # noqa: E402

import digest.rank.expand as expand  # noqa: E402
import digest.rank.model as model  # noqa: E402
import digest.rank.query as query  # noqa: E402
from digest.models import Paper, Subscriber  # noqa: E402
from digest.rank.cli import read_corpus, read_profiles  # noqa: E402
from digest.rank.exclusions import excluded  # noqa: E402

TOP = 100
Run = dict[str, list[str]]


def load_evaluate():
    spec = importlib.util.spec_from_file_location("relevance_evaluate", DEV / "evaluate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def product_run(papers: list[Paper], profiles: list[tuple[str, Subscriber]], **kw) -> Run:
    # a ranking, as `digest rank` writes it: every match in order, no cut, no trending
    kw = {"min_score": 0.0, "trending": 0, **kw}
    picks = model.rank(papers, [s for _, s in profiles], **kw)
    return {pid: [p.paper_id for p in picks[s.email]] for pid, s in profiles}


def _allowed(papers: list[Paper], sub: Subscriber) -> list[int]:
    ex = sub.query.excludes
    return [i for i, p in enumerate(papers) if not excluded(ex, f"{p.title}\n{p.abstract}")]


def bm25_run(papers: list[Paper], profiles: list[tuple[str, Subscriber]]) -> Run:
    def tok(text: str) -> list[str]:
        return re.findall(r"[a-z0-9]+", text.lower())

    bm = BM25Okapi([tok(f"{p.title} {p.abstract}") for p in papers])
    out = {}
    for pid, s in profiles:
        scores = bm.get_scores(tok(", ".join(s.query.includes)))
        ok = _allowed(papers, s)
        ok.sort(key=lambda i: (-scores[i], papers[i].id))
        out[pid] = [papers[i].id for i in ok[:TOP]]
    return out


def upvotes_run(papers: list[Paper], profiles: list[tuple[str, Subscriber]]) -> Run:
    out = {}
    for pid, s in profiles:
        ok = _allowed(papers, s)
        ok.sort(key=lambda i: (-(papers[i].upvotes or 0), papers[i].id))
        out[pid] = [papers[i].id for i in ok[:TOP]]
    return out


@contextlib.contextmanager
def patched(obj: object, name: str, value: object) -> Iterator[None]:
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def ablation(obj: object, name: str, value: object, **kw) -> Callable[..., Run]:
    def run(papers, profiles):
        with patched(obj, name, value):
            return product_run(papers, profiles, **kw)

    return run


def main() -> int:
    ev = load_evaluate()
    qrels = ev.read_qrels(str(DEV / "qrels.tsv"))
    papers = read_corpus(DEV / "corpus.jsonl")
    profiles = read_profiles(DEV / "profiles.json", TOP)
    ids = sorted(qrels)
    rankers: dict[str, Callable[..., Run]] = {
        "product (rank())": product_run,
        "BM25 title+abstract (rank-bm25)": bm25_run,
        "upvotes only": upvotes_run,
        "  - without feedback (PRF)": ablation(model, "FEEDBACK_WEIGHT", 0.0),
        "  - without abbreviations": ablation(query, "alternatives", lambda k, t: []),
        "  - without curated abbrev. table": ablation(expand, "CURATED", ()),
        "  - without bigrams": ablation(query, "BIGRAM_WEIGHT", 0.0),
        "  - with popularity 0.15": lambda p, pr: product_run(p, pr, popularity_weight=0.15),
        "  - without set-phrase cohesion": ablation(query, "COHESION", 0.0),
    }
    results = {}
    print(f"{'ranker':<36}{'nDCG@10':>9}{'P@5':>8}{'R@20':>8}{'judged@10':>11}")
    for name, fn in rankers.items():
        run = fn(papers, profiles)
        per, mean = ev.evaluate(run, qrels, ids, 1)
        results[name.strip(" -")] = {"mean": mean, "per_profile": per}
        print(
            f"{name:<36}{mean['nDCG@10']:>9.3f}{mean['P@5']:>8.3f}{mean['R@20']:>8.3f}"
            f"{mean['judged@10']:>11.2f}"
        )
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "rank_quality.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
