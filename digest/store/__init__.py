"""I/O edge: where everything the product remembers lives.

`open_store(cfg)` returns the configured backend (TinyDB, the embedded default, or PostgreSQL). The
pipeline, the web service and the CLI only see the `Store` protocol in `digest.store.base`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from digest.config import StoreConfig
from digest.store.base import Change, Run, Store


def open_store(cfg: StoreConfig, *, clock: Callable[[], float] = time.time) -> Store:
    """`clock` (epoch seconds) stamps delivery records and drives retention (tests)."""
    if cfg.backend == "postgresql":
        from digest.store.postgres import PgStore

        return PgStore(cfg, clock=clock)
    from digest.store.tinydb import TinyStore

    return TinyStore(cfg, clock=clock)


__all__ = ["Change", "Run", "Store", "open_store"]
