"""Pure (plus one file read): the TOML config, read once into frozen dataclasses.

`load_config(path)` reads and validates; every error is a ConfigError naming the key,
e.g. `config.toml: [smtp] port: expected an integer from 1 to 65535, got "abc"`.
Secrets are never in the file: only the *names* of environment variables holding them.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digest.errors import ConfigError

DEFAULT_USER_AGENT = "digest/0.1 (+https://github.com/digest-papers/digest; daily paper digest)"


@dataclass(frozen=True)
class HttpConfig:
    timeout: float = 20.0  # seconds, connect and read
    retries: int = 4  # attempts after the first
    backoff: float = 1.0  # first backoff in seconds, doubled each retry, with jitter
    max_backoff: float = 60.0
    user_agent: str = DEFAULT_USER_AGENT


@dataclass(frozen=True)
class HuggingFaceConfig:
    enabled: bool = True
    base_url: str = "https://huggingface.co"
    mode: str = "daily"  # "daily" (dated listings over the look-back window) or "trending"
    lookback_days: int = 3  # the run's date and the 2 days before
    limit: int = 50  # page size


@dataclass(frozen=True)
class ArxivConfig:
    categories: tuple[str, ...] = ()  # empty: the arXiv source is off
    mode: str = "rss"  # "rss" (rss.arxiv.org) or "api" (export API, Atom)
    rss_base_url: str = "https://rss.arxiv.org/rss"
    api_base_url: str = "https://export.arxiv.org/api/query"
    max_results: int = 200
    min_interval: float = 3.0  # arXiv asks for at most one request every 3 seconds


@dataclass(frozen=True)
class SourcesConfig:
    huggingface: HuggingFaceConfig = field(default_factory=HuggingFaceConfig)
    arxiv: ArxivConfig = field(default_factory=ArxivConfig)
    offline_fallback: bool = True  # no network at all: use the bundled recorded day, and say so


@dataclass(frozen=True)
class StoreConfig:
    path: Path = Path("data")  # a folder: TinyDB files, journal and locks live in it
    retention_days: int = 400  # how long a seen paper is remembered (re-listings stay seen)
    history_days: int = 30  # how long digest/delivery records and paper details are kept
    fsync: bool = True


@dataclass(frozen=True)
class SmtpConfig:
    host: str = ""  # empty: no SMTP server, messages go to the outbox folder
    port: int = 587
    security: str = "starttls"  # "none" | "starttls" | "ssl"
    sender: str = "Paper Digest <digest@localhost>"
    username_env: str = ""  # name of the environment variable holding the user name
    password_env: str = ""
    timeout: float = 30.0


@dataclass(frozen=True)
class OutboxConfig:
    path: Path = Path("outbox")


@dataclass(frozen=True)
class Limit:
    """A rate limit: at most `count` events per `seconds` for one key ([web] rate_*)."""

    count: int
    seconds: float

    @classmethod
    def parse(cls, text: str) -> Limit:
        """"5/3600" -> Limit(5, 3600.0); ValueError with one line on bad input."""
        try:
            count_s, seconds_s = text.split("/")
            limit = cls(int(count_s), float(seconds_s))
        except ValueError:
            raise ValueError(f"rate limit: expected COUNT/SECONDS like 5/3600, got {text!r}") \
                from None
        if limit.count < 1 or not limit.seconds > 0:  # (NaN is not > 0)
            raise ValueError(f"rate limit: expected COUNT >= 1 and SECONDS > 0, got {text!r}")
        return limit


@dataclass(frozen=True)
class WebConfig:
    base_url: str = "http://localhost:8000"  # public URL of `digest web`; goes into mail links
    secret_env: str = "DIGEST_SECRET"  # env var with the token-signing secret
    host: str = "127.0.0.1"
    port: int = 8000
    # abuse limits and tunables of the web service (digest/web/settings.py); each can also
    # be overridden by an environment variable, e.g. DIGEST_WEB_RATE_IP
    rate_ip: Limit = Limit(10, 3600)  # subscribe attempts per client IP ("COUNT/SECONDS")
    rate_email: Limit = Limit(3, 3600)  # subscribe attempts per address
    rate_preview: Limit = Limit(120, 60)  # live-preview requests per client IP
    min_fill_seconds: float = 2.0  # a form sent faster than this is a bot
    max_body: int = 16 * 1024  # bigger request bodies get 413
    preview_days: int = 7  # how far back the live preview looks for papers
    forwarded_allow_ips: str = "127.0.0.1"  # reverse proxies trusted for X-Forwarded-For


@dataclass(frozen=True)
class RankingConfig:
    popularity_weight: float = 0.15  # share of the final score taken by popularity
    default_max_papers: int = 10


@dataclass(frozen=True)
class ScheduleConfig:
    time: str = "07:00"  # local send time, HH:MM
    timezone: str = "UTC"
    misfire_grace_hours: float = 6.0
    send_empty: bool = False  # send a "nothing new today" mail on quiet days


@dataclass(frozen=True)
class SeedSubscriber:
    email: str
    keywords: str = ""
    max_papers: int | None = None
    min_score: float | None = None


@dataclass(frozen=True)
class Config:
    path: Path | None = None
    site_name: str = "Paper Digest"
    http: HttpConfig = field(default_factory=HttpConfig)
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    web: WebConfig = field(default_factory=WebConfig)
    ranking: RankingConfig = field(default_factory=RankingConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    subscribers: tuple[SeedSubscriber, ...] = ()

    def secret(self) -> str | None:
        """The token-signing secret from the environment, if set."""
        value = os.environ.get(self.web.secret_env, "") if self.web.secret_env else ""
        return value or None


# --------------------------------------------------------------------------- validation


class _Section:
    """Reads typed values out of one TOML table, naming `[section] key` in errors."""

    def __init__(self, where: str, name: str, table: Any, known: set[str]):
        self.where, self.name = where, name
        if table is None:
            table = {}
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: [{name}] must be a table")
        self.table = table
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(f"{where}: [{name}] {unknown[0]}: unknown key")

    def _err(self, key: str, msg: str, value: Any) -> ConfigError:
        return ConfigError(f"{self.where}: [{self.name}] {key}: {msg}, got {value!r}")

    def get(self, key: str, default: Any, kind: type | tuple[type, ...]) -> Any:
        if key not in self.table:
            return default
        value = self.table[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and kind is not bool:
            raise self._err(key, f"expected {_kind_name(kind)}", value)
        if not isinstance(value, kind):
            raise self._err(key, f"expected {_kind_name(kind)}", value)
        return value

    def int_in(self, key: str, default: int, lo: int, hi: int) -> int:
        v = self.get(key, default, int)
        if not lo <= v <= hi:
            raise self._err(key, f"expected an integer from {lo} to {hi}", v)
        return int(v)

    def float_in(self, key: str, default: float, lo: float, hi: float) -> float:
        v = self.get(key, default, float)
        if not lo <= v <= hi:
            raise self._err(key, f"expected a number from {lo} to {hi}", v)
        return float(v)

    def rate(self, key: str, default: Limit) -> Limit:
        """A rate limit "COUNT/SECONDS", e.g. "10/3600" (ten per hour)."""
        if key not in self.table:
            return default
        v = self.get(key, "", str).strip()
        try:
            return Limit.parse(v)
        except ValueError:
            raise self._err(key, "expected COUNT/SECONDS like 10/3600 (count >= 1)",
                            v) from None

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        v = self.get(key, default, str)
        if v not in choices:
            raise self._err(key, f"expected one of {', '.join(choices)}", v)
        return str(v)

    def url(self, key: str, default: str) -> str:
        v = self.get(key, default, str).rstrip("/")
        if not (v.startswith("http://") or v.startswith("https://")) or any(
            c in v for c in " \r\n\t"
        ):
            raise self._err(key, "expected an http(s) URL", v)
        return str(v)

    def env_name(self, key: str, default: str) -> str:
        v = self.get(key, default, str)
        if v and not v.replace("_", "").isalnum():
            raise self._err(key, "expected the NAME of an environment variable", v)
        return str(v)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             list: "a list", dict: "a table"}
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, k.__name__) for k in kind)
    return names.get(kind, kind.__name__)


def _keys(cls: type) -> set[str]:
    return set(cls.__dataclass_fields__)  # type: ignore[attr-defined]


def parse_config(data: dict[str, Any], where: str = "config", base: Path | None = None) -> Config:
    """Validate a parsed TOML document. Relative paths are taken from `base`."""
    base = base or Path.cwd()
    top = _Section(where, "top level", data, {"site_name", "http", "sources", "store", "smtp",
                                              "outbox", "web", "ranking", "schedule",
                                              "subscribers"})
    site_name = top.get("site_name", "Paper Digest", str)

    h = _Section(where, "http", data.get("http"), _keys(HttpConfig))
    http = HttpConfig(
        timeout=h.float_in("timeout", 20.0, 0.1, 600),
        retries=h.int_in("retries", 4, 0, 20),
        backoff=h.float_in("backoff", 1.0, 0, 600),
        max_backoff=h.float_in("max_backoff", 60.0, 0, 3600),
        user_agent=h.get("user_agent", DEFAULT_USER_AGENT, str),
    )

    src = data.get("sources") or {}
    s = _Section(where, "sources", src, {"huggingface", "arxiv", "offline_fallback"})
    hfs = _Section(where, "sources.huggingface", src.get("huggingface"), _keys(HuggingFaceConfig))
    hf = HuggingFaceConfig(
        enabled=hfs.get("enabled", True, bool),
        base_url=hfs.url("base_url", "https://huggingface.co"),
        mode=hfs.choice("mode", "daily", ("daily", "trending")),
        lookback_days=hfs.int_in("lookback_days", 3, 1, 30),
        limit=hfs.int_in("limit", 50, 1, 100),
    )
    axs = _Section(where, "sources.arxiv", src.get("arxiv"), _keys(ArxivConfig))
    cats = axs.get("categories", [], list)
    for c in cats:
        if not isinstance(c, str) or not c or any(ch in c for ch in " /?&#\r\n"):
            raise axs._err("categories", "expected arXiv categories like \"cs.CL\"", c)
    arxiv = ArxivConfig(
        categories=tuple(cats),
        mode=axs.choice("mode", "rss", ("rss", "api")),
        rss_base_url=axs.url("rss_base_url", "https://rss.arxiv.org/rss"),
        api_base_url=axs.url("api_base_url", "https://export.arxiv.org/api/query"),
        max_results=axs.int_in("max_results", 200, 1, 2000),
        min_interval=axs.float_in("min_interval", 3.0, 0, 60),
    )
    sources = SourcesConfig(hf, arxiv, s.get("offline_fallback", True, bool))

    st = _Section(where, "store", data.get("store"), _keys(StoreConfig))
    store = StoreConfig(
        path=_path(base, st.get("path", "data", str)),
        retention_days=st.int_in("retention_days", 400, 7, 100_000),
        history_days=st.int_in("history_days", 30, 7, 3650),
        fsync=st.get("fsync", True, bool),
    )

    sm = _Section(where, "smtp", data.get("smtp"), _keys(SmtpConfig))
    security = sm.choice("security", "starttls", ("none", "starttls", "ssl"))
    smtp = SmtpConfig(
        host=sm.get("host", "", str),
        port=sm.int_in("port", 465 if security == "ssl" else 587, 1, 65535),
        security=security,
        sender=sm.get("sender", "Paper Digest <digest@localhost>", str),
        username_env=sm.env_name("username_env", ""),
        password_env=sm.env_name("password_env", ""),
        timeout=sm.float_in("timeout", 30.0, 0.1, 600),
    )
    if any(c in smtp.sender for c in "\r\n") or "@" not in smtp.sender:
        raise sm._err("sender", "expected an address like \"Digest <digest@example.org>\"",
                      smtp.sender)
    if any(c in smtp.host for c in " /\r\n"):
        raise sm._err("host", "expected a host name", smtp.host)

    ob = _Section(where, "outbox", data.get("outbox"), _keys(OutboxConfig))
    outbox = OutboxConfig(path=_path(base, ob.get("path", "outbox", str)))

    w = _Section(where, "web", data.get("web"), _keys(WebConfig))
    web = WebConfig(
        base_url=w.url("base_url", "http://localhost:8000"),
        secret_env=w.env_name("secret_env", "DIGEST_SECRET"),
        host=w.get("host", "127.0.0.1", str),
        port=w.int_in("port", 8000, 1, 65535),
        rate_ip=w.rate("rate_ip", WebConfig.rate_ip),
        rate_email=w.rate("rate_email", WebConfig.rate_email),
        rate_preview=w.rate("rate_preview", WebConfig.rate_preview),
        min_fill_seconds=w.float_in("min_fill_seconds", 2.0, 0.0, 600.0),
        max_body=w.int_in("max_body", 16 * 1024, 1024, 10 * 1024 * 1024),
        preview_days=w.int_in("preview_days", 7, 1, 60),
        forwarded_allow_ips=w.get("forwarded_allow_ips", "127.0.0.1", str).strip()
        or "127.0.0.1",
    )

    r = _Section(where, "ranking", data.get("ranking"), _keys(RankingConfig))
    ranking = RankingConfig(
        popularity_weight=r.float_in("popularity_weight", 0.15, 0.0, 1.0),
        default_max_papers=r.int_in("default_max_papers", 10, 1, 100),
    )

    sc = _Section(where, "schedule", data.get("schedule"), _keys(ScheduleConfig))
    time_s = sc.get("time", "07:00", str)
    try:
        hh, mm = time_s.split(":")
        if not (0 <= int(hh) <= 23 and 0 <= int(mm) <= 59 and len(mm) == 2):
            raise ValueError
    except ValueError:
        raise sc._err("time", "expected HH:MM", time_s) from None
    tz = sc.get("timezone", "UTC", str)
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise sc._err("timezone", "expected an IANA time zone like \"Europe/Berlin\"", tz) from None
    schedule = ScheduleConfig(
        time=time_s,
        timezone=tz,
        misfire_grace_hours=sc.float_in("misfire_grace_hours", 6.0, 0.0, 48.0),
        send_empty=sc.get("send_empty", False, bool),
    )

    seeds = []
    raw_subs = data.get("subscribers", [])
    if not isinstance(raw_subs, list):
        raise ConfigError(f"{where}: [[subscribers]] must be an array of tables")
    for i, item in enumerate(raw_subs, 1):
        ss = _Section(where, f"subscribers #{i}", item, {"email", "keywords", "max", "min_score"})
        if "email" not in ss.table:
            raise ConfigError(f"{where}: [subscribers #{i}] email: missing")
        kw = ss.get("keywords", "", (str, list))
        if isinstance(kw, list):
            if not all(isinstance(k, str) for k in kw):
                raise ss._err("keywords", "expected a string or a list of strings", kw)
            kw = ", ".join(kw)
        seeds.append(SeedSubscriber(
            email=ss.get("email", "", str),
            keywords=kw,
            max_papers=ss.int_in("max", 10, 1, 100) if "max" in ss.table else None,
            min_score=ss.float_in("min_score", 0.0, 0.0, 1e9) if "min_score" in ss.table
            else None,
        ))

    return Config(None, site_name, http, sources, store, smtp, outbox, web, ranking, schedule,
                  tuple(seeds))


def _path(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p)


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Read the config from `path`, else $DIGEST_CONFIG, else built-in defaults.

    Relative paths in the file are relative to the file's folder's parent when the file
    sits in a `config/` folder (so `config/example.toml` puts data/ at the project root),
    else to the file's folder.
    """
    if path is None:
        path = os.environ.get("DIGEST_CONFIG") or None
    if path is None:
        return parse_config({}, "defaults")
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config file: {e.strerror}") from e
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: invalid TOML: {e}") from e
    folder = p.resolve().parent
    base = folder.parent if folder.name == "config" else folder
    cfg = parse_config(data, str(p), base)
    return Config(p, *[getattr(cfg, f) for f in list(Config.__dataclass_fields__)[1:]])
