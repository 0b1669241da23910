"""I/O edge: the `digest fetch` subcommand (wired into digest.cli through `register`).

`digest fetch [--date YYYY-MM-DD] [--json] [--limit N]` fetches every enabled source
exactly as `digest run` would, merges identities, and prints what came back: per source
the papers, bad items skipped, requests, notes and errors, then the merged papers. It
stores nothing and sends nothing, so it is the way to check the network, the [sources]
config and a source's health. Exit status 3 (AllSourcesFailed) when every source failed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any, TextIO

from digest.config import Config
from digest.errors import AllSourcesFailed
from digest.models import FetchResult, Paper


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "fetch",
        help="fetch and merge today's papers from the sources; store and send nothing",
        description="Fetch every enabled source (Hugging Face daily papers, arXiv) as "
        "`digest run` would, merge identities, and print the result. Nothing is stored "
        "or sent.",
    )
    p.add_argument("--date", help="the run's date, YYYY-MM-DD (default: today)")
    p.add_argument("--json", action="store_true", help="print the merged papers as JSON")
    p.add_argument(
        "--limit",
        type=int,
        default=20,
        help="papers to list in the text output (default 20; 0 = all)",
    )
    p.set_defaults(func=cmd_fetch)


def cmd_fetch(cfg: Config, args: argparse.Namespace, out: TextIO | None = None) -> int:
    import sys

    from digest.cli import parse_day, today
    from digest.sources import fetch_all, merge

    stream = out or sys.stdout
    day = parse_day(args.date) if args.date else today(cfg)
    results = fetch_all(cfg, day)
    if not results:
        print(
            "no source is enabled: see [sources.huggingface] enabled and "
            "[sources.arxiv] categories",
            file=stream,
        )
        return 0
    papers = merge(results)
    if args.json:
        json.dump([paper_json(p) for p in papers], stream, ensure_ascii=False, indent=1)
        stream.write("\n")
    else:
        stream.write("\n".join(summary(results, papers, args.limit)) + "\n")
    if all(not r.ok for r in results):
        errors = "; ".join(r.error or "" for r in results)
        raise AllSourcesFailed(f"every source failed ({errors})")
    return 0


def summary(results: Sequence[FetchResult], papers: Sequence[Paper], limit: int) -> list[str]:
    """Text lines: one block per source, then the merged papers (at most `limit`)."""
    lines = []
    for r in results:
        if r.ok:
            lines.append(
                f"{r.source}: {len(r.papers)} papers, {r.skipped} skipped as bad, "
                f"{r.requests} requests"
            )
        else:
            lines.append(f"{r.source}: FAILED: {r.error}")
        lines += [f"  note: {n}" for n in r.notes]
    lines.append(f"merged: {len(papers)} papers")
    shown = papers if limit <= 0 else papers[:limit]
    for p in shown:
        votes = f"{p.upvotes:>4}^" if p.upvotes is not None else "     "
        lines.append(f"  {p.id:<16} {votes} {p.title[:90]}")
    if len(shown) < len(papers):
        lines.append(f"  … and {len(papers) - len(shown)} more (--limit 0 lists all)")
    return lines


def paper_json(p: Paper) -> dict[str, Any]:
    return {
        "id": p.id,
        "title": p.title,
        "authors": list(p.authors),
        "listed_on": p.listed_on.isoformat() if p.listed_on else None,
        "upvotes": p.upvotes,
        "sources": list(p.sources),
        "ai_keywords": list(p.ai_keywords),
        "github_repo": p.github_repo,
        "project_page": p.project_page,
        "url": p.arxiv_url,
    }
