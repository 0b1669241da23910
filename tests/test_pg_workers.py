"""Many `digest run` workers share one day on PostgreSQL (issue 12, "many workers").

Real parts only: a real PostgreSQL server (tests/pgserver.py), the recorded sources from
a local HTTP server, a real SMTP server (aiosmtpd), and three real `digest run` processes
started at once for the same day. Each worker has its own config file that differs only
in `[smtp] sender`, so every accepted message says which worker sent it.

- The day's fetch happens once: the sources see each listing request once, not three
  times (the first worker gathers under a lock, the others reuse the stored result).
- One worker is SIGKILLed while it holds a batch (the SMTP server kills it from inside
  the acceptance of its Kth message, an event, never a sleep). Its unsent subscribers
  come back when its lease ends (injected short via [store] claim_lease_seconds) and
  are served by a live worker or a rerun: 0 subscribers missed, at most its in-flight
  messages (one per SMTP connection, 2 here) doubled, each a copy of the very same
  message (same Message-ID), and never a subscriber served by two live workers.
- With three live workers the day is shared: every worker sent part of it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import replace
from datetime import date
from pathlib import Path

import pgserver
import pytest
from httpfixture import FixtureServer
from smtpserver import SmtpServer

from digest.config import Config, StoreConfig
from digest.models import SENT, Subscriber
from digest.store import open_store
from digest.subscribers import parse_keywords

ROOT = Path(__file__).resolve().parents[1]
DAY = "2026-01-14"
CONNECTIONS = 2  # per worker: a killed worker doubles at most this many
BATCH = 8  # [store] claim_batch: small, so the day is split in many leased batches
LEASE = 2.0  # [store] claim_lease_seconds, injected short
PROFILES = (
    "large language models, reasoning, -survey",
    "video generation, 3D reconstruction, gaussian splatting",
    "agents, tool use, reinforcement learning",
    "speech recognition, text-to-speech, audio",
    "retrieval-augmented generation, retrieval, reranking",
    "quantization, KV cache, inference, efficient",
    "",  # no keywords: the most popular papers
    "robot, manipulation, embodied, -survey",
)
URL_ENV = "DIGEST_TEST_WORKERS_URL"


def _sender(k: int) -> str:
    return f"worker{k}@example.org"


def _config(tmp: Path, k: int, hf_url: str, smtp: SmtpServer) -> Path:
    f = tmp / f"worker{k}.toml"
    f.write_text(
        f"""
