"""I/O edge: the web service's mail worker. It sends what the store's mail queue holds.

A subscribe request is answered only once its subscriber change and its mail are in the
store (one atomic write, `update_subscriber` with a `Change`). This worker claims queued
messages with a lease (`claim_mail`), sends them through the configured Sender and
marks each sent, or puts it back due after a backoff (`mail_failed`, retry_at). The
queue lives in the store, so a restart, a kill -9 or a relay that refuses connections
loses nothing: a killed worker's claims come back when their lease ends, and an
unreachable relay gets the mail when it is back. A permanent refusal (5xx) or
`max_attempts` failures give the message up (kept and counted; /healthz shows it).

    worker = MailWorker(store, lock, sender_factory, clock)
    worker.start(); worker.wake(); worker.drain(timeout); worker.stop()
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from digest.errors import DeliveryError, TransientDeliveryError
from digest.mail.base import Sender
from digest.store import Store
from digest.store.base import QueuedMail

log = logging.getLogger("digest.web")
Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff of a failed message: `first` seconds, doubling up to `longest`; given up
    after `max_attempts` sends."""

    first: float = 30.0
    longest: float = 3600.0
    max_attempts: int = 12

    def delay(self, attempts: int) -> float | None:
        """Seconds before the next try after `attempts` tries, None: give up. Pure."""
        if attempts >= self.max_attempts:
            return None
        return float(min(self.longest, self.first * 2 ** max(0, attempts - 1)))


class MailWorker:
    """One thread sending the store's queued mail (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        lock: AbstractContextManager[object],
        sender_factory: Callable[[], Sender],
        clock: Clock = _utcnow,
        *,
        policy: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen
        lease: float = 120.0,
        poll: float = 5.0,
        prune_every: float = 3600.0,
    ):
        self.store, self.lock, self.factory, self.clock = store, lock, sender_factory, clock
        self.policy, self.lease, self.poll = policy, lease, poll
        self.prune_every = prune_every
        self._pruned: datetime | None = None
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.failures = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="digest-web-mail", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Look at the queue now (a message was just queued)."""
        if not self._stop.is_set():
            self.start()
        self._idle.clear()
        self._wake.set()

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until the worker found nothing due (tests, shutdown). True if it did."""
        self.wake()
        return self._idle.wait(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # --- the loop
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            if self.run_once():
                continue
            self._idle.set()
            self._wake.wait(self.poll)

    def run_once(self) -> int:
        """Claim one batch of due messages and send it; the number claimed (0: none due).
        Also prunes the store (expired pending subscriptions, limits, nonces) once every
        `prune_every` seconds, so a web-only site stays small too."""
        self.maybe_prune()
        try:
            with self.lock:
                batch = self.store.claim_mail(self.clock(), lease=self.lease, limit=20)
        except Exception as e:  # noqa: BLE001 - a store hiccup must not end the worker
            log.error("mail queue: cannot claim mail: %s", e)
            return 0
        if batch:
            self._send(batch)
        return len(batch)

    def maybe_prune(self) -> bool:
        now = self.clock()
        if self._pruned is not None and (now - self._pruned).total_seconds() < self.prune_every:
            return False
        self._pruned = now
        try:
            with self.lock:
                self.store.prune(now.date(), now)
        except Exception as e:  # noqa: BLE001 - housekeeping must not end the worker
            log.error("web: store prune failed: %s", e)
        return True

    def _send(self, batch: list[QueuedMail]) -> None:
        settled: set[str] = set()
        try:
            sender = self.factory()
            with sender:
                for qm in batch:
                    if self._stop.is_set():  # leave the rest claimed: the lease returns them
                        return
                    try:
                        sender.send(qm.message)
                    except TransientDeliveryError as e:
                        self._failed(qm, str(e), transient=True)
                    except DeliveryError as e:  # a permanent refusal of this one message
                        self._failed(qm, str(e), transient=False)
                    else:
                        with self.lock:
                            self.store.mail_sent(qm.id)
                        self.sent += 1
                    settled.add(qm.id)
        except (DeliveryError, OSError) as e:  # no connection: every unsent one waits
            left = [qm for qm in batch if qm.id not in settled]
            log.warning("mail queue: relay unavailable (%s): %d message(s) wait", e, len(left))
            for qm in left:
                self._failed(qm, str(e), transient=True)

    def _failed(self, qm: QueuedMail, detail: str, *, transient: bool) -> None:
        self.failures += 1
        delay = self.policy.delay(qm.attempts) if transient else None
        retry_at = None if delay is None else self.clock() + timedelta(seconds=delay)
        if retry_at is None:
            log.error("mail to %s given up: %s", qm.message.to, detail)
        with self.lock:
            self.store.mail_failed(qm.id, detail[:500], retry_at)
