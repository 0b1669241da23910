"""digest.mail.pool + digest.mail.pipelining: delivery over N connections, pipelined,
against a real SMTP server (aiosmtpd, tests/smtpserver.py). No timing is asserted: where
the order of events matters, the server holds a message on an event."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pytest
from smtpserver import SmtpServer
from test_mail_smtp import cfg, message

from digest.errors import (
    DeliveryError,
    PermanentDeliveryError,
    StoreError,
    TransientDeliveryError,
)
from digest.mail.base import Job
from digest.mail.pool import DeliveryPool, Pacer
from digest.mail.smtp import SmtpSender
from digest.models import OutgoingMessage

WAIT = 60.0  # upper bound for a step on a slow machine; never reached when things work


@dataclass
class Outcomes:
    """The pool's `done` callback: what it was told, in order (thread-safe)."""

    got: list[tuple[str, DeliveryError | None]] = field(default_factory=list)
    fail_at: int | None = None  # raise StoreError at this call (1-based), like a full disk
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, job: Job, error: DeliveryError | None) -> Callable[[], None]:
        with self.lock:
            if self.fail_at is not None and len(self.got) + 1 >= self.fail_at:
                raise StoreError("journal.jsonl: cannot append: No space left on device")
            self.got.append((job.email, error))
        return lambda: None  # "durable" at once

    def sent(self) -> list[str]:
        return [e for e, err in self.got if err is None]

    def errors(self) -> dict[str, DeliveryError]:
        return {e: err for e, err in self.got if err is not None}


def deliver(
    srv: SmtpServer,
    msgs: Iterable[OutgoingMessage],
    *,
    connections: int = 1,
    current: Callable[[str], bool] = lambda email: True,
    outcomes: Outcomes | None = None,
    pacer: Pacer | None = None,
    **smtp: object,
) -> tuple[Outcomes, DeliveryPool]:
    outcomes = outcomes if outcomes is not None else Outcomes()
    pool = DeliveryPool(
        lambda: SmtpSender(cfg(srv, **smtp)),
        connections=connections,
        done=outcomes,
        current=current,
        pacer=pacer,
    )
    with pool:
        for m in msgs:
            pool.submit(Job(m, m.to))
        pool.close()
    return outcomes, pool


def msgs(n: int, prefix: str = "user") -> list[OutgoingMessage]:
    return [message(f"{prefix}{i:03d}@example.org") for i in range(n)]


@pytest.fixture
def srv():
    with SmtpServer() as s:
        yield s


# ---------------------------------------------------------------- pipelining


@pytest.mark.parametrize("pipelining", [True, False])
def test_one_connection_delivers_everything_in_order_with_the_exact_bytes(pipelining):
    batch = msgs(30)
    with SmtpServer(pipelining=pipelining) as srv:
        out, _ = deliver(srv, batch)
    assert out.sent() == [m.to for m in batch]
    assert [r.rcpt_tos for r in srv.messages] == [[m.to] for m in batch]
    assert [r.data for r in srv.messages] == [m.data for m in batch]  # dots unstuffed back
    assert srv.connections == 1
    if pipelining:  # RCPT and DATA arrived together: the client did not wait in between
        assert srv.pipelined > 0
    else:
        assert srv.pipelined == 0


def test_a_body_with_leading_dots_survives_the_pipelined_data_phase(srv):
    m = message("dots@example.org")
    dotted = OutgoingMessage(
        m.digest_id, m.to, m.sender, m.message_id, m.data + b".\r\n..two\r\n.\r\nend\r\n"
    )
    out, _ = deliver(srv, [dotted, message("after@example.org")])
    assert out.sent() == ["dots@example.org", "after@example.org"]
    assert srv.messages[0].data == dotted.data


def test_refusals_mid_pipeline_fail_alone_and_the_session_goes_on(srv):
    srv.reply_for["gone@example.org"] = "550 5.1.1 no such user"
    srv.reply_for["busy@example.org"] = "451 4.3.0 try later"
    srv.data_reply_for["spam@example.org"] = "554 5.7.1 content rejected"
    srv.data_reply_for["full@example.org"] = "452 4.2.2 mailbox full"
    order = ["a", "gone", "b", "busy", "c", "spam", "d", "full", "e"]
    out, _ = deliver(srv, [message(f"{x}@example.org") for x in order])
    errors = out.errors()
    assert isinstance(errors["gone@example.org"], PermanentDeliveryError)
    assert "550 5.1.1 no such user" in str(errors["gone@example.org"])
    assert isinstance(errors["busy@example.org"], TransientDeliveryError)
    assert isinstance(errors["spam@example.org"], PermanentDeliveryError)
    assert isinstance(errors["full@example.org"], TransientDeliveryError)
    assert all("\n" not in str(e) for e in errors.values())
    assert [r.rcpt_tos[0][0] for r in srv.messages] == ["a", "b", "c", "d", "e"]
    assert srv.connections == 1  # RSET, not a new connection, after a refused recipient


