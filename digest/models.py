"""Pure: the plain frozen data that flows between the stages.

Nothing here does I/O. Every stage takes and returns these types, so a stage can be
tested with values built by hand (see tests/builders.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache

# Subscriber states. Only ACTIVE subscribers receive digests.
PENDING = "pending"  # subscribed on the web, not yet confirmed (double opt-in)
ACTIVE = "active"
PAUSED = "paused"
UNSUBSCRIBED = "unsubscribed"
STATUSES = (PENDING, ACTIVE, PAUSED, UNSUBSCRIBED)

# Delivery outcomes of one digest (one subscriber, one day).
SENT = "sent"  # the SMTP server accepted it (or it was written to the outbox)
FAILED = "failed"  # permanent (5xx) refusal: never retried
DEFERRED = "deferred"  # transient (4xx / connection): retried next run
EMPTY = "empty"  # nothing new for this subscriber today; no mail sent
DONE_STATES = (SENT, FAILED, EMPTY)  # a digest in one of these states is not attempted again

# What a paper is in a digest: it matched the subscriber's interests ("For you"), or it is
# one of the day's trending papers shown beside the matches ("Trending today").
MATCH = "match"
TRENDING = "trending"
SECTIONS = (MATCH, TRENDING)

# A reader's vote on a paper ("More like this" / "Less like this"); bounds of what is kept.
UP = 1
DOWN = -1
MAX_RATINGS = 500  # the newest ratings are kept
MAX_EXAMPLES = 100

# What a subscriber with keywords gets on a day when nothing matches them.
NO_MATCH_SEND = "send"  # the trending papers, under a subject that says nothing matched
NO_MATCH_SKIP = "skip"  # no mail that day
NO_MATCH_CHOICES = (NO_MATCH_SEND, NO_MATCH_SKIP)


@dataclass(frozen=True, slots=True)
class Paper:
    """One paper, whatever source(s) listed it. `id` is the arXiv id without version."""

    id: str
    title: str  # plain text, whitespace collapsed; escaped only when rendered
    abstract: str
    authors: tuple[str, ...] = ()
    listed_on: date | None = None  # the day a source listed it (HF submittedOnDailyAt)
    ai_summary: str | None = None
    ai_keywords: tuple[str, ...] = ()
    upvotes: int | None = None
    github_repo: str | None = None
    github_stars: int | None = None
    project_page: str | None = None
    sources: tuple[str, ...] = ()  # e.g. ("huggingface", "arxiv")

    @property
    def hf_url(self) -> str:
        return f"https://huggingface.co/papers/{self.id}"

    @property
    def arxiv_url(self) -> str:
        return f"https://arxiv.org/abs/{self.id}"


@dataclass(frozen=True, slots=True)
class Query:
    """A subscriber's parsed keywords: terms/phrases to match and terms that exclude."""

    includes: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()


@lru_cache(maxsize=100_000)
def parse_query(keywords: tuple[str, ...]) -> Query:
    """The keywords as typed, split into includes and "-term" excludes (cached: rank()
    asks for every subscriber's query at every call, and keyword lists recur)."""
    inc = tuple(k for k in keywords if not k.startswith("-"))
    exc = tuple(k[1:].strip() for k in keywords if k.startswith("-") and k[1:].strip())
    return Query(inc, exc)


