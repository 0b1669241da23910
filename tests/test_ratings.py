"""Rating links ("More like this" / "Less like this") end to end, on real parts: a real
`digest run` (sources on the local fixture server, mail to a real SMTP server) puts the
links in every card of both sections; the web service (real uvicorn) records a POST to
that very URL, never a GET; forged or altered tokens are refused; the manage page lists
rated papers and undoes a rating."""

from __future__ import annotations

import html as htmllib
import re
from datetime import UTC, date, datetime

import httpx
import pytest
from browser import html_of, text_of
from httpfixture import FixtureServer
from websupport import make_site

from digest import tokens
from digest.errors import TokenError
from digest.models import DOWN, UP, Subscriber
from digest.pipeline import run_daily

NOW = datetime(2026, 1, 6, 9, 0, tzinfo=UTC)
SECRET = "s3cret-for-rating-tokens"
CARD = re.compile(r"<div\b[^>]*\bdata-paper-id=[^>]*>")


# ------------------------------------------------------------------------- tokens


def test_rating_tokens_round_trip_and_bind_subscriber_paper_and_direction() -> None:
    up = tokens.rate_token(SECRET, "sub-id-1", "2601.00001", True)
    down = tokens.rate_token(SECRET, "sub-id-1", "2601.00001", False)
    assert up != down
    assert tokens.read_rate_token(SECRET, up) == ("sub-id-1", "2601.00001", True)
    assert tokens.read_rate_token(SECRET, down) == ("sub-id-1", "2601.00001", False)
    assert "@" not in htmllib.unescape(up)  # it carries the opaque id, never an address
    old_style = tokens.rate_token(SECRET, "sid", "hep-th/9901001", True)
    assert "/" not in old_style and tokens.read_rate_token(SECRET, old_style)[1] == "hep-th/9901001"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # altered signature
        lambda t: ("B" if t[0] != "B" else "C") + t[1:],  # altered payload
        lambda t: t.split(".")[0],  # signature cut off
        lambda t: tokens.sign(SECRET, tokens.MANAGE, "a@x.org"),  # another purpose
        lambda t: tokens.rate_token("another-secret", "sub-id-1", "2601.00001", True),  # forged
        lambda t: "",
        lambda t: "%%%.***",
    ],
)
def test_forged_or_altered_rating_tokens_are_refused(mangle) -> None:
    good = tokens.rate_token(SECRET, "sub-id-1", "2601.00001", True)
    with pytest.raises(TokenError):
        tokens.read_rate_token(SECRET, mangle(good))


@pytest.mark.parametrize("sid", ["AbC-_x0123456789abcdef", "not url.safe/id"])
@pytest.mark.parametrize("pid", ["2601.00001", "hep-th/9901001"])
def test_the_fast_per_subscriber_links_are_the_signed_tokens(sid: str, pid: str) -> None:
    make = tokens.rate_links("https://d.example.org/", SECRET, sid)
    assert make is not None
    for up in (True, False):
        url = make(pid, up)
        assert url == f"https://d.example.org/rate/{tokens.rate_token(SECRET, sid, pid, up)}"
        assert tokens.read_rate_token(SECRET, url.rsplit("/", 1)[1]) == (sid, pid, up)


def test_no_links_for_a_subscriber_without_an_id() -> None:
    assert tokens.rate_links("http://x", SECRET, "") is None
    make = tokens.rate_links("http://x/", SECRET, "sid")
    assert make is not None and make("2601.00001", True).startswith("http://x/rate/")


# ------------------------------------------------------------------ mail -> web


def _rate_links(card_html: str) -> dict[str, str]:
    return {
        d: htmllib.unescape(u)
        for d, u in re.findall(r'<a[^>]*data-rate="(up|down)"[^>]*href="([^"]+)"', card_html)
    } | {
        d: htmllib.unescape(u)
        for u, d in re.findall(r'<a[^>]*href="([^"]+)"[^>]*data-rate="(up|down)"', card_html)
    }


def cards(html: str) -> list[tuple[str, str, dict[str, str]]]:
    """(section, paper id, {"up": url, "down": url}) per card of a digest's HTML."""
    starts = [
        (
            m.start(),
            re.search(r'data-section="(\w+)"', m.group(0)).group(1),  # type: ignore[union-attr]
            re.search(r'data-paper-id="([^"]+)"', m.group(0)).group(1),  # type: ignore[union-attr]
        )
        for m in CARD.finditer(html)
    ]
    out = []
    for i, (at, section, pid) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(html)
        out.append((section, pid, _rate_links(html[at:end])))
    return out


