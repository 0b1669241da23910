"""Pure: the storage interface, and the plain records it speaks. Every backend (TinyDB
files today, PostgreSQL next) implements `Store`; tests/store_contract.py is the suite
every backend passes.

Semantics every backend must keep:
- Exactly once. `Run.record` is durable when it returns (survives kill -9 of the
  process): it is called right after the SMTP server accepted a message, and the papers
  of SENT digests are never picked again. A later record for the same digest id wins.
- No lost update. Writers in other processes (the web service, the CLI, other runs)
  never lose each other's changes: `update_subscriber` is a read-modify-write of one
  subscriber under the store's lock, and every other write is atomic on its own.
  A Store object may be shared by the threads of one process.
- Fresh reads. `get_subscriber` reflects every change committed by any process before
  the call (the delivery loop checks a subscriber right before sending), and is cheap.
- One run context. `with store.run(day, report) as run:` holds the run for its block:
  TinyDB takes an inter-process run lock (a second run raises StoreLocked); a multi-
  worker backend instead lets workers share the day. `run.gather(compute)` returns the
  day's gathered papers (computed once per day by one worker under a lock, reused by
  workers that join while it is fresh; TinyDB: computed by the one run), `run.claim(only)`
  hands out the next batch of due subscribers (TinyDB: all of them at the first call),
  each claimed with a lease so that two workers never serve one subscriber and a dead
  worker's batch comes back when its lease ends. At exit the report is committed (with
  the error when the block raised: `digest status` shows why a run failed), journals are
  folded and retention pruned; a dry run's report (report.dry_run) is not kept.
- Atomic mail. A message queued in a `Change` is stored in the same atomic write as the
  subscriber change it belongs to (a pending subscription and its confirmation mail).
  `claim_mail` leases messages: two workers never hold one message at once, and a killed
  worker's claims come back when the lease ends.
- Shared limits. `hit_limit` and `use_nonce` are atomic across processes and survive
  restarts; expired entries are pruned by the backend.
- Bounded writes. A web write (a subscribe, a limit hit, a queued mail) costs the same at
  60,000 subscribers as at 10: no write rewrites data that grows with the subscribers.

Time: methods that depend on time take `now` (timezone-aware), so callers inject clocks.
Errors: StoreError (one line, naming the file or database) for anything the store cannot
read or write; StoreLocked when a run holds the store.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from digest.config import Limit
from digest.models import (
    ACTIVE,
    DONE_STATES,
    DeliveryRecord,
    Gathered,
    OutgoingMessage,
    Paper,
    RunReport,
    Subscriber,
)

QUEUED, CLAIMED, GAVE_UP = "queued", "claimed", "failed"  # states of a queued mail


def new_subscriber_id() -> str:
    """A fresh opaque subscriber id: 128 random bits, URL-safe (22 characters)."""
    return secrets.token_urlsafe(16)


@dataclass(frozen=True, slots=True)
class Change:
    """What an `update_subscriber` function decides: the subscriber's new state (None:
    leave it as it is) and the mail to queue with it, in the same atomic write."""

    subscriber: Subscriber | None = None
    mail: tuple[OutgoingMessage, ...] = ()


@dataclass(frozen=True, slots=True)
class QueuedMail:
    """A message in the store's mail queue."""

    id: str
    message: OutgoingMessage
    enqueued: datetime
    due: datetime  # not claimed before this (a retry's backoff)
    attempts: int = 0  # claims so far
    state: str = QUEUED  # QUEUED, CLAIMED (until `lease_until`) or GAVE_UP
    detail: str = ""  # the last failure
    lease_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class QueueStats:
    """For /healthz: how many messages wait, how many are due, since when."""

    waiting: int = 0  # queued or claimed
    due: int = 0  # claimable now
    oldest: datetime | None = None  # enqueue time of the oldest waiting message
    failed: int = 0  # given up (kept for `history_days`)


@dataclass(frozen=True, slots=True)
class SeenPaper:
    """A seen-store entry (export/import): first-seen day, and the details while kept."""

    id: str
    first_seen: date
    paper: Paper | None = None
    kept_on: date | None = None  # the day the details are filed under (retention)


@dataclass(frozen=True, slots=True)
class LimitHits:
    """A rate-limit key's counted events: (at, expires) as epoch seconds."""

    key: str
    hits: tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class UsedNonce:
    nonce: str
    expires: datetime


