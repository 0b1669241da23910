"""digest.overlap: the producer/recorder threads of the delivery loop, and the loop using
them with the delivery pool (no timing asserts)."""

from __future__ import annotations

import threading

import pytest

from digest.errors import StoreError
from digest.overlap import Prefetch, Recorder


def test_prefetch_yields_every_item_in_order():
    with Prefetch(iter(range(500)), depth=4) as items:
        assert list(items) == list(range(500))


def test_prefetch_reraises_a_producer_error_in_the_consumer():
    def gen():
        yield 1
        yield 2
        raise ValueError("render broke")

    got = []
    with Prefetch(gen()) as items, pytest.raises(ValueError, match="render broke"):
        for x in items:
            got.append(x)
    assert got == [1, 2]


def test_prefetch_left_early_stops_the_producer():
    produced = []

    def gen():
        for i in range(10_000):
            produced.append(i)
            yield i

    p = Prefetch(gen(), depth=2)
    with p as items:
        for x in items:
            if x == 3:
                break
    assert not p._thread.is_alive()
    assert len(produced) < 10  # bounded look-ahead: depth + the one being offered + taken

    written: list[int] = []
    busy = threading.Lock()

    def record(i: int) -> None:
        assert busy.acquire(blocking=False), "two records at once"
        written.append(i)
        busy.release()

    with Recorder(record) as rec:
        for i in range(300):
            rec.put(i)
    assert written == list(range(300))


def test_recorder_waits_for_the_last_record_on_exit():
    written = []
    gate = threading.Event()

    def record(i: int) -> None:
        gate.wait(5)
        written.append(i)

    rec = Recorder(record)
    with rec:
        rec.put(1)
        gate.set()
    assert written == [1]


def test_recorder_error_is_raised_at_the_next_put_and_nothing_more_is_written():
    written = []

    def record(i: int) -> None:
        if i == 2:
            raise StoreError("journal: disk full")
        written.append(i)

    with pytest.raises(StoreError, match="disk full"), Recorder(record) as rec:
        for i in range(10):
            rec.put(i)
    assert written == [0, 1]


def test_recorder_error_surfaces_on_exit_and_on_check():
    def record(i: int) -> None:
        raise StoreError("boom")

    rec = Recorder(record)
    with pytest.raises(StoreError, match="boom"), rec:
        rec.put(1)
    with pytest.raises(StoreError, match="boom"):
        rec.check()


# ------------------------------------------------------------ the delivery loop using them


class FailingStore:
    """The real TinyStore, whose record_digest fails from the `fail_at`-th SENT record."""

    def __init__(self, store, fail_at: int):
        self._store, self.fail_at, self.sent_records = store, fail_at, 0

    def __getattr__(self, name):
        return getattr(self._store, name)

    def record_digest(self, digest_id, email, day, state, paper_ids=(), detail=""):
        if state == "sent":
            self.sent_records += 1
            if self.sent_records >= self.fail_at:
                raise StoreError("journal.jsonl: cannot write: No space left on device")
        self._store.record_digest(digest_id, email, day, state, paper_ids, detail)


def _world(tmp_path, srv, smtp, n, connections=4):
    from dataclasses import replace

    from digest.config import Config, SmtpConfig, StoreConfig
    from digest.models import Subscriber
    from digest.store import open_store

    cfg = srv.configure(Config(), categories=(), retries=0, offline_fallback=False)
    cfg = replace(
        cfg,
        store=StoreConfig(path=tmp_path / "data", fsync=False),
        smtp=SmtpConfig(
            host=smtp.host,
            port=smtp.port,
            security="none",
            sender="Digest <digest@example.org>",
            connections=connections,
        ),
    )
    store = open_store(cfg.store)
    store.put_subscribers(
        [Subscriber(email=f"u{i:03d}@example.org", created="x") for i in range(n)]
    )
    return cfg, store


@pytest.mark.parametrize("connections", [1, 4])
def test_run_records_every_accepted_message(tmp_path, connections):
    from datetime import date

    from httpfixture import FixtureServer
    from smtpserver import SmtpServer

    from digest.models import SENT
    from digest.pipeline import run_daily

    day = date(2026, 1, 6)
    everyone = [f"u{i:03d}@example.org" for i in range(40)]
    with FixtureServer() as srv, SmtpServer() as smtp:
        cfg, store = _world(tmp_path, srv, smtp, 40, connections)
        try:
            report = run_daily(cfg, day, store=store)
            assert report.sent == smtp.received == 40
            got = [m.rcpt_tos[0] for m in smtp.messages]
            if connections == 1:  # in send order
                assert got == everyone
            else:
                assert sorted(got) == everyone
            assert store.digests_for_day(day) == {e: SENT for e in everyone}
        finally:
            store.close()


@pytest.mark.parametrize("connections", [1, 4])
def test_a_failing_record_stops_the_run_within_the_documented_window(tmp_path, connections):
    from datetime import date

    from httpfixture import FixtureServer
    from smtpserver import SmtpServer

    from digest.pipeline import run_daily

    day = date(2026, 1, 6)
    with FixtureServer() as srv, SmtpServer() as smtp:
        cfg, real = _world(tmp_path, srv, smtp, 40, connections)
        store = FailingStore(real, fail_at=5)
        try:
            with pytest.raises(StoreError, match="No space left"):
                run_daily(cfg, day, store=store)
            # records 1-4 written; the 5th failed; at most one more message was in flight
            # on each other connection
            assert 5 <= smtp.received <= 5 + connections - 1
            assert len(real.digests_for_day(day)) == 4
        finally:
            real.close()


def test_short_switch_interval_is_restored_even_on_error():
    import sys

    from digest.overlap import short_switch_interval

    before = sys.getswitchinterval()
    with pytest.raises(RuntimeError), short_switch_interval(0.0005):
        assert sys.getswitchinterval() <= 0.0005
        raise RuntimeError("x")
    assert sys.getswitchinterval() == before
