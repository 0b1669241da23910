"""digest.mail.smtp against a real SMTP server (aiosmtpd, tests/smtpserver.py)."""

from __future__ import annotations

import socket
import threading
from datetime import UTC, date, datetime

import pytest
from smtpserver import SmtpServer, SmtpServerProcess, free_port

from digest.config import SmtpConfig
from digest.errors import (
    ConfigError,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from digest.mail.message import build_message
from digest.mail.smtp import SmtpSender
from digest.models import Digest, OutgoingMessage, Paper, Pick, Subscriber, digest_id
from digest.render import Renderer
from digest.tokens import links

DAY = date(2026, 1, 14)
NOW = datetime(2026, 1, 14, 7, 0, tzinfo=UTC)
SENDER = "Paper Digest <digest@papers.example.org>"
PAPER = Paper(
    id="2601.00001",
    title="Continual Pretraining — für alle",
    abstract="An abstract. " * 30,
    authors=("Ada Lovelace",),
    upvotes=3,
)
_RENDERER: Renderer | None = None


def message(to: str) -> OutgoingMessage:
    global _RENDERER
    if _RENDERER is None:
        _RENDERER = Renderer()
    d = Digest(
        Subscriber(to, ("continual pretraining",)),
        DAY,
        (Pick(PAPER.id, 1.0, ("continual pretraining",)),),
    )
    lk = links("https://digest.example.org", "s3cret", to)
    r = _RENDERER.render(d, {PAPER.id: PAPER}, lk)
    return build_message(
        r,
        to=to,
        sender=SENDER,
        digest_id=digest_id(to, DAY),
        unsubscribe_url=lk.unsubscribe_url,
        now=NOW,
    )


def cfg(srv: SmtpServer, **kw: object) -> SmtpConfig:
    base: dict[str, object] = dict(
        host=srv.host, port=srv.port, security="none", sender=SENDER, timeout=5.0
    )
    base.update(kw)
    return SmtpConfig(**base)  # type: ignore[arg-type]


@pytest.fixture
def srv():
    with SmtpServer() as s:
        yield s


def test_delivers_over_one_connection(srv: SmtpServer) -> None:
    msgs = [message(f"user{i}@example.org") for i in range(3)]
    with SmtpSender(cfg(srv)) as sender:
        for m in msgs:
            sender.send(m)
    assert srv.connections == 1
    assert [r.rcpt_tos for r in srv.messages] == [[m.to] for m in msgs]
    assert all(r.mail_from == "digest@papers.example.org" for r in srv.messages)
    # The exact bytes arrive (SMTP dot-stuffing is undone by the server) and parse back.
    assert [r.data for r in srv.messages] == [m.data for m in msgs]
    got = srv.messages[0].message
    assert got["Message-ID"] == msgs[0].message_id
    assert got["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html = got.get_body(("html",))
    assert html is not None and "Continual Pretraining — für alle" in html.get_content()


def test_4xx_and_5xx_per_recipient(srv: SmtpServer) -> None:
    srv.reply_for["gone@example.org"] = "550 5.1.1 no such user"
    srv.reply_for["busy@example.org"] = "451 4.3.0 try later"
    srv.data_reply_for["spam@example.org"] = "554 5.7.1 content rejected"
    srv.data_reply_for["full@example.org"] = "452 4.2.2 mailbox full"
    with SmtpSender(cfg(srv)) as sender:
        sender.send(message("a@example.org"))
        with pytest.raises(PermanentDeliveryError, match="550 5.1.1 no such user") as e1:
            sender.send(message("gone@example.org"))
        with pytest.raises(TransientDeliveryError, match="451 4.3.0 try later"):
            sender.send(message("busy@example.org"))
        with pytest.raises(PermanentDeliveryError, match="554"):
            sender.send(message("spam@example.org"))
        with pytest.raises(TransientDeliveryError, match="452"):
            sender.send(message("full@example.org"))
        sender.send(message("b@example.org"))  # the session goes on after refusals
    assert "\n" not in str(e1.value) and "gone@example.org" in str(e1.value)
    assert [r.rcpt_tos[0] for r in srv.messages] == ["a@example.org", "b@example.org"]
    assert srv.connections == 1


def test_reconnects_when_server_drops_connection(srv: SmtpServer) -> None:
    srv.drop_after = 2  # a per-connection message limit
    msgs = [message(f"user{i}@example.org") for i in range(5)]
    with SmtpSender(cfg(srv)) as sender:
        for m in msgs:
            sender.send(m)
        assert sender.sent == 5 and sender.reconnects == 2
    assert [r.rcpt_tos[0] for r in srv.messages] == [m.to for m in msgs]
    assert srv.connections == 3
    assert [r.connection for r in srv.messages] == [1, 1, 2, 2, 3]


def test_dropped_mid_message_is_retried_once(srv: SmtpServer) -> None:
    with SmtpSender(cfg(srv)) as sender:
        sender.send(message("a@example.org"))
        srv.drop_next = 1  # the next DATA is cut without a reply
        sender.send(message("b@example.org"))
    assert [r.rcpt_tos[0] for r in srv.messages] == ["a@example.org", "b@example.org"]
    assert srv.connections == 2


def test_dropped_twice_is_transient_and_sender_recovers(srv: SmtpServer) -> None:
    with SmtpSender(cfg(srv)) as sender:
        srv.drop_next = 2
        with pytest.raises(TransientDeliveryError, match="connection lost twice") as info:
            sender.send(message("a@example.org"))
        assert "\n" not in str(info.value)
        sender.send(message("b@example.org"))  # the next message reconnects
    assert [r.rcpt_tos[0] for r in srv.messages] == ["b@example.org"]


def test_server_gone_mid_run_is_transient() -> None:
    srv = SmtpServer().start()
    try:
        sender = SmtpSender(cfg(srv))
        with sender:
            sender.send(message("a@example.org"))
            srv.stop()
            with pytest.raises(TransientDeliveryError, match="refused|lost"):
                sender.send(message("b@example.org"))
    finally:
        srv.stop()


def test_unreachable_server_on_enter() -> None:
    port = free_port()  # nothing listens there
    sender = SmtpSender(
        SmtpConfig(host="127.0.0.1", port=port, security="none", sender=SENDER, timeout=5.0)
    )
    with pytest.raises(DeliveryError) as info:
        sender.__enter__()
    assert str(info.value) == f"SMTP 127.0.0.1:{port}: connection refused"


def test_server_that_never_answers_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        sender = SmtpSender(
            SmtpConfig(host="127.0.0.1", port=port, security="none", sender=SENDER, timeout=0.5)
        )
        with pytest.raises(DeliveryError, match="timed out") as info:
            sender.__enter__()
        assert "\n" not in str(info.value)


def test_starttls_not_offered_never_falls_back(srv: SmtpServer) -> None:
    with pytest.raises(DeliveryError, match="does not offer STARTTLS; refusing"):
        with SmtpSender(cfg(srv, security="starttls")) as sender:
            sender.send(message("a@example.org"))
    assert srv.messages == []


def test_starttls_with_login_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SMTP_USER", "digest")
    monkeypatch.setenv("TEST_SMTP_PASS", "pa55word")
    with SmtpServer(tls="starttls", auth=("digest", "pa55word")) as srv:
        c = cfg(
            srv,
            host="localhost",
            security="starttls",
            username_env="TEST_SMTP_USER",
            password_env="TEST_SMTP_PASS",
        )
        with SmtpSender(c, ssl_context=srv.client_context()) as sender:
            sender.send(message("a@example.org"))
        assert srv.logins == ["digest"] and srv.received == 1


def test_wrong_password_is_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SMTP_USER", "digest")
    monkeypatch.setenv("TEST_SMTP_PASS", "wrong")
    with SmtpServer(tls="starttls", auth=("digest", "pa55word")) as srv:
        c = cfg(
            srv,
            host="localhost",
            security="starttls",
            username_env="TEST_SMTP_USER",
            password_env="TEST_SMTP_PASS",
        )
        with pytest.raises(DeliveryError, match="login refused: 535") as info:
            SmtpSender(c, ssl_context=srv.client_context()).__enter__()
        assert "\n" not in str(info.value) and "wrong" not in str(info.value)


def test_implicit_tls() -> None:
    with SmtpServer(tls="ssl") as srv:
        with SmtpSender(
            cfg(srv, host="localhost", security="ssl"), ssl_context=srv.client_context()
        ) as sender:
            sender.send(message("a@example.org"))
            sender.send(message("b@example.org"))
        assert srv.received == 2 and srv.connections == 1


def test_untrusted_certificate_is_refused_not_bypassed() -> None:
    with SmtpServer(tls="starttls") as srv:
        # The default context (system trust store) does not know the test CA.
        with pytest.raises(DeliveryError, match="TLS failed") as info:
            SmtpSender(cfg(srv, host="localhost", security="starttls")).__enter__()
        assert "\n" not in str(info.value)
        assert srv.messages == []


def test_credentials_checked_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_USER", raising=False)
    monkeypatch.setenv("NOPE_PASS", "x")
    base = SmtpConfig(host="mail.example.org", sender=SENDER)
    with pytest.raises(ConfigError, match="NOPE_USER is not set"):
        SmtpSender(
            SmtpConfig(
                **{**base.__dict__, "username_env": "NOPE_USER", "password_env": "NOPE_PASS"}
            )
        )
    with pytest.raises(ConfigError, match="both or neither"):
        SmtpSender(SmtpConfig(**{**base.__dict__, "password_env": "NOPE_PASS"}))
    monkeypatch.setenv("NOPE_USER", "u")
    with pytest.raises(ConfigError, match="unencrypted"):
        SmtpSender(
            SmtpConfig(
                **{
                    **base.__dict__,
                    "security": "none",
                    "username_env": "NOPE_USER",
                    "password_env": "NOPE_PASS",
                }
            )
        )
    with pytest.raises(ConfigError, match="host"):
        SmtpSender(SmtpConfig(host=""))


def test_concurrent_senders_each_deliver(srv: SmtpServer) -> None:
    # Two senders (e.g. two scheduler slots) do not share a connection.
    def run(prefix: str) -> None:
        with SmtpSender(cfg(srv)) as sender:
            for i in range(5):
                sender.send(message(f"{prefix}{i}@example.org"))

    threads = [threading.Thread(target=run, args=(p,)) for p in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert srv.received == 10 and srv.connections == 2


def test_server_in_its_own_process() -> None:
    # The benchmark mode of the helper: a spawned process, queried for its count.
    with SmtpServerProcess(reply_for={"gone@example.org": "550 5.1.1 no such user"}) as srv:
        c = SmtpConfig(host=srv.host, port=srv.port, security="none", sender=SENDER)
        with SmtpSender(c) as sender:
            for i in range(3):
                sender.send(message(f"user{i}@example.org"))
            with pytest.raises(PermanentDeliveryError):
                sender.send(message("gone@example.org"))
        assert srv.wait_for(3) == 3


# ---------------------------------------------------------------- international addresses


def test_idn_domain_travels_as_its_a_label_in_envelope_and_header() -> None:
    # anna@bücher.de was accepted by the web form and never mailed (UnicodeEncodeError in
    # smtplib). The A-label needs nothing of the server: not even SMTPUTF8.
    with SmtpServer(smtputf8=False, pipelining=False) as srv:
        with SmtpSender(cfg(srv)) as sender:
            sender.send(message("anna@bücher.de"))
        (got,) = srv.messages
    assert got.rcpt_tos == ["anna@xn--bcher-kva.de"]
    assert got.message["To"] == "anna@xn--bcher-kva.de"
    assert "SMTPUTF8" not in got.mail_options


def test_the_web_service_mails_an_idn_address_too() -> None:
    from digest.web.mails import build_notice

    notice = build_notice(
        kind="confirm",
        to="anna@bücher.de",
        sender=SENDER,
        subject="Confirm your subscription",
        text="Click the link.",
        html="<p>Click the link.</p>",
        now=NOW,
    )
    with SmtpServer(smtputf8=False) as srv:
        with SmtpSender(cfg(srv)) as sender:  # what the web's mail worker does
            sender.send(notice)
        (got,) = srv.messages
    assert got.rcpt_tos == ["anna@xn--bcher-kva.de"]
    assert got.message["To"] == "anna@xn--bcher-kva.de"


def test_non_ascii_local_part_uses_smtputf8_where_the_server_offers_it() -> None:
    with SmtpServer(smtputf8=True, pipelining=False) as srv:
        with SmtpSender(cfg(srv)) as sender:
            sender.send(message("zoë@bücher.de"))
        (got,) = srv.messages
    assert got.rcpt_tos == ["zoë@xn--bcher-kva.de"]
    assert "SMTPUTF8" in got.mail_options
    assert got.message["To"] == "zoë@xn--bcher-kva.de"  # raw UTF-8 header (RFC 6532)


def test_non_ascii_local_part_without_smtputf8_fails_that_recipient_only() -> None:
    with SmtpServer(smtputf8=False, pipelining=False) as srv:
        with SmtpSender(cfg(srv)) as sender:
            with pytest.raises(PermanentDeliveryError, match="needs SMTPUTF8") as info:
                sender.send(message("zoë@example.org"))
            sender.send(message("a@example.org"))  # the session goes on
        assert [r.rcpt_tos for r in srv.messages] == [["a@example.org"]]
    assert "\n" not in str(info.value) and "zoë@example.org" in str(info.value)


def test_an_idn_sender_domain_is_encoded_and_a_non_ascii_sender_refused() -> None:
    with SmtpServer() as srv:
        with SmtpSender(cfg(srv, sender="Digest <digest@bücher.de>")) as sender:
            assert sender.envelope_from == "digest@xn--bcher-kva.de"
        with pytest.raises(ConfigError, match="must be ASCII"):
            SmtpSender(cfg(srv, sender="Digest <zoë@example.org>"))


def test_a_web_subscription_of_an_idn_address_gets_its_confirmation(tmp_path) -> None:
    """The finding end to end: the subscribe form over real HTTP, the background mail
    worker, the real SMTP server (issue 9: "accepted and never mailed")."""
    from browser import link_in
    from websupport import make_site

    with make_site(tmp_path) as site:
        with site.client() as c:
            r = site.subscribe(c, "anna@bücher.de", "reasoning")
        assert r.status_code == 200 and "Check your inbox" in r.text
        site.drain()
        (msg,) = site.inbox.wait_for("anna@xn--bcher-kva.de")
        received = site.inbox.server.messages[-1]
    assert received.rcpt_tos == ["anna@xn--bcher-kva.de"]
    assert "/confirm/" in link_in(msg, "confirm")
    assert site.ctx.mailer.failures == 0
