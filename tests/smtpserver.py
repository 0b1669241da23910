"""A real SMTP server for tests (aiosmtpd on 127.0.0.1, a free port), with knobs.

    from smtpserver import SmtpServer

    with SmtpServer() as srv:                       # plain SMTP, no TLS
        cfg = SmtpConfig(host=srv.host, port=srv.port, security="none")
        ...send...
        srv.messages            # [Received(mail_from, rcpt_tos, data, peer_conn), ...]
        srv.messages[0].message # parsed back: email.message.EmailMessage (policy=default)

Per-recipient replies (RCPT TO stage, RFC 5321 reply lines):
    srv.reply_for["bad@x.org"] = "550 5.1.1 no such user"
    srv.reply_for["slow@x.org"] = "451 4.3.0 try later"
    srv.data_reply_for["spam@x.org"] = "554 5.7.1 content rejected"   # after DATA
Dropping connections:
    srv.drop_after = 3   # after 3 accepted messages on one connection, close it (like
                         # servers with a per-connection message limit)
    srv.drop_next = 2    # the next 2 DATA commands get no reply: the connection is cut
                         # and the message is NOT accepted
Holding one message (the server's other connections go on meanwhile):
    srv.hold_for["slow@x.org"] = threading.Event()   # its DATA is answered once set
Refusing connections (a relay's per-client connection limit):
    srv.refuse_after = 2   # connections after the first 2 are greeted "421" and closed
Extensions: PIPELINING (RFC 2920) and SMTPUTF8 (RFC 6531) are offered, as real relays do;
    SmtpServer(pipelining=False, smtputf8=False)    # a server without them
    srv.pipelined   # RCPT commands whose DATA had already arrived: the client pipelined
TLS (a throwaway self-signed certificate made with the `openssl` command):
    SmtpServer(tls="starttls")  # offers STARTTLS;   SmtpServer(tls="ssl"): implicit TLS
    srv.client_context()        # an ssl.SSLContext for the client that trusts it
    SmtpServer(tls="starttls", auth=("user", "pw"))   # AUTH LOGIN/PLAIN, TLS required
Counters: srv.connections (TCP connections), srv.received (accepted messages).

For benchmarks, run it in another process so it does not share the client's GIL:
    with SmtpServerProcess(reply_for={...}) as srv:
        ...; srv.received()  # count of accepted messages; srv.wait_for(n, timeout=10)
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

HOST = "127.0.0.1"


class _QuietLegacyWarning(logging.Filter):
    # aiosmtpd itself sets its deprecated Session.login_data on every AUTH and logs it.
    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_QuietLegacyWarning())


@dataclass
class Received:
    """One message the server accepted (for one or more recipients)."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes  # the DATA bytes as sent, dot-unstuffed, CRLF line ends kept
    connection: int  # which TCP connection (1-based) carried it
    mail_options: list[str] = field(default_factory=list)  # e.g. ["SMTPUTF8"]

    @property
    def message(self) -> EmailMessage:
        msg = BytesParser(policy=policy.default).parsebytes(self.data)
        assert isinstance(msg, EmailMessage)
        return msg


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


_CERT_LOCK = threading.Lock()
_CERT: tuple[str, str] | None = None


def self_signed_cert() -> tuple[str, str]:
    """(certfile, keyfile) of a throwaway certificate for localhost / 127.0.0.1, made
    once per process with the openssl command (no extra Python package needed)."""
    global _CERT
    with _CERT_LOCK:
        if _CERT is None:
            openssl = shutil.which("openssl")
            if openssl is None:
                raise RuntimeError("the openssl command is needed for TLS tests")
            folder = Path(tempfile.mkdtemp(prefix="digest-test-cert-"))
            cert, key = folder / "cert.pem", folder / "key.pem"
            subprocess.run(
                [
                    openssl,
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-keyout",
                    str(key),
                    "-out",
                    str(cert),
                    "-days",
                    "2",
                    "-subj",
                    "/CN=localhost",
                    "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1",
                ],
                check=True,
                capture_output=True,
                timeout=60,
            )
            _CERT = (str(cert), str(key))
        return _CERT


class _Handler:
    def __init__(self, srv: SmtpServer):
        self.srv = srv

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802
        session.host_name = hostname  # (what aiosmtpd does itself when there is no hook)
        if self.srv.pipelining:
            responses.insert(-1, "250-PIPELINING")  # before the last line, "250 HELP"
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        buffered = bytes(getattr(getattr(server, "_reader", None), "_buffer", b""))
        if buffered.startswith(b"DATA\r\n"):  # sent with RCPT, before its reply
            with self.srv._lock:
                self.srv.pipelined += 1
        reply = self.srv.reply_for.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        srv = self.srv
        for rcpt in envelope.rcpt_tos:
            gate = srv.hold_for.get(rcpt.lower())
            if gate is not None:  # wait in a thread: the server's other connections go on
                await asyncio.get_running_loop().run_in_executor(None, gate.wait, 120)
        with srv._lock:
            if srv.drop_next > 0:
                srv.drop_next -= 1
                server.transport.abort()  # cut without a reply: not accepted
                return "421 4.4.2 connection dropped"  # never reaches the client
            for rcpt in envelope.rcpt_tos:
                reply = srv.data_reply_for.get(rcpt.lower())
                if reply:
                    return reply
            conn = getattr(session, "digest_conn", 0)
            srv.messages.append(
                Received(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    bytes(envelope.original_content or b""),
                    conn,
                    list(envelope.mail_options),
                )
            )
            if srv.on_message is not None:
                srv.on_message()
            count = getattr(session, "digest_count", 0) + 1
            session.digest_count = count
            if srv.drop_after is not None and count >= srv.drop_after:
                # Close after the 250 reply has been written (transport.close flushes).
                server.loop.call_soon(server.transport.close)
        return "250 2.0.0 OK queued"


