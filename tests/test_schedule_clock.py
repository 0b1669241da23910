"""Local send times across DST transitions, with an injected clock (no real time read)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.errors import ConfigError
from digest.schedule.clock import (
    fires_within,
    last_fire,
    next_fire,
    parse_hhmm,
    send_instant,
    zone,
)

BERLIN = ZoneInfo("Europe/Berlin")
NY = ZoneInfo("America/New_York")


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def walk(start: datetime, end: datetime, time_str: str, tz: ZoneInfo) -> list[datetime]:
    """Every fire of a daily schedule between start and end, as a scheduler would see it."""
    out, now = [], start
    while True:
        now = next_fire(now, time_str, tz)
        if now > end:
            return out
        out.append(now)


def test_parse_hhmm():
    assert parse_hhmm("07:05") == time(7, 5)
    for bad in ("7", "25:00", "07:5", "ab:cd", "07:60", ""):
        with pytest.raises(ConfigError, match="HH:MM"):
            parse_hhmm(bad)


def test_unknown_zone_is_a_config_error():
    with pytest.raises(ConfigError, match="Mars/Olympus"):
        zone("Mars/Olympus")


def test_plain_day_in_winter_and_summer():
    assert send_instant(date(2026, 1, 15), time(7, 0), BERLIN) == utc(2026, 1, 15, 6, 0)
    assert send_instant(date(2026, 7, 15), time(7, 0), BERLIN) == utc(2026, 7, 15, 5, 0)
    assert send_instant(date(2026, 7, 15), time(7, 0), NY) == utc(2026, 7, 15, 11, 0)


def test_spring_forward_missing_time_fires_at_the_transition():
    # Europe/Berlin 2026-03-29: 02:00 CET -> 03:00 CEST (01:00 UTC); 02:30 does not exist.
    assert send_instant(date(2026, 3, 29), time(2, 30), BERLIN) == utc(2026, 3, 29, 1, 0)
    # America/New_York 2026-03-08: 02:00 EST -> 03:00 EDT (07:00 UTC).
    assert send_instant(date(2026, 3, 8), time(2, 30), NY) == utc(2026, 3, 8, 7, 0)
    # An existing hour that day keeps its local meaning: 07:00 CEST = 05:00 UTC.
    assert send_instant(date(2026, 3, 29), time(7, 0), BERLIN) == utc(2026, 3, 29, 5, 0)


def test_fall_back_repeated_time_fires_once_at_first_occurrence():
    # Europe/Berlin 2026-10-25: 03:00 CEST -> 02:00 CET; 02:30 happens at 00:30 and 01:30 UTC.
    assert send_instant(date(2026, 10, 25), time(2, 30), BERLIN) == utc(2026, 10, 25, 0, 30)
    # America/New_York 2026-11-01: 02:00 EDT -> 01:00 EST; 01:30 at 05:30 and 06:30 UTC.
    assert send_instant(date(2026, 11, 1), time(1, 30), NY) == utc(2026, 11, 1, 5, 30)


@pytest.mark.parametrize(
    "tz, time_str, days",
    [
        (BERLIN, "02:30", (date(2026, 3, 27), date(2026, 3, 31))),
        (BERLIN, "02:30", (date(2026, 10, 23), date(2026, 10, 27))),
        (BERLIN, "07:00", (date(2026, 3, 27), date(2026, 3, 31))),
        (NY, "02:30", (date(2026, 3, 6), date(2026, 3, 10))),
        (NY, "01:30", (date(2026, 10, 30), date(2026, 11, 3))),
    ],
)
def test_one_fire_per_local_day_across_transitions(tz, time_str, days):
    first, last = days
    start = datetime.combine(first, time(0, 0), tz).astimezone(UTC)
    end = datetime.combine(last, time(23, 59), tz).astimezone(UTC)
    fires = walk(start, end, time_str, tz)
    local_days = [f.astimezone(tz).date() for f in fires]
    expected = [first + timedelta(days=k) for k in range((last - first).days + 1)]
    assert local_days == expected  # no double, no missing digest
    at = parse_hhmm(time_str)
    for f in fires:
        wall = f.astimezone(tz).time()
        # Either the exact local time, or (spring forward gap only) the next valid instant.
        assert wall == at or (wall > at and f == send_instant(f.astimezone(tz).date(), at, tz))


def test_next_fire_strict_and_inclusive():
    t = utc(2026, 1, 15, 6, 0)
    assert next_fire(t, "07:00", "Europe/Berlin") == utc(2026, 1, 16, 6, 0)
    assert next_fire(t, "07:00", "Europe/Berlin", inclusive=True) == t
    assert next_fire(t - timedelta(seconds=1), "07:00", BERLIN) == t


def test_next_fire_rejects_naive_clock():
    with pytest.raises(ValueError, match="naive"):
        next_fire(datetime(2026, 1, 1), "07:00", BERLIN)


def test_last_fire_and_day_is_local_date_of_send_time():
    # 23:30 UTC on Jan 15 is already Jan 16 in Tokyo; 08:00 JST Jan 16 = 23:00 UTC Jan 15.
    tokyo = ZoneInfo("Asia/Tokyo")
    day, inst = last_fire(utc(2026, 1, 15, 23, 30), "08:00", tokyo)
    assert (day, inst) == (date(2026, 1, 16), utc(2026, 1, 15, 23, 0))


def test_fires_within_window_bounds():
    at = time(7, 0)
    now = utc(2026, 1, 15, 9, 0)  # 10:00 Berlin: 3 hours late
    assert fires_within(now, at, BERLIN, timedelta(hours=6)) == [
        (date(2026, 1, 15), utc(2026, 1, 15, 6, 0))
    ]
    assert fires_within(now, at, BERLIN, timedelta(hours=3)) == []  # exactly at the edge: out
    # A 30-hour window spans yesterday's and today's send times, oldest first.
    days = [d for d, _ in fires_within(now, at, BERLIN, timedelta(hours=30))]
    assert days == [date(2026, 1, 14), date(2026, 1, 15)]


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2037, 12, 31)),
    st.sampled_from(
        [
            "Europe/Berlin",
            "America/New_York",
            "Australia/Lord_Howe",
            "Asia/Kolkata",
            "Pacific/Chatham",
            "UTC",
        ]
    ),
    st.integers(0, 23),
    st.sampled_from([0, 15, 30, 45]),
)
def test_next_fire_is_after_now_and_within_a_day_or_so(naive, tzname, hh, mm):
    now = naive.replace(tzinfo=UTC)
    tz = ZoneInfo(tzname)
    nxt = next_fire(now, f"{hh:02d}:{mm:02d}", tz)
    assert now < nxt <= now + timedelta(hours=26)
    # And it is the send instant of its own local day (never of a neighbouring day).
    wall = nxt.astimezone(tz)
    assert send_instant(wall.date(), time(hh, mm), tz) == nxt


def test_a_day_that_does_not_exist_locally_still_gets_its_one_digest():
    # Samoa skipped 2011-12-30 entirely (UTC-10 -> UTC+14 at midnight): the digest of the
    # 30th goes out at the first instant after, 00:00 on the 31st; the 31st's at 07:00.
    apia = ZoneInfo("Pacific/Apia")
    d30 = send_instant(date(2011, 12, 30), time(7, 0), apia)
    d31 = send_instant(date(2011, 12, 31), time(7, 0), apia)
    assert d30.astimezone(apia).replace(tzinfo=None) == datetime(2011, 12, 31, 0, 0)
    assert d31.astimezone(apia).replace(tzinfo=None) == datetime(2011, 12, 31, 7, 0)
    assert d30 < d31
