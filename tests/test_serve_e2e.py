"""End to end: `digest serve` as a subprocess, stopped by SIGTERM mid-send, restarted.

Real parts only: the `python -m digest serve` process, the local HTTP server of recorded
Hugging Face answers (tests/httpfixture.py), a real SMTP server (aiosmtpd) in this process,
the real store on disk. Prompt firing without a test-only switch: the configured send time
is two minutes ago, so the catch-up on start owes today's digest.

The "middle" of the send is made deterministic, not timed: the SMTP server holds its reply
to message number HOLD_AT until the test has sent SIGTERM. The process must then finish
that message in flight (and those in flight on its other SMTP connections), record them,
send nothing more, and exit 0; the restart must send exactly the rest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest
from httpfixture import FixtureServer
from smtpserver import SmtpServer

from digest.config import load_config
from digest.models import Subscriber
from digest.store import open_store

ROOT = Path(__file__).resolve().parents[1]
N_SUBSCRIBERS = 300
HOLD_AT = 60  # the SMTP server holds its reply to this message until SIGTERM is sent
CONNECTIONS = 4  # [smtp] connections: each may have one message in flight at the stop
WAIT = 120.0  # generous upper bound for any one step on a slow CI machine (not asserted)


class Hold:
    """on_message hook of the test SMTP server: holds the 250 reply to the n-th accepted
    message (the server's loop waits; the client is mid-send) until released."""

    def __init__(self, srv: SmtpServer, at: int | None):
        self.srv, self.at = srv, at
        self.holding = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> None:
        if self.at is not None and len(self.srv.messages) == self.at:
            self.holding.set()
            self.release.wait(WAIT)


def wait_for(
    cond: Callable[[], bool],
    what: str,
    proc: subprocess.Popen | None = None,
    log: Path | None = None,
) -> None:
    deadline = time.monotonic() + WAIT
    while not cond():
        if proc is not None and proc.poll() is not None:
            pytest.fail(
                f"serve exited early ({proc.returncode}) waiting for {what}:\n"
                + (log.read_text() if log else "")
            )
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:\n" + (log.read_text() if log else ""))
        time.sleep(0.05)


@pytest.fixture
def smtp():
    with SmtpServer() as srv:
        yield srv


def write_config(
    tmp: Path, hf_url: str, smtp_port: int, send_time: str, web_port: int = 8000
) -> Path:
    cfg = tmp / "digest.toml"
    cfg.write_text(f"""
site_name = "E2E Digest"
[http]
retries = 0
timeout = 10
[sources]
offline_fallback = false
[sources.huggingface]
base_url = "{hf_url}"
mode = "trending"
[store]
path = "data"
fsync = false
[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
sender = "E2E Digest <digest@example.org>"
timeout = {WAIT}
connections = {CONNECTIONS}
[web]
base_url = "http://127.0.0.1:{web_port}"
host = "127.0.0.1"
port = {web_port}
secret_env = "DIGEST_E2E_SECRET"
[schedule]
time = "{send_time}"
timezone = "UTC"
misfire_grace_hours = 6
""")
    return cfg


def start_serve(cfg: Path, log: Path, *extra: str) -> subprocess.Popen:
    env = dict(
        os.environ, DIGEST_E2E_SECRET="e2e-secret-not-for-production-32bytes", PYTHONPATH=str(ROOT)
    )
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "digest", "--config", str(cfg), "serve", *extra],
            cwd=cfg.parent,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def status_json(cfg: Path) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "digest",
            "--config",
            str(cfg),
            "status",
            "--json",
            "--runs",
            "10",
            "--all",
        ],
        cwd=cfg.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=True,
    )
    return json.loads(out.stdout)


def send_time_passed() -> datetime:
    """Two minutes ago, in UTC: the send time of its day has passed, the grace has not."""
    return (datetime.now(UTC) - timedelta(minutes=2)).replace(second=0, microsecond=0)


def add_subscribers(cfg_path: Path, sent_at: datetime) -> list[str]:
    store = open_store(load_config(cfg_path).store)
    try:
        created = (sent_at - timedelta(hours=1)).isoformat()  # subscribed before the send time
        emails = [f"reader{i:03d}@example.org" for i in range(N_SUBSCRIBERS)]
        store.put_subscribers([Subscriber(email=e, created=created) for e in emails])
    finally:
        store.close()
    return emails


def received_by_recipient(smtp: SmtpServer) -> dict[str, list[str]]:
    """To address -> Message-IDs received, checking envelope and header agree."""
    by_to: dict[str, list[str]] = {}
    for m in smtp.messages:
        msg = m.message
        to = parseaddr(msg["To"])[1]
        assert m.rcpt_tos == [to]
        by_to.setdefault(to, []).append(msg["Message-ID"])
    return by_to


