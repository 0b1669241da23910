"""Who is owed a digest, decided from delivery records, with an injected clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from digest.config import ScheduleConfig
from digest.models import DEFERRED, EMPTY, FAILED, PAUSED, SENT, Subscriber
from digest.schedule.clock import fires_within, send_instant
from digest.schedule.plan import (
    catch_up_plan,
    due,
    due_subscribers,
    next_send,
    slot_for,
    slots,
)

CFG = ScheduleConfig(time="07:00", timezone="Europe/Berlin", misfire_grace_hours=6)
LONG_AGO = "2025-01-01T00:00:00+00:00"


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def sub(email: str, **kw) -> Subscriber:
    kw.setdefault("created", LONG_AGO)
    return Subscriber(email=email, keywords=("llm",), **kw)


def test_before_send_time_nobody_is_due():
    assert catch_up_plan(utc(2026, 1, 15, 5, 59), [sub("a@x.org")], CFG, {}) == []


def test_at_send_time_everyone_active_is_due_for_the_local_day():
    subs = [sub("a@x.org"), sub("b@x.org"), sub("p@x.org", status=PAUSED)]
    plan = catch_up_plan(utc(2026, 1, 15, 6, 0), subs, CFG, {})
    assert [(g.day, sorted(g.emails)) for g in plan] == [
        (date(2026, 1, 15), ["a@x.org", "b@x.org"])
    ]
    assert plan[0].since == utc(2026, 1, 15, 6, 0)


def test_done_states_are_not_due_but_deferred_is_retried():
    d = date(2026, 1, 15)
    subs = [sub(e) for e in ("s@x", "f@x", "e@x", "d@x", "n@x")]
    states = {("s@x", d): SENT, ("f@x", d): FAILED, ("e@x", d): EMPTY, ("d@x", d): DEFERRED}
    plan = catch_up_plan(utc(2026, 1, 15, 8, 0), subs, CFG, states)
    assert [sorted(g.emails) for g in plan] == [["d@x", "n@x"]]


def test_store_lookup_callable_is_called_once_per_day():
    calls: list[date] = []

    def digests_for_day(d: date) -> dict[str, str]:
        calls.append(d)
        return {"a@x": SENT}

    subs = [sub("a@x"), sub("b@x"), sub("c@x")]
    plan = catch_up_plan(utc(2026, 1, 15, 8, 0), subs, CFG, digests_for_day)
    assert [sorted(g.emails) for g in plan] == [["b@x", "c@x"]]
    assert calls == [date(2026, 1, 15)]


def test_downtime_over_send_time_is_caught_up_once():
    """Down from 06:00 to 10:00 Berlin: on start the digest is owed; once recorded, not again."""
    subs = [sub("a@x"), sub("b@x")]
    start = utc(2026, 1, 15, 9, 0)
    records: dict[tuple[str, date], str] = {}
    plan = catch_up_plan(start, subs, CFG, records)
    assert len(plan) == 1 and plan[0].emails == {"a@x", "b@x"}
    for e in plan[0].emails:  # what run_daily records
        records[(e, plan[0].day)] = SENT
    for minutes in (0, 1, 60, 300):
        assert catch_up_plan(start + timedelta(minutes=minutes), subs, CFG, records) == []
    # The next day is owed at its own send time, not before.
    assert catch_up_plan(utc(2026, 1, 16, 5, 59), subs, CFG, records) == []
    assert [g.day for g in catch_up_plan(utc(2026, 1, 16, 6, 0), subs, CFG, records)] == [
        date(2026, 1, 16)
    ]


def test_crash_mid_run_restart_sends_only_the_rest():
    subs = [sub(f"u{i}@x") for i in range(10)]
    d = date(2026, 1, 15)
    records = {(f"u{i}@x", d): SENT for i in range(4)}
    plan = catch_up_plan(utc(2026, 1, 15, 6, 20), subs, CFG, records)
    assert plan[0].emails == {f"u{i}@x" for i in range(4, 10)}


def test_miss_older_than_grace_is_dropped():
    assert catch_up_plan(utc(2026, 1, 15, 12, 0), [sub("a@x")], CFG, {}) == []  # 6 h late
    long_grace = ScheduleConfig(time="07:00", timezone="Europe/Berlin", misfire_grace_hours=31)
    plan = catch_up_plan(utc(2026, 1, 15, 12, 0), [sub("a@x")], long_grace, {})
    assert [g.day for g in plan] == [date(2026, 1, 14), date(2026, 1, 15)]  # oldest first


def test_zero_grace_still_honours_a_slightly_late_tick():
    cfg = ScheduleConfig(time="07:00", timezone="Europe/Berlin", misfire_grace_hours=0)
    assert catch_up_plan(utc(2026, 1, 15, 6, 0, 30), [sub("a@x")], cfg, {})
    assert catch_up_plan(utc(2026, 1, 15, 6, 5), [sub("a@x")], cfg, {}) == []


def test_subscriber_created_after_send_time_starts_next_day():
    s = sub("new@x", created="2026-01-15T08:30:00+00:00")
    assert catch_up_plan(utc(2026, 1, 15, 9, 0), [s], CFG, {}) == []
    assert catch_up_plan(utc(2026, 1, 16, 6, 0), [s], CFG, {})
    naive = sub("n@x", created="2026-01-15T08:30:00")  # naive: read as UTC
    assert catch_up_plan(utc(2026, 1, 15, 9, 0), [naive], CFG, {}) == []
    junk = sub("j@x", created="yesterday-ish")  # unreadable: treated as long ago
    assert catch_up_plan(utc(2026, 1, 15, 9, 0), [junk], CFG, {})


def test_per_subscriber_hours_and_zones_are_honoured():
    ny9 = sub("ny@x", send_hour=9, timezone="America/New_York")  # 14:00 UTC in winter
    tokyo8 = sub("tk@x", send_hour=8, timezone="Asia/Tokyo")  # 23:00 UTC the day before
    berlin_default = sub("de@x")  # 07:00 Berlin = 06:00 UTC
    subs = [ny9, tokyo8, berlin_default]

    def owed(now: datetime) -> list[tuple[date, list[str]]]:
        return [(g.day, sorted(g.emails)) for g in catch_up_plan(now, subs, CFG, {})]

    assert owed(utc(2026, 1, 15, 5, 0)) == []
    assert owed(utc(2026, 1, 15, 6, 0)) == [(date(2026, 1, 15), ["de@x"])]
    assert owed(utc(2026, 1, 15, 14, 0)) == [(date(2026, 1, 15), ["ny@x"])]  # de@x: grace over
    # 23:00 UTC on the 15th is 08:00 on the 16th in Tokyo: the digest of the 16th.
    assert owed(utc(2026, 1, 15, 19, 59)) == [(date(2026, 1, 15), ["ny@x"])]
    assert owed(utc(2026, 1, 15, 23, 0)) == [(date(2026, 1, 16), ["tk@x"])]
    assert due(tokyo8, utc(2026, 1, 15, 23, 0), CFG, {})
    assert not due(berlin_default, utc(2026, 1, 15, 23, 0), CFG, {})


def test_subscriber_with_zone_only_uses_default_time_in_their_zone():
    s = sub("a@x", timezone="America/New_York")
    assert slot_for(s, CFG).label == "07:00 America/New_York"
    assert slot_for(sub("b@x", send_hour=18), CFG).label == "18:00 Europe/Berlin"


def test_unknown_subscriber_zone_falls_back_to_configured_zone():
    s = sub("a@x", timezone="Nowhere/Atlantis")
    assert slot_for(s, CFG).label == "07:00 Europe/Berlin"
    assert catch_up_plan(utc(2026, 1, 15, 6, 0), [s], CFG, {})


def test_due_subscribers_flattens_oldest_first():
    cfg = ScheduleConfig(time="07:00", timezone="Europe/Berlin", misfire_grace_hours=30)
    pairs = due_subscribers(utc(2026, 1, 15, 6, 0), [sub("b@x"), sub("a@x")], cfg, {})
    assert [(s.email, d) for s, d in pairs] == [
        ("a@x", date(2026, 1, 14)),
        ("b@x", date(2026, 1, 14)),
        ("a@x", date(2026, 1, 15)),
        ("b@x", date(2026, 1, 15)),
    ]


def test_group_only_predicate_selects_its_emails():
    plan = catch_up_plan(utc(2026, 1, 15, 6, 0), [sub("a@x")], CFG, {})
    only = plan[0].only()
    assert only(sub("a@x")) and not only(sub("z@x"))


def test_dst_days_each_subscriber_owed_exactly_once():
    """Walk a whole DST week tick by tick (every 10 min); count the runs per local day."""
    for tz, hour, first in (
        ("Europe/Berlin", 2, date(2026, 3, 27)),
        ("Europe/Berlin", 2, date(2026, 10, 23)),
        ("America/New_York", 1, date(2026, 10, 30)),
        ("America/New_York", 2, date(2026, 3, 6)),
    ):
        s = sub("a@x", send_hour=hour, timezone=tz)
        records: dict[tuple[str, date], str] = {}
        sends: list[date] = []
        now = utc(first.year, first.month, first.day)
        while now < utc(first.year, first.month, first.day) + timedelta(days=5):
            for g in catch_up_plan(now, [s], CFG, records):
                sends.append(g.day)
                records[("a@x", g.day)] = SENT
            now += timedelta(minutes=10)
        assert len(sends) == len(set(sends)) >= 4, (tz, sends)
        days = sorted(sends)
        assert all((b - a).days == 1 for a, b in zip(days, days[1:], strict=False)), (tz, sends)


def test_next_send_over_slots():
    subs = [sub("a@x", send_hour=9, timezone="America/New_York")]
    s = slots(subs, CFG)
    assert {x.label for x in s} == {"07:00 Europe/Berlin", "09:00 America/New_York"}
    assert next_send(utc(2026, 1, 15, 7, 0), s) == utc(2026, 1, 15, 14, 0)
    assert next_send(utc(2026, 1, 15, 15, 0), s) == utc(2026, 1, 16, 6, 0)
    assert time(7) == slot_for(subs[0], CFG).at.replace(hour=7)


@settings(max_examples=60, deadline=None)
@given(
    people=st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(0, 23)),
            st.sampled_from(
                [None, "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]
            ),
        ),
        min_size=1,
        max_size=5,
    ),
    grace_h=st.sampled_from([1, 6, 30]),
    start=st.datetimes(min_value=datetime(2026, 3, 5), max_value=datetime(2026, 11, 5)),
    gaps=st.lists(st.floats(0.01, 0.99), min_size=20, max_size=120),
)
def test_property_ticks_closer_than_grace_serve_every_day_exactly_once(
    people, grace_h, start, gaps
):
    """Ticks at random moments, never further apart than the grace: every send instant
    between the first and the last tick is served exactly once, never early, never later
    than the grace."""
    cfg = ScheduleConfig(time="07:00", timezone="Europe/Berlin", misfire_grace_hours=grace_h)
    subs = [sub(f"p{i}@x", send_hour=h, timezone=z) for i, (h, z) in enumerate(people)]
    records: dict[tuple[str, date], str] = {}
    served: list[tuple[str, date, datetime]] = []
    t = start.replace(tzinfo=UTC)
    ticks = [t]
    for g in gaps:
        t += timedelta(hours=g * grace_h)
        ticks.append(t)
    for now in ticks:
        for grp in catch_up_plan(now, subs, cfg, records):
            for e in grp.emails:
                served.append((e, grp.day, now))
                records[(e, grp.day)] = SENT
    keys = [(e, d) for e, d, _ in served]
    assert len(keys) == len(set(keys))  # never twice
    by_email = {s.email: s for s in subs}
    for e, d, when in served:
        slot = slot_for(by_email[e], cfg)
        inst = send_instant(d, slot.at, slot.tz)
        assert inst <= when < inst + timedelta(hours=grace_h)  # never early, never too late
    for s in subs:  # every send instant inside the ticked span was served
        slot = slot_for(s, cfg)
        for d, inst in fires_within(ticks[-1], slot.at, slot.tz, ticks[-1] - ticks[0]):
            if inst >= ticks[0]:
                assert (s.email, d) in set(keys), (s, d, inst)
