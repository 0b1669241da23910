"""Pure: no I/O. The paper side of the ranker: a BM25F weight matrix over the day's papers.

BM25F (Robertson & Zaragoza, "The Probabilistic Relevance Framework: BM25 and Beyond",
2009, section 3.3): each field's term frequency is length-normalised with its own `b`,
the normalised frequencies are summed with field weights, and only then saturated with
`k1`. Saturating once, after the weighted sum, keeps a word repeated in title and abstract
from counting twice as much as BM25 over each field would.

Rows are papers, columns are features (unigram stems and bigrams, see normalize.py). A
cell holds idf(f) * tf'/(k1 + tf'), so a subscriber's relevance is a sparse dot product.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from digest.models import Paper
from digest.rank.normalize import analyse_field


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    weight: float
    b: float


# Title words are the author's own summary; ai_keywords are short curated topic phrases;
# the abstract is long and noisy. Weights follow that order (title > ai_keywords > abstract).
FIELDS = (
    Field("title", 3.0, 0.3),
    Field("ai_keywords", 1.5, 0.5),
    Field("abstract", 1.0, 0.75),
    Field("ai_summary", 0.5, 0.5),
)
K1 = 1.2
# Stars count less than upvotes: a repository's stars often predate the paper (a big
# project's new report), while upvotes measure interest in this paper today.
STAR_WEIGHT = 0.25


def field_texts(p: Paper) -> dict[str, str]:
    return {
        "title": p.title,
        # ", " keeps each keyword its own clause: no bigram spans two keywords.
        "ai_keywords": ", ".join(p.ai_keywords),
        "abstract": p.abstract,
        "ai_summary": p.ai_summary or "",
    }


@dataclass(frozen=True, slots=True)
class DocIndex:
    """The day's papers as matrices. Rows follow `ids` (sorted by paper id)."""

    ids: tuple[str, ...]
    vocab: dict[str, int]  # feature -> column
    weights: sp.csr_matrix  # papers x features: idf * saturated BM25F tf
    presence: sp.csr_matrix  # papers x features: 1.0 where the feature occurs anywhere
    idf: np.ndarray  # per feature
    df: np.ndarray  # per feature: number of papers containing it
    popularity: np.ndarray  # per paper, 0..1 within its listing day
    exclusion_texts: tuple[str, ...]  # title + "\n" + abstract, as the exclusion rule reads them

    @property
    def n(self) -> int:
        return len(self.ids)


def popularity(papers: Sequence[Paper]) -> np.ndarray:
    """0..1 popularity: log(1 + upvotes) + STAR_WEIGHT log(1 + stars), divided by the
    maximum of the paper's listing day (papers without a day form one group). Log scale:
    upvotes are heavy-tailed: 400 vs 40 upvotes is "more popular", not "ten times better"."""
    raw = np.array(
        [
            math.log1p(max(p.upvotes or 0, 0))
            + STAR_WEIGHT * math.log1p(max(p.github_stars or 0, 0))
            for p in papers
        ],
        dtype=np.float64,
    )
    out = np.zeros(len(papers))
    groups: dict[object, list[int]] = {}
    for i, p in enumerate(papers):
        groups.setdefault(p.listed_on, []).append(i)
    for rows in groups.values():
        idx = np.array(rows)
        top = raw[idx].max()
        if top > 0:
            out[idx] = raw[idx] / top
    return out


def build_index(papers: Sequence[Paper], *, k1: float = K1) -> DocIndex:
    """Analyse every paper once and build the BM25F matrices.

    The last few indexes are kept (a DocIndex is never modified): the web service ranks
    the same day's papers for every search of the papers page and every preview."""
    return _build_index(tuple(sorted(papers, key=lambda p: p.id)), k1)


@lru_cache(maxsize=4)
def _build_index(papers: tuple[Paper, ...], k1: float) -> DocIndex:
    vocab: dict[str, int] = {}
    n = len(papers)
    per_field: dict[str, tuple[list[int], list[int]]] = {f.name: ([], []) for f in FIELDS}
    lengths = {f.name: np.zeros(n) for f in FIELDS}
    for i, p in enumerate(papers):
        texts = field_texts(p)
        for f in FIELDS:
            a = analyse_field(texts[f.name])
            rows, cols = per_field[f.name]
            feats = a.unigrams + a.bigrams
            cols.extend([vocab.setdefault(t, len(vocab)) for t in feats])
            rows.extend([i] * len(feats))
            lengths[f.name][i] = a.length
    v = len(vocab)
    tf = sp.csr_matrix((n, v))
    for f in FIELDS:
        rows, cols = per_field[f.name]
        # COO -> CSR sums the duplicate (paper, feature) entries: term frequencies.
        m = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, v))
        avg = lengths[f.name].mean() if n else 0.0
        if avg <= 0:
            continue
        norm = 1.0 - f.b + f.b * lengths[f.name] / avg
        tf = tf + f.weight * sp.diags(1.0 / norm) @ m
    tf = tf.tocsr()
    presence = tf.copy()
    presence.data[:] = 1.0
    df = np.asarray(presence.sum(axis=0)).ravel()
    # BM25's IDF in the Lucene form, always positive: log(1 + (N - df + 0.5) / (df + 0.5)).
    idf = np.log1p((n - df + 0.5) / (df + 0.5))
    sat = tf.copy()
    sat.data = sat.data / (k1 + sat.data)
    weights = (sat @ sp.diags(idf)).tocsr().astype(np.float32)
    return DocIndex(
        ids=tuple(p.id for p in papers),
        vocab=vocab,
        weights=weights,
        presence=presence.tocsr().astype(np.float32),
        idf=idf,
        df=df,
        popularity=popularity(papers),
        exclusion_texts=tuple(f"{p.title}\n{p.abstract}" for p in papers),
    )
