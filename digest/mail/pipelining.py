"""I/O edge: talks to SMTP. The loops one connection of the delivery pool runs.

    plain(sender, feed, first)        any Sender: take, check, send, report, one by one
    pipelined(sender, feed, first)    an SmtpSender whose server offers PIPELINING

Pipelining (RFC 2920): a client may send a group of commands without waiting for each
reply; DATA must end a group, and "the actual transfer of message content is explicitly
allowed to be the first command in a group" (3.1). So one message costs one round trip:

    -> <data of message k> "." MAIL FROM RCPT TO DATA     (message k+1's envelope)
    <- 250 (k accepted)  250  250  354                     (k+1 may follow)

where smtplib waits for four replies in turn. The connection (TLS, AUTH, EHLO) is still
smtplib's; only the transaction is written here, on smtplib's socket and reply reader.

Exactly-once holds per connection: the final "." of message k+1 (what makes the server
accept it) is written only after message k's record is durable, so a kill -9 leaves at
most ONE accepted, unrecorded message per connection (the one whose 250 was in flight).
The rest of k+1's data is written first: the record's fdatasync then overlaps the
server's reading of that data (and its replies to k+1's envelope), instead of standing
between two messages.

Right before a message's data goes out `feed.wanted` is asked (the subscriber may have
unsubscribed since the run began, or while its envelope waited): if not, the transaction
is abandoned by closing the connection (a server discards a transaction cut before its
final ".", RFC 5321 3.8; after a 354 there is no other way out), and the next message
reconnects. That costs a connection only in the rare case; asking once per message keeps
the common one cheap.
"""

from __future__ import annotations

import re
import smtplib
from collections import deque
from collections.abc import Callable

