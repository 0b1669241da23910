"""I/O edge: `digest check-config [--connect]` and `digest send-test EMAIL`.

check-config checks everything a run needs short of the network, and prints "config OK"
only after the last check passed. Each problem is one stderr line; every check runs, so
one call lists them all. It writes nothing. The checks, in the order a run meets them:

    sources    at least one source is enabled (the offline fallback is said aloud)
    store      its folder exists and is writable, or can be created
    mail       SMTP: sender address, both credentials' variables set, no password in
               plaintext to a remote host; no SMTP host: the outbox folder is writable
    secret     from the environment and at least 32 bytes (load_config refuses a short
               one), or the one the store generates and keeps
    templates  the mail templates render and build a sample digest's message; the web
               page templates compile
    seeds      every [[subscribers]] seed is a valid subscriber

`--connect` then also opens the SMTP connection as configured (connect, EHLO, STARTTLS,
login; no mail is sent) and fetches one page from each source (no retries, no offline
fallback).

send-test sends one sample digest (the bundled recorded day, marked as sample data, ranked
for the address's keywords when it is a subscriber) through the configured path, SMTP or
the outbox folder. It records nothing, and its Message-ID is its own: a test never
shadows the real digest of the day.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from digest.config import Config
from digest.errors import ConfigError, DigestError, InputError
from digest.mail.base import Sender
from digest.models import UNSUBSCRIBED, OutgoingMessage, Subscriber

PROBE_EMAIL = "check-config@example.org"
_LOCAL = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})


def register(subparsers: Any) -> None:
    c = subparsers.add_parser(
        "check-config",
        help="check everything a run needs (config, folders, credentials, secret, templates)",
        description="Check everything a run needs short of the network and print "
        '"config OK" at the end; each problem is one line on stderr (exit 2). Writes nothing.',
    )
    c.add_argument(
        "--connect",
        action="store_true",
        help="also log in to the SMTP server as configured (no mail is sent) and fetch "
        "one page from each source",
    )
    c.set_defaults(func=cmd_check_config)
    t = subparsers.add_parser(
        "send-test",
        help="send one sample digest to EMAIL the way a run sends (SMTP or outbox)",
        description="Send one sample digest (the bundled recorded day, marked as sample "
        "data) to EMAIL through the configured path: the SMTP server, or the outbox "
        "folder when no [smtp] host is set. Records nothing.",
    )
    t.add_argument("email")
    t.set_defaults(func=cmd_send_test)


class _Checks:
    """Collects the outcome: info lines on stdout, each problem as one line on stderr."""

    def __init__(self, out: TextIO, err: TextIO):
        self.out, self.err = out, err
        self.problems: list[str] = []

    def info(self, line: str) -> None:
        print(f"  {line}", file=self.out)

    def warn(self, line: str) -> None:
        print(f"  warning: {line}", file=self.out)

    def problem(self, line: str) -> None:
        self.problems.append(line)
        print(f"digest: error: {line}", file=self.err)


def cmd_check_config(
    cfg: Config, args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    where = str(cfg.path) if cfg.path else "built-in defaults"
    print(f"checking {where}", file=out)
    c = _Checks(out, err)
    _sources(cfg, c)
    if cfg.store.backend == "postgresql":
        _postgres(cfg, c, connect=getattr(args, "connect", False))
    else:
        _folder("store", cfg.store.path, c)
    sender = _mail(cfg, c)
    _secret(cfg, c)
    _templates(cfg, c)
    _seeds(cfg, c)
    c.info(f"schedule: {cfg.schedule.time} {cfg.schedule.timezone}")
    if getattr(args, "connect", False):
        _connect(cfg, sender, c)
    if c.problems:
        n = len(c.problems)
        raise ConfigError(f"{where}: config NOT OK: {n} problem{'s' if n > 1 else ''} (above)")
    print(f"config OK: {where}", file=out)
    return 0


def _sources(cfg: Config, c: _Checks) -> None:
    hf, ax = cfg.sources.huggingface, cfg.sources.arxiv
    c.info(
        f"sources: huggingface {'on' if hf.enabled else 'off'} ({hf.base_url}, {hf.mode}, "
        f"look-back {hf.lookback_days} days); arXiv {', '.join(ax.categories) or 'off'}"
    )
    if not hf.enabled and not ax.categories:
        c.problem(
            "no source is enabled: set [sources.huggingface] enabled = true or "
            "[sources.arxiv] categories"
        )
    if cfg.sources.offline_fallback:
        c.info(
            "offline fallback: on: without any network a run mails the bundled sample day, "
            'marked "sample data" (for trying digest out only)'
        )


def _postgres(cfg: Config, c: _Checks, *, connect: bool) -> None:
    """The PostgreSQL store: its URL variable is set; with --connect, the database answers
    and its schema is current (migrations applied when behind, as every command does)."""
    name = cfg.store.url_env
    if not os.environ.get(name):
        c.problem(f'[store] backend = "postgresql": the environment variable {name} is not set')
        return
    if not connect:
        c.info(f"store: postgresql (URL in ${name}; --connect to reach it)")
        return
    from digest.errors import StoreError
    from digest.store.postgres import PgStore

    try:
        store = PgStore(cfg.store)
        try:
            c.info(f"store: {store.where}, schema version {store.schema_version()}")
        finally:
            store.close()
    except StoreError as e:
        c.problem(f"store: {e}")


def _folder(what: str, path: Path, c: _Checks) -> bool:
    """Whether `path` is a writable folder or can be created as one (nothing is made)."""
    if path.exists():
        if not path.is_dir():
            c.problem(f"{what}: {path} exists and is not a folder")
            return False
        if not os.access(path, os.W_OK | os.X_OK):
            c.problem(f"{what}: {path}: the folder is not writable by this user")
            return False
        c.info(f"{what}: {path}")
        return True
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        c.problem(f"{what}: {path} does not exist and cannot be created ({parent} is not writable)")
        return False
    c.info(f"{what}: {path} (created at the first run)")
    return True


def _mail(cfg: Config, c: _Checks) -> Sender | None:
    from digest.mail import make_sender

    try:
        # SMTP: checks the sender address, both credentials' variables, and refuses a
        # password in plaintext to a remote host, exactly as a run would at its start.
        sender = make_sender(cfg)
    except DigestError as e:
        c.problem(str(e))
        return None
    s = cfg.smtp
    if not s.host:
        c.info("mail: no [smtp] host: messages are written to the outbox folder")
        return sender if _folder("outbox", cfg.outbox.path, c) else None
    login = f", login from ${s.username_env}/${s.password_env}" if s.username_env else ""
    c.info(f"mail: SMTP {s.host}:{s.port} ({s.security}) as {s.sender}{login}")
    host = (urlsplit(cfg.web.base_url).hostname or "").lower()
    if host in _LOCAL or host.endswith(".localhost"):
        c.warn(
            f"[web] base_url is {cfg.web.base_url}: the unsubscribe and manage links in real "
            "mail would lead nowhere; set it to the public URL of `digest web`"
        )
    return sender


def _secret(cfg: Config, c: _Checks) -> None:
    name = cfg.web.secret_env
    value = cfg.secret()  # load_config already refused one shorter than 32 bytes
    if value:
        c.info(f"link-signing secret: ${name} ({len(value.encode('utf-8'))} bytes)")
    else:
        unset = f"${name} is not set" if name else "[web] secret_env is empty"
        c.info(
            f"link-signing secret: {unset}: a random one, generated once and kept in the "
            "store, signs the links (set it when `digest web` runs with another store)"
        )


def _templates(cfg: Config, c: _Checks) -> None:
    import jinja2

    from digest.render import Renderer, default_templates_dir

    try:
        folder = default_templates_dir()
        renderer = Renderer(folder, site_name=cfg.site_name)
        sample_message(cfg, renderer, _probe_subscriber(cfg), date.today(), "x" * 32)
    except DigestError as e:
        c.problem(str(e))
        return
    except jinja2.TemplateError as e:
        c.problem(f"templates: {folder}: {type(e).__name__}: {e}")
        return
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)), autoescape=True)
    pages = [n for n in env.list_templates() if n.startswith("web/")]
    if not pages:
        c.problem(f"templates: {folder}: no web page templates (web/*.html)")
        return
    for name in pages:
        try:
            env.get_template(name)
        except jinja2.TemplateError as e:
            c.problem(f"templates: {folder}/{name}: {type(e).__name__}: {e}")
            return
    c.info(f"templates: {folder} (a sample digest renders; {len(pages)} web templates compile)")


def _seeds(cfg: Config, c: _Checks) -> None:
    from digest.subscribers import make_subscriber

    where = str(cfg.path) if cfg.path else "defaults"
    bad = 0
    for i, seed in enumerate(cfg.subscribers, 1):
        try:
            make_subscriber(seed.email, seed.keywords, seed.max_papers, seed.min_score)
        except InputError as e:
            bad += 1
            c.problem(f"{where}: [subscribers #{i}] {e}")
    if not bad:
        c.info(
            f"seeded subscribers: {len(cfg.subscribers)} (each applied once, by the first "
            "run that sees it; then `digest subscribers` and the web own it)"
        )


def _connect(cfg: Config, sender: Sender | None, c: _Checks) -> None:
    from digest.cli import today
    from digest.sources import probe_all

    if cfg.smtp.host and sender is not None:
        s = cfg.smtp
        try:
            with sender:  # connect, EHLO, STARTTLS, login (Sender: set-up fails on enter)
                pass
        except DigestError as e:
            c.problem(str(e))
        else:
            tls = {"ssl": ", TLS", "starttls": ", STARTTLS"}.get(s.security, "")
            login = f", logged in as ${s.username_env}" if s.username_env else ""
            c.info(f"connect: SMTP {s.host}:{s.port}: connected{tls}{login}; no mail sent")
    for source, detail, ok in probe_all(cfg, today(cfg)):
        if ok:
            c.info(f"connect: {source}: {detail}")
        else:
            c.problem(f"connect: {detail}")


# ----------------------------------------------------------------------------- send-test


def _probe_subscriber(cfg: Config, email: str = PROBE_EMAIL) -> Subscriber:
    return Subscriber(email=email, max_papers=cfg.ranking.default_max_papers)


def sample_message(
    cfg: Config,
    renderer: Any,
    sub: Subscriber,
    day: date,
    secret: str,
    now: datetime | None = None,
) -> tuple[OutgoingMessage, str, int]:
    """The sample digest for `sub` on `day` from the bundled recorded day, its subject and
    its number of papers. Ranked as a run ranks; a subscriber whose keywords match nothing in the
    sample gets its most popular papers instead."""
    from digest.mail.message import build_message
    from digest.models import Digest, Gathered
    from digest.pipeline import plan_lazily
    from digest.sources.recorded import RECORDED_DAY, load_recorded
    from digest.tokens import links

    papers = load_recorded().papers
    gathered = Gathered(papers, RECORDED_DAY, RECORDED_DAY)
    (d,) = plan_lazily(cfg, day, gathered, [sub], {})
    if not d.picks:
        (d,) = plan_lazily(cfg, day, gathered, [_probe_subscriber(cfg, sub.email)], {})
    d = Digest(sub, day, d.picks)
    # Links carry the subscriber's opaque id; an address the store does not know has none,
    # and its sample's links lead to the "no subscription" page.
    lk = links(cfg.web.base_url, secret, sub.id or "not-subscribed")
    rendered = renderer.render(d, {p.id: p for p in papers}, lk)
    msg = build_message(
        rendered,
        to=sub.email,
        sender=cfg.smtp.sender,
        # Not the day's digest id: a test must never share the Message-ID of the real
        # digest, which receiving systems would then drop as a duplicate.
        digest_id=f"send-test-{secrets.token_hex(8)}",
        unsubscribe_url=lk.unsubscribe_url,
        now=now or datetime.now(UTC),
    )
    return msg, rendered.subject, len(d.picks)


def cmd_send_test(cfg: Config, args: argparse.Namespace) -> int:
    from digest.cli import today
    from digest.mail import make_sender
    from digest.render import Renderer
    from digest.sources.recorded import RECORDED_DAY
    from digest.store import open_store
    from digest.subscribers import normalise_email

    email = normalise_email(args.email)
    sender = make_sender(cfg)  # a bad SMTP setup fails before anything else
    store = open_store(cfg.store)
    try:
        known = store.get_subscriber(email)
        secret = cfg.secret() or store.secret()  # as the run signs its links
    finally:
        store.close()
    if known is not None and known.status == UNSUBSCRIBED:
        raise InputError(f"{known.email} unsubscribed: no mail goes to them, not even a test")
    sub = known or _probe_subscriber(cfg, email)
    renderer = Renderer(site_name=cfg.site_name, sample_day=RECORDED_DAY)
    msg, subject, n = sample_message(cfg, renderer, sub, today(cfg), secret)
    with sender:
        sender.send(msg)
    if cfg.smtp.host:
        where = f"through SMTP {cfg.smtp.host}:{cfg.smtp.port}"
    else:
        where = f"into the outbox folder {cfg.outbox.path}"
    whose = "their keywords" if known is not None and known.keywords else "no keywords"
    print(
        f"sent a sample digest to {sub.email} {where}: {n} papers of the bundled day "
        f"{RECORDED_DAY.isoformat()} ({whose}), subject {subject!r}; nothing recorded"
    )
    return 0