@dataclass(frozen=True, slots=True)
class Subscriber:
    email: str  # validated and normalised (see digest.subscribers.normalise_email)
    keywords: tuple[str, ...] = ()  # as typed, one entry per term; "-term" excludes
    max_papers: int = 10
    min_score: float | None = None
    status: str = ACTIVE
    send_hour: int | None = None  # local hour (0-23) for per-subscriber scheduling
    timezone: str | None = None  # IANA name, e.g. "Europe/Berlin"
    created: str = ""  # ISO timestamp; a PENDING subscriber expires by it ([store] pending_days)
    trending: int | None = None  # trending papers per digest; None: the site's [digest] trending
    no_match: str = NO_MATCH_SEND  # a day without matches: NO_MATCH_SEND or NO_MATCH_SKIP
    # Opaque random id, assigned by the store on insert and never reused (links carry it
    # instead of the address); "" until stored. See digest.store.base.new_subscriber_id.
    id: str = ""
    # What the reader taught it (digest/rank/learn.py): "More / Less like this" votes,
    # (paper id, UP or DOWN, epoch seconds, title), oldest first, one per paper (the last
    # vote wins), at most MAX_RATINGS; and example papers, (paper id, title), at most
    # MAX_EXAMPLES. The title names the paper in the why-line and stands in for its text
    # once the store no longer keeps the paper's details.
    ratings: tuple[tuple[str, int, int, str], ...] = ()
    examples: tuple[tuple[str, str], ...] = ()

    @property
    def query(self) -> Query:
        return parse_query(tuple(self.keywords))


@dataclass(frozen=True, slots=True)
class Pick:
    """One paper chosen for one subscriber, with why (the matched terms) and its section.

    A MATCH pick's score is its relevance (0..100, digest/rank/model.py); a TRENDING
    pick's score is the paper's popularity (0..100) and it has no matched terms."""

    paper_id: str
    score: float
    matched: tuple[str, ...] = ()  # the subscriber's terms that matched, as they typed them
    section: str = MATCH
    # A match the reader's model lifted or admitted (digest/rank/learn.py): the paper it is
    # most like, (its title, "up" | "example"); () otherwise.
    like: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        paper_id: str,
        score: float,
        matched: tuple[str, ...] = (),
        section: str = MATCH,
        like: tuple[str, ...] = (),
    ) -> Pick:
        """The same Pick as Pick(...), built in two thirds of the time: rank() builds one
        per chosen paper per subscriber (~10^5 a run at 10,000 subscribers), and a frozen
        dataclass's __init__ sets each field through object.__setattr__. The slots'
        own setters skip that lookup; the fields stay frozen to everyone else."""
        p = _new_object(cls)
        _set_paper_id(p, paper_id)
        _set_score(p, score)
        _set_matched(p, matched)
        _set_section(p, section)
        _set_like(p, like)
        return p


_new_object = object.__new__
_set_paper_id, _set_score, _set_matched, _set_section, _set_like = (
    getattr(Pick, f).__set__ for f in ("paper_id", "score", "matched", "section", "like")
)


def digest_id(email: str, day: date) -> str:
    """Deterministic id of the digest of `email` for `day`: the same across reruns,
    so the Message-ID and the delivery record of a retried digest are the same."""
    h = hashlib.sha256(f"{email.lower()}|{day.isoformat()}".encode()).hexdigest()[:20]
    return f"{day.isoformat()}-{h}"


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """The outcome of one digest (one subscriber, one day), as the store keeps it.

    `paper_ids` are the papers in the order mailed; `sections` and `matched` run parallel
    to them (per paper: MATCH or TRENDING, and the matched terms), so a digest can be
    shown again exactly as mailed; both may be empty (records written before they
    existed). `at` is when the record was written: None asks the store to stamp it."""

    digest_id: str
    email: str
    day: date
    state: str  # SENT / FAILED / DEFERRED / EMPTY
    paper_ids: tuple[str, ...] = ()
    detail: str = ""  # the server's reply or why nothing was sent
    at: datetime | None = None
    sections: tuple[str, ...] = ()
    matched: tuple[tuple[str, ...], ...] = ()

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form for `digest status --json` and the feed."""
        at = self.at.astimezone(UTC).isoformat(timespec="seconds") if self.at else ""
        out: dict[str, object] = {
            "id": self.digest_id,
            "email": self.email,
            "day": self.day.isoformat(),
            "state": self.state,
            "papers": list(self.paper_ids),
            "at": at,
            "detail": self.detail,
        }
        if self.sections:
            out["sections"] = list(self.sections)
        if self.matched:
            out["matched"] = [list(m) for m in self.matched]
        return out


@dataclass(frozen=True, slots=True)
class Gathered:
    """The day's candidate papers after fetch, merge and the seen-store diff."""

    papers: tuple[Paper, ...]  # eligible: first seen inside the look-back window
    window_start: date
    sample_day: date | None = None  # the bundled sample day stands in (offline fallback)


