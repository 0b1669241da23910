"""I/O edge: the long-running `digest serve` process (APScheduler 3.x, signals, web thread).

One process owns the store: the scheduler thread runs the daily job, the optional web
thread serves subscribe/unsubscribe pages, both on the same open store.

The job is a *tick*. It fires at every send instant in use (the configured [schedule]
time and every subscriber's own hour and zone), at least once an hour (to retry
deferred mail and pick up subscribers added meanwhile), and once at start. Each tick asks
the delivery records who is owed what (plan.catch_up_plan) and calls
`run_daily(cfg, day, only=...)` once per owed day. So a tick that fires twice, late, or
after a crash does the right thing: the records, not the scheduler's memory, decide.

Never two runs at once: max_instances=1 on the job, a non-blocking lock around the tick,
and the store's inter-process run lock inside run_daily (a manual `digest run` meanwhile
makes the tick skip, logged, and retry at the next recheck).
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from filelock import FileLock, Timeout

from digest.config import Config
from digest.errors import AllSourcesFailed, DigestError, StoreLocked
from digest.models import RunReport
from digest.schedule.plan import DueGroup, Slot, catch_up_plan, grace, next_send, slots
from digest.store.base import Store

log = logging.getLogger("digest.serve")

Clock = Callable[[], datetime]
RunDaily = Callable[..., RunReport]

JOB_ID = "daily-digest"
RECHECK = timedelta(hours=1)


def utcnow() -> datetime:
    return datetime.now(UTC)


class SendTimesTrigger(BaseTrigger):  # type: ignore[misc]
    """Fires at every send instant of `slots_fn()` and at every whole `recheck` (UTC).

    `slots_fn` is read at each computation, so subscribers who pick a new hour on the web
    are scheduled without a restart (at the latest from the next recheck).
    """

    def __init__(self, slots_fn: Callable[[], Iterable[Slot]], recheck: timedelta = RECHECK):
        self.slots_fn = slots_fn
        self.recheck = recheck

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime:
        start = (previous_fire_time or now).astimezone(UTC)
        if previous_fire_time is None:  # inclusive of `now` for the first computation
            start -= timedelta(microseconds=1)
        recheck = next_recheck(start, self.recheck)
        try:
            slot_set = set(self.slots_fn())
        except Exception as e:
            # An exception here would kill the scheduler thread: APScheduler 3 computes
            # fire times outside any job's error handling.
            log.warning(
                "cannot read the send times (%s); checking again at %s", e, recheck.isoformat()
            )
            return recheck
        return min(next_send(start, slot_set), recheck)

    def __str__(self) -> str:
        return f"send times, rechecked every {self.recheck}"


def next_recheck(after: datetime, every: timedelta) -> datetime:
    """The next whole multiple of `every` since the epoch, strictly after `after`."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    n = (after - epoch) // every + 1
    return epoch + n * every


class Service:
    """The tick and its scheduler. Construct with a store; `clock` and `run` are injectable."""

    def __init__(
        self,
        cfg: Config,
        store: Store,
        *,
        clock: Clock = utcnow,
        run: RunDaily | None = None,
        recheck: timedelta = RECHECK,
    ):
        if run is None:
            from digest.pipeline import run_daily

            run = run_daily
        self.cfg, self.store, self.clock, self.run = cfg, store, clock, run
        self.recheck = recheck
        self.stop = threading.Event()  # set on SIGTERM: run_daily finishes the message in flight
        self._busy = threading.Lock()
        self.runs = 0  # ticks that called run_daily at least once

    # ------------------------------------------------------------------ planning

    def slots(self) -> set[Slot]:
        return slots(self.store.subscribers(), self.cfg.schedule)

    def plan(self) -> list[DueGroup]:
        return catch_up_plan(
            self.clock(), self.store.subscribers(), self.cfg.schedule, self.store.digests_for_day
        )

    def next_run(self) -> datetime:
        now = self.clock()
        return now if self.plan() else next_send(now, self.slots())

    # ------------------------------------------------------------------ the job

    def tick(self) -> list[RunReport]:
        """Run every owed day's digest; return the reports. Never raises."""
        if not self._busy.acquire(blocking=False):
            log.info("a run is already in progress; this trigger is skipped")
            return []
        try:
            return self._tick()
        except DigestError as e:  # e.g. the store unreadable: one line, retried
            log.warning("the scheduled run failed: %s; retrying at the next tick", e)
            return []
        except Exception:  # the process must outlive one bad run; the next tick retries
            log.exception("the scheduled run failed unexpectedly; retrying at the next tick")
            return []
        finally:
            self._busy.release()

    def _tick(self) -> list[RunReport]:
        if self.stop.is_set():
            return []
        groups = self.plan()
        if not groups:
            return []
        self.runs += 1
        reports = []
        for g in groups:
            if self.stop.is_set():
                break
            late = self.clock() - g.since
            log.info(
                "run for %s: %d subscriber(s) owed%s",
                g.day.isoformat(),
                len(g.emails),
                f" (catching up, {_ago(late)} late)" if late > timedelta(minutes=5) else "",
            )
            try:
                report = self.run(
                    self.cfg, g.day, now=self.clock, store=self.store, only=g.only(), stop=self.stop
                )
            except StoreLocked as e:
                log.warning("%s; retrying at the next tick", e)
                break
            except AllSourcesFailed as e:
                # run_daily keeps the failed run's report, so `digest status` says why.
                log.warning("%s; retrying at the next tick", e)
                continue
            except DigestError as e:
                log.warning(
                    "run for %s stopped: %s; retrying at the next tick", g.day.isoformat(), e
                )
                continue
            reports.append(report)
            for line in report.lines():
                log.info("%s", line)
        return reports

    # ------------------------------------------------------------------ scheduler

    def job_options(self) -> dict[str, Any]:
        return {
            # A tick delayed beyond the grace (suspended machine) is dropped by APScheduler;
            # the next tick's plan still catches the day up while within the same grace.
            "misfire_grace_time": max(int(grace(self.cfg.schedule).total_seconds()), 1),
            "coalesce": True,  # many missed ticks -> one run
            "max_instances": 1,  # never two runs at once
        }

    def build_scheduler(self, *, run_at_start: bool = True) -> BackgroundScheduler:
        """A BackgroundScheduler (UTC) with the one job added; not started."""
        sched = BackgroundScheduler(timezone=UTC)
        opts = self.job_options()
        if run_at_start:  # catch-up on start: the plan decides whether anything is owed
            opts["next_run_time"] = datetime.now(UTC)
        sched.add_job(
            self.tick,
            SendTimesTrigger(self.slots, self.recheck),
            id=JOB_ID,
            name="daily digest",
            **opts,
        )
        return sched


