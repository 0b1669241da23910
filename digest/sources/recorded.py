"""I/O edge (one package-data read): the bundled recorded day, for running without network.

`digest/data/recorded/hf_2026-03-10.json` is a real Hugging Face /api/daily_papers
answer recorded on 2026-03-10 and shipped with the package. When no source can be
reached at all (no DNS, connection refused, network unreachable) and [sources]
offline_fallback is on (config/example.toml; never with an [smtp] host), `fetch_all`
serves it instead, so a first `make quickstart` on an offline machine still shows a
digest — and says so in a note and in every digest built from it, never silently.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date
from importlib import resources

from digest.errors import FetchError
from digest.models import FetchResult
from digest.sources.hf import SOURCE, parse_daily_papers

RECORDED_DAY = date(2026, 3, 10)
RECORDED_FILE = f"hf_{RECORDED_DAY.isoformat()}.json"
OFFLINE_NOTE = (
    f"offline: no network, using the bundled recorded day {RECORDED_DAY.isoformat()} "
    "(sample data, marked so in every digest)"
)


def sample_day(results: Iterable[FetchResult]) -> date | None:
    """The recorded day when `results` are the bundled sample (load_recorded's), else None."""
    return RECORDED_DAY if any(OFFLINE_NOTE in r.notes[:1] for r in results) else None


def load_recorded(notes: tuple[str, ...] = ()) -> FetchResult:
    """The bundled recorded day as a Hugging Face FetchResult, noted as offline data.

    `notes` are appended after the offline note (fetch_all passes the source errors
    that made it fall back). FetchError if the packaged file is missing or corrupt.
    """
    where = f"digest/data/recorded/{RECORDED_FILE}"
    try:
        raw = resources.files("digest").joinpath("data", "recorded", RECORDED_FILE).read_bytes()
    except OSError as e:
        raise FetchError(f"offline fallback: cannot read {where}: {e.strerror or e}") from e
    try:
        papers, skipped = parse_daily_papers(json.loads(raw), listed_on=RECORDED_DAY)
    except (ValueError, UnicodeDecodeError) as e:
        raise FetchError(f"offline fallback: {where} is not a daily-papers list: {e}") from e
    return FetchResult(
        source=SOURCE,
        papers=tuple(papers),
        skipped=skipped,
        requests=0,
        notes=(OFFLINE_NOTE, *notes),
    )
