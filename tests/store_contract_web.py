"""The Store contract, part 2: the web service's needs (mail queue, limits, nonces, meta),
export/import, and many processes at once. Fixtures and backends: tests/store_contract.py."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from store_contract import (
    D0,
    FACTORIES,
    MATCH,
    T0,
    Backend,
    mail,
    paper,
    rec,
    record,
)

from digest.config import Limit
from digest.errors import StoreError
from digest.models import DOWN, PAUSED, SENT, UP, Subscriber
from digest.store import Store
from digest.store.base import CLAIMED

# ---------------------------------------------------------------------------- mail queue


def test_queue_claims_with_a_lease_and_retries(backend: Backend, store: Store) -> None:
    ids = [store.enqueue(mail(n=i), T0 + timedelta(seconds=i)) for i in range(3)]
    assert len(set(ids)) == 3
    st = store.queue_stats(T0 + timedelta(seconds=5))
    assert (st.waiting, st.due, st.failed, st.oldest) == (3, 3, 0, T0)
    first = store.claim_mail(T0 + timedelta(seconds=5), lease=60, limit=2)
    assert [m.id for m in first] == ids[:2] and all(m.state == CLAIMED for m in first)
    other = backend.open()
    second = other.claim_mail(T0 + timedelta(seconds=5), lease=60)
    assert [m.id for m in second] == ids[2:]  # never one message to two workers
    assert other.claim_mail(T0 + timedelta(seconds=6)) == []
    store.mail_sent(ids[0])
    store.mail_failed(ids[1], "421 try later", T0 + timedelta(minutes=5))
    other.mail_failed(ids[2], "550 no such user", None)  # for good
    st = store.queue_stats(T0 + timedelta(minutes=1))
    assert (st.waiting, st.due, st.failed) == (1, 0, 1)
    (again,) = other.claim_mail(T0 + timedelta(minutes=5), lease=60)
    assert again.id == ids[1] and again.attempts == 2 and again.detail == "421 try later"
    # a worker killed while holding it: the message comes back when the lease ends
    assert store.claim_mail(T0 + timedelta(minutes=5, seconds=30), lease=60) == []
    (back,) = store.claim_mail(T0 + timedelta(minutes=6, seconds=1))
    assert back.id == ids[1] and back.attempts == 3
    store.mail_sent(ids[1])
    store.mail_sent(ids[1])  # twice: harmless
    st = backend.open().queue_stats(T0 + timedelta(minutes=7))
    assert (st.waiting, st.due, st.oldest, st.failed) == (0, 0, None, 1)
    # given-up mail is kept for history_days, then pruned
    store.prune(D0, T0 + timedelta(days=11))
    assert store.queue_stats(T0 + timedelta(days=11)).failed == 0


# -------------------------------------------------------------------- limits, nonces, meta


def test_rate_limits_are_kept_in_the_store(backend: Backend, store: Store) -> None:
    lim = Limit(3, 60)
    assert [store.hit_limit("ip:1", lim, T0 + timedelta(seconds=i)) for i in range(3)] == [None] * 3
    wait = backend.open().hit_limit("ip:1", lim, T0 + timedelta(seconds=10))  # a restart
    assert wait == pytest.approx(50.0)
    assert store.hit_limit("ip:2", lim, T0 + timedelta(seconds=10)) is None  # another key
    assert store.hit_limit("ip:1", lim, T0 + timedelta(seconds=60.5)) is None  # first expired
    assert store.hit_limit("ip:1", lim, T0 + timedelta(seconds=61)) is None  # second expired
    assert store.hit_limit("ip:1", lim, T0 + timedelta(seconds=61.5)) == pytest.approx(0.5)
    store.prune(D0, T0 + timedelta(hours=1))
    assert store.hit_limit("ip:1", lim, T0 + timedelta(hours=1)) is None


def test_nonces_are_single_use(backend: Backend, store: Store) -> None:
    exp = T0 + timedelta(hours=1)
    assert store.use_nonce("n1", exp, T0) is True
    assert store.use_nonce("n1", exp, T0) is False
    assert backend.open().use_nonce("n1", exp, T0 + timedelta(minutes=5)) is False
    assert store.use_nonce("n2", exp, T0) is True


def test_meta_values(backend: Backend, store: Store) -> None:
    assert store.get_meta("seeds") is None
    store.set_meta("seeds", '["a@x.org"]')
    store.set_meta("schema", "1")
    assert backend.open().get_meta("seeds") == '["a@x.org"]'
    store.set_meta("schema", None)
    assert backend.open().get_meta("schema") is None


# ------------------------------------------------------------------------ export / import


def _fill(s: Store) -> None:
    at = int(T0.timestamp())  # ratings and examples move too
    rated = (("p2", UP, at, "Paper two"), ("p9", DOWN, at, "Paper nine"))
    a = Subscriber("a@x.org", ("llm",), ratings=rated, examples=(("p1", "One"), ("p3", "Three")))
    s.put_subscribers([a, Subscriber("b@x.org", status=PAUSED)])
    s.record_seen([paper("p1", upvotes=3), paper("p2")], D0)
    record(s, rec("a@x.org", D0, SENT, ("p1",), sections=(MATCH,), matched=(("llm",),)))
    s.enqueue(mail(), T0)
    s.hit_limit("ip:1", Limit(5, 3600), T0)
    s.use_nonce("n1", T0 + timedelta(hours=1), T0)
    s.set_meta("seeds", "[]")
    s.secret()


def test_export_import_round_trip(backend: Backend, tmp_path: Path) -> None:
    src = backend.open()
    _fill(src)
    items = list(src.export_items())
    kinds = {type(i).__name__ for i in items}
    assert kinds >= {
        "Subscriber",
        "SeenPaper",
        "DeliveryRecord",
        "RunReport",
        "QueuedMail",
        "LimitHits",
        "UsedNonce",
        "MetaValue",
        "StoredSecret",
    }
    with FACTORIES[backend.name](tmp_path / "other") as b2:
        dst = b2.open()
        assert dst.is_empty()
        assert dst.import_items(items) == len(items)
        assert not dst.is_empty()
        assert sorted(map(repr, dst.export_items())) == sorted(map(repr, items))
        assert dst.secret() == src.secret()
        assert dst.get_subscriber_by_id(src.get_subscriber("a@x.org").id)  # type: ignore[union-attr]
        with pytest.raises(StoreError, match="not empty"):
            dst.import_items(items)
        dst.import_items([Subscriber("only@x.org")], replace=True)
        assert [s.email for s in dst.subscribers()] == ["only@x.org"]
        assert dst.digests_for_day(D0) == {} and dst.queue_stats(T0).waiting == 0
        dst.close()


# ------------------------------------------------------------------- processes at once

INCREMENT = r"""
import sys
from dataclasses import replace
from digest.config import load_config
from digest.models import Subscriber
from digest.store import open_store

