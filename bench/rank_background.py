"""I/O edge (tool): rebuild digest/rank/semantic_background.npy, the semantic reference set.

    python bench/rank_background.py

The semantic similarity of a keyword and a paper is standardised against how similar the
keyword is to ordinary papers of the field (digest/rank/dense.py). Those ordinary papers
are the recorded Hugging Face daily-paper responses the tests replay
(../shared/fixtures/hf_daily_papers/, 2025-10 .. 2026-08, none from relevance-dev's months)
plus the bundled sample day (digest/data/recorded/): 439 papers, embedded with the
product's own encoder (digest/rank/semantic.py) and stored as float16 (330 KB), sorted by
paper id so a rebuild from the same files gives the same bytes.
"""

from __future__ import annotations

import json
import sys

import numpy as np
from _common import FIXTURES, ROOT

from digest.rank.dense import paper_text
from digest.rank.semantic import BACKGROUND, encoder


def recorded_papers() -> dict[str, str]:
    """paper id -> embedded text, over every recorded daily-papers response."""
    files = sorted((FIXTURES / "hf_daily_papers").rglob("*.json"))
    files += sorted((ROOT / "digest" / "data" / "recorded").glob("hf_*.json"))
    out: dict[str, str] = {}
    for f in files:
        items = json.loads(f.read_text(encoding="utf-8"))
        if not isinstance(items, list):
            continue  # an error response
        for it in items:
            p = it.get("paper") or {}
            if p.get("id") and p["id"] not in out:
                out[p["id"]] = paper_text(
                    p.get("title") or it.get("title") or "", p.get("summary") or ""
                )
    return out


def main() -> int:
    enc = encoder()
    if enc is None:
        print("the semantic model is not available", file=sys.stderr)
        return 1
    papers = recorded_papers()
    ids = sorted(papers)
    vecs = enc.embed([papers[i] for i in ids]).astype(np.float16)
    dest = ROOT / "digest" / "rank" / BACKGROUND
    with dest.open("wb") as f:
        np.save(f, vecs, allow_pickle=False)
    print(f"{len(ids)} papers -> {dest.relative_to(ROOT)} ({dest.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