def test_pipelined_connection_dropped_by_the_server_reconnects_and_loses_nothing(srv):
    srv.drop_after = 2  # a per-connection message limit
    batch = msgs(7)
    out, _ = deliver(srv, batch)
    assert sorted(out.sent()) == sorted(m.to for m in batch) and not out.errors()
    assert sorted(r.rcpt_tos[0] for r in srv.messages) == sorted(m.to for m in batch)
    assert srv.connections == 4


def test_pipelined_data_cut_once_is_retried_twice_is_transient(srv):
    srv.drop_next = 1
    out, _ = deliver(srv, [message("a@example.org"), message("b@example.org")])
    assert out.sent() == ["a@example.org", "b@example.org"]
    srv.messages.clear()
    srv.drop_next = 2
    out, _ = deliver(srv, [message("c@example.org"), message("d@example.org")])
    assert isinstance(out.errors()["c@example.org"], TransientDeliveryError)
    assert "connection lost twice" in str(out.errors()["c@example.org"])
    assert out.sent() == ["d@example.org"]


# ---------------------------------------------------------------- several connections


def test_while_one_connection_waits_on_the_server_the_others_deliver(srv):
    """The first message is held by the server until three others have arrived: with
    one connection that could never happen (the test would time out)."""
    gate, three = threading.Event(), threading.Event()
    srv.hold_for["user000@example.org"] = gate
    srv.on_message = lambda: three.set() if len(srv.messages) >= 3 else None
    batch = msgs(20)
    result: list[Outcomes] = []
    t = threading.Thread(target=lambda: result.append(deliver(srv, batch, connections=4)[0]))
    t.start()
    try:
        assert three.wait(WAIT), "nothing arrived while the first message was held"
        assert "user000@example.org" not in [r.rcpt_tos[0] for r in srv.messages]
    finally:
        gate.set()
        t.join(WAIT)
    assert sorted(result[0].sent()) == sorted(m.to for m in batch)
    assert len({r.connection for r in srv.messages}) >= 2
    assert srv.connections <= 4


def test_a_relay_that_allows_fewer_connections_gets_what_it_accepts(srv):
    # Every message is held until four connections were tried, so each of the four
    # threads must have tried one (two are refused); then all of it goes over two.
    gate = threading.Event()
    batch = msgs(12)
    srv.hold_for.update({m.to: gate for m in batch})
    srv.refuse_after = 2
    result: list[tuple[Outcomes, DeliveryPool]] = []
    t = threading.Thread(target=lambda: result.append(deliver(srv, batch, connections=4)))
    t.start()
    try:
        for _ in range(int(WAIT / 0.01)):
            if srv.connections >= 4:
                break
            threading.Event().wait(0.01)  # polling a condition, not timing anything
        assert srv.connections == 4
    finally:
        gate.set()
        t.join(WAIT)
    out, pool = result[0]
    assert sorted(out.sent()) == sorted(m.to for m in batch) and not out.errors()
    assert {r.connection for r in srv.messages} == {1, 2}
    (note,) = pool.notes()
    assert "2 of 4 connections could not be opened" in note and "421" in note
    assert "\n" not in note


def test_no_connection_at_all_is_the_connection_error_and_nothing_is_reported(srv):
    srv.refuse_after = 0
    out = Outcomes()
    with pytest.raises(DeliveryError, match="421") as info:
        deliver(srv, msgs(5), connections=3, outcomes=out)
    assert "\n" not in str(info.value)
    assert out.got == [] and srv.messages == []


@pytest.mark.parametrize("connections", [1, 4])
def test_smtp_that_keeps_failing_stops_after_three_transient_failures_in_a_row(srv, connections):
    for i in range(40):
        srv.reply_for[f"user{i:03d}@example.org"] = "451 4.3.0 try later"
    out = Outcomes()
    with pytest.raises(DeliveryError, match="SMTP keeps failing .*451") as info:
        deliver(srv, msgs(40), connections=connections, outcomes=out)
    assert not isinstance(info.value, TransientDeliveryError)
    # three in a row, plus at most what the other connections had in flight
    assert 3 <= len(out.got) <= 3 + (connections - 1)
    assert all(isinstance(e, TransientDeliveryError) for _, e in out.got)


