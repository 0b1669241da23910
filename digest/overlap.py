"""Threads, no I/O of its own: overlaps the delivery loop's three kinds of work.

Sending a digest is mostly waiting: on the SMTP server's replies (four round trips per
message) and on the journal's fdatasync. Both waits release the GIL, so the CPU work of
the loop can run meanwhile:

  Prefetch   builds the next messages (render + build_message, pure CPU) in a producer
             thread while the sender waits on the socket. Bounded, so memory stays flat
             at 100,000 subscribers.
  Recorder   writes delivery records (store.record_digest: journal append + fdatasync)
             in order, in one thread, while the next message is being sent. At most ONE
             record is outstanding: `put` waits for the previous record to be durable.
             So a crash can leave at most two accepted messages unrecorded (the one being
             recorded and the one in flight), each re-sent once by the next run with the
             same Message-ID; without the overlap it is one.

While the loop runs, the interpreter's thread switch interval is cut from 5 ms to
20 us (`short_switch_interval`): every SMTP reply and every journal syscall wakes a thread
that must get the GIL back from the CPU-bound producer, which otherwise costs up to a
full interval. bench/e2e.py at 1,000 subscribers: send phase 48% of the smtplib floor at
0.5 ms, 57% at 100 us, 67% at 20 us.

Errors raised in a thread (a render bug, StoreError) are re-raised in the caller's
thread at the next call, and nothing after them is sent.
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_DONE = object()


@contextlib.contextmanager
def short_switch_interval(seconds: float = 0.00002) -> Iterator[None]:
    """Lower sys.setswitchinterval for the block (never raises it); restored after."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(min(old, seconds))
    try:
        yield
    finally:
        sys.setswitchinterval(old)


class Prefetch(Generic[T]):
    """Iterates `items` in a daemon thread, `depth` items ahead. Use as a context
    manager; leaving early stops the producer at its next item."""

    def __init__(self, items: Iterator[T], depth: int = 64) -> None:
        self._items = items
        self._q: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name="digest-prefetch", daemon=True)

    def _run(self) -> None:
        try:
            for item in self._items:
                if not self._offer(item):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            self._offer(_Failed(e))
            return
        self._offer(_DONE)

    def _offer(self, item: Any) -> bool:
        while not self._cancel.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __enter__(self) -> Prefetch[T]:
        self._thread.start()
        return self

    def __iter__(self) -> Iterator[T]:
        while True:
            item = self._q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item

    def __exit__(self, *exc: object) -> None:
        self._cancel.set()
        self._thread.join(timeout=5)


class Recorder:
    """Calls `record(*args)` for each `put(*args)`, in order, in one thread, with at
    most one call outstanding. `close()` (or leaving the `with`) waits for the last."""

    def __init__(self, record: Callable[..., None]) -> None:
        self._record = record
        self._q: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._idle = threading.Semaphore(1)  # held while a record is being written
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="digest-recorder", daemon=True)

    def _run(self) -> None:
        while True:
            args = self._q.get()
            if args is _DONE:
                return
            try:
                if self._error is None:  # after a failure nothing more is recorded
                    self._record(*args)
            except BaseException as e:  # noqa: BLE001 - handed to the caller, raised there
                self._error = e
            finally:
                self._idle.release()

    def check(self) -> None:
        """Raise the error of a failed record, if any (call before sending more)."""
        if self._error is not None:
            raise self._error

    def put(self, *args: Any) -> None:
        """Queue one record once the previous one is durable."""
        self._idle.acquire()
        self.check_released()
        self._q.put(args)

    def check_released(self) -> None:
        if self._error is not None:
            self._idle.release()
            raise self._error

    def wait(self) -> None:
        """Until every queued record is written; raises a record's error."""
        self._idle.acquire()
        self._idle.release()
        self.check()

    def __enter__(self) -> Recorder:
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._idle.acquire()  # the last record is written (or failed)
        self._idle.release()
        self._q.put(_DONE)
        self._thread.join()
        if exc_type is None:
            self.check()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error
