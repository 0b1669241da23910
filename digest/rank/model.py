"""Pure: no I/O. `rank()`: every paper scored for every subscriber, vectorised.

A digest has two sections (models.MATCH / models.TRENDING):

* "For you": the papers that clearly match the subscriber's include keywords, best
  first, at most max_papers (a ceiling, never a quota: a quiet day mails fewer, or none),
  each scoring at least the cut (the subscriber's min_score, else `[ranking] min_score`).
* "Trending today": the most popular of the day's papers the subscriber may get that are
  not among their matches (`[digest] trending`, or the subscriber's own number; a
  subscriber without include keywords gets max_papers of them: trending only).
Exclusions (exclusions.py) and papers received before (`exclude`) are removed from both.

The relevance score (0..100, what min_score and the cut are compared with):
      raw   = sum over the keywords of (keyword score, 0..1, see query.py
              + FEEDBACK_WEIGHT * the keyword's feedback score, 0..1, see feedback.py
              + SEMANTIC_WEIGHT * the keyword's semantic closeness, 0..1, see dense.py)
      rel   = 1 - exp(-raw / REL_SCALE)                              (0..1)
      score = 100 * rel * (1 - w + w * popularity)                   (w = popularity_weight)
  A paper is a match only when the keyword scores alone (feedback and semantics left
  out) sum to at least MATCH_FLOOR: feedback and the embedding model reorder matches and
  lift them over the cut, they never admit a paper whose words are not there; popularity
  only scales relevance (by at most w, 0 by default), it never creates it.
  No normalisation by the number of keywords or by the day's papers: a score means the
  same on a quiet day as on a busy one, and adding a keyword never lowers a score.
  What the numbers mean: README.md "What a score means" (the share judged relevant per
  score band on shared/relevance-dev); the default cut ([ranking] min_score) was chosen
  there as the highest that keeps 90% of the squarely relevant papers.
* A trending pick's score is the paper's popularity, 100 * log upvotes/stars relative
  to its listing day's most popular paper.

Order: score desc, then paper id asc, in each section.

Shape of the computation: distinct keywords -> unit matrix (units x papers, two sparse
products); distinct queries (keyword set + exclusion set) -> a sparse 0/1 matrix times the
unit matrix; top-k per row with argpartition. Python loops run over distinct keywords and
over subscribers (to build their picks), never over (subscriber, paper) pairs.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from digest.config import DigestConfig, RankingConfig
from digest.errors import InputError
from digest.models import TRENDING, Paper, Pick, Query, Subscriber
from digest.rank.dense import paper_text, semantic_scores
from digest.rank.exclusions import term_hits
from digest.rank.expand import definitions, mine_definitions, spelled_out, synonym_table
from digest.rank.features import DocIndex, build_index
from digest.rank.feedback import FEEDBACK_WEIGHT, add_feedback
from digest.rank.learn import (
    EXAMPLE,
    RATED_UP,
    Seeds,
    has_model,
    learned_rows,
    nearest_seeds,
    seeds,
    standard_scores,
)
from digest.rank.normalize import fold
from digest.rank.query import Unit, build_unit, score_units
from digest.rank.select import top_rows

# (keyword texts, paper texts) -> (keyword vectors, paper vectors, reference vectors), or
# None without a model: digest/rank/semantic.py's `vectors` (the I/O edge) or a test's fake.
Embed = Callable[[Sequence[str], Sequence[str]], tuple[np.ndarray, np.ndarray, np.ndarray] | None]

# The semantic model's vectors, kept across runs in the store folder (vectorcache.py).
VECTOR_CACHE = "vectors.sqlite3"

REL_SCALE = 2.0  # raw 2.0 (one keyword matched in words and meaning) -> relevance 0.63
# Keyword evidence (the sum of the keyword scores, without feedback or semantics) that a
# paper needs to be a match at all: the other signals reorder matches, never admit one.
# 0.29: one keyword's words present at 29% of their full weight (e.g. its rarest word).
MATCH_FLOOR = 0.29
# How much a keyword's semantic closeness (0..1, digest/rank/dense.py) adds to its lexical
# score (0..1) before the sum over keywords; only for papers that are matches already.
SEMANTIC_WEIGHT = 1.5


class _Queries:
    """Distinct queries of the subscribers and the distinct keyword units they use.

    Units are numbered in sorted order of their keyword, so a query's score sums its
    units in the same order whoever else subscribes: results never depend on the
    order (or presence) of other subscribers, down to the last floating-point bit."""

    def __init__(self, subscribers: Sequence[Subscriber], table: Mapping[str, set[str]]):
        parsed: dict[tuple[str, ...], Query] = {}
        for s in subscribers:
            if s.keywords not in parsed:
                parsed[s.keywords] = s.query
        typed_terms = dict.fromkeys(t for q in parsed.values() for t in q.includes)
        ukey = {t: _unit_key(t) for t in typed_terms}  # each distinct term folded once
        # Variants of one key fold to the same text, so they build the same unit.
        terms = {uk: t for t, uk in ukey.items()}
        self.units: list[Unit] = []
        self.unit_text: list[str] = []  # what the semantic model embeds for each unit
        unit_of_key: dict[str, int] = {}
        for uk in sorted(terms):
            unit = build_unit(terms[uk], table)
            if unit is not None:
                unit_of_key[uk] = len(self.units)
                self.units.append(unit)
                self.unit_text.append(spelled_out(uk))  # uk: folded, so any typing agrees
        # Exactly as typed: the rule is re.IGNORECASE on the term, and lower-casing first
        # is not the same for every character ("İ".lower() is two characters).
        self.excl_terms = sorted({t for q in parsed.values() for t in q.excludes})
        excl_of = {t: i for i, t in enumerate(self.excl_terms)}
        # (units, exclusion terms, has include keywords) -> query row
        self.sig_row: dict[tuple[tuple[int, ...], tuple[int, ...], bool], int] = {}
        per_list: dict[tuple[str, ...], tuple[list[tuple[int, str]], int]] = {}
        for kws, q in parsed.items():
            # (unit index, the term as typed) pairs, for "why" in the mail
            typed = [
                (unit_of_key[ukey[t]], t)
                for t in dict.fromkeys(q.includes)
                if ukey[t] in unit_of_key
            ]
            sig = (
                tuple(sorted({u for u, _ in typed})),
                tuple(sorted({excl_of[t] for t in q.excludes})),
                # Keywords made only of stopwords ("the") match nothing, but they still
                # make this a keyword subscriber: no popularity-only fallback.
                bool(q.includes),
            )
            per_list[kws] = (typed, self.sig_row.setdefault(sig, len(self.sig_row)))
        self.typed = [per_list[s.keywords][0] for s in subscribers]
        self.row_of_sub = [per_list[s.keywords][1] for s in subscribers]
        inc = {kws: bool(q.includes) for kws, q in parsed.items()}
        self.has_kw = [inc[s.keywords] for s in subscribers]  # include keywords typed

    def matrices(self) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """(queries x units, queries x exclusion terms), 0/1."""
        ur: list[int] = []
        uc: list[int] = []
        er: list[int] = []
        ec: list[int] = []
        for (units, excl, _), row in self.sig_row.items():
            ur += [row] * len(units)
            uc += units
            er += [row] * len(excl)
            ec += excl
        n = len(self.sig_row)
        a = sp.csr_matrix((np.ones(len(ur)), (ur, uc)), shape=(n, len(self.units)))
        e = sp.csr_matrix((np.ones(len(er)), (er, ec)), shape=(n, len(self.excl_terms)))
        a.sort_indices()  # sum each query's units in unit order (see the class docstring)
        return a, e


def _unit_key(term: str) -> str:
    """Keywords typed the same up to case, accents and spacing share one unit."""
    return " ".join(fold(term).split())


def _definitions(
    index: DocIndex, papers: Sequence[Paper]
) -> tuple[dict[str, set[str]], dict[str, list[tuple[int, str]]]]:
    by_id = {p.id: p for p in papers}
    per_paper = [definitions(by_id[i].abstract) for i in index.ids]
    defined: dict[str, list[tuple[int, str]]] = {}
    for row, defs in enumerate(per_paper):
        for ka, kl in defs:
            defined.setdefault(ka, []).append((row, kl))
    return synonym_table(mine_definitions(per_paper)), defined


def _semantic(
    qs: _Queries, index: DocIndex, papers: Sequence[Paper], cols: np.ndarray, embed: Embed | None
) -> np.ndarray | None:
    """units x papers semantic closeness (0..1) on the columns `cols` (0 elsewhere), or
    None when no model is available. Only those papers are embedded."""
    if embed is None or not len(cols) or not qs.units:
        return None
    by_id = {p.id: p for p in papers}
    texts = [paper_text(by_id[index.ids[c]].title, by_id[index.ids[c]].abstract) for c in cols]
    got = embed(qs.unit_text, texts)
    if got is None:
        return None
    kv, pv, ref = got
    out = np.zeros((len(qs.units), index.n), dtype=np.float32)
    out[:, cols] = semantic_scores(kv, pv, ref)
    return out


def score_matrix(
    papers: Sequence[Paper],
    subscribers: Sequence[Subscriber],
    popularity_weight: float,
    embed: Embed | None = None,
) -> tuple[DocIndex, _Queries, np.ndarray, np.ndarray, np.ndarray]:
    """(index, queries, per-query relevance 0..100 with non-matches = -1, unit "why"
    flags, per-query allowed papers (False where an exclusion removes the paper)).

    Rows of queries without include keywords are all -1: such subscribers get trending
    papers only."""
    index = build_index(papers)
    table, defined = _definitions(index, papers)
    qs = _Queries(subscribers, table)
    units = score_units(qs.units, index, defined)
    unit_raw = add_feedback(units.score, index, FEEDBACK_WEIGHT)
    a, e = qs.matrices()
    w = float(popularity_weight)
    pop = index.popularity
    n_q = a.shape[0]
    if qs.units:
        # The keywords alone (float32 is plenty for a threshold; halves this array).
        base = np.asarray(a.astype(np.float32) @ units.score)
        matches = (base >= np.float32(MATCH_FLOOR)) & (base > 0)
        del base
        sem = _semantic(qs, index, papers, np.flatnonzero(matches.any(axis=0)), embed)
        if sem is not None and SEMANTIC_WEIGHT > 0:
            unit_raw += SEMANTIC_WEIGHT * sem
        # One (queries x papers) float64 array, transformed in place to bound memory.
        scores = np.asarray(a @ unit_raw, dtype=np.float64)
    else:
        scores = np.zeros((n_q, index.n))
        matches = np.zeros((n_q, index.n), dtype=bool)
    scores *= -1.0 / REL_SCALE
    np.expm1(scores, out=scores)
    scores *= (-100.0 * (1.0 - w + w * pop))[None, :]
    # 4 decimals: the order is decided on the same number the mail shows (and float noise
    # from summation order cannot flip ties).
    np.round(scores, 4, out=scores)
    allowed = np.ones((n_q, index.n), dtype=bool)
    if qs.excl_terms:
        hits = sp.csr_matrix(term_hits(qs.excl_terms, index.exclusion_texts), dtype=np.float64)
        hit = (e @ hits).tocoo()
        allowed[hit.row, hit.col] = False
    np.copyto(scores, -1.0, where=~(matches & allowed))
    return index, qs, scores, units.matched, allowed


def rank(
    papers: Sequence[Paper],
    subscribers: Sequence[Subscriber],
    *,
    exclude: Mapping[str, set[str]] = {},  # noqa: B006 - read only, the shared interface
    popularity_weight: float = RankingConfig.popularity_weight,
    min_score: float = RankingConfig.min_score,
    trending: int = DigestConfig.trending,
    semantic: bool = RankingConfig.semantic,
    embed: Embed | None = None,
    vector_cache: Path | None = None,
    known: Mapping[str, Paper] = {},  # noqa: B006 - read only
) -> dict[str, tuple[Pick, ...]]:
    """Pick papers for every subscriber: email -> picks (see the module docstring): the
    matches ("For you", best first, at most max_papers, score >= the cut), then the
    trending ones (most popular first).

    `min_score` is the cut for subscribers without their own, `trending` the number of
    trending papers for subscribers without their own setting; `semantic` adds the
    embedding model's closeness (`embed`, default: the bundled model, its vectors kept in
    the file `vector_cache` across runs when given). `known`: the papers subscribers
    rated or gave as examples (from the store), what their models (learn.py) are built
    from; one not known stands in by its title. Raises InputError
    when popularity_weight is not a number within 0..1."""
    _check_weight(popularity_weight)
    if not subscribers:
        return {}
    if not papers:
        return {s.email: () for s in subscribers}
    # The run allocates ~10^5 small objects (picks, tuples) and no reference cycles;
    # pausing the cyclic GC meanwhile saves a quarter of the time at 10k subscribers.
    paused = gc.isenabled()
    gc.disable()
    try:
        emb = _embedder(semantic, embed, vector_cache)
        return _rank(
            papers, subscribers, exclude, popularity_weight, min_score, trending, emb, known
        )
    finally:
        if paused:
            gc.enable()


def paper_scores(
    papers: Sequence[Paper],
    subscriber: Subscriber,
    *,
    popularity_weight: float = RankingConfig.popularity_weight,
    semantic: bool = RankingConfig.semantic,
    embed: Embed | None = None,
    known: Mapping[str, Paper] = {},  # noqa: B006 - read only
) -> dict[str, float]:
    """Every matching paper's relevance (0..100) for one subscriber, before the cut,
    max_papers and already-delivered filtering: the number rank() orders "For you" by.
    Papers that are no match (excluded, or too little keyword evidence) are absent, and
    so is everything for a subscriber without include keywords."""
    _check_weight(popularity_weight)
    if not papers:
        return {}
    papers = list({p.id: p for p in papers}.values())
    emb = _embedder(semantic, embed)
    index, qs, scores, _, allowed = score_matrix(papers, [subscriber], popularity_weight, emb)
    rows = np.array(qs.row_of_sub)
    scores, allowed, _ = _with_models(
        papers, [subscriber], index, scores, allowed, rows, emb, known
    )
    row = scores[rows[0]]
    return {pid: float(v) for pid, v in zip(index.ids, row.tolist(), strict=True) if v >= 0}


def _embedder(semantic: bool, embed: Embed | None, cache: Path | None = None) -> Embed | None:
    if not semantic:
        return None
    if embed is not None:
        return embed
    from digest.rank.semantic import vectors  # the I/O edge, loaded on first use

    return functools.partial(vectors, cache=cache)


def _check_weight(w: float) -> None:
    if not isinstance(w, int | float) or not 0.0 <= w <= 1.0:  # also refuses NaN
        raise InputError(f"ranking: popularity_weight must be within 0..1, got {w!r}")


def trending_count(sub: Subscriber, default: int, has_keywords: bool | None = None) -> int:
    """How many trending papers `sub` gets: their own setting, else `default`; a
    subscriber without include keywords (trending only, like the Hugging Face daily
    mail) gets max_papers of them unless they set their own number."""
    if sub.trending is not None:
        return max(int(sub.trending), 0)
    if has_keywords is None:
        has_keywords = bool(sub.query.includes)
    if not has_keywords:
        return max(int(sub.max_papers), 0)
    return max(int(default), 0)


def _rank(
    papers: Sequence[Paper],
    subscribers: Sequence[Subscriber],
    exclude: Mapping[str, set[str]],
    popularity_weight: float,
    min_score: float,
    trending: int,
    embed: Embed | None,
    known: Mapping[str, Paper],
) -> dict[str, tuple[Pick, ...]]:
    papers = list({p.id: p for p in papers}.values())  # one paper per id: the last listed
    index, qs, scores, why, allowed = score_matrix(papers, subscribers, popularity_weight, embed)
    col_of = {pid: i for i, pid in enumerate(index.ids)}
    rows = np.array(qs.row_of_sub)
    floor = np.array(
        [s.min_score if s.min_score is not None else min_score for s in subscribers],
        dtype=np.float64,
    )
    scores, allowed, models = _with_models(
        papers, subscribers, index, scores, allowed, rows, embed, known, floor
    )
    blocked = [[col_of[p] for p in exclude.get(s.email, ()) if p in col_of] for s in subscribers]
    if models is not None:  # their own examples and rated papers are not news to them
        for j, cols in models.own_today().items():
            i = models.subs[j]
            blocked[i] = sorted({*blocked[i], *cols})
    k = np.array([max(int(s.max_papers), 0) for s in subscribers])
    chosen = top_rows(scores, rows, k, floor, blocked)
    matches = _picks(subscribers, qs, scores, why, rows, chosen, index.ids)
    has_kw = list(qs.has_kw)
    if models is not None:
        _likes(subscribers, matches, models, col_of, has_kw)
    n_trend = [trending_count(s, trending, inc) for s, inc in zip(subscribers, has_kw, strict=True)]
    if not any(n_trend):
        return matches
    return _with_trending(subscribers, matches, index, allowed, rows, blocked, chosen, n_trend)


@dataclass(frozen=True, slots=True)
class _Models:
    """The model subscribers' part of a ranking (learn.py)."""

    subs: list[int]  # their positions among the subscribers
    seeds: Seeds
    wins: np.ndarray  # model subscribers x papers: the learned score beat the keywords'
    z: np.ndarray  # seeds x papers: closeness (learn.standard_scores)
    seed_col: np.ndarray  # per seed: its column among today's papers, -1 if not today

    def own_today(self) -> dict[int, list[int]]:
        """model subscriber -> the columns of today's papers they gave as examples or
        rated (usually none: those are papers of earlier days)."""
        sd = self.seeds
        sub = np.concatenate([sd.pos_sub, sd.neg_sub])
        col = self.seed_col[np.concatenate([sd.pos_seed, sd.neg_seed])]
        out: dict[int, list[int]] = {}
        for j, c in zip(sub[col >= 0].tolist(), col[col >= 0].tolist(), strict=True):
            out.setdefault(j, []).append(c)
        return out


