"""Pure: no I/O. The subscriber side of the ranker: keywords -> weighted feature forms.

Each distinct include keyword (by `normalize.key`) becomes one *unit*; subscribers who
typed the same keyword share it, so the work grows with distinct keywords, not with
subscribers. A unit has one or more *forms*, each a weighted feature vector:

* the keyword as typed ("pre-training": pre, train, pretrain, "pre train");
* hyphen variants ("text-to-speech" also as "text to speech" and "texttospeech");
* abbreviation / long-form alternatives from expand.py, at ALT_WEIGHT.

A form's score on a paper is sum(w_f * bm25f(paper, f)) / sum(w_f * idf_f), in [0, 1):
1 would be every feature present and saturated. The unit's score is the best form's.
Dividing by the keyword's *own* maximum (never by the whole query) keeps each keyword's
contribution independent of the others: adding a keyword can only add.

Phrases: a multi-word keyword also scores its adjacent-word bigrams, at BIGRAM_WEIGHT per
bigram. The sequential dependence model (Metzler & Croft, SIGIR 2005) weighs exact
phrase matches far below the words themselves (0.1 vs 0.85); a bigram's own IDF already
makes it count, so a heavy weight would let one exact phrase outrank papers that discuss
the topic in other words.

Set phrases: some keywords are terms of art ("world models": a paper saying "real-world"
and "modeling" is not about them), others describe ("inference latency": "latency of
inference" is the same thing). Which one a keyword is shows in the day's papers as its
*cohesion*: of the papers containing all its words, the share containing the phrase
(a collocation measure in the spirit of Smadja's Xtract, 1993; smoothed with
COHESION_PRIOR pseudo-papers so a day with one occurrence decides little). A paper with
the words but not the phrase gets the form's score x (1 - COHESION * cohesion): a
descriptive keyword barely loses, a set phrase's scattered words lose up to half.
Measured on shared/relevance-dev (bench/digest_quality.py --fast, cut 55): precision
0.693 -> 0.717 at the same grade-2 recall (0.846), up on three of four profiles.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from digest.rank.expand import alternatives
from digest.rank.features import DocIndex
from digest.rank.normalize import analyse_term, key

ALT_WEIGHT = 0.9  # an abbreviation match is nearly as good as the typed words
BIGRAM_WEIGHT = 0.25  # per bigram, relative to a unigram (see the module docstring)
UNIT_BLOCK = 2048  # keywords scored per block
# Scattered words of a multi-word keyword count less the more that keyword is a set
# phrase on the day (see the module docstring): score x (1 - COHESION * cohesion).
COHESION = 1.0
COHESION_PRIOR = 2.0  # pseudo-papers with the words but not the phrase (small days)


@dataclass(frozen=True, slots=True)
class Form:
    feats: tuple[tuple[str, float], ...]  # feature -> weight
    required: tuple[str, ...]  # features that must all occur for the keyword to "match"
    weight: float
    swapped: str = ""  # the abbreviation this form put in place of a long form, if any
    replaced: tuple[str, ...] = ()  # the words of the long form it replaced


@dataclass(frozen=True, slots=True)
class Unit:
    key: str
    forms: tuple[Form, ...]


def _form_from_text(text: str, weight: float = 1.0) -> Form | None:
    a = analyse_term(text)
    k = key(text)
    if not a.unigrams:
        return None
    feats: dict[str, float] = dict.fromkeys(a.unigrams, 1.0)
    for bg in a.bigrams:
        feats[bg] = BIGRAM_WEIGHT
    required = tuple(dict.fromkeys(k.split())) if k else tuple(dict.fromkeys(a.unigrams))
    return Form(tuple(sorted(feats.items())), required, weight)


def _form_from_key(k: str, weight: float, orig: str) -> Form:
    words = k.split()
    feats: dict[str, float] = dict.fromkeys(words, 1.0)
    for a, b in zip(words, words[1:], strict=False):
        if a != b:
            feats[f"{a} {b}"] = BIGRAM_WEIGHT
    new, gone = set(words) - set(orig.split()), set(orig.split()) - set(words)
    swapped = next(iter(new)) if len(new) == 1 and gone else ""
    return Form(
        tuple(sorted(feats.items())), tuple(dict.fromkeys(words)), weight, swapped, tuple(gone)
    )


@lru_cache(maxsize=100_000)
def _text_forms(term: str) -> tuple[Form, ...]:
    """The forms of a keyword's own text (and its hyphen variants): they depend on the
    text alone, so a keyword that recurs (in every chunk of a run, every day of `digest
    serve`) builds them once. Forms are immutable, so sharing them is safe."""
    forms: list[Form] = []
    texts = [term]
    if "-" in term:
        texts += [term.replace("-", " "), term.replace("-", "")]
    for t in texts:
        f = _form_from_text(t)
        if f is not None and all(f.feats != g.feats for g in forms):
            forms.append(f)
    return tuple(forms)


def build_unit(term: str, table: Mapping[str, set[str]]) -> Unit | None:
    """The unit of one include keyword, or None when it has no searchable word. Its
    alternative forms come from `table` (the day's synonyms), its own from the text."""
    forms = _text_forms(term)
    if not forms:
        return None
    k = key(term)
    if k:
        alts = alternatives(k, table)
        if alts:
            forms = (*forms, *(_form_from_key(alt, ALT_WEIGHT, k) for alt in alts))
    return Unit(k or forms[0].required[0], forms)


def _discount_scattered(
    form_score: np.ndarray, full: np.ndarray, pairs: sp.csr_matrix, n_pairs: np.ndarray
) -> None:
    """In place: each multi-word form's score x (1 - COHESION * cohesion) on the papers
    without its phrase (see the module docstring). `pairs` counts, per form and paper,
    the form's word pairs present (sparse: few papers have any); `full` says where all
    its words are. One dense pass; the phrase papers are put back from the sparse side."""
    cnt = pairs.tocoo()
    hit = cnt.data >= n_pairs[cnt.row]  # every pair present (forms with pairs only)
    rows, cols = cnt.row[hit], cnt.col[hit]
    ok = full[rows, cols]
    rows, cols = rows[ok], cols[ok]
    n_phrase = np.bincount(rows, minlength=len(n_pairs))
    cohesion = n_phrase / (full.sum(axis=1) + COHESION_PRIOR)
    disc = np.where(n_pairs > 0, 1.0 - COHESION * cohesion, 1.0).astype(form_score.dtype)
    keep = form_score[rows, cols]
    form_score *= disc[:, None]
    form_score[rows, cols] = keep


@dataclass(frozen=True, slots=True)
class UnitScores:
    """Dense per-unit matrices over the day's papers (units x papers)."""

    score: np.ndarray  # 0..1: best form's normalised BM25F score
    matched: np.ndarray  # bool: some form's required words all occur in the paper


def score_units(
    units: list[Unit], index: DocIndex, defined: Mapping[str, list[tuple[int, str]]]
) -> UnitScores:
    """Score all units against all papers with two sparse products.

    `defined` maps an abbreviation key to (paper row, long-form key) definitions found in
    the papers. An abbreviation form does not count on a paper that defines it as
    something else: for "text-to-speech", "TTS" in a paper saying "test-time scaling
    (TTS)" is not a match."""
    n_docs = index.n
    if not units:
        return UnitScores(np.zeros((0, n_docs), np.float32), np.zeros((0, n_docs), dtype=bool))
    unseen_idf = float(np.log1p((n_docs + 0.5) / 0.5))  # an unknown feature's IDF
    feat_form: list[int] = []
    feats: list[str] = []
    feat_w: list[float] = []
    req_form: list[int] = []
    reqs: list[str] = []
    n_req: list[int] = []
    starts: list[int] = []
    swaps: list[Form] = []
    form_w: list[float] = []
    fi = 0
    for u in units:
        starts.append(fi)
        for f in u.forms:
            for feat, fw in f.feats:
                feat_form.append(fi)
                feats.append(feat)
                feat_w.append(fw)
            req_form.extend([fi] * len(f.required))
            reqs.extend(f.required)
            n_req.append(len(f.required))
            swaps.append(f)
            form_w.append(f.weight)
            fi += 1
    vocab = index.vocab
    cols = np.array([vocab.get(x, -1) for x in feats], dtype=np.int64)
    rows = np.array(feat_form, dtype=np.int64)
    w = np.array(feat_w)
    seen = cols >= 0
    idf = np.full(len(cols), unseen_idf)
    idf[seen] = index.idf[cols[seen]]
    # A form's normaliser: its score if every feature were present and saturated.
    z = np.bincount(rows, weights=w * idf, minlength=fi)
    vals = (np.array(form_w)[rows] * w / z[rows])[seen]
    bg_form: list[int] = []
    bgs: list[str] = []
    for i, f in enumerate(swaps):
        for feat, _ in f.feats:
            if " " in feat:
                bg_form.append(i)
                bgs.append(feat)
    n_bg = np.bincount(np.array(bg_form, dtype=np.int64), minlength=fi)
    bcols = np.array([vocab.get(x, -1) for x in bgs], dtype=np.int64)
    brows = np.array(bg_form, dtype=np.int64)[bcols >= 0]
    bmat = sp.csr_matrix(
        (np.ones(len(brows), dtype=np.float32), (brows, bcols[bcols >= 0])), shape=(fi, len(vocab))
    )
    rcols = np.array([vocab.get(x, -1) for x in reqs], dtype=np.int64)
    rrows = np.array(req_form, dtype=np.int64)[rcols >= 0]
    shape = (fi, len(vocab))
    f32 = np.float32  # unit-level matrices are the big ones; float32 halves them
    fmat = sp.csr_matrix((vals.astype(f32), (rows[seen], cols[seen])), shape=shape)
    rmat = sp.csr_matrix((np.ones(len(rrows), dtype=f32), (rrows, rcols[rcols >= 0])), shape=shape)
    need = np.maximum(np.array(n_req), 1)[:, None]
    bad: dict[int, list[int]] = {}
    for i, f in enumerate(swaps):
        if f.swapped:
            meant = set(f.replaced)
            bad[i] = [r for r, lf in defined.get(f.swapped, ()) if not meant & set(lf.split())]
    score = np.zeros((len(units), n_docs), dtype=f32)
    matched = np.zeros((len(units), n_docs), dtype=bool)
    starts.append(fi)
    # Blocks of units bound the dense forms x papers intermediates (memory stays flat
    # however many distinct keywords there are).
    for u0 in range(0, len(units), UNIT_BLOCK):
        u1 = min(u0 + UNIT_BLOCK, len(units))
        f0, f1 = starts[u0], starts[u1]
        form_score = (fmat[f0:f1] @ index.weights.T).toarray()
        full = (rmat[f0:f1] @ index.presence.T).toarray() >= need[f0:f1]
        if COHESION > 0:
            _discount_scattered(form_score, full, bmat[f0:f1] @ index.presence.T, n_bg[f0:f1])
        for i in range(f0, f1):
            if bad.get(i):
                form_score[i - f0, bad[i]] = 0.0
                full[i - f0, bad[i]] = False
        # Best form per unit. Units have 1-9 forms, so a few vectorised passes over
        # "the j-th form of every unit that has one" beat ufunc.reduceat along rows.
        first = np.array(starts[u0:u1]) - f0
        n_forms = np.diff(np.array(starts[u0 : u1 + 1]))
        best, hit = form_score[first], full[first]
        for j in range(1, int(n_forms.max())):
            has = np.flatnonzero(n_forms > j)
            best[has] = np.maximum(best[has], form_score[first[has] + j])
            hit[has] |= full[first[has] + j]
        score[u0:u1] = best
        matched[u0:u1] = hit
    return UnitScores(score, matched)
