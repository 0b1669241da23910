"""I/O edge: the embedded default store, TinyDB files in one folder.

    <folder>/subscribers.json  TinyDB, table "subscribers": one document per subscriber
             history.json      TinyDB, one document per DAY (doc id = date ordinal) in each
                               table: "seen" {"p": [ids first seen that day]},
                               "papers" {"p": {id: paper}}, "digests" {"p": [ids],
                               "d": {email: record}}, "runs" {"r": [reports]}
             journal.jsonl     delivery records not yet folded into history.json
             store.lock        held for every write (read-modify-write) by any process
             run.lock          held for a whole `digest run`
             secret.key        the token-signing secret (0600)

Data is loaded once and kept in memory; the files are rewritten only at flush points
(record_seen, put_subscribers, remove_subscriber, record_run, prune, flush, close).
`record_digest` appends one line to the journal (and fdatasyncs it when `fsync` is on, so a
message the SMTP server accepted is never sent twice even after a power loss; that costs
~0.2 ms per record on an SSD, small next to an SMTP transaction). `flush` folds the journal
into history.json atomically, then truncates it; a crash between the two replays records
that are already folded, which is harmless because a later record for a digest wins.

Every write takes store.lock and first reloads whatever another process (the web
service) committed, so writers never lose each other's changes. Per-day documents keep a
day's run independent of how long the history is, and retention bounds the size.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from tinydb import TinyDB
from tinydb.table import Document

from digest.config import StoreConfig
from digest.errors import StoreError, StoreLocked
from digest.models import DEFERRED, SENT, Paper, Subscriber, digest_id
from digest.store import codec
from digest.store.base import RecordArgs
from digest.store.files import (
    AtomicJSONStorage,
    FlockLock,
    Journal,
    atomic_write,
    remove_stale_temps,
)

SUBSCRIBERS, HISTORY, JOURNAL = "subscribers.json", "history.json", "journal.jsonl"
LOCK_TIMEOUT = 60.0  # seconds; writes hold store.lock for milliseconds

Rec = tuple[str, tuple[str, ...], int, str, str]  # state, paper ids, at, detail, id ("": default)


class TinyStore:
    def __init__(self, cfg: StoreConfig) -> None:
        self.cfg = cfg
        self.root = Path(cfg.path)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"{self.root}: cannot create the store folder: {e.strerror}") from e
        self._mutex = threading.RLock()  # the web service calls us from several threads
        self._lock = FlockLock(self.root / "store.lock")
        self._subs = AtomicJSONStorage(self.root / SUBSCRIBERS, cfg.fsync)
        self._hist = AtomicJSONStorage(self.root / HISTORY, cfg.fsync)
        self._journal = Journal(self.root / JOURNAL, cfg.fsync)
        self._closed = False
        self._secret: str | None = None
        # derived from the loaded files, rebuilt when a storage's version changes
        self._sub_ver = self._hist_ver = -1
        self._sub_index: dict[str, tuple[int, Subscriber]] = {}  # email.lower() -> (doc id, sub)
        self._seen: dict[str, int] = {}  # paper id -> first-seen day ordinal
        self._paper_day: dict[str, int] = {}  # paper id -> day whose "papers" doc holds it
        self._digest_days: set[int] = set()
        self._days: dict[int, dict[str, Rec]] = {}  # decoded digest days (history + journal)
        self._overlay: dict[int, dict[str, Rec]] = {}  # journal records not yet folded
        with self._locked():
            remove_stale_temps(self.root, (SUBSCRIBERS, HISTORY, "secret.key"))
            self._sync_subs()
            self._sync_hist()

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
    def _write(self, storage: AtomicJSONStorage) -> Iterator[TinyDB]:
        """A batch of TinyDB operations committed as ONE atomic file write (lock held)."""
        db = TinyDB(storage=lambda: storage)
        try:
            yield db
            storage.commit()
        except BaseException:
            storage.invalidate()  # memory may hold half a change: reload from disk
            raise

    @staticmethod
    def _db(storage: AtomicJSONStorage) -> TinyDB:
        return TinyDB(storage=lambda: storage)

    def _corrupt(self, storage: AtomicJSONStorage, e: Exception) -> StoreError:
        storage.invalidate()
        return StoreError(
            f"{storage.path}: corrupt store file ({e}); restore it from a backup or move it away"
        )

    def _sync_subs(self) -> None:
        with self._mutex:
            self._subs.refresh()
            if self._sub_ver == self._subs.version:
                return
            index = {}
            try:
                for doc in self._db(self._subs).table("subscribers", cache_size=0).all():
                    sub = codec.subscriber_from_dict(doc)
                    index[sub.email.lower()] = (doc.doc_id, sub)
            except ValueError as e:
                raise self._corrupt(self._subs, e) from e
            self._sub_index, self._sub_ver = index, self._subs.version

    def _sync_hist(self) -> None:
        """Bring history.json + journal up to date (store lock held)."""
        size = self._journal.size()
        if self._hist.refresh() or size < self._journal.offset:
            # a reload, or another process folded the journal: replay it from the start
            self._overlay = {}
            self._days = {}
            records = self._journal.read(0, size)
        else:
            records = self._journal.read(self._journal.offset, size)
        if self._hist_ver != self._hist.version:
            self._rebuild_hist()
        for obj in records:
            try:
                o, email, rec = codec.journal_record(obj)
            except ValueError as e:
                raise StoreError(
                    f"{self._journal.path}: corrupt journal record ({e}); "
                    "restore it from a backup or move it away"
                ) from e
            self._apply(o, email, rec)

    def _rebuild_hist(self) -> None:
        tables = self._hist.read()
        seen: dict[str, int] = {}
        paper_day: dict[str, int] = {}
        try:
            for k, doc in tables.get("seen", {}).items():
                for pid in doc["p"]:
                    seen[pid] = min(seen.get(pid, int(k)), int(k))
            for k, doc in tables.get("papers", {}).items():
                for pid in doc["p"]:
                    paper_day[pid] = max(paper_day.get(pid, int(k)), int(k))
        except (KeyError, TypeError) as e:
            raise self._corrupt(self._hist, ValueError("bad seen/papers document")) from e
        self._seen, self._paper_day = seen, paper_day
        self._digest_days = {int(k) for k in tables.get("digests", {})}
        self._days = {}
        self._hist_ver = self._hist.version

    def _apply(self, o: int, email: str, rec: Rec) -> None:
        if rec[4] == digest_id(email, date.fromordinal(o)):
            rec = (*rec[:4], "")
        self._overlay.setdefault(o, {})[email] = rec
        if o in self._days:
            self._days[o][email] = rec

    def _day(self, o: int) -> dict[str, Rec]:
        if o not in self._days:
            doc = self._hist.read().get("digests", {}).get(str(o))
            try:
                recs = codec.decode_day(doc) if doc is not None else {}
            except ValueError as e:
                raise self._corrupt(self._hist, e) from e
            recs.update(self._overlay.get(o, {}))
            self._days[o] = recs
        return self._days[o]

    def _all_days(self) -> list[int]:
        return sorted(self._digest_days | set(self._overlay))

    def _fold(self, mutate: Callable[[TinyDB], None] | None = None) -> None:
        """Fold journal records into history.json (plus `mutate`), then truncate it."""
        pending = self._journal.size() > 0
        if not pending and not self._overlay and mutate is None:
            return
        with self._write(self._hist) as db:
            table = db.table("digests", cache_size=0)
            for o, recs in self._overlay.items():
                doc = table.get(doc_id=o)
                table.upsert(Document(codec.encode_day(doc, recs), doc_id=o))
            if mutate is not None:
                mutate(db)
        if pending:
            self._journal.truncate()
        self._overlay = {}

    # ------------------------------------------------------------------ lifecycle

    def flush(self) -> None:
        with self._locked():
            self._sync_hist()
            self._fold()

    def close(self) -> None:
        with self._mutex:
            if self._closed:
                return
            try:
                self.flush()
            finally:
                self._closed = True
                self._subs.shutdown()
                self._hist.shutdown()
                self._journal.close()
                self._lock.close()

    def __enter__(self) -> TinyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def run_lock(self, wait: bool = False) -> Iterator[None]:
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

    def secret(self) -> str:
        if self._secret is not None:
            return self._secret
        path = self.root / "secret.key"
        with self._locked():
            try:
                value = path.read_text(encoding="ascii").strip()
                if os.stat(path).st_mode & 0o077:
                    os.chmod(path, 0o600)  # it signs every unsubscribe/manage link
            except FileNotFoundError:
                value = secrets.token_urlsafe(32)
                try:
                    os.close(atomic_write(path, value.encode() + b"\n", fsync=True))
                except OSError as e:
                    raise StoreError(f"{path}: cannot write the secret: {e.strerror}") from e
            except (OSError, UnicodeDecodeError) as e:
                raise StoreError(f"{path}: cannot read the secret: {e}") from e
            if not value:
                raise StoreError(f"{path}: the secret file is empty; restore it from a backup")
            self._secret = value
            return value

    # ------------------------------------------------------------------ subscribers

    def subscribers(self) -> list[Subscriber]:
        self._sync_subs()
        return [sub for _, sub in self._sub_index.values()]

    def get_subscriber(self, email: str) -> Subscriber | None:
        self._sync_subs()
        hit = self._sub_index.get(email.lower())
        return hit[1] if hit else None

    def put_subscribers(self, subs: Iterable[Subscriber]) -> None:
        by_key = {s.email.lower(): s for s in subs}
        if not by_key:
            return
        with self._locked():
            self._sync_subs()
            index = self._sub_index
            with self._write(self._subs) as db:
                table = db.table("subscribers", cache_size=0)
                old = [index[k][0] for k in by_key if k in index]
                next_id = max((doc_id for doc_id, _ in index.values()), default=0) + 1
                docs = []
                for k, sub in by_key.items():
                    if k in index:
                        doc_id = index[k][0]
                    else:
                        doc_id, next_id = next_id, next_id + 1
                    docs.append(Document(codec.subscriber_to_dict(sub), doc_id=doc_id))
                if old:
                    table.remove(doc_ids=old)
                table.insert_multiple(docs)
            self._sync_subs()

    def remove_subscriber(self, email: str) -> bool:
        with self._locked():
            self._sync_subs()
            hit = self._sub_index.get(email.lower())
            if hit is None:
                return False
            with self._write(self._subs) as db:
                db.table("subscribers", cache_size=0).remove(doc_ids=[hit[0]])
            self._sync_subs()
            return True

    # ------------------------------------------------------------------ seen-store

    def record_seen(self, papers: Sequence[Paper], day: date) -> dict[str, date]:
        o = day.toordinal()
        given = {p.id: p for p in papers}
        with self._locked():
            self._sync_hist()
            first = {pid: self._seen.get(pid, o) for pid in given}
            new = [pid for pid in given if pid not in self._seen]
            moves: dict[int, set[str]] = {}
            targets: dict[int, dict[str, Paper]] = {}
            for pid, p in given.items():
                old = self._paper_day.get(pid)
                d = o if old is None else max(o, old)
                if old is not None and old != d:
                    moves.setdefault(old, set()).add(pid)
                targets.setdefault(d, {})[pid] = p
            with self._write(self._hist) as db:
                if new:
                    seen = db.table("seen", cache_size=0)
                    doc = seen.get(doc_id=o)
                    ids = (list(doc["p"]) if doc else []) + new
                    seen.upsert(Document({"p": ids}, doc_id=o))
                table = db.table("papers", cache_size=0)
                for d, pids in moves.items():
                    doc = table.get(doc_id=d)
                    rest = {k: v for k, v in (doc or {"p": {}})["p"].items() if k not in pids}
                    if rest:
                        table.upsert(Document({"p": rest}, doc_id=d))
                    else:
                        table.remove(doc_ids=[d])
                for d, ps in targets.items():
                    doc = table.get(doc_id=d)
                    merged = dict(doc["p"]) if doc else {}
                    merged.update((pid, codec.paper_to_dict(p)) for pid, p in ps.items())
                    table.upsert(Document({"p": merged}, doc_id=d))
        return {pid: date.fromordinal(v) for pid, v in first.items()}

    def first_seen(self, ids: Iterable[str]) -> dict[str, date]:
        with self._locked():
            self._sync_hist()
            return {pid: date.fromordinal(self._seen[pid]) for pid in ids if pid in self._seen}

    def _paper(self, pid: str) -> Paper | None:
        d = self._paper_day.get(pid)
        if d is None:
            return None
        raw = self._hist.read()["papers"][str(d)]["p"][pid]
        try:
            return codec.paper_from_dict(pid, raw)
        except ValueError as e:
            raise self._corrupt(self._hist, e) from e

    def recent_papers(self, since: date) -> list[Paper]:
        lo = since.toordinal()
        with self._locked():
            self._sync_hist()
            ids = sorted(
                (o, pid) for pid, o in self._seen.items() if o >= lo and pid in self._paper_day
            )
            return [p for _, pid in ids if (p := self._paper(pid)) is not None]

    def get_papers(self, ids: Iterable[str]) -> dict[str, Paper]:
        with self._locked():
            self._sync_hist()
            return {pid: p for pid in ids if (p := self._paper(pid)) is not None}

    # ------------------------------------------------------------------ delivery records

    def record_digest(
        self,
        digest_id: str,
        email: str,
        day: date,
        state: str,
        paper_ids: Sequence[str] = (),
        detail: str = "",
    ) -> None:
        if state not in codec.STATE_CODES:
            raise StoreError(f"record_digest: unknown digest state {state!r}")
        ids = tuple(paper_ids)
        at = int(time.time())
        line = codec.journal_line(digest_id, email, day, state, ids, at, detail)
        with self._locked():
            self._sync_hist()  # reads others' lines first, so ours lands after them
            self._journal.append(line)
            self._apply(day.toordinal(), email, (state, ids, at, detail, digest_id))

    def record_digests(self, records: Sequence[RecordArgs]) -> None:
        lines: list[bytes] = []
        recs: list[tuple[int, str, Rec]] = []
        at = int(time.time())
        for did, email, day, state, paper_ids, detail in records:
            if state not in codec.STATE_CODES:
                raise StoreError(f"record_digest: unknown digest state {state!r}")
            ids = tuple(paper_ids)
            lines.append(codec.journal_line(did, email, day, state, ids, at, detail))
            recs.append((day.toordinal(), email, (state, ids, at, detail, did)))
        if not lines:
            return
        with self._locked():
            self._sync_hist()  # reads others' lines first, so ours land after them
            self._journal.append(b"".join(lines))  # one write, one fdatasync
            for o, email, rec in recs:
                self._apply(o, email, rec)

    def digests_for_day(self, day: date) -> dict[str, str]:
        with self._locked():
            self._sync_hist()
            return {email: rec[0] for email, rec in self._day(day.toordinal()).items()}

    def delivered_since(self, since: date) -> dict[str, set[str]]:
        lo = since.toordinal()
        out: dict[str, set[str]] = {}
        with self._locked():
            self._sync_hist()
            for o in self._all_days():
                if o < lo:
                    continue
                for email, rec in self._day(o).items():
                    if rec[0] == SENT and rec[1]:
                        out.setdefault(email, set()).update(rec[1])
        return out

    @staticmethod
    def _rec_dict(o: int, email: str, rec: Rec) -> dict[str, Any]:
        day = date.fromordinal(o)
        return {
            "id": rec[4] or digest_id(email, day),
            "email": email,
            "day": day.isoformat(),
            "state": rec[0],
            "papers": list(rec[1]),
            "at": codec.at_iso(rec[2]),
            "detail": rec[3],
        }

    def history(self, email: str, limit: int = 30) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        with self._locked():
            self._sync_hist()
            for o in reversed(self._all_days()):
                if len(out) >= limit:
                    break
                rec = self._day(o).get(email)
                if rec is not None:
                    out.append(self._rec_dict(o, email, rec))
        return out

    def pending_retries(self) -> list[dict[str, Any]]:
        with self._locked():
            self._sync_hist()
            return [
                self._rec_dict(o, email, rec)
                for o in self._all_days()
                for email, rec in self._day(o).items()
                if rec[0] == DEFERRED
            ]

    # ------------------------------------------------------------------ runs

    @staticmethod
    def _run_day(report: dict[str, Any]) -> int:
        try:
            return date.fromisoformat(str(report["day"])).toordinal()
        except (KeyError, ValueError):
            return datetime.now(UTC).date().toordinal()

    @staticmethod
    def _add_run(db: TinyDB, o: int, report: dict[str, Any]) -> None:
        table = db.table("runs", cache_size=0)
        doc = table.get(doc_id=o)
        runs = (list(doc["r"]) if doc else []) + [dict(report)]
        table.upsert(Document({"r": runs}, doc_id=o))

    def record_run(self, report: dict[str, Any]) -> None:
        o = self._run_day(report)
        with self._locked():
            self._sync_hist()
            with self._write(self._hist) as db:
                self._add_run(db, o, report)

    def runs(self, limit: int = 10) -> list[dict[str, Any]]:
        with self._locked():
            self._sync_hist()
            days = sorted(self._hist.read().get("runs", {}).items(), key=lambda kv: -int(kv[0]))
            out: list[dict[str, Any]] = []
            for _, doc in days:
                out.extend(reversed(doc.get("r", [])))
                if len(out) >= limit:
                    break
            return out[:limit]

    # ------------------------------------------------------------------ housekeeping

    def _cutoffs(self, today: date) -> tuple[tuple[str, int], ...]:
        keep_seen = today.toordinal() - self.cfg.retention_days
        keep_hist = today.toordinal() - self.cfg.history_days
        return (
            ("seen", keep_seen),
            ("papers", keep_hist),
            ("digests", keep_hist),
            ("runs", keep_hist),
        )

    def _stale(self, today: date) -> bool:
        """Whether retention drops anything: a day document in history.json or a journal
        record not yet folded (store lock held)."""
        tables = self._hist.read()
        keep_hist = today.toordinal() - self.cfg.history_days
        return any(o < keep_hist for o in self._overlay) or any(
            int(k) < cutoff for name, cutoff in self._cutoffs(today) for k in tables.get(name, {})
        )

    def _drop(self, db: TinyDB, today: date) -> None:
        """Remove expired day documents; runs inside `_fold`, after the journal is folded."""
        for name, cutoff in self._cutoffs(today):
            old = [int(k) for k in (db.storage.read() or {}).get(name, {}) if int(k) < cutoff]
            if old:
                db.table(name, cache_size=0).remove(doc_ids=old)

    def prune(self, today: date) -> None:
        with self._locked():
            self._sync_hist()
            # no rewrite when nothing expired
            self._fold((lambda db: self._drop(db, today)) if self._stale(today) else None)

    def finish_run(self, report: dict[str, Any], today: date) -> None:
        """record_run + prune + flush as ONE atomic rewrite of history.json (the end of a
        run: each whole-file rewrite costs ~50 ms at a full 30-day history)."""
        o = self._run_day(report)
        with self._locked():
            self._sync_hist()

            def finish(db: TinyDB) -> None:
                self._add_run(db, o, report)
                self._drop(db, today)

            self._fold(finish)
