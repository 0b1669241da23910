"""Issue 9 section 4 (tokens) and section 3 (re-subscribing), against the real service:
uvicorn, a TinyDB store in tmp_path, a real SMTP server, a real `run_daily` digest.

- Links reveal nothing: every token in a real digest (HTML, text, List-Unsubscribe) and in
  the web service's mails carries the random subscriber id, never the address; so does the
  feed's self link.
- Manage links expire ([web] manage_days); unsubscribe and feed links keep working.
- Old-format tokens (the address itself) still unsubscribe; anywhere else a plain page.
- Re-subscribing a pending address changes nothing until a link is clicked; a link that
  brings back an unsubscribed address works once.
"""

from __future__ import annotations

import base64
import re
import time
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from browser import hidden, html_of, link_in, text_of
from httpfixture import FixtureServer
from itsdangerous import URLSafeTimedSerializer
from websupport import RELAXED, make_site

from digest.models import ACTIVE, PENDING, UNSUBSCRIBED
from digest.pipeline import run_daily
from digest.web.security import Limit

NOW = datetime(2026, 1, 6, 9, 0, tzinfo=UTC)
URL = re.compile(rb"https?://127\.0\.0\.1:\d+/(?:unsubscribe|manage|feed|confirm)/[A-Za-z0-9_\-.]+")


@pytest.fixture
def site(tmp_path):
    with make_site(tmp_path) as s:
        yield s


def readable(token: str) -> bytes:
    """What a token's holder can decode without the secret: its payload (the first part;
    then come the timestamp and the HMAC, random-looking bytes)."""
    part = token.removesuffix(".atom").split(".")[0]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def assert_reveals_nothing(urls: list[bytes], email: str) -> None:
    assert urls
    local = email.split("@")[0].encode()
    for url in urls:
        payload = readable(url.rsplit(b"/", 1)[1].decode())
        assert b"@" not in payload and local not in payload, url
        assert email.encode() not in url and local not in url, url


def test_every_link_in_a_real_digest_and_the_feed_reveals_no_address(tmp_path):
    email = "ann.reader@example.org"
    with FixtureServer() as fx, make_site(tmp_path, now=NOW) as site:
        run_cfg = fx.configure(site.cfg, lookback_days=2, categories=(), offline_fallback=False)
        site.add(email, keywords=("language model", "reasoning"), max_papers=5)
        sid = site.sub(email).id
        assert run_daily(run_cfg, date(2026, 1, 6), progress=False).sent == 1
        (raw,) = [m for m in site.inbox.server.messages if email in m.rcpt_tos]
        msg = raw.message
        everything = f"{html_of(msg)}\n{text_of(msg)}\n{msg['List-Unsubscribe']}".encode()
        urls = URL.findall(everything)
        assert len({u.split(b"/")[3] for u in urls}) == 3  # unsubscribe, manage, feed
        assert_reveals_nothing(urls, email)
        assert sid.encode() in readable(urls[0].rsplit(b"/", 1)[1].decode())
        assert email not in msg["List-Unsubscribe"]

        feed_url = next(u for u in urls if b"/feed/" in u).decode()
        r = site.client().get(feed_url)
        assert r.status_code == 200 and "<entry>" in r.text
        assert email not in r.text and "ann.reader" not in r.text
        self_link = re.search(r'<link[^>]*rel="self"[^>]*href="([^"]+)"', r.text)
        if self_link is None:
            self_link = re.search(r'<link[^>]*href="([^"]+)"[^>]*rel="self"', r.text)
        assert self_link is not None
        assert_reveals_nothing([self_link.group(1).encode()], email)

        # the web service's own mails: the confirmation of a new address
        with site.client() as c:
            assert site.subscribe(c, "new.one@example.org", "agents").status_code == 200
        site.drain()
        (conf,) = site.inbox.wait_for("new.one@example.org")
        assert_reveals_nothing([link_in(conf, "confirm").encode()], "new.one@example.org")


