"""The papers pages (/papers, /papers/YYYY-MM-DD, ?q=) over HTTP against the real app under
uvicorn with a real TinyDB store (tests/websupport.py). The browser tests are in
tests/test_papers_browser.py; the digests' web copies (/view/...) in tests/test_papers_view.py."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websupport import RELAXED, make_site, paper

from digest.config import Config, Limit
from digest.models import MATCH, TRENDING, Subscriber
from digest.rank import rank
from digest.rank.exclusions import excluded
from digest.web.papers import Q_MAX, neighbours, parse_day, popular_first, search

NOW = datetime(2026, 1, 6, 9, 0, tzinfo=UTC)
TODAY, YESTERDAY, EARLIER = date(2026, 1, 6), date(2026, 1, 5), date(2026, 1, 2)

DAY_PAPERS = [
    paper(
        "2601.00001",
        "Streaming speech recognition with small transducers",
        "We study automatic speech recognition on device. Our transducer runs in real time.",
        upvotes=12,
        authors=("Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra"),
        ai_summary="A small transducer model makes on-device speech recognition real time.",
    ),
    paper(
        "2601.00002",
        "A survey of speech recognition",
        "This survey reviews speech recognition systems of the last decade.",
        upvotes=30,
    ),
    paper(
        "2601.00003",
        "World models for robot planning",
        "We learn a world model from video and plan with it.",
        upvotes=50,
        github_repo="https://github.com/example/wm",
        github_stars=321,
    ),
    paper(
        "2601.00004",
        "Diffusion for image editing",
        "Image editing with diffusion models.",
        upvotes=3,
    ),
]
OLD_PAPERS = [
    paper(
        "2601.00010", "Yesterday's paper on retrieval", "Retrieval augmented generation.", upvotes=5
    ),
    paper("2601.00011", "Another one from yesterday", "Graph neural networks.", upvotes=9),
]
EARLY_PAPERS = [paper("2601.00020", "An early paper", "Reinforcement learning.", upvotes=1)]


def ids_in(page: str) -> list[str]:
    return re.findall(r'data-paper-id="([^"]+)"', page)


def sections_in(page: str) -> list[tuple[str, str]]:
    return re.findall(r'data-paper-id="([^"]+)" data-section="([^"]+)"', page)


def fill(store) -> None:
    store.record_seen(EARLY_PAPERS, EARLIER)
    store.record_seen(OLD_PAPERS, YESTERDAY)
    store.record_seen(DAY_PAPERS, TODAY)


@pytest.fixture
def site(tmp_path):
    with make_site(tmp_path, now=NOW) as s:
        fill(s.store)
        yield s


def test_latest_day_most_popular_first_with_everything_a_paper_shows(site):
    with site.client() as c:
        r = c.get("/papers")
    assert r.status_code == 200
    page = r.text
    assert ids_in(page) == ["2601.00003", "2601.00002", "2601.00001", "2601.00004"]
    assert "data-section" not in page  # sections only with a search
    assert "Tuesday, 6 January 2026" in page
    assert 'href="https://huggingface.co/papers/2601.00003"' in page
    assert 'href="https://arxiv.org/abs/2601.00003"' in page
    assert "▲ 50 upvotes" in page and "GitHub ★ 321" in page
    assert "Ada Lovelace, Alan Turing, Grace Hopper et al." in page  # authors shortened
    assert "A small transducer model makes on-device" in page  # the AI summary first
    assert 'href="/papers/2026-01-05"' in page and 'id="next-day"' not in page
    assert "Get these in your inbox once a day" in page
    assert '<meta name="viewport"' in page
    assert "<script" not in page


def test_a_past_day_with_links_both_ways(site):
    with site.client() as c:
        r = c.get("/papers/2026-01-05")
    assert r.status_code == 200
    assert ids_in(r.text) == ["2601.00011", "2601.00010"]
    assert 'href="/papers/2026-01-02"' in r.text and 'href="/papers/2026-01-06"' in r.text


def test_a_search_ranks_with_the_digest_ranker_and_honours_exclusions(site):
    with site.client() as c:
        r = c.get("/papers", params={"q": '"speech recognition", -survey'})
    assert r.status_code == 200, r.text
    got = sections_in(r.text)
    assert got[0] == ("2601.00001", MATCH)
    assert [s for _, s in got] == [MATCH, TRENDING, TRENDING]  # matches first, in order shown
    assert "2601.00002" not in ids_in(r.text)  # the survey is excluded from both lists
    assert "1 paper left out by your exclusions" in r.text
    assert "Other papers of the day" in r.text
    assert "matched: speech recognition" in r.text
    assert "<mark>speech recognition</mark>" in r.text  # the why sentence, highlighted
    # The banner's subscribe form carries the search's keywords.
    assert re.search(r'name="keywords" value="speech recognition, -survey"', r.text)
    # Links to other days keep the search.
    assert 'href="/papers/2026-01-05?q=%22speech+recognition%22%2C+-survey"' in r.text


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/papers/2026-13-01", 400, "is not a day"),
        ("/papers/yesterday", 400, "is not a day"),
        ("/papers/20260105", 400, "is not a day"),
        ("/papers/%00%1b<b>" + "9" * 80, 400, "“&lt;b&gt;999"),
        ("/papers/2025-06-01", 404, "older than the 30 days"),
        ("/papers/2026-01-04", 404, "No papers were listed"),
        ("/papers/2027-01-04", 404, "No papers were listed"),
        ("/papers?q=" + "a" * (Q_MAX + 1), 414, "at most 200 characters"),
        ('/papers?q="unclosed, %01', 400, "Search not understood"),
    ],
)
def test_bad_input_gets_a_plain_page_with_the_right_status(site, path, status, words):
    with site.client() as c:
        r = c.get(path)
    assert r.status_code == status
    assert words in r.text
    assert "Traceback" not in r.text and r.headers["content-type"].startswith("text/html")


def test_day_pages_carry_cache_headers_and_answer_304(site):
    with site.client() as c:
        first = c.get("/papers/2026-01-06")
        assert first.headers["cache-control"].startswith("private, max-age=")
        etag = first.headers["etag"]
        again = c.get("/papers/2026-01-06", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        assert c.get("/papers/2026-01-06", headers={"If-None-Match": "*"}).status_code == 304
        other = c.get("/papers/2026-01-06", headers={"If-None-Match": 'W/"x", "y"'})
        assert other.status_code == 200
        assert again.headers["etag"] == etag
        # The CSP of the 304 is the 200's: a revalidated page keeps its stylesheet.
        assert again.headers["content-security-policy"] == first.headers["content-security-policy"]
        assert "'sha256-" in first.headers["content-security-policy"]
        assert "script-src" not in first.headers["content-security-policy"]
        # New papers for the day change the page, so the old tag no longer matches.
        site.store.record_seen([paper("2601.00005", "A late addition", upvotes=1)], TODAY)
        changed = c.get("/papers/2026-01-06", headers={"If-None-Match": etag})
        assert changed.status_code == 200 and "2601.00005" in ids_in(changed.text)


def test_searches_are_rate_limited_like_the_preview(tmp_path):
    settings = replace(RELAXED, rate_preview=Limit(2, 60))
    with make_site(tmp_path, settings, now=NOW) as s:
        fill(s.store)
        with s.client() as c:
            assert c.get("/papers", params={"q": "robot"}).status_code == 200
            assert c.get("/papers", params={"q": "world"}).status_code == 200
            r = c.get("/papers", params={"q": "planning"})
            assert r.status_code == 429 and "Too many searches" in r.text
            assert int(r.headers["retry-after"]) >= 1
            assert c.get("/papers").status_code == 200  # a plain day page is not counted


def test_private_deployments_serve_no_papers(site):
    site.ctx.cfg = replace(site.ctx.cfg, web=replace(site.ctx.cfg.web, public_papers=False))
    with site.client() as c:
        for path in ("/papers", "/papers/2026-01-05", "/papers?q=robot"):
            r = c.get(path)
            assert r.status_code == 404 and "not public" in r.text


def test_the_front_page_links_to_the_papers_unless_private(site):
    with site.client() as c:
        assert 'href="/papers"' in c.get("/").text
        site.ctx.cfg = replace(site.ctx.cfg, web=replace(site.ctx.cfg.web, public_papers=False))
        assert 'href="/papers"' not in c.get("/").text


def test_no_papers_yet(tmp_path):
    with make_site(tmp_path, now=NOW) as s, s.client() as c:
        r = c.get("/papers")
    assert r.status_code == 200 and "No papers yet" in r.text


def test_only_exclusions_list_the_rest_without_a_match_section(site):
    with site.client() as c:
        r = c.get("/papers", params={"q": "-survey, -diffusion"})
    assert r.status_code == 200
    assert 'id="matches"' not in r.text
    assert sections_in(r.text) == [("2601.00003", TRENDING), ("2601.00001", TRENDING)]
    assert "2 papers left out by your exclusions" in r.text
    assert re.search(r'name="keywords" value="-survey, -diffusion"', r.text)


def test_a_search_that_matches_nothing_still_lists_the_day(site):
    with site.client() as c:
        r = c.get("/papers/2026-01-06", params={"q": "protein folding"})
    assert r.status_code == 200
    assert "None of the day's papers clearly matches" in r.text
    assert [s for _, s in sections_in(r.text)] == [TRENDING] * 4
    assert ids_in(r.text) == ["2601.00003", "2601.00002", "2601.00001", "2601.00004"]


def test_parse_day_is_strict():
    assert parse_day("2026-01-06") == date(2026, 1, 6)
    for raw in ("2026-1-6", "2026-02-30", "20260106", "2026-01-06x", "", "２０２６-01-06"):
        assert parse_day(raw) is None, raw


def test_neighbours():
    days = [EARLIER, YESTERDAY, TODAY]
    assert neighbours(days, YESTERDAY) == (EARLIER, TODAY)
    assert neighbours(days, EARLIER) == (None, YESTERDAY)
    assert neighbours(days, TODAY) == (YESTERDAY, None)
    assert neighbours(days, date(2026, 1, 4)) == (EARLIER, YESTERDAY)


def test_most_popular_first_is_the_digest_s_trending_order():
    """The day page's order is the one "Trending today" walks: rank() for a subscriber
    without keywords gets the same papers in the same order."""
    pool = DAY_PAPERS + [
        paper("2601.00030", "Tied popularity a", upvotes=12),
        paper("2601.00031", "Tied popularity b", upvotes=12),
        paper("2601.00032", "No upvotes at all"),
    ]
    sub = Subscriber(email="t@example.org", keywords=(), max_papers=len(pool))
    picks = rank(sorted(pool, key=lambda p: p.id), [sub], semantic=False)[sub.email]
    assert [p.id for p in popular_first(list(reversed(pool)))] == [pk.paper_id for pk in picks]


def test_a_revalidated_search_is_not_ranked_again(site, monkeypatch):
    import digest.rank

    calls = []
    real = digest.rank.rank
    monkeypatch.setattr(digest.rank, "rank", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    with site.client() as c:
        first = c.get("/papers", params={"q": "world models"})
        assert first.status_code == 200 and calls == [1]
        again = c.get(
            "/papers",
            params={"q": "world models"},
            headers={"If-None-Match": first.headers["etag"]},
        )
        assert again.status_code == 304 and calls == [1]  # no ranking, no rendering
        other = c.get(
            "/papers", params={"q": "world model"}, headers={"If-None-Match": first.headers["etag"]}
        )
        assert other.status_code == 200 and calls == [1, 1]  # another search, another page


WORDS = ["speech", "recognition", "survey", "surveys", "world", "model", "models", "diffusion",
         "agent", "retrieval", "the", "of", "LLM", "video"]  # fmt: skip


@st.composite
def days_papers(draw):
    n = draw(st.integers(min_value=0, max_value=12))
    out = []
    for i in range(n):
        title = " ".join(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=5)))
        abstract = " ".join(draw(st.lists(st.sampled_from(WORDS), min_size=0, max_size=12)))
        up = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=60)))
        out.append(paper(f"2601.{i:05d}", title, abstract or title, upvotes=up))
    return out


class _Ctx:  # what `search` reads of a WebContext: the config
    def __init__(self, cfg):
        self.cfg = cfg


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    day=days_papers(),
    terms=st.lists(
        st.sampled_from(["speech recognition", "world model", "-survey", "-video", "agent"]),
        min_size=1,
        max_size=3,
        unique=True,
    ),
)
def test_a_search_splits_the_day_between_matches_others_and_exclusions(day, terms):
    """Every paper of the day is shown once, in one section, unless an exclusion removes
    it; the others keep the day page's order; an exclusion always excludes."""
    cfg = replace(Config(), ranking=replace(Config().ranking, semantic=False))
    found = search(_Ctx(cfg), day, tuple(terms))
    shown = [c.paper.id for c in found.matches] + [c.paper.id for c in found.others]
    assert len(shown) == len(set(shown))
    assert len(shown) + found.excluded == len(day)
    excludes = [t[1:] for t in terms if t.startswith("-")]
    for p in day:
        gone = excluded(excludes, p.title) or excluded(excludes, p.abstract)
        assert (p.id not in shown) == gone, (p, excludes)
    assert all(c.section == MATCH and c.matched for c in found.matches)
    assert all(c.section == TRENDING and not c.matched for c in found.others)
    others = {c.paper.id for c in found.others}
    assert [c.paper.id for c in found.others] == [
        p.id for p in popular_first(day) if p.id in others
    ]
    if not [t for t in terms if not t.startswith("-")]:
        assert found.matches == ()
