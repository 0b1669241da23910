"""I/O edge: talks to SMTP. Delivers built messages over one reused connection.

    with SmtpSender(cfg.smtp) as sender:
        sender.send(msg)   # returns when the server said 250 for msg.to

The delivery pool (digest/mail/pool.py) runs one SmtpSender per connection and calls
`stream(feed, first)`: where the server offers PIPELINING (RFC 2920), the commands of a
message go out in one write and the next message's envelope rides with this message's
data (digest/mail/pipelining.py); elsewhere, smtplib's sendmail, one message at a time.

Security (cfg.security): "ssl" (implicit TLS, RFC 8314, port 465), "starttls" (the
default, RFC 3207) or "none" (a local relay only). A server that does not offer STARTTLS
when it is configured is an error: we never silently fall back to plaintext, and we never
send credentials over an unencrypted connection to anything but localhost.

Addresses (digest/mail/address.py): an IDN domain travels as its IDNA A-label, in the
envelope as in the headers, so `anna@bücher.de` needs nothing of the server. A non-ASCII
local part needs SMTPUTF8 (RFC 6531): used when the server offers it, otherwise that
recipient fails permanently with a one-line reason (recorded, never retried).

Replies map onto the error tree per recipient (RFC 5321 4.2.1): 4xx ->
TransientDeliveryError (the digest is retried on the next run), 5xx ->
PermanentDeliveryError (recorded as failed, never retried). A dropped connection
(SMTPServerDisconnected, reset, 421) is reconnected once and that message retried; if it
still fails, TransientDeliveryError. Retrying after a drop can, rarely, deliver a message
twice (the server may have accepted the data before dropping); the deterministic
Message-ID lets the receiving side see it is the same message.
"""

from __future__ import annotations

import contextlib
import os
import smtplib
import socket
import ssl
from email.utils import parseaddr

from digest.config import SmtpConfig
from digest.errors import (
    ConfigError,
    DeliveryError,
    InputError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from digest.mail.address import needs_smtputf8, wire_address
from digest.mail.base import Feed, Job
from digest.models import OutgoingMessage

_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _reply_text(resp: bytes | str) -> str:
    text = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)
    return " ".join(text.split())[:200]  # one line, even for multi-line replies


def _credentials(cfg: SmtpConfig) -> tuple[str, str] | None:
    if not cfg.username_env and not cfg.password_env:
        return None
    if not (cfg.username_env and cfg.password_env):
        raise ConfigError("[smtp] username_env and password_env: set both or neither")
    user = os.environ.get(cfg.username_env, "")
    password = os.environ.get(cfg.password_env, "")
    for key, name, value in (
        ("username_env", cfg.username_env, user),
        ("password_env", cfg.password_env, password),
    ):
        if not value:
            raise ConfigError(f"[smtp] {key}: environment variable {name} is not set")
    return user, password


