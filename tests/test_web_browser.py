"""The web pages driven in a real headless Chromium (Debian's chromium + playwright).

End to end: subscribe in the browser -> the confirmation mail arrives on a real SMTP
server -> its link is followed in the browser -> `run_daily` (sources on the local fixture
server) delivers a digest -> one-click unsubscribe by POST to its List-Unsubscribe URL ->
the next run sends nothing to that address.

Screenshots of the subscribe page and of a rendered digest are taken every run; with
DIGEST_SCREENSHOTS=1 they are written to docs/screenshots/ (committed, used by the README).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest
from browser import chromium, link_in
from httpfixture import FixtureServer
from websupport import RELAXED, make_site

from digest.models import ACTIVE, PAUSED, PENDING, UNSUBSCRIBED
from digest.pipeline import run_daily

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "docs" / "screenshots"
NOW = datetime(2026, 1, 6, 9, 0, tzinfo=UTC)
VIEWPORT = {"width": 800, "height": 1000}


def keep_screenshot(src: Path, name: str) -> None:
    if os.environ.get("DIGEST_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, SHOTS / name)


def digests_to(inbox, email: str) -> list:
    return [m for m in inbox.to(email) if m["List-Unsubscribe"]]


@pytest.fixture
def browser():
    with chromium() as b:
        yield b


def test_end_to_end_subscribe_confirm_digest_one_click_unsubscribe(tmp_path, browser):
    email = "reader@example.org"
    settings = replace(RELAXED, min_fill_seconds=0.5)  # the browser really waits for it
    with FixtureServer() as fx, make_site(tmp_path, settings, now=NOW) as site:
        run_cfg = fx.configure(site.cfg, lookback_days=2, categories=(), offline_fallback=False)
        # Yesterday's run (nobody subscribed yet) fills the store with recent papers.
        assert run_daily(run_cfg, date(2026, 1, 5), progress=False).sent == 0

        page = browser.new_page(viewport=VIEWPORT)
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(site.url + "/")
        page.fill("#email", email)
        page.type("#keywords", "language model, reasoning", delay=10)
        page.wait_for_selector("#preview-result .paper")  # the live preview (JS, fetch)
        assert "matched:" in page.inner_text("#preview")
        shot = tmp_path / "subscribe.png"
        page.screenshot(path=str(shot))
        keep_screenshot(shot, "subscribe.png")
        page.fill("#max", "5")
        page.wait_for_timeout(600)  # a human takes longer than min_fill_seconds anyway
        page.click("#subscribe-btn")
        page.wait_for_selector("text=Check your inbox")
        assert not [e for e in errors if "Content Security Policy" in e], errors

        site.drain()
        assert site.status(email) == PENDING
        # No digest before confirmation: the run only mails ACTIVE subscribers.
        assert run_daily(run_cfg, date(2026, 1, 6), progress=False).sent == 0
        assert digests_to(site.inbox, email) == []

        confirm = link_in(site.inbox.wait_for(email)[0], "confirm")
        page.goto(confirm)
        assert site.status(email) == PENDING  # opening the link alone changes nothing
        page.click("#confirm-btn")
        page.wait_for_selector("text=You are subscribed")
        assert site.status(email) == ACTIVE

        report = run_daily(run_cfg, date(2026, 1, 6), progress=False)
        assert report.sent == 1
        (digest,) = digests_to(site.inbox, email)
        html_file = tmp_path / "digest.html"
        html_file.write_text(digest.get_body(("html",)).get_content(), encoding="utf-8")
        page.goto(html_file.as_uri())
        assert page.locator("a[href*='/manage/']").count() >= 1
        shot = tmp_path / "digest.png"
        page.screenshot(path=str(shot))
        keep_screenshot(shot, "digest.png")

        # One-click unsubscribe exactly as a mail provider does it (RFC 8058).
        unsubscribe = re.search(r"<(https?://[^>]+)>", digest["List-Unsubscribe"]).group(1)
        assert digest["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        r = httpx.post(unsubscribe, data={"List-Unsubscribe": "One-Click"}, timeout=30)
        assert r.status_code == 200
        assert site.status(email) == UNSUBSCRIBED

        run_daily(run_cfg, date(2026, 1, 7), progress=False)
        assert len(digests_to(site.inbox, email)) == 1  # nothing new after unsubscribing


def test_pages_work_without_javascript_on_a_phone(tmp_path, browser):
    with make_site(tmp_path, now=NOW) as site:
        site.add("phone@example.org", keywords=("agents",))
        ctx = browser.new_context(
            java_script_enabled=False, viewport={"width": 375, "height": 740}, is_mobile=True
        )
        page = ctx.new_page()
        page.goto(site.url + "/")
        page.fill("#email", "nojs@example.org")
        page.fill("#keywords", "<b>agents</b>, robotics")
        page.click("#preview-btn")  # the no-JS preview: a full page round trip
        page.wait_for_selector("#preview-result")
        assert page.input_value("#keywords") == "<b>agents</b>, robotics"
        assert page.locator("#keywords b").count() == 0  # typed HTML stays text
        assert page.evaluate("document.documentElement.scrollWidth") <= 375  # no sideways scroll
        page.click("#subscribe-btn")
        page.wait_for_selector("text=Check your inbox")
        site.drain()
        assert site.status("nojs@example.org") == PENDING

        manage = site.links("phone@example.org").manage_url
        page.goto(manage)
        page.click("#pause-btn")
        page.wait_for_selector("#notice")
        assert page.inner_text("#status") == PAUSED
        assert site.status("phone@example.org") == PAUSED
        page.fill("#keywords", "agents, planning")
        page.click("#save-btn")
        page.wait_for_selector("text=Saved")
        assert site.store.get_subscriber("phone@example.org").keywords == ("agents", "planning")

        unsubscribe = site.links("phone@example.org").unsubscribe_url
        page.goto(unsubscribe)
        assert site.status("phone@example.org") == PAUSED  # the GET changed nothing
        page.click("#unsubscribe-btn")
        page.wait_for_selector("text=will get no more digests")
        assert site.status("phone@example.org") == UNSUBSCRIBED
        ctx.close()


def test_layout_fits_a_phone_screen(tmp_path, browser):
    with make_site(tmp_path, now=NOW) as site:
        page = browser.new_page(viewport={"width": 360, "height": 740})
        page.goto(site.url + "/")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 360  # no sideways scrolling on a small phone
        assert page.is_visible("#subscribe-btn") and page.is_visible("#preview-btn")
