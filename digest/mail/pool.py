"""I/O edge (threads around the senders): deliver over N connections at once.

    with DeliveryPool(open_sender, connections=4, done=record, current=is_active,
                      pacer=Pacer(50.0), stop=sigterm_event) as pool:
        for job in jobs:
            pool.submit(job)      # waits while 2*N jobs are queued; raises the pool's error
        pool.close()              # every job attempted or given up; raises the pool's error

One thread per connection, each with its own Sender (opened at its first job, so a day
without mail never contacts the server) running its connection loop over this pool as
its Feed (digest/mail/base.py): SMTP pipelines where the server offers it
(digest/mail/pipelining.py). The threads spend their time waiting on the server, which
releases the GIL.

Exactly-once: `done` (the caller's record) runs in the connection's thread right after
the server's verdict; it queues the record and returns `durable`, which the connection
calls before its next message can be accepted (pipelined: before that message's final
".", so the record's sync overlaps the transfer of the next message's data). So a
kill -9 leaves at most one accepted, unrecorded message per connection: at most
`connections` digests are sent twice, with the same Message-ID.

Failures:
- a connection that cannot be opened gives its job back; the run goes on over the others
  (a relay may allow fewer connections; a note says so). When none can be opened, the
  pool fails with that connection error (nothing was sent, nothing recorded).
- MAX_TRANSIENT transient failures in a row, over all connections in the order they
  happen, mean the server is gone: the pool stops ("SMTP keeps failing"); the jobs still
  queued are left unrecorded for the next run.
- an error in `done` (the store cannot record) stops the pool at once.
- `stop` (an Event: `digest serve` got SIGTERM) works like stop(): every connection
  finishes the message it has in flight and sends nothing more.
Right before a message is committed `current(email)` is asked whether its subscriber
is still active (an unsubscribe acknowledged mid-run must stick); a job whose
subscriber is not is dropped, counted in `skipped`, and nothing is recorded for it.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

from digest.errors import DeliveryError, TransientDeliveryError
from digest.mail.base import Job, Sender

MAX_TRANSIENT = 3  # transient failures in a row after which the server is taken to be gone


class Pacer:
    """At most `rate` starts per second, shared by every connection ([smtp] max_rate):
    start k is not before k / rate seconds after the first. No credit is saved up while
    idle, so no burst goes over the rate. `clock` and `sleep` are injectable (tests)."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate > 0:
            raise ValueError("rate must be > 0")
        self.interval = 1.0 / rate
        self._clock, self._sleep = clock, sleep
        self._next = -math.inf
        self._lock = threading.Lock()

    def acquire(self, wait: bool = True) -> bool:
        """Take the next slot, sleeping until it comes; without `wait`, take it only if it
        is due now (False: nothing taken)."""
        with self._lock:
            now = self._clock()
            slot = max(self._next, now)
            if slot > now and not wait:
                return False
            self._next = slot + self.interval
        if slot > now:
            self._sleep(slot - now)
        return True


