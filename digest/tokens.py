"""Pure: no I/O. Signed, URL-safe tokens that carry a subscriber's address in mail links.

A token is `itsdangerous.URLSafeTimedSerializer(secret, salt=purpose)` applied to the
e-mail address, so a token made for one purpose ("unsubscribe") is rejected for another
("confirm"), an altered token fails its HMAC, and `max_age` bounds how old it may be.

    sign(secret, purpose, email) -> token
    verify(secret, purpose, token, max_age=None) -> email      (raises TokenError)
    links(base_url, secret, email) -> Links                   (the footer links of a digest)
    confirm_url(base_url, secret, email) -> str               (double opt-in, expires)

Purposes "unsubscribe", "manage" and "feed" never expire (a link in a year-old mail must
still unsubscribe: RFC 8058 expects the List-Unsubscribe URL to keep working); "confirm"
expires after CONFIRM_MAX_AGE seconds.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from itsdangerous import (
    BadSignature,
    BadTimeSignature,
    SignatureExpired,
    Signer,
    URLSafeTimedSerializer,
)
from itsdangerous.signer import SigningAlgorithm

from digest.errors import TokenError

UNSUBSCRIBE = "unsubscribe"
MANAGE = "manage"
FEED = "feed"
CONFIRM = "confirm"
PURPOSES = (UNSUBSCRIBE, MANAGE, FEED, CONFIRM)
CONFIRM_MAX_AGE = 3 * 24 * 3600  # seconds a double opt-in link stays valid


@lru_cache(maxsize=64)
def _serializer(secret: str, purpose: str) -> URLSafeTimedSerializer:
    # Building a serializer derives keys per call; a run signs ~3 tokens per subscriber
    # (10k+ per run), so keep one per (secret, purpose).
    return URLSafeTimedSerializer(secret, salt=purpose)


def _check(secret: str, purpose: str) -> None:
    if not secret:
        raise TokenError(
            "token secret is empty: set the environment variable named by [web] secret_env"
        )
    if purpose not in PURPOSES:
        raise TokenError(f"unknown token purpose {purpose!r}")


def sign(secret: str, purpose: str, email: str) -> str:
    """A URL-safe token binding `email` to `purpose`, signed with `secret`."""
    _check(secret, purpose)
    token = _serializer(secret, purpose).dumps(email)
    return token if isinstance(token, str) else token.decode("ascii")


def verify(secret: str, purpose: str, token: str, max_age: int | None = None) -> str:
    """The e-mail address inside `token`, or TokenError if it is forged, altered,
    made for another purpose or older than `max_age` seconds."""
    _check(secret, purpose)
    if not isinstance(token, str) or not token or len(token) > 1000:
        raise TokenError("invalid link: malformed token")
    try:
        email = _serializer(secret, purpose).loads(token, max_age=max_age)
    except SignatureExpired as e:
        raise TokenError("link expired: request a new one") from e
    except (BadTimeSignature, BadSignature) as e:
        raise TokenError("invalid link: the token is forged, altered or for another purpose") from e
    except (ValueError, TypeError, UnicodeError) as e:  # garbage that is not even base64
        raise TokenError("invalid link: malformed token") from e
    if not isinstance(email, str) or "@" not in email:
        raise TokenError("invalid link: the token does not hold an address")
    return email


@dataclass(frozen=True, slots=True)
class Links:
    """The per-subscriber links in a digest's footer and List-Unsubscribe header."""

    unsubscribe_url: str
    manage_url: str
    feed_url: str


def _base(base_url: str) -> str:
    return base_url.rstrip("/")


def links(base_url: str, secret: str, email: str) -> Links:
    """Unsubscribe (GET: confirm page, POST: RFC 8058 one-click), manage and feed links."""
    b = _base(base_url)
    return Links(
        unsubscribe_url=f"{b}/unsubscribe/{sign(secret, UNSUBSCRIBE, email)}",
        manage_url=f"{b}/manage/{sign(secret, MANAGE, email)}",
        feed_url=f"{b}/feed/{sign(secret, FEED, email)}.atom",
    )


def confirm_url(base_url: str, secret: str, email: str) -> str:
    """The double opt-in link; verify it with `max_age=CONFIRM_MAX_AGE`."""
    return f"{_base(base_url)}/confirm/{sign(secret, CONFIRM, email)}"


