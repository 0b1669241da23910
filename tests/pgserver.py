"""A real PostgreSQL server for the tests, started from Debian's binaries.

`server()` starts one server per test process (at first use; stopped at exit): `initdb`
into a fresh temporary folder and `postgres` listening on a unix socket in it only (no
TCP port to collide with), both as an unprivileged user, since PostgreSQL refuses to run
as root: as root, the user `digesttest` (created with useradd when missing, else
`nobody`) owns the folder and runs them through `runuser`. `server().database()` (or the
context manager `database()`, which drops it afterwards) makes a fresh database per test
from a template (CREATE DATABASE ... TEMPLATE: ~50 ms).

Where the binaries are absent, the tests skip with one line; under CI (the `CI`
environment variable set, as .ci/run does) that is a failure instead.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

USER = "digesttest"
ROLE = "digest"
_lock = threading.Lock()
_server: PgServer | None = None
_count = itertools.count()


def bindir() -> Path | None:
    """The folder of initdb and postgres: $DIGEST_PG_BIN, Debian's newest, the PATH's."""
    env = os.environ.get("DIGEST_PG_BIN")
    dirs = [env] if env else []
    dirs += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True)
    for d in dirs:
        if os.access(os.path.join(d, "postgres"), os.X_OK):
            return Path(d)
    found = shutil.which("initdb")
    if found:
        real = Path(found).resolve().parent
        if (real / "postgres").exists():
            return real
    return None


def _version(d: str) -> int:
    try:
        return int(Path(d).parent.name)
    except ValueError:
        return 0


def require() -> Path:
    """The binaries' folder, or skip (fail under CI) with one line."""
    d = bindir()
    if d is None:
        msg = "PostgreSQL is not installed (no initdb/postgres; Debian: apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(f"{msg}: under CI the PostgreSQL tests must run", pytrace=False)
        pytest.skip(msg)
    return d


def _run_as() -> tuple[list[str], int, int]:
    """(command prefix, uid, gid) for running the server unprivileged."""
    if os.geteuid() != 0:
        return [], os.getuid(), os.getgid()
    try:
        pw = pwd.getpwnam(USER)
    except KeyError:
        made = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
            capture_output=True,
        )
        try:
            pw = pwd.getpwnam(USER if made.returncode == 0 else "nobody")
        except KeyError:
            pw = pwd.getpwnam("nobody")
    return ["runuser", "-u", pw.pw_name, "--"], pw.pw_uid, pw.pw_gid


class PgServer:
    def __init__(self, bins: Path) -> None:
        self.bins = bins
        self.prefix, uid, gid = _run_as()
        self.dir = Path(tempfile.mkdtemp(prefix="digest-pg-"))
        os.chown(self.dir, uid, gid)
        os.chmod(self.dir, 0o755)
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        init = subprocess.run(
            [
                *self.prefix,
                str(bins / "initdb"),
                "-D",
                str(self.data),
                "-U",
                ROLE,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr.strip()[-500:]}")
        opts = {
            "listen_addresses": "",  # the unix socket only
            "unix_socket_directories": str(self.dir),
            "fsync": "off",  # the tests kill clients, never the server
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "32MB",
        }
        cmd = [*self.prefix, str(bins / "postgres"), "-D", str(self.data)]
        for k, v in opts.items():
            cmd += ["-c", f"{k}={v}"]
        logf = open(self.log, "ab")  # noqa: SIM115 - kept open for the server's life
        self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        self._wait_ready()
        self.template = "digest_template"
        self.admin(f"CREATE DATABASE {self.template}")

    def url(self, db: str) -> str:
        return f"postgresql://{ROLE}@/{db}?host={self.dir}"

    def _wait_ready(self) -> None:
        ready = [str(self.bins / "pg_isready"), "-q", "-h", str(self.dir), "-U", ROLE, "-t", "1"]
        for _ in range(1200):  # the server's own answer, polled (up to a minute)
            if self.proc.poll() is not None:
                break
            if subprocess.run(ready, capture_output=True).returncode == 0:
                return
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(0.05)  # returns early if the server exits
        text = self.log.read_text(errors="replace")[-800:]
        self.stop()
        raise RuntimeError(f"postgres did not start: {text}")

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as c:
            c.execute(sql.encode())

    def database(self) -> str:
        """A fresh empty database; returns its URL."""
        name = f"t{os.getpid()}_{next(_count)}"
        self.admin(f"CREATE DATABASE {name} TEMPLATE {self.template}")
        return self.url(name)

    def drop(self, url: str) -> None:
        name = url.split("?")[0].split("/")[-1]
        with contextlib.suppress(Exception):
            self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # smart -> fast shutdown
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def server() -> PgServer:
    """The test process's server, started on first use (skips where not installed)."""
    global _server
    bins = require()
    with _lock:
        if _server is None:
            _server = PgServer(bins)
            atexit.register(_server.stop)
        return _server


def stop_server() -> None:
    global _server
    with _lock:
        if _server is not None:
            _server.stop()
            _server = None


@contextlib.contextmanager
def database() -> Iterator[str]:
    """A fresh database on the shared server: yields its URL, dropped afterwards."""
    srv = server()
    url = srv.database()
    try:
        yield url
    finally:
        srv.drop(url)
