"""Pure: no I/O. Query-side vocabulary bridging: abbreviations and their long forms.

Two sources, both general (not tied to any subscriber):
* a small curated table of common ML abbreviations (ASR <-> automatic speech recognition);
* definitions mined from the day's abstracts, "long form (ABBR)", with the Schwartz-Hearst
  algorithm (Schwartz & Hearst, "A simple algorithm for identifying abbreviation
  definitions in biomedical text", PSB 2003): the abbreviation's characters must be found,
  right to left, in the words before the parenthesis, its first character starting a word.

A keyword then gets alternative *forms*: "LLM serving" also matches "large language model
serving", "speech recognition" also matches "ASR". Everything works on `normalize.key`
strings (stems joined by spaces), so plural and case variants meet.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from functools import lru_cache

from digest.rank.normalize import key

# (abbreviation, long forms...). General ML vocabulary only; kept short on purpose.
CURATED: tuple[tuple[str, ...], ...] = (
    ("ASR", "automatic speech recognition", "speech recognition"),
    ("TTS", "text-to-speech", "text to speech", "speech synthesis"),
    ("LLM", "large language model"),
    ("VLM", "vision-language model", "vision language model"),
    ("MLLM", "multimodal large language model"),
    ("LVLM", "large vision-language model"),
    ("SLM", "small language model"),
    ("RAG", "retrieval-augmented generation", "retrieval augmented generation"),
    ("KV cache", "key-value cache"),
    ("MoE", "mixture of experts", "mixture-of-experts"),
    ("RL", "reinforcement learning"),
    ("RLHF", "reinforcement learning from human feedback"),
    ("RLVR", "reinforcement learning with verifiable rewards"),
    ("DPO", "direct preference optimization"),
    ("PPO", "proximal policy optimization"),
    ("GRPO", "group relative policy optimization"),
    ("SFT", "supervised fine-tuning"),
    ("PEFT", "parameter-efficient fine-tuning"),
    ("LoRA", "low-rank adaptation"),
    ("CoT", "chain of thought", "chain-of-thought"),
    ("ICL", "in-context learning"),
    ("NLP", "natural language processing"),
    ("NLU", "natural language understanding"),
    ("QA", "question answering"),
    ("VQA", "visual question answering"),
    ("OCR", "optical character recognition"),
    ("NER", "named entity recognition"),
    ("MT", "machine translation"),
    ("NMT", "neural machine translation"),
    ("GNN", "graph neural network"),
    ("CNN", "convolutional neural network"),
    ("RNN", "recurrent neural network"),
    ("ViT", "vision transformer"),
    ("DiT", "diffusion transformer"),
    ("SSM", "state space model", "state-space model"),
    ("GAN", "generative adversarial network"),
    ("VAE", "variational autoencoder"),
    ("NeRF", "neural radiance field"),
    ("3DGS", "3d gaussian splatting", "gaussian splatting"),
    ("VLA", "vision-language-action"),
    ("PRM", "process reward model"),
    ("ORM", "outcome reward model"),
    ("MCTS", "monte carlo tree search"),
    ("KD", "knowledge distillation"),
    ("SSL", "self-supervised learning"),
    ("IR", "information retrieval"),
    ("GUI", "graphical user interface"),
    ("T2I", "text-to-image"),
    ("T2V", "text-to-video"),
    ("I2V", "image-to-video"),
    ("SR", "super-resolution"),
    ("SLU", "spoken language understanding"),
    ("ST", "speech translation"),
    ("NAS", "neural architecture search"),
    ("FL", "federated learning"),
    ("OOD", "out-of-distribution"),
)

MAX_FORMS = 6  # per keyword: the typed form plus at most this many alternatives

# "(ABBR)" / "(ABBR; ...)" / "(ABBR, ...)"; the long form is looked for in the text before it.
_PAREN = re.compile(r"\(\s*([A-Za-z0-9][A-Za-z0-9\-]{1,9})\s*[),;]")
_BREAK = re.compile(r"[()\[\].;:]")


def _schwartz_hearst(long_text: str, abbr: str) -> str | None:
    """The shortest tail of `long_text` that defines `abbr`, or None."""
    letters = [c.lower() for c in abbr if c.isalnum()]
    if len(letters) < 2 or not any(c.isalpha() for c in letters):
        return None
    if not any(c.isupper() for c in abbr):
        return None
    words = long_text.split()
    words = words[-min(len(letters) + 5, 2 * len(letters)) :]
    text = " ".join(words).lower()
    si, li = len(letters) - 1, len(text) - 1
    while si >= 0:
        c = letters[si]
        while li >= 0 and (text[li] != c or (si == 0 and li > 0 and text[li - 1].isalnum())):
            li -= 1
        if li < 0:
            return None
        li -= 1
        si -= 1
    start = text.rfind(" ", 0, li + 1) + 1
    long_form = text[start:].strip()
    if len(long_form.split()) < 2 and "-" not in long_form:
        return None
    return long_form


def definitions(text: str) -> list[tuple[str, str]]:
    """(key(abbreviation), key(long form)) pairs defined in one text as "long form (ABBR)"."""
    out = []
    for m in _PAREN.finditer(text):
        abbr = m.group(1)
        before = text[max(0, m.start() - 200) : m.start()]
        cut = max((b.end() for b in _BREAK.finditer(before)), default=0)
        long_form = _schwartz_hearst(before[cut:], abbr)
        if long_form is None:
            continue
        k_abbr, k_long = key(abbr), key(long_form)
        if k_abbr and k_long and k_abbr != k_long:
            out.append((k_abbr, k_long))
    return out


def mine_definitions(per_text: Iterable[list[tuple[str, str]]]) -> dict[str, Counter[str]]:
    """key(abbreviation) -> Counter of key(long form) over all texts' definitions."""
    found: dict[str, Counter[str]] = defaultdict(Counter)
    for defs in per_text:
        for k_abbr, k_long in defs:
            found[k_abbr][k_long] += 1
    return found


