"""The daily job end to end on real parts: recorded HF answers from a local HTTP server,
the real TinyDB store, a real SMTP server (aiosmtpd) started by the test.

- a month of recorded days replayed: no subscriber ever gets the same paper twice;
- the same day run twice sends nothing the second time;
- per-recipient 4xx / 5xx replies and a server that drops the connection mid-run;
- `digest run` killed with SIGKILL in the middle of sending over CONNECTIONS connections,
  then rerun: every subscriber ends with exactly one digest for the day (at most the
  in-flight one of each connection doubled, with the same Message-ID) and the store loads;
- a subscriber who unsubscribes or pauses while the run is held mid-way gets nothing;
- SMTP that keeps failing stops the run after 3 transient failures in a row;
- international addresses: IDNA domains, SMTPUTF8 only where the server offers it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest
from httpfixture import FixtureServer
from smtpserver import SmtpServer

from digest.config import Config, SmtpConfig, StoreConfig
from digest.errors import DeliveryError
from digest.models import DEFERRED, FAILED, NO_MATCH_SKIP, SENT, Subscriber
from digest.pipeline import run_daily
from digest.store import open_store
from digest.subscribers import parse_keywords

ROOT = Path(__file__).resolve().parents[1]
CONNECTIONS = 4  # [smtp] connections of the subprocess runs
PAPER_LINK = re.compile(r"https://huggingface\.co/papers/(\d{4}\.\d{4,5})")

PROFILES = {
    "llm@example.org": "large language models, reasoning, -survey",
    "vision@example.org": "video generation, 3D reconstruction, gaussian splatting",
    "agents@example.org": "agents, tool use, reinforcement learning",
    "speech@example.org": "speech recognition, text-to-speech, audio",
    "rag@example.org": "retrieval-augmented generation, retrieval, reranking",
    "efficiency@example.org": "quantization, KV cache, inference, efficient",
    "popular@example.org": "",  # no keywords: the most popular papers
    "robots@example.org": "robot, manipulation, embodied, -survey",
    "math@example.org": "mathematical reasoning, theorem proving",
    "diffusion@example.org": "diffusion, image generation, -video",
}


def subscribers(profiles=PROFILES, max_papers=5) -> list[Subscriber]:
    return [
        Subscriber(
            email=e,
            keywords=parse_keywords(k),
            max_papers=max_papers,
            created="2025-12-01T00:00:00+00:00",
        )
        for e, k in profiles.items()
    ]


def papers_in(msg) -> set[str]:
    html = msg.get_body(("html",)).get_content()
    return set(PAPER_LINK.findall(html))


@pytest.fixture
def world(tmp_path):
    with FixtureServer() as srv, SmtpServer() as smtp:
        cfg = srv.configure(
            Config(), categories=(), lookback_days=3, retries=0, offline_fallback=False
        )
        cfg = replace(
            cfg,
            store=StoreConfig(path=tmp_path / "data", fsync=False),
            smtp=SmtpConfig(
                host=smtp.host,
                port=smtp.port,
                security="none",
                sender="Lab Papers <papers@example.org>",
            ),
        )
        yield cfg, smtp


@pytest.fixture(params=["tinydb", "postgresql"])
def any_world(request, world, tmp_path):
    """`world` on each store backend (tests/store_contract.py FACTORIES: PostgreSQL is a
    real server, tests/pgserver.py), with a 1 s claim lease on PostgreSQL."""
    from store_contract import FACTORIES

    cfg, smtp = world
    with FACTORIES[request.param](tmp_path / "store") as b:
        store = replace(b.cfg, fsync=False, claim_lease_seconds=1.0)
        yield replace(cfg, store=store), smtp


def _leases_ended(cfg: Config) -> None:
    """PostgreSQL: wait until no claim of the day is under a live lease (a killed worker's
    claims hold its unsent subscribers until then); the database's clock decides."""
    if cfg.store.backend != "postgresql":
        return
    import psycopg

    with psycopg.connect(os.environ[cfg.store.url_env], autocommit=True) as c:
        for _ in range(600):
            row = c.execute(
                "SELECT extract(epoch FROM max(lease_until) - now()) FROM claims"
            ).fetchone()
            left = row[0] if row else None
            if left is None or left <= 0:
                return
            c.execute("SELECT pg_sleep(%s)", (float(left) + 0.01,))  # until the lease ends
    raise AssertionError("claims stayed leased")


