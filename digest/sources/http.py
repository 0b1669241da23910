"""I/O edge: the one HTTP client of the sources, with bounded retries (tenacity).

`make_client(cfg.http)` builds the httpx.Client (explicit timeouts, a descriptive
User-Agent). `Fetcher.get(url, params)` sends one GET with bounded retries:

* retried: connect / read / write errors, timeouts, a dropped connection, HTTP 408, 429
  and 5xx (but 501);
* the wait is exponential with jitter (first `backoff`, doubled each retry, capped at
  `max_backoff`), unless the server says how long to wait: `Retry-After` (RFC 9110 §10.2.3,
  seconds or an HTTP-date) or the IETF RateLimit headers Hugging Face sends on 429
  (draft-ietf-httpapi-ratelimit-headers: `RateLimit: "default";r=0;t=55`, or the older
  `RateLimit-Reset: 55`). A server hint is capped at `max_backoff` too;
* not retried: other 4xx (our request is wrong; retrying will not fix it);
* after the last attempt: FetchError with one line, e.g.
  `huggingface: GET https://…: HTTP 503 after 5 attempts`.

Connection-level failures (DNS, connection refused, network unreachable) raise
`Unreachable`, a FetchError, so `fetch_all` can tell "no network at all" from
"a server is unhappy" and fall back to the bundled recorded day only in the former case.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import tenacity

from digest.config import HttpConfig
from digest.errors import FetchError

Sleep = Callable[[float], None]
log = logging.getLogger(__name__)

MAX_BODY = 32 * 2**20  # bytes; a day of HF papers is ~200 KB, 2000 arXiv entries ~6 MB
# 408/429 and 5xx may pass; 501 Not Implemented will not (RFC 9110 §15.6.2).
RETRY_STATUSES = frozenset({408, 429, 500}) | frozenset(range(502, 600))


class Unreachable(FetchError):
    """No connection could be made at all (DNS failure, refused, network unreachable)."""


class _RetryableStatus(Exception):
    """Internal: an HTTP answer worth retrying (429 / 5xx); carries the server's wait hint."""

    def __init__(self, response: httpx.Response, hint: float | None):
        super().__init__(f"HTTP {response.status_code}")
        self.response = response
        self.hint = hint


def make_client(http: HttpConfig) -> httpx.Client:
    """An httpx.Client with explicit timeouts and our User-Agent (arXiv and HF ask callers
    to identify themselves). Redirects are followed: rss.arxiv.org redirects http to https."""
    return httpx.Client(
        timeout=httpx.Timeout(http.timeout),
        headers={"User-Agent": http.user_agent},
        follow_redirects=True,
        # Proxy settings from the environment apply, except to the loopback: a local
        # mirror or test server is never reached through a proxy.
        mounts={"all://127.0.0.1": None, "all://localhost": None, "all://[::1]": None},
    )


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a `Retry-After` value (delta-seconds or HTTP-date), else None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 HTTP-dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


_RL_PARAM = re.compile(r";\s*([a-z][\w-]*)=([^;,]*)")


def ratelimit_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds until the quota resets from the IETF RateLimit headers, else None.

    `RateLimit: "default";r=0;t=55` (structured field list; `t` = seconds to reset,
    `r` = remaining). With several policies, the longest reset of an exhausted one
    (r=0) wins. The older draft's `RateLimit-Reset: 55` is honoured as well.
    """
    value = headers.get("ratelimit")
    if value:
        exhausted: list[float] = []
        others: list[float] = []
        for item in value.split(","):
            params = {k: v.strip() for k, v in _RL_PARAM.findall(item)}
            t = params.get("t", "")
            if t.isdigit():
                (exhausted if params.get("r") == "0" else others).append(float(t))
        if exhausted or others:
            return max(exhausted or others)
    reset = (headers.get("ratelimit-reset") or "").strip()
    if reset.isdigit():
        return float(reset)
    return None


def server_wait_hint(response: httpx.Response, now: datetime) -> float | None:
    """The wait the server asked for: Retry-After first, then the RateLimit headers."""
    hint = retry_after_seconds(response.headers.get("retry-after"), now)
    return hint if hint is not None else ratelimit_seconds(response.headers)


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _retryable(exc: BaseException) -> bool:
    if _name_unresolvable(exc):
        return False
    return isinstance(
        exc,
        _RetryableStatus | httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError,
    )


def _name_unresolvable(exc: BaseException) -> bool:
    """The host name does not resolve (socket.gaierror under httpx's ConnectError).

    Not retried: the system resolver has already retried, and a machine with no DNS at
    all (offline) would otherwise wait through every backoff before the fallback."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return False
        if isinstance(seen, socket.gaierror):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _describe(exc: BaseException) -> str:
    if isinstance(exc, _RetryableStatus):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, httpx.TimeoutException):
        kind = type(exc).__name__.removesuffix("Timeout").lower() or "request"
        return f"timed out ({kind})"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({_one_line(str(exc), 120) or 'connection failed'})"
    return f"{type(exc).__name__}: {_one_line(str(exc), 120)}".rstrip(": ")