def test_manage_links_expire_but_unsubscribe_and_feed_links_keep_working(site):
    site.add("m@example.org", keywords=("agents",))
    lk = site.links("m@example.org")
    days = site.ctx.settings.manage_days
    with site.client() as c:
        site.ctx.token_clock = lambda: time.time() + (days - 1) * 86400
        assert c.get(lk.manage_url).status_code == 200  # still within manage_days
        site.ctx.token_clock = lambda: time.time() + (days + 1) * 86400
        r = c.get(lk.manage_url)
        assert r.status_code == 410 and "expired" in r.text
        assert f"{days} days" in r.text and "Nothing was changed" in r.text
        csrf = site.form(c)["csrf"]
        r = c.post(lk.manage_url, data={"csrf": csrf, "action": "pause"})
        assert r.status_code == 410 and site.status("m@example.org") == ACTIVE
        # A year-old mail still unsubscribes (RFC 8058) and its feed still reads.
        site.ctx.token_clock = lambda: time.time() + 400 * 86400
        assert c.get(lk.feed_url).status_code == 200
        r = c.post(lk.unsubscribe_url, data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200 and site.status("m@example.org") == UNSUBSCRIBED


def test_old_format_tokens_still_unsubscribe_and_get_a_plain_page_elsewhere(site):
    site.add("legacy@example.org")
    secret = site.ctx.secret

    def old(purpose: str) -> str:  # the format of mails sent before opaque ids
        return str(URLSafeTimedSerializer(secret, salt=purpose).dumps("legacy@example.org"))

    with site.client() as c:
        for path in (f"/manage/{old('manage')}", f"/feed/{old('feed')}.atom"):
            r = c.get(path)
            assert r.status_code == 400 and "older e-mail" in r.text, path
        r = c.post(f"/confirm/{old('confirm')}", data={"csrf": site.form(c)["csrf"]})
        assert r.status_code == 400 and "older e-mail" in r.text
        assert site.status("legacy@example.org") == ACTIVE
        unsub = f"/unsubscribe/{old('unsubscribe')}"
        assert c.get(unsub).status_code == 200 and site.status("legacy@example.org") == ACTIVE
        r = c.post(unsub, data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200 and site.status("legacy@example.org") == UNSUBSCRIBED


def test_a_stranger_resubscribing_a_pending_address_changes_nothing(site):
    # Issue 9 section 3: it replaced the pending keywords with the stranger's.
    with site.client() as c:
        assert site.subscribe(c, "ada@example.org", "reasoning", "7").status_code == 200
    with site.client() as stranger:
        assert (
            site.subscribe(stranger, "ADA@example.org", "casino, crypto", "50").status_code == 200
        )
    site.drain()
    sub = site.sub("ada@example.org")
    assert (sub.status, sub.keywords, sub.max_papers) == (PENDING, ("reasoning",), 7)
    first, second = site.inbox.wait_for("ada@example.org", 2)
    mine, theirs = link_in(first, "confirm"), link_in(second, "confirm")
    with site.client() as c:
        page = c.get(theirs)  # the page says what this link would set
        assert "casino, crypto" in page.text and "50" in page.text
        assert site.sub("ada@example.org").keywords == ("reasoning",)
        page = c.get(mine)
        assert c.post(mine, data={"csrf": hidden(page.text, "csrf")}).status_code == 200
        sub = site.sub("ada@example.org")
        assert (sub.status, sub.keywords, sub.max_papers) == (ACTIVE, ("reasoning",), 7)
        r = c.post(theirs, data={"csrf": hidden(page.text, "csrf")})
        assert r.status_code == 200 and "Already confirmed" in r.text
    assert site.sub("ada@example.org").keywords == ("reasoning",)


def test_a_link_that_brings_back_an_unsubscribed_address_works_once(site):
    site.add("again@example.org", keywords=("old",), status=UNSUBSCRIBED)
    with site.client() as c:
        assert site.subscribe(c, "again@example.org", "agents").status_code == 200
    site.drain()
    assert site.status("again@example.org") == UNSUBSCRIBED
    url = link_in(site.inbox.wait_for("again@example.org")[0], "confirm")
    with site.client() as c:
        csrf = hidden(c.get(url).text, "csrf")
        assert c.post(url, data={"csrf": csrf}).status_code == 200
        assert site.status("again@example.org") == ACTIVE
        unsub = site.links("again@example.org").unsubscribe_url
        assert c.post(unsub, data={"List-Unsubscribe": "One-Click"}).status_code == 200
        r = c.post(url, data={"csrf": csrf})  # replayed after the second goodbye
    assert r.status_code == 409 and site.status("again@example.org") == UNSUBSCRIBED


def test_a_paused_subscriber_with_an_expired_manage_link_gets_a_fresh_one(site):
    # Paused: no digests, so no fresh links in the mail. The expired page says how to get
    # one, and the front page mails it.
    site.add("p@example.org", keywords=("agents",), status="paused")
    old = site.links("p@example.org").manage_url
    days = site.ctx.settings.manage_days
    site.ctx.token_clock = lambda: time.time() + (days + 1) * 86400
    with site.client() as c:
        r = c.get(old)
        assert r.status_code == 410 and "front page" in r.text
        assert site.subscribe(c, "p@example.org", "anything").status_code == 200
    site.drain()
    fresh = link_in(site.inbox.wait_for("p@example.org")[0], "manage")
    site.ctx.token_clock = lambda: time.time() + 60  # the new link, just mailed
    with site.client() as c:
        page = c.get(fresh)
        assert page.status_code == 200 and "agents" in page.text
        r = c.post(fresh, data={"csrf": hidden(page.text, "csrf"), "action": "resume"})
    assert r.status_code == 200 and site.status("p@example.org") == ACTIVE
    assert site.sub("p@example.org").keywords == ("agents",)


def test_subscribe_again_from_the_manage_page_is_bounded_by_the_address_limit(tmp_path):
    # Each press mails a confirmation link: it counts against the address's budget.
    settings = replace(RELAXED, rate_email=Limit(2, 3600))
    with make_site(tmp_path, settings) as site:
        site.add("u@example.org", status=UNSUBSCRIBED)
        url = site.links("u@example.org").manage_url
        with site.client() as c:
            csrf = site.form(c, url)["csrf"]
            codes = [
                c.post(url, data={"csrf": csrf, "action": "resume"}).status_code for _ in "abc"
            ]
        assert codes == [200, 200, 429]
        site.drain()
        site.inbox.wait_for("u@example.org", 2)
        assert len(site.inbox.to("u@example.org")) == 2  # the refused press mailed nothing
        assert site.status("u@example.org") == UNSUBSCRIBED
