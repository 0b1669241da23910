"""I/O edge: the command line. Parses arguments, calls the pipeline or the store, prints.

Every DigestError becomes one line on stderr and a non-zero exit code; "nothing new"
is success (exit 0). `--config FILE` is accepted before or after any subcommand
(`digest run --config X`), and `--keywords -survey` works without `=`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from digest import __version__
from digest.config import Config, load_config
from digest.errors import DigestError, InputError, UnknownSubscriber
from digest.models import UNSUBSCRIBED, Subscriber
from digest.store.base import Store

# Subcommands that live beside their feature: module -> register(subparsers).
PLUGINS = (
    "digest.checks",
    "digest.sources.cli",
    "digest.rank.cli",
    "digest.web.cli",
    "digest.schedule.cli",
    "digest.store.cli",
)
CONFIG_HELP = "TOML config file (default: $DIGEST_CONFIG, else built-in defaults)"
# Options whose value may start with "-": argparse takes "-survey" for an option, so
# `--keywords -survey` is rewritten to `--keywords=-survey` before parsing.
DASH_VALUE_OPTIONS = frozenset({"--keywords"})


PAPERS_HELP = (
    "example papers of their interests: arXiv ids or arXiv / Hugging Face URLs, comma "
    "separated (looked up in the store, else on arXiv); keywords are optional with them"
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
    p.add_argument("--config", help=CONFIG_HELP)
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
    a = ss.add_parser(
        "add", help="add a new subscriber (active at once; an existing one: use update)"
    )
    a.add_argument("email")
    a.add_argument(
        "--keywords",
        default="",
        help='e.g. "continual pretraining, low-resource, '
        '-survey" (quoted phrases allowed; -term excludes)',
    )
    a.add_argument("--max", type=str, default=None, help="max papers per digest (default 10)")
    a.add_argument("--papers", default="", help=PAPERS_HELP)
    a.add_argument(
        "--min-score",
        type=str,
        default=None,
        help="their own relevance cut, 0-100 (default: [ranking] min_score)",
    )
    _section_options(a)
    a.set_defaults(func=cmd_sub_add)
    ls = ss.add_parser("list", help="list subscribers")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_sub_list)
    u = ss.add_parser("update", help="change a subscriber")
    u.add_argument("email")
    u.add_argument("--keywords")
    u.add_argument("--max")
    u.add_argument("--papers", default=None, help=PAPERS_HELP + ' ("" = none)')
    u.add_argument("--min-score", help='their own relevance cut, 0-100 ("" = [ranking] min_score)')
    _section_options(u)
    u.add_argument("--status", choices=("active", "paused", "unsubscribed"))
    u.add_argument(
        "--resubscribe",
        action="store_true",
        help="make an UNSUBSCRIBED address active again (only when its owner asked you)",
    )
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
    im = ss.add_parser(
        "import",
        help="add or update subscribers from a CSV file with columns email, keywords, max "
        "(comma, semicolon or tab separated)",
    )
    im.add_argument("file")
    im.set_defaults(func=cmd_sub_import)

    pv = sub.add_parser("preview", help="write one subscriber's digest as HTML, sending nothing")
    pv.add_argument("email")
    pv.add_argument("--date", type=str)
    pv.add_argument("--out", help="output file (default: preview-<date>.html)")
    pv.set_defaults(func=cmd_preview)

    for mod in PLUGINS:
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name and mod.startswith(e.name):
                continue  # feature not installed in this build
            raise
        module.register(sub)
    _config_everywhere(p)
    return p


def _section_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trending",
        metavar="N",
        help='trending papers per digest, 0 = none ("" = [digest] trending)',
    )
    p.add_argument(
        "--no-match",
        choices=("send", "skip"),
        help="a day without a match: send the trending papers (default) or nothing",
    )


def _config_everywhere(parser: argparse.ArgumentParser) -> None:
    """Every subcommand (plugins' and nested ones too) also takes --config, so options may
    follow the command. SUPPRESS: a subcommand that was not given it keeps the top-level
    value instead of overwriting it with None."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in {id(s): s for s in action.choices.values()}.values():
                if not any("--config" in a.option_strings for a in sub._actions):
                    sub.add_argument("--config", default=argparse.SUPPRESS, help=CONFIG_HELP)
                _config_everywhere(sub)


def join_dash_values(argv: Sequence[str]) -> list[str]:
    """`--keywords -survey` -> `--keywords=-survey` (see DASH_VALUE_OPTIONS). A value
    that starts with "--" is left alone: that is the next option."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            out.extend(argv[i:])
            break
        nxt = argv[i + 1] if i + 1 < len(argv) else ""
        if arg in DASH_VALUE_OPTIONS and nxt.startswith("-") and not nxt.startswith("--"):
            out.append(f"{arg}={nxt}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(join_dash_values(sys.argv[1:] if argv is None else argv))
    try:
        cfg = load_config(args.config)
        if cfg.path is None:
            # Nothing names a config: say so, since the store is made in this folder.
            mail = "" if cfg.smtp.host else f", outbox {cfg.outbox.path.absolute()}"
            print(
                "digest: no config file (--config FILE or $DIGEST_CONFIG): built-in "
                f"defaults, store {cfg.store.path.absolute()}{mail}",
                file=sys.stderr,
            )
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
        trending=args.trending,
        no_match=args.no_match,
    )

    def add(known: Subscriber | None) -> Subscriber:
        if known is not None:
            raise InputError(already_known(known))
        return sub

    with _store(cfg) as store:
        if args.papers:  # interests by example (digest/examples.py)
            from digest.examples import examples_for
            from digest.rank.learn import with_examples

            if store.get_subscriber(sub.email) is not None:
                raise InputError(already_known(store.get_subscriber(sub.email)))  # type: ignore[arg-type]
            sub = with_examples(sub, examples_for(cfg, store, args.papers))
        store.update_subscriber(sub.email, add)  # atomic: a web subscribe meanwhile is kept
    what = ", ".join(sub.keywords) or (
        "(none: by example)" if sub.examples else "(none: most popular)"
    )
    ex = f"; {len(sub.examples)} example papers" if sub.examples else ""
    print(f"added {sub.email}: keywords {what}; max {sub.max_papers}{ex}")
    return 0


def already_known(sub: Subscriber) -> str:
    """Why `add` refuses an address the store knows, and what to do instead."""
    if sub.status == UNSUBSCRIBED:
        return (
            f"{sub.email} unsubscribed: only its owner brings it back (the web page's "
            f"double opt-in), or, if they asked you, `digest subscribers update {sub.email} "
            "--resubscribe`"
        )
    return (
        f"{sub.email} is already a subscriber ({sub.status}); change it with "
        f"`digest subscribers update {sub.email} --keywords ... --max N`"
    )


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
                        "trending": s.trending,
                        "no_match": s.no_match,
                        "papers": [pid for pid, _ in s.examples],
                        "ratings": {
                            "up": sum(1 for r in s.ratings if r[1] > 0),
                            "down": sum(1 for r in s.ratings if r[1] < 0),
                        },
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
        taught = (
            f"\t{len(s.examples)} example papers, {len(s.ratings)} ratings"
            if s.examples or s.ratings
            else ""
        )
        print(f"{s.email}\t{s.status}\tmax {s.max_papers}\t{', '.join(s.keywords)}{when}{taught}")
    return 0


def cmd_sub_update(cfg: Config, args: argparse.Namespace) -> int:
    from digest.subscribers import normalise_email, update_subscriber

    email = normalise_email(args.email)

    def change(sub: Subscriber | None) -> Subscriber:
        if sub is None:
            raise UnknownSubscriber(f"no subscriber {email}")
        return update_subscriber(
            sub,
            args.keywords,
            args.max,
            args.min_score,
            args.status,
            args.send_hour,
            args.timezone,
            args.trending,
            args.no_match,
            resubscribe=args.resubscribe,
        )

    with _store(cfg) as store:
        examples = None
        if args.papers is not None:  # interests by example (digest/examples.py)
            from digest.examples import examples_for
            from digest.rank.learn import with_examples

            if store.get_subscriber(email) is None:
                raise UnknownSubscriber(f"no subscriber {email}")
            examples = examples_for(cfg, store, args.papers)

        def change_all(sub: Subscriber | None) -> Subscriber:
            new = change(sub)
            return new if examples is None else with_examples(new, examples)

        new = store.update_subscriber(email, change_all)  # atomic: a web change meanwhile is kept
    again = f": {new.status} again" if args.resubscribe and new is not None else ""
    ex = f"; {len(examples)} example papers" if examples is not None else ""
    print(f"updated {email}{again}{ex}")
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
    """New addresses are added; known ones get the file's keywords/max/min_score (their
    status kept); unsubscribed ones are skipped. Bad and duplicate rows are reported by
    line and skipped; the good rows are imported, then exit 1 if any row was bad."""
    from digest.subscribers import parse_csv, plan_import

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
        with_papers = "papers" in text.splitlines()[0].lower() if text else False
        if with_papers:  # interests by example: every row's papers looked up at once
            subs, bad = _resolve_examples(cfg, store, subs)
            for msg in bad:
                print(f"{path}: skipped {msg}", file=sys.stderr)
            errors += [(0, m) for m in bad]
        plan = plan_import(subs, store.get_subscriber, examples=with_papers)
        store.put_subscribers(plan.put)
    for email in plan.unsubscribed:
        print(
            f"{path}: skipped {email}: unsubscribed (only they can come back; "
            "`update --resubscribe` if they asked you)",
            file=sys.stderr,
        )
    print(
        f"imported {len(plan.put)} subscribers ({plan.added} added, {plan.updated} updated), "
        f"skipped {len(plan.unsubscribed)} unsubscribed, {len(errors)} bad rows"
    )
    if errors:  # the good rows are in; the exit status says the file needs a look
        n = len(errors)
        print(
            f"digest: error: {path}: {n} bad row{'s' if n > 1 else ''} skipped (listed "
            "above); the other rows were imported",
            file=sys.stderr,
        )
        return 1
    return 0


def _resolve_examples(
    cfg: Config, store: Store, subs: list[Subscriber]
) -> tuple[list[Subscriber], list[str]]:
    """The rows with their example papers' titles filled in (the store, else arXiv), and
    one message per row dropped because some of its papers were found nowhere."""
    from digest.examples import examples_of, find_papers

    ids = list(dict.fromkeys(pid for s in subs for pid, _ in s.examples))
    papers, missing = find_papers(cfg, store, ids) if ids else ({}, [])
    gone = set(missing)
    good: list[Subscriber] = []
    bad: list[str] = []
    for s in subs:
        lost = [pid for pid, _ in s.examples if pid in gone]
        if lost:
            bad.append(f"{s.email}: papers not found on arXiv: {', '.join(lost)}")
            continue
        mine = [pid for pid, _ in s.examples]
        good.append(replace(s, examples=tuple(examples_of(mine, papers))))
    return good, bad


def cmd_preview(cfg: Config, args: argparse.Namespace) -> int:
    from digest.pipeline import preview

    day = parse_day(args.date) if args.date else today(cfg)
    out = Path(args.out or f"preview-{day.isoformat()}.html")
    n, notes = preview(cfg, args.email, day, out)
    for note in notes:
        print(f"note: {note}")
    print(f"wrote {out} ({n} papers for you)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
