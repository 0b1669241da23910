"""Pure: no I/O. The semantic signal: how much closer a paper is to a keyword than
ordinary papers of the field are, from sentence embeddings (digest/rank/semantic.py).

A raw cosine means different things for different keywords: a short, common keyword sits
close to every ML paper, a rare one to none. So each keyword's cosine with a paper is
turned into a standard score against a *fixed* reference set of ordinary papers
(semantic.background(), 439 recorded daily papers of other months), not against the day's
own papers: a score means the same on a quiet day as on a busy one, and whichever papers
happen to share the day change nothing (the lexical model follows the same rule).

      z    = (cos(keyword, paper) - mean_ref) / sd_ref     (per keyword)
      sem  = clip(z - Z_FLOOR, 0, Z_SPAN) / Z_SPAN           (0..1)

Only closeness counts (sem >= 0), per keyword, so adding a keyword can only add. How much a
keyword's sem adds to its lexical score is SEMANTIC_WEIGHT (digest/rank/model.py), and it
never makes a match on its own: the keywords' words must be there (MATCH_FLOOR).

Hybrid lexical + dense scoring is the usual remedy for vocabulary mismatch (a keyword
"LLM serving" and a paper on "KV-cache eviction"); measured on shared/relevance-dev in
bench/README.md ("Semantic signal").
"""

from __future__ import annotations

import numpy as np

Z_FLOOR = 0.0  # standard scores below this add nothing
Z_SPAN = 6.0  # a paper this many reference SDs closer than average gets the full 1.0
MIN_SD = 1e-3  # guards a degenerate reference (all vectors equal)


def paper_text(title: str, abstract: str) -> str:
    """What is embedded for a paper: the title, then the abstract (the model reads the
    first 128 word pieces)."""
    title = " ".join(title.split())
    abstract = " ".join(abstract.split())
    return f"{title}. {abstract}" if abstract else title


QUANT = 2048.0  # vectors are rounded to multiples of 1/QUANT (see semantic_scores)


def semantic_scores(keywords: np.ndarray, papers: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """keywords x papers, 0..1 (float32). Rows of zero vectors (no text) score 0.

    Every cosine is computed exactly, whatever the shapes: the unit vectors are rounded to
    integer multiples of 1/QUANT, so each product is an integer of at most 22 bits and,
    since sum |a_i b_i| <= |a| |b| = 1, every partial sum stays below 2**22 * 1.01: exact
    in float32, so the matrix product gives the same bits in any summation order (BLAS
    blocks differently for different shapes). A keyword's score on a paper thus never
    depends on which other keywords or papers are scored with it (deterministic ranking)."""
    n_k, n_p = len(keywords), len(papers)
    if not n_k or not n_p or not len(reference):
        return np.zeros((n_k, n_p), dtype=np.float32)
    qk, qp, qr = (
        np.rint(np.asarray(m, dtype=np.float32) * np.float32(QUANT))
        for m in (keywords, papers, reference)
    )
    cos = qk @ qp.T
    ref = (qk @ qr.T).astype(np.float64)
    # Mean and SD from exact sums: each |ref| < 2**22, its square < 2**44, and a sum of
    # up to 512 of those (the reference has 439) stays below 2**53: any order, same bits.
    n = ref.shape[1]
    mean = ref.sum(axis=1, keepdims=True) / n
    var = (ref * ref).sum(axis=1, keepdims=True) / n - mean * mean
    sd = np.maximum(np.sqrt(np.maximum(var, 0.0)), MIN_SD * QUANT * QUANT)
    z = (cos - mean.astype(np.float32)) / sd.astype(np.float32)
    out: np.ndarray = (np.clip(z - Z_FLOOR, 0.0, Z_SPAN) / Z_SPAN).astype(np.float32)
    out[~np.asarray(qk.any(axis=1)), :] = 0.0
    out[:, ~np.asarray(qp.any(axis=1))] = 0.0
    return out
