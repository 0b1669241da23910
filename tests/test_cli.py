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


def test_import_reports_bad_rows_by_line_imports_the_rest_and_exits_1(tmp_path, capsys):
    f = tmp_path / "c.toml"
    f.write_text(f'[store]\npath = "{tmp_path / "st"}"\n')
    csv = tmp_path / "list.csv"
    rows = [f'u{i}@example.org,"topic {i % 7}, -survey",{1 + i % 9}' for i in range(10_000)]
    rows[41] = "broken-address,x,3"
    rows[99] = "ok@example.org,x,999"
    csv.write_text("email,keywords,max\n" + "\n".join(rows) + "\n")
    assert main(["--config", str(f), "subscribers", "import", str(csv)]) == 1
    cap = capsys.readouterr()
    assert "imported 9998 subscribers (9998 added, 0 updated)" in cap.out
    assert f"{csv}:43: skipped:" in cap.err and f"{csv}:101: skipped:" in cap.err
    assert cap.err.strip().splitlines()[-1] == (
        f"digest: error: {csv}: 2 bad rows skipped (listed above); the other rows were imported"
    )
    assert main(["--config", str(f), "subscribers", "list", "--json"]) == 0
    assert capsys.readouterr().out.count('"email"') == 9998


def test_import_reports_duplicate_rows_instead_of_last_wins(tmp_path, capsys):
    import json

    f = tmp_path / "c.toml"
    f.write_text(f'[store]\npath = "{tmp_path / "st"}"\n')
    csv = tmp_path / "list.csv"
    csv.write_text(
        "email,keywords,max\n"
        "ada@example.org,speech,3\n"
        "bob@example.org,vision,4\n"
        "Ada@example.org,robots,9\n"  # the same address again (case-insensitive)
    )
    assert main(["--config", str(f), "subscribers", "import", str(csv)]) == 1
    err = capsys.readouterr().err
    assert f"{csv}:4: skipped: Ada@example.org is already on line 2 (kept)" in err
    assert main(["--config", str(f), "subscribers", "list", "--json"]) == 0
    rows = {r["email"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["ada@example.org"]["keywords"] == ["speech"]  # the first row, not the last
    assert rows["ada@example.org"]["max"] == 3


def test_import_sniffs_a_semicolon_separated_file(tmp_path, capsys):
    """What a spreadsheet writes in locales with a decimal comma (Excel "CSV (;)")."""
    import json

    f = tmp_path / "c.toml"
    f.write_text(f'[store]\npath = "{tmp_path / "st"}"\n')
    csv = tmp_path / "list.csv"
    csv.write_bytes(
        "\ufeffemail;keywords;max\r\n"
        'ada@example.org;"speech recognition, "text-to-speech"";5\r\n'
        "bob@example.org;vision, -survey;\r\n".encode()
    )
    assert main(["--config", str(f), "subscribers", "import", str(csv)]) == 0
    assert "imported 2 subscribers (2 added, 0 updated)" in capsys.readouterr().out
    assert main(["--config", str(f), "subscribers", "list", "--json"]) == 0
    rows = {r["email"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["ada@example.org"]["keywords"] == ["speech recognition", "text-to-speech"]
    assert rows["ada@example.org"]["max"] == 5
    assert rows["bob@example.org"]["keywords"] == ["vision", "-survey"]
    assert rows["bob@example.org"]["max"] == 10


def test_import_updates_known_addresses_keeping_their_status(tmp_path, capsys):
    import json

    f = tmp_path / "c.toml"
    f.write_text(f'[store]\npath = "{tmp_path / "st"}"\n')
    base = ["--config", str(f), "subscribers"]
    assert main([*base, "add", "ada@example.org", "--keywords", "speech"]) == 0
    assert main([*base, "update", "ada@example.org", "--status", "paused"]) == 0
    csv = tmp_path / "list.csv"
    csv.write_text("email,keywords,max\nada@example.org,robots,4\nnew@example.org,x,2\n")
    capsys.readouterr()
    assert main([*base, "import", str(csv)]) == 0
    assert "imported 2 subscribers (1 added, 1 updated)" in capsys.readouterr().out
    assert main([*base, "list", "--json"]) == 0
    rows = {r["email"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["ada@example.org"]["status"] == "paused"  # paused stays paused
    assert rows["ada@example.org"]["keywords"] == ["robots"] and rows["ada@example.org"]["max"] == 4
    assert rows["new@example.org"]["status"] == "active"


def test_add_refuses_a_known_address_and_points_to_update(tmp_path, capsys):
    import json

    f = tmp_path / "c.toml"
    f.write_text(f'[store]\npath = "{tmp_path / "st"}"\n')
    base = ["--config", str(f), "subscribers"]
    assert main([*base, "add", "ada@example.org", "--keywords", "speech", "--max", "3"]) == 0
    capsys.readouterr()
    assert main([*base, "add", "ADA@example.org", "--keywords", "robots", "--max", "9"]) == 2
    err = _one_line_error(capsys)
    assert "ada@example.org is already a subscriber (active)" in err
    assert "digest subscribers update ada@example.org" in err
    assert main([*base, "list", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["keywords"], row["max"]) == (["speech"], 3)  # nothing replaced


def test_an_unsubscribed_address_comes_back_only_by_resubscribe(tmp_path, capsys):
    import json

    f = tmp_path / "c.toml"
    f.write_text(f'[store]\npath = "{tmp_path / "st"}"\n')
    base = ["--config", str(f), "subscribers"]

    def status() -> str:
        capsys.readouterr()
        assert main([*base, "list", "--json"]) == 0
        (row,) = json.loads(capsys.readouterr().out)
        return row["status"]

    assert main([*base, "add", "ada@example.org", "--keywords", "speech"]) == 0
    assert main([*base, "update", "ada@example.org", "--status", "unsubscribed"]) == 0
    capsys.readouterr()
    # add: refused, and says how she comes back
    assert main([*base, "add", "ada@example.org"]) == 2
    err = _one_line_error(capsys)
    assert "ada@example.org unsubscribed" in err and "--resubscribe" in err
    # a status alone does not bring her back
    for st in ("active", "paused"):
        assert main([*base, "update", "ada@example.org", "--status", st]) == 2
        assert "--resubscribe" in _one_line_error(capsys)
    assert status() == "unsubscribed"
    # import: skipped and reported, not re-activated (and not a bad row: exit 0)
    csv = tmp_path / "list.csv"
    csv.write_text("email,keywords,max\nada@example.org,robots,4\n")
    assert main([*base, "import", str(csv)]) == 0
    cap = capsys.readouterr()
    assert f"{csv}: skipped ada@example.org: unsubscribed" in cap.err
    assert "imported 0 subscribers (0 added, 0 updated), skipped 1 unsubscribed" in cap.out
    assert status() == "unsubscribed"
    # the explicit way back
    assert main([*base, "update", "ada@example.org", "--resubscribe"]) == 0
    assert "updated ada@example.org: active again" in capsys.readouterr().out
    assert status() == "active"
    assert main([*base, "update", "ada@example.org", "--resubscribe"]) == 2  # not unsubscribed
    assert "is active, not unsubscribed" in _one_line_error(capsys)


def _leaf_commands(parser: argparse.ArgumentParser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _leaf_commands(sub, (*prefix, name))


def test_config_is_accepted_after_every_subcommand():
    for cmd, sub in _leaf_commands(build_parser()):
        assert any("--config" in a.option_strings for a in sub._actions), cmd


def test_config_after_the_subcommand_works_and_wins(tmp_path, capsys):
    one, two = tmp_path / "one.toml", tmp_path / "two.toml"
    one.write_text(f'[store]\npath = "{tmp_path / "st1"}"\n')
    two.write_text(f'[store]\npath = "{tmp_path / "st2"}"\n')
    assert main(["subscribers", "add", "ada@example.org", "--config", str(one)]) == 0
    assert main(["subscribers", "list", "--config", str(one)]) == 0
    assert "ada@example.org" in capsys.readouterr().out
    # before and after: the one nearer the command wins; before alone still works
    assert main(["--config", str(one), "subscribers", "list", "--config", str(two)]) == 0
    assert "no subscribers" in capsys.readouterr().out
    assert main(["--config", str(one), "subscribers", "list"]) == 0
    assert "ada@example.org" in capsys.readouterr().out
    # plugins' commands too
    assert main(["status", "--config", str(one)]) == 0
    assert "ada@example.org" in capsys.readouterr().out
    assert main(["check-config", "--config", str(two)]) == 0
    assert capsys.readouterr().out.strip().endswith(f"config OK: {two}")
    assert main(["run", "--dry-run", "--config", str(one), "--date", "x"]) == 2
    assert "--date" in _one_line_error(capsys)


def test_keywords_starting_with_a_dash_need_no_equals(tmp_path, capsys):
    import json

    from digest.cli import join_dash_values

    f = tmp_path / "c.toml"
    f.write_text(f'[store]\npath = "{tmp_path / "st"}"\n')
    base = ["--config", str(f), "subscribers"]
    assert main([*base, "add", "ada@example.org", "--keywords", "-survey", "--max", "3"]) == 0
    assert main([*base, "update", "ada@example.org", "--keywords", "-survey, asr"]) == 0
    capsys.readouterr()
    assert main([*base, "list", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["keywords"] == ["-survey", "asr"] and row["max"] == 3
    # "--max" after --keywords is the next option, not a value; "--" ends the options
    assert join_dash_values(["--keywords", "--max", "3"]) == ["--keywords", "--max", "3"]
    assert join_dash_values(["--keywords", "-x", "--", "--keywords", "-y"]) == [
        "--keywords=-x",
        "--",
        "--keywords",
        "-y",
    ]


def test_without_any_config_it_says_which_config_and_store(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DIGEST_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["subscribers", "list"]) == 0
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        "digest: no config file (--config FILE or $DIGEST_CONFIG): built-in defaults, "
        f"store {tmp_path / 'data'}, outbox {tmp_path / 'outbox'}"
    )
    f = tmp_path / "c.toml"
    f.write_text(f'[store]\npath = "{tmp_path / "st"}"\n')
    assert main(["subscribers", "list", "--config", str(f)]) == 0
    assert capsys.readouterr().err == ""  # a named config: nothing to say


def test_check_config_validates_seeded_subscribers(tmp_path, capsys):
    f = tmp_path / "c.toml"
    f.write_text(
        f'[store]\npath = "{tmp_path / "st"}"\n'
        '[[subscribers]]\nemail = "ok@example.org"\n'
        '[[subscribers]]\nemail = "broken"\nkeywords = "x"\n'
    )
    assert main(["--config", str(f), "check-config"]) == 2
    cap = capsys.readouterr()
    assert "config OK" not in cap.out
    problem, summary = cap.err.strip().splitlines()
    assert "[subscribers #2] email" in problem
    assert summary == f"digest: error: {f}: config NOT OK: 1 problem (above)"


def test_check_config_on_the_example(capsys):
    assert main(["--config", str(ROOT / "config" / "example.toml"), "check-config"]) == 0
    assert "config OK" in capsys.readouterr().out
