"""I/O edge: unsubscribe (RFC 8058 one-click) and the manage page.

The signed token in the URL is the authority (it was mailed to the address), so the
one-click POST needs no cookie, login or CSRF token: a mail client sends it with no
browser state at all (RFC 8058 section 3.1). A GET never changes anything, because mail
scanners and link previewers fetch every URL in a message (RFC 8058 section 3.2).
Store writes are immediate, so an unsubscribe takes effect before the next run.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from digest import tokens
from digest.errors import InputError
from digest.models import ACTIVE, PAUSED, PENDING, UNSUBSCRIBED, Subscriber
from digest.subscribers import (
    check_hour,
    check_max,
    check_no_match,
    check_timezone,
    check_trending,
    parse_keywords,
)
from digest.web import ratings
from digest.web.app import WebContext, ctx_of
from digest.web.pages import check_token, csrf_check, field, preview_values

ONE_CLICK = "One-Click"  # RFC 8058: the POST body is List-Unsubscribe=One-Click


async def unsubscribe(request: Request) -> Response:
    ctx = ctx_of(request)
    token = request.path_params["token"]
    email = check_token(ctx, request, tokens.UNSUBSCRIBE, token)
    if isinstance(email, Response):
        return email
    if request.method in ("GET", "HEAD"):
        # A confirm button only: prefetching this URL must not unsubscribe anyone.
        return ctx.page(request, "web/unsubscribe.html", email=email, action=request.url.path)
    form = await request.form()
    if field(form, "List-Unsubscribe") != ONE_CLICK:
        denied = csrf_check(ctx, request, form)
        if denied:
            return denied
    await ctx.db(set_status, ctx, email, UNSUBSCRIBED)
    lk = tokens.links(ctx.base_url, ctx.secret, email)
    return ctx.page(request, "web/unsubscribed.html", email=email, links=lk)


def set_status(ctx: WebContext, email: str, status: str) -> Subscriber | None:
    """Change one subscriber's status now (called under ctx.lock). Unknown: None."""
    return ctx.store.update_subscriber(
        email, lambda sub: replace(sub, status=status) if sub and sub.status != status else None
    )


# Which manage actions apply in which state, and the state they lead to.
TRANSITIONS = {
    "pause": ({ACTIVE}, PAUSED),
    "resume": ({PAUSED, UNSUBSCRIBED}, ACTIVE),
    "unsubscribe": ({ACTIVE, PAUSED, PENDING}, UNSUBSCRIBED),
}
NOTICES = {
    "save": "Saved. The next digest uses these keywords.",
    "pause": "Paused. No digests until you resume.",
    "resume": "Resumed. Digests start again with the next run.",
    "unsubscribe": "Unsubscribed. No more digests will be sent to this address.",
}


async def manage(request: Request) -> Response:
    ctx = ctx_of(request)
    token = request.path_params["token"]
    email = check_token(ctx, request, tokens.MANAGE, token)
    if isinstance(email, Response):
        return email
    sub = await ctx.db(ctx.store.get_subscriber, email)
    if sub is None:
        return ctx.error(
            request,
            404,
            "No subscription",
            "There is no subscription for this address any more. Subscribe "
            "again on the front page.",
        )
    lk = tokens.links(ctx.base_url, ctx.secret, email)

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
        return ctx.error(
            request, 404, "No subscription", "There is no subscription for this address any more."
        )
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