class SmtpSender:
    """Sender over SMTP; see the module docstring. `ssl_context` overrides the default
    (system trust store, hostname checked), e.g. to trust a test server's certificate."""

    name = "smtp"

    def __init__(self, cfg: SmtpConfig, *, ssl_context: ssl.SSLContext | None = None):
        if not cfg.host:
            raise ConfigError("[smtp] host: empty (use the outbox sender instead)")
        if cfg.security not in ("none", "starttls", "ssl"):
            raise ConfigError(
                f"[smtp] security: expected none, starttls or ssl, got {cfg.security!r}"
            )
        self.cfg = cfg
        self.where = f"SMTP {cfg.host}:{cfg.port}"
        try:
            self.envelope_from = wire_address(parseaddr(cfg.sender)[1])
        except InputError as e:
            raise ConfigError(f"[smtp] sender: {e}") from e
        if needs_smtputf8(self.envelope_from):  # every message would need SMTPUTF8
            raise ConfigError(f"[smtp] sender: the part before @ must be ASCII: {cfg.sender!r}")
        self._creds = _credentials(cfg)  # checked now: a missing variable fails at start
        if self._creds and cfg.security == "none" and cfg.host.lower() not in _LOCAL_HOSTS:
            raise ConfigError(
                "[smtp] security: refusing to send the password unencrypted "
                f"to {cfg.host}; use starttls or ssl"
            )
        self._ctx = ssl_context
        self._smtp: smtplib.SMTP | None = None
        self.sent = 0
        self.reconnects = 0

    # ------------------------------------------------------------------ connection

    def _context(self) -> ssl.SSLContext:
        if self._ctx is None:
            self._ctx = ssl.create_default_context()
        return self._ctx

    def _connect(self) -> smtplib.SMTP:
        """A logged-in connection, or DeliveryError with one line saying why."""
        cfg = self.cfg
        smtp: smtplib.SMTP | None = None
        try:
            if cfg.security == "ssl":
                smtp = smtplib.SMTP_SSL(
                    cfg.host, cfg.port, timeout=cfg.timeout, context=self._context()
                )
            else:
                smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
            # The pipelined loop writes a message's data and, after its previous record is
            # durable, the final "." separately: with Nagle's algorithm that second small
            # write would wait for the server's delayed ACK (~40 ms). Writes are batched by
            # hand instead (RFC 2920 groups), so send each at once.
            if smtp.sock is not None:
                with contextlib.suppress(OSError):
                    smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            smtp.ehlo()
            if cfg.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise DeliveryError(
                        f"{self.where}: server does not offer STARTTLS; "
                        "refusing to send in plaintext"
                    )
                smtp.starttls(context=self._context())
                smtp.ehlo()
            if self._creds:
                smtp.login(*self._creds)
            return smtp
        except DeliveryError:
            _close(smtp)
            raise
        except ConnectionRefusedError as e:
            _close(smtp)
            raise DeliveryError(f"{self.where}: connection refused") from e
        except socket.gaierror as e:
            _close(smtp)
            raise DeliveryError(f"{self.where}: cannot resolve host ({e.strerror})") from e
        except TimeoutError as e:
            _close(smtp)
            raise DeliveryError(f"{self.where}: timed out after {cfg.timeout:g}s") from e
        except ssl.SSLError as e:
            _close(smtp)
            raise DeliveryError(f"{self.where}: TLS failed: {e.reason or e}") from e
        except smtplib.SMTPAuthenticationError as e:
            _close(smtp)
            raise DeliveryError(
                f"{self.where}: login refused: {e.smtp_code} {_reply_text(e.smtp_error)}"
            ) from e
        except smtplib.SMTPResponseException as e:
            _close(smtp)
            raise DeliveryError(f"{self.where}: {e.smtp_code} {_reply_text(e.smtp_error)}") from e
        except (smtplib.SMTPException, OSError) as e:
            _close(smtp)
            raise DeliveryError(f"{self.where}: {type(e).__name__}: {e}".rstrip(": ")) from e

    def __enter__(self) -> SmtpSender:
        self._smtp = self._connect()
        return self

    def __exit__(self, *exc: object) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                pass  # the server may already be gone; nothing is lost by not saying bye
            _close(smtp)

    # ------------------------------------------------------------------ sending

    def offers(self, extension: str) -> bool:
        """Whether the connected server announced `extension` in its EHLO reply."""
        return self._smtp is not None and self._smtp.has_extn(extension)

    def ensure_connected(self) -> smtplib.SMTP:
        """The open connection, connecting again if it was dropped; a failure to connect
        is TransientDeliveryError (the message waits for the next run)."""
        if self._smtp is None:
            try:
                self._smtp = self._connect()
            except DeliveryError as e:
                raise TransientDeliveryError(str(e)) from e
            self.reconnects += 1  # (the first connection is made by __enter__)
        return self._smtp

    def drop_connection(self) -> None:
        """Close without QUIT (the connection is lost, or a transaction must be abandoned:
        closing before the final "." makes the server discard it, RFC 5321 3.8)."""
        _close(self._smtp)
        self._smtp = None

    def envelope(self, msg: OutgoingMessage) -> tuple[str, bool]:
        """(recipient as the wire carries it, whether SMTPUTF8 is needed). Connect first:
        without SMTPUTF8 on the server a non-ASCII local part is PermanentDeliveryError."""
        try:
            rcpt = wire_address(msg.to)
        except InputError as e:
            raise PermanentDeliveryError(f"{self.where}: {msg.to}: {e}") from e
        utf8 = needs_smtputf8(rcpt)
        if utf8 and not self.offers("smtputf8"):
            raise PermanentDeliveryError(
                f"{self.where}: {msg.to}: the part before @ is not ASCII, which needs "
                "SMTPUTF8 (RFC 6531), and this server does not offer it"
            )
        return rcpt, utf8

    def stream(self, feed: Feed, first: Job) -> None:
        """Deliver `first`, then what `feed` hands out, until it answers None (the pool's
        connection loop; see digest/mail/base.py)."""
        from digest.mail import pipelining

        self.ensure_connected()
        if self.offers("pipelining"):
            pipelining.pipelined(self, feed, first)
        else:
            pipelining.plain(self, feed, first)

    def send(self, msg: OutgoingMessage) -> None:
        try:
            self._send_once(msg)
        except Dropped:
            # The connection died under us (idle timeout, per-connection limit, restart):
            # reconnect once and retry this message; a second failure is transient.
            self.drop_connection()
            try:
                self._send_once(msg)
            except Dropped as e:
                self.drop_connection()
                raise TransientDeliveryError(
                    f"{self.where}: connection lost twice sending to {msg.to}: {e}"
                ) from e
        self.sent += 1

    def _send_once(self, msg: OutgoingMessage) -> None:
        smtp = self.ensure_connected()
        rcpt, utf8 = self.envelope(msg)
        try:
            # SMTPUTF8 makes smtplib send the commands as UTF-8 (RFC 6531 3.4).
            refused = smtp.sendmail(
                self.envelope_from, [rcpt], msg.data, mail_options=["SMTPUTF8"] if utf8 else ()
            )
        except smtplib.SMTPRecipientsRefused as e:
            code, resp = e.recipients.get(rcpt, next(iter(e.recipients.values()), (0, b"refused")))
            raise self.error_for(code, resp, msg, "recipient refused") from e
        except smtplib.SMTPSenderRefused as e:
            raise self.sender_refused(e.smtp_code, e.smtp_error) from e
        except smtplib.SMTPDataError as e:
            raise self.error_for(e.smtp_code, e.smtp_error, msg, "message refused") from e
        except smtplib.SMTPResponseException as e:
            raise self.error_for(e.smtp_code, e.smtp_error, msg, "refused") from e
        except smtplib.SMTPServerDisconnected as e:
            raise Dropped(f"{type(e).__name__}: {e}") from e
        except smtplib.SMTPException as e:  # (a subclass of OSError: must come first)
            raise TransientDeliveryError(f"{self.where}: {msg.to}: {e}") from e
        except OSError as e:  # reset, broken pipe, timeout, TLS record errors
            raise Dropped(f"{type(e).__name__}: {e}") from e
        if refused:  # cannot happen with one recipient, but never report a refusal as sent
            code, resp = refused[rcpt]
            raise self.error_for(code, resp, msg, "recipient refused")

    def sender_refused(self, code: int, resp: bytes | str) -> Exception:
        """MAIL FROM refused: says nothing about the recipient, so never mark their digest
        failed for it; retry next run (and the operator sees the reply). 421: dropped."""
        if code == 421:
            return Dropped(f"{code} {_reply_text(resp)}")
        return TransientDeliveryError(
            f"{self.where}: sender {self.envelope_from} refused: {code} {_reply_text(resp)}"
        )

    def error_for(self, code: int, resp: bytes | str, msg: OutgoingMessage, what: str) -> Exception:
        """The exception for a refusal: 5xx permanent, 4xx transient, 421 the connection is
        gone (`Dropped`: reconnect and retry once)."""
        text = f"{self.where}: {msg.to}: {what}: {code} {_reply_text(resp)}"
        if code == 421:  # "service not available, closing channel": the connection is gone
            return Dropped(text)
        if 500 <= code <= 599:
            return PermanentDeliveryError(text)
        return TransientDeliveryError(text)  # 4xx, and anything unexpected: retry next run


class Dropped(Exception):
    """Internal: the connection was lost; `send` (and the pipelined loop) reconnect once."""


def _close(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        try:
            smtp.close()
        except OSError:
            pass
