"""I/O edge: the subscriber side of the TinyDB store, subscribers.json plus changes.jsonl.

    subscribers.json  TinyDB: "subscribers", "queue" (the web's mail), "limits", "nonces",
                      "meta", and "state" {"seq": the last journal line folded into it}
    changes.jsonl     changes not yet folded: one line of ops per write (state.py)

A write (a subscriber, a queued mail, a limit hit, a nonce) is ONE line appended to
changes.jsonl, not a rewrite: its cost does not grow with the number of subscribers (a
rewrite took 543 ms at 60,000 pending rows, bench/store_writes.py). The journal is folded
into subscribers.json when it outgrows the file, so rewrites cost O(1) per write,
amortised; also at the end of a run and by prune. Every method expects the store lock
to be held (TinyStore), and the mutators a `sync` first.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from digest.config import Limit, StoreConfig
from digest.errors import StoreError
from digest.models import OutgoingMessage, Subscriber
from digest.store.base import (
    GAVE_UP,
    QUEUED,
    Change,
    Item,
    LimitHits,
    MetaValue,
    QueuedMail,
    QueueStats,
    Updater,
    UsedNonce,
    new_subscriber_id,
)
from digest.store.codec import SUBSCRIBER
from digest.store.files import AtomicJSONStorage, Journal
from digest.store.history import corrupt, tiny_write
from digest.store.state import MESSAGE, Mail, State

SUBSCRIBERS, CHANGES = "subscribers.json", "changes.jsonl"
FOLD_MIN_BYTES = 1 << 20  # changes.jsonl is folded once larger than this and the base file


def _epoch(created: str) -> float | None:
    try:
        t = datetime.fromisoformat(created)
    except ValueError:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


class StateFile:
    def __init__(self, root: Path, cfg: StoreConfig) -> None:
        self.cfg = cfg
        self.base = AtomicJSONStorage(root / SUBSCRIBERS, cfg.fsync)
        self.changes = Journal(root / CHANGES, cfg.fsync)
        self.state = State()
        self._ver = -1  # the base version self.state was loaded from (-1: reload)

    def close(self) -> None:
        self.base.shutdown()
        self.changes.close()

    # ------------------------------------------------------------------ plumbing

    def sync(self) -> None:
        """Catch up with what other processes wrote: a stat of each file, new lines."""
        size = self.changes.size()
        reload = self.base.refresh() or self._ver != self.base.version
        if reload or size < self.changes.offset:  # reloaded, or folded by another process
            try:
                state = State.from_tables(self.base.read())
            except ValueError as e:
                raise corrupt(self.base, e) from e
            self.base.release()  # the State is the in-memory copy now
            self.state, self._ver = state, self.base.version
            lines = self.changes.read(0, size)
        else:
            lines = self.changes.read(self.changes.offset, size)
        for obj in lines:
            try:
                self.state.apply_line(obj)
            except ValueError as e:
                self._ver = -1  # half applied: reload next time
                raise StoreError(
                    f"{self.changes.path}: corrupt journal line ({e}); "
                    "restore it from a backup or move it away"
                ) from e

    def commit(self, ops: list[Any]) -> None:
        """Apply `ops` and append them as ONE journal line."""
        if not ops:
            return
        seq = self.state.seq + 1
        try:
            line = orjson.dumps({"q": seq, "o": ops}) + b"\n"
            self.state.apply(ops)
            self.state.seq = seq
            self.changes.append(line)
        except BaseException as e:
            self._ver = -1  # memory may be ahead of the disk: reload next time
            if isinstance(e, TypeError | ValueError):
                raise StoreError(f"{self.changes.path}: cannot store a change: {e}") from e
            raise
        if self.changes.offset > max(FOLD_MIN_BYTES, self.base.size):
            self.fold()

    def fold(self, now: float | None = None) -> None:
        """Write the state into subscribers.json, then empty changes.jsonl; limit hits and
        nonces expired by `now` are dropped (prune passes it)."""
        tables = self.state.tables(now)
        try:
            with tiny_write(self.base) as db:
                for name, docs in tables.items():
                    table = db.table(name, cache_size=0)
                    table.truncate()
                    table.insert_multiple(docs)
        except BaseException:
            self._ver = -1
            raise
        self.base.release()
        self._ver = self.base.version
        if now is not None:
            self.state.forget_expired(now)
        # a crash here leaves lines the base already holds: replay skips them by seq
        self.changes.truncate()

    def with_id(self, sub: Subscriber, cur: Subscriber | None = None) -> Subscriber:
        """`sub` with its permanent id: the stored one's, else its own if unused, else new."""
        cur = cur if cur is not None else self.state.subs.get(sub.email.lower())
        if cur is not None and cur.id:
            sid = cur.id
        elif sub.id and sub.id not in self.state.ids:
            sid = sub.id
        else:
            sid = new_subscriber_id()
            while sid in self.state.ids:
                sid = new_subscriber_id()
        return sub if sub.id == sid else replace(sub, id=sid)

    def assign_missing_ids(self) -> None:
        """Stores written before subscriber ids existed: give everyone one, once."""
        missing = [s for s in self.state.subs.values() if not s.id]
        self.commit([["s", SUBSCRIBER.encode(self.with_id(s))] for s in missing])

    # ------------------------------------------------------------------ subscribers

    def put(self, subs: Iterable[Subscriber]) -> None:
        ops: list[Any] = []
        taken: set[str] = set()
        for sub in {s.email.lower(): s for s in subs}.values():
            new = self.with_id(sub)
            if new.id in taken:  # two new ones given the same id: the second gets its own
                new = replace(new, id=new_subscriber_id())
            taken.add(new.id)
            ops.append(["s", SUBSCRIBER.encode(new)])
        self.commit(ops)

    def update(self, email: str, fn: Updater, now: float) -> Subscriber | None:
        key = email.lower()
        cur = self.state.subs.get(key)
        out = fn(cur)
        if out is None:
            return cur
        change = out if isinstance(out, Change) else Change(out)
        ops: list[Any] = []
        new = change.subscriber
        if new is not None:
            if new.email.lower() != key:
                raise StoreError(
                    f"update_subscriber: the update of {email} changed the address to {new.email}"
                )
            new = self.with_id(new, cur)
            if new != cur:
                ops.append(["s", SUBSCRIBER.encode(new)])
        ops += [["q", self._mail(msg, now).doc()] for msg in change.mail]
        self.commit(ops)
        return self.state.subs.get(key)

    def remove(self, email: str) -> bool:
        if email.lower() not in self.state.subs:
            return False
        self.commit([["r", email.lower()]])
        return True

    def by_id(self, sid: str) -> Subscriber | None:
        key = self.state.ids.get(sid)
        return self.state.subs.get(key) if key is not None else None

    # ------------------------------------------------------------------ mail queue

    def _mail(self, msg: OutgoingMessage, now: float) -> Mail:
        qid = secrets.token_urlsafe(12)
        while qid in self.state.queue:
            qid = secrets.token_urlsafe(12)
        return Mail(qid, MESSAGE.encode(msg), now, now)

    def enqueue(self, msg: OutgoingMessage, now: float) -> str:
        mail = self._mail(msg, now)
        self.commit([["q", mail.doc()]])
        return mail.id

    def claim(self, now: float, lease: float, limit: int) -> list[QueuedMail]:
        due = sorted(
            (m for m in self.state.queue.values() if m.claimable(now)),
            key=lambda m: (m.due, m.enqueued, m.id),
        )[: max(0, limit)]
        self.commit([["c", m.id, now + lease] for m in due])
        return [self._public(m) for m in due]

    def _public(self, m: Mail) -> QueuedMail:
        try:
            return m.public()
        except ValueError as e:
            raise StoreError(f"{self.base.path}: corrupt queued mail ({e})") from e

    def sent(self, qid: str) -> None:
        if qid in self.state.queue:
            self.commit([["d", qid]])

    def failed(self, qid: str, detail: str, retry_at: datetime | None) -> None:
        if qid in self.state.queue:
            at = retry_at.timestamp() if retry_at is not None else None
            self.commit([["f", qid, detail, at]])

    def stats(self, now: float) -> QueueStats:
        mails = list(self.state.queue.values())
        waiting = [m for m in mails if m.state != GAVE_UP]
        oldest = min((m.enqueued for m in waiting), default=None)
        return QueueStats(
            waiting=len(waiting),
            due=sum(1 for m in waiting if m.claimable(now)),
            oldest=_utc(oldest) if oldest is not None else None,
            failed=len(mails) - len(waiting),
        )

    # ------------------------------------------------------------------ limits, nonces, meta

    def hit(self, key: str, limit: Limit, now: float) -> float | None:
        hits = self.state.hits_within(key, limit.seconds, now)
        if len(hits) >= limit.count:
            # allowed again when the oldest hit that keeps the count full leaves the window
            return max(0.0, hits[len(hits) - limit.count] + limit.seconds - now)
        self.commit([["h", key, now, now + limit.seconds]])
        return None

    def use_nonce(self, nonce: str, expires: float, now: float) -> bool:
        if nonce in self.state.nonces:
            return False
        self.commit([["n", nonce, max(expires, now)]])
        return True

    def set_meta(self, key: str, value: str | None) -> None:
        if self.state.meta.get(key) != value:
            self.commit([["m", key, value]])

    # ------------------------------------------------------------------ housekeeping

    def prune(self, now: float, *, fold: bool) -> None:
        """Expire pending subscribers and old given-up mail; fold when anything expired
        (or `fold` and the journal holds anything): the fold drops old hits and nonces."""
        st = self.state
        before = now - self.cfg.pending_days * 86400
        ops: list[Any] = [["r", key] for key in st.expired_pending(before, _epoch)]
        keep = now - self.cfg.history_days * 86400
        ops += [["d", m.id] for m in st.queue.values() if m.state == GAVE_UP and m.due < keep]
        expired = any(x <= now for x in st.nonces.values()) or any(
            h[1] <= now for hits in st.limits.values() for h in hits
        )
        self.commit(ops)
        if ops or expired or (fold and self.changes.size()):
            self.fold(now)

    def items(self) -> list[Item]:
        st = self.state
        items: list[Item] = [MetaValue(k, v) for k, v in sorted(st.meta.items())]
        items += [st.subs[k] for k in sorted(st.subs)]
        items += [self._public(m) for m in st.queue.values()]
        items += [LimitHits(k, tuple(h)) for k, h in st.limits.items()]
        items += [UsedNonce(n, _utc(x)) for n, x in st.nonces.items()]
        return items

    def load(self, items: Iterable[Item]) -> None:
        """Replace the whole state by `items` (import), in one write of the base file."""
        state = State()
        for it in items:
            if isinstance(it, Subscriber):
                state.put(it)
            elif isinstance(it, QueuedMail):
                # a claim does not survive a move: the message is due again
                kind = GAVE_UP if it.state == GAVE_UP else QUEUED
                state.queue[it.id] = Mail(
                    it.id,
                    MESSAGE.encode(it.message),
                    it.enqueued.timestamp(),
                    it.due.timestamp(),
                    it.attempts,
                    kind,
                    it.detail,
                )
            elif isinstance(it, LimitHits):
                state.limits[it.key] = list(it.hits)
            elif isinstance(it, UsedNonce):
                state.nonces[it.nonce] = it.expires.timestamp()
            elif isinstance(it, MetaValue):
                state.meta[it.key] = it.value
        state.seq = self.state.seq + 1  # the base moves on: other processes reload it
        self.state = state
        for sub in [s for s in state.subs.values() if not s.id]:
            state.put(self.with_id(sub))
        self.fold()
