"""Pure (plus the process clock): CSRF tokens, the bot check and the rate limiter.

- CSRF: a signed double-submit token. The browser holds a random value in a cookie; every
  form carries `itsdangerous`-signed copy of it. A cross-site page can make the browser send
  the cookie but can neither read it nor forge the signature, so it cannot fill the field
  (OWASP CSRF cheat sheet, "signed double-submit cookie").
- Bot check without a third party: a honeypot field a human never sees, and a signed
  "form shown at" timestamp: a form posted faster than a human can type is refused.
- Rate limits of the service live in the store (`Store.hit_limit`: shared by processes,
  kept across restarts); `SlidingWindow` is an in-memory one for callers without a store.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from digest.config import Limit  # noqa: F401 - also imported from here

CSRF_COOKIE = "digest_csrf"
CSRF_FIELD = "csrf"
STARTED_FIELD = "t"
HONEYPOT_FIELD = "website"  # looks like a field bots love to fill; hidden from humans
CSRF_MAX_AGE = 24 * 3600  # a form left open for a day must be reloaded
STARTED_MAX_AGE = 24 * 3600


class CsrfError(Exception):
    """The form's security token is missing, altered, expired or not this browser's."""


class BotSuspected(Exception):
    """The form was filled faster than a human can, or its timestamp was tampered with."""


def new_cookie_value() -> str:
    return secrets.token_urlsafe(32)


class FormGuard:
    """Signs and checks the per-form CSRF token and the form-started timestamp."""

    def __init__(self, secret: str, clock: Callable[[], float] = time.time):
        self._csrf = URLSafeTimedSerializer(secret, salt="digest-web-csrf")
        self._started = URLSafeTimedSerializer(secret, salt="digest-web-form-started")
        self._clock = clock

    # --- CSRF (signed double submit)
    def csrf_token(self, cookie_value: str) -> str:
        return str(self._csrf.dumps(cookie_value))

    def check_csrf(self, cookie_value: str | None, field_value: str | None) -> None:
        if not cookie_value:
            raise CsrfError(
                "your browser did not send this site's security cookie: allow "
                "cookies for this site, reload the page and try again"
            )
        if not field_value or len(field_value) > 500:
            raise CsrfError("the form's security token is missing: reload the page and try again")
        try:
            signed = self._csrf.loads(field_value, max_age=CSRF_MAX_AGE)
        except SignatureExpired as e:
            raise CsrfError("the form has expired: reload the page and try again") from e
        except (BadSignature, ValueError, TypeError, UnicodeError) as e:
            raise CsrfError(
                "the form's security token is invalid: reload the page and try again"
            ) from e
        if not isinstance(signed, str) or not hmac.compare_digest(signed, cookie_value):
            raise CsrfError(
                "the form's security token does not match this browser: reload "
                "the page and try again"
            )

    # --- minimum fill time
    def started_token(self) -> str:
        """A signed [shown-at, random nonce]: the nonce makes the form single-use."""
        return str(self._started.dumps([round(self._clock(), 3), secrets.token_urlsafe(12)]))

    def check_started(self, value: str | None, min_seconds: float) -> str:
        """The form's nonce (for the store's `use_nonce`). Raise BotSuspected if the form
        came back sooner than `min_seconds` after it was shown (or the timestamp is
        missing or forged)."""
        if not value or len(value) > 200:
            raise BotSuspected("the form is incomplete: reload the page and try again")
        try:
            shown = self._started.loads(value, max_age=STARTED_MAX_AGE)
        except SignatureExpired as e:
            raise BotSuspected("the form has expired: reload the page and try again") from e
        except (BadSignature, ValueError, TypeError, UnicodeError) as e:
            raise BotSuspected("the form is invalid: reload the page and try again") from e
        if (
            not isinstance(shown, list)
            or len(shown) != 2
            or not isinstance(shown[0], int | float)
            or not isinstance(shown[1], str)
        ):
            raise BotSuspected("the form is invalid: reload the page and try again")
        if self._clock() - float(shown[0]) < min_seconds:
            raise BotSuspected(
                "that was faster than a person can type: please check the form and send it again"
            )
        return shown[1]


class SlidingWindow:
    """An in-memory sliding-window rate limiter, safe across threads of one process."""

    MAX_KEYS = 100_000  # beyond this, forget the stalest keys (memory bound under a flood)

    def __init__(self, limit: Limit, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> float | None:
        """Count one event for `key`. Returns None if allowed, else seconds to wait."""
        now = self._clock()
        with self._lock:
            q = self._hits.get(key)
            if q is None:
                if len(self._hits) >= self.MAX_KEYS:
                    self._evict(now)
                q = self._hits[key] = deque()
            while q and q[0] <= now - self.limit.seconds:
                q.popleft()
            if len(q) >= self.limit.count:
                return max(0.0, q[0] + self.limit.seconds - now)
            q.append(now)
            return None

    def _evict(self, now: float) -> None:
        for key in [k for k, q in self._hits.items() if not q or q[-1] <= now - self.limit.seconds]:
            del self._hits[key]
        while len(self._hits) >= self.MAX_KEYS:  # still full: drop the oldest inserted keys
            del self._hits[next(iter(self._hits))]