def _ago(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def serve(cfg: Config, *, web: bool = False, clock: Clock = utcnow) -> int:
    """Run until SIGTERM/SIGINT; return the exit code (0 on a clean stop)."""
    from digest.mail import make_sender
    from digest.store import open_store

    make_sender(cfg)  # a bad [smtp] setup fails the start, not every tick thereafter
    store: Store = LockedStore(open_store(cfg.store))
    shutdown = threading.Event()
    try:
        with serve_lock(cfg):
            return _serve(cfg, store, shutdown, web=web, clock=clock)
    finally:
        store.close()


@contextmanager
def serve_lock(cfg: Config) -> Iterator[None]:
    """One `digest serve` per store: a second would fetch and tick twice for nothing."""
    lock = FileLock(str(Path(cfg.store.path) / "serve.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise StoreLocked(
            f"{lock.lock_file}: another `digest serve` is already running on this store"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _serve(cfg: Config, store: Store, shutdown: threading.Event, *, web: bool, clock: Clock) -> int:
    from digest.pipeline import seed_subscribers

    seed_subscribers(cfg, store, clock)
    service = Service(cfg, store, clock=clock)

    def on_signal(signum: int, _frame: object) -> None:
        if shutdown.is_set():
            log.info("already stopping; waiting for the message in flight")
        # Both at once: the run stops after the message in flight, the loop exits.
        service.stop.set()
        shutdown.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    sched = service.build_scheduler()
    web_thread = start_web(cfg, store) if web else None
    sched.start()
    log.info(
        "serving: %s; next send time %s",
        ", ".join(sorted(s.label for s in service.slots())),
        next_send(clock(), service.slots()).isoformat(),
    )
    while not shutdown.wait(1.0):
        pass
    log.info("stopping: no new work; finishing the message in flight")
    sched.shutdown(wait=True)  # waits for a running tick, which returns after `stop`
    if web_thread is not None:
        web_thread.stop()
    for s, h in previous.items():
        signal.signal(s, h)
    log.info("stopped cleanly")
    return 0


class LockedStore:
    """The store, with every call serialised: the scheduler thread and the web threads of
    this one process share it, and the Store protocol promises safety between processes
    (file locks), not between threads."""

    def __init__(self, store: Store):
        self._store = store
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr) or name == "run":  # held for a whole run: not under ours
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return call


class WebThread:
    """uvicorn serving the web app in a thread of this process, on the same store."""

    def __init__(self, server: Any):
        self.server = server
        self.thread = threading.Thread(target=server.run, name="digest-web", daemon=True)

    def start(self, timeout: float = 30.0) -> WebThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        # uvicorn reports a port in use by logging and exiting its thread: make it an error.
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not self.server.started:
            self.stop()
            cfg = self.server.config
            raise DigestError(
                f"--web: cannot serve on {cfg.host}:{cfg.port} (port in use or not allowed)"
            )
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start_web(cfg: Config, store: Store) -> WebThread:
    import uvicorn

    try:
        from digest.web.app import make_app
        from digest.web.settings import WebSettings
    except ImportError as e:
        raise DigestError(f"--web: the web service is not available ({e})") from e
    settings = WebSettings.from_config(cfg.web)
    app = make_app(cfg, store=store, settings=settings)
    from digest.web.server import uvicorn_options

    # The same uvicorn settings as `digest web` (idle-connection guards, trusted proxies
    # only as configured, no Server header, no access log).
    config = uvicorn.Config(
        app,
        host=cfg.web.host,
        port=cfg.web.port,
        log_level="warning",
        **uvicorn_options(settings),
    )
    server = uvicorn.Server(config)
    # Not the main thread: uvicorn installs no signal handlers; serve() stops it.
    thread = WebThread(server).start()
    log.info("web service on http://%s:%d", cfg.web.host, cfg.web.port)
    return thread
