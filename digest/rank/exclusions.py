"""Pure: no I/O. The exclusion rule: which papers a "-term" removes.

A paper is dropped when the term occurs in its title or abstract, case-insensitively,
starting at a word boundary: `(?<![A-Za-z0-9])term`. So "-survey" also removes
"Surveys" and "survey-based", but not "resurvey". This is exactly the rule the
relevance judgments were made with (shared/relevance-dev/README.md), so it is applied on
the raw text, not on stems: a subscriber who excludes "driving" gets what they typed.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

_SEP = "\x00"  # between papers in the joined text; keywords never contain control chars
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def exclusion_pattern(term: str) -> re.Pattern[str]:
    return re.compile(r"(?<![A-Za-z0-9])" + re.escape(term), re.IGNORECASE)


def term_hits(terms: Sequence[str], texts: Sequence[str]) -> np.ndarray:
    """Bool matrix terms x texts: True where the exclusion term occurs in the text.

    A lookbehind-first regex cannot use the engine's fast literal scan, so candidates are
    found with str.find on an ASCII-lower-cased copy of all texts joined, and only those
    papers are checked with the exact regex. For an ASCII term this is a superset: a
    case-insensitive match is either all-ASCII (then the lower-cased copy contains it) or
    uses a character like the Kelvin sign or a long s, and papers containing such
    characters are always checked."""
    out = np.zeros((len(terms), len(texts)), dtype=bool)
    if not texts:
        return out
    joined, starts, ends, exotic = _prepared(tuple(texts))
    for ti, term in enumerate(terms):
        pat = exclusion_pattern(term)
        if not term.isascii():
            cand: set[int] | range = range(len(texts))
        else:
            cand = set(exotic)
            needle = term.translate(_ASCII_LOWER)
            pos = joined.find(needle)
            while pos >= 0:
                doc = int(np.searchsorted(starts, pos, side="right")) - 1
                cand.add(doc)
                pos = joined.find(needle, int(ends[doc]) + 1)
        for doc in cand:
            if pat.search(texts[doc]):
                out[ti, doc] = True
    return out


@lru_cache(maxsize=4)
def _prepared(texts: tuple[str, ...]) -> tuple[str, np.ndarray, np.ndarray, tuple[int, ...]]:
    """The joined, ASCII-lower-cased texts and each text's span in it, and the papers with
    exotic case-folding characters. Kept for the last few paper sets: the web service
    checks the same day's papers for every search (str.translate of ~50 abstracts is
    milliseconds)."""
    joined = _SEP.join(texts).translate(_ASCII_LOWER)
    starts = np.cumsum([0] + [len(t) + 1 for t in texts[:-1]])
    ends = starts + np.array([len(t) for t in texts])
    exotic = tuple(i for i, t in enumerate(texts) if not t.isascii() and _exotic().search(t))
    return joined, starts, ends, exotic


# Non-ASCII characters whose case mappings include an ASCII letter or digit (e.g. the
# Kelvin sign, dotless i, long s, ligatures): the ones an IGNORECASE match may fold onto
# ASCII. Written out because deriving it scans all of the BMP (~50 ms a process);
# tests/test_rank.py derives it and checks this is the same set.
EXOTIC_CHARS = (
    "\u00df\u0130\u0131\u0149\u017f\u01f0\u1e96\u1e97\u1e98\u1e99\u1e9a\u1e9e\u212a"
    "\ufb00\ufb01\ufb02\ufb03\ufb04\ufb05\ufb06"
)


@lru_cache(maxsize=1)
def _exotic() -> re.Pattern[str]:
    return re.compile("[" + re.escape(EXOTIC_CHARS) + "]")


def excluded(terms: Sequence[str], text: str) -> bool:
    """True when any exclusion term removes this one text (for single checks and tests)."""
    return any(exclusion_pattern(t).search(text) for t in terms)