def _with_models(
    papers: Sequence[Paper],
    subscribers: Sequence[Subscriber],
    index: DocIndex,
    scores: np.ndarray,
    allowed: np.ndarray,
    rows: np.ndarray,
    embed: Embed | None,
    known: Mapping[str, Paper],
    floor: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, _Models | None]:
    """Subscribers with ratings or examples get their own score row (learn.py): the
    returned `scores` and `allowed` are the keyword rows still used by someone without a
    model, then those rows; `rows` is re-pointed in place. Without the embedding
    model there is no learned score: they keep their keyword scores. `floor`: each
    subscriber's cut, when only the scores that reach it matter (rank(), not
    paper_scores())."""
    subs = [i for i, s in enumerate(subscribers) if has_model(s)]
    if not subs or embed is None:
        return scores, allowed, None
    today = {p.id: p for p in papers}
    sd = seeds([subscribers[i] for i in subs], {**known, **today})
    by_id = today
    texts = [paper_text(by_id[pid].title, by_id[pid].abstract) for pid in index.ids]
    got = embed([], [*texts, *sd.texts])
    if got is None:
        return scores, allowed, None
    _, vecs, ref = got
    z = standard_scores(vecs[len(texts) :], vecs[: len(texts)], ref)
    base = rows[subs]
    need = None if floor is None else np.maximum(floor[subs], 0.0)
    learned, wins = learned_rows(scores[base], z, sd, need)
    ok = allowed[base]
    np.copyto(learned, -1.0, where=~ok)
    col_of = {pid: c for c, pid in enumerate(index.ids)}
    seed_col = np.fromiter((col_of.get(pid, -1) for pid in sd.ids), np.int64, len(sd.ids))
    down = seed_col[sd.neg_seed] >= 0  # a paper rated down never scores for its reader
    learned[sd.neg_sub[down], seed_col[sd.neg_seed[down]]] = -1.0
    models = _Models(subs, sd, wins, z, seed_col)
    # Keep only the keyword rows someone without a model still points to (none when
    # everyone has a model), then the model rows: one copy of what is used.
    others = np.ones(len(rows), dtype=bool)
    others[subs] = False
    used, back = np.unique(rows[others], return_inverse=True)
    rows[others] = back
    rows[subs] = np.arange(len(used), len(used) + len(subs))
    if not len(used):
        return learned, ok, models
    return np.vstack([scores[used], learned]), np.vstack([allowed[used], ok]), models


