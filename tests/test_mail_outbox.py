"""digest.mail.outbox and make_sender: files on disk instead of SMTP."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from digest.config import Config, OutboxConfig, SmtpConfig, StoreConfig
from digest.errors import DeliveryError, InputError
from digest.mail import make_sender
from digest.mail.message import build_message
from digest.mail.outbox import OutboxSender
from digest.mail.smtp import SmtpSender
from digest.models import OutgoingMessage
from digest.render import Rendered

NOW = datetime(2026, 1, 14, 7, 0, tzinfo=UTC)


def message(
    to: str = "a@example.org",
    html: str = "<p>Hello <b>you</b></p>",
    did: str = "2026-01-14-0123456789abcdef0123",
) -> OutgoingMessage:
    r = Rendered(subject="Paper Digest — 1 paper", text="Hello you\n", html=html)
    return build_message(
        r,
        to=to,
        sender="Digest <d@example.org>",
        digest_id=did,
        unsubscribe_url="https://d.example.org/unsubscribe/t",
        now=NOW,
    )


def test_writes_eml_and_html_preview(tmp_path: Path) -> None:
    folder = tmp_path / "out" / "box"  # created on enter
    m = message()
    with OutboxSender(OutboxConfig(path=folder)) as sender:
        sender.send(m)
    eml = folder / f"{m.digest_id}.eml"
    html = folder / f"{m.digest_id}.html"
    assert eml.read_bytes() == m.data
    assert html.read_text(encoding="utf-8") == m.html
    parsed = BytesParser(policy=policy.default).parsebytes(eml.read_bytes())
    assert parsed["To"] == "a@example.org"
    assert sorted(p.name for p in folder.iterdir()) == sorted([eml.name, html.name])


def test_rerun_overwrites_without_leftovers(tmp_path: Path) -> None:
    cfg = OutboxConfig(path=tmp_path)
    with OutboxSender(cfg, fsync=False) as sender:
        sender.send(message(html="<p>first</p>"))
    with OutboxSender(cfg, fsync=False) as sender:
        sender.send(message(html="<p>second</p>"))
        sender.send(message(to="b@example.org", did="2026-01-14-b"))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "2026-01-14-0123456789abcdef0123.eml",
        "2026-01-14-0123456789abcdef0123.html",
        "2026-01-14-b.eml",
        "2026-01-14-b.html",
    ]  # no temp files left
    assert (tmp_path / "2026-01-14-0123456789abcdef0123.html").read_text() == "<p>second</p>"


@pytest.mark.parametrize("bad", ["../escape", "a/b", ".hidden", ""])
def test_digest_id_must_be_a_plain_name(tmp_path: Path, bad: str) -> None:
    m = replace(message(), digest_id=bad)
    with OutboxSender(OutboxConfig(path=tmp_path)) as sender:
        with pytest.raises(InputError):
            sender.send(m)
    assert list(tmp_path.iterdir()) == []


def test_folder_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DeliveryError, match="cannot create folder") as info:
        OutboxSender(OutboxConfig(path=blocker / "outbox")).__enter__()
    assert "\n" not in str(info.value)


def test_make_sender_picks_outbox_or_smtp(tmp_path: Path) -> None:
    outbox = make_sender(
        Config(
            outbox=OutboxConfig(path=tmp_path),
            store=StoreConfig(path=tmp_path / "data", fsync=False),
        )
    )
    assert isinstance(outbox, OutboxSender) and outbox.name == "outbox"
    assert outbox.folder == tmp_path and outbox.fsync is False
    smtp = make_sender(Config(smtp=SmtpConfig(host="mail.example.org")))
    assert isinstance(smtp, SmtpSender) and smtp.name == "smtp"
    assert smtp.envelope_from == "digest@localhost"


def test_a_run_into_the_outbox_ignores_smtp_connections(tmp_path: Path) -> None:
    """[smtp] connections applies to SMTP only: the outbox folder is written by one
    connection of the pool, every digest once, each recorded."""
    from datetime import date

    from httpfixture import FixtureServer

    from digest.models import SENT, Subscriber
    from digest.pipeline import run_daily
    from digest.store import open_store

    with FixtureServer() as srv:
        cfg = srv.configure(Config(), categories=(), retries=0, offline_fallback=False)
        cfg = replace(
            cfg,
            store=StoreConfig(path=tmp_path / "data", fsync=False),
            outbox=OutboxConfig(path=tmp_path / "outbox"),
            smtp=SmtpConfig(host="", connections=8, max_rate=1000.0),
        )
        store = open_store(cfg.store)
        emails = [f"reader{i:02d}@example.org" for i in range(12)]
        store.put_subscribers([Subscriber(email=e, created="x") for e in emails])
        store.close()
        report = run_daily(cfg, date(2026, 1, 14), progress=False)
    assert report.sent == 12
    written = sorted((tmp_path / "outbox").glob("*.eml"))
    assert len(written) == 12
    tos = sorted(
        BytesParser(policy=policy.default).parsebytes(f.read_bytes())["To"] for f in written
    )
    assert tos == emails
    store = open_store(cfg.store)
    assert store.digests_for_day(date(2026, 1, 14)) == {e: SENT for e in emails}
    store.close()


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("connections = 0", "connections: expected an integer from 1 to 100"),
        ("connections = 2.5", "connections: expected an integer"),
        ("max_rate = -1", "max_rate: expected a number from 0 to 100000"),
        ('max_rate = "fast"', "max_rate: expected a number"),
    ],
)
def test_connections_and_max_rate_are_checked_config_keys(tmp_path: Path, line, why) -> None:
    from digest.config import load_config
    from digest.errors import ConfigError

    f = tmp_path / "digest.toml"
    f.write_text(f'[smtp]\nhost = "mail.example.org"\n{line}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=why) as e:
        load_config(f)
    assert "\n" not in str(e.value)
    f.write_text("[smtp]\nconnections = 8\nmax_rate = 12.5\n", encoding="utf-8")
    smtp = load_config(f).smtp
    assert (smtp.connections, smtp.max_rate) == (8, 12.5)
    assert (SmtpConfig().connections, SmtpConfig().max_rate) == (4, 0.0)
