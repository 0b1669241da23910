"""I/O edge: shared plumbing of the benchmarks (not a benchmark itself).

- `machine()`: what the figures were measured on (nproc, CPU model, Python, date).
- `save(name, data)`: writes bench/results/<name>.json; `table(...)` prints a table.
- `vocabulary()` / `make_subscribers(n)`: synthetic subscribers whose keywords are drawn
  from REAL paper vocabulary (the ai_keywords of the relevance-dev corpus and of the
  recorded HF days), weighted by how often a keyword occurs, as people subscribe to
  popular topics more often than to rare ones.
- `HFServer`: a local HTTP server answering /api/daily_papers like Hugging Face does,
  from recorded days (and synthetic ones added while it runs).
- `SmtpSink`: the counting SMTP sink of bench/smtpsink.py in its own process.
- `write_config(...)`: a TOML config pointing the product at those two servers.
"""

from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import sys
import tarfile
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures"
HF_DIR = FIXTURES / "hf_daily_papers"
CORPUS = SHARED / "relevance-dev" / "corpus.jsonl"
E2E_DAY = date(2026, 3, 10)
SECRET = "bench-secret-not-for-production-32+bytes"

if str(ROOT) not in sys.path:  # run as `python bench/x.py` from a checkout
    sys.path.insert(0, str(ROOT))


# ----------------------------------------------------------------------------- reporting


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def save(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    data = {"benchmark": name, "machine": machine(), **data}
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)}")
    return path


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    out = "\n".join(lines)
    print(out, flush=True)
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


# ----------------------------------------------------------------------------- workload


@lru_cache(maxsize=1)
def vocabulary() -> tuple[tuple[str, ...], tuple[int, ...]]:
    """(keywords, weights): every ai_keyword of the corpus and the recorded days."""
    counts: Counter[str] = Counter()
    if CORPUS.exists():
        with CORPUS.open(encoding="utf-8") as f:
            for line in f:
                for k in json.loads(line).get("ai_keywords") or ():
                    counts[k.strip().lower()] += 1
    for path in sorted(HF_DIR.rglob("*.json")):
        for item in json.loads(path.read_bytes()):
            for k in (item.get("paper") or {}).get("ai_keywords") or ():
                counts[k.strip().lower()] += 1
    words = [
        (k, n)
        for k, n in counts.most_common()
        if 2 < len(k) <= 40 and k.replace(" ", "").replace("-", "").isalnum()
    ]
    if not words:
        raise SystemExit(f"no keywords found under {CORPUS} or {HF_DIR}")
    return tuple(k for k, _ in words), tuple(n for _, n in words)


def make_subscribers(n: int, seed: int = 7) -> list[Any]:
    """`n` active subscribers user000000@bench.example.org..., 1-4 real keywords each,
    10% with an exclusion, max papers 3-10. Built with the product's make_subscriber."""
    from digest.subscribers import make_subscriber

    rng = random.Random(seed)
    words, weights = vocabulary()
    subs = []
    for i in range(n):
        kws = rng.choices(words, weights=weights, k=rng.randint(1, 4))
        text = ", ".join(f'"{k}"' if " " in k and rng.random() < 0.3 else k for k in kws)
        if rng.random() < 0.1:
            text += ", -survey"
        subs.append(
            make_subscriber(
                f"user{i:06d}@bench.example.org",
                text,
                rng.randint(3, 10),
                created="2026-01-01T00:00:00+00:00",
            )
        )
    return subs


def load_day(path: Path) -> list[Any]:
    return json.loads(path.read_bytes())


# ----------------------------------------------------------------------------- servers


