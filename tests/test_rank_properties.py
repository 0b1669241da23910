"""Property tests of the ranker (Hypothesis): invariants that must hold for any input.

The semantic signal runs on a fake embedder here (a bag of hashed word vectors: papers
sharing words with a keyword are closer to it), so that hundreds of random papers cost no
model time; tests/test_rank_semantic.py checks the same properties on the real model."""

from __future__ import annotations

import functools
import hashlib
import math
import random
from datetime import date

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.config import RankingConfig
from digest.models import MATCH, TRENDING, Paper, Subscriber
from digest.rank import paper_scores as product_paper_scores
from digest.rank import rank as product_rank
from digest.rank.exclusions import excluded
from digest.rank.features import popularity
from digest.rank.model import trending_count

WORDS = [
    "speech",
    "recognition",
    "text-to-speech",
    "pre-training",
    "pretraining",
    "pretrained",
    "language",
    "model",
    "models",
    "LLM",
    "LLMs",
    "large",
    "retrieval",
    "augmented",
    "generation",
    "RAG",
    "world",
    "video",
    "survey",
    "surveys",
    "diffusion",
    "agent",
    "KV",
    "cache",
    "latency",
    "serving",
    "the",
    "of",
    "for",
    "Café",
    "naïve",
    "3D",
]
DAY = date(2026, 1, 15)


