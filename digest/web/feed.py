"""A subscriber's personal Atom feed (RFC 4287): the papers of the digests they were sent.

Each entry says which section it came in as an Atom category (term "match", label "For
you"; term "trending", label "Trending today") and, for a match, why: the matched terms
and the sentence where they occur. Sections and terms come from the delivery record's
"sections" / "matched" lists (parallel to "papers"); a record without them (written
before they existed) shows its papers as matches without why.

`build_atom` is pure (no I/O): ElementTree escapes every text and attribute, and
characters XML 1.0 forbids (control characters in scraped titles) are dropped first so
the feed always parses. `atom_feed` is the I/O edge serving GET /feed/{token}.atom.
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from digest import tokens
from digest.models import MATCH, SENT, TRENDING, Paper
from digest.rank.why import why_sentence
from digest.web.app import ctx_of
from digest.web.lifecycle import subscriber_of

ATOM = "http://www.w3.org/2005/Atom"
HISTORY_LIMIT = 60  # digests looked back over
LABELS = {MATCH: "For you", TRENDING: "Trending today"}
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _clean(text: str | None) -> str:
    return _NOT_XML.sub("", text or "")


def _stamp(record: Mapping[str, Any]) -> str:
    """RFC 3339 time of a digest record: its "at", else midnight UTC of its day."""
    at = record.get("at")
    if isinstance(at, str) and at:
        try:
            t = datetime.fromisoformat(at)
            return (t if t.tzinfo else t.replace(tzinfo=UTC)).isoformat(timespec="seconds")
        except ValueError:
            pass
    day = record.get("day")
    try:
        d = day if isinstance(day, date) else date.fromisoformat(str(day))
    except ValueError:
        d = date(1970, 1, 1)
    return datetime(d.year, d.month, d.day, tzinfo=UTC).isoformat(timespec="seconds")


def build_atom(
    *,
    site_name: str,
    feed_url: str,
    home_url: str,
    email: str,
    records: Sequence[Mapping[str, Any]],
    papers: Mapping[str, Paper],
) -> bytes:
    """The Atom document for `records` (digest records, newest first; only SENT ones
    count). The address is not in the feed, only a hash of it, since feeds get shared."""
    ET.register_namespace("", ATOM)

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ATOM}}}{tag}", {k: _clean(v) for k, v in attrs.items()})
        if text is not None:
            el.text = _clean(text)
        return el

    feed = ET.Element(f"{{{ATOM}}}feed")
    who = hashlib.sha256(email.lower().encode()).hexdigest()[:24]
    sub(feed, "id", f"urn:digest:feed:{who}")
    sub(feed, "title", f"{site_name}: your papers")
    sub(feed, "link", rel="self", type="application/atom+xml", href=feed_url)
    sub(feed, "link", rel="alternate", type="text/html", href=home_url)
    author = sub(feed, "author")
    sub(author, "name", site_name)
    sent = [r for r in records if r.get("state") == SENT]
    sub(feed, "updated", _stamp(sent[0]) if sent else "1970-01-01T00:00:00+00:00")
    seen: set[str] = set()
    for record in sent:
        when = _stamp(record)
        ids = list(record.get("papers") or ())
        sections = _parallel(record.get("sections"), len(ids))
        matched = _parallel(record.get("matched"), len(ids))
        for pid, section, terms in zip(ids, sections, matched, strict=True):
            paper = papers.get(pid)
            if paper is None or pid in seen:
                continue
            seen.add(pid)
            section = TRENDING if section == TRENDING else MATCH
            terms = tuple(t for t in terms or () if isinstance(t, str)) if section == MATCH else ()
            entry = sub(feed, "entry")
            sub(entry, "id", f"urn:arxiv:{paper.id}")
            sub(entry, "title", paper.title, type="text")
            sub(entry, "link", rel="alternate", type="text/html", href=paper.hf_url)
            sub(entry, "link", rel="related", type="text/html", href=paper.arxiv_url)
            sub(entry, "updated", when)
            for name in paper.authors[:20]:
                sub(sub(entry, "author"), "name", name)
            sub(entry, "category", term=section, label=LABELS[section])
            summary = paper.ai_summary or paper.abstract
            lines = []
            if terms:
                lines.append(f"For you · matched: {', '.join(terms)}")
                why = why_sentence(paper, terms)
                if why is not None:
                    lines.append(f"Why: “{why.sentence}”")
            elif section == TRENDING:
                lines.append("Trending today · not matched to your keywords")
            if summary:
                lines.append(summary)
            if lines:
                sub(entry, "summary", "\n\n".join(lines), type="text")
    return bytes(ET.tostring(feed, encoding="utf-8", xml_declaration=True))


def _parallel(value: Any, n: int) -> list[Any]:
    """A record's per-paper list, or Nones when it is missing or of the wrong length."""
    if isinstance(value, list | tuple) and len(value) == n:
        return list(value)
    return [None] * n


async def atom_feed(request: Request) -> Response:
    ctx = ctx_of(request)
    token = request.path_params["token"]
    found = await subscriber_of(ctx, request, tokens.FEED, token)  # never expires
    if isinstance(found, Response):
        return found
    email = found.email

    def load() -> tuple[list[dict[str, Any]], dict[str, Paper]]:
        history = ctx.store.history(email, limit=HISTORY_LIMIT)
        ids = {pid for r in history if r.state == SENT for pid in r.paper_ids}
        return [r.to_dict() for r in history], ctx.store.get_papers(ids)

    records, papers = await ctx.db(load)
    body = build_atom(
        site_name=ctx.cfg.site_name,
        feed_url=f"{ctx.base_url}/feed/{token}.atom",  # opaque: the token holds a random id
        home_url=f"{ctx.base_url}/",
        email=found.id,  # only hashed into the feed's id; never the address (guessable)
        records=records,
        papers=papers,
    )
    return Response(body, media_type="application/atom+xml; charset=utf-8")
