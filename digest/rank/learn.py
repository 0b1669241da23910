"""Pure: no I/O. What a reader taught digest: ratings and example papers, and the model
per subscriber that turns them into scores (digest/rank/model.py hooks it in).

The model lives in the semantic model's space (digest/rank/semantic.py: one unit vector
per paper, of its title and abstract opening). For a subscriber with example papers or
ratings, and a candidate paper x:

    z(q, x)  = (cos(q, x) - mean_ref(q)) / sd_ref(q)     how much closer x is to q than
               the fixed reference papers are (as dense.py does for keywords)
    pos(x)   = max over the examples q of z(q, x), and over the papers rated up of
               z(q, x) - RATED_SHIFT (a reader rates many papers; the max over many is
               high by chance alone, and examples are few and chosen)
    close(x) = max z(q, x) over the examples and the papers rated up (no shift)
    neg(x)   = max z(q, x) over the papers rated down
    learned  = 100 * (1 - exp(-raw / 2)),  raw = CUT_RAW * max(0, pos - Z_FROM) / (LIKE_Z - Z_FROM)
    penalty  = PEN_POINTS * clip((neg - max(close, NEG_FROM)) / NEG_SPAN, 0, 1)
    score    = max(keyword score, learned) - penalty;   a paper rated down: no score

This is Rocchio's relevance feedback (keywords, examples and liked papers pull, disliked
papers push) with the nearest positive in place of the centroid: a reader who likes two
topics is not averaged into neither, and each term is monotone, so rating a paper up can
only raise its own score (pos and close rise, neg falls) and rating one down only lower
it. A paper LIKE_Z reference SDs closer to an example (LIKE_Z + RATED_SHIFT to a paper
rated up) than ordinary papers are reaches the default cut (53) on its own: neighbours of
liked papers enter "For you". A paper closer to a disliked paper than to anything liked
loses up to PEN_POINTS: a marginal match (53-70, where most misses are) leaves "For you",
a strong one stays. The cut, max_papers and exclusions apply to this score like to any
other; a reader's own examples and rated papers are never picked for them. The constants
were set on bench/learning.py's replay of relevance-dev (README "How it learns").

Ratings are kept one per paper (the last vote wins), newest MAX_RATINGS; examples at most
MAX_EXAMPLES (digest/models.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import chain
from operator import itemgetter

import numpy as np
import scipy.sparse as sp

from digest.models import DOWN, MAX_EXAMPLES, MAX_RATINGS, UP, Paper, Subscriber
from digest.rank.dense import MIN_SD, paper_text

CUT_RAW = 1.51  # raw evidence of the default cut: 100 * (1 - e^(-1.51/2)) = 53
LIKE_Z = 2.7  # standard score (vs the reference papers) at which a neighbour reaches the cut
Z_FROM = 1.6  # below this closeness to a liked paper, no learned score at all
NEG_FROM = 1.5  # a disliked paper's neighbours lose score above this closeness
NEG_SPAN = 1.0  # ... and all of it this far beyond the closeness to anything liked
# A reader rates many papers up, examples are few and chosen: closeness to a paper rated
# up counts this many SDs less than closeness to an example (the max over many papers is
# higher by chance alone).
RATED_SHIFT = 2.0
FULL_SHIFT_AT = 5  # ... once this many papers are rated up (fewer: less, see rated_shift)
# What a paper squarely like a disliked one loses, in score points: a marginal match
# (53-70, where most misses are) leaves "For you", a strong one (80+) stays.
PEN_POINTS = 20.0
PAIR_CHUNK = 2_000_000  # (subscriber, paper) entries gathered at once: bounds the memory
EXAMPLE, RATED_UP = "example", "up"


# ------------------------------------------------------------------ ratings and examples


def vote_of(sub: Subscriber, paper_id: str) -> int | None:
    for pid, vote, _, _ in sub.ratings:
        if pid == paper_id:
            return vote
    return None


def with_rating(sub: Subscriber, paper_id: str, vote: int, at: int, title: str) -> Subscriber:
    """`sub` with `vote` (UP or DOWN) on the paper: the last vote wins; the newest
    MAX_RATINGS are kept. Voting the same way again changes nothing (a repeated POST)."""
    if vote not in (UP, DOWN):
        raise ValueError(f"a vote is {UP} or {DOWN}, not {vote!r}")
    if vote_of(sub, paper_id) == vote:
        return sub
    rest = tuple(r for r in sub.ratings if r[0] != paper_id)
    ratings = (*rest, (paper_id, vote, int(at), title))[-MAX_RATINGS:]
    return replace(sub, ratings=ratings)


def without_rating(sub: Subscriber, paper_id: str) -> Subscriber:
    return replace(sub, ratings=tuple(r for r in sub.ratings if r[0] != paper_id))


def with_examples(sub: Subscriber, examples: Sequence[tuple[str, str]]) -> Subscriber:
    """`sub` with these example papers (paper id, title) instead of its own; one per id,
    the first MAX_EXAMPLES."""
    seen: dict[str, str] = {}
    for pid, title in examples:
        seen.setdefault(pid, title)
    return replace(sub, examples=tuple(seen.items())[:MAX_EXAMPLES])


def has_model(sub: Subscriber) -> bool:
    return bool(sub.examples or sub.ratings)


# ---------------------------------------------------------------------------- the model


@dataclass(frozen=True, slots=True)
class Seeds:
    """The distinct papers the model subscribers point to, and who points to which, as
    flat (subscriber, seed) pair arrays: one numpy pass serves all subscribers at once.

    Pairs are grouped by subscriber (ascending); within a subscriber the examples come
    first, then the papers rated up in rating order (the nearest-seed tie order)."""

    ids: tuple[str, ...]  # distinct seed papers
    texts: tuple[str, ...]  # what is embedded for each (details if known, else the title)
    titles: tuple[str, ...]
    pos_sub: np.ndarray  # int32: model subscriber of each liked / example pair
    pos_seed: np.ndarray  # int32: its seed
    pos_rated: np.ndarray  # bool: rated up (True) or an example (False)
    pos_shift: np.ndarray  # float32: what the pair's closeness counts less (rated_shift)
    neg_sub: np.ndarray  # int32: model subscriber of each rated-down pair
    neg_seed: np.ndarray  # int32


_first, _second = itemgetter(0), itemgetter(1)


def seeds(subs: Sequence[Subscriber], known: Mapping[str, Paper]) -> Seeds:
    """The seeds of `subs` (model subscribers, in order). Python loops run over
    subscribers and distinct papers; each rating passes through C-level maps only; the
    grouping is numpy."""
    index: dict[str, int] = {}
    ids: list[str] = []
    texts: list[str] = []
    titles: list[str] = []

    def at(pid: str, title: str) -> int:
        i = index.get(pid)
        if i is None:
            i = index[pid] = len(ids)
            p = known.get(pid)
            ids.append(pid)
            titles.append(p.title if p is not None else title)
            texts.append(paper_text(p.title, p.abstract) if p is not None else title)
        return i

    # Examples first (few subscribers have them), so an example's seed is registered
    # before the same paper's rating: the order of `ids` does not change the scores.
    ex_sub: list[int] = []
    ex_seed: list[int] = []
    for j, s in enumerate(subs):
        if s.examples:
            downs = {r[0] for r in s.ratings if r[1] == DOWN}
            for pid, title in s.examples:
                if pid not in downs:  # a rating down overrides an example
                    ex_sub.append(j)
                    ex_seed.append(at(pid, title))
    per_sub = [s.ratings for s in subs]
    counts = list(map(len, per_sub))
    # Every rating goes through C-level maps (no Python frame per rating); the loop runs
    # over the distinct papers, in first-seen order, each registered with the title of
    # its first rating (list.index from the previous first occurrence: one pass in all).
    flat = list(chain.from_iterable(per_sub))
    pids = list(map(_first, flat))
    at_pos = 0
    for pid in dict.fromkeys(pids):
        at_pos = pids.index(pid, at_pos)
        if pid not in index:
            at(pid, flat[at_pos][3])
    r_seed = np.fromiter(map(index.__getitem__, pids), np.int32, len(flat))
    r_up = np.fromiter(map(UP.__eq__, map(_second, flat)), bool, len(flat))
    r_sub = np.repeat(np.arange(len(subs), dtype=np.int32), counts)
    n_ex = len(ex_sub)
    p_sub = np.concatenate([np.asarray(ex_sub, np.int32), r_sub[r_up]])
    p_seed = np.concatenate([np.asarray(ex_seed, np.int32), r_seed[r_up]])
    p_rated = np.concatenate([np.zeros(n_ex, bool), np.ones(int(r_up.sum()), bool)])
    # Group by subscriber, examples before ratings, each in its own order (stable sort).
    order = np.argsort(p_sub, kind="stable")
    shift = rated_shift(np.bincount(r_sub[r_up], minlength=len(subs)))  # per subscriber
    p_shift = np.where(p_rated, shift[p_sub], np.float32(0.0)).astype(np.float32)
    return Seeds(
        tuple(ids),
        tuple(texts),
        tuple(titles),
        p_sub[order],
        p_seed[order],
        p_rated[order],
        p_shift[order],
        r_sub[~r_up],
        r_seed[~r_up],
    )


def standard_scores(seed_vecs: np.ndarray, papers: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """seeds x papers: each seed's cosine with each paper as a standard score against the
    seed's cosines with the reference papers (float32)."""
    if not len(seed_vecs) or not len(papers):
        return np.zeros((len(seed_vecs), len(papers)), dtype=np.float32)
    s = np.asarray(seed_vecs, dtype=np.float32)
    cos = s @ np.asarray(papers, dtype=np.float32).T
    r = s @ np.asarray(ref, dtype=np.float32).T
    mean = r.mean(axis=1, keepdims=True)
    sd = np.maximum(r.std(axis=1, keepdims=True), MIN_SD)
    z: np.ndarray = ((cos - mean) / sd).astype(np.float32)
    z[~s.any(axis=1), :] = -np.inf  # no text: close to nothing
    return z


