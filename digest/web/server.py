"""I/O edge: how uvicorn hosts the web service, guarded against idle connections.

A client that opens a connection and sends half a request holds a file descriptor for
as long as it likes (uvicorn has no header timeout). Enough of them (1,100 under
systemd's default limit of 1024 files) exhaust the descriptors, every accept() fails,
/healthz times out and asyncio logs "accept() out of system resource" without pause.
So:

- `guarded_protocol(...)`: uvicorn's h11 protocol with a header timeout (a request's
  headers must arrive within `header_timeout` seconds of its first byte, or of the
  connection) and a cap on open connections: past `max_connections`, the connection
  that has waited longest without a complete request is closed to make room. A burst of
  half-requests thus never holds more descriptors than the cap, and a real request
  (a health check) still gets in.
- `connection_cap(wanted)`: the cap lowered to fit the process's file limit
  (RLIMIT_NOFILE) with room for the store, SMTP and the listening socket.
- `RateLimitedLog`: a logging filter that lets one "accept()" error through per minute
  (with the count of those dropped), so a flood cannot fill a disk with log lines.
- `uvicorn_options(settings)`: every uvicorn setting the service runs with (`digest web`
  and `digest serve --web`): the protocol, keep-alive timeout, bounded concurrency, the
  header size cap, proxy headers only from `[web] trusted_proxies`, no access log.

The body timeout (a request whose body trickles in) is the app's (SecurityMiddleware).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from digest.web.settings import WebSettings

log = logging.getLogger("digest.web")
FD_RESERVE = 100  # descriptors kept free for the store, SMTP, the listener, logs
MAX_HEADER_BYTES = 16 * 1024  # h11's cap on an incomplete request head


def connection_cap(wanted: int, nofile: int | None = None) -> int:
    """Open connections allowed: `wanted`, lowered to the file limit minus a reserve."""
    if nofile is None:
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if nofile == resource.RLIM_INFINITY or nofile <= 0:
        return wanted
    return max(10, min(wanted, nofile - FD_RESERVE))


def guarded_protocol(max_connections: int, header_timeout: float) -> type[H11Protocol]:
    """An H11Protocol subclass with the header timeout and the connection cap above.

    `waiting` holds the connections without a complete request (new ones, keep-alive
    ones between requests), oldest first; they are the ones closed under pressure."""
    waiting: dict[GuardedH11, None] = {}

    class GuardedH11(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._waiting()
            over = len(self.connections) - max_connections
            while over > 0:
                victim = next((c for c in waiting if c is not self), None)
                if victim is None:  # every other connection is busy: refuse this one
                    self._close()
                    return
                victim._close()
                over -= 1

        def data_received(self, data: bytes) -> None:
            if self._header_timer is None and self.conn.their_state is _IDLE:
                self._arm()  # a keep-alive connection starts its next request
            super().data_received(data)
            if self.conn.their_state is not _IDLE and not self.transport.is_closing():
                self._busy()  # the request's head is complete

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                waiting[self] = None  # idle between requests: first to go under pressure

        def connection_lost(self, exc: Exception | None) -> None:
            self._busy()
            super().connection_lost(exc)

        # --- bookkeeping
        def _waiting(self) -> None:
            waiting[self] = None
            self._arm()

        def _arm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(header_timeout, self._timed_out)

        def _busy(self) -> None:
            waiting.pop(self, None)
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _timed_out(self) -> None:
            self._header_timer = None
            if self.conn.their_state is _IDLE:
                self._close()

        def _close(self) -> None:
            waiting.pop(self, None)
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()
            # Counted out now, not at connection_lost (a later loop turn): asyncio accepts
            # a full backlog in one turn, and each new connection closes one waiting; until
            # then uvicorn would count both against limit_concurrency and answer 503.
            self.connections.discard(self)

    return GuardedH11


def _idle_state() -> Any:
    import h11

    return h11.IDLE


_IDLE = _idle_state()


class RateLimitedLog(logging.Filter):
    """Lets through one record a `every` seconds whose message contains `needle`,
    adding how many were dropped since; other records pass."""

    def __init__(
        self,
        needle: str = "accept",
        every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__()
        self.needle, self.every, self.clock = needle, every, clock
        self._last: float | None = None
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if self.needle not in record.getMessage():
            return True
        now = self.clock()
        if self._last is not None and now - self._last < self.every:
            self.dropped += 1
            return False
        if self.dropped:
            record.msg = f"{record.getMessage()} ({self.dropped} more like it in the last minute)"
            record.args = ()
        self._last, self.dropped = now, 0
        record.exc_info = None  # the traceback of EMFILE tells nothing new
        return True


def quiet_accept_errors() -> None:
    """Install the rate limit on asyncio's logger (it logs the accept() failures)."""
    logger = logging.getLogger("asyncio")
    if not any(isinstance(f, RateLimitedLog) for f in logger.filters):
        logger.addFilter(RateLimitedLog())


def uvicorn_options(settings: WebSettings) -> dict[str, Any]:
    """uvicorn settings every host of the app uses (`digest web`, `digest serve --web`)."""
    cap = connection_cap(settings.max_connections)
    quiet_accept_errors()
    trusted = settings.trusted_proxies
    return {
        "http": guarded_protocol(cap, settings.header_timeout),
        # in-flight requests past this get uvicorn's 503 (connections are capped above)
        "limit_concurrency": cap + 1,
        "timeout_keep_alive": 5,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "backlog": 1024,
        # X-Forwarded-For/-Proto only from the configured reverse proxies; none by default
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted or None,
        "server_header": False,
        # No access log: every lifecycle URL carries a subscriber's token (a manage token
        # lets its holder change the subscription), so paths must not land in log files.
        "access_log": False,
    }
