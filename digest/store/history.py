"""I/O edge: the day-by-day side of the TinyDB store, history.json plus journal.jsonl.

    history.json   TinyDB, one document per DAY (doc id = date ordinal) in each table:
                   "seen" {"p": [ids first seen that day]}, "papers" {"p": {id: paper}},
                   "digests" {"p": [ids], "d": {email: record}}, "runs" {"r": [reports]}
    journal.jsonl  delivery records not yet folded into history.json

`record` appends one line to the journal (and fdatasyncs it when `fsync` is on, so a
message the SMTP server accepted is never sent twice even after a power loss; that costs
~0.2 ms per record on an SSD, small next to an SMTP transaction). `fold` writes the
journal into history.json atomically, then truncates it; a crash between the two replays
records that are already folded, which is harmless because a later record for a digest
wins. Per-day documents keep a day's run independent of how long the history is, and
retention bounds the size. Every method expects the store lock to be held (TinyStore).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.table import Document

from digest.config import StoreConfig
from digest.errors import StoreError
from digest.models import DEFERRED, SENT, DeliveryRecord, Paper, RunReport, digest_id
from digest.store import codec
from digest.store.base import SeenPaper
from digest.store.codec import Rec
from digest.store.files import AtomicJSONStorage, Journal

HISTORY, JOURNAL = "history.json", "journal.jsonl"
TABLES = ("seen", "papers", "digests", "runs")


@contextlib.contextmanager
def tiny_write(storage: AtomicJSONStorage) -> Iterator[TinyDB]:
    """A batch of TinyDB operations committed as ONE atomic file write (lock held)."""
    db = TinyDB(storage=lambda: storage)
    try:
        yield db
        storage.commit()
    except BaseException:
        storage.invalidate()  # memory may hold half a change: reload from disk
        raise


def corrupt(storage: AtomicJSONStorage, e: Exception) -> StoreError:
    storage.invalidate()
    return StoreError(
        f"{storage.path}: corrupt store file ({e}); restore it from a backup or move it away"
    )


class History:
    def __init__(self, root: Path, cfg: StoreConfig) -> None:
        self.cfg = cfg
        self.storage = AtomicJSONStorage(root / HISTORY, cfg.fsync)
        self.journal = Journal(root / JOURNAL, cfg.fsync)
        # derived from the loaded file, rebuilt when the storage's version changes
        self._ver = -1
        self._seen: dict[str, int] = {}  # paper id -> first-seen day ordinal
        self._paper_day: dict[str, int] = {}  # paper id -> day whose "papers" doc holds it
        self._digest_days: set[int] = set()
        self._days: dict[int, dict[str, Rec]] = {}  # decoded digest days (history + journal)
        self._overlay: dict[int, dict[str, Rec]] = {}  # journal records not yet folded

    def close(self) -> None:
        self.storage.shutdown()
        self.journal.close()

    # ------------------------------------------------------------------ plumbing

    def sync(self) -> None:
        """Bring history.json + journal up to date."""
        size = self.journal.size()
        if self.storage.refresh() or size < self.journal.offset:
            # a reload, or another process folded the journal: replay it from the start
            self._overlay = {}
            self._days = {}
            records = self.journal.read(0, size)
        else:
            records = self.journal.read(self.journal.offset, size)
        if self._ver != self.storage.version:
            self._rebuild()
        for obj in records:
            try:
                o, email, rec = codec.journal_record(obj)
            except ValueError as e:
                raise StoreError(
                    f"{self.journal.path}: corrupt journal record ({e}); "
                    "restore it from a backup or move it away"
                ) from e
            self._apply(o, email, rec)

    def _rebuild(self) -> None:
        tables = self.storage.read()
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
            raise corrupt(self.storage, ValueError("bad seen/papers document")) from e
        self._seen, self._paper_day = seen, paper_day
        self._digest_days = {int(k) for k in tables.get("digests", {})}
        self._days = {}
        self._ver = self.storage.version

    def _apply(self, o: int, email: str, rec: Rec) -> None:
        self._overlay.setdefault(o, {})[email] = rec
        if o in self._days:
            self._days[o][email] = rec

    def _day(self, o: int) -> dict[str, Rec]:
        if o not in self._days:
            doc = self.storage.read().get("digests", {}).get(str(o))
            try:
                recs = codec.decode_day(doc) if doc is not None else {}
            except ValueError as e:
                raise corrupt(self.storage, e) from e
            recs.update(self._overlay.get(o, {}))
            self._days[o] = recs
        return self._days[o]

    def _all_days(self) -> list[int]:
        return sorted(self._digest_days | set(self._overlay))

    def fold(self, mutate: Callable[[TinyDB], None] | None = None) -> None:
        """Fold journal records into history.json (plus `mutate`), then truncate it."""
        pending = self.journal.size() > 0
        if not pending and not self._overlay and mutate is None:
            return
        with tiny_write(self.storage) as db:
            table = db.table("digests", cache_size=0)
            for o, recs in self._overlay.items():
                doc = table.get(doc_id=o)
                table.upsert(Document(codec.encode_day(doc, recs, date.fromordinal(o)), doc_id=o))
            if mutate is not None:
                mutate(db)
        if pending:
            self.journal.truncate()
        self._overlay = {}

    # ------------------------------------------------------------------ seen-store

    def record_seen(self, papers: Sequence[Paper], day: date) -> dict[str, date]:
        o = day.toordinal()
        given = {p.id: p for p in papers}
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
        with tiny_write(self.storage) as db:
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
        return {pid: date.fromordinal(self._seen[pid]) for pid in ids if pid in self._seen}

    def paper(self, pid: str) -> Paper | None:
        d = self._paper_day.get(pid)
        if d is None:
            return None
        raw = self.storage.read()["papers"][str(d)]["p"][pid]
        try:
            return codec.paper_from_dict(pid, raw)
        except ValueError as e:
            raise corrupt(self.storage, e) from e

    def recent_papers(self, since: date) -> list[Paper]:
        lo = since.toordinal()
        ids = sorted(
            (o, pid) for pid, o in self._seen.items() if o >= lo and pid in self._paper_day
        )
        return [p for _, pid in ids if (p := self.paper(pid)) is not None]

    def seen_days(self, since: date) -> dict[date, tuple[str, ...]]:
        lo = since.toordinal()
        ids: dict[int, list[str]] = {}
        for pid, o in self._seen.items():
            if o >= lo and pid in self._paper_day:
                ids.setdefault(o, []).append(pid)
        return {date.fromordinal(o): tuple(sorted(ids[o])) for o in sorted(ids)}

    # ------------------------------------------------------------------ delivery records

    def record(self, r: DeliveryRecord, at: int) -> None:
        if r.state not in codec.STATE_CODES:
            raise StoreError(f"record: unknown digest state {r.state!r}")
        try:
            rec = codec.rec_of(r, at)
            line = codec.journal_line(r, rec)
        except ValueError as e:
            raise StoreError(f"record: {e}") from e
        self.journal.append(line)
        self._apply(r.day.toordinal(), r.email, rec)

    def record_many(self, recs: Sequence[DeliveryRecord], ats: Sequence[int]) -> None:
        """`record` for each, with ONE journal append (so one fdatasync) for all."""
        lines, applied = [], []
        for r, at in zip(recs, ats, strict=True):
            if r.state not in codec.STATE_CODES:
                raise StoreError(f"record: unknown digest state {r.state!r}")
            try:
                rec = codec.rec_of(r, at)
                lines.append(codec.journal_line(r, rec))
            except ValueError as e:
                raise StoreError(f"record: {e}") from e
            applied.append((r.day.toordinal(), r.email, rec))
        self.journal.append(b"".join(lines))
        for o, email, rec in applied:
            self._apply(o, email, rec)

    def digests_for_day(self, day: date) -> dict[str, str]:
        return {email: rec[0] for email, rec in self._day(day.toordinal()).items()}

    def delivered_since(self, since: date, emails: Collection[str] | None) -> dict[str, set[str]]:
        lo = since.toordinal()
        wanted = None if emails is None else set(emails)
        out: dict[str, set[str]] = {}
        for o in self._all_days():
            if o < lo:
                continue
            for email, rec in self._day(o).items():
                if rec[0] == SENT and rec[1] and (wanted is None or email in wanted):
                    out.setdefault(email, set()).update(rec[1])
        return out

    def _record_of(self, o: int, email: str, rec: Rec) -> DeliveryRecord:
        try:
            return codec.record_of(o, email, rec)
        except ValueError as e:
            raise corrupt(self.storage, e) from e

    def history(self, email: str, limit: int) -> list[DeliveryRecord]:
        out: list[DeliveryRecord] = []
        for o in reversed(self._all_days()):
            if len(out) >= limit:
                break
            rec = self._day(o).get(email)
            if rec is not None:
                out.append(self._record_of(o, email, rec))
        return out

    def get_digest(self, did: str) -> DeliveryRecord | None:
        try:  # the default ids start with their day: look there first
            days = [date.fromisoformat(did[:10]).toordinal()]
        except ValueError:
            days = []
        for o in days + self._all_days():
            for email, rec in self._day(o).items():
                if (rec[4] or digest_id(email, date.fromordinal(o))) == did:
                    return self._record_of(o, email, rec)
        return None

    def pending_retries(self) -> list[DeliveryRecord]:
        return [
            self._record_of(o, email, rec)
            for o in self._all_days()
            for email, rec in self._day(o).items()
            if rec[0] == DEFERRED
        ]

    # ------------------------------------------------------------------ runs

    @staticmethod
    def add_run(db: TinyDB, report: RunReport) -> None:
        o = report.day.toordinal()
        table = db.table("runs", cache_size=0)
        doc = table.get(doc_id=o)
        runs = (list(doc["r"]) if doc else []) + [codec.run_to_dict(report)]
        table.upsert(Document({"r": runs}, doc_id=o))

    def runs(self, limit: int) -> list[RunReport]:
        days = sorted(self.storage.read().get("runs", {}).items(), key=lambda kv: -int(kv[0]))
        out: list[RunReport] = []
        try:
            for _, doc in days:
                out.extend(codec.run_from_dict(r) for r in reversed(doc.get("r", [])))
                if len(out) >= limit:
                    break
        except ValueError as e:
            raise corrupt(self.storage, e) from e
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

    def stale(self, today: date) -> bool:
        """Whether retention drops anything: a day document in history.json or a journal
        record not yet folded."""
        tables = self.storage.read()
        keep_hist = today.toordinal() - self.cfg.history_days
        return any(o < keep_hist for o in self._overlay) or any(
            int(k) < cutoff for name, cutoff in self._cutoffs(today) for k in tables.get(name, {})
        )

    def drop(self, db: TinyDB, today: date) -> None:
        """Remove expired day documents; runs inside `fold`, after the journal is folded."""
        for name, cutoff in self._cutoffs(today):
            old = [int(k) for k in (db.storage.read() or {}).get(name, {}) if int(k) < cutoff]
            if old:
                db.table(name, cache_size=0).remove(doc_ids=old)

    def prune(self, today: date, report: RunReport | None = None) -> None:
        """Retention, plus the run's report when given: ONE rewrite of history.json at
        the end of a run (each costs ~50 ms at a full 30-day history); none when nothing
        expired and nothing is pending."""

        def finish(db: TinyDB) -> None:
            if report is not None:
                self.add_run(db, report)
            self.drop(db, today)

        self.fold(finish if report is not None or self.stale(today) else None)

    # ------------------------------------------------------------------ export / import

    def is_empty(self) -> bool:
        tables = self.storage.read()
        return not self._overlay and not any(tables.get(t) for t in TABLES)

    def seen_items(self) -> Iterator[SeenPaper]:
        for pid, o in sorted(self._seen.items(), key=lambda kv: (kv[1], kv[0])):
            kept = self._paper_day.get(pid)
            yield SeenPaper(
                pid,
                date.fromordinal(o),
                self.paper(pid),
                date.fromordinal(kept) if kept is not None else None,
            )

    def record_items(self) -> Iterator[DeliveryRecord]:
        for o in self._all_days():
            for email, rec in sorted(self._day(o).items()):
                yield self._record_of(o, email, rec)

    def run_items(self) -> Iterator[RunReport]:
        yield from reversed(self.runs(limit=1 << 30))

    def load(
        self,
        seen: Sequence[SeenPaper],
        records: Sequence[DeliveryRecord],
        runs: Sequence[RunReport],
    ) -> None:
        """Replace everything with the given items, in one write of history.json."""
        tables: dict[str, dict[str, Any]] = {t: {} for t in TABLES}
        for s in seen:
            o = s.first_seen.toordinal()
            tables["seen"].setdefault(str(o), {"p": []})["p"].append(s.id)
            if s.paper is not None:
                k = str((s.kept_on or s.first_seen).toordinal())
                tables["papers"].setdefault(k, {"p": {}})["p"][s.id] = codec.paper_to_dict(s.paper)
        days: dict[int, dict[str, Rec]] = {}
        for r in records:
            at = int(r.at.timestamp()) if r.at is not None else 0
            days.setdefault(r.day.toordinal(), {})[r.email] = codec.rec_of(r, at)
        for o, recs in days.items():
            tables["digests"][str(o)] = codec.encode_day(None, recs, date.fromordinal(o))
        for rep in runs:
            doc = tables["runs"].setdefault(str(rep.day.toordinal()), {"r": []})
            doc["r"].append(codec.run_to_dict(rep))
        self.storage.write(tables)
        try:
            self.storage.commit()
        except BaseException:
            self.storage.invalidate()
            raise
        self.journal.truncate()
        self._overlay = {}
        self._ver = -1
        self.sync()
