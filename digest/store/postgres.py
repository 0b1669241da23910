"""I/O edge: the PostgreSQL store, for many workers on many machines.

    [store]
    backend = "postgresql"
    url_env = "DIGEST_DATABASE_URL"   # the NAME of the variable holding the connection URL

Every record keeps its keys in indexed columns and all its other fields in a JSONB
column, the dataclass's JSON form (digest/store/fields.py): a field added to Subscriber,
DeliveryRecord or RunReport is stored with no schema change. The schema is created and
migrated by numbered SQL files (digest/store/migrations/NNNN_*.sql) and a version table:
applied when the store opens and the database is behind (under an advisory lock, so two
processes starting at once do not both apply them), refused with a one-line error when the
database is newer than this code. `digest store migrate` applies them explicitly.

Each write is one transaction, committed before the call returns (durable: PostgreSQL's
synchronous commit). Many `digest run` processes share a day (`PgRun`): the first gathers
the day's papers under an advisory lock and stores them, the others wait for that lock and
reuse them; subscribers are claimed in batches (`SELECT ... FOR UPDATE SKIP LOCKED`, then
a leased row per subscriber in `claims`, taken over only once its lease ended), the lease
renewed while the worker records progress. A worker killed mid-batch loses nothing: its
claims end with their lease and a live worker (which waits for them) takes them over.

Connections: up to CONNECTIONS per process (`_Lender`: opened lazily, each lent to one
thread for one short transaction, never used by a forked child), so the SMTP connections'
last checks, the group commits of delivery records and the next claim run side by side
instead of queueing for one session. A single read runs as one statement in autocommit
(one round trip, no BEGIN/COMMIT). Not psycopg_pool: its worker threads would make every
`digest run` a multi-threaded process, and digest/overlap.py only forks its message
builder from a single-threaded one (forking with threads running is unsafe).
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from digest.config import Limit, StoreConfig
from digest.errors import StoreError
from digest.models import (
    ACTIVE,
    DEFERRED,
    DONE_STATES,
    PENDING,
    SENT,
    DeliveryRecord,
    Gathered,
    OutgoingMessage,
    Paper,
    RunReport,
    Subscriber,
)
from digest.store import codec
from digest.store.base import (
    CLAIMED,
    GAVE_UP,
    QUEUED,
    Change,
    Item,
    LimitHits,
    MetaValue,
    QueuedMail,
    QueueStats,
    SeenPaper,
    StoredSecret,
    Updater,
    UsedNonce,
    due_subscribers,
    new_subscriber_id,
)
from digest.store.fields import Codec
from digest.store.state import MESSAGE
from digest.store.statefile import _epoch
from digest.store.tinydb import error_line

SUB = Codec(Subscriber, check=codec._check_subscriber)  # every field by name
PAPER = Codec(Paper, exclude=("id",))
_KEYED = ("digest_id", "email", "day", "state", "paper_ids", "at")
REC = Codec(DeliveryRecord, exclude=_KEYED)  # detail, sections, matched and later fields
GATHERED = Codec(Gathered)
LOCK_GATHER = 0x6469_6765  # advisory lock namespace ("dige") for a day's gather
LOCK_MIGRATE = 0x6469_676D
LOCK_WORKER = 0x6469_6777  # held by each live worker (its liveness), keyed by hashtext(worker)
# The workers whose liveness lock is held (by a session that is still connected): a claim
# of such a worker is never taken over, however late it is to renew its lease.
ALIVE = (
    "(SELECT l.objid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted "
    f"AND l.classid = {LOCK_WORKER}::bigint::oid AND l.objsubid = 2)"
)


def _alive(worker_col: str) -> str:
    return f"((hashtext({worker_col})::bigint & 4294967295)::oid IN (SELECT objid FROM alive))"


def migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of every migration shipped, in order."""
    folder = resources.files("digest.store") / "migrations"
    out = []
    for f in folder.iterdir():
        name = f.name
        if name.endswith(".sql") and name[:4].isdigit():
            out.append((int(name[:4]), name, f.read_text(encoding="utf-8")))
    out.sort()
    if [v for v, _, _ in out] != list(range(1, len(out) + 1)):
        raise RuntimeError(f"migrations are not numbered 1..n: {[n for _, n, _ in out]}")
    return out


def _utc(x: float) -> datetime:
    return datetime.fromtimestamp(x, UTC)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


CONNECTIONS = 4  # sessions a process opens at most (the web and a run: a few threads each)


