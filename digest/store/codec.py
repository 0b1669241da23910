"""Pure: no I/O. Compact JSON forms of what the TinyDB store keeps.

Short keys and omitted defaults keep the files small (a year of daily runs for 1,000
subscribers must stay under 10 MB). The forms follow the dataclass fields (`fields.Codec`):
a field added to a model with a default needs no change here. Every decoder raises
ValueError on a malformed value; the store turns that into a StoreError naming the file.

Paper      {"t": title, "a": abstract, "au": [...], "l": "2026-01-05", "s": ai_summary,
            "k": [...], "u": upvotes, "g": repo, "gs": stars, "pp": url, "src": [...]}
            (the id is the key it is stored under)
Subscriber {"e": email, "k": [...], "m": max_papers, "n": min_score, "s": status,
            "h": send_hour, "z": timezone, "c": created, "tr": trending, "nm": no_match,
            "i": id, "r": [[paper id, 1 | -1, epoch s, title]...],
            "x": [[paper id, title]...], <new field>: ...}
Digest     [state code, [paper indexes into the day's "p" list], at (epoch s), detail,
            id, {"c": "mmt" sections, "m": [[terms]...], <new field>: ...}]
            (trailing items are omitted when empty; id when it equals models.digest_id)
Run        RunReport's fields by name (as RunReport.to_dict wrote them before)
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import orjson

from digest.models import (
    DEFERRED,
    DOWN,
    EMPTY,
    FAILED,
    NO_MATCH_CHOICES,
    SECTIONS,
    SENT,
    STATUSES,
    UP,
    DeliveryRecord,
    Paper,
    RunReport,
    Subscriber,
    digest_id,
)
from digest.store.fields import Codec

STATE_CODES = {SENT: "s", FAILED: "f", DEFERRED: "d", EMPTY: "e"}
CODE_STATES = {v: k for k, v in STATE_CODES.items()}
SECTION_CODES = {s: s[0] for s in SECTIONS}  # "match" -> "m", "trending" -> "t"
CODE_SECTIONS = {v: k for k, v in SECTION_CODES.items()}
if len(CODE_SECTIONS) != len(SECTIONS):  # a new section needs its own letter
    raise RuntimeError(f"sections {SECTIONS} do not have distinct first letters")

# A digest record inside the store: (state, paper ids, at, detail, id, extra), where id
# is "" when it equals models.digest_id and extra holds the other DeliveryRecord fields
# in their encoded form (None when all are empty), decoded only when a record is read.
Rec = tuple[str, tuple[str, ...], int, str, str, dict[str, Any] | None]


def _check_subscriber(s: Subscriber) -> None:
    if not s.email:
        raise ValueError("subscriber: empty email")
    if s.status not in STATUSES:
        raise ValueError(f"subscriber {s.email}: unknown status {s.status!r}")
    if s.no_match not in NO_MATCH_CHOICES:
        raise ValueError(f"subscriber {s.email}: bad no-match choice {s.no_match!r}")
    if any(r[1] not in (UP, DOWN) for r in s.ratings):
        raise ValueError(f"subscriber {s.email}: a rating is not {UP} or {DOWN}")


SUBSCRIBER = Codec(
    Subscriber,
    keys={
        "email": "e",
        "keywords": "k",
        "max_papers": "m",
        "min_score": "n",
        "status": "s",
        "send_hour": "h",
        "timezone": "z",
        "created": "c",
        "trending": "tr",
        "no_match": "nm",
        "id": "i",
        "ratings": "r",
        "examples": "x",
    },
    check=_check_subscriber,
)
PAPER = Codec(
    Paper,
    keys={
        "title": "t",
        "abstract": "a",
        "authors": "au",
        "listed_on": "l",
        "ai_summary": "s",
        "ai_keywords": "k",
        "upvotes": "u",
        "github_repo": "g",
        "github_stars": "gs",
        "project_page": "pp",
        "sources": "src",
    },
    exclude=("id",),
)
RUN = Codec(RunReport)
_CORE = ("digest_id", "email", "day", "state", "paper_ids", "detail", "at")
EXTRA = Codec(DeliveryRecord, keys={"sections": "c", "matched": "m"}, exclude=_CORE)
_REST = Codec(DeliveryRecord, exclude=(*_CORE, "sections", "matched"))  # fields added later


# ------------------------------------------------------------------------------ models


def paper_to_dict(p: Paper) -> dict[str, Any]:
    return PAPER.encode(p)


def paper_from_dict(pid: str, d: Any) -> Paper:
    return PAPER.decode(d, f"paper {pid}", id=pid)


def subscriber_to_dict(s: Subscriber) -> dict[str, Any]:
    return SUBSCRIBER.encode(s)


def subscriber_from_dict(d: Any) -> Subscriber:
    email = d.get("e") if isinstance(d, dict) else None
    return SUBSCRIBER.decode(d, f"subscriber {email}" if isinstance(email, str) else "subscriber")


def run_to_dict(r: RunReport) -> dict[str, Any]:
    d = RUN.encode(r)
    d["day"] = r.day.isoformat()  # always present: runs are filed by day
    return d


def run_from_dict(d: Any) -> RunReport:
    return RUN.decode(d, "run report")


# ----------------------------------------------------------------------------- digests


def at_iso(at: int) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def encode_extra(rec: DeliveryRecord) -> dict[str, Any] | None:
    """The record's fields beyond the core ones (None when all are at their defaults).
    Sections and matched terms are encoded by hand: this runs once per message, and
    the generic path costs ~6 us more per record; any other field goes through EXTRA."""
    extra = _REST.encode(rec) if _REST.fields else {}
    if rec.sections:
        try:
            extra["c"] = "".join([SECTION_CODES[s] for s in rec.sections])
        except KeyError as e:
            raise ValueError(f"digest record of {rec.email}: unknown section {e}") from None
    if rec.matched:
        extra["m"] = [list(m) for m in rec.matched]
    return extra or None


def decode_extra(extra: Any, what: str) -> dict[str, Any]:
    """The keyword arguments of DeliveryRecord held in a record's `extra`."""
    if extra is None:
        return {}
    if not isinstance(extra, dict):
        raise ValueError(f"{what}: malformed")
    if "c" in extra:
        codes = extra["c"]
        if not isinstance(codes, str) or any(c not in CODE_SECTIONS for c in codes):
            raise ValueError(f"{what}: bad sections {codes!r}")
        extra = dict(extra, c=[CODE_SECTIONS[c] for c in codes])
    template = EXTRA.decode(extra, what, **dict.fromkeys(_CORE[:2], ""), day=date.min, state="")
    return {f.name: getattr(template, f.name) for f in EXTRA.fields}


