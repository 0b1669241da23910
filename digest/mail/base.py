"""Pure: the sending interface. SMTP and the outbox folder implement it."""

from __future__ import annotations

from typing import Protocol

from digest.models import OutgoingMessage


class Sender(Protocol):
    """A context manager that delivers built messages one at a time.

    `send` returns normally only when the message was accepted (SMTP 250 for that
    recipient, or the file is on disk). Otherwise it raises TransientDeliveryError
    (4xx, dropped connection that a reconnect could not fix: retry next run) or
    PermanentDeliveryError (5xx: never retry). Connection set-up failures on enter raise
    DeliveryError with a one-line message (e.g. "SMTP mail.example.org:587: connection
    refused").
    """

    name: str

    def __enter__(self) -> Sender: ...
    def __exit__(self, *exc: object) -> None: ...
    def send(self, msg: OutgoingMessage) -> None: ...
