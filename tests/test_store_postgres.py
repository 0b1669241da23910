"""The PostgreSQL store beyond the contract: its schema migrations, its configuration
errors, and moving a TinyDB store to it with the real CLI. A real server
(tests/pgserver.py); skipped where PostgreSQL is not installed, a failure under CI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pgserver
import psycopg
import pytest
from test_store_cli import dump, fill

from digest.cli import main
from digest.config import StoreConfig, load_config
from digest.errors import StoreError
from digest.models import RunReport, Subscriber
from digest.store import open_store
from digest.store.postgres import PgStore, migrations

ENV = "DIGEST_TEST_PG_URL"
DAY = date(2026, 1, 5)


@pytest.fixture
def url() -> Iterator[str]:
    with pgserver.database() as u:
        os.environ[ENV] = u
        try:
            yield u
        finally:
            os.environ.pop(ENV, None)


def pg_config(tmp_path: Path, name: str = "pg") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'[store]\nbackend = "postgresql"\nurl_env = "{ENV}"\npath = "{tmp_path / name}"\n',
        encoding="utf-8",
    )
    return path


def versions(url: str) -> list[int]:
    with psycopg.connect(url) as c:
        return [r[0] for r in c.execute("SELECT version FROM digest_schema ORDER BY version")]


def test_schema_is_created_at_first_open_and_then_left_alone(url: str) -> None:
    cfg = StoreConfig(backend="postgresql", url_env=ENV)
    first = PgStore(cfg)
    assert first.applied == [v for v, _, _ in migrations()] and first.applied[0] == 1
    first.put_subscribers([Subscriber("a@x.org")])
    first.close()
    again = PgStore(cfg)
    assert again.applied == [] and again.schema_version() == len(migrations())
    assert again.get_subscriber("a@x.org") is not None  # data kept
    again.close()
    assert versions(url) == list(range(1, len(migrations()) + 1))


def test_a_database_newer_than_the_code_is_refused(url: str) -> None:
    PgStore(StoreConfig(backend="postgresql", url_env=ENV)).close()
    with psycopg.connect(url) as c:
        c.execute("INSERT INTO digest_schema (version) VALUES (999)")
    with pytest.raises(StoreError, match="schema is version 999, newer than this digest") as e:
        open_store(StoreConfig(backend="postgresql", url_env=ENV))
    assert "\n" not in str(e.value)


def test_digest_store_migrate(url: str, tmp_path: Path, capsys) -> None:
    conf = pg_config(tmp_path)
    assert main(["--config", str(conf), "store", "migrate"]) == 0
    out = capsys.readouterr().out
    assert f"schema version {len(migrations())} of {len(migrations())}" in out
    assert "applied migration(s) 1" in out
    assert main(["--config", str(conf), "store", "migrate"]) == 0
    assert "already up to date" in capsys.readouterr().out
    tiny = tmp_path / "tiny.toml"
    tiny.write_text(f'[store]\npath = "{tmp_path / "t"}"\n', encoding="utf-8")
    assert main(["--config", str(tiny), "store", "migrate"]) == 0
    assert "nothing to migrate" in capsys.readouterr().out


def test_missing_url_variable_is_one_clear_line(tmp_path: Path, capsys) -> None:
    os.environ.pop(ENV, None)
    conf = pg_config(tmp_path)
    assert main(["--config", str(conf), "subscribers", "list"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"environment variable {ENV} is not set" in err
    assert main(["--config", str(conf), "check-config"]) != 0
    assert f"{ENV} is not set" in capsys.readouterr().err


def test_unreachable_server_is_one_clear_line(tmp_path: Path, capsys) -> None:
    os.environ[ENV] = f"postgresql://digest@/nodb?host={tmp_path}&connect_timeout=2"
    try:
        assert main(["--config", str(pg_config(tmp_path)), "subscribers", "list"]) != 0
    finally:
        os.environ.pop(ENV, None)
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cannot connect" in err and "nodb" in err


def test_check_config_connect_reports_the_schema(url: str, tmp_path: Path, capsys) -> None:
    conf = pg_config(tmp_path)
    conf.write_text(
        conf.read_text() + '[sources.huggingface]\nbase_url = "http://127.0.0.1:9"\n',
        encoding="utf-8",
    )
    main(["--config", str(conf), "check-config", "--connect"])
    out = capsys.readouterr().out
    assert f"schema version {len(migrations())}" in out and "store: postgresql" in out


def test_a_tinydb_store_moves_to_postgresql_with_export_and_import(
    url: str, tmp_path: Path, capsys
) -> None:
    src = tmp_path / "src.toml"
    src.write_text(f'[store]\npath = "{tmp_path / "src"}"\nfsync = false\n', encoding="utf-8")
    fill(src)
    backup = tmp_path / "backup.jsonl"
    assert main(["--config", str(src), "store", "export", str(backup)]) == 0
    dst = pg_config(tmp_path)
    assert main(["--config", str(dst), "store", "import", str(backup)]) == 0
    assert "into postgresql database" in capsys.readouterr().out
    assert dump(dst) == dump(src)  # everything, the secret and subscriber ids included
    # and back: PostgreSQL -> TinyDB
    again = tmp_path / "again.jsonl"
    assert main(["--config", str(dst), "store", "export", str(again)]) == 0
    back = tmp_path / "back.toml"
    back.write_text(f'[store]\npath = "{tmp_path / "back"}"\nfsync = false\n', encoding="utf-8")
    assert main(["--config", str(back), "store", "import", str(again)]) == 0
    assert dump(back) == dump(src)
    assert load_config(dst).store.backend == "postgresql"


def test_a_dry_run_claims_nothing(url: str) -> None:
    cfg = StoreConfig(backend="postgresql", url_env=ENV)
    s = PgStore(cfg)
    s.put_subscribers([Subscriber(f"u{i}@x.org") for i in range(5)])
    with s.run(DAY, RunReport(day=DAY, dry_run=True)) as dry:
        assert len(dry.claim()) == 5 and dry.claim() == []  # each due subscriber once
        other = PgStore(cfg)
        with other.run(DAY, RunReport(day=DAY)) as real:
            assert len(real.claim()) == 5  # the dry run held none of them
        other.close()
    s.close()
