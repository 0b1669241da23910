"""Pure: no I/O. The exclusion rule: which papers a "-term" removes.

A paper is dropped when the term occurs in its title or abstract, case-insensitively,
starting at a word boundary: `(?<![A-Za-z0-9])term`. So "-survey" also removes
"Surveys" and "survey-based", but not "resurvey". This is exactly the rule the
relevance judgments were made with (shared/relevance-dev/README.md), so it is applied on
the raw text, not on stems: a subscriber who excludes "driving" gets what they typed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

_SEP = "\x00"  # between papers in the joined text; keywords never contain control chars


def exclusion_pattern(term: str) -> re.Pattern[str]:
    return re.compile(r"(?<![A-Za-z0-9])" + re.escape(term), re.IGNORECASE)


def term_hits(terms: Sequence[str], texts: Sequence[str]) -> np.ndarray:
    """Bool matrix terms x texts: True where the exclusion term occurs in the text.

    One regex scan per distinct term over all texts joined (the regex engine skips ahead
    on the literal), jumping to the next text after each hit."""
    out = np.zeros((len(terms), len(texts)), dtype=bool)
    if not texts:
        return out
    joined = _SEP.join(texts)
    starts = np.cumsum([0] + [len(t) + 1 for t in texts[:-1]])
    ends = starts + np.array([len(t) for t in texts])
    for ti, term in enumerate(terms):
        pat = exclusion_pattern(term)
        pos = 0
        while True:
            m = pat.search(joined, pos)
            if m is None:
                break
            doc = int(np.searchsorted(starts, m.start(), side="right")) - 1
            if m.end() <= ends[doc]:
                out[ti, doc] = True
            elif pat.search(texts[doc]):  # the match ran into the next paper: check alone
                out[ti, doc] = True
            pos = int(ends[doc]) + 1
    return out


def excluded(terms: Sequence[str], text: str) -> bool:
    """True when any exclusion term removes this one text (for single checks and tests)."""
    return any(exclusion_pattern(t).search(text) for t in terms)
