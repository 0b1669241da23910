"""Mails of the web service: pure message building, plus the background queue (an I/O
edge: it talks to the Sender) that sends them off the request path.

Every subscribe request, new address or already subscribed, is answered at once with the
same page, and its store work and mail happen here, in one worker thread. So neither
the page nor its timing tells a visitor whether an address is subscribed.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid, parseaddr

from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from digest.errors import DeliveryError, DigestError, TransientDeliveryError
from digest.mail.address import wire_address
from digest.mail.base import Sender
from digest.models import OutgoingMessage

log = logging.getLogger("digest.web")


def build_notice(
    *, kind: str, to: str, sender: str, subject: str, text: str, html: str, now: datetime
) -> OutgoingMessage:
    """A transactional mail (confirmation, manage link) as an OutgoingMessage.

    Pure: no I/O. `kind` names it in the id (e.g. "confirm"); CR/LF can't reach a header
    because `to` is a normalised address and EmailMessage refuses line breaks in headers.
    """
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender
    msg["To"] = wire_address(to)  # an IDN domain as its A-label (the email package would
    # RFC 2047-encode it, which no mail client reads as an address)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(idstring=kind, domain=domain)
    # RFC 3834: an automatic reply, so vacation responders stay quiet.
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    stamp = now.strftime("%Y%m%dT%H%M%S%f")
    h = hashlib.sha256(f"{kind}|{to.lower()}|{stamp}".encode()).hexdigest()[:16]
    return OutgoingMessage(
        digest_id=f"web-{kind}-{stamp}-{h}",
        to=to,
        sender=sender,
        message_id=str(msg["Message-ID"]),
        data=msg.as_bytes(),
        html=html,
    )


class JobQueue:
    """One worker thread running submitted jobs in order; `join()` waits for all of them.

    A job that raises is logged and dropped (the visitor already has their page; the
    one-line reason goes to the log)."""

    def __init__(self, name: str = "digest-web-jobs"):
        self._q: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._started = False
        self._lock = threading.Lock()
        self.failures: list[str] = []  # one line per failed job, newest last (bounded)

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if not self._started:
                self._thread.start()
                self._started = True
        self._q.put(job)

    def join(self) -> None:
        """Block until every job submitted so far has run."""
        self._q.join()

    def close(self) -> None:
        if self._started:
            self._q.put(None)
            self._thread.join(timeout=30)

    def _work(self) -> None:
        while True:
            job = self._q.get()
            try:
                if job is None:
                    return
                job()
            except DigestError as e:
                self._fail(str(e))
            except Exception as e:  # noqa: BLE001 - the worker must survive any one job
                self._fail(f"{type(e).__name__}: {e}")
                log.exception("web background job crashed")
            finally:
                self._q.task_done()

    def _fail(self, line: str) -> None:
        log.error("web background job failed: %s", line)
        self.failures.append(line)
        del self.failures[:-100]


def make_send(sender_factory: Callable[[], Sender]) -> Callable[[OutgoingMessage], None]:
    """A `send(msg)` that opens the sender, sends one message and retries transient
    failures (4xx, dropped connection) a few times with backoff (tenacity)."""

    @retry(
        retry=retry_if_exception_type(TransientDeliveryError),
        stop=stop_after_attempt(3),
        wait=wait_exponential(multiplier=1, max=8),
        reraise=True,
    )
    def send(msg: OutgoingMessage) -> None:
        sender = sender_factory()
        try:
            with sender:
                sender.send(msg)
        except DeliveryError:
            raise
        except OSError as e:  # a sender that leaks a socket error: treat as transient
            raise TransientDeliveryError(f"sending to {msg.to}: {e}") from e

    return send