class Fetcher:
    """GETs for one source: shared client, retries, request counting, optional pacing.

    `sleep` is injectable so tests never really wait; `pace` is called before every
    attempt (retries included) — the arXiv source passes its rate limiter here.
    """

    def __init__(
        self,
        client: httpx.Client,
        http: HttpConfig,
        source: str,
        *,
        sleep: Sleep = time.sleep,
        pace: Callable[[], None] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.client, self.http, self.source = client, http, source
        self.sleep, self.pace, self.now = sleep, pace, now
        self.requests = 0  # HTTP requests actually sent, retries included
        # backoff * 2**n plus up to one `backoff` of jitter (so clients that failed together
        # do not retry together); wait_exponential_jitter's arguments differ across tenacity
        # versions, this composition does not.
        self._expo = tenacity.wait_exponential(
            multiplier=http.backoff, max=http.max_backoff
        ) + tenacity.wait_random(0, http.backoff)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _RetryableStatus) and exc.hint is not None:
            return min(exc.hint, self.http.max_backoff)
        return min(float(self._expo(state)), self.http.max_backoff)

    def _once(self, url: str, params: Mapping[str, Any] | None) -> httpx.Response:
        if self.pace is not None:
            self.pace()
        self.requests += 1
        request = self.client.build_request(
            "GET",
            url,
            params=params,
            headers={"User-Agent": self.http.user_agent},
            timeout=httpx.Timeout(self.http.timeout),
        )
        streamed = self.client.send(request, stream=True)
        try:
            # Read at most MAX_BODY decoded bytes: a runaway or gzip-bombed answer is an
            # error, not an out-of-memory crash.
            body = bytearray()
            for chunk in streamed.iter_bytes():
                body += chunk
                if len(body) > MAX_BODY:
                    raise FetchError(
                        f"{self.source}: GET {streamed.request.url}: response "
                        f"larger than {MAX_BODY} bytes"
                    )
        finally:
            streamed.close()
        headers = [
            (k, v)
            for k, v in streamed.headers.multi_items()
            if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        response = httpx.Response(
            streamed.status_code, headers=headers, content=bytes(body), request=streamed.request
        )
        if response.status_code in RETRY_STATUSES:
            raise _RetryableStatus(response, server_wait_hint(response, self.now()))
        return response

    def get(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        *,
        error_detail: Callable[[httpx.Response], str | None] | None = None,
    ) -> httpx.Response:
        """A 2xx/3xx response, or FetchError (Unreachable for connection failures).

        `error_detail(response)` may extract the server's own explanation from an error
        body (arXiv's API explains a 400 in an Atom entry); it is added to the message.
        """
        shown = str(httpx.URL(url, params=params) if params else url)
        attempts = self.http.retries + 1
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception(_retryable),
            sleep=self.sleep,
            before_sleep=lambda st: log.info(
                "%s: GET %s: %s; retry %d in %.1fs",
                self.source,
                shown,
                _describe(exc) if st.outcome and (exc := st.outcome.exception()) else "?",
                st.attempt_number,
                st.upcoming_sleep,
            ),
            reraise=True,
        )
        start = self.requests
        try:
            response: httpx.Response = retrying(self._once, url, params)
        except _RetryableStatus as e:
            what = f"HTTP {e.response.status_code}{_detail(error_detail, e.response)}"
            tries = _attempts(self.requests - start)
            raise FetchError(f"{self.source}: GET {shown}: {what} after {tries}") from None
        except httpx.ConnectError as e:
            tries = _attempts(self.requests - start)
            raise Unreachable(f"{self.source}: GET {shown}: {_describe(e)} after {tries}") from e
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as e:
            tries = _attempts(self.requests - start)
            raise FetchError(f"{self.source}: GET {shown}: {_describe(e)} after {tries}") from e
        except httpx.HTTPError as e:  # bad URL, unsupported scheme, too many redirects
            raise FetchError(f"{self.source}: GET {shown}: {_describe(e)}") from e
        if response.status_code >= 400:
            detail = _detail(error_detail, response)
            raise FetchError(f"{self.source}: GET {shown}: HTTP {response.status_code}{detail}")
        return response


def _attempts(n: int) -> str:
    return f"{n} attempt" if n == 1 else f"{n} attempts"


def _detail(extract: Callable[[httpx.Response], str | None] | None, r: httpx.Response) -> str:
    if extract is None:
        return ""
    try:
        text = extract(r)
    except Exception:  # noqa: BLE001 - a broken error body must not hide the HTTP error
        return ""
    return f": {_one_line(text)}" if text else ""
