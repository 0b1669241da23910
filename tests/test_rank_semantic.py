"""The semantic signal: the bundled model loads offline, embeds deterministically, and
only reorders matches (digest/rank/semantic.py, digest/rank/dense.py)."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.config import RankingConfig
from digest.models import MATCH, Paper, Subscriber
from digest.rank import paper_scores, rank
from digest.rank import semantic as sem
from digest.rank.dense import Z_SPAN, paper_text, semantic_scores

ROOT = Path(__file__).resolve().parent.parent
DAY = date(2026, 1, 15)


def paper(pid: str, title: str, abstract: str) -> Paper:
    return Paper(id=pid, title=title, abstract=abstract, listed_on=DAY)


def test_model_loads_and_embeds_without_opening_a_socket() -> None:
    """A fresh interpreter loads the model and embeds a text; an audit hook records every
    socket event (connect, getaddrinfo, ...) and there must be none. HF_HUB_OFFLINE is not
    set: nothing may even try."""
    code = textwrap.dedent(
        """
        import os, sys
        os.environ.pop("HF_HUB_OFFLINE", None)
        events = []
        sys.addaudithook(lambda e, a: e.startswith("socket.") and events.append(e))
        from digest.rank.semantic import encoder, background
        enc = encoder()
        assert enc is not None, "model did not load"
        v = enc.embed(["speech recognition", "a paper about text-to-speech"])
        assert v.shape == (2, 384), v.shape
        assert background().shape[1] == 384
        print("socket events:", events)
        assert not events, events
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "socket events: []" in done.stdout


def test_embeddings_are_unit_deterministic_and_alone() -> None:
    enc = sem.encoder()
    assert enc is not None
    texts = ["speech recognition", "Whisper-style ASR for noisy calls", "", "diffusion models"]
    a = enc.embed(texts)
    assert a.dtype == np.float32 and a.shape == (4, sem.DIM)
    assert np.allclose(np.linalg.norm(a[[0, 1, 3]], axis=1), 1.0, atol=2e-4)  # float16
    assert not a[2].any()  # an empty text is the zero vector
    enc._cache.clear()
    b = enc.embed(texts[::-1])[::-1]  # another order, nothing cached: the same bits
    assert np.array_equal(a, b)
    # Batched with others of the same length or alone: the same bits.
    words = ["speech recognition", "world models", "dense retrieval", "video generation"]
    enc._cache.clear()
    together = enc.embed(words)
    for w, v in zip(words, together, strict=True):
        enc._cache.clear()
        assert np.array_equal(enc.embed([w])[0], v)
    # Meaning, not spelling: ASR is closer to "speech recognition" than diffusion is.
    assert a[0] @ a[1] > a[0] @ a[3]


