""" "View in browser" and the papers pages' screenshots, in a real headless Chromium.

A real run (`run_daily`, sources on the local fixture server) mails a digest to a real
SMTP server; the received mail's HTML is opened in Chromium and its "View in browser"
link clicked: the web copy shows the very papers of the mail, in its order and sections.

With DIGEST_SCREENSHOTS=1 the screenshots (the papers page on a phone and on a desktop,
a search with an exclusion, a digest's web copy) are written to docs/screenshots/
(committed, shown in the README); otherwise they go to the test's temporary folder.
"""

from __future__ import annotations

import os
import re
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from browser import chromium, html_of
from httpfixture import FixtureServer
from websupport import make_site

from digest.pipeline import run_daily

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "docs" / "screenshots"
NOW = datetime(2026, 1, 6, 9, 0, tzinfo=UTC)
DAY, BEFORE = date(2026, 1, 6), date(2026, 1, 5)


def keep_screenshot(src: Path, name: str) -> None:
    if os.environ.get("DIGEST_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, SHOTS / name)


def marked(html: str) -> list[tuple[str, str]]:
    """(paper id, section) of each paper block, in order."""
    out = []
    for tag in re.findall(r"<div[^>]*data-paper-id[^>]*>", html):
        pid = re.search(r'data-paper-id="([^"]+)"', tag).group(1)
        sec = re.search(r'data-section="([^"]+)"', tag)
        out.append((pid, sec.group(1) if sec else ""))
    return out


@pytest.fixture
def browser():
    with chromium() as b:
        yield b


def test_view_in_browser_from_a_received_mail(tmp_path, browser):
    email = "reader@example.org"
    with FixtureServer() as fx, make_site(tmp_path, now=NOW) as site:
        cfg = fx.configure(site.cfg, lookback_days=2, categories=(), offline_fallback=False)
        site.add(email, keywords=("language model", "reasoning"), max_papers=4)
        assert run_daily(cfg, DAY, progress=False).sent == 1
        (msg,) = site.inbox.wait_for(email)
        mail_html = html_of(msg)
        mailed = marked(mail_html)
        assert mailed, "the digest has papers"
        mail_file = tmp_path / "digest.html"
        mail_file.write_text(mail_html, encoding="utf-8")

        page = browser.new_page(viewport={"width": 800, "height": 1000})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(mail_file.as_uri())  # the mail as a mail client shows it
        page.click("text=View in browser")
        page.wait_for_url(re.compile(r".*/view/.*"))
        assert page.url.startswith(site.url + "/view/") and email not in page.url
        shown = page.evaluate(
            "Array.from(document.querySelectorAll('[data-paper-id]'))"
            ".map(e => [e.dataset.paperId, e.dataset.section])"
        )
        assert [tuple(x) for x in shown] == mailed  # what was mailed, in its order
        assert "View in browser" not in page.content()
        assert email not in page.inner_text("body")
        # The mail's inline styles apply under the copy's CSP (nothing was blocked).
        assert not [e for e in errors if "Content Security Policy" in e], errors
        max_width = page.eval_on_selector(".wrap, div", "e => getComputedStyle(e).maxWidth")
        assert max_width == "640px"  # the mail's own layout
        shot = tmp_path / "view.png"
        page.screenshot(path=str(shot), full_page=False)
        keep_screenshot(shot, "view-in-browser.png")
        page.set_viewport_size({"width": 375, "height": 740})  # readable on a phone
        assert page.evaluate("document.documentElement.scrollWidth") <= 375


def test_papers_pages_on_a_phone_and_a_desktop(tmp_path, browser):
    """Screenshots for the README; and the pages fit a phone without sideways scrolling,
    need no JavaScript, and break no CSP rule."""
    with FixtureServer() as fx, make_site(tmp_path, now=NOW) as site:
        cfg = fx.configure(site.cfg, lookback_days=1, categories=(), offline_fallback=False)
        run_daily(cfg, BEFORE, progress=False)
        run_daily(cfg, DAY, progress=False)

        phone = browser.new_context(
            java_script_enabled=False, viewport={"width": 390, "height": 844}, is_mobile=True
        )
        page = phone.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(site.url + "/papers")
        assert page.locator("[data-paper-id]").count() > 0
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert page.is_visible("text=Get these in your inbox once a day")
        shot = tmp_path / "papers-phone.png"
        page.screenshot(path=str(shot))
        keep_screenshot(shot, "papers-phone.png")
        assert not [e for e in errors if "Content Security Policy" in e], errors
        phone.close()

        desk = browser.new_context(
            java_script_enabled=False, viewport={"width": 1000, "height": 1100}
        )
        page = desk.new_page()
        page.goto(site.url + "/papers")
        page.fill("#q", "LLM, reasoning, -segmentation")
        page.press("#q", "Enter")
        page.wait_for_selector("[data-section='match']")
        order = page.evaluate(
            "Array.from(document.querySelectorAll('[data-paper-id]')).map(e => e.dataset.section)"
        )
        assert order[0] == "match" and "trending" in order
        assert order == sorted(order, key=lambda s: s != "match")  # matches first
        assert page.input_value("#banner-keywords") == "LLM, reasoning, -segmentation"
        titles = page.evaluate(
            "Array.from(document.querySelectorAll('[data-paper-id] .title')).map(e => e.innerText)"
        )
        assert titles and not [t for t in titles if "segmentation" in t.lower()]  # excluded
        shot = tmp_path / "papers-search.png"
        page.screenshot(path=str(shot))
        keep_screenshot(shot, "papers-search.png")
        desk.close()
