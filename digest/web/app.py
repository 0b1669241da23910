"""I/O edge: the web service for the subscription lifecycle (Starlette + uvicorn).

    make_app(cfg, store=None, sender=None, now=None) -> Starlette
    serve(cfg)                                        runs it under uvicorn

Pages (templates/web/*.html, Jinja2 with autoescape) work on a phone and without
JavaScript; the only script is the subscribe form's live preview, allowed by a per-response
CSP nonce. Handlers live in `pages.py` (subscribe, preview, confirm), `lifecycle.py`
(unsubscribe, manage) and `feed.py` (Atom); `WebContext` is what they share.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digest.config import Config
from digest.errors import ConfigError, StoreError
from digest.mail.base import Sender
from digest.models import Paper
from digest.render import default_templates_dir
from digest.store import Store, open_store
from digest.store.base import QueueStats
from digest.web.mailqueue import MailWorker, RetryPolicy
from digest.web.security import CSRF_COOKIE, FormGuard, new_cookie_value
from digest.web.settings import WebSettings

log = logging.getLogger("digest.web")
T = TypeVar("T")
Clock = Callable[[], datetime]
PREVIEW_CACHE_SECONDS = 60.0
LIBRARY_MAX_BODY = 5 * 2**20  # a BibTeX / RIS / Zotero export uploaded on the manage page


def _utcnow() -> datetime:
    return datetime.now(UTC)


class WebContext:
    """Everything the handlers share: config, store (behind one lock), templates, the
    form guard and the mail worker. Rate limits and form nonces live in the store
    (shared by processes, kept across restarts)."""

    def __init__(
        self,
        cfg: Config,
        store: Store,
        sender: Sender | None,
        now: Clock,
        settings: WebSettings,
        templates_dir: Path | None = None,
        mail_clock: Clock | None = None,
    ):
        # The renderer's folder ($DIGEST_TEMPLATES, else the package's digest.templates): the
        # pages share the digest's stylesheet, templates/_style.css.
        templates_dir = templates_dir or default_templates_dir()
        if not (templates_dir / "web" / "base.html").is_file():
            raise ConfigError(
                f"templates: {templates_dir}: web page templates not found (web/base.html); "
                "$DIGEST_TEMPLATES must name a folder laid out like the project's templates/"
            )
        self.cfg, self.store, self.now, self.settings = cfg, store, now, settings
        # The pipeline signs its links with the same fallback, so both agree on the secret.
        self.secret = cfg.secret() or store.secret()
        self.guard = FormGuard(self.secret)
        self.https = cfg.web.base_url.startswith("https://")
        self.base_url = cfg.web.base_url.rstrip("/")
        # One lock around every store call: the handlers run in a thread pool and the
        # store's inter-process lock does not promise thread safety inside one process.
        self.lock = threading.Lock()
        # Wall time for what the store times (limits, nonces, the queue's due and lease
        # times); `now` (the pages' "today") may be a test's fixed day.
        self.clock: Clock = mail_clock or _utcnow
        # Seconds since the epoch for link ages (manage, confirm); tests move it on.
        self.token_clock: Callable[[], float] = time.time
        if sender is not None:
            factory: Callable[[], Sender] = lambda: sender  # noqa: E731
        else:
            from digest.mail import make_sender

            factory = lambda: make_sender(cfg)  # noqa: E731
        self.mailer = MailWorker(
            store,
            self.lock,
            factory,
            self.clock,
            policy=RetryPolicy(
                first=settings.mail_retry_seconds,
                longest=settings.mail_retry_max,
                max_attempts=settings.mail_tries,
            ),
            lease=settings.mail_lease_seconds,
        )
        self.env = Environment(
            loader=FileSystemLoader(str(templates_dir)),
            autoescape=select_autoescape(["html", "xml"], default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._recent: tuple[float, date, list[Paper]] | None = None

    # --- store access, serialised and off the event loop
    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        def locked() -> T:
            with self.lock:
                return fn(*args)

        return await run_in_threadpool(locked)

    def recent_papers(self, since: date) -> list[Paper]:
        """The preview's candidates, cached briefly: a typing visitor asks many times."""
        cached = self._recent
        if cached and cached[1] == since and time.monotonic() - cached[0] < PREVIEW_CACHE_SECONDS:
            return cached[2]
        with self.lock:
            papers = self.store.recent_papers(since)
        self._recent = (time.monotonic(), since, papers)
        return papers

    # --- rendering
    def render(self, name: str, **values: Any) -> str:
        return self.env.get_template(name).render(site_name=self.cfg.site_name, **values)

    def page(
        self,
        request: Request,
        name: str,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        **values: Any,
    ) -> HTMLResponse:
        """A full page; forms on it get a CSRF token bound to this browser's cookie."""
        cookie = request.cookies.get(CSRF_COOKIE, "")
        fresh = not (20 <= len(cookie) <= 100)
        if fresh:
            cookie = new_cookie_value()
        html = self.render(
            name, nonce=nonce_of(request), csrf=self.guard.csrf_token(cookie), **values
        )
        resp = HTMLResponse(html, status_code=status, headers=dict(headers or {}))
        if fresh:
            set_csrf_cookie(resp, cookie, self.https)
        return resp

    def error(
        self,
        request: Request,
        status: int,
        title: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        return self.page(request, "web/error.html", status, headers, title=title, message=message)

    def client_ip(self, request: Request) -> str:
        # X-Forwarded-For counts only from [web] trusted_proxies: uvicorn's proxy headers
        # are on only then (see `uvicorn_options`) and put the real client address here.
        return request.client.host if request.client else "unknown"

    def hit(self, kind: str, key: str) -> float | None:
        """Count one `kind` event ("ip", "email", "preview") for `key` in the store's
        limits (under the lock): None if allowed, else the seconds to wait."""
        limit = {
            "ip": self.settings.rate_ip,
            "email": self.settings.rate_email,
            "preview": self.settings.rate_preview,
        }[kind]
        return self.store.hit_limit(f"web-{kind}:{key}", limit, self.clock())


def set_csrf_cookie(resp: Response, cookie: str, https: bool) -> None:
    """The form guard's cookie on `resp` (a page that issues a fresh one)."""
    resp.set_cookie(
        CSRF_COOKIE,
        cookie,
        max_age=30 * 24 * 3600,
        httponly=True,
        secure=https,
        samesite="lax",
        path="/",
    )


def nonce_of(request: Request) -> str:
    return str(request.scope.get("state", {}).get("csp_nonce", ""))


def ctx_of(request: Request) -> WebContext:
    return request.app.state.web  # type: ignore[no-any-return]


def security_headers(nonce: str) -> dict[str, str]:
    """No script or style but our own (nonce), no framing (clickjacking of the unsubscribe
    and manage buttons), and no Referer: page URLs carry the subscriber's tokens."""
    return {
        "content-security-policy": (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "connect-src 'self'; img-src 'self' data:; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'"
        ),
        "x-frame-options": "DENY",
        "referrer-policy": "no-referrer",
        "x-content-type-options": "nosniff",
        "cache-control": "no-store",
    }


class SecurityMiddleware:
    """Security headers on every response (CSP with a per-response nonce, no framing, no
    Referer: page URLs carry tokens) and a hard cap on request bodies (413)."""

    def __init__(self, app: ASGIApp, ctx: WebContext):
        self.app, self.ctx = app, ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["csp_nonce"] = nonce

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers += [
                    (k.encode(), v.encode())
                    for k, v in security_headers(nonce).items()
                    if k.encode() not in names
                ]
                message = {**message, "headers": headers}
            await send(message)

        if scope["method"] in ("POST", "PUT", "PATCH", "DELETE"):
            body = await self._read_capped(scope, receive)
            if body == 408:
                resp = self.ctx.error(
                    Request(scope),
                    408,
                    "Too slow",
                    "The form took too long to arrive. Nothing was changed: send it again.",
                    headers={"connection": "close"},
                )
                await resp(scope, receive, send_with_headers)
                return
            if not isinstance(body, bytes):
                request = Request(scope)
                kb = self.ctx.settings.max_body // 1024
                resp = self.ctx.error(
                    request,
                    413,
                    "Too much data",
                    f"The form sent more than {kb} KB. Shorten what you typed and try again.",
                )
                await resp(scope, receive, send_with_headers)
                return
            sent = False

            async def replay() -> Message:
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    async def _read_capped(self, scope: Scope, receive: Receive) -> bytes | int | None:
        """The whole body, None when it is (or says it will be) over the cap, 408 when
        it does not arrive within [web] body_timeout."""
        cap = self.ctx.settings.max_body
        if scope.get("path", "").startswith("/manage/") and any(
            k == b"content-type" and v.startswith(b"multipart/form-data")
            for k, v in scope.get("headers", [])
        ):  # a library export uploaded on the manage page (digest/web/ratings.py)
            cap = max(cap, LIBRARY_MAX_BODY)
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    if int(v) > cap:
                        return None
                except ValueError:
                    return None
        chunks, size = [], 0
        while True:
            try:  # a body that trickles in holds a connection: bounded in time too
                async with asyncio.timeout(self.ctx.settings.body_timeout):
                    message = await receive()
            except TimeoutError:
                return 408
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


async def healthz(request: Request) -> Response:
    """200 "ok" when the store reads and writes; the mail queue's state on the next
    line (waiting, due, oldest waiting message's age, given up). 503 when the store
    cannot be read or written: a subscribe would be refused then too."""
    ctx = ctx_of(request)

    def probe() -> QueueStats:  # both files: subscribers and history (each re-read if changed)
        now = ctx.clock()
        ctx.store.get_subscriber("healthz@healthz.invalid")
        ctx.store.runs(1)
        ctx.store.set_meta("web.healthz", now.isoformat(timespec="seconds"))  # a real write
        return ctx.store.queue_stats(now)

    try:
        stats = await ctx.db(probe)
    except Exception as e:  # noqa: BLE001 - any failure means "not healthy"
        log.warning("healthz: store not usable: %s", e)
        return PlainTextResponse(f"store not writable: {type(e).__name__}\n", status_code=503)
    age = 0 if stats.oldest is None else max(0, int((ctx.clock() - stats.oldest).total_seconds()))
    return PlainTextResponse(
        f"ok\nmail queue: {stats.waiting} waiting, {stats.due} due, oldest {age} s, "
        f"{stats.failed} given up\n"
    )


async def store_unavailable(ctx: WebContext, request: Request, e: Exception) -> Response:
    """The 503 page for a request whose store write failed: nothing was accepted."""
    if isinstance(e, StoreError):
        log.error("web: store write failed: %s", e)
    else:  # not the store's one-line error: a bug, keep its traceback
        log.error("web: request not stored", exc_info=e)
    return ctx.error(
        request,
        503,
        "Temporarily unavailable",
        "We could not save your request, so nothing was changed and no mail will come. "
        "Please try again in a few minutes.",
        headers={"Retry-After": "120"},
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    ctx = ctx_of(request)
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        return ctx.error(request, 404, "Not found", "There is no page at this address.")
    if status == 405:
        return ctx.error(request, 405, "Not allowed", "This page does not accept that request.")
    if status == 400:  # e.g. a multipart body python-multipart cannot parse
        return ctx.error(
            request,
            400,
            "Bad request",
            "The form could not be read. Nothing "
            "was changed: go back, reload the page and send it again.",
        )
    return ctx.error(request, status, "Error", "The request could not be handled.")


async def _crash(request: Request, exc: Exception) -> Response:
    log.exception("web request crashed", exc_info=exc)
    # Starlette answers a crash outside the middleware stack: add the headers here.
    return ctx_of(request).error(
        request,
        500,
        "Something went wrong",
        "The server could not handle this request; try again later.",
        headers=security_headers(nonce_of(request)),
    )


def make_app(
    cfg: Config,
    store: Store | None = None,
    sender: Sender | None = None,
    now: Clock | None = None,
    *,
    settings: WebSettings | None = None,
    mail_clock: Clock | None = None,
) -> Starlette:
    """The ASGI app. `store`/`sender` default to the configured ones; `now` is the pages'
    clock (tests pass a fixed day so the preview sees the fixture papers), `mail_clock`
    the store's (limits, nonces, the mail queue; default: wall time)."""
    from digest.web import feed, lifecycle, pages, papers, ratings, view

    own_store = store is None
    store = store if store is not None else open_store(cfg.store)
    ctx = WebContext(
        cfg,
        store,
        sender,
        now or _utcnow,
        settings or WebSettings.from_config(cfg.web),
        mail_clock=mail_clock,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
        ctx.mailer.start()  # mail queued before a restart goes out now
        yield
        await run_in_threadpool(ctx.mailer.stop)
        if own_store:
            store.close()

    routes = [
        Route("/", pages.subscribe_form, methods=["GET"]),
        Route("/", pages.subscribe_post, methods=["POST"]),
        Route("/preview", pages.preview_fragment, methods=["GET"]),
        Route("/confirm/{token}", lifecycle.confirm, methods=["GET", "POST"]),
        Route("/unsubscribe/{token}", lifecycle.unsubscribe, methods=["GET", "POST"]),
        Route("/manage/{token}", lifecycle.manage, methods=["GET", "POST"]),
        Route("/feed/{token}.atom", feed.atom_feed, methods=["GET"]),
        Route("/rate/{token}", ratings.rate, methods=["GET", "POST"]),  # More / Less like this
        Route("/healthz", healthz, methods=["GET"]),
        Route("/papers", papers.papers_latest, methods=["GET"]),
        Route("/papers/{day}", papers.papers_day, methods=["GET"]),
        Route("/view/{token}", view.view_digest, methods=["GET"]),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        HTTPException: _http_error,
        Exception: _crash,
    }
    app = Starlette(
        routes=routes,
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    app.state.web = ctx
    app.add_middleware(SecurityMiddleware, ctx=ctx)
    return app


def serve(cfg: Config, host: str | None = None, port: int | None = None) -> None:
    """Run the web service under uvicorn until interrupted (digest/web/server.py: the
    idle-connection guards)."""
    import uvicorn

    from digest.web.server import uvicorn_options

    settings = WebSettings.from_config(cfg.web)
    app = make_app(cfg, settings=settings)
    uvicorn.run(
        app,
        host=host or cfg.web.host,
        port=port or cfg.web.port,
        log_level="info",
        **uvicorn_options(settings),
    )
