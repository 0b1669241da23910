"""`digest status`: why nothing went out, next run, per-subscriber last digest, retries."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

from test_schedule_service import FakeStore, make, sub

from digest.config import Config, ScheduleConfig
from digest.models import DEFERRED, PAUSED, SENT, RunReport
from digest.schedule.status import collect, lines, run_line, why_quiet


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def report(**kw) -> dict:
    return RunReport(day=date(2026, 1, 15), started="2026-01-15T06:00:00+00:00", **kw).to_dict()


def test_why_quiet_says_why():
    assert why_quiet(report(sent=3)) is None
    assert "0 new papers" in why_quiet(report(new_papers=0, empty=4, fetched={"huggingface": 9}))
    assert "nothing new matched" in why_quiet(report(new_papers=5, empty=4))
    assert "everyone already served" in why_quiet(report(already_done=7))
    msg = why_quiet(report(fetched={"huggingface": 0}, source_errors={"huggingface": "HTTP 503"}))
    assert msg.startswith("all sources failed") and "HTTP 503" in msg
    assert why_quiet(
        report() | {"error": "every source failed, nothing sent (hf: timeout)"}
    ).startswith("all sources failed")
    assert "wait for a retry" in why_quiet(report(deferred=2))
    assert "refused every digest" in why_quiet(report(failed=2))
    assert why_quiet(report()) == "no active subscriber was due"
    assert why_quiet(report(dry_run=True)) == "dry run: nothing is sent"


def test_collect_and_lines_after_a_run():
    svc, store, run, clock = make(
        [
            sub("a@x"),
            sub("b@x", send_hour=9, timezone="America/New_York"),
            sub("p@x", status=PAUSED),
        ],
        utc(2026, 1, 15, 6, 30),
    )
    svc.tick()
    store.records[("b@x", date(2026, 1, 14))] = DEFERRED
    cfg = Config(schedule=ScheduleConfig(time="07:00", timezone="Europe/Berlin"))
    st = collect(cfg, store, clock())
    assert st["next_run"] == "2026-01-15T14:00:00+00:00"  # b@x's 09:00 New York
    assert st["owed_now"] == []
    assert st["why_quiet"] is None
    people = {p["email"]: p for p in st["subscribers"]}
    assert people["a@x"]["last"]["state"] == SENT
    assert people["b@x"]["send_time"] == "09:00 America/New_York"
    assert people["p@x"]["status"] == PAUSED
    assert [r["email"] for r in st["pending_retries"]] == ["b@x"]
    assert st["pending_retries"][0]["retry"].startswith("no: beyond the misfire grace")
    text = "\n".join(lines(st))
    assert "schedule: 07:00 Europe/Berlin" in text
    assert st["day"] == {
        "day": "2026-01-15",
        "sent": 1,
        "empty": 0,
        "failed": 0,
        "deferred": 0,
        "none yet": 1,
    }  # b@x's 09:00 has not come
    assert "digests for 2026-01-15: sent 1, empty 0, failed 0, deferred 0, none yet 1" in text
    assert "next run: 2026-01-15T14:00:00+00:00 (in 7 h 30 min)" in text
    assert "waiting for retry: 1" in text and "451 try later" in text
    row = next(line for line in text.splitlines() if line.startswith("a@x"))
    assert row.split() == ["a@x", "active", "07:00", "Europe/Berlin", "2026-01-15", "sent", "1"]
    json.dumps(st)  # --json output is plain data


def test_status_before_any_run_and_when_owed():
    store = FakeStore([sub("a@x")])
    cfg = Config(schedule=ScheduleConfig(time="07:00", timezone="UTC"))
    st = collect(cfg, store, utc(2026, 1, 15, 8, 0))
    assert st["why_quiet"] == "no run yet"
    assert st["owed_now"] == [{"day": "2026-01-15", "subscribers": 1}]
    text = "\n".join(lines(st))
    assert "next run: now (owed: 2026-01-15: 1)" in text and "none yet" in text


def test_deferred_digest_within_grace_is_retried_at_the_next_tick():
    svc, store, run, clock = make([sub("a@x")], utc(2026, 1, 15, 6, 30))
    store.records[("a@x", date(2026, 1, 15))] = DEFERRED
    st = collect(
        Config(schedule=ScheduleConfig(time="07:00", timezone="Europe/Berlin")), store, clock()
    )
    assert st["pending_retries"][0]["retry"] == "at the next tick"
    assert "(retry: at the next tick)" in "\n".join(lines(st))
    assert [r.sent for r in svc.tick()] == [1]  # and the tick does retry it


def test_status_explains_a_quiet_day():
    svc, store, run, clock = make([sub("a@x")], utc(2026, 1, 15, 6, 30))
    store.record_run(
        RunReport(day=date(2026, 1, 15), new_papers=0, empty=1, fetched={"huggingface": 12})
    )
    text = "\n".join(lines(collect(Config(), store, clock())))
    assert "nothing went out in the last run: 0 new papers" in text


def test_run_line_shows_failures():
    assert "failed: boom" in run_line(report() | {"error": "boom"})
    assert "sent 2" in run_line(report(sent=2, fetched={"huggingface": 10}))


def test_status_caps_subscriber_rows():
    store = FakeStore([sub(f"u{i:02d}@x") for i in range(12)])
    st = collect(Config(), store, utc(2026, 1, 15, 3, 0), people=5)
    assert [p["email"] for p in st["subscribers"]] == [f"u{i:02d}@x" for i in range(5)]
    assert st["subscribers_total"] == 12
    assert "... and 7 more (--all lists everyone)" in lines(st)


def test_status_flags_an_unknown_subscriber_zone():
    store = FakeStore([sub("a@x", timezone="Nowhere/Atlantis")])
    st = collect(Config(), store, utc(2026, 1, 15, 3, 0))
    assert st["subscribers"][0]["send_time"] == "07:00 UTC (unknown zone 'Nowhere/Atlantis')"
