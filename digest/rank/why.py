"""Pure: no I/O. Why a paper matched: the sentence of its summary or abstract where the
subscriber's matched terms occur, and which words in it to highlight.

The words are compared the way the ranker compares them (digest/rank/normalize.py:
folded, stemmed, stopwords skipped), so "Pretrained" in a sentence lights up for the
keyword "pre-training", and an abbreviation from the curated table counts for its long
form ("ASR" for "speech recognition"). The best sentence covers the most terms, then the
most term words; ties go to the AI summary, then to the earlier sentence. Long sentences
are cut around the first highlight.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from digest.models import Paper
from digest.rank.expand import alternatives, synonym_table
from digest.rank.normalize import _word, fold, key

WHY_CHARS = 240  # longest sentence shown; longer ones are cut around the first highlight
ELLIPSIS = "…"

# A sentence ends at . ! or ? followed by space and a capital, digit or opening bracket
# ("e.g. the" and "Fig. 3" stay whole only sometimes: good enough for one quoted line).
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[\"'])")
_WORD = re.compile(r"[^\W_]+(?:[-_'\u2019][^\W_]+)*")


@dataclass(frozen=True, slots=True)
class Why:
    """One sentence and the character ranges in it to highlight (sorted, disjoint)."""

    sentence: str
    spans: tuple[tuple[int, int], ...]

    def parts(self) -> list[tuple[str, bool]]:
        """The sentence as (text, highlighted) pieces, in order."""
        out: list[tuple[str, bool]] = []
        at = 0
        for a, b in self.spans:
            if a > at:
                out.append((self.sentence[at:a], False))
            out.append((self.sentence[a:b], True))
            at = b
        if at < len(self.sentence):
            out.append((self.sentence[at:], False))
        return out


@lru_cache(maxsize=1)
def _table() -> dict[str, set[str]]:
    return synonym_table({})  # the curated abbreviations only (no day's papers here)


@lru_cache(maxsize=20_000)
def term_stems(term: str) -> frozenset[str]:
    """The stems that stand for `term` in a text: its own words and those of its
    curated abbreviation / long forms."""
    k = key(term)
    stems = set(k.split())
    for alt in alternatives(k, _table()):
        stems.update(alt.split())
    folded = fold(term)
    if "-" in folded:  # "text-to-speech" also as the joined word
        stems.update(s for s in _word(folded.replace(" ", "-"))[1:] if s)
    return frozenset(stems)


@lru_cache(maxsize=200_000)
def _stems_of(word: str) -> tuple[str, ...]:
    seq, joined = _word(fold(word))
    return (*seq, joined) if joined else seq


def sentences(text: str) -> list[str]:
    text = " ".join(text.split())
    return [s for s in _SENTENCE.split(text) if s]


def _score(
    sentence: str, terms: Sequence[frozenset[str]]
) -> tuple[int, int, list[tuple[int, int]]]:
    """(terms fully present, distinct term stems present, spans) of one sentence."""
    found: set[str] = set()
    spans: list[tuple[int, int]] = []
    wanted = frozenset().union(*terms) if terms else frozenset()
    for m in _WORD.finditer(sentence):
        hit = wanted.intersection(_stems_of(m.group()))
        if hit:
            found |= hit
            a, b = m.span()
            if spans and not sentence[spans[-1][1] : a].strip():
                spans[-1] = (spans[-1][0], b)  # "continual pretraining": one highlight
            else:
                spans.append((a, b))
    covered = sum(1 for t in terms if t and t <= found)
    return covered, len(found), spans


def why_sentence(paper: Paper, terms: Sequence[str], limit: int = WHY_CHARS) -> Why | None:
    """The sentence that shows best why `paper` matched `terms`, or None when no
    sentence of its summary or abstract contains any of their words."""
    wanted = [term_stems(t) for t in terms if t.strip()]
    if not any(wanted):
        return None
    best: tuple[int, int, int, int] | None = None
    best_sentence, best_spans = "", []
    for source, text in enumerate((paper.ai_summary or "", paper.abstract or "")):
        for n, s in enumerate(sentences(text)):
            covered, words, spans = _score(s, wanted)
            if not words:
                continue
            rank = (covered, words, -source, -n)
            if best is None or rank > best:
                best, best_sentence, best_spans = rank, s, spans
    if best is None:
        return None
    return _cut(best_sentence, best_spans, limit)


def _cut(sentence: str, spans: list[tuple[int, int]], limit: int) -> Why:
    """The sentence, or a window of it of at most `limit` chars around the first span."""
    if len(sentence) <= limit:
        return Why(sentence, tuple(spans))
    first = spans[0][0]
    start = max(0, first - limit // 3)
    if start > 0:
        space = sentence.find(" ", start)
        start = space + 1 if 0 <= space < first else start
    end = start + limit - 2 * len(ELLIPSIS)
    if end < len(sentence):
        space = sentence.rfind(" ", start, end)
        end = space if space > first else end
    head = ELLIPSIS if start > 0 else ""
    tail = ELLIPSIS if end < len(sentence) else ""
    body = sentence[start:end].rstrip()
    shift = len(head) - start
    kept = tuple((a + shift, b + shift) for a, b in spans if a >= start and b <= start + len(body))
    return Why(head + body + tail, kept)
