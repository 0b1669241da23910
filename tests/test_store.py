"""The TinyDB store's own parts: codecs, files on disk, journals, crashes, locks.

What every backend must do is in tests/store_contract.py (run over TinyDB too)."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from datetime import date
from pathlib import Path

import pytest

from digest.config import StoreConfig
from digest.errors import StoreError, StoreLocked
from digest.models import (
    DEFERRED,
    PAUSED,
    SENT,
    DeliveryRecord,
    Paper,
    RunReport,
    Subscriber,
    digest_id,
)
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
    """One delivery record, written the way a run writes it (durable on return)."""
    s._record(DeliveryRecord(digest_id(email, day), email, day, state, tuple(ids), detail))


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
    assert (tmp_path / "a" / "b" / "changes.jsonl").stat().st_size > 0


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
    with store.run(D0, RunReport(day=D0, dry_run=True)):
        with pytest.raises(StoreLocked, match="another digest run is in progress.*run.lock"):
            with other.run(D0, RunReport(day=D0, dry_run=True)):
                pass
    with other.run(D0, RunReport(day=D0, dry_run=True)):
        pass
    other.close()


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


# ------------------------------------------------------------------ codecs follow the fields


def test_every_stored_model_has_a_field_driven_codec() -> None:
    """A field of a type the codec cannot store fails here, not at run time."""
    from digest.store import codec, state, transfer
    from digest.store.fields import Codec

    for c in (codec.SUBSCRIBER, codec.PAPER, codec.RUN, codec.EXTRA, state.MESSAGE):
        assert c.fields
    assert set(transfer.CODECS) >= {"subscriber", "digest", "run", "seen", "mail"}

    @dataclasses.dataclass(frozen=True)
    class Odd:
        x: set[str]

    with pytest.raises(TypeError, match="no JSON form"):
        Codec(Odd)


def test_a_new_field_needs_no_codec_change_and_old_rows_decode() -> None:
    from digest.store.fields import Codec

    @dataclasses.dataclass(frozen=True)
    class V1:
        email: str
        max_papers: int = 10

    @dataclasses.dataclass(frozen=True)
    class V2:
        email: str
        max_papers: int = 10
        trending: int | None = None
        ratings: tuple[tuple[str, int], ...] = ()
        since: date | None = None
        extra: dict[str, float] = dataclasses.field(default_factory=dict)

    old_row = Codec(V1, keys={"email": "e"}).encode(V1("a@x.org", 3))
    v2 = Codec(V2, keys={"email": "e"})
    assert v2.decode(old_row) == V2("a@x.org", 3)  # stored before the field existed
    full = V2("b@x.org", 4, 2, (("2601.1", 2), ("2601.2", -1)), D0, {"w": 0.5})
    assert v2.decode(json.loads(json.dumps(v2.encode(full)))) == full
    assert v2.encode(V2("c@x.org")) == {"e": "c@x.org"}  # defaults are not stored
    assert Codec(V1, keys={"email": "e"}).decode(v2.encode(full)) == V1("b@x.org", 4)
    for bad in ({"e": "x", "trending": "2"}, {"e": "x", "ratings": [["p", 1, 2]]}, {}):
        with pytest.raises(ValueError):
            v2.decode(bad)
    with pytest.raises(ValueError, match="max_papers"):
        v2.decode({"e": "x", "max_papers": True})  # a bool is not an int


def test_a_store_written_by_the_previous_version_loads(cfg: StoreConfig) -> None:
    """subscribers.json without ids or the new tables, digest records as 3-5 item lists,
    run reports as RunReport.to_dict wrote them."""
    o = D0.toordinal()
    cfg.path.mkdir(parents=True)
    subs = {
        "subscribers": {"1": {"e": "a@x.org", "k": ["llm"]}, "2": {"e": "b@x.org", "s": "paused"}}
    }
    (cfg.path / "subscribers.json").write_text(json.dumps(subs))
    hist = {
        "seen": {str(o): {"p": ["p1"]}},
        "papers": {str(o): {"p": {"p1": {"t": "T", "a": "A", "u": 3}}}},
        "digests": {
            str(o): {
                "p": ["p1"],
                "d": {
                    "a@x.org": ["s", [0], 1767600000],
                    "b@x.org": ["d", [0], 1767600000, "421 later", "custom-id"],
                },
            }
        },
        "runs": {
            str(o): {
                "r": [
                    {
                        "day": D0.isoformat(),
                        "sent": 1,
                        "deferred": 1,
                        "error": "SMTP keeps failing",
                        "seconds": 1.5,
                    }
                ]
            }
        },
    }
    (cfg.path / "history.json").write_text(json.dumps(hist))
    s = TinyStore(cfg)
    a, b = s.get_subscriber("a@x.org"), s.get_subscriber("b@x.org")
    assert a is not None and a.keywords == ("llm",) and a.id and b is not None and b.id != a.id
    assert TinyStore(cfg).get_subscriber_by_id(a.id) == a  # the ids were stored, once
    (r,) = s.history("a@x.org")
    assert (r.state, r.paper_ids, r.digest_id, r.sections) == (
        SENT,
        ("p1",),
        digest_id("a@x.org", D0),
        (),
    )
    assert s.pending_retries()[0].digest_id == "custom-id"
    (run,) = s.runs()
    assert (run.sent, run.error, run.seconds) == (1, "SMTP keeps failing", 1.5)
    assert s.get_papers(["p1"])["p1"].upvotes == 3
    s.close()


# ------------------------------------------------------------------ bounded writes


def _ident(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return (st.st_ino, st.st_mtime_ns)


def test_web_writes_append_to_the_journal_and_never_rewrite(cfg: StoreConfig) -> None:
    from datetime import UTC, datetime

    from digest.config import Limit
    from digest.models import PENDING, OutgoingMessage
    from digest.store import Change

    now = datetime(2026, 1, 5, tzinfo=UTC)
    s = TinyStore(cfg)
    s.put_subscribers([Subscriber(f"p{i}@x.org", status=PENDING) for i in range(2000)])
    s.flush()
    before = _ident(cfg.path / "subscribers.json")
    msg = OutgoingMessage("web-confirm-1", "n@x.org", "d@x.org", "<1@x>", b"x\r\n")
    s.update_subscriber("n@x.org", lambda c: Change(Subscriber("n@x.org", status=PENDING), (msg,)))
    s.update_subscriber("p1@x.org", lambda c: dataclasses.replace(c, keywords=("rag",)))
    s.hit_limit("ip:1", Limit(5, 60), now)
    s.use_nonce("n1", now, now)
    s.enqueue(msg, now)
    s.remove_subscriber("p2@x.org")
    assert _ident(cfg.path / "subscribers.json") == before  # no rewrite of the big file
    assert (cfg.path / "changes.jsonl").stat().st_size < 3000  # one short line per write
    other = TinyStore(cfg)  # replays them
    assert other.get_subscriber("p1@x.org").keywords == ("rag",)  # type: ignore[union-attr]
    assert other.get_subscriber("p2@x.org") is None
    assert other.queue_stats(now).waiting == 2
    other.close()
    s.close()


def test_the_journal_is_folded_once_it_outgrows_the_file(cfg: StoreConfig, monkeypatch) -> None:
    import digest.store.statefile as statefile

    monkeypatch.setattr(statefile, "FOLD_MIN_BYTES", 2000)
    s = TinyStore(cfg)
    s.put_subscribers([Subscriber(f"u{i}@x.org") for i in range(20)])  # ~1.2 KB: no fold yet
    assert (cfg.path / "changes.jsonl").stat().st_size > 0
    for i in range(40):
        s.update_subscriber(f"u{i % 20}@x.org", lambda c: dataclasses.replace(c, max_papers=5))
        s.put_subscribers([Subscriber(f"v{i}@x.org")])
    base = (cfg.path / "subscribers.json").stat().st_size
    assert base > 2000  # folded (more than once)
    assert (cfg.path / "changes.jsonl").stat().st_size <= max(2000, base) + 300
    fresh = TinyStore(cfg)
    assert len(fresh.subscribers()) == 60
    assert {x.max_papers for x in fresh.subscribers() if x.email.startswith("u")} == {5}
    fresh.close()
    s.close()


def test_crash_between_state_fold_and_truncate_replays_nothing_twice(cfg: StoreConfig) -> None:
    from datetime import UTC, datetime

    from digest.config import Limit
    from digest.models import OutgoingMessage

    now = datetime(2026, 1, 5, tzinfo=UTC)
    s = TinyStore(cfg)
    qid = s.enqueue(OutgoingMessage("m", "a@x.org", "d@x.org", "<1@x>", b"x\r\n"), now)
    s.mail_sent(qid)
    for _ in range(2):
        s.hit_limit("k", Limit(3, 3600), now)
    journal = (cfg.path / "changes.jsonl").read_bytes()
    s.flush()
    # folded, but (crash) never truncated: the same lines are found again
    (cfg.path / "changes.jsonl").write_bytes(journal)
    again = TinyStore(cfg)
    assert again.queue_stats(now).waiting == 0  # the sent message is not resurrected
    assert again.hit_limit("k", Limit(3, 3600), now) is None  # 2 hits, not 4
    assert again.hit_limit("k", Limit(3, 3600), now) is not None
    again.close()
    s.close()


def test_corrupt_changes_line_is_an_error_naming_the_file(cfg: StoreConfig) -> None:
    cfg.path.mkdir(parents=True)
    (cfg.path / "changes.jsonl").write_bytes(b'{"q": 1, "o": [["s", {"e": 5}]]}\n')
    with pytest.raises(StoreError, match="changes.jsonl: corrupt journal line") as e:
        TinyStore(cfg)
    assert "\n" not in str(e.value)
