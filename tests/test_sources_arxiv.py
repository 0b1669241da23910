"""arXiv: RSS and export-API parsers on the recorded feeds, the 400 error body, malformed
XML, and the fetcher against the local fixture server, paced by arXiv's 3-second rule."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import httpx
import pytest
from httpfixture import ARXIV_DIR, FixtureServer

from digest.sources import arxiv, fetch_all
from digest.sources.arxiv import RateLimiter, parse_atom, parse_rss, request_for

RSS = next(ARXIV_DIR.glob("rss_*.xml")).read_bytes()
API = next(ARXIV_DIR.glob("api_query_*.xml")).read_bytes()
API_ERROR = next(ARXIV_DIR.glob("api_error_*.xml")).read_bytes()
DAY = date(2026, 4, 27)


@pytest.fixture(scope="module")
def srv() -> Iterator[FixtureServer]:
    with FixtureServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(srv: FixtureServer) -> None:
    srv.clear()


class FakeClock:
    """A monotonic clock that only moves when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def arxiv_only(srv: FixtureServer, clock: FakeClock | None = None, **kw):
    clock = clock or FakeClock()
    cfg = srv.configure(hf_enabled=False, **kw)
    [result] = fetch_all(cfg, DAY, sleep=clock.sleep, clock=clock)
    assert result.source == "arxiv"
    return result


# --------------------------------------------------------------------------- parsers


def test_rss_fixture_parses() -> None:
    papers, skipped = parse_rss(RSS)
    assert skipped == 0
    assert [p.id for p in papers] == ["2604.21935", "2604.21936", "2604.21937"]
    first = papers[0]
    assert first.title == (
        "Math Takes Two: A test for emergent mathematical reasoning in communication"
    )
    assert first.abstract.startswith("Although language models demonstrate")
    assert "Announce Type" not in first.abstract and "\n" not in first.abstract
    assert first.authors == ("Michael Cooper", "Samuel Cooper")
    assert len(papers[1].authors) == 18
    assert all(p.listed_on == DAY and p.sources == ("arxiv",) for p in papers)


def test_rss_keeps_new_and_cross_and_drops_replacements() -> None:
    feed = RSS.replace(b"<arxiv:announce_type>new", b"<arxiv:announce_type>replace", 1)
    feed = feed.replace(b"<arxiv:announce_type>new", b"<arxiv:announce_type>cross", 1)
    papers, skipped = parse_rss(feed)
    assert [p.id for p in papers] == ["2604.21936", "2604.21937"]
    assert skipped == 0  # a replacement is not bad data


def test_rss_item_without_an_id_is_skipped_and_counted() -> None:
    feed = RSS.replace(b"oai:arXiv.org:2604.21935v1", b"garbage", 1).replace(
        b"<link>https://arxiv.org/abs/2604.21935</link>", b"<link>nope</link>", 1
    )
    papers, skipped = parse_rss(feed)
    assert [p.id for p in papers] == ["2604.21936", "2604.21937"] and skipped == 1


def test_atom_fixture_parses() -> None:
    papers, skipped = parse_atom(API)
    assert skipped == 0 and len(papers) == 25
    first = papers[0]
    assert first.id == "2607.28628"
    assert first.title == "Learning to Trace Seiberg Dualities"
    assert first.listed_on == date(2026, 7, 30)
    assert first.authors[-2:] == ("Alessandro Mininno", "Gary Shiu")
    assert first.abstract.startswith("Dualities play an important role")
    assert all("\n" not in p.title and "\n" not in p.abstract for p in papers)
    assert len({p.id for p in papers}) == 25


def test_atom_error_feed_is_reported_with_its_summary() -> None:
    with pytest.raises(ValueError, match="^arXiv API error: incorrect id format for abc$"):
        parse_atom(API_ERROR)


@pytest.mark.parametrize(
    "body",
    [
        b"<rss><channel><item><title>unclosed",
        b"",
        b"\x00\x01binary",
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]><rss/>',
    ],
)
def test_malformed_or_hostile_xml_is_a_one_line_value_error(body: bytes) -> None:
    for parse in (parse_rss, parse_atom):
        with pytest.raises(ValueError) as info:
            parse(body)
        assert "\n" not in str(info.value)


def test_wrong_kind_of_document() -> None:
    with pytest.raises(ValueError, match="expected an RSS 2.0 feed"):
        parse_rss(API)
    with pytest.raises(ValueError, match="expected an Atom feed"):
        parse_atom(RSS)


