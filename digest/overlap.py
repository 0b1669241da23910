"""Threads and a child process, no I/O of their own: overlap the delivery loop's work.

Sending a digest is mostly waiting: on the SMTP server's replies and on the journal's
fdatasync. Both waits release the GIL, so the CPU work of the loop can run meanwhile:

  Forked     ranks and builds the next messages (pure CPU) in a forked child process at
             idle priority, so the building never holds this process's GIL nor takes a
             core the SMTP conversation wants: the messages come back pickled through a
             pipe (~1 MiB ahead, so memory stays flat at 100,000 subscribers). Used when
             the process has one thread (the CLI's `digest run`): forking a process with
             other threads running is unsafe.
  Prefetch   the same in a producer thread, for processes that already run threads
             (`digest serve`, `digest web`, tests driving run_daily in-process).
  Recorder   writes delivery records (run.record_many: journal append + fdatasync)
             in order, in batches: the records that the SMTP connections
             (digest/mail/pool.py) hand over while one batch is being synced share the
             next sync (group commit), written by the first connection that waits. A
             connection waits for its message's record before its next message can be
             accepted (before that one's final "."), so a crash leaves at most one
             accepted message per connection unrecorded, re-sent once by the next run
             with the same Message-ID.

A run's work comes in batches (a PostgreSQL worker claims its subscribers a leased batch
at a time): `Feed` hands the builder its batches on demand, claimed by this process when
the builder asks (a feeder thread answers the child over a second pipe). So one child,
one set of SMTP connections and one Recorder serve the whole run, and a batch is claimed
only when the builder is about to need it (a worker holds little that others could send).

While the loop runs, the interpreter's thread switch interval is cut from 5 ms to
20 us (`short_switch_interval`): every SMTP reply and every journal syscall wakes a thread
that must get the GIL back from the other one (or from the producer thread), which
otherwise costs up to a full interval. bench/e2e.py with the producer thread, 1,000
subscribers: send phase 48% of the smtplib floor at 0.5 ms, 57% at 100 us, 67% at 20 us.
With the forked builder and the leaner store lock, 10,000 subscribers: 76-84%.

Errors raised in a thread or the child (a render bug, StoreError) are re-raised in the
caller's thread at the next call, and nothing after them is sent. A child that dies (OOM
killer) ends the iteration with a one-line DigestError; what was sent stays recorded.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
import pickle
import queue
import signal
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from digest.errors import DigestError

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


B = TypeVar("B")
# Builds the items from a batch getter (number -> batch, None past the last), leaving out
# the first `skip` items (already delivered when the parent takes over): skipping must not
# build them again.
Make = Callable[[Callable[[int], Any], int], Iterator[T]]


class Feed(Generic[B]):
    """The batches of a run, pulled on demand: `get(i)` is batch i (None past the last),
    taken from `pull` (None: no more) the first time anyone asks for it and kept, so the
    same batches can be built again in this process (Forked's fallback). Thread-safe."""

    def __init__(self, pull: Callable[[], B | None]) -> None:
        self._pull = pull
        self._got: list[B] = []
        self._ended = False
        self._lock = threading.Lock()

    def get(self, i: int) -> B | None:
        with self._lock:
            while len(self._got) <= i and not self._ended:
                batch = self._pull()
                if batch is None:
                    self._ended = True
                else:
                    self._got.append(batch)
            return self._got[i] if i < len(self._got) else None


def ahead(items: Iterator[T] | Make[T], feed: Feed[Any] | None = None) -> Forked[T] | Prefetch[T]:
    """Iterate `items` ahead of the caller: in a forked child when this process has no
    other thread (safe to fork), else in a thread. With a `feed`, `items` is a function
    that makes the iterator from a batch getter (`feed.get`, or in the child its stand-in
    asking this process over a pipe) and a number of items to skip (see `Make`)."""
    if Forked.available():
        return Forked(items, feed=feed)
    if feed is None:
        assert not callable(items)
        return Prefetch(items)
    assert callable(items)
    return Prefetch(items(feed.get, 0))


class Forked(Generic[T]):
    """Iterates `items` in a forked child process; each item comes back pickled through a
    pipe. The child starts from a copy of this process, so `items` (a lazy generator over
    data already in memory) needs no pickling; only what it yields is sent. Use as a
    context manager; leaving (early or not) kills and reaps the child.

    The child ignores SIGINT/SIGTERM (the parent decides when to stop and then closes the
    pipe) and never touches anything but the pipe: no store, no sockets, no atexit.

    The child runs at idle priority (Linux SCHED_IDLE, else nice 10) where it could be
    moved back (`_may_leave_idle`: CAP_SYS_NICE or RLIMIT_NICE; else, as for a non-root
    service or a default Docker container, at the normal priority from the start, as if
    promoted, so it is never replaced): it is far ahead, and
    on a small box the SMTP conversation (this process and the server) must never wait for
    a core behind it. Send phase as a share of the smtplib floor, 4,000 subscribers, 4
    interleaved runs per variant, two sessions: nice 10 75-79%, nice 19 75%, nice 19 +
    SCHED_BATCH 85%, SCHED_IDLE 86-91%.
    An idle-priority child starves on a box that is busy with other work; then this
    process waits on the pipe. When those waits pass `watch.after` seconds and
    `watch.share` of the time since the first item, the child is moved to the normal
    priority every other process has (`promote`; Linux lets only a privileged process,
    or one whose RLIMIT_NICE allows nice 0, leave SCHED_IDLE), and it then builds the
    rest: at the normal priority a wait means the box is busy, which building here would
    not cure (three workers on two cores: falling back then rebuilt every item taken and
    made some runs twice as slow). When it cannot be promoted after all, it is stopped
    and the rest is built here, in this process (past the items it already delivered:
    with a `feed`, `items(get, skip)` leaves them out without building them; a plain
    iterator is run past them; with several SMTP connections the building then shares
    this process's GIL with them). `clock` (read right before and right after each
    wait), `watch`, `promote` and `idle` are injectable, so tests decide what "slow" is
    instead of depending on the machine."""

    PIPE_BYTES = 1 << 20  # how far ahead the child may run (Linux F_SETPIPE_SZ; best effort)

    def __init__(
        self,
        items: Iterator[T] | Make[T],
        *,
        feed: Feed[Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        watch: Starvation | None = None,
        promote: Callable[[int], bool] | None = None,
        idle: bool | None = None,
    ) -> None:
        if feed is None:  # a plain iterator: no batches, skipping runs it past the items
            assert not callable(items)
            plain = items
            self._make: Make[T] = lambda get, skip: itertools.islice(plain, skip, None)
        else:
            assert callable(items)
            self._make = items
        self._feed = feed
        self._feeder: threading.Thread | None = None
        self._asks = self._answers = -1  # the parent's ends of the feed pipes
        self._pid = 0
        self._reader: Any = None
        self._clock = clock
        # a quick first look: promoting costs nothing, so there is no reason to wait long
        self.watch = watch if watch is not None else Starvation(after=0.5)
        self._promote = promote if promote is not None else _normal_priority
        # Idle priority only where the child can be moved back (see the docstring); else
        # it starts at the normal priority, as if promoted at once.
        self._idle = idle if idle is not None else promote is not None or _may_leave_idle()
        self.promoted = not self._idle  # True once the child runs at the normal priority
        self.starved = False  # True once the rest was built in this process

    @staticmethod
    def available() -> bool:
        return hasattr(os, "fork") and threading.active_count() == 1

    def __enter__(self) -> Forked[T]:
        r, w = os.pipe()
        _grow_pipe(w, self.PIPE_BYTES)
        ask_r = ask_w = answer_r = answer_w = -1
        if self._feed is not None:
            ask_r, ask_w = os.pipe()  # child -> parent: the number of the batch it wants
            answer_r, answer_w = os.pipe()  # parent -> child: that batch, pickled
        gc.freeze()  # the child's collections then leave the shared pages alone
        try:
            pid = os.fork()
        finally:
            gc.unfreeze()
        if pid == 0:  # pragma: no cover - runs in the child, which leaves by os._exit
            os.close(r)
            get: Callable[[int], Any] = _no_batch
            if self._feed is not None:
                os.close(ask_r)
                os.close(answer_w)
                get = _Asker(ask_w, answer_r)
            items = self._make(get, 0)
            os._exit(_produce(items, w, keep=(ask_w, answer_r), idle=self._idle))
        os.close(w)
        self._pid = pid
        self._reader = os.fdopen(r, "rb", buffering=1 << 16)
        if self._feed is not None:
            os.close(ask_w)
            os.close(answer_r)
            self._asks, self._answers = ask_r, answer_w
            self._feeder = threading.Thread(
                target=self._answer, args=(self._feed,), name="digest-feed", daemon=True
            )
            self._feeder.start()
        return self

    def _answer(self, feed: Feed[Any]) -> None:
        """The feeder thread: each batch the child asks for, pulled here (a claim, store
        reads) and sent; a failure is sent instead (the child raises it and hands it back
        through the items pipe). Ends when the child is gone."""
        try:
            with os.fdopen(self._answers, "wb", closefd=False) as out:
                while len(ask := _read_exactly(self._asks, 8)) == 8:
                    (i,) = struct.unpack("!Q", ask)
                    try:
                        answer: tuple[str, Any] = ("batch", feed.get(i))
                    except BaseException as e:  # noqa: BLE001 - raised in the child, then here
                        answer = ("error", e)
                    pickle.dump(answer, out, protocol=pickle.HIGHEST_PROTOCOL)
                    out.flush()
        except (OSError, ValueError):  # the child died or the parent closed the pipes
            return

    def __iter__(self) -> Iterator[T]:
        taken = 0
        while True:
            asked = self._clock()
            try:
                kind, payload = pickle.load(self._reader)
            except (EOFError, pickle.UnpicklingError, OSError) as e:
                raise DigestError(
                    f"the message builder process stopped unexpectedly "
                    f"({self._exit_status(isinstance(e, EOFError))}); what was sent is "
                    f"recorded, the rest is left for the next run"
                ) from e
            # Once promoted, the child runs at the priority of everything else: waiting
            # on it then means the box is busy, and building here would take the same
            # cores (and this process's GIL from its connections), after first building
            # again every item already taken. So it is watched only until then.
            starving = not self.promoted and self.watch.observe(asked, self._clock())
            if kind == "done":
                return
            if kind == "error":
                raise payload
            yield payload
            taken += 1
            if starving and self._promote(self._pid):
                self.promoted = True
                continue
            if starving:
                self.starved = True
                self.__exit__()  # stop the child; build the rest in this process
                # the same batches (the feed keeps them), past what was taken
                yield from self._make(_no_batch if self._feed is None else self._feed.get, taken)
                return

    def _exit_status(self, eof: bool) -> str:
        """How the child ended. At EOF it has closed the pipe, which it does only by
        exiting: wait for that (no deadline: under load a dying idle-priority process
        may take a while to be scheduled). Otherwise (unreadable data) kill it first."""
        if not eof:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
        try:
            _, status = os.waitpid(self._pid, 0)
        except ChildProcessError:
            return "already reaped"
        self._pid = 0
        if not eof:
            return "it sent unreadable data"
        if os.WIFSIGNALED(status):
            return f"killed by signal {os.WTERMSIG(status)}"
        return f"exit code {os.waitstatus_to_exitcode(status)}"

    def __exit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.close()  # a child still writing gets EPIPE and leaves
            self._reader = None
        if self._pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._pid, 0)
            self._pid = 0
        if self._feeder is not None:  # the child is gone: its ask pipe is at EOF
            self._feeder.join(timeout=60)  # (it may be finishing a claim)
            self._feeder = None
        for fd in (self._asks, self._answers):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._asks = self._answers = -1


class Starvation:
    """Pure: no I/O. When the builder child counts as starving: after the waits for its
    items pass `after` seconds in total AND `share` of the time since the first item
    (whose wait is start-up, not starvation). Times are readings of one clock."""

    def __init__(self, after: float = 2.0, share: float = 0.3) -> None:
        self.after, self.share = after, share
        self.waited = 0.0
        self._start: float | None = None

    def observe(self, asked: float, got: float) -> bool:
        """One item, asked for at `asked`, received at `got`: True when starving."""
        if self._start is None:
            self._start = got
            return False
        self.waited += got - asked
        return self.waited > self.after and self.waited > self.share * (got - self._start)


def _produce(
    items: Iterator[Any], fd: int, keep: tuple[int, ...] = (), idle: bool = True
) -> int:  # pragma: no cover - child process
    """The child's whole life: pickle each item into `fd`; returns the exit code. `keep`:
    the feed's pipes (-1: none), the only other descriptors it keeps; `idle`: run at idle
    priority."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if idle:
        _idle_priority()
    # Drop every inherited descriptor but the pipe and stdio: the store's locks (flock
    # belongs to the open file), the SMTP socket, the journal. A parent killed mid-run
    # then leaves nothing held by a child that is still finishing a write.
    top = os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 1024
    start = 3
    for k in sorted({fd, *(k for k in keep if k >= 0)}):
        os.closerange(start, k)
        start = k + 1
    os.closerange(start, top)
    try:
        with os.fdopen(fd, "wb", buffering=1 << 16) as out:
            try:
                for item in items:
                    pickle.dump(("item", item), out, protocol=pickle.HIGHEST_PROTOCOL)
                    out.flush()
                pickle.dump(("done", None), out)
            except BrokenPipeError:
                raise
            except BaseException as e:  # noqa: BLE001 - handed to the parent, raised there
                try:
                    blob = pickle.dumps(("error", e), protocol=pickle.HIGHEST_PROTOCOL)
                except Exception:  # noqa: BLE001 - an unpicklable error: send its text
                    text = "".join(traceback.format_exception(e)).strip()
                    blob = pickle.dumps(("error", RuntimeError(text)))
                out.write(blob)
                out.flush()
                return 1
        return 0
    except BrokenPipeError:  # the parent stopped reading: nothing left to do
        return 0
    except BaseException:  # noqa: BLE001 - never let the child run the parent's code on
        return 1


def _no_batch(i: int) -> None:
    """The batch getter of a Forked without a feed: there are none."""
    return None


class _Asker:  # pragma: no cover - child process
    """The child's stand-in for `Feed.get`: asks the parent's feeder thread for batch i."""

    def __init__(self, ask: int, answers: int) -> None:
        self._ask = ask
        self._answers = os.fdopen(answers, "rb", buffering=1 << 16)

    def __call__(self, i: int) -> Any:
        os.write(self._ask, struct.pack("!Q", i))
        kind, payload = pickle.load(self._answers)
        if kind == "error":
            raise payload
        return payload


def _read_exactly(fd: int, n: int) -> bytes:
    """n bytes from fd, fewer only at EOF."""
    got = b""
    while len(got) < n:
        part = os.read(fd, n - len(got))
        if not part:
            break
        got += part
    return got


def _idle_priority() -> None:  # pragma: no cover - child process
    """Run only when a core would otherwise idle (see Forked's docstring)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux, or refused: the next best thing
        with contextlib.suppress(OSError):
            os.nice(10)


def _may_leave_idle() -> bool:
    """Whether a child of this process could be moved back from idle priority (Linux:
    CAP_SYS_NICE, which root has on a plain host but not in a default Docker container,
    or an RLIMIT_NICE of 20). Read from /proc and getrlimit: nothing is changed."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NICE)[0]
        if soft == resource.RLIM_INFINITY or soft >= 20:
            return True
    except (ImportError, AttributeError, OSError, ValueError):
        pass
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            caps = next((ln.split()[1] for ln in f if ln.startswith("CapEff:")), "0")
        return bool(int(caps, 16) >> 23 & 1)  # CAP_SYS_NICE
    except (OSError, ValueError):
        return False


def _normal_priority(pid: int) -> bool:
    """Move the child from SCHED_IDLE (or nice 10) to the normal policy at nice 0; False
    when not allowed (see Forked's docstring) or not Linux."""
    try:
        os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))
        os.setpriority(os.PRIO_PROCESS, pid, 0)
    except (AttributeError, OSError):
        return False
    return True


def _grow_pipe(fd: int, size: int) -> None:
    try:
        import fcntl
    except ImportError:  # not POSIX: no fork either
        return
    setpipe = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux only
    if setpipe is None:
        return
    with contextlib.suppress(OSError):  # above /proc/sys/fs/pipe-max-size: keep the default
        fcntl.fcntl(fd, setpipe, size)


class Recorder:
    """Writes delivery records in order, in batches (group commit): one call of
    `record_many(batch)` makes every record queued meanwhile durable together (one journal
    append, one fdatasync).

    `put(record)` queues one record and returns its number; `durable(n)` returns once
    record n is written. Whoever waits first while no write is running writes everything
    queued so far itself (the leader); whoever comes while it writes waits and is done
    with it or leads the next write. An SMTP connection puts and waits for each accepted
    message before writing its next one (at most one unrecorded message per connection);
    the records of digests that are not mailed (empty, unbuildable) are only queued, and
    go out with the next write (or by the putter once FLUSH_AT are queued, or on leaving
    the `with`). With N connections sharing each fdatasync instead of queueing for N in a
    row, a 2-4 ms sync on a busy disk no longer caps 8 connections at ~250 msg/s; and the
    leader writes in its own thread: no hand-over to a writer thread and back.

    After a failed write nothing more is written: its error is raised by the next `put`,
    `durable`, `check` and on leaving the `with`."""

    FLUSH_AT = 512  # queued records the putter writes itself when nobody else does

    def __init__(self, record_many: Callable[[list[Any]], None]) -> None:
        self._record_many = record_many
        self._lock = threading.Lock()
        self._written_cv = threading.Condition(self._lock)
        self._pending: list[Any] = []
        self._queued = 0  # records put so far
        self._written = 0  # records durable so far: always the first _written put
        self._writing = False  # a leader is writing a batch (without the lock)
        self._error: BaseException | None = None

    def check(self) -> None:
        """Raise the error of a failed record, if any (call before sending more)."""
        if self._error is not None:
            raise self._error

    def put(self, record: Any) -> int:
        """Queue one record (for `record_many`); returns its number for `durable`."""
        with self._lock:
            self.check()
            self._pending.append(record)
            self._queued += 1
            n = self._queued
            flush = len(self._pending) >= self.FLUSH_AT and not self._writing
        if flush:
            self.durable(n)
        return n

    def durable(self, n: int) -> None:
        """Until record number `n` is written (writing the queue if nobody is); raises
        a record's error instead."""
        with self._lock:
            while self._written < n:
                self.check()
                if self._writing:
                    self._written_cv.wait()
                    continue
                self._writing = True
                batch, self._pending = self._pending, []
                self._lock.release()
                try:
                    self._record_many(batch)
                except BaseException as e:  # noqa: BLE001 - raised here and to every waiter
                    self._error = e
                finally:
                    self._lock.acquire()
                    self._writing = False
                    self._written_cv.notify_all()
                self.check()
                self._written += len(batch)

    def wait(self) -> None:
        """Until every queued record is written; raises a record's error."""
        self.durable(self._queued)
        self.check()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.wait()
            return
        with contextlib.suppress(Exception):  # the caller's error wins; keep what we can
            self.wait()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error
