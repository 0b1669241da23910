"""I/O edge: double opt-in confirmation, unsubscribe (RFC 8058 one-click) and the manage page.

The signed token in the URL is the authority (it was mailed to the address), so the
one-click POST needs no cookie, login or CSRF token: a mail client sends it with no
browser state at all (RFC 8058 section 3.1). A GET never changes anything, because mail
scanners and link previewers fetch every URL in a message (RFC 8058 section 3.2).
Store writes are immediate, so an unsubscribe takes effect before the next run.

Tokens carry the subscriber's opaque id (digest.tokens), never the address. Lifetimes:
unsubscribe and feed links never expire (a year-old mail must still unsubscribe); manage
links expire after `[web] manage_days` (every digest carries a fresh one); confirmation
links after tokens.CONFIRM_MAX_AGE. An old-format token (the address itself, mails sent
before opaque ids) still unsubscribes; for anything else it gets a plain "this link is
from an older mail" page.

Coming back needs its owner: a confirmation link carries the settings that were asked for,
and nothing is stored until it is clicked (pages.subscribe_change, `confirm`); "Subscribe
again" on the manage page of an unsubscribed address mails a new confirmation link.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from digest import tokens
from digest.errors import FetchError, InputError, StoreError, TokenError, TokenExpired
from digest.examples import examples_of
from digest.models import ACTIVE, PAUSED, PENDING, UNSUBSCRIBED, Subscriber
from digest.rank.learn import with_examples
from digest.store.base import Change
from digest.subscribers import (
    check_hour,
    check_max,
    check_no_match,
    check_timezone,
    check_trending,
    parse_keywords,
)
from digest.web import ratings
from digest.web.app import WebContext, ctx_of, store_unavailable
from digest.web.pages import (
    confirm_mail,
    csrf_check,
    field,
    limit_key,
    plain_error,
    preview_values,
    too_many,
)

ONE_CLICK = "One-Click"  # RFC 8058: the POST body is List-Unsubscribe=One-Click


# ----------------------------------------------------------------------------- tokens


def bad_link(ctx: WebContext, request: Request, e: TokenError) -> Response:
    """The plain page of a link that does not work (forged, altered, expired, old)."""
    if isinstance(e, TokenExpired):
        return ctx.error(
            request,
            410,
            "This link has expired",
            "Links to the manage page work for "
            f"{ctx.settings.manage_days} days and confirmation links for "
            f"{tokens.CONFIRM_MAX_AGE // 86400} days. Nothing was changed. Every digest "
            "carries a fresh manage link; or enter your address on the front page: if it "
            "is subscribed (also when paused) we mail it a fresh manage link, otherwise a "
            "new confirmation link.",
        )
    return ctx.error(
        request,
        400,
        "This link does not work",
        "It may have been cut off or changed on its way. Open it again from the e-mail, "
        "or copy the whole address. Nothing was changed.",
    )


def old_link(ctx: WebContext, request: Request) -> Response:
    return ctx.error(
        request,
        400,
        "This link is from an older e-mail",
        "Links in e-mails sent before an update of this service no longer open this "
        "page. Use the link in your latest digest; the unsubscribe link of any digest "
        "still works. Nothing was changed.",
    )


def check_token(
    ctx: WebContext, request: Request, purpose: str, token: str, max_age: int | None = None
) -> str | Response:
    """The subscriber id in a link's token, or the page for a bad/expired/old one."""
    try:
        return tokens.verify_id(ctx.secret, purpose, token, max_age, ctx.token_clock())
    except TokenError as e:
        if tokens.legacy_address(ctx.secret, purpose, token) is not None:
            return old_link(ctx, request)
        return bad_link(ctx, request, e)


def no_subscription(ctx: WebContext, request: Request) -> Response:
    return ctx.error(
        request,
        404,
        "No subscription",
        "There is no subscription for this link any more. Subscribe again on the front page.",
    )


async def subscriber_of(
    ctx: WebContext,
    request: Request,
    purpose: str,
    token: str,
    max_age: int | None = None,
    *,
    legacy: bool = False,
) -> Subscriber | Response:
    """The subscriber a link belongs to, or the page to answer with. `legacy`: also
    accept an old-format token (the address itself): only the one-click unsubscribe."""
    if legacy:
        email = tokens.legacy_address(ctx.secret, purpose, token)
        if email is not None:
            sub = await ctx.db(ctx.store.get_subscriber, email)
            return sub if sub is not None else no_subscription(ctx, request)
    sid = check_token(ctx, request, purpose, token, max_age)
    if isinstance(sid, Response):
        return sid
    sub = await ctx.db(ctx.store.get_subscriber_by_id, sid)
    return sub if sub is not None else no_subscription(ctx, request)


