"""I/O edge (benchmark): how much digest learns from its readers, on shared/relevance-dev.

    python bench/learning.py            # the real `digest run` + `digest web`, 41 days
    python bench/learning.py --fast     # rank() alone, ratings applied in-process (iterating)

relevance-dev's 41 listing days are replayed in order (as bench/digest_quality.py does:
a local replay of Hugging Face's /api/daily_papers, the product's default config, a real
SMTP server). Three groups of subscribers run side by side, per dev profile:

  keywords          the profile's keywords, never rating anything (the baseline)
  keywords+ratings  the same keywords; a simulated reader rates HALF of the papers of
                    each mail (seeded), both sections: up on grade 2, down on grade 0
                    (unjudged papers count as grade 0, as everywhere in these figures),
                    nothing on grade 1, by POSTing the mail's own data-rate links to the
                    running `digest web` (the URL is the authority, RFC 8058 style)
  by example        no keywords: five grade-2 papers of days 1-5 as examples, subscribed
                    on day 6 (with `digest subscribers add --papers`), never rating

Reported on days 21-41: "For you" precision (grade >= 1) and grade-2 recall (of the
grade-2 papers listed on days 21-41, the share mailed under "For you"), per group and
pooled over the profiles. Targets (issue 11): ratings +0.08 precision with recall not
lower by more than 0.02; by example >= 0.60 precision. Only the four public profiles
are here; the owners measure on others with the same procedure.

--fast replays rank() alone (the same windows, the same exclusion of received papers,
ratings applied with learn.with_rating) for tuning digest/rank/learn.py's constants.
"""

from __future__ import annotations

import argparse
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, timedelta
from html import escape
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from _common import ROOT, HFServer, save, seed_store, table, write_config
from digest_quality import LOOKBACK, email_of, load_dev, subscribers

from digest.models import DOWN, MATCH, UP, Paper, Subscriber

SEED = 11
FIRST_SCORED = 21  # days 21..41 are scored
EXAMPLE_DAYS = 5  # examples are grade-2 papers of days 1..5
EXAMPLES = 5
JOIN_DAY = 6  # by-example subscribers join on day 6
GROUPS = ("keywords", "keywords+ratings", "by example")


def vote(grade: int | None) -> int | None:
    """The oracle reader: up on grade 2, down on grade 0 (or unjudged), nothing on 1."""
    g = 0 if grade is None else grade
    return UP if g == 2 else DOWN if g == 0 else None


