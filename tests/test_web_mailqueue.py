"""The web service's mail worker over a real store: sends what is queued, retries a relay
that is down with backoff (the store's retry_at), gives up on a permanent refusal, and
picks up what a dead worker had claimed once its lease ends. The clock is injected: no
test waits for wall time."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from digest.config import StoreConfig
from digest.errors import PermanentDeliveryError, TransientDeliveryError
from digest.store import open_store
from digest.web.mailqueue import MailWorker, RetryPolicy
from digest.web.mails import build_notice

T0 = datetime(2026, 1, 6, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> datetime:
        return self.t


class Relay:
    """A Sender whose connection (enter) or individual sends fail as told."""

    name = "fake"

    def __init__(self) -> None:
        self.down = False
        self.refuse: set[str] = set()
        self.sent: list[str] = []

    def __enter__(self) -> Relay:
        if self.down:
            raise TransientDeliveryError("SMTP 127.0.0.1:2525: connection refused")
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def send(self, msg) -> None:
        if msg.to in self.refuse:
            raise PermanentDeliveryError(f"{msg.to}: 550 mailbox unavailable")
        self.sent.append(msg.to)


def mail(to: str):
    return build_notice(
        kind="confirm", to=to, sender="d@example.org", subject="s", text="t", html="h", now=T0
    )


@pytest.fixture
def store(tmp_path):
    s = open_store(StoreConfig(path=tmp_path / "data", fsync=False))
    yield s
    s.close()


def worker(store, relay, clock, **kw) -> MailWorker:
    return MailWorker(store, threading.Lock(), lambda: relay, clock, **kw)


def test_queued_mail_is_sent_once_and_leaves_the_queue(store):
    relay, clock = Relay(), Clock()
    for i in range(3):
        store.enqueue(mail(f"u{i}@example.org"), T0)
    w = worker(store, relay, clock)
    assert w.run_once() == 3 and w.run_once() == 0
    assert sorted(relay.sent) == ["u0@example.org", "u1@example.org", "u2@example.org"]
    assert store.queue_stats(clock()).waiting == 0


def test_a_relay_that_refuses_connections_gets_the_mail_later_with_backoff(store):
    relay, clock = Relay(), Clock()
    relay.down = True
    store.enqueue(mail("a@example.org"), T0)
    w = worker(store, relay, clock, policy=RetryPolicy(first=30, longest=3600))
    assert w.run_once() == 1 and relay.sent == []
    stats = store.queue_stats(clock())
    assert (stats.waiting, stats.due, stats.failed) == (1, 0, 0)  # kept, not due yet
    clock.t += timedelta(seconds=29)
    assert w.run_once() == 0  # backoff: not before 30 s
    clock.t += timedelta(seconds=2)
    assert w.run_once() == 1 and relay.sent == []  # still down: the next wait is longer
    clock.t += timedelta(seconds=31)
    assert w.run_once() == 0
    relay.down = False
    clock.t += timedelta(seconds=30)
    assert w.run_once() == 1 and relay.sent == ["a@example.org"]
    assert store.queue_stats(clock()).waiting == 0


def test_a_permanent_refusal_gives_that_message_up_and_sends_the_others(store):
    relay, clock = Relay(), Clock()
    relay.refuse = {"bad@example.org"}
    store.enqueue(mail("bad@example.org"), T0)
    store.enqueue(mail("good@example.org"), T0)
    w = worker(store, relay, clock)
    assert w.run_once() == 2 and relay.sent == ["good@example.org"]
    stats = store.queue_stats(clock())
    assert (stats.waiting, stats.failed) == (0, 1)


def test_retries_end_after_max_attempts(store):
    relay, clock = Relay(), Clock()
    relay.down = True
    store.enqueue(mail("a@example.org"), T0)
    w = worker(store, relay, clock, policy=RetryPolicy(first=1, longest=1, max_attempts=3))
    tries = 0
    while store.queue_stats(clock()).waiting and tries < 10:
        tries += w.run_once()
        clock.t += timedelta(seconds=2)
    assert tries == 3 and store.queue_stats(clock()).failed == 1


def test_a_dead_workers_claim_comes_back_when_its_lease_ends(store):
    relay, clock = Relay(), Clock()
    store.enqueue(mail("a@example.org"), T0)
    store.claim_mail(clock(), lease=60)  # a worker claimed it, then was killed
    w = worker(store, relay, clock, lease=60)
    assert w.run_once() == 0
    clock.t += timedelta(seconds=61)
    assert w.run_once() == 1 and relay.sent == ["a@example.org"]


def test_the_thread_sends_on_wake_and_drain_waits_for_it(store):
    relay = Relay()
    w = worker(store, relay, lambda: datetime.now(UTC), poll=60)
    w.start()
    try:
        store.enqueue(mail("a@example.org"), datetime.now(UTC))
        assert w.drain(30) and relay.sent == ["a@example.org"]
    finally:
        w.stop()


def test_backoff_doubles_up_to_the_longest_then_gives_up():
    p = RetryPolicy(first=30, longest=100, max_attempts=4)
    assert [p.delay(n) for n in (1, 2, 3, 4)] == [30, 60, 100, None]
