"""Benchmark: render + build_message (+ links) per digest, one core; then SMTP delivery.

    python bench/render_mail.py [--subscribers 5000] [--picks 10] [--smtp 2000]

Stages timed separately (all digests through one stage, then the next), and then the
pipeline's shape (one digest at a time through all three, nothing kept), on the
recorded HF papers of 2026-03-10 and January 2026:
  links    digest.tokens.links (3 signed tokens per subscriber)
  render   Renderer.render (cards cached per paper; per subscriber only header, matched
           lines, footer, subject)
  message  build_message (QP bodies, headers) -> bytes
Then, with --smtp N, N messages go through SmtpSender to an aiosmtpd server running in
its own process (tests/smtpserver.py SmtpServerProcess), to see the wire rate.
Results go to bench/results/render_mail.json.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from datetime import UTC, date, datetime

from _common import HF_DIR, ROOT, SECRET, load_day, save, table

sys.path.insert(0, str(ROOT / "tests"))

from smtpserver import SmtpServerProcess  # noqa: E402

from digest.config import SmtpConfig  # noqa: E402
from digest.mail.message import build_message  # noqa: E402
from digest.mail.smtp import SmtpSender  # noqa: E402
from digest.models import Digest, Paper, Pick, Subscriber  # noqa: E402
from digest.render import Renderer  # noqa: E402
from digest.sources.hf import parse_daily_papers  # noqa: E402
from digest.tokens import links  # noqa: E402

DAY = date(2026, 3, 10)
NOW = datetime(2026, 3, 10, 7, 0, tzinfo=UTC)
TERMS = (
    "continual pretraining",
    "low-resource",
    "reinforcement learning",
    "diffusion",
    "large language model",
    "agents",
    "benchmark",
    "video generation",
    "3D",
)


def papers() -> list[Paper]:
    seen: dict[str, Paper] = {}
    for path in [HF_DIR / "2026-03-10.json", *sorted((HF_DIR / "2026-01").glob("*.json"))]:
        for p in parse_daily_papers(load_day(path))[0]:
            seen.setdefault(p.id, p)
    return list(seen.values())


def digests(pool: list[Paper], n: int, picks: int) -> list[Digest]:
    rnd = random.Random(7)
    day_pool = pool[:60]  # one day's new papers: a few dozen, shared by all subscribers
    out = []
    for i in range(n):
        kws = tuple(rnd.sample(TERMS, 3))
        chosen = rnd.sample(day_pool, picks)
        out.append(
            Digest(
                Subscriber(f"reader{i}@example.org", kws, id=f"bench-id-{i:016d}"),  # as stored
                DAY,
                tuple(Pick(p.id, 1.0, tuple(rnd.sample(kws, rnd.randint(0, 2)))) for p in chosen),
            )
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subscribers", type=int, default=5000)
    ap.add_argument("--picks", type=int, default=10)
    ap.add_argument("--smtp", type=int, default=2000, help="messages to send (0: skip)")
    args = ap.parse_args()

    pool = papers()
    by_id = {p.id: p for p in pool}
    ds = digests(pool, args.subscribers, args.picks)
    sender = "Paper Digest <digest@example.org>"

    t0 = time.perf_counter()
    renderer = Renderer()
    t_init = time.perf_counter() - t0

    # Wall and CPU time per stage: on a shared machine the CPU time is the honest
    # one-core figure (wall time includes waiting for the other processes).
    def timed(fn):  # type: ignore[no-untyped-def]
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        return out, time.perf_counter() - w, time.process_time() - c

    lks, w_links, c_links = timed(
        lambda: [links("https://digest.example.org", SECRET, d.subscriber.id) for d in ds]
    )
    rendered, w_render, c_render = timed(
        lambda: [renderer.render(d, by_id, lk) for d, lk in zip(ds, lks, strict=True)]
    )
    msgs, w_msg, c_msg = timed(
        lambda: [
            build_message(
                r,
                to=d.subscriber.email,
                sender=sender,
                digest_id=d.id,
                unsubscribe_url=lk.unsubscribe_url,
                now=NOW,
            )
            for r, d, lk in zip(rendered, ds, lks, strict=True)
        ]
    )

    # The pipeline's shape: one digest at a time (links, render, build), nothing kept.
    def interleaved() -> int:
        total = 0
        for d in ds:
            lk = links("https://digest.example.org", SECRET, d.subscriber.id)
            r = renderer.render(d, by_id, lk)
            total += len(
                build_message(
                    r,
                    to=d.subscriber.email,
                    sender=sender,
                    digest_id=d.id,
                    unsubscribe_url=lk.unsubscribe_url,
                    now=NOW,
                ).data
            )
        return total

    _, w_all, c_all = timed(interleaved)

    n = len(ds)
    sizes = sorted(len(m.data) for m in msgs)
    html_sizes = sorted(len(r.html.encode()) for r in rendered)
    stages = [
        ("links (3 tokens)", w_links, c_links),
        ("render", w_render, c_render),
        ("build_message", w_msg, c_msg),
        ("render + build_message", w_render + w_msg, c_render + c_msg),
        ("links + render + build_message", w_links + w_render + w_msg, c_links + c_render + c_msg),
        ("same, one digest at a time (pipeline)", w_all, c_all),
    ]
    print(
        f"{n} digests of {args.picks} picks from {len(pool)} papers; one core; "
        f"renderer init (templates + CSS inlining) {t_init:.3f}s"
    )
    table(
        ("stage", "wall s", "digests/s wall", "cpu s", "digests/s cpu"),
        [(a, round(w, 3), round(n / w), round(c, 3), round(n / c)) for a, w, c in stages],
    )
    print(
        f"message bytes: median {sizes[n // 2]}, max {sizes[-1]}; "
        f"html bytes max {html_sizes[-1]}; load average {os.getloadavg()[0]:.1f}"
    )

    smtp: dict[str, object] = {}
    if args.smtp:
        batch = msgs[: args.smtp]
        with SmtpServerProcess() as srv:
            cfg = SmtpConfig(host=srv.host, port=srv.port, security="none", sender=sender)
            t0 = time.perf_counter()
            with SmtpSender(cfg) as s:
                for m in batch:
                    s.send(m)
            t_smtp = time.perf_counter() - t0
            got = srv.wait_for(len(batch))
        smtp = {
            "smtp_messages": len(batch),
            "smtp_received": got,
            "smtp_seconds": round(t_smtp, 3),
            "smtp_messages_per_s": round(len(batch) / t_smtp),
        }
        print(
            f"SMTP: {len(batch)} messages in {t_smtp:.2f}s = {len(batch) / t_smtp:.0f}/s "
            f"over one connection (server in its own process; received {got})"
        )

    save(
        "render_mail",
        {
            "digests": n,
            "picks": args.picks,
            "papers": len(pool),
            "renderer_init_seconds": round(t_init, 3),
            "load_average": round(os.getloadavg()[0], 1),
            "stages": {
                a: {
                    "wall_s": round(w, 3),
                    "per_s_wall": round(n / w),
                    "cpu_s": round(c, 3),
                    "per_s_cpu": round(n / c),
                }
                for a, w, c in stages
            },
            "message_bytes_median": sizes[n // 2],
            "message_bytes_max": sizes[-1],
            "html_bytes_max": html_sizes[-1],
            **smtp,
        },
    )


if __name__ == "__main__":
    main()
