"""I/O edge: benchmark, subscribe throughput of a real `digest web` before and after
durability (the subscription and its mail stored before the answer, sent by the worker).

    python bench/web_subscribe.py [--quick] [--requests 200] [--baseline REV]

Both run in this one run, one after the other, on the same disk (fsync on, the default),
each as a `digest web` subprocess mailing a counting SMTP sink (bench/smtpsink.py) in
its own process: "before" is git revision REV (default 64dac48, the last one that
answered first and stored and mailed in a background thread; its `digest` package and
templates are taken with `git archive`), "after" is this checkout. A client posts
`--requests` subscribes one after the other (GET the form, POST it), and the figures are:
answered per second, the median and p95 answer time, and the time until the sink has
every confirmation mail. Ratios are within one run; the machine is shared, so absolute
figures are noisy.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _common import ROOT, SECRET, SmtpSink, baseline_tree, save, table

FIELD = re.compile(r'name="(csrf|t)" value="([^"]*)"')


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(tree: Path, folder: Path, n: int, smtp_port: int, sink: SmtpSink) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = folder / "digest.toml"
    config.write_text(
        f'[store]\npath = "{folder / "data"}"\n[web]\nport = {port}\nbase_url = "{url}"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nsecurity = "none"\n'
        'sender = "Bench <bench@example.org>"\n',
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "DIGEST_TEMPLATES": str(tree / "templates"),
        "DIGEST_SECRET": SECRET,
        "DIGEST_WEB_RATE_IP": "100000/3600",
        "DIGEST_WEB_RATE_EMAIL": "100000/3600",
        "DIGEST_WEB_MIN_FILL": "0",
        "DIGEST_WEB_FORWARDED_ALLOW_IPS": "",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "digest", "--config", str(config), "web"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("digest web did not start")
            time.sleep(0.1)
        sink.reset()
        times: list[float] = []
        t0 = time.perf_counter()
        with httpx.Client(base_url=url, timeout=60) as c:
            for i in range(n):
                t = time.perf_counter()
                fields = dict(FIELD.findall(c.get("/").text))
                r = c.post(
                    "/",
                    data={**fields, "email": f"b{i}@example.org", "keywords": "agents"}
                    | {"action": "subscribe"},
                )
                if r.status_code != 200:
                    raise SystemExit(f"subscribe {i}: HTTP {r.status_code}")
                times.append(time.perf_counter() - t)
        answered = time.perf_counter() - t0
        while sink.stats()["messages"] < n:
            if time.perf_counter() - t0 > 600:
                raise SystemExit("the confirmation mails did not all arrive")
            time.sleep(0.05)
        mailed = time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    times.sort()
    return {
        "per_second": n / answered,
        "median_ms": statistics.median(times) * 1000,
        "p95_ms": times[int(0.95 * (len(times) - 1))] * 1000,
        "all_mailed_s": mailed,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--baseline", default="64dac48")
    args = ap.parse_args(argv)
    n = 40 if args.quick else args.requests
    out: dict[str, Any] = {"requests": n, "baseline": args.baseline}
    with tempfile.TemporaryDirectory() as tmp, SmtpSink() as sink:
        base = baseline_tree(args.baseline, Path(tmp) / "before", ("digest", "templates"))
        runs = [("after", ROOT)] + ([("before", base)] if base is not None else [])
        for name, tree in runs:
            folder = Path(tmp) / f"run-{name}"
            folder.mkdir()
            out[name] = measure(tree, folder, n, sink.port, sink)
    rows = [
        (
            name,
            round(r["per_second"], 1),
            round(r["median_ms"], 1),
            round(r["p95_ms"], 1),
            round(r["all_mailed_s"], 2),
        )
        for name in ("before", "after")
        if (r := out.get(name))
    ]
    table(["", "answered/s", "median ms", "p95 ms", "all mailed s"], rows)
    if "before" in out:
        ratio = out["after"]["per_second"] / out["before"]["per_second"]
        out["after_vs_before_throughput"] = ratio
        print(f"after/before answered per second: {ratio:.2f}")
    save("web_subscribe", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
