"""The serve tick and its APScheduler job, with an injected clock.

The store and run_daily here are small fakes of the Store protocol and the pipeline (the
neighbours of the pure plan); the real ones are exercised by tests/test_serve_e2e.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from digest.config import Config, ScheduleConfig
from digest.errors import AllSourcesFailed, StoreError, StoreLocked
from digest.models import (
    ACTIVE,
    DONE_STATES,
    SENT,
    DeliveryRecord,
    RunReport,
    Subscriber,
    digest_id,
)
from digest.schedule.plan import Slot, default_slot
from digest.schedule.service import JOB_ID, SendTimesTrigger, Service, next_recheck

LONG_AGO = "2025-01-01T00:00:00+00:00"


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


class FakeStore:
    """The part of the Store protocol the scheduler and `digest status` read, in memory
    (records are written through FakeRun, the fake run_daily, not through a run context)."""

    def __init__(self, subs: list[Subscriber]):
        self.subs = {s.email: s for s in subs}
        self.records: dict[tuple[str, date], str] = {}
        self.run_reports: list[RunReport] = []

    def subscribers(self) -> list[Subscriber]:
        return list(self.subs.values())

    def digests_for_day(self, day: date) -> dict[str, str]:
        return {e: s for (e, d), s in self.records.items() if d == day}

    def record_digest(self, did: str, email: str, day: date, state: str, *_a: Any) -> None:
        self.records[(email, day)] = state

    def record_run(self, report: RunReport) -> None:
        self.run_reports.insert(0, report)

    def runs(self, limit: int = 10) -> list[RunReport]:
        return self.run_reports[:limit]

    def _rec(self, e: str, d: date, s: str, detail: str = "") -> DeliveryRecord:
        return DeliveryRecord(digest_id(e, d), e, d, s, ("2601.1",), detail)

    def history(self, email: str, limit: int = 30) -> list[DeliveryRecord]:
        rows = [self._rec(e, d, s) for (e, d), s in self.records.items() if e == email]
        return sorted(rows, key=lambda r: r.day, reverse=True)[:limit]

    def pending_retries(self) -> list[DeliveryRecord]:
        return [
            self._rec(e, d, s, "451 try later")
            for (e, d), s in self.records.items()
            if s not in DONE_STATES
        ]


class FakeRun:
    """run_daily's contract as the scheduler relies on it: serve `only`, skip done, record."""

    def __init__(self, store: FakeStore, raise_: Exception | None = None):
        self.store, self.raise_ = store, raise_
        self.calls: list[tuple[date, list[str]]] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def __call__(
        self,
        cfg: Config,
        day: date,
        *,
        now: Callable[[], datetime],
        store: Any,
        only: Callable[[Subscriber], bool],
        stop: threading.Event,
    ) -> RunReport:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        if self.raise_ is not None:
            raise self.raise_
        done = self.store.digests_for_day(day)
        todo = sorted(
            s.email
            for s in self.store.subscribers()
            if s.status == ACTIVE and only(s) and done.get(s.email) not in DONE_STATES
        )
        self.calls.append((day, todo))
        report = RunReport(day=day, started=now().isoformat(), new_papers=3)
        for e in todo:
            if stop.is_set():
                break
            self.store.record_digest(digest_id(e, day), e, day, SENT)
            report.sent += 1
        self.store.record_run(report)
        return report


class Clock:
    def __init__(self, t: datetime):
        self.t = t

    def __call__(self) -> datetime:
        return self.t


def make(
    subs: list[Subscriber], t: datetime, **sched: Any
) -> tuple[Service, FakeStore, FakeRun, Clock]:
    sched.setdefault("time", "07:00")
    sched.setdefault("timezone", "Europe/Berlin")
    cfg = Config(schedule=ScheduleConfig(**sched))
    store = FakeStore(subs)
    run = FakeRun(store)
    clock = Clock(t)
    return Service(cfg, store, clock=clock, run=run), store, run, clock  # type: ignore[arg-type]


