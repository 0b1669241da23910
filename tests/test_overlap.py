"""digest.overlap: the producer/recorder threads of the delivery loop, and the loop using
them with the delivery pool (no timing asserts)."""

from __future__ import annotations

import contextlib
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


# ------------------------------------------------------------ Recorder: group commit


def flat(batches: list[list[int]]) -> list[int]:
    return [r for batch in batches for r in batch]


def test_recorder_writes_every_record_in_order_one_batch_at_a_time():
    batches: list[list[int]] = []
    busy = threading.Lock()

    def record_many(batch: list[int]) -> None:
        assert busy.acquire(blocking=False), "two batches at once"
        batches.append(batch)
        busy.release()

    with Recorder(record_many) as rec:
        for i in range(300):
            rec.put(i)
    assert flat(batches) == list(range(300))

    # many threads waiting for their own records: one writer at a time, each thread's
    # records in its own order, nothing lost or written twice
    batches.clear()

    def connection(k: int) -> None:
        for i in range(50):
            rec.durable(rec.put(k * 1000 + i))

    with Recorder(record_many) as rec:
        threads = [threading.Thread(target=connection, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    got = flat(batches)
    assert sorted(got) == sorted(k * 1000 + i for k in range(8) for i in range(50))
    for k in range(8):
        mine = [x for x in got if x // 1000 == k]
        assert mine == sorted(mine)


def test_records_queued_while_a_batch_is_written_share_the_next_write():
    batches: list[list[int]] = []
    writing, gate = threading.Event(), threading.Event()

    def record_many(batch: list[int]) -> None:
        if not batches:  # hold the first write
            writing.set()
            gate.wait(30)
        batches.append(batch)

    rec = Recorder(record_many)
    first = threading.Thread(target=lambda: rec.durable(rec.put(0)))  # the leader
    first.start()
    assert writing.wait(30)
    last = [rec.put(i) for i in range(1, 6)][-1]
    seen: list[list[int]] = []
    second = threading.Thread(target=lambda: (rec.durable(last), seen.append(flat(batches))))
    second.start()  # waits for the running write, then writes the five at once
    gate.set()
    first.join(30)
    second.join(30)
    assert batches == [[0], [1, 2, 3, 4, 5]]
    assert seen == [[0, 1, 2, 3, 4, 5]]  # durable returned once its record was written


def test_queued_records_are_written_on_exit_or_once_many_wait():
    batches: list[list[int]] = []
    with Recorder(batches.append) as rec:
        rec.put(1)
        rec.put(2)
        assert batches == []  # only queued
    assert batches == [[1, 2]]
    batches.clear()
    rec = Recorder(batches.append)
    rec.FLUSH_AT = 3
    for i in range(7):
        rec.put(i)
    assert batches == [[0, 1, 2], [3, 4, 5]]  # the putter wrote them


def test_recorder_error_is_raised_everywhere_after_and_nothing_more_is_written():
    written: list[int] = []

    def record_many(batch: list[int]) -> None:
        if 2 in batch:
            raise StoreError("journal: disk full")
        written.extend(batch)

    rec = Recorder(record_many)
    with pytest.raises(StoreError, match="disk full"), rec:
        for i in range(3):
            rec.durable(rec.put(i))
    assert written == [0, 1]
    for call in (rec.check, lambda: rec.put(9), lambda: rec.durable(3), rec.wait):
        with pytest.raises(StoreError, match="disk full"):
            call()
    assert written == [0, 1]


# ------------------------------------------------------------ the delivery loop using them


class FailingStore:
    """The real TinyStore, whose runs' records fail from the `fail_at`-th SENT record on:
    the batch holding it is not written at all (as a failed journal append)."""

    def __init__(self, store, fail_at: int):
        self._store, self.fail_at, self.sent_records = store, fail_at, 0

    def __getattr__(self, name):
        return getattr(self._store, name)

    @contextlib.contextmanager
    def run(self, day, report, **kw):
        with self._store.run(day, report, **kw) as run:
            real = run.record_many

            def record_many(recs):
                self.sent_records += sum(1 for r in recs if r.state == "sent")
                if self.sent_records >= self.fail_at:
                    raise StoreError("journal.jsonl: cannot write: No space left on device")
                real(recs)

            run.record_many = record_many
            yield run


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

    from digest.models import SENT
    from digest.pipeline import run_daily

    day = date(2026, 1, 6)
    with FixtureServer() as srv, SmtpServer() as smtp:
        cfg, real = _world(tmp_path, srv, smtp, 40, connections)
        store = FailingStore(real, fail_at=5)
        try:
            with pytest.raises(StoreError, match="No space left"):
                run_daily(cfg, day, store=store)
            recorded = real.digests_for_day(day)
            assert set(recorded.values()) == {SENT} and len(recorded) <= 4
            assert set(recorded) <= {m.rcpt_tos[0] for m in smtp.messages}
            # accepted but not recorded: the failed batch (one record per connection at
            # most) or in flight when it failed; at most one per connection either way
            assert 1 <= smtp.received - len(recorded) <= connections
            if connections == 1:
                assert len(recorded) == 4 and smtp.received == 5
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


def test_a_batch_of_records_is_one_journal_write_and_one_sync(tmp_path, monkeypatch):
    import os
    from datetime import date

    from digest.config import StoreConfig
    from digest.models import EMPTY, SENT, DeliveryRecord, RunReport
    from digest.store import open_store

    store = open_store(StoreConfig(path=tmp_path / "data", fsync=True))
    day = date(2026, 1, 6)
    syncs: list[int] = []
    real_sync = os.fdatasync
    try:
        with store.run(day, RunReport(day=day)) as run:
            monkeypatch.setattr(os, "fdatasync", lambda fd: (syncs.append(fd), real_sync(fd))[1])
            run.record_many(
                [
                    DeliveryRecord("d1", "a@example.org", day, SENT, ("2601.00001",)),
                    DeliveryRecord("d2", "b@example.org", day, EMPTY, (), "nothing new"),
                    DeliveryRecord("d3", "c@example.org", day, SENT, ("2601.00002",)),
                ]
            )
            assert len(syncs) == 1
            monkeypatch.undo()
            assert store.digests_for_day(day) == {
                "a@example.org": SENT,
                "b@example.org": EMPTY,
                "c@example.org": SENT,
            }
            with pytest.raises(StoreError, match="unknown digest state"):
                run.record_many([DeliveryRecord("d4", "d@example.org", day, "bogus")])
    finally:
        store.close()
    reopened = open_store(StoreConfig(path=tmp_path / "data"))
    try:
        assert reopened.delivered_since(day) == {
            "a@example.org": {"2601.00001"},
            "c@example.org": {"2601.00002"},
        }
    finally:
        reopened.close()
