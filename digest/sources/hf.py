"""I/O edge: Hugging Face daily papers (`GET /api/daily_papers`), plus its pure parser.

Modes (cfg.sources.huggingface.mode):

* "daily": `?date=YYYY-MM-DD&limit=L&p=N` for each day of the look-back window (the run's
  day and the `lookback_days - 1` days before, in UTC), oldest first, following `p`
  while a page comes back full (len == limit), at most MAX_PAGES_PER_DAY pages a day.
* "trending": `?sort=trending&limit=L&p=N`, at most TRENDING_PAGES pages.

Failure policy. One request is one page. A page fails when its request fails after the
retries (FetchError) or when a 200 answer is not a JSON list (a 200 with a garbage body
is not retried: the server meant it; it is a source error for that listing). A failed
page ends its listing (day): papers of earlier pages are kept, a note names the failure,
and the other days go on. Only when EVERY listing failed without a single good page did
the source fail as a whole: `fetch` raises FetchError and fetch_all reports it as the
FetchResult's error. No connection at all (`Unreachable`: DNS, refused, unreachable)
stops the source at once: the next day would fail the same way, only slower.

Bad items inside a good page are skipped and counted (FetchResult.skipped), never fatal.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

from digest.config import HuggingFaceConfig
from digest.errors import FetchError
from digest.models import FetchResult, Paper
from digest.sources.clean import (
    TITLE_MAX,
    clean_text,
    non_negative_int,
    normalise_arxiv_id,
    safe_url,
)
from digest.sources.http import Fetcher, Unreachable

SOURCE = "huggingface"
MAX_PAGES_PER_DAY = 20  # a day has ~10-60 papers; 20 full pages means the API ignores `p`
TRENDING_PAGES = 3
MAX_KEYWORDS = 50


def parse_daily_papers(data: Any, *, listed_on: date | None = None) -> tuple[list[Paper], int]:
    """Papers from one parsed /api/daily_papers answer, and how many items were skipped.

    `data` must be a JSON list (else ValueError: the whole answer is unusable). Items
    missing `paper.id` / a title, or with a non-arXiv id, are skipped and counted.
    Optional fields (upvotes, ai_summary, ai_keywords, githubRepo, githubStars,
    projectPage) of a wrong type or null are ignored. `listed_on` is used when an item
    has no usable `paper.submittedOnDailyAt`.
    """
    if not isinstance(data, list):
        raise ValueError(f"expected a JSON list of papers, got {_json_type(data)}")
    papers: list[Paper] = []
    skipped = 0
    for item in data:
        paper = _parse_item(item, listed_on)
        if paper is None:
            skipped += 1
        else:
            papers.append(paper)
    return papers, skipped


def _parse_item(item: Any, listed_on: date | None) -> Paper | None:
    if not isinstance(item, dict):
        return None
    p = item.get("paper", item)  # the daily listing wraps the paper; /api/papers does not
    if not isinstance(p, dict):
        return None
    pid = normalise_arxiv_id(p.get("id"))
    title = clean_text(p.get("title") or item.get("title"), TITLE_MAX)
    if pid is None or not title:
        return None
    authors = p.get("authors")
    names = tuple(
        n
        for n in (
            clean_text(a.get("name"), 200)
            for a in (authors if isinstance(authors, list) else [])
            if isinstance(a, dict)
        )
        if n
    )
    keywords = p.get("ai_keywords")
    kws = tuple(
        dict.fromkeys(
            k
            for k in (clean_text(k, 100) for k in (keywords if isinstance(keywords, list) else []))
            if k
        )
    )[:MAX_KEYWORDS]
    return Paper(
        id=pid,
        title=title,
        abstract=clean_text(p.get("summary") or item.get("summary")),
        authors=names,
        listed_on=_day_of(p.get("submittedOnDailyAt")) or listed_on,
        ai_summary=clean_text(p.get("ai_summary")) or None,
        ai_keywords=kws,
        upvotes=non_negative_int(p.get("upvotes")),
        github_repo=safe_url(p.get("githubRepo")),
        github_stars=non_negative_int(p.get("githubStars")),
        project_page=safe_url(p.get("projectPage")),
        sources=(SOURCE,),
    )


def _day_of(value: Any) -> date | None:
    """The date of an ISO 8601 timestamp like "2026-03-10T01:24:03.220Z"."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).date()
    except ValueError:
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None


def _json_type(data: Any) -> str:
    names = {
        dict: "an object",
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "true/false",
        type(None): "null",
    }
    return names.get(type(data), type(data).__name__)


