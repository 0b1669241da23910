"""Pure: no I/O. The store's export format: JSON lines, one item per line, versioned.

    {"type": "digest-store", "version": 1, "exported": "2026-01-05T06:00:00+00:00"}
    {"type": "secret", "value": "..."}
    {"type": "meta", "key": "...", "value": "..."}
    {"type": "subscriber", "email": "ann@example.org", "keywords": ["llm"], "id": "..."}
    {"type": "seen", "id": "2601.00001", "first_seen": "2026-01-05", "paper": {...}}
    {"type": "digest", "digest_id": "...", "email": "...", "day": "...", "state": "sent"}
    {"type": "run", "day": "2026-01-05", "sent": 12, ...}
    {"type": "mail", "id": "...", "message": {...}, "enqueued": "...", "due": "..."}
    {"type": "limit", "key": "...", "hits": [[at, expires], ...]}
    {"type": "nonce", "nonce": "...", "expires": "..."}

The first line names the format and its version; every other line is one record whose
fields are the model's dataclass fields by name (defaults omitted), so a field added
with a default is exported and imported with no change here, and an older file imports
with the defaults. It is the backup of the TinyDB store and how a store moves between
backends (`digest store export` / `digest store import`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import orjson

from digest.errors import InputError
from digest.models import (
    DEFERRED,
    EMPTY,
    FAILED,
    SECTIONS,
    SENT,
    STATUSES,
    DeliveryRecord,
    RunReport,
    Subscriber,
)
from digest.store.base import (
    CLAIMED,
    GAVE_UP,
    QUEUED,
    Item,
    LimitHits,
    MetaValue,
    QueuedMail,
    SeenPaper,
    StoredSecret,
    UsedNonce,
)
from digest.store.fields import Codec

FORMAT, VERSION = "digest-store", 1


def _check_sub(s: Subscriber) -> None:
    if "@" not in s.email or s.status not in STATUSES:
        raise ValueError(f"subscriber {s.email}: bad address or status {s.status!r}")


def _check_record(r: DeliveryRecord) -> None:
    if r.state not in (SENT, FAILED, DEFERRED, EMPTY):
        raise ValueError(f"digest {r.digest_id}: unknown state {r.state!r}")
    if any(s not in SECTIONS for s in r.sections):
        raise ValueError(f"digest {r.digest_id}: unknown section in {list(r.sections)}")


def _check_mail(m: QueuedMail) -> None:
    if m.state not in (QUEUED, CLAIMED, GAVE_UP):
        raise ValueError(f"mail {m.id}: unknown state {m.state!r}")


# type name -> codec; the order is the order of an export
CODECS: dict[str, Codec[Any]] = {
    "secret": Codec(StoredSecret),
    "meta": Codec(MetaValue),
    "subscriber": Codec(Subscriber, check=_check_sub),
    "seen": Codec(SeenPaper),
    "digest": Codec(DeliveryRecord, check=_check_record),
    "run": Codec(RunReport),
    "mail": Codec(QueuedMail, check=_check_mail),
    "limit": Codec(LimitHits),
    "nonce": Codec(UsedNonce),
}
_NAMES = {c.cls: name for name, c in CODECS.items()}


def header(now: datetime) -> bytes:
    return orjson.dumps({"type": FORMAT, "version": VERSION, "exported": now.isoformat()}) + b"\n"


def encode(item: Item) -> bytes:
    """One item as one line (newline-terminated)."""
    name = _NAMES[type(item)]
    return orjson.dumps({"type": name, **CODECS[name].encode(item)}) + b"\n"


def lines(items: Iterable[Item], now: datetime) -> Iterator[bytes]:
    yield header(now)
    for item in items:
        yield encode(item)


def parse(data: Iterable[bytes], name: str) -> list[Item]:
    """Every item of an export, or InputError naming the first bad line (so nothing is
    imported from a file that is bad anywhere)."""
    items: list[Item] = []
    seen_header = False
    n = 0
    for n, raw in enumerate(data, 1):
        if not raw.strip():
            continue
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise InputError(f"{name}:{n}: not a JSON line ({e.msg})") from None
        kind = obj.get("type") if isinstance(obj, dict) else None
        if not seen_header:
            if kind != FORMAT:
                raise InputError(f"{name}:{n}: not a digest store export (no header line)")
            version = obj.get("version")
            if version != VERSION:
                raise InputError(
                    f"{name}:{n}: export format version {version!r}; this digest reads "
                    f"version {VERSION}"
                )
            seen_header = True
            continue
        codec = CODECS.get(kind) if isinstance(kind, str) else None
        if codec is None or not isinstance(kind, str):
            raise InputError(f"{name}:{n}: unknown record type {kind!r}")
        try:
            items.append(codec.decode({k: v for k, v in obj.items() if k != "type"}, kind))
        except ValueError as e:
            raise InputError(f"{name}:{n}: {e}") from None
    if not seen_header:
        raise InputError(f"{name}: empty file, not a digest store export")
    return items