def test_every_card_of_a_real_digest_carries_working_rating_links(tmp_path) -> None:
    email = "rater@example.org"
    with FixtureServer() as fx, make_site(tmp_path, now=NOW) as site:
        run_cfg = fx.configure(site.cfg, lookback_days=2, categories=(), offline_fallback=False)
        site.store.put_subscribers([Subscriber(email, ("language model", "reasoning"))])
        sub = site.store.get_subscriber(email)
        assert sub is not None and sub.id
        assert run_daily(run_cfg, date(2026, 1, 6), progress=False).sent == 1
        (msg,) = site.inbox.wait_for(email)
        body = html_of(msg)
        got = cards(body)
        assert {s for s, _, _ in got} == {"match", "trending"}  # both sections
        for section, pid, links in got:
            assert set(links) == {"up", "down"}, (section, pid)
            for up in (True, False):
                assert tokens.read_rate_token(
                    site.ctx.secret, links["up" if up else "down"].rsplit("/", 1)[1]
                ) == (sub.id, pid, up)
            assert links["up"] in text_of(msg) and links["down"] in text_of(msg)

        section, pid, links = got[0]
        with httpx.Client(timeout=30) as c:
            # A GET (what a mail scanner does) shows the one-tap page and records nothing.
            page = c.get(links["up"])
            assert page.status_code == 200 and 'id="rate-btn"' in page.text
            assert site.store.get_subscriber(email).ratings == ()  # type: ignore[union-attr]
            # A POST to that very URL records it, with no cookie or form field.
            r = httpx.post(links["up"], timeout=30)
            assert r.status_code == 200 and 'data-recorded="up"' in r.text
            (rating,) = site.store.get_subscriber(email).ratings  # type: ignore[union-attr]
            assert rating[:3] == (pid, UP, int(NOW.timestamp()))
            assert rating[3]  # the paper's title, for the why-line and the manage page
            # A repeated POST is harmless.
            assert httpx.post(links["up"], timeout=30).status_code == 200
            assert site.store.get_subscriber(email).ratings == (rating,)  # type: ignore[union-attr]
            # The last vote wins.
            assert httpx.post(links["down"], timeout=30).status_code == 200
            (rating,) = site.store.get_subscriber(email).ratings  # type: ignore[union-attr]
            assert rating[:2] == (pid, DOWN)
            # Another paper's vote is kept beside it.
            other = got[-1]
            assert httpx.post(other[2]["up"], timeout=30).status_code == 200
            rated = site.store.get_subscriber(email).ratings  # type: ignore[union-attr]
            assert [(r[0], r[1]) for r in rated] == [(pid, DOWN), (other[1], UP)]


def test_forged_altered_and_unknown_rating_links_change_nothing(tmp_path) -> None:
    with make_site(tmp_path, now=NOW) as site:
        site.add("x@example.org")
        sub = site.store.get_subscriber("x@example.org")
        assert sub is not None
        good = tokens.rate_url(site.url, site.ctx.secret, sub.id, "2601.00001", True)
        forged = tokens.rate_url(site.url, "not-the-secret", sub.id, "2601.00001", True)
        altered = good[:-2] + ("xx" if not good.endswith("xx") else "yy")
        gone = tokens.rate_url(site.url, site.ctx.secret, "no-such-id", "2601.00001", True)
        with httpx.Client(timeout=30) as c:
            for url in (forged, altered):
                for method in ("GET", "POST"):
                    r = c.request(method, url)
                    assert r.status_code == 400 and "Invalid link" in r.text
            assert c.post(gone).status_code == 404
            assert c.post(site.url + "/rate/").status_code in (404, 405)
        assert site.store.get_subscriber("x@example.org").ratings == ()  # type: ignore[union-attr]