def manage_max_age(ctx: WebContext) -> int:
    return ctx.settings.manage_days * 86400


# ----------------------------------------------------------------------------- confirm


async def confirm(request: Request) -> Response:
    """GET shows a button (mail scanners prefetch links); POST applies the settings the
    link carries and activates the subscriber."""
    ctx = ctx_of(request)
    token = request.path_params["token"]
    try:
        req = tokens.read_confirm(ctx.secret, token, now=ctx.token_clock())
    except TokenError as e:
        if tokens.legacy_address(ctx.secret, tokens.CONFIRM, token) is not None:
            return old_link(ctx, request)
        return bad_link(ctx, request, e)
    sub = await ctx.db(ctx.store.get_subscriber_by_id, req.sid)
    if sub is None:
        return ctx.error(
            request,
            404,
            "Nothing to confirm",
            "There is no pending subscription for this link. Subscribe again on the front page.",
        )
    if request.method in ("GET", "HEAD"):
        if sub.status == UNSUBSCRIBED and not req.revive:  # the POST could only refuse
            return cancelled(ctx, request)
        return ctx.page(
            request, "web/confirm.html", email=sub.email, action=request.url.path, asked=req
        )
    form = await request.form()
    denied = csrf_check(ctx, request, form)
    if denied:
        return denied
    nonce = "confirm:" + hashlib.sha256(token.encode()).hexdigest()[:32]
    examples, unresolved = await confirm_examples(ctx, sub, req)

    def activate() -> tuple[str, Subscriber | None]:
        """Under ctx.lock. A PENDING subscriber becomes ACTIVE with the settings the link
        carries; an UNSUBSCRIBED one only by a link mailed after it asked to come back
        (`revive`). A link works once (a replay after a later unsubscribe does nothing)."""
        now = ctx.clock()
        outcome = "missing"

        def change(cur: Subscriber | None) -> Subscriber | None:
            nonlocal outcome
            if cur is None or cur.id != req.sid:
                outcome = "missing"
                return None
            if cur.status == PENDING or (cur.status == UNSUBSCRIBED and req.revive):
                outcome = "activated"
                new = replace(cur, status=ACTIVE, keywords=req.keywords, max_papers=req.max_papers)
                return new if examples is None else with_examples(new, examples)
            outcome = cur.status
            return None

        current = ctx.store.get_subscriber_by_id(req.sid)
        if current is None:
            return "missing", None
        if current.status in (ACTIVE, PAUSED):
            return current.status, current  # a second click: nothing to do
        expires = now + timedelta(seconds=tokens.CONFIRM_MAX_AGE)
        if not ctx.store.use_nonce(nonce, expires, now):
            return "used", current
        stored = ctx.store.update_subscriber(current.email, change, now=now)
        return outcome, stored

    try:
        outcome, stored = await ctx.db(activate)
    except StoreError as e:
        return await store_unavailable(ctx, request, e)
    if outcome == "missing" or stored is None:
        return ctx.error(
            request,
            404,
            "Nothing to confirm",
            "There is no pending subscription for this link. Subscribe again on the front page.",
        )
    if outcome == "used":
        return ctx.error(
            request,
            409,
            "This link was already used",
            "Each confirmation link works once. To subscribe again, enter your address on "
            "the front page and click the link in the new e-mail.",
        )
    if outcome == UNSUBSCRIBED:
        return cancelled(ctx, request)
    lk = tokens.links(ctx.base_url, ctx.secret, stored.id)
    return ctx.page(
        request,
        "web/confirmed.html",
        email=stored.email,
        links=lk,
        already=outcome != "activated",
        manage_days=ctx.settings.manage_days,
        examples=len(stored.examples),
        unresolved=unresolved if outcome == "activated" else "",
    )


async def confirm_examples(
    ctx: WebContext, sub: Subscriber, req: tokens.ConfirmRequest
) -> tuple[list[tuple[str, str]] | None, str]:
    """The example papers a confirmation link asks for, looked up now (the store, else
    arXiv; digest/web/ratings.py), and what could not be found, in words for the page.
    None: the link says nothing about examples, or the subscription is already on.
    The subscription is confirmed whatever arXiv answers: a missing paper is named on the
    page, to be added again from the manage page."""
    if req.examples is None or sub.status in (ACTIVE, PAUSED):
        return None, ""
    try:
        found, missing = await ratings.find_examples(ctx, req.examples)
    except FetchError as e:
        have = await ctx.db(ctx.store.get_papers, req.examples)
        found = examples_of(req.examples, have)
        missing = [pid for pid in req.examples if pid not in have]
        why = f"arXiv could not be asked ({e})"
    else:
        why = "not found on arXiv"
    if not missing:
        return found, ""
    return found, f"{why}: {', '.join(missing)}"


