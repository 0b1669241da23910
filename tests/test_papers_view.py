""" "View in browser": every digest mail links to its own web copy (/view/<token>), an
opaque per-digest link that shows what was mailed. Over HTTP against the real app under
uvicorn, a real TinyDB store, and `run_daily` delivering to a real SMTP server."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from browser import html_of, text_of
from httpfixture import FixtureServer
from websupport import make_site, paper

from digest import tokens
from digest.errors import TokenError
from digest.models import (
    MATCH,
    SENT,
    TRENDING,
    DeliveryRecord,
    Digest,
    Pick,
    RunReport,
    Subscriber,
    digest_id,
)
from digest.pipeline import run_daily
from digest.render import Renderer
from digest.web.view import record_picks

NOW = datetime(2026, 1, 6, 9, 0, tzinfo=UTC)
DAY = date(2026, 1, 6)
VIEW_LINK = re.compile(r"https?://\S+/view/[A-Za-z0-9._-]+")


def sections_in(page: str) -> list[tuple[str, str]]:
    pairs = re.findall(r"<div[^>]*data-paper-id[^>]*>", page)
    out = []
    for tag in pairs:
        pid = re.search(r'data-paper-id="([^"]+)"', tag).group(1)
        sec = re.search(r'data-section="([^"]+)"', tag).group(1)
        out.append((pid, sec))
    return out


def test_view_tokens_name_a_digest_never_an_address():
    sid = "Zr3x_9QwErTyUiOp-AsDfG"  # a Subscriber.id: 128 random bits, URL-safe
    url = tokens.view_url("https://papers.example.org/", "s" * 32, sid, DAY)
    assert url.startswith("https://papers.example.org/view/")
    token = url.rsplit("/", 1)[1]
    assert digest_id("ada@example.org", DAY) not in token  # not even the address's hash
    assert tokens.verify_view("s" * 32, token) == (sid, DAY)
    other_day = tokens.sign_view("s" * 32, sid, DAY - timedelta(days=1))
    assert other_day != token and tokens.verify_view("s" * 32, other_day)[1] != DAY
    for bad in (
        "",
        "x" * 2000,
        "not-a-token",
        tokens.sign("s" * 32, tokens.MANAGE, sid),
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),  # altered signature
        token.replace(DAY.isoformat(), "2026-01-07", 1),  # altered day
    ):
        with pytest.raises(TokenError):
            tokens.verify_view("s" * 32, bad)
    with pytest.raises(TokenError):  # another site's secret
        tokens.verify_view("t" * 32, token)
    with pytest.raises(TokenError):  # a subscriber the store never gave an id
        tokens.view_url("https://papers.example.org/", "s" * 32, "", DAY)


def test_record_picks_keep_the_mailed_order_and_sections():
    rec = DeliveryRecord(
        "d",
        "a@b.org",
        DAY,
        SENT,
        ("p1", "p2", "p3"),
        sections=(MATCH, TRENDING, MATCH),
        matched=(("x",), (), ("y", "z")),
    )
    picks = record_picks(rec)
    assert [(p.paper_id, p.section, p.matched) for p in picks] == [
        ("p1", MATCH, ("x",)),
        ("p2", TRENDING, ()),
        ("p3", MATCH, ("y", "z")),
    ]
    old = DeliveryRecord("d", "a@b.org", DAY, SENT, ("p1", "p2"))  # before sections existed
    assert [(p.section, p.matched) for p in record_picks(old)] == [(MATCH, ()), (MATCH, ())]


def test_the_web_copy_shows_the_record_and_refuses_bad_links(tmp_path):
    email = "reader@example.org"
    papers = [
        paper(
            "2601.00001", "Speech recognition on device", "Speech recognition, small.", upvotes=4
        ),
        paper("2601.00003", "World models", "A world model.", upvotes=50),
    ]
    with make_site(tmp_path, now=NOW) as site:
        site.store.record_seen(papers, DAY)
        site.add(email, keywords=("speech recognition",))
        rec = DeliveryRecord(
            digest_id(email, DAY),
            email,
            DAY,
            SENT,
            ("2601.00001", "2601.00003"),
            sections=(MATCH, TRENDING),
            matched=(("speech recognition",), ()),
        )
        with site.store.run(DAY, RunReport(day=DAY)) as run:
            run.record(rec)
            run.record(
                DeliveryRecord(digest_id("b@example.org", DAY), "b@example.org", DAY, "failed")
            )
        secret = site.ctx.secret
        sid = site.store.get_subscriber(email).id
        site.add("b@example.org", keywords=())
        bob = site.store.get_subscriber("b@example.org").id
        with site.client() as c:
            r = c.get(f"/view/{tokens.sign_view(secret, sid, DAY)}")
            assert r.status_code == 200
            assert sections_in(r.text) == [("2601.00001", MATCH), ("2601.00003", TRENDING)]
            assert "matched: speech recognition" in r.text
            assert email not in r.text  # the copy names nobody, has no personal links
            assert "/unsubscribe/" not in r.text and "/manage/" not in r.text
            assert "data-rate=" not in r.text and "/rate/" not in r.text  # nor votes
            assert "View in browser" not in r.text and "web copy" in r.text
            assert "script-src" not in r.headers["content-security-policy"]
            assert r.headers["cache-control"] == "private, no-store"
            bad = [
                ("/view/" + tokens.sign_view("another-secret-entirely-32-bytes!", sid, DAY), 400),
                ("/view/" + tokens.sign(secret, tokens.MANAGE, sid), 400),
                ("/view/garbage", 400),
                ("/view/" + tokens.sign_view(secret, sid, DAY - timedelta(1)), 404),  # no digest
                ("/view/" + tokens.sign_view(secret, bob, DAY), 404),  # not sent (failed)
                ("/view/" + tokens.sign_view(secret, "unknown-subscriber-id1", DAY), 404),
            ]
            for path, status in bad:
                got = c.get(path)
                assert got.status_code == status, path
                assert "Traceback" not in got.text and "<h1>" in got.text
            site.store.remove_subscriber(email)
            gone = c.get(f"/view/{tokens.sign_view(secret, sid, DAY)}")
            assert gone.status_code == 404


def test_every_mailed_digest_links_to_its_own_copy(tmp_path):
    """run_daily mails two subscribers through a real SMTP server; each mail's "View in
    browser" link (HTML and text) opens that very digest, papers in the order mailed."""
    with FixtureServer() as fx, make_site(tmp_path, now=NOW) as site:
        cfg = fx.configure(site.cfg, lookback_days=2, categories=(), offline_fallback=False)
        site.add("ada@example.org", keywords=("language model",), max_papers=3)
        site.add("bob@example.org", keywords=(), max_papers=2)
        assert run_daily(cfg, DAY, progress=False).sent == 2
        urls = set()
        for email in ("ada@example.org", "bob@example.org"):
            (msg,) = site.inbox.wait_for(email)
            html, text = html_of(msg), text_of(msg)
            (link,) = set(VIEW_LINK.findall(text))
            assert link in html and "View in browser" in html
            assert email not in link
            urls.add(link)
            r = httpx.get(link, timeout=30)
            assert r.status_code == 200
            mailed = sections_in(html)
            assert mailed and sections_in(r.text) == mailed
        assert len(urls) == 2  # per digest