def sub(email: str, **kw: Any) -> Subscriber:
    return Subscriber(email=email, created=LONG_AGO, **kw)


def test_job_options_on_the_real_scheduler():
    svc, *_ = make([sub("a@x")], utc(2026, 1, 15), misfire_grace_hours=6)
    sched = svc.build_scheduler()
    job = sched.get_job(JOB_ID)
    assert job.misfire_grace_time == 6 * 3600
    assert job.coalesce is True
    assert job.max_instances == 1
    assert isinstance(job.trigger, SendTimesTrigger)
    assert job.next_run_time is not None  # catch-up tick at start
    svc0, *_ = make([sub("a@x")], utc(2026, 1, 15), misfire_grace_hours=0)
    assert svc0.build_scheduler(run_at_start=False).get_job(JOB_ID).misfire_grace_time == 60


def test_trigger_fires_at_local_send_time_across_dst():
    slot = {default_slot(ScheduleConfig(time="07:00", timezone="Europe/Berlin"))}
    trig = SendTimesTrigger(lambda: slot, recheck=timedelta(days=7))
    fires, prev = [], None
    now = utc(2026, 3, 27, 12, 0)
    for _ in range(4):  # 28th (CET), 29th (switch day, CEST), 30th, 31st
        prev = trig.get_next_fire_time(prev, now)
        fires.append(prev)
    assert fires == [
        utc(2026, 3, 28, 6, 0),
        utc(2026, 3, 29, 5, 0),
        utc(2026, 3, 30, 5, 0),
        utc(2026, 3, 31, 5, 0),
    ]
    (only,) = slot
    assert all(f.astimezone(only.tz).hour == 7 for f in fires)


@pytest.mark.parametrize(
    "tz, hhmm, start, expected",
    [
        # Berlin spring forward: 02:30 does not exist on Mar 29 -> the transition, 03:00 CEST.
        (
            "Europe/Berlin",
            "02:30",
            utc(2026, 3, 28, 12),
            [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)],
        ),
        # Berlin fall back: 02:30 happens twice on Oct 25 -> only the first (CEST, 00:30 UTC).
        (
            "Europe/Berlin",
            "02:30",
            utc(2026, 10, 24, 12),
            [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)],
        ),
        # New York spring forward: 02:30 missing on Mar 8 -> 03:00 EDT (07:00 UTC).
        (
            "America/New_York",
            "02:30",
            utc(2026, 3, 7, 12),
            [utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)],
        ),
    ],
)
def test_trigger_across_transitions(tz, hhmm, start, expected):
    slot = default_slot(ScheduleConfig(time=hhmm, timezone=tz))
    trig = SendTimesTrigger(lambda: {slot}, recheck=timedelta(days=7))
    first = trig.get_next_fire_time(None, start)
    assert [first, trig.get_next_fire_time(first, start)] == expected


def test_trigger_fall_back_and_new_york_fire_once_per_day():
    ny = Slot(
        datetime(2000, 1, 1, 1, 30).time(),
        default_slot(ScheduleConfig(timezone="America/New_York")).tz,
    )
    trig = SendTimesTrigger(lambda: {ny}, recheck=timedelta(days=7))
    fires, prev = [], None
    for _ in range(3):
        prev = trig.get_next_fire_time(prev, utc(2026, 10, 31, 12, 0))
        fires.append(prev)
    # Oct 31 is Saturday (EDT); Nov 1 01:30 happens twice: once (EDT, 05:30 UTC); Nov 2 EST.
    assert fires == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30), utc(2026, 11, 3, 6, 30)]


def test_trigger_first_fire_is_inclusive_and_recheck_caps_the_wait():
    slot = {default_slot(ScheduleConfig(time="07:00", timezone="UTC"))}
    trig = SendTimesTrigger(lambda: slot, recheck=timedelta(hours=1))
    assert trig.get_next_fire_time(None, utc(2026, 1, 15, 7, 0)) == utc(2026, 1, 15, 7, 0)
    assert trig.get_next_fire_time(utc(2026, 1, 15, 7, 0), utc(2026, 1, 15, 7, 0)) == utc(
        2026, 1, 15, 8, 0
    )
    assert next_recheck(utc(2026, 1, 15, 7, 59, 59), timedelta(hours=1)) == utc(2026, 1, 15, 8)