def cancelled(ctx: WebContext, request: Request) -> Response:
    return ctx.error(
        request,
        409,
        "Subscription cancelled",
        "This address was unsubscribed after the link was sent. To come back, subscribe "
        "again on the front page and click the link in the new e-mail.",
    )


# ----------------------------------------------------------------------------- unsubscribe


async def unsubscribe(request: Request) -> Response:
    ctx = ctx_of(request)
    token = request.path_params["token"]
    # Never expires, and old-format tokens still work here: mails already sent must
    # keep unsubscribing (RFC 8058).
    sub = await subscriber_of(ctx, request, tokens.UNSUBSCRIBE, token, legacy=True)
    if isinstance(sub, Response):
        return sub
    if request.method in ("GET", "HEAD"):
        # A confirm button only: prefetching this URL must not unsubscribe anyone.
        return ctx.page(request, "web/unsubscribe.html", email=sub.email, action=request.url.path)
    form = await request.form()
    if field(form, "List-Unsubscribe") != ONE_CLICK:
        denied = csrf_check(ctx, request, form)
        if denied:
            return denied
    await ctx.db(set_status, ctx, sub.email, UNSUBSCRIBED)
    lk = tokens.links(ctx.base_url, ctx.secret, sub.id)
    return ctx.page(request, "web/unsubscribed.html", email=sub.email, links=lk)


def set_status(ctx: WebContext, email: str, status: str) -> Subscriber | None:
    """Change one subscriber's status now (called under ctx.lock). Unknown: None."""
    return ctx.store.update_subscriber(
        email, lambda sub: replace(sub, status=status) if sub and sub.status != status else None
    )


# ----------------------------------------------------------------------------- manage

# Which manage actions apply in which state, and the state they lead to. An unsubscribed
# address does not come back from here at once: "resume" mails it a confirmation link.
TRANSITIONS = {
    "pause": ({ACTIVE}, PAUSED),
    "resume": ({PAUSED}, ACTIVE),
    "unsubscribe": ({ACTIVE, PAUSED, PENDING}, UNSUBSCRIBED),
}
NOTICES = {
    "save": "Saved. The next digest uses these keywords.",
    "pause": "Paused. No digests until you resume.",
    "resume": "Resumed. Digests start again with the next run.",
    "unsubscribe": "Unsubscribed. No more digests will be sent to this address.",
    "confirm": "We have sent a confirmation link to this address. Digests start again "
    "once you click it.",
}


