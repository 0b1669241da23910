"""Hugging Face daily papers: the parser on every recorded day, and the fetcher against a
real local HTTP server (tests/httpfixture.py) serving the recorded days, with faults."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from httpfixture import HF_DIR, FixtureServer

from digest.errors import FetchError
from digest.sources import fetch_all, hf
from digest.sources.hf import parse_daily_papers, window
from digest.sources.http import Fetcher, make_client

DAY = date(2026, 3, 10)  # 28 papers recorded
ID = re.compile(r"\d{4}\.\d{4,5}")
ALL_DAYS = sorted(HF_DIR.rglob("*.json"))


@pytest.fixture(scope="module")
def srv() -> Iterator[FixtureServer]:
    with FixtureServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(srv: FixtureServer) -> None:
    srv.clear()


def recorded(day: str) -> list[dict]:
    path = next(p for p in ALL_DAYS if p.stem == day)
    return json.loads(path.read_bytes())


def hf_only(srv: FixtureServer, **kw) -> list:
    waits: list[float] = []
    cfg = srv.configure(categories=(), **kw)
    results = fetch_all(cfg, DAY, sleep=waits.append)
    assert [r.source for r in results] == ["huggingface"]
    return [results[0], waits]


# --------------------------------------------------------------------------- parser


def test_fixture_set_is_present() -> None:
    assert len(ALL_DAYS) >= 20, f"recorded days missing under {HF_DIR}"


@pytest.mark.parametrize("path", ALL_DAYS, ids=[p.stem for p in ALL_DAYS])
def test_every_recorded_day_parses(path: Path) -> None:
    data = json.loads(path.read_bytes())
    papers, skipped = parse_daily_papers(data)
    assert skipped == 0
    assert len(papers) == len(data) > 0
    assert [p.id for p in papers] == [item["paper"]["id"] for item in data]
    for p in papers:
        assert ID.fullmatch(p.id), p.id
        assert p.title and "\n" not in p.title and "  " not in p.title
        assert p.title == p.title.strip()
        assert "\n" not in p.abstract
        assert p.authors and all(isinstance(a, str) and a for a in p.authors)
        assert p.listed_on == date.fromisoformat(path.stem)
        assert p.sources == ("huggingface",)
        assert p.upvotes is not None and p.upvotes >= 0


def test_line_breaks_in_titles_are_collapsed() -> None:
    data = recorded("2026-03-10")
    raw = [it["paper"]["title"] for it in data] + [
        it["paper"]["title"] for p in ALL_DAYS for it in json.loads(p.read_bytes())
    ]
    assert any("\n" in t for t in raw), "the fixtures are known to contain line breaks"
    item = next(
        it for p in ALL_DAYS for it in json.loads(p.read_bytes()) if "\n" in it["paper"]["title"]
    )
    [paper], _ = parse_daily_papers([item])
    assert paper.title == " ".join(item["paper"]["title"].split())


def test_optional_fields_are_kept_when_present() -> None:
    data = recorded("2026-03-10")
    papers, _ = parse_daily_papers(data)
    first, item = papers[0], data[0]["paper"]
    assert first.upvotes == item["upvotes"]
    assert first.ai_summary == item["ai_summary"]
    assert first.ai_keywords == tuple(item["ai_keywords"])
    assert first.github_repo == item["githubRepo"]
    assert first.github_stars == item["githubStars"]
    assert first.project_page == item["projectPage"]
    absent = [p for p, it in zip(papers, data, strict=True) if "githubRepo" not in it["paper"]]
    assert absent and all(p.github_repo is None for p in absent)


def item(**paper) -> dict:
    base = {
        "id": "2603.07660",
        "title": "A title",
        "summary": "An abstract.",
        "authors": [{"name": "Ada Lovelace"}],
        "submittedOnDailyAt": "2026-03-10T01:24:03Z",
    }
    base.update(paper)
    return {"paper": {k: v for k, v in base.items() if v is not ...}}


def test_bad_items_are_skipped_and_counted() -> None:
    data = [
        item(),
        item(id=...),  # missing id
        item(id=None),
        item(id=12345),  # wrong type
        item(id="not-an-id"),
        item(title=...),  # missing title (and no top-level title)
        item(title=["a list"]),
        item(title="   \n "),  # blank after cleaning
        {"paper": "not an object"},
        "not an object",
        None,
        item(id="2603.07661v3", title="Versioned"),
    ]
    papers, skipped = parse_daily_papers(data)
    assert [p.id for p in papers] == ["2603.07660", "2603.07661"]
    assert skipped == 10


def test_wrong_types_in_optional_fields_are_ignored_not_fatal() -> None:
    [p], skipped = parse_daily_papers(
        [
            item(
                upvotes="12",
                githubStars=True,
                githubRepo="javascript:alert(1)",
                projectPage=None,
                ai_summary=42,
                ai_keywords="not a list",
                authors={"name": "x"},
                submittedOnDailyAt="yesterday",
                summary=None,
            )
        ]
    )
    assert skipped == 0
    assert (p.upvotes, p.github_stars, p.github_repo, p.project_page) == (None, None, None, None)
    assert (p.ai_summary, p.ai_keywords, p.authors, p.abstract) == (None, (), (), "")
    assert p.listed_on is None
    [q], _ = parse_daily_papers([item(submittedOnDailyAt=None, upvotes=-3)], listed_on=DAY)
    assert q.listed_on == DAY and q.upvotes is None


def test_markup_in_title_is_kept_as_text_and_control_chars_dropped() -> None:
    [p], _ = parse_daily_papers(
        [
            item(
                title="<script>alert('x')</script>\x00 Fast\x07 &amp; <b>Bold</b>\r\nTitle\u0085"
                "\u202e\ud800",  # a bidi override and a lone surrogate (valid JSON) go too
                authors=[{"name": "Eve\x1b[31m"}, {"name": 7}, "x"],
                ai_keywords=["LLM", "LLM", 3, " rag\n"],
            )
        ]
    )
    assert p.title == "<script>alert('x')</script> Fast &amp; <b>Bold</b> Title"
    assert p.authors == ("Eve[31m",)
    assert p.ai_keywords == ("LLM", "rag")


def test_a_non_list_answer_is_an_error() -> None:
    for data in ({"error": "Invalid date"}, "x", None, 3):
        with pytest.raises(ValueError, match="expected a JSON list"):
            parse_daily_papers(data)


def test_window_is_the_day_and_the_days_before_oldest_first() -> None:
    assert window(DAY, 3) == [date(2026, 3, 8), date(2026, 3, 9), DAY]
    assert window(date(2026, 3, 1), 2) == [date(2026, 2, 28), date(2026, 3, 1)]
    assert window(DAY, 1) == [DAY]


# --------------------------------------------------------------------------- fetcher


def test_day_is_fetched_page_by_page(srv: FixtureServer) -> None:
    result, waits = hf_only(srv, limit=10)
    assert result.ok and result.skipped == 0
    assert [p.id for p in result.papers] == [it["paper"]["id"] for it in recorded("2026-03-10")]
    pages = [(r.query["date"], r.query["limit"], r.query["p"]) for r in srv.requests]
    assert pages == [
        ("2026-03-10", "10", "0"),
        ("2026-03-10", "10", "1"),
        ("2026-03-10", "10", "2"),
    ]
    assert result.requests == 3 and waits == []


def test_a_full_last_page_asks_for_one_more_and_stops_at_the_empty_one(
    srv: FixtureServer,
) -> None:
    result, _ = hf_only(srv, limit=14)  # 28 = 2 full pages
    assert len(result.papers) == 28
    assert [r.query["p"] for r in srv.requests] == ["0", "1", "2"]


def test_lookback_window_dates_are_requested(srv: FixtureServer) -> None:
    cfg = srv.configure(categories=(), lookback_days=4)
    [result] = fetch_all(cfg, date(2026, 1, 5))  # Monday: the weekend has no listing
    asked = [r.query["date"] for r in srv.requests]
    assert asked == ["2026-01-02", "2026-01-03", "2026-01-04", "2026-01-05"]
    assert len(result.papers) == len(recorded("2026-01-02")) + len(recorded("2026-01-05"))
    assert {p.listed_on for p in result.papers} == {date(2026, 1, 2), date(2026, 1, 5)}


def test_requests_carry_the_configured_user_agent(srv: FixtureServer) -> None:
    hf_only(srv, lookback_days=2)
    cfg = srv.configure()
    assert srv.requests and all(
        r.headers["user-agent"] == cfg.http.user_agent for r in srv.requests
    )
    assert "digest" in cfg.http.user_agent


def test_429_with_retry_after_is_honoured_then_succeeds(srv: FixtureServer) -> None:
    srv.fail_next(1, status=429, headers={"Retry-After": "7"})
    result, waits = hf_only(srv)
    assert result.ok and len(result.papers) == 28
    assert waits == [7.0]
    assert len(srv.requests) == 2


def test_retry_after_is_capped_at_max_backoff(srv: FixtureServer) -> None:
    srv.fail_next(1, status=503, headers={"Retry-After": "3600"})
    result, waits = hf_only(srv, max_backoff=5.0)
    assert result.ok and waits == [5.0]


def test_hugging_face_ratelimit_headers_are_honoured(srv: FixtureServer) -> None:
    srv.fail_next(
        1,
        status=429,
        headers={
            "RateLimit": '"api";r=0;t=55',
            "RateLimit-Policy": '"fixed window";"api";q=500;w=300',
        },
    )
    srv.fail_next(1, status=429, headers={"RateLimit-Reset": "12"})
    result, waits = hf_only(srv)
    assert result.ok and waits == [55.0, 12.0]


def test_500_then_success_backs_off_exponentially(srv: FixtureServer) -> None:
    srv.fail_next(2, status=500)
    result, waits = hf_only(srv, backoff=0.5)
    assert result.ok and len(result.papers) == 28
    assert len(waits) == 2
    assert 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 1.5  # 0.5 * 2**n + jitter < 0.5
    assert result.requests == 3


def test_500_forever_fails_the_source_with_one_line(srv: FixtureServer) -> None:
    srv.fail_next(10, status=500)
    result, _ = hf_only(srv, retries=3)
    assert not result.ok and result.papers == ()
    assert result.error == (
        f"huggingface: GET {srv.url}/api/daily_papers?date=2026-03-10&limit=50&p=0: "
        "HTTP 500 after 4 attempts"
    )
    assert len(srv.requests) == 4 and result.requests == 4


@pytest.mark.parametrize("status", [400, 403, 404, 501])
def test_other_4xx_and_501_are_not_retried(srv: FixtureServer, status: int) -> None:
    srv.fail_next(5, status=status)
    result, waits = hf_only(srv)
    assert result.error and result.error.endswith(f"HTTP {status}")
    assert len(srv.requests) == 1 and waits == []


def test_a_failed_day_is_a_note_and_the_other_days_go_on(srv: FixtureServer) -> None:
    srv.fail_next(3, status=502)  # all 3 attempts of the first (oldest) day
    cfg = srv.configure(categories=(), lookback_days=3)
    [result] = fetch_all(cfg, DAY, sleep=lambda s: None)
    assert result.ok and len(result.papers) == 28
    assert len(result.notes) == 1
    assert result.notes[0] == (
        f"huggingface: GET {srv.url}/api/daily_papers?date=2026-03-08&limit=50&p=0: "
        "HTTP 502 after 3 attempts (listing 2026-03-08 incomplete)"
    )


def test_timeouts_are_retried_then_reported(srv: FixtureServer) -> None:
    srv.delay_next(1, seconds=5.0)  # far beyond the timeout; the server thread just waits
    result, waits = hf_only(srv, timeout=0.5)
    assert result.ok and len(result.papers) == 28 and len(waits) == 1
    srv.clear()
    srv.delay_next(3, seconds=5.0)
    result, _ = hf_only(srv, timeout=0.5)
    assert result.error and result.error.endswith("timed out (read) after 3 attempts")


@pytest.mark.parametrize("fault", ["garbage", "truncate"])
def test_a_200_with_a_bad_body_is_not_retried_and_fails_that_day(
    srv: FixtureServer, fault: str
) -> None:
    getattr(srv, f"{fault}_next")(1)
    result, waits = hf_only(srv)
    assert not result.ok and waits == [] and len(srv.requests) == 1
    assert "malformed JSON" in result.error and "\n" not in result.error


def test_a_json_object_instead_of_a_list_fails_that_day(srv: FixtureServer) -> None:
    srv.fail_next(1, status=200, body=b'{"error": "Invalid date"}')
    result, _ = hf_only(srv)
    assert result.error and result.error.endswith("expected a JSON list of papers, got an object")


def test_a_dropped_connection_mid_body_is_retried(srv: FixtureServer) -> None:
    srv.drop_next(1)
    result, waits = hf_only(srv)
    assert result.ok and len(result.papers) == 28 and len(waits) == 1


def test_trending_mode_is_paged_and_bounded(srv: FixtureServer) -> None:
    result, _ = hf_only(srv, hf_mode="trending", limit=20)
    assert result.ok and result.notes == ()
    assert [(r.query["sort"], r.query["p"]) for r in srv.requests] == [
        ("trending", "0"),
        ("trending", "1"),
        ("trending", "2"),
    ]
    assert len(result.papers) == 20 * hf.TRENDING_PAGES
    ups = [p.upvotes for p in result.papers]
    assert ups == sorted(ups, reverse=True)


def test_a_page_that_repeats_itself_stops_the_day(srv: FixtureServer) -> None:
    # An API ignoring `p` would hand back the same full page forever.
    page = json.dumps(recorded("2026-03-10")[:5]).encode()
    srv.fail_next(2, status=200, body=page)
    result, _ = hf_only(srv, limit=5)
    assert result.ok and len({p.id for p in result.papers}) == 5
    assert len(srv.requests) == 2


def test_fetcher_raises_fetch_error_with_the_source_name(srv: FixtureServer) -> None:
    cfg = srv.configure(retries=0)
    srv.fail_next(1, status=503)
    with make_client(cfg.http) as client:
        f = Fetcher(client, cfg.http, "huggingface", sleep=lambda s: None)
        with pytest.raises(FetchError, match=r"^huggingface: GET .*: HTTP 503 after 1 attempt$"):
            f.get(f"{srv.url}/api/daily_papers", {"date": "2026-03-10"})
        assert f.get(f"{srv.url}/api/daily_papers", {"date": "2026-03-10"}).status_code == 200
        assert f.requests == 2
