"""I/O edge: benchmark, end to end: `digest run` against a floor of plain smtplib.

    python bench/e2e.py [--quick] [--sizes 1000,10000] [--rounds 3] [--profile]
                        [--relay-delay-ms 20] [--connections 8] [--no-pipelining]
                        [--backend postgresql [--claim-batch N]]

For each N: N synthetic subscribers (real paper vocabulary, bench/_common.py) in a fresh
TinyDB store; the recorded HF day 2026-03-10 served by a local HTTP server; a counting
aiosmtpd sink in a SEPARATE process (bench/smtpsink.py), which waits --relay-delay-ms
per message (a remote relay; default 0) and offers PIPELINING unless --no-pipelining.
Then, in one run:

  floor  the same messages the bot sends, built beforehand with the product's own path
         (pipeline.gather/plan/build_all on a copy of the store) and spooled to files,
         pushed by plain smtplib over --connections SMTP connections at once (one thread
         and one spool file per connection; smtplib does not pipeline).
  bot    the REAL CLI in a subprocess: `python -m digest --config C run --date 2026-03-10`
         (interpreter start, imports, fetch, diff, rank, render, build, send, journal with
         fsync, fold), timed from spawn to exit, on a fresh copy of the seeded store, with
         `[smtp] connections` = --connections.
  floor  again, then bot again, ... (`--rounds` bot runs, each between two floor runs).

The machine is shared and its speed drifts within minutes, so each bot run is compared
with the mean of the two floor runs around it, and the reported ratio is the MEDIAN of
the per-run ratios (all of them are printed and saved). msgs/s of the bot = messages /
whole wall time of the subprocess; "send-phase" = messages / (last - first acceptance
seen by the sink). Target: bot >= 80% of the floor at 10,000 subscribers, both with no
delay over one connection (the defaults) and with `--relay-delay-ms 20 --connections 8`.
`--profile` runs the bot in-process under cProfile instead (and prints where the time
goes); the subprocess figure is the honest one. Results go to bench/results/e2e.json, or
e2e-<delay>ms-<n>conn.json for other settings.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import smtplib
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from _common import (
    E2E_DAY,
    HF_DIR,
    ROOT,
    HFServer,
    PgDatabases,
    SmtpSink,
    compile_sources,
    load_day,
    make_subscribers,
    save,
    seed_store,
    table,
    use_postgresql,
    write_config,
)

TARGET = 0.80
PG_TARGET = 0.70  # the target for the PostgreSQL store (on loopback)
PG: PgDatabases | None = None  # --backend postgresql: the server and its databases
CLAIM_BATCH: list[int] = []  # --claim-batch: [store] claim_batch of the bot (PostgreSQL)
LAST_SPAN: list[float] = []  # time.time() at the bot's spawn and exit


def spool_messages(cfg: Any, spools: list[Path]) -> tuple[int, int]:
    """Build the run's messages with the product's own path, on a COPY of the store (the
    real one is left for the bot), and append them to the `spools` in turn as (len,
    envelope-from, to, data) records. Returns (count, bytes)."""
    from digest.mail.smtp import SmtpSender
    from digest.models import RunReport
    from digest.pipeline import build_all, gather, plan, subscribers_due, utcnow
    from digest.store import open_store

    copy = Path(cfg.store.path).with_name("data-floor")
    if PG is not None:  # a copy of the seeded database; the cache folder as it is
        PG.use("floor", like="seeded")
        store = open_store(cfg.store)
    else:
        shutil.copytree(cfg.store.path, copy)
        store = open_store(replace(cfg.store, path=copy))
    count = size = 0
    try:
        report = RunReport(day=E2E_DAY)
        gathered = gather(cfg, E2E_DAY, store, report, write=True)
        todo = subscribers_due(store, E2E_DAY, report, None)
        digests = [d for d in plan(cfg, E2E_DAY, store, gathered, todo) if d.picks]
        papers = {p.id: p for p in gathered.papers}
        env_from = SmtpSender(cfg.smtp).envelope_from.encode()
        files = [p.open("wb") for p in spools]
        try:
            for _d, msg in build_all(
                cfg, cfg.secret() or store.secret(), digests, papers, utcnow()
            ):
                to = msg.to.encode()
                f = files[count % len(files)]
                f.write(struct.pack("<HHI", len(env_from), len(to), len(msg.data)))
                f.write(env_from + to + msg.data)
                count += 1
                size += len(msg.data)
        finally:
            for f in files:
                f.close()
    finally:
        store.close()
    return count, size


def _push(spool: Path, port: int, errors: list[BaseException]) -> None:
    """One connection: every message of `spool`, with smtplib.sendmail."""
    try:
        with spool.open("rb") as f:
            smtp = smtplib.SMTP("127.0.0.1", port)
            smtp.ehlo()
            while head := f.read(8):
                lf, lt, ld = struct.unpack("<HHI", head)
                env_from, to, data = f.read(lf).decode(), f.read(lt).decode(), f.read(ld)
                smtp.sendmail(env_from, [to], data)
            smtp.quit()
    except BaseException as e:  # noqa: BLE001 - reported by floor()
        errors.append(e)


def floor(spools: list[Path], port: int) -> float:
    """Plain smtplib over one connection per spool file, all at once (a thread each: the
    time goes to waiting on the server, which releases the GIL). Seconds."""
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_push, args=(p, port, errors)) for p in spools]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"floor: {type(errors[0]).__name__}: {errors[0]}")
    return seconds


def bot_subprocess(config: Path) -> tuple[float, str]:
    cmd = [
        sys.executable,
        "-m",
        "digest",
        "--config",
        str(config),
        "run",
        "--date",
        E2E_DAY.isoformat(),
        "--no-progress",
    ]
    t0, spawned = time.perf_counter(), time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    LAST_SPAN[:] = [spawned, time.time()]
    if proc.returncode != 0:
        raise SystemExit(f"digest run failed ({proc.returncode}): {proc.stderr.strip()}")
    return wall, proc.stdout


def bot_profiled(config: Path, top: int = 25) -> tuple[float, str]:
    from digest.config import load_config
    from digest.pipeline import run_daily

    cfg = load_config(config)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    report = run_daily(cfg, E2E_DAY, progress=False)
    prof.disable()
    wall = time.perf_counter() - t0
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(top)
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    print(out.getvalue())
    return wall, "\n".join(report.lines())


def measure_floor(sink: SmtpSink, spools: list[Path], count: int) -> float:
    sink.reset()
    seconds = floor(spools, sink.port)
    got = sink.stats()
    assert got["messages"] == count, f"floor: sink got {got['messages']} of {count}"
    assert got["connections"] == len(spools), f"floor: {got['connections']} connections"
    return seconds


def one_size(
    n: int, profile: bool, rounds: int, connections: int, delay_ms: float, pipelining: bool
) -> dict[str, Any]:
    day_items = load_day(HF_DIR / f"{E2E_DAY.isoformat()}.json")
    with (
        tempfile.TemporaryDirectory(prefix="digest-bench-e2e-") as tmp,
        HFServer({E2E_DAY.isoformat(): day_items}) as hf,
        SmtpSink(delay_ms=delay_ms, pipelining=pipelining) as sink,
    ):
        folder = Path(tmp)
        config = write_config(
            folder, hf_url=hf.base_url, smtp_port=sink.port, connections=connections
        )
        from digest.config import load_config

        if PG is not None:
            use_postgresql(config, CLAIM_BATCH[0] if CLAIM_BATCH else None)
            PG.use("seeded")
        cfg = load_config(config)
        t0 = time.perf_counter()
        seed_store(cfg, make_subscribers(n))
        spools = [folder / f"spool-{i}.bin" for i in range(connections)]
        count, size = spool_messages(cfg, spools)
        prep = time.perf_counter() - t0
        print(
            f"  N={n:,}: {count:,} messages to send ({size / count / 1024:.1f} KiB mean), "
            f"prepared in {prep:.1f}s",
            flush=True,
        )

        # floor, bot, floor, bot, ..., floor: each bot run is compared with the mean of
        # the floors just before and after it (the machine's speed drifts within minutes);
        # every bot run starts from the same freshly seeded store.
        pristine = folder / "data-pristine"
        if PG is None:
            shutil.copytree(cfg.store.path, pristine)
        floors = [measure_floor(sink, spools, count)]
        bots: list[tuple[float, dict[str, Any], str]] = []
        for i in range(rounds):
            if PG is not None:  # a fresh copy of the seeded database
                PG.use(f"bot_{n}_{i}", like="seeded")
            else:
                shutil.rmtree(cfg.store.path)
                shutil.copytree(pristine, cfg.store.path)
            sink.reset()
            wall, out = (bot_profiled if profile else bot_subprocess)(config)
            bot = sink.stats()
            if bot["messages"] != count:
                raise SystemExit(f"bot: sink got {bot['messages']} of {count} messages\n{out}")
            bot["startup"] = bot["first"] - LAST_SPAN[0] if LAST_SPAN else None
            bot["teardown"] = LAST_SPAN[1] - bot["last"] if LAST_SPAN else None
            bots.append((wall, bot, out))
            floors.append(measure_floor(sink, spools, count))
    ratios, phase_ratios = [], []
    for i, (wall, bot, _) in enumerate(bots):
        floor_s = (floors[i] + floors[i + 1]) / 2
        send_phase = (bot["last"] - bot["first"]) if bot["first"] else wall
        ratios.append(floor_s / wall)
        phase_ratios.append(floor_s / max(send_phase, 1e-9))
    walls = [b[0] for b in bots]
    floor_mean = sum(floors) / len(floors)
    res = {
        "subscribers": n,
        "messages": count,
        "mean_message_bytes": size // count,
        "smtp_connections": connections,
        "relay_delay_ms": delay_ms,
        "server_offers_pipelining": pipelining,
        "bot_connections_opened": [b[1]["connections"] for b in bots],
        "rounds": rounds,
        "bot_mode": "in-process cProfile" if profile else "subprocess: python -m digest run",
        "floor_seconds": [round(f, 3) for f in floors],
        "bot_wall_seconds": [round(w, 3) for w in walls],
        "ratios": [round(r, 4) for r in ratios],
        "send_phase_ratios": [round(r, 4) for r in phase_ratios],
        "bot_startup_seconds": [b[1]["startup"] and round(b[1]["startup"], 3) for b in bots],
        "bot_teardown_seconds": [b[1]["teardown"] and round(b[1]["teardown"], 3) for b in bots],
        "floor_msgs_per_s": count / floor_mean,
        "bot_msgs_per_s": count / statistics.median(walls),
        "ratio": statistics.median(ratios),
        "send_phase_ratio": statistics.median(phase_ratios),
        "bot_report": bots[-1][2].strip().splitlines(),
    }
    res["bot_send_phase_msgs_per_s"] = res["send_phase_ratio"] * res["floor_msgs_per_s"]
    res["store_backend"] = "postgresql" if PG is not None else "tinydb"
    res["meets_target"] = res["ratio"] >= (PG_TARGET if PG is not None else TARGET)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1,000 subscribers only")
    ap.add_argument("--sizes", default=None, help="comma-separated subscriber counts")
    ap.add_argument("--profile", action="store_true", help="bot in-process under cProfile")
    ap.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="bot runs per size, each between two floor runs (default 3; --quick 1)",
    )
    ap.add_argument(
        "--relay-delay-ms", type=float, default=0.0, help="the sink waits this per message"
    )
    ap.add_argument("--connections", type=int, default=1, help="SMTP connections of floor and bot")
    ap.add_argument(
        "--no-pipelining", action="store_true", help="the sink does not offer PIPELINING"
    )
    ap.add_argument(
        "--backend",
        choices=("tinydb", "postgresql"),
        default="tinydb",
        help="the store of the bot and the floor's preparation (postgresql: a real server "
        "started like the tests do; every bot run on a fresh copy of the seeded database)",
    )
    ap.add_argument(
        "--claim-batch", type=int, default=0, help="PostgreSQL: the bot's [store] claim_batch"
    )
    args = ap.parse_args(argv)
    if args.claim_batch:
        CLAIM_BATCH.append(args.claim_batch)
    global PG
    if args.backend == "postgresql":
        PG = PgDatabases()
    if args.connections < 1:
        ap.error("--connections: at least 1")
    compile_sources()  # as installed: the bot's process compiles nothing at its start
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else ([1000] if args.quick else [1000, 10000])
    )
    pipelining = not args.no_pipelining
    print(
        f"e2e: digest run vs plain smtplib floor; sizes {sizes}; relay delay "
        f"{args.relay_delay_ms:g} ms; {args.connections} connection(s); server "
        f"{'offers' if pipelining else 'does not offer'} PIPELINING",
        flush=True,
    )
    rounds = args.rounds or (1 if args.quick or args.profile else 3)
    results = [
        one_size(n, args.profile, rounds, args.connections, args.relay_delay_ms, pipelining)
        for n in sizes
    ]
    table(
        [
            "subscribers",
            "messages",
            "floor msg/s",
            "bot msg/s",
            "ratio (median)",
            "ratio per run",
            "send-phase ratio",
            f"target {PG_TARGET if PG is not None else TARGET:.0%}",
        ],
        [
            (
                r["subscribers"],
                r["messages"],
                r["floor_msgs_per_s"],
                r["bot_msgs_per_s"],
                f"{r['ratio']:.0%}",
                " ".join(f"{x:.0%}" for x in r["ratios"]),
                f"{r['send_phase_ratio']:.0%}",
                "met" if r["meets_target"] else "MISSED",
            )
            for r in results
        ],
    )
    name = "e2e"
    if args.relay_delay_ms or args.connections != 1:
        name += f"-{args.relay_delay_ms:g}ms-{args.connections}conn"
    if not pipelining:
        name += "-nopipelining"
    if PG is not None:
        name += "-postgresql" + (f"-batch{args.claim_batch}" if args.claim_batch else "")
    save(
        name,
        {
            "target": f"bot >= {PG_TARGET if PG is not None else TARGET:.0%} of the smtplib "
            "floor at 10,000 subscribers",
            "relay_delay_ms": args.relay_delay_ms,
            "connections": args.connections,
            "server_offers_pipelining": pipelining,
            "results": results,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
