"""I/O edge: crash-safe files in the store folder.

- `AtomicJSONStorage`: a TinyDB Storage that keeps the whole document in memory and
  writes it atomically (temp file in the same folder, fsync, os.replace, fsync of the
  folder), as compact JSON. TinyDB's own JSONStorage truncates and rewrites the file in
  place: a crash mid-write leaves a cut file and the data is gone.
  Change detection is a cheap stat: every write replaces the file with a new inode, and
  we keep the file we read open, so its inode number cannot be reused while we compare.
- `Journal`: an append-only JSON-lines file; one `os.write` per record (so it survives
  kill -9 as soon as it returns: the bytes are in the page cache), plus fdatasync when
  fsync is on (survives power loss). A torn last line is ignored on replay.
- `FlockLock`: the store lock, an flock on a file kept open (two syscalls per round).
- `read_secret` / `write_secret`: the token-signing secret beside the data (0600).
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import os
import secrets
import tempfile
import time
import typing
from pathlib import Path
from typing import Any

import orjson
from tinydb.storages import Storage

from digest.errors import StoreError


class FlockLock:
    """An exclusive advisory lock (flock) on `path`, re-entrant within one holder.

    The lock file is opened once and kept open, so a round of acquire/release is two
    syscalls, ~1 us. filelock's FileLock (still used for run.lock and serve.lock, taken
    once per run) opens and closes the file and does its own bookkeeping every time,
    ~80 us a round; the store lock is taken once per delivery record, so that was two
    thirds of a record's CPU (bench/README.md). Threads must be serialised by the caller
    (TinyStore holds its mutex around every use). flock belongs to the open file, so a
    forked child must close the descriptor (digest/overlap.py does) rather than unlock."""

    def __init__(self, path: Path, poll: float = 0.005) -> None:
        self.path = path
        self.poll = poll
        self._fd: int | None = None
        self._depth = 0

    def acquire(self, timeout: float) -> None:
        """Raises TimeoutError after `timeout` seconds, OSError if the file cannot be
        opened or locked."""
        if self._depth:
            self._depth += 1
            return
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"{self.path}: held by another process") from None
                time.sleep(self.poll)
        self._depth = 1

    def release(self) -> None:
        if self._depth == 0:
            return
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # also drops the lock if still held
            self._fd, self._depth = None, 0


@contextlib.contextmanager
def _gc_paused() -> Any:
    """Parsing a store file creates ~10^5 containers and no cycles: without the cyclic
    GC meanwhile, loading a full 2.5 MB history takes half the time."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def fsync_dir(folder: Path) -> None:
    """Make a rename/create in `folder` durable (POSIX: the directory entry is data too)."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def atomic_write(path: Path, data: bytes, fsync: bool) -> int:
    """Replace `path` with `data` atomically; returns an open read fd of the new file.

    The temp file is created 0600 (mkstemp): the store holds subscriber addresses."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        write_all(fd, data)
        if fsync:
            os.fsync(fd)
        os.replace(tmp, path)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync:
        fsync_dir(path.parent)
    return fd


def remove_stale_temps(folder: Path, names: tuple[str, ...]) -> None:
    """Temp files left by a writer killed mid-write. Call with the store lock held."""
    for entry in os.scandir(folder):
        if entry.name.endswith(".tmp") and any(entry.name.startswith(f".{n}.") for n in names):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def read_secret(path: Path, *, create: bool) -> str:
    """The token-signing secret kept in `path` (0600; made when missing and `create`,
    else ""). Call with the store lock held."""
    try:
        value = path.read_text(encoding="ascii").strip()
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, 0o600)  # it signs every unsubscribe/manage link
    except FileNotFoundError:
        if not create:
            return ""
        value = secrets.token_urlsafe(32)
        write_secret(path, value)
    except (OSError, UnicodeDecodeError) as e:
        raise StoreError(f"{path}: cannot read the secret: {e}") from e
    if not value:
        raise StoreError(f"{path}: the secret file is empty; restore it from a backup")
    return value


def write_secret(path: Path, value: str) -> None:
    try:
        os.close(atomic_write(path, value.encode() + b"\n", fsync=True))
    except OSError as e:
        raise StoreError(f"{path}: cannot write the secret: {e.strerror}") from e


