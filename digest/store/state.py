"""Pure: no I/O. The subscriber side of the TinyDB store in memory, changed only by ops.

It holds the subscribers, the web service's mail queue, rate-limit hits, used nonces and
meta values. A write is a list of ops, appended to the journal as ONE line
{"q": seq, "o": [op, ...]} (so it is atomic: a torn line is ignored) and applied by
`State.apply`, both by the writer and by every process that replays the journal: the
two can never disagree. Folding writes `State.tables()` into the base file with the
last seq applied; replay skips ops at or below it, so a crash between the fold and the
journal's truncation replays nothing twice (a queued mail is not resurrected, a limit hit
not counted twice).

    ["s", subscriber]              insert or replace (codec form; by address, any case)
    ["r", email]                   remove
    ["q", mail]                    enqueue {"i": id, "m": message, "e": enqueued, "d": due}
    ["c", id, until]               claimed until `until` (one more attempt)
    ["d", id]                      sent: the message leaves the queue
    ["f", id, detail, retry_at]    failed: due again at retry_at, or given up (null)
    ["h", key, at, expires]        a counted rate-limit event
    ["n", nonce, expires]          a used nonce
    ["m", key, value]              a meta value (null: deleted)

Times are epoch seconds (floats).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from digest.models import PENDING, OutgoingMessage, Subscriber
from digest.store.base import CLAIMED, GAVE_UP, QUEUED, QueuedMail
from digest.store.codec import SUBSCRIBER
from digest.store.fields import Codec

MESSAGE = Codec(
    OutgoingMessage,
    keys={
        "digest_id": "i",
        "to": "t",
        "sender": "f",
        "message_id": "mid",
        "data": "b",
        "html": "h",
    },
)


@dataclass(slots=True)
class Mail:
    """A queued message as the state keeps it (the message stays in its JSON form)."""

    id: str
    msg: dict[str, Any]
    enqueued: float
    due: float
    attempts: int = 0
    state: str = QUEUED
    detail: str = ""
    until: float = 0.0  # lease end while CLAIMED

    def doc(self) -> dict[str, Any]:
        return {
            "i": self.id,
            "m": self.msg,
            "e": self.enqueued,
            "d": self.due,
            "a": self.attempts,
            "s": self.state,
            "x": self.detail,
            "u": self.until,
        }

    @classmethod
    def of(cls, d: Any) -> Mail:
        if not isinstance(d, dict):
            raise ValueError("queued mail: expected an object")
        try:
            m = cls(
                str(d["i"]),
                d["m"],
                float(d["e"]),
                float(d["d"]),
                int(d.get("a", 0)),
                str(d.get("s", QUEUED)),
                str(d.get("x", "")),
                float(d.get("u", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"queued mail: malformed ({e})") from None
        if not isinstance(m.msg, dict) or m.state not in (QUEUED, CLAIMED, GAVE_UP):
            raise ValueError(f"queued mail {m.id}: malformed")
        return m

    def claimable(self, now: float) -> bool:
        if self.state == QUEUED:
            return self.due <= now
        return self.state == CLAIMED and self.until <= now  # a dead worker's lease ended

    def public(self) -> QueuedMail:
        def t(x: float) -> datetime:
            return datetime.fromtimestamp(x, UTC)

        return QueuedMail(
            id=self.id,
            message=MESSAGE.decode(self.msg, f"queued mail {self.id}"),
            enqueued=t(self.enqueued),
            due=t(self.due),
            attempts=self.attempts,
            state=self.state,
            detail=self.detail,
            lease_until=t(self.until) if self.state == CLAIMED else None,
        )


class State:
    def __init__(self) -> None:
        self.seq = 0  # the last op line applied
        self.subs: dict[str, Subscriber] = {}  # email.lower() -> subscriber
        self.ids: dict[str, str] = {}  # subscriber id -> email.lower()
        self.queue: dict[str, Mail] = {}
        self.limits: dict[str, list[tuple[float, float]]] = {}
        self.nonces: dict[str, float] = {}
        self.meta: dict[str, str] = {}

    # ------------------------------------------------------------------ base file

    @classmethod
    def from_tables(cls, tables: dict[str, Any]) -> State:
        """The state in a base file's TinyDB tables ({table: {doc id: doc}})."""
        st = cls()
        for doc in tables.get("subscribers", {}).values():
            st.put(SUBSCRIBER.decode(doc, _what(doc)))
        for doc in tables.get("queue", {}).values():
            m = Mail.of(doc)
            st.queue[m.id] = m
        try:
            for doc in tables.get("limits", {}).values():
                st.limits[str(doc["k"])] = [(float(a), float(b)) for a, b in doc["h"]]
            for doc in tables.get("nonces", {}).values():
                st.nonces[str(doc["n"])] = float(doc["x"])
            for doc in tables.get("meta", {}).values():
                if not isinstance(doc["v"], str):
                    raise TypeError("meta value")
                st.meta[str(doc["k"])] = doc["v"]
            for doc in tables.get("state", {}).values():
                st.seq = max(st.seq, int(doc["seq"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"malformed limits, nonces, meta or state document ({e})") from None
        return st

    def tables(self, now: float | None = None) -> dict[str, list[dict[str, Any]]]:
        """The state as TinyDB documents per table; limit hits and nonces expired by
        `now` are left out (None: all kept)."""
        t = float("-inf") if now is None else now
        return {
            "subscribers": [SUBSCRIBER.encode(s) for s in self.subs.values()],
            "queue": [m.doc() for m in self.queue.values()],
            "limits": [
                {"k": k, "h": [list(h) for h in live]}
                for k, hits in self.limits.items()
                if (live := [h for h in hits if h[1] > t])
            ],
            "nonces": [{"n": n, "x": x} for n, x in self.nonces.items() if x > t],
            "meta": [{"k": k, "v": v} for k, v in self.meta.items()],
            "state": [{"seq": self.seq}],
        }

    def forget_expired(self, now: float) -> None:
        """Drop limit hits and nonces that expired by `now` (after a fold that left them out)."""
        self.limits = {
            k: live for k, hits in self.limits.items() if (live := [h for h in hits if h[1] > now])
        }
        self.nonces = {n: x for n, x in self.nonces.items() if x > now}

    def is_empty(self) -> bool:
        return not (self.subs or self.queue or self.meta)

    # ------------------------------------------------------------------ ops

    def apply_line(self, obj: Any) -> bool:
        """Apply one journal line unless already applied; False when skipped."""
        if not isinstance(obj, dict) or not isinstance(obj.get("q"), int):
            raise ValueError('expected {"q": seq, "o": [ops]}')
        if obj["q"] <= self.seq:
            return False  # folded into the base file already
        ops = obj.get("o")
        if not isinstance(ops, list):
            raise ValueError(f"line {obj['q']}: expected a list of ops")
        self.apply(ops)
        self.seq = obj["q"]
        return True

    def apply(self, ops: list[Any]) -> None:
        for op in ops:
            try:
                self._apply(op)
            except (IndexError, KeyError, TypeError, ValueError) as e:
                raise ValueError(f"bad op {str(op)[:60]!r}: {e}") from None

    def _apply(self, op: list[Any]) -> None:
        kind = op[0]
        if kind == "s":
            self.put(SUBSCRIBER.decode(op[1], _what(op[1])))
        elif kind == "r":
            old = self.subs.pop(str(op[1]).lower(), None)
            if old is not None and old.id:
                self.ids.pop(old.id, None)
        elif kind == "q":
            new = Mail.of(op[1])
            self.queue[new.id] = new
        elif kind == "c":
            if (m := self.queue.get(op[1])) is not None:
                m.state, m.until, m.attempts = CLAIMED, float(op[2]), m.attempts + 1
        elif kind == "d":
            self.queue.pop(op[1], None)
        elif kind == "f":
            if (m := self.queue.get(op[1])) is not None:
                m.detail = str(op[2])
                if op[3] is None:
                    m.state = GAVE_UP
                else:
                    m.state, m.due = QUEUED, float(op[3])
        elif kind == "h":
            key, at, exp = str(op[1]), float(op[2]), float(op[3])
            hits = [h for h in self.limits.get(key, ()) if h[1] > at]  # pruned as it grows
            hits.append((at, exp))
            self.limits[key] = hits
        elif kind == "n":
            self.nonces[str(op[1])] = float(op[2])
        elif kind == "m":
            if op[2] is None:
                self.meta.pop(str(op[1]), None)
            elif isinstance(op[2], str):
                self.meta[str(op[1])] = op[2]
            else:
                raise TypeError("meta value")
        else:
            raise ValueError(f"unknown op {kind!r}")

    def put(self, sub: Subscriber) -> None:
        key = sub.email.lower()
        old = self.subs.get(key)
        if old is not None and old.id and old.id != sub.id:
            self.ids.pop(old.id, None)
        self.subs[key] = sub
        if sub.id:
            self.ids[sub.id] = key

    # ------------------------------------------------------------------ queries

    def hits_within(self, key: str, seconds: float, now: float) -> list[float]:
        return sorted(at for at, _ in self.limits.get(key, ()) if at > now - seconds)

    def expired_pending(self, before: float, parse: Callable[[str], float | None]) -> list[str]:
        """Addresses of PENDING subscribers created before `before` (epoch seconds);
        `parse(created) -> epoch or None` reads the ISO stamps (unreadable: kept)."""
        out = []
        for key, s in self.subs.items():
            if s.status == PENDING:
                t = parse(s.created)
                if t is not None and t < before:
                    out.append(key)
        return out


def _what(doc: Any) -> str:
    email = doc.get("e") if isinstance(doc, dict) else None
    return f"subscriber {email}" if isinstance(email, str) else "subscriber"
