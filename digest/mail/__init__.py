"""Mail: building messages (pure, `message.py`) and sending them (I/O edges: `smtp.py`,
`outbox.py`). `make_sender(cfg)` picks SMTP when a host is configured, else the outbox."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from digest.config import Config
    from digest.mail.base import Sender


def make_sender(cfg: Config) -> Sender:
    """SmtpSender when `[smtp] host` is set, else OutboxSender writing to `[outbox] path`.
    Raises ConfigError at once for a bad SMTP setup (e.g. a credentials variable unset)."""
    if cfg.smtp.host:
        from digest.mail.smtp import SmtpSender

        return SmtpSender(cfg.smtp)
    from digest.mail.outbox import OutboxSender

    return OutboxSender(cfg.outbox, fsync=cfg.store.fsync)
