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

from collections.abc import Mapping, Sequence

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
        for s in subscribers:
            q = s.query
            typed: list[tuple[int, str]] = []
            for term in q.includes:
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
            sig = (tuple(sorted({u for u, _ in typed})), tuple(sorted(set(ex))))
            self.row_of_sub.append(self.sig_row.setdefault(sig, len(self.sig_row)))
            self.typed.append(typed)

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
    raw = np.asarray(a @ unit_raw) if qs.units else np.zeros((a.shape[0], index.n))
    w = min(max(float(popularity_weight), 0.0), 1.0)
    pop = index.popularity
    rel = -np.expm1(-raw / REL_SCALE)
    scores = 100.0 * rel * (1.0 - w + w * pop)[None, :]
    has_kw = np.asarray(a.sum(axis=1)).ravel() > 0
    scores[~has_kw] = 100.0 * pop[None, :]
    # 4 decimals: the order is decided on the same number the mail shows (and float noise
    # from summation order cannot flip ties).
    scores = np.round(scores, 4)
    eligible = (raw > 0) | ~has_kw[:, None]
    if qs.excl_terms:
        hits = term_hits(qs.excl_terms, index.exclusion_texts).astype(np.float64)
        eligible &= np.asarray(e @ hits) == 0
    scores[~eligible] = -1.0
    return index, qs, scores, units.matched


def rank(
    papers: Sequence[Paper],
    subscribers: Sequence[Subscriber],
    *,
    exclude: Mapping[str, set[str]] = {},  # noqa: B006 - read only, the shared interface
    popularity_weight: float = 0.15,
) -> dict[str, tuple[Pick, ...]]:
    """Pick papers for every subscriber: email -> picks, best first (see module doc)."""
    out: dict[str, tuple[Pick, ...]] = {}
    if not subscribers:
        return out
    if not papers:
        return {s.email: () for s in subscribers}
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
    for si, s in enumerate(subscribers):
        cols = chosen[si]
        typed = qs.typed[si]
        picks = []
        for c in cols:
            why = tuple(dict.fromkeys(t for u, t in typed if matched[u, c]))
            picks.append(Pick(index.ids[c], float(scores[rows[si], c]), why))
        out[s.email] = tuple(picks)
    return out