class _Lender:
    """Up to `size` connections, each lent to one thread at a time; a thread that holds
    one gets the same one again (nested transactions stay one transaction). Opened on
    demand; a broken one is dropped; a forked child starts with none (its parent's
    sockets are not its own: it neither uses nor closes them)."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], size: int) -> None:
        self._connect, self._size = connect, size
        self._cv = threading.Condition()
        self._idle: list[psycopg.Connection[Any]] = []
        self._open = 0
        self._pid = os.getpid()
        self._held = threading.local()
        self.closed = False

    def _forked(self) -> None:
        if self._pid != os.getpid():
            self._pid, self._idle, self._open = os.getpid(), [], 0
            self._held = threading.local()

    @contextlib.contextmanager
    def lend(self) -> Iterator[psycopg.Connection[Any]]:
        if self._pid != os.getpid():  # the lock only after a fork, not on every call
            with self._cv:
                self._forked()
        held = getattr(self._held, "conn", None)
        if held is not None:
            yield held
            return
        conn = self._take()
        self._held.conn = conn
        try:
            yield conn
        finally:
            self._held.conn = None
            with self._cv:
                if self.closed or conn.closed or conn.broken or self._pid != os.getpid():
                    self._open -= 1
                    with contextlib.suppress(psycopg.Error):
                        conn.close()
                else:
                    self._idle.append(conn)
                self._cv.notify()

    def _take(self) -> psycopg.Connection[Any]:
        with self._cv:
            while not self._idle and self._open >= self._size:
                self._cv.wait()
            if self._idle:
                return self._idle.pop()
            self._open += 1
        try:
            return self._connect()
        except BaseException:
            with self._cv:
                self._open -= 1
                self._cv.notify()
            raise

    def close(self) -> None:
        with self._cv:
            self.closed = True  # the ones lent out are closed when given back
            if self._pid != os.getpid():
                return  # a forked child's copies are its parent's sockets: not closed here
            idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(psycopg.Error):
                conn.close()


@functools.lru_cache(maxsize=64)
def _upsert_records(n: int) -> str:
    """The INSERT of `n` delivery records (7 parameters each), replacing a day's record."""
    values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * n)
    return (
        f"INSERT INTO digests (day, email, digest_id, state, paper_ids, at, data) VALUES {values} "
        "ON CONFLICT (day, email) DO UPDATE SET digest_id = EXCLUDED.digest_id, "
        "state = EXCLUDED.state, paper_ids = EXCLUDED.paper_ids, at = EXCLUDED.at, "
        "data = EXCLUDED.data"
    )