[http]
timeout = 5.0
retries = 0
[sources]
offline_fallback = false
[sources.huggingface]
base_url = "{hf_url}"
lookback_days = 3
[store]
backend = "postgresql"
url_env = "{URL_ENV}"
path = "{tmp / f"cache{k}"}"
claim_lease_seconds = {LEASE}
claim_batch = {BATCH}
[smtp]
host = "{smtp.host}"
port = {smtp.port}
security = "none"
sender = "Lab Papers <{_sender(k)}>"
connections = {CONNECTIONS}
""",
        encoding="utf-8",
    )
    return f


def _digest_run(conf: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "digest", "--config", str(conf), "run", "--date", DAY,
         "--no-progress"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


@pytest.fixture
def world(tmp_path: Path):
    with pgserver.database() as url, FixtureServer() as srv, SmtpServer() as smtp:
        cfg = srv.configure(
            Config(), categories=(), lookback_days=3, retries=0, offline_fallback=False
        )
        store_cfg = StoreConfig(path=tmp_path / "cache", backend="postgresql", url_env=URL_ENV)
        cfg = replace(cfg, store=store_cfg)
        env = {**os.environ, "PYTHONPATH": str(ROOT), URL_ENV: url}
        old = os.environ.get(URL_ENV)
        os.environ[URL_ENV] = url  # for this process's own store handle
        try:
            yield cfg, srv, smtp, env
        finally:
            if old is None:
                os.environ.pop(URL_ENV, None)
            else:
                os.environ[URL_ENV] = old


def _subscribe(cfg: Config, n: int) -> list[str]:
    emails = [f"user{i:03d}@example.org" for i in range(n)]
    store = open_store(cfg.store)
    try:
        store.put_subscribers(
            [
                Subscriber(email=e, keywords=parse_keywords(PROFILES[i % len(PROFILES)]),
                           max_papers=4, created="2025-12-01T00:00:00+00:00")
                for i, e in enumerate(emails)
            ]
        )  # fmt: skip
    finally:
        store.close()
    return emails


def _states(cfg: Config) -> dict[str, str]:
    store = open_store(cfg.store)
    try:
        return store.digests_for_day(date.fromisoformat(DAY))
    finally:
        store.close()


def _listing_requests(srv: FixtureServer) -> Counter[tuple[str, str]]:
    """(date, page) of every daily-listing request the sources answered."""
    out: Counter[tuple[str, str]] = Counter()
    for r in srv.requests:
        if r.path.startswith("/api/daily_papers") and "date" in r.query:
            out[(str(r.query["date"]), str(r.query.get("p", "0")))] += 1
    return out


def test_three_workers_share_a_day_and_a_killed_one_loses_nothing(world, tmp_path):
    cfg, srv, smtp, env = world
    n = 96
    emails = _subscribe(cfg, n)
    confs = [_config(tmp_path, k, cfg.sources.huggingface.base_url, smtp) for k in range(3)]
    victim, kill_at = _sender(0), 5  # worker 0 dies at its 5th accepted message
    procs: list[subprocess.Popen[str]] = []
    killed = threading.Event()

    def kill_the_victim() -> None:
        # Runs in the SMTP server's loop after it took a message, before its 250 reply:
        # the victim has that message (and perhaps one per other connection) in flight.
        if killed.is_set() or smtp.messages[-1].mail_from != victim:
            return
        if sum(1 for m in smtp.messages if m.mail_from == victim) == kill_at:
            os.kill(procs[0].pid, signal.SIGKILL)
            killed.set()

    smtp.on_message = kill_the_victim
    procs += [_digest_run(c, env) for c in confs]
    results = [p.communicate(timeout=300) for p in procs]
    smtp.on_message = None
    assert killed.is_set(), "worker 0 never reached its 5th message"
    assert procs[0].returncode == -signal.SIGKILL
    for p, (_out, err) in zip(procs[1:], results[1:], strict=True):
        assert p.returncode == 0, err

    # The fetch and the seen-store diff happened once for the three workers.
    listing = _listing_requests(srv)
    assert listing and max(listing.values()) == 1, listing

    # After the lease, a rerun finishes the day (if the live workers have not already
    # taken the dead one's subscribers over) and sends nothing that was sent.
    for _ in range(20):  # each pass is a whole `digest run`; the lease is LEASE seconds
        if set(_states(cfg)) >= set(emails):
            break
        rerun = _digest_run(confs[1], env)
        out, err = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, err
    states = _states(cfg)
    assert set(states) == set(emails), f"missed: {sorted(set(emails) - set(states))[:10]}"
    assert set(states.values()) == {SENT}

    per_sub = Counter(m.rcpt_tos[0] for m in smtp.messages)
    assert set(per_sub) == set(emails)  # 0 subscribers missed
    doubled = sorted(e for e, c in per_sub.items() if c > 1)
    assert max(per_sub.values()) <= 2
    assert len(doubled) <= CONNECTIONS, doubled  # the dead worker's in-flight messages only
    for e in doubled:
        got = [m for m in smtp.messages if m.rcpt_tos[0] == e]
        assert any(m.mail_from == victim for m in got), (e, [m.mail_from for m in got])
        assert len({m.message["Message-ID"] for m in got}) == 1  # the very same digest
    # Not vacuous: the victim died after serving part of the day (kill_at messages, at
    # most one per connection more in flight), and the two live workers served part too.
    by_victim = {m.rcpt_tos[0] for m in smtp.messages if m.mail_from == victim}
    assert kill_at <= len(by_victim) <= kill_at + CONNECTIONS
    senders = Counter(m.mail_from for m in smtp.messages)
    assert senders[_sender(1)] > 0 and senders[_sender(2)] > 0, senders


def test_live_workers_never_serve_one_subscriber_twice(world, tmp_path):
    """Three workers, none killed: every subscriber gets exactly one digest, and the
    day is split among them (each sent some)."""
    cfg, _srv, smtp, env = world
    n = 60
    emails = _subscribe(cfg, n)
    confs = [_config(tmp_path, k, cfg.sources.huggingface.base_url, smtp) for k in range(3)]
    procs = [_digest_run(c, env) for c in confs]
    for p in procs:
        _out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    per_sub = Counter(m.rcpt_tos[0] for m in smtp.messages)
    twice = {e: [m.mail_from for m in smtp.messages if m.rcpt_tos[0] == e]
             for e, c in per_sub.items() if c > 1}  # fmt: skip
    assert set(per_sub) == set(emails) and not twice, twice
    assert set(_states(cfg).values()) == {SENT} and len(_states(cfg)) == n
    senders = Counter(m.mail_from for m in smtp.messages)
    assert len(senders) >= 2, senders  # shared, not one worker doing it all
