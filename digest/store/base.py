"""Pure: the storage interface. A PostgreSQL backend implements the same protocol.

Semantics every backend must keep:
- `record_digest` is durable when it returns (survives kill -9 of the process): it is
  called right after the SMTP server accepted a message, and is what makes "every paper
  exactly once" hold through crashes.
- Writers in other processes (the web service) never lose each other's changes.
- `run_lock` is an inter-process lock: two runs never interleave.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import date
from typing import Any, Protocol

from digest.models import Paper, Subscriber

# record_digest's arguments: digest_id, email, day, state, paper_ids, detail
RecordArgs = tuple[str, str, date, str, Sequence[str], str]


class Store(Protocol):
    # --- lifecycle
    def close(self) -> None: ...
    def flush(self) -> None: ...
    def run_lock(self, wait: bool = False) -> AbstractContextManager[None]:
        """Held for a whole run. Raises StoreLocked when taken and `wait` is False."""
        ...

    def secret(self) -> str:
        """A random token-signing secret, made once and kept beside the data (0600)."""
        ...

    # --- subscribers
    def subscribers(self) -> list[Subscriber]: ...
    def get_subscriber(self, email: str) -> Subscriber | None: ...
    def put_subscribers(self, subs: Iterable[Subscriber]) -> None:
        """Insert or replace by email, all in one write."""
        ...

    def remove_subscriber(self, email: str) -> bool: ...

    # --- seen-store
    def record_seen(self, papers: Sequence[Paper], day: date) -> dict[str, date]:
        """Remember `papers` (first seen on `day` unless already known); keep their
        details for `history_days`. Returns each given paper's first-seen day."""
        ...

    def first_seen(self, ids: Iterable[str]) -> dict[str, date]:
        """Read-only: the first-seen day of each known id (unknown ids are absent)."""
        ...

    def recent_papers(self, since: date) -> list[Paper]:
        """Papers first seen on or after `since` whose details are still kept."""
        ...

    def get_papers(self, ids: Iterable[str]) -> dict[str, Paper]: ...

    # --- delivery records
    def digests_for_day(self, day: date) -> dict[str, str]:
        """email -> state (models.SENT / FAILED / DEFERRED / EMPTY) of that day's digests."""
        ...

    def delivered_since(self, since: date) -> dict[str, set[str]]:
        """email -> ids of papers in digests SENT on or after `since`."""
        ...

    def record_digest(
        self,
        digest_id: str,
        email: str,
        day: date,
        state: str,
        paper_ids: Sequence[str] = (),
        detail: str = "",
    ) -> None:
        """Durable on return (journal append). A later record for the same digest_id wins."""
        ...

    def record_digests(self, records: Sequence[RecordArgs]) -> None:
        """`record_digest(*args)` for each of `records`, durable on return with ONE journal
        append and sync for all (group commit: the delivery loop's connections share it)."""
        ...

    def history(self, email: str, limit: int = 30) -> list[dict[str, Any]]:
        """The subscriber's digest records, newest first:
        {"id", "day", "state", "papers": [ids], "at", "detail"}."""
        ...

    def pending_retries(self) -> list[dict[str, Any]]:
        """Digest records whose latest state is DEFERRED (waiting for the next run)."""
        ...

    # --- runs
    def record_run(self, report: dict[str, Any]) -> None: ...
    def runs(self, limit: int = 10) -> list[dict[str, Any]]: ...

    # --- housekeeping
    def prune(self, today: date) -> None:
        """Drop what retention no longer needs (see StoreConfig)."""
        ...

    def finish_run(self, report: dict[str, Any], today: date) -> None:
        """The end of a run: `record_run(report)`, `prune(today)` and `flush()` in one
        commit (a backend may write them together; the effect is the same)."""
        ...


def iter_chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
