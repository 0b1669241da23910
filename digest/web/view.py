"""I/O edge: "view in browser", the web copy of one mailed digest (GET /view/{token}).

Every digest mail links to its own copy: `tokens.view_url` signs the subscriber's random
id and the digest's day (never the address, nor the digest id, which hashes it), so the
link is opaque, per digest, and cannot be forged or turned into another digest's. The
page re-renders the digest from its delivery record (the papers in the order mailed, each
in its section with the terms it matched, and the why sentence) with the mail's own
Renderer and templates, so it shows what was mailed, including whatever the mail's cards
carry; only the footer differs: the web copy names nobody and has no unsubscribe or
manage link (a forwarded link must not expose them), and its cards have no "More / Less
like this" links: whoever holds a forwarded copy would vote for the subscriber, and the
rating page's answer links to the manage page. The mail carries them in every card.

It is there while the store keeps the record ([store] history_days) and the subscriber
exists; a digest that was not sent (failed, deferred, empty) has no copy.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from digest import tokens
from digest.errors import TokenError
from digest.models import (
    MATCH,
    SENT,
    TRENDING,
    DeliveryRecord,
    Digest,
    Paper,
    Pick,
    Subscriber,
    digest_id,
)
from digest.render import Renderer
from digest.tokens import Links
from digest.web.app import WebContext, ctx_of

# The mail's HTML has its CSS inlined into style attributes; nothing else runs or loads.
VIEW_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
NO_LINKS = Links(unsubscribe_url="", manage_url="", feed_url="")

_RENDER_LOCK = threading.Lock()  # a Renderer caches its cards in plain dicts
_RENDERERS: weakref.WeakKeyDictionary[WebContext, Renderer] = weakref.WeakKeyDictionary()


def record_picks(rec: DeliveryRecord) -> tuple[Pick, ...]:
    """Pure: the picks of a delivery record, in the order mailed. A record written before
    sections were kept shows its papers as matches, without why."""
    n = len(rec.paper_ids)
    sections: Sequence[str] = rec.sections if len(rec.sections) == n else (MATCH,) * n
    matched: Sequence[tuple[str, ...]] = rec.matched if len(rec.matched) == n else ((),) * n
    return tuple(
        Pick(
            pid,
            0.0,
            tuple(terms) if sec != TRENDING else (),
            TRENDING if sec == TRENDING else MATCH,
        )
        for pid, sec, terms in zip(rec.paper_ids, sections, matched, strict=True)
    )


def render_copy(
    renderer: Renderer, rec: DeliveryRecord, sub: Subscriber, papers: dict[str, Paper]
) -> str:
    """Pure (given the renderer): the web copy's HTML."""
    digest = Digest(subscriber=sub, day=rec.day, picks=record_picks(rec))
    return renderer.render(digest, papers, NO_LINKS, web_copy=True).html


def _renderer(ctx: WebContext) -> Renderer:
    r = _RENDERERS.get(ctx)
    if r is None:
        r = _RENDERERS[ctx] = Renderer(site_name=ctx.cfg.site_name)
    return r


async def view_digest(request: Request) -> Response:
    """GET /view/{token}: the digest as it was mailed, or a plain 400/404 page."""
    ctx = ctx_of(request)
    try:
        sid, day = tokens.verify_view(ctx.secret, request.path_params["token"])
    except TokenError as e:
        return ctx.error(request, 400, "Invalid link", f"This link does not work ({e}).")

    def load() -> tuple[DeliveryRecord, Subscriber, dict[str, Paper]] | None:
        sub = ctx.store.get_subscriber_by_id(sid)
        if sub is None:
            return None
        rec = ctx.store.get_digest(digest_id(sub.email, day))
        if rec is None or rec.state != SENT:
            return None
        return rec, sub, ctx.store.get_papers(rec.paper_ids)

    loaded = await ctx.db(load)
    if loaded is None:
        return ctx.error(
            request,
            404,
            "Digest not kept",
            "This digest is not kept any more (digests are kept for "
            f"{ctx.cfg.store.history_days} days), or it was never sent.",
        )
    rec, sub, papers = loaded
    with _RENDER_LOCK:
        html = render_copy(_renderer(ctx), rec, sub, papers)
    return HTMLResponse(
        html, headers={"content-security-policy": VIEW_CSP, "cache-control": "private, no-store"}
    )
