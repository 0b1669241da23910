"""I/O edge: the subscribe page, its keyword preview, and double opt-in confirmation.

Subscribing never says whether an address is already subscribed: every accepted request
gets the same page, once the request and its mail (a confirmation link for a new, pending
or unsubscribed address, a manage link for a subscribed one) are in the store, in one
atomic write. The mail worker (mailqueue.py) sends it; a store that cannot write gets a
503 page, never "check your inbox".
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from digest import tokens
from digest.errors import InputError, StoreError
from digest.examples import parse_papers
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
from digest.store.base import Change, new_subscriber_id
from digest.subscribers import check_max, normalise_email, parse_keywords
from digest.web.app import WebContext, ctx_of, store_unavailable
from digest.web.mails import build_notice
from digest.web.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    HONEYPOT_FIELD,
    STARTED_FIELD,
    STARTED_MAX_AGE,
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
            "preview_error": plain_error(e),
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
    try:
        wait = await ctx.db(ctx.hit, "preview", ctx.client_ip(request))
    except StoreError:
        return HTMLResponse(
            '<p class="error">The preview is not available right now.</p>', status_code=503
        )
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
        return {"email": "", "keywords": "", "max": "", "papers": ""}
    return {
        "email": field(form, "email"),
        "keywords": field(form, "keywords"),
        "max": field(form, "max")[:20],
        "papers": field(form, "papers")[:5000],
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
        nonce = ctx.guard.check_started(started, ctx.settings.min_fill_seconds)
    except BotSuspected as e:
        return subscribe_page(ctx, request, 400, values=values, error=str(e))
    try:
        email = normalise_email(values["email"])
        keywords = parse_keywords(values["keywords"])
        max_papers = check_max(values["max"], ctx.cfg.ranking.default_max_papers)
        # Only checked here: the ids travel in the confirmation link and are looked up
        # (store, else arXiv) when it is clicked, so an anonymous form never makes this
        # service ask arXiv (digest/web/lifecycle.py confirm).
        examples = parse_papers(values["papers"]) or None
    except InputError as e:
        return subscribe_page(
            ctx, request, 400, values=values, started=started, error=plain_error(e)
        )
    ip = ctx.client_ip(request)
    try:
        outcome = await ctx.db(
            accept_subscribe, ctx, ip, nonce, email, keywords, max_papers, examples
        )
    except Exception as e:  # noqa: BLE001 - nothing stored: say so, never "check your inbox"
        return await store_unavailable(ctx, request, e)
    if outcome == "reused":
        return subscribe_page(
            ctx,
            request,
            400,
            values=values,
            error="This form was already sent. Check your inbox, or send the form again.",
        )
    if isinstance(outcome, float):
        return too_many(ctx, request, outcome)
    ctx.mailer.wake()
    return sent_page(ctx, request)


def limit_key(email: str) -> str:
    """Pure: the address a subscribe limit counts against: lower case, without a
    "+tag" (victim+1@, victim+2@ … share victim@'s budget)."""
    local, _, domain = email.lower().rpartition("@")
    return f"{local.split('+', 1)[0] or local}@{domain}"


def accept_subscribe(
    ctx: WebContext,
    ip: str,
    nonce: str,
    email: str,
    keywords: tuple[str, ...],
    max_papers: int,
    examples: tuple[str, ...] | None = None,
) -> float | str:
    """Under ctx.lock: count the limits, use up the form, and store the request with its
    mail in one atomic write. Returns "stored", "reused" (the form was sent before) or
    the seconds to wait (a limit is reached). Raises when the store cannot write."""
    now = ctx.clock()
    wait = ctx.hit("ip", ip)
    if wait is not None:
        return wait
    if not ctx.store.use_nonce(f"form:{nonce}", now + timedelta(seconds=STARTED_MAX_AGE), now):
        return "reused"
    wait = ctx.hit("email", limit_key(email))
    if wait is not None:
        return wait
    ctx.store.update_subscriber(
        email,
        lambda cur: subscribe_change(ctx, email, keywords, max_papers, cur, examples),
        now=now,
    )
    return "stored"


def subscribe_change(
    ctx: WebContext,
    email: str,
    keywords: tuple[str, ...],
    max_papers: int,
    existing: Subscriber | None,
    examples: tuple[str, ...] | None = None,
) -> Change:
    """What a subscribe request does (runs inside update_subscriber, so no store call).

    - new address (or an expired pending one): a PENDING subscriber and its confirmation;
    - already getting the digest (active, paused): nothing changes, its manage link is
      mailed;
    - pending or unsubscribed: nothing changes; a confirmation link carrying the settings
      asked for is mailed, and only clicking it applies them.
    Example papers (`examples`, ids) are only carried by the link: a new subscriber is
    stored without them until the click resolves them.
    The page answered is the same in every case."""
    now = ctx.now()
    if existing is not None and existing.status in (ACTIVE, PAUSED):
        return Change(None, (known_mail(ctx, existing),))
    if existing is not None and not (existing.status == PENDING and pending_expired(ctx, existing)):
        revive = existing.status == UNSUBSCRIBED  # only such a link may bring it back
        mail = confirm_mail(
            ctx,
            existing.email,
            existing.id,
            keywords,
            max_papers,
            revive=revive,
            examples=examples,
        )
        return Change(None, (mail,))
    sid = existing.id if existing is not None and existing.id else new_subscriber_id()
    sub = Subscriber(
        email=email,
        keywords=keywords,
        max_papers=max_papers,
        status=PENDING,
        created=now.isoformat(timespec="seconds"),
        id=sid,
    )
    return Change(sub, (confirm_mail(ctx, email, sid, keywords, max_papers, examples=examples),))


def pending_expired(ctx: WebContext, sub: Subscriber) -> bool:
    try:
        created = datetime.fromisoformat(sub.created)
    except ValueError:
        return False
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return ctx.now() - created > timedelta(days=ctx.cfg.store.pending_days)


def notice_mail(ctx: WebContext, kind: str, to: str, subject: str, **values: Any) -> Any:
    return build_notice(
        kind=kind,
        to=to,
        sender=ctx.cfg.smtp.sender,
        subject=subject,
        text=ctx.render(f"web/mail_{kind}.txt", **values),
        html=ctx.render(f"web/mail_{kind}.html", **values),
        now=ctx.now(),
    )


def known_mail(ctx: WebContext, sub: Subscriber) -> Any:
    lk = tokens.links(ctx.base_url, ctx.secret, sub.id)
    return notice_mail(
        ctx,
        "known",
        sub.email,
        f"You are already subscribed to {ctx.cfg.site_name}",
        manage_url=lk.manage_url,
        unsubscribe_url=lk.unsubscribe_url,
        manage_days=ctx.settings.manage_days,
    )


def confirm_mail(
    ctx: WebContext,
    email: str,
    sid: str,
    keywords: tuple[str, ...],
    max_papers: int,
    *,
    revive: bool = False,
    examples: tuple[str, ...] | None = None,
) -> Any:
    return notice_mail(
        ctx,
        "confirm",
        email,
        f"Confirm your subscription to {ctx.cfg.site_name}",
        confirm_url=tokens.confirm_url(
            ctx.base_url, ctx.secret, sid, keywords, max_papers, revive=revive, examples=examples
        ),
        keywords=keywords,
        examples=examples or (),
        max_papers=max_papers,
        days=tokens.CONFIRM_MAX_AGE // 86400,
    )


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


# ----------------------------------------------------------------------------- errors

_FIELDS = {
    "email": "your e-mail address",
    "keywords": "your keywords",
    "max": "papers per digest",
    "papers": "the example papers",
    "trending": "trending papers",
    "send hour": "the send hour",
    "time zone": "the time zone",
    "no match": "the no-match choice",
}


def plain_error(e: InputError) -> str:
    """Pure: an input error in words for a page (the CLI's one-liners name fields and
    quote values: "email: 'x' is not a valid address: ...")."""
    msg = str(e)
    name, _, detail = msg.partition(": ")
    if name == "email":
        if detail == "missing":
            return "Please enter your e-mail address."
        if "longer than" in detail:
            return "That e-mail address is too long."
        return (
            "That does not look like an e-mail address. Check it for typos "
            "(it should look like ada@example.org)."
        )
    if name == "keywords":
        if "unbalanced quote" in detail:
            return 'Your keywords have an opening quote (") without a closing one.'
        if "more than" in detail:
            return f"Please use fewer keywords ({detail.removeprefix('more than ')} at most)."
        if "no letters or digits" in detail:
            return "Each keyword needs at least one letter or digit."
        if "control characters" in detail:
            return "Your keywords contain characters that cannot be used."
        if "longer than" in detail:
            return "One of your keywords, or all of them together, is too long: shorten it."
    if name in ("max", "trending") and "whole number" in detail:
        rng = detail.split("from ", 1)[-1].split(",", 1)[0]
        return f"Please enter a whole number from {rng} for {_FIELDS[name]}."
    if name == "papers":  # "'x' is not an arXiv id (...)", "120 given, at most 100"
        return "Example papers: " + detail[:1].upper() + detail[1:] + "."
    if name == "send hour":
        return "Please enter the send hour as a whole hour from 0 to 23, or leave it empty."
    if name == "time zone":
        return "Please enter a time zone name like Europe/Berlin or America/New_York."
    if name in _FIELDS:
        return f"Please check {_FIELDS[name]}."
    return "Please check what you typed."