s = open_store(load_config(sys.argv[1]).store)
for i in range(int(sys.argv[2])):
    s.update_subscriber("count@x.org", lambda c: replace(c, max_papers=c.max_papers + 1))
    s.put_subscribers([Subscriber(f"{sys.argv[3]}-{i}@x.org")])
s.close()
"""


def test_concurrent_writers_in_processes_and_threads_lose_nothing(
    backend: Backend, store: Store
) -> None:
    store.put_subscribers([Subscriber("count@x.org", max_papers=1)])
    procs = [backend.spawn(INCREMENT, "25", f"p{k}") for k in range(3)]

    def web_thread(k: int) -> None:  # request threads sharing one store object
        for i in range(15):
            store.update_subscriber(
                "count@x.org", lambda c: replace(c, max_papers=c.max_papers + 1)
            )
            store.put_subscribers([Subscriber(f"t{k}-{i}@x.org")])

    threads = [threading.Thread(target=web_thread, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    for s in (store, backend.open()):
        assert s.get_subscriber("count@x.org").max_papers == 1 + 3 * 25 + 2 * 15  # type: ignore[union-attr]
        emails = {x.email for x in s.subscribers()}
        assert {f"p{k}-{i}@x.org" for k in range(3) for i in range(25)} <= emails
        assert {f"t{k}-{i}@x.org" for k in range(2) for i in range(15)} <= emails
        assert len({x.id for x in s.subscribers()}) == len(emails)


WORKER = r"""
import sys
from datetime import UTC, datetime, timedelta
from digest.config import Limit, load_config
from digest.store import open_store

s = open_store(load_config(sys.argv[1]).store)
now = datetime(2026, 1, 5, 6, tzinfo=UTC)
print("ready", flush=True)
sys.stdin.readline()  # start together
out = []
while True:
    got = s.claim_mail(now, lease=600, limit=3)
    if not got:
        break
    for m in got:
        out.append("mail " + m.id)
        s.mail_sent(m.id)
for i in range(40):
    if s.hit_limit("shared", Limit(50, 3600), now + timedelta(seconds=i)) is None:
        out.append("hit")
for i in range(30):
    if s.use_nonce(f"n{i}", now + timedelta(hours=1), now):
        out.append(f"nonce {i}")
s.close()
print("\n".join(out), flush=True)
"""


def test_workers_in_processes_share_queue_limits_and_nonces(backend: Backend, store: Store) -> None:
    ids = {store.enqueue(mail(n=i), T0) for i in range(60)}
    procs = [backend.spawn(WORKER) for _ in range(3)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready", p.stderr
    for p in procs:
        p.stdin.write("go\n")  # type: ignore[union-attr]
        p.stdin.flush()  # type: ignore[union-attr]
    lines: list[str] = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        lines += out.splitlines()
    sent = [ln.split()[1] for ln in lines if ln.startswith("mail ")]
    assert sorted(sent) == sorted(ids)  # every message once, none twice
    assert sum(1 for ln in lines if ln == "hit") == 50  # the limit held across processes
    used = sorted(int(ln.split()[1]) for ln in lines if ln.startswith("nonce "))
    assert used == list(range(30))  # each nonce used exactly once
    assert store.queue_stats(T0).waiting == 0


def test_a_closed_store_refuses(store: Store) -> None:
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.put_subscribers([Subscriber("a@x.org")])