class _Controller(Controller):
    def __init__(self, srv: SmtpServer, **kwargs: Any):
        self.srv = srv
        super().__init__(_Handler(srv), **kwargs)

    def factory(self) -> SMTP:  # called once per TCP connection
        smtpd = super().factory()
        with self.srv._lock:
            self.srv.connections += 1
            conn = self.srv.connections
        limit = self.srv.refuse_after
        if limit is not None and conn > limit:

            async def refuse() -> None:  # instead of the 220 greeting
                await smtpd.push("421 4.7.0 too many connections from your address")
                smtpd.transport.close()

            smtpd._handle_client = refuse
            return smtpd
        original = smtpd._create_session

        def create_session():  # tag the session with its connection number
            session = original()
            session.digest_conn = conn
            return session

        smtpd._create_session = create_session
        return smtpd


class SmtpServer:
    """See the module docstring. Use as a context manager (start/stop)."""

    def __init__(
        self,
        *,
        tls: str | None = None,
        auth: tuple[str, str] | None = None,
        reply_for: dict[str, str] | None = None,
        data_reply_for: dict[str, str] | None = None,
        drop_after: int | None = None,
        pipelining: bool = True,
        smtputf8: bool = True,
    ):
        if tls not in (None, "starttls", "ssl"):
            raise ValueError("tls must be None, 'starttls' or 'ssl'")
        self.host = HOST
        self.port = 0
        self.tls = tls
        self.auth = auth
        self.reply_for: dict[str, str] = {k.lower(): v for k, v in (reply_for or {}).items()}
        self.data_reply_for: dict[str, str] = {
            k.lower(): v for k, v in (data_reply_for or {}).items()
        }
        self.drop_after = drop_after
        self.pipelining = pipelining
        self.smtputf8 = smtputf8
        self.pipelined = 0
        self.hold_for: dict[str, threading.Event] = {}
        self.refuse_after: int | None = None
        self.drop_next = 0
        self.messages: list[Received] = []
        self.connections = 0
        self.logins: list[str] = []
        self.on_message: Any = None  # optional callable, run for each accepted message
        self._lock = threading.Lock()
        self._controller: _Controller | None = None

    @property
    def received(self) -> int:
        return len(self.messages)

    def client_context(self) -> ssl.SSLContext:
        """An SSLContext for the client that trusts this server's certificate."""
        return ssl.create_default_context(cafile=self_signed_cert()[0])

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and self.auth is not None
            and auth_data.login.decode() == self.auth[0]
            and auth_data.password.decode() == self.auth[1]
        )
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False)

    def start(self) -> SmtpServer:
        kwargs: dict[str, Any] = {
            "hostname": HOST,
            "server_hostname": "localhost",
            "ready_timeout": 10.0,
            "enable_SMTPUTF8": self.smtputf8,
        }
        if self.tls:
            server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server_ctx.load_cert_chain(*self_signed_cert())
            kwargs["ssl_context" if self.tls == "ssl" else "tls_context"] = server_ctx
        if self.auth is not None:
            # aiosmtpd only knows about STARTTLS: with implicit TLS ("ssl") it would never
            # offer AUTH if TLS were required, though the connection is encrypted.
            kwargs.update(authenticator=self._authenticate, auth_require_tls=self.tls != "ssl")
        last: Exception | None = None
        for _ in range(5):  # a free port can be taken between probing and binding
            self.port = free_port()
            controller = _Controller(self, port=self.port, **kwargs)
            try:
                controller.start()
            except (OSError, RuntimeError) as e:
                last = e
                continue
            self._controller = controller
            with self._lock:
                self.connections = 0  # not the controller's own start-up probe
            return self
        raise RuntimeError(f"cannot start the test SMTP server: {last}")

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- process mode


def _serve(kwargs: dict[str, Any], port_q: Any, count: Any, stop: Any) -> None:
    srv = SmtpServer(**kwargs)

    def bump() -> None:
        with count.get_lock():
            count.value += 1

    srv.on_message = bump
    with srv:
        port_q.put(srv.port)
        stop.wait()


class SmtpServerProcess:
    """SmtpServer in a child process (spawned), for benchmarks. `kwargs` go to SmtpServer
    (tls, auth, reply_for, data_reply_for, drop_after, pipelining, smtputf8)."""

    def __init__(self, **kwargs: Any):
        self.kwargs, self.host, self.port = kwargs, HOST, 0
        ctx = multiprocessing.get_context("spawn")
        self._count = ctx.Value("i", 0)
        self._stop = ctx.Event()
        self._port_q = ctx.Queue()
        self._proc = ctx.Process(
            target=_serve, daemon=True, args=(kwargs, self._port_q, self._count, self._stop)
        )

    def received(self) -> int:
        return int(self._count.value)

    def wait_for(self, n: int, timeout: float = 10.0) -> int:
        """Wait until at least `n` messages arrived (or `timeout`); the count."""
        deadline = time.monotonic() + timeout
        while self.received() < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.received()

    def __enter__(self) -> SmtpServerProcess:
        self._proc.start()
        self.port = int(self._port_q.get(timeout=30))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout=5)
        self._port_q.close()


if __name__ == "__main__":  # manual use: python tests/smtpserver.py -> prints the port
    with SmtpServer() as s:
        print(f"SMTP test server on {s.host}:{s.port} (pid {os.getpid()}); Ctrl-C to stop")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            print(f"{s.received} messages")
