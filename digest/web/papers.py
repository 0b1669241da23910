"""I/O edge: the public papers pages, the day's new papers on the web (issue 13).

    GET /papers               the latest day's new papers, most popular first
    GET /papers/YYYY-MM-DD    a past day, while the store keeps its papers' details
    ...?q=keywords            the day's papers ranked for these keywords by the digest's own
                              ranker (digest.rank.rank, the same syntax as a subscription:
                              commas, "phrases", -exclusions): the matches with why, then
                              the rest under "Other papers of the day"

A day's papers are the ones first seen that day (what that day's run added: the same
"new" as a digest's). Every page carries the banner "Get these in your inbox once a day":
a subscribe form prefilled with the query's keywords that posts to the front page's own
handler (pages.subscribe_post: CSRF, honeypot, fill time, rate limits, double opt-in).

Pages are server-rendered, need no JavaScript and carry no script. They are cacheable per
browser: `ETag` (a hash of what the page is made from and of this browser's CSRF cookie,
computed before rendering) and `Cache-Control: private`; a matching If-None-Match gets 304
without ranking or rendering anything. Since a revalidated page
keeps its body while a 304 replaces its headers, the page's <style> is allowed by its
hash, not by a per-response nonce. Searching is rate-limited per client like the live
preview (the same store-kept limit, `ctx.hit("preview", ...)`) and length-limited (Q_MAX,
414 above it).

`[web] public_papers = false` turns the pages off (404).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from urllib.parse import urlencode

import numpy as np
from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from digest.errors import InputError, StoreError
from digest.models import ACTIVE, MATCH, TRENDING, Paper, Subscriber
from digest.rank.features import popularity
from digest.rank.why import why_sentence
from digest.render import SUMMARY_CHARS, TITLE_CHARS, day_label, safe_url, short_authors, shorten
from digest.subscribers import parse_keywords
from digest.web.app import WebContext, ctx_of, set_csrf_cookie
from digest.web.lifecycle import _quote
from digest.web.security import CSRF_COOKIE, HONEYPOT_FIELD, new_cookie_value

log = logging.getLogger("digest.web")

Q_MAX = 200  # characters of a search (the input's maxlength; longer: 414)
SEARCH_EMAIL = "papers@papers.invalid"  # RFC 2606: the ranker's stand-in subscriber
CACHE_CONTROL = "private, max-age=60"  # per browser: the banner's form carries its CSRF token
# A cached page's form tokens (CSRF, fill time) last 24 h; the ETag changes every 12 h so
# that a page revalidated with 304 never carries tokens older than that.
TOKEN_EPOCH_SECONDS = 12 * 3600
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_BOOT = secrets.token_hex(8)  # this process, in every ETag
# Placeholders for the per-browser form tokens: the page is rendered once, then filled in.
_CSRF_SLOT, _STARTED_SLOT = "\x00csrf\x00", "\x00started\x00"


# ----------------------------------------------------------------------------- pure parts


def parse_day(raw: str) -> date | None:
    """The date in a URL segment, strictly YYYY-MM-DD; None when it is not one."""
    if not _DATE.fullmatch(raw):
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        return None


def popular_first(papers: Sequence[Paper]) -> list[Paper]:
    """The papers most popular first, by the digest's own popularity (log upvotes and
    stars, digest.rank.features.popularity) and its tie-break ("Trending today" walks the
    same order): equal popularity keeps the given order, here the arXiv id."""
    ordered = sorted({p.id: p for p in papers}.values(), key=lambda p: p.id)
    if not ordered:
        return []
    pop = np.round(100.0 * popularity(ordered), 4)
    order = np.lexsort((np.arange(len(ordered)), -pop)).tolist()
    return [ordered[i] for i in order]


def neighbours(days: Sequence[date], day: date) -> tuple[date | None, date | None]:
    """The kept days just before and just after `day` (None at either end)."""
    before = [d for d in days if d < day]
    after = [d for d in days if d > day]
    return (before[-1] if before else None), (after[0] if after else None)


@dataclass(frozen=True, slots=True)
class Card:
    """One paper as a papers page shows it."""

    paper: Paper
    title: str
    authors: str
    summary: str
    github_url: str | None
    project_url: str | None
    section: str = ""  # with a query: MATCH or TRENDING (the data-section marker)
    matched: str = ""  # the query's terms it matched, as typed
    why: Markup | None = None  # the sentence where they occur, matched words in <mark>


def card(paper: Paper, section: str = "", matched: Sequence[str] = ()) -> Card:
    why = why_sentence(paper, matched) if matched else None
    return Card(
        paper=paper,
        title=shorten(paper.title, TITLE_CHARS) or paper.id,
        authors=short_authors(paper.authors),
        summary=shorten(paper.ai_summary or paper.abstract or "", SUMMARY_CHARS),
        github_url=safe_url(paper.github_repo),
        project_url=safe_url(paper.project_page),
        section=section,
        matched=", ".join(t.strip().strip('"') for t in matched if t.strip()),
        why=(
            Markup(
                "".join(
                    f"<mark>{escape(text)}</mark>" if hit else str(escape(text))
                    for text, hit in why.parts()
                )
            )
            if why is not None
            else None
        ),
    )


@dataclass(frozen=True, slots=True)
class Search:
    """A day's papers for a query: the matches (best first), the others (most popular
    first) and how many the query's exclusions removed."""

    terms: tuple[str, ...]
    matches: tuple[Card, ...]
    others: tuple[Card, ...]
    excluded: int

    @property
    def includes(self) -> tuple[str, ...]:
        return tuple(t for t in self.terms if not t.startswith("-"))

    @property
    def excludes(self) -> tuple[str, ...]:
        return tuple(t[1:] for t in self.terms if t.startswith("-"))


