"""`digest check-config [--connect]` and `digest send-test EMAIL` on real parts: a real SMTP
server (aiosmtpd, with STARTTLS and AUTH) and the local HTTP server of recorded answers.

check-config says "config OK" only at the end, after every check; each problem is one
stderr line and all of them are listed; without --connect it touches no network.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from httpfixture import FixtureServer, unused_url
from smtpserver import SmtpServer, self_signed_cert

from digest.cli import main
from digest.config import load_config
from digest.render import default_templates_dir
from digest.store import open_store


@pytest.fixture(scope="module")
def srv() -> Iterator[FixtureServer]:
    with FixtureServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DIGEST_TEMPLATES", "DIGEST_CONFIG", "DIGEST_SECRET", "T_USER", "T_PASS"):
        monkeypatch.delenv(name, raising=False)


def conf(tmp: Path, body: str, *, store: Path | None = None) -> Path:
    f = tmp / "c.toml"
    f.write_text(
        f'[store]\npath = "{store or tmp / "store"}"\n[outbox]\npath = "{tmp / "outbox"}"\n' + body,
        encoding="utf-8",
    )
    return f


def smtp_section(smtp: SmtpServer, security: str = "none", login: bool = False) -> str:
    creds = 'username_env = "T_USER"\npassword_env = "T_PASS"\n' if login else ""
    return (
        f'[smtp]\nhost = "{smtp.host}"\nport = {smtp.port}\nsecurity = "{security}"\n'
        f'sender = "Lab Papers <papers@example.org>"\n{creds}'
        '[web]\nbase_url = "https://papers.example.org"\n'
    )


def errors(err: str) -> list[str]:
    lines = err.strip().splitlines()
    assert all(ln.startswith("digest: error: ") for ln in lines), lines
    return [ln.removeprefix("digest: error: ") for ln in lines]


def test_every_problem_is_listed_and_ok_is_never_said(tmp_path: Path, capsys) -> None:
    """Today's order of events was "config OK", then an error; now every check runs,
    each problem is its own line, and the verdict comes last."""
    not_a_folder = tmp_path / "store-file"
    not_a_folder.write_text("x")
    f = conf(
        tmp_path,
        '[smtp]\nhost = "smtp.example.org"\nusername_env = "T_USER"\npassword_env = "T_PASS"\n'
        '[web]\nbase_url = "https://papers.example.org"\n'
        '[[subscribers]]\nemail = "ok@example.org"\n'
        '[[subscribers]]\nemail = "broken"\n',
        store=not_a_folder,
    )
    assert main(["check-config", "--config", str(f)]) == 2
    cap = capsys.readouterr()
    assert "config OK" not in cap.out
    *problems, verdict = errors(cap.err)
    assert verdict == f"{f}: config NOT OK: 3 problems (above)"
    assert any(f"store: {not_a_folder} exists and is not a folder" in p for p in problems)
    assert any("[smtp] username_env: environment variable T_USER is not set" in p for p in problems)
    assert any("[subscribers #2] email" in p for p in problems)


def test_the_example_config_is_ok_and_says_so_last(capsys) -> None:
    root = Path(__file__).resolve().parents[1]
    assert main(["check-config", "--config", str(root / "config" / "example.toml")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == f"config OK: {root / 'config' / 'example.toml'}"
    assert sum("config OK" in ln for ln in out) == 1
    assert any("offline fallback: on" in ln for ln in out)
    assert any("templates:" in ln and "a sample digest renders" in ln for ln in out)


@pytest.mark.parametrize(
    ("name", "broken"),
    [
        ("digest_email.html", "{% if count %}<p>unclosed"),
        ("subject.txt", "{{ no_such_variable }}"),
        ("web/manage.html", "{% for x in %}"),
    ],
)
def test_broken_templates_are_a_problem(tmp_path: Path, capsys, monkeypatch, name, broken) -> None:
    folder = tmp_path / "tpl"
    shutil.copytree(default_templates_dir(), folder)
    (folder / name).write_text(broken, encoding="utf-8")
    monkeypatch.setenv("DIGEST_TEMPLATES", str(folder))
    assert main(["check-config", "--config", str(conf(tmp_path, ""))]) == 2
    cap = capsys.readouterr()
    problem, _verdict = errors(cap.err)
    assert problem.startswith("templates: ") and "config OK" not in cap.out


def test_no_source_and_an_unwritable_outbox_are_problems(tmp_path: Path, capsys) -> None:
    (tmp_path / "outbox").write_text("a file where the outbox folder should be")
    f = conf(tmp_path, "[sources.huggingface]\nenabled = false\n")
    assert main(["check-config", "--config", str(f)]) == 2
    problems = errors(capsys.readouterr().err)[:-1]
    assert problems[0].startswith("no source is enabled")
    assert problems[1] == f"outbox: {tmp_path / 'outbox'} exists and is not a folder"


def test_without_connect_no_connection_is_made(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("T_USER", "user")
    monkeypatch.setenv("T_PASS", "pw")
    with SmtpServer(tls="starttls", auth=("user", "pw")) as smtp:
        f = conf(tmp_path, smtp_section(smtp, "starttls", login=True))
        assert main(["check-config", "--config", str(f)]) == 0
        assert smtp.connections == 0
    assert not (tmp_path / "store").exists()  # check-config writes nothing


def test_connect_logs_in_over_starttls_and_fetches_one_page_per_source(
    tmp_path: Path, capsys, monkeypatch, srv: FixtureServer
) -> None:
    monkeypatch.setenv("T_USER", "user")
    monkeypatch.setenv("T_PASS", "pw")
    monkeypatch.setenv("SSL_CERT_FILE", self_signed_cert()[0])  # trust the test server
    srv.clear()
    with SmtpServer(tls="starttls", auth=("user", "pw")) as smtp:
        f = conf(
            tmp_path,
            f'[sources.huggingface]\nbase_url = "{srv.hf_base_url}"\n'
            f'[sources.arxiv]\ncategories = ["cs.AI"]\nrss_base_url = "{srv.rss_base_url}"\n'
            + smtp_section(smtp, "starttls", login=True),
        )
        assert main(["check-config", "--connect", "--config", str(f)]) == 0, capsys.readouterr()
        assert (smtp.connections, smtp.logins, smtp.received) == (1, ["user"], 0)
    out = capsys.readouterr().out
    assert f"connect: SMTP {smtp.host}:{smtp.port}: connected, STARTTLS, logged in" in out
    assert "connect: huggingface: " in out and "papers on the first page of" in out
    assert "connect: arxiv: " in out and "papers for cs.AI (rss)" in out
    assert out.strip().splitlines()[-1] == f"config OK: {f}"
    paths = [r.path for r in srv.requests]
    assert paths.count("/api/daily_papers") == 1 and sum(p.startswith("/rss") for p in paths) == 1


def test_connect_reports_a_refused_login_and_an_unreachable_source(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("T_USER", "user")
    monkeypatch.setenv("T_PASS", "wrong")
    monkeypatch.setenv("SSL_CERT_FILE", self_signed_cert()[0])
    with SmtpServer(tls="starttls", auth=("user", "pw")) as smtp:
        f = conf(
            tmp_path,
            f'[sources.huggingface]\nbase_url = "{unused_url()}"\n'
            + smtp_section(smtp, "starttls", login=True),
        )
        assert main(["check-config", "--connect", "--config", str(f)]) == 2
        assert smtp.received == 0
    cap = capsys.readouterr()
    assert "config OK" not in cap.out
    login, source, verdict = errors(cap.err)
    assert login.startswith(f"SMTP {smtp.host}:{smtp.port}: login refused: 535")
    assert source.startswith("connect: huggingface: GET ") and "cannot connect" in source
    assert verdict.endswith("config NOT OK: 2 problems (above)")


def test_send_test_mails_one_sample_digest_and_records_nothing(tmp_path: Path, capsys) -> None:
    with SmtpServer() as smtp:
        f = conf(tmp_path, smtp_section(smtp))
        base = ["--config", str(f)]
        assert main([*base, "subscribers", "add", "ada@example.org", "--keywords", "agents"]) == 0
        assert main(["send-test", "Ada@Example.org", *base]) == 0
        (got,) = smtp.messages
    out = capsys.readouterr().out
    assert "sent a sample digest to ada@example.org through SMTP" in out  # as stored
    assert "nothing recorded" in out
    msg = BytesParser(policy=policy.default).parsebytes(got.data)
    assert got.rcpt_tos == ["ada@example.org"] and msg["To"] == "ada@example.org"
    assert str(msg["Subject"]).startswith("[sample data] ")
    assert msg.get_body(("plain",)).get_content().startswith("SAMPLE DATA: ")
    assert msg["Message-ID"].startswith("<send-test-")  # never the day's digest id
    assert msg["List-Unsubscribe"]
    cfg = load_config(f)
    store = open_store(cfg.store)
    try:
        today = datetime.now(UTC).date()
        assert store.digests_for_day(today) == {}
        assert store.delivered_since(today.replace(year=2000)) == {}
    finally:
        store.close()


def test_send_test_to_the_outbox(tmp_path: Path, capsys) -> None:
    f = conf(tmp_path, "")
    assert main(["send-test", "bob@example.org", "--config", str(f)]) == 0
    assert f"into the outbox folder {tmp_path / 'outbox'}" in capsys.readouterr().out
    (eml,) = (tmp_path / "outbox").glob("send-test-*.eml")
    msg = BytesParser(policy=policy.default).parsebytes(eml.read_bytes())
    assert msg["To"] == "bob@example.org" and "[sample data]" in str(msg["Subject"])


def test_send_test_refuses_an_unsubscribed_address_and_reports_smtp_failure(
    tmp_path: Path, capsys
) -> None:
    with SmtpServer() as smtp:
        f = conf(tmp_path, smtp_section(smtp))
        base = ["--config", str(f)]
        assert main([*base, "subscribers", "add", "gone@example.org"]) == 0
        assert (
            main([*base, "subscribers", "update", "gone@example.org", "--status", "unsubscribed"])
            == 0
        )
        capsys.readouterr()
        assert main(["send-test", "gone@example.org", *base]) == 2
        (line,) = errors(capsys.readouterr().err)
        assert line == "gone@example.org unsubscribed: no mail goes to them, not even a test"
        assert smtp.connections == 0
    # the server is gone (its port now refuses): one line, the delivery error's exit status
    assert main(["send-test", "ada@example.org", *base]) == 5
    (line,) = errors(capsys.readouterr().err)
    assert "connection refused" in line