@dataclass(frozen=True, slots=True)
class Digest:
    """One subscriber's digest for a day. `picks` are the MATCH picks (best first), then
    the TRENDING ones: everything mailed, so every paper in it counts as received."""

    subscriber: Subscriber
    day: date
    picks: tuple[Pick, ...]

    @property
    def id(self) -> str:
        return digest_id(self.subscriber.email, self.day)

    @property
    def matches(self) -> tuple[Pick, ...]:
        return tuple(p for p in self.picks if p.section == MATCH)

    @property
    def trending(self) -> tuple[Pick, ...]:
        return tuple(p for p in self.picks if p.section == TRENDING)


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What one source returned for one run."""

    source: str
    papers: tuple[Paper, ...] = ()
    skipped: int = 0  # items dropped as bad data (malformed, missing fields, wrong types)
    error: str | None = None  # set when the source failed as a whole
    requests: int = 0
    notes: tuple[str, ...] = ()  # e.g. "offline: used the bundled recorded day 2026-03-10"

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A fully built RFC 5322 message, ready for any Sender."""

    digest_id: str
    to: str
    sender: str
    message_id: str
    data: bytes  # CRLF line endings, no line over 998 bytes
    html: str = ""  # the HTML part, for the outbox's .html preview

    def __reduce__(self) -> tuple[type, tuple[str, str, str, str, bytes, str]]:
        # pickled from the message builder process: a plain constructor call unpickles
        # twice as fast as the generated __setstate__ of a frozen slotted dataclass
        return (
            OutgoingMessage,
            (self.digest_id, self.to, self.sender, self.message_id, self.data, self.html),
        )


@dataclass(slots=True)
class RunReport:
    """The summary printed at the end of `digest run`, and the run record the store keeps
    (`Store.run` commits it, `Store.runs` returns it): one type, so a field added here is
    stored, exported and shown by `digest status` with no codec change."""

    day: date
    started: str = ""
    fetched: dict[str, int] = field(default_factory=dict)  # source -> papers
    source_errors: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    new_papers: int = 0
    skipped_bad: int = 0
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    empty: int = 0
    already_done: int = 0
    seconds: float = 0.0
    dry_run: bool = False
    error: str = ""  # why the run failed ("" when it did not): `digest status` shows it

    def lines(self) -> list[str]:
        src = ", ".join(f"{k} {v}" for k, v in self.fetched.items()) or "none"
        out = [f"digest run for {self.day.isoformat()}" + (" (dry run)" if self.dry_run else "")]
        out += [f"  note: {n}" for n in self.notes]
        out.append(f"  fetched: {src}; new: {self.new_papers}; skipped as bad: {self.skipped_bad}")
        out += [f"  source failed: {k}: {v}" for k, v in self.source_errors.items()]
        out.append(
            f"  digests: sent {self.sent}, failed {self.failed}, deferred {self.deferred}, "
            f"empty {self.empty}, already done {self.already_done}"
        )
        out.append(f"  time: {self.seconds:.2f}s")
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "day": self.day.isoformat(),
            "started": self.started,
            "fetched": dict(self.fetched),
            "source_errors": dict(self.source_errors),
            "notes": list(self.notes),
            "new_papers": self.new_papers,
            "skipped_bad": self.skipped_bad,
            "sent": self.sent,
            "failed": self.failed,
            "deferred": self.deferred,
            "empty": self.empty,
            "already_done": self.already_done,
            "seconds": round(self.seconds, 3),
            "dry_run": self.dry_run,
            "error": self.error,
        }