def test_month_replay_never_sends_a_paper_twice_and_reruns_send_nothing(any_world):
    cfg, smtp = any_world
    store = open_store(cfg.store)
    store.put_subscribers(subscribers())
    store.close()
    per_sub: dict[str, Counter[str]] = defaultdict(Counter)
    day = date(2026, 1, 1)
    while day <= date(2026, 1, 31):
        before = len(smtp.messages)
        report = run_daily(cfg, day, progress=False)
        assert report.failed == report.deferred == 0
        assert len(smtp.messages) - before == report.sent
        again = run_daily(cfg, day, progress=False)  # the same day twice: nothing more
        assert again.sent == 0 and len(smtp.messages) - before == report.sent
        assert again.already_done == len(PROFILES)
        day += timedelta(days=1)

    assert len(smtp.messages) > 100  # a real month, not a vacuous pass
    for received in smtp.messages:
        msg = received.message
        (to,) = received.rcpt_tos
        assert msg["To"] == to and msg["Date"] and msg["Message-ID"]
        assert msg["List-Unsubscribe"].startswith("<http://localhost:8000/unsubscribe/")
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        parts = [p.get_content_type() for p in msg.iter_parts()]
        assert msg.get_content_type() == "multipart/alternative"
        assert parts == ["text/plain", "text/html"]
        assert b"\r\n" in received.data and b"\n" not in received.data.replace(b"\r\n", b"")
        ids = papers_in(msg)
        assert ids, "a sent digest links its papers"
        per_sub[to].update(ids)
    for to, counts in per_sub.items():
        repeated = [pid for pid, n in counts.items() if n > 1]
        assert not repeated, f"{to} got {repeated} twice"
    assert len(per_sub) == len(PROFILES)
    # Every subscriber got one digest per day at most.
    per_day = Counter((r.rcpt_tos[0], r.message["Message-ID"]) for r in smtp.messages)
    assert max(per_day.values()) == 1


def test_4xx_is_retried_next_run_5xx_is_not(world):
    cfg, smtp = world
    store = open_store(cfg.store)
    store.put_subscribers(subscribers(max_papers=3))
    store.close()
    smtp.reply_for["llm@example.org"] = "451 4.3.0 try again later"
    smtp.reply_for["vision@example.org"] = "550 5.1.1 no such user"
    day = date(2026, 1, 14)
    report = run_daily(cfg, day, progress=False)
    assert (report.deferred, report.failed) == (1, 1)
    assert report.sent == len(PROFILES) - 2
    store = open_store(cfg.store)
    states = store.digests_for_day(day)
    store.close()
    assert states["llm@example.org"] == DEFERRED and states["vision@example.org"] == FAILED
    # The server recovers; the rerun serves only the deferred subscriber.
    smtp.reply_for.clear()
    again = run_daily(cfg, day, progress=False)
    assert (again.sent, again.failed, again.deferred) == (1, 0, 0)
    assert [r.rcpt_tos for r in smtp.messages].count(["llm@example.org"]) == 1
    assert ["vision@example.org"] not in [r.rcpt_tos for r in smtp.messages]


def test_server_dropping_the_connection_mid_run_loses_nothing(world):
    cfg, smtp = world
    store = open_store(cfg.store)
    store.put_subscribers(subscribers(max_papers=3))
    store.close()
    smtp.drop_after = 3  # the server closes every connection after 3 messages
    report = run_daily(cfg, date(2026, 1, 14), progress=False)
    assert report.sent == len(PROFILES) and report.deferred == 0
    assert sorted(r.rcpt_tos[0] for r in smtp.messages) == sorted(PROFILES)
    assert smtp.connections >= 4  # it reconnected


