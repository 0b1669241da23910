"""I/O edge: arXiv new submissions, from the RSS feed or the export API, plus pure parsers.

* mode "rss": `GET {rss_base_url}/{cat1}+{cat2}` — RSS 2.0 with the arxiv namespace; only
  `arxiv:announce_type` "new" and "cross" are kept ("replace"/"replace-cross" are new
  versions of papers announced before, not new papers).
* mode "api": `GET {api_base_url}?search_query=cat:A OR cat:B&sortBy=submittedDate&
  sortOrder=descending&max_results=N` — an Atom feed. The API explains a bad query in
  an Atom entry titled "Error" (with HTTP 400); its summary becomes the error message.

Politeness: arXiv asks API users for at most one request every 3 seconds
(https://info.arxiv.org/help/api/tou.html, "make no more than one request every three
seconds"). `RateLimiter` enforces `min_interval` between all requests to arXiv,
retries included, with an injectable clock and sleep.

XML is parsed with the standard library's ElementTree. A document with a DOCTYPE is
refused before parsing (no entity expansion, the defusedxml rule), so no extra package
is needed. Malformed XML is a source error with one line. There is one request per run,
so a failed request fails the source as a whole (FetchError).
"""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import date, datetime
from email.utils import parsedate_to_datetime

import httpx

from digest.config import ArxivConfig
from digest.errors import FetchError
from digest.models import FetchResult, Paper
from digest.sources.clean import TITLE_MAX, clean_text, normalise_arxiv_id
from digest.sources.http import Fetcher

SOURCE = "arxiv"
ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV = "{http://arxiv.org/schemas/atom}"
DC = "{http://purl.org/dc/elements/1.1/}"
KEEP_ANNOUNCE = ("new", "cross")
_DESC_PREFIX = re.compile(
    r"^\s*arXiv:\S+\s+Announce Type:\s*[\w-]+\s*(?:Abstract:\s*)?", re.IGNORECASE
)


class RateLimiter:
    """At most one call of `wait()` per `min_interval` seconds (arXiv's 3-second rule)."""

    def __init__(
        self,
        min_interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.min_interval, self.clock, self.sleep = min_interval, clock, sleep
        self._last: float | None = None

    def wait(self) -> None:
        if self._last is not None:
            remaining = self.min_interval - (self.clock() - self._last)
            if remaining > 0:
                self.sleep(remaining)
        self._last = self.clock()


def _xml(content: bytes) -> ET.Element:
    """Parse untrusted XML; ValueError with one line when it is not acceptable."""
    head = content[:4096].lower()
    if b"<!doctype" in head or b"<!entity" in content.lower():
        raise ValueError("XML with a DOCTYPE/ENTITY declaration refused")
    try:
        return ET.fromstring(content)
    except ET.ParseError as e:
        raise ValueError(f"malformed XML ({e})") from e


def _text(el: ET.Element | None) -> str:
    return "" if el is None else "".join(el.itertext())


def _rss_day(value: str) -> date | None:
    try:
        return parsedate_to_datetime(value.strip()).date()
    except (TypeError, ValueError, IndexError):
        return None


def _iso_day(value: str) -> date | None:
    try:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).date()
    except ValueError:
        return None


def _split_authors(value: str) -> tuple[str, ...]:
    names = (clean_text(n, 200) for n in re.split(r",|\band\b", value))
    return tuple(n for n in names if n)


def parse_rss(content: bytes) -> tuple[list[Paper], int]:
    """Papers announced as new or cross-listed in an arXiv RSS feed, and bad items skipped.

    ValueError when the document is not an RSS feed at all.
    """
    root = _xml(content)
    channel = root.find("channel")
    if root.tag != "rss" or channel is None:
        raise ValueError(f"expected an RSS 2.0 feed, got <{root.tag}>")
    papers: list[Paper] = []
    skipped = 0
    for item in channel.iter("item"):
        announce = _text(item.find(f"{ARXIV}announce_type")).strip().lower() or "new"
        if announce not in KEEP_ANNOUNCE:
            continue  # a new version of an already announced paper: not new
        pid = normalise_arxiv_id(_text(item.find("guid"))) or normalise_arxiv_id(
            _text(item.find("link"))
        )
        title = clean_text(_text(item.find("title")), TITLE_MAX)
        if pid is None or not title:
            skipped += 1
            continue
        papers.append(
            Paper(
                id=pid,
                title=title,
                abstract=clean_text(_DESC_PREFIX.sub("", _text(item.find("description")))),
                authors=_split_authors(_text(item.find(f"{DC}creator"))),
                listed_on=_rss_day(_text(item.find("pubDate"))),
                sources=(SOURCE,),
            )
        )
    return papers, skipped


