"""Pure: no I/O. Pseudo-relevance feedback per keyword (RM3-style, from the same day).

Relevance model RM1 (Lavrenko & Croft, SIGIR 2001; RM3 = RM1 interpolated with the query,
Abdul-Jaleel et al., TREC 2004): the papers a keyword ranks highest are assumed relevant,
and the features they share become an expansion query. It bridges vocabulary: papers
about "LLM serving" that rank high also say "KV cache", "speculative decoding", "prefill",
so papers using only those words still surface.

Feedback runs per keyword *unit*, not per subscriber: a keyword's expansion depends only
on that keyword and the day's papers, so adding another keyword cannot change it (scores
stay monotone), and subscribers sharing a keyword share the work.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from digest.rank.features import DocIndex

FEEDBACK_WEIGHT = 0.3  # expansion score (0..1) is added to the keyword's score times this
FEEDBACK_DOCS = 8  # top papers per keyword taken as relevant
FEEDBACK_TERMS = 20  # expansion features kept per keyword
MIN_SCORE = 0.2  # a paper must match the keyword at least this well to serve as feedback
MIN_DF = 2  # an expansion feature must occur in at least two papers of the day


def feedback_scores(unit_score: np.ndarray, index: DocIndex) -> np.ndarray:
    """units x papers expansion scores in 0..1 (0 for keywords without feedback papers)."""
    n_units, n_docs = unit_score.shape
    out = np.zeros_like(unit_score)
    if n_units == 0 or n_docs < 2:
        return out
    m = min(FEEDBACK_DOCS, n_docs)
    top = np.argpartition(-unit_score, m - 1, axis=1)[:, :m]
    w = np.take_along_axis(unit_score, top, axis=1)
    w = np.where(w >= MIN_SCORE, w, 0.0)
    sums = w.sum(axis=1, keepdims=True)
    w = np.divide(w, sums, out=np.zeros_like(w), where=sums > 0)
    p = sp.csr_matrix(
        (w.ravel(), (np.repeat(np.arange(n_units), m), top.ravel())), shape=(n_units, n_docs)
    )
    p.eliminate_zeros()
    # p(f | paper): the paper's BM25F weights normalised to sum 1, restricted to
    # features shared by several papers (a word of one paper cannot generalise).
    doc_w = index.weights.multiply((index.df >= MIN_DF)[None, :]).tocsr()
    row_sum = np.asarray(doc_w.sum(axis=1)).ravel()
    doc_w = sp.diags(np.divide(1.0, row_sum, out=np.zeros_like(row_sum), where=row_sum > 0)) @ doc_w
    model = (p @ doc_w).tocsr()  # units x features: the relevance model
    rows, cols, vals = [], [], []
    for u in range(n_units):
        lo, hi = model.indptr[u], model.indptr[u + 1]
        if hi == lo:
            continue
        data, idx = model.data[lo:hi], model.indices[lo:hi]
        if hi - lo > FEEDBACK_TERMS:
            keep = np.argpartition(-data, FEEDBACK_TERMS - 1)[:FEEDBACK_TERMS]
            data, idx = data[keep], idx[keep]
        z = float((data * index.idf[idx]).sum())
        if z <= 0:
            continue
        rows.extend([u] * len(idx))
        cols.extend(idx.tolist())
        vals.extend((data / z).tolist())
    if not rows:
        return out
    expansion = sp.csr_matrix((vals, (rows, cols)), shape=(n_units, len(index.vocab)))
    return np.asarray((expansion @ index.weights.T).todense())
