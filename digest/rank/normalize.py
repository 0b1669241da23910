"""Pure: no I/O. Text normalisation shared by papers and subscriber keywords.

Both sides go through the same analyser so that "Pre-training", "pretraining" and
"pretrained" meet: Unicode is folded (NFKD, combining marks dropped), text is
lower-cased, hyphenated compounds yield their parts *and* the joined word, and every
word is reduced with the Snowball English stemmer (Porter2).

Features are plain strings: a unigram is a stem ("pretrain"), a bigram is two stems
joined by a space ("speech recognit"). Bigrams link adjacent content words inside one
clause (stopwords are skipped, punctuation breaks the chain), so the keyword
"text-to-speech" and the text "text to speech" share the bigram "text speech".

snowballstemmer runs PyStemmer's C implementation of the same algorithm when that
package is installed (identical stems, ~4x faster on a cold start); word-level results
are cached, since the same words recur across papers and days.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import snowballstemmer

# A small English stopword list (function words only): content words such as "model"
# stay, their low IDF already keeps them from dominating.
STOPWORDS = frozenset(
    """a about above after again against all an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers him his how i if in into is it its
    itself just me more most my no nor not of off on once only or other our ours out over
    own same she should so some such than that the their theirs them then there these they
    this those through to too under until up very via was we were what when where which while
    who whom why will with would you your yours also our us per upon within without towards
    toward across along among amongst""".split()
)

# One scan finds words (letters/digits, compounds joined by "-", "_" or "'") and clause
# breaks (punctuation, a free-standing dash, a line break): a bigram never spans a break.
_TOKEN = re.compile(r"[a-z0-9]+(?:[-_'][a-z0-9]+)*|[.,;:!?()\[\]{}\"<>|\n-]")
_BREAKS = frozenset('.,;:!?()[]{}"<>|\n-')
_PARTS = re.compile(r"[-_']")
_DASHES = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2212\ufe63\uff0d"), "-")
_QUOTES = dict.fromkeys(map(ord, "\u2018\u2019\u02bc\u0060\u00b4"), "'")
# Combining diacritics (the blocks Latin, Greek and Cyrillic accents decompose into).
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")

_STEMMER = snowballstemmer.stemmer("english")
_VOWEL = re.compile(r"[aeiouy]")


def fold(text: str) -> str:
    """Lower-case, strip accents and unify dashes/apostrophes ("Café–Bar" -> "cafe-bar")."""
    if text.isascii():
        return text.lower()
    text = text.translate(_DASHES).translate(_QUOTES)
    return _COMBINING.sub("", unicodedata.normalize("NFKD", text)).lower()


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """Snowball English stem of one folded word; possessive "'s" is dropped first."""
    if word.endswith("'s"):
        word = word[:-2]
    word = word.replace("'", "")
    if len(word) >= 3 and word.endswith("s") and not _VOWEL.search(word[:-1]):
        # Plural acronyms ("LLMs", "GNNs"): Porter2 keeps the "s" when no vowel precedes it.
        return word[:-1]
    return str(_STEMMER.stemWord(word))


@dataclass(frozen=True, slots=True)
class Analysed:
    """The features of one piece of text."""

    unigrams: tuple[str, ...]  # content stems in order (with repetitions), plus joined compounds
    bigrams: tuple[str, ...]  # adjacent content stems inside a clause, "a b"
    length: int  # number of content words (for BM25 length normalisation)


@lru_cache(maxsize=300_000)
def _word(word: str) -> tuple[tuple[str, ...], str | None]:
    """(content stems in order, joined-compound stem or None) of one folded word."""
    if word.endswith("'s"):
        word = word[:-2]
    if "-" in word or "_" in word or "'" in word:
        parts = [p for p in _PARTS.split(word) if p]
        if len(parts) > 1:
            # "pre-training" -> pre, train (+ "pretrain"): meets "pretraining" and "pre training".
            seq = tuple(stem(p) for p in parts if p not in STOPWORDS)
            return seq, stem("".join(parts))
        word = parts[0] if parts else ""
    if not word or word in STOPWORDS:
        return (), None
    return (stem(word),), None


def analyse(text: str) -> Analysed:
    """Features of a text (paper field or keyword): unigrams, bigrams and length."""
    uni: list[str] = []
    bi: list[str] = []
    extra: list[str] = []
    prev = ""
    for tok in _TOKEN.findall(fold(text)):
        if tok in _BREAKS:
            prev = ""
            continue
        seq, joined = _word(tok)
        for s in seq:
            uni.append(s)
            if prev and prev != s:
                bi.append(f"{prev} {s}")
            prev = s
        if joined is not None and joined not in seq:
            extra.append(joined)
    return Analysed(tuple(uni + extra), tuple(bi), len(uni) + len(extra))


analyse_term = lru_cache(maxsize=100_000)(analyse)  # keywords repeat across subscribers
# Paper fields: the web service ranks the same day's papers for every search and preview
# (the papers page: ~2/3 of a search's time was analysing the same 50 papers again).
# Analysed is immutable; 20,000 texts are ~40 days of 500 papers' four fields.
analyse_field = lru_cache(maxsize=20_000)(analyse)


@lru_cache(maxsize=100_000)
def key(text: str) -> str:
    """A canonical key of a phrase: its content stems joined by spaces ("Pre-Trained
    Models" -> "pre train model"). Used to look terms up in the synonym tables."""
    words: list[str] = []
    for tok in _TOKEN.findall(fold(text)):
        if tok not in _BREAKS:
            words.extend(_word(tok)[0])
    return " ".join(words)
