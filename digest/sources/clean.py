"""Pure: no I/O. Hygiene for what the sources return: arXiv ids, text and links.

Everything a source parses goes through here before it becomes a Paper, so the rest of
the product can rely on: ids are bare arXiv ids (no version, no URL), text is one line of
plain text without control characters (markup is kept as text; rendering escapes it),
and links are http(s) only (a `javascript:` URL in API data never reaches a mail).
"""

from __future__ import annotations

import re
import unicodedata

# New-style ids (April 2007 on): YYMM.NNNN, and YYMM.NNNNN from January 2015.
_NEW_ID = re.compile(r"(\d{2}(?:0[1-9]|1[0-2])\.\d{4,5})(?:v\d+)?")
# Old-style ids: archive[.SUBJECT]/YYMMNNN, e.g. hep-th/0601001, math.GT/0309136.
_OLD_ID = re.compile(r"([a-z]+(?:-[a-z]+)*(?:\.[A-Z]{2})?/\d{2}(?:0[1-9]|1[0-2])\d{3})(?:v\d+)?")
_PREFIX = re.compile(
    r"^(?:https?://(?:www\.|export\.)?arxiv\.org/(?:abs|pdf)/|oai:arxiv\.org:|arxiv:)",
    re.IGNORECASE,
)

TITLE_MAX = 500  # characters; a longer "title" is bad data, cut rather than mailed whole
TEXT_MAX = 20_000  # abstracts and summaries


def normalise_arxiv_id(s: object) -> str | None:
    """The bare arXiv id of `s` without its version, or None if `s` is not one.

    Accepts "2604.21935v2", "arXiv:2604.21935", "http://arxiv.org/abs/2604.21935v1",
    "https://arxiv.org/pdf/2604.21935v1.pdf", "oai:arXiv.org:2604.21935v1" and old-style
    "hep-th/0601001v1".
    """
    if not isinstance(s, str):
        return None
    text = _PREFIX.sub("", s.strip())
    if text.endswith(".pdf"):
        text = text[:-4]
    for pattern in (_NEW_ID, _OLD_ID):
        m = pattern.fullmatch(text)
        if m:
            return m.group(1)
    return None


def clean_text(value: object, limit: int = TEXT_MAX) -> str:
    """One line of plain text: control characters dropped, whitespace runs collapsed.

    Line breaks (HF titles contain them) become spaces; lone surrogates (valid JSON,
    invalid UTF-8) and C0/C1 controls are removed. Non-strings give "".
    """
    if not isinstance(value, str):
        return ""
    kept = "".join(
        ch
        for ch in value
        if ch.isspace()
        or unicodedata.category(ch) not in ("Cc", "Cs", "Cf")
        or ch in "\u200d\u200c"  # joiners shape real scripts (and emoji); keep them
    )
    text = " ".join(kept.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def safe_url(value: object) -> str | None:
    """`value` if it is a plain http(s) URL, else None (never javascript:, data:, …)."""
    if not isinstance(value, str):
        return None
    url = value.strip()
    if not re.fullmatch(r"https?://[^\s<>\"'\x00-\x1f\x7f]+", url, flags=re.IGNORECASE):
        return None
    return url if len(url) <= 2000 else None


def non_negative_int(value: object) -> int | None:
    """`value` if it is an int >= 0 (JSON true/false are not counts), else None."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value