async def manage(request: Request) -> Response:
    ctx = ctx_of(request)
    token = request.path_params["token"]
    found = await subscriber_of(ctx, request, tokens.MANAGE, token, manage_max_age(ctx))
    if isinstance(found, Response):
        return found
    sub: Subscriber = found
    email = sub.email
    lk = tokens.links(ctx.base_url, ctx.secret, sub.id)

    def page(status: int = 200, **values: Any) -> Response:
        return ctx.page(
            request,
            "web/manage.html",
            status,
            sub=sub,
            links=lk,
            action=request.url.path,
            default_time=ctx.cfg.schedule.time,
            default_zone=ctx.cfg.schedule.timezone,
            default_trending=ctx.cfg.digest.trending,
            rated=ratings.rated_list(sub, {}) if sub is not None else [],
            **values,
        )

    if request.method in ("GET", "HEAD"):
        return page(values=current_values(sub))
    form = await request.form()
    denied = csrf_check(ctx, request, form)
    if denied:
        return denied
    action = field(form, "action")
    values = {
        "keywords": field(form, "keywords"),
        "max": field(form, "max")[:20],
        "send_hour": field(form, "send_hour")[:20],
        "timezone": field(form, "timezone")[:80],
        "trending": field(form, "trending")[:20],
        "no_match": field(form, "no_match")[:20] or sub.no_match,
        "papers": field(form, "papers")[:5000],
    }
    if action == "preview":
        preview = await preview_values(ctx, values["keywords"], values["max"])
        return page(values=values, **preview)
    if action == "unrate":  # undo one "More / Less like this" (digest/web/ratings.py)
        undone = await ctx.db(ratings.undo_vote, ctx, email, field(form, "paper")[:200])
        if undone is None:
            return ctx.error(
                request, 404, "No subscription", "There is no subscription for this address."
            )
        sub = undone
        return page(values=current_values(sub), notice="Rating removed.")
    if action == "library":  # example papers from a library export (digest/web/ratings.py)
        try:
            got, notice = await ratings.library_upload(ctx, email, form.get("library"))
        except InputError as e:
            return page(400, values=current_values(sub), error=str(e))
        if got is None:
            return ctx.error(
                request, 404, "No subscription", "There is no subscription for this address."
            )
        sub = got
        return page(values=current_values(sub), notice=notice)
    if action == "save":
        try:
            keywords = parse_keywords(values["keywords"])
            max_papers = check_max(values["max"], sub.max_papers)
            send_hour = check_hour(values["send_hour"])
            timezone = check_timezone(values["timezone"])
            trending = check_trending(values["trending"])
            no_match = check_no_match(values["no_match"])
        except InputError as e:
            return page(400, values=values, error=plain_error(e))
        try:  # example papers say which ids were not found, and where they were looked up
            examples = (  # a form without the field keeps the examples
                await ratings.form_examples(ctx, sub, values["papers"])
                if "papers" in form
                else None
            )
        except InputError as e:
            return page(400, values=values, error=str(e))

        def save() -> Subscriber | None:
            return ctx.store.update_subscriber(  # atomic: no lost update
                email,
                lambda cur: (
                    None
                    if cur is None
                    else replace(
                        cur,
                        keywords=keywords,
                        max_papers=max_papers,
                        send_hour=send_hour,
                        timezone=timezone,
                        trending=trending,
                        no_match=no_match,
                        examples=cur.examples if examples is None else tuple(examples),
                    )
                ),
            )

        updated, changed = await ctx.db(save), True
    elif action == "resume" and sub.status == UNSUBSCRIBED:
        # Each press mails the address: the front page's per-address limit bounds it.
        try:
            wait = await ctx.db(ctx.hit, "email", limit_key(email))
        except StoreError as e:
            return await store_unavailable(ctx, request, e)
        if wait is not None:
            return too_many(ctx, request, wait)
        # Double opt-in again: queue a confirmation link (with the stored settings) in the
        # same atomic write; the status stays unsubscribed until it is clicked.
        now = ctx.clock()

        def ask_again() -> tuple[Subscriber | None, bool]:
            queued = False

            def change(cur: Subscriber | None) -> Change | None:
                nonlocal queued
                if cur is None or cur.status != UNSUBSCRIBED:
                    return None
                queued = True
                mail = confirm_mail(
                    ctx, cur.email, cur.id, cur.keywords, cur.max_papers, revive=True
                )
                return Change(subscriber=None, mail=(mail,))

            return ctx.store.update_subscriber(email, change, now=now), queued

        try:
            updated, changed = await ctx.db(ask_again)
        except StoreError as e:
            return await store_unavailable(ctx, request, e)
        ctx.mailer.wake()
        action = "confirm"
    elif action in TRANSITIONS:
        allowed, target = TRANSITIONS[action]

        def transition() -> tuple[Subscriber | None, bool]:
            changed = False

            def change(cur: Subscriber | None) -> Subscriber | None:
                nonlocal changed
                if cur is None or cur.status not in allowed:
                    return None
                changed = True
                return replace(cur, status=target)

            return ctx.store.update_subscriber(email, change), changed

        updated, changed = await ctx.db(transition)
    else:
        return page(400, values=values, error="Unknown action: use one of the buttons.")
    if updated is None:
        return no_subscription(ctx, request)
    sub = updated
    notice = (
        NOTICES[action] if changed else f"Nothing to change: this subscription is {sub.status}."
    )
    return page(values=current_values(sub), notice=notice)


def current_values(sub: Subscriber) -> dict[str, str]:
    return {
        "keywords": ", ".join(_quote(k) for k in sub.keywords),
        "max": str(sub.max_papers),
        "send_hour": "" if sub.send_hour is None else str(sub.send_hour),
        "timezone": sub.timezone or "",
        "trending": "" if sub.trending is None else str(sub.trending),
        "no_match": sub.no_match,
        "papers": ", ".join(pid for pid, _ in sub.examples),
    }


def _quote(term: str) -> str:
    """A stored term written back the way parse_keywords reads it (phrases with commas)."""
    neg, body = (term.startswith("-"), term[1:] if term.startswith("-") else term)
    if "," in body or ";" in body:
        body = f'"{body}"'
    return ("-" if neg else "") + body
