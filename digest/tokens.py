"""Pure: no I/O. Signed, URL-safe, opaque tokens for the links in mails.

A token is `itsdangerous.URLSafeTimedSerializer(secret, salt=SALTS[purpose])` applied to a
small value: a subscriber's random id (`Subscriber.id`, 128 random bits), never the
address, so a token reveals nothing about who it belongs to. A token made for one purpose
is rejected for another, an altered token fails its HMAC, and `max_age` bounds its age.

    sign(secret, purpose, value) -> token          value: a str or a tuple of str/int
    verify(secret, purpose, token, max_age=None, now=None) -> value   (raises TokenError)
    verify_id(secret, purpose, token, max_age=None) -> subscriber id
    links(base_url, secret, sid) -> Links          (the footer links of a digest)
    confirm_url(base_url, secret, sid, keywords, max_papers, revive=False) -> str
    read_confirm(secret, token, now=None) -> ConfirmRequest  (double opt-in, expires)
    legacy_address(secret, purpose, token) -> str | None   (tokens of older mails)

Lifetimes (the caller passes max_age): "unsubscribe" and "feed" never expire (a link in a
year-old mail must still unsubscribe: RFC 8058), "manage" expires after `[web]
manage_days` (every mail carries a fresh one), "confirm" after CONFIRM_MAX_AGE. The
confirmation token also carries the settings that were asked for (keywords, max), so a
request changes nothing stored until its link is clicked.

Adding a purpose is one line in SALTS (bump a salt's version to void its old tokens).

Old-format tokens (before 0.2: the address itself, salt = the purpose name) are refused
everywhere except the one-click unsubscribe, which keeps working for mails already sent
(`legacy_address`).
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

from itsdangerous import (
    BadSignature,
    BadTimeSignature,
    SignatureExpired,
    Signer,
    URLSafeTimedSerializer,
)
from itsdangerous.signer import SigningAlgorithm

from digest.errors import TokenError, TokenExpired

UNSUBSCRIBE = "unsubscribe"
MANAGE = "manage"
FEED = "feed"
CONFIRM = "confirm"
SALTS = {
    UNSUBSCRIBE: "unsubscribe.v2",
    MANAGE: "manage.v2",
    FEED: "feed.v2",
    CONFIRM: "confirm.v2",
}
PURPOSES = tuple(SALTS)
CONFIRM_MAX_AGE = 3 * 24 * 3600  # seconds a double opt-in link stays valid
# A confirmation link carries the settings asked for: up to 1,000 characters of keywords
# (non-Latin ones take six bytes each in the token's JSON) and 100 example ids. Browsers,
# mail clients and uvicorn (16 KiB) all take URLs of this size.
MAX_TOKEN_CHARS = 8000
MANAGE_DAYS = 45  # default of [web] manage_days: how long a manage link works
Value = str | tuple[str | int, ...]


@lru_cache(maxsize=64)
def _serializer(secret: str, salt: str) -> URLSafeTimedSerializer:
    # Building a serializer derives keys per call; a run signs ~3 tokens per subscriber
    # (10k+ per run), so keep one per (secret, salt).
    return URLSafeTimedSerializer(secret, salt=salt)


def _salt(secret: str, purpose: str) -> str:
    if not secret:
        raise TokenError(
            "token secret is empty: set the environment variable named by [web] secret_env"
        )
    salt = SALTS.get(purpose)
    if salt is None:
        raise TokenError(f"unknown token purpose {purpose!r}")
    return salt


def sign(secret: str, purpose: str, value: Value) -> str:
    """A URL-safe token binding `value` to `purpose`, signed with `secret`."""
    if not value:
        raise TokenError("nothing to sign: the subscriber has no id yet")
    token = _serializer(secret, _salt(secret, purpose)).dumps(value)
    return token if isinstance(token, str) else token.decode("ascii")


def _loads(
    secret: str, salt: str, token: str, max_age: int | None, now: float | None = None
) -> Any:
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise TokenError("invalid link: malformed token")
    try:
        value, stamp = _serializer(secret, salt).loads(token, return_timestamp=True)
    except SignatureExpired as e:  # pragma: no cover - no max_age is passed to itsdangerous
        raise TokenExpired("link expired") from e
    except (BadTimeSignature, BadSignature) as e:
        raise TokenError("invalid link: the token is forged, altered or for another purpose") from e
    except (ValueError, TypeError, UnicodeError) as e:  # garbage that is not even base64
        raise TokenError("invalid link: malformed token") from e
    # The age against an injectable clock (`now`, seconds since the epoch), so callers
    # and tests decide what "now" is.
    if max_age is not None:
        age = (time.time() if now is None else now) - stamp.timestamp()
        if age > max_age:
            raise TokenExpired("link expired")
    return value


def verify(
    secret: str, purpose: str, token: str, max_age: int | None = None, now: float | None = None
) -> Value:
    """The value inside `token`, or TokenError if it is forged, altered, made for another
    purpose or older than `max_age` seconds at `now` (default: the current time)."""
    value = _loads(secret, _salt(secret, purpose), token, max_age, now)
    if isinstance(value, list) and all(isinstance(x, str | int) for x in value):
        return tuple(value)
    if isinstance(value, str) and value:
        return value
    raise TokenError("invalid link: the token holds nothing usable")


def verify_id(
    secret: str, purpose: str, token: str, max_age: int | None = None, now: float | None = None
) -> str:
    """The subscriber id inside a link's token (see `verify`)."""
    value = verify(secret, purpose, token, max_age, now)
    if not isinstance(value, str) or "@" in value:
        raise TokenError("invalid link: the token does not hold a subscriber id")
    return value