def test_background_is_the_recorded_papers() -> None:
    """semantic_background.npy holds one unit vector per recorded paper
    (bench/rank_background.py rebuilds it from the same files)."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from rank_background import recorded_papers
    finally:
        sys.path.remove(str(ROOT / "bench"))
    ref = sem.background()
    assert ref.shape == (len(recorded_papers()), sem.DIM)
    assert np.allclose(np.linalg.norm(ref, axis=1), 1.0, atol=2e-3)  # stored as float16


def test_semantic_scores_are_exact_whatever_the_shapes() -> None:
    rng = np.random.default_rng(7)

    def unit(n: int) -> np.ndarray:
        m = rng.standard_normal((n, sem.DIM)).astype(np.float32)
        return m / np.linalg.norm(m, axis=1, keepdims=True)

    kw, papers, ref = unit(5), unit(40), unit(30)
    papers[3] = 0.0  # a paper without text
    full = semantic_scores(kw, papers, ref)
    assert full.shape == (5, 40) and full.dtype == np.float32
    assert (full >= 0).all() and (full <= 1).all()
    assert not full[:, 3].any()
    # Any subset of keywords and papers, in any order: the very same numbers.
    ks, ps = [4, 1], [39, 0, 17, 3]
    assert np.array_equal(semantic_scores(kw[ks], papers[ps], ref), full[np.ix_(ks, ps)])
    # A paper equal to a keyword is far above ordinary papers: the full 1.0 or close.
    same = semantic_scores(kw[:1], kw[:1], ref)
    assert same[0, 0] > 0.5 and Z_SPAN > 0


LLM = "LLM serving"
KV = paper(
    "2601.00001",
    "Evicting the KV cache for long-context LLM inference",
    "We compress and evict the key-value cache of large language models during decoding, "
    "cutting memory and time to first token for long prompts on serving hardware.",
)
FOOD = paper(  # the words, another meaning
    "2601.00002",
    "Serving sizes for school lunches",
    "An LLM reads menus and estimates the serving size of each dish for nutrition labels "
    "in school canteens.",
)
ELSEWHERE = paper(
    "2601.00003",
    "Speculative decoding speeds up generation",
    "Draft tokens proposed by a small model are verified in parallel by the target model.",
)
OTHERS = [
    paper(f"2601.0010{i}", t, t)
    for i, t in enumerate(
        [
            "Protein folding with graph networks",
            "A benchmark for robot grasping",
            "Image super-resolution",
        ]
    )
]
DAYS = [KV, FOOD, ELSEWHERE, *OTHERS]


def test_semantics_lift_a_match_in_other_words_and_admit_nothing() -> None:
    s = Subscriber(email="a@example.org", keywords=(LLM,))
    with_sem = paper_scores(DAYS, s)
    words = paper_scores(DAYS, s, semantic=False)
    assert set(with_sem) == set(words)  # the same matches: semantics never admit
    assert ELSEWHERE.id not in with_sem  # close in meaning, none of the words: no match
    assert with_sem[KV.id] > words[KV.id]
    assert with_sem[FOOD.id] >= words[FOOD.id]  # only closeness counts: never lowers
    # On topic beats sharing the words: by words alone the lunch paper leads, with the
    # model the KV-cache paper ("LLM" is spelled out for the model: expand.spelled_out).
    assert words[FOOD.id] > words[KV.id]
    picks = rank(DAYS, [s], min_score=0.0, trending=0)[s.email]
    assert [p.paper_id for p in picks] == [KV.id, FOOD.id]


def test_without_the_model_ranking_goes_on_lexically(monkeypatch, caplog) -> None:
    """A missing or damaged model: one warning, and the words-only ranking."""
    monkeypatch.setattr(sem, "model_path", lambda: Path("/nonexistent/model.onnx"))
    sem.encoder.cache_clear()
    try:
        s = Subscriber(email="a@example.org", keywords=(LLM,))
        with caplog.at_level(logging.WARNING, logger="digest.rank.semantic"):
            got = paper_scores(DAYS, s)
        assert got == paper_scores(DAYS, s, semantic=False)
        assert "lexical only" in caplog.text
    finally:
        sem.encoder.cache_clear()


def test_semantic_can_be_switched_off_in_config() -> None:
    assert RankingConfig().semantic is True
    s = Subscriber(email="a@example.org", keywords=(LLM,))
    off = rank(DAYS, [s], min_score=0.0, trending=0, semantic=False)[s.email]
    assert [p.paper_id for p in off] == [FOOD.id, KV.id]


def test_paper_text_is_title_then_abstract() -> None:
    assert paper_text(" A  title\n", "An\nabstract.") == "A title. An abstract."
    assert paper_text("Only a title", "") == "Only a title"


# The Hypothesis properties of tests/test_rank_properties.py, a few examples on the real
# model (there they run on a fake embedder, hundreds of examples).
WORDS = ["speech", "recognition", "LLM", "serving", "KV", "cache", "world", "model", "video"]
text = st.lists(st.sampled_from(WORDS), min_size=1, max_size=12).map(" ".join)
FEW = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FEW
@given(st.lists(text, min_size=2, max_size=6), st.lists(text, min_size=1, max_size=3), text)
def test_real_model_properties(texts, kws, extra) -> None:
    ps = [paper(f"2601.{i:05d}", t, t) for i, t in enumerate(texts)]
    subs = [Subscriber(email=f"s{i}@example.org", keywords=(k,)) for i, k in enumerate(kws)]
    first = rank(ps, subs, min_score=0.0)
    assert rank(ps[::-1], subs[::-1], min_score=0.0) == first
    for s in subs:
        assert rank(ps, [s], min_score=0.0)[s.email] == first[s.email]
        before = paper_scores(ps, s)
        after = paper_scores(ps, Subscriber(email=s.email, keywords=(*s.keywords, extra)))
        assert all(after[pid] >= v for pid, v in before.items())
        assert all(p.section != MATCH or p.paper_id in before for p in first[s.email])


@pytest.fixture(autouse=True)
def _model_available() -> None:
    if sem.encoder() is None:
        pytest.fail("the bundled semantic model did not load (see the warning above)")


def test_abbreviations_are_spelled_out_for_the_model() -> None:
    from digest.rank.expand import spelled_out

    assert spelled_out("llm serving") == "llm (large language model) serving"
    assert spelled_out("LLMs for RAG") == (
        "LLMs (large language model) for RAG (retrieval-augmented generation)"
    )
    assert spelled_out("world models") == "world models"  # nothing to spell out


def test_vectors_are_kept_on_disk_and_shared(tmp_path) -> None:
    """A second process (a new encoder here) reads the vectors the first one stored: the
    same numbers, and nothing is embedded again."""
    from digest.rank.vectorcache import VectorCache

    enc = sem.encoder()
    assert enc is not None
    texts = ["world models", "A learned simulator of a video game, conditioned on actions."]
    path = tmp_path / "store" / "vectors.sqlite3"
    enc._cache.clear()
    first = enc.embed(texts, VectorCache(path, sem.MODEL_SHA256, sem.DIM))
    assert path.exists()
    enc._cache.clear()
    calls = []
    real = enc._compute
    enc._compute = lambda ts: calls.extend(ts) or real(ts)  # type: ignore[method-assign]
    try:
        again = enc.embed(texts, VectorCache(path, sem.MODEL_SHA256, sem.DIM))
    finally:
        del enc._compute
    assert calls == []
    assert np.array_equal(first, again)
    # Another model's vectors are never mistaken for these.
    assert VectorCache(path, "another-model", sem.DIM).get(texts) == {}


def test_a_damaged_vector_cache_is_logged_and_skipped(tmp_path, caplog) -> None:
    from digest.rank.vectorcache import VectorCache

    path = tmp_path / "vectors.sqlite3"
    path.write_bytes(b"this is not an SQLite database" * 100)
    enc = sem.encoder()
    assert enc is not None
    enc._cache.clear()
    with caplog.at_level(logging.WARNING, logger="digest.rank.vectorcache"):
        got = enc.embed(["speech recognition"], VectorCache(path, sem.MODEL_SHA256, sem.DIM))
    assert got.shape == (1, sem.DIM) and got.any()
    assert "vector cache" in caplog.text
    assert path.read_bytes().startswith(b"this is not")  # left as it was: nothing lost


def test_rank_with_a_vector_cache_gives_the_same_picks(tmp_path) -> None:
    s = Subscriber(email="a@example.org", keywords=(LLM,))
    path = tmp_path / "vectors.sqlite3"
    plain = rank(DAYS, [s], min_score=0.0)
    assert rank(DAYS, [s], min_score=0.0, vector_cache=path) == plain
    sem.encoder()._cache.clear()  # type: ignore[union-attr]
    assert rank(DAYS, [s], min_score=0.0, vector_cache=path) == plain  # read back from disk


def test_the_vector_cache_serves_threads(tmp_path) -> None:
    """The web service and the run's builder rank in threads: one cache, many threads."""
    import threading

    from digest.rank.vectorcache import VectorCache

    cache = VectorCache(tmp_path / "vectors.sqlite3", sem.MODEL_SHA256, sem.DIM)
    vec = np.ones(sem.DIM, dtype=np.float32) / np.sqrt(sem.DIM)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(20):
                cache.put({f"t{i}-{j}": vec})
                assert f"t{i}-{j}" in cache.get([f"t{i}-{j}"])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(cache.get([f"t{i}-{j}" for i in range(4) for j in range(20)])) == 80