class DeliveryPool:
    """See the module docstring. Implements digest.mail.base.Feed for its connections."""

    def __init__(
        self,
        open_sender: Callable[[], Sender],
        *,
        connections: int,
        done: Callable[[Job, DeliveryError | None], Callable[[], None]],
        current: Callable[[str], bool],
        pacer: Pacer | None = None,
        depth: int | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self._open = open_sender
        self._outcome = done
        self._current = current
        self._pacer = pacer
        self._stop = stop  # set from outside (SIGTERM): like stop(), seen by every connection
        self.connections = max(1, connections)
        self._depth = depth or 2 * self.connections
        self._lock = threading.Lock()
        self._has_work = threading.Condition(self._lock)  # workers wait here
        self._has_room = threading.Condition(self._lock)  # submit waits here
        self._queue: deque[Job] = deque()
        self._closed = False  # no more jobs will come
        self._stopping = False  # queued jobs are abandoned (an error, or stop())
        self._error: BaseException | None = None
        self._alive = 0
        self._opened = 0  # connections opened at least once
        self._open_errors: list[DeliveryError] = []
        self._in_row = 0
        self.skipped = 0  # dropped at the last check: the subscriber is no longer active
        self.abandoned = 0  # not attempted because the pool stopped (left for the next run)
        self._threads = [
            threading.Thread(target=self._work, name=f"digest-smtp-{i}", daemon=True)
            for i in range(self.connections)
        ]

    # ---------------------------------------------------------------- the caller's side

    def __enter__(self) -> DeliveryPool:
        self._alive = len(self._threads)
        for t in self._threads:
            t.start()
        return self

    def submit(self, job: Job) -> bool:
        """Queue `job`; False when the pool is stopping (the job is abandoned)."""
        with self._lock:
            while len(self._queue) >= self._depth and not self._stopping:
                self._has_room.wait()
            self._raise()
            if self._stopping:
                self.abandoned += 1
                return False
            self._queue.append(job)
            self._has_work.notify()
            return True

    def check(self) -> None:
        """Raise the pool's error, if any (call between submits)."""
        with self._lock:
            self._raise()

    def stop(self) -> None:
        """Abandon the queued jobs; what is in flight finishes and is recorded."""
        with self._lock:
            self._stopping = True
            self.abandoned += len(self._queue)
            self._queue.clear()
            self._has_work.notify_all()
            self._has_room.notify_all()

    def close(self) -> None:
        """No more jobs: wait for the queue to be delivered, then raise the pool's error."""
        with self._lock:
            self._closed = True
            self._has_work.notify_all()
        self._join()
        with self._lock:
            self._raise()

    def notes(self) -> list[str]:
        """One line per thing the run report should say (connections that failed)."""
        if self._open_errors and self._opened:
            n = len(self._open_errors)
            return [
                f"SMTP: {n} of {self.connections} connections could not be opened, sent "
                f"over {self._opened} ({self._open_errors[0]})"
            ]
        return []

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:  # the caller's error wins; stop sending and wait for what is in flight
            self.stop()
            self._join()

    def _join(self) -> None:
        for t in self._threads:
            if t.is_alive() or t.ident is not None:
                t.join()

    def _raise(self) -> None:  # lock held
        if self._error is not None:
            raise self._error

    def _fail(self, error: BaseException) -> None:  # lock held
        if self._error is None:
            self._error = error
        self._stopping = True
        self._has_work.notify_all()
        self._has_room.notify_all()

    # ---------------------------------------------------------------- Feed (connections)

    def take(self, wait: bool) -> Job | None:
        with self._lock:
            while not self._queue:
                if self._stopping or self._closed or not wait:
                    return None
                self._has_work.wait()
            if self._stopping:
                return None
            if not wait and self._pacer is not None and not self._pacer.acquire(wait=False):
                return None
            job = self._queue.popleft()
            self._has_room.notify()
        if wait and self._pacer is not None:
            self._pacer.acquire()  # outside the lock: other connections go on meanwhile
        return job

    def wanted(self, job: Job) -> bool:
        if self._stop is not None and self._stop.is_set() and not self._stopping:
            self.stop()
        if self._stopping:
            with self._lock:
                self.abandoned += 1
            return False
        if self._current(job.email):
            return True
        with self._lock:
            self.skipped += 1
        return False

    def done(self, job: Job, error: DeliveryError | None) -> Callable[[], None]:
        durable = self._outcome(job, error)  # queues the record; raises: stop this connection
        with self._lock:
            if not isinstance(error, TransientDeliveryError):
                self._in_row = 0
            else:
                self._in_row += 1
                if self._in_row >= MAX_TRANSIENT:
                    gone = DeliveryError(
                        f"SMTP keeps failing ({error}); the rest is left for the next run"
                    )
                    gone.__cause__ = error
                    self._fail(gone)
        return durable

    # ---------------------------------------------------------------- one connection

    def _work(self) -> None:
        try:
            job = self.take(wait=True)
            if job is None:
                return
            sender = self._open()
            try:
                sender.__enter__()
            except DeliveryError as e:
                with self._lock:  # give the job back: another connection may take it
                    self._queue.appendleft(job)
                    self._open_errors.append(e)
                    self._has_work.notify()
                return
            with self._lock:
                self._opened += 1
            try:
                stream = getattr(sender, "stream", None)
                if stream is not None:
                    stream(self, job)
                else:
                    from digest.mail.pipelining import plain

                    plain(sender, self, job)
            finally:
                sender.__exit__(None, None, None)
        except BaseException as e:  # noqa: BLE001 - handed to the caller, raised there
            with self._lock:
                self._fail(e)
        finally:
            with self._lock:
                self._alive -= 1
                if self._alive == 0 and not self._stopping and (self._queue or not self._closed):
                    # every connection failed to open: nothing can be sent this run
                    self._fail(
                        self._open_errors[0]
                        if self._open_errors
                        else DeliveryError("SMTP: no connection left to send over")
                    )
                self._has_room.notify_all()
