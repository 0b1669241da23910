"""Abuse and attack tests of the web service over real HTTP: forged/altered/expired tokens,
CSRF, rate limits, the bot check, bad input, XSS escaping, and the "already subscribed"
answer being indistinguishable from a new one."""

from __future__ import annotations

import re
import time
from dataclasses import replace

import httpx
import pytest
from browser import html_of, link_in, mask_tokens
from websupport import RELAXED, make_site

from digest import tokens
from digest.models import ACTIVE, PENDING
from digest.web.security import Limit

XSS = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
XSS_KW = "<script>alert(1)</script><img src=x onerror=alert(2)>"  # no quote: a valid term


@pytest.fixture
def site(tmp_path):
    with make_site(tmp_path) as s:
        yield s


def altered(token: str) -> str:
    i = len(token) // 2
    return token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]


def test_forged_altered_wrong_purpose_and_expired_tokens_get_4xx_and_change_nothing(site):
    email = "t@example.org"
    sid = site.add(email, status=PENDING).id
    good = {p: tokens.sign(site.ctx.secret, p, sid) for p in tokens.PURPOSES}
    good[tokens.CONFIRM] = tokens.confirm_url("", site.ctx.secret, sid, ("a",), 5).rsplit("/")[-1]
    forged = {p: tokens.sign("not-the-secret", p, sid) for p in tokens.PURPOSES}
    paths = {
        tokens.CONFIRM: "/confirm/{}",
        tokens.UNSUBSCRIBE: "/unsubscribe/{}",
        tokens.MANAGE: "/manage/{}",
        tokens.FEED: "/feed/{}.atom",
    }
    wrong = {
        tokens.CONFIRM: good[tokens.MANAGE],
        tokens.UNSUBSCRIBE: good[tokens.MANAGE],
        tokens.MANAGE: good[tokens.UNSUBSCRIBE],
        tokens.FEED: good[tokens.MANAGE],
    }
    with site.client() as c:
        csrf = site.form(c)["csrf"]
        for purpose, path in paths.items():
            for bad in (forged[purpose], altered(good[purpose]), wrong[purpose], "x", "a.b.c"):
                url = path.format(bad)
                assert c.get(url).status_code == 400, (purpose, bad)
                if purpose != tokens.FEED:
                    r = c.post(
                        url,
                        data={
                            "csrf": csrf,
                            "List-Unsubscribe": "One-Click",
                            "action": "unsubscribe",
                        },
                    )
                    assert r.status_code == 400 and "Nothing was changed" in r.text
        site.ctx.token_clock = lambda: time.time() + tokens.CONFIRM_MAX_AGE + 60
        r = c.post(f"/confirm/{good[tokens.CONFIRM]}", data={"csrf": csrf})
        assert r.status_code == 410 and "expired" in r.text and "Nothing was changed" in r.text
    assert site.status(email) == PENDING


def test_csrf_is_required_on_every_form(site):
    site.add("v@example.org")
    manage = site.links("v@example.org").manage_url
    with site.client() as c:
        fields = site.form(c)
        form = {**fields, "email": "new@example.org", "keywords": "agents", "action": "subscribe"}
        # no token / a made-up token / a token signed for another browser's cookie
        for csrf in ("", "forged", _other_browsers_token(site)):
            r = c.post("/", data={**form, "csrf": csrf})
            assert r.status_code == 403 and "Form rejected" in r.text
            assert c.post(manage, data={"csrf": csrf, "action": "pause"}).status_code == 403
    # the right token without the cookie it is bound to (a cross-site post without cookies)
    r = httpx.post(site.url + "/", data=form, timeout=30)
    assert r.status_code == 403 and "cookie" in r.text
    site.drain()
    assert site.store.get_subscriber("new@example.org") is None
    assert site.status("v@example.org") == ACTIVE
    assert site.inbox.messages == []


def _other_browsers_token(site) -> str:
    with site.client() as other:
        return site.form(other)["csrf"]


def test_honeypot_answers_like_success_but_does_nothing(site):
    with site.client() as c:
        r = site.subscribe(c, "bot@example.org", "agents", website="http://spam.example")
    assert r.status_code == 200 and "Check your inbox" in r.text
    site.drain()
    assert site.store.get_subscriber("bot@example.org") is None
    assert site.inbox.messages == []


def test_forms_sent_faster_than_a_human_or_with_a_forged_timestamp_are_refused(tmp_path):
    with make_site(tmp_path, replace(RELAXED, min_fill_seconds=3600)) as site:
        with site.client() as c:
            r = site.subscribe(c, "fast@example.org", "agents")
            assert r.status_code == 400 and "faster than a person" in r.text
            assert 'value="fast@example.org"' in r.text  # what they typed is kept
            r = site.subscribe(c, "fast@example.org", "agents", t="forged")
            assert r.status_code == 400
        site.drain()
        assert site.store.get_subscriber("fast@example.org") is None


def test_rate_limit_per_ip(tmp_path):
    with make_site(tmp_path, replace(RELAXED, rate_ip=Limit(3, 3600))) as site:
        with site.client() as c:
            codes = [
                site.subscribe(c, f"ip{i}@example.org", "agents").status_code for i in range(5)
            ]
            r = site.subscribe(c, "ip9@example.org", "agents")
        assert codes == [200, 200, 200, 429, 429]
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
        assert "Too many" in r.text
        site.drain()
        assert site.store.get_subscriber("ip3@example.org") is None
        assert len(site.inbox.messages) == 3


