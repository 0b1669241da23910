"""I/O edge: reads a corpus and profiles from files, writes a TREC-style run file.

`digest rank --corpus FILE.jsonl --profiles FILE.json [--top 20] --out RUN.tsv` applies
the product's own `rank()` (the very function the daily run uses, popularity blend
included) to a relevance-dev style corpus, so ranking quality can be measured with
shared/relevance-dev/evaluate.py.

Corpus lines: {"id", "title", "abstract", "upvotes"?, "ai_keywords"?, "ai_summary"?,
"daily_date"?}. Profiles: [{"id", "keywords": [...], "excludes": [...]}].
"""

from __future__ import annotations

import argparse
import json
import typing
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any

from digest.config import Config, RankingConfig
from digest.errors import InputError
from digest.models import Paper, Pick, Subscriber
from digest.rank.model import rank


def _str_list(value: object, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{what}: expected a list of strings")
    return tuple(value)


def paper_from_json(obj: object, where: str) -> Paper:
    """One corpus line -> Paper; InputError naming the line when it is malformed."""
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a JSON object")
    pid, title, abstract = obj.get("id"), obj.get("title"), obj.get("abstract")
    if not isinstance(pid, str) or not pid.strip():
        raise InputError(f"{where}: missing string 'id'")
    if not isinstance(title, str) or not isinstance(abstract, str):
        raise InputError(f"{where}: 'title' and 'abstract' must be strings")
    upvotes = obj.get("upvotes")
    if upvotes is not None and (not isinstance(upvotes, int) or isinstance(upvotes, bool)):
        raise InputError(f"{where}: 'upvotes' must be an integer")
    day = obj.get("daily_date")
    try:
        listed = date.fromisoformat(day[:10]) if isinstance(day, str) else None
    except ValueError as e:
        raise InputError(f"{where}: 'daily_date' {day!r} is not an ISO date") from e
    summary = obj.get("ai_summary")
    return Paper(
        id=pid.strip(),
        title=" ".join(title.split()),
        abstract=abstract,
        listed_on=listed,
        ai_summary=summary if isinstance(summary, str) else None,
        ai_keywords=_str_list(obj.get("ai_keywords"), f"{where}: 'ai_keywords'"),
        upvotes=upvotes,
    )


def read_corpus(path: Path) -> list[Paper]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"corpus: cannot read {path}: {e}") from e
    papers = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"corpus: {path}:{n}: not JSON: {e.msg}") from e
        papers.append(paper_from_json(obj, f"corpus: {path}:{n}"))
    return papers


def read_profiles(path: Path, top: int) -> list[tuple[str, Subscriber]]:
    """(profile id, Subscriber) pairs; keywords + "-exclude" terms, max_papers = top."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"profiles: cannot read {path}: {e}") from e
    except json.JSONDecodeError as e:
        raise InputError(f"profiles: {path}: not JSON: {e.msg}") from e
    if not isinstance(data, list):
        raise InputError(f"profiles: {path}: expected a JSON list of profiles")
    out = []
    for i, prof in enumerate(data, 1):
        if not isinstance(prof, dict) or not isinstance(prof.get("id"), str):
            raise InputError(f"profiles: {path}: profile {i} needs a string 'id'")
        pid = prof["id"]
        kws = _str_list(prof.get("keywords"), f"profiles: {pid}: 'keywords'")
        exc = _str_list(prof.get("excludes"), f"profiles: {pid}: 'excludes'")
        # The email is only a key inside rank(); profiles are not subscribers.
        sub = Subscriber(
            email=f"profile-{i}@rank.invalid",
            keywords=kws + tuple("-" + x for x in exc),
            max_papers=top,
        )
        out.append((pid, sub))
    return out


def run_lines(
    picks: dict[str, tuple[Pick, ...]], profiles: list[tuple[str, Subscriber]]
) -> Iterable[str]:
    yield "profile_id\tpaper_id\trank"
    for pid, sub in profiles:
        for r, pick in enumerate(picks[sub.email], 1):
            yield f"{pid}\t{pick.paper_id}\t{r}"


def cli_rank(args: argparse.Namespace, cfg: Config | None = None) -> int:
    """Handler of `digest rank`: rank the corpus for every profile, write the run file.

    The popularity blend is the daily run's (cfg.ranking.popularity_weight) unless
    --popularity-weight overrides it."""
    if args.top < 1:
        raise InputError("rank: --top must be at least 1")
    weight = args.popularity_weight
    if weight is None:
        weight = (cfg.ranking if cfg is not None else RankingConfig()).popularity_weight
    if not 0.0 <= weight <= 1.0:
        raise InputError(f"rank: --popularity-weight must be within 0..1, got {weight}")
    papers = read_corpus(Path(args.corpus))
    profiles = read_profiles(Path(args.profiles), args.top)
    # A ranking, not a digest: every match in order (no cut), without trending papers.
    picks = rank(
        papers, [s for _, s in profiles], popularity_weight=weight, min_score=0.0, trending=0
    )
    text = "\n".join(run_lines(picks, profiles)) + "\n"
    try:
        Path(args.out).write_text(text, encoding="utf-8")
    except OSError as e:
        raise InputError(f"rank: cannot write {args.out}: {e}") from e
    n = sum(len(v) for v in picks.values())
    print(f"ranked {len(papers)} papers for {len(profiles)} profiles: {n} rows -> {args.out}")
    return 0


def _handler(cfg: Config | None, args: argparse.Namespace) -> int:
    """digest/cli.py calls every handler as func(cfg, args)."""
    return cli_rank(args, cfg)


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `rank` subcommand (the lead wires this into digest/cli.py)."""
    p = subparsers.add_parser(
        "rank",
        help="rank a corpus for relevance profiles and write a TREC-style run file",
        description="Apply the product's ranker to a corpus (JSONL) and profiles (JSON), "
        "writing profile_id<TAB>paper_id<TAB>rank for shared/relevance-dev/evaluate.py.",
    )
    p.add_argument("--corpus", required=True, help="papers, one JSON object per line")
    p.add_argument("--profiles", required=True, help="JSON list of {id, keywords, excludes}")
    p.add_argument("--top", type=int, default=20, help="papers per profile (default 20)")
    p.add_argument("--out", required=True, help="run file to write (TSV)")
    p.add_argument(
        "--popularity-weight",
        type=float,
        default=None,
        help="popularity blend 0..1 (default: the config's ranking.popularity_weight)",
    )
    p.set_defaults(func=_handler)
    return typing.cast(argparse.ArgumentParser, p)