def test_vectors_all_on_disk_never_load_the_model(tmp_path) -> None:
    """A process whose texts are all in the cache file (a rerun of the day, a further
    worker of a shared day on the same machine) ranks without loading the model: the
    same picks."""
    s = Subscriber(email="a@example.org", keywords=(LLM,))
    path = tmp_path / "vectors.sqlite3"
    sem.encoder.cache_clear()  # a new process: nothing in memory yet
    try:
        first = rank(DAYS, [s], min_score=0.0, vector_cache=path)  # embeds, stores
        sem.encoder.cache_clear()  # another new process
        again = rank(DAYS, [s], min_score=0.0, vector_cache=path)
        enc = sem.encoder()
        assert enc is not None and not enc.loaded
        assert again == first
        got = sem.vectors(["a keyword no one embedded before"], [], cache=path)
        assert got is not None and got[0].any() and enc.loaded  # in neither cache: loads
    finally:
        sem.encoder.cache_clear()


def test_a_model_that_fails_to_load_late_ranks_lexically(monkeypatch, caplog) -> None:
    """The files check out but loading fails at the first text: one warning, the
    words-only ranking, and no second attempt."""
    broken = sem.Encoder(Path("/nonexistent/model.onnx"), Path("/nonexistent/tok.json"))
    monkeypatch.setattr(sem, "encoder", lambda: broken)
    s = Subscriber(email="a@example.org", keywords=(LLM,))
    with caplog.at_level(logging.WARNING, logger="digest.rank.semantic"):
        got = paper_scores(DAYS, s)
        again = paper_scores(DAYS, s)
    assert got == again == paper_scores(DAYS, s, semantic=False)
    assert caplog.text.count("lexical only") == 1
    assert broken.failed and not broken.loaded
