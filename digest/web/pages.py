"""I/O edge: the subscribe page, its keyword preview, and double opt-in confirmation.

Subscribing never says whether an address is already subscribed: every accepted request
gets the same page at once, and the store lookup, the write and the mail (a confirmation
link for a new address, a manage link for a subscribed one) run in the background queue.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from digest import tokens
from digest.errors import InputError, TokenError
from digest.models import (
    ACTIVE,
    MATCH,
    PAUSED,
    PENDING,
    TRENDING,
    UNSUBSCRIBED,
    Paper,
    Pick,
    Subscriber,
)
from digest.rank.why import Why, why_sentence
from digest.subscribers import check_max, normalise_email, parse_keywords
from digest.web.app import WebContext, ctx_of
from digest.web.mails import build_notice
from digest.web.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    HONEYPOT_FIELD,
    STARTED_FIELD,
    BotSuspected,
    CsrfError,
)

log = logging.getLogger("digest.web")
ECHO_MAX = 2000  # longest field value echoed back into a form (the body cap is 16 KB anyway)
PREVIEW_EMAIL = "preview@preview.invalid"  # RFC 2606: a domain that can never receive mail


def field(form: FormData, name: str) -> str:
    value = form.get(name, "")
    return value[:ECHO_MAX] if isinstance(value, str) else ""


def csrf_check(ctx: WebContext, request: Request, form: FormData) -> Response | None:
    """None if the form's CSRF token matches this browser's cookie, else the 403 page."""
    try:
        ctx.guard.check_csrf(request.cookies.get(CSRF_COOKIE), field(form, CSRF_FIELD))
    except CsrfError as e:
        return ctx.error(request, 403, "Form rejected", f"Nothing was changed: {e}.")
    return None


# ----------------------------------------------------------------------------- preview


def preview_picks(
    ctx: WebContext, keywords: str, max_papers: int
) -> tuple[list[tuple[Pick, Paper, Why | None]], int]:
    """What the product's ranking would pick from recent papers for these keywords:
    (picks with their papers and why sentences: the matches, then the trending ones;
    number of candidate papers). Raises InputError."""
    from digest.rank import VECTOR_CACHE, rank

    terms = parse_keywords(keywords)
    since = ctx.now().date() - timedelta(days=ctx.settings.preview_days - 1)
    papers = ctx.recent_papers(since)
    if not terms or not papers:
        return [], len(papers)
    sub = Subscriber(email=PREVIEW_EMAIL, keywords=terms, max_papers=max_papers, status=ACTIVE)
    picks = rank(
        papers,
        [sub],
        popularity_weight=ctx.cfg.ranking.popularity_weight,
        min_score=ctx.cfg.ranking.min_score,
        trending=ctx.cfg.digest.trending,
        semantic=ctx.cfg.ranking.semantic,
        vector_cache=ctx.cfg.store.path / VECTOR_CACHE,
    )
    by_id = {p.id: p for p in papers}
    return [
        (
            pk,
            by_id[pk.paper_id],
            why_sentence(by_id[pk.paper_id], pk.matched) if pk.matched else None,
        )
        for pk in picks.get(PREVIEW_EMAIL, ())
        if pk.paper_id in by_id
    ], len(papers)


async def preview_values(ctx: WebContext, keywords: str, max_raw: str) -> dict[str, Any]:
    """Template values of the preview block (shared by the fragment and the full page)."""
    from starlette.concurrency import run_in_threadpool

    if not keywords.strip():
        return {
            "preview_shown": True,
            "preview": [],
            "preview_trending": [],
            "preview_error": "",
            "preview_candidates": None,
            "preview_days": ctx.settings.preview_days,
        }
    try:
        n = check_max(max_raw, ctx.cfg.ranking.default_max_papers)
        picks, candidates = await run_in_threadpool(preview_picks, ctx, keywords, n)
    except InputError as e:
        return {
            "preview_shown": True,
            "preview": [],
            "preview_trending": [],
            "preview_error": str(e),
            "preview_candidates": None,
            "preview_days": ctx.settings.preview_days,
        }
    return {
        "preview_shown": True,
        "preview": [x for x in picks if x[0].section == MATCH],
        "preview_trending": [x for x in picks if x[0].section == TRENDING],
        "preview_error": "",
        "preview_candidates": candidates,
        "preview_days": ctx.settings.preview_days,
    }


async def preview_fragment(request: Request) -> Response:
    """GET /preview?keywords=...&max=...: the preview block as an HTML fragment (for JS)."""
    ctx = ctx_of(request)
    wait = ctx.limit_preview.hit(ctx.client_ip(request))
    if wait is not None:
        return HTMLResponse(
            '<p class="error">Too many previews: wait a minute.</p>',
            status_code=429,
            headers={"Retry-After": str(int(wait) + 1)},
        )
    keywords = request.query_params.get("keywords", "")[:ECHO_MAX]
    max_raw = request.query_params.get("max", "")[:20]
    values = await preview_values(ctx, keywords, max_raw)
    return HTMLResponse(ctx.render("web/_preview.html", **values))


# ----------------------------------------------------------------------------- subscribe


def form_values(form: FormData | None = None) -> dict[str, str]:
    if form is None:
        return {"email": "", "keywords": "", "max": ""}
    return {
        "email": field(form, "email"),
        "keywords": field(form, "keywords"),
        "max": field(form, "max")[:20],
    }


def subscribe_page(
    ctx: WebContext,
    request: Request,
    status: int = 200,
    *,
    values: dict[str, str] | None = None,
    started: str | None = None,
    error: str = "",
    **extra: Any,
) -> Response:
    return ctx.page(
        request,
        "web/subscribe.html",
        status,
        values=values or form_values(),
        started=started or ctx.guard.started_token(),
        error=error,
        honeypot=HONEYPOT_FIELD,
        default_max=ctx.cfg.ranking.default_max_papers,
        papers_public=ctx.cfg.web.public_papers,  # a link to /papers (digest/web/papers.py)
        **extra,
    )


async def subscribe_form(request: Request) -> Response:
    return subscribe_page(ctx_of(request), request)


async def subscribe_post(request: Request) -> Response:
    ctx = ctx_of(request)
    form = await request.form()
    denied = csrf_check(ctx, request, form)
    if denied:
        return denied
    values = form_values(form)
    started = field(form, STARTED_FIELD)[:200]
    if field(form, "action") == "preview":  # the no-JavaScript preview: re-render, store nothing
        preview = await preview_values(ctx, values["keywords"], values["max"])
        return subscribe_page(ctx, request, values=values, started=started, **preview)
    if field(form, HONEYPOT_FIELD):
        # A bot filled the field humans never see: answer like a success, do nothing.
        log.info("subscribe: honeypot filled, dropped")
        return sent_page(ctx, request)
    try:
        ctx.guard.check_started(started, ctx.settings.min_fill_seconds)
    except BotSuspected as e:
        return subscribe_page(ctx, request, 400, values=values, error=str(e))
    wait = ctx.limit_ip.hit(ctx.client_ip(request))
    if wait is not None:
        return too_many(ctx, request, wait)
    try:
        email = normalise_email(values["email"])
        keywords = parse_keywords(values["keywords"])
        max_papers = check_max(values["max"], ctx.cfg.ranking.default_max_papers)
    except InputError as e:
        return subscribe_page(ctx, request, 400, values=values, started=started, error=str(e))
    wait = ctx.limit_email.hit(email.lower())  # the store matches addresses caseless
    if wait is not None:
        return too_many(ctx, request, wait)
    ctx.jobs.submit(lambda: subscribe_job(ctx, email, keywords, max_papers))
    return sent_page(ctx, request)


def sent_page(ctx: WebContext, request: Request) -> Response:
    """The one answer to every accepted subscribe request, whatever the address's state."""
    return ctx.page(request, "web/sent.html")


