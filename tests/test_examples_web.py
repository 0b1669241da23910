"""Example papers on the manage page of a real `digest web`: the papers field, and an
uploaded BibTeX / RIS / Zotero export, resolved from the store, else from arXiv's export
API (a local server answering with recorded entries, tests/test_examples.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from test_examples import IDS, IdListServer
from websupport import make_site

from digest.config import SourcesConfig

NOW = datetime(2026, 1, 6, 9, 0, tzinfo=UTC)


@pytest.fixture
def arxiv():
    srv = IdListServer()
    yield srv
    srv.close()


def _site_with_arxiv(site, arxiv) -> None:
    axc = replace(site.cfg.sources.arxiv, api_base_url=arxiv.url)
    site.ctx.cfg = replace(site.ctx.cfg, sources=replace(SourcesConfig(), arxiv=axc))


def _examples(site, email: str) -> list[str]:
    sub = site.store.get_subscriber(email)
    assert sub is not None
    return [pid for pid, _ in sub.examples]


def test_manage_papers_field_saves_examples_and_refuses_unknown_ones(tmp_path, arxiv) -> None:
    email = "ex@example.org"
    with make_site(tmp_path, now=NOW) as site:
        _site_with_arxiv(site, arxiv)
        site.add(email, keywords=("agents",))
        manage = site.links(email).manage_url
        with site.client() as c:
            page = c.get(manage)
            assert 'id="papers"' in page.text and 'id="library"' in page.text
            form = {**site.form(c, manage), "keywords": "", "max": "5", "action": "save"}
            refs = f"{IDS[0]}, https://huggingface.co/papers/{IDS[1]}"
            r = c.post(manage, data={**form, "papers": refs})
            assert r.status_code == 200, r.text
            assert _examples(site, email) == [IDS[0], IDS[1]]
            sub = site.store.get_subscriber(email)
            assert sub is not None and sub.keywords == () and all(t for _, t in sub.examples)
            shown = c.get(manage).text
            assert f"{IDS[0]}, {IDS[1]}" in shown  # shown back in the field, and by title
            assert f'<li data-paper-id="{IDS[0]}">{sub.examples[0][1]}' in shown
            # Unknown or malformed papers: a clear error, nothing saved.
            for bad, says in (
                ("2607.99999", "not found on arXiv"),
                ("nonsense", "not an arXiv id"),
            ):
                form = {**site.form(c, manage), "keywords": "x", "max": "5", "action": "save"}
                r = c.post(manage, data={**form, "papers": bad})
                assert r.status_code == 400 and says in r.text
            assert _examples(site, email) == [IDS[0], IDS[1]]
            assert site.store.get_subscriber(email).keywords == ()  # type: ignore[union-attr]
            # A form without the field (an older page) keeps the examples.
            form = {**site.form(c, manage), "keywords": "agents", "max": "5", "action": "save"}
            assert c.post(manage, data=form).status_code == 200
            assert _examples(site, email) == [IDS[0], IDS[1]]


def test_a_library_upload_adds_its_arxiv_papers_and_lists_the_rest(tmp_path, arxiv) -> None:
    email = "lib@example.org"
    bib = (
        f"@article{{a, title = {{One}}, eprint = {{{IDS[2]}}}, archivePrefix = {{arXiv}}}}\n"
        f"@misc{{b, title = {{Two}}, url = {{https://arxiv.org/abs/{IDS[3]}v1}}}}\n"
        "@article{c, title = {A Journal Paper}, journal = {Nature}}\n"
        "@misc{d, title = {Gone}, eprint = {2607.99999}, archivePrefix = {arXiv}}\n"
    )
    with make_site(tmp_path, now=NOW) as site:
        _site_with_arxiv(site, arxiv)
        site.add(email)
        manage = site.links(email).manage_url
        with site.client() as c:
            fields = {**site.form(c, manage), "action": "library"}
            files = {"library": ("My Library.bib", bib.encode(), "application/x-bibtex")}
            r = c.post(manage, data=fields, files=files)
            assert r.status_code == 200, r.text
            assert "2 of the 4 entries added" in r.text
            assert "A Journal Paper" in r.text and "2607.99999" in r.text
            assert _examples(site, email) == [IDS[2], IDS[3]]
            # Not an export: one clear line, nothing changed.
            fields = {**site.form(c, manage), "action": "library"}
            files = {"library": ("notes.txt", b"just some text", "text/plain")}
            r = c.post(manage, data=fields, files=files)
            assert r.status_code == 400 and "library: not a BibTeX" in r.text
            # Without the CSRF field: refused.
            r = c.post(manage, data={"action": "library"}, files=files)
            assert r.status_code in (400, 403)
        assert _examples(site, email) == [IDS[2], IDS[3]]


def test_a_reader_by_example_only_gets_for_you_with_why(tmp_path) -> None:
    """No keywords, example papers only: the video papers of earlier days, known to the
    store from those days' runs. The next digest (2026-01-07) has a "For you" section
    whose why-line names the example each pick is like."""
    from datetime import date

    from browser import html_of
    from httpfixture import FixtureServer
    from test_ratings import cards

    from digest.models import Subscriber
    from digest.pipeline import run_daily
    from digest.rank.learn import with_examples

    with FixtureServer() as fx, make_site(tmp_path, now=NOW) as site:
        run_cfg = fx.configure(site.cfg, lookback_days=1, categories=(), offline_fallback=False)
        for d in (1, 2, 5, 6):  # nobody subscribed yet: the runs fill the store's papers
            assert run_daily(run_cfg, date(2026, 1, d), progress=False).sent == 0
        earlier = site.store.recent_papers(date(2026, 1, 1))
        video = [p for p in earlier if "video" in p.title.lower()]
        assert len(video) >= 5
        # Their own cut of 40 (the default 53 sits right at this day's best neighbour):
        # the learned score is cut like any other.
        reader = Subscriber("byex@example.org", min_score=40.0)
        sub = with_examples(reader, [(p.id, p.title) for p in video])
        site.store.put_subscribers([sub])
        assert run_daily(run_cfg, date(2026, 1, 7), progress=False).sent == 1
        html = html_of(site.inbox.wait_for("byex@example.org")[0])
        mine = [pid for s, pid, _ in cards(html) if s == "match"]
        assert mine, "no For you section"
        assert "one of your examples" in html
        assert not {p.id for p in video} & set(mine)  # the examples themselves never come back
