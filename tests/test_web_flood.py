"""§4 idle connections, on real parts: a real `digest web` under a 1024 file limit
(systemd's default, set with setrlimit before exec), flooded with 1,100 connections that
each send half a request. /healthz still answers, and the log stays small (it used to
fill with "accept() out of system resource" lines)."""

from __future__ import annotations

import logging
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from browser import free_port

from digest.web.server import RateLimitedLog, connection_cap

ROOT = Path(__file__).resolve().parents[1]
HALF_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow"  # never finished


def _limit_files() -> None:  # runs in the child, before exec
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


def start_web(tmp_path: Path, header_timeout: float) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = tmp_path / "digest.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "data"}"\n[web]\nport = {port}\nbase_url = "{url}"\n',
        encoding="utf-8",
    )
    log = tmp_path / "web.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DIGEST_SECRET": "flood-test-secret-0123456789abcdefghij",
        "DIGEST_WEB_HEADER_TIMEOUT": str(header_timeout),
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "digest", "--config", str(config), "web"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_limit_files,  # noqa: PLW1509 - no threads in the test at this point
        )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=5).status_code == 200:
                return proc, url, log
        except httpx.TransportError:
            pass
        assert proc.poll() is None, log.read_text(errors="replace")[-2000:]
        assert time.monotonic() < deadline, "digest web did not start"
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


def healthz_answers(url: str, tries: int = 5) -> int:
    for _ in range(tries):
        try:
            return httpx.get(url + "/healthz", timeout=20).status_code
        except httpx.TransportError:
            continue  # closed as the oldest idle one, or not yet accepted: ask again
    return 0


def test_1100_half_requests_under_ulimit_1024_leave_healthz_answering(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2000:  # the flood's own sockets
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    # A long header timeout: what keeps the service up here is the connection cap.
    proc, url, log = start_web(tmp_path, header_timeout=120)
    socks: list[socket.socket] = []
    try:
        host, port = url.removeprefix("http://").split(":")
        opened = 0
        for _ in range(1100):
            try:
                s = socket.create_connection((host, int(port)), timeout=10)
            except OSError:
                continue  # the backlog was full for a moment: the flood goes on
            opened += 1
            socks.append(s)
            try:
                s.sendall(HALF_REQUEST)
            except OSError:
                pass  # the server already closed it to make room
        assert opened >= 1024  # more than the server's file limit
        assert healthz_answers(url) == 200
        body = httpx.get(url + "/healthz", timeout=20).text
        assert body.startswith("ok\n")
        # and a real page too, with the flood still open
        assert httpx.get(url + "/", timeout=20).status_code == 200
        assert proc.poll() is None
    finally:
        for s in socks:
            s.close()
        stop(proc)
    size = log.stat().st_size
    assert size < 50_000, log.read_text(errors="replace")[-3000:]


def test_a_half_request_is_closed_after_the_header_timeout(tmp_path):
    proc, url, _log = start_web(tmp_path, header_timeout=1)
    try:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=60) as s:
            s.sendall(HALF_REQUEST)
            assert s.recv(1024) == b""  # the server closed it (recv waits on that event)
        assert httpx.get(url + "/healthz", timeout=20).status_code == 200
    finally:
        stop(proc)


def test_connection_cap_fits_the_file_limit():
    assert connection_cap(800, nofile=1024) == 800
    assert connection_cap(5000, nofile=1024) == 924
    assert connection_cap(800, nofile=resource.RLIM_INFINITY) == 800


def test_accept_errors_are_logged_once_a_minute_with_a_count():
    t = [0.0]
    f = RateLimitedLog(clock=lambda: t[0])

    def rec(msg: str) -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, "x", 1, msg, (), None)

    assert f.filter(rec("socket.accept() out of system resource"))
    assert not any(f.filter(rec("socket.accept() out of system resource")) for _ in range(999))
    assert f.filter(rec("something else"))  # other records pass
    t[0] = 61.0
    r = rec("socket.accept() out of system resource")
    assert f.filter(r) and "999 more like it" in r.getMessage()


def test_a_body_that_trickles_in_gets_408_after_the_body_timeout(tmp_path):
    from dataclasses import replace

    from websupport import RELAXED, make_site

    with make_site(tmp_path, settings=replace(RELAXED, body_timeout=0.5)) as site:
        host, port = site.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=60) as s:
            s.sendall(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded"
                b"\r\nContent-Length: 100\r\n\r\nemail=a"  # 7 of the 100 bytes, then nothing
            )
            answer = b""
            while b"\r\n\r\n" not in answer:  # waits on the server's answer, not a clock
                chunk = s.recv(4096)
                if not chunk:
                    break
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert site.store.subscribers() == []