def _word_vector(word: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(word.lower().encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(384)


def fake_embed(texts) -> np.ndarray:
    out = np.zeros((len(texts), 384), dtype=np.float32)
    for i, t in enumerate(texts):
        words = t.replace(",", " ").replace(".", " ").split()
        if words:
            v = sum(_word_vector(w) for w in words)
            out[i] = v / np.linalg.norm(v)
    return out


REFERENCE = fake_embed([" ".join(random.Random(i).sample(WORDS, 6)) for i in range(40)])


def fake_vectors(keywords, papers):
    return fake_embed(keywords), fake_embed(papers), REFERENCE


rank = functools.partial(product_rank, embed=fake_vectors)
paper_scores = functools.partial(product_paper_scores, embed=fake_vectors)

phrase = st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join)
text = st.lists(st.sampled_from(WORDS + [",", "."]), min_size=0, max_size=30).map(" ".join)


@st.composite
def papers(draw, min_size=1, max_size=12):
    n = draw(st.integers(min_size, max_size))
    ids = draw(st.lists(st.integers(1, 99_999), min_size=n, max_size=n, unique=True))
    return [
        Paper(
            id=f"2601.{i:05d}",
            title=draw(text),
            abstract=draw(text),
            ai_keywords=tuple(draw(st.lists(phrase, max_size=3))),
            upvotes=draw(st.none() | st.integers(0, 500)),
            github_stars=draw(st.none() | st.integers(0, 5000)),
            listed_on=draw(st.sampled_from([DAY, date(2026, 1, 16)])),
        )
        for i in ids
    ]


@st.composite
def subscribers(draw, min_size=1, max_size=6):
    n = draw(st.integers(min_size, max_size))
    out = []
    for i in range(n):
        inc = draw(st.lists(phrase, max_size=4, unique_by=str.lower))
        exc = draw(st.lists(st.sampled_from(WORDS), max_size=2))
        out.append(
            Subscriber(
                email=f"s{i}@example.org",
                keywords=tuple(inc) + tuple("-" + e for e in exc),
                max_papers=draw(st.integers(0, 8)),
                min_score=draw(st.none() | st.floats(0, 100, allow_nan=False)),
                trending=draw(st.none() | st.integers(0, 4)),
            )
        )
    return out


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(papers(), subscribers(), st.randoms(use_true_random=False))
def test_deterministic_under_reordering(ps, subs, rnd: random.Random) -> None:
    first = rank(ps, subs)
    assert rank(ps, subs) == first
    shuffled_p, shuffled_s = ps[:], subs[:]
    rnd.shuffle(shuffled_p)
    rnd.shuffle(shuffled_s)
    assert rank(shuffled_p, shuffled_s) == first
    # Each subscriber alone gets the same as in company: no cross-talk between them.
    for s in subs:
        assert rank(ps, [s])[s.email] == first[s.email]


CUTS = st.sampled_from([0.0, 20.0, RankingConfig.min_score])


@SETTINGS
@given(papers(), subscribers(), CUTS, st.integers(0, 4))
def test_sections_limits_order_and_exclusions(ps, subs, cut, n_trending) -> None:
    by_id = {p.id: p for p in ps}
    out = rank(ps, subs, min_score=cut, trending=n_trending)
    assert set(out) == {s.email for s in subs}
    for s in subs:
        picks = out[s.email]
        matches = [p for p in picks if p.section == MATCH]
        hot = [p for p in picks if p.section == TRENDING]
        # matches first, then trending; nothing else
        assert [p.section for p in picks] == [MATCH] * len(matches) + [TRENDING] * len(hot)
        assert len(matches) <= max(s.max_papers, 0)
        assert len(hot) <= trending_count(s, n_trending)
        # "For you" and "Trending" never share a paper; no paper twice
        assert len({p.paper_id for p in picks}) == len(picks)
        for section in (matches, hot):
            keys = [(-p.score, p.paper_id) for p in section]
            assert keys == sorted(keys)
        for p in matches:
            # no paper below the cut in "For you"
            assert p.score >= (s.min_score if s.min_score is not None else cut)
            assert set(p.matched) <= set(s.query.includes)
            assert p.paper_id in paper_scores(ps, s)
        for p in hot:
            assert p.matched == ()
        for p in picks:
            paper = by_id[p.paper_id]
            assert not excluded(s.query.excludes, f"{paper.title}\n{paper.abstract}")
        if not s.query.includes:
            assert not matches


@SETTINGS
@given(papers(), subscribers(max_size=1), st.integers(0, 4))
def test_trending_are_the_most_popular_of_the_rest(ps, subs, n_trending) -> None:
    s = subs[0]
    picks = rank(ps, [s], min_score=0.0, trending=n_trending)[s.email]
    taken = {p.paper_id for p in picks if p.section == MATCH}
    hot = [p.paper_id for p in picks if p.section == TRENDING]
    pop = dict(
        zip(sorted(p.id for p in ps), popularity(sorted(ps, key=lambda p: p.id)), strict=True)
    )
    rest = [
        p.id
        for p in ps
        if p.id not in taken and not excluded(s.query.excludes, f"{p.title}\n{p.abstract}")
    ]
    rest.sort(key=lambda pid: (-round(100 * pop[pid], 4), pid))
    assert hot == rest[: trending_count(s, n_trending)]


@SETTINGS
@given(papers(), subscribers(), st.data(), CUTS)
def test_already_received_never_appears_again(ps, subs, data, cut) -> None:
    """Nothing a subscriber received before (a match or a trending paper) appears again,
    in either section."""
    ids = [p.id for p in ps]
    exclude = {s.email: set(data.draw(st.lists(st.sampled_from(ids)))) for s in subs}
    out = rank(ps, subs, exclude=exclude, min_score=cut)
    for s in subs:
        assert not {p.paper_id for p in out[s.email]} & exclude[s.email]


@SETTINGS
@given(papers(), subscribers(max_size=1), phrase)
def test_adding_a_keyword_never_lowers_a_score(ps, subs, extra) -> None:
    s = subs[0]
    if not s.query.includes:
        s = Subscriber(email=s.email, keywords=("model", *s.keywords))
    before = paper_scores(ps, s)
    after = paper_scores(ps, Subscriber(email=s.email, keywords=(*s.keywords, extra)))
    for pid, score in before.items():
        assert after[pid] >= score


@SETTINGS
@given(papers(), st.integers(1, 12))
def test_no_keyword_subscriber_gets_most_popular(ps, k) -> None:
    s = Subscriber(email="p@example.org", max_papers=k)
    picks = rank(ps, [s])[s.email]
    assert len(picks) == min(k, len(ps))
    assert all(p.section == TRENDING for p in picks)
    assert paper_scores(ps, s) == {}  # nothing can match: no include keywords
    # Same day: more upvotes (without stars) never ranks below fewer.
    scores = {p.paper_id: p.score for p in picks}
    by_id = {p.id: p for p in ps}
    for a in scores:
        for b in scores:
            pa, pb = by_id[a], by_id[b]
            if (
                pa.listed_on == pb.listed_on
                and not pa.github_stars
                and not pb.github_stars
                and (pa.upvotes or 0) > (pb.upvotes or 0)
            ):
                assert scores[a] >= scores[b]


@SETTINGS
@given(papers(), subscribers(max_size=1), CUTS)
def test_keyword_subscriber_needs_a_match(ps, subs, cut) -> None:
    """Popularity never creates relevance: a paper sharing no word with the keywords is
    never in "For you", however popular (it may be trending)."""
    s = subs[0]
    if not s.query.includes:
        return
    lonely = Paper(id="2601.99999x", title="zebra quokka", abstract="axolotl", upvotes=10**6)
    out = rank([*ps, lonely], [s], min_score=cut)[s.email]
    assert lonely.id not in {p.paper_id for p in out if p.section == MATCH}


@SETTINGS
@given(papers(), subscribers(max_size=2), CUTS)
def test_feedback_never_admits_a_paper_on_its_own(ps, subs, cut) -> None:
    """Every match clears MATCH_FLOOR on its keywords alone (feedback and the semantic
    signal switched off): they may reorder the matches, never add one."""
    import digest.rank.model as model

    picks = rank(ps, subs, min_score=cut)
    weight = model.FEEDBACK_WEIGHT
    model.FEEDBACK_WEIGHT = 0.0
    floor = 100.0 * (1.0 - math.exp(-model.MATCH_FLOOR / model.REL_SCALE))
    try:
        for s in subs:
            alone = paper_scores(ps, s, semantic=False)
            for p in picks[s.email]:
                if p.section == MATCH:
                    assert alone[p.paper_id] >= floor - 1e-3  # scores carry 4 decimals
    finally:
        model.FEEDBACK_WEIGHT = weight
