"""I/O edge (reads the store in `collect`); the rest is pure: what `digest status` says.

It answers: what ran (the stored run reports), why nothing went out on a quiet day, when
the next run is, what each subscriber last got, and which digests wait for a retry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from digest.config import Config
from digest.models import ACTIVE, DEFERRED, EMPTY, FAILED, SENT, Subscriber
from digest.schedule.clock import last_fire
from digest.schedule.plan import catch_up_plan, next_send, slot_for, slots
from digest.store.base import Store


def collect(
    cfg: Config, store: Store, now_utc: datetime, *, runs: int = 5, people: int | None = None
) -> dict[str, Any]:
    """Everything `digest status` shows, as plain JSON-ready data. `people` caps the
    per-subscriber rows (each is a history lookup); None lists everyone."""
    subs = sorted(store.subscribers(), key=lambda s: s.email)
    plan = catch_up_plan(now_utc, subs, cfg.schedule, store.digests_for_day)
    nxt = next_send(now_utc, slots(subs, cfg.schedule))
    recent = [r.to_dict() for r in store.runs(limit=runs)]
    owed = {(e, g.day.isoformat()) for g in plan for e in g.emails}
    retries = []
    for r in (rec.to_dict() for rec in store.pending_retries()):
        # serve retries a DEFERRED digest at its hourly rechecks while the day is within the
        # misfire grace; after that the day is dropped and, as its papers were not
        # delivered, they stay eligible for the next digest.
        again = (r.get("email"), r.get("day")) in owed
        retries.append(
            dict(r)
            | {
                "retry": "at the next tick"
                if again
                else "no: beyond the misfire grace; its papers go into the next digest"
            }
        )
    rows = []
    for s in subs if people is None else subs[:people]:
        last = store.history(s.email, limit=1)
        rows.append(
            {
                "email": s.email,
                "status": s.status,
                "send_time": _send_time(s, cfg),
                "last": last[0].to_dict() if last else None,
            }
        )
    # The latest day of the configured send time: how far along is it?
    last_day, _ = last_fire(now_utc, cfg.schedule.time, cfg.schedule.timezone)
    states = store.digests_for_day(last_day)
    active = [s.email for s in subs if s.status == ACTIVE]
    counts = {k: 0 for k in (SENT, EMPTY, FAILED, DEFERRED)}
    for e in active:
        if states.get(e) in counts:
            counts[states[e]] += 1
    counts["none yet"] = sum(1 for e in active if e not in states)
    return {
        "now": now_utc.isoformat(timespec="seconds"),
        "day": {"day": last_day.isoformat(), **counts},
        "schedule": {
            "time": cfg.schedule.time,
            "timezone": cfg.schedule.timezone,
            "misfire_grace_hours": cfg.schedule.misfire_grace_hours,
            "send_empty": cfg.schedule.send_empty,
        },
        "next_run": now_utc.isoformat(timespec="seconds")
        if plan
        else nxt.isoformat(timespec="seconds"),
        "owed_now": [{"day": g.day.isoformat(), "subscribers": len(g.emails)} for g in plan],
        "runs": recent,
        "why_quiet": why_quiet(recent[0]) if recent else "no run yet",
        "subscribers": rows,
        "subscribers_total": len(subs),
        "pending_retries": retries,
    }


def _send_time(sub: Subscriber, cfg: Config) -> str:
    label = slot_for(sub, cfg.schedule).label
    if sub.timezone and not label.endswith(f" {sub.timezone}"):
        label += f" (unknown zone {sub.timezone!r})"  # slot_for fell back to [schedule]
    return label


def why_quiet(run: Mapping[str, Any]) -> str | None:
    """Why the run sent nothing, in one line; None when it sent something."""
    if run.get("error"):
        err = str(run["error"])
        if "every source failed" in err or "all sources failed" in err.lower():
            return f"all sources failed: {err}"
        return f"the run failed: {err}"
    if int(run.get("sent", 0)):
        return None
    if run.get("dry_run"):
        return "dry run: nothing is sent"
    fetched = run.get("fetched") or {}
    errors = run.get("source_errors") or {}
    empty, done = int(run.get("empty", 0)), int(run.get("already_done", 0))
    deferred, failed = int(run.get("deferred", 0)), int(run.get("failed", 0))
    if errors and not any(fetched.values()):
        return "all sources failed: " + "; ".join(f"{k}: {v}" for k, v in errors.items())
    if deferred:
        return f"the mail server refused for now: {deferred} digest(s) wait for a retry"
    if failed and not empty:
        return f"the mail server refused every digest permanently ({failed})"
    if empty and int(run.get("new_papers", 0)) == 0:
        return f"0 new papers: {empty} empty digest(s) not sent ([schedule] send_empty = false)"
    if empty:
        return (
            f"nothing new matched: {empty} subscriber(s) had no unseen paper above "
            "their threshold; empty digests are not sent"
        )
    if done:
        return f"everyone already served: {done} digest(s) for this day were done before"
    return "no active subscriber was due"


def lines(status: Mapping[str, Any]) -> list[str]:
    """The human-readable status (pure)."""
    sc = status["schedule"]
    out = [
        f"schedule: {sc['time']} {sc['timezone']} (misfire grace {sc['misfire_grace_hours']:g}"
        f" h; empty digests {'sent' if sc['send_empty'] else 'not sent'})"
    ]
    if status["owed_now"]:
        owed = ", ".join(f"{o['day']}: {o['subscribers']}" for o in status["owed_now"])
        out.append(f"next run: now (owed: {owed})")
    else:
        nxt = datetime.fromisoformat(status["next_run"])
        wait = int((nxt - datetime.fromisoformat(status["now"])).total_seconds() // 60)
        out.append(f"next run: {status['next_run']} (in {wait // 60} h {wait % 60} min)")
    d = status["day"]
    out.append(
        f"digests for {d['day']}: " + ", ".join(f"{k} {v}" for k, v in d.items() if k != "day")
    )
    out.append("")
    out.append("last runs:")
    if not status["runs"]:
        out.append("  none yet")
    for r in status["runs"]:
        out.append("  " + run_line(r))
    if status["why_quiet"]:
        out.append(f"nothing went out in the last run: {status['why_quiet']}")
    out.append("")
    out += (
        table(
            ("subscriber", "status", "send time", "last digest", "state", "papers"),
            [
                (
                    p["email"],
                    p["status"],
                    p["send_time"],
                    p["last"]["day"] if p["last"] else "-",
                    p["last"]["state"] if p["last"] else "-",
                    str(len(p["last"].get("papers") or ())) if p["last"] else "-",
                )
                for p in status["subscribers"]
            ],
        )
        if status["subscribers"]
        else ["no subscribers"]
    )
    hidden = status["subscribers_total"] - len(status["subscribers"])
    if hidden > 0:
        out.append(f"... and {hidden} more (--all lists everyone)")
    out.append("")
    retries = status["pending_retries"]
    out.append(f"waiting for retry: {len(retries)}")
    for r in retries:
        out.append(
            f"  {r.get('email', '?')} {r.get('day', '?')}: {r.get('detail', '')} "
            f"(retry: {r.get('retry', '?')})"
        )
    return out


def run_line(r: Mapping[str, Any]) -> str:
    head = f"{r.get('day', '?')} started {r.get('started', '?')}"
    if r.get("error"):
        return f"{head}: failed: {r['error']}"
    fetched = ", ".join(f"{k} {v}" for k, v in (r.get("fetched") or {}).items()) or "none"
    return (
        f"{head}: fetched {fetched}; new {r.get('new_papers', 0)}; sent {r.get('sent', 0)}, "
        f"failed {r.get('failed', 0)}, deferred {r.get('deferred', 0)}, "
        f"empty {r.get('empty', 0)}, already done {r.get('already_done', 0)}"
    )


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header).rstrip(), fmt.format(*("-" * w for w in widths))] + [
        fmt.format(*map(str, row)).rstrip() for row in rows
    ]