def _ident(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class AtomicJSONStorage(Storage):
    """TinyDB storage: reads come from memory; `write` only marks the data dirty and
    `commit` puts it on disk, so a batch of TinyDB operations is one atomic write.
    `refresh` reloads when another process replaced the file (the caller holds the
    store lock for read-modify-write cycles)."""

    def __init__(self, path: Path, fsync: bool = True) -> None:
        self.path = path
        self.fsync = fsync
        self.version = 0  # bumped whenever the in-memory data changes wholesale
        self._data: dict[str, Any] = {}
        self._fd: int | None = None
        self._ident: tuple[int, int, int, int] | None = None
        self._stale = True
        self._dirty = False

    # --- the TinyDB Storage interface
    def read(self) -> dict[str, Any]:
        return self._data

    def write(self, data: dict[str, Any]) -> None:
        self._data = data
        self._dirty = True

    def close(self) -> None:
        """TinyDB wrappers around this storage are transient; `shutdown` closes it."""

    # --- ours
    def refresh(self) -> bool:
        """Reload if the file changed on disk since we read or wrote it."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._ident is None and not self._stale:
                return False
            self._swap({}, None, None)
            return True
        except OSError as e:
            raise StoreError(f"{self.path}: cannot read store file: {e.strerror}") from e
        if not self._stale and _ident(st) == self._ident:
            return False
        self._load()
        return True

    def _load(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            self._swap({}, None, None)
            return
        except OSError as e:
            raise StoreError(f"{self.path}: cannot read store file: {e.strerror}") from e
        try:
            st = os.fstat(fd)
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            data = self._parse(b"".join(chunks))
        except BaseException:
            os.close(fd)
            raise
        self._swap(data, fd, _ident(st))

    def _parse(self, raw: bytes) -> dict[str, Any]:
        if not raw.strip():
            return {}  # an empty file holds no data (TinyDB's convention)
        try:
            with _gc_paused():
                data = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            why = (
                "not UTF-8" if "UTF-8" in e.msg else f"{e.msg} at line {e.lineno} column {e.colno}"
            )
            raise StoreError(
                f"{self.path}: corrupt store file ({why}); restore it from a backup or move it away"
            ) from e
        ok = isinstance(data, dict) and all(
            isinstance(t, dict) and all(k.isdigit() and isinstance(d, dict) for k, d in t.items())
            for t in data.values()
        )
        if not ok:
            raise StoreError(
                f"{self.path}: corrupt store file (not a TinyDB document); "
                "restore it from a backup or move it away"
            )
        return typing.cast(dict[str, Any], data)

    def commit(self) -> None:
        if not self._dirty:
            return
        try:
            raw = orjson.dumps(self._data, option=orjson.OPT_NON_STR_KEYS)
        except (TypeError, ValueError) as e:
            self.invalidate()
            raise StoreError(f"{self.path}: cannot store a value: {e}") from e
        try:
            fd = atomic_write(self.path, raw, self.fsync)
        except OSError as e:
            self.invalidate()
            raise StoreError(f"{self.path}: cannot write store file: {e.strerror}") from e
        self._swap(self._data, fd, _ident(os.fstat(fd)))

    @property
    def size(self) -> int:
        """Bytes of the file as last read or written (0 when there is none)."""
        return self._ident[2] if self._ident else 0

    def release(self) -> None:
        """Drop the in-memory document once the caller holds its own form of it (the
        file stays current: refresh does not reload it; `read` returns {} until then)."""
        self._data = {}

    def invalidate(self) -> None:
        """Forget unsaved changes: the next refresh reloads from disk."""
        self._stale = True
        self._dirty = False

    def _swap(self, data: dict[str, Any], fd: int | None, ident: Any) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._data, self._fd, self._ident = data, fd, ident
        self._stale = self._dirty = False
        self.version += 1

    def shutdown(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._stale = True


class Journal:
    """Append-only JSON lines. All methods expect the store lock to be held."""

    def __init__(self, path: Path, fsync: bool = True) -> None:
        self.path = path
        self.fsync = fsync
        self.offset = 0  # end of the last complete line we have read
        self.size_seen = 0  # the file's size when `read` last looked (torn line if > offset)
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is None:
            existed = self.path.exists()
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
                if not existed and self.fsync:
                    fsync_dir(self.path.parent)
            except OSError as e:
                raise StoreError(f"{self.path}: cannot open journal: {e.strerror}") from e
        return self._fd

    def size(self) -> int:
        return os.fstat(self._open()).st_size

    def read(self, start: int, size: int | None = None) -> list[Any]:
        """Parse the complete lines from byte `start` on; a torn last line (a writer
        killed mid-write) has no newline yet and is left alone. `size`: the file's size
        if the caller has just taken it (saves a syscall on the per-record path)."""
        fd = self._open()
        try:
            if size is None:
                size = os.fstat(fd).st_size
            data = os.pread(fd, max(0, size - start), start) if size > start else b""
        except OSError as e:
            raise StoreError(f"{self.path}: cannot read journal: {e.strerror}") from e
        end = data.rfind(b"\n") + 1
        self.size_seen = start + len(data)
        out = []
        pos = start
        for line in data[:end].split(b"\n")[:-1]:
            if line.strip():
                try:
                    out.append(orjson.loads(line))
                except ValueError as e:
                    raise StoreError(
                        f"{self.path}: corrupt journal line at byte {pos}; "
                        "restore it from a backup or move it away"
                    ) from e
            pos += len(line) + 1
        self.offset = start + end
        return out

    def append(self, line: bytes) -> None:
        """Append one record (ends with a newline). Call `read` up to the end first."""
        fd = self._open()
        try:
            if self.size_seen > self.offset:
                # a torn line from a killed writer: cut it so ours starts on a fresh line
                os.ftruncate(fd, self.offset)
            write_all(fd, line)
            if self.fsync:
                os.fdatasync(fd)
        except OSError as e:
            raise StoreError(f"{self.path}: cannot append to journal: {e.strerror}") from e
        self.offset += len(line)
        self.size_seen = self.offset

    def truncate(self) -> None:
        fd = self._open()
        try:
            os.ftruncate(fd, 0)
            if self.fsync:
                os.fdatasync(fd)
        except OSError as e:
            raise StoreError(f"{self.path}: cannot truncate journal: {e.strerror}") from e
        self.offset = self.size_seen = 0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
