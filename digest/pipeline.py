"""The one place where the stages meet: fetch -> diff -> rank -> render -> deliver -> record.

Reading `run_daily` tells what the product does. Every stage it calls is either pure
(merge, rank, render, build_message) or an edge (sources, store, sender); this module
only wires them and keeps the run report.

Exactly-once: a digest is recorded SENT (durably, in the store's journal) right after
the SMTP server accepted it, and the papers in SENT digests are excluded from every
later pick. A crash between the server's 250 and the record is the only window in
which a message can go out twice: each SMTP connection writes its next message's final
"." only after the previous one's record is durable (digest/mail/pool.py), so that is at
most one message per connection ([smtp] connections), re-sent with the same Message-ID.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from digest.config import Config
from digest.errors import (
    AllSourcesFailed,
    DeliveryError,
    InputError,
    PermanentDeliveryError,
    StoreError,
)
from digest.mail import make_sender
from digest.mail.base import Job, Sender
from digest.mail.message import build_message
from digest.mail.pool import DeliveryPool, Pacer
from digest.models import (
    ACTIVE,
    DEFERRED,
    EMPTY,
    FAILED,
    MATCH,
    NO_MATCH_SKIP,
    SENT,
    DeliveryRecord,
    Digest,
    Gathered,
    OutgoingMessage,
    Paper,
    Pick,
    RunReport,
    Subscriber,
)
from digest.overlap import Feed, Recorder, ahead, short_switch_interval
from digest.rank import VECTOR_CACHE, rank
from digest.render import Renderer
from digest.sources import fetch_all, merge, sample_day
from digest.store import Store, open_store
from digest.store.base import Run, due_subscribers
from digest.subscribers import make_subscriber
from digest.tokens import links, rate_links, view_url

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def run_daily(
    cfg: Config,
    day: date,
    *,
    dry_run: bool = False,
    now: Clock | None = None,
    store: Store | None = None,
    sender: Sender | None = None,
    only: Callable[[Subscriber], bool] | None = None,
    stop: threading.Event | None = None,
    progress: bool | None = None,
) -> RunReport:
    """The daily job. Returns the run report; raises AllSourcesFailed, StoreLocked,
    DeliveryError (SMTP unreachable) as one-line errors."""
    now = now or utcnow
    t0 = time.monotonic()
    own_store = store is None
    store = store or open_store(cfg.store)
    report = RunReport(day=day, started=now().isoformat(timespec="seconds"), dry_run=dry_run)
    try:
        # The run context holds the run, and at exit commits the report (with the error,
        # when one ends the run: `digest status` says why), folds and prunes.
        with store.run(day, report) as run:
            try:
                if not dry_run:
                    seed_subscribers(cfg, store, now)
                gathered = run.gather(lambda: gather(cfg, day, store, report, write=not dry_run))
                # due subscribers, a leased batch at a time, claimed as the builder needs
                # them; one delivery (builder, connections, records) serves every batch
                deliver(
                    cfg,
                    day,
                    store,
                    Claims(store, run, gathered, only, stop),
                    report,
                    now=now,
                    sender=sender,
                    dry_run=dry_run,
                    progress=progress,
                    record_many=run.record_many,
                )
            finally:
                report.seconds = time.monotonic() - t0
    finally:
        if own_store:
            store.close()
    return report


SEEDS_META = "seeds"  # store meta: JSON list of the seed addresses applied (lower case)


def seed_subscribers(cfg: Config, store: Store, now: Clock) -> int:
    """Apply the config file's [[subscribers]] seeds, each once: the first run that sees
    a seed adds it (unless the store knows the address already) and remembers its address
    in the store (meta "seeds"). From then on the CLI and the web own that subscriber:
    removing it sticks and editing the seed in the file changes nothing. Returns how many
    subscribers were added."""
    if not cfg.subscribers:
        return 0
    applied = applied_seeds(store)
    known = {s.email.lower() for s in store.subscribers()}
    stamp = now().isoformat(timespec="seconds")
    new, fresh = [], []
    for seed in cfg.subscribers:
        sub = make_subscriber(
            seed.email,
            seed.keywords,
            seed.max_papers,
            seed.min_score,
            created=stamp,
            default_max=cfg.ranking.default_max_papers,
        )
        key = sub.email.lower()
        if key in applied:
            continue
        applied.add(key)
        fresh.append(key)
        if key not in known:
            new.append(sub)
            known.add(key)
    if new:
        store.put_subscribers(new)
    if fresh:  # after the subscribers: a crash between the two re-applies nothing twice
        store.set_meta(SEEDS_META, json.dumps(sorted(applied)))
    return len(new)


def applied_seeds(store: Store) -> set[str]:
    """The seed addresses applied before (lower case)."""
    raw = store.get_meta(SEEDS_META)
    if not raw:
        return set()
    try:
        value = json.loads(raw)
    except ValueError as e:
        raise StoreError(f"store meta {SEEDS_META!r} is not a JSON list: {e}") from e
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise StoreError(f"store meta {SEEDS_META!r} is not a list of addresses")
    return {x.lower() for x in value}


def gather(cfg: Config, day: date, store: Store, report: RunReport, *, write: bool) -> Gathered:
    """Fetch every source, merge identities, and diff against the seen-store."""
    results = fetch_all(cfg, day)
    for r in results:
        report.fetched[r.source] = len(r.papers)
        report.skipped_bad += r.skipped
        report.notes.extend(r.notes)
        if r.error:
            report.source_errors[r.source] = r.error
    if results and all(not r.ok for r in results):
        errors = "; ".join(_prefixed(r.source, r.error or "") for r in results)
        raise AllSourcesFailed(f"every source failed, nothing sent ({errors})")
    papers = merge(results)
    window_start = day - timedelta(days=cfg.sources.huggingface.lookback_days - 1)
    known_before = store.first_seen(p.id for p in papers)
    report.new_papers = sum(1 for p in papers if p.id not in known_before)
    if write:
        first_seen = store.record_seen(papers, day)
    else:  # dry run: what record_seen would answer, without writing
        first_seen = {p.id: day for p in papers} | known_before
    eligible = tuple(p for p in papers if first_seen.get(p.id, day) >= window_start)
    return Gathered(eligible, window_start, sample_day(results))


def _prefixed(source: str, error: str) -> str:
    return error if error.startswith(f"{source}:") else f"{source}: {error}"


def subscribers_due(
    store: Store, day: date, report: RunReport, only: Callable[[Subscriber], bool] | None
) -> list[Subscriber]:
    """Active subscribers without a finished digest for `day` (reruns serve only the rest),
    read without claiming them (what a run's `claim` hands out, for previews and benches)."""
    todo, done = due_subscribers(store.subscribers(), store.digests_for_day(day), only)
    report.already_done += len(done)
    return todo


def plan(
    cfg: Config, day: date, store: Store, gathered: Gathered, subs: Sequence[Subscriber]
) -> list[Digest]:
    """Rank the eligible papers for every due subscriber, never repeating a paper."""
    delivered = delivered_in_window(store, gathered, subs)
    return list(plan_lazily(cfg, day, gathered, subs, delivered, known=known_papers(store, subs)))


def known_papers(store: Store, subs: Sequence[Subscriber]) -> dict[str, Paper]:
    """The details the store still keeps of the papers `subs` rated or gave as examples:
    what their models are built from (digest/rank/learn.py)."""
    ids = {r[0] for s in subs for r in s.ratings} | {e[0] for s in subs for e in s.examples}
    return store.get_papers(ids) if ids else {}


def delivered_in_window(
    store: Store, gathered: Gathered, subs: Sequence[Subscriber]
) -> dict[str, set[str]]:
    """Papers already sent to each of `subs`: papers can stay eligible for the whole
    look-back window, so what was sent since its start is excluded."""
    return store.delivered_since(gathered.window_start - timedelta(days=1), [s.email for s in subs])


def plan_lazily(
    cfg: Config,
    day: date,
    gathered: Gathered,
    subs: Sequence[Subscriber],
    delivered: Mapping[str, set[str]],
    first: int = 64,
    chunk: int = 2048,
    known: Mapping[str, Paper] = {},  # noqa: B006 - read only
) -> Iterator[Digest]:
    """Pure: `plan` in chunks of subscribers, a small one first, so the first digest can
    go out before everyone is ranked. rank() gives each subscriber the same picks
    whoever else is ranked with them (digest/rank/model.py), so chunking changes nothing.
    Papers received before (`delivered`, trending ones included) are never picked again."""
    i = 0
    while i < len(subs):
        part = subs[i : i + (first if i == 0 else chunk)]
        i += len(part)
        picks = rank(
            gathered.papers,
            part,
            exclude=delivered,
            popularity_weight=cfg.ranking.popularity_weight,
            min_score=cfg.ranking.min_score,
            trending=cfg.digest.trending,
            semantic=cfg.ranking.semantic,
            vector_cache=cfg.store.path / VECTOR_CACHE,
            known=known,
        )
        for s in part:
            yield digest_of(s, day, picks.get(s.email, ()))


@dataclass(frozen=True)
class Batch:
    """Plain data: a claimed batch of due subscribers and what ranking them needs from
    the store (what each was sent in the window, the papers they rated or gave)."""

    subscribers: tuple[Subscriber, ...]
    delivered: Mapping[str, set[str]]
    known: Mapping[str, Paper]


class Claims:
    """I/O edge: the run's batches, one per call (None: nobody left, or stopping), each
    claimed (run.claim) and read from the store when the builder asks for it (a Feed).
    `on_claim(n)` hears of each batch's size (the progress bar's total)."""

    def __init__(
        self,
        store: Store,
        run: Run,
        gathered: Gathered,
        only: Callable[[Subscriber], bool] | None,
        stop: threading.Event | None,
    ) -> None:
        self.store, self.run, self.gathered, self.only, self.stop = store, run, gathered, only, stop
        self.on_claim: Callable[[int], None] = lambda n: None

    def __call__(self) -> Batch | None:
        if self.stop is not None and self.stop.is_set():
            return None
        subs = self.run.claim(self.only)
        if not subs:
            return None
        self.on_claim(len(subs))
        return Batch(
            tuple(subs),
            delivered_in_window(self.store, self.gathered, subs),
            known_papers(self.store, subs),
        )


def plan_batches(
    cfg: Config,
    day: date,
    gathered: Gathered,
    batch: Callable[[int], Batch | None],
    skip: int = 0,
) -> Iterator[Digest]:
    """Pure, given `batch` (number -> Batch, None past the last): every batch's digests
    but the first `skip` (whole batches skipped unranked, a partial one ranked from its
    first subscriber left: rank() picks the same for a subscriber whoever is ranked with
    them), the first one's first 64 ranked alone so its first mail can go out at once."""
    i = 0
    while (b := batch(i)) is not None:
        subs = b.subscribers[skip:]
        skip = max(0, skip - len(b.subscribers))
        if subs:
            first = 64 if i == 0 else 2048
            yield from plan_lazily(cfg, day, gathered, subs, b.delivered, first, known=b.known)
        i += 1


def digest_of(sub: Subscriber, day: date, picks: tuple[Pick, ...]) -> Digest:
    """Pure: the subscriber's digest. On a day without a match, a subscriber with keywords
    who chose NO_MATCH_SKIP gets an empty digest (no mail) instead of the trending papers."""
    if sub.no_match == NO_MATCH_SKIP and sub.query.includes:
        if not any(p.section == MATCH for p in picks):
            picks = ()
    return Digest(sub, day, picks)


def deliver(
    cfg: Config,
    day: date,
    store: Store,
    claims: Claims,
    report: RunReport,
    *,
    now: Clock,
    sender: Sender | None,
    dry_run: bool,
    progress: bool | None,
    record_many: Callable[[Sequence[DeliveryRecord]], None],
) -> None:
    """Rank, render, send and record the digests of every batch `claims` hands out; the
    record (`record_many`: the run's, durable on return) follows the server's acceptance.
    Ranking and building run ahead of the sending (a child process or a thread); the
    run's gathered papers and its stop event are the ones `claims` holds."""
    gathered, stop = claims.gathered, claims.stop
    feed = Feed(claims)  # each batch claimed once, when first asked for
    if dry_run:
        for d in plan_batches(cfg, day, gathered, feed.get):
            if d.picks or cfg.schedule.send_empty:
                report.sent += 1
            else:
                report.empty += 1
        return
    first = feed.get(0)  # claimed before anything forks or connects
    if first is None:
        return
    count = len(first.subscribers)
    sample_day = gathered.sample_day
    papers = {p.id: p for p in gathered.papers}
    secret = cfg.secret() or store.secret()
    counts = threading.Lock()  # the report is counted from every connection's thread

    def outcome(job: Job, error: DeliveryError | None) -> Callable[[], None]:
        """A connection's verdict on one message, queued for the record; the connection
        calls what this returns (until the record is durable) before its next message
        can be accepted."""
        did, (ids, sections, matched) = job.ref
        if error is None:
            state, detail = SENT, ""
        else:
            state = FAILED if isinstance(error, PermanentDeliveryError) else DEFERRED
            detail = str(error)
        rec = DeliveryRecord(did, job.email, day, state, ids, detail, None, sections, matched)
        n = recorder.put(rec)
        with counts:
            if error is None:
                report.sent += 1
            elif isinstance(error, PermanentDeliveryError):
                report.failed += 1
            else:
                report.deferred += 1
            if bar is not None:
                bar.update(1)
        return lambda: recorder.durable(n)

    # Digests are ranked and their messages built ahead, in a child process (or a thread),
    # while this thread hands them to the connections (digest/mail/pool.py), each of which
    # waits on its SMTP server; the Recorder writes the records, the connections' ones
    # together (group commit: digest/overlap.py; speed: bench/e2e.py). The builder starts
    # first: it forks only while no other thread runs. A connection opens at its first
    # message, so a day without any mail never touches the SMTP server.
    stamp = now()

    def built(batch: Callable[[int], Batch | None], skip: int) -> Iterator[tuple[Any, ...]]:
        digests = plan_batches(cfg, day, gathered, batch, skip)
        for d, msg in build_all(cfg, secret, digests, papers, stamp, sample_day=sample_day):
            yield (d.id, d.subscriber.email, _kept(d), msg)  # lean to pickle

    open_sender, connections = _senders(cfg, sender)
    with (
        ahead(built, feed) as items,
        _progress_bar(count, progress) as bar,
        short_switch_interval(),
        Recorder(record_many) as recorder,  # the one place records are written
        DeliveryPool(
            open_sender,
            connections=connections,
            done=outcome,
            current=_still_active(store),
            pacer=Pacer(cfg.smtp.max_rate) if cfg.smtp.max_rate and cfg.smtp.host else None,
            stop=stop,
        ) as pool,
    ):
        if bar is not None:

            def grow(n: int) -> None:  # a later batch claimed (in the feeder thread)
                with counts:
                    bar.total += n
                    bar.refresh()

            claims.on_claim = grow
        cut = False  # left the loop early: stopping
        for did, email, kept, msg in items:
            if stop is not None and stop.is_set():
                pool.stop()
                cut = True
                break
            recorder.check()  # a record that failed stops the run before the next send
            pool.check()  # so does SMTP that keeps failing
            if isinstance(msg, OutgoingMessage):
                if not pool.submit(Job(msg, email, (did, kept))):
                    cut = True  # stopping (the connections saw `stop` first)
                    break
                continue
            with counts:
                if msg is None:
                    report.empty += 1
                else:
                    report.failed += 1
                if bar is not None:
                    bar.update(1)
            if msg is None:  # queued only: no mail hangs on these records
                recorder.put(DeliveryRecord(did, email, day, EMPTY, (), "nothing new"))
            else:  # an InputError: a message that cannot be built
                ids, sections, matched = kept
                recorder.put(
                    DeliveryRecord(did, email, day, FAILED, ids, str(msg), None, sections, matched)
                )
        pool.close()
    if cut or pool.abandoned:
        report.notes.append("stopped: the rest is left for the next run")
    report.notes.extend(pool.notes())
    if pool.skipped:
        report.notes.append(
            f"{pool.skipped} subscriber(s) unsubscribed or paused during the run: not sent"
        )


def _kept(d: Digest) -> tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """What the delivery record keeps of a digest's picks, in the order mailed: the paper
    ids, each one's section and matched terms (so it can be shown again as it was)."""
    return (
        tuple(p.paper_id for p in d.picks),
        tuple(p.section for p in d.picks),
        tuple(p.matched for p in d.picks),
    )


def _senders(cfg: Config, sender: Sender | None) -> tuple[Callable[[], Sender], int]:
    """(a factory of one connection's Sender, how many connections): [smtp] connections
    for SMTP; one for the outbox folder and for a Sender passed in (tests, benchmarks)."""
    if sender is not None:
        return (lambda: sender), 1
    first = make_sender(cfg)  # raises ConfigError now, before anything is built
    if not cfg.smtp.host:
        return (lambda: first), 1
    made = [first]

    def another() -> Sender:
        return made.pop() if made else make_sender(cfg)

    return another, cfg.smtp.connections


def _still_active(store: Store) -> Callable[[str], bool]:
    """The last check before a digest is committed (issue: unsubscribes acknowledged
    mid-run were mailed): the subscriber's current status, read from the store. Cheap:
    the TinyDB store re-reads its file only when it changed (one stat otherwise), the
    PostgreSQL store reads the status column alone."""

    def active(email: str) -> bool:
        return store.subscriber_status(email) == ACTIVE

    return active


def build_all(
    cfg: Config,
    secret: str,
    digests: Iterable[Digest],
    papers: Mapping[str, Paper],
    stamp: datetime,
    *,
    sample_day: date | None = None,
) -> Iterator[tuple[Digest, OutgoingMessage | InputError | None]]:
    """Pure: render and build each digest's message lazily, so sending starts at once.
    Yields (digest, message); the message is None for a digest without papers (unless
    [schedule] send_empty), or the InputError of a message that cannot be built (recorded
    as failed). `sample_day`: the papers are the bundled sample day; every mail says so."""
    renderer = Renderer(site_name=cfg.site_name, sample_day=sample_day)
    for d in digests:
        if not d.picks and not cfg.schedule.send_empty:
            yield d, None
            continue
        lk = links(cfg.web.base_url, secret, d.subscriber.id)  # opaque id, never the address
        rate = rate_links(cfg.web.base_url, secret, d.subscriber.id)  # h7: rating links
        view = view_url(cfg.web.base_url, secret, d.subscriber.id, d.day)
        rendered = renderer.render(d, papers, lk, rate, view_url=view)
        try:
            yield (
                d,
                build_message(
                    rendered,
                    to=d.subscriber.email,
                    sender=cfg.smtp.sender,
                    digest_id=d.id,
                    unsubscribe_url=lk.unsubscribe_url,
                    now=stamp,
                ),
            )
        except InputError as e:  # e.g. an address no header can carry: fail that one only
            yield d, e


def _progress_bar(total: int, enabled: bool | None):  # type: ignore[no-untyped-def]
    if enabled is None:
        enabled = sys.stderr.isatty() and total >= 50
    if not enabled:
        return nullcontext(None)
    from tqdm import tqdm

    return tqdm(total=total, unit="mail", desc="sending", file=sys.stderr, leave=False)


def preview(cfg: Config, email: str, day: date, out: Path) -> tuple[int, list[str]]:
    """Write the digest `email` would get for `day` as an HTML file. Sends and records
    nothing. Returns the number of matches ("For you") and the run's notes."""
    from digest.errors import UnknownSubscriber
    from digest.subscribers import normalise_email

    email = normalise_email(email)
    store = open_store(cfg.store)
    try:
        sub = store.get_subscriber(email)
        if sub is None:
            raise UnknownSubscriber(f"no subscriber {email}")
        report = RunReport(day=day, dry_run=True)
        gathered = gather(cfg, day, store, report, write=False)
        (digest,) = plan(cfg, day, store, gathered, [sub])
        renderer = Renderer(site_name=cfg.site_name, sample_day=gathered.sample_day)
        lk = links(cfg.web.base_url, cfg.secret() or store.secret(), sub.id)
        rate = rate_links(cfg.web.base_url, cfg.secret() or store.secret(), sub.id)
        html = renderer.render(digest, {p.id: p for p in gathered.papers}, lk, rate).html
    finally:
        store.close()
    _write_atomic(out, html)
    return len(digest.matches), report.notes


def _write_atomic(path: Path, text: str) -> None:
    import os
    import tempfile

    from digest.errors import InputError

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".preview-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        raise InputError(f"{path}: cannot write: {e.strerror}") from e
