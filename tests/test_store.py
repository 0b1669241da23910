"""The TinyDB store: round-trips, seen-store, delivery records, retention, files on disk."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest

from digest.config import StoreConfig
from digest.errors import StoreError, StoreLocked
from digest.models import DEFERRED, EMPTY, FAILED, PAUSED, SENT, Paper, Subscriber, digest_id
from digest.store import open_store
from digest.store.codec import (
    paper_from_dict,
    paper_to_dict,
    subscriber_from_dict,
    subscriber_to_dict,
)
from digest.store.tinydb import TinyStore

D0 = date(2026, 1, 5)


def paper(pid: str, **kw: object) -> Paper:
    base = {"title": f"Title {pid}", "abstract": f"Abstract of {pid}."}
    base.update(kw)
    return Paper(id=pid, **base)  # type: ignore[arg-type]


@pytest.fixture
def cfg(tmp_path: Path) -> StoreConfig:
    return StoreConfig(path=tmp_path / "data", retention_days=60, history_days=10, fsync=False)


@pytest.fixture
def store(cfg: StoreConfig):
    s = TinyStore(cfg)
    yield s
    s.close()


def record(s: TinyStore, email: str, day: date, state: str, ids=(), detail="") -> None:
    s.record_digest(digest_id(email, day), email, day, state, ids, detail)


# ------------------------------------------------------------------ codec


def test_paper_round_trip_full_and_minimal() -> None:
    full = Paper(
        id="2601.00001",
        title="T — ü",
        abstract="A",
        authors=("A. One", "B. Two"),
        listed_on=D0,
        ai_summary="S",
        ai_keywords=("k1", "k2"),
        upvotes=0,
        github_repo="https://github.com/x/y",
        github_stars=7,
        project_page="https://x.org",
        sources=("huggingface", "arxiv"),
    )
    d = json.loads(json.dumps(paper_to_dict(full)))
    assert d["l"] == "2026-01-05" and d["au"] == ["A. One", "B. Two"]
    assert paper_from_dict(full.id, d) == full
    minimal = paper("2601.00002")
    assert paper_to_dict(minimal) == {"t": "Title 2601.00002", "a": "Abstract of 2601.00002."}
    assert paper_from_dict(minimal.id, paper_to_dict(minimal)) == minimal


def test_subscriber_round_trip_and_bad_values() -> None:
    sub = Subscriber(
        "Ann@example.org",
        ("llm", "-survey"),
        max_papers=5,
        min_score=0.5,
        status=PAUSED,
        send_hour=7,
        timezone="Europe/Berlin",
        created="2026-01-01",
    )
    assert subscriber_from_dict(json.loads(json.dumps(subscriber_to_dict(sub)))) == sub
    assert subscriber_to_dict(Subscriber("b@x.org")) == {"e": "b@x.org"}
    with pytest.raises(ValueError):
        subscriber_from_dict({"e": "c@x.org", "s": "zombie"})
    with pytest.raises(ValueError):
        paper_from_dict("x", {"t": "T", "a": "A", "u": "many"})


# ------------------------------------------------------------------ subscribers


def test_subscribers_round_trip_replace_and_remove(cfg: StoreConfig, store: TinyStore) -> None:
    a = Subscriber("a@x.org", ("llm",), created="2026-01-01T00:00:00+00:00")
    b = Subscriber("b@x.org", ("graph neural network", "-survey"), max_papers=3)
    store.put_subscribers([a, b])
    store.put_subscribers([replace(a, keywords=("rlhf",), status=PAUSED)])
    assert store.get_subscriber("A@X.org") == replace(a, keywords=("rlhf",), status=PAUSED)
    assert store.remove_subscriber("b@x.org") is True
    assert store.remove_subscriber("b@x.org") is False
    store.put_subscribers([Subscriber("c@x.org")])
    store.close()
    again = TinyStore(cfg)
    assert sorted(s.email for s in again.subscribers()) == ["a@x.org", "c@x.org"]
    assert again.get_subscriber("b@x.org") is None
    again.close()


def test_other_store_sees_committed_subscriber_changes(cfg: StoreConfig, store: TinyStore) -> None:
    other = TinyStore(cfg)  # stands in for the web service
    store.put_subscribers([Subscriber("a@x.org")])
    other.put_subscribers([Subscriber("b@x.org")])  # must reload first, not clobber a@
    store.put_subscribers([Subscriber("c@x.org")])
    for s in (store, other):
        assert sorted(x.email for x in s.subscribers()) == ["a@x.org", "b@x.org", "c@x.org"]
    other.remove_subscriber("a@x.org")
    assert store.get_subscriber("a@x.org") is None
    other.close()


# ------------------------------------------------------------------ seen-store


def test_first_seen_kept_across_days_and_relisting(cfg: StoreConfig, store: TinyStore) -> None:
    first = store.record_seen([paper("p1"), paper("p2")], D0)
    assert first == {"p1": D0, "p2": D0}
    d1 = D0 + timedelta(days=1)
    again = store.record_seen([paper("p2", upvotes=40), paper("p3")], d1)
    assert again == {"p2": D0, "p3": d1}  # re-listing keeps the old first-seen day
    assert store.first_seen(["p1", "p3", "unknown"]) == {"p1": D0, "p3": d1}  # read-only
    assert store.first_seen(["p9"]) == {} and store.first_seen(["p9"]) == {}
    store.close()
    s = TinyStore(cfg)
    assert s.record_seen([paper("p1")], D0 + timedelta(days=2)) == {"p1": D0}
    assert [p.id for p in s.recent_papers(d1)] == ["p3"]
    assert [p.id for p in s.recent_papers(D0)] == ["p1", "p2", "p3"]
    assert s.get_papers(["p2", "nope"])["p2"].upvotes == 40  # the latest details win
    assert set(s.get_papers(["p1", "p2", "p3"])) == {"p1", "p2", "p3"}
    s.close()


# ------------------------------------------------------------------ delivery records


def test_delivered_since_later_record_wins(cfg: StoreConfig, store: TinyStore) -> None:
    d1, d2 = D0 + timedelta(days=1), D0 + timedelta(days=2)
    record(store, "a@x.org", D0, SENT, ["p1", "p2"])
    record(store, "a@x.org", d1, DEFERRED, ["p3"], "421 busy")
    record(store, "b@x.org", d1, FAILED, ["p3"], "550 no such user")
    record(store, "c@x.org", d1, EMPTY)
    assert store.delivered_since(D0) == {"a@x.org": {"p1", "p2"}}
    store.flush()  # half folded into history.json, half still in the journal
    record(store, "a@x.org", d1, SENT, ["p3"])  # the retry succeeded: later record wins
    record(store, "a@x.org", d2, SENT, ["p4"])
    assert store.delivered_since(d1) == {"a@x.org": {"p3", "p4"}}
    assert store.digests_for_day(d1) == {"a@x.org": SENT, "b@x.org": FAILED, "c@x.org": EMPTY}
    store.close()
    s = TinyStore(cfg)
    assert s.delivered_since(D0) == {"a@x.org": {"p1", "p2", "p3", "p4"}}
    assert s.pending_retries() == []
    hist = s.history("a@x.org")
    assert [(h["day"], h["state"], h["papers"]) for h in hist] == [
        ("2026-01-07", SENT, ["p4"]),
        ("2026-01-06", SENT, ["p3"]),
        ("2026-01-05", SENT, ["p1", "p2"]),
    ]
    assert hist[0]["id"] == digest_id("a@x.org", d2) and hist[0]["at"].endswith("+00:00")
    assert len(s.history("a@x.org", limit=2)) == 2
    assert s.history("b@x.org")[0]["detail"] == "550 no such user"
    s.close()


def test_pending_retries_lists_latest_deferred(store: TinyStore) -> None:
    d1 = D0 + timedelta(days=1)
    record(store, "a@x.org", D0, DEFERRED, ["p1"], "421 later")
    record(store, "b@x.org", D0, DEFERRED, ["p1"], "timeout")
    record(store, "b@x.org", D0, SENT, ["p1"])
    store.flush()
    record(store, "c@x.org", d1, DEFERRED, ["p2"])
    got = store.pending_retries()
    assert [(r["email"], r["day"], r["papers"], r["detail"]) for r in got] == [
        ("a@x.org", "2026-01-05", ["p1"], "421 later"),
        ("c@x.org", "2026-01-06", ["p2"], ""),
    ]
    assert got[0]["id"] == digest_id("a@x.org", D0)


def test_custom_digest_id_is_kept(store: TinyStore) -> None:
    store.record_digest("custom-id", "a@x.org", D0, SENT, ["p1"])
    store.flush()
    assert store.history("a@x.org")[0]["id"] == "custom-id"


def test_unknown_state_is_refused(store: TinyStore) -> None:
    with pytest.raises(StoreError, match="unknown digest state"):
        store.record_digest("x", "a@x.org", D0, "bounced")


def test_runs_newest_first(store: TinyStore) -> None:
    for i in range(3):
        store.record_run({"day": (D0 + timedelta(days=i // 2)).isoformat(), "n": i})
    assert [r["n"] for r in store.runs()] == [2, 1, 0]
    assert [r["n"] for r in store.runs(limit=2)] == [2, 1]


# ------------------------------------------------------------------ retention


def test_prune_keeps_within_retention(cfg: StoreConfig, store: TinyStore) -> None:
    today = D0 + timedelta(days=100)
    for age in (70, 50, 12, 9, 0):
        day = today - timedelta(days=age)
        store.record_seen([paper(f"p{age}")], day)
        record(store, "a@x.org", day, SENT, [f"p{age}"])
        store.record_run({"day": day.isoformat(), "age": age})
    store.prune(today)
    # seen: retention_days=60; details, digests, runs: history_days=10
    assert store.record_seen([paper("p70"), paper("p50")], today) == {
        "p70": today,
        "p50": today - timedelta(50),
    }
    assert [p.id for p in store.recent_papers(today - timedelta(days=60))] == [
        "p50",
        "p9",
        "p0",
        "p70",
    ]  # p50 and p70 re-recorded today, so details are back
    assert store.delivered_since(D0) == {"a@x.org": {"p9", "p0"}}
    assert [r["age"] for r in store.runs()] == [0, 9]
    store.close()
    s = TinyStore(cfg)
    assert s.delivered_since(D0) == {"a@x.org": {"p9", "p0"}}
    assert not (cfg.path / "journal.jsonl").read_bytes()
    s.close()


def test_finish_run_equals_record_run_prune_flush(tmp_path: Path) -> None:
    """The one-rewrite end of a run leaves exactly what the three separate calls leave."""
    today = D0 + timedelta(days=100)
    stores = []
    for name in ("three", "one"):
        c = StoreConfig(path=tmp_path / name, retention_days=60, history_days=10, fsync=False)
        s = TinyStore(c)
        for age in (70, 50, 12, 9, 0):
            day = today - timedelta(days=age)
            s.record_seen([paper(f"p{age}")], day)
            record(s, "a@x.org", day, SENT, [f"p{age}"])
        report = {"day": today.isoformat(), "sent": 1}
        if name == "three":
            s.record_run(report)
            s.prune(today)
            s.flush()
        else:
            s.finish_run(report, today)
        assert not (c.path / "journal.jsonl").read_bytes()  # folded in both cases
        s.close()
        stores.append(TinyStore(c))
    a, b = stores
    assert a.delivered_since(D0) == b.delivered_since(D0) == {"a@x.org": {"p9", "p0"}}
    assert a.runs() == b.runs()
    assert [p.id for p in a.recent_papers(D0)] == [p.id for p in b.recent_papers(D0)]
    assert a.first_seen(["p70", "p50", "p0"]) == b.first_seen(["p70", "p50", "p0"])
    for s in stores:
        s.close()


# ------------------------------------------------------------------ files on disk


def test_files_layout_atomic_and_compact(cfg: StoreConfig, store: TinyStore) -> None:
    store.put_subscribers([Subscriber("a@x.org")])
    store.record_seen([paper("p1")], D0)
    record(store, "a@x.org", D0, SENT, ["p1"])
    store.flush()
    names = set(os.listdir(cfg.path))
    assert {"subscribers.json", "history.json", "journal.jsonl", "store.lock"} <= names
    assert not [n for n in names if n.endswith(".tmp")]  # no temp file left behind
    raw = (cfg.path / "history.json").read_text()
    assert ": " not in raw and ", " not in raw  # compact separators
    doc = json.loads(raw)
    assert doc["digests"][str(D0.toordinal())]["d"]["a@x.org"][:2] == ["s", [0]]
    assert stat.S_IMODE(os.stat(cfg.path / "subscribers.json").st_mode) == 0o600


def test_stale_temp_file_is_cleaned_and_ignored(cfg: StoreConfig, store: TinyStore) -> None:
    store.put_subscribers([Subscriber("a@x.org")])
    store.close()
    (cfg.path / ".subscribers.json.abc123.tmp").write_text('{"cut')  # writer killed mid-write
    s = TinyStore(cfg)
    assert [x.email for x in s.subscribers()] == ["a@x.org"]
    assert not (cfg.path / ".subscribers.json.abc123.tmp").exists()
    s.close()


def test_missing_folder_is_created(tmp_path: Path) -> None:
    s = open_store(StoreConfig(path=tmp_path / "a" / "b", fsync=True))
    s.put_subscribers([Subscriber("a@x.org")])
    s.close()
    assert (tmp_path / "a" / "b" / "subscribers.json").exists()


@pytest.mark.parametrize(
    "name,content",
    [
        ("history.json", b'{"seen": {"1": {"p": ['),
        ("history.json", b"[1, 2]"),
        ("subscribers.json", b"\xff\xfe not utf-8"),
        ("subscribers.json", b'{"subscribers": {"1": {"nope": 1}}}'),
        ("history.json", b'{"digests": {"739621": {"p": [], "d": {"a@x.org": ["s", [5], 1]}}}}'),
    ],
)
def test_corrupt_file_is_a_store_error_naming_it(
    cfg: StoreConfig, name: str, content: bytes
) -> None:
    cfg.path.mkdir(parents=True)
    (cfg.path / name).write_bytes(content)
    with pytest.raises(StoreError) as err:
        s = TinyStore(cfg)
        s.subscribers()
        s.delivered_since(D0)
    assert name in str(err.value) and "\n" not in str(err.value)
    assert (cfg.path / name).read_bytes() == content  # never overwritten


def test_corrupt_journal_middle_line_is_an_error(cfg: StoreConfig) -> None:
    cfg.path.mkdir(parents=True)
    (cfg.path / "journal.jsonl").write_bytes(b'{"garbage\n{"i":"x"}\n')
    with pytest.raises(StoreError, match="journal.jsonl"):
        TinyStore(cfg)


def test_journal_replay_after_crash_and_torn_line(cfg: StoreConfig, store: TinyStore) -> None:
    record(store, "a@x.org", D0, SENT, ["p1"])
    record(store, "b@x.org", D0, DEFERRED, ["p2"])
    # simulate kill -9: the process dies without flush/close, mid-way through a line
    with open(cfg.path / "journal.jsonl", "ab") as f:
        f.write(b'{"i":"2026-01-05-xx","e":"c@x.org","d":7396')
    s = TinyStore(cfg)
    assert s.digests_for_day(D0) == {"a@x.org": SENT, "b@x.org": DEFERRED}
    record(s, "c@x.org", D0, SENT, ["p3"])  # starts on a fresh line after the torn one
    s2 = TinyStore(cfg)
    assert s2.digests_for_day(D0) == {"a@x.org": SENT, "b@x.org": DEFERRED, "c@x.org": SENT}
    s.close()
    assert s2.delivered_since(D0) == {"a@x.org": {"p1"}, "c@x.org": {"p3"}}
    s2.close()


def test_crash_between_fold_and_truncate_is_harmless(cfg: StoreConfig, store: TinyStore) -> None:
    record(store, "a@x.org", D0, DEFERRED, ["p1"])
    record(store, "a@x.org", D0, SENT, ["p1"])
    journal = (cfg.path / "journal.jsonl").read_bytes()
    store.flush()
    # the journal was folded but (crash) never truncated: the same lines replay again
    (cfg.path / "journal.jsonl").write_bytes(journal)
    s = TinyStore(cfg)
    assert s.digests_for_day(D0) == {"a@x.org": SENT}
    s.flush()
    assert s.pending_retries() == [] and s.delivered_since(D0) == {"a@x.org": {"p1"}}
    s.close()


def test_secret_made_once_private(cfg: StoreConfig, store: TinyStore) -> None:
    secret = store.secret()
    assert len(secret) >= 40
    path = cfg.path / "secret.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    os.chmod(path, 0o644)
    s = TinyStore(cfg)
    assert s.secret() == secret
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    s.close()


def test_run_lock_exclusive_in_process(store: TinyStore, cfg: StoreConfig) -> None:
    other = TinyStore(cfg)
    with store.run_lock():
        with pytest.raises(StoreLocked, match="another digest run is in progress.*run.lock"):
            with other.run_lock():
                pass
    with other.run_lock():
        pass
    other.close()


def test_closed_store_refuses(store: TinyStore) -> None:
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.put_subscribers([Subscriber("a@x.org")])


# ---------------------------------------------------------------------- the store lock

HOLD_LOCK = r"""
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.readline()  # hold until told to go
"""


def test_a_write_waits_for_another_process_and_then_says_busy(cfg: StoreConfig, monkeypatch):
    import subprocess
    import sys

    import digest.store.tinydb as tinydb_mod

    store = TinyStore(cfg)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(cfg.path / "store.lock")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"  # type: ignore[union-attr]
        monkeypatch.setattr(tinydb_mod, "LOCK_TIMEOUT", 0.2)
        with pytest.raises(StoreError, match=r"store\.lock: store is busy") as e:
            record(store, "a@x.org", D0, SENT, ["p1"])
        assert "\n" not in str(e.value)
    finally:
        holder.communicate("go\n", timeout=10)
    record(store, "a@x.org", D0, SENT, ["p1"])  # the holder is gone: the write goes through
    assert store.digests_for_day(D0) == {"a@x.org": SENT}
    store.close()


def test_the_store_lock_is_free_between_calls_and_after_close(cfg: StoreConfig) -> None:
    import fcntl

    store = TinyStore(cfg)
    record(store, "a@x.org", D0, SENT, ["p1"])
    fd = os.open(cfg.path / "store.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody holds it between calls
        fcntl.flock(fd, fcntl.LOCK_UN)
        store.close()
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


def test_flock_lock_is_reentrant_for_its_holder(tmp_path: Path) -> None:
    import fcntl

    from digest.store.files import FlockLock

    lock = FlockLock(tmp_path / "x.lock")
    other = os.open(tmp_path / "x.lock", os.O_RDWR | os.O_CREAT)
    try:
        lock.acquire(timeout=1)
        lock.acquire(timeout=1)
        lock.release()  # still held once
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.release()
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(TimeoutError):
            lock.acquire(timeout=0.05)
    finally:
        os.close(other)
        lock.close()
