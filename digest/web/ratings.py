"""I/O edge: "More like this" / "Less like this" (the rating links of every mail).

    GET  /rate/{token}   a page naming the paper and the vote, with one button that records
                         it (a small script posts it; without JavaScript the button is a
                         plain form POST). A GET never records: mail scanners and link
                         previewers fetch every URL in a message.
    POST /rate/{token}   records the vote and answers 200. The signed token (digest/tokens.py
                         rate_token: subscriber id, paper id, direction) is the authority, as
                         with RFC 8058 one-click: no cookie or CSRF token is needed. The last
                         vote wins; repeating a POST changes nothing.

A forged, altered or truncated token gets a plain 400 page and changes nothing; a token of
a subscriber that no longer exists gets 404. Undoing a vote is on the manage page
(`unrate`, below), which is CSRF-protected like every manage action.

The manage page also takes example papers (a papers field, and an uploaded BibTeX / RIS /
Zotero CSV export: `library_upload`), resolved like `digest subscribers update --papers`
(digest/examples.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from digest import tokens
from digest.errors import FetchError, InputError, TokenError
from digest.examples import (
    MAX_LIBRARY_BYTES as LIBRARY_MAX_BYTES,
)
from digest.examples import (
    examples_of,
    find_papers,
    parse_papers,
    read_library,
)
from digest.models import DOWN, MAX_EXAMPLES, UP, Paper, Subscriber
from digest.rank.learn import vote_of, with_examples, with_rating, without_rating
from digest.web.app import WebContext, ctx_of

LABELS = {True: "More like this", False: "Less like this"}


async def rate(request: Request) -> Response:
    ctx = ctx_of(request)
    token = request.path_params["token"]
    try:
        sid, pid, up = tokens.read_rate_token(ctx.secret, token)
    except TokenError as e:
        return ctx.error(
            request, 400, "Invalid link", f"This link does not work ({e}). Nothing was changed."
        )
    sub = await ctx.db(ctx.store.get_subscriber_by_id, sid)
    if sub is None:
        return ctx.error(
            request, 404, "No subscription", "There is no subscription for this link any more."
        )
    paper = (await ctx.db(ctx.store.get_papers, [pid])).get(pid)
    title = paper.title if paper is not None else ""
    values: dict[str, Any] = {
        "paper_id": pid,
        "title": title,
        "label": LABELS[up],
        "up": up,
        "action": request.url.path,
    }
    if request.method in ("GET", "HEAD"):
        current = vote_of(sub, pid)
        return ctx.page(request, "web/rate.html", recorded=False, current=current, **values)
    updated = await ctx.db(record_vote, ctx, sub.email, pid, up, title)
    if updated is None:
        return ctx.error(
            request, 404, "No subscription", "There is no subscription for this link any more."
        )
    lk = tokens.links(ctx.base_url, ctx.secret, updated.id)
    return ctx.page(request, "web/rate.html", recorded=True, links=lk, **values)


def record_vote(
    ctx: WebContext, email: str, paper_id: str, up: bool, title: str
) -> Subscriber | None:
    """Set one vote now (called under ctx.lock); the store's read-modify-write keeps a
    concurrent change of the subscription. Unknown subscriber: None."""
    vote = UP if up else DOWN
    at = int(ctx.now().timestamp())

    def change(cur: Subscriber | None) -> Subscriber | None:
        if cur is None:
            return None
        new = with_rating(cur, paper_id, vote, at, title)
        return new if new != cur else None

    ctx.store.update_subscriber(email, change)
    return ctx.store.get_subscriber(email)


def undo_vote(ctx: WebContext, email: str, paper_id: str) -> Subscriber | None:
    """Remove one vote (the manage page's "undo"; called under ctx.lock)."""

    def change(cur: Subscriber | None) -> Subscriber | None:
        if cur is None or vote_of(cur, paper_id) is None:
            return None
        return without_rating(cur, paper_id)

    ctx.store.update_subscriber(email, change)
    return ctx.store.get_subscriber(email)


def rated_list(sub: Subscriber, known: dict[str, Paper]) -> list[dict[str, object]]:
    """The manage page's list of rated papers, newest first: id, title, up, when."""
    out: list[dict[str, object]] = []
    for pid, vote, at, title in reversed(sub.ratings):
        paper = known.get(pid)
        out.append(
            {
                "id": pid,
                "title": (paper.title if paper is not None else title) or pid,
                "up": vote == UP,
                "when": time.strftime("%Y-%m-%d", time.gmtime(at)),
            }
        )
    return out


# ------------------------------------------------------------------ interests by example


async def find_examples(
    ctx: WebContext, ids: Sequence[str]
) -> tuple[list[tuple[str, str]], list[str]]:
    """((id, title) examples, ids found nowhere) for `ids`: the store, else arXiv (paced;
    the store lock is held only around store calls, never while arXiv answers)."""
    if not ids:
        return [], []
    papers, missing = await run_in_threadpool(
        lambda: find_papers(ctx.cfg, ctx.store, ids, lock=ctx.lock)
    )
    return examples_of(ids, papers), missing


async def form_examples(
    ctx: WebContext, sub: Subscriber, value: str
) -> list[tuple[str, str]] | None:
    """The examples of the manage form's papers field: None when unchanged, else the
    resolved (id, title) pairs. InputError naming bad or unknown papers (nothing saved)."""
    ids = parse_papers(value)
    if list(ids) == [pid for pid, _ in sub.examples]:
        return None
    try:
        examples, missing = await find_examples(ctx, ids)
    except FetchError as e:
        raise InputError(f"papers: arXiv could not be asked ({e}); nothing was saved") from e
    if missing:
        raise InputError(
            f"papers: not found on arXiv: {', '.join(missing)} (check the ids; nothing was saved)"
        )
    return examples


async def library_upload(
    ctx: WebContext, email: str, upload: object
) -> tuple[Subscriber | None, str]:
    """Add the arXiv papers of an uploaded library export to the subscriber's examples:
    (the updated subscriber, the notice saying what was added and what was not). InputError
    for a file that is no export."""
    if not isinstance(upload, UploadFile):
        raise InputError("library: choose a BibTeX (.bib), RIS (.ris) or Zotero CSV (.csv) file")
    data = await upload.read(LIBRARY_MAX_BYTES + 1)
    lib = read_library(data, upload.filename or "")
    try:
        examples, missing = await find_examples(ctx, list(lib.ids))
    except FetchError as e:
        raise InputError(f"library: arXiv could not be asked ({e}); nothing was added") from e

    def change(cur: Subscriber | None) -> Subscriber | None:
        if cur is None:
            return None
        have = {pid for pid, _ in cur.examples}
        merged = [*cur.examples, *(e for e in examples if e[0] not in have)]
        return with_examples(cur, merged[-MAX_EXAMPLES:])

    def save() -> Subscriber | None:
        with ctx.lock:
            return ctx.store.update_subscriber(email, change)

    updated = await run_in_threadpool(save)
    parts = [f"{len(examples)} of the {lib.entries} entries added as example papers."]
    if lib.unmatched:
        shown = "; ".join(lib.unmatched[:10]) + (" …" if len(lib.unmatched) > 10 else "")
        parts.append(f"No arXiv id in {len(lib.unmatched)}: {shown}.")
    if missing:
        parts.append(f"Not found on arXiv: {', '.join(missing[:20])}.")
    return updated, " ".join(parts)
