"""I/O edge: the `digest serve` and `digest status` subcommands (wired by digest.cli)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from digest.config import Config

STATUS_ROWS = 50  # subscriber rows `digest status` shows without --all


def register(subparsers: Any) -> None:
    s = subparsers.add_parser(
        "serve",
        help="run by itself: send each day's digest at the scheduled local time",
        description="One long-running process: sends each subscriber's digest at their local "
        "send time ([schedule] time/timezone, or their own hour), catches up on start what "
        "downtime or a crash left unsent (within misfire_grace_hours), and stops cleanly on "
        "SIGTERM/SIGINT.",
    )
    s.add_argument(
        "--web",
        action="store_true",
        help="also serve the web pages in this process ([web] host/port)",
    )
    s.add_argument("--quiet", action="store_true", help="log warnings only")
    s.set_defaults(func=cmd_serve)

    st = subparsers.add_parser(
        "status", help="last runs, next run, each subscriber's last digest, pending retries"
    )
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.add_argument("--runs", type=int, default=5, help="how many recent runs (default 5)")
    st.add_argument(
        "--all",
        action="store_true",
        help="list every subscriber (default: the first 50 by address)",
    )
    st.set_defaults(func=cmd_status)


def cmd_serve(cfg: Config, args: argparse.Namespace) -> int:
    from digest.schedule.service import serve

    logging.basicConfig(
        stream=sys.stderr,
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # "job added/executed" noise
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return serve(cfg, web=args.web)


def cmd_status(cfg: Config, args: argparse.Namespace) -> int:
    from digest.errors import InputError
    from digest.schedule.service import utcnow
    from digest.schedule.status import collect, lines
    from digest.store import open_store

    if args.runs < 1:
        raise InputError(f"--runs: expected a positive number, got {args.runs}")
    store = open_store(cfg.store)
    try:
        status = collect(
            cfg, store, utcnow(), runs=args.runs, people=None if args.all else STATUS_ROWS
        )
    finally:
        store.close()
    if args.json:
        print(json.dumps(status, indent=1, default=str))
    else:
        print("\n".join(lines(status)))
    return 0