def test_request_for_each_mode() -> None:
    cfg = arxiv.ArxivConfig(
        categories=("cs.AI", "cs.LG"), mode="rss", rss_base_url="https://rss.arxiv.org/rss/"
    )
    assert request_for(cfg) == ("https://rss.arxiv.org/rss/cs.AI+cs.LG", None)
    api = arxiv.ArxivConfig(categories=("cs.AI", "cs.LG"), mode="api", max_results=50)
    url, params = request_for(api)
    assert url == "https://export.arxiv.org/api/query"
    assert params == {
        "search_query": "cat:cs.AI OR cat:cs.LG",
        "sortBy": "submittedDate",
        "sortOrder": "descending",
        "max_results": "50",
    }
    assert cfg.min_interval == 3.0  # arXiv's 3-second rule is the default


# --------------------------------------------------------------------------- fetcher


def test_rss_over_http(srv: FixtureServer) -> None:
    result = arxiv_only(srv, categories=("cs.AI", "cs.LG"))
    assert result.ok and len(result.papers) == 3 and result.requests == 1
    [req] = srv.requests
    assert req.path == "/rss/cs.AI+cs.LG"
    assert req.headers["user-agent"] == srv.configure().http.user_agent


def test_api_over_http(srv: FixtureServer) -> None:
    result = arxiv_only(srv, arxiv_mode="api", categories=("cs.AI", "cs.LG", "cs.CL"))
    assert result.ok and len(result.papers) == 25
    [req] = srv.requests
    assert req.path == "/api/query"
    assert req.query["search_query"] == "cat:cs.AI OR cat:cs.LG OR cat:cs.CL"
    assert (req.query["sortBy"], req.query["sortOrder"]) == ("submittedDate", "descending")


def test_api_http_400_reports_the_error_entry_and_is_not_retried(srv: FixtureServer) -> None:
    srv.fail_next(3, status=400, body=API_ERROR, headers={"Content-Type": "application/atom+xml"})
    result = arxiv_only(srv, arxiv_mode="api")
    assert len(srv.requests) == 1
    assert result.error is not None and result.error.startswith("arxiv: GET ")
    assert result.error.endswith("HTTP 400: incorrect id format for abc")


def test_fixture_server_answers_a_bad_id_list_like_arxiv(srv: FixtureServer) -> None:
    r = httpx.get(f"{srv.api_base_url}?id_list=abc", trust_env=False)
    assert r.status_code == 400 and b"incorrect id format for abc" in r.content


def test_malformed_xml_over_http_is_a_source_error(srv: FixtureServer) -> None:
    srv.truncate_next(1)
    result = arxiv_only(srv)
    assert result.error is not None and "malformed XML" in result.error
    assert "\n" not in result.error and len(srv.requests) == 1


def test_requests_are_paced_by_min_interval_retries_included(srv: FixtureServer) -> None:
    srv.fail_next(2, status=503)
    clock = FakeClock()
    stamps: list[float] = []
    cfg = srv.configure(hf_enabled=False, min_interval=3.0, backoff=0.0)
    hooks = {"request": [lambda request: stamps.append(clock())]}
    client = httpx.Client(trust_env=False, event_hooks=hooks)
    with client:
        [result] = fetch_all(cfg, DAY, client=client, sleep=clock.sleep, clock=clock)
    assert result.ok and len(stamps) == 3 == len(srv.requests)
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert all(g >= 3.0 for g in gaps), gaps
    assert clock.slept.count(3.0) == 2  # backoff 0: the rate limiter did all the waiting


def test_rate_limiter_waits_only_what_is_left() -> None:
    clock = FakeClock()
    limiter = RateLimiter(3.0, clock=clock, sleep=clock.sleep)
    limiter.wait()
    assert clock.slept == []  # the first request goes at once
    clock.now += 1.0
    limiter.wait()
    assert clock.slept == [2.0]
    clock.now += 10.0
    limiter.wait()
    assert clock.slept == [2.0]


def test_arxiv_failing_does_not_stop_hugging_face(srv: FixtureServer) -> None:
    srv.fail_next(10, status=500, path="/rss")
    cfg = srv.configure(lookback_days=1)
    results = fetch_all(cfg, date(2026, 3, 10), sleep=lambda s: None)
    by = {r.source: r for r in results}
    assert by["huggingface"].ok and len(by["huggingface"].papers) == 28
    assert by["arxiv"].error is not None and "HTTP 500 after 3 attempts" in by["arxiv"].error
