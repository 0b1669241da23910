"""I/O edge: the embedded default store, TinyDB files in one folder.

    <folder>/subscribers.json  subscribers, the web's mail queue, limits, nonces, meta
             changes.jsonl     ... their changes not yet folded (statefile.py)
             history.json      seen papers, paper details, digest records, run reports
             journal.jsonl     ... delivery records not yet folded (history.py)
             store.lock        held for every call by any process (flock)
             run.lock          held for a whole `digest run`
             secret.key        the token-signing secret (0600)

Every call takes store.lock and first catches up with what other processes committed (a
stat of each file, and the journals' new lines), so reads are fresh and writers never lose
each other's changes. Data is loaded once and kept in memory. Writes are journal appends
(one line per write, durable on return), folded into the TinyDB files atomically (temp
file, fsync, rename) at the end of a run, at close (delivery records) and when a journal
outgrows its file (amortised O(1) per write).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path

from filelock import FileLock, Timeout

from digest.config import Limit, StoreConfig
from digest.errors import DigestError, StoreError, StoreLocked
from digest.models import DeliveryRecord, Gathered, OutgoingMessage, Paper, RunReport, Subscriber
from digest.store.base import (
    Item,
    QueuedMail,
    QueueStats,
    SeenPaper,
    StoredSecret,
    Updater,
    due_subscribers,
)
from digest.store.files import FlockLock, read_secret, remove_stale_temps, write_secret
from digest.store.history import HISTORY, History
from digest.store.statefile import SUBSCRIBERS, StateFile

SECRET = "secret.key"
LOCK_TIMEOUT = 60.0  # seconds; calls hold store.lock for milliseconds


def error_line(e: BaseException) -> str:
    """What a failed run's report says about why it failed."""
    if isinstance(e, DigestError):
        return str(e)
    if isinstance(e, KeyboardInterrupt):
        return "interrupted"
    return f"internal error: {type(e).__name__}: {e}"


