"""Pure: no I/O. `rank()`: every paper scored for every subscriber, vectorised.

Score scale (what `Subscriber.min_score` is compared with): 0..100.

* Subscriber with include keywords:
      raw  = sum over their keywords of unit score (each 0..1, see query.py)
             + FEEDBACK_WEIGHT * pseudo-relevance-feedback score (see feedback.py)
      rel  = 1 - exp(-raw / REL_SCALE)                              (0..1)
      score = 100 * rel * (1 - w + w * popularity)                   (w = popularity_weight)
  A paper needs raw > 0 (some keyword word occurs in it) to be picked: popularity only
  scales relevance (by at most w), it never creates it. No normalisation by the number of
  keywords or by the day's best paper, so adding a keyword never lowers any score.
* Subscriber without include keywords (like the Hugging Face daily mail): score =
  100 * popularity (log upvotes/stars, 1 = the day's most popular paper).

Exclusions (exclusions.py) and already-delivered papers are removed for everyone.
Order: score desc, then paper id asc; at most max_papers; score >= min_score when set.

Shape of the computation: distinct keywords -> unit matrix (units x papers, two sparse
products); distinct queries (keyword set + exclusion set) -> a sparse 0/1 matrix times the
unit matrix; top-k per row with argpartition. Python loops run over distinct keywords and
over subscribers (to build their picks), never over (subscriber, paper) pairs.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping, Sequence
from itertools import compress

import numpy as np
import scipy.sparse as sp

from digest.models import Paper, Pick, Subscriber
from digest.rank.exclusions import term_hits
from digest.rank.expand import definitions, mine_definitions, synonym_table
from digest.rank.features import DocIndex, build_index
from digest.rank.feedback import FEEDBACK_WEIGHT, feedback_scores
from digest.rank.normalize import key
from digest.rank.query import Unit, build_unit, score_units
from digest.rank.select import top_rows

REL_SCALE = 1.0  # raw 1.0 (one keyword fully matched) -> relevance 0.63


class _Queries:
    """Distinct queries of the subscribers and the distinct keyword units they use."""

    def __init__(self, subscribers: Sequence[Subscriber], table: Mapping[str, set[str]]):
        self.units: list[Unit] = []
        unit_of_key: dict[str, int] = {}
        self.excl_terms: list[str] = []
        excl_of: dict[str, int] = {}
        self.sig_row: dict[tuple[tuple[int, ...], tuple[int, ...]], int] = {}
        self.row_of_sub: list[int] = []
        # per subscriber: (unit index, the term as typed) pairs, for "why" in the mail
        self.typed: list[list[tuple[int, str]]] = []
        seen: dict[tuple[str, ...], tuple[list[tuple[int, str]], int]] = {}
        for s in subscribers:
            if s.keywords in seen:  # many subscribers share a keyword list
                typed, row = seen[s.keywords]
            else:
                typed, sig = self._parse(s, table, unit_of_key, excl_of)
                row = self.sig_row.setdefault(sig, len(self.sig_row))
                seen[s.keywords] = (typed, row)
            self.row_of_sub.append(row)
            self.typed.append(typed)

    def _parse(self, s: Subscriber, table, unit_of_key, excl_of):
        q = s.query
        typed: list[tuple[int, str]] = []
        for term in dict.fromkeys(q.includes):
            k = key(term) or term.strip().lower()
            if k not in unit_of_key:
                unit = build_unit(term, table)
                if unit is None:
                    continue
                unit_of_key[k] = len(self.units)
                self.units.append(unit)
            typed.append((unit_of_key[k], term))
        ex = []
        for term in q.excludes:
            t = term.lower()
            if t not in excl_of:
                excl_of[t] = len(self.excl_terms)
                self.excl_terms.append(t)
            ex.append(excl_of[t])
        return typed, (tuple(sorted({u for u, _ in typed})), tuple(sorted(set(ex))))

    def matrices(self) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """(queries x units, queries x exclusion terms), 0/1."""
        ur, uc, er, ec = [], [], [], []
        for (units, excl), row in self.sig_row.items():
            ur += [row] * len(units)
            uc += units
            er += [row] * len(excl)
            ec += excl
        n = len(self.sig_row)
        a = sp.csr_matrix((np.ones(len(ur)), (ur, uc)), shape=(n, len(self.units)))
        e = sp.csr_matrix((np.ones(len(er)), (er, ec)), shape=(n, len(self.excl_terms)))
        return a, e


def _definitions(index: DocIndex, papers: Sequence[Paper]):
    by_id = {p.id: p for p in papers}
    per_paper = [definitions(by_id[i].abstract) for i in index.ids]
    defined: dict[str, list[tuple[int, str]]] = {}
    for row, defs in enumerate(per_paper):
        for ka, kl in defs:
            defined.setdefault(ka, []).append((row, kl))
    return synonym_table(mine_definitions(per_paper)), defined


def score_matrix(
    papers: Sequence[Paper], subscribers: Sequence[Subscriber], popularity_weight: float
):
    """(index, queries, per-query scores 0..100 with ineligible papers = -1, unit matches)."""
    index = build_index(papers)
    table, defined = _definitions(index, papers)
    qs = _Queries(subscribers, table)
    units = score_units(qs.units, index, defined)
    fb = feedback_scores(units.score, index)
    unit_raw = units.score + FEEDBACK_WEIGHT * fb
    a, e = qs.matrices()
    w = min(max(float(popularity_weight), 0.0), 1.0)
    pop = index.popularity
    # One (queries x papers) float64 array, transformed in place to bound memory.
    scores = (
        np.asarray(a @ unit_raw, dtype=np.float64) if qs.units else np.zeros((a.shape[0], index.n))
    )
    eligible = scores > 0
    scores *= -1.0 / REL_SCALE
    np.expm1(scores, out=scores)
    scores *= (-100.0 * (1.0 - w + w * pop))[None, :]
    has_kw = np.asarray(a.sum(axis=1)).ravel() > 0
    if not has_kw.all():
        scores[~has_kw] = 100.0 * pop[None, :]
        eligible[~has_kw] = True
    # 4 decimals: the order is decided on the same number the mail shows (and float noise
    # from summation order cannot flip ties).
    np.round(scores, 4, out=scores)
    if qs.excl_terms:
        hits = sp.csr_matrix(term_hits(qs.excl_terms, index.exclusion_texts), dtype=np.float64)
        hit = (e @ hits).tocoo()
        eligible[hit.row, hit.col] = False
    np.copyto(scores, -1.0, where=~eligible)
    return index, qs, scores, units.matched


def rank(
    papers: Sequence[Paper],
    subscribers: Sequence[Subscriber],
    *,
    exclude: Mapping[str, set[str]] = {},  # noqa: B006 - read only, the shared interface
    popularity_weight: float = 0.15,
) -> dict[str, tuple[Pick, ...]]:
    """Pick papers for every subscriber: email -> picks, best first (see module doc)."""
    if not subscribers:
        return {}
    if not papers:
        return {s.email: () for s in subscribers}
    # The run allocates ~10^5 small objects (picks, tuples) and no reference cycles;
    # pausing the cyclic GC meanwhile saves a quarter of the time at 10k subscribers.
    paused = gc.isenabled()
    gc.disable()
    try:
        return _rank(papers, subscribers, exclude, popularity_weight)
    finally:
        if paused:
            gc.enable()


def _rank(papers, subscribers, exclude, popularity_weight) -> dict[str, tuple[Pick, ...]]:
    papers = list({p.id: p for p in papers}.values())  # one paper per id: the last listed
    index, qs, scores, matched = score_matrix(papers, subscribers, popularity_weight)
    col_of = {pid: i for i, pid in enumerate(index.ids)}
    rows = np.array(qs.row_of_sub)
    blocked = [[col_of[p] for p in exclude.get(s.email, ()) if p in col_of] for s in subscribers]
    k = np.array([max(int(s.max_papers), 0) for s in subscribers])
    floor = np.array(
        [s.min_score if s.min_score is not None else 0.0 for s in subscribers], dtype=np.float64
    )
    chosen = top_rows(scores, rows, k, floor, blocked)
    return _picks(subscribers, qs, scores, matched, rows, chosen, index.ids)


def _picks(subscribers, qs, scores, matched, rows, chosen, ids) -> dict[str, tuple[Pick, ...]]:
    """Build the Pick tuples. Scores and "why" flags are gathered for all picks at once
    (two fancy-index reads); the loop per subscriber only slices and wraps."""
    n_pick = np.array([len(c) for c in chosen])
    cols = np.concatenate(chosen) if len(chosen) else np.zeros(0, dtype=np.int64)
    sub_of = np.repeat(np.arange(len(subscribers)), n_pick)
    vals = scores[rows[sub_of], cols].tolist()
    pids = [ids[c] for c in cols.tolist()]
    # (pick, keyword) pairs: pick j of subscriber i against each of i's typed keywords.
    n_kw = np.array([len(t) for t in qs.typed])
    per_pick_kw = n_kw[sub_of]
    pair_cols = np.repeat(cols, per_pick_kw)
    counts = n_pick.tolist()
    pair_units: list[int] = []
    for i, typed in enumerate(qs.typed):
        if counts[i] and typed:
            pair_units.extend([u for u, _ in typed] * counts[i])
    flags = matched[pair_units, pair_cols].tolist()
    out: dict[str, tuple[Pick, ...]] = {}
    j = f = 0
    for i, s in enumerate(subscribers):
        terms = [t for _, t in qs.typed[i]]
        m = len(terms)
        picks = []
        for _ in range(counts[i]):
            picks.append(Pick(pids[j], vals[j], tuple(compress(terms, flags[f : f + m]))))
            j += 1
            f += m
        out[s.email] = tuple(picks)
    return out
