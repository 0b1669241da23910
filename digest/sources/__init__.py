"""I/O edge: fetch papers from every enabled source, each isolated from the others.

    fetch_all(cfg, day) -> [FetchResult, ...]   one per enabled source, in a fixed order
    probe_all(cfg, day) -> [(source, detail, ok), ...]   one request each (check-config)
    merge(results) -> [Paper, ...]              pure: one Paper per arXiv id (merge.py)

Sources: Hugging Face daily papers (`hf.py`, when [sources.huggingface] enabled) and
arXiv (`arxiv.py`, when [sources.arxiv] categories is non-empty). A source that fails
gives a FetchResult with `error` set; the others go on (the pipeline decides whether
"every source failed" stops the run: AllSourcesFailed).

Offline fallback ([sources] offline_fallback, off by default; config/example.toml turns it
on for the Quickstart, and it is refused with an [smtp] host): when EVERY source failed
because no connection could be made at all (DNS failure, connection refused, network
unreachable — not HTTP errors, not timeouts), the result is the bundled recorded day
(`recorded.py`) with the note "offline: no network, using the bundled recorded day
2026-03-10 (sample data, ...)" followed by the source errors. `sample_day(results)` tells
the pipeline, which marks every digest built from it as sample data (subject and first
line).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import httpx

from digest.config import Config
from digest.errors import FetchError
from digest.models import FetchResult
from digest.sources import arxiv, hf
from digest.sources.http import Fetcher, Unreachable, make_client
from digest.sources.merge import merge, normalise_arxiv_id
from digest.sources.recorded import OFFLINE_NOTE, load_recorded, sample_day

__all__ = ["OFFLINE_NOTE", "fetch_all", "merge", "normalise_arxiv_id", "probe_all", "sample_day"]

log = logging.getLogger(__name__)


def _isolated(
    source: str, fetcher: Fetcher, run: Callable[[], FetchResult]
) -> tuple[FetchResult, bool]:
    """Run one source; never raises. Returns (result, failed-for-lack-of-network)."""
    try:
        return run(), False
    except FetchError as e:
        # info, not warning: the error is in the FetchResult and so in the run report or
        # the run's one-line error; a warning would print it twice on a terminal.
        log.info("%s", e)
        return FetchResult(source=source, error=str(e), requests=fetcher.requests), isinstance(
            e, Unreachable
        )
    except Exception as e:  # noqa: BLE001 - a bug in one source must not stop the others
        log.exception("source %s crashed", source)
        msg = " ".join(f"{source}: unexpected {type(e).__name__}: {e}".split())
        return FetchResult(source=source, error=msg, requests=fetcher.requests), False


def probe_all(
    cfg: Config,
    day: date,
    *,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[tuple[str, str, bool]]:
    """`digest check-config --connect`: one request to each enabled source, no retries and
    no offline fallback. Returns (source, what came back or the error, ok) per source."""
    http = dataclasses.replace(cfg.http, retries=0)
    own = client is None
    http_client = make_client(http) if client is None else client
    probes: list[tuple[str, Callable[[Fetcher], str]]] = []
    if cfg.sources.huggingface.enabled:
        probes.append((hf.SOURCE, lambda f: hf.probe(f, cfg.sources.huggingface, day)))
    if cfg.sources.arxiv.categories:
        probes.append((arxiv.SOURCE, lambda f: arxiv.probe(f, cfg.sources.arxiv)))
    out = []
    try:
        for name, run in probes:
            try:
                out.append((name, run(Fetcher(http_client, http, name, sleep=sleep)), True))
            except FetchError as e:
                out.append((name, str(e), False))
    finally:
        if own:
            http_client.close()
    return out


def fetch_all(
    cfg: Config,
    day: date,
    *,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[FetchResult]:
    """Fetch every enabled source for the run of `day` (UTC date).

    `client` is used as given (not closed); without one a client is made from
    cfg.http and closed. `sleep` and `clock` are injectable so tests never wait.
    """
    own = client is None
    http_client = make_client(cfg.http) if client is None else client
    hfc, axc = cfg.sources.huggingface, cfg.sources.arxiv
    jobs: list[tuple[str, Fetcher, Callable[[Fetcher], FetchResult]]] = []
    if hfc.enabled:
        jobs.append(
            (
                hf.SOURCE,
                Fetcher(http_client, cfg.http, hf.SOURCE, sleep=sleep),
                lambda f: hf.fetch(f, hfc, day),
            )
        )
    if axc.categories:
        # arXiv's 3-second rule: one request per min_interval, retries included.
        limiter = arxiv.RateLimiter(axc.min_interval, clock=clock, sleep=sleep)
        jobs.append(
            (
                arxiv.SOURCE,
                Fetcher(http_client, cfg.http, arxiv.SOURCE, sleep=sleep, pace=limiter.wait),
                lambda f: arxiv.fetch(f, axc),
            )
        )
    try:
        # The sources talk to different hosts: fetch them side by side (httpx.Client is
        # thread-safe), so a slow or retrying source does not delay the other.
        with ThreadPoolExecutor(
            max_workers=max(1, len(jobs)), thread_name_prefix="digest-source"
        ) as pool:
            futures = [
                pool.submit(_isolated, name, f, functools.partial(run, f)) for name, f, run in jobs
            ]
            outcomes = [fu.result() for fu in futures]
    finally:
        if own:
            http_client.close()
    results = [r for r, _ in outcomes]
    if cfg.sources.offline_fallback and outcomes and all(off for _, off in outcomes):
        log.info("%s", OFFLINE_NOTE)  # the report's first note says it
        return [load_recorded(notes=tuple(r.error for r in results if r.error))]
    return results