def legacy_address(secret: str, purpose: str, token: str) -> str | None:
    """The address inside an old-format token (salt = the purpose's name, value = the
    address), or None when `token` is not one."""
    _salt(secret, purpose)
    try:
        value = _loads(secret, purpose, token, None)
    except TokenError:
        return None
    return value if isinstance(value, str) and "@" in value else None


@dataclass(frozen=True, slots=True)
class Links:
    """The per-subscriber links in a digest's footer and List-Unsubscribe header."""

    unsubscribe_url: str
    manage_url: str
    feed_url: str


def _base(base_url: str) -> str:
    return base_url.rstrip("/")


def links(base_url: str, secret: str, sid: str) -> Links:
    """Unsubscribe (GET: confirm page, POST: RFC 8058 one-click), manage and feed links
    of the subscriber with id `sid`."""
    b = _base(base_url)
    return Links(
        unsubscribe_url=f"{b}/unsubscribe/{sign(secret, UNSUBSCRIBE, sid)}",
        manage_url=f"{b}/manage/{sign(secret, MANAGE, sid)}",
        feed_url=f"{b}/feed/{sign(secret, FEED, sid)}.atom",
    )


@dataclass(frozen=True, slots=True)
class ConfirmRequest:
    """What a confirmation link asks for: this subscriber, with these settings. `revive`:
    the link was mailed to an unsubscribed address that asked to come back, so it may
    re-activate it (a link mailed while pending never can: its owner left since).
    `examples`: the arXiv ids of the example papers asked for (resolved when the link is
    clicked); None: the request said nothing about them (what is stored is kept)."""

    sid: str
    keywords: tuple[str, ...]
    max_papers: int
    revive: bool = False
    examples: tuple[str, ...] | None = None


# The third field of a confirmation token: revive (0/1) in the first format, which had
# keywords only; 2/3 (revive + EXAMPLES_FLAG) in the second, whose fourth field is the
# number of keywords, followed by the keywords and then the example ids.
EXAMPLES_FLAG = 2


def confirm_url(
    base_url: str,
    secret: str,
    sid: str,
    keywords: tuple[str, ...],
    max_papers: int,
    *,
    revive: bool = False,
    examples: tuple[str, ...] | None = None,
) -> str:
    """The double opt-in link; read it with `read_confirm`."""
    if examples is None:
        value: tuple[str | int, ...] = (sid, max_papers, int(revive), *keywords)
    else:
        flag = int(revive) + EXAMPLES_FLAG
        value = (sid, max_papers, flag, len(keywords), *keywords, *examples)
    return f"{_base(base_url)}/confirm/{sign(secret, CONFIRM, value)}"


def read_confirm(
    secret: str, token: str, max_age: int = CONFIRM_MAX_AGE, now: float | None = None
) -> ConfirmRequest:
    value = verify(secret, CONFIRM, token, max_age, now)
    bad = TokenError("invalid link: the token does not hold a subscription request")
    if (
        not isinstance(value, tuple)
        or len(value) < 3
        or not isinstance(value[0], str)
        or "@" in value[0]
        or not isinstance(value[1], int)
        or value[2] not in (0, 1, EXAMPLES_FLAG, EXAMPLES_FLAG + 1)
    ):
        raise bad
    sid, max_papers, flag = value[0], value[1], int(value[2])
    rest = value[3:]
    examples: tuple[str, ...] | None = None
    if flag >= EXAMPLES_FLAG:
        if not rest or not isinstance(rest[0], int) or not 0 <= rest[0] <= len(rest) - 1:
            raise bad
        n, rest = rest[0], rest[1:]
        examples = tuple(str(x) for x in rest[n:])
        rest = rest[:n]
    if not all(isinstance(k, str) for k in (*rest, *(examples or ()))):
        raise bad
    keywords = tuple(str(k) for k in rest)
    return ConfirmRequest(sid, keywords, max_papers, flag % EXAMPLES_FLAG == 1, examples)


# ----------------------------------------------------------------------------- view

VIEW = "view"  # "view in browser": signs a subscriber's random id and a day, never an address


def view_url(base_url: str, secret: str, sid: str, day: date) -> str:
    """A digest's "view in browser" link: its web copy at /view/<token>. The token signs
    the subscriber's random id (`Subscriber.id`) and the digest's day, never the address
    (nor the digest id, which hashes it); it does not expire (the store keeps the digest
    for [store] history_days)."""
    return f"{_base(base_url)}/view/{sign_view(secret, sid, day)}"


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
    return Signer(secret, salt=f"digest-{VIEW}.v2")


def sign_view(secret: str, sid: str, day: date) -> str:
    """`<YYYY-MM-DD>.<subscriber id>.<signature>`: URL-safe (ids are token_urlsafe)."""
    if not sid or "." in sid:
        raise TokenError("view link: the subscriber has no stored id")
    return _view_signer(secret).sign(f"{day.isoformat()}.{sid}").decode("ascii")


def verify_view(secret: str, token: str) -> tuple[str, date]:
    """(subscriber id, day) inside a view token, or TokenError (forged, altered, other
    purpose, malformed)."""
    signer = _view_signer(secret)
    if not isinstance(token, str) or not token or len(token) > 200 or not token.isascii():
        raise TokenError("invalid link: malformed token")
    try:
        value = signer.unsign(token).decode("ascii")
    except BadSignature as e:
        raise TokenError("invalid link: the token is forged, altered or for another purpose") from e
    except (ValueError, TypeError, UnicodeError) as e:
        raise TokenError("invalid link: malformed token") from e
    day_s, _, sid = value.partition(".")
    try:
        day = date.fromisoformat(day_s) if len(day_s) == 10 else None
    except ValueError:
        day = None
    if day is None or not sid:
        raise TokenError("invalid link: the token does not name a digest")
    return sid, day


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
