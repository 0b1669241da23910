"""A delivery record keeps the digest as it was mailed: a real `run_daily` over recorded
days into a real SMTP server, and each record's papers, sections and matched terms
compared with the mail's data-paper-id / data-section markers."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

from httpfixture import FixtureServer
from smtpserver import SmtpServer
from test_sections import cards

from digest.config import Config, SmtpConfig, StoreConfig
from digest.models import MATCH, SENT, TRENDING, Subscriber
from digest.pipeline import run_daily
from digest.store import open_store
from digest.subscribers import parse_keywords


def test_each_record_says_what_was_mailed_in_which_section_and_why(tmp_path) -> None:
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
        kw = parse_keywords("agents, tool use, reinforcement learning")
        store = open_store(cfg.store)
        store.put_subscribers([Subscriber("agents@example.org", kw, max_papers=5)])
        store.close()
        day = date(2026, 1, 5)
        while day <= date(2026, 1, 9):
            run_daily(cfg, day, progress=False)
            day += timedelta(days=1)
        store = open_store(cfg.store)
        try:
            records = {r.digest_id: r for r in store.history("agents@example.org")}
            assert len(smtp.messages) == len(records) >= 3
            for received in smtp.messages:
                msg = received.message
                digest_id = msg["Message-ID"].strip("<>").split("@")[0]
                rec = next(r for did, r in records.items() if did in digest_id)
                got = cards(msg)
                assert rec.state == SENT
                assert list(zip(rec.paper_ids, rec.sections, strict=True)) == got
                assert len(rec.matched) == len(rec.paper_ids)
                for section, terms in zip(rec.sections, rec.matched, strict=True):
                    if section == MATCH:
                        assert terms and set(terms) <= set(kw)  # why: the subscriber's terms
                    else:
                        assert section == TRENDING and terms == ()
                assert store.get_digest(rec.digest_id) == rec
            assert any(MATCH in r.sections for r in records.values())
            assert any(TRENDING in r.sections for r in records.values())
        finally:
            store.close()