def too_many(ctx: WebContext, request: Request, wait: float) -> Response:
    minutes = max(1, round(wait / 60))
    return ctx.error(
        request,
        429,
        "Too many requests",
        f"Too many subscribe requests from here or for this address: try again "
        f"in about {minutes} minute{'s' if minutes != 1 else ''}.",
        headers={"Retry-After": str(int(wait) + 1)},
    )


def subscribe_job(ctx: WebContext, email: str, keywords: tuple[str, ...], max_papers: int) -> None:
    """Background: store a PENDING subscriber and mail the confirmation link, or, for an
    address that already gets the digest, change nothing and mail its manage link."""
    now = ctx.now()
    known = False

    def change(existing: Subscriber | None) -> Subscriber | None:
        nonlocal known
        known = existing is not None and existing.status in (ACTIVE, PAUSED)
        if known:
            return None
        stamp = now.isoformat(timespec="seconds")
        return (
            replace(existing, keywords=keywords, max_papers=max_papers, status=PENDING)
            if existing is not None
            else Subscriber(
                email=email,
                keywords=keywords,
                max_papers=max_papers,
                status=PENDING,
                created=stamp,
            )
        )

    with ctx.lock:
        ctx.store.update_subscriber(email, change)
    site = ctx.cfg.site_name
    if known:
        lk = tokens.links(ctx.base_url, ctx.secret, email)
        values: dict[str, object] = {
            "manage_url": lk.manage_url,
            "unsubscribe_url": lk.unsubscribe_url,
        }
        kind, subject = "known", f"You are already subscribed to {site}"
    else:
        values = {
            "confirm_url": tokens.confirm_url(ctx.base_url, ctx.secret, email),
            "keywords": keywords,
            "max_papers": max_papers,
            "days": tokens.CONFIRM_MAX_AGE // 86400,
        }
        kind, subject = "confirm", f"Confirm your subscription to {site}"
    msg = build_notice(
        kind=kind,
        to=email,
        sender=ctx.cfg.smtp.sender,
        subject=subject,
        text=ctx.render(f"web/mail_{kind}.txt", **values),
        html=ctx.render(f"web/mail_{kind}.html", **values),
        now=now,
    )
    ctx.send(msg)


