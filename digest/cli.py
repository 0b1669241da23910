"""I/O edge: the command line. Parses arguments, calls the pipeline or the store, prints.

Every DigestError becomes one line on stderr and a non-zero exit code; "nothing new"
is success (exit 0).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from digest import __version__
from digest.config import Config, load_config
from digest.errors import DigestError, InputError, UnknownSubscriber
from digest.models import Subscriber
from digest.store.base import Store

# Subcommands that live beside their feature: module -> register(subparsers).
PLUGINS = (
    "digest.sources.cli",
    "digest.rank.cli",
    "digest.web.cli",
    "digest.schedule.cli",
    "digest.store.cli",
)


def parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InputError(f"--date: {text!r} is not a date; expected YYYY-MM-DD") from None


def today(cfg: Config) -> date:
    """The run's date: today in the schedule's time zone (what cron users expect)."""
    return datetime.now(ZoneInfo(cfg.schedule.timezone)).date()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="digest",
        description="Daily email digest of trending research papers, ranked for each subscriber.",
    )
    p.add_argument("--config", help="TOML config file (default: $DIGEST_CONFIG, else defaults)")
    p.add_argument("--version", action="version", version=f"digest {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    r = sub.add_parser("run", help="the daily job: fetch, diff, rank, render, send, record")
    r.add_argument("--date", type=str, help="run as of this day, YYYY-MM-DD (backfill, replay)")
    r.add_argument("--dry-run", action="store_true", help="do everything but send and record")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("subscribers", help="manage subscribers")
    ss = s.add_subparsers(dest="subcommand", metavar="ACTION")
    ss.required = True
    a = ss.add_parser("add", help="add a subscriber (active at once)")
    a.add_argument("email")
    a.add_argument(
        "--keywords",
        default="",
        help='e.g. "continual pretraining, low-resource, '
        '-survey" (quoted phrases allowed; -term excludes)',
    )
    a.add_argument("--max", type=str, default=None, help="max papers per digest (default 10)")
    a.add_argument("--min-score", type=str, default=None, help="minimum relevance score")
    a.set_defaults(func=cmd_sub_add)
    ls = ss.add_parser("list", help="list subscribers")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_sub_list)
    u = ss.add_parser("update", help="change a subscriber")
    u.add_argument("email")
    u.add_argument("--keywords")
    u.add_argument("--max")
    u.add_argument("--min-score")
    u.add_argument("--status", choices=("active", "paused", "unsubscribed"))
    u.add_argument(
        "--send-hour",
        metavar="H",
        help='their own local send hour, 0-23 (used by `digest serve`; "" = the [schedule] time)',
    )
    u.add_argument(
        "--timezone",
        metavar="ZONE",
        help='their time zone, e.g. Europe/Berlin ("" = the [schedule] timezone)',
    )
    u.set_defaults(func=cmd_sub_update)
    rm = ss.add_parser("remove", help="delete a subscriber")
    rm.add_argument("email")
    rm.set_defaults(func=cmd_sub_remove)
    im = ss.add_parser("import", help="import a CSV file with columns email, keywords, max")
    im.add_argument("file")
    im.set_defaults(func=cmd_sub_import)

    pv = sub.add_parser("preview", help="write one subscriber's digest as HTML, sending nothing")
    pv.add_argument("email")
    pv.add_argument("--date", type=str)
    pv.add_argument("--out", help="output file (default: preview-<date>.html)")
    pv.set_defaults(func=cmd_preview)

    c = sub.add_parser("check-config", help="validate the config file and print the result")
    c.set_defaults(func=cmd_check_config)

    for mod in PLUGINS:
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name and mod.startswith(e.name):
                continue  # feature not installed in this build
            raise
        module.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
        return int(args.func(cfg, args) or 0)
    except DigestError as e:
        print(f"digest: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("digest: interrupted", file=sys.stderr)
        return 130


# ----------------------------------------------------------------------------- commands


def cmd_run(cfg: Config, args: argparse.Namespace) -> int:
    from digest.pipeline import run_daily

    day = parse_day(args.date) if args.date else today(cfg)
    report = run_daily(cfg, day, dry_run=args.dry_run, progress=False if args.no_progress else None)
    print("\n".join(report.lines()))
    if not cfg.smtp.host and report.sent:
        print(f"  outbox: {cfg.outbox.path} (no [smtp] host configured)")
    return 1 if report.deferred else 0


@contextmanager
def _store(cfg: Config) -> Iterator[Store]:
    from digest.store import open_store

    store = open_store(cfg.store)
    try:
        yield store
    finally:
        store.close()


def cmd_sub_add(cfg: Config, args: argparse.Namespace) -> int:
    from digest.subscribers import make_subscriber

    sub = make_subscriber(
        args.email,
        args.keywords,
        args.max,
        args.min_score,
        created=datetime.now().astimezone().isoformat(timespec="seconds"),
        default_max=cfg.ranking.default_max_papers,
    )
    with _store(cfg) as store:
        existed = store.get_subscriber(sub.email) is not None
        store.put_subscribers([sub])
    verb = "updated" if existed else "added"
    print(
        f"{verb} {sub.email}: keywords {', '.join(sub.keywords) or '(none: most popular)'}; "
        f"max {sub.max_papers}"
    )
    return 0


def cmd_sub_list(cfg: Config, args: argparse.Namespace) -> int:
    with _store(cfg) as store:
        subs = sorted(store.subscribers(), key=lambda s: s.email)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "email": s.email,
                        "keywords": list(s.keywords),
                        "max": s.max_papers,
                        "min_score": s.min_score,
                        "status": s.status,
                        "send_hour": s.send_hour,
                        "timezone": s.timezone,
                    }
                    for s in subs
                ],
                indent=1,
            )
        )
        return 0
    if not subs:
        print('no subscribers (add one: digest subscribers add EMAIL --keywords "...")')
    for s in subs:
        when = (
            ""
            if s.send_hour is None and s.timezone is None
            else (
                f"\tsends {'default hour' if s.send_hour is None else f'{s.send_hour:02d}:00'}"
                f" {s.timezone or 'default zone'}"
            )
        )
        print(f"{s.email}\t{s.status}\tmax {s.max_papers}\t{', '.join(s.keywords)}{when}")
    return 0


def cmd_sub_update(cfg: Config, args: argparse.Namespace) -> int:
    from digest.subscribers import normalise_email, update_subscriber

    email = normalise_email(args.email)

    def change(sub: Subscriber | None) -> Subscriber:
        if sub is None:
            raise UnknownSubscriber(f"no subscriber {email}")
        return update_subscriber(
            sub, args.keywords, args.max, args.min_score, args.status, args.send_hour, args.timezone
        )

    with _store(cfg) as store:
        store.update_subscriber(email, change)  # atomic: a web change meanwhile is not lost
    print(f"updated {email}")
    return 0


def cmd_sub_remove(cfg: Config, args: argparse.Namespace) -> int:
    from digest.subscribers import normalise_email

    email = normalise_email(args.email)
    with _store(cfg) as store:
        if not store.remove_subscriber(email):
            raise UnknownSubscriber(f"no subscriber {email}")
    print(f"removed {email}")
    return 0


def cmd_sub_import(cfg: Config, args: argparse.Namespace) -> int:
    from digest.subscribers import parse_csv

    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read: {e}") from e
    stamp = datetime.now().astimezone().isoformat(timespec="seconds")
    subs, errors = parse_csv(text, created=stamp, default_max=cfg.ranking.default_max_papers)
    for line, msg in errors:
        print(f"{path}:{line}: skipped: {msg}", file=sys.stderr)
    with _store(cfg) as store:
        store.put_subscribers(subs)
    print(f"imported {len(subs)} subscribers, skipped {len(errors)} bad rows")
    return 0


def cmd_preview(cfg: Config, args: argparse.Namespace) -> int:
    from digest.pipeline import preview

    day = parse_day(args.date) if args.date else today(cfg)
    out = Path(args.out or f"preview-{day.isoformat()}.html")
    n, notes = preview(cfg, args.email, day, out)
    for note in notes:
        print(f"note: {note}")
    print(f"wrote {out} ({n} papers)")
    return 0


def cmd_check_config(cfg: Config, args: argparse.Namespace) -> int:
    where = cfg.path or "built-in defaults"
    print(f"config OK: {where}")
    hf = cfg.sources.huggingface
    print(
        f"  sources: huggingface {'on' if hf.enabled else 'off'} ({hf.base_url}, "
        f"{hf.mode}, look-back {hf.lookback_days} days); arXiv "
        f"{', '.join(cfg.sources.arxiv.categories) or 'off'}"
    )
    print(f"  store: {cfg.store.path}")
    if cfg.smtp.host:
        print(f"  smtp: {cfg.smtp.host}:{cfg.smtp.port} ({cfg.smtp.security}) as {cfg.smtp.sender}")
        for env in (cfg.smtp.username_env, cfg.smtp.password_env):
            if env:
                import os

                if env not in os.environ:
                    raise InputError(f"[smtp] names environment variable {env}, which is not set")
    else:
        print(f"  smtp: none configured, messages go to the outbox folder {cfg.outbox.path}")
    print(
        f"  web: {cfg.web.base_url} (secret from ${cfg.web.secret_env}"
        f"{'' if cfg.secret() else ', unset: a generated one kept in the store is used'})"
    )
    print(f"  schedule: {cfg.schedule.time} {cfg.schedule.timezone}")
    from digest.subscribers import make_subscriber

    for i, seed in enumerate(cfg.subscribers, 1):
        try:
            make_subscriber(seed.email, seed.keywords, seed.max_papers, seed.min_score)
        except InputError as e:
            raise InputError(f"{where}: [subscribers #{i}] {e}") from e
    print(f"  seeded subscribers: {len(cfg.subscribers)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
