"""The command line: every command has help; bad input gives one line and a non-zero exit."""

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from digest.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def _commands(parser: argparse.ArgumentParser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _commands(sub, (*prefix, name))


def test_every_command_has_help(capsys):
    commands = list(_commands(build_parser()))
    assert ("run",) in commands and ("subscribers", "import") in commands
    for cmd in commands:
        with pytest.raises(SystemExit) as e:
            main([*cmd, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert "usage: digest" in out, cmd


def test_python_dash_m_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "digest", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("digest ")


def _one_line_error(capsys):
    err = capsys.readouterr().err.strip()
    assert err.startswith("digest: error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_invalid_config_is_one_line(tmp_path, capsys):
    f = tmp_path / "c.toml"
    f.write_text("[smtp]\nport = 'x'\n")
    assert main(["--config", str(f), "check-config"]) == 2
    assert "[smtp] port" in _one_line_error(capsys)


def test_malformed_date_is_one_line(tmp_path, capsys):
    f = tmp_path / "c.toml"
    f.write_text(f'[store]\npath = "{tmp_path / "st"}"\n')
    assert main(["--config", str(f), "run", "--date", "2026-13-45"]) == 2
    assert "--date" in _one_line_error(capsys)
    assert not (tmp_path / "st").exists()  # nothing written half-way


def test_unknown_subscriber_and_bad_address(tmp_path, capsys):
    f = tmp_path / "c.toml"
    f.write_text(f'[store]\npath = "{tmp_path / "st"}"\n')
    assert main(["--config", str(f), "subscribers", "remove", "nobody@example.org"]) == 2
    assert "no subscriber nobody@example.org" in _one_line_error(capsys)
    assert (
        main(["--config", str(f), "subscribers", "update", "nobody@example.org", "--max", "3"]) == 2
    )
    _one_line_error(capsys)
    assert main(["--config", str(f), "subscribers", "add", "not-an-address"]) == 2
    assert "email" in _one_line_error(capsys)
    assert main(["--config", str(f), "preview", "nobody@example.org"]) == 2
    _one_line_error(capsys)


def test_subscriber_lifecycle_from_the_cli(tmp_path, capsys):
    f = tmp_path / "c.toml"
    f.write_text(f'[store]\npath = "{tmp_path / "st"}"\n')
    base = ["--config", str(f), "subscribers"]
    assert (
        main(
            [
                *base,
                "add",
                "Ada@Example.org",
                "--keywords",
                'speech recognition, "text-to-speech", -survey',
                "--max",
                "5",
            ]
        )
        == 0
    )
    assert main([*base, "update", "ada@example.org", "--status", "paused"]) == 0
    capsys.readouterr()
    assert main([*base, "list"]) == 0
    out = capsys.readouterr().out
    assert "Ada@example.org\tpaused\tmax 5\tspeech recognition, text-to-speech, -survey" in out
    assert main([*base, "remove", "Ada@example.org"]) == 0
    assert main([*base, "list", "--json"]) == 0
    assert capsys.readouterr().out.strip().endswith("[]")


def test_send_hour_and_time_zone_from_the_cli(tmp_path, capsys):
    import json

    f = tmp_path / "c.toml"
    f.write_text(f'[store]\npath = "{tmp_path / "st"}"\n')
    base = ["--config", str(f), "subscribers"]
    assert main([*base, "add", "ada@example.org", "--keywords", "speech"]) == 0
    assert (
        main(
            [*base, "update", "ada@example.org", "--send-hour", "7", "--timezone", "Europe/Berlin"]
        )
        == 0
    )
    capsys.readouterr()
    assert main([*base, "list"]) == 0
    assert "\tsends 07:00 Europe/Berlin" in capsys.readouterr().out
    # bad values: one line each, nothing changed
    for flag, value, says in (
        ("--send-hour", "24", "send hour"),
        ("--send-hour", "7am", "send hour"),
        ("--timezone", "Mars/Olympus", "not a known time zone"),
        ("--timezone", "../../etc/passwd", "not a time zone name"),
    ):
        assert main([*base, "update", "ada@example.org", flag, value]) == 2
        assert says in _one_line_error(capsys)
    assert main([*base, "list", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["send_hour"], row["timezone"]) == (7, "Europe/Berlin")
    # "" goes back to the site's [schedule] time and zone
    assert main([*base, "update", "ada@example.org", "--send-hour", "", "--timezone", ""]) == 0
    capsys.readouterr()
    assert main([*base, "list", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["send_hour"], row["timezone"]) == (None, None)


def test_import_reports_bad_rows_by_line(tmp_path, capsys):
    f = tmp_path / "c.toml"
    f.write_text(f'[store]\npath = "{tmp_path / "st"}"\n')
    csv = tmp_path / "list.csv"
    rows = [f'u{i}@example.org,"topic {i % 7}, -survey",{1 + i % 9}' for i in range(10_000)]
    rows[41] = "broken-address,x,3"
    rows[99] = "ok@example.org,x,999"
    csv.write_text("email,keywords,max\n" + "\n".join(rows) + "\n")
    assert main(["--config", str(f), "subscribers", "import", str(csv)]) == 0
    cap = capsys.readouterr()
    assert "imported 9998 subscribers, skipped 2 bad rows" in cap.out
    assert f"{csv}:43: skipped:" in cap.err and f"{csv}:101: skipped:" in cap.err
    assert main(["--config", str(f), "subscribers", "list", "--json"]) == 0
    assert capsys.readouterr().out.count('"email"') == 9998


def test_check_config_validates_seeded_subscribers(tmp_path, capsys):
    f = tmp_path / "c.toml"
    f.write_text(
        f'[store]\npath = "{tmp_path / "st"}"\n'
        '[[subscribers]]\nemail = "ok@example.org"\n'
        '[[subscribers]]\nemail = "broken"\nkeywords = "x"\n'
    )
    assert main(["--config", str(f), "check-config"]) == 2
    assert "[subscribers #2] email" in _one_line_error(capsys)


def test_check_config_on_the_example(capsys):
    assert main(["--config", str(ROOT / "config" / "example.toml"), "check-config"]) == 0
    assert "config OK" in capsys.readouterr().out
