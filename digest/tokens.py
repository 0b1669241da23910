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

from dataclasses import dataclass
from functools import lru_cache

from itsdangerous import (
    BadSignature,
    BadTimeSignature,
    SignatureExpired,
    Signer,
    URLSafeTimedSerializer,
)

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


# ----------------------------------------------------------------------------- view

VIEW = "view"  # "view in browser": signs a digest id, never an address


def view_url(base_url: str, secret: str, digest_id: str) -> str:
    """A digest's "view in browser" link: its web copy at /view/<token>. The token signs
    the digest id (models.digest_id: the day and a hash), never the address; it does not
    expire (the store keeps the digest for [store] history_days)."""
    return f"{_base(base_url)}/view/{sign_digest(secret, digest_id)}"


def _view_signer(secret: str) -> Signer:
    if not secret:
        raise TokenError(
            "token secret is empty: set the environment variable named by [web] secret_env"
        )
    return _signer(secret)


@lru_cache(maxsize=16)
def _signer(secret: str) -> Signer:
    # A plain HMAC signature (no JSON, no timestamp): every digest of a run gets one, and
    # this costs ~5 us where the timed serializer costs ~30 us (bench/compute.py's budget).
    return Signer(secret, salt=f"digest-{VIEW}")


def sign_digest(secret: str, digest_id: str) -> str:
    """`<digest id>.<signature>`: URL-safe, as digest ids are (day, '-', hex)."""
    return _view_signer(secret).sign(digest_id).decode("ascii")


def verify_digest(secret: str, token: str) -> str:
    """The digest id inside a view token, or TokenError (forged, altered, other purpose)."""
    signer = _view_signer(secret)
    if not isinstance(token, str) or not token or len(token) > 200 or not token.isascii():
        raise TokenError("invalid link: malformed token")
    try:
        did = signer.unsign(token).decode("ascii")
    except BadSignature as e:
        raise TokenError("invalid link: the token is forged, altered or for another purpose") from e
    except (ValueError, TypeError, UnicodeError) as e:
        raise TokenError("invalid link: malformed token") from e
    if not did or "@" in did:
        raise TokenError("invalid link: the token does not name a digest")
    return did
