"""digest.mail.message: the bytes parse back with the stdlib parser and obey RFC 5322."""

from __future__ import annotations

import binascii
import os
import re
from datetime import UTC, date, datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous.timed import TimestampSigner

from digest.errors import InputError
from digest.mail.message import _qp, build_message
from digest.models import Digest, Paper, Pick, Subscriber, digest_id
from digest.render import Rendered, Renderer
from digest.tokens import links

GOLDEN = Path(__file__).resolve().parent / "golden"
NOW = datetime(2026, 1, 14, 7, 0, 5, tzinfo=UTC)
SENDER = "Paper Digest <digest@papers.example.org>"
UNSUB = "https://digest.example.org/unsubscribe/abc.def.ghi"
DID = digest_id("reader@example.org", date(2026, 1, 14))


def parse(data: bytes) -> EmailMessage:
    msg = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(msg, EmailMessage)
    return msg


def body(msg: EmailMessage, kind: str) -> str:
    part = msg.get_body((kind,))
    assert part is not None
    return part.get_content().replace("\r\n", "\n")


def assert_wire_safe(data: bytes) -> None:
    """CRLF only (no bare LF or CR) and no line over 998 bytes (RFC 5322 2.1.1, 2.3)."""
    assert re.search(rb"(?<!\r)\n", data) is None, "bare LF"
    assert re.search(rb"\r(?!\n)", data) is None, "bare CR"
    assert data.endswith(b"\r\n")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


def sample_rendered() -> Rendered:
    p = Paper(
        id="2601.00001",
        title="Continual Pretraining — für alle",
        abstract="An abstract. " * 50,
        authors=("Ada Lovelace",),
        upvotes=3,
    )
    d = Digest(
        Subscriber("reader@example.org", ("continual pretraining",)),
        date(2026, 1, 14),
        (Pick(p.id, 1.0, ("continual pretraining",)),),
    )
    lk = links("https://digest.example.org", "s3cret", "reader@example.org")
    return Renderer().render(d, {p.id: p}, lk)


def build(rendered: Rendered | None = None, **kw: object) -> bytes:
    args: dict[str, object] = dict(
        to="reader@example.org", sender=SENDER, digest_id=DID, unsubscribe_url=UNSUB, now=NOW
    )
    args.update(kw)
    return build_message(rendered or sample_rendered(), **args).data  # type: ignore[arg-type]


def test_parses_back_with_both_parts_text_first() -> None:
    r = sample_rendered()
    out = build_message(
        r, to="reader@example.org", sender=SENDER, digest_id=DID, unsubscribe_url=UNSUB, now=NOW
    )
    msg = parse(out.data)
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    for p in parts:
        assert p.get_content_charset() == "utf-8"
        assert p["Content-Transfer-Encoding"] == "quoted-printable"
    assert body(msg, "plain").rstrip("\n") == r.text.rstrip("\n")
    assert body(msg, "html").rstrip("\n") == r.html.rstrip("\n")
    assert not msg.defects and not any(p.defects for p in parts)
    assert out.html == r.html and out.to == "reader@example.org"
    assert_wire_safe(out.data)


def test_headers() -> None:
    r = sample_rendered()
    msg = parse(build(r))
    assert msg["From"] == SENDER
    assert msg["From"].addresses[0].addr_spec == "digest@papers.example.org"
    assert msg["To"] == "reader@example.org"
    assert msg["Subject"] == r.subject  # non-ASCII: RFC 2047 encoded, decoded back equal
    assert parsedate_to_datetime(msg["Date"]) == NOW
    assert msg["Message-ID"] == f"<{DID}@papers.example.org>"
    assert msg["MIME-Version"] == "1.0"
    assert msg["List-Unsubscribe"] == f"<{UNSUB}>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"  # RFC 8058
    assert msg["List-Id"] == "<digest.papers.example.org>"
    assert msg["Auto-Submitted"] == "auto-generated"


def test_raw_subject_is_encoded_and_folded() -> None:
    data = build()
    head = data.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    assert b"Subject: =?utf-8?" in head


def test_deterministic_bytes_and_message_id() -> None:
    r = sample_rendered()
    a = build_message(
        r, to="reader@example.org", sender=SENDER, digest_id=DID, unsubscribe_url=UNSUB, now=NOW
    )
    b = build_message(
        r, to="reader@example.org", sender=SENDER, digest_id=DID, unsubscribe_url=UNSUB, now=NOW
    )
    assert a == b
    other = build_message(
        r,
        to="other@example.org",
        sender=SENDER,
        digest_id=digest_id("other@example.org", date(2026, 1, 14)),
        unsubscribe_url=UNSUB,
        now=NOW,
    )
    assert other.message_id != a.message_id


def test_naive_and_offset_datetimes() -> None:
    naive = parse(build(now=datetime(2026, 1, 14, 7, 0, 5)))
    assert parsedate_to_datetime(naive["Date"]) == NOW
    berlin = datetime(2026, 1, 14, 8, 0, 5, tzinfo=timezone(timedelta(hours=1)))
    assert parsedate_to_datetime(parse(build(now=berlin))["Date"]) == NOW


@pytest.mark.parametrize(
    "field,value",
    [
        ("to", "reader@example.org\r\nBcc: victim@example.org"),
        ("to", "reader@example.org\nX: y"),
        ("sender", "Digest <digest@example.org>\r\nBcc: victim@example.org"),
        ("unsubscribe_url", "https://x.example/u\r\nX-Evil: 1"),
        ("digest_id", "id\r\nX-Evil: 1"),
    ],
)
def test_header_injection_rejected(field: str, value: str) -> None:
    with pytest.raises(InputError, match="line break") as info:
        build(**{field: value})
    assert "\n" not in str(info.value)