# ------------------------------------------------------------------ rating links
# "More like this" / "Less like this" (digest/web/ratings.py): one token per (subscriber,
# paper, direction), binding the opaque Subscriber.id (never the address) with the paper id
# and the vote, so the URL alone is the authority to record that one vote (like RFC 8058's
# one-click). They never expire. A digest carries two per paper (tens of thousands per
# run), so they are an itsdangerous Signer with keyed BLAKE2b (a MAC by design, one pass,
# half the cost of HMAC) as its algorithm, under a key derived from the secret for this
# purpose only, and a 96-bit tag. The payload is short, as it is in every link: the
# subscriber id (URL-safe already; base64 with a "~" in front if it were not), the paper id
# ("/" of old-style ids as "~") and u|d, joined by ".".
RATE = "rate"


class _KeyedBlake2b(SigningAlgorithm):
    def get_signature(self, key: bytes, value: bytes) -> bytes:
        return hashlib.blake2b(value, key=key, digest_size=12).digest()


@lru_cache(maxsize=16)
def _rate_signer(secret: str) -> Signer:
    return Signer(_rate_key(secret), key_derivation="none", algorithm=_KeyedBlake2b())


@lru_cache(maxsize=16)
def _rate_key(secret: str) -> bytes:
    if not secret:
        raise TokenError(
            "token secret is empty: set the environment variable named by [web] secret_env"
        )
    return hashlib.blake2b(secret.encode("utf-8"), digest_size=32, person=b"digest.rate").digest()


_URLSAFE = re.compile(r"[A-Za-z0-9_-]+")


def _sid_part(sid: str) -> str:
    if _URLSAFE.fullmatch(sid):
        return sid
    return "~" + base64.urlsafe_b64encode(sid.encode("utf-8")).rstrip(b"=").decode("ascii")


def _sid_of(part: str) -> str:
    if not part.startswith("~"):
        return part
    b = part[1:]
    return base64.urlsafe_b64decode(b + "=" * (-len(b) % 4)).decode("utf-8")


def rate_token(secret: str, subscriber_id: str, paper_id: str, up: bool) -> str:
    """A URL-safe token for one vote (up: "more like this") of one subscriber on one paper."""
    value = f"{_sid_part(subscriber_id)}.{paper_id.replace('/', '~')}.{'u' if up else 'd'}"
    return _rate_signer(secret).sign(value).decode("ascii")


def read_rate_token(secret: str, token: str) -> tuple[str, str, bool]:
    """(subscriber id, paper id, up) inside a rating token, or TokenError when it is
    forged, altered, truncated or not a rating token."""
    signer = _rate_signer(secret)
    if not isinstance(token, str) or not token or len(token) > 400 or not token.isascii():
        raise TokenError("invalid link: malformed token")
    try:
        value = signer.unsign(token).decode("ascii")
        head, _, rest = value.partition(".")
        pid_part, _, vote = rest.rpartition(".")
        sid, pid = _sid_of(head), pid_part.replace("~", "/")
    except BadSignature as e:
        raise TokenError("invalid link: the token is forged, altered or for another purpose") from e
    except (ValueError, TypeError, UnicodeError) as e:
        raise TokenError("invalid link: malformed token") from e
    if not sid or not pid or vote not in ("u", "d"):
        raise TokenError("invalid link: the token does not hold a rating")
    return sid, pid, vote == "u"


def rate_url(base_url: str, secret: str, subscriber_id: str, paper_id: str, up: bool) -> str:
    """The link of one vote: GET shows a one-tap page, POST records it."""
    return f"{_base(base_url)}/rate/{rate_token(secret, subscriber_id, paper_id, up)}"


def rate_links(base_url: str, secret: str, subscriber_id: str) -> Callable[[str, bool], str] | None:
    """(paper id, up) -> that vote's URL for one subscriber (what digest.render puts in
    every card), or None for a subscriber without an id (not stored: nothing to record).
    Same URLs as rate_url, with the per-subscriber parts computed once."""
    if not subscriber_id or not secret:
        return None
    key = _rate_key(secret)
    head = f"{_base(base_url)}/rate/"
    sid = f"{_sid_part(subscriber_id)}."
    blake2b, b64 = hashlib.blake2b, base64.urlsafe_b64encode

    def url(paper_id: str, up: bool) -> str:
        # Exactly _rate_signer(secret).sign(value), without its per-call overhead (a
        # test checks they agree): value "." base64(keyed BLAKE2b-96 of value).
        value = f"{sid}{paper_id.replace('/', '~')}.{'u' if up else 'd'}"
        tag = b64(blake2b(value.encode(), key=key, digest_size=12).digest()).decode("ascii")
        return f"{head}{value}.{tag}"

    return url