def search(ctx: WebContext, papers: Sequence[Paper], terms: tuple[str, ...]) -> Search:
    """Rank the day's papers for `terms` the way a digest ranks them for a subscriber
    with these keywords (digest.rank.rank, the run's settings: cut, popularity blend,
    semantic model), with no ceiling: every match, then every other paper the exclusions
    allow, most popular first (rank's own "trending" order)."""
    from digest.rank import VECTOR_CACHE, rank

    ordered = popular_first(papers)
    n = len(ordered)
    if not n:
        return Search(terms, (), (), 0)
    sub = Subscriber(email=SEARCH_EMAIL, keywords=terms, max_papers=n, status=ACTIVE, trending=n)
    picks = rank(
        sorted(ordered, key=lambda p: p.id),
        [sub],
        popularity_weight=ctx.cfg.ranking.popularity_weight,
        min_score=ctx.cfg.ranking.min_score,
        semantic=ctx.cfg.ranking.semantic,
        vector_cache=ctx.cfg.store.path / VECTOR_CACHE,
    ).get(SEARCH_EMAIL, ())
    by_id = {p.id: p for p in ordered}
    matches = tuple(
        card(by_id[pk.paper_id], MATCH, pk.matched) for pk in picks if pk.section == MATCH
    )
    others = tuple(card(by_id[pk.paper_id], TRENDING) for pk in picks if pk.section == TRENDING)
    return Search(terms, matches, others, n - len(matches) - len(others))


# ----------------------------------------------------------------------------- the store


Kept = Mapping[date, tuple[str, ...]]  # day -> ids of the papers first seen that day


def kept_days(ctx: WebContext) -> Kept:
    """The days whose new papers the store still keeps, oldest first, with their ids.
    Read afresh for every page (one pass over the seen ids, no paper decoded): a page
    never lags behind a run."""
    with ctx.lock:
        return dict(sorted(ctx.store.seen_days(date.min).items()))


def day_papers(ctx: WebContext, day: date, kept: Kept | None = None) -> tuple[Paper, ...]:
    """The papers first seen on `day` whose details are kept. Only that day's papers are
    decoded, however old the day (recent_papers(day) would decode every paper since)."""
    with ctx.lock:
        ids = (kept if kept is not None else ctx.store.seen_days(day)).get(day, ())
        found = ctx.store.get_papers(ids)
    return tuple(found[pid] for pid in ids if pid in found)


# ----------------------------------------------------------------------------- rendering

# The page's one <style> (web/base.html's, rendered with no nonce): allowed by its hash.
_STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.S)


def style_source(html: str) -> str:
    """The CSP source ('sha256-...') of the page's <style> element's text."""
    m = _STYLE.search(html)
    text = m.group(1) if m else ""
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
    return f"'sha256-{digest}'"


