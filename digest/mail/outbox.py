"""I/O edge: writes messages to the outbox folder instead of sending them.

For a setup without an SMTP server (trying the product, previews, or handing the files
to another mailer): each message becomes `<digest_id>.eml` (the exact bytes SMTP would
carry, openable in any mail client) plus `<digest_id>.html`, a browser preview of the
HTML part. Names are deterministic, so a rerun overwrites instead of duplicating. Each
file is written to a temporary name and renamed (os.replace is atomic on POSIX), so a
crash never leaves a half-written .eml that a mailer could pick up.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from digest.config import OutboxConfig
from digest.errors import DeliveryError, InputError, TransientDeliveryError
from digest.models import OutgoingMessage


def _atomic_write(path: Path, data: bytes, fsync: bool) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class OutboxSender:
    """Sender that writes `<digest_id>.eml` and `<digest_id>.html` into `cfg.path`."""

    name = "outbox"

    def __init__(self, cfg: OutboxConfig, *, fsync: bool = True):
        self.folder = Path(cfg.path)
        self.fsync = fsync
        self.sent = 0

    def __enter__(self) -> OutboxSender:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DeliveryError(f"outbox {self.folder}: cannot create folder: {e.strerror}") from e
        if not os.access(self.folder, os.W_OK):
            raise DeliveryError(f"outbox {self.folder}: folder is not writable")
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def paths(self, digest_id: str) -> tuple[Path, Path]:
        """(.eml, .html) paths of a digest; the id must be a plain file name."""
        if (
            not digest_id
            or digest_id.startswith(".")
            or "/" in digest_id
            or "\\" in digest_id
            or "\x00" in digest_id
        ):
            raise InputError(f"outbox: digest id is not a plain file name: {digest_id!r}")
        return self.folder / f"{digest_id}.eml", self.folder / f"{digest_id}.html"

    def send(self, msg: OutgoingMessage) -> None:
        eml, html = self.paths(msg.digest_id)
        try:
            # The preview first: the .eml is the delivery record, so it lands last.
            if msg.html:
                _atomic_write(html, msg.html.encode("utf-8"), self.fsync)
            _atomic_write(eml, msg.data, self.fsync)
        except OSError as e:
            # A full disk or a vanished folder may clear up: retry next run.
            raise TransientDeliveryError(
                f"outbox {self.folder}: cannot write {eml.name}: {e.strerror or e}"
            ) from e
        self.sent += 1
