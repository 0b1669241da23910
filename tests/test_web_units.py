"""Unit tests of the web service's pure parts: CSRF and form-timestamp signing, the
sliding-window limiter, settings from the environment, the Atom builder, the notice
builder, and the background queue / send retry (with a fake Sender)."""

from __future__ import annotations

import email
import email.policy
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime

import pytest

from digest.errors import ConfigError
from digest.models import SENT, Paper
from digest.web.feed import build_atom
from digest.web.mails import build_notice
from digest.web.security import BotSuspected, CsrfError, FormGuard, Limit, SlidingWindow
from digest.web.settings import WebSettings

ATOM = "{http://www.w3.org/2005/Atom}"


class Clock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_csrf_token_is_bound_to_the_cookie_and_signed():
    guard = FormGuard("secret")
    token = guard.csrf_token("cookie-value-1234567890")
    guard.check_csrf("cookie-value-1234567890", token)
    with pytest.raises(CsrfError, match="does not match"):
        guard.check_csrf("another-cookie-1234567890", token)
    with pytest.raises(CsrfError, match="invalid"):
        FormGuard("other secret").check_csrf("cookie-value-1234567890", token)
    with pytest.raises(CsrfError, match="cookie"):
        guard.check_csrf(None, token)
    with pytest.raises(CsrfError, match="missing"):
        guard.check_csrf("cookie-value-1234567890", "")


def test_form_timestamp_enforces_a_minimum_fill_time():
    clock = Clock()
    guard = FormGuard("secret", clock=clock)
    started = guard.started_token()
    with pytest.raises(BotSuspected, match="faster than a person"):
        guard.check_started(started, 2.0)
    clock.t += 2.5
    nonce = guard.check_started(started, 2.0)  # the form's single-use nonce
    assert len(nonce) >= 16 and nonce != guard.check_started(guard.started_token(), 0.0)
    with pytest.raises(BotSuspected):
        guard.check_started(started[:-2] + "xx", 2.0)
    with pytest.raises(BotSuspected):
        guard.check_started("", 2.0)


def test_sliding_window_allows_count_per_window_and_slides():
    clock = Clock(0.0)
    win = SlidingWindow(Limit(2, 10), clock=clock)
    assert win.hit("a") is None and win.hit("a") is None
    assert win.hit("a") == pytest.approx(10.0)
    assert win.hit("b") is None  # keys are independent
    clock.t = 5.0
    assert win.hit("a") == pytest.approx(5.0)  # refused hits do not count
    clock.t = 10.0
    assert win.hit("a") is None  # the first two have left the window


def test_sliding_window_memory_is_bounded():
    clock = Clock(0.0)
    win = SlidingWindow(Limit(1, 10), clock=clock)
    win.MAX_KEYS = 50
    for i in range(500):
        clock.t = float(i)
        win.hit(f"ip{i}")
    assert len(win._hits) <= 50


@pytest.mark.parametrize("text", ["", "5", "a/b", "0/60", "5/0", "5/-1"])
def test_limit_parse_rejects_bad_values_in_one_line(text):
    with pytest.raises(ValueError, match="rate limit"):
        Limit.parse(text)


def test_settings_from_the_config_file_with_environment_overrides():
    from dataclasses import replace

    from digest.config import WebConfig, parse_config

    web = parse_config(
        {
            "web": {
                "rate_ip": "30/600",
                "rate_email": "2/86400",
                "min_fill_seconds": 0.5,
                "max_body": 4096,
                "preview_days": 3,
                "forwarded_allow_ips": "10.0.0.9",
            }
        },
        "test.toml",
    ).web
    s = WebSettings.from_config(web, {})
    assert (s.rate_ip, s.rate_email, s.rate_preview) == (
        Limit(30, 600),
        Limit(2, 86400),
        Limit(120, 60),
    )
    assert (s.min_fill_seconds, s.max_body, s.preview_days) == (0.5, 4096, 3)
    assert s.forwarded_allow_ips == "10.0.0.9"
    over = WebSettings.from_config(web, {"DIGEST_WEB_RATE_IP": "5/60"})  # the env wins
    assert over == replace(s, rate_ip=Limit(5, 60))
    assert WebSettings.from_config(WebConfig(), {}) == WebSettings()  # same defaults


