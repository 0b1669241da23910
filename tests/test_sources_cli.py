"""`digest fetch`: the sources' subcommand, against the local fixture server."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Iterator
from dataclasses import replace

import pytest
from httpfixture import FixtureServer, unused_url

from digest.errors import AllSourcesFailed
from digest.sources import cli


@pytest.fixture(scope="module")
def srv() -> Iterator[FixtureServer]:
    with FixtureServer() as server:
        yield server


def run(cfg, *argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="digest")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["fetch", *argv])
    out = io.StringIO()
    code = args.func(cfg, args, out=out)
    return code, out.getvalue()


def test_fetch_prints_each_source_and_the_merged_papers(srv: FixtureServer) -> None:
    code, text = run(srv.configure(lookback_days=1), "--date", "2026-03-10", "--limit", "5")
    assert code == 0
    lines = text.splitlines()
    assert lines[0] == "huggingface: 28 papers, 0 skipped as bad, 1 requests"
    assert lines[1] == "arxiv: 3 papers, 0 skipped as bad, 1 requests"
    assert lines[2] == "merged: 31 papers"
    assert len(lines) == 3 + 5 + 1 and lines[-1].startswith("  … and 26 more")


def test_fetch_json(srv: FixtureServer) -> None:
    code, text = run(srv.configure(categories=()), "--date", "2026-03-10", "--json")
    papers = json.loads(text)
    assert code == 0 and len(papers) == 28
    assert papers == sorted(papers, key=lambda p: p["id"])
    assert all(p["sources"] == ["huggingface"] and p["listed_on"] == "2026-03-10" for p in papers)


def test_fetch_every_source_failed(srv: FixtureServer) -> None:
    cfg = srv.configure(offline_fallback=False, retries=0)
    s = cfg.sources
    cfg = replace(
        cfg,
        sources=replace(
            s,
            huggingface=replace(s.huggingface, base_url=unused_url()),
            arxiv=replace(s.arxiv, rss_base_url=unused_url()),
        ),
    )
    with pytest.raises(AllSourcesFailed, match="^every source failed \\(huggingface: GET"):
        run(cfg, "--date", "2026-03-10")


def test_bad_date_is_one_line_input_error(srv: FixtureServer) -> None:
    from digest.errors import InputError

    with pytest.raises(InputError, match="--date"):
        run(srv.configure(), "--date", "yesterday")