def test_a_failing_record_stops_every_connection(srv):
    out = Outcomes(fail_at=5)
    with pytest.raises(StoreError, match="No space left"):
        deliver(srv, msgs(60), connections=3, outcomes=out)
    assert len(out.got) == 4
    # the failed record's message, plus at most one more per other connection
    assert 5 <= srv.received <= 5 + 2


# ---------------------------------------------------------------- the last check


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_subscriber_no_longer_active_is_skipped_and_not_reported(pipelining):
    gone = {"user003@example.org", "user007@example.org"}
    with SmtpServer(pipelining=pipelining) as srv:
        out, pool = deliver(srv, msgs(10), current=lambda e: e not in gone)
    assert pool.skipped == 2
    assert not gone & {r.rcpt_tos[0] for r in srv.messages}
    assert not gone & {e for e, _ in out.got}  # nothing to record for them
    assert len(out.sent()) == 8


def test_unsubscribed_after_its_envelope_went_out_is_abandoned_not_sent(srv):
    """Pipelined: the envelope of the next message rides with this one's data, and the
    status is asked right before the data goes out; the answer "no" then cuts the open
    transaction off (the server discards it) and the next message reconnects."""
    asked: dict[str, int] = {}

    def current(email: str) -> bool:
        asked[email] = asked.get(email, 0) + 1
        return email != "user002@example.org"

    out, pool = deliver(srv, msgs(5), current=current)
    assert asked == dict.fromkeys((f"user{i:03d}@example.org" for i in range(5)), 1)
    assert [r.rcpt_tos[0] for r in srv.messages] == [
        f"user{i:03d}@example.org" for i in (0, 1, 3, 4)
    ]
    assert pool.skipped == 1 and "user002@example.org" not in {e for e, _ in out.got}
    assert srv.connections == 2  # a new connection after the abandoned transaction


# ---------------------------------------------------------------- the rate cap


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:  # time passes only when someone waits
        with self.lock:
            self.now += seconds


def test_pacer_spaces_starts_and_saves_no_credit_while_idle():
    clock = FakeClock()
    pace = Pacer(4.0, clock=clock, sleep=clock.sleep)  # one start every 0.25 s
    stamps = []
    for _ in range(5):
        pace.acquire()
        stamps.append(clock())
    assert stamps == [100.0, 100.25, 100.5, 100.75, 101.0]
    assert not pace.acquire(wait=False)  # the next slot is not due yet: nothing taken
    clock.now += 10.0  # idle for a while
    assert pace.acquire(wait=False) and not pace.acquire(wait=False)  # no burst after idling
    with pytest.raises(ValueError):
        Pacer(0.0)


def test_max_rate_holds_over_several_connections(srv):
    clock = FakeClock()
    stamps: list[float] = []
    srv.on_message = lambda: stamps.append(clock())
    start = clock()
    out, _ = deliver(
        srv, msgs(12), connections=3, pacer=Pacer(10.0, clock=clock, sleep=clock.sleep)
    )
    assert len(out.sent()) == 12
    # message k was started no earlier than its slot k / rate after the first
    assert all(t >= start + k * 0.1 - 1e-9 for k, t in enumerate(sorted(stamps)))
    assert clock() >= start + 11 * 0.1 - 1e-9


# ---------------------------------------------------------------- international addresses


@pytest.mark.parametrize("smtputf8", [True, False])
def test_pipelined_international_addresses(smtputf8):
    batch = [message(a) for a in ("anna@bücher.de", "zoë@example.org", "b@example.org")]
    with SmtpServer(smtputf8=smtputf8) as srv:
        out, _ = deliver(srv, batch)
    got = {r.rcpt_tos[0]: r for r in srv.messages}
    assert "SMTPUTF8" not in got["anna@xn--bcher-kva.de"].mail_options
    assert got["anna@xn--bcher-kva.de"].message["To"] == "anna@xn--bcher-kva.de"
    if smtputf8:
        assert "SMTPUTF8" in got["zoë@example.org"].mail_options
        assert out.sent() == [m.to for m in batch]
    else:  # that one recipient fails, recorded as permanent; the others go
        (err,) = out.errors().values()
        assert isinstance(err, PermanentDeliveryError) and "needs SMTPUTF8" in str(err)
        assert sorted(got) == ["anna@xn--bcher-kva.de", "b@example.org"]