class TinyStore:
    def __init__(self, cfg: StoreConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.root = Path(cfg.path)
        self._clock = clock
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"{self.root}: cannot create the store folder: {e.strerror}") from e
        self._mutex = threading.RLock()  # the web service calls us from several threads
        self._lock = FlockLock(self.root / "store.lock")
        self._sf = StateFile(self.root, cfg)
        self._hist = History(self.root, cfg)
        self._closed = False
        self._secret: str | None = None
        with self._locked():
            remove_stale_temps(self.root, (SUBSCRIBERS, HISTORY, SECRET))
            self._sync()
            self._sf.assign_missing_ids()

    # ------------------------------------------------------------------ plumbing

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._mutex:
            if self._closed:
                raise StoreError(f"{self.root}: the store is closed")
            try:
                self._lock.acquire(timeout=LOCK_TIMEOUT)
            except TimeoutError as e:
                raise StoreError(
                    f"{self._lock.path}: store is busy (lock held for over "
                    f"{LOCK_TIMEOUT:.0f}s by another process)"
                ) from e
            except OSError as e:
                raise StoreError(
                    f"{self._lock.path}: cannot take the store lock: {e.strerror}"
                ) from e
            try:
                yield
            finally:
                self._lock.release()

    @contextlib.contextmanager
    def _subs(self) -> Iterator[StateFile]:
        """The subscriber side, locked and caught up."""
        with self._locked():
            self._sf.sync()
            yield self._sf

    @contextlib.contextmanager
    def _days(self) -> Iterator[History]:
        """The day-by-day side, locked and caught up."""
        with self._locked():
            self._hist.sync()
            yield self._hist

    def _sync(self) -> None:
        self._sf.sync()
        self._hist.sync()

    # ------------------------------------------------------------------ lifecycle

    def flush(self) -> None:
        """Fold both journals into their files now (TinyDB only: tests use it)."""
        with self._locked():
            self._sync()
            self._hist.fold()
            if self._sf.changes.size():
                self._sf.fold()

    def close(self) -> None:
        with self._mutex:
            if self._closed:
                return
            try:
                with self._days() as h:
                    h.fold()
            finally:
                self._closed = True
                self._sf.close()
                self._hist.close()
                self._lock.close()

    def __enter__(self) -> TinyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _run_lock(self, wait: bool = False) -> Iterator[None]:
        # A fresh FileLock per call: its own fd, so two holders exclude each other even
        # inside one process (flock locks belong to the open file description).
        lock = FileLock(str(self.root / "run.lock"))
        msg = f"another digest run is in progress (lock: {lock.lock_file})"
        try:
            lock.acquire(timeout=-1 if wait else 0)
        except Timeout as e:
            raise StoreLocked(msg) from e
        except RuntimeError as e:  # filelock: waiting would deadlock on a hold in this process
            raise StoreLocked(msg) from e
        except OSError as e:
            raise StoreError(f"{lock.lock_file}: cannot take the run lock: {e.strerror}") from e
        try:
            yield
        finally:
            lock.release()

    @contextlib.contextmanager
    def run(self, day: date, report: RunReport, *, wait: bool = False) -> Iterator[TinyRun]:
        with self._run_lock(wait):
            try:
                yield TinyRun(self, day, report)
            except BaseException as e:
                report.error = report.error or error_line(e)
                try:
                    self._end_run(report, day)
                except StoreError as ce:
                    e.add_note(f"and the run's report could not be stored: {ce}")
                raise
            self._end_run(report, day)

    def _end_run(self, report: RunReport, day: date) -> None:
        """The report, the journal fold and retention: ONE rewrite of history.json."""
        if report.dry_run:
            return
        # Retention counts from the run's day, like the day-based retention, but never
        # from later than the clock: a backfill or a replay of another day expires nothing
        # that is still live now (a pending subscription, a limit hit).
        start = datetime.combine(day, datetime.min.time(), UTC).timestamp()
        with self._locked():
            self._sync()
            self._hist.prune(day, report)
            self._sf.prune(min(self._clock(), start), fold=True)

    def runs(self, limit: int = 10) -> list[RunReport]:
        with self._days() as h:
            return h.runs(limit)

    def secret(self) -> str:
        if self._secret is None:
            with self._locked():
                self._secret = read_secret(self.root / SECRET, create=True)
        return self._secret

    # ------------------------------------------------------------------ subscribers

    def subscribers(self) -> list[Subscriber]:
        with self._subs() as s:
            return list(s.state.subs.values())

    def get_subscriber(self, email: str) -> Subscriber | None:
        with self._subs() as s:
            return s.state.subs.get(email.lower())

    def get_subscriber_by_id(self, sid: str) -> Subscriber | None:
        with self._subs() as s:
            return s.by_id(sid)

    def subscriber_status(self, email: str) -> str | None:
        sub = self.get_subscriber(email)
        return None if sub is None else sub.status

    def put_subscribers(self, subs: Iterable[Subscriber]) -> None:
        subs = list(subs)
        if subs:
            with self._subs() as s:
                s.put(subs)

    def update_subscriber(
        self, email: str, fn: Updater, *, now: datetime | None = None
    ) -> Subscriber | None:
        with self._subs() as s:
            return s.update(email, fn, now.timestamp() if now is not None else self._clock())

    def remove_subscriber(self, email: str) -> bool:
        with self._subs() as s:
            return s.remove(email)

    # ------------------------------------------------------------------ seen-store

    def record_seen(self, papers: Sequence[Paper], day: date) -> dict[str, date]:
        with self._days() as h:
            return h.record_seen(papers, day)

    def first_seen(self, ids: Iterable[str]) -> dict[str, date]:
        with self._days() as h:
            return h.first_seen(ids)

    def recent_papers(self, since: date) -> list[Paper]:
        with self._days() as h:
            return h.recent_papers(since)

    def seen_days(self, since: date) -> dict[date, tuple[str, ...]]:
        with self._days() as h:
            return h.seen_days(since)

    def get_papers(self, ids: Iterable[str]) -> dict[str, Paper]:
        with self._days() as h:
            return {pid: p for pid in ids if (p := h.paper(pid)) is not None}

    # ------------------------------------------------------------------ delivery records

    def _record(self, rec: DeliveryRecord) -> None:
        at = int(rec.at.timestamp()) if rec.at is not None else int(self._clock())
        with self._locked():  # (not _days(): this runs once per message, every us counts)
            self._hist.sync()  # reads others' lines first, so ours lands after them
            self._hist.record(rec, at)

    def _record_many(self, recs: Sequence[DeliveryRecord]) -> None:
        if not recs:
            return
        now = int(self._clock())
        ats = [int(r.at.timestamp()) if r.at is not None else now for r in recs]
        with self._locked():
            self._hist.sync()
            self._hist.record_many(recs, ats)  # one journal write, one fdatasync

    def digests_for_day(self, day: date) -> dict[str, str]:
        with self._days() as h:
            return h.digests_for_day(day)

    def delivered_since(
        self, since: date, emails: Collection[str] | None = None
    ) -> dict[str, set[str]]:
        with self._days() as h:
            return h.delivered_since(since, emails)

    def history(self, email: str, limit: int = 30) -> list[DeliveryRecord]:
        with self._days() as h:
            return h.history(email, limit)

    def get_digest(self, digest_id: str) -> DeliveryRecord | None:
        with self._days() as h:
            return h.get_digest(digest_id)

    def pending_retries(self) -> list[DeliveryRecord]:
        with self._days() as h:
            return h.pending_retries()

    # ------------------------------------------------------------------ mail queue

    def enqueue(self, msg: OutgoingMessage, now: datetime) -> str:
        with self._subs() as s:
            return s.enqueue(msg, now.timestamp())

    def claim_mail(self, now: datetime, lease: float = 300.0, limit: int = 10) -> list[QueuedMail]:
        with self._subs() as s:
            return s.claim(now.timestamp(), lease, limit)

    def mail_sent(self, qid: str) -> None:
        with self._subs() as s:
            s.sent(qid)

    def mail_failed(self, qid: str, detail: str, retry_at: datetime | None) -> None:
        with self._subs() as s:
            s.failed(qid, detail, retry_at)

    def queue_stats(self, now: datetime) -> QueueStats:
        with self._subs() as s:
            return s.stats(now.timestamp())

    # ------------------------------------------------------------------ limits, nonces, meta

    def hit_limit(self, key: str, limit: Limit, now: datetime) -> float | None:
        with self._subs() as s:
            return s.hit(key, limit, now.timestamp())

    def use_nonce(self, nonce: str, expires: datetime, now: datetime) -> bool:
        with self._subs() as s:
            return s.use_nonce(nonce, expires.timestamp(), now.timestamp())

    def get_meta(self, key: str) -> str | None:
        with self._subs() as s:
            return s.state.meta.get(key)

    def set_meta(self, key: str, value: str | None) -> None:
        with self._subs() as s:
            s.set_meta(key, value)

    # ------------------------------------------------------------------ housekeeping

    def prune(self, today: date, now: datetime) -> None:
        with self._locked():
            self._sync()
            self._hist.prune(today)
            self._sf.prune(now.timestamp(), fold=False)

    def is_empty(self) -> bool:
        with self._locked():
            self._sync()
            return self._sf.state.is_empty() and self._hist.is_empty()

    def export_items(self) -> Iterator[Item]:
        with self._locked():
            self._sync()
            secret = read_secret(self.root / SECRET, create=False)
            items: list[Item] = [StoredSecret(secret)] if secret else []
            items += self._sf.items()
            items += self._hist.seen_items()
            items += self._hist.record_items()
            items += self._hist.run_items()
        return iter(items)

    def import_items(self, items: Iterable[Item], *, replace: bool = False) -> int:
        items = list(items)
        seen = [it for it in items if isinstance(it, SeenPaper)]
        records = [it for it in items if isinstance(it, DeliveryRecord)]
        runs = [it for it in items if isinstance(it, RunReport)]
        by_kind = (SeenPaper, DeliveryRecord, RunReport)
        secret = next((it.value for it in items if isinstance(it, StoredSecret)), "")
        with self._run_lock(), self._locked():  # no run may be in progress meanwhile
            self._sync()
            if not replace and not (self._sf.state.is_empty() and self._hist.is_empty()):
                raise StoreError(
                    f"{self.root}: the store is not empty; import into an empty store, or "
                    "replace its content with --replace"
                )
            self._sf.load(it for it in items if not isinstance(it, by_kind))
            self._hist.load(seen, records, runs)
            if secret:
                write_secret(self.root / SECRET, secret)
                self._secret = None
        return len(items)


class TinyRun:
    """A run on the TinyDB store: the run lock makes it the only one, so it gathers
    itself and claims every due subscriber at its first call."""

    def __init__(self, store: TinyStore, day: date, report: RunReport) -> None:
        self.store, self.day, self.report = store, day, report
        self._claimed: set[str] = set()
        self._done: set[str] = set()

    def gather(self, compute: Callable[[], Gathered]) -> Gathered:
        return compute()

    def claim(self, only: Callable[[Subscriber], bool] | None = None) -> list[Subscriber]:
        store = self.store
        with store._locked():
            store._sync()
            subs = list(store._sf.state.subs.values())
            states = store._hist.digests_for_day(self.day)
        todo, done = due_subscribers(subs, states, only, skip=self._claimed)
        new_done = set(done) - self._done
        self.report.already_done += len(new_done)
        self._done |= new_done
        self._claimed.update(s.email.lower() for s in todo)
        return todo

    def record(self, rec: DeliveryRecord) -> None:
        self.store._record(rec)

    def record_many(self, recs: Sequence[DeliveryRecord]) -> None:
        self.store._record_many(recs)