def window(day: date, lookback_days: int) -> list[date]:
    """The look-back window, oldest first: `day` and the `lookback_days - 1` days before."""
    return [day - timedelta(days=i) for i in range(max(1, lookback_days) - 1, -1, -1)]


class _Listing:
    """Outcome of one listing (a day, or trending): papers, bad items, the failure if any."""

    def __init__(self) -> None:
        self.papers: list[Paper] = []
        self.skipped = 0
        self.good_pages = 0
        self.error: FetchError | None = None


def _pages(
    fetcher: Fetcher,
    url: str,
    params: dict[str, Any],
    limit: int,
    max_pages: int,
    listed_on: date | None,
) -> _Listing:
    out = _Listing()
    seen: set[str] = set()
    for page in range(max_pages):
        query = {**params, "limit": limit, "p": page}
        try:
            response = fetcher.get(url, query)
            shown = str(response.request.url)
            try:
                data = json.loads(response.content)
            except (ValueError, UnicodeDecodeError) as e:
                raise FetchError(f"{SOURCE}: GET {shown}: malformed JSON ({_reason(e)})") from e
            try:
                papers, skipped = parse_daily_papers(data, listed_on=listed_on)
            except ValueError as e:
                raise FetchError(f"{SOURCE}: GET {shown}: {e}") from e
        except FetchError as e:
            out.error = e
            return out
        out.good_pages += 1
        out.papers += papers
        out.skipped += skipped
        new_ids = {p.id for p in papers} - seen
        seen |= new_ids
        # Stop at a short page; also when a full page brought nothing new (an API that
        # ignores `p` would otherwise hand us the same page MAX_PAGES times).
        if len(data) < limit or not new_ids:
            break
    return out


def _reason(e: Exception) -> str:
    if isinstance(e, json.JSONDecodeError):
        return f"{e.msg} at line {e.lineno} column {e.colno}"
    return type(e).__name__


def _listings(
    cfg: HuggingFaceConfig, day: date
) -> Iterator[tuple[str, dict[str, Any], int, date | None]]:
    if cfg.mode == "trending":
        yield "trending", {"sort": "trending"}, TRENDING_PAGES, None
        return
    for d in window(day, cfg.lookback_days):
        yield d.isoformat(), {"date": d.isoformat()}, MAX_PAGES_PER_DAY, d


def probe(fetcher: Fetcher, cfg: HuggingFaceConfig, day: date) -> str:
    """One page of the run's own listing (`digest check-config --connect`): what came
    back, in a few words, or FetchError."""
    url = f"{cfg.base_url.rstrip('/')}/api/daily_papers"
    params: dict[str, Any] = (
        {"sort": "trending"} if cfg.mode == "trending" else {"date": day.isoformat()}
    )
    listing = _pages(fetcher, url, params, cfg.limit, 1, None if cfg.mode == "trending" else day)
    if listing.error is not None:
        raise listing.error
    what = "trending" if cfg.mode == "trending" else day.isoformat()
    return f"{len(listing.papers)} papers on the first page of {what}"


def fetch(fetcher: Fetcher, cfg: HuggingFaceConfig, day: date) -> FetchResult:
    """Fetch the configured listings. Raises FetchError only when every listing failed."""
    url = f"{cfg.base_url.rstrip('/')}/api/daily_papers"
    papers: list[Paper] = []
    skipped = 0
    notes: list[str] = []
    errors: list[FetchError] = []
    any_good = False
    for label, params, max_pages, listed_on in _listings(cfg, day):
        listing = _pages(fetcher, url, params, cfg.limit, max_pages, listed_on)
        papers += listing.papers
        skipped += listing.skipped
        any_good = any_good or listing.good_pages > 0
        if listing.error is not None:
            errors.append(listing.error)
            notes.append(f"{listing.error} (listing {label} incomplete)")
            if isinstance(listing.error, Unreachable):
                break
        elif listing.good_pages == max_pages and cfg.mode == "daily":
            # trending is bounded on purpose; a day this long means `p` is being ignored
            notes.append(f"{SOURCE}: listing {label} stopped after {max_pages} pages")
    if errors and not any_good:
        first = errors[0]
        more = f" (and {len(errors) - 1} more failed requests)" if len(errors) > 1 else ""
        raise type(first)(f"{first}{more}") from first
    return FetchResult(
        source=SOURCE,
        papers=tuple(papers),
        skipped=skipped,
        requests=fetcher.requests,
        notes=tuple(notes),
    )
