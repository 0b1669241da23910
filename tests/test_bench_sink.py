"""bench/smtpsink.py: the lean engine (the benchmarks' default) takes the same dialogue as
the aiosmtpd reference and counts the same messages and bytes."""

from __future__ import annotations

import json
import smtplib
import subprocess
import sys
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest

SINK = Path(__file__).resolve().parents[1] / "bench" / "smtpsink.py"


def _messages() -> list[bytes]:
    out = []
    for body in (
        "plain\n",
        ".a line that starts with a dot\n.\n..\nlast\n",  # dot-stuffed on the wire
        ("x" * 70 + "\n") * 3000,  # over many TCP reads: the end marker can straddle two
    ):
        m = EmailMessage()
        m["From"], m["To"], m["Subject"] = "a@x.org", "b@x.org", "t"
        m.set_content(body)
        out.append(m.as_bytes(policy=SMTP))  # CRLF line ends, as on the wire
    return [*out, b""]  # an empty message too


def _send_all(engine: str, pipelining: bool) -> dict[str, object]:
    args = [sys.executable, str(SINK), f"--engine={engine}", "--delay-ms=1"]
    p = subprocess.Popen(
        args + ([] if pipelining else ["--no-pipelining"]),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdin is not None and p.stdout is not None
    try:
        port = int(p.stdout.readline().split()[1])
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.ehlo()
            assert s.has_extn("pipelining") is pipelining
            for raw in _messages():
                assert s.sendmail("a@x.org", ["b@x.org", "c@x.org"], raw) == {}
            assert s.noop()[0] == 250
        p.stdin.write("stats\n")
        p.stdin.flush()
        stats: dict[str, object] = json.loads(p.stdout.readline())
        p.stdin.write("reset\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "ok"
        return stats
    finally:
        p.stdin.close()
        p.wait(timeout=30)


@pytest.mark.parametrize("pipelining", [True, False])
def test_lean_sink_counts_what_the_aiosmtpd_sink_counts(pipelining: bool) -> None:
    lean = _send_all("lean", pipelining)
    ref = _send_all("aiosmtpd", pipelining)
    assert lean["messages"] == ref["messages"] == 4
    assert lean["connections"] == ref["connections"] == 1
    assert lean["bytes"] == ref["bytes"]
