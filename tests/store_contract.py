"""The Store contract: behaviour every backend must have (digest/store/base.py).

Every test takes the `backend` fixture, parametrized over FACTORIES. A backend plugs in
by adding a factory: a context manager that, given a temporary folder, yields a Backend
(how to open the store in this process, and a config file for child processes), e.g.

    @contextmanager
    def postgresql(tmp: Path) -> Iterator[Backend]:
        with pg_server(tmp) as url:           # a real server, started by the test
            yield Backend("postgresql", cfg, config_file, env={"DIGEST_DATABASE_URL": url})

    FACTORIES["postgresql"] = postgresql

tests/test_store_contract.py collects this module; tests/test_store_crash.py (kill -9)
uses the same fixture. Real parts only: real files (or a real server), real processes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import types
import typing
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from digest.config import StoreConfig
from digest.errors import StoreError, StoreLocked
from digest.models import (
    ACTIVE,
    DEFERRED,
    DOWN,
    EMPTY,
    FAILED,
    MATCH,
    NO_MATCH_SKIP,
    PAUSED,
    PENDING,
    SENT,
    TRENDING,
    UNSUBSCRIBED,
    UP,
    DeliveryRecord,
    Gathered,
    OutgoingMessage,
    Paper,
    RunReport,
    Subscriber,
    digest_id,
)
from digest.store import Change, Store, open_store

ROOT = Path(__file__).resolve().parents[1]
D0 = date(2026, 1, 5)
T0 = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)


@dataclass
class Backend:
    name: str
    cfg: StoreConfig
    config_file: Path  # a TOML config whose [store] opens this same store (child processes)
    env: dict[str, str] = field(default_factory=dict)  # set for this process and children
    opened: list[Store] = field(default_factory=list)

    def open(self, clock: Callable[[], float] | None = None) -> Store:
        s = open_store(self.cfg, clock=clock) if clock else open_store(self.cfg)
        self.opened.append(s)
        return s

    def spawn(self, code: str, *args: str) -> subprocess.Popen[str]:
        """A child Python process; `code` gets the store as `open_store(load_config(
        sys.argv[1]).store)` (the config file is argv[1], then `args`)."""
        env = dict(os.environ) | self.env
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        return subprocess.Popen(
            [sys.executable, "-c", code, str(self.config_file), *args],
            stdout=subprocess.PIPE,
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )


def store_config_toml(cfg: StoreConfig) -> str:
    """The [store] section that loads back as `cfg`."""

    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        return json.dumps(str(v)) if isinstance(v, Path | str) else str(v)

    fields = [f"{f.name} = {value(getattr(cfg, f.name))}" for f in dataclasses.fields(cfg)]
    return "\n".join(["[store]", *fields]) + "\n"


@contextmanager
def tinydb(tmp: Path) -> Iterator[Backend]:
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = StoreConfig(path=tmp / "data", retention_days=60, history_days=10, fsync=False)
    config = tmp / "store.toml"
    config.write_text(store_config_toml(cfg), encoding="utf-8")
    yield Backend("tinydb", cfg, config)


@contextmanager
def postgresql(tmp: Path) -> Iterator[Backend]:
    """A fresh database on the test process's real PostgreSQL server (tests/pgserver.py);
    skipped where PostgreSQL is not installed (a failure under CI)."""
    import pgserver

    tmp.mkdir(parents=True, exist_ok=True)
    with pgserver.database() as url:
        name = "DIGEST_TEST_DB_" + url.split("?")[0].split("/")[-1].upper()  # one per database
        os.environ[name] = url  # (open_store reads it; a second backend has its own)
        cfg = StoreConfig(
            path=tmp / "data",
            retention_days=60,
            history_days=10,
            fsync=False,
            backend="postgresql",
            url_env=name,
        )
        config = tmp / "store.toml"
        config.write_text(store_config_toml(cfg), encoding="utf-8")
        try:
            yield Backend("postgresql", cfg, config, env={name: url})
        finally:
            os.environ.pop(name, None)


FACTORIES: dict[str, Callable[[Path], AbstractContextManager[Backend]]] = {
    "tinydb": tinydb,
    "postgresql": postgresql,
}


@pytest.fixture(params=sorted(FACTORIES))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with FACTORIES[request.param](tmp_path) as b:
        saved = {k: os.environ.get(k) for k in b.env}
        os.environ.update(b.env)
        try:
            yield b
        finally:
            for s in b.opened:
                s.close()
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.open()


def paper(pid: str, **kw: object) -> Paper:
    base: dict[str, object] = {"title": f"Title {pid}", "abstract": f"Abstract of {pid}."}
    base.update(kw)
    return Paper(id=pid, **base)  # type: ignore[arg-type]


def rec(email: str, day: date, state: str, ids: tuple[str, ...] = (), detail: str = "", **kw):
    return DeliveryRecord(digest_id(email, day), email, day, state, ids, detail, **kw)


def record(s: Store, *recs: DeliveryRecord, day: date | None = None) -> RunReport:
    """Record `recs` through a run of `day` (their day by default); returns its report."""
    day = day or recs[0].day
    report = RunReport(day=day)
    with s.run(day, report) as run:
        for r in recs:
            run.record(r)
    return report


def mail(to: str = "a@x.org", n: int = 0) -> OutgoingMessage:
    body = f"Subject: confirm {n}\r\n\r\nclick \xe9\r\n".encode("latin-1")
    return OutgoingMessage(f"web-confirm-{n}", to, "d@x.org", f"<{n}@x.org>", body, "<p>x</p>")


# ---------------------------------------------------------------------------- subscribers


def test_subscribers_round_trip_replace_and_remove(backend: Backend, store: Store) -> None:
    a = Subscriber("a@x.org", ("llm",), created="2026-01-01T00:00:00+00:00")
    b = Subscriber("b@x.org", ("graph neural network", "-survey"), max_papers=3, min_score=0.5)
    store.put_subscribers([a, b])
    got_a = store.get_subscriber("A@X.org")
    assert got_a is not None and got_a.id and replace(got_a, id="") == a
    store.put_subscribers([replace(a, keywords=("rlhf",), status=PAUSED)])
    again = store.get_subscriber("a@x.org")
    assert again == replace(got_a, keywords=("rlhf",), status=PAUSED)  # the id is kept
    assert store.remove_subscriber("b@x.org") is True
    assert store.remove_subscriber("b@x.org") is False
    store.put_subscribers([Subscriber("c@x.org", send_hour=7, timezone="Europe/Berlin")])
    store.close()
    s = backend.open()
    assert sorted(x.email for x in s.subscribers()) == ["a@x.org", "c@x.org"]
    assert s.get_subscriber("b@x.org") is None
    assert s.get_subscriber("c@x.org").timezone == "Europe/Berlin"  # type: ignore[union-attr]


def test_subscriber_status_is_the_stored_status_fresh(backend: Backend, store: Store) -> None:
    store.put_subscribers([Subscriber("a@x.org", ("llm",)), Subscriber("p@x.org", status=PAUSED)])
    other = backend.open()  # another process's view: sees committed changes at once
    try:
        assert other.subscriber_status("A@X.org") == ACTIVE
        assert other.subscriber_status("p@x.org") == PAUSED
        assert other.subscriber_status("nobody@x.org") is None
        store.update_subscriber("a@x.org", lambda s: replace(s, status=UNSUBSCRIBED))
        assert other.subscriber_status("a@x.org") == UNSUBSCRIBED
        store.remove_subscriber("p@x.org")
        assert other.subscriber_status("p@x.org") is None
    finally:
        other.close()


def test_ids_are_opaque_unique_kept_and_never_reused(backend: Backend, store: Store) -> None:
    store.put_subscribers([Subscriber(f"u{i}@x.org") for i in range(50)])
    subs = store.subscribers()
    ids = {s.id for s in subs}
    assert len(ids) == 50 and all(len(i) >= 20 and "@" not in i for i in ids)
    u0 = store.get_subscriber("u0@x.org")
    assert u0 is not None and store.get_subscriber_by_id(u0.id) == u0
    assert store.get_subscriber_by_id("no-such-id") is None
    # an update keeps the id whatever the new value carries
    store.put_subscribers([replace(u0, id="forged", max_papers=3)])
    assert store.get_subscriber("u0@x.org").id == u0.id  # type: ignore[union-attr]
    assert store.get_subscriber_by_id("forged") is None
    # removed and added again: a new id, and the old one leads nowhere
    store.remove_subscriber("u0@x.org")
    store.put_subscribers([Subscriber("u0@x.org")])
    new = store.get_subscriber("u0@x.org")
    assert new is not None and new.id != u0.id and store.get_subscriber_by_id(u0.id) is None
    # a given id that another subscriber holds is not taken over
    store.put_subscribers([Subscriber("v@x.org", id=new.id)])
    assert store.get_subscriber("v@x.org").id != new.id  # type: ignore[union-attr]
    assert backend.open().get_subscriber_by_id(new.id) == new


def test_update_subscriber_is_a_read_modify_write(store: Store) -> None:
    store.put_subscribers([Subscriber("a@x.org", ("llm",), max_papers=5)])
    got = store.update_subscriber("A@x.org", lambda s: replace(s, max_papers=s.max_papers + 1))
    assert got is not None and got.max_papers == 6 and got.id
    assert store.get_subscriber("a@x.org") == got
    assert store.update_subscriber("a@x.org", lambda s: None) == got  # no change
    assert store.update_subscriber("nobody@x.org", lambda s: None) is None
    seen: list[Subscriber | None] = []
    created = store.update_subscriber(
        "new@x.org", lambda s: seen.append(s) or Subscriber("new@x.org", status=PENDING)
    )
    assert seen == [None] and created is not None and created.status == PENDING and created.id

    def boom(s: Subscriber | None) -> Subscriber:
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        store.update_subscriber("a@x.org", boom)
    assert store.get_subscriber("a@x.org") == got  # nothing written
    with pytest.raises(StoreError, match="changed the address"):
        store.update_subscriber("a@x.org", lambda s: replace(s, email="b@x.org"))
    assert store.get_subscriber("b@x.org") is None


def test_a_change_and_its_mail_are_stored_together(backend: Backend, store: Store) -> None:
    def subscribe(cur: Subscriber | None) -> Change:
        new = Subscriber("p@x.org", ("agents",), status=PENDING, created=T0.isoformat())
        return Change(new, (mail("p@x.org", 1),))

    sub = store.update_subscriber("p@x.org", subscribe, now=T0)
    assert sub is not None and sub.status == PENDING
    other = backend.open()  # another process's view
    assert other.get_subscriber("p@x.org") == sub
    (queued,) = other.claim_mail(T0)
    assert queued.message == mail("p@x.org", 1) and queued.attempts == 1
    # mail without a subscriber change (an address that must not change until it confirms)
    store.update_subscriber("p@x.org", lambda cur: Change(None, (mail("p@x.org", 2),)), now=T0)
    assert store.get_subscriber("p@x.org") == sub
    assert [m.message.digest_id for m in other.claim_mail(T0)] == ["web-confirm-2"]
    # a failing update queues nothing either

    def fail(cur: Subscriber | None) -> Change:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        store.update_subscriber("p@x.org", fail)
    assert store.queue_stats(T0).waiting == 2


def test_ratings_and_examples_are_kept_bounded_last_vote_wins(
    backend: Backend, store: Store
) -> None:
    from digest.models import MAX_EXAMPLES, MAX_RATINGS
    from digest.rank.learn import with_examples, with_rating, without_rating

    store.put_subscribers([Subscriber("a@x.org", ("llm",))])
    at = int(T0.timestamp())
    for i in range(MAX_RATINGS + 20):  # a read-modify-write per vote, as the web does
        store.update_subscriber(
            "a@x.org", lambda s, i=i: with_rating(s, f"p{i}", UP if i % 3 else DOWN, at + i, "T")
        )
    store.update_subscriber("a@x.org", lambda s: with_rating(s, "p31", DOWN, at + 9999, "T"))
    store.update_subscriber("a@x.org", lambda s: without_rating(s, "p32"))
    ids = [(f"e{i}", f"Example {i}") for i in range(MAX_EXAMPLES + 5)]
    store.update_subscriber("a@x.org", lambda s: with_examples(s, ids))
    got = backend.open().get_subscriber("a@x.org")  # another instance reads it back
    assert got is not None and len(got.ratings) == MAX_RATINGS - 1
    assert [r[0] for r in got.ratings[:2]] == ["p20", "p21"]  # the oldest were dropped
    assert got.ratings[-1] == ("p31", DOWN, at + 9999, "T")  # the last vote wins, newest
    assert sum(r[0] == "p31" for r in got.ratings) == 1 and "p32" not in {r[0] for r in got.ratings}
    assert got.examples == tuple(ids[:MAX_EXAMPLES])


def test_other_instances_see_committed_changes_fresh(backend: Backend, store: Store) -> None:
    other = backend.open()  # stands in for the web service
    store.put_subscribers([Subscriber("a@x.org")])
    other.put_subscribers([Subscriber("b@x.org")])  # must catch up first, not clobber a@
    store.put_subscribers([Subscriber("c@x.org")])
    for s in (store, other):
        assert sorted(x.email for x in s.subscribers()) == ["a@x.org", "b@x.org", "c@x.org"]
    other.update_subscriber("a@x.org", lambda s: replace(s, status=PAUSED))
    assert store.get_subscriber("a@x.org").status == PAUSED  # type: ignore[union-attr]
    other.remove_subscriber("a@x.org")
    assert store.get_subscriber("a@x.org") is None


def sample(tp: object, default: object) -> object:
    """A value of annotation `tp` that differs from `default` (for any field)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return sample(next(a for a in args if a is not type(None)), default)
    if tp is bool:
        return not default
    if tp is int:
        return (default if isinstance(default, int) else 0) + 3
    if tp is float:
        return (default if isinstance(default, float) else 0.0) + 0.25
    if tp is str:
        return f"{default or 'x'}-changed"
    if tp is date:
        return D0
    if tp is datetime:
        return T0
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return every_field_set(tp, {})
    if origin is tuple and args[-1] is Ellipsis:
        return (sample(args[0], None), sample(args[0], None))
    if origin is tuple:
        return tuple(sample(a, None) for a in args)
    if origin is list:
        return [sample(args[0], None)]
    if origin is dict:
        return {"k": sample(args[1], None)}
    raise TypeError(f"no sample for {tp!r}")