def test_the_renderer_puts_the_view_link_first_and_strips_the_web_copy():
    p = paper("2601.00001", "Speech recognition on device", "Speech recognition, small.")
    sub = Subscriber(email="ada@example.org", keywords=("speech recognition",))
    d = Digest(sub, DAY, (Pick(p.id, 80.0, ("speech recognition",), MATCH),))
    links = tokens.links("https://x.org", "s" * 32, "sid-of-ada-0123456789")
    url = tokens.view_url("https://x.org", "s" * 32, "sid-of-ada-0123456789", DAY)
    r = Renderer()
    mail = r.render(d, {p.id: p}, links, view_url=url)
    assert mail.html.count(url) == 1 and mail.html.index(url) < mail.html.index("data-paper-id")
    assert mail.text.startswith(f"View in browser: {url}\n")
    plain = r.render(d, {p.id: p}, links)  # preview, send-test: no record, no link
    assert "View in browser" not in plain.html and "View in browser" not in plain.text
    copy = r.render(d, {p.id: p}, links, web_copy=True)
    assert sub.email not in copy.html and links.unsubscribe_url not in copy.html
    assert links.manage_url not in copy.html and "web copy" in copy.html
    assert sections_in(copy.html) == sections_in(mail.html) == [(p.id, MATCH)]
