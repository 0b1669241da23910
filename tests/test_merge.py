"""merge(): one Paper per arXiv id across sources, days and versions; normalise_arxiv_id."""

from __future__ import annotations

import json
from datetime import date

import pytest
from httpfixture import ARXIV_DIR, HF_DIR
from hypothesis import given
from hypothesis import strategies as st

from digest.models import FetchResult, Paper
from digest.sources import merge, normalise_arxiv_id
from digest.sources.arxiv import parse_rss
from digest.sources.hf import parse_daily_papers
from digest.sources.merge import merge_papers


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("2604.21935", "2604.21935"),
        ("2604.21935v2", "2604.21935"),
        ("  2604.21935v12 ", "2604.21935"),
        ("arXiv:2604.21935v1", "2604.21935"),
        ("http://arxiv.org/abs/2604.21935v1", "2604.21935"),
        ("https://arxiv.org/abs/2604.21935", "2604.21935"),
        ("https://arxiv.org/pdf/2604.21935v3.pdf", "2604.21935"),
        ("https://export.arxiv.org/abs/2604.21935v1", "2604.21935"),
        ("oai:arXiv.org:2604.21935v1", "2604.21935"),
        ("0704.0001", "0704.0001"),  # the first new-style id (4 digits until 2014)
        ("hep-th/0601001v1", "hep-th/0601001"),
        ("math.GT/0309136", "math.GT/0309136"),
        ("http://arxiv.org/abs/cond-mat/9912345v2", "cond-mat/9912345"),
        ("oai:arXiv.org:hep-th/0601001", "hep-th/0601001"),
    ],
)
def test_normalise_arxiv_id(raw: str, expected: str) -> None:
    assert normalise_arxiv_id(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "abc",
        "2604.219",
        "2613.00001",
        "2604.219351",
        "2604.21935vx",
        "v2",
        "https://example.org/abs/2604.21935",
        "hep-th/060100",
        "HEP-TH/0601001",
        "2604.21935 2604.21936",
        None,
        2604.21935,
        ["2604.21935"],
    ],
)
def test_normalise_rejects_what_is_not_an_arxiv_id(raw: object) -> None:
    assert normalise_arxiv_id(raw) is None


def paper(pid: str, source: str = "huggingface", **kw) -> Paper:
    return Paper(
        id=pid,
        title=kw.pop("title", f"Title {pid}"),
        abstract=kw.pop("abstract", ""),
        sources=(source,),
        **kw,
    )


def result(source: str, *papers: Paper) -> FetchResult:
    return FetchResult(source=source, papers=papers)


def test_versions_are_one_paper_the_latest_version_preferred() -> None:
    merged = merge(
        [
            result(
                "arxiv",
                paper("2604.21935v2", "arxiv", abstract="new"),
                paper("2604.21935v1", "arxiv", abstract="old"),
            )
        ]
    )
    assert [(p.id, p.abstract) for p in merged] == [("2604.21935", "new")]


def test_a_paper_from_both_sources_keeps_hugging_face_details() -> None:
    hf = paper(
        "2604.21935",
        "huggingface",
        upvotes=40,
        ai_summary="In short.",
        ai_keywords=("llm",),
        listed_on=date(2026, 4, 28),
        abstract="",
        github_repo="https://github.com/x/y",
    )
    ax = paper(
        "2604.21935v1",
        "arxiv",
        listed_on=date(2026, 4, 27),
        abstract="The arXiv abstract.",
        authors=("A. Author",),
    )
    for order in (
        [result("arxiv", ax), result("huggingface", hf)],
        [result("huggingface", hf), result("arxiv", ax)],
    ):
        [p] = merge(order)
        assert p.id == "2604.21935"
        assert p.sources == ("huggingface", "arxiv")
        assert (p.upvotes, p.ai_summary, p.ai_keywords) == (40, "In short.", ("llm",))
        assert p.github_repo == "https://github.com/x/y"
        assert p.listed_on == date(2026, 4, 27)  # the earliest listing
        assert p.abstract == "The arXiv abstract."  # HF had none: filled from arXiv
        assert p.authors == ("A. Author",)


def test_a_paper_listed_on_two_days_is_one_paper_with_the_fresher_counts() -> None:
    day1 = paper(
        "2601.00001", upvotes=5, github_stars=2, listed_on=date(2026, 1, 5), title="Old title"
    )
    day2 = paper(
        "2601.00001", upvotes=9, github_stars=None, listed_on=date(2026, 1, 6), title="New title"
    )
    [p] = merge([result("huggingface", day1, day2)])
    assert (p.upvotes, p.github_stars, p.listed_on) == (9, 2, date(2026, 1, 5))
    assert p.title == "New title"  # the most recent listing of the preferred source


def test_failed_results_and_bad_ids_contribute_nothing() -> None:
    merged = merge(
        [
            FetchResult(source="arxiv", error="arxiv: GET …: HTTP 500 after 5 attempts"),
            result("huggingface", paper("not-an-id"), paper("2601.00002")),
        ]
    )
    assert [p.id for p in merged] == ["2601.00002"]
    assert merge([]) == []


def test_a_paper_without_sources_is_credited_to_its_result() -> None:
    [p] = merge([result("arxiv", Paper(id="2601.00003", title="T", abstract=""))])
    assert p.sources == ("arxiv",)


def test_recorded_month_merges_to_unique_sorted_ids() -> None:
    results = []
    for path in sorted((HF_DIR / "2026-01").glob("*.json")):
        papers, _ = parse_daily_papers(json.loads(path.read_bytes()))
        results.append(result("huggingface", *papers))
    rss_papers, _ = parse_rss(next(ARXIV_DIR.glob("rss_*.xml")).read_bytes())
    results.append(result("arxiv", *rss_papers))
    merged = merge(results)
    all_ids = {p.id for r in results for p in r.papers}
    assert [p.id for p in merged] == sorted(all_ids)
    assert sum(1 for p in merged if p.sources == ("arxiv",)) == 3


ids = st.sampled_from(
    ["2601.00001", "2601.00001v2", "2601.00002v1", "hep-th/0601001v3", "2601.00003"]
)
papers = st.builds(
    paper,
    ids,
    st.sampled_from(["huggingface", "arxiv"]),
    upvotes=st.none() | st.integers(0, 100),
    listed_on=st.none() | st.dates(date(2026, 1, 1), date(2026, 1, 31)),
    abstract=st.sampled_from(["", "a", "b"]),
)


@given(st.lists(papers, max_size=12), st.randoms(use_true_random=False))
def test_merge_is_one_per_identity_sorted_idempotent_and_order_independent(ps, rnd) -> None:
    merged = merge_papers(ps)
    assert [p.id for p in merged] == sorted({normalise_arxiv_id(p.id) for p in ps})
    assert merge_papers(merged) == merged
    shuffled = list(ps)
    rnd.shuffle(shuffled)
    assert merge_papers(shuffled) == merged
    for p in merged:
        mine = [q for q in ps if normalise_arxiv_id(q.id) == p.id]
        assert p.upvotes == max((q.upvotes for q in mine if q.upvotes is not None), default=None)
        assert set(p.sources) == {s for q in mine for s in q.sources}
