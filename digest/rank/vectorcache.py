"""I/O edge: the semantic model's vectors kept on disk, so a text is embedded once, not
once per run (an SQLite file in the store folder, `vectors.sqlite3`).

A vector is a pure function of its text and the model, so the cache is keyed by
sha256(model sha256, text) and any number of processes may share it: a cron run and the web
service, or yesterday's run and today's. Keywords change slowly and a paper stays in the
window for days, so a daily run embeds only the new papers and new keywords: at 10,000
subscribers with ~8,000 distinct keywords that is the difference between ~40 s and a few.

SQLite (standard library) gives atomic commits and locking between processes; WAL lets
readers go on while a writer commits. Rows unused for PRUNE_DAYS are dropped (at most once
per process), so the file stays proportional to the live keywords and the recent papers.
Any failure (a read-only folder, a damaged file) is logged once and the run goes on
without the disk cache: vectors are then computed in memory as before.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

PRUNE_DAYS = 45
_DAY = 86_400


def text_key(model: str, text: str) -> str:
    return hashlib.sha256(f"{model}\0{text}".encode()).hexdigest()


class VectorCache:
    """get / put float16 vectors by text; every method swallows (and logs) SQLite errors."""

    def __init__(self, path: Path, model: str, dim: int) -> None:
        self.path, self.model, self.dim = path, model, dim
        self._db: sqlite3.Connection | None = None
        self._pid = 0
        self._broken = False
        self._pruned = False
        # One connection per process, used by one thread at a time: the web service and
        # the run's builder thread rank in threads, and SQLite connections must not be
        # shared between threads unguarded nor carried across fork() (the builder child).
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection | None:
        if self._db is not None and self._pid != os.getpid():
            self._db = None  # inherited through fork: never touch it, open our own
        if self._db is None and not self._broken:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(
                    self.path, timeout=30, isolation_level=None, check_same_thread=False
                )
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS vec (k TEXT PRIMARY KEY, v BLOB NOT NULL,"
                    " used INTEGER NOT NULL)"
                )
                self._db, self._pid = db, os.getpid()
            except (sqlite3.Error, OSError) as e:
                self._fail(e)
        return self._db

    def _fail(self, e: Exception) -> None:
        if not self._broken:
            log.warning("vector cache %s not used: %s", self.path, e)
        self._broken = True
        if self._db is not None and self._pid == os.getpid():
            try:
                self._db.close()
            except sqlite3.Error:
                pass
        self._db = None

    def get(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vectors of those texts that have one (marked as used today)."""
        with self._lock:
            return self._get(texts)

    def put(self, vectors: Mapping[str, np.ndarray]) -> None:
        with self._lock:
            self._put(vectors)

    def _get(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        db = self._conn()
        if db is None or not texts:
            return {}
        keys = {text_key(self.model, t): t for t in texts}
        out: dict[str, np.ndarray] = {}
        today = int(time.time()) // _DAY
        try:
            ks = list(keys)
            for i in range(0, len(ks), 500):  # SQLite's bound-parameter limit
                part = ks[i : i + 500]
                marks = ",".join("?" * len(part))
                for k, blob in db.execute(f"SELECT k, v FROM vec WHERE k IN ({marks})", part):
                    v = np.frombuffer(blob, dtype=np.float16)
                    if v.shape == (self.dim,):
                        out[keys[k]] = v.astype(np.float32)
                db.execute(
                    f"UPDATE vec SET used = ? WHERE k IN ({marks}) AND used < ?",
                    [today, *part, today],
                )
        except sqlite3.Error as e:
            self._fail(e)
            return {}
        return out

    def _put(self, vectors: Mapping[str, np.ndarray]) -> None:
        db = self._conn()
        if db is None or not vectors:
            return
        today = int(time.time()) // _DAY
        rows: Iterable[tuple[str, bytes, int]] = (
            (text_key(self.model, t), np.asarray(v, dtype=np.float16).tobytes(), today)
            for t, v in vectors.items()
        )
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR REPLACE INTO vec (k, v, used) VALUES (?, ?, ?)", rows)
            if not self._pruned:
                db.execute("DELETE FROM vec WHERE used < ?", (today - PRUNE_DAYS,))
                self._pruned = True
            db.execute("COMMIT")
        except sqlite3.Error as e:
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            self._fail(e)