def test_manage_page_lists_rated_papers_and_undoes_a_rating(tmp_path) -> None:
    with make_site(tmp_path, now=NOW) as site:
        site.add("m@example.org")
        sub = site.store.get_subscriber("m@example.org")
        assert sub is not None
        for pid, up in (("2601.00001", True), ("2601.00002", False)):
            url = tokens.rate_url(site.url, site.ctx.secret, sub.id, pid, up)
            assert httpx.post(url, timeout=30).status_code == 200
        manage = site.links("m@example.org").manage_url
        with site.client() as c:
            page = c.get(manage)
            assert page.status_code == 200
            assert re.search(r'data-paper-id="2601.00001" data-rated="up"', page.text)
            assert re.search(r'data-paper-id="2601.00002" data-rated="down"', page.text)
            fields = site.form(c, manage)
            r = c.post(manage, data={**fields, "action": "unrate", "paper": "2601.00001"})
            assert r.status_code == 200 and "Rating removed" in r.text
            assert 'data-paper-id="2601.00001"' not in r.text
            # Without the CSRF field the undo is refused.
            r = c.post(manage, data={"action": "unrate", "paper": "2601.00002"})
            assert r.status_code in (400, 403)
        left = site.store.get_subscriber("m@example.org").ratings  # type: ignore[union-attr]
        assert [(r[0], r[1]) for r in left] == [("2601.00002", DOWN)]


# ------------------------------------------------------------------ size of a mail


def test_rating_links_keep_100_papers_under_the_gmail_clip() -> None:
    from test_render import GMAIL_CLIP_BYTES, LINKS, _bulk, _fixture_papers, digest_for

    from digest.models import Pick
    from digest.render import Renderer

    papers = sorted(_fixture_papers(), key=_bulk, reverse=True)[:100]
    picks = tuple(
        Pick(p.id, 1.0, ("continual pretraining", "large language model")) for p in papers
    )
    make = tokens.rate_links("https://digest.example.org", SECRET, "AbCdEfGhIjKlMnOpQrStUv")
    out = Renderer().render(digest_for(picks), {p.id: p for p in papers}, LINKS, make)
    assert len(out.html.encode("utf-8")) < GMAIL_CLIP_BYTES
    got = cards(out.html)
    # Two links of ~85 bytes per paper: 100 of the bulkiest papers no longer all fit in the
    # HTML part. It shows the best that fit, each with its links, and points to the rest;
    # the text part keeps every paper and its links.
    assert 75 <= len(got) <= 100 and all(set(links) == {"up", "down"} for _, _, links in got)
    if len(got) < 100:
        assert f"…and {100 - len(got)} more papers" in out.html
    assert out.text.count("/rate/") == 200
    # A typical digest (up to 30 papers) keeps them all, with their links.
    few = Renderer().render(digest_for(picks[:30]), {p.id: p for p in papers}, LINKS, make)
    assert len(cards(few.html)) == 30 and len(few.html.encode("utf-8")) < GMAIL_CLIP_BYTES


def test_a_first_rating_up_changes_the_next_digest(tmp_path) -> None:
    """Two readers with the same keyword get the same day-6 digest; one of them POSTs the
    mail's "More like this" for its paper. Their next digests differ: the reader who rated
    gets the paper's close neighbour (VINO, like NextFlow: unified visual generation), which
    shares no keyword with them, with the why-line naming the rated paper; the other does
    not. One rating is enough: it counts like an example (learn.rated_shift)."""
    rater, other = "first@example.org", "same@example.org"
    liked, neighbour = "2601.02204", "2601.02358"  # NextFlow, VINO (both listed on day 6)
    with FixtureServer() as fx, make_site(tmp_path, now=NOW) as site:
        run_cfg = fx.configure(site.cfg, lookback_days=2, categories=(), offline_fallback=False)
        subs = [Subscriber(e, ("NextFlow",), max_papers=1, trending=0) for e in (rater, other)]
        site.store.put_subscribers(subs)
        assert run_daily(run_cfg, date(2026, 1, 6), progress=False).sent == 2
        first = {e: cards(html_of(site.inbox.wait_for(e)[0])) for e in (rater, other)}
        assert [(s, p) for s, p, _ in first[rater]] == [("match", liked)]
        assert [p for _, p, _ in first[other]] == [liked]
        assert httpx.post(first[rater][0][2]["up"], timeout=30).status_code == 200
        assert run_daily(run_cfg, date(2026, 1, 7), progress=False).sent >= 1
        mine = html_of(site.inbox.wait_for(rater)[-1])
        assert ("match", neighbour) in [(s, p) for s, p, _ in cards(mine)]
        assert "that you rated up" in htmllib.unescape(mine) and "NextFlow" in mine
        theirs = site.inbox.wait_for(other)
        if len(theirs) > 1:  # nothing for them on day 7 is fine too; never the neighbour
            assert neighbour not in [p for _, p, _ in cards(html_of(theirs[-1]))]
