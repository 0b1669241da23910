"""I/O edge: the `digest store` subcommands (wired by digest.cli): export and import.

    digest store export FILE            everything the store holds, as JSON lines ("-": stdout)
    digest store import FILE [--replace]   into an empty store (or replacing its content)
    digest store migrate                create or upgrade the PostgreSQL schema

The export is the backup of the TinyDB store and how a store moves to another backend.
It holds subscriber addresses and the token-signing secret: the file is created 0600.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from digest.config import Config
from digest.errors import InputError


def register(subparsers: Any) -> None:
    s = subparsers.add_parser(
        "store",
        help="back up, restore or move the store (export / import JSON lines)",
        description="Export the whole store (subscribers, seen papers, digest records, run "
        "reports, the web's mail queue and limits, the signing secret) as JSON lines, or "
        "import such a file into an empty store: the backup story, and how a store moves "
        "between backends.",
    )
    ss = s.add_subparsers(dest="subcommand", metavar="ACTION")
    ss.required = True
    ex = ss.add_parser("export", help="write everything the store holds to FILE (JSON lines)")
    ex.add_argument("file", help='output file ("-": standard output); created 0600')
    ex.set_defaults(func=cmd_export)
    im = ss.add_parser("import", help="load an export into an empty store")
    im.add_argument("file", help='an export file ("-": standard input)')
    im.add_argument(
        "--replace",
        action="store_true",
        help="replace the content of a store that is not empty (e.g. restore a backup)",
    )
    im.set_defaults(func=cmd_import)
    mg = ss.add_parser(
        "migrate",
        help="create or upgrade the database schema (PostgreSQL; every command also "
        "applies what is missing at start)",
    )
    mg.set_defaults(func=cmd_migrate)


def cmd_migrate(cfg: Config, args: argparse.Namespace) -> int:
    if cfg.store.backend != "postgresql":
        print(f"nothing to migrate: the TinyDB store ({cfg.store.path}) has no schema")
        return 0
    from digest.store.postgres import PgStore, migrations

    store = PgStore(cfg.store)  # applies what is missing, or refuses a newer database
    try:
        version = store.schema_version()
    finally:
        store.close()
    done = ", ".join(str(v) for v in store.applied)
    what = f"applied migration(s) {done}" if done else "already up to date"
    print(f"{store.where}: schema version {version} of {len(migrations())} ({what})")
    return 0


def cmd_export(cfg: Config, args: argparse.Namespace) -> int:
    from digest.store import open_store
    from digest.store.files import atomic_write
    from digest.store.transfer import lines

    store = open_store(cfg.store)
    try:
        data = b"".join(lines(store.export_items(), datetime.now(UTC)))
    finally:
        store.close()
    count = data.count(b"\n") - 1
    if args.file == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        path = Path(args.file)
        try:
            os.close(atomic_write(path, data, fsync=True))  # 0600, never half written
        except OSError as e:
            raise InputError(f"{path}: cannot write: {e.strerror}") from e
        print(f"exported {count} records to {path}")
    return 0


def _read(name: str) -> Iterator[bytes]:
    if name == "-":
        yield from sys.stdin.buffer
        return
    try:
        with open(name, "rb") as f:
            yield from f
    except OSError as e:
        raise InputError(f"{name}: cannot read: {e.strerror}") from e


def cmd_import(cfg: Config, args: argparse.Namespace) -> int:
    from digest.store import open_store
    from digest.store.transfer import parse

    items = parse(_read(args.file), "standard input" if args.file == "-" else args.file)
    store = open_store(cfg.store)
    try:
        n = store.import_items(items, replace=args.replace)
    finally:
        store.close()
    where = getattr(store, "where", cfg.store.path)
    print(f"imported {n} records into {where}")
    return 0