def _likes(
    subscribers: Sequence[Subscriber],
    matches: dict[str, tuple[Pick, ...]],
    models: _Models,
    col_of: Mapping[str, int],
    has_kw: list[bool],
) -> None:
    """Name the paper each learned pick is most like (Pick.like, for the why-line); a
    model subscriber is a subscriber with interests, whether or not they typed keywords.
    The nearest seeds of all learned picks are found in one pass (learn.nearest_seeds);
    only the picks that get a `like` are rebuilt."""
    sd = models.seeds
    for i in models.subs:
        has_kw[i] = True
    per = [matches[subscribers[i].email] for i in models.subs]
    n_pick = [len(p) for p in per]
    j_of = np.repeat(np.arange(len(per)), n_pick)
    cols = np.fromiter((col_of[p.paper_id] for ps in per for p in ps), np.int64, len(j_of))
    won = np.flatnonzero(models.wins[j_of, cols])
    if not len(won):
        return
    near = nearest_seeds(models.z, sd, j_of[won], cols[won]).tolist()
    first = np.concatenate([[0], np.cumsum(n_pick)]).tolist()
    changed: dict[int, list[Pick]] = {}
    for w, pair in zip(won.tolist(), near, strict=True):
        if pair < 0:
            continue
        seed = int(sd.pos_seed[pair])
        j = int(j_of[w])
        k = w - first[j]
        p = per[j][k]
        if sd.ids[seed] == p.paper_id:
            continue
        out = changed.get(j)
        if out is None:
            out = changed[j] = list(per[j])
        kind = RATED_UP if sd.pos_rated[pair] else EXAMPLE
        out[k] = Pick.of(p.paper_id, p.score, p.matched, p.section, (sd.titles[seed], kind))
    for j, out in changed.items():
        matches[subscribers[models.subs[j]].email] = tuple(out)


