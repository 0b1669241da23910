"""§4 abuse limits: X-Forwarded-For is believed only from [web] trusted_proxies (none by
default); the per-address limit counts "victim+N@" and "VICTIM@" as victim@; limits live
in the store (they survive a restart and are shared by processes); a form is good for one
post; pending subscriptions expire (a new request replaces an expired one) and the web
service prunes them itself."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from browser import free_port, hidden
from starlette.testclient import TestClient
from test_web_durability import Web
from websupport import RELAXED, make_site

from digest.config import Limit
from digest.models import PENDING, Subscriber
from digest.store import open_store
from digest.web.app import make_app
from digest.web.pages import limit_key


def test_limit_key_folds_case_and_plus_tags():
    assert limit_key("Victim+17@Example.org") == "victim@example.org"
    assert limit_key("victim@example.org") == "victim@example.org"
    assert limit_key("+only@example.org") == "+only@example.org"


def test_plus_tags_and_case_share_one_address_budget(tmp_path):
    with make_site(tmp_path, settings=replace(RELAXED, rate_email=Limit(2, 3600))) as site:
        with site.client() as c:
            assert site.subscribe(c, "victim@example.org").status_code == 200
            assert site.subscribe(c, "victim+1@example.org").status_code == 200
            r = site.subscribe(c, "VICTIM+2@example.org")
            assert r.status_code == 429 and "Too many" in r.text
            assert site.subscribe(c, "other@example.org").status_code == 200
        site.drain()
        assert (
            site.inbox.to("VICTIM+2@example.org") == []
            and site.status("victim+2@example.org") is None
        )


def test_a_form_is_good_for_one_post(tmp_path):
    with make_site(tmp_path) as site:
        with site.client() as c:
            fields = site.form(c)
            data = {**fields, "email": "once@example.org", "keywords": "agents", "website": ""}
            assert "Check your inbox" in c.post("/", data={**data, "action": "subscribe"}).text
            again = c.post("/", data={**data, "email": "twice@example.org", "action": "subscribe"})
        assert again.status_code == 400 and "already sent" in again.text
        site.drain()
        assert site.status("twice@example.org") is None and site.inbox.to("twice@example.org") == []


def test_limits_are_shared_by_two_processes_on_one_store(tmp_path):
    """Two apps, each with its own store object on the same folder (two processes'
    view): a limit reached through one holds in the other."""
    settings = replace(RELAXED, rate_ip=Limit(2, 3600))
    with make_site(tmp_path, settings=settings) as site:
        with site.client() as c:
            assert site.subscribe(c, "a@example.org").status_code == 200
            assert site.subscribe(c, "b@example.org").status_code == 200
        other_store = open_store(site.cfg.store)
        try:
            app = make_app(site.cfg, store=other_store, settings=settings)
            with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 5000)) as c2:
                page = c2.get("/")
                r = c2.post(
                    "/",
                    data={
                        "csrf": hidden(page.text, "csrf"),
                        "t": hidden(page.text, "t"),
                        "email": "c@example.org",
                        "action": "subscribe",
                    },
                )
            assert r.status_code == 429
        finally:
            other_store.close()


def test_forwarded_for_is_ignored_by_default_and_limits_survive_a_restart(tmp_path):
    """A real `digest web` with no trusted proxies: rotating X-Forwarded-For gets no
    fresh budget (it sent 60 mails to one victim before), and a restart does not reset
    the count (limits lived in memory before)."""
    web = Web(tmp_path, free_port(), free_port())
    web.extra_env = {"DIGEST_WEB_RATE_IP": "2/3600"}

    def post(xff: str) -> int:
        with httpx.Client(base_url=web.url, timeout=30) as c:
            page = c.get("/")
            return c.post(
                "/",
                headers={"X-Forwarded-For": xff},
                data={
                    "csrf": hidden(page.text, "csrf"),
                    "t": hidden(page.text, "t"),
                    "email": f"v{xff.replace('.', '')}@example.org",
                    "action": "subscribe",
                },
            ).status_code

    web.start()
    try:
        assert post("203.0.113.1") == 200
    finally:
        web.stop()
    web.start()  # a restart: the count is in the store
    try:
        assert post("203.0.113.2") == 200
        assert post("203.0.113.3") == 429  # a third "client" is still this one peer
    finally:
        web.stop()


def test_an_expired_pending_subscription_is_replaced_and_the_web_prunes_old_ones(tmp_path):
    now = datetime(2026, 1, 6, 9, 0, tzinfo=UTC)
    with make_site(tmp_path, now=now) as site:
        old = (now - timedelta(days=8)).isoformat(timespec="seconds")
        site.store.put_subscribers(
            [
                Subscriber("stale@example.org", ("old",), status=PENDING, created=old),
                Subscriber("gone@example.org", ("old",), status=PENDING, created=old),
            ]
        )
        with site.client() as c:
            assert site.subscribe(c, "stale@example.org", "fresh").status_code == 200
        site.drain()
        sub = site.store.get_subscriber("stale@example.org")
        assert sub is not None and sub.status == PENDING and sub.keywords == ("fresh",)
        assert sub.created == now.isoformat(timespec="seconds")
        # the mail worker's housekeeping prunes what expired (injected clock: now)
        site.ctx.mailer.clock = lambda: now
        site.ctx.mailer._pruned = None
        assert site.ctx.mailer.maybe_prune()
        assert site.store.get_subscriber("gone@example.org") is None
        assert site.store.get_subscriber("stale@example.org") is not None


@pytest.mark.parametrize("value", ["10.0.0.1", "10.0.0.0/8, ::1", "*"])
def test_trusted_proxies_accepts_addresses_and_networks(value):
    from digest.config import parse_config

    cfg = parse_config({"web": {"trusted_proxies": value}}, "t.toml")
    assert cfg.web.trusted_proxies == ",".join(x.strip() for x in value.split(","))


def test_trusted_proxies_refuses_a_bad_entry_in_one_line():
    from digest.config import parse_config
    from digest.errors import ConfigError

    with pytest.raises(ConfigError, match="trusted_proxies") as e:
        parse_config({"web": {"trusted_proxies": "10.0.0.1, proxy.local"}}, "t.toml")
    assert "\n" not in str(e.value)