def every_field_set(cls: type, fixed: dict[str, object]) -> object:
    """An instance of the dataclass `cls` with EVERY field off its default: a field added
    later (by any change) is covered by the round-trip tests without editing them."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        values[f.name] = fixed.get(f.name, sample(hints[f.name], default))
    return cls(**values)


# Fields with a closed set of values get a valid one here (add yours when you add one).
VALID = {
    "status": PAUSED,
    "no_match": NO_MATCH_SKIP,
    "ratings": (("2601.00001", UP, 1767600000, "Liked"), ("2601.00002", DOWN, 1767600060, "No")),
}


def test_every_subscriber_field_round_trips(backend: Backend, store: Store) -> None:
    full = every_field_set(Subscriber, {"email": "z@x.org", "id": ""} | VALID)
    assert isinstance(full, Subscriber)
    store.put_subscribers([full])
    got = backend.open().get_subscriber("z@x.org")
    assert got is not None and replace(got, id="") == full


def test_every_record_field_round_trips(backend: Backend, store: Store) -> None:
    fixed = {
        "email": "z@x.org",
        "day": D0,
        "state": SENT,
        "paper_ids": ("p1", "p2"),
        "sections": (MATCH, TRENDING),
        "at": T0,
    }
    full = every_field_set(DeliveryRecord, fixed)
    assert isinstance(full, DeliveryRecord)
    record(store, full)
    assert backend.open().history("z@x.org") == [full]
    report = every_field_set(RunReport, {"day": D0, "dry_run": False, "error": ""})
    assert isinstance(report, RunReport)
    with store.run(D0, report):
        pass
    assert backend.open().runs(1) == [report]


# ---------------------------------------------------------------------------- seen-store


def test_first_seen_kept_across_days_and_relisting(backend: Backend, store: Store) -> None:
    assert store.record_seen([paper("p1"), paper("p2")], D0) == {"p1": D0, "p2": D0}
    d1 = D0 + timedelta(days=1)
    again = store.record_seen([paper("p2", upvotes=40), paper("p3")], d1)
    assert again == {"p2": D0, "p3": d1}  # re-listing keeps the old first-seen day
    assert store.first_seen(["p1", "p3", "unknown"]) == {"p1": D0, "p3": d1}
    store.close()
    s = backend.open()
    assert s.record_seen([paper("p1")], D0 + timedelta(days=2)) == {"p1": D0}
    assert [p.id for p in s.recent_papers(d1)] == ["p3"]
    assert [p.id for p in s.recent_papers(D0)] == ["p1", "p2", "p3"]
    # by first-seen day, re-listings included
    assert s.seen_days(D0) == {D0: ("p1", "p2"), d1: ("p3",)}
    assert s.seen_days(d1) == {d1: ("p3",)}
    assert s.seen_days(D0 + timedelta(days=5)) == {}
    assert s.get_papers(["p2", "nope"])["p2"].upvotes == 40  # the latest details win
    full = paper("p9", authors=("A", "B"), listed_on=D0, ai_keywords=("k",), sources=("arxiv",))
    s.record_seen([full], D0)
    assert s.get_papers(["p9"]) == {"p9": full}


# ------------------------------------------------------------------------ delivery records


def test_records_later_wins_and_reads(backend: Backend, store: Store) -> None:
    d1, d2 = D0 + timedelta(days=1), D0 + timedelta(days=2)
    record(store, rec("a@x.org", D0, SENT, ("p1", "p2")))
    record(
        store,
        rec("a@x.org", d1, DEFERRED, ("p3",), "421 busy"),
        rec("b@x.org", d1, FAILED, ("p3",), "550 no such user"),
        rec("c@x.org", d1, EMPTY, (), "nothing new"),
    )
    assert store.delivered_since(D0) == {"a@x.org": {"p1", "p2"}}
    assert [r.email for r in store.pending_retries()] == ["a@x.org"]
    record(store, rec("a@x.org", d1, SENT, ("p3",)), rec("a@x.org", d2, SENT, ("p4",)))
    assert store.delivered_since(d1) == {"a@x.org": {"p3", "p4"}}
    assert store.delivered_since(D0, ["b@x.org"]) == {}
    assert store.digests_for_day(d1) == {"a@x.org": SENT, "b@x.org": FAILED, "c@x.org": EMPTY}
    store.close()
    s = backend.open()
    assert s.delivered_since(D0) == {"a@x.org": {"p1", "p2", "p3", "p4"}}
    assert s.pending_retries() == []
    hist = s.history("a@x.org")
    assert [(h.day, h.state, h.paper_ids) for h in hist] == [
        (d2, SENT, ("p4",)),
        (d1, SENT, ("p3",)),
        (D0, SENT, ("p1", "p2")),
    ]
    assert hist[0].digest_id == digest_id("a@x.org", d2) and hist[0].at is not None
    assert len(s.history("a@x.org", limit=2)) == 2
    assert s.history("b@x.org")[0].detail == "550 no such user"
    assert s.get_digest(digest_id("b@x.org", d1)) == s.history("b@x.org")[0]
    assert s.get_digest("nope") is None


def test_one_group_of_records_keeps_the_later_of_two_for_one_day(store: Store) -> None:
    # The connections' records are written together (group commit); a group may hold a
    # subscriber's record twice for a day (deferred, then sent): the later one wins.
    with store.run(D0, RunReport(day=D0)) as run:
        run.record_many(
            [
                rec("a@x.org", D0, DEFERRED, ("p1",), "421 busy"),
                rec("b@x.org", D0, SENT, ("p2",)),
                rec("a@x.org", D0, SENT, ("p1",)),
            ]
        )
        run.record_many([rec("c@x.org", D0, EMPTY, (), "nothing new")])
    assert store.digests_for_day(D0) == {"a@x.org": SENT, "b@x.org": SENT, "c@x.org": EMPTY}
    assert [(h.state, h.detail) for h in store.history("a@x.org")] == [(SENT, "")]
    assert store.pending_retries() == []


def test_a_record_keeps_how_the_digest_looked(store: Store) -> None:
    r = rec(
        "a@x.org",
        D0,
        SENT,
        ("p1", "p2", "p3"),
        sections=(MATCH, MATCH, TRENDING),
        matched=(("agents",), ("agents", "web browsing"), ()),
        at=T0,
    )
    custom = replace(rec("b@x.org", D0, SENT, ("p1",)), digest_id="custom-id")
    record(store, r, custom)
    assert store.history("a@x.org") == [r]
    assert store.get_digest("custom-id") == replace(custom, at=store.get_digest("custom-id").at)  # type: ignore[union-attr]
    assert store.get_digest("custom-id").at is not None  # type: ignore[union-attr]


def test_bad_records_are_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="unknown digest state"):
        record(store, rec("a@x.org", D0, "bounced"))
    with pytest.raises(StoreError, match="section"):
        record(store, rec("a@x.org", D0, SENT, ("p1",), sections=("sidebar",)))
    assert store.digests_for_day(D0) == {}


def test_a_record_is_durable_on_return_while_the_run_is_open(backend: Backend) -> None:
    s = backend.open()
    with s.run(D0, RunReport(day=D0)) as run:
        run.record(rec("a@x.org", D0, SENT, ("p1",)))
        other = backend.open()  # what a later process sees, the run still open
        assert other.digests_for_day(D0) == {"a@x.org": SENT}
        assert other.delivered_since(D0) == {"a@x.org": {"p1"}}


# ------------------------------------------------------------------------------ runs


def test_runs_newest_first_and_failed_runs_are_kept(backend: Backend, store: Store) -> None:
    for i in range(3):
        record(store, rec(f"u{i}@x.org", D0 + timedelta(days=i // 2), SENT, ("p",)))
    with pytest.raises(StoreError, match="disk on fire"):
        with store.run(D0 + timedelta(days=2), RunReport(day=D0 + timedelta(days=2), sent=2)):
            raise StoreError("disk on fire")
    with pytest.raises(ZeroDivisionError):
        with store.run(D0 + timedelta(days=3), RunReport(day=D0 + timedelta(days=3))):
            1 / 0  # noqa: B018
    with store.run(D0, RunReport(day=D0, dry_run=True, sent=99)):
        pass  # a dry run's report is not kept
    runs = backend.open().runs()
    assert [(r.day, r.error) for r in runs[:2]] == [
        (D0 + timedelta(days=3), "internal error: ZeroDivisionError: division by zero"),
        (D0 + timedelta(days=2), "disk on fire"),
    ]
    assert runs[1].sent == 2 and all(not r.dry_run for r in runs)
    assert [r.day for r in runs[2:]] == [D0 + timedelta(days=1), D0, D0]
    assert len(store.runs(limit=2)) == 2


def test_claim_hands_out_due_subscribers_once(store: Store) -> None:
    store.put_subscribers(
        [
            Subscriber(f"{n}@x.org", status=st)
            for n, st in [
                ("b", ACTIVE),
                ("a", ACTIVE),
                ("p", PAUSED),
                ("q", PENDING),
                ("d", ACTIVE),
                ("e", ACTIVE),
                ("f", ACTIVE),
            ]
        ]
    )
    record(store, rec("d@x.org", D0, SENT, ("p1",)), rec("e@x.org", D0, DEFERRED, ("p1",)))
    report = RunReport(day=D0)
    with store.run(D0, report) as run:
        gathered = run.gather(lambda: Gathered((paper("p1"),), D0))
        assert [p.id for p in gathered.papers] == ["p1"]
        claimed: list[str] = []
        while batch := run.claim(lambda s: s.email != "f@x.org"):
            claimed += [s.email for s in batch]
        # sorted per batch, each once; the deferred one is retried; done and paused are not
        assert sorted(claimed) == ["a@x.org", "b@x.org", "e@x.org"]
        assert len(set(claimed)) == len(claimed)
        assert [s.email for s in run.claim()] == ["f@x.org"]  # no longer filtered out
        assert run.claim() == []
        run.record(rec("a@x.org", D0, SENT, ("p1",)))
    assert report.already_done == 1  # d@, counted once however many batches


def test_two_runs_of_a_day_never_serve_one_subscriber_twice(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    a.put_subscribers([Subscriber(f"u{i}@x.org") for i in range(20)])
    with a.run(D0, RunReport(day=D0)) as run_a:
        mine = {s.email for s in run_a.claim()}
        try:
            with b.run(D0, RunReport(day=D0)) as run_b:  # TinyDB: refused; others: shared
                theirs = {s.email for batch in iter(run_b.claim, []) for s in batch}
        except StoreLocked as e:
            assert "another digest run is in progress" in str(e)
            theirs = set()
    assert mine and not (mine & theirs)


# ------------------------------------------------------------------------- retention


def test_prune_keeps_within_retention(backend: Backend, store: Store) -> None:
    today = D0 + timedelta(days=100)
    for age in (70, 50, 12, 9, 0):
        day = today - timedelta(days=age)
        store.record_seen([paper(f"p{age}")], day)
        record(store, rec("a@x.org", day, SENT, (f"p{age}",)))
    store.prune(today, T0)
    # seen: retention_days=60; details, digests, runs: history_days=10
    assert store.record_seen([paper("p70"), paper("p50")], today) == {
        "p70": today,
        "p50": today - timedelta(50),
    }
    assert store.delivered_since(D0) == {"a@x.org": {"p9", "p0"}}
    assert [r.day for r in store.runs()] == [today, today - timedelta(days=9)]
    assert backend.open().delivered_since(D0) == {"a@x.org": {"p9", "p0"}}
    # the papers page's days: only days whose papers' details are still kept (p12 went;
    # p50, listed again today, is kept under its first-seen day; p70 was forgotten, so new)
    assert store.seen_days(D0) == {
        today - timedelta(days=50): ("p50",),
        today - timedelta(days=9): ("p9",),
        today: ("p0", "p70"),
    }


def test_pending_subscriptions_expire(backend: Backend) -> None:
    now = T0 + timedelta(days=30)
    s = backend.open(clock=now.timestamp)
    old, fresh = [(now - timedelta(days=d)).isoformat() for d in (8, 6)]
    s.put_subscribers(
        [
            Subscriber("old@x.org", status=PENDING, created=old),
            Subscriber("fresh@x.org", status=PENDING, created=fresh),
            Subscriber("active@x.org", created=old),
        ]
    )
    s.prune(now.date(), now)
    assert sorted(x.email for x in s.subscribers()) == ["active@x.org", "fresh@x.org"]
    # the end of a run prunes too (by the store's clock)
    s.put_subscribers([Subscriber("old2@x.org", status=PENDING, created=old)])
    with s.run(now.date(), RunReport(day=now.date())):
        pass
    assert backend.open().get_subscriber("old2@x.org") is None
