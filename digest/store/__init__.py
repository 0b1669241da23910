"""I/O edge: where everything the product remembers lives.

`open_store(cfg)` returns the configured backend (TinyDB, the embedded default). The
pipeline and the web service only see the `Store` protocol in `digest.store.base`.
"""

from __future__ import annotations

from digest.config import StoreConfig
from digest.store.base import Store


def open_store(cfg: StoreConfig) -> Store:
    from digest.store.tinydb import TinyStore

    return TinyStore(cfg)


__all__ = ["Store", "open_store"]