def rec_of(r: DeliveryRecord, at: int) -> Rec:
    """The record's in-memory form; its id stays whole (encode_day drops a default one:
    hashing it here would cost 1.5 us of every message's record)."""
    return (r.state, tuple(r.paper_ids), at, r.detail, r.digest_id, encode_extra(r))


def record_of(o: int, email: str, rec: Rec) -> DeliveryRecord:
    day = date.fromordinal(o)
    return DeliveryRecord(
        digest_id=rec[4] or digest_id(email, day),
        email=email,
        day=day,
        state=rec[0],
        paper_ids=rec[1],
        detail=rec[3],
        at=datetime.fromtimestamp(rec[2], UTC),
        **decode_extra(rec[5], f"digest record of {email}"),
    )


def encode_day(doc: dict[str, Any] | None, records: dict[str, Rec], day: date) -> dict[str, Any]:
    """Fold `records` (email -> Rec) of `day` into its document
    {"p": [paper ids], "d": {email: [code, [indexes], at, detail?, id?, extra?]}}.
    Paper ids are stored once per day and referenced by index: ~3 bytes per pick."""
    pids: list[str] = list(doc["p"]) if doc else []
    entries: dict[str, Any] = dict(doc["d"]) if doc else {}
    index = {p: i for i, p in enumerate(pids)}
    for email, (state, ids, at, detail, did, extra) in records.items():
        if did and did == digest_id(email, day):
            did = ""  # the default id is not stored
        idx = []
        for pid in ids:
            if pid not in index:
                index[pid] = len(pids)
                pids.append(pid)
            idx.append(index[pid])
        rec: list[Any] = [STATE_CODES[state], idx, at]
        if detail or did or extra:
            rec.append(detail)
        if did or extra:
            rec.append(did)
        if extra:
            rec.append(extra)
        entries[email] = rec
    return {"p": pids, "d": entries}


def decode_day(doc: Any) -> dict[str, Rec]:
    """The inverse of encode_day; the id is "" when it equals models.digest_id."""
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("p"), list)
        or not isinstance(doc.get("d"), dict)
    ):
        raise ValueError('digest day: expected {"p": [...], "d": {...}}')
    pids = doc["p"]
    out = {}
    for email, rec in doc["d"].items():
        try:
            code, idx, at = rec[0], rec[1], rec[2]
            ids = tuple(pids[i] for i in idx)
            detail = rec[3] if len(rec) > 3 else ""
            did = rec[4] if len(rec) > 4 else ""
            extra = rec[5] if len(rec) > 5 else None
            state = CODE_STATES[code]
        except (IndexError, KeyError, TypeError) as e:
            raise ValueError(f"digest record of {email}: malformed") from e
        if (
            not isinstance(at, int)
            or not isinstance(detail, str)
            or not isinstance(did, str)
            or not (extra is None or isinstance(extra, dict))
        ):
            raise ValueError(f"digest record of {email}: malformed")
        out[email] = (state, ids, at, detail, did, extra or None)
    return out


def journal_line(r: DeliveryRecord, rec: Rec) -> bytes:
    """One delivery record (and its `rec_of` form) as a journal line, newline-terminated."""
    line: dict[str, Any] = {
        "i": r.digest_id,
        "e": r.email,
        "d": r.day.toordinal(),
        "s": STATE_CODES[rec[0]],
        "p": list(rec[1]),
        "a": rec[2],
    }
    if rec[3]:
        line["x"] = rec[3]
    if rec[5]:
        line["+"] = rec[5]
    return orjson.dumps(line) + b"\n"


def journal_record(obj: Any) -> tuple[int, str, Rec]:
    """A parsed journal line -> (day ordinal, email, record)."""
    if not isinstance(obj, dict):
        raise ValueError("expected an object")
    try:
        did, email, day, code, ids, at = (obj[k] for k in "iedspa")
        state = CODE_STATES[code]
    except (KeyError, TypeError) as e:
        raise ValueError("missing or bad field") from e
    detail = obj.get("x", "")
    extra = obj.get("+")
    if not (
        isinstance(did, str)
        and isinstance(email, str)
        and isinstance(day, int)
        and isinstance(at, int)
        and isinstance(detail, str)
        and (extra is None or isinstance(extra, dict))
    ):
        raise ValueError("bad field type")
    if not isinstance(ids, list) or not all(isinstance(v, str) for v in ids):
        raise ValueError("paper ids: expected a list of strings")
    return day, email, (state, tuple(ids), at, detail, did, extra)