def test_tick_before_send_time_runs_nothing():
    svc, _, run, _ = make([sub("a@x")], utc(2026, 1, 15, 5, 0))
    assert svc.tick() == [] and run.calls == []


def test_missed_send_time_is_caught_up_exactly_once():
    svc, store, run, clock = make([sub("a@x"), sub("b@x")], utc(2026, 1, 15, 9, 30))
    reports = svc.tick()  # start after downtime over 07:00 Berlin
    assert [r.sent for r in reports] == [2]
    for minutes in (0, 1, 60, 120):  # later ticks: hourly rechecks, a second start
        clock.t = utc(2026, 1, 15, 9, 30) + timedelta(minutes=minutes)
        assert svc.tick() == []
    assert run.calls == [(date(2026, 1, 15), ["a@x", "b@x"])]
    assert store.records == {("a@x", date(2026, 1, 15)): SENT, ("b@x", date(2026, 1, 15)): SENT}


def test_crash_mid_run_restart_sends_the_rest():
    subs = [sub(f"u{i}@x") for i in range(6)]
    svc, store, run, _ = make(subs, utc(2026, 1, 15, 6, 10))
    for i in range(2):  # what the crashed process had recorded
        store.record_digest("", f"u{i}@x", date(2026, 1, 15), SENT)
    svc.tick()
    assert run.calls == [(date(2026, 1, 15), [f"u{i}@x" for i in range(2, 6)])]


def test_per_subscriber_hours_are_honoured_hour_by_hour():
    subs = [
        sub("de@x"),
        sub("ny@x", send_hour=9, timezone="America/New_York"),
        sub("tk@x", send_hour=8, timezone="Asia/Tokyo"),
    ]
    svc, store, run, clock = make(subs, utc(2026, 1, 15, 5, 0))
    for h in range(5, 30):  # 05:00 UTC: Tokyo's digest of the 15th is 6 h old (grace over)
        clock.t = utc(2026, 1, 15) + timedelta(hours=h)
        svc.tick()
    assert run.calls == [
        (date(2026, 1, 15), ["de@x"]),  # 06:00 UTC = 07:00 Berlin
        (date(2026, 1, 15), ["ny@x"]),  # 14:00 UTC = 09:00 New York
        (date(2026, 1, 16), ["tk@x"]),  # 23:00 UTC = 08:00 Tokyo on the 16th
    ]


def test_overlapping_ticks_produce_one_run():
    svc, store, run, _ = make([sub("a@x")], utc(2026, 1, 15, 6, 0))
    run.gate = threading.Event()
    first = threading.Thread(target=svc.tick)
    first.start()
    assert run.entered.wait(10)
    assert svc.tick() == []  # overlapping trigger: skipped, not queued
    run.gate.set()
    first.join(10)
    assert svc.tick() == []  # afterwards: nothing owed any more
    assert len(run.calls) == 1


def test_real_scheduler_max_instances_one_run_at_a_time():
    svc, store, run, _ = make([sub("a@x")], utc(2026, 1, 15, 6, 0))
    run.gate = threading.Event()
    sched = svc.build_scheduler()
    sched.start()
    try:
        assert run.entered.wait(10)  # the start-up tick is running and blocked
        job = sched.get_job(JOB_ID)
        for _ in range(3):  # fire again while it runs: max_instances=1 refuses
            job.modify(next_run_time=datetime.now(UTC))
            sched.wakeup()
        run.gate.set()
    finally:
        sched.shutdown(wait=True)
    assert len(run.calls) == 1 and svc.runs == 1


def test_stop_event_stops_new_work_and_reaches_run_daily():
    svc, store, run, _ = make([sub("a@x"), sub("b@x")], utc(2026, 1, 15, 6, 0))
    svc.stop.set()
    assert svc.tick() == [] and run.calls == []


