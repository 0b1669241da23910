"""The model per subscriber (digest/rank/learn.py, hooked into rank()): properties that hold
for any input (Hypothesis), and what a rating or an example does to the next digest.

The semantic space is a fake embedder here (a bag of hashed word vectors, as in
tests/test_rank_properties.py): papers sharing words are close, so neighbours are easy to
build and hundreds of random papers cost no model time."""

from __future__ import annotations

import functools
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_rank_properties import REFERENCE, WORDS, fake_embed, papers, subscribers

from digest.models import DOWN, MATCH, MAX_EXAMPLES, MAX_RATINGS, UP, Paper, Subscriber
from digest.rank import paper_scores as product_paper_scores
from digest.rank import rank as product_rank
from digest.rank.exclusions import excluded
from digest.rank.learn import vote_of, with_examples, with_rating, without_rating
from digest.render import like_sentence


def fake_vectors(keywords, texts):
    return fake_embed(keywords), fake_embed(texts), REFERENCE


rank = functools.partial(product_rank, embed=fake_vectors)
paper_scores = functools.partial(product_paper_scores, embed=fake_vectors)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
T = 1_767_600_000


def rated(sub: Subscriber, ps: list[Paper], votes: list[int]) -> Subscriber:
    for p, v in zip(ps, votes, strict=False):
        sub = with_rating(sub, p.id, v, T, p.title)
    return sub


votes = st.lists(st.sampled_from([UP, DOWN]), max_size=6)


@SETTINGS
@given(papers(min_size=2), subscribers(max_size=1), votes, st.data())
def test_rating_up_never_lowers_its_own_score_nor_down_raises_it(ps, subs, vs, data) -> None:
    sub = rated(subs[0], ps, vs)
    target = data.draw(st.sampled_from(ps))
    before = paper_scores(ps, sub).get(target.id, -1.0)
    up = paper_scores(ps, with_rating(sub, target.id, UP, T + 1, target.title))
    down = paper_scores(ps, with_rating(sub, target.id, DOWN, T + 1, target.title))
    assert up.get(target.id, -1.0) >= before
    assert down.get(target.id, -1.0) <= before


@SETTINGS
@given(papers(min_size=2), subscribers(max_size=1), votes, st.data())
def test_rating_another_paper_never_raises_a_disliked_one(ps, subs, vs, data) -> None:
    sub = rated(subs[0], ps, vs)
    bad, good = data.draw(st.permutations(ps))[:2]
    sub = with_rating(sub, bad.id, DOWN, T + 1, bad.title)
    before = paper_scores(ps, sub).get(bad.id, -1.0)
    for vote in (UP, DOWN):
        after = paper_scores(ps, with_rating(sub, good.id, vote, T + 2, good.title))
        assert after.get(bad.id, -1.0) <= before
    assert bad.id not in paper_scores(ps, sub)  # what its reader rated down never scores


@SETTINGS
@given(papers(min_size=2), subscribers(), votes, st.booleans())
def test_an_exclusion_still_excludes_whatever_was_liked(ps, subs, vs, as_examples) -> None:
    taught = []
    for s in subs:
        s = rated(s, ps, vs)
        if as_examples:
            s = with_examples(s, [(p.id, p.title) for p in ps[:3]])
        taught.append(s)
    got = rank(ps, taught, known={p.id: p for p in ps})
    by_id = {p.id: p for p in ps}
    for s in taught:
        for pick in got[s.email]:
            p = by_id[pick.paper_id]
            assert not excluded(s.query.excludes, f"{p.title}\n{p.abstract}")


@SETTINGS
@given(papers(), subscribers(), votes)
def test_every_pick_scores_at_least_the_cut_and_sections_stay_apart(ps, subs, vs) -> None:
    taught = [rated(s, ps, vs) for s in subs]
    got = rank(ps, taught, min_score=53.0)
    for s in taught:
        cut = s.min_score if s.min_score is not None else 53.0
        ids = [p.paper_id for p in got[s.email]]
        assert len(ids) == len(set(ids))
        for pick in got[s.email]:
            if pick.section == MATCH:
                assert pick.score >= max(cut, 0.0)


# ------------------------------------------------------------------------- by example


def paper(pid: str, title: str, abstract: str = "") -> Paper:
    return Paper(id=pid, title=title, abstract=abstract or title)


LIKED = paper("2601.00001", "speech recognition with pretrained language models")
NEAR = paper("2601.00002", "pretrained language models for speech recognition")
FAR = paper("2601.00003", "video diffusion world models")
ALSO_FAR = paper("2601.00004", "world models of video diffusion agents")
TODAY = [NEAR, FAR, ALSO_FAR]


