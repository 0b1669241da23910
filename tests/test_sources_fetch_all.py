"""fetch_all: sources isolated from each other, the offline fallback to the bundled
recorded day, and the HTTP edge's helpers (client factory, Retry-After, RateLimit)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime

import httpx
import pytest
from httpfixture import HF_DIR, FixtureServer, unused_url

from digest.config import Config, HttpConfig
from digest.sources import OFFLINE_NOTE, fetch_all, hf, merge
from digest.sources.http import make_client, ratelimit_seconds, retry_after_seconds
from digest.sources.recorded import RECORDED_DAY, load_recorded

DAY = date(2026, 3, 10)


@pytest.fixture(scope="module")
def srv() -> Iterator[FixtureServer]:
    with FixtureServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(srv: FixtureServer) -> None:
    srv.clear()


def pointed_at(cfg: Config, hf_url: str, arxiv_url: str) -> Config:
    s = cfg.sources
    return replace(
        cfg,
        sources=replace(
            s,
            huggingface=replace(s.huggingface, base_url=hf_url),
            arxiv=replace(
                s.arxiv, rss_base_url=f"{arxiv_url}/rss", api_base_url=f"{arxiv_url}/api/query"
            ),
        ),
    )


def test_both_sources_in_a_fixed_order(srv: FixtureServer) -> None:
    results = fetch_all(srv.configure(lookback_days=2), DAY)
    assert [(r.source, r.ok, len(r.papers)) for r in results] == [
        ("huggingface", True, 28),
        ("arxiv", True, 3),
    ]
    assert len(merge(results)) == 31


def test_no_source_enabled_gives_nothing(srv: FixtureServer) -> None:
    assert fetch_all(srv.configure(hf_enabled=False, categories=()), DAY) == []
    assert srv.requests == []


def test_offline_every_source_unreachable_uses_the_recorded_day(srv: FixtureServer) -> None:
    cfg = pointed_at(srv.configure(offline_fallback=True), unused_url(), unused_url())
    waits: list[float] = []
    [result] = fetch_all(cfg, DAY, sleep=waits.append)
    assert result.ok and result.source == "huggingface"
    assert result.notes[0] == OFFLINE_NOTE
    assert OFFLINE_NOTE == (
        "offline: no network, using the bundled recorded day 2026-03-10 "
        "(sample data, marked so in every digest)"
    )
    assert len(result.notes) == 3  # then why: each source's error, one line each
    assert all("cannot connect" in n and "\n" not in n for n in result.notes[1:])
    recorded = json.loads((HF_DIR / "2026-03-10.json").read_bytes())
    assert [p.id for p in result.papers] == [it["paper"]["id"] for it in recorded]
    assert all(p.listed_on == RECORDED_DAY for p in result.papers)


def test_offline_fallback_is_off_by_default(srv: FixtureServer) -> None:
    assert Config().sources.offline_fallback is False  # an outage never mails stale papers
    cfg = pointed_at(srv.configure(), unused_url(), unused_url())
    results = fetch_all(cfg, DAY, sleep=lambda s: None)
    assert [r.source for r in results] == ["huggingface", "arxiv"]
    assert all(not r.ok and "cannot connect" in r.error for r in results)
    assert all(r.requests == 3 for r in results)  # retried: 1 + 2 retries


def test_http_errors_are_not_offline(srv: FixtureServer) -> None:
    # HF unreachable but arXiv answers 500: the network is there, a server is unhappy.
    srv.fail_next(10, status=500)
    cfg = pointed_at(srv.configure(offline_fallback=True), unused_url(), srv.url)
    results = fetch_all(cfg, DAY, sleep=lambda s: None)
    assert [r.source for r in results] == ["huggingface", "arxiv"]
    assert not any(r.ok for r in results)
    assert not any(OFFLINE_NOTE in r.notes for r in results)


def test_unreachable_stops_the_source_after_the_first_day(srv: FixtureServer) -> None:
    cfg = pointed_at(srv.configure(lookback_days=5, categories=()), unused_url(), srv.url)
    cfg = replace(cfg, sources=replace(cfg.sources, offline_fallback=False))
    [result] = fetch_all(cfg, DAY, sleep=lambda s: None)
    assert result.requests == 3  # one day's attempts, not five days' worth


def test_a_crashing_source_is_isolated(srv: FixtureServer, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise KeyError("surprise")

    monkeypatch.setattr(hf, "fetch", broken)
    results = fetch_all(srv.configure(), DAY)
    assert results[0].error == "huggingface: unexpected KeyError: 'surprise'"
    assert results[1].ok and len(results[1].papers) == 3


def test_a_given_client_is_used_and_not_closed(srv: FixtureServer) -> None:
    with httpx.Client(trust_env=False) as client:
        results = fetch_all(srv.configure(categories=()), DAY, client=client)
        assert results[0].ok and not client.is_closed
    # The configured User-Agent is sent even on a client made elsewhere.
    assert srv.requests[0].headers["user-agent"] == HttpConfig().user_agent


def test_recorded_day_loads_from_package_data() -> None:
    result = load_recorded(notes=("why",))
    assert result.notes == (OFFLINE_NOTE, "why") and result.requests == 0
    assert len(result.papers) == 28 and result.skipped == 0


def test_client_factory_sets_timeouts_and_user_agent() -> None:
    http = HttpConfig(timeout=7.5, user_agent="digest-test/1 (+mailto:ops@example.org)")
    with make_client(http) as client:
        assert client.timeout == httpx.Timeout(7.5)
        assert client.headers["user-agent"] == http.user_agent
        assert client.follow_redirects


NOW = datetime(2026, 3, 10, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("7", 7.0),
        (" 0 ", 0.0),
        ("Tue, 10 Mar 2026 12:00:30 GMT", 30.0),
        ("Tue, 10 Mar 2026 11:00:00 GMT", 0.0),  # in the past: go now
        ("soon", None),
        ("-5", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after(value: str | None, expected: float | None) -> None:
    assert retry_after_seconds(value, NOW) == expected


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({"ratelimit": '"default";r=0;t=55'}, 55.0),
        ({"ratelimit": '"api";r=0;t=119, "resolvers";r=90;t=5'}, 119.0),
        ({"ratelimit": '"a";r=4;t=5, "b";r=0;t=3'}, 3.0),  # the exhausted policy decides
        ({"ratelimit": '"a";r=4;t=5'}, 5.0),
        ({"ratelimit-reset": "12"}, 12.0),
        ({"ratelimit": "garbage", "ratelimit-reset": "9"}, 9.0),
        ({}, None),
    ],
)
def test_ratelimit_headers(headers: dict[str, str], expected: float | None) -> None:
    assert ratelimit_seconds(httpx.Headers(headers)) == expected


def test_loopback_never_goes_through_an_environment_proxy(srv: FixtureServer, monkeypatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", unused_url())
    monkeypatch.setenv("http_proxy", unused_url())
    [result] = fetch_all(srv.configure(categories=()), DAY)
    assert result.ok and len(result.papers) == 28


def test_an_oversized_answer_is_an_error_not_a_crash(srv: FixtureServer, monkeypatch) -> None:
    from digest.sources import http

    monkeypatch.setattr(http, "MAX_BODY", 10_000)
    [result] = fetch_all(srv.configure(categories=()), DAY, sleep=lambda s: None)
    assert result.error is not None and result.error.endswith("response larger than 10000 bytes")
    assert len(srv.requests) == 1  # not retried


def test_a_host_name_that_does_not_resolve_is_not_retried():
    """No DNS (offline): fail at once and fall back, instead of waiting through backoffs."""
    import socket

    import httpx

    from digest.sources.http import _name_unresolvable, _retryable

    try:
        try:
            raise socket.gaierror(-2, "Name or service not known")
        except socket.gaierror as inner:
            raise httpx.ConnectError("[Errno -2] Name or service not known") from inner
    except httpx.ConnectError as e:
        assert _name_unresolvable(e) and not _retryable(e)
    refused = httpx.ConnectError("[Errno 111] Connection refused")
    assert not _name_unresolvable(refused) and _retryable(refused)