class PgStore:
    def __init__(
        self,
        cfg: StoreConfig,
        *,
        clock: Callable[[], float] = time.time,
        url: str | None = None,
        migrate: bool = True,
    ) -> None:
        self.cfg = cfg
        self._clock = clock
        if url is None:
            url = os.environ.get(cfg.url_env, "")
            if not url:
                raise StoreError(
                    f'[store] backend = "postgresql": the environment variable '
                    f"{cfg.url_env} is not set (it holds the database URL, "
                    f"e.g. postgresql://digest@db.example.org/digest)"
                )
        self.url = url
        self.where = f"postgresql {self._describe(url)}"
        self._conns = _Lender(self._connect, CONNECTIONS)
        self._secret: str | None = None
        self.applied = self.migrate() if migrate else []

    @staticmethod
    def _describe(url: str) -> str:
        """The database, for messages: no password."""
        try:
            info = psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.Error:
            return "database (unparsable URL)"
        host = info.get("host") or "localhost"
        return f"database {info.get('dbname') or info.get('user') or '?'} on {host}"

    # ------------------------------------------------------------------ plumbing

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=30)
        except psycopg.Error as e:
            raise StoreError(f"{self.where}: cannot connect: {_one_line(e)}") from e

    @contextlib.contextmanager
    def _tx(self) -> Iterator[psycopg.Cursor[Any]]:
        """One transaction on a connection of this process, committed on exit (nested in
        the same thread: a savepoint of the outer one)."""
        with self._lent() as conn:
            with conn.transaction(), conn.cursor() as cur:
                yield cur

    @contextlib.contextmanager
    def _read(self) -> Iterator[psycopg.Cursor[Any]]:
        """A cursor for ONE statement: autocommit, so one round trip (a write is committed
        when it returns)."""
        with self._lent() as conn, conn.cursor() as cur:
            yield cur

    @contextlib.contextmanager
    def _lent(self) -> Iterator[psycopg.Connection[Any]]:
        if self._conns.closed:
            raise StoreError(f"{self.where}: the store is closed")
        with self._conns.lend() as conn:
            try:
                yield conn
            except psycopg.Error as e:
                raise StoreError(f"{self.where}: {_one_line(e)}") from e

    def migrate(self) -> list[int]:
        """Bring the schema up to date; the versions applied (none: current). StoreError
        when the database is newer than this code."""
        known = migrations()
        with self._tx() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_MIGRATE,))
            cur.execute("CREATE TABLE IF NOT EXISTS digest_schema (version integer NOT NULL)")
            row = cur.execute("SELECT max(version) FROM digest_schema").fetchone()
            have = row[0] if row and row[0] is not None else 0
            if have > len(known):
                raise StoreError(
                    f"{self.where}: the database schema is version {have}, newer than this "
                    f"digest knows (up to {len(known)}): upgrade digest before using it"
                )
            applied = []
            for version, _name, sql in known[have:]:
                cur.execute(sql.encode())
                cur.execute("INSERT INTO digest_schema (version) VALUES (%s)", (version,))
                applied.append(version)
            return applied

    def schema_version(self) -> int:
        with self._read() as cur:
            row = cur.execute("SELECT max(version) FROM digest_schema").fetchone()
            return int(row[0]) if row and row[0] is not None else 0

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        self._conns.close()  # (again: nothing more to close)

    def __enter__(self) -> PgStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def secret(self) -> str:
        if self._secret is None:
            with self._tx() as cur:
                cur.execute(
                    "INSERT INTO secret (one, value) VALUES (1, %s) ON CONFLICT DO NOTHING",
                    (secrets.token_urlsafe(32),),
                )
                row = cur.execute("SELECT value FROM secret").fetchone()
                assert row is not None
                self._secret = str(row[0])
        return self._secret

    @contextlib.contextmanager
    def run(self, day: date, report: RunReport, *, wait: bool = False) -> Iterator[PgRun]:
        run = PgRun(self, day, report)
        try:
            yield run
        except BaseException as e:
            report.error = report.error or error_line(e)
            try:
                self._end_run(run)
            except StoreError as ce:
                e.add_note(f"and the run's report could not be stored: {ce}")
            raise
        self._end_run(run)

    def _end_run(self, run: PgRun) -> None:
        """Release this worker's claims, commit the report, retention."""
        if run.held:
            run.report.notes.append(
                f"{run.held} due subscriber(s) left to other workers (claimed under a lease; "
                "if their worker died, the next run serves them once the lease ends)"
            )
        try:
            with self._tx() as cur:
                cur.execute("DELETE FROM claims WHERE worker = %s", (run.worker,))
        finally:
            run.release()
        report, day = run.report, run.day
        if report.dry_run:
            return
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO runs (day, data) VALUES (%s, %s)",
                (day, Jsonb(codec.run_to_dict(report))),
            )
        start = datetime.combine(day, datetime.min.time(), UTC).timestamp()
        self.prune(day, _utc(min(self._clock(), start)))

    def runs(self, limit: int = 10) -> list[RunReport]:
        with self._read() as cur:
            rows = cur.execute(
                "SELECT data FROM runs ORDER BY day DESC, seq DESC LIMIT %s", (limit,)
            ).fetchall()
        return [self._decode(codec.run_from_dict, r[0]) for r in rows]

    def _decode(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        try:
            return fn(*args, **kw)
        except ValueError as e:
            raise StoreError(f"{self.where}: corrupt row ({e})") from e

    # ------------------------------------------------------------------ subscribers

    def _sub(self, data: Any) -> Subscriber:
        sub: Subscriber = self._decode(SUB.decode, data, "subscriber")
        return sub

    def subscribers(self) -> list[Subscriber]:
        with self._read() as cur:
            rows = cur.execute("SELECT data FROM subscribers ORDER BY email_lc").fetchall()
        return [self._sub(r[0]) for r in rows]

    def get_subscriber(self, email: str) -> Subscriber | None:
        with self._read() as cur:
            row = cur.execute(
                "SELECT data FROM subscribers WHERE email_lc = %s", (email.lower(),)
            ).fetchone()
        return self._sub(row[0]) if row else None

    def get_subscriber_by_id(self, sid: str) -> Subscriber | None:
        with self._read() as cur:
            row = cur.execute("SELECT data FROM subscribers WHERE id = %s", (sid,)).fetchone()
        return self._sub(row[0]) if row else None

    def subscriber_status(self, email: str) -> str | None:
        # The column alone: no JSON of ratings and examples to send and decode.
        with self._read() as cur:
            row = cur.execute(
                "SELECT status FROM subscribers WHERE email_lc = %s", (email.lower(),)
            ).fetchone()
        return str(row[0]) if row else None

    @staticmethod
    def _fresh_id(cur: psycopg.Cursor[Any], taken: set[str]) -> str:
        while True:
            sid = new_subscriber_id()
            if (
                sid not in taken
                and not cur.execute("SELECT 1 FROM subscribers WHERE id = %s", (sid,)).fetchone()
            ):
                return sid

    def _write_sub(self, cur: psycopg.Cursor[Any], sub: Subscriber) -> Subscriber:
        """Insert or replace by address (under the address's lock); the stored id wins."""
        key = sub.email.lower()
        try:
            data = SUB.encode(sub)
            SUB.decode(data, "subscriber")  # the checks (status, no-match choice)
        except ValueError as e:
            raise StoreError(f"{self.where}: {e}") from e
        cur.execute(
            "INSERT INTO subscribers (email_lc, email, id, status, data) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (email_lc) DO UPDATE SET "
            "email = EXCLUDED.email, status = EXCLUDED.status, "
            "data = EXCLUDED.data || jsonb_build_object('id', subscribers.id)",
            (key, sub.email, sub.id, sub.status, Jsonb(data)),
        )
        return sub

    def _with_id(self, cur: psycopg.Cursor[Any], sub: Subscriber, taken: set[str]) -> Subscriber:
        row = cur.execute(
            "SELECT id FROM subscribers WHERE email_lc = %s", (sub.email.lower(),)
        ).fetchone()
        if row is not None:
            sid = str(row[0])
        elif (
            sub.id
            and sub.id not in taken
            and not cur.execute("SELECT 1 FROM subscribers WHERE id = %s", (sub.id,)).fetchone()
        ):
            sid = sub.id
        else:
            sid = self._fresh_id(cur, taken)
        taken.add(sid)
        return sub if sub.id == sid else Subscriber(**{**_fields(sub), "id": sid})

    @staticmethod
    def _lock_addresses(cur: psycopg.Cursor[Any], keys: Iterable[str]) -> None:
        for key in sorted(set(keys)):  # in order: two writers never deadlock
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ("sub:" + key,))

    def put_subscribers(self, subs: Iterable[Subscriber]) -> None:
        subs = list({s.email.lower(): s for s in subs}.values())
        if not subs:
            return
        with self._tx() as cur:
            self._lock_addresses(cur, (s.email.lower() for s in subs))
            taken: set[str] = set()
            for sub in subs:
                self._write_sub(cur, self._with_id(cur, sub, taken))

    def update_subscriber(
        self, email: str, fn: Updater, *, now: datetime | None = None
    ) -> Subscriber | None:
        key = email.lower()
        at = now.timestamp() if now is not None else self._clock()
        with self._tx() as cur:
            self._lock_addresses(cur, [key])
            row = cur.execute("SELECT data FROM subscribers WHERE email_lc = %s", (key,)).fetchone()
            old = self._sub(row[0]) if row else None
            out = fn(old)
            if out is None:
                return old
            change = out if isinstance(out, Change) else Change(out)
            new = change.subscriber
            if new is not None:
                if new.email.lower() != key:
                    raise StoreError(
                        f"update_subscriber: the update of {email} changed the address to "
                        f"{new.email}"
                    )
                new = self._with_id(cur, new, set())
                if new != old:
                    self._write_sub(cur, new)
            for msg in change.mail:
                self._enqueue(cur, msg, at)
            row = cur.execute("SELECT data FROM subscribers WHERE email_lc = %s", (key,)).fetchone()
        return self._sub(row[0]) if row else None

    def remove_subscriber(self, email: str) -> bool:
        with self._tx() as cur:
            cur.execute("DELETE FROM subscribers WHERE email_lc = %s", (email.lower(),))
            return cur.rowcount > 0

    # ------------------------------------------------------------------ seen-store

    def record_seen(self, papers: Sequence[Paper], day: date) -> dict[str, date]:
        given = {p.id: p for p in papers}
        if not given:
            return {}
        ids = list(given)
        with self._tx() as cur:
            rows = cur.execute(
                "INSERT INTO seen (id, first_seen, kept_on, paper) "
                "SELECT id, %s, %s, paper FROM unnest(%s::text[], %s::jsonb[]) AS u(id, paper) "
                "ON CONFLICT (id) DO UPDATE SET paper = EXCLUDED.paper, "
                "kept_on = GREATEST(seen.kept_on, EXCLUDED.kept_on) "
                "RETURNING id, first_seen",
                (day, day, ids, [Jsonb(PAPER.encode(given[i])) for i in ids]),
            ).fetchall()
        return {str(r[0]): r[1] for r in rows}

    def first_seen(self, ids: Iterable[str]) -> dict[str, date]:
        ids = list(ids)
        if not ids:
            return {}
        with self._read() as cur:
            rows = cur.execute(
                "SELECT id, first_seen FROM seen WHERE id = ANY(%s)", (ids,)
            ).fetchall()
        return {str(r[0]): r[1] for r in rows}

    def _paper(self, pid: str, data: Any) -> Paper:
        return self._decode(PAPER.decode, data, f"paper {pid}", id=pid)  # type: ignore[no-any-return]

    def recent_papers(self, since: date) -> list[Paper]:
        with self._read() as cur:
            rows = cur.execute(
                "SELECT id, paper FROM seen WHERE first_seen >= %s AND paper IS NOT NULL "
                "ORDER BY first_seen, id",
                (since,),
            ).fetchall()
        return [self._paper(str(r[0]), r[1]) for r in rows]

    # (added by the twin session B while merging main: Store.seen_days of h8's papers pages)
    def seen_days(self, since: date) -> dict[date, tuple[str, ...]]:
        with self._read() as cur:
            rows = cur.execute(
                "SELECT first_seen, id FROM seen WHERE first_seen >= %s AND paper IS NOT NULL",
                (since,),
            ).fetchall()
        days: dict[date, list[str]] = {}
        for day, pid in rows:
            days.setdefault(day, []).append(str(pid))
        return {d: tuple(sorted(days[d])) for d in sorted(days)}

    def get_papers(self, ids: Iterable[str]) -> dict[str, Paper]:
        ids = list(ids)
        if not ids:
            return {}
        with self._read() as cur:
            rows = cur.execute(
                "SELECT id, paper FROM seen WHERE id = ANY(%s) AND paper IS NOT NULL", (ids,)
            ).fetchall()
        return {str(r[0]): self._paper(str(r[0]), r[1]) for r in rows}

    # ------------------------------------------------------------------ delivery records

    def _rec_row(self, r: DeliveryRecord, now: int) -> tuple[Any, ...]:
        if r.state not in codec.STATE_CODES:
            raise StoreError(f"record: unknown digest state {r.state!r}")
        try:
            codec.encode_extra(r)  # refuses an unknown section
            data = REC.encode(r)
        except ValueError as e:
            raise StoreError(f"record: {e}") from e
        at = int(r.at.timestamp()) if r.at is not None else now  # whole seconds, as TinyDB
        return (r.day, r.email, r.digest_id, r.state, list(r.paper_ids), _utc(at), Jsonb(data))

    def _record_many(
        self, recs: Sequence[DeliveryRecord], renew: tuple[str, float] | None = None
    ) -> None:
        now = int(self._clock())
        # One row per (day, email), the last one: what upserting them in turn leaves (and
        # one INSERT may not update a row twice).
        rows = list({(r.day, r.email): self._rec_row(r, now) for r in recs}.values())
        if rows and renew is None:
            # One statement, in autocommit: atomic and durable on return like the
            # transaction below, in one round trip instead of BEGIN, the rows and COMMIT
            # (the group commit's cost on every SMTP connection).
            with self._read() as cur:
                cur.execute(_upsert_records(len(rows)), [v for row in rows for v in row])
            return
        with self._tx() as cur:
            if rows:
                cur.executemany(_upsert_records(1), rows)
            if renew is not None:
                cur.execute(
                    "UPDATE claims SET lease_until = now() + make_interval(secs => %s) "
                    "WHERE worker = %s",
                    (renew[1], renew[0]),
                )

    def _record(self, row: Any) -> DeliveryRecord:
        got = self._decode(REC.decode, row[6], f"digest record of {row[1]}", **_core(row))
        assert isinstance(got, DeliveryRecord)
        return got

    _COLS = "day, email, digest_id, state, paper_ids, at, data"

    def digests_for_day(self, day: date) -> dict[str, str]:
        with self._read() as cur:
            rows = cur.execute("SELECT email, state FROM digests WHERE day = %s", (day,)).fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    def delivered_since(
        self, since: date, emails: Collection[str] | None = None
    ) -> dict[str, set[str]]:
        q = "SELECT email, paper_ids FROM digests WHERE state = %s AND day >= %s"
        args: list[Any] = [SENT, since]
        if emails is not None:
            q += " AND email = ANY(%s)"
            args.append(list(emails))
        with self._read() as cur:
            rows = cur.execute(q, args).fetchall()
        out: dict[str, set[str]] = {}
        for email, ids in rows:
            out.setdefault(email, set()).update(ids)
        return {k: v for k, v in out.items() if v}

    def history(self, email: str, limit: int = 30) -> list[DeliveryRecord]:
        with self._read() as cur:
            rows = cur.execute(
                f"SELECT {self._COLS} FROM digests WHERE email = %s ORDER BY day DESC LIMIT %s",
                (email, limit),
            ).fetchall()
        return [self._record(r) for r in rows]

    def get_digest(self, digest_id: str) -> DeliveryRecord | None:
        with self._read() as cur:
            row = cur.execute(
                f"SELECT {self._COLS} FROM digests WHERE digest_id = %s ORDER BY at DESC LIMIT 1",
                (digest_id,),
            ).fetchone()
        return self._record(row) if row else None

    def pending_retries(self) -> list[DeliveryRecord]:
        with self._read() as cur:
            rows = cur.execute(
                f"SELECT {self._COLS} FROM digests WHERE state = %s ORDER BY day, email",
                (DEFERRED,),
            ).fetchall()
        return [self._record(r) for r in rows]

    # ------------------------------------------------------------------ mail queue

    @staticmethod
    def _enqueue(cur: psycopg.Cursor[Any], msg: OutgoingMessage, now: float) -> str:
        qid = secrets.token_urlsafe(12)
        cur.execute(
            "INSERT INTO mail (id, message, enqueued, due, state) VALUES (%s, %s, %s, %s, %s)",
            (qid, Jsonb(MESSAGE.encode(msg)), _utc(now), _utc(now), QUEUED),
        )
        return qid

    def enqueue(self, msg: OutgoingMessage, now: datetime) -> str:
        with self._tx() as cur:
            return self._enqueue(cur, msg, now.timestamp())

    _MAIL = "id, message, enqueued, due, attempts, state, detail, lease_until"

    def _mail(self, row: Any) -> QueuedMail:
        qid, msg, enqueued, due, attempts, state, detail, until = row
        return QueuedMail(
            id=qid,
            message=self._decode(MESSAGE.decode, msg, f"queued mail {qid}"),
            enqueued=enqueued.astimezone(UTC),
            due=due.astimezone(UTC),
            attempts=attempts,
            state=state,
            detail=detail,
            lease_until=until.astimezone(UTC) if state == CLAIMED and until else None,
        )

    def claim_mail(self, now: datetime, lease: float = 300.0, limit: int = 10) -> list[QueuedMail]:
        with self._tx() as cur:
            rows = cur.execute(
                "WITH c AS (SELECT id FROM mail WHERE (state = %(q)s AND due <= %(now)s) "
                "OR (state = %(c)s AND lease_until <= %(now)s) "
                "ORDER BY due, enqueued, id LIMIT %(n)s FOR UPDATE SKIP LOCKED) "
                "UPDATE mail m SET state = %(c)s, attempts = m.attempts + 1, "
                "lease_until = %(until)s FROM c WHERE m.id = c.id "
                f"RETURNING {', '.join('m.' + c for c in self._MAIL.split(', '))}",
                {
                    "q": QUEUED,
                    "c": CLAIMED,
                    "now": now,
                    "n": max(0, limit),
                    "until": now + timedelta(seconds=lease),
                },
            ).fetchall()
        out = [self._mail(r) for r in rows]
        out.sort(key=lambda m: (m.due, m.enqueued, m.id))
        return out

    def mail_sent(self, qid: str) -> None:
        with self._tx() as cur:
            cur.execute("DELETE FROM mail WHERE id = %s", (qid,))

    def mail_failed(self, qid: str, detail: str, retry_at: datetime | None) -> None:
        with self._tx() as cur:
            if retry_at is None:
                cur.execute(
                    "UPDATE mail SET state = %s, detail = %s, lease_until = NULL WHERE id = %s",
                    (GAVE_UP, detail, qid),
                )
            else:
                cur.execute(
                    "UPDATE mail SET state = %s, detail = %s, due = %s, lease_until = NULL "
                    "WHERE id = %s",
                    (QUEUED, detail, retry_at, qid),
                )

    def queue_stats(self, now: datetime) -> QueueStats:
        with self._tx() as cur:
            row = cur.execute(
                "SELECT count(*) FILTER (WHERE state <> %(f)s), "
                "count(*) FILTER (WHERE (state = %(q)s AND due <= %(now)s) "
                "OR (state = %(c)s AND lease_until <= %(now)s)), "
                "min(enqueued) FILTER (WHERE state <> %(f)s), "
                "count(*) FILTER (WHERE state = %(f)s) FROM mail",
                {"f": GAVE_UP, "q": QUEUED, "c": CLAIMED, "now": now},
            ).fetchone()
        assert row is not None
        oldest = row[2].astimezone(UTC) if row[2] is not None else None
        return QueueStats(waiting=row[0], due=row[1], oldest=oldest, failed=row[3])

    # ------------------------------------------------------------------ limits, nonces, meta

    def hit_limit(self, key: str, limit: Limit, now: datetime) -> float | None:
        t = now.timestamp()
        with self._tx() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ("limit:" + key,))
            cur.execute("DELETE FROM limit_hits WHERE key = %s AND expires <= %s", (key, t))
            hits: list[float] = [
                float(r[0])
                for r in cur.execute(
                    "SELECT at FROM limit_hits WHERE key = %s AND at > %s ORDER BY at",
                    (key, t - limit.seconds),
                ).fetchall()
            ]
            if len(hits) >= limit.count:
                return max(0.0, hits[len(hits) - limit.count] + limit.seconds - t)
            cur.execute(
                "INSERT INTO limit_hits (key, at, expires) VALUES (%s, %s, %s)",
                (key, t, t + limit.seconds),
            )
        return None

    def use_nonce(self, nonce: str, expires: datetime, now: datetime) -> bool:
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO nonces (nonce, expires) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (nonce, max(expires, now)),
            )
            return cur.rowcount == 1

    def get_meta(self, key: str) -> str | None:
        with self._tx() as cur:
            row = cur.execute("SELECT value FROM meta WHERE key = %s", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, key: str, value: str | None) -> None:
        with self._tx() as cur:
            if value is None:
                cur.execute("DELETE FROM meta WHERE key = %s", (key,))
            else:
                cur.execute(
                    "INSERT INTO meta (key, value) VALUES (%s, %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    (key, value),
                )

    # ------------------------------------------------------------------ housekeeping

    def prune(self, today: date, now: datetime) -> None:
        keep_seen = today - timedelta(days=self.cfg.retention_days)
        keep_hist = today - timedelta(days=self.cfg.history_days)
        t = now.timestamp()
        with self._tx() as cur:
            cur.execute("DELETE FROM seen WHERE first_seen < %s", (keep_seen,))
            cur.execute(
                "UPDATE seen SET paper = NULL, kept_on = NULL WHERE kept_on < %s", (keep_hist,)
            )
            cur.execute("DELETE FROM digests WHERE day < %s", (keep_hist,))
            cur.execute("DELETE FROM runs WHERE day < %s", (keep_hist,))
            cur.execute("DELETE FROM day_gathered WHERE day < %s", (keep_hist,))
            cur.execute("DELETE FROM claims WHERE day < %s", (keep_hist,))
            cur.execute(
                "DELETE FROM mail WHERE state = %s AND due < %s",
                (GAVE_UP, now - timedelta(days=self.cfg.history_days)),
            )
            cur.execute("DELETE FROM limit_hits WHERE expires <= %s", (t,))
            cur.execute("DELETE FROM nonces WHERE expires <= %s", (now,))
            before = t - self.cfg.pending_days * 86400
            pending = cur.execute(
                "SELECT email_lc, data->>'created' FROM subscribers WHERE status = %s",
                (PENDING,),
            ).fetchall()
            old = [
                k
                for k, created in pending
                if (e := _epoch(created or "")) is not None and e < before
            ]
            if old:
                cur.execute("DELETE FROM subscribers WHERE email_lc = ANY(%s)", (old,))

    _TABLES = ("subscribers", "seen", "digests", "runs", "mail", "meta")
    _ALL = (*_TABLES, "limit_hits", "nonces", "secret", "day_gathered", "claims")

    def is_empty(self) -> bool:
        with self._tx() as cur:
            return not any(
                cur.execute(f"SELECT EXISTS (SELECT 1 FROM {t})").fetchone()[0]  # type: ignore[index]
                for t in self._TABLES
            )

    def export_items(self) -> Iterator[Item]:
        items: list[Item] = []
        with self._tx() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            row = cur.execute("SELECT value FROM secret").fetchone()
            if row:
                items.append(StoredSecret(str(row[0])))
            items += [
                MetaValue(k, v) for k, v in cur.execute("SELECT key, value FROM meta ORDER BY key")
            ]
            items += [
                self._sub(r[0])
                for r in cur.execute("SELECT data FROM subscribers ORDER BY email_lc")
            ]
            for qrow in cur.execute(
                f"SELECT {self._MAIL} FROM mail ORDER BY enqueued, id"
            ).fetchall():
                items.append(self._mail(qrow))
            hits: dict[str, list[tuple[float, float]]] = {}
            for k, at, exp in cur.execute(
                "SELECT key, at, expires FROM limit_hits ORDER BY key, at"
            ):
                hits.setdefault(k, []).append((at, exp))
            items += [LimitHits(k, tuple(h)) for k, h in hits.items()]
            items += [
                UsedNonce(n, x.astimezone(UTC))
                for n, x in cur.execute("SELECT nonce, expires FROM nonces ORDER BY nonce")
            ]
            for pid, first, kept, paper in cur.execute(
                "SELECT id, first_seen, kept_on, paper FROM seen ORDER BY first_seen, id"
            ).fetchall():
                items.append(
                    SeenPaper(
                        pid, first, self._paper(pid, paper) if paper is not None else None, kept
                    )
                )
            items += [
                self._record(r)
                for r in cur.execute(
                    f"SELECT {self._COLS} FROM digests ORDER BY day, email"
                ).fetchall()
            ]
            items += [
                self._decode(codec.run_from_dict, r[0])
                for r in cur.execute("SELECT data FROM runs ORDER BY day, seq").fetchall()
            ]
        return iter(items)

    def import_items(self, items: Iterable[Item], *, replace: bool = False) -> int:
        items = list(items)
        with self._tx() as cur:
            for t in self._ALL:
                cur.execute(f"LOCK TABLE {t} IN EXCLUSIVE MODE")
            if not replace and not all(
                not cur.execute(f"SELECT EXISTS (SELECT 1 FROM {t})").fetchone()[0]  # type: ignore[index]
                for t in self._TABLES
            ):
                raise StoreError(
                    f"{self.where}: the store is not empty; import into an empty store, or "
                    "replace its content with --replace"
                )
            secret = next((it.value for it in items if isinstance(it, StoredSecret)), "")
            keep = ("secret",) if not secret else ()
            for t in self._ALL:
                if t not in keep:
                    cur.execute(f"DELETE FROM {t}")
            taken: set[str] = set()
            for it in items:
                if isinstance(it, StoredSecret):
                    cur.execute("INSERT INTO secret (one, value) VALUES (1, %s)", (it.value,))
                elif isinstance(it, MetaValue):
                    cur.execute(
                        "INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT (key) "
                        "DO UPDATE SET value = EXCLUDED.value",
                        (it.key, it.value),
                    )
                elif isinstance(it, Subscriber):
                    self._write_sub(cur, self._with_id(cur, it, taken))
                elif isinstance(it, QueuedMail):  # a claim does not survive a move
                    cur.execute(
                        f"INSERT INTO mail ({self._MAIL}) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s, NULL)",
                        (
                            it.id,
                            Jsonb(MESSAGE.encode(it.message)),
                            it.enqueued,
                            it.due,
                            it.attempts,
                            GAVE_UP if it.state == GAVE_UP else QUEUED,
                            it.detail,
                        ),
                    )
                elif isinstance(it, LimitHits):
                    for at, exp in it.hits:
                        cur.execute(
                            "INSERT INTO limit_hits (key, at, expires) VALUES (%s, %s, %s)",
                            (it.key, at, exp),
                        )
                elif isinstance(it, UsedNonce):
                    cur.execute(
                        "INSERT INTO nonces (nonce, expires) VALUES (%s, %s) "
                        "ON CONFLICT DO NOTHING",
                        (it.nonce, it.expires),
                    )
                elif isinstance(it, SeenPaper):
                    cur.execute(
                        "INSERT INTO seen (id, first_seen, kept_on, paper) VALUES (%s, %s, %s, %s) "
                        "ON CONFLICT (id) DO UPDATE SET first_seen = EXCLUDED.first_seen, "
                        "kept_on = EXCLUDED.kept_on, paper = EXCLUDED.paper",
                        (
                            it.id,
                            it.first_seen,
                            (it.kept_on or it.first_seen) if it.paper is not None else None,
                            Jsonb(PAPER.encode(it.paper)) if it.paper is not None else None,
                        ),
                    )
                elif isinstance(it, DeliveryRecord):
                    row = self._rec_row(it, 0)
                    cur.execute(
                        "INSERT INTO digests (day, email, digest_id, state, paper_ids, at, data) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (day, email) DO UPDATE "
                        "SET digest_id = EXCLUDED.digest_id, state = EXCLUDED.state, "
                        "paper_ids = EXCLUDED.paper_ids, at = EXCLUDED.at, data = EXCLUDED.data",
                        row,
                    )
                elif isinstance(it, RunReport):
                    cur.execute(
                        "INSERT INTO runs (day, data) VALUES (%s, %s)",
                        (it.day, Jsonb(codec.run_to_dict(it))),
                    )
        if secret:
            self._secret = None
        return len(items)


