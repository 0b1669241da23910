"""The serve tick with the real pipeline, real store, real SMTP and recorded HF answers.

In process, with an injected clock, so days and send times are chosen freely. Checks that
what `digest status` says about quiet days matches what the real pipeline records.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from httpfixture import FixtureServer, unused_url
from smtpserver import SmtpServer

from digest.config import Config, ScheduleConfig, SmtpConfig, StoreConfig
from digest.models import EMPTY, SENT, Subscriber
from digest.pipeline import run_daily
from digest.schedule.service import Service
from digest.schedule.status import collect, lines
from digest.store import open_store

EMAILS = ["ada@example.org", "bob@example.org", "cy@example.org"]


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


class Clock:
    def __init__(self, t: datetime):
        self.t = t

    def __call__(self) -> datetime:
        return self.t


@pytest.fixture
def world(tmp_path):
    with FixtureServer() as srv, SmtpServer() as smtp:
        cfg = srv.configure(Config(), categories=(), retries=0, offline_fallback=False)
        cfg = replace(
            cfg,
            store=StoreConfig(path=tmp_path / "data", fsync=False),
            smtp=SmtpConfig(
                host=smtp.host,
                port=smtp.port,
                security="none",
                sender="Digest <digest@example.org>",
            ),
            schedule=ScheduleConfig(time="07:00", timezone="Europe/Berlin"),
        )
        store = open_store(cfg.store)
        store.put_subscribers(
            [Subscriber(email=e, created="2025-12-01T00:00:00+00:00") for e in EMAILS]
        )
        try:
            yield cfg, store, smtp
        finally:
            store.close()


def test_daily_send_then_quiet_day_then_already_served(world):
    cfg, store, smtp = world
    clock = Clock(utc(2026, 1, 6, 6, 30))  # 07:30 Berlin on a recorded weekday
    svc = Service(cfg, store, clock=clock)
    (report,) = svc.tick()
    assert report.day == date(2026, 1, 6) and report.sent == len(EMAILS)
    assert smtp.received == len(EMAILS)
    assert store.digests_for_day(date(2026, 1, 6)) == dict.fromkeys(EMAILS, SENT)
    assert svc.tick() == []  # the next tick: nothing owed
    assert collect(cfg, store, clock())["why_quiet"] is None

    # Saturday 2026-01-10: nothing recorded for that day, so no new papers: no mail.
    clock.t = utc(2026, 1, 10, 6, 5)
    (quiet,) = svc.tick()
    assert quiet.sent == 0 and quiet.empty == len(EMAILS)
    assert smtp.received == len(EMAILS)  # no empty digests by default
    assert store.digests_for_day(date(2026, 1, 10)) == dict.fromkeys(EMAILS, EMPTY)
    st = collect(cfg, store, clock())
    assert st["why_quiet"].startswith("0 new papers")
    assert any(
        line.startswith("nothing went out in the last run: 0 new papers") for line in lines(st)
    )
    assert svc.tick() == []  # EMPTY is done: not retried

    # A manual re-run of a served day: status says everyone was already served.
    again = run_daily(cfg, date(2026, 1, 10), store=store, now=clock)
    assert again.already_done == len(EMAILS)
    assert collect(cfg, store, clock())["why_quiet"].startswith("everyone already served")


def test_all_sources_failed_is_explained_then_retried(world):
    cfg, store, smtp = world
    clock = Clock(utc(2026, 1, 6, 6, 0))
    down = replace(
        cfg,
        sources=replace(
            cfg.sources, huggingface=replace(cfg.sources.huggingface, base_url=unused_url())
        ),
    )
    assert Service(down, store, clock=clock).tick() == []
    st = collect(cfg, store, clock())
    assert st["why_quiet"].startswith("all sources failed")
    assert st["owed_now"] == [{"day": "2026-01-06", "subscribers": len(EMAILS)}]
    assert smtp.received == 0

    clock.t = utc(2026, 1, 6, 7, 0)  # the hourly recheck, the source is back
    (report,) = Service(cfg, store, clock=clock).tick()
    assert report.sent == len(EMAILS) and smtp.received == len(EMAILS)
    assert collect(cfg, store, clock())["owed_now"] == []


def test_per_subscriber_hour_with_the_real_pipeline(world):
    cfg, store, smtp = world
    ada = store.get_subscriber("ada@example.org")
    store.put_subscribers([replace(ada, send_hour=9, timezone="America/New_York")])
    clock = Clock(utc(2026, 1, 6, 6, 0))  # 07:00 Berlin: everyone but ada
    svc = Service(cfg, store, clock=clock)
    svc.tick()
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == EMAILS[1:]
    clock.t = utc(2026, 1, 6, 14, 0)  # 09:00 New York
    svc.tick()
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == sorted(EMAILS)
    assert store.digests_for_day(date(2026, 1, 6)) == dict.fromkeys(EMAILS, SENT)