def content_security_policy(style: str) -> str:
    """No script at all; the one <style> by its hash; forms post only to this site."""
    return (
        f"default-src 'none'; style-src {style}; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )


def render_day(
    ctx: WebContext,
    day: date | None,
    q: str = "",
    *,
    days: Sequence[date] | None = None,
    papers: Sequence[Paper] | None = None,
    latest: bool = False,
    csrf: str = _CSRF_SLOT,
    started: str = _STARTED_SLOT,
) -> str:
    """The HTML of a day's page (reads the store only for `days` / `papers` not given).
    `day` None: the store has no papers yet. A search that does not parse is shown as
    an error above the day's papers (`query_error` says so first, for the status). The
    form tokens default to placeholders, filled in per browser by `respond`."""
    if days is None:
        days = tuple(kept_days(ctx))
    if papers is None:
        papers = day_papers(ctx, day) if day is not None else ()
    q = q.strip()
    error = query_error(q)
    found: Search | None = None
    terms: tuple[str, ...] = ()
    if q and not error:
        terms = parse_keywords(q)
        if terms:
            found = search(ctx, papers, terms)
    prev_day, next_day = neighbours(days, day) if day is not None else (None, None)
    keep = f"?{urlencode({'q': q})}" if q else ""
    return ctx.render(
        "web/papers.html",
        nonce="",  # the <style> is allowed by its hash (respond)
        day=day.isoformat() if day else "",
        day_label=day_label(day) if day else "",
        latest=latest,
        action=f"/papers/{day.isoformat()}" if day and not latest else "/papers",
        prev_url=f"/papers/{prev_day.isoformat()}{keep}" if prev_day else "",
        prev_label=day_label(prev_day) if prev_day else "",
        next_url=f"/papers/{next_day.isoformat()}{keep}" if next_day else "",
        next_label=day_label(next_day) if next_day else "",
        count=len({p.id for p in papers}),
        q=q,
        q_max=Q_MAX,
        error=error,
        searched=found is not None,
        has_words=bool(found and found.includes),
        matches=found.matches if found else (),
        others=found.others if found else tuple(card(p) for p in popular_first(papers)),
        excluded=found.excluded if found else 0,
        keywords=", ".join(_quote(t) for t in terms),
        keep_days=ctx.cfg.store.history_days,
        csrf=csrf,
        started=started,
        honeypot=HONEYPOT_FIELD,
    )


def query_error(q: str) -> str:
    """Why a search cannot be read ("" when it can): the subscription syntax's errors."""
    try:
        parse_keywords(q)
    except InputError as e:
        return f"Search not understood: {e}. The day's papers are shown unranked."
    return ""


def page_tag(ctx: WebContext, cookie: str, parts: tuple[object, ...]) -> str:
    """The weak ETag of a page: everything it is rendered from (`parts`: the day, the
    search, the kept days, the day's papers), the settings that shape it, this browser's
    CSRF cookie, the 12-hour token epoch and this process (a restart, e.g. a deploy of new
    templates, changes every tag). Computed without rendering, so a 304 costs no ranking."""
    cfg = ctx.cfg
    epoch = int(ctx.now().timestamp() // TOKEN_EPOCH_SECONDS)
    h = hashlib.sha256(_BOOT.encode())
    h.update(repr((cfg.site_name, cfg.ranking, cfg.digest, cfg.store.history_days)).encode())
    h.update(repr(parts).encode())
    h.update(f"\x00{cookie}\x00{epoch}".encode())
    return f'W/"{h.hexdigest()[:32]}"'


def respond(
    ctx: WebContext,
    request: Request,
    day: date | None,
    q: str,
    kept: Kept,
    *,
    latest: bool = False,
) -> Response:
    """A day's page for this browser (runs in the thread pool: it reads the store and may
    rank): 304 when the browser's copy (If-None-Match) is still this page, else the page
    with its form tokens filled in; ETag, Cache-Control and the hash CSP either way."""
    days = tuple(kept)
    papers = day_papers(ctx, day, kept) if day is not None else ()
    status = 400 if query_error(q) else 200
    cookie = request.cookies.get(CSRF_COOKIE, "")
    fresh = not (20 <= len(cookie) <= 100)
    if fresh:
        cookie = new_cookie_value()
    etag = page_tag(ctx, cookie, (day, q, latest, tuple(days), papers, status))
    style = _styles.get(ctx)
    tags = _if_none_match(request)
    if style is not None and status == 200 and not fresh and (etag in tags or "*" in tags):
        return Response(status_code=304, headers=_headers(etag, style))
    body = render_day(ctx, day, q, days=days, papers=papers, latest=latest)
    style = _styles[ctx] = style_source(body)
    html = body.replace(_CSRF_SLOT, ctx.guard.csrf_token(cookie)).replace(
        _STARTED_SLOT, ctx.guard.started_token()
    )
    resp = HTMLResponse(html, status_code=status, headers=_headers(etag, style))
    if fresh:
        set_csrf_cookie(resp, cookie, ctx.https)
    return resp


# The CSP source of the pages' <style> (the same on every page), once one was rendered.
_styles: weakref.WeakKeyDictionary[WebContext, str] = weakref.WeakKeyDictionary()


def _headers(etag: str, style: str) -> dict[str, str]:
    return {
        "etag": etag,
        "cache-control": CACHE_CONTROL,
        "vary": "Cookie",
        "content-security-policy": content_security_policy(style),
    }


def _if_none_match(request: Request) -> set[str]:
    raw = request.headers.get("if-none-match", "")
    tags = {t.strip() for t in raw.split(",") if t.strip()}
    # RFC 9110 13.1.2: If-None-Match compares weakly; W/"x" and "x" are the same tag.
    return tags | {f"W/{t}" for t in tags if not t.startswith("W/")}


# ----------------------------------------------------------------------------- handlers


def _not_public(ctx: WebContext, request: Request) -> Response:
    return ctx.error(request, 404, "Not found", "The papers pages are not public on this site.")


def _missing(ctx: WebContext, request: Request, status: int, title: str, message: str) -> Response:
    return ctx.page(request, "web/papers_error.html", status, title=title, message=message)


async def _check_query(ctx: WebContext, request: Request) -> str | Response:
    """The search keywords, or the page that refuses them (too long, too many)."""
    q = request.query_params.get("q", "")
    if len(q) > Q_MAX:
        return _missing(
            ctx,
            request,
            414,
            "Search too long",
            f"A search may have at most {Q_MAX} characters; this one has {len(q)}. "
            "Shorten it and try again.",
        )
    if q.strip():
        try:
            wait = await ctx.db(ctx.hit, "preview", ctx.client_ip(request))
        except StoreError:
            return ctx.error(
                request, 503, "Search unavailable", "Searching is not possible right now."
            )
        if wait is not None:
            return ctx.error(
                request,
                429,
                "Too many searches",
                "Too many searches from here: wait a minute and try again.",
                headers={"Retry-After": str(int(wait) + 1)},
            )
    return q.strip()


async def papers_latest(request: Request) -> Response:
    """GET /papers: the latest kept day."""
    ctx = ctx_of(request)
    if not ctx.cfg.web.public_papers:
        return _not_public(ctx, request)
    q = await _check_query(ctx, request)
    if isinstance(q, Response):
        return q

    def build() -> Response:
        kept = kept_days(ctx)
        newest = max(kept) if kept else None
        return respond(ctx, request, newest, q, kept, latest=True)

    return await run_in_threadpool(build)


async def papers_day(request: Request) -> Response:
    """GET /papers/YYYY-MM-DD: a kept day; a plain page with the right status otherwise."""
    ctx = ctx_of(request)
    if not ctx.cfg.web.public_papers:
        return _not_public(ctx, request)
    raw = request.path_params["day"]
    day = parse_day(raw)
    if day is None:
        return _missing(
            ctx,
            request,
            400,
            "Not a date",
            f"“{_printable(raw)}” is not a day: a day's papers are at /papers/YYYY-MM-DD, "
            "e.g. /papers/2026-03-10.",
        )
    q = await _check_query(ctx, request)
    if isinstance(q, Response):
        return q
    kept = await run_in_threadpool(kept_days, ctx)
    days = tuple(kept)
    if day not in kept:
        oldest = ctx.now().date() - timedelta(days=ctx.cfg.store.history_days)
        return _missing(
            ctx,
            request,
            404,
            "No papers for this day",
            _why_missing(day, days, oldest, ctx.cfg.store.history_days),
        )
    return await run_in_threadpool(respond, ctx, request, day, q, kept)


def _printable(raw: str, limit: int = 40) -> str:
    """A URL segment fit to quote back: control characters dropped, cut at `limit`."""
    text = "".join(ch for ch in raw if ch.isprintable())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _why_missing(day: date, days: Sequence[date], oldest: date, keep: int) -> str:
    iso = day.isoformat()
    have = f" This site has papers from {days[0]} to {days[-1]}." if days else ""
    if day < oldest:
        return f"{iso} is older than the {keep} days this site keeps papers for.{have}"
    return f"No papers were listed here on {iso}.{have}"