from digest.errors import (
    DeliveryError,
    InputError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from digest.mail.base import Feed, Job, Sender
from digest.mail.smtp import Dropped, SmtpSender

_LEADING_DOT = re.compile(rb"(?m)^\.")


def plain(sender: Sender, feed: Feed, first: Job) -> None:
    """One message at a time through `sender.send` (the outbox, a server without
    PIPELINING, a test's sender). Each outcome goes to `feed.done` before the next send."""
    job: Job | None = first
    while job is not None:
        if feed.wanted(job):
            try:
                sender.send(job.msg)
            except DeliveryError as e:
                feed.done(job, e)()
            except InputError as e:  # e.g. a digest id the outbox cannot name a file by
                feed.done(job, PermanentDeliveryError(str(e)))()
            else:
                feed.done(job, None)()  # durable before the next send
        job = feed.take(wait=True)


def pipelined(sender: SmtpSender, feed: Feed, first: Job) -> None:
    """Deliver `first` and what `feed` hands out with pipelined transactions (module
    docstring). On any error leaving here the connection is closed without QUIT: a
    transaction may be open, and QUIT would be read as message data."""
    try:
        _Pipeline(sender, feed).run(first)
    except BaseException:
        sender.drop_connection()
        raise


def _data(body: bytes) -> bytes:
    """The data phase as RFC 5321 4.5.2 wants it, but for the final "." CRLF: leading
    dots doubled, ending in CRLF."""
    q = _LEADING_DOT.sub(b"..", body)
    return q if q.endswith(b"\r\n") else q + b"\r\n"


def _noop() -> None:
    return None


class _Pipeline:
    def __init__(self, sender: SmtpSender, feed: Feed) -> None:
        self.s = sender
        self.feed = feed
        self.later: deque[Job] = deque()  # to (re)start before new work: lost with a drop
        self.rset = False  # a refused transaction may be open: RSET leads the next group
        self.wire_rset = False  # the group on the wire started with RSET (one more reply)
        self.unsettled: Callable[[], None] = _noop  # the last accepted message's `durable`

    # ---------------------------------------------------------------- the loop

    def run(self, first: Job) -> None:
        job: Job | None = first
        while True:
            if job is None:
                job = self._next(wait=True)
                if job is None:
                    self._settle()
                    return
            if not self._start(job):
                job = None
                continue
            while job is not None and self._envelope_accepted(job):
                job = self._commit(job)  # the next job, whose envelope rode with the data
            job = None

    def _next(self, wait: bool) -> Job | None:
        # (whether it is still wanted is asked once, right before its data goes out: that
        # check waits on the store, and it is seldom "no")
        return self.later.popleft() if self.later else self.feed.take(wait)

    def _start(self, job: Job) -> bool:
        """Connect if needed and write `job`'s envelope. False: it was reported/requeued."""
        try:
            self.s.ensure_connected()
            self._write(self._envelope(job))
        except (TransientDeliveryError, PermanentDeliveryError) as e:
            self.feed.done(job, e)()
            return False
        except Dropped as e:
            self._dropped(job, e)
            return False
        return True

    def _envelope_accepted(self, job: Job) -> bool:
        """Read the replies to `job`'s envelope group. True: DATA got its 354."""
        try:
            if self.wire_rset:
                self._reply()  # RSET's own reply; a 421 shows again on MAIL
            mail, rcpt, data = self._reply(), self._reply(), self._reply()
        except Dropped as e:
            self._dropped(job, e)
            return False
        err: Exception | None = None
        if mail[0] == 421 or rcpt[0] == 421 or data[0] == 421:
            err = Dropped(f"421 {_text(mail[1] if mail[0] == 421 else rcpt[1])}")
        elif not 200 <= mail[0] < 300:
            err = self.s.sender_refused(*mail)
        elif not 200 <= rcpt[0] < 300:
            err = self.s.error_for(*rcpt, job.msg, "recipient refused")
        elif data[0] != 354:
            err = self.s.error_for(*data, job.msg, "message refused")
        if err is None:
            return True
        if data[0] == 354:  # a server that opened the data phase anyway: cut it off
            self.s.drop_connection()
        else:
            self.rset = True
        self._report(job, err)
        return False

    def _commit(self, job: Job) -> Job | None:
        """Write `job`'s data (and the next job's envelope), read the verdict, report it.
        Returns the next job when its envelope is on the wire."""
        if not self.feed.wanted(job):  # e.g. unsubscribed while its envelope waited
            self.s.drop_connection()  # after a 354, the only way to abandon it
            return None
        nxt, envelope = self._pick_next()
        try:
            self._write(_data(job.msg.data))
            self._settle()  # the previous message's record is durable: this one may go
            self._write(b".\r\n" + envelope)
            code, resp = self._reply()
        except Dropped as e:
            self._requeue(nxt)
            self._dropped(job, e)
            return None
        if code == 421:  # not accepted, and the server is closing the channel
            self._requeue(nxt)
            self._dropped(job, Dropped(f"421 {_text(resp)}"))
            return None
        if 200 <= code < 300:
            self.s.sent += 1
            self.unsettled = self.feed.done(job, None)  # waited for before the next "."
        else:
            self._report(job, self.s.error_for(code, resp, job.msg, "message refused"))
        return nxt

    def _pick_next(self) -> tuple[Job | None, bytes]:
        """A job that is ready now (and its rate slot free), with its envelope bytes."""
        while True:
            nxt = self._next(wait=False)
            if nxt is None:
                return None, b""
            try:
                return nxt, self._envelope(nxt)
            except PermanentDeliveryError as e:  # e.g. needs SMTPUTF8: fails alone
                self.feed.done(nxt, e)()

    # ---------------------------------------------------------------- protocol

    def _envelope(self, job: Job) -> bytes:
        rcpt, utf8 = self.s.envelope(job.msg)
        # SMTPUTF8 (RFC 6531 3.4): the MAIL parameter, and the commands sent as UTF-8.
        text = f"MAIL FROM:<{self.s.envelope_from}>{' SMTPUTF8' if utf8 else ''}\r\n"
        text += f"RCPT TO:<{rcpt}>\r\nDATA\r\n"
        self.wire_rset, self.rset = self.rset, False
        return (b"RSET\r\n" if self.wire_rset else b"") + text.encode("utf-8" if utf8 else "ascii")

    def _write(self, data: bytes) -> None:
        smtp = self.s.ensure_connected()
        try:
            smtp.send(data)
        except smtplib.SMTPServerDisconnected as e:  # smtplib turns OSError into this
            raise Dropped(f"{type(e).__name__}: {e}") from e

    def _reply(self) -> tuple[int, bytes]:
        smtp = self.s.ensure_connected()
        try:
            return smtp.getreply()
        except smtplib.SMTPServerDisconnected as e:  # EOF, reset, timeout
            raise Dropped(f"{type(e).__name__}: {e}") from e

    # ---------------------------------------------------------------- outcomes

    def _settle(self) -> None:
        """Wait until the last accepted message's record is durable."""
        durable, self.unsettled = self.unsettled, _noop
        durable()

    def _report(self, job: Job, err: Exception) -> None:
        if isinstance(err, Dropped):
            self._dropped(job, err)
        else:
            assert isinstance(err, DeliveryError)
            self.feed.done(job, err)()  # (nothing was accepted: no need to wait, but cheap)

    def _requeue(self, job: Job | None) -> None:
        if job is not None:  # its envelope was lost with the connection: start it again
            self.later.appendleft(job)

    def _dropped(self, job: Job, e: Exception) -> None:
        """The connection is gone: retry `job` once on a new one, then it is transient."""
        self.s.drop_connection()
        self.rset = self.wire_rset = False
        job.drops += 1
        if job.drops >= 2:
            self.feed.done(
                job,
                TransientDeliveryError(
                    f"{self.s.where}: connection lost twice sending to {job.msg.to}: {e}"
                ),
            )()
        else:
            self.later.appendleft(job)


def _text(resp: bytes) -> str:
    return " ".join(resp.decode("utf-8", "replace").split())[:200]
