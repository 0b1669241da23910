"""I/O edge: a counting SMTP sink for the benchmarks, meant to run in its OWN process.

    python bench/smtpsink.py [--delay-ms 20] [--no-pipelining]
                                        # prints "PORT <n>" on stdout, then serves

aiosmtpd on 127.0.0.1 with a handler that only counts: messages, bytes, connections,
and the time of the first and last accepted message. Nothing is kept in memory, so
100,000 messages cost the same as ten. It runs in a separate process so that it never
shares a GIL with the client being measured (the client and the server each get a core).

`--delay-ms D` makes it a stand-in for a remote relay: each message's 250 is answered D
ms after its data arrived (an asyncio sleep, so connections wait side by side, as a
provider's relay that spends 20-100 ms per message does). It offers PIPELINING (RFC 2920)
in its EHLO reply as real relays do (Postfix, Exim, the big providers); aiosmtpd reads
commands one line at a time from a buffered stream, so pipelined commands just work.
`--no-pipelining` leaves it out, to measure a client against a server without it.

Control protocol on stdin/stdout, one line each:
    "stats"  -> one JSON line {"messages", "bytes", "connections", "first", "last"}
                (first/last are time.time() stamps; both null before any message)
    "reset"  -> zero the counters, answers "ok"
    EOF      -> stop
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.messages = 0
            self.bytes = 0
            self.connections = 0
            self.first: float | None = None
            self.last: float | None = None

    def snapshot(self) -> dict[str, object]:
        with self.lock:
            return {
                "messages": self.messages,
                "bytes": self.bytes,
                "connections": self.connections,
                "first": self.first,
                "last": self.last,
            }


class CountingHandler:
    def __init__(self, counter: Counter, delay: float = 0.0, pipelining: bool = True) -> None:
        self.c = counter
        self.delay = delay
        self.pipelining = pipelining

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802
        session.host_name = hostname  # (what aiosmtpd does itself when there is no hook)
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")  # before the last line, "250 HELP"
        return responses

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        if self.delay:
            await asyncio.sleep(self.delay)
        now = time.time()
        c = self.c
        size = len(envelope.content or b"")
        with c.lock:
            c.messages += 1
            c.bytes += size
            if c.first is None:
                c.first = now
            c.last = now
        return "250 2.0.0 OK"


class CountingController(Controller):
    def __init__(self, counter: Counter, handler: CountingHandler, **kwargs: object) -> None:
        self.counter = counter
        super().__init__(handler, **kwargs)  # type: ignore[arg-type]

    def factory(self) -> SMTP:  # once per TCP connection
        with self.counter.lock:
            self.counter.connections += 1
        # Large digests: allow up to 1 MB of DATA (aiosmtpd's default is 32 MB anyway).
        return SMTP(self.handler, hostname="bench-sink", data_size_limit=1 << 20)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--delay-ms", type=float, default=0.0, help="wait per message (a relay)")
    ap.add_argument("--no-pipelining", action="store_true", help="do not offer PIPELINING")
    args = ap.parse_args(argv)
    counter = Counter()
    handler = CountingHandler(counter, args.delay_ms / 1000.0, not args.no_pipelining)
    controller = None
    for _ in range(5):  # a free port can be taken between probing and binding
        port = free_port()
        controller = CountingController(
            counter, handler, hostname=HOST, port=port, ready_timeout=10.0
        )
        try:
            controller.start()
            break
        except (OSError, RuntimeError):
            controller = None
    if controller is None:
        print("ERROR cannot start the SMTP sink", flush=True)
        return 1
    counter.reset()  # the controller's own start-up probe is not a client connection
    print(f"PORT {port}", flush=True)
    try:
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "stats":
                print(json.dumps(counter.snapshot()), flush=True)
            elif cmd == "reset":
                counter.reset()
                print("ok", flush=True)
    finally:
        controller.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