def test_smtp_that_keeps_failing_stops_the_run_over_several_connections(world):
    cfg, smtp = world
    cfg = replace(cfg, smtp=replace(cfg.smtp, connections=CONNECTIONS))
    store = open_store(cfg.store)
    store.put_subscribers(subscribers(max_papers=3))
    store.close()
    for e in PROFILES:
        smtp.reply_for[e] = "451 4.3.2 system not accepting messages"
    with pytest.raises(DeliveryError, match=r"^SMTP keeps failing \(.*451 4\.3\.2") as e:
        run_daily(cfg, date(2026, 1, 14), progress=False)
    assert "\n" not in str(e.value) and "left for the next run" in str(e.value)
    store = open_store(cfg.store)
    states = store.digests_for_day(date(2026, 1, 14))
    store.close()
    # three in a row, plus what the other connections had in flight; the rest untouched
    assert set(states.values()) == {DEFERRED}
    assert 3 <= len(states) <= 3 + CONNECTIONS - 1 < len(PROFILES)
    smtp.reply_for.clear()  # the relay is back: the rerun serves everyone, once
    report = run_daily(cfg, date(2026, 1, 14), progress=False)
    assert report.sent == len(PROFILES)
    assert sorted(r.rcpt_tos[0] for r in smtp.messages) == sorted(PROFILES)


@pytest.mark.parametrize("smtputf8", [True, False])
def test_international_addresses_end_to_end(world, smtputf8):
    """anna@bücher.de (accepted by every input path) is mailed, as its A-label; zoë@ (a
    non-ASCII local part, from an old store) goes where the server offers SMTPUTF8, and
    elsewhere fails alone, recorded with the reason."""
    from smtpserver import SmtpServer

    from digest.subscribers import make_subscriber

    cfg, _ = world
    with SmtpServer(smtputf8=smtputf8) as smtp:
        cfg = replace(cfg, smtp=replace(cfg.smtp, port=smtp.port))
        store = open_store(cfg.store)
        store.put_subscribers(
            [
                make_subscriber("anna@bücher.de", "large language models", 3),
                Subscriber(email="zoë@example.org", keywords=("agents",), max_papers=3),
                Subscriber(email="ada@example.org", keywords=("reasoning",), max_papers=3),
            ]
        )
        store.close()
        report = run_daily(cfg, date(2026, 1, 14), progress=False)
        got = {r.rcpt_tos[0]: r for r in smtp.messages}
    assert got["anna@xn--bcher-kva.de"].message["To"] == "anna@xn--bcher-kva.de"
    store = open_store(cfg.store)
    states = store.digests_for_day(date(2026, 1, 14))
    (zoe,) = [h for h in store.history("zoë@example.org") if h.day == date(2026, 1, 14)]
    store.close()
    assert states["anna@bücher.de"] == states["ada@example.org"] == SENT
    if smtputf8:
        assert report.sent == 3 and states["zoë@example.org"] == SENT
        assert "SMTPUTF8" in got["zoë@example.org"].mail_options
    else:
        assert (report.sent, report.failed) == (2, 1) and "zoë@example.org" not in got
        assert states["zoë@example.org"] == FAILED and "needs SMTPUTF8" in zoe.detail


def test_max_rate_paces_the_run(world):
    """[smtp] max_rate over several connections: the k-th message is accepted no earlier
    than k / rate after the run began. (A lower bound: a slower machine only adds time.)"""
    import time

    cfg, smtp = world
    rate = 40.0
    cfg = replace(cfg, smtp=replace(cfg.smtp, connections=CONNECTIONS, max_rate=rate))
    store = open_store(cfg.store)
    store.put_subscribers(subscribers(max_papers=2))
    store.close()
    stamps: list[float] = []
    smtp.on_message = lambda: stamps.append(time.monotonic())
    began = time.monotonic()
    report = run_daily(cfg, date(2026, 1, 14), progress=False)
    assert report.sent == len(PROFILES) == len(stamps)
    for k, t in enumerate(sorted(stamps)):
        assert t >= began + k / rate, f"message {k} at {t - began:.3f}s"


