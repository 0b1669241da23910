"""§4 durability, on real parts: a real `digest web` subprocess, a real SMTP server
(aiosmtpd), SIGKILL. "Check your inbox" is answered only once the subscription and its
confirmation mail are in the store; the mail worker sends the queue with retries, so a
kill -9 or a relay that refuses connections loses nothing."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import smtpserver
from browser import SmtpInbox, free_port, hidden

from digest.config import StoreConfig
from digest.models import PENDING
from digest.store import open_store

ROOT = Path(__file__).resolve().parents[1]


class Web:
    """`digest web` as a real process on `port`, mailing through 127.0.0.1:`smtp_port`."""

    def __init__(self, tmp_path: Path, port: int, smtp_port: int):
        self.url = f"http://127.0.0.1:{port}"
        self.data = tmp_path / "data"
        self.config = tmp_path / "digest.toml"
        self.config.write_text(
            f'[store]\npath = "{self.data}"\n'
            f'[web]\nport = {port}\nbase_url = "{self.url}"\n'
            f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nsecurity = "none"\n'
            'sender = "Paper Digest <digest@example.org>"\ntimeout = 10\n',
            encoding="utf-8",
        )
        self.log = tmp_path / "web.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra_env: dict[str, str] = {}  # more (or overriding) environment variables

    def start(self) -> Web:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DIGEST_SECRET": "durability-test-secret-0123456789abcdef",
            "DIGEST_WEB_RATE_IP": "10000/3600",
            "DIGEST_WEB_RATE_EMAIL": "10000/3600",
            "DIGEST_WEB_MIN_FILL": "0",
            "DIGEST_WEB_MAIL_RETRY": "0.2",  # first retry after 0.2 s, doubling,
            "DIGEST_WEB_MAIL_RETRY_MAX": "1",  # up to 1 s (however long the traffic ran)
            "DIGEST_WEB_MAIL_TRIES": "10000",  # never given up while the relay is down
            "DIGEST_WEB_MAIL_LEASE": "2",  # a killed worker's claims come back after 2 s
            **self.extra_env,
        }
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "digest", "--config", str(self.config), "web"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None, self.log.read_text(errors="replace")[-2000:]
            assert time.monotonic() < deadline, "digest web did not start"
            time.sleep(0.1)

    def health(self) -> str:
        return httpx.get(self.url + "/healthz", timeout=30).text

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


def subscribe(url: str, email: str) -> int:
    with httpx.Client(base_url=url, timeout=30) as c:
        page = c.get("/")
        r = c.post(
            "/",
            data={
                "csrf": hidden(page.text, "csrf"),
                "t": hidden(page.text, "t"),
                "email": email,
                "keywords": "agents",
                "website": "",
                "action": "subscribe",
            },
        )
        return 200 if r.status_code == 200 and "Check your inbox" in r.text else r.status_code


def pending_in_store(data: Path) -> set[str]:
    store = open_store(StoreConfig(path=data, fsync=False))
    try:
        return {s.email for s in store.subscribers() if s.status == PENDING}
    finally:
        store.close()


@pytest.fixture
def smtp_port(monkeypatch) -> int:
    """A fixed port for the SMTP server, so it can be down first and come back there."""
    port = free_port()
    monkeypatch.setattr(smtpserver, "free_port", lambda: port)
    return port


def test_every_answered_subscribe_survives_kill_9_and_its_mail_is_delivered(tmp_path, smtp_port):
    # The relay is down (connection refused) while subscribes are answered, so every mail
    # is still queued when the process is killed mid-traffic.
    web = Web(tmp_path, free_port(), smtp_port).start()
    answered: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        i = 0
        while not stop.is_set():
            email = f"k{i}@example.org"
            try:
                if subscribe(web.url, email) == 200:
                    answered.append(email)
            except httpx.HTTPError:
                pass  # the kill cut this request: it was never answered
            i += 1

    t = threading.Thread(target=traffic)
    t.start()
    try:
        deadline = time.monotonic() + 120
        while len(answered) < 25:
            assert time.monotonic() < deadline, "subscribes were not answered"
            time.sleep(0.01)
        web.kill()  # SIGKILL while requests are in flight
    finally:
        stop.set()
        t.join(timeout=60)
        web.stop()
    got = list(answered)
    assert len(got) >= 25
    assert set(got) <= pending_in_store(web.data)  # every answered one is stored

    with SmtpInbox() as inbox:  # the relay is back, on the port the config names
        assert inbox.port == smtp_port
        web.start()
        try:
            for email in got:
                inbox.wait_for(email, timeout=120)
            assert "0 waiting" in web.health() or len(inbox.messages) >= len(got)
        finally:
            web.stop()


def test_a_relay_refusing_connections_gets_the_mail_when_it_comes_back(tmp_path, smtp_port):
    web = Web(tmp_path, free_port(), smtp_port).start()
    try:
        emails = [f"r{i}@example.org" for i in range(6)]
        assert [subscribe(web.url, e) for e in emails] == [200] * 6
        health = web.health()
        assert health.startswith("ok\n") and "6 waiting" in health, health  # kept, retried
        assert re.search(r"oldest \d+ s", health), health
        with SmtpInbox() as inbox:
            assert inbox.port == smtp_port
            for email in emails:
                inbox.wait_for(email, timeout=120)
            deadline = time.monotonic() + 60
            while "0 waiting" not in web.health():
                assert time.monotonic() < deadline, web.health()
                time.sleep(0.1)
        assert set(emails) <= pending_in_store(web.data)
    finally:
        web.stop()


def test_a_store_that_cannot_write_answers_503_and_healthz_fails(tmp_path):
    """A full disk or a read-only store (the write raises StoreError): the visitor gets a
    plain 503 page, never "check your inbox", and /healthz fails."""
    from websupport import make_site

    from digest.errors import StoreError

    with make_site(tmp_path) as site:

        def full(*a: object, **k: object) -> None:
            raise StoreError(f"{site.cfg.store.path}/changes.jsonl: No space left on device")

        site.store.update_subscriber = full  # the store object the app holds, failing
        site.store.set_meta = full
        with site.client() as c:
            r = site.subscribe(c, "x@example.org", "agents")
        assert r.status_code == 503 and "Check your inbox" not in r.text
        assert "nothing was changed" in r.text and "No space" not in r.text
        assert r.headers["retry-after"]
        r = httpx.get(site.url + "/healthz", timeout=30)
        assert r.status_code == 503 and "store not writable" in r.text
        assert site.inbox.messages == []
