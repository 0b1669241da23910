"""Pure: no I/O. One Paper per paper across sources, listing days and versions.

Identity is the arXiv id without its version (`normalise_arxiv_id`): a paper listed by
Hugging Face and by arXiv, listed on two days, or seen as v1 then v2 is ONE Paper.

How the records of one paper are combined:

* the base record is Hugging Face's when there is one (it carries upvotes, the AI
  summary and keywords), the most recently listed / latest version among equals;
* a field the base lacks (empty abstract, no authors, no summary, no links) is taken
  from the other records, in the same order of preference;
* upvotes and GitHub stars: the largest seen (counts only grow);
* sources: the union, Hugging Face first; listed_on: the earliest day any source listed it;
* the result is sorted by id, so the same inputs always give the same output.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import date
from typing import Any

from digest.models import FetchResult, Paper
from digest.sources.clean import normalise_arxiv_id

__all__ = ["merge", "merge_papers", "normalise_arxiv_id"]

SOURCE_ORDER = ("huggingface", "arxiv")  # preference when records disagree


def _source_rank(source: str) -> int:
    return SOURCE_ORDER.index(source) if source in SOURCE_ORDER else len(SOURCE_ORDER)


def _version(raw_id: str) -> int:
    m = re.search(r"v(\d+)$", raw_id)
    return int(m.group(1)) if m else 0


def _preference(paper: Paper) -> tuple[int, int, int, str, str, tuple[str, ...]]:
    """Sort key: best record first (Hugging Face, most recently listed, latest version);
    the text fields break remaining ties so the input order never matters."""
    best_source = min((_source_rank(s) for s in paper.sources), default=len(SOURCE_ORDER))
    listed = paper.listed_on.toordinal() if paper.listed_on else 0
    return best_source, -listed, -_version(paper.id), paper.title, paper.abstract, paper.authors


def _max_opt(values: Iterable[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _min_day(values: Iterable[date | None]) -> date | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _combine(pid: str, records: list[Paper]) -> Paper:
    records = sorted(records, key=_preference)

    def first(attr: str) -> Any:
        for r in records:
            value = getattr(r, attr)
            if value:
                return value
        return getattr(records[0], attr)

    sources = sorted({s for r in records for s in r.sources}, key=lambda s: (_source_rank(s), s))
    return replace(
        records[0],
        id=pid,
        title=first("title"),
        abstract=first("abstract"),
        authors=first("authors"),
        listed_on=_min_day(r.listed_on for r in records),
        ai_summary=first("ai_summary"),
        ai_keywords=first("ai_keywords"),
        upvotes=_max_opt(r.upvotes for r in records),
        github_repo=first("github_repo"),
        github_stars=_max_opt(r.github_stars for r in records),
        project_page=first("project_page"),
        sources=tuple(sources),
    )


def merge_papers(papers: Iterable[Paper]) -> list[Paper]:
    """One Paper per arXiv id (version dropped), sorted by id. Unusable ids are dropped."""
    groups: dict[str, list[Paper]] = {}
    for paper in papers:
        pid = normalise_arxiv_id(paper.id)
        if pid is not None:
            groups.setdefault(pid, []).append(paper)
    return [_combine(pid, groups[pid]) for pid in sorted(groups)]


def merge(results: Sequence[FetchResult]) -> list[Paper]:
    """All papers of all results, one per identity (see the module docstring).

    A result that failed contributes what it has (normally nothing); a paper with no
    `sources` is credited to its result's source.
    """

    def credited(result: FetchResult) -> Iterable[Paper]:
        for p in result.papers:
            yield p if p.sources else replace(p, sources=(result.source,))

    return merge_papers(p for r in results for p in credited(r))
