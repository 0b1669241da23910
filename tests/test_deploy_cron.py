"""End to end: the exact job line of deploy/cron/crontab, run by /bin/sh as cron runs it.

Real parts only: `/bin/sh -c <the crontab's command>` with cron's bare environment plus the
crontab's own variable lines, a real env file exported with `set -a`, `python -m digest run`
behind a stand-in for /opt/digest/venv/bin/digest, the local HTTP server of recorded
Hugging Face answers, a real SMTP server (aiosmtpd) and the real store on disk. Only the
three host paths of the line (env file, binary, log) are pointed into a temporary folder.

Checks what the deploy docs promise: the daily run mails every subscriber, the secret from
the env file reaches digest (mail links verify with it), output lands in the log file, a
second run the same day mails nothing again, and a run that finds the store's run lock
held exits 75 with a one-line message, harmlessly, which is why the line needs no flock.
"""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from email.utils import parseaddr
from pathlib import Path

import pytest
from httpfixture import FixtureServer
from smtpserver import SmtpServer

from digest.config import load_config
from digest.models import RunReport, Subscriber
from digest.store import open_store
from digest.tokens import verify

ROOT = Path(__file__).resolve().parents[1]
CRONTAB = ROOT / "deploy" / "cron" / "crontab"
SECRET = "cron-e2e-secret-not-for-production"
READERS = ["ada@example.org", "bob@example.org", "cy@example.org"]
# The host paths in the job line, and what this test points them at.
HOST_PATHS = ("/etc/digest/digest.env", "/opt/digest/venv/bin/digest", "/var/log/digest/run.log")


def cron_job(tmp: Path, config: Path) -> tuple[str, dict[str, str]]:
    """(command, environment) as cron would run the crontab's job line, paths moved to tmp."""
    env = {"HOME": str(tmp), "LOGNAME": "digest", "SHELL": "/bin/sh", "PATH": "/usr/bin:/bin"}
    command = ""
    for raw in CRONTAB.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if m := re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$", line):
            env[m.group(1)] = m.group(2)
        else:
            command = line.split(None, 5)[5]
    for path in HOST_PATHS:
        assert path in command, f"the crontab's job line no longer uses {path}"
    command = (
        command.replace(HOST_PATHS[0], str(tmp / "digest.env"))
        .replace(HOST_PATHS[1], str(tmp / "bin" / "digest"))
        .replace(HOST_PATHS[2], str(tmp / "run.log"))
    )
    assert env["DIGEST_CONFIG"] == "/etc/digest/digest.toml"
    env["DIGEST_CONFIG"] = str(config)
    assert "DIGEST_TEMPLATES" not in env  # the templates ship inside the package
    return command, env


def setup(tmp: Path, hf_url: str, smtp_port: int) -> Path:
    (tmp / "bin").mkdir()
    shim = tmp / "bin" / "digest"  # stands in for the venv's console script
    shim.write_text(
        f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" -m digest "$@"\n', encoding="utf-8"
    )
    shim.chmod(0o755)
    (tmp / "digest.env").write_text(
        f"# as in deploy/systemd/digest.env.example\nDIGEST_SECRET={SECRET}\n", encoding="utf-8"
    )
    config = tmp / "digest.toml"
    config.write_text(
        f"""
[http]
retries = 0
timeout = 10
[sources]
offline_fallback = false
[sources.huggingface]
base_url = "{hf_url}"
mode = "trending"
[store]
path = "{tmp / "store"}"
fsync = false
[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
sender = "Cron Digest <digest@example.org>"
[web]
base_url = "http://127.0.0.1:8000"
secret_env = "DIGEST_SECRET"
""",
        encoding="utf-8",
    )
    store = open_store(load_config(config).store)
    try:
        created = (datetime.now(UTC) - timedelta(days=1)).isoformat()
        store.put_subscribers([Subscriber(email=e, created=created) for e in READERS])
    finally:
        store.close()
    return config


def run(command: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", "-c", command], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_crontab_line_runs_the_daily_job_once_and_overlaps_exit_75(tmp_path: Path) -> None:
    with FixtureServer() as srv, SmtpServer() as smtp:
        config = setup(tmp_path, srv.url, smtp.port)
        command, env = cron_job(tmp_path, config)
        log = tmp_path / "run.log"

        first = run(command, env, tmp_path)
        assert first.returncode == 0, log.read_text(encoding="utf-8") if log.exists() else ""
        assert first.stdout == first.stderr == ""  # everything went to the log file
        assert log.read_text(encoding="utf-8").strip()
        to = sorted(parseaddr(m.message["To"])[1] for m in smtp.messages)
        assert to == READERS  # every subscriber, once

        # The secret came from the env file through `set -a; . file`: links verify with it
        # and carry each subscriber's opaque id (never the address).
        store = open_store(load_config(config).store)
        try:
            ids = {s.email: s.id for s in store.subscribers()}
        finally:
            store.close()
        for m in smtp.messages:
            header = m.message["List-Unsubscribe"]
            assert header, "digest mails carry List-Unsubscribe (RFC 8058)"
            url = re.search(r"<(http[^>]+)>", header)
            assert url is not None
            token = url.group(1).rstrip("/").rsplit("/", 1)[1]
            assert verify(SECRET, "unsubscribe", token) == ids[parseaddr(m.message["To"])[1]]

        # The same day again: nothing new is owed, nothing is mailed twice.
        second = run(command, env, tmp_path)
        assert second.returncode == 0, log.read_text(encoding="utf-8")
        assert len(smtp.messages) == len(READERS)

        # Overlap: another run holds the store's run lock. This one exits 75, says why in
        # one line, and changes nothing.
        size = log.stat().st_size
        store = open_store(load_config(config).store)
        try:
            with store.run(date.today(), RunReport(day=date.today(), dry_run=True)):
                third = run(command, env, tmp_path)
        finally:
            store.close()
        assert third.returncode == 75, log.read_text(encoding="utf-8")
        said = log.read_text(encoding="utf-8")[size:].strip().splitlines()
        assert len(said) == 1 and "digest: error:" in said[0], said
        assert len(smtp.messages) == len(READERS)


@pytest.mark.parametrize("path", HOST_PATHS)
def test_cron_job_line_keeps_its_documented_host_paths(path: str) -> None:
    """deploy/README.md and the systemd units document these paths; the crontab uses them."""
    assert path in CRONTAB.read_text(encoding="utf-8")
