"""Pure: no I/O. Text normalisation shared by papers and subscriber keywords.

Both sides go through the same analyser so that "Pre-training", "pretraining" and
"pretrained" meet: Unicode is folded (NFKD, combining marks dropped), text is
lower-cased, hyphenated compounds yield their parts *and* the joined word, and every
word is reduced with the Snowball English stemmer (Porter2).

Features are plain strings: a unigram is a stem ("pretrain"), a bigram is two stems
joined by a space ("speech recognit"). Bigrams link adjacent content words inside one
clause (stopwords are skipped, punctuation breaks the chain), so the keyword
"text-to-speech" and the text "text to speech" share the bigram "text speech".
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

# Clause boundaries: a bigram never spans them.
_CLAUSE = re.compile(r"[.,;:!?()\[\]{}\"<>|]+|\s[-–—]\s|\n")
# A word: letters/digits, possibly hyphen- or slash-free compounds joined by "-".
_WORD = re.compile(r"[a-z0-9]+(?:[-_'][a-z0-9]+)*")
_DASHES = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2212\ufe63\uff0d"), "-")
_QUOTES = dict.fromkeys(map(ord, "\u2018\u2019\u02bc\u0060\u00b4"), "'")

_STEMMER = snowballstemmer.stemmer("english")
_VOWEL = re.compile(r"[aeiouy]")


def fold(text: str) -> str:
    """Lower-case, strip accents and unify dashes/apostrophes ("Café–Bar" -> "cafe-bar")."""
    text = text.translate(_DASHES).translate(_QUOTES)
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """Snowball English stem of one folded word; possessive "'s" is dropped first."""
    if word.endswith("'s"):
        word = word[:-2]
    word = word.replace("'", "")
    if len(word) >= 3 and word.endswith("s") and not _VOWEL.search(word[:-1]):
        # Plural acronyms ("LLMs", "GNNs"): Porter2 keeps the "s" when no vowel precedes it.
        return word[:-1]
    return _STEMMER.stemWord(word)


@dataclass(frozen=True, slots=True)
class Analysed:
    """The features of one piece of text."""

    unigrams: tuple[str, ...]  # content stems in order (with repetitions), plus joined compounds
    bigrams: tuple[str, ...]  # adjacent content stems inside a clause, "a b"
    length: int  # number of content words (for BM25 length normalisation)


def _clause_words(clause: str) -> tuple[list[str], list[str]]:
    """Content stems of one clause in order, and the extra joined-compound stems."""
    seq: list[str] = []
    extra: list[str] = []
    for m in _WORD.finditer(clause):
        word = m.group(0)
        if word.endswith("'s"):
            word = word[:-2]
        parts = [p for p in re.split(r"[-_']", word) if p]
        if len(parts) > 1:
            # "pre-training" -> pre, train (+ "pretrain"): meets "pretraining" and "pre training".
            joined = stem("".join(parts))
            extra.append(joined)
            for p in parts:
                if p not in STOPWORDS:
                    seq.append(stem(p))
        elif parts and parts[0] not in STOPWORDS:
            seq.append(stem(parts[0]))
    return seq, extra


def analyse(text: str) -> Analysed:
    """Features of a text (paper field or keyword): unigrams, bigrams and length."""
    uni: list[str] = []
    bi: list[str] = []
    for clause in _CLAUSE.split(fold(text)):
        seq, extra = _clause_words(clause)
        uni.extend(seq)
        uni.extend(e for e in extra if e not in seq)
        bi.extend(f"{a} {b}" for a, b in zip(seq, seq[1:], strict=False) if a != b)
    return Analysed(tuple(uni), tuple(bi), len(uni))


def key(text: str) -> str:
    """A canonical key of a phrase: its content stems joined by spaces ("Pre-Trained
    Models" -> "pre train model"). Used to look terms up in the synonym tables."""
    words: list[str] = []
    for clause in _CLAUSE.split(fold(text)):
        words.extend(_clause_words(clause)[0])
    return " ".join(words)
