"""Pure: no I/O. Local send times as UTC instants, correct across DST transitions.

Every function takes the clock as an argument (`now_utc`); nothing here reads the time.

A digest's *day* is the local calendar date of its send time: the digest sent at 07:00
Europe/Berlin on 2026-03-29 is the digest of 2026-03-29, whatever the UTC date is.

DST rules (PEP 495 wall times, zoneinfo):
- spring forward: a send time that does not exist that day (02:30 in Europe/Berlin on
  2026-03-29, clocks jump 02:00 -> 03:00) fires at the first instant after it, i.e. at the
  transition itself (03:00 CEST). It never moves to another day, so no digest is skipped.
- fall back: a send time that occurs twice (02:30 in Europe/Berlin on 2026-10-25) fires at
  its first occurrence (fold=0) only, so no digest is doubled.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digest.errors import ConfigError

_ONE_DAY = timedelta(days=1)


def parse_hhmm(text: str) -> time:
    """ "07:30" -> time(7, 30). Raises ConfigError on anything else."""
    try:
        hh, mm = text.strip().split(":")
        if len(mm) != 2 or not hh.isdigit() or not mm.isdigit():
            raise ValueError
        return time(int(hh), int(mm))
    except ValueError:
        raise ConfigError(f"send time: expected HH:MM, got {text!r}") from None


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`, or a ConfigError naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ConfigError(f"time zone: unknown IANA time zone {name!r}") from e


def _as_utc(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        raise ValueError("naive datetime: pass an aware UTC instant")
    return dt.astimezone(UTC)


def _wall(instant: datetime, tz: ZoneInfo) -> datetime:
    """The naive local wall-clock time of a UTC instant."""
    return instant.astimezone(tz).replace(tzinfo=None)


def send_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The UTC instant at which the local time `at` on `day` happens in `tz`.

    Ambiguous (fall back): the first occurrence. Non-existent (spring forward): the first
    instant after it, which is the transition itself.
    """
    wall = datetime.combine(day, at)
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if _wall(first, tz) == wall:
        # Exists; for an ambiguous wall time fold=0 is the first occurrence (PEP 495).
        return first
    # In a gap: fold=0 and fold=1 land on either side of the transition. The first
    # instant whose wall time is >= `wall` is the transition; find it by bisection
    # (to the second; all tz database transitions are on whole seconds).
    a = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    b = first
    lo, hi = min(a, b), max(a, b)
    if _wall(lo, tz) >= wall:  # defensive: should not happen for a real gap
        return lo
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        mid = mid.replace(microsecond=0)
        if mid <= lo:
            mid = lo + timedelta(seconds=1)
        if _wall(mid, tz) >= wall:
            hi = mid
        else:
            lo = mid
    return hi


def local_date(now_utc: datetime, tz: ZoneInfo) -> date:
    return _as_utc(now_utc).astimezone(tz).date()


def fires_around(
    now_utc: datetime, at: time, tz: ZoneInfo, days_back: int = 2, days_ahead: int = 2
) -> Iterator[tuple[date, datetime]]:
    """(day, send instant) for the local days around `now_utc`, in order."""
    today = local_date(now_utc, tz)
    for k in range(-days_back, days_ahead + 1):
        d = today + k * _ONE_DAY
        yield d, send_instant(d, at, tz)


def next_fire(
    now_utc: datetime, time_str: str, tz: str | ZoneInfo, *, inclusive: bool = False
) -> datetime:
    """The first send instant after `now_utc` (at or after it when `inclusive`), in UTC."""
    z = zone(tz) if isinstance(tz, str) else tz
    at = parse_hhmm(time_str)
    now_utc = _as_utc(now_utc)
    for _day, inst in fires_around(now_utc, at, z, days_back=1, days_ahead=3):
        if inst > now_utc or (inclusive and inst == now_utc):
            return inst
    raise AssertionError("unreachable: a send time occurs within three local days")


def last_fire(now_utc: datetime, time_str: str, tz: str | ZoneInfo) -> tuple[date, datetime]:
    """The latest (day, send instant) at or before `now_utc`."""
    z = zone(tz) if isinstance(tz, str) else tz
    at = parse_hhmm(time_str)
    now_utc = _as_utc(now_utc)
    best: tuple[date, datetime] | None = None
    for day, inst in fires_around(now_utc, at, z, days_back=3, days_ahead=1):
        if inst <= now_utc:
            best = (day, inst)
    assert best is not None  # three local days back always hold a send time
    return best


def fires_within(
    now_utc: datetime, at: time, tz: ZoneInfo, window: timedelta
) -> list[tuple[date, datetime]]:
    """Send instants in (now - window, now], oldest first: the days still worth sending.

    A send time exactly `window` ago is out (its grace is over); a send time of exactly
    `now` is in.
    """
    now_utc = _as_utc(now_utc)
    back = window.days + 2
    return [
        (d, inst)
        for d, inst in fires_around(now_utc, at, tz, days_back=back, days_ahead=1)
        if now_utc - window < inst <= now_utc
    ]
