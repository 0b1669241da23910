"""Pure: no I/O. Who is due for a digest now, decided by the delivery records.

The scheduler's memory is never trusted: whether a subscriber still needs the digest of a
day is read from the store's delivery records (`Store.digests_for_day`). So the same
function answers "it is 07:00, who gets mail?", "we were down over 07:00, what do we owe?"
and "we crashed after 120 of 300 messages, who is left?".

A subscriber is due for `day` when
- they are ACTIVE,
- their local send time of `day` (clock.send_instant) has passed, but by less than the
  misfire grace window ([schedule] misfire_grace_hours; an older miss is dropped and the
  next day's digest carries its papers, since delivered papers are excluded, not dated),
- they were subscribed before that send time (a subscriber confirmed at 15:00 starts
  tomorrow, not with a surprise mail at 15:00), and
- the day has no SENT / FAILED / EMPTY record for them (DEFERRED is retried).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from digest.config import ScheduleConfig
from digest.errors import ConfigError
from digest.models import ACTIVE, DONE_STATES, Subscriber
from digest.schedule.clock import fires_within, next_fire, parse_hhmm, zone

# states_for(day) -> {email: state}; `Store.digests_for_day` has exactly this shape.
StatesFor = Callable[[date], Mapping[str, str]]

# With misfire_grace_hours = 0 a send time is still honoured when the tick is a little late
# (a busy machine, the scheduler thread waking up): one minute, APScheduler's own scale.
MIN_GRACE = timedelta(minutes=1)


@dataclass(frozen=True)
class Slot:
    """A local send time in a zone: the schedule of one or many subscribers."""

    at: time
    tz: ZoneInfo

    @property
    def label(self) -> str:
        return f"{self.at.strftime('%H:%M')} {self.tz.key}"


@dataclass(frozen=True)
class DueGroup:
    """The subscribers owed the digest of one day: one `run_daily(cfg, day, only=...)`."""

    day: date
    emails: frozenset[str]
    since: datetime  # the earliest missed send instant among them (UTC)

    def only(self) -> Callable[[Subscriber], bool]:
        emails = self.emails
        return lambda s: s.email in emails


def grace(cfg: ScheduleConfig) -> timedelta:
    return max(timedelta(hours=cfg.misfire_grace_hours), MIN_GRACE)


def default_slot(cfg: ScheduleConfig) -> Slot:
    return Slot(parse_hhmm(cfg.time), zone(cfg.timezone))


def slot_for(sub: Subscriber, cfg: ScheduleConfig) -> Slot:
    """The subscriber's own hour and zone, falling back to [schedule] time / timezone.

    A zone the tz database does not know (bad data in the store) falls back to the
    configured zone rather than losing the subscriber's digest.
    """
    base = default_slot(cfg)
    at = (
        time(sub.send_hour, 0)
        if sub.send_hour is not None and 0 <= sub.send_hour <= 23
        else base.at
    )
    tz = base.tz
    if sub.timezone:
        try:
            tz = zone(sub.timezone)
        except ConfigError:
            tz = base.tz
    return Slot(at, tz)


def _created(sub: Subscriber) -> datetime | None:
    if not sub.created:
        return None
    try:
        dt = datetime.fromisoformat(sub.created)
    except ValueError:
        return None  # informational field; unreadable means "long ago"
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _states_lookup(states: StatesFor | Mapping[tuple[str, date], str]) -> StatesFor:
    """Accept a store lookup or a plain {(email, day): state} mapping; memoise per day."""
    if isinstance(states, Mapping):
        by_day: dict[date, dict[str, str]] = {}
        for (email, day), state in states.items():
            by_day.setdefault(day, {})[email] = state
        return lambda d: by_day.get(d, {})
    cache: dict[date, Mapping[str, str]] = {}

    def lookup(d: date) -> Mapping[str, str]:
        if d not in cache:
            cache[d] = states(d)
        return cache[d]

    return lookup


def catch_up_plan(
    now_utc: datetime,
    subscribers: Iterable[Subscriber],
    cfg: ScheduleConfig,
    states: StatesFor | Mapping[tuple[str, date], str],
) -> list[DueGroup]:
    """The digests owed at `now_utc`, one group per day, oldest day first."""
    lookup = _states_lookup(states)
    window = grace(cfg)
    fires_by_slot: dict[Slot, list[tuple[date, datetime]]] = {}
    owed: dict[date, set[str]] = {}
    since: dict[date, datetime] = {}
    for sub in subscribers:
        if sub.status != ACTIVE:
            continue
        slot = slot_for(sub, cfg)
        if slot not in fires_by_slot:  # thousands of subscribers share a few slots
            fires_by_slot[slot] = fires_within(now_utc, slot.at, slot.tz, window)
        created = _created(sub)
        for day, inst in fires_by_slot[slot]:
            if created is not None and created > inst:
                continue
            if lookup(day).get(sub.email) in DONE_STATES:
                continue
            owed.setdefault(day, set()).add(sub.email)
            since[day] = min(since.get(day, inst), inst)
    return [DueGroup(d, frozenset(owed[d]), since[d]) for d in sorted(owed)]


def due_subscribers(
    now_utc: datetime,
    subscribers: Sequence[Subscriber],
    cfg: ScheduleConfig,
    states: StatesFor | Mapping[tuple[str, date], str],
) -> list[tuple[Subscriber, date]]:
    """(subscriber, day) pairs owed a digest at `now_utc`, oldest day first."""
    by_email = {s.email: s for s in subscribers}
    return [
        (by_email[e], g.day)
        for g in catch_up_plan(now_utc, subscribers, cfg, states)
        for e in sorted(g.emails)
    ]


def due(
    sub: Subscriber,
    now_utc: datetime,
    cfg: ScheduleConfig,
    states: StatesFor | Mapping[tuple[str, date], str],
) -> bool:
    """Is `sub` owed any digest at `now_utc`? (The `only=` predicate, one at a time.)"""
    return bool(catch_up_plan(now_utc, [sub], cfg, states))


def slots(subscribers: Iterable[Subscriber], cfg: ScheduleConfig) -> set[Slot]:
    """The distinct send times in use, always including the configured default."""
    out = {default_slot(cfg)}
    out.update(slot_for(s, cfg) for s in subscribers if s.status == ACTIVE)
    return out


def next_send(now_utc: datetime, slot_set: Iterable[Slot]) -> datetime:
    """The next send instant strictly after `now_utc` over all slots (UTC)."""
    return min(next_fire(now_utc, s.at.strftime("%H:%M"), s.tz) for s in slot_set)
