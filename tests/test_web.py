"""The web service's subscription lifecycle over real HTTP (uvicorn), with the real store
and a real SMTP server: subscribe -> confirm -> manage -> unsubscribe, the feed, health."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from browser import free_port, hidden, link_in, text_of
from websupport import DAY, make_site, paper

from digest import tokens
from digest.models import (
    ACTIVE,
    PAUSED,
    PENDING,
    SENT,
    UNSUBSCRIBED,
    DeliveryRecord,
    RunReport,
    Subscriber,
    digest_id,
)
from digest.web.cli import register

ATOM = "{http://www.w3.org/2005/Atom}"


@pytest.fixture
def site(tmp_path):
    with make_site(tmp_path) as s:
        yield s


def test_subscribe_stores_pending_and_mails_a_confirmation_link(site):
    with site.client() as c:
        r = site.subscribe(c, "Ada@Example.ORG", 'reasoning, "large language model", -survey', "7")
    assert r.status_code == 200 and "Check your inbox" in r.text
    site.drain()
    sub = site.store.get_subscriber("Ada@example.org")
    assert sub is not None and sub.status == PENDING
    assert sub.keywords == ("reasoning", "large language model", "-survey")
    assert sub.max_papers == 7
    (msg,) = site.inbox.wait_for("Ada@example.org")
    assert msg["Subject"] == "Confirm your subscription to Paper Digest"
    assert msg["Auto-Submitted"] == "auto-generated"
    url = link_in(msg, "confirm")
    assert url.startswith(site.url + "/confirm/")

    with site.client() as c:
        page = c.get(url)  # what a mail scanner does: must not confirm
        assert page.status_code == 200 and "confirm-btn" in page.text
        assert site.status("Ada@example.org") == PENDING
        r = c.post(url, data={"csrf": hidden(page.text, "csrf")})
    assert r.status_code == 200 and "You are subscribed" in r.text
    assert site.status("Ada@example.org") == ACTIVE
    sid = site.sub("Ada@example.org").id
    manage = re.search(r'href="([^"]+/manage/[^"]+)"', r.text).group(1)
    feed = re.search(r'href="([^"]+/feed/[^"]+)"', r.text).group(1)
    assert tokens.verify_id(site.ctx.secret, tokens.MANAGE, manage.rsplit("/", 1)[1]) == sid
    assert tokens.verify_id(site.ctx.secret, tokens.FEED, feed.rsplit("/", 1)[1][:-5]) == sid

    with site.client() as c:  # a second click is harmless
        page = c.get(url)
        r = c.post(url, data={"csrf": hidden(page.text, "csrf")})
    assert r.status_code == 200 and "Already confirmed" in r.text


def test_confirm_does_not_revive_an_unsubscribed_address(site):
    # A link mailed while pending, clicked after its owner unsubscribed.
    sid = site.add("gone@example.org", status=UNSUBSCRIBED).id
    url = tokens.confirm_url(site.url, site.ctx.secret, sid, ("agents",), 5)
    with site.client() as c:
        page = c.get(url)  # says so at once: no button that could only fail
        assert page.status_code == 409 and "confirm-btn" not in page.text
        r = c.post(url, data={"csrf": site.form(c)["csrf"]})
    assert r.status_code == 409 and "unsubscribed after the link was sent" in r.text
    assert site.status("gone@example.org") == UNSUBSCRIBED


def test_resubscribing_after_unsubscribe_needs_a_new_confirmation(site):
    # Issue 9 section 3: the request alone must not turn an unsubscribed address pending
    # (nor change its keywords); only the new link, clicked, brings it back.
    site.add("back@example.org", keywords=("old",), status=UNSUBSCRIBED)
    with site.client() as c:
        assert site.subscribe(c, "back@example.org", "agents", "4").status_code == 200
    site.drain()
    sub = site.sub("back@example.org")
    assert sub.status == UNSUBSCRIBED and sub.keywords == ("old",)
    url = link_in(site.inbox.wait_for("back@example.org")[0], "confirm")
    with site.client() as c:
        page = c.get(url)
        assert site.status("back@example.org") == UNSUBSCRIBED  # a GET changes nothing
        r = c.post(url, data={"csrf": hidden(page.text, "csrf")})
    assert r.status_code == 200 and "You are subscribed" in r.text
    sub = site.sub("back@example.org")
    assert (sub.status, sub.keywords, sub.max_papers) == (ACTIVE, ("agents",), 4)


def test_already_subscribed_changes_nothing_and_mails_the_manage_link(site):
    site.add("old@example.org", keywords=("diffusion",), max_papers=3)
    with site.client() as c:
        r = site.subscribe(c, "old@example.org", "something else", "50")
    assert r.status_code == 200
    site.drain()
    sub = site.store.get_subscriber("old@example.org")
    assert sub.status == ACTIVE and sub.keywords == ("diffusion",) and sub.max_papers == 3
    (msg,) = site.inbox.wait_for("old@example.org")
    assert "already subscribed" in msg["Subject"]
    manage = link_in(msg, "manage")
    with site.client() as c:
        assert "diffusion" in c.get(manage).text


def test_unsubscribe_get_changes_nothing_and_one_click_post_needs_no_cookie(site):
    site.add("u@example.org")
    lk = site.links("u@example.org")
    with site.client() as c:
        for _ in range(3):  # link scanners prefetch, sometimes repeatedly
            r = c.get(lk.unsubscribe_url)
            assert r.status_code == 200 and "unsubscribe-btn" in r.text
        assert c.head(lk.unsubscribe_url).status_code == 200
    assert site.status("u@example.org") == ACTIVE
    # RFC 8058: a bare POST with List-Unsubscribe=One-Click, no cookie, no CSRF token.
    r = httpx.post(lk.unsubscribe_url, data={"List-Unsubscribe": "One-Click"}, timeout=30)
    assert r.status_code == 200 and "Unsubscribed" in r.text
    assert site.status("u@example.org") == UNSUBSCRIBED
    # ... also as multipart/form-data, which RFC 8058 allows too; repeating is harmless.
    r = httpx.post(lk.unsubscribe_url, files={"List-Unsubscribe": (None, "One-Click")}, timeout=30)
    assert r.status_code == 200
    assert site.status("u@example.org") == UNSUBSCRIBED


def test_unsubscribe_button_form_works_in_a_browser_session(site):
    site.add("b@example.org")
    url = site.links("b@example.org").unsubscribe_url
    with site.client() as c:
        page = c.get(url)
        r = c.post(
            url,
            data={
                "csrf": hidden(page.text, "csrf"),
                "List-Unsubscribe": hidden(page.text, "List-Unsubscribe"),
            },
        )
    assert r.status_code == 200
    assert site.status("b@example.org") == UNSUBSCRIBED


def test_unsubscribe_post_without_one_click_or_csrf_is_refused(site):
    site.add("c@example.org")
    url = site.links("c@example.org").unsubscribe_url
    r = httpx.post(url, data={"something": "else"}, timeout=30)
    assert r.status_code == 403
    assert site.status("c@example.org") == ACTIVE


def test_manage_save_pause_resume_unsubscribe(site):
    site.add("m@example.org", keywords=("agents",), max_papers=5)
    url = site.links("m@example.org").manage_url
    with site.client() as c:
        page = c.get(url)
        assert page.status_code == 200 and "agents" in page.text
        csrf = hidden(page.text, "csrf")

        def act(action: str, **data: str) -> httpx.Response:
            return c.post(url, data={"csrf": csrf, "action": action, **data})

        r = act("save", keywords='"retrieval, augmented", -survey', max="4")
        assert r.status_code == 200 and "Saved" in r.text
        sub = site.store.get_subscriber("m@example.org")
        assert sub.keywords == ("retrieval, augmented", "-survey") and sub.max_papers == 4
        assert "&#34;retrieval, augmented&#34;" in r.text  # written back re-parseable
        assert act("pause").status_code == 200 and site.status("m@example.org") == PAUSED
        assert "Nothing to change" in act("pause").text
        assert act("resume").status_code == 200 and site.status("m@example.org") == ACTIVE
        r = act("save", keywords="x" * 1200, max="4")
        assert r.status_code == 400 and "too long" in r.text and "keywords:" not in r.text
        assert site.store.get_subscriber("m@example.org").keywords[0] == "retrieval, augmented"
        assert act("save", keywords="agents", max="0").status_code == 400
        assert act("explode").status_code == 400
        assert act("unsubscribe").status_code == 200
        assert site.status("m@example.org") == UNSUBSCRIBED
        # "Subscribe again" after an unsubscribe is a new double opt-in: a confirmation
        # link is mailed and nothing changes until it is clicked.
        r = act("resume")
        assert r.status_code == 200 and "confirmation link" in r.text
        assert site.status("m@example.org") == UNSUBSCRIBED
    site.drain()
    confirm = link_in(site.inbox.wait_for("m@example.org")[0], "confirm")
    with site.client() as c:
        page = c.get(confirm)
        assert c.post(confirm, data={"csrf": hidden(page.text, "csrf")}).status_code == 200
    assert site.status("m@example.org") == ACTIVE


def test_manage_link_of_a_removed_subscriber_is_404(site):
    url = tokens.links(site.url, site.ctx.secret, "no-such-subscriber-id").manage_url
    with site.client() as c:
        assert c.get(url).status_code == 404


def test_feed_lists_the_papers_of_sent_digests_as_valid_atom(site):
    email = "f@example.org"
    site.add(email)
    nasty = paper(
        "2601.00001",
        'Cats & <script>alert("x")</script> dogs\x07',
        "An <b>abstract</b>",
        authors=("A. <Author>",),
    )
    plain = paper("2601.00002", "Plain title")
    unsent = paper("2601.00003", "Never sent")
    site.store.record_seen([nasty, plain, unsent], DAY)
    other_day = DAY + timedelta(days=1)
    with site.store.run(DAY, RunReport(day=DAY)) as run:
        run.record(DeliveryRecord(digest_id(email, DAY), email, DAY, SENT, (nasty.id, plain.id)))
        run.record(
            DeliveryRecord(
                digest_id(email, other_day), email, other_day, "deferred", (unsent.id,), "421"
            )
        )
    url = site.links(email).feed_url
    r = httpx.get(url, timeout=30)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/atom+xml")
    root = ET.fromstring(r.content)  # parses: everything escaped, control chars gone
    assert root.tag == f"{ATOM}feed"
    entries = root.findall(f"{ATOM}entry")
    titles = [e.findtext(f"{ATOM}title") for e in entries]
    assert titles == ['Cats & <script>alert("x")</script> dogs', "Plain title"]
    assert b"<script>" not in r.content
    assert email.encode() not in r.content  # feeds get shared: no address inside
    bad = url.replace("/feed/", "/feed/x")
    assert httpx.get(bad, timeout=30).status_code == 400


def test_healthz(site):
    r = httpx.get(site.url + "/healthz", timeout=30)
    assert r.status_code == 200 and r.text.startswith("ok\n") and "mail queue: 0 waiting" in r.text


def test_unknown_page_is_a_404_page(site):
    r = httpx.get(site.url + "/nope", timeout=30)
    assert r.status_code == 404 and "Not found" in r.text


def test_preview_is_the_products_ranking_over_recent_papers(site):
    from digest.rank import rank

    site.store.record_seen(
        [
            paper(
                "2601.00011", "Reasoning with large language models", "chain of thought reasoning"
            ),
            paper("2601.00012", "Diffusion models for images", "image generation with diffusion"),
            paper("2601.00013", "A survey of reasoning", "a survey of reasoning methods"),
        ],
        DAY,
    )
    r = httpx.get(
        site.url + "/preview", params={"keywords": "reasoning, -survey", "max": "5"}, timeout=30
    )
    assert r.status_code == 200
    since = DAY - timedelta(days=site.ctx.settings.preview_days - 1)
    papers = site.store.recent_papers(since)
    who = Subscriber("p@preview.invalid", ("reasoning", "-survey"), max_papers=5)
    expected = rank(papers, [who], popularity_weight=site.cfg.ranking.popularity_weight)
    titles = {p.id: p.title for p in papers}
    picked = [titles[p.paper_id] for p in expected[who.email]]
    assert picked and "A survey of reasoning" not in picked
    shown = re.findall(r'<p class="title"><a [^>]*>([^<]*)</a>', r.text)
    assert shown == picked  # the same papers, in the ranking's order
    empty = httpx.get(site.url + "/preview", params={"keywords": ""}, timeout=30)
    assert "Type some keywords" in empty.text
    bad = httpx.get(site.url + "/preview", params={"keywords": '"unbalanced'}, timeout=30)
    assert "without a closing one" in bad.text and "keywords:" not in bad.text


def test_the_no_js_preview_button_rerenders_the_page_and_stores_nothing(site):
    site.store.record_seen([paper("2601.00021", "Agents that browse the web")], DAY)
    with site.client() as c:
        r = site.subscribe(c, "pv@example.org", "agents", action="preview")
    assert r.status_code == 200 and "Agents that browse the web" in r.text
    assert 'value="pv@example.org"' in r.text  # the form keeps what was typed
    site.drain()
    assert site.store.get_subscriber("pv@example.org") is None
    assert site.inbox.to("pv@example.org") == []


def test_web_subcommand_is_registered_with_host_and_port():
    p = argparse.ArgumentParser()
    register(p.add_subparsers())
    args = p.parse_args(["web", "--host", "0.0.0.0", "--port", "8123"])
    assert (args.host, args.port) == ("0.0.0.0", 8123) and callable(args.func)


def test_confirmation_mail_text_names_the_keywords(site):
    with site.client() as c:
        site.subscribe(c, "k@example.org", "graph neural networks")
    site.drain()
    assert "graph neural networks" in text_of(site.inbox.wait_for("k@example.org")[0])


def test_a_broken_store_gives_503_health_and_a_500_page_with_security_headers(site):
    from digest.errors import StoreError

    def broken(*a, **k):
        raise StoreError("data/subscribers.json: corrupt store file")

    site.add("z@example.org")
    manage = site.links("z@example.org").manage_url
    site.store.get_subscriber = broken  # the store object the app holds, failing
    site.store.get_subscriber_by_id = broken
    r = httpx.get(site.url + "/healthz", timeout=30)
    assert r.status_code == 503 and "store not" in r.text
    r = httpx.get(manage, timeout=30)
    assert r.status_code == 500 and "Something went wrong" in r.text
    assert "corrupt" not in r.text  # no internals leak to the visitor
    assert (
        r.headers["x-frame-options"] == "DENY" and "nonce-" in r.headers["content-security-policy"]
    )


def test_digest_web_command_serves_and_trusts_only_the_configured_proxy(tmp_path):
    """`digest web` as a real process: /healthz answers, and X-Forwarded-For is believed
    only from DIGEST_WEB_FORWARDED_ALLOW_IPS (the rate limiter keys on the client IP)."""
    port = free_port()
    config = tmp_path / "digest.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "data"}"\n[web]\nport = {port}\n'
        f'base_url = "http://127.0.0.1:{port}"\n',
        encoding="utf-8",
    )
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "DIGEST_WEB_RATE_IP": "1/3600",
        "DIGEST_WEB_MIN_FILL": "0",
        "DIGEST_WEB_FORWARDED_ALLOW_IPS": "127.0.0.1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "digest", "--config", str(config), "web"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=2).text.startswith("ok"):
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "digest web died"
            time.sleep(0.1)

        def attempt(client_ip: str) -> int:
            with httpx.Client(base_url=url, timeout=30) as c:
                page = c.get("/")
                return c.post(
                    "/",
                    headers={"X-Forwarded-For": client_ip},
                    data={
                        "csrf": hidden(page.text, "csrf"),
                        "t": hidden(page.text, "t"),
                        "email": f"p{client_ip.replace('.', '')}@example.org",
                        "keywords": "agents",
                        "action": "subscribe",
                    },
                ).status_code

        # Two different clients behind the (trusted, local) proxy: one allowance each.
        assert attempt("203.0.113.7") == 200
        assert attempt("203.0.113.8") == 200
        assert attempt("203.0.113.7") == 429
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_manage_sets_the_subscribers_own_send_hour_and_time_zone(site):
    site.add("tz@example.org")
    url = site.links("tz@example.org").manage_url
    with site.client() as c:
        csrf = site.form(c, url)["csrf"]

        def save(hour: str, zone: str) -> httpx.Response:
            return c.post(
                url,
                data={
                    "csrf": csrf,
                    "action": "save",
                    "keywords": "agents",
                    "max": "5",
                    "send_hour": hour,
                    "timezone": zone,
                },
            )

        r = save("6", "Europe/Berlin")
        assert r.status_code == 200
        sub = site.store.get_subscriber("tz@example.org")
        assert (sub.send_hour, sub.timezone) == (6, "Europe/Berlin")
        assert '<option value="6" selected>06:00</option>' in r.text
        for hour, zone, message in (
            ("24", "", "whole hour from 0 to 23"),
            ("x", "", "whole hour from 0 to 23"),
            ("6", "Mars/Olympus", "a time zone name like Europe/Berlin"),
            ("6", "../../etc/passwd", "a time zone name like Europe/Berlin"),
        ):
            r = save(hour, zone)
            assert r.status_code == 400 and message in r.text
        sub = site.store.get_subscriber("tz@example.org")
        assert (sub.send_hour, sub.timezone) == (6, "Europe/Berlin")
        assert save("", "").status_code == 200  # back to the site's schedule
        sub = site.store.get_subscriber("tz@example.org")
        assert (sub.send_hour, sub.timezone) == (None, None)