@dataclass(frozen=True, slots=True)
class MetaValue:
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class StoredSecret:
    """The token-signing secret the store generated (export/import moves it along)."""

    value: str


# What `export_items` yields and `import_items` takes, one kind per JSON line.
Item = (
    Subscriber
    | SeenPaper
    | DeliveryRecord
    | RunReport
    | QueuedMail
    | LimitHits
    | UsedNonce
    | MetaValue
    | StoredSecret
)

Updater = Callable[[Subscriber | None], "Subscriber | Change | None"]


class Run(Protocol):
    """One worker's part of a day's run; see the module docstring."""

    day: date
    report: RunReport  # committed when the run's block exits

    def gather(self, compute: Callable[[], Gathered]) -> Gathered:
        """The day's gathered papers: `compute()` (fetch, merge, record_seen) runs once
        per day under a lock; workers joining while its result is fresh reuse it."""
        ...

    def claim(self, only: Callable[[Subscriber], bool] | None = None) -> list[Subscriber]:
        """The next batch of due subscribers, sorted by email; [] when none is left.
        Due: ACTIVE, `only(sub)` true, no digest for the day in a DONE state, not claimed
        by a live worker (nor already by this run). Subscribers skipped as done are
        counted into `report.already_done`."""
        ...

    def record(self, rec: DeliveryRecord) -> None:
        """Durable on return (journal append). A later record for a digest id wins."""
        ...

    def record_many(self, recs: Sequence[DeliveryRecord]) -> None:
        """`record` for each of `recs`, in order, durable on return with ONE journal
        append and sync for all (group commit: the delivery loop's connections share it,
        digest/overlap.py's Recorder)."""
        ...


