"""Pure: the web service's own mails (confirmation link, manage link) as messages.

They are queued in the store with the subscriber change they belong to and sent by the
mail worker (digest/web/mailqueue.py)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid, parseaddr

from digest.mail.address import wire_address
from digest.models import OutgoingMessage


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
