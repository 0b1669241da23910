"""The one-tap rating page in a real headless Chromium: opening the link records nothing;
one tap records the vote (the page's script posts it), and without JavaScript the same
button records it by a plain form POST."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from browser import chromium
from websupport import make_site

from digest import tokens
from digest.models import DOWN, UP

NOW = datetime(2026, 1, 6, 9, 0, tzinfo=UTC)


@pytest.fixture
def browser():
    with chromium() as b:
        yield b


def test_one_tap_records_with_script_and_without(tmp_path, browser) -> None:
    with make_site(tmp_path, now=NOW) as site:
        site.add("tap@example.org")
        sub = site.store.get_subscriber("tap@example.org")
        assert sub is not None

        def ratings() -> list[tuple[str, int]]:
            got = site.store.get_subscriber("tap@example.org")
            assert got is not None
            return [(r[0], r[1]) for r in got.ratings]

        up = tokens.rate_url(site.url, site.ctx.secret, sub.id, "2601.00001", True)
        page = browser.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(up)
        page.wait_for_selector("#rate-btn")
        assert ratings() == []  # opening the link (what a mail scanner does) records nothing
        page.click("#rate-btn")
        page.wait_for_selector("#rate-status[data-recorded='up']")
        assert "Recorded" in page.inner_text("#rate-status")
        assert page.url == up  # the script posted in place: no navigation
        assert ratings() == [("2601.00001", UP)]
        assert not [e for e in errors if "Content Security Policy" in e], errors

        ctx = browser.new_context(java_script_enabled=False)
        nojs = ctx.new_page()
        down = tokens.rate_url(site.url, site.ctx.secret, sub.id, "2601.00002", False)
        nojs.goto(down)
        assert ratings() == [("2601.00001", UP)]
        nojs.click("#rate-btn")  # a plain form POST to the same URL
        nojs.wait_for_selector("#rate-status[data-recorded='down']")
        assert ratings() == [("2601.00001", UP), ("2601.00002", DOWN)]
        ctx.close()
