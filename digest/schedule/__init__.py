"""Scheduling: `digest serve` runs the daily job by itself, `digest status` explains it.

clock.py    Pure: local send times as UTC instants, DST-correct (zoneinfo)
plan.py     Pure: who is owed which day's digest, decided by the delivery records
service.py  I/O edge: the long-running process (APScheduler, signals, web thread)
status.py   I/O edge: what ran, what is next, who got what (reads the store)
cli.py      `digest serve` and `digest status`
"""

from digest.schedule.clock import last_fire, next_fire, send_instant
from digest.schedule.plan import DueGroup, Slot, catch_up_plan, due, due_subscribers

__all__ = [
    "DueGroup",
    "Slot",
    "catch_up_plan",
    "due",
    "due_subscribers",
    "last_fire",
    "next_fire",
    "send_instant",
]
