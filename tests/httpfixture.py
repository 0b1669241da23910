"""Test helper: a real local HTTP server serving the recorded HF and arXiv responses.

No test touches the internet: sources are pointed at this server (127.0.0.1, a free
port) which answers from the recorded fixtures in ../shared/fixtures/ beside the
project root, and can be told to misbehave.

    from httpfixture import FixtureServer

    with FixtureServer() as srv:                 # hf_dir / arxiv_dir default to the fixtures
        cfg = srv.configure(Config(), lookback_days=1)   # sources -> srv, fast retries
        srv.fail_next(1, status=429, headers={"Retry-After": "7"})
        results = fetch_all(cfg, date(2026, 3, 10), sleep=waits.append)
        srv.requests        # [Request(method, path, query, headers, time), ...]

Routes
  GET /api/daily_papers?date=D&limit=L&p=N   the recorded day D.json (searched recursively
      in hf_dir, so 2026-01/2026-01-05.json is day 2026-01-05); a missing day is [];
      the list is cut into pages: items[p*L:(p+1)*L] (L defaults to 50).
  GET /api/daily_papers?sort=trending&limit=L&p=N   every recorded paper, most upvoted
      first, one per id, paginated likewise.
  GET /rss/<cat>+<cat>       the recorded arXiv RSS feed (whatever the categories).
  GET /api/query?...         the recorded export-API Atom feed; with a non-empty `id_list`
      the recorded HTTP 400 error feed (as arXiv answers `id_list=abc`).

Faults (each applies to the next n requests whose path starts with `path`, default any;
queued faults are used in the order they were added):
  fail_next(n, status=500, headers=None, body=b"")   answer with that status
  delay_next(n, seconds)      wait `seconds` before answering normally (beyond a timeout)
  garbage_next(n, body=...)   200 with a body that is not what the client expects
  truncate_next(n)            200 whose body is the real one cut in half (invalid JSON/XML)
  drop_next(n)                announce the full Content-Length, send half, close

`unused_url()` gives a URL on which nothing listens (connection refused), for the
offline fallback.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from digest.config import ArxivConfig, Config, HuggingFaceConfig, SourcesConfig

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
HF_DIR = FIXTURES / "hf_daily_papers"
ARXIV_DIR = FIXTURES / "arxiv"


@dataclass(frozen=True)
class Request:
    """One request the server received."""

    method: str
    path: str
    query: dict[str, str]  # first value of each parameter
    headers: dict[str, str]  # names in lower case
    time: float  # time.monotonic() on arrival


@dataclass
class Fault:
    remaining: int
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = b""  # None: the normal body
    delay: float = 0.0
    truncate: bool = False  # cut the body in half (Content-Length matches the cut body)
    drop: bool = False  # announce the full length, send half, close the connection
    path: str = ""


def unused_url() -> str:
    """http://127.0.0.1:<port> where nothing listens: connecting is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class FixtureServer:
    def __init__(self, hf_dir: Path | None = HF_DIR, arxiv_dir: Path | None = ARXIV_DIR):
        self.hf_days: dict[str, Path] = {}
        if hf_dir is not None:
            self.hf_days = {p.stem: p for p in sorted(Path(hf_dir).rglob("*.json"))}
        self.arxiv_dir = Path(arxiv_dir) if arxiv_dir is not None else None
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self._faults: list[Fault] = []
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FixtureServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # keep test output clean

        class Httpd(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up (timeout test) closes the socket: expected

        self._httpd = Httpd(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, daemon=True, kwargs={"poll_interval": 0.05}
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes delayed handlers
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FixtureServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ addresses
    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def hf_base_url(self) -> str:
        return self.url

    @property
    def rss_base_url(self) -> str:
        return f"{self.url}/rss"

    @property
    def api_base_url(self) -> str:
        return f"{self.url}/api/query"

    def configure(
        self,
        cfg: Config | None = None,
        *,
        hf_enabled: bool = True,
        hf_mode: str = "daily",
        lookback_days: int = 1,
        limit: int = 50,
        categories: tuple[str, ...] = ("cs.AI",),
        arxiv_mode: str = "rss",
        min_interval: float = 0.0,
        timeout: float = 2.0,
        retries: int = 2,
        backoff: float = 0.0,
        max_backoff: float = 60.0,
        offline_fallback: bool = False,
    ) -> Config:
        """`cfg` (default Config()) with its sources pointed at this server, fast retries."""
        cfg = cfg or Config()
        http = replace(
            cfg.http, timeout=timeout, retries=retries, backoff=backoff, max_backoff=max_backoff
        )
        sources = SourcesConfig(
            huggingface=HuggingFaceConfig(
                enabled=hf_enabled,
                base_url=self.hf_base_url,
                mode=hf_mode,
                lookback_days=lookback_days,
                limit=limit,
            ),
            arxiv=ArxivConfig(
                categories=categories,
                mode=arxiv_mode,
                rss_base_url=self.rss_base_url,
                api_base_url=self.api_base_url,
                min_interval=min_interval,
            ),
            offline_fallback=offline_fallback,
        )
        return replace(cfg, http=http, sources=sources)

    # ------------------------------------------------------------------ faults, records
    def _add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        path: str = "",
    ) -> None:
        self._add(Fault(n, status, dict(headers or {}), body, path=path))

    def delay_next(self, n: int = 1, seconds: float = 1.0, path: str = "") -> None:
        self._add(Fault(n, 200, body=None, delay=seconds, path=path))

    def garbage_next(
        self, n: int = 1, body: bytes = b"<html><body>Bad gateway</body></html>", path: str = ""
    ) -> None:
        self._add(Fault(n, 200, {"Content-Type": "text/html"}, body, path=path))

    def truncate_next(self, n: int = 1, path: str = "") -> None:
        self._add(Fault(n, 200, body=None, truncate=True, path=path))

    def drop_next(self, n: int = 1, path: str = "") -> None:
        self._add(Fault(n, 200, body=None, drop=True, path=path))

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        """Forget the recorded requests and any unused faults."""
        with self._lock:
            self._requests.clear()
            self._faults.clear()

    # ------------------------------------------------------------------ serving
    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for f in self._faults:
                if f.remaining > 0 and path.startswith(f.path):
                    f.remaining -= 1
                    return f
        return None

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        with self._lock:
            self._requests.append(
                Request(
                    h.command,
                    parts.path,
                    query,
                    {k.lower(): v for k, v in h.headers.items()},
                    time.monotonic(),
                )
            )
        fault = self._take_fault(parts.path)
        if fault is not None and fault.delay:
            if self._stopping.wait(fault.delay):
                return
        status, headers, body = self._route(parts.path, query)
        if fault is not None and (fault.body is not None or fault.status != 200):
            status, headers = fault.status, {"Content-Type": "text/plain", **fault.headers}
            body = fault.body or b""
        announced = len(body)
        if fault is not None and (fault.truncate or fault.drop):
            body = body[: len(body) // 2]
            announced = announced if fault.drop else len(body)
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(announced))
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(body)
        h.wfile.flush()

    def _route(self, path: str, q: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if path == "/api/daily_papers":
            return self._daily(q)
        if path.startswith("/rss/") and self.arxiv_dir is not None:
            return self._file("rss_*.xml", "application/rss+xml; charset=utf-8")
        if path == "/api/query" and self.arxiv_dir is not None:
            if q.get("id_list"):
                status, headers, body = self._file("api_error_*.xml", "application/atom+xml")
                return 400, headers, body
            return self._file("api_query_*.xml", "application/atom+xml; charset=utf-8")
        return 404, {"Content-Type": "text/plain"}, b"not found"

    def _file(self, pattern: str, ctype: str) -> tuple[int, dict[str, str], bytes]:
        assert self.arxiv_dir is not None
        found = sorted(self.arxiv_dir.glob(pattern))
        if not found:
            return 404, {"Content-Type": "text/plain"}, b"no such fixture"
        return 200, {"Content-Type": ctype}, found[0].read_bytes()

    def _load(self, day: str) -> list[Any]:
        p = self.hf_days.get(day)
        return json.loads(p.read_bytes()) if p is not None else []

    def _daily(self, q: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        def bad(msg: str) -> tuple[int, dict[str, str], bytes]:
            return 400, {"Content-Type": "application/json"}, json.dumps({"error": msg}).encode()

        try:
            limit, page = int(q.get("limit", "50")), int(q.get("p", "0"))
        except ValueError:
            return bad("limit and p must be integers")
        if limit < 1 or page < 0:
            return bad("limit must be >= 1 and p >= 0")
        if q.get("sort") == "trending":
            items = self._trending()
        else:
            day = q.get("date") or (max(self.hf_days) if self.hf_days else "")
            items = self._load(day)
        chunk = items[page * limit : (page + 1) * limit]
        return 200, {"Content-Type": "application/json; charset=utf-8"}, json.dumps(chunk).encode()

    def _trending(self) -> list[Any]:
        by_id: dict[str, Any] = {}
        for day in sorted(self.hf_days):
            for item in self._load(day):
                by_id[str(item.get("paper", {}).get("id"))] = item
        key: Callable[[Any], tuple[int, str]] = lambda it: (  # noqa: E731
            -int(it.get("paper", {}).get("upvotes") or 0),
            str(it.get("paper", {}).get("id")),
        )
        return sorted(by_id.values(), key=key)
