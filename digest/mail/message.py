"""Pure: no I/O. Builds the RFC 5322 bytes of one digest e-mail.

    build_message(rendered, to=..., sender=..., digest_id=..., unsubscribe_url=..., now=...)
        -> OutgoingMessage

The message is multipart/alternative with text/plain first and text/html last (RFC 2046
5.1.4: the last part is the preferred one), both UTF-8 and quoted-printable, so every
line is at most 76 characters and ends in CRLF: strict servers reject bare LF and lines
over 998 bytes (RFC 5322 2.1.1). The bytes are assembled directly (binascii.b2a_qp,
email.header for RFC 2047 words) because the stdlib email generator is ~20x slower and a
run builds thousands of messages; tests parse the result back with the stdlib parser.

Headers: List-Unsubscribe + List-Unsubscribe-Post (RFC 8058 one-click; Gmail and Yahoo
require it of bulk senders), List-Id (RFC 2919), Auto-Submitted (RFC 3834: no
vacation auto-replies), and a Message-ID derived from the digest id, so a digest retried
after a crash carries the same Message-ID and receiving servers can drop the duplicate.

Addresses: an IDN domain is written as its IDNA A-label (digest/mail/address.py). A
recipient whose local part is not ASCII (input validation refuses those, an old store may
hold one) is written as raw UTF-8 in To (RFC 6532): such a message needs SMTPUTF8 to
travel, which the SMTP sender checks per recipient.
"""

from __future__ import annotations

import binascii
import hashlib
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache

from digest.errors import InputError
from digest.mail.address import ascii_domain
from digest.models import OutgoingMessage
from digest.render import Rendered

CRLF = "\r\n"
_BAD_HEADER_CHARS = frozenset("\r\n\x00")
_ADDR_FORBIDDEN = frozenset(' \t\r\n\x00<>(),;:"[]\\')
_URL_FORBIDDEN = frozenset(' \t\r\n\x00<>"')
MAX_HEADER_INPUT = 900  # anything longer cannot be a sane address, URL or subject line


def _no_breaks(name: str, value: str) -> None:
    # Header injection: a CR or LF in a value would start a new header (or the body).
    if not isinstance(value, str):
        raise InputError(f"message {name}: expected text, got {type(value).__name__}")
    if not _BAD_HEADER_CHARS.isdisjoint(value):
        raise InputError(f"message {name}: contains a line break: {value[:60]!r}")


def _check_addr(name: str, addr: str, *, utf8_local: bool = False) -> tuple[str, str]:
    """(local, ascii domain) of a bare address, or InputError. An IDN domain becomes its
    A-label (digest/mail/address.py); a non-ASCII local part is allowed only where
    `utf8_local` says so (a recipient: the sender then needs SMTPUTF8, RFC 6531)."""
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or len(addr) > 254 or not _ADDR_FORBIDDEN.isdisjoint(addr):
        raise InputError(f"message {name}: not an e-mail address: {addr[:80]!r}")
    if not local.isascii() and not utf8_local:
        raise InputError(f"message {name}: the part before @ must be ASCII: {addr!r}")
    if not local.isprintable():
        raise InputError(f"message {name}: not an e-mail address: {addr[:80]!r}")
    try:
        return local, ascii_domain(domain)
    except InputError as e:
        raise InputError(f"message {name}: invalid domain: {addr!r}") from e


@lru_cache(maxsize=256)
def _from_header(sender: str) -> tuple[str, str]:
    """(From header value, address) for e.g. "Paper Digest <digest@example.org>"."""
    _no_breaks("sender", sender)
    name, addr = parseaddr(sender)
    if not addr:
        raise InputError(f"message sender: not an address: {sender[:80]!r}")
    local, domain = _check_addr("sender", addr)
    addr = f"{local}@{domain}"
    # formataddr quotes specials in the name and RFC 2047-encodes it when non-ASCII.
    return formataddr((name, addr), charset="utf-8"), addr