def _above(z: np.ndarray, floor: float) -> sp.csr_matrix:
    """The entries of z above `floor` (all floors here are > 0, so no stored zero)."""
    r, c = np.nonzero(z > np.float32(floor))
    return sp.csr_matrix((z[r, c], (r, c)), shape=z.shape, dtype=np.float32)


def _pair_max(
    out: np.ndarray,
    subs: np.ndarray,
    seeds: np.ndarray,
    zs: sp.csr_matrix,
    offset: float | np.ndarray,
    keep: np.ndarray | None = None,
) -> None:
    """out[s, col] = max(out[s, col], zs[seed, col] - offset) for every (s, seed) pair and
    every stored entry of the seed's row: a max over each subscriber's seeds that touches
    only the entries that can matter (the thresholds are exact, see learned_rows).
    `offset`: one for all pairs, or one per pair.
    `keep`: only cells where it is True are updated (the others are not needed)."""
    m = out.shape[1]  # out and keep are C-contiguous: ravel() is a view
    per_pair = not isinstance(offset, float | int)
    indptr = zs.indptr.astype(np.int32)
    starts = indptr[seeds]
    counts = indptr[seeds + 1] - starts
    step = max(1, len(seeds) * PAIR_CHUNK // max(int(counts.sum()), 1))
    for lo in range(0, len(seeds), step):
        cnt = counts[lo : lo + step]
        total = int(cnt.sum())
        if not total:
            continue
        idx = np.repeat(starts[lo : lo + step] - (np.cumsum(cnt) - cnt), cnt)
        idx += np.arange(total, dtype=np.int32)
        cell = np.repeat(subs[lo : lo + step].astype(np.int64) * m, cnt)
        cell += zs.indices[idx]
        off = (
            np.repeat(np.asarray(offset, dtype=np.float32)[lo : lo + step], cnt)
            if per_pair
            else np.full(1, offset, dtype=np.float32)
        )
        if keep is not None:
            ok = keep.ravel()[cell]
            cell, idx = cell[ok], idx[ok]
            if per_pair:
                off = off[ok]
        np.maximum.at(out.ravel(), cell, zs.data[idx] - off)


def rated_shift(n_up: np.ndarray) -> np.ndarray:
    """How many SDs closeness to a paper rated up counts less than closeness to an example,
    for readers with `n_up` papers rated up (float32, one per reader). The nearest of many
    liked papers is close by chance alone, the nearest of one is not: the shift grows like
    the expected maximum of n standard scores (~ sqrt(2 ln n)), from 0 for a first rating
    (which then counts like an example, so it changes the next digest) to the full
    RATED_SHIFT from FULL_SHIFT_AT papers rated up."""
    n = np.maximum(np.asarray(n_up, dtype=np.float64), 1.0)
    frac = np.sqrt(np.log(n) / math.log(FULL_SHIFT_AT))
    return (RATED_SHIFT * np.minimum(1.0, frac)).astype(np.float32)


def _runs(pair_sub: np.ndarray, n: int, subs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For cells of model subscribers `subs`: (the pair indexes of each cell's subscriber,
    concatenated cell after cell; how many each cell has). `pair_sub` is sorted."""
    start = np.searchsorted(pair_sub, np.arange(n + 1)).astype(np.int64)
    cnt = (start[1:] - start[:-1])[subs]
    first = np.cumsum(cnt) - cnt
    idx = np.repeat(start[subs] - first, cnt) + np.arange(int(cnt.sum()), dtype=np.int64)
    return idx, cnt


def _cell_max(
    z: np.ndarray,
    pair_sub: np.ndarray,
    pair_seed: np.ndarray,
    shift: np.ndarray | None,
    n: int,
    r: np.ndarray,
    c: np.ndarray,
) -> np.ndarray:
    """max over subscriber r[k]'s pairs of z[seed, c[k]] (- shift[pair]), per cell k;
    -inf for a subscriber without pairs. Cost: cells x pairs per subscriber, so it is
    for few cells (the ones a formula needs), not for whole rows."""
    out = np.full(len(r), -np.inf, dtype=np.float32)
    idx, cnt = _runs(pair_sub, n, r)
    has = cnt > 0
    if not has.any():
        return out
    val = z[pair_seed[idx], np.repeat(c, cnt)]
    if shift is not None:
        val = val - shift[idx]
    first = (np.cumsum(cnt) - cnt)[has]
    out[has] = np.maximum.reduceat(val, first)
    return out


def learned_rows(
    base: np.ndarray, z: np.ndarray, sd: Seeds, need: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, learned wins) for the model subscribers: `base` is their keyword scores
    (model subscribers x papers, -1 = no match; a float64 `base` becomes the result, so
    pass a copy), `z` the seeds' standard scores (seeds x papers). Scores are -1 where
    nothing is left. `need` (per model subscriber, optional):
    the cut their picks must reach; a score below it is never picked, and a push only
    lowers, so the pushes are computed only where the score reaches it (rank() passes
    it: a third of the cells; exact for every score that can be picked).

    Only entries that can change a score are visited: the learned score is 0 unless pos
    > Z_FROM, and the push is 0 unless neg > max(close, NEG_FROM) >= NEG_FROM, so closeness
    below those floors is never looked at (exact, not an approximation); the formulas then
    run on those cells alone."""
    n, m = base.shape
    out = np.asarray(base, dtype=np.float64)  # taken over: the caller's fresh copy
    wins = np.zeros((n, m), dtype=bool)
    sub, seed, rated = sd.pos_sub, sd.pos_seed, sd.pos_rated
    if len(sub):
        pos = np.full((n, m), -np.inf, dtype=np.float32)
        _pair_max(pos, sub[~rated], seed[~rated], _above(z, Z_FROM), 0.0)
        off = sd.pos_shift[rated]
        floor = Z_FROM + (float(off.min()) if len(off) else RATED_SHIFT)
        _pair_max(pos, sub[rated], seed[rated], _above(z, floor), off)
        r, c = np.nonzero(pos > np.float32(Z_FROM))
        raw = (pos[r, c] - np.float32(Z_FROM)).astype(np.float64) * (CUT_RAW / (LIKE_Z - Z_FROM))
        learned = np.round(-np.expm1(raw / -2.0) * 100.0, 4)
        win = learned > out[r, c]
        out[r[win], c[win]] = learned[win]
        wins[r[win], c[win]] = True
        del pos
    nsub, nseed = sd.neg_sub, sd.neg_seed
    if len(nsub):
        floor = _above(z, NEG_FROM)
        scored = out > 0  # only a paper with a score can lose some
        if need is not None:
            scored &= out >= np.asarray(need, dtype=np.float64)[:, None]
        neg = np.full((n, m), -np.inf, dtype=np.float32)
        _pair_max(neg, nsub, nseed, floor, 0.0, scored)
        hit = neg > np.float32(NEG_FROM)
        r, c = np.nonzero(hit)
        if len(r):
            close = _cell_max(z, sub, seed, None, n, r, c)
            gap = neg[r, c] - np.maximum(close, np.float32(NEG_FROM))
            pen = np.clip(gap.astype(np.float64) / NEG_SPAN, 0.0, 1.0)
            out[r, c] = np.round(out[r, c] - PEN_POINTS * pen, 4)
    np.copyto(out, -1.0, where=out <= 0)
    return out, wins


def nearest_seeds(z: np.ndarray, sd: Seeds, subs: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """For each (model subscriber, paper column) pair: the index into sd.pos_* of the seed
    (example or paper rated up) that gives the paper its learned score, the first of the
    subscriber's seeds on a tie (-1 for a subscriber without any), for the why-line. All
    pairs in one pass: each pair is expanded to its subscriber's seeds and a segment max
    picks the nearest."""
    out = np.full(len(subs), -1, dtype=np.int64)
    if not len(subs) or not len(sd.pos_sub):
        return out
    idx, cnt = _runs(sd.pos_sub, int(subs.max()) + 1, subs)
    has = cnt > 0
    if not has.any():
        return out
    val = z[sd.pos_seed[idx], np.repeat(np.asarray(cols), cnt)] - sd.pos_shift[idx]
    first = (np.cumsum(cnt) - cnt)[has]  # where each pair's run starts in the expansion
    best = np.maximum.reduceat(val, first)
    at = np.where(val == np.repeat(best, cnt[has]), np.arange(len(val)), len(val))
    out[has] = idx[np.minimum.reduceat(at, first)]
    return out