def test_unreachable_smtp_server_is_one_line_and_sends_nothing(world, tmp_path, capsys):
    cfg, smtp = world
    store = open_store(cfg.store)
    store.put_subscribers(subscribers())
    store.close()
    dead = replace(cfg, smtp=replace(cfg.smtp, port=1))  # nothing listens on port 1
    with pytest.raises(DeliveryError) as e:
        run_daily(dead, date(2026, 1, 14), progress=False)
    assert "\n" not in str(e.value)
    store = open_store(cfg.store)
    assert store.digests_for_day(date(2026, 1, 14)) == {}  # nobody marked as served
    store.close()
    report = run_daily(cfg, date(2026, 1, 14), progress=False)  # later: everyone served
    assert report.sent == len(PROFILES)


def test_a_day_with_nothing_to_mail_never_contacts_the_smtp_server(world):
    cfg, smtp = world
    store = open_store(cfg.store)
    # keywords that match nothing, and no trending papers on a day without a match
    quiet = subscribers({"a@example.org": "zzqxv", "b@example.org": "qqzxw"})
    store.put_subscribers([replace(s, no_match=NO_MATCH_SKIP) for s in quiet])
    store.close()
    dead = replace(cfg, smtp=replace(cfg.smtp, port=1))  # nothing listens on port 1
    report = run_daily(dead, date(2026, 1, 14), progress=False)  # no DeliveryError
    assert (report.sent, report.empty) == (0, 2)
    store = open_store(cfg.store)
    assert store.digests_for_day(date(2026, 1, 14)) == {
        "a@example.org": "empty",
        "b@example.org": "empty",
    }
    store.close()


def _config_file(tmp_path: Path, cfg: Config, smtp: SmtpServer) -> Path:
    f = tmp_path / "digest.toml"
    f.write_text(f"""
[http]
timeout = 5.0
retries = 0
[sources]
offline_fallback = false
[sources.huggingface]
base_url = "{cfg.sources.huggingface.base_url}"
lookback_days = 3
{_store_section(cfg)}
[smtp]
host = "{smtp.host}"
port = {smtp.port}
security = "none"
sender = "Lab Papers <papers@example.org>"
connections = {CONNECTIONS}
""")
    return f


def _store_section(cfg: Config) -> str:
    from store_contract import store_config_toml

    return store_config_toml(replace(cfg.store, fsync=True))