@lru_cache(maxsize=4096)
def _subject_header(subject: str) -> str:
    # Subjects repeat across subscribers (same count and top paper): cache the encoding.
    if subject.isascii() and len(subject) <= 68 and "=?" not in subject:
        return subject  # "=?" would read as the start of an RFC 2047 encoded word
    charset = "us-ascii" if subject.isascii() and "=?" not in subject else "utf-8"
    # Header folds long values with CRLF + space (RFC 5322 2.2.3) and encodes non-ASCII
    # text as RFC 2047 encoded words.
    return Header(subject, charset, header_name="Subject").encode(linesep=CRLF)


@lru_cache(maxsize=16384)
def _qp_line(line: str) -> bytes:
    # b2a_qp emits CRLF line ends and "=CRLF" soft breaks when the input's first line end
    # is CRLF, and starts each line afresh: so encoding line by line gives the same bytes
    # as encoding the whole body, and the lines of a paper card (the same for every
    # subscriber who gets that paper) are encoded once per run instead of every time.
    return binascii.b2a_qp(
        (line + CRLF).encode("utf-8"), quotetabs=False, istext=True, header=False
    )


def _qp(text: str) -> bytes:
    """Quoted-printable body with CRLF line ends and soft breaks (lines <= 76 chars)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.endswith("\n"):
        text = text[:-1]
    return b"".join(map(_qp_line, text.split("\n")))


def build_message(
    rendered: Rendered,
    *,
    to: str,
    sender: str,
    digest_id: str,
    unsubscribe_url: str,
    now: datetime,
) -> OutgoingMessage:
    """The complete message for one subscriber's digest. Raises InputError on any value
    that would break or inject into the headers."""
    for name, value in (
        ("to", to),
        ("subject", rendered.subject),
        ("digest_id", digest_id),
        ("unsubscribe_url", unsubscribe_url),
    ):
        _no_breaks(name, value)
        if len(value) > MAX_HEADER_INPUT:
            raise InputError(f"message {name}: too long ({len(value)} characters)")
    from_value, from_addr = _from_header(sender)
    local, domain = _check_addr("to", to, utf8_local=True)
    to_addr = f"{local}@{domain}"
    if not digest_id or "@" in digest_id or not _ADDR_FORBIDDEN.isdisjoint(digest_id):
        raise InputError(f"message digest_id: not usable in a Message-ID: {digest_id!r}")
    if not unsubscribe_url.startswith(("https://", "http://")) or not _URL_FORBIDDEN.isdisjoint(
        unsubscribe_url
    ):
        raise InputError(
            f"message unsubscribe_url: expected an http(s) URL: {unsubscribe_url[:80]!r}"
        )
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    sender_domain = from_addr.rpartition("@")[2]
    message_id = f"<{digest_id}@{sender_domain}>"
    # "=_" never occurs in quoted-printable output, so this boundary cannot collide
    # with the body (the classic trick, RFC 2045 6.7 / RFC 2046 5.1.1).
    boundary = "=_" + hashlib.sha1(digest_id.encode()).hexdigest()[:24]
    head = CRLF.join(
        (
            f"From: {from_value}",
            f"To: {to_addr}",
            f"Subject: {_subject_header(rendered.subject)}",
            f"Date: {format_datetime(now)}",
            f"Message-ID: {message_id}",
            "MIME-Version: 1.0",
            f"List-Id: <digest.{sender_domain}>",
            f"List-Unsubscribe: <{unsubscribe_url}>",
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            "Auto-Submitted: auto-generated",
            f'Content-Type: multipart/alternative; boundary="{boundary}"',
            "",
            "",
        )
    ).encode("ascii" if local.isascii() else "utf-8")  # UTF-8 header: RFC 6532 (SMTPUTF8)
    part_head = (
        f"--{boundary}\r\n"
        'Content-Type: text/{}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    )
    data = b"".join(
        (
            head,
            part_head.format("plain").encode("ascii"),
            _qp(rendered.text),
            part_head.format("html").encode("ascii"),
            _qp(rendered.html),
            f"--{boundary}--\r\n".encode("ascii"),
        )
    )
    return OutgoingMessage(
        digest_id=digest_id,
        to=to_addr,
        sender=sender,
        message_id=message_id,
        data=data,
        html=rendered.html,
    )