def api_error(root: ET.Element) -> str | None:
    """The explanation in an export-API error feed (an entry titled "Error"), else None."""
    for entry in root.iter(f"{ATOM}entry"):
        eid = _text(entry.find(f"{ATOM}id"))
        if "/api/errors" in eid or _text(entry.find(f"{ATOM}title")).strip() == "Error":
            return clean_text(_text(entry.find(f"{ATOM}summary")), 300) or "unknown API error"
    return None


def parse_atom(content: bytes) -> tuple[list[Paper], int]:
    """Papers of an export-API Atom feed, and bad entries skipped.

    ValueError when it is not an Atom feed or is an API error feed (its summary).
    """
    root = _xml(content)
    if root.tag != f"{ATOM}feed":
        raise ValueError(f"expected an Atom feed, got <{root.tag}>")
    error = api_error(root)
    if error is not None:
        raise ValueError(f"arXiv API error: {error}")
    papers: list[Paper] = []
    skipped = 0
    for entry in root.iter(f"{ATOM}entry"):
        pid = normalise_arxiv_id(_text(entry.find(f"{ATOM}id")))
        title = clean_text(_text(entry.find(f"{ATOM}title")), TITLE_MAX)
        if pid is None or not title:
            skipped += 1
            continue
        authors = tuple(
            n
            for n in (
                clean_text(_text(a.find(f"{ATOM}name")), 200) for a in entry.iter(f"{ATOM}author")
            )
            if n
        )
        papers.append(
            Paper(
                id=pid,
                title=title,
                abstract=clean_text(_text(entry.find(f"{ATOM}summary"))),
                authors=authors,
                listed_on=_iso_day(_text(entry.find(f"{ATOM}published"))),
                sources=(SOURCE,),
            )
        )
    return papers, skipped


def _api_error_detail(response: httpx.Response) -> str | None:
    try:
        return api_error(_xml(response.content))
    except ValueError:
        return None


def request_for(cfg: ArxivConfig) -> tuple[str, dict[str, str] | None]:
    """URL and query parameters for the configured mode and categories."""
    if cfg.mode == "api":
        query = " OR ".join(f"cat:{c}" for c in cfg.categories)
        return cfg.api_base_url.rstrip("/"), {
            "search_query": query,
            "sortBy": "submittedDate",
            "sortOrder": "descending",
            "max_results": str(cfg.max_results),
        }
    # The RSS endpoint takes several categories joined by "+" in the path.
    return f"{cfg.rss_base_url.rstrip('/')}/{'+'.join(cfg.categories)}", None


def probe(fetcher: Fetcher, cfg: ArxivConfig) -> str:
    """The run's one request (`digest check-config --connect`), in a few words."""
    result = fetch(fetcher, cfg)
    return f"{len(result.papers)} papers for {', '.join(cfg.categories)} ({cfg.mode})"


def fetch(fetcher: Fetcher, cfg: ArxivConfig) -> FetchResult:
    """One request for all configured categories. FetchError when it fails."""
    url, params = request_for(cfg)
    response = fetcher.get(url, params, error_detail=_api_error_detail)
    shown = str(response.request.url)
    parse = parse_atom if cfg.mode == "api" else parse_rss
    try:
        papers, skipped = parse(response.content)
    except ValueError as e:
        raise FetchError(f"{SOURCE}: GET {shown}: {e}") from e
    return FetchResult(
        source=SOURCE, papers=tuple(papers), skipped=skipped, requests=fetcher.requests
    )