def synonym_table(mined: Mapping[str, Counter[str]]) -> dict[str, set[str]]:
    """Symmetric key -> keys table from the curated list plus mined definitions.

    A mined abbreviation keeps its two most frequent long forms; ambiguous short forms
    ("SR": super-resolution or speech recognition) thus stay with their common readings."""
    table: dict[str, set[str]] = defaultdict(set)

    def link(a: str, b: str) -> None:
        if a and b and a != b:
            table[a].add(b)
            table[b].add(a)

    for abbr, *longs in CURATED:
        ka = key(abbr)
        for lf in longs:
            link(ka, key(lf))
    for ka, counts in mined.items():
        for kl, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:2]:
            link(ka, kl)
    return dict(table)


_ABBR_WORD = re.compile(r"[A-Za-z0-9]+")


@lru_cache(maxsize=100_000)  # pure; a keyword recurs in every chunk and every day
def spelled_out(term: str) -> str:
    """The keyword with each curated abbreviation in it followed by its first long form
    ("LLM serving" -> "LLM (large language model) serving"): what the semantic model
    embeds, since an embedding model trained before an abbreviation spread reads it as
    word pieces ("ll", "##m") and the keyword's other words then decide alone."""
    longs = _curated_longs()

    def repl(m: re.Match[str]) -> str:
        word = m.group(0)
        lf = longs.get(word.lower()) or (longs.get(word[:-1].lower()) if word[-1:] == "s" else None)
        return f"{word} ({lf})" if lf and lf.lower() != word.lower() else word

    return _ABBR_WORD.sub(repl, term)


@lru_cache(maxsize=1)
def _curated_longs() -> dict[str, str]:
    return {abbr.lower(): longs[0] for abbr, *longs in CURATED if " " not in abbr}


def alternatives(term_key: str, table: Mapping[str, set[str]]) -> list[str]:
    """Alternative keys of a keyword: whole-term synonyms first, then the keyword with one
    abbreviation / long form inside it replaced ("llm serv" -> "larg languag model serv")."""
    out: list[str] = []
    words = term_key.split()
    for syn in sorted(table.get(term_key, ())):
        out.append(syn)
    n = len(words)
    for i in range(n):
        for j in range(i + 1, n + 1):
            if i == 0 and j == n:
                continue
            part = " ".join(words[i:j])
            for syn in sorted(table.get(part, ())):
                out.append(" ".join([*words[:i], syn, *words[j:]]))
    seen: set[str] = {term_key}
    uniq = []
    for alt in out:
        if alt not in seen:
            seen.add(alt)
            uniq.append(alt)
    return uniq[:MAX_FORMS]
