"""Issue 9 section 3: `[[subscribers]]` seeds are applied once.

Before: every run re-added the seeds the store did not know, so `subscribers remove`
came undone at the next run; editing a seed changed nothing either (silently). Now a seed
is applied by the first run that sees it and remembered in the store; afterwards the CLI
and the web own that subscriber. Driven through the real CLI (`digest run`, `digest
subscribers ...`) over a real TinyDB store, sources on the local fixture server.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from httpfixture import FixtureServer

from digest.cli import main
from digest.errors import StoreError
from digest.pipeline import SEEDS_META, seed_subscribers
from digest.store import open_store


def write_config(path: Path, tmp: Path, hf_url: str, seeds: list[tuple[str, str]]) -> Path:
    lines = [
        "[sources]",
        "offline_fallback = false",
        "[sources.huggingface]",
        f'base_url = "{hf_url}"',
        "lookback_days = 1",
        "[sources.arxiv]",
        "categories = []",
        "[store]",
        f'path = "{tmp / "data"}"',
        "[outbox]",
        f'path = "{tmp / "outbox"}"',
    ]
    for email, keywords in seeds:
        lines += ["[[subscribers]]", f'email = "{email}"', f'keywords = "{keywords}"']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def listed(capsys, cfg: Path) -> dict[str, dict]:
    capsys.readouterr()
    assert main(["--config", str(cfg), "subscribers", "list", "--json"]) == 0
    return {s["email"]: s for s in json.loads(capsys.readouterr().out)}


def test_seeds_apply_once_removal_sticks_and_edits_change_nothing(tmp_path, capsys):
    with FixtureServer() as fx:
        cfg = write_config(
            tmp_path / "digest.toml",
            tmp_path,
            fx.hf_base_url,
            [("ada@example.org", "reasoning"), ("bob@example.org", "agents")],
        )
        run = ["--config", str(cfg), "run", "--date", "2026-01-06"]
        assert main(run) == 0
        subs = listed(capsys, cfg)
        assert set(subs) == {"ada@example.org", "bob@example.org"}

        # The CLI owns them now: remove one, change the other.
        assert main(["--config", str(cfg), "subscribers", "remove", "bob@example.org"]) == 0
        assert (
            main(
                [
                    "--config",
                    str(cfg),
                    "subscribers",
                    "update",
                    "ada@example.org",
                    "--keywords",
                    "speech",
                ]
            )
            == 0
        )
        # The seed is edited in the file too, and a new seed appears.
        write_config(
            cfg,
            tmp_path,
            fx.hf_base_url,
            [
                ("ada@example.org", "diffusion"),
                ("bob@example.org", "agents"),
                ("cy@example.org", "robots"),
            ],
        )
        assert main(["--config", str(cfg), "run", "--date", "2026-01-07"]) == 0
        subs = listed(capsys, cfg)
        assert "bob@example.org" not in subs  # removal sticks
        assert subs["ada@example.org"]["keywords"] == ["speech"]  # the CLI's change wins
        assert subs["cy@example.org"]["keywords"] == ["robots"]  # a new seed: applied once
        assert main(["--config", str(cfg), "run", "--date", "2026-01-08"]) == 0
        assert set(listed(capsys, cfg)) == {"ada@example.org", "cy@example.org"}


def test_a_seed_the_store_already_knows_is_only_remembered(tmp_path):
    from dataclasses import replace
    from datetime import UTC, datetime

    from digest.config import Config, SeedSubscriber, StoreConfig
    from digest.models import UNSUBSCRIBED, Subscriber

    cfg = replace(
        Config(),
        store=StoreConfig(path=tmp_path / "data", fsync=False),
        subscribers=(SeedSubscriber(email="Ann@example.org", keywords="x"),),
    )
    store = open_store(cfg.store)
    try:
        store.put_subscribers([Subscriber(email="ann@example.org", status=UNSUBSCRIBED)])
        clock = lambda: datetime(2026, 1, 6, tzinfo=UTC)  # noqa: E731
        assert seed_subscribers(cfg, store, clock) == 0
        assert store.get_subscriber("ann@example.org").status == UNSUBSCRIBED
        assert json.loads(store.get_meta(SEEDS_META)) == ["ann@example.org"]
        store.remove_subscriber("ann@example.org")
        assert seed_subscribers(cfg, store, clock) == 0 and store.subscribers() == []
        store.set_meta(SEEDS_META, "{not json")
        with pytest.raises(StoreError, match="seeds"):
            seed_subscribers(cfg, store, clock)
    finally:
        store.close()
