"""Test helpers for the web service: a live uvicorn server in a thread, a real headless
Chromium (Debian's `chromium` package driven by Python playwright; `playwright install`
is never needed), and small helpers to read the forms of served pages.

    with LiveServer(app, port) as srv:          # srv.url == "http://127.0.0.1:<port>"
        with chromium() as browser:             # a playwright Browser
            page = browser.new_page(java_script_enabled=False)
"""

from __future__ import annotations

import html
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """uvicorn serving `app` on 127.0.0.1:`port` in a daemon thread."""

    def __init__(self, app: Any, port: int | None = None, **options: Any):
        """`options`: more uvicorn settings (websupport passes the service's own,
        digest.web.server.uvicorn_options)."""
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            **{
                "host": "127.0.0.1",
                "port": self.port,
                "log_level": "warning",
                "lifespan": "on",
                "access_log": False,
                **options,
            },
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="test-web", daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test web server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (playwright Browser). Fails, never skips, when it is missing:
    CI installs it with `apt-get install -y chromium`."""
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail(
            f"{CHROMIUM} not found: install Debian's chromium package (apt-get install -y chromium)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def hidden(page_html: str, name: str) -> str:
    """The value of the hidden input `name` in a served page."""
    m = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', page_html)
    if m is None:
        raise AssertionError(f"no input named {name!r} in the page")
    return html.unescape(m.group(1))


def mask_tokens(page_html: str) -> str:
    """The page with its per-response secrets (CSRF token, form timestamp, CSP nonce)
    replaced, for comparing two answers."""
    page_html = re.sub(r'name="(csrf|t)" value="[^"]*"', r'name="\1" value="*"', page_html)
    return re.sub(r'nonce="[^"]*"', 'nonce="*"', page_html)


class SmtpInbox:
    """The mail engineer's real SMTP test server (tests/smtpserver.py) with lookups by
    recipient. `delay` holds each accepted message's reply back (stretches a send run)."""

    def __init__(self, delay: float = 0.0):
        from smtpserver import SmtpServer

        self.server = SmtpServer()
        if delay:
            self.server.on_message = lambda: time.sleep(delay)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def messages(self) -> list[Any]:
        return [r.message for r in list(self.server.messages)]

    def __enter__(self) -> SmtpInbox:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    def to(self, address: str) -> list[Any]:
        return [m for m in self.messages if m["To"] == address]

    def wait_for(self, address: str, count: int = 1, timeout: float = 20.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.to(address)
            if len(got) >= count:
                return got
            time.sleep(0.02)
        raise AssertionError(f"{count} message(s) to {address} did not arrive in {timeout}s")


def text_of(msg: Any) -> str:
    return str(msg.get_body(("plain",)).get_content())


def html_of(msg: Any) -> str:
    return str(msg.get_body(("html",)).get_content())


def link_in(msg: Any, kind: str) -> str:
    """The first `/kind/...` URL in a message's text part."""
    m = re.search(rf"https?://\S+/{kind}/\S+", text_of(msg))
    if m is None:
        raise AssertionError(f"no /{kind}/ link in the message")
    return m.group(0)
