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

`--engine lean` (the default) answers the same dialogue with a bare asyncio Protocol that
finds the end of DATA with one bytes.find per TCP read, instead of aiosmtpd's Python
readline per line of the message: 0.27-0.31 ms of CPU for a 13 KiB message against
1.1-1.4 ms (2,000 messages over one smtplib connection, 2026-12-03). A real relay runs on
another machine; on a 2-core bench box the sink's CPU is taken from the client being
measured (aiosmtpd's is a fifth of what `digest run` spends a message), so the lean sink
measures more of the client and less of the stand-in. `--engine aiosmtpd` is the reference
(the tests' server); both count the same messages and bytes (tests/test_bench_sink.py).

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

    def accepted(self, size: int) -> None:
        """One message of `size` bytes accepted, now."""
        now = time.time()
        with self.lock:
            self.messages += 1
            self.bytes += size
            if self.first is None:
                self.first = now
            self.last = now

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
        self.c.accepted(len(envelope.content or b""))
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


class LeanSMTP(asyncio.Protocol):
    """One connection of the lean engine: replies in order (a reply waits for the ones
    before it, as a pipelining server's must), each 250 after DATA `delay` seconds later."""

    END = b"\r\n.\r\n"

    def __init__(self, counter: Counter, delay: float, pipelining: bool) -> None:
        self.c, self.delay, self.pipelining = counter, delay, pipelining
        self.buf = bytearray()
        self.in_data = False
        self.scanned = 0  # how much of the DATA in buf was searched for the end marker
        self.replies: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        self.writer: asyncio.Task[None] | None = None  # held: the loop keeps only a weak ref

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport  # type: ignore[assignment]
        with self.c.lock:
            self.c.connections += 1
        self.writer = asyncio.get_running_loop().create_task(self._write())
        self.reply(b"220 bench-sink ESMTP\r\n")

    def connection_lost(self, exc: Exception | None) -> None:
        self.replies.put_nowait(None)

    def reply(self, line: bytes, delay: float = 0.0) -> None:
        self.replies.put_nowait((delay, line))

    async def _write(self) -> None:
        while (item := await self.replies.get()) is not None:
            delay, line = item
            if delay:
                await asyncio.sleep(delay)
            if self.t.is_closing():
                return
            self.t.write(line)  # type: ignore[attr-defined]
            if line.startswith(b"221"):
                self.t.close()
                return

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.buf:
            if self.in_data:
                # the end marker may straddle reads: search from a few bytes back
                at = self.buf.find(self.END, max(0, self.scanned - 4))
                if at < 0:
                    self.scanned = len(self.buf)
                    return
                # the content, without the CRLF put in front at DATA and the dots that
                # dot-stuffing added (a line starting with "." came with one more)
                self.c.accepted(at - self.buf.count(b"\r\n.", 0, at))
                del self.buf[: at + len(self.END)]
                self.in_data = False
                self.reply(b"250 2.0.0 OK\r\n", self.delay)
                continue
            nl = self.buf.find(b"\r\n")
            if nl < 0:
                return
            line = bytes(self.buf[:nl])
            del self.buf[: nl + 2]
            self._command(line)

    def _command(self, line: bytes) -> None:
        verb = line[:4].upper()
        if verb == b"EHLO":
            ext = b"250-PIPELINING\r\n" if self.pipelining else b""
            rest = b"250-8BITMIME\r\n250-SMTPUTF8\r\n250 HELP\r\n"
            self.reply(b"250-bench-sink\r\n" + ext + rest)
        elif verb == b"HELO":
            self.reply(b"250 bench-sink\r\n")
        elif verb == b"DATA":
            self.in_data, self.scanned = True, 0
            # The command's CRLF, put back: the end marker is then always CRLF.CRLF, an
            # empty message's too (".\r\n" right after DATA).
            self.buf[:0] = b"\r\n"
            self.reply(b"354 End data with <CR><LF>.<CR><LF>\r\n")
        elif verb == b"QUIT":
            self.reply(b"221 Bye\r\n")
        elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
            self.reply(b"250 OK\r\n")
        else:
            self.reply(b"502 Command not implemented\r\n")


def _serve_lean(counter: Counter, delay: float, pipelining: bool) -> int:
    """Start the lean engine on a free port in a thread; its port."""
    ready: list[int] = []
    up = threading.Event()

    def run() -> None:
        loop = asyncio.new_event_loop()
        server = loop.run_until_complete(
            loop.create_server(lambda: LeanSMTP(counter, delay, pipelining), HOST, 0)
        )
        ready.append(int(server.sockets[0].getsockname()[1]))
        up.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    if not up.wait(10.0):
        raise RuntimeError("the lean SMTP sink did not start")
    return ready[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--delay-ms", type=float, default=0.0, help="wait per message (a relay)")
    ap.add_argument("--no-pipelining", action="store_true", help="do not offer PIPELINING")
    ap.add_argument("--engine", choices=("lean", "aiosmtpd"), default="lean")
    args = ap.parse_args(argv)
    counter = Counter()
    if args.engine == "lean":
        port = _serve_lean(counter, args.delay_ms / 1000.0, not args.no_pipelining)
        print(f"PORT {port}", flush=True)
        return _control(counter)
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
        return _control(counter)
    finally:
        controller.stop()


def _control(counter: Counter) -> int:
    """The control protocol on stdin/stdout (module docstring), until EOF."""
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "stats":
            print(json.dumps(counter.snapshot()), flush=True)
        elif cmd == "reset":
            counter.reset()
            print("ok", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