def test_rate_limit_per_address_protects_an_inbox_from_mail_bombing(tmp_path):
    with make_site(tmp_path, replace(RELAXED, rate_email=Limit(2, 3600))) as site:
        with site.client() as c:
            codes = [
                site.subscribe(c, "victim@example.org", "agents").status_code for _ in range(4)
            ]
            codes.append(site.subscribe(c, "victim@EXAMPLE.org", "x").status_code)
            assert site.subscribe(c, "other@example.org", "agents").status_code == 200
        assert codes == [200, 200, 429, 429, 429]
        site.drain()
        assert len(site.inbox.to("victim@example.org")) == 2


def test_already_subscribed_answer_is_indistinguishable(site):
    site.add("known@example.org")
    answers = []
    for email in ("known@example.org", "fresh@example.org"):
        with site.client() as c:
            r = site.subscribe(c, email, "agents", "5")
            answers.append((r.status_code, mask_tokens(r.text), sorted(r.headers.keys())))
    assert answers[0] == answers[1]
    site.drain()
    assert site.status("known@example.org") == ACTIVE
    assert site.status("fresh@example.org") == PENDING


@pytest.mark.parametrize(
    "email, keywords, message",
    [
        # Issue 9 section 4: plain language on pages, never the CLI's "field: 'value' is ..."
        ("a@example.org", "x" * 1001, "is too long"),
        ("a@example.org", "agents\x00, \x1b[31m", "characters that cannot be used"),
        ("a@example.org", "agents, " + "y" * 90, "is too long"),
        ("a@example.org", '"unbalanced', "without a closing one"),
        ("not-an-address", "agents", "does not look like an e-mail address"),
        ("a@example.org\r\nBcc: x@example.org", "agents", "does not look like an e-mail address"),
        (XSS + "@example.org", "agents", "does not look like an e-mail address"),
        ("", "agents", "Please enter your e-mail address."),
    ],
)
def test_bad_input_gets_a_clear_message_and_stores_nothing(site, email, keywords, message):
    with site.client() as c:
        r = site.subscribe(c, email, keywords, "5")
        assert r.status_code == 400
        err = re.search(r'id="form-error">(.*?)</p>', r.text, re.S)
        assert err and message in err.group(1)
        # no field name, no quoted echo of the value, no CLI jargon
        assert not re.match(r"\s*(email|keywords|max)\s*:", err.group(1)), err.group(1)
        assert "&#39;" not in err.group(1) and "missing" not in err.group(1)
        assert "<script>alert" not in r.text and "<img src=x" not in r.text
        assert site.subscribe(c, "a@example.org", "agents", "1000").status_code == 400
    site.drain()
    assert site.store.subscribers() == []
    assert site.inbox.messages == []


def test_oversized_bodies_get_413(site):
    with site.client() as c:
        fields = site.form(c)
        big = {**fields, "email": "big@example.org", "keywords": "a" * 20_000}
        r = c.post("/", data=big)
        assert r.status_code == 413 and "Too much data" in r.text

        def chunks():  # no Content-Length: the cap must hold while streaming too
            for _ in range(40):
                yield b"keywords=" + b"b" * 1000 + b"&"

        r = c.post(
            "/", content=chunks(), headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert r.status_code == 413
        r = c.post("/", content=b"garbage", headers={"Content-Type": "multipart/form-data"})
        assert r.status_code == 400 and "could not be read" in r.text
        assert c.put("/").status_code == 405
    site.drain()
    assert site.store.subscribers() == []


def test_xss_payloads_are_escaped_on_every_page_and_in_the_mail(site):
    email = "xss@example.org"
    with site.client() as c:
        r = site.subscribe(c, email, f"agents, {XSS_KW}", action="preview")
        assert XSS_KW not in r.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
        r = site.subscribe(c, email, f"agents, {XSS_KW}")
        assert r.status_code == 200
    site.drain()
    stored = site.store.get_subscriber(email)
    assert XSS_KW in stored.keywords  # kept as typed; escaped wherever it is shown
    (msg,) = site.inbox.wait_for(email)
    body = html_of(msg)
    assert XSS_KW not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    links = site.links(email)
    confirm = link_in(msg, "confirm")
    with site.client() as c:
        for url in (confirm, links.manage_url, links.unsubscribe_url):
            page = c.get(url)
            assert page.status_code == 200
            assert "<script>alert" not in page.text and "<img src=x" not in page.text
        csrf = site.form(c, links.manage_url)["csrf"]
        r = c.post(
            links.manage_url, data={"csrf": csrf, "action": "preview", "keywords": XSS, "max": XSS}
        )
        assert "<script>alert" not in r.text and "<img src=x" not in r.text
    r = httpx.get(site.url + "/preview", params={"keywords": XSS}, timeout=30)
    assert "<script>alert" not in r.text and "<img src=x" not in r.text


def test_security_headers_on_pages_errors_and_feed(site):
    site.add("h@example.org")
    feed = site.links("h@example.org").feed_url
    for url in (site.url + "/", site.url + "/nope", site.url + "/confirm/bad", feed):
        r = httpx.get(url, timeout=30)
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["x-content-type-options"] == "nosniff"
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
    r = httpx.get(site.url + "/", timeout=30)
    nonce = re.search(r"script-src 'nonce-([^']+)'", r.headers["content-security-policy"])
    assert nonce and f'<script nonce="{nonce.group(1)}">' in r.text
    assert r.text.count("<script") == 1  # the preview script, and nothing else
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
