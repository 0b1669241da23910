"""The store across real processes: kill -9 at random moments, concurrent writers, run lock.

Children are separate Python processes (not threads) because the guarantees are about
processes: a record is durable once `run.record` returns even if the process is then
SIGKILLed, and the web service (another process) never loses or clobbers changes. Every
test runs on every backend of the contract suite (tests/store_contract.py); children
open the store from the backend's config file.
"""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from datetime import date
from pathlib import Path

import pytest
from store_contract import (
    Backend,
    backend,  # noqa: F401 - the fixture, parametrized per backend
    tinydb,
)

from digest.errors import StoreLocked
from digest.models import SENT, DeliveryRecord, Paper, RunReport, Subscriber, digest_id

ROOT = Path(__file__).resolve().parents[1]
D0 = date(2026, 1, 5)

# A writer that reports each operation on stdout only AFTER the store call returned.
WRITER = r"""
import sys
from dataclasses import replace
from datetime import date, timedelta
from digest.config import load_config
from digest.models import DeliveryRecord, Paper, RunReport, Subscriber, digest_id
from digest.store import open_store

cfg = load_config(sys.argv[1]).store
start, fsync = int(sys.argv[2]), sys.argv[3] == "1"
s = open_store(replace(cfg, fsync=fsync))
print("ready", flush=True)
i = start
while True:  # a run per 50 records (its end folds the journal), killed at any moment
    chunk = i // 50
    day = date(2026, 1, 5) + timedelta(days=chunk % 5)  # within history_days
    with s.run(day, RunReport(day=day)) as run:
        while i // 50 == chunk:
            email = f"u{i}@x.org"
            ids = (f"p{i}", "common")
            run.record(DeliveryRecord(digest_id(email, day), email, day, "sent", ids))
            print("rec", i, flush=True)
            if i % 5 == 0:
                s.put_subscribers([Subscriber(f"s{i}@x.org", (f"kw{i}",))])
                print("sub", i, flush=True)
            if i % 9 == 0:
                s.record_seen([Paper(f"p{i}", f"T{i}", "A")], day)
                print("seen", i, flush=True)
            i += 1
"""


class _Reader(threading.Thread):
    """Collects a child's stdout lines as they arrive."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        super().__init__(daemon=True)
        self.proc, self.lines, self.ready = proc, [], threading.Event()

    def run(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip() == "ready":
                self.ready.set()
            elif line.endswith("\n"):  # a line cut by the kill was never fully reported
                self.lines.append(line.split())
        self.ready.set()


@pytest.mark.parametrize("fsync", [False, True])
def test_kill_9_at_random_moments_loses_no_returned_record(
    backend: Backend,  # noqa: F811 - the fixture imported above
    fsync: bool,
) -> None:
    rnd = random.Random(1234 + fsync)
    recs: set[int] = set()
    subs: set[int] = set()
    seen: set[int] = set()
    start = 0
    for _ in range(5):
        proc = backend.spawn(WRITER, str(start), "1" if fsync else "0")
        reader = _Reader(proc)
        reader.start()
        assert reader.ready.wait(30), proc.stderr.read() if proc.stderr else ""
        time.sleep(rnd.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        reader.join(10)
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
        for kind, n in reader.lines:
            {"rec": recs, "sub": subs, "seen": seen}[kind].add(int(n))
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stdin.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
        assert recs, "the writer reported nothing before it was killed"
        start = max(recs) + 1  # the next child continues the numbering

        s = backend.open()  # must load after every kill
        delivered = s.delivered_since(D0)
        missing = [i for i in recs if f"p{i}" not in delivered.get(f"u{i}@x.org", set())]
        assert not missing, f"records reported durable but lost: {missing[:10]}"
        emails = {x.email for x in s.subscribers()}
        assert {f"s{i}@x.org" for i in subs} <= emails
        known = s.record_seen([], D0)  # a no-op write must also work after a kill
        assert known == {}
        assert set(s.get_papers([f"p{i}" for i in seen])) == {f"p{i}" for i in seen}
        s.close()
    assert len(recs) > 20


SUBSCRIBER = r"""
import sys
from digest.config import load_config
from digest.models import Subscriber
from digest.store import open_store

