"""The two sections of a digest ("For you", "Trending today") through the real parts:
`digest run` on recorded days into a real SMTP server, read back from the mails'
data-paper-id / data-section markers; the per-subscriber settings from the CLI and the
manage page; the Atom feed; the plan stage's no-match choice."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import replace
from datetime import date, timedelta
from html.parser import HTMLParser

import httpx
import pytest
from httpfixture import FixtureServer
from smtpserver import SmtpServer

from digest.cli import main
from digest.config import Config, DigestConfig, SmtpConfig, StoreConfig
from digest.models import (
    MATCH,
    NO_MATCH_SKIP,
    SENT,
    TRENDING,
    Paper,
    Pick,
    Subscriber,
    digest_id,
)
from digest.pipeline import digest_of, run_daily
from digest.store import open_store
from digest.subscribers import parse_keywords
from digest.web.feed import build_atom

ATOM = "{http://www.w3.org/2005/Atom}"
DAY = date(2026, 1, 6)


class Cards(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cards: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("data-paper-id"):
            self.cards.append((a["data-paper-id"] or "", a.get("data-section") or ""))


def cards(msg) -> list[tuple[str, str]]:
    c = Cards()
    c.feed(msg.get_body(("html",)).get_content())
    return c.cards


def sub(email: str, keywords: str, **kw) -> Subscriber:
    return Subscriber(email=email, keywords=parse_keywords(keywords), max_papers=5, **kw)


@pytest.fixture
def world(tmp_path):
    with FixtureServer() as srv, SmtpServer() as smtp:
        cfg = srv.configure(
            Config(), categories=(), lookback_days=3, retries=0, offline_fallback=False
        )
        cfg = replace(
            cfg,
            store=StoreConfig(path=tmp_path / "data", fsync=False),
            smtp=SmtpConfig(
                host=smtp.host, port=smtp.port, security="none", sender="P <p@example.org>"
            ),
        )
        yield cfg, smtp


def test_a_week_of_runs_mails_both_sections_and_never_repeats_a_paper(world):
    cfg, smtp = world
    subs = [
        sub("agents@example.org", "agents, tool use, reinforcement learning"),
        sub("speech@example.org", "speech recognition, text-to-speech"),
        sub("quiet@example.org", "speech recognition, text-to-speech", no_match=NO_MATCH_SKIP),
        sub("popular@example.org", ""),  # no keywords: trending only
        sub("none@example.org", "agents", trending=0),
    ]
    store = open_store(cfg.store)
    store.put_subscribers(subs)
    store.close()
    mailed: dict[str, list[tuple[str, str]]] = defaultdict(list)
    subjects: dict[str, list[str]] = defaultdict(list)
    day = date(2026, 1, 5)
    while day <= date(2026, 1, 16):
        before = len(smtp.messages)
        run_daily(cfg, day, progress=False)
        for received in smtp.messages[before:]:
            (to,) = received.rcpt_tos
            msg = received.message
            got = cards(msg)
            mailed[to] += got
            subjects[to].append(msg["Subject"])
            n_match = sum(1 for _, s in got if s == MATCH)
            n_hot = sum(1 for _, s in got if s == TRENDING)
            # sections in order: the matches, then the trending papers
            assert [s for _, s in got] == [MATCH] * n_match + [TRENDING] * n_hot
            assert n_match <= 5 and n_hot <= (5 if to == "popular@example.org" else 3)
            if n_match:
                assert msg["Subject"].startswith(f"{n_match} paper")
                assert " for you · " in msg["Subject"]
            text = msg.get_body(("plain",)).get_content()
            if n_hot:
                assert "TRENDING TODAY" in text
        day += timedelta(days=1)
    for to, got in mailed.items():
        ids = [pid for pid, _ in got]
        assert len(ids) == len(set(ids)), f"{to} got a paper twice"  # trending ones too
    assert mailed["agents@example.org"], "a real week, not a vacuous pass"
    assert any(s == MATCH for _, s in mailed["agents@example.org"])
    assert any(s == TRENDING for _, s in mailed["agents@example.org"])
    # no keywords: trending only, up to max_papers of them
    assert mailed["popular@example.org"] and {s for _, s in mailed["popular@example.org"]} == {
        TRENDING
    }
    assert all(" trending paper" in s for s in subjects["popular@example.org"])
    # trending 0: matches only
    assert {s for _, s in mailed["none@example.org"]} <= {MATCH}
    # "skip": a mail only on days with a match; "send" (default) gets the others too
    assert all(" for you · " in s for s in subjects["quiet@example.org"])
    no_match_days = [s for s in subjects["speech@example.org"] if s.startswith("No matches today")]
    assert no_match_days, "the speech subscriber had quiet days in this week"
    assert len(subjects["speech@example.org"]) == len(subjects["quiet@example.org"]) + len(
        no_match_days
    )


def test_digest_of_no_match_choice() -> None:
    hot = (Pick("2601.00001", 90.0, (), TRENDING),)
    both = (Pick("2601.00002", 70.0, ("x",)), *hot)
    send = sub("a@example.org", "agents")
    skip = sub("a@example.org", "agents", no_match=NO_MATCH_SKIP)
    assert digest_of(send, DAY, hot).picks == hot
    assert digest_of(skip, DAY, hot).picks == ()  # no mail that day
    assert digest_of(skip, DAY, both).picks == both
    # a subscriber without keywords always gets the trending papers
    assert digest_of(sub("a@example.org", "", no_match=NO_MATCH_SKIP), DAY, hot).picks == hot


def test_cli_sets_trending_and_no_match(tmp_path, capsys) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "data"}"\n[digest]\ntrending = 2\n')
    base = ["--config", str(cfg), "subscribers"]
    assert main([*base, "add", "a@example.org", "--keywords", "agents", "--trending", "0"]) == 0
    assert main([*base, "update", "a@example.org", "--no-match", "skip"]) == 0
    capsys.readouterr()
    assert main([*base, "list", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["trending"], row["no_match"]) == (0, "skip")
    assert main([*base, "update", "a@example.org", "--trending", ""]) == 0  # site default
    assert main([*base, "update", "a@example.org", "--trending", "99"]) == 2
    assert "trending: expected a whole number from 0 to 20" in capsys.readouterr().err
    capsys.readouterr()
    assert main([*base, "list", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["trending"], row["no_match"]) == (None, "skip")


def test_config_trending_key_is_validated(tmp_path) -> None:
    from digest.config import load_config
    from digest.errors import ConfigError

    path = tmp_path / "c.toml"
    path.write_text("[digest]\ntrending = 5\n")
    assert load_config(path).digest == DigestConfig(trending=5)
    path.write_text("[digest]\ntrending = -1\n")
    with pytest.raises(ConfigError, match=r"\[digest\] trending: expected an integer from 0"):
        load_config(path)


def test_manage_page_sets_trending_and_no_match(tmp_path) -> None:
    from websupport import make_site

    with make_site(tmp_path) as site:
        site.add("m@example.org", keywords=("agents",))
        url = site.links("m@example.org").manage_url
        with site.client() as c:
            csrf = site.form(c, url)["csrf"]

            def save(**data: str) -> httpx.Response:
                form = {"csrf": csrf, "action": "save", "keywords": "agents", "max": "5"}
                return c.post(url, data=form | data)

            r = save(trending="0", no_match="skip")
            assert r.status_code == 200 and "Saved" in r.text
            s = site.store.get_subscriber("m@example.org")
            assert (s.trending, s.no_match) == (0, "skip")
            assert '<option value="skip" selected>' in r.text
            for bad, message in (
                ({"trending": "x"}, "trending papers"),
                ({"no_match": "?"}, "no-match choice"),
            ):
                r = save(**bad)
                assert r.status_code == 400 and message in r.text
            assert save(trending="", no_match="send").status_code == 200
            s = site.store.get_subscriber("m@example.org")
            assert (s.trending, s.no_match) == (None, "send")


def test_feed_labels_the_sections_and_says_why() -> None:
    papers = {
        "2601.00001": Paper(
            "2601.00001", "RAG at scale", "We scale retrieval-augmented generation. It works."
        ),
        "2601.00002": Paper("2601.00002", "Popular thing", "Everyone likes it."),
        "2601.00003": Paper("2601.00003", "Old record", "Before sections existed."),
    }
    records = [
        {
            "id": digest_id("a@example.org", DAY),
            "day": DAY.isoformat(),
            "state": SENT,
            "papers": ["2601.00001", "2601.00002"],
            "sections": [MATCH, TRENDING],
            "matched": [["retrieval-augmented generation"], []],
            "at": "2026-01-06T07:00:00+00:00",
        },
        {"id": "old", "day": "2026-01-05", "state": SENT, "papers": ["2601.00003"], "at": ""},
    ]
    root = ET.fromstring(
        build_atom(
            site_name="D",
            feed_url="http://x/f",
            home_url="http://x/",
            email="a@example.org",
            records=records,
            papers=papers,
        )
    )
    entries = root.findall(f"{ATOM}entry")
    cats = [e.find(f"{ATOM}category").attrib for e in entries]
    assert [c["term"] for c in cats] == [MATCH, TRENDING, MATCH]
    assert [c["label"] for c in cats] == ["For you", "Trending today", "For you"]
    first = entries[0].findtext(f"{ATOM}summary")
    assert first.startswith("For you · matched: retrieval-augmented generation")
    assert "Why: “We scale retrieval-augmented generation.”" in first
    assert entries[1].findtext(f"{ATOM}summary").startswith("Trending today · not matched")
    assert entries[2].findtext(f"{ATOM}summary") == "Before sections existed."