class HFServer:
    """Local stand-in for https://huggingface.co/api/daily_papers (127.0.0.1, free port).
    `days` maps "YYYY-MM-DD" -> the list of items; a missing day is [] (as HF answers)."""

    def __init__(self, days: dict[str, list[Any]] | None = None) -> None:
        self.days: dict[str, list[Any]] = dict(days or {})
        self.requests = 0
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                srv.requests += 1
                parts = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(parts.query).items()}
                if parts.path != "/api/daily_papers":
                    body, status = b'{"error":"not found"}', 404
                else:
                    limit, page = int(q.get("limit", "50")), int(q.get("p", "0"))
                    items = srv.days.get(q.get("date", ""), [])
                    body, status = (
                        json.dumps(items[page * limit : (page + 1) * limit]).encode(),
                        200,
                    )
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> HFServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class SmtpSink:
    """bench/smtpsink.py in a child process; see its docstring. `delay_ms`: the relay's
    wait per message; `pipelining`: whether it offers PIPELINING."""

    def __init__(self, delay_ms: float = 0.0, pipelining: bool = True) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.pid = 0
        self.args = [f"--delay-ms={delay_ms:g}"] + ([] if pipelining else ["--no-pipelining"])

    def __enter__(self) -> SmtpSink:
        self._proc = subprocess.Popen(
            [sys.executable, str(BENCH / "smtpsink.py"), *self.args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self._proc.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("PORT "):
            raise SystemExit(f"SMTP sink did not start: {line!r}")
        self.port, self.pid = int(line.split()[1]), self._proc.pid
        return self

    def _ask(self, cmd: str) -> str:
        assert self._proc is not None and self._proc.stdin and self._proc.stdout
        self._proc.stdin.write(cmd + "\n")
        self._proc.stdin.flush()
        return self._proc.stdout.readline().strip()

    def stats(self) -> dict[str, Any]:
        return json.loads(self._ask("stats"))

    def reset(self) -> None:
        self._ask("reset")

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.stdin.close()  # type: ignore[union-attr]
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.terminate()
                self._proc.wait(timeout=5)


def compile_sources() -> None:
    """Byte-compile the project's modules, as pip does when it installs the package (and
    the Docker image's build stage does): a checkout run with PYTHONDONTWRITEBYTECODE=1
    (this machine's environment sets it) would otherwise compile every module at each
    process start, ~0.25 s of CPU that a deployed `digest run` never spends. For the
    benchmarks that time whole `digest run` processes."""
    import compileall

    compileall.compile_dir(ROOT / "digest", quiet=1)


def write_config(
    folder: Path,
    *,
    hf_url: str,
    smtp_port: int | None = None,
    fsync: bool = True,
    lookback_days: int = 3,
    connections: int | None = None,
) -> Path:
    """config.toml in `folder`: store in folder/data, outbox folder/outbox, HF at hf_url,
    SMTP (security none) on 127.0.0.1:smtp_port when given, over `connections` SMTP
    connections when given. Product defaults otherwise."""
    folder.mkdir(parents=True, exist_ok=True)
    smtp = (
        f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nsecurity = "none"\n'
        'sender = "Paper Digest <digest@bench.example.org>"\n'
        + (f"connections = {connections}\n" if connections else "")
        if smtp_port
        else ""
    )
    text = f"""site_name = "Paper Digest"
[sources]
offline_fallback = false
[sources.huggingface]
base_url = "{hf_url}"
lookback_days = {lookback_days}
[store]
path = "{folder / "data"}"
fsync = {"true" if fsync else "false"}
[outbox]
path = "{folder / "outbox"}"
[web]
base_url = "https://digest.bench.example.org"
secret_env = "DIGEST_BENCH_SECRET"
{smtp}"""
    path = folder / "config.toml"
    path.write_text(text, encoding="utf-8")
    os.environ["DIGEST_BENCH_SECRET"] = SECRET
    return path


def seed_store(cfg: Any, subs: Sequence[Any]) -> None:
    from digest.store import open_store

    store = open_store(cfg.store)
    try:
        store.put_subscribers(subs)
    finally:
        store.close()


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# ----------------------------------------------------------------- PostgreSQL backend

PG_URL_ENV = "DIGEST_BENCH_DATABASE_URL"  # [store] url_env of the benchmarks' configs


def use_postgresql(config: Path, claim_batch: int | None = None) -> None:
    """Rewrite a write_config() file so its store is PostgreSQL ([store] backend), the URL
    read from PG_URL_ENV (set it with PgDatabases.use); `claim_batch`: [store] claim_batch."""
    extra = f"claim_batch = {claim_batch}\n" if claim_batch else ""
    text = config.read_text(encoding="utf-8").replace(
        "[store]\n", f'[store]\nbackend = "postgresql"\nurl_env = "{PG_URL_ENV}"\n{extra}', 1
    )
    config.write_text(text, encoding="utf-8")


class PgDatabases:
    """A real PostgreSQL server for a benchmark (tests/pgserver.py: initdb into a temporary
    folder, unix socket only, as an unprivileged user), and cheap copies of one seeded
    database: `use(name)` makes PG_URL_ENV point at `name` (created empty, or as a copy of
    the database `like` with CREATE DATABASE ... TEMPLATE), for this process and children."""

    def __init__(self) -> None:
        sys.path.insert(0, str(ROOT / "tests"))
        import pgserver  # the tests' helper

        self.server = pgserver.server()

    def use(self, name: str, like: str | None = None) -> str:
        self.server.admin(f"DROP DATABASE IF EXISTS {name}")
        self.server.admin(f"CREATE DATABASE {name}" + (f" TEMPLATE {like}" if like else ""))
        url = str(self.server.url(name))
        os.environ[PG_URL_ENV] = url
        return url

    def size(self, name: str) -> int:
        """Bytes the database takes on disk (pg_database_size)."""
        import psycopg

        with psycopg.connect(str(self.server.url(name))) as conn:
            row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        return int(row[0]) if row else 0


def baseline_tree(rev: str, into: Path, paths: Sequence[str] = ("digest",)) -> Path | None:
    """`paths` of git revision `rev`, unpacked under `into` (None, said on stderr: no git)."""
    try:
        raw = subprocess.run(
            ["git", "archive", rev, *paths], cwd=ROOT, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"no baseline: git archive {rev} failed ({e})", file=sys.stderr)
        return None
    with tarfile.open(fileobj=BytesIO(raw)) as tar:
        tar.extractall(into, filter="data")
    return into