def test_settings_from_env():
    s = WebSettings.from_env(
        {
            "DIGEST_WEB_RATE_IP": "20/60",
            "DIGEST_WEB_MIN_FILL": "1.5",
            "DIGEST_WEB_MAX_BODY": "32768",
            "DIGEST_WEB_FORWARDED_ALLOW_IPS": "10.0.0.2",
        }
    )
    assert s.rate_ip == Limit(20, 60) and s.min_fill_seconds == 1.5
    assert s.max_body == 32768 and s.forwarded_allow_ips == "10.0.0.2"
    assert WebSettings.from_env({}) == WebSettings()
    with pytest.raises(ConfigError, match=r"\$DIGEST_WEB_RATE_EMAIL"):
        WebSettings.from_env({"DIGEST_WEB_RATE_EMAIL": "lots"})
    with pytest.raises(ConfigError, match=r"\$DIGEST_WEB_MIN_FILL"):
        WebSettings.from_env({"DIGEST_WEB_MIN_FILL": "-3"})


def test_atom_is_valid_escapes_everything_and_keeps_only_sent_papers():
    papers = {
        "1": Paper("1", "A & B <i>c</i>\x00\x1b", "abs ]]> <![CDATA[ x", authors=("Q <q>",)),
        "2": Paper("2", "Second", "two"),
        "3": Paper("3", "Failed one", "three"),
    }
    records = [
        {
            "id": "d2",
            "day": "2026-01-07",
            "state": SENT,
            "papers": ["2", "1"],
            "at": "2026-01-07T07:00:05+00:00",
        },
        {"id": "d1", "day": "2026-01-06", "state": SENT, "papers": ["1"], "at": ""},
        {"id": "d0", "day": "2026-01-05", "state": "failed", "papers": ["3"], "at": ""},
    ]
    body = build_atom(
        site_name="Digest <&>",
        feed_url="http://x/feed/t.atom",
        home_url="http://x/",
        email="me@example.org",
        records=records,
        papers=papers,
    )
    root = ET.fromstring(body)
    assert root.findtext(f"{ATOM}title") == "Digest <&>: your papers"
    assert root.findtext(f"{ATOM}updated") == "2026-01-07T07:00:05+00:00"
    entries = root.findall(f"{ATOM}entry")
    assert [e.findtext(f"{ATOM}title") for e in entries] == ["Second", "A & B <i>c</i>"]
    assert entries[1].findtext(f"{ATOM}summary") == "abs ]]> <![CDATA[ x"
    assert entries[1].find(f"{ATOM}author/{ATOM}name").text == "Q <q>"
    assert b"me@example.org" not in body


def test_atom_of_nothing_sent_is_an_empty_valid_feed():
    body = build_atom(
        site_name="D",
        feed_url="http://x/f",
        home_url="http://x/",
        email="a@b.org",
        records=[],
        papers={},
    )
    root = ET.fromstring(body)
    assert root.findall(f"{ATOM}entry") == [] and root.findtext(f"{ATOM}id")


def test_notice_is_a_well_formed_multipart_mail():
    now = datetime(2026, 1, 6, 9, 0, tzinfo=UTC)
    msg = build_notice(
        kind="confirm",
        to="a@example.org",
        sender="Digest <d@example.org>",
        subject="Confirm",
        text="plain ✓",
        html="<p>html ✓</p>",
        now=now,
    )
    assert b"\r\n" in msg.data and all(len(line) <= 998 for line in msg.data.split(b"\r\n"))
    parsed = email.message_from_bytes(msg.data, policy=email.policy.default)
    assert parsed["To"] == "a@example.org" and parsed["Auto-Submitted"] == "auto-generated"
    assert parsed.get_body(("plain",)).get_content().strip() == "plain ✓"
    assert parsed.get_body(("html",)).get_content().strip() == "<p>html ✓</p>"
    assert msg.message_id.endswith("@example.org>") and msg.digest_id.startswith("web-confirm-")
    with pytest.raises(ValueError):  # header injection is impossible
        build_notice(
            kind="x",
            to="a@example.org\r\nBcc: b@example.org",
            sender="d@e.org",
            subject="s",
            text="t",
            html="h",
            now=now,
        )


class FakeSender:
    name = "fake"

    def __init__(self, failures: list[Exception]):
        self.failures, self.sent = failures, []

    def __enter__(self) -> FakeSender:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def send(self, msg) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(msg)


def _msg():
    return build_notice(
        kind="t",
        to="a@example.org",
        sender="d@example.org",
        subject="s",
        text="t",
        html="h",
        now=datetime(2026, 1, 6, tzinfo=UTC),
    )


def test_feed_day_only_record_gets_midnight_utc():
    body = build_atom(
        site_name="D",
        feed_url="u",
        home_url="h",
        email="a@b.org",
        records=[{"day": date(2026, 1, 5).isoformat(), "state": SENT, "papers": ["9"]}],
        papers={"9": Paper("9", "T", "A")},
    )
    root = ET.fromstring(body)
    assert root.find(f"{ATOM}entry").findtext(f"{ATOM}updated") == "2026-01-05T00:00:00+00:00"