def test_store_locked_skips_and_the_next_tick_runs():
    svc, store, run, _ = make([sub("a@x")], utc(2026, 1, 15, 6, 0))
    run.raise_ = StoreLocked("another run holds the run lock")
    assert svc.tick() == [] and store.run_reports == []
    run.raise_ = None
    assert [r.sent for r in svc.tick()] == [1]


def test_all_sources_failed_is_retried_at_the_next_tick(caplog):
    # The failed run's report is kept by run_daily itself (see
    # test_schedule_integration.py::test_all_sources_failed_is_explained_then_retried).
    svc, store, run, _ = make([sub("a@x")], utc(2026, 1, 15, 6, 0))
    run.raise_ = AllSourcesFailed("every source failed, nothing sent (huggingface: HTTP 503)")
    assert svc.tick() == []
    assert "retrying at the next tick" in caplog.text
    run.raise_ = None
    assert [r.sent for r in svc.tick()] == [1]


def test_unexpected_error_is_logged_not_raised(caplog):
    svc, store, run, _ = make([sub("a@x")], utc(2026, 1, 15, 6, 0))
    run.raise_ = RuntimeError("boom")
    assert svc.tick() == []
    assert "failed unexpectedly" in caplog.text


def test_next_run_is_now_when_owed_else_next_send_time():
    svc, store, run, clock = make([sub("a@x")], utc(2026, 1, 15, 6, 30))
    assert svc.next_run() == utc(2026, 1, 15, 6, 30)
    svc.tick()
    assert svc.next_run() == utc(2026, 1, 16, 6, 0)


@pytest.mark.parametrize(
    "grace_h, late_h, expect_run", [(6, 5, True), (6, 7, False), (24, 23, True)]
)
def test_catch_up_respects_misfire_grace(grace_h, late_h, expect_run):
    svc, store, run, _ = make(
        [sub("a@x")], utc(2026, 1, 15, 6) + timedelta(hours=late_h), misfire_grace_hours=grace_h
    )
    svc.tick()
    assert bool(run.calls) is expect_run


def test_locked_store_holds_one_lock_around_each_call():
    from digest.schedule.service import LockedStore

    class Slow(FakeStore):
        def __init__(self) -> None:
            super().__init__([sub("a@x")])
            self.inside, self.gate = threading.Event(), threading.Event()

        def subscribers(self) -> list[Subscriber]:
            self.inside.set()
            self.gate.wait(10)
            return super().subscribers()

        def run(self, day: date, report: Any) -> str:
            return "the store's own run context"

    inner = Slow()
    proxy = LockedStore(inner)  # type: ignore[arg-type]
    t = threading.Thread(target=proxy.subscribers)
    t.start()
    assert inner.inside.wait(10)
    assert not proxy._lock.acquire(blocking=False)  # another thread is inside a store call
    inner.gate.set()
    t.join(10)
    assert [s.email for s in proxy.subscribers()] == ["a@x"]
    assert proxy.run(date(2026, 1, 5), None) == "the store's own run context"
    assert proxy.run.__self__ is inner  # not wrapped: held for a whole run


def test_trigger_survives_an_unreadable_store_and_rechecks(caplog):
    def broken() -> set[Slot]:
        raise StoreError("data/subscribers.json: store is busy")

    trig = SendTimesTrigger(broken, recheck=timedelta(hours=1))
    assert trig.get_next_fire_time(None, utc(2026, 1, 15, 6, 10)) == utc(2026, 1, 15, 7, 0)
    assert "cannot read the send times" in caplog.text


def test_store_error_in_a_tick_is_one_line_not_a_traceback(caplog):
    svc, store, run, _ = make([sub("a@x")], utc(2026, 1, 15, 6, 0))

    def unreadable(day: date) -> dict[str, str]:
        raise StoreError("data/history.json: cannot read: permission denied")

    store.digests_for_day = unreadable  # type: ignore[method-assign]
    assert svc.tick() == []
    assert "permission denied; retrying at the next tick" in caplog.text
    assert "Traceback" not in caplog.text