def rated_half(pids: Sequence[str], rnd: random.Random) -> list[str]:
    """The half of a mail's papers the reader rates (seeded; odd counts round up)."""
    pids = list(pids)
    return sorted(rnd.sample(pids, (len(pids) + 1) // 2), key=pids.index) if pids else []


def example_ids(
    profile: str, qrels: dict[str, int], listed: dict[str, date], days: Sequence[date]
) -> list[str]:
    """Five grade-2 papers of days 1-5 (seeded); relevance-dev has only 0-3 of them per
    profile there, so the earliest grade-2 papers of the next days make up the five (days
    6-20: never a scored day). The by-example figures say how many came from days 1-5."""
    early = set(days[:EXAMPLE_DAYS])
    before = set(days[: FIRST_SCORED - 1])
    pool = sorted(pid for pid, g in qrels.items() if g == 2 and listed.get(pid) in early)
    rnd = random.Random(f"{SEED}-{profile}")
    picked = rnd.sample(pool, min(EXAMPLES, len(pool)))
    later = sorted(
        (listed[pid], pid)
        for pid, g in qrels.items()
        if g == 2 and listed.get(pid) in before and pid not in pool
    )
    picked += [pid for _, pid in later[: EXAMPLES - len(picked)]]
    return sorted(picked)


def group_email(group: str, profile: str) -> str:
    tag = {"keywords": "", "keywords+ratings": "rated.", "by example": "example."}[group]
    return tag + email_of(profile)


# ----------------------------------------------------------------------------- --fast


def replay_fast(
    corpus: Sequence[dict[str, Any]],
    profiles: Sequence[dict[str, Any]],
    qrels: dict[str, dict[str, int]],
    days: Sequence[date],
    vector_cache: Path | None = None,
) -> dict[str, dict[str, dict[date, list[str]]]]:
    """group -> profile -> day -> "For you" papers mailed, with rank() in-process."""
    from digest.config import Config
    from digest.rank import rank
    from digest.rank.cli import paper_from_json
    from digest.rank.learn import with_examples, with_rating

    cfg = Config()
    papers = [paper_from_json(p, "corpus") for p in corpus]
    by_id: dict[str, Paper] = {p.id: p for p in papers}
    listed: dict[str, date] = {p.id: p.listed_on for p in papers if p.listed_on}
    base = {p["id"]: s for p, s in zip(profiles, subscribers(profiles), strict=True)}
    subs: dict[str, Subscriber] = {}
    who: dict[str, tuple[str, str]] = {}
    for prof in profiles:
        pid = prof["id"]
        for group in GROUPS[:2]:
            subs[group_email(group, pid)] = replace(base[pid], email=group_email(group, pid))
        who.update({group_email(g, pid): (g, pid) for g in GROUPS})
    out: dict[str, dict[str, dict[date, list[str]]]] = {
        g: {p["id"]: defaultdict(list) for p in profiles} for g in GROUPS
    }
    got: dict[str, dict[str, date]] = defaultdict(dict)
    rnd = random.Random(SEED)
    for n, day in enumerate(days, 1):
        if n == JOIN_DAY:
            for prof in profiles:
                e = group_email("by example", prof["id"])
                ids = example_ids(prof["id"], qrels.get(prof["id"], {}), listed, days)
                s = Subscriber(e, created="2026-04-30T00:00:00+00:00")
                subs[e] = with_examples(s, [(i, by_id[i].title) for i in ids])
        lo = day - timedelta(days=LOOKBACK - 1)
        window = [p for p in papers if p.listed_on is not None and lo <= p.listed_on <= day]
        since = lo - timedelta(days=1)
        exclude = {e: {p for p, d in v.items() if d >= since} for e, v in got.items()}
        ordered = sorted(subs.values(), key=lambda s: s.email)
        picks = rank(
            window,
            ordered,
            exclude=exclude,
            popularity_weight=cfg.ranking.popularity_weight,
            min_score=cfg.ranking.min_score,
            trending=cfg.digest.trending,
            known=by_id,
            vector_cache=vector_cache,
        )
        stamp = int(time.mktime(day.timetuple()))
        for s in ordered:
            group, prof_id = who[s.email]
            mailed = [pk.paper_id for pk in picks[s.email]]
            for pk in picks[s.email]:
                got[s.email][pk.paper_id] = day
                if pk.section == MATCH:
                    out[group][prof_id][day].append(pk.paper_id)
            if group == "keywords+ratings":
                sub = subs[s.email]
                for pid in rated_half(mailed, rnd):
                    v = vote(qrels.get(prof_id, {}).get(pid))
                    if v is not None:
                        sub = with_rating(sub, pid, v, stamp, by_id[pid].title)
                subs[s.email] = sub
        print(f"\r  day {n}/{len(days)} {day}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return out


# ----------------------------------------------------------------------------- live


class _Mail(HTMLParser):
    """A digest's cards: (paper id, section) in order, and each card's rating links."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: list[tuple[str, str]] = []
        self.links: dict[str, dict[str, str]] = defaultdict(dict)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("data-paper-id"):
            self.cards.append((a["data-paper-id"] or "", a.get("data-section") or ""))
        elif tag == "a" and a.get("data-rate") and self.cards and a.get("href"):
            self.links[self.cards[-1][0]][a["data-rate"] or ""] = a["href"] or ""


class ArxivStub:
    """A local arXiv export API (`?id_list=`) answering from relevance-dev's corpus, so
    `digest subscribers add --papers` resolves papers the store has not seen yet."""

    def __init__(self, corpus: Sequence[dict[str, Any]]) -> None:
        by_id = {p["id"]: p for p in corpus}
        self.requests = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                stub.requests += 1
                q = parse_qs(urlsplit(self.path).query)
                ids = [i for i in ",".join(q.get("id_list", [""])).split(",") if i]
                entries = "".join(_atom_entry(by_id[i]) for i in ids if i in by_id)
                body = (
                    '<?xml version="1.0" encoding="UTF-8"?>'
                    '<feed xmlns="http://www.w3.org/2005/Atom"><title>arXiv Query</title>'
                    f"{entries}</feed>"
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/atom+xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/api/query"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _atom_entry(p: dict[str, Any]) -> str:
    return (
        f"<entry><id>http://arxiv.org/abs/{escape(p['id'])}v1</id>"
        f"<published>{p['daily_date'][:10]}T00:00:00Z</published>"
        f"<title>{escape(p['title'])}</title><summary>{escape(p['abstract'])}</summary>"
        "<author><name>A. Author</name></author></entry>"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def replay_live(
    corpus: Sequence[dict[str, Any]],
    profiles: Sequence[dict[str, Any]],
    qrels: dict[str, dict[str, int]],
    days: Sequence[date],
) -> dict[str, dict[str, dict[date, list[str]]]]:
    """The real thing: `digest run --date D` per day into a real SMTP server, `digest web`
    running, the simulated readers POSTing the mails' own rating links to it."""
    import httpx
    from digest_quality import hf_days
    from smtpserver import SmtpServer

    from digest.config import load_config

    listed = {p["id"]: date.fromisoformat(p["daily_date"][:10]) for p in corpus}
    out: dict[str, dict[str, dict[date, list[str]]]] = {
        g: {p["id"]: defaultdict(list) for p in profiles} for g in GROUPS
    }
    who = {group_email(g, p["id"]): (g, p["id"]) for g in GROUPS for p in profiles}
    base = {p["id"]: s for p, s in zip(profiles, subscribers(profiles), strict=True)}
    rnd = random.Random(SEED)
    posts = 0
    with (
        tempfile.TemporaryDirectory(prefix="digest-learning-") as tmp,
        HFServer(hf_days(corpus)) as hf,
        SmtpServer() as smtp,
    ):
        arxiv = ArxivStub(corpus)
        port = _free_port()
        path = write_config(Path(tmp), hf_url=hf.base_url, smtp_port=smtp.port, fsync=False)
        text = path.read_text().replace(
            'base_url = "https://digest.bench.example.org"', f'base_url = "http://127.0.0.1:{port}"'
        )
        text += f'[sources.arxiv]\napi_base_url = "{arxiv.url}"\n'
        path.write_text(text)
        cfg = load_config(path)
        seed_store(
            cfg,
            [
                replace(base[p["id"]], email=group_email(g, p["id"]))
                for p in profiles
                for g in GROUPS[:2]
            ],
        )
        digest = [sys.executable, "-m", "digest", "--config", str(path)]
        web = subprocess.Popen(
            [*digest, "web", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            with httpx.Client(timeout=30.0) as client:
                _wait_healthy(client, f"http://127.0.0.1:{port}/healthz", web)
                for n, day in enumerate(days, 1):
                    if n == JOIN_DAY:
                        for prof in profiles:
                            ids = example_ids(prof["id"], qrels.get(prof["id"], {}), listed, days)
                            email = group_email("by example", prof["id"])
                            add = [*digest, "subscribers", "add", email, "--papers", ",".join(ids)]
                            _check(subprocess.run(add, cwd=ROOT, capture_output=True, text=True))
                    before = len(smtp.messages)
                    run = [*digest, "run", "--date", day.isoformat(), "--no-progress"]
                    _check(subprocess.run(run, cwd=ROOT, capture_output=True, text=True))
                    mails = sorted(smtp.messages[before:], key=lambda m: m.rcpt_tos[0])
                    for received in mails:
                        group, prof_id = who[received.rcpt_tos[0]]
                        mail = _Mail()
                        mail.feed(received.message.get_body(("html",)).get_content())
                        for pid, section in mail.cards:
                            if section == MATCH:
                                out[group][prof_id][day].append(pid)
                        if group != "keywords+ratings":
                            continue
                        for pid in rated_half([c[0] for c in mail.cards], rnd):
                            v = vote(qrels.get(prof_id, {}).get(pid))
                            if v is None:
                                continue
                            url = mail.links[pid]["up" if v == UP else "down"]
                            r = client.post(url)
                            if r.status_code // 100 != 2:
                                raise SystemExit(f"POST {url}: {r.status_code}")
                            posts += 1
                    print(f"\r  day {n}/{len(days)} {day}", end="", file=sys.stderr, flush=True)
        finally:
            web.terminate()
            web.wait(timeout=30)
            arxiv.close()
        print(
            f"\n  {posts} ratings POSTed; {arxiv.requests} arXiv id_list requests", file=sys.stderr
        )
    return out


def _wait_healthy(client: Any, url: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise SystemExit(f"digest web exited: {err.strip()[-500:]}")
        try:
            if client.get(url).status_code == 200:
                return
        except Exception:  # noqa: BLE001 - not listening yet
            pass
        time.sleep(0.1)  # start-up poll of a real server, not a synchronisation of results
    raise SystemExit("digest web did not start")


def _check(done: subprocess.CompletedProcess[str]) -> None:
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(done.args[3:6])} failed: {done.stderr.strip()[-500:]}")


# ----------------------------------------------------------------------------- scoring


def score(
    mailed: dict[str, dict[date, list[str]]],
    qrels: dict[str, dict[str, int]],
    listed: dict[str, date],
    scored: set[date],
) -> dict[str, dict[str, float]]:
    per: dict[str, dict[str, float]] = {}
    for prof, by_day in mailed.items():
        q = qrels.get(prof, {})
        ids = [pid for d, v in by_day.items() if d in scored for pid in v]
        every = {pid for v in by_day.values() for pid in v}
        grade2 = {pid for pid, g in q.items() if g == 2 and listed.get(pid) in scored}
        per[prof] = {
            "mailed": len(ids),
            "relevant": sum(1 for pid in ids if q.get(pid, 0) >= 1),
            "grade2": len(grade2),
            "grade2_mailed": len(grade2 & every),
        }
    for v in per.values():
        v["precision"] = v["relevant"] / v["mailed"] if v["mailed"] else 0.0
        v["grade2_recall"] = v["grade2_mailed"] / v["grade2"] if v["grade2"] else 0.0
    tot = {k: sum(v[k] for v in per.values()) for k in ("mailed", "relevant", "grade2")}
    g2 = sum(v["grade2_mailed"] for v in per.values())
    per["pooled"] = {
        **tot,
        "grade2_mailed": g2,
        "precision": tot["relevant"] / tot["mailed"] if tot["mailed"] else 0.0,
        "grade2_recall": g2 / tot["grade2"] if tot["grade2"] else 0.0,
    }
    return per


def report(
    out: dict[str, dict[str, dict[date, list[str]]]],
    corpus: Sequence[dict[str, Any]],
    qrels: dict[str, dict[str, int]],
    days: Sequence[date],
) -> dict[str, dict[str, dict[str, float]]]:
    listed = {p["id"]: date.fromisoformat(p["daily_date"][:10]) for p in corpus}
    scored = set(days[FIRST_SCORED - 1 :])
    return {g: score(out[g], qrels, listed, scored) for g in GROUPS}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="rank() alone, no mail (iterating)")
    args = ap.parse_args(argv)
    corpus, profiles, qrels = load_dev()
    days = sorted({date.fromisoformat(p["daily_date"][:10]) for p in corpus})
    how = "rank() only (--fast)" if args.fast else "digest run + digest web"
    print(
        f"replaying {len(days)} listing days through {how}; days {FIRST_SCORED}-{len(days)} scored"
    )
    t0 = time.perf_counter()
    if args.fast:
        out = replay_fast(corpus, profiles, qrels, days)
    else:
        out = replay_live(corpus, profiles, qrels, days)
    secs = time.perf_counter() - t0
    res = report(out, corpus, qrels, days)
    rows = []
    for prof in [p["id"] for p in profiles] + ["pooled"]:
        row: list[Any] = [prof]
        for g in GROUPS:
            v = res[g][prof]
            row += [round(v["precision"], 3), round(v["grade2_recall"], 3), int(v["mailed"])]
        rows.append(row)
    heads = ["profile"]
    for g in GROUPS:
        heads += [f"{g} P", "g2 rec.", "n"]
    table(heads, rows)
    kw, rt, ex = (res[g]["pooled"] for g in GROUPS)
    lift = rt["precision"] - kw["precision"]
    drop = kw["grade2_recall"] - rt["grade2_recall"]
    print(
        f"ratings: precision {lift:+.3f} (target >= +0.08), grade-2 recall {-drop:+.3f} "
        f"(target >= -0.02); by example: precision {ex['precision']:.3f} (target >= 0.60)"
    )
    print(f"({how}: {secs:.1f} s)")
    save(
        "learning",
        {
            "mode": how,
            "days": len(days),
            "scored_days": [FIRST_SCORED, len(days)],
            "seconds": round(secs, 1),
            "groups": res,
            "precision_lift": round(lift, 4),
            "recall_change": round(-drop, 4),
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