def _fields(obj: Any) -> dict[str, Any]:
    return {f: getattr(obj, f) for f in obj.__dataclass_fields__}


def _core(row: Any) -> dict[str, Any]:
    day, email, did, state, ids, at, _data = row
    return {
        "digest_id": did,
        "email": email,
        "day": day,
        "state": state,
        "paper_ids": tuple(ids),
        "at": at.astimezone(UTC),
    }


class PgRun:
    """One worker's part of a day on PostgreSQL (module docstring)."""

    def __init__(self, store: PgStore, day: date, report: RunReport) -> None:
        self.store, self.day, self.report = store, day, report
        self.worker = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease = store.cfg.claim_lease_seconds
        self._done: set[str] = set()  # counted as already done
        self._claimed: set[str] = set()  # claimed by this run
        self._started = store._clock()
        self._renewed = time.monotonic()
        self.held = 0  # due subscribers other workers held at the last claim
        self._alive: psycopg.Connection[Any] | None = None  # holds our liveness lock

    # -- the day's papers, once

    def gather(self, compute: Callable[[], Gathered]) -> Gathered:
        if self.report.dry_run:
            return compute()  # a dry run stores nothing, so it shares nothing either
        store = self.store
        lock = store._connect()  # its own session: the lock dies with this process
        try:
            lock.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_GATHER, self.day.toordinal()))
            with store._tx() as cur:
                row = cur.execute(
                    "SELECT data, at FROM day_gathered WHERE day = %s "
                    "AND at > now() - make_interval(secs => %s)",
                    (self.day, self.lease),
                ).fetchone()
            if row is not None:
                got = store._decode(GATHERED.decode, row[0], "gathered papers")
                at = row[1].astimezone(UTC).isoformat(timespec="seconds")
                self.report.notes.append(f"papers gathered by another worker at {at}, reused")
                assert isinstance(got, Gathered)
                return got
            gathered = compute()
            with store._tx() as cur:
                cur.execute(
                    "INSERT INTO day_gathered (day, at, data) VALUES (%s, now(), %s) "
                    "ON CONFLICT (day) DO UPDATE SET at = EXCLUDED.at, data = EXCLUDED.data",
                    (self.day, Jsonb(GATHERED.encode(gathered))),
                )
            return gathered
        except psycopg.Error as e:
            raise StoreError(f"{store.where}: {_one_line(e)}") from e
        finally:
            with contextlib.suppress(psycopg.Error):
                lock.close()

    # -- subscribers, a leased batch at a time

    def _live(self) -> None:
        """Hold this worker's liveness lock (its own session) before its first claim:
        while it is held, nobody takes our claims over, even past their lease (a slow
        worker is not a dead one); it goes when the process dies (SIGKILL: the server
        drops the session) or the run ends."""
        if self._alive is None:
            conn = self.store._connect()
            try:
                conn.execute(
                    "SELECT pg_advisory_lock(%s, hashtext(%s))", (LOCK_WORKER, self.worker)
                )
            except psycopg.Error as e:
                conn.close()
                raise StoreError(f"{self.store.where}: {_one_line(e)}") from e
            self._alive = conn

    def release(self) -> None:
        if self._alive is not None:
            with contextlib.suppress(psycopg.Error):
                self._alive.close()
            self._alive = None

    def claim(self, only: Callable[[Subscriber], bool] | None = None) -> list[Subscriber]:
        store = self.store
        if self.report.dry_run:  # claims nothing: real workers must not wait for a dry run
            return self._dry_claim(only)
        batch = store.cfg.claim_batch
        self._live()
        self._count_done(only)
        args: dict[str, Any] = {
            "active": ACTIVE,
            "day": self.day,
            "done": list(DONE_STATES),
            "me": self.worker,
            "lease": self.lease,
            "n": batch,
        }
        got: list[Subscriber] = []
        held: set[str] = set()  # due, but under another worker's live lease
        after = ""
        while len(got) < batch:
            with store._tx() as cur:
                # due, and not claimed by this run (a deferred one waits for the next)
                rows = cur.execute(
                    f"WITH alive AS MATERIALIZED {ALIVE} "
                    "SELECT s.email_lc, s.data, "
                    f"coalesce(c.lease_until > now() OR {_alive('c.worker')}, false) "
                    "FROM subscribers s LEFT JOIN claims c "
                    "ON c.day = %(day)s AND c.email_lc = s.email_lc "
                    "WHERE s.status = %(active)s AND s.email_lc > %(after)s "
                    "AND (c.worker IS NULL OR c.worker <> %(me)s) "
                    "AND NOT EXISTS (SELECT 1 FROM digests d WHERE d.day = %(day)s "
                    "AND d.email = s.email AND d.state = ANY(%(done)s)) "
                    "ORDER BY s.email_lc LIMIT %(n)s",
                    dict(args, after=after),
                ).fetchall()
                if not rows:
                    break
                after = rows[-1][0]
                free: list[tuple[str, Subscriber]] = []
                for key, data, live in rows:
                    sub = store._sub(data)
                    if only is not None and not only(sub):
                        continue
                    if live:
                        held.add(key)
                    else:
                        free.append((key, sub))
                free = free[: batch - len(got)]
                if not free:
                    continue
                # lock the rows (another worker's claim in flight is skipped, not waited
                # for), then take each claim unless a live lease holds it: the claims
                # row is the arbiter, so two workers never both get one subscriber
                locked = [
                    r[0]
                    for r in cur.execute(
                        "SELECT email_lc FROM subscribers WHERE email_lc = ANY(%s) "
                        "ORDER BY email_lc FOR UPDATE SKIP LOCKED",
                        ([k for k, _ in free],),
                    ).fetchall()
                ]
                taken = {
                    r[0]
                    for r in cur.execute(
                        f"WITH alive AS MATERIALIZED {ALIVE} "
                        "INSERT INTO claims (day, email_lc, worker, lease_until) "
                        "SELECT %(day)s, k, %(me)s, now() + make_interval(secs => %(lease)s) "
                        "FROM unnest(%(keys)s::text[]) AS k "
                        "ON CONFLICT (day, email_lc) DO UPDATE SET worker = EXCLUDED.worker, "
                        "lease_until = EXCLUDED.lease_until "
                        "WHERE claims.lease_until <= now() "
                        f"AND NOT {_alive('claims.worker')} RETURNING email_lc",
                        dict(args, keys=locked),
                    ).fetchall()
                }
                held |= {k for k, _ in free if k not in taken}
                self._claimed |= taken
                got += [sub for key, sub in free if key in taken]
        self.held = len(held - self._claimed)
        self._renewed = time.monotonic()
        got.sort(key=lambda s: s.email)
        return got

    def _dry_claim(self, only: Callable[[Subscriber], bool] | None) -> list[Subscriber]:
        """A dry run sees every due subscriber once, like a TinyDB run, claiming none."""
        store = self.store
        todo, done = due_subscribers(
            store.subscribers(), store.digests_for_day(self.day), only, skip=self._claimed
        )
        new_done = {e.lower() for e in done} - self._done
        self.report.already_done += len(new_done)
        self._done |= new_done
        self._claimed |= {s.email.lower() for s in todo}
        return todo

    def _count_done(self, only: Callable[[Subscriber], bool] | None) -> None:
        """Count the subscribers whose digest was already done when this run began."""
        store = self.store
        with store._tx() as cur:
            rows = cur.execute(
                "SELECT s.email_lc, s.data FROM subscribers s JOIN digests d "
                "ON d.day = %s AND d.email = s.email AND d.state = ANY(%s) "
                "WHERE s.status = %s AND d.at < %s",
                (self.day, list(DONE_STATES), ACTIVE, _utc(self._started)),
            ).fetchall()
        new = 0
        for key, data in rows:
            if key in self._done or key in self._claimed:
                continue
            if only is None or only(store._sub(data)):
                self._done.add(key)
                new += 1
        self.report.already_done += new

    def _renew(self) -> tuple[str, float] | None:
        if time.monotonic() - self._renewed < self.lease / 4:
            return None
        self._renewed = time.monotonic()
        return (self.worker, self.lease)

    def record(self, rec: DeliveryRecord) -> None:
        self.store._record_many([rec], self._renew())

    def record_many(self, recs: Sequence[DeliveryRecord]) -> None:
        self.store._record_many(recs, self._renew())