class Store(Protocol):
    # --- lifecycle
    def close(self) -> None:
        """Flush and release; idempotent. Calls after it raise StoreError."""
        ...

    def secret(self) -> str:
        """A random token-signing secret, made once and kept with the data."""
        ...

    def run(
        self, day: date, report: RunReport, *, wait: bool = False
    ) -> AbstractContextManager[Run]:
        """The run context (module docstring). `wait`: wait for a run in progress
        instead of raising StoreLocked."""
        ...

    def runs(self, limit: int = 10) -> list[RunReport]:
        """Committed run reports, newest first."""
        ...

    # --- subscribers (keyed by address, case-insensitive)
    def subscribers(self) -> list[Subscriber]: ...

    def get_subscriber(self, email: str) -> Subscriber | None:
        """Fresh and cheap (see the module docstring)."""
        ...

    def get_subscriber_by_id(self, sid: str) -> Subscriber | None: ...

    def subscriber_status(self, email: str) -> str | None:
        """The subscriber's status alone (None: not subscribed), fresh: the check before
        each digest is committed, so it reads no more than the status."""
        ...

    def put_subscribers(self, subs: Iterable[Subscriber]) -> None:
        """Insert or replace by address, all in one atomic write. A replaced subscriber
        keeps its id; a new one gets its given id if unused, else a fresh one."""
        ...

    def update_subscriber(
        self, email: str, fn: Updater, *, now: datetime | None = None
    ) -> Subscriber | None:
        """Atomic read-modify-write: `fn(current or None)` runs under the store's lock
        and returns the new Subscriber, a Change (subscriber and mail to queue, due at
        `now`, by default the store's clock), or None (no change). An exception from `fn`
        writes nothing. `fn` must not call the store. Returns the subscriber as stored
        afterwards (None when there is none)."""
        ...

    def remove_subscriber(self, email: str) -> bool: ...

    # --- seen-store
    def record_seen(self, papers: Sequence[Paper], day: date) -> dict[str, date]:
        """Remember `papers` (first seen on `day` unless already known); keep their
        details for `history_days`. Returns each given paper's first-seen day."""
        ...

    def first_seen(self, ids: Iterable[str]) -> dict[str, date]:
        """Read-only: the first-seen day of each known id (unknown ids are absent)."""
        ...

    def recent_papers(self, since: date) -> list[Paper]:
        """Papers first seen on or after `since` whose details are still kept, oldest first."""
        ...

    def seen_days(self, since: date) -> dict[date, tuple[str, ...]]:
        """Read-only: each day on or after `since` on which papers whose details are still
        kept were first seen, with those papers' ids (sorted), oldest day first: the papers
        pages' days, and a day's papers by `get_papers(ids)` (decoding only that day's)."""
        ...

    def get_papers(self, ids: Iterable[str]) -> dict[str, Paper]: ...

    # --- delivery records (written through Run.record)
    def digests_for_day(self, day: date) -> dict[str, str]:
        """email -> state (models.SENT / FAILED / DEFERRED / EMPTY) of that day's digests."""
        ...

    def delivered_since(
        self, since: date, emails: Collection[str] | None = None
    ) -> dict[str, set[str]]:
        """email -> ids of papers in digests SENT on or after `since` (of `emails` only,
        when given)."""
        ...

    def history(self, email: str, limit: int = 30) -> list[DeliveryRecord]:
        """The subscriber's digest records, newest first."""
        ...

    def get_digest(self, digest_id: str) -> DeliveryRecord | None:
        """One digest record by id (to show a digest again as it was mailed)."""
        ...

    def pending_retries(self) -> list[DeliveryRecord]:
        """Digest records whose latest state is DEFERRED (waiting for the next run)."""
        ...

    # --- the web service's mail queue
    def enqueue(self, msg: OutgoingMessage, now: datetime) -> str:
        """Queue one message on its own; returns its id. (With a subscriber change:
        update_subscriber with a Change.)"""
        ...

    def claim_mail(self, now: datetime, lease: float = 300.0, limit: int = 10) -> list[QueuedMail]:
        """Up to `limit` due messages (oldest due first), each leased for `lease` seconds:
        nobody else gets them until then, or until mail_failed puts them back."""
        ...

    def mail_sent(self, qid: str) -> None:
        """Done: the message leaves the queue. Unknown ids are ignored."""
        ...

    def mail_failed(self, qid: str, detail: str, retry_at: datetime | None) -> None:
        """Back in the queue, due at `retry_at`; None: given up for good (kept, counted)."""
        ...

    def queue_stats(self, now: datetime) -> QueueStats: ...

    # --- rate limits, single-use nonces, meta
    def hit_limit(self, key: str, limit: Limit, now: datetime) -> float | None:
        """Count one event for `key` unless `limit.count` events happened in the last
        `limit.seconds`: None if counted (allowed), else the seconds to wait."""
        ...

    def use_nonce(self, nonce: str, expires: datetime, now: datetime) -> bool:
        """True the first time (the nonce is remembered at least until `expires`), False
        after. The caller refuses expired tokens itself."""
        ...

    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str | None) -> None:
        """Set (None: delete) a small value, e.g. the schema version, applied seeds."""
        ...

    # --- housekeeping, backup and moving between backends
    def prune(self, today: date, now: datetime) -> None:
        """Drop what retention no longer needs (StoreConfig): seen papers, details and
        digest records by day; PENDING subscribers created more than `pending_days` ago,
        given-up mail, expired limit hits and nonces by `now`. Run exits call it."""
        ...

    def is_empty(self) -> bool:
        """No subscriber, paper, digest, run, mail or meta value (a secret may exist)."""
        ...

    def export_items(self) -> Iterator[Item]:
        """Everything the store holds, one Item at a time (digest store export)."""
        ...

    def import_items(self, items: Iterable[Item], *, replace: bool = False) -> int:
        """Load exported items into an empty store (StoreError if not empty, unless
        `replace`: then the store's content is replaced). Returns the count."""
        ...


def due_subscribers(
    subs: Iterable[Subscriber],
    states: dict[str, str],
    only: Callable[[Subscriber], bool] | None,
    skip: Collection[str] = (),
) -> tuple[list[Subscriber], list[str]]:
    """Pure: (the due subscribers sorted by email, the addresses skipped as done) as
    Run.claim defines them. `skip`: addresses already claimed (lower case)."""
    todo: list[Subscriber] = []
    done: list[str] = []
    for sub in subs:
        if sub.status != ACTIVE or (only is not None and not only(sub)):
            continue
        if sub.email.lower() in skip:
            continue
        if states.get(sub.email) in DONE_STATES:
            done.append(sub.email)
            continue
        todo.append(sub)
    todo.sort(key=lambda s: s.email)  # deterministic send order
    return todo, done
