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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from digest.rank.expand import alternatives
from digest.rank.features import DocIndex
from digest.rank.normalize import analyse_term, key

ALT_WEIGHT = 0.9  # an abbreviation match is nearly as good as the typed words
BIGRAM_WEIGHT = 0.25  # per bigram, relative to a unigram (see the module docstring)


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


def build_unit(term: str, table: Mapping[str, set[str]]) -> Unit | None:
    """The unit of one include keyword, or None when it has no searchable word."""
    k = key(term)
    forms: list[Form] = []
    texts = [term]
    if "-" in term:
        texts += [term.replace("-", " "), term.replace("-", "")]
    for t in texts:
        f = _form_from_text(t)
        if f is not None and all(f.feats != g.feats for g in forms):
            forms.append(f)
    if not forms:
        return None
    if k:
        for alt in alternatives(k, table):
            forms.append(_form_from_key(alt, ALT_WEIGHT, k))
    return Unit(k or forms[0].required[0], tuple(forms))


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
    unseen_idf = float(np.log1p((n_docs + 0.5) / 0.5))
    rows, cols, vals = [], [], []
    rrows, rcols = [], []
    n_req, starts, swaps = [], [], []
    fi = 0
    for u in units:
        starts.append(fi)
        for f in u.forms:
            z, entries = 0.0, []
            for feat, w in f.feats:
                col = index.vocab.get(feat)
                z += w * (index.idf[col] if col is not None else unseen_idf)
                if col is not None:
                    entries.append((col, w))
            for col, w in entries:
                rows.append(fi)
                cols.append(col)
                vals.append(f.weight * w / z)
            for feat in f.required:
                col = index.vocab.get(feat)
                if col is not None:
                    rrows.append(fi)
                    rcols.append(col)
            n_req.append(len(f.required))
            swaps.append(f)
            fi += 1
    shape = (fi, len(index.vocab))
    f32 = np.float32  # unit-level matrices are the big ones; float32 halves them
    fmat = sp.csr_matrix((np.array(vals, dtype=f32), (rows, cols)), shape=shape)
    rmat = sp.csr_matrix((np.ones(len(rrows), dtype=f32), (rrows, rcols)), shape=shape)
    form_score = (fmat @ index.weights.T).toarray()
    hits = (rmat @ index.presence.T).toarray()
    full = hits >= np.maximum(np.array(n_req), 1)[:, None]
    for i, f in enumerate(swaps):
        if not f.swapped:
            continue
        meant = set(f.replaced)
        bad = [row for row, lf in defined.get(f.swapped, ()) if not meant & set(lf.split())]
        form_score[i, bad] = 0.0
        full[i, bad] = False
    idx = np.array(starts)
    score = np.maximum.reduceat(form_score, idx, axis=0)
    matched = np.maximum.reduceat(full.astype(np.uint8), idx, axis=0).astype(bool)
    return UnitScores(score, matched)
