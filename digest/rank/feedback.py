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
KEEP_FRACTION = 0.2  # expansion keeps features weighing >= this fraction of the top one
MIN_SCORE = 0.2  # a paper must match the keyword at least this well to serve as feedback
DOC_TERMS = 40  # strongest features per feedback paper
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
    # p(f | paper): the paper's DOC_TERMS strongest BM25F features, normalised to sum 1,
    # among features shared by several papers (a word of one paper cannot generalise).
    doc_w = _top_per_row(index.weights.multiply((index.df >= MIN_DF)[None, :]).tocsr(), DOC_TERMS)
    row_sum = np.asarray(doc_w.sum(axis=1)).ravel()
    doc_w = sp.diags(np.divide(1.0, row_sum, out=np.zeros_like(row_sum), where=row_sum > 0)) @ doc_w
    model = _strongest((p @ doc_w).tocsr(), KEEP_FRACTION)  # the relevance model
    rows = np.repeat(np.arange(n_units), np.diff(model.indptr))
    cols, data = model.indices, model.data
    z = np.bincount(rows, weights=data * index.idf[cols], minlength=n_units)
    vals = data / np.where(z > 0, z, 1.0)[rows]
    if not len(rows):
        return out
    expansion = sp.csr_matrix((vals, (rows, cols)), shape=(n_units, len(index.vocab)))
    return (expansion @ index.weights.T).toarray()


def _top_per_row(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the k largest entries of every row (one lexsort over all rows)."""
    counts = np.diff(m.indptr)
    if not len(counts) or counts.max(initial=0) <= k:
        return m
    row_of = np.repeat(np.arange(m.shape[0]), counts)
    order = np.lexsort((-m.data, row_of))
    rank_in_row = np.arange(len(order)) - np.repeat(m.indptr[:-1], counts)
    keep = np.sort(order[rank_in_row < k])
    return sp.csr_matrix((m.data[keep], (row_of[keep], m.indices[keep])), shape=m.shape)


def _strongest(m: sp.csr_matrix, fraction: float) -> sp.csr_matrix:
    """Keep the entries of every row that weigh at least `fraction` of the row's largest."""
    counts = np.diff(m.indptr)
    if not m.nnz:
        return m
    nonempty = counts > 0
    row_max = np.zeros(m.shape[0], dtype=m.data.dtype)
    row_max[nonempty] = np.maximum.reduceat(m.data, m.indptr[:-1][nonempty])
    keep = m.data >= fraction * np.repeat(row_max, counts)
    row_of = np.repeat(np.arange(m.shape[0]), counts)
    return sp.csr_matrix((m.data[keep], (row_of[keep], m.indices[keep])), shape=m.shape)
