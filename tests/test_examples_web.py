"""Example papers on the manage page of a real `digest web`: the papers field, and an
uploaded BibTeX / RIS / Zotero export, resolved from the store, else from arXiv's export
API (a local server answering with recorded entries, tests/test_examples.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from browser import text_of
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


def test_subscribe_with_example_papers_only_resolves_them_when_confirmed(tmp_path, arxiv) -> None:
    """The front page's papers field: checked when sent, carried by the confirmation link,
    looked up (the store, else arXiv) only when the link is clicked; keywords optional.
    A paper found nowhere does not stop the subscription: the page names it."""
    from browser import hidden
    from test_web import link_in
    from websupport import paper

    from digest.models import ACTIVE, PENDING

    email = "newbie@example.org"
    known = paper("2601.02346", "A Paper The Store Knows")
    with make_site(tmp_path, now=NOW) as site:
        _site_with_arxiv(site, arxiv)
        site.store.record_seen([known], known.listed_on)
        refs = (
            f"https://arxiv.org/abs/{known.id}v2, {IDS[0]} https://huggingface.co/papers/2607.99999"
        )
        with site.client() as c:
            # A reference that is not one: the form says so, nothing is stored or mailed.
            bad = site.subscribe(c, email, "", papers="2601.02346, nonsense")
            assert bad.status_code == 400 and "Example papers: " in bad.text
            assert "nonsense" in bad.text and site.store.get_subscriber(email) is None
            r = site.subscribe(c, email, "", papers=refs)
        assert r.status_code == 200 and "Check your inbox" in r.text
        site.drain()
        pending = site.sub(email)
        assert pending.status == PENDING and pending.examples == () and pending.keywords == ()
        assert arxiv.queries == []  # an anonymous form never makes us ask arXiv
        (msg,) = site.inbox.wait_for(email)
        assert f"With 3 example papers: {known.id}, {IDS[0]}, 2607.99999" in text_of(msg)
        url = link_in(msg, "confirm")
        with site.client() as c:
            page = c.get(url)
            assert page.status_code == 200 and "papers like your examples" in page.text
            assert f"{known.id}, {IDS[0]}, 2607.99999" in page.text
            assert site.sub(email).examples == ()  # a GET changes nothing
            done = c.post(url, data={"csrf": hidden(page.text, "csrf")})
        assert done.status_code == 200 and "You are subscribed" in done.text
        assert "With 2 example papers" in done.text
        assert 'id="examples-missing"' in done.text and "2607.99999" in done.text
        sub = site.sub(email)
        assert sub.status == ACTIVE and sub.keywords == ()
        assert [pid for pid, _ in sub.examples] == [known.id, IDS[0]]
        assert sub.examples[0][1] == known.title and sub.examples[1][1]
        # The store knew one paper: arXiv is asked for the other two only.
        assert [set(q) for q in arxiv.queries] == [{IDS[0], "2607.99999"}]
        # The paper from arXiv is kept in the store, as the manage page does.
        assert IDS[0] in site.store.get_papers([IDS[0]])


def test_a_returning_subscriber_keeps_its_examples_unless_the_form_names_new_ones(
    tmp_path, arxiv
) -> None:
    from browser import hidden
    from test_web import link_in

    from digest.models import ACTIVE, UNSUBSCRIBED
    from digest.rank.learn import with_examples

    email = "back@example.org"
    with make_site(tmp_path, now=NOW) as site:
        _site_with_arxiv(site, arxiv)
        sub = with_examples(site.add(email, status=UNSUBSCRIBED), [(IDS[1], "Kept")])
        site.store.put_subscribers([sub])
        for papers, want in (("", [IDS[1]]), (IDS[2], [IDS[2]])):
            with site.client() as c:
                assert site.subscribe(c, email, "agents", papers=papers).status_code == 200
            site.drain()
            url = link_in(site.inbox.wait_for(email)[-1], "confirm")
            with site.client() as c:
                page = c.get(url)
                assert c.post(url, data={"csrf": hidden(page.text, "csrf")}).status_code == 200
            back = site.sub(email)
            assert back.status == ACTIVE and [p for p, _ in back.examples] == want
            site.store.put_subscribers([replace(back, status=UNSUBSCRIBED)])
