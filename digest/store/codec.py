"""Pure: no I/O. Compact JSON forms of what the store keeps.

Short keys and omitted defaults keep the files small (a year of daily runs for 1,000
subscribers must stay under 10 MB). Every decoder raises ValueError on a malformed value;
the store turns that into a StoreError naming the file.

Paper      {"t": title, "a": abstract, "au": [...], "l": "2026-01-05", "s": ai_summary,
            "k": [...], "u": upvotes, "g": repo, "gs": stars, "pp": url, "src": [...]}
            (the id is the key it is stored under)
Subscriber {"e": email, "k": [...], "m": max_papers, "n": min_score, "s": status,
            "h": send_hour, "z": timezone, "c": created, "tr": trending, "nm": no_match}
Digest     [state code, [paper indexes into the day's "p" list], at (epoch s), detail, id]
            (detail and id are omitted when empty / equal to models.digest_id)
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import orjson

from digest.models import (
    ACTIVE,
    DEFERRED,
    EMPTY,
    FAILED,
    NO_MATCH_CHOICES,
    NO_MATCH_SEND,
    SENT,
    STATUSES,
    Paper,
    Subscriber,
)

STATE_CODES = {SENT: "s", FAILED: "f", DEFERRED: "d", EMPTY: "e"}
CODE_STATES = {v: k for k, v in STATE_CODES.items()}


def _str_tuple(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what}: expected a list of strings")
    return tuple(value)


def _opt(d: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    v = d.get(key)
    if v is not None and (not isinstance(v, kind) or isinstance(v, bool)):
        raise ValueError(f"{what}: bad {key!r} value {v!r}")
    return v


# ------------------------------------------------------------------------------ papers


def paper_to_dict(p: Paper) -> dict[str, Any]:
    d: dict[str, Any] = {"t": p.title, "a": p.abstract}
    if p.authors:
        d["au"] = list(p.authors)
    if p.listed_on is not None:
        d["l"] = p.listed_on.isoformat()
    if p.ai_summary is not None:
        d["s"] = p.ai_summary
    if p.ai_keywords:
        d["k"] = list(p.ai_keywords)
    if p.upvotes is not None:
        d["u"] = p.upvotes
    if p.github_repo is not None:
        d["g"] = p.github_repo
    if p.github_stars is not None:
        d["gs"] = p.github_stars
    if p.project_page is not None:
        d["pp"] = p.project_page
    if p.sources:
        d["src"] = list(p.sources)
    return d


def paper_from_dict(pid: str, d: Any) -> Paper:
    what = f"paper {pid}"
    if (
        not isinstance(d, dict)
        or not isinstance(d.get("t"), str)
        or not isinstance(d.get("a"), str)
    ):
        raise ValueError(f"{what}: expected an object with a title and an abstract")
    listed = _opt(d, "l", str, what)
    return Paper(
        id=pid,
        title=d["t"],
        abstract=d["a"],
        authors=_str_tuple(d.get("au", []), what),
        listed_on=date.fromisoformat(listed) if listed is not None else None,
        ai_summary=_opt(d, "s", str, what),
        ai_keywords=_str_tuple(d.get("k", []), what),
        upvotes=_opt(d, "u", int, what),
        github_repo=_opt(d, "g", str, what),
        github_stars=_opt(d, "gs", int, what),
        project_page=_opt(d, "pp", str, what),
        sources=_str_tuple(d.get("src", []), what),
    )


# ------------------------------------------------------------------------- subscribers


def subscriber_to_dict(s: Subscriber) -> dict[str, Any]:
    d: dict[str, Any] = {"e": s.email}
    if s.keywords:
        d["k"] = list(s.keywords)
    if s.max_papers != 10:
        d["m"] = s.max_papers
    if s.min_score is not None:
        d["n"] = s.min_score
    if s.status != ACTIVE:
        d["s"] = s.status
    if s.send_hour is not None:
        d["h"] = s.send_hour
    if s.timezone is not None:
        d["z"] = s.timezone
    if s.created:
        d["c"] = s.created
    if s.trending is not None:
        d["tr"] = s.trending
    if s.no_match != NO_MATCH_SEND:
        d["nm"] = s.no_match
    return d


def _no_match(v: Any, what: str) -> str:
    if v not in NO_MATCH_CHOICES:
        raise ValueError(f"{what}: bad no-match choice {v!r}")
    return str(v)


def subscriber_from_dict(d: Any) -> Subscriber:
    if not isinstance(d, dict) or not isinstance(d.get("e"), str) or not d["e"]:
        raise ValueError("subscriber: expected an object with an email")
    what = f"subscriber {d['e']}"
    status = d.get("s", ACTIVE)
    if status not in STATUSES:
        raise ValueError(f"{what}: unknown status {status!r}")
    min_score = d.get("n")
    if min_score is not None and (
        isinstance(min_score, bool) or not isinstance(min_score, int | float)
    ):
        raise ValueError(f"{what}: bad min score {min_score!r}")
    return Subscriber(
        email=d["e"],
        keywords=_str_tuple(d.get("k", []), what),
        max_papers=_opt(d, "m", int, what) or 10,
        min_score=float(min_score) if min_score is not None else None,
        status=status,
        send_hour=_opt(d, "h", int, what),
        timezone=_opt(d, "z", str, what),
        created=_opt(d, "c", str, what) or "",
        trending=_opt(d, "tr", int, what),
        no_match=_no_match(d.get("nm", NO_MATCH_SEND), what),
    )


# ----------------------------------------------------------------------------- digests


def at_iso(at: int) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def encode_day(
    doc: dict[str, Any] | None, records: dict[str, tuple[str, tuple[str, ...], int, str, str]]
) -> dict[str, Any]:
    """Fold `records` (email -> (state, paper ids, at, detail, id)) into one day's
    document {"p": [paper ids], "d": {email: [code, [indexes], at, detail?, id?]}}.
    Paper ids are stored once per day and referenced by index: ~3 bytes per pick."""
    pids: list[str] = list(doc["p"]) if doc else []
    entries: dict[str, Any] = dict(doc["d"]) if doc else {}
    index = {p: i for i, p in enumerate(pids)}
    for email, (state, ids, at, detail, did) in records.items():
        idx = []
        for pid in ids:
            if pid not in index:
                index[pid] = len(pids)
                pids.append(pid)
            idx.append(index[pid])
        rec: list[Any] = [STATE_CODES[state], idx, at]
        if detail or did:
            rec.append(detail)
        if did:
            rec.append(did)
        entries[email] = rec
    return {"p": pids, "d": entries}


def decode_day(doc: Any) -> dict[str, tuple[str, tuple[str, ...], int, str, str]]:
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
            state = CODE_STATES[code]
        except (IndexError, KeyError, TypeError) as e:
            raise ValueError(f"digest record of {email}: malformed") from e
        if not isinstance(at, int) or not isinstance(detail, str) or not isinstance(did, str):
            raise ValueError(f"digest record of {email}: malformed")
        out[email] = (state, ids, at, detail, did)
    return out


def journal_line(
    digest_id: str, email: str, day: date, state: str, ids: tuple[str, ...], at: int, detail: str
) -> bytes:
    rec = {
        "i": digest_id,
        "e": email,
        "d": day.toordinal(),
        "s": STATE_CODES[state],
        "p": list(ids),
        "a": at,
    }
    if detail:
        rec["x"] = detail
    return orjson.dumps(rec) + b"\n"


def journal_record(obj: Any) -> tuple[int, str, tuple[str, tuple[str, ...], int, str, str]]:
    """A parsed journal line -> (day ordinal, email, record)."""
    if not isinstance(obj, dict):
        raise ValueError("expected an object")
    try:
        did, email, day, code, ids, at = (obj[k] for k in "iedspa")
        state = CODE_STATES[code]
    except (KeyError, TypeError) as e:
        raise ValueError("missing or bad field") from e
    detail = obj.get("x", "")
    if not (
        isinstance(did, str)
        and isinstance(email, str)
        and isinstance(day, int)
        and isinstance(at, int)
        and isinstance(detail, str)
    ):
        raise ValueError("bad field type")
    return day, email, (state, _str_tuple(ids, "paper ids"), at, detail, did)