who, n = sys.argv[2], int(sys.argv[3])
s = open_store(load_config(sys.argv[1]).store)
for i in range(n):
    # one request = one put (as the web service does), kept busy against the run below
    s.put_subscribers([Subscriber(f"{who}-{i}@x.org", (f"kw {i}",))])
    if i % 10 == 0:
        s.remove_subscriber(f"{who}-{i}@x.org")
        s.put_subscribers([Subscriber(f"{who}-{i}@x.org", (f"kw {i}",))])
s.close()
"""

RUN = r"""
import sys
from datetime import date
from digest.config import load_config
from digest.models import DeliveryRecord, Paper, RunReport, digest_id
from digest.store import open_store

n = int(sys.argv[2])
s = open_store(load_config(sys.argv[1]).store)
day = date(2026, 1, 5)
with s.run(day, RunReport(day=day, sent=n)) as run:
    for i in range(n):
        s.record_seen([Paper(f"q{i}", "T", "A")], day)
        e = f"r{i}@x.org"
        run.record(DeliveryRecord(digest_id(e, day), e, day, "sent", (f"q{i}",)))
        s.subscribers()
s.close()
"""


def test_concurrent_writers_and_a_run_in_processes_lose_nothing(backend: Backend) -> None:  # noqa: F811
    shared = backend.open()
    shared.put_subscribers([Subscriber("first@x.org")])
    procs = [backend.spawn(RUN, "60")]
    procs += [backend.spawn(SUBSCRIBER, f"proc{k}", "40") for k in range(4)]

    def web_thread(k: int) -> None:  # several request threads sharing one store object
        for i in range(15):
            shared.put_subscribers([Subscriber(f"thread{k}-{i}@x.org")])

    threads = [threading.Thread(target=web_thread, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err

    fresh = backend.open()
    for s in (fresh, shared):
        emails = {x.email for x in s.subscribers()}
        expected = {f"proc{k}-{i}@x.org" for k in range(4) for i in range(40)}
        expected |= {f"thread{k}-{i}@x.org" for k in range(3) for i in range(15)}
        expected.add("first@x.org")
        assert emails == expected  # 206 subscribers written concurrently: none lost
        assert s.delivered_since(D0) == {f"r{i}@x.org": {f"q{i}"} for i in range(60)}
        assert s.record_seen([Paper("q0", "T", "A")], date(2026, 2, 1)) == {"q0": D0}
        assert [r.sent for r in s.runs()] == [60]


HOLDER = r"""
import sys
from datetime import date
from digest.config import load_config
from digest.models import RunReport
from digest.store import open_store

s = open_store(load_config(sys.argv[1]).store)
with s.run(date(2026, 1, 5), RunReport(day=date(2026, 1, 5), dry_run=True)):
    print("locked", flush=True)
    sys.stdin.read()  # hold until the test closes our stdin
print("released", flush=True)
"""


# The run lock is TinyDB's way to hold a day (another backend lets workers share it).


def test_run_lock_exclusive_across_processes(tmp_path: Path) -> None:
    with tinydb(tmp_path) as b:
        proc = b.spawn(HOLDER)
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "locked"
        s = b.open()
        with pytest.raises(StoreLocked, match="another digest run is in progress"):
            with s.run(D0, RunReport(day=D0)):
                pass
        # the store itself stays usable while a run holds the run lock
        s.put_subscribers([Subscriber("a@x.org")])
        proc.stdin.close()
        assert proc.stdout.readline().strip() == "released"
        proc.wait(10)
        with s.run(D0, RunReport(day=D0), wait=True) as run:
            run.record(DeliveryRecord(digest_id("a@x.org", D0), "a@x.org", D0, SENT, ("p",)))
        s.close()
        proc.stdout.close()
        proc.stderr.close()  # type: ignore[union-attr]


def test_run_lock_released_when_holder_is_killed(tmp_path: Path) -> None:
    with tinydb(tmp_path) as b:
        proc = b.spawn(HOLDER)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        proc.kill()
        proc.wait(10)
        s = b.open()
        with s.run(D0, RunReport(day=D0, dry_run=True)):  # the OS dropped the dead holder's lock
            pass
        s.close()
        for f in (proc.stdout, proc.stdin, proc.stderr):
            f.close()  # type: ignore[union-attr]