def _with_trending(
    subscribers: Sequence[Subscriber],
    matches: dict[str, tuple[Pick, ...]],
    index: DocIndex,
    allowed: np.ndarray,
    rows: np.ndarray,
    blocked: Sequence[Sequence[int]],
    chosen: Sequence[np.ndarray],
    n_trend: Sequence[int],
) -> dict[str, tuple[Pick, ...]]:
    """Each subscriber's matches followed by their trending picks: the most popular papers
    they may get (not excluded, not received before) other than their matches. Popularity
    is the same for everyone, so one global order is walked per subscriber until enough
    are found (a few steps each); only queries with an exclusion look papers up. A
    trending pick is the same for everyone who gets that paper: one Pick per paper,
    shared (Picks are immutable)."""
    pop = np.round(100.0 * index.popularity, 4)
    order = np.lexsort((np.arange(index.n), -pop)).tolist()  # popularity desc, then id
    pops = pop.tolist()
    ids = index.ids
    made: dict[int, Pick] = {}
    banned: dict[int, set[int]] = {}
    for r in np.flatnonzero(~allowed.all(axis=1)).tolist():
        banned[r] = set(np.flatnonzero(~allowed[r]).tolist())
    none: set[int] = set()
    out: dict[str, tuple[Pick, ...]] = {}
    for i, s in enumerate(subscribers):
        want = n_trend[i]
        if not want:
            out[s.email] = matches[s.email]
            continue
        skip = banned.get(int(rows[i]), none)
        taken = set(blocked[i])
        taken.update(chosen[i].tolist())
        extra: list[Pick] = []
        for c in order:
            if c in taken or c in skip:
                continue
            p = made.get(c)
            if p is None:
                p = made[c] = Pick(ids[c], pops[c], (), TRENDING)
            extra.append(p)
            if len(extra) == want:
                break
        out[s.email] = matches[s.email] + tuple(extra)
    return out


def _picks(
    subscribers: Sequence[Subscriber],
    qs: _Queries,
    scores: np.ndarray,
    matched: np.ndarray,
    rows: np.ndarray,
    chosen: list[np.ndarray],
    ids: Sequence[str],
) -> dict[str, tuple[Pick, ...]]:
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
            picks.append(Pick.of(pids[j], vals[j], tuple(compress(terms, flags[f : f + m]))))
            j += 1
            f += m
        out[s.email] = tuple(picks)
    return out
