"""The papers pages driven in a real headless Chromium (Debian's chromium + playwright),
without JavaScript and on a phone-sized screen: the latest day, a past day reached by its
link, a search with an exclusion, and the banner's prefilled subscribe form leading to a
confirmation mail on a real SMTP server (then confirmed in the browser).

The digests' web copies ("view in browser") are in tests/test_papers_view_browser.py.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from browser import chromium, link_in, text_of
from httpfixture import FixtureServer
from test_papers import fill
from websupport import make_site

from digest.models import ACTIVE, MATCH, PENDING, TRENDING
from digest.pipeline import run_daily
from digest.web import papers

NOW = datetime(2026, 1, 6, 9, 0, tzinfo=UTC)
PHONE = {"width": 375, "height": 740}


@pytest.fixture
def browser():
    with chromium() as b:
        yield b


def phone_page(browser, js: bool = False):
    ctx = browser.new_context(java_script_enabled=js, viewport=PHONE, is_mobile=True)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return ctx, page, errors


def shown(page) -> list[tuple[str, str | None]]:
    """(paper id, data-section) of every paper block, in the order on the page."""
    got = page.eval_on_selector_all(
        "[data-paper-id]",
        "els => els.map(e => [e.dataset.paperId, e.dataset.section || null])",
    )
    return [(pid, section) for pid, section in got]


def test_the_latest_day_of_a_real_run_then_the_day_before(tmp_path, browser):
    with FixtureServer() as fx, make_site(tmp_path, now=NOW) as site:
        run_cfg = fx.configure(site.cfg, lookback_days=1, categories=(), offline_fallback=False)
        run_daily(run_cfg, date(2026, 1, 5), progress=False)
        run_daily(run_cfg, date(2026, 1, 6), progress=False)
        today = papers.day_papers(site.ctx, date(2026, 1, 6))
        yesterday = papers.day_papers(site.ctx, date(2026, 1, 5))
        assert today and yesterday

        ctx, page, errors = phone_page(browser, js=True)  # JS on only to hear CSP errors
        page.goto(site.url + "/papers")
        assert page.title().startswith("Trending papers · 2026-01-06")
        assert [pid for pid, _ in shown(page)] == [p.id for p in papers.popular_first(today)]
        assert all(section is None for _, section in shown(page))  # no search, no sections
        # Every paper links to its Hugging Face page and to arXiv.
        first = papers.popular_first(today)[0]
        block = page.locator(f'[data-paper-id="{first.id}"]')
        assert block.locator(f'a[href="{first.hf_url}"]').count() == 1
        assert block.locator(f'a[href="{first.arxiv_url}"]').count() == 1
        # Readable on a phone: the stylesheet applies (its CSP hash matches) and nothing
        # scrolls sideways.
        assert page.evaluate("getComputedStyle(document.querySelector('.wrap')).maxWidth") == (
            "640px"
        )
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        assert not [e for e in errors if "Content Security Policy" in e], errors
        assert page.locator("script").count() == 0

        page.click("#prev-day")
        page.wait_for_url("**/papers/2026-01-05")
        assert [pid for pid, _ in shown(page)] == [p.id for p in papers.popular_first(yesterday)]
        assert page.locator("#next-day").get_attribute("href") == "/papers/2026-01-06"
        assert "Monday, 5 January 2026" in page.inner_text("h1")
        ctx.close()


def test_a_search_with_an_exclusion_without_javascript(tmp_path, browser):
    with make_site(tmp_path, now=NOW) as site:
        fill(site.store)
        ctx, page, _ = phone_page(browser)
        page.goto(site.url + "/papers/2026-01-06")
        assert page.get_attribute("#q", "maxlength") == str(papers.Q_MAX)
        page.fill("#q", '"speech recognition", -survey')
        page.click("#search-btn")
        page.wait_for_selector("#matches")
        assert "q=%22speech+recognition%22%2C+-survey" in page.url
        got = shown(page)
        assert got[0] == ("2601.00001", MATCH)  # the match, first
        assert [s for _, s in got] == [MATCH, TRENDING, TRENDING]  # then the other papers
        assert "2601.00002" not in [pid for pid, _ in got]  # the survey is excluded
        assert page.inner_text("#excluded").startswith("1 paper left out")
        match = page.locator('[data-paper-id="2601.00001"]')
        assert "matched: speech recognition" in match.inner_text()
        assert match.locator(".why mark").first.inner_text().lower() == "speech recognition"
        # The other papers come under their own heading, after the matches.
        assert page.locator("#others").inner_text() == "Other papers of the day"
        assert page.input_value("#q") == '"speech recognition", -survey'
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        # The day links keep the search.
        page.click("#prev-day")
        page.wait_for_url("**/papers/2026-01-05?q=*")
        assert page.input_value("#q") == '"speech recognition", -survey'
        ctx.close()


def test_the_banner_subscribes_with_the_search_s_keywords(tmp_path, browser):
    email = "banner@example.org"
    with make_site(tmp_path, now=NOW) as site:
        fill(site.store)
        ctx, page, _ = phone_page(browser)
        page.goto(site.url + "/papers?q=" + "world models, -survey")
        assert "Get these in your inbox once a day" in page.inner_text("#banner")
        assert page.input_value("#banner-keywords") == "world models, -survey"
        page.fill("#banner-email", email)
        page.click("#banner-btn")
        page.wait_for_selector("text=Check your inbox")
        site.drain()
        assert site.status(email) == PENDING
        assert site.store.get_subscriber(email).keywords == ("world models", "-survey")

        (mail,) = site.inbox.wait_for(email)
        assert "world models" in text_of(mail)
        page.goto(link_in(mail, "confirm"))
        page.click("#confirm-btn")
        page.wait_for_selector("text=You are subscribed")
        assert site.status(email) == ACTIVE
        ctx.close()


def test_bad_addresses_show_plain_pages_in_the_browser(tmp_path, browser):
    with make_site(tmp_path, now=NOW) as site:
        fill(site.store)
        ctx, page, _ = phone_page(browser)
        for path, status in (
            ("/papers/2026-02-30", 400),
            ("/papers/2025-01-01", 404),
            ("/papers?q=" + "x" * (papers.Q_MAX + 1), 414),
        ):
            r = page.goto(site.url + path)
            assert r.status == status, path
            assert page.locator("#papers-error").is_visible()
            assert page.locator("#latest-link").get_attribute("href") == "/papers"
        ctx.close()