# ----------------------------------------------------------------------------- confirm


def check_token(
    ctx: WebContext, request: Request, purpose: str, token: str, max_age: int | None = None
) -> str | Response:
    """The address in a link's token, or the 400 page for a forged/altered/expired one."""
    try:
        return tokens.verify(ctx.secret, purpose, token, max_age=max_age)
    except TokenError as e:
        return ctx.error(
            request, 400, "Invalid link", f"This link does not work ({e}). Nothing was changed."
        )


async def confirm(request: Request) -> Response:
    """GET shows a button (mail scanners prefetch links); POST activates the subscriber."""
    ctx = ctx_of(request)
    token = request.path_params["token"]
    email = check_token(ctx, request, tokens.CONFIRM, token, tokens.CONFIRM_MAX_AGE)
    if isinstance(email, Response):
        return email
    if request.method in ("GET", "HEAD"):
        return ctx.page(request, "web/confirm.html", email=email, action=request.url.path)
    form = await request.form()
    denied = csrf_check(ctx, request, form)
    if denied:
        return denied

    def activate() -> str:
        outcome = "missing"

        def change(sub: Subscriber | None) -> Subscriber | None:
            nonlocal outcome
            if sub is None:
                return None
            if sub.status == PENDING:
                outcome = "activated"
                return replace(sub, status=ACTIVE)
            outcome = sub.status
            return None

        ctx.store.update_subscriber(email, change)
        return outcome

    outcome = await ctx.db(activate)
    if outcome == "missing":
        return ctx.error(
            request,
            404,
            "Nothing to confirm",
            "There is no pending subscription for this address. Subscribe again on the front page.",
        )
    if outcome == UNSUBSCRIBED:
        return ctx.error(
            request,
            409,
            "Subscription cancelled",
            "This address was unsubscribed after the link was sent. Subscribe "
            "again on the front page.",
        )
    lk = tokens.links(ctx.base_url, ctx.secret, email)
    return ctx.page(
        request, "web/confirmed.html", email=email, links=lk, already=outcome != "activated"
    )