def test_a_first_rating_changes_the_next_digest_and_says_why() -> None:
    # a low cut: the fake space's closeness is not the real model's (bench/learning.py)
    sub = Subscriber("a@x.org", ("quantum",), max_papers=5, trending=0, min_score=20)
    assert [p.paper_id for p in rank(TODAY, [sub])[sub.email]] == []
    liked = with_rating(sub, LIKED.id, UP, T, LIKED.title)
    (pick,) = rank(TODAY, [liked], known={LIKED.id: LIKED})[sub.email]
    assert pick.paper_id == NEAR.id and pick.section == MATCH
    assert pick.like == (LIKED.title, "up")
    assert like_sentence(pick.like) == f"like ‘{LIKED.title}’ that you rated up"


def test_examples_alone_make_a_digest_without_keywords() -> None:
    sub = Subscriber("b@x.org", max_papers=5, trending=1, min_score=20)
    sub = with_examples(sub, [(LIKED.id, "speech recognition with pretrained models")])
    picks = rank(TODAY, [sub], known={LIKED.id: LIKED})[sub.email]
    assert [(p.paper_id, p.section) for p in picks][0] == (NEAR.id, MATCH)
    assert picks[0].like == (LIKED.title, "example")  # the stored paper's title wins
    assert like_sentence(picks[0].like).endswith(", one of your examples")
    assert len(picks) == 2 and picks[1].section != MATCH  # one trending, as asked
    # without the paper's details (the store forgot them), its stored title stands in
    alone = rank(TODAY, [sub])[sub.email][0]
    assert alone.paper_id == NEAR.id and alone.like[0] == sub.examples[0][1]


def test_papers_like_a_disliked_one_leave_for_you() -> None:
    sub = Subscriber("c@x.org", ("world models",), max_papers=5, trending=0)
    assert {p.paper_id for p in rank(TODAY, [sub])[sub.email]} == {FAR.id, ALSO_FAR.id}
    disliked = with_rating(sub, FAR.id, DOWN, T, FAR.title)
    known = {FAR.id: FAR}
    assert FAR.id not in paper_scores(TODAY, disliked, known=known)
    assert ALSO_FAR.id not in {p.paper_id for p in rank(TODAY, [disliked], known=known)[sub.email]}


def test_without_the_model_ratings_change_nothing() -> None:
    sub = with_rating(Subscriber("d@x.org", ("agent",)), LIKED.id, UP, T, LIKED.title)
    plain = product_rank(TODAY, [sub], semantic=False, known={LIKED.id: LIKED})
    assert plain == product_rank(TODAY, [replace(sub, ratings=())], semantic=False)


# ---------------------------------------------------------------------- the helpers


def test_last_vote_wins_repeats_change_nothing_and_both_are_bounded() -> None:
    s = Subscriber("e@x.org")
    s = with_rating(s, "p1", UP, T, "One")
    assert with_rating(s, "p1", UP, T + 5, "One") is s  # a repeated POST: no change
    s = with_rating(with_rating(s, "p2", DOWN, T, "Two"), "p1", DOWN, T + 9, "One")
    assert s.ratings == (("p2", DOWN, T, "Two"), ("p1", DOWN, T + 9, "One"))
    assert vote_of(s, "p1") == DOWN and vote_of(without_rating(s, "p1"), "p1") is None
    for i in range(MAX_RATINGS + 3):
        s = with_rating(s, f"q{i}", UP, T + i, "")
    assert len(s.ratings) == MAX_RATINGS and s.ratings[-1][0] == f"q{MAX_RATINGS + 2}"
    ex = with_examples(s, [(f"x{i % (MAX_EXAMPLES + 7)}", "") for i in range(300)])
    assert len(ex.examples) == MAX_EXAMPLES and len({e[0] for e in ex.examples}) == MAX_EXAMPLES


def test_a_vote_is_up_or_down() -> None:
    import pytest

    with pytest.raises(ValueError, match="a vote is"):
        with_rating(Subscriber("f@x.org"), "p1", 3, T, "")


def test_unused_words_are_still_words() -> None:  # the fake space covers WORDS
    assert fake_embed([" ".join(WORDS)]).any()


def test_own_examples_and_rated_papers_never_come_back_to_their_reader() -> None:
    sub = Subscriber("g@x.org", ("speech recognition",), max_papers=5, trending=3)
    sub = with_rating(with_examples(sub, [(NEAR.id, NEAR.title)]), FAR.id, UP, T, FAR.title)
    picks = rank(TODAY, [sub], known={p.id: p for p in TODAY})[sub.email]
    assert {p.paper_id for p in picks} == {ALSO_FAR.id}  # in either section


def test_the_rated_shift_starts_at_zero_and_grows_to_its_cap() -> None:
    """A first rating up counts like an example; the nearest of many liked papers counts
    RATED_SHIFT less (it is close by chance alone)."""
    import numpy as np

    from digest.rank.learn import FULL_SHIFT_AT, RATED_SHIFT, rated_shift

    shifts = rated_shift(np.arange(60)).tolist()
    assert shifts[0] == shifts[1] == 0.0
    assert all(a <= b for a, b in zip(shifts, shifts[1:], strict=False))
    assert 0 < shifts[2] < RATED_SHIFT and shifts[FULL_SHIFT_AT] == RATED_SHIFT == shifts[-1]
