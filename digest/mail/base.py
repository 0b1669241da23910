"""Pure: the sending interface. SMTP and the outbox folder implement it; the delivery
pool (digest/mail/pool.py) drives one Sender per connection through a Feed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from digest.errors import DeliveryError
from digest.models import OutgoingMessage


class Sender(Protocol):
    """A context manager that delivers built messages one at a time.

    `send` returns normally only when the message was accepted (SMTP 250 for that
    recipient, or the file is on disk). Otherwise it raises TransientDeliveryError
    (4xx, dropped connection that a reconnect could not fix: retry next run) or
    PermanentDeliveryError (5xx: never retry). Connection set-up failures on enter raise
    DeliveryError with a one-line message (e.g. "SMTP mail.example.org:587: connection
    refused").

    A Sender may also offer `stream(feed, first)`: deliver `first` and then whatever
    `feed.take` hands out, reporting each outcome to `feed.done`, until `take` answers
    None. The SMTP sender does, to pipeline commands (RFC 2920); for the others the pool
    runs the plain loop (take, `wanted`, send, done).
    """

    name: str

    def __enter__(self) -> Sender: ...
    def __exit__(self, *exc: object) -> None: ...
    def send(self, msg: OutgoingMessage) -> None: ...


@dataclass(slots=True, eq=False)
class Job:
    """One message for the pool. `email` is the subscriber's address as the store knows
    it (for the status check right before sending); `ref` is the caller's own data (the
    pipeline's record fields); `drops` counts connections lost while sending it."""

    msg: OutgoingMessage
    email: str
    ref: Any = None
    drops: int = 0


class Feed(Protocol):
    """What one connection pulls its work from and reports to (the pool implements it;
    every method is safe to call from any connection's thread)."""

    def take(self, wait: bool) -> Job | None:
        """The next job, its rate slot taken ([smtp] max_rate). None: no more work (with
        `wait`), or none right now (without `wait`: then nothing is reserved)."""
        ...

    def wanted(self, job: Job) -> bool:
        """Still to be sent, asked right before the message is committed: False when its
        subscriber is no longer active, or the run is stopping. A False job is dropped:
        not sent, not reported to `done`."""
        ...

    def done(self, job: Job, error: DeliveryError | None) -> Callable[[], None]:
        """The outcome of a job that was attempted: None when the server accepted it.
        Queues its record and returns `durable`, which returns once that record is on
        disk (raises if it cannot be). A connection calls it before its next message can
        be accepted: before that message's final "." (or its send). Raises to stop this
        connection."""
        ...
