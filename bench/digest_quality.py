"""I/O edge (benchmark): what the digest MAILS, scored on shared/relevance-dev.

    python bench/digest_quality.py               # the real `digest run`, 41 days (~2 min)
    python bench/digest_quality.py --in-process  # run_daily in this process (faster)
    python bench/digest_quality.py --fast        # rank() alone, no mail: for iterating

The 41 listing days of relevance-dev's corpus are served by a local replay of Hugging
Face's `/api/daily_papers?date=` (built from corpus.jsonl), and replayed one by one, in
order, as daily runs would: `digest run --date D` in a subprocess, the product's default
config (look-back 3 days, cut, trending), the four dev profiles as subscribers
(keywords plus "-exclusions"), into a real SMTP server (tests/smtpserver.py). The
sections are read back from the mails' data-paper-id / data-section markers, and scored:

  For you P     precision (grade >= 1) of the "For you" papers mailed
  g2 recall     share of the profile's grade-2 papers that were mailed under "For you"
  /day          "For you" papers per day (41 days); trending/day likewise
  BM25          rank-bm25 (title + abstract, query = the keywords) given the SAME number
                of papers per profile and day, from the same papers (the run's look-back
                window, exclusions applied, nothing it picked before)
  judged        share of the mailed papers that have a judgment: unjudged papers count
                as not relevant, so a low judged share makes P a lower bound

Overall: micro (all mailed papers pooled) and macro (mean over profiles). Only the four
public profiles are here; the owners measure on 12 others: read these as a check of the
machinery and a rough level, not a tuning target.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from _common import ROOT, SHARED, HFServer, save, seed_store, table, write_config

DEV = SHARED / "relevance-dev"
sys.path.insert(0, str(ROOT / "tests"))  # the real SMTP server of the test suite

from rank_bm25 import BM25Okapi  # noqa: E402

from digest.models import MATCH, TRENDING, Subscriber  # noqa: E402
from digest.rank.exclusions import excluded  # noqa: E402

LOOKBACK = 3  # the product's default [sources.huggingface] lookback_days


@dataclass
class Mailed:
    """What one profile received, day by day."""

    match: dict[date, list[str]] = field(default_factory=lambda: defaultdict(list))
    trending: dict[date, list[str]] = field(default_factory=lambda: defaultdict(list))


# ----------------------------------------------------------------------------- data


def load_dev() -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, dict[str, int]]]:
    corpus = [json.loads(line) for line in (DEV / "corpus.jsonl").read_text().splitlines() if line]
    profiles = json.loads((DEV / "profiles.json").read_text())
    spec = importlib.util.spec_from_file_location("relevance_evaluate", DEV / "evaluate.py")
    ev = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ev)  # type: ignore[union-attr]
    return corpus, profiles, {k: dict(v) for k, v in ev.read_qrels(str(DEV / "qrels.tsv")).items()}


def hf_days(corpus: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """listing day -> /api/daily_papers items, as Hugging Face serves them."""
    days: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in corpus:
        day = p["daily_date"][:10]
        days[day].append(
            {
                "paper": {
                    "id": p["id"],
                    "title": p["title"],
                    "summary": p["abstract"],
                    "upvotes": p.get("upvotes", 0),
                    "ai_keywords": p.get("ai_keywords") or [],
                    "submittedOnDailyAt": f"{day}T07:45:00.000Z",
                    "authors": [],
                },
                "title": p["title"],
            }
        )
    return dict(days)


def email_of(profile_id: str) -> str:
    return f"{profile_id.lower()}@dev.example.org"


def subscribers(profiles: Sequence[dict[str, Any]]) -> list[Subscriber]:
    from digest.subscribers import make_subscriber

    out = []
    for prof in profiles:
        terms = list(prof["keywords"]) + [f'-"{x}"' for x in prof.get("excludes", [])]
        out.append(
            make_subscriber(
                email_of(prof["id"]), ", ".join(terms), created="2026-04-30T00:00:00+00:00"
            )
        )
    return out


# ----------------------------------------------------------------------------- replays


class _Cards(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cards: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("data-paper-id"):
            self.cards.append((a["data-paper-id"] or "", a.get("data-section") or ""))


def read_mail(msg: Any) -> list[tuple[str, str]]:
    parser = _Cards()
    parser.feed(msg.get_body(("html",)).get_content())
    return parser.cards


def replay_mail(
    corpus: Sequence[dict[str, Any]],
    profiles: Sequence[dict[str, Any]],
    days: Sequence[date],
    in_process: bool,
) -> dict[str, Mailed]:
    """Run the product day by day into a real SMTP server; read the sections back."""
    from smtpserver import SmtpServer

    from digest.config import load_config

    back = {email_of(p["id"]): p["id"] for p in profiles}
    out = {p["id"]: Mailed() for p in profiles}
    with (
        tempfile.TemporaryDirectory(prefix="digest-quality-") as tmp,
        HFServer(hf_days(corpus)) as hf,
        SmtpServer() as smtp,
    ):
        path = write_config(
            Path(tmp), hf_url=hf.base_url, smtp_port=smtp.port, fsync=False, lookback_days=LOOKBACK
        )
        cfg = load_config(path)
        seed_store(cfg, subscribers(profiles))
        for n, day in enumerate(days, 1):
            before = len(smtp.messages)
            if in_process:
                from digest.pipeline import run_daily

                run_daily(cfg, day, progress=False)
            else:
                cmd = [sys.executable, "-m", "digest", "--config", str(path), "run"]
                done = subprocess.run(
                    [*cmd, "--date", day.isoformat(), "--no-progress"],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                )
                if done.returncode != 0:
                    raise SystemExit(f"digest run --date {day} failed: {done.stderr.strip()}")
            for received in smtp.messages[before:]:
                (to,) = received.rcpt_tos
                for pid, section in read_mail(received.message):
                    target = out[back[to]].trending if section == TRENDING else out[back[to]].match
                    target[day].append(pid)
            print(f"\r  day {n}/{len(days)} {day}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
    return out


def replay_rank(
    corpus: Sequence[dict[str, Any]], profiles: Sequence[dict[str, Any]], days: Sequence[date]
) -> dict[str, Mailed]:
    """--fast: rank() alone on the same windows, with the same exclusion of received
    papers (no HTTP, no store, no mail). For iterating on the ranker only."""
    from digest.config import Config
    from digest.rank import rank
    from digest.rank.cli import paper_from_json

    cfg = Config()
    papers = [paper_from_json(p, "corpus") for p in corpus]
    subs = subscribers(profiles)
    out = {p["id"]: Mailed() for p in profiles}
    got: dict[str, dict[str, date]] = {s.email: {} for s in subs}
    for day in days:
        lo = day - timedelta(days=LOOKBACK - 1)
        window = [p for p in papers if p.listed_on is not None and lo <= p.listed_on <= day]
        since = lo - timedelta(days=1)
        exclude = {e: {p for p, d in v.items() if d >= since} for e, v in got.items()}
        picks = rank(
            window,
            subs,
            exclude=exclude,
            popularity_weight=cfg.ranking.popularity_weight,
            min_score=cfg.ranking.min_score,
            trending=cfg.digest.trending,
        )
        for prof, s in zip(profiles, subs, strict=True):
            for pk in picks[s.email]:
                got[s.email][pk.paper_id] = day
                bucket = out[prof["id"]].match if pk.section == MATCH else out[prof["id"]].trending
                bucket[day].append(pk.paper_id)
    return out


def replay_bm25(
    corpus: Sequence[dict[str, Any]],
    profiles: Sequence[dict[str, Any]],
    days: Sequence[date],
    budget: dict[str, Mailed],
) -> dict[str, Mailed]:
    """BM25 (title + abstract) given the product's number of "For you" papers per
    profile and day, from the same window, exclusions applied, never repeating itself."""

    def tok(text: str) -> list[str]:
        return re.findall(r"[a-z0-9]+", text.lower())

    out = {p["id"]: Mailed() for p in profiles}
    for prof in profiles:
        query = tok(", ".join(prof["keywords"]))
        taken: dict[str, date] = {}
        for day in days:
            n = len(budget[prof["id"]].match.get(day, ()))
            if not n:
                continue
            lo = day - timedelta(days=LOOKBACK - 1)
            window = [p for p in corpus if lo <= date.fromisoformat(p["daily_date"][:10]) <= day]
            since = lo - timedelta(days=1)
            ok = [
                p
                for p in window
                if not excluded(prof.get("excludes", []), f"{p['title']}\n{p['abstract']}")
                and not (p["id"] in taken and taken[p["id"]] >= since)
            ]
            if not ok:
                continue
            scores = BM25Okapi([tok(f"{p['title']} {p['abstract']}") for p in ok]).get_scores(query)
            order = sorted(range(len(ok)), key=lambda i: (-scores[i], ok[i]["id"]))[:n]
            for i in order:
                taken[ok[i]["id"]] = day
                out[prof["id"]].match[day].append(ok[i]["id"])
    return out


# ----------------------------------------------------------------------------- scoring


def score(mailed: Mailed, qrels: dict[str, int], n_days: int) -> dict[str, float]:
    ids = [pid for v in mailed.match.values() for pid in v]
    hot = [pid for v in mailed.trending.values() for pid in v]
    rel = sum(1 for pid in ids if qrels.get(pid, 0) >= 1)
    judged = sum(1 for pid in ids if pid in qrels)
    grade2 = {pid for pid, g in qrels.items() if g == 2}
    return {
        "mailed": len(ids),
        "relevant": rel,
        "judged": judged,
        "grade2_mailed": len(grade2 & set(ids)),
        "grade2": len(grade2),
        "precision": rel / len(ids) if ids else 0.0,
        "judged_share": judged / len(ids) if ids else 1.0,
        "grade2_recall": len(grade2 & set(ids)) / len(grade2) if grade2 else 0.0,
        "per_day": len(ids) / n_days,
        "trending_per_day": len(hot) / n_days,
        "trending_relevant": sum(1 for pid in hot if qrels.get(pid, 0) >= 1),
    }


def overall(per: dict[str, dict[str, float]]) -> dict[str, float]:
    tot = {k: sum(v[k] for v in per.values()) for k in ("mailed", "relevant", "judged")}
    g2 = sum(v["grade2_mailed"] for v in per.values())
    g2_all = sum(v["grade2"] for v in per.values())
    n = len(per)
    return {
        "precision": tot["relevant"] / tot["mailed"] if tot["mailed"] else 0.0,
        "judged_share": tot["judged"] / tot["mailed"] if tot["mailed"] else 1.0,
        "grade2_recall": g2 / g2_all if g2_all else 0.0,
        "per_day": sum(v["per_day"] for v in per.values()) / n,
        "trending_per_day": sum(v["trending_per_day"] for v in per.values()) / n,
        "macro_precision": sum(v["precision"] for v in per.values()) / n,
        "macro_grade2_recall": sum(v["grade2_recall"] for v in per.values()) / n,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--in-process", action="store_true", help="run_daily, not a subprocess")
    mode.add_argument("--fast", action="store_true", help="rank() alone, no mail (iterating)")
    ap.add_argument("--days", type=int, default=0, help="only the first N listing days")
    args = ap.parse_args(argv)
    corpus, profiles, qrels = load_dev()
    days = sorted({date.fromisoformat(p["daily_date"][:10]) for p in corpus})
    if args.days:
        days = days[: args.days]
    how = "rank() only (--fast)" if args.fast else "run_daily" if args.in_process else "digest run"
    print(f"replaying {len(days)} listing days ({days[0]} .. {days[-1]}) through {how}")
    t0 = time.perf_counter()
    if args.fast:
        ours = replay_rank(corpus, profiles, days)
    else:
        ours = replay_mail(corpus, profiles, days, args.in_process)
    secs = time.perf_counter() - t0
    bm25 = replay_bm25(corpus, profiles, days, ours)
    per = {p["id"]: score(ours[p["id"]], qrels.get(p["id"], {}), len(days)) for p in profiles}
    per_bm = {p["id"]: score(bm25[p["id"]], qrels.get(p["id"], {}), len(days)) for p in profiles}
    rows = []
    for name in [p["id"] for p in profiles]:
        a, b = per[name], per_bm[name]
        rows.append(_row(name, a, b))
    rows.append(_row("overall", overall(per), overall(per_bm)))
    rows.append(
        (
            "macro",
            round(overall(per)["macro_precision"], 3),
            "",
            round(overall(per)["macro_grade2_recall"], 3),
            "",
            "",
            round(overall(per_bm)["macro_precision"], 3),
            "",
            round(overall(per_bm)["macro_grade2_recall"], 3),
        )
    )
    table(
        [
            "profile",
            "For you P",
            "judged",
            "g2 recall",
            "/day",
            "trending/day",
            "BM25 P",
            "judged",
            "BM25 g2 rec.",
        ],
        rows,
    )
    print(f"({how}: {secs:.1f} s; unjudged papers count as not relevant)")
    save(
        "digest_quality",
        {
            "mode": how,
            "days": len(days),
            "seconds": round(secs, 1),
            "product": {"per_profile": per, "overall": overall(per)},
            "bm25_same_budget": {"per_profile": per_bm, "overall": overall(per_bm)},
        },
    )
    return 0


def _row(name: str, a: dict[str, float], b: dict[str, float]) -> tuple[Any, ...]:
    return (
        name,
        round(a["precision"], 3),
        round(a["judged_share"], 2),
        round(a["grade2_recall"], 3),
        round(a["per_day"], 2),
        round(a["trending_per_day"], 2),
        round(b["precision"], 3),
        round(b["judged_share"], 2),
        round(b["grade2_recall"], 3),
    )


if __name__ == "__main__":
    raise SystemExit(main())