def test_subject_injection_rejected() -> None:
    r = sample_rendered()
    bad = Rendered(subject="Hi\r\nBcc: victim@example.org", text=r.text, html=r.html)
    with pytest.raises(InputError, match="subject"):
        build(bad)


@pytest.mark.parametrize(
    "to",
    [
        "",
        "no-at-sign",
        "a b@example.org",
        "<a@example.org>",
        "a@example.org, b@example.org",
        "x" * 300,
        "a@-bad-ü.example",  # IDNA refuses it
    ],
)
def test_bad_recipient_rejected(to: str) -> None:
    with pytest.raises(InputError):
        build(to=to)


def test_bad_unsubscribe_url_rejected() -> None:
    for url in ("javascript:alert(1)", "https://x.example/a b", "https://x.example/<a>"):
        with pytest.raises(InputError, match="unsubscribe_url"):
            build(unsubscribe_url=url)


def test_non_ascii_sender_name_and_idn_domain() -> None:
    msg = parse(build(sender="Papier-Übersicht <digest@example.org>", to="leser@bücher.example"))
    assert msg["From"].addresses[0].display_name == "Papier-Übersicht"
    assert msg["To"] == "leser@xn--bcher-kva.example"
    assert_wire_safe(build(sender="Papier-Übersicht <digest@example.org>"))


def test_non_ascii_local_part_is_written_as_utf8_for_smtputf8() -> None:
    # RFC 6532: raw UTF-8 in the header; only a server offering SMTPUTF8 gets this message
    # (digest/mail/smtp.py checks). The sender's own address must stay ASCII.
    data = build(to="zoë@bücher.example")
    assert data.split(b"\r\n\r\n", 1)[0].count("zoë".encode()) == 1
    assert parse(data)["To"] == "zoë@xn--bcher-kva.example"
    with pytest.raises(InputError, match="must be ASCII"):
        build(sender="Digest <zoë@example.org>")


def test_subject_that_looks_encoded_stays_literal() -> None:
    r = sample_rendered()
    subject = "Paper Digest: =?utf-8?q?not_encoded?="
    assert parse(build(Rendered(subject=subject, text=r.text, html=r.html)))["Subject"] == subject


def test_long_ascii_subject_folds_and_round_trips() -> None:
    r = sample_rendered()
    subject = "Paper Digest - " + " ".join(f"word{i}" for i in range(120))
    data = build(Rendered(subject=subject, text=r.text, html=r.html))
    assert_wire_safe(data)
    assert max(len(x) for x in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")) <= 78
    assert parse(data)["Subject"] == subject


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=3000)


@settings(max_examples=80, deadline=None)
@given(
    text=_text,
    html=_text,
    subject=st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=200),
)
def test_any_content_is_wire_safe_and_round_trips(text: str, html: str, subject: str) -> None:
    # Long lines, lines starting with "." or "From ", trailing spaces, CR/LF mixes,
    # control characters: the wire form stays CRLF-only with short lines, and parses
    # back to the same text (line ends normalised to LF).
    data = build(Rendered(subject=subject, text=text, html=html))
    assert_wire_safe(data)
    msg = parse(data)

    def norm(s: str) -> str:
        return s.replace("\r\n", "\n").replace("\r", "\n").rstrip("\n")

    assert norm(body(msg, "plain")) == norm(text)
    assert norm(body(msg, "html")) == norm(html)
    assert " ".join(str(msg["Subject"]).split()) == " ".join(subject.split())


def test_golden_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole message, byte for byte. The only volatile input, the tokens' timestamp,
    is pinned (the Date header comes from `now`, the boundary from the digest id)."""
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: 1_768_374_000)
    p = Paper(
        id="2601.00001",
        title="Continual Pretraining — für alle",
        abstract="An abstract.",
        authors=("Ada Lovelace",),
        upvotes=3,
    )
    d = Digest(
        Subscriber("reader@example.org", ("continual pretraining",)),
        date(2026, 1, 14),
        (Pick(p.id, 1.0, ("continual pretraining",)),),
    )
    lk = links("https://digest.example.org", "s3cret", "Wq3n0xv7Tt2lq8mP4rYk1A")  # the sub's id
    r = Renderer().render(d, {p.id: p}, lk)
    out = build_message(
        r,
        to="reader@example.org",
        sender=SENDER,
        digest_id=d.id,
        unsubscribe_url=lk.unsubscribe_url,
        now=NOW,
    )
    path = GOLDEN / "digest_email.eml"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_bytes(out.data)
    assert out.data == path.read_bytes(), "digest_email.eml differs from the golden file"


@settings(max_examples=100, deadline=None)
@given(text=_text)
def test_line_by_line_qp_equals_whole_body_qp(text: str) -> None:
    # The per-line cache must not change a byte of what binascii would produce.
    norm = text.replace("\r\n", "\n").replace("\r", "\n")
    if norm.endswith("\n"):
        norm = norm[:-1]
    whole = binascii.b2a_qp(
        (norm.replace("\n", "\r\n") + "\r\n").encode("utf-8"),
        quotetabs=False,
        istext=True,
        header=False,
    )
    assert _qp(text) == whole
