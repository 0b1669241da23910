"""`digest store export FILE` / `digest store import FILE`: the backup, and the way a store
moves between backends. Real CLI (digest.cli.main), real stores in tmp_path."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from digest.cli import main
from digest.config import Limit, load_config
from digest.models import SENT, DeliveryRecord, OutgoingMessage, Paper, RunReport, Subscriber
from digest.store import open_store

DAY = date(2026, 1, 5)
NOW = datetime(2026, 1, 5, 6, tzinfo=UTC)


def config(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'[store]\npath = "{tmp_path / name}"\nfsync = false\n', encoding="utf-8")
    return path


def fill(cfg_path: Path) -> None:
    s = open_store(load_config(cfg_path).store)
    try:
        s.put_subscribers([Subscriber("ann@example.org", ("llm",)), Subscriber("bo@example.org")])
        s.record_seen([Paper("2601.00001", "T", "A", upvotes=4)], DAY)
        with s.run(DAY, RunReport(day=DAY, sent=1)) as run:
            run.record(DeliveryRecord("d1", "ann@example.org", DAY, SENT, ("2601.00001",)))
        s.enqueue(OutgoingMessage("web-1", "bo@example.org", "d@x", "<1@x>", b"hi\r\n"), NOW)
        s.hit_limit("ip:127.0.0.1", Limit(5, 3600), NOW)
        s.set_meta("seeds", "[]")
        s.secret()
    finally:
        s.close()


def dump(cfg_path: Path) -> list[str]:
    s = open_store(load_config(cfg_path).store)
    try:
        return sorted(repr(i) for i in s.export_items())
    finally:
        s.close()


def test_export_then_import_moves_everything(tmp_path: Path, capsys) -> None:
    src, dst = config(tmp_path, "src"), config(tmp_path, "dst")
    fill(src)
    out = tmp_path / "backup.jsonl"
    assert main(["--config", str(src), "store", "export", str(out)]) == 0
    assert capsys.readouterr().out.startswith("exported ")
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600  # addresses and the secret inside
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert lines[0]["type"] == "digest-store" and lines[0]["version"] == 1
    kinds = {x["type"] for x in lines[1:]}
    assert kinds == {"secret", "meta", "subscriber", "seen", "digest", "run", "mail", "limit"}
    assert main(["--config", str(dst), "store", "import", str(out)]) == 0
    assert "imported" in capsys.readouterr().out
    assert dump(dst) == dump(src)
    # the moved store goes on working: links signed by the old secret still verify
    s, t = open_store(load_config(src).store), open_store(load_config(dst).store)
    assert s.secret() == t.secret()
    assert t.claim_mail(NOW)[0].message.to == "bo@example.org"
    s.close()
    t.close()


def test_import_refuses_a_store_that_is_not_empty_unless_replace(tmp_path: Path, capsys) -> None:
    src, dst = config(tmp_path, "src"), config(tmp_path, "dst")
    fill(src)
    out = tmp_path / "backup.jsonl"
    main(["--config", str(src), "store", "export", str(out)])
    s = open_store(load_config(dst).store)
    s.put_subscribers([Subscriber("other@example.org")])
    s.close()
    capsys.readouterr()
    assert main(["--config", str(dst), "store", "import", str(out)]) == 4
    err = capsys.readouterr().err.strip()
    assert "not empty" in err and "--replace" in err and "\n" not in err
    assert main(["--config", str(dst), "store", "import", "--replace", str(out)]) == 0
    assert dump(dst) == dump(src)  # other@ is gone: the content was replaced


@pytest.mark.parametrize(
    "bad, why",
    [
        ('{"type": "subscriber", "email": "x@example.org", "max_papers": "ten"}', "max_papers"),
        ('{"type": "subscriber", "email": "x@example.org", "status": "zombie"}', "status"),
        ('{"type": "digest", "email": "x@example.org"}', "missing"),
        ('{"type": "planet", "name": "Mars"}', "unknown record type"),
        ("{not json", "not a JSON line"),
    ],
)
def test_a_bad_line_is_named_and_nothing_is_imported(tmp_path: Path, capsys, bad, why) -> None:
    src, dst = config(tmp_path, "src"), config(tmp_path, "dst")
    fill(src)
    out = tmp_path / "backup.jsonl"
    main(["--config", str(src), "store", "export", str(out)])
    lines = out.read_text(encoding="utf-8").splitlines()
    lines.insert(3, bad)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["--config", str(dst), "store", "import", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "backup.jsonl:4: " in err and why in err and "\n" not in err
    s = open_store(load_config(dst).store)
    assert s.is_empty()  # the good lines before it were not imported either
    s.close()


def test_other_versions_and_other_files_are_refused(tmp_path: Path, capsys) -> None:
    dst = config(tmp_path, "dst")
    newer = tmp_path / "newer.jsonl"
    newer.write_text('{"type": "digest-store", "version": 2}\n', encoding="utf-8")
    assert main(["--config", str(dst), "store", "import", str(newer)]) == 2
    assert "version 2" in capsys.readouterr().err
    csv = tmp_path / "people.csv"
    csv.write_text('{"email": "a@example.org"}\n', encoding="utf-8")
    assert main(["--config", str(dst), "store", "import", str(csv)]) == 2
    assert "not a digest store export" in capsys.readouterr().err
    assert main(["--config", str(dst), "store", "import", str(tmp_path / "missing")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_export_to_standard_output(tmp_path: Path, capsys) -> None:
    src = config(tmp_path, "src")
    fill(src)
    assert main(["--config", str(src), "store", "export", "-"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert json.loads(first)["type"] == "digest-store"
