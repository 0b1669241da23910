"""Test support for the web service: a whole site (real TinyDB store in tmp_path, real SMTP
server, the app under uvicorn) built in one call.

    with make_site(tmp_path) as site:
        with site.client() as c:
            r = site.subscribe(c, "ada@example.org", "reasoning")
        site.drain()                       # the mail worker empties the store's queue
        msg = site.inbox.wait_for("ada@example.org")[0]
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
from browser import LiveServer, SmtpInbox, free_port, hidden

from digest.config import Config, OutboxConfig, SmtpConfig, StoreConfig, WebConfig
from digest.models import ACTIVE, Paper, Subscriber
from digest.store import Store, open_store
from digest.web.app import WebContext, make_app
from digest.web.security import Limit
from digest.web.server import uvicorn_options
from digest.web.settings import WebSettings

SECRET = "test-secret-for-web-links"
DAY = date(2026, 1, 6)

# Generous defaults: tests that check a limit or the fill time set their own.
RELAXED = WebSettings(
    rate_ip=Limit(10_000, 3600),
    rate_email=Limit(10_000, 3600),
    rate_preview=Limit(10_000, 60),
    min_fill_seconds=0.0,
)


def make_cfg(tmp_path: Path, web_port: int, smtp_port: int) -> Config:
    return replace(
        Config(),
        store=StoreConfig(path=tmp_path / "data", fsync=False),
        smtp=SmtpConfig(
            host="127.0.0.1",
            port=smtp_port,
            security="none",
            sender="Paper Digest <digest@example.org>",
            timeout=10,
        ),
        outbox=OutboxConfig(path=tmp_path / "outbox"),
        web=WebConfig(base_url=f"http://127.0.0.1:{web_port}"),
    )


@dataclass
class Site:
    url: str
    cfg: Config
    store: Store
    inbox: SmtpInbox
    ctx: WebContext

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kw)

    def form(self, client: httpx.Client, path: str = "/") -> dict[str, str]:
        """GET a page and return its form's security fields (csrf, and t if present)."""
        r = client.get(path)
        assert r.status_code == 200, r.text
        fields = {"csrf": hidden(r.text, "csrf")}
        if 'name="t"' in r.text:
            fields["t"] = hidden(r.text, "t")
        return fields

    def subscribe(
        self,
        client: httpx.Client,
        email: str,
        keywords: str = "",
        max_papers: str = "",
        **extra: str,
    ) -> httpx.Response:
        data = {
            **self.form(client),
            "email": email,
            "keywords": keywords,
            "max": max_papers,
            "website": "",
            "action": "subscribe",
            **extra,
        }
        return client.post("/", data=data)

    def drain(self) -> None:
        """Wait until the mail worker found nothing due in the store's queue."""
        assert self.ctx.mailer.drain(60), "the mail worker did not empty the queue"

    def add(
        self,
        email: str,
        keywords: tuple[str, ...] = ("reasoning",),
        status: str = ACTIVE,
        max_papers: int = 5,
    ) -> Subscriber:
        sub = Subscriber(email=email, keywords=keywords, max_papers=max_papers, status=status)
        self.store.put_subscribers([sub])
        return self.sub(email)  # as stored: with its opaque id

    def sub(self, email: str) -> Subscriber:
        found = self.store.get_subscriber(email)
        assert found is not None, email
        return found

    def links(self, email: str) -> Any:
        """The footer links a digest to `email` carries (its tokens sign the id)."""
        from digest import tokens

        return tokens.links(self.url, self.ctx.secret, self.sub(email).id)

    def status(self, email: str) -> str | None:
        sub = self.store.get_subscriber(email)
        return sub.status if sub else None


@contextmanager
def make_site(
    tmp_path: Path,
    settings: WebSettings = RELAXED,
    now: datetime = datetime(2026, 1, 6, 9, 0, tzinfo=UTC),
) -> Iterator[Site]:
    with SmtpInbox() as inbox:
        port = free_port()
        cfg = make_cfg(tmp_path, port, inbox.port)
        store = open_store(cfg.store)
        try:
            app = make_app(cfg, store=store, now=lambda: now, settings=settings)
            with LiveServer(app, port, **uvicorn_options(settings)) as srv:
                yield Site(srv.url, cfg, store, inbox, app.state.web)
        finally:
            store.close()


def paper(pid: str, title: str, abstract: str = "", **kw: Any) -> Paper:
    return Paper(
        id=pid,
        title=title,
        abstract=abstract or title,
        listed_on=DAY,
        sources=("huggingface",),
        **kw,
    )