def test_serve_sigterm_mid_send_then_restart_sends_each_digest_once(tmp_path, smtp):
    smtp_port = smtp.port
    sent_at = send_time_passed()
    day = sent_at.date()
    with FixtureServer() as srv:
        cfg_path = write_config(tmp_path, srv.url, smtp_port, sent_at.strftime("%H:%M"))
        emails = add_subscribers(cfg_path, sent_at)

        log = tmp_path / "serve.log"
        hold = smtp.on_message = Hold(smtp, HOLD_AT)
        proc = start_serve(cfg_path, log)
        try:
            wait_for(hold.holding.is_set, f"message {HOLD_AT}", proc, log)
            proc.send_signal(signal.SIGTERM)  # in the middle: message HOLD_AT is in flight
            # Let the signal land before the reply does, or the run could go on a message.
            wait_for(lambda: "stopping" in log.read_text(), "the stop log line", proc, log)
            hold.release.set()
            assert proc.wait(WAIT) == 0, log.read_text()
        finally:
            hold.release.set()
            if proc.poll() is None:
                proc.kill()
        first = smtp.received
        # the in-flight ones finished (HOLD_AT's, and at most one per other connection)
        assert HOLD_AT <= first < HOLD_AT + CONNECTIONS, log.read_text()

        st = status_json(cfg_path)
        last = st["runs"][0]
        assert last["sent"] == first and any("stopped" in n for n in last["notes"])
        assert st["owed_now"] == [{"day": day.isoformat(), "subscribers": N_SUBSCRIBERS - first}]

        smtp.on_message = None
        proc = start_serve(cfg_path, log)
        try:
            wait_for(lambda: smtp.received >= N_SUBSCRIBERS, "every digest", proc, log)
            wait_for(
                lambda: log.read_text().count("digest run for") >= 2,
                "the restart's run report",
                proc,
                log,
            )
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(WAIT) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()

    by_to = received_by_recipient(smtp)
    assert sorted(by_to) == emails  # everyone got it
    assert all(len(mids) == 1 for mids in by_to.values())  # exactly once
    mids = [m for ms in by_to.values() for m in ms]
    assert len(set(mids)) == N_SUBSCRIBERS
    assert all(mid.startswith(f"<{day.isoformat()}-") for mid in mids)  # the day's digest
    st = status_json(cfg_path)
    assert st["owed_now"] == [] and st["pending_retries"] == []
    assert st["day"] == {
        "day": day.isoformat(),
        "sent": N_SUBSCRIBERS,
        "empty": 0,
        "failed": 0,
        "deferred": 0,
        "none yet": 0,
    }
    assert {p["last"]["state"] for p in st["subscribers"]} == {"sent"}
    assert {p["last"]["day"] for p in st["subscribers"]} == {day.isoformat()}
    text = log.read_text()
    assert "stopped cleanly" in text and "Traceback" not in text
    human = subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(cfg_path), "status", "--all"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=True,
    ).stdout
    assert "schedule: " + sent_at.strftime("%H:%M") + " UTC" in human
    assert f"sent {N_SUBSCRIBERS - first}," in human and f"sent {first}," in human
    assert "reader299@example.org" in human and "waiting for retry: 0" in human


def test_serve_killed_mid_send_restart_sends_the_rest(tmp_path, smtp):
    """kill -9 while message HOLD_AT is in flight: the server accepted it but the process
    never heard the 250, so it is not recorded. The restart sends the rest; the in-flight
    digest may go out again, with the SAME Message-ID (receivers drop such duplicates).
    Nobody is skipped, nobody else gets two."""
    sent_at = send_time_passed()
    with FixtureServer() as srv:
        cfg_path = write_config(tmp_path, srv.url, smtp.port, sent_at.strftime("%H:%M"))
        emails = add_subscribers(cfg_path, sent_at)
        log = tmp_path / "serve.log"
        hold = smtp.on_message = Hold(smtp, HOLD_AT)
        proc = start_serve(cfg_path, log)
        try:
            wait_for(hold.holding.is_set, f"message {HOLD_AT}", proc, log)
            proc.kill()  # SIGKILL: no clean-up at all
            assert proc.wait(WAIT) == -signal.SIGKILL
        finally:
            hold.release.set()
            if proc.poll() is None:
                proc.kill()
        smtp.on_message = None
        proc = start_serve(cfg_path, log)  # the store's run lock died with the process
        try:
            wait_for(
                lambda: log.read_text().count("digest run for") >= 1, "the restart's run", proc, log
            )
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(WAIT) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
    by_to = received_by_recipient(smtp)
    assert sorted(by_to) == emails
    twice = {to: mids for to, mids in by_to.items() if len(mids) > 1}
    assert len(twice) <= CONNECTIONS  # at most the one in flight on each connection
    assert all(len(set(mids)) == 1 for mids in by_to.values())  # same Message-ID if twice


def test_serve_web_runs_the_web_service_in_the_same_process(tmp_path, smtp):
    import httpx
    from smtpserver import free_port

    port = free_port()
    with FixtureServer() as srv:
        # Send time in the future: nothing is owed; this test is about the web thread.
        later = (datetime.now(UTC) + timedelta(hours=3)).strftime("%H:%M")
        cfg_path = write_config(tmp_path, srv.url, smtp.port, later, web_port=port)
        log = tmp_path / "serve.log"
        proc = start_serve(cfg_path, log, "--web")
        try:
            wait_for(lambda: "web service on" in log.read_text(), "the web service", proc, log)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                assert client.get("/healthz").status_code == 200
                page = client.get("/")
                assert page.status_code == 200 and "<form" in page.text
            # One serve per store: a second one refuses at once, in one line.
            second = subprocess.run(
                [sys.executable, "-m", "digest", "--config", str(cfg_path), "serve"],
                cwd=tmp_path,
                env=dict(os.environ, PYTHONPATH=str(ROOT)),
                capture_output=True,
                text=True,
                timeout=WAIT,
            )
            assert second.returncode == 75  # StoreLocked: EX_TEMPFAIL
            assert "another `digest serve` is already running" in second.stderr
            assert len(second.stderr.strip().splitlines()) == 1, second.stderr
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(WAIT) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
    assert smtp.received == 0
    assert "stopped cleanly" in log.read_text()
