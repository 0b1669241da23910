"""I/O edge: the `digest web` subcommand (wired into digest.cli through `register`)."""

from __future__ import annotations

import argparse
from typing import Any

from digest.config import Config


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "web",
        help="run the subscription web service (subscribe, confirm, manage, unsubscribe, feed)",
        description="Serve the subscribe/confirm/manage/unsubscribe pages and personal Atom "
        "feeds with uvicorn. Put it behind an HTTPS reverse proxy and set [web] base_url "
        "to its public URL.",
    )
    p.add_argument("--host", help="address to listen on (default: [web] host)")
    p.add_argument("--port", type=int, help="port to listen on (default: [web] port)")
    p.set_defaults(func=cmd_web)


def cmd_web(cfg: Config, args: argparse.Namespace) -> int:
    from digest.web.app import serve

    serve(cfg, host=args.host, port=args.port)
    return 0
