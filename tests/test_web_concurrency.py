"""Shared store safety: 200 concurrent subscribe/manage/unsubscribe requests to the web
service while `digest run` (a separate process, the real CLI) sends to 300 subscribers
through a real SMTP server. Afterwards the store loads, every request's effect is there,
and the run sent each subscriber at most one digest."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
from browser import hidden
from httpfixture import FixtureServer
from websupport import RELAXED, make_site

from digest import tokens
from digest.models import ACTIVE, PAUSED, PENDING, SENT, UNSUBSCRIBED, Subscriber
from digest.store import open_store
from digest.web.security import CSRF_COOKIE

ROOT = Path(__file__).resolve().parents[1]
DAY = date(2026, 1, 6)
N_SUBS = 300
N_NEW, N_SAVE, N_PAUSE, N_UNSUB = 80, 60, 30, 30  # 200 requests


def write_config(path: Path, site, fx: FixtureServer) -> Path:
    cfg = site.cfg
    path.write_text(
        f"""
[store]
path = "{cfg.store.path}"
fsync = false
[smtp]
host = "127.0.0.1"
port = {cfg.smtp.port}
security = "none"
sender = "Paper Digest <digest@example.org>"
[web]
base_url = "{cfg.web.base_url}"
secret_env = ""
[http]
timeout = 5.0
retries = 1
backoff = 0.0
[sources]
offline_fallback = false
[sources.huggingface]
base_url = "{fx.hf_base_url}"
lookback_days = 2
[sources.arxiv]
categories = []
""",
        encoding="utf-8",
    )
    return path


def test_concurrent_requests_during_a_send_run_lose_nothing(tmp_path):
    with (
        FixtureServer() as fx,
        make_site(tmp_path, RELAXED, now=datetime(2026, 1, 6, 9, tzinfo=UTC)) as site,
    ):
        subs = [
            Subscriber(f"s{i:03d}@example.org", ("language model", "reasoning"), max_papers=3)
            for i in range(N_SUBS)
        ]
        site.store.put_subscribers(subs)
        sids = [site.sub(s.email).id for s in subs]  # links carry the stored opaque ids
        config = write_config(tmp_path / "digest.toml", site, fx)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("DIGEST_SECRET", None)
        run = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "digest",
                "--config",
                str(config),
                "run",
                "--date",
                DAY.isoformat(),
                "--no-progress",
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while not site.inbox.server.messages and run.poll() is None:
                assert time.monotonic() < deadline, "the run sent nothing within 60 s"
                time.sleep(0.01)  # the run is sending: now hit the web service

            with site.client() as c:
                page = c.get("/")
                cookie = c.cookies[CSRF_COOKIE]
                csrf = hidden(page.text, "csrf")
            browser_like = {"Cookie": f"{CSRF_COOKIE}={cookie}"}
            secret = site.ctx.secret

            def manage_url(i: int) -> str:
                return tokens.links(site.url, secret, sids[i]).manage_url

            def new(i: int) -> httpx.Response:
                # a form token is single-use: each subscribe gets its own form
                form = httpx.get(site.url + "/", headers=browser_like, timeout=60)
                started = hidden(form.text, "t")
                return httpx.post(
                    site.url + "/",
                    headers=browser_like,
                    timeout=60,
                    data={
                        "csrf": csrf,
                        "t": started,
                        "email": f"n{i:03d}@example.org",
                        "keywords": f"topic {i}, agents",
                        "max": "4",
                        "action": "subscribe",
                    },
                )

            def save(i: int) -> httpx.Response:
                return httpx.post(
                    manage_url(i),
                    headers=browser_like,
                    timeout=60,
                    data={
                        "csrf": csrf,
                        "action": "save",
                        "keywords": f"topic {i}, planning",
                        "max": "2",
                    },
                )

            def pause(i: int) -> httpx.Response:
                return httpx.post(
                    manage_url(i),
                    headers=browser_like,
                    timeout=60,
                    data={"csrf": csrf, "action": "pause"},
                )

            def unsubscribe(i: int) -> httpx.Response:
                url = tokens.links(site.url, secret, sids[i]).unsubscribe_url
                return httpx.post(url, data={"List-Unsubscribe": "One-Click"}, timeout=60)

            jobs = (
                [(new, i) for i in range(N_NEW)]
                + [(save, i) for i in range(N_SAVE)]
                + [(pause, N_SAVE + i) for i in range(N_PAUSE)]
                + [(unsubscribe, N_SAVE + N_PAUSE + i) for i in range(N_UNSUB)]
            )
            jobs = jobs[::2] + jobs[1::2]  # interleave the kinds
            with ThreadPoolExecutor(max_workers=12) as pool:
                responses = list(pool.map(lambda j: j[0](j[1]), jobs))
            assert len(responses) == 200
            assert [r.status_code for r in responses] == [200] * 200
            out, err = run.communicate(timeout=180)
        finally:
            if run.poll() is None:
                run.kill()
                run.communicate()
        assert run.returncode == 0, err
        site.drain()

        fresh = open_store(site.cfg.store)  # what a later process sees on disk
        try:
            got = {s.email: s for s in fresh.subscribers()}
            assert len(got) == N_SUBS + N_NEW
            for i in range(N_NEW):
                s = got[f"n{i:03d}@example.org"]
                assert s.status == PENDING and s.keywords == (f"topic {i}", "agents")
            for i in range(N_SUBS):
                s = got[subs[i].email]
                if i < N_SAVE:
                    assert s.keywords == (f"topic {i}", "planning") and s.max_papers == 2
                    assert s.status == ACTIVE
                elif i < N_SAVE + N_PAUSE:
                    assert s.status == PAUSED
                elif i < N_SAVE + N_PAUSE + N_UNSUB:
                    assert s.status == UNSUBSCRIBED
                else:
                    assert s.status == ACTIVE and s.keywords == subs[i].keywords
            states = fresh.digests_for_day(DAY)
        finally:
            fresh.close()

        digests = Counter(m["To"] for m in site.inbox.messages if m["List-Unsubscribe"])
        assert digests and max(digests.values()) == 1  # nobody got a digest twice
        assert set(digests) <= {s.email for s in subs}
        assert set(digests) == {e for e, st in states.items() if st == SENT}
        confirmations = [m for m in site.inbox.messages if m["Subject"].startswith("Confirm")]
        assert sorted(m["To"] for m in confirmations) == [
            f"n{i:03d}@example.org" for i in range(N_NEW)
        ]
