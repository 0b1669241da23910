"""Pure: no I/O. Why a paper matched: the sentence of its summary or abstract where the
subscriber's matched terms occur, and which words in it to highlight.

The words are compared the way the ranker compares them (digest/rank/normalize.py:
folded, stemmed, stopwords skipped), so "Pretrained" in a sentence lights up for the
keyword "pre-training", and an abbreviation from the curated table counts for its long
form ("ASR" for "speech recognition"). The best sentence covers the most terms, then the
most term words; ties go to the abstract (the card already shows the AI summary, so its
sentence would only repeat it), then to the earlier sentence. Long sentences
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


@lru_cache(maxsize=4096)
def _paper_index(
    summary: str, abstract: str
) -> tuple[tuple[tuple[int, int, str], ...], dict[str, list[tuple[int, tuple[int, int]]]]]:
    """A paper's sentences ((source, n, text): source 0 = AI summary, 1 = abstract) and
    where each stem occurs in them (stem -> [(sentence, (start, end))]). Made once per
    paper: a run asks about the same papers for many subscribers' terms."""
    sents: list[tuple[int, int, str]] = []
    where: dict[str, list[tuple[int, tuple[int, int]]]] = {}
    for source, text in enumerate((summary, abstract)):
        for n, sentence in enumerate(sentences(text)):
            si = len(sents)
            sents.append((source, n, sentence))
            for m in _WORD.finditer(sentence):
                for stem in set(_stems_of(m.group())):
                    where.setdefault(stem, []).append((si, m.span()))
    return tuple(sents), where


def why_sentence(paper: Paper, terms: Sequence[str], limit: int = WHY_CHARS) -> Why | None:
    """The sentence that shows best why `paper` matched `terms`, or None when no
    sentence of its summary or abstract contains any of their words."""
    wanted = [term_stems(t) for t in terms if t.strip()]
    if not any(wanted):
        return None
    sents, where = _paper_index(paper.ai_summary or "", paper.abstract or "")
    found: dict[int, set[str]] = {}
    spans: dict[int, set[tuple[int, int]]] = {}
    for stem in frozenset().union(*wanted):
        for si, span in where.get(stem, ()):
            found.setdefault(si, set()).add(stem)
            spans.setdefault(si, set()).add(span)
    if not found:
        return None

    def rank(si: int) -> tuple[int, int, int, int]:
        covered = sum(1 for t in wanted if t and t <= found[si])
        source, n, _ = sents[si]
        return (covered, len(found[si]), source, -n)

    best = max(found, key=rank)
    sentence = sents[best][2]
    merged: list[tuple[int, int]] = []
    for a, b in sorted(spans[best]):
        if merged and not sentence[merged[-1][1] : a].strip():
            merged[-1] = (merged[-1][0], b)  # "continual pretraining": one highlight
        else:
            merged.append((a, b))
    return _cut(sentence, merged, limit)


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
