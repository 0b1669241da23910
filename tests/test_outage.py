"""An outage must never mail stale papers (issue 9 §2), on real parts: `digest run` and
`digest status` as subprocesses, a real SMTP server (aiosmtpd), a source on which nothing
listens (connection refused) or whose name does not resolve (RFC 6761 `.invalid`).

- the bundled sample day is off unless a config turns it on; refused with an SMTP host;
- a real outage: nothing mailed, nothing recorded, exit non-zero, one line; status says why;
- when the sample day is used (the Quickstart, outbox only), every digest says so in its
  subject and its first line, text and HTML.
"""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import date
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from httpfixture import unused_url
from smtpserver import SmtpServer

from digest.config import load_config
from digest.store import open_store

DAY = date(2026, 1, 14)


def digest(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "digest", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write_config(tmp: Path, source_url: str, *, smtp: SmtpServer | None, extra: str = "") -> Path:
    mail = (
        f'[smtp]\nhost = "{smtp.host}"\nport = {smtp.port}\nsecurity = "none"\n'
        'sender = "Lab Papers <papers@example.org>"\n'
        if smtp is not None
        else ""
    )
    f = tmp / "digest.toml"
    f.write_text(
        f"""{extra}
[http]
retries = 2
backoff = 0.0
[sources.huggingface]
base_url = "{source_url}"
[store]
path = "{tmp / "store"}"
[outbox]
path = "{tmp / "outbox"}"
{mail}
[[subscribers]]
email = "ada@example.org"
keywords = "language models"
[[subscribers]]
email = "bob@example.org"
""",
        encoding="utf-8",
    )
    return f


@pytest.mark.parametrize("outage", ["connection refused", "DNS failure"])
def test_an_outage_mails_nothing_records_nothing_and_says_why(tmp_path: Path, outage: str) -> None:
    url = unused_url() if outage == "connection refused" else "http://huggingface.invalid"
    with SmtpServer() as smtp:
        conf = write_config(tmp_path, url, smtp=smtp)
        assert load_config(conf).sources.offline_fallback is False  # the default
        run = digest("run", "--config", str(conf), "--date", DAY.isoformat(), cwd=tmp_path)
        assert smtp.connections == 0 and smtp.received == 0  # nothing mailed
    assert run.returncode == 3, run.stdout + run.stderr  # AllSourcesFailed
    assert run.stdout == ""
    (line,) = run.stderr.splitlines()  # one line
    assert line.startswith("digest: error: every source failed, nothing sent (huggingface: ")
    assert "huggingface: huggingface:" not in line
    store = open_store(load_config(conf).store)
    try:
        assert store.digests_for_day(DAY) == {}  # nothing recorded as delivered
        assert store.delivered_since(date(2000, 1, 1)) == {}
        (report,) = store.runs(limit=5)
        assert "every source failed" in report.error
    finally:
        store.close()
    status = digest("status", "--config", str(conf), cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert f"{DAY.isoformat()} started" in status.stdout and "failed: every source" in status.stdout
    assert "nothing went out in the last run: all sources failed" in status.stdout


def test_the_sample_day_is_refused_with_an_smtp_host(tmp_path: Path) -> None:
    with SmtpServer() as smtp:
        conf = write_config(
            tmp_path, unused_url(), smtp=smtp, extra="[sources]\noffline_fallback = true\n"
        )
        for cmd in ("run", "check-config", "web", "serve"):
            r = digest(cmd, "--config", str(conf), cwd=tmp_path)
            assert r.returncode == 2, (cmd, r.stdout, r.stderr)
            (line,) = r.stderr.splitlines()
            assert line.startswith(f"digest: error: {conf}: [sources] offline_fallback: ")
            assert "[smtp] host" in line
        assert smtp.connections == 0
    assert not (tmp_path / "store").exists()


def _parts(eml: Path) -> tuple[str, str, str]:
    msg = BytesParser(policy=policy.default).parsebytes(eml.read_bytes())
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    return str(msg["Subject"]), text, html


def test_the_sample_day_says_so_in_every_digest(tmp_path: Path) -> None:
    conf = write_config(
        tmp_path, unused_url(), smtp=None, extra="[sources]\noffline_fallback = true\n"
    )
    run = digest("run", "--config", str(conf), "--date", DAY.isoformat(), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "note: offline: no network, using the bundled recorded day 2026-03-10" in run.stdout
    assert "sent 2" in run.stdout
    emls = sorted((tmp_path / "outbox").glob("*.eml"))
    assert len(emls) == 2
    for eml in emls:
        subject, text, html = _parts(eml)
        assert subject.startswith("[sample data] ")
        first = text.strip().splitlines()[0]
        assert first.startswith("SAMPLE DATA: these are the papers of the bundled recorded day")
        assert "2026-03-10" in first
        body = re.sub(r"<!--.*?-->", " ", html[html.index("<body") :], flags=re.S)
        visible = " ".join(re.sub(r"<[^>]+>", " ", body).split())
        assert visible.startswith("Sample data: these are the papers of the bundled recorded day")


def test_a_normal_day_carries_no_sample_marker(tmp_path: Path) -> None:
    from httpfixture import FixtureServer

    with FixtureServer() as srv:
        conf = write_config(tmp_path, srv.hf_base_url, smtp=None)
        run = digest("run", "--config", str(conf), "--date", DAY.isoformat(), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    emls = sorted((tmp_path / "outbox").glob("*.eml"))
    assert emls
    for eml in emls:
        subject, text, html = _parts(eml)
        assert "sample" not in subject.lower() and "SAMPLE DATA" not in text
        assert "Sample data" not in html