@pytest.mark.parametrize("kill_at", [1, 57])
def test_sigkill_mid_send_then_rerun_gives_everyone_exactly_one_digest(
    any_world, tmp_path, kill_at
):
    cfg, smtp = any_world
    n = 120
    store = open_store(cfg.store)
    store.put_subscribers(
        [
            Subscriber(email=f"user{i:03d}@example.org", keywords=parse_keywords(k), max_papers=4)
            for i, k in enumerate(list(PROFILES.values()) * (n // 10))
        ]
    )
    store.close()
    conf = _config_file(tmp_path, cfg, smtp)
    cmd = [
        sys.executable,
        "-m",
        "digest",
        "--config",
        str(conf),
        "run",
        "--date",
        "2026-01-14",
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def kill_when_reached() -> None:
        # Called by the server after it took message number len(messages) and before its
        # 250 reply: the killed process has that message in flight, accepted, unrecorded.
        if len(smtp.messages) == kill_at:
            os.kill(proc.pid, signal.SIGKILL)

    smtp.on_message = kill_when_reached
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    smtp.on_message = None
    first = len(smtp.messages)
    assert kill_at <= first < n

    _leases_ended(cfg)  # PostgreSQL: the killed worker's claims end with their lease
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert "sent" in rerun.stdout

    per_sub = Counter(r.rcpt_tos[0] for r in smtp.messages)
    assert set(per_sub) == {f"user{i:03d}@example.org" for i in range(n)}
    doubled = [e for e, c in per_sub.items() if c > 1]
    assert max(per_sub.values()) <= 2
    assert len(doubled) <= CONNECTIONS  # only the in-flight message of each connection
    for e in doubled:  # a doubled digest is the very same message, same Message-ID
        ids = {r.message["Message-ID"] for r in smtp.messages if r.rcpt_tos[0] == e}
        assert len(ids) == 1
    store = open_store(cfg.store)  # the store loads and knows everyone was served
    states = store.digests_for_day(date(2026, 1, 14))
    store.close()
    assert len(states) == n and set(states.values()) == {SENT}


def test_an_unsubscribe_acknowledged_mid_run_is_never_mailed(world, tmp_path):
    """Issue 9: a run took its subscriber list at its start, and under load mailed people
    whose unsubscribe or pause had been acknowledged seconds before. Here the SMTP server
    holds the real `digest run` mid-way (its whole loop waits on an event, so nothing
    moves), three subscribers unsubscribe, pause and are removed through the CLI (each
    acknowledged: the command returned), then the server lets go."""
    cfg, smtp = world
    n = 40
    emails = [f"user{i:03d}@example.org" for i in range(n)]
    store = open_store(cfg.store)
    store.put_subscribers(
        [
            Subscriber(email=e, keywords=parse_keywords(k), max_papers=3)
            for e, k in zip(emails, list(PROFILES.values()) * (n // 10), strict=True)
        ]
    )
    store.close()
    conf = _config_file(tmp_path, cfg, smtp)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    digest = [sys.executable, "-m", "digest", "--config", str(conf)]
    holding, release = threading.Event(), threading.Event()

    def hold_at_the_fifth() -> None:  # runs in the server's loop: every connection waits
        if len(smtp.messages) == 5:
            holding.set()
            release.wait(120)

    smtp.on_message = hold_at_the_fifth
    run = subprocess.Popen(
        [*digest, "run", "--date", "2026-01-14", "--no-progress"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holding.wait(120), "the run never reached its fifth message"
        # Far behind what can be in flight now (one message per connection, held).
        gone = {"user030@example.org", "user031@example.org", "user032@example.org"}
        for args in (
            ["update", "user030@example.org", "--status", "unsubscribed"],
            ["update", "user031@example.org", "--status", "paused"],
            ["remove", "user032@example.org"],
        ):
            done = subprocess.run(
                [*digest, "subscribers", *args], env=env, capture_output=True, text=True
            )
            assert done.returncode == 0, done.stderr
    finally:
        release.set()
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    got = Counter(r.rcpt_tos[0] for r in smtp.messages)
    assert not gone & set(got)  # nothing after the acknowledgement
    assert set(got) == set(emails) - gone and max(got.values()) == 1
    assert "3 subscriber(s) unsubscribed or paused during the run: not sent" in out
    store = open_store(cfg.store)
    states = store.digests_for_day(date(2026, 1, 14))
    store.close()
    assert not gone & set(states)  # not recorded as delivered (nor as anything)
    assert set(states) == set(emails) - gone and set(states.values()) == {SENT}


def test_a_message_that_cannot_be_built_fails_alone(world):
    """An address no mail header can carry (it bypassed validation: an old store, a
    hand-edited file) fails that digest only; everyone else is served."""
    cfg, smtp = world
    store = open_store(cfg.store)
    store.put_subscribers(
        [*subscribers(max_papers=2), Subscriber(email="bad address@example.org", max_papers=2)]
    )
    store.close()
    report = run_daily(cfg, date(2026, 1, 14), progress=False)
    assert report.failed == 1 and report.sent == len(PROFILES)
    store = open_store(cfg.store)
    assert store.digests_for_day(date(2026, 1, 14))["bad address@example.org"] == FAILED
    store.close()


def test_every_source_failing_sends_nothing_and_exits_non_zero(world, tmp_path, capsys):
    from httpfixture import unused_url

    from digest.cli import main

    cfg, smtp = world
    conf = tmp_path / "down.toml"
    conf.write_text(f"""
[http]
retries = 0
[sources]
offline_fallback = false
[sources.huggingface]
base_url = "{unused_url()}"
[store]
path = "{cfg.store.path}"
[smtp]
host = "{smtp.host}"
port = {smtp.port}
security = "none"
[[subscribers]]
email = "ada@example.org"
""")
    assert main(["--config", str(conf), "run", "--date", "2026-01-14"]) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("digest: error: every source failed") and "\n" not in err
    assert smtp.received == 0
    store = open_store(cfg.store)  # the failed run is kept, so `digest status` can say why
    (run,) = store.runs()
    store.close()
    assert run.error.startswith("every source failed") and run.sent == 0
