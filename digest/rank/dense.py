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


def semantic_scores(keywords: np.ndarray, papers: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """keywords x papers, 0..1 (float32). Rows of zero vectors (no text) score 0."""
    if not len(keywords) or not len(papers):
        return np.zeros((len(keywords), len(papers)), dtype=np.float32)
    cos = keywords @ papers.T
    ref = keywords @ reference.T if len(reference) else np.zeros((len(keywords), 1))
    mean = ref.mean(axis=1, keepdims=True)
    sd = np.maximum(ref.std(axis=1, keepdims=True), MIN_SD)
    z = (cos - mean) / sd
    sem = np.clip(z - Z_FLOOR, 0.0, Z_SPAN) / Z_SPAN
    kw_empty = ~np.asarray(keywords.any(axis=1))
    paper_empty = ~np.asarray(papers.any(axis=1))
    sem[kw_empty, :] = 0.0
    sem[:, paper_empty] = 0.0
    return np.asarray(sem, dtype=np.float32)
