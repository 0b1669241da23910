"""Pure (plus one file read): the TOML config, read once into frozen dataclasses.

`load_config(path)` reads and validates; every error is a ConfigError naming the key,
e.g. `config.toml: [smtp] port: expected an integer from 1 to 65535, got 'abc'`.
Secrets are never in the file: only the *names* of environment variables holding them.

One default per key: each section is a frozen dataclass whose fields ARE the keys. A
field's type says how its TOML value is read (bool, int, float, str, Path, a list of
strings, a rate limit "COUNT/SECONDS", a nested section, an array of tables), and its
`opt(...)` metadata adds the bounds, choices or check. `parse_config` walks the
dataclasses; nothing else lists the keys or repeats a default. To add a key, add a
field (and document it in config/example.toml: a test checks every field is there).
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digest.errors import ConfigError

MIN_SECRET_BYTES = 32  # [web] secret_env's value: HMAC-SHA1 keys below this are weak
DEFAULT_USER_AGENT = "digest/0.1 (+https://github.com/digest-papers/digest; daily paper digest)"

Check = Callable[[Any], Any]  # returns the (possibly normalised) value; ValueError(why)


def opt(
    default: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple[str, ...] = (),
    check: Check | None = None,
    name: str = "",
    required: bool = False,
) -> Any:
    """A config key: its default and how its value is validated.

    `lo`/`hi` bound numbers; `choices` lists the allowed strings; `check` validates and
    may normalise a value (raise ValueError with what was expected); `name` is the TOML
    key when it differs from the field's name (`max` for `max_papers`); a `required` key
    must be given."""
    meta = {
        "lo": lo,
        "hi": hi,
        "choices": choices,
        "check": check,
        "name": name,
        "required": required,
    }
    if isinstance(default, dict | list | set):
        raise TypeError("config defaults must be immutable")
    return field(default=default, metadata=meta)


def section(cls: type) -> Any:
    """A nested section (a table), defaulting to the dataclass's own defaults."""
    return field(default_factory=cls)


# --------------------------------------------------------------------------- checks


def _url(v: str) -> str:
    v = v.rstrip("/")
    if not v.startswith(("http://", "https://")) or any(c in v for c in " \r\n\t"):
        raise ValueError("expected an http(s) URL")
    return v


def _env_name(v: str) -> str:
    if v and not v.replace("_", "").isalnum():
        raise ValueError("expected the NAME of an environment variable")
    return v


def _host(v: str) -> str:
    if any(c in v for c in " /\r\n"):
        raise ValueError("expected a host name")
    return v


def _sender(v: str) -> str:
    if any(c in v for c in "\r\n") or "@" not in v:
        raise ValueError('expected an address like "Digest <digest@example.org>"')
    return v


def _hh_mm(v: str) -> str:
    try:
        hh, mm = v.split(":")
        if 0 <= int(hh) <= 23 and 0 <= int(mm) <= 59 and len(mm) == 2:
            return v
    except ValueError:
        pass
    raise ValueError("expected HH:MM")


def _zone(v: str) -> str:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError('expected an IANA time zone like "Europe/Berlin"') from None
    return v


def _category(v: str) -> str:
    if not v or any(ch in v for ch in " /?&#\r\n"):
        raise ValueError('expected arXiv categories like "cs.CL"')
    return v


def _proxies(v: str) -> str:
    """Comma-separated IP addresses or CIDR ranges ("*": any, for a proxy-only network)."""
    import ipaddress

    items = [x.strip() for x in v.split(",") if x.strip()]
    for x in items:
        if x != "*":
            try:
                ipaddress.ip_network(x, strict=False)
            except ValueError:
                raise ValueError(f"{x!r} is not an IP address or network") from None
    return ",".join(items)


def _keywords(v: str | list[Any]) -> str:
    if isinstance(v, list):
        if not all(isinstance(k, str) for k in v):
            raise ValueError("expected a string or a list of strings")
        return ", ".join(v)
    return v


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class Limit:
    """A rate limit: at most `count` events per `seconds` for one key ([web] rate_*)."""

    count: int
    seconds: float

    @classmethod
    def parse(cls, text: str) -> Limit:
        """ "5/3600" -> Limit(5, 3600.0); ValueError with one line on bad input."""
        try:
            count_s, seconds_s = text.split("/")
            limit = cls(int(count_s), float(seconds_s))
        except ValueError:
            raise ValueError(
                f"rate limit: expected COUNT/SECONDS like 5/3600, got {text!r}"
            ) from None
        if limit.count < 1 or not limit.seconds > 0:  # (NaN is not > 0)
            raise ValueError(f"rate limit: expected COUNT >= 1 and SECONDS > 0, got {text!r}")
        return limit


@dataclass(frozen=True)
class HttpConfig:
    timeout: float = opt(20.0, lo=0.1, hi=600)  # seconds, connect and read
    retries: int = opt(4, lo=0, hi=20)  # attempts after the first
    backoff: float = opt(1.0, lo=0, hi=600)  # first backoff in seconds, doubled, with jitter
    max_backoff: float = opt(60.0, lo=0, hi=3600)
    user_agent: str = opt(DEFAULT_USER_AGENT)


@dataclass(frozen=True)
class HuggingFaceConfig:
    enabled: bool = opt(True)
    base_url: str = opt("https://huggingface.co", check=_url)
    # "daily" (dated listings over the look-back window) or "trending"
    mode: str = opt("daily", choices=("daily", "trending"))
    lookback_days: int = opt(3, lo=1, hi=30)  # the run's date and the 2 days before
    limit: int = opt(50, lo=1, hi=100)  # page size


@dataclass(frozen=True)
class ArxivConfig:
    categories: tuple[str, ...] = opt((), check=_category)  # empty: the arXiv source is off
    mode: str = opt("rss", choices=("rss", "api"))  # rss.arxiv.org, or the export API (Atom)
    rss_base_url: str = opt("https://rss.arxiv.org/rss", check=_url)
    api_base_url: str = opt("https://export.arxiv.org/api/query", check=_url)
    max_results: int = opt(200, lo=1, hi=2000)
    min_interval: float = opt(3.0, lo=0, hi=60)  # arXiv: at most one request every 3 seconds


@dataclass(frozen=True)
class SourcesConfig:
    huggingface: HuggingFaceConfig = section(HuggingFaceConfig)
    arxiv: ArxivConfig = section(ArxivConfig)
    # No network at all: use the bundled recorded day, marked as sample data in every
    # digest. Off by default (an outage must never mail stale papers); the Quickstart's
    # config/example.toml turns it on; refused together with an [smtp] host (Config).
    offline_fallback: bool = opt(False)


@dataclass(frozen=True)
class StoreConfig:
    path: Path = opt(Path("data"))  # a folder: TinyDB files, journal and locks live in it
    retention_days: int = opt(400, lo=7, hi=100_000)  # how long a seen paper is remembered
    history_days: int = opt(30, lo=7, hi=3650)  # digest records and paper details are kept
    fsync: bool = opt(True)
    pending_days: int = opt(7, lo=1, hi=365)  # an unconfirmed (pending) subscription expires
    backend: str = opt("tinydb", choices=("tinydb", "postgresql"))  # where it all lives
    url_env: str = opt("DIGEST_DATABASE_URL", check=_env_name)  # env var with the PostgreSQL URL
    # PostgreSQL: `digest run` workers claim due subscribers `claim_batch` at a time, each
    # claim leased for `claim_lease_seconds` (renewed while the worker makes progress): a
    # killed worker's unsent subscribers go to another worker when the lease ends.
    claim_lease_seconds: float = opt(300.0, lo=1.0, hi=86_400.0)
    claim_batch: int = opt(500, lo=1, hi=100_000)


@dataclass(frozen=True)
class SmtpConfig:
    host: str = opt("", check=_host)  # empty: no SMTP server, messages go to the outbox
    port: int = opt(587, lo=1, hi=65535)  # 465 when security = "ssl" and no port is given
    security: str = opt("starttls", choices=("none", "starttls", "ssl"))
    sender: str = opt("Paper Digest <digest@localhost>", check=_sender)
    username_env: str = opt("", check=_env_name)  # NAME of the variable with the user name
    password_env: str = opt("", check=_env_name)
    timeout: float = opt(30.0, lo=0.1, hi=600)
    connections: int = opt(4, lo=1, hi=100)  # SMTP connections `digest run` sends over at once
    max_rate: float = opt(0.0, lo=0.0, hi=100_000.0)  # messages/second over all of them; 0: no cap

    def _resolve(self, given: set[str]) -> SmtpConfig:
        if "port" not in given and self.security == "ssl":
            return dataclasses.replace(self, port=465)  # implicit TLS (RFC 8314)
        return self


@dataclass(frozen=True)
class OutboxConfig:
    path: Path = opt(Path("outbox"))


@dataclass(frozen=True)
class WebConfig:
    base_url: str = opt("http://localhost:8000", check=_url)  # public URL; goes into mails
    secret_env: str = opt("DIGEST_SECRET", check=_env_name)  # env var with the signing secret
    host: str = opt("127.0.0.1")
    port: int = opt(8000, lo=1, hi=65535)
    # abuse limits and tunables of the web service (digest/web/settings.py); each can also
    # be overridden by an environment variable, e.g. DIGEST_WEB_RATE_IP
    rate_ip: Limit = opt(Limit(10, 3600))  # subscribe attempts per client IP
    rate_email: Limit = opt(Limit(3, 3600))  # subscribe attempts per address
    rate_preview: Limit = opt(Limit(120, 60))  # live-preview requests per client IP
    min_fill_seconds: float = opt(2.0, lo=0.0, hi=600.0)  # a form sent faster is a bot
    max_body: int = opt(16 * 1024, lo=1024, hi=10 * 1024 * 1024)  # bigger bodies get 413
    preview_days: int = opt(7, lo=1, hi=60)  # how far back the live preview looks
    # reverse proxies whose X-Forwarded-For/-Proto are believed (comma-separated
    # addresses or CIDR ranges); none by default: the client address is the peer's
    trusted_proxies: str = opt("", check=_proxies)
    forwarded_allow_ips: str = opt("", check=_proxies)  # the older name of trusted_proxies
    manage_days: int = opt(45, lo=1, hi=3650)  # how long a mailed manage link works
    # idle-connection guards: open connections at most (lowered to fit the file limit),
    # seconds a client may take to send a request's headers, then its body
    max_connections: int = opt(800, lo=10, hi=100_000)
    header_timeout: float = opt(10.0, lo=1.0, hi=300.0)
    body_timeout: float = opt(20.0, lo=1.0, hi=600.0)
    # serve /papers (the day's trending papers, searchable) to anyone; false: 404 there
    public_papers: bool = opt(True)


@dataclass(frozen=True)
class RankingConfig:
    # share of the "For you" score from popularity (0: relevance alone decides; popular
    # papers have their own section, [digest] trending)
    popularity_weight: float = opt(0.0, lo=0.0, hi=1.0)
    default_max_papers: int = opt(10, lo=1, hi=100)
    # the relevance cut (0..100): a paper enters "For you" only at or above it; a
    # subscriber's own min score overrides it (digest/rank/model.py says what a score means)
    min_score: float = opt(53.0, lo=0.0, hi=100.0)
    # add the bundled sentence-embedding model's closeness to the lexical score (README:
    # Ranking); false ranks by words alone (faster: no model is loaded)
    semantic: bool = opt(True)


@dataclass(frozen=True)
class DigestConfig:
    # the day's most popular new papers shown under "Trending today", beside the matches
    # (0: none); a subscriber's own setting overrides it
    trending: int = opt(3, lo=0, hi=20)


@dataclass(frozen=True)
class ScheduleConfig:
    time: str = opt("07:00", check=_hh_mm)  # local send time
    timezone: str = opt("UTC", check=_zone)
    misfire_grace_hours: float = opt(6.0, lo=0.0, hi=48.0)
    send_empty: bool = opt(False)  # send a "nothing new today" mail on quiet days


@dataclass(frozen=True)
class SeedSubscriber:
    email: str = opt("", required=True)
    keywords: str = opt("", check=_keywords)  # a string, or a list of strings
    max_papers: int | None = opt(None, lo=1, hi=100, name="max")
    min_score: float | None = opt(None, lo=0.0, hi=1e9)


@dataclass(frozen=True)
class Config:
    path: Path | None = field(default=None, metadata={"internal": True})  # the file read
    site_name: str = opt("Paper Digest")
    http: HttpConfig = section(HttpConfig)
    sources: SourcesConfig = section(SourcesConfig)
    store: StoreConfig = section(StoreConfig)
    smtp: SmtpConfig = section(SmtpConfig)
    outbox: OutboxConfig = section(OutboxConfig)
    web: WebConfig = section(WebConfig)
    ranking: RankingConfig = section(RankingConfig)
    digest: DigestConfig = section(DigestConfig)
    schedule: ScheduleConfig = section(ScheduleConfig)
    subscribers: tuple[SeedSubscriber, ...] = opt(())  # [[subscribers]]: seeds

    def __post_init__(self) -> None:
        # Keys that are only wrong together (the reader names the file in front).
        if self.sources.offline_fallback and self.smtp.host:
            raise ValueError(
                "[sources] offline_fallback: must be false when [smtp] host is set: the "
                "bundled sample day is for trying digest out, never for real subscribers"
            )

    def secret(self) -> str | None:
        """The token-signing secret from the environment, if set.

        ConfigError when it is set but shorter than MIN_SECRET_BYTES: it keys the HMAC of
        every unsubscribe, manage and confirm link, and a short one can be guessed."""
        name = self.web.secret_env
        value = os.environ.get(name, "") if name else ""
        if value and len(value.encode("utf-8")) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"${name}: the link-signing secret is {len(value.encode('utf-8'))} bytes long; "
                f"it must have at least {MIN_SECRET_BYTES} (make one with: python3 -c "
                "'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value or None


# --------------------------------------------------------------------------- validation


def _kind_name(kind: Any) -> str:
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        Path: "a path (a string)",
        Limit: "COUNT/SECONDS like 10/3600 (count >= 1)",
    }
    return names.get(kind, getattr(kind, "__name__", str(kind)))


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp) and tp is not Limit


def toml_keys(cls: type) -> dict[str, dataclasses.Field[Any]]:
    """TOML key -> field, for the keys a section reads from the file."""
    return {
        (f.metadata.get("name") or f.name): f
        for f in dataclasses.fields(cls)
        if not f.metadata.get("internal")
    }


class _Reader:
    """Reads one TOML table into a section dataclass, naming `[section] key` in errors."""

    def __init__(self, where: str, base: Path):
        self.where, self.base = where, base

    def err(self, name: str, key: str, msg: str, value: Any) -> ConfigError:
        return ConfigError(f"{self.where}: [{name}] {key}: {msg}, got {value!r}")

    def section(self, cls: type, name: str, table: Any) -> Any:
        if table is None:
            table = {}
        if not isinstance(table, dict):
            raise ConfigError(f"{self.where}: [{name}] must be a table")
        keys = toml_keys(cls)
        unknown = sorted(set(table) - set(keys))
        if unknown:
            raise ConfigError(f"{self.where}: [{name}] {unknown[0]}: unknown key")
        hints = _hints(cls)
        values: dict[str, Any] = {}
        for key, f in keys.items():
            sub = f"{name}.{f.name}" if name != "top level" else f.name
            if key in table:
                values[f.name] = self.value(hints[f.name], f, name, key, sub, table[key])
            elif _is_section(hints[f.name]):
                values[f.name] = self.section(hints[f.name], sub, {})
            elif f.metadata.get("required"):
                raise ConfigError(f"{self.where}: [{name}] {key}: missing")
        try:
            obj = cls(**values)
        except ValueError as e:  # a __post_init__ check across keys
            raise ConfigError(f"{self.where}: {e}") from None
        resolve = getattr(obj, "_resolve", None)  # defaults that depend on other keys
        return resolve({keys[k].name for k in table}) if resolve is not None else obj

    def value(
        self, tp: Any, f: dataclasses.Field[Any], name: str, key: str, sub: str, v: Any
    ) -> Any:
        tp, _ = _unwrap_optional(tp)
        if _is_section(tp):
            return self.section(tp, sub, v)
        origin = typing.get_origin(tp)
        if origin is tuple:  # a list: of strings, or an array of tables
            item = typing.get_args(tp)[0]
            if _is_section(item):
                if not isinstance(v, list):
                    raise ConfigError(f"{self.where}: [[{key}]] must be an array of tables")
                return tuple(self.section(item, f"{key} #{i}", t) for i, t in enumerate(v, 1))
            if not isinstance(v, list):
                raise self.err(name, key, "expected a list", v)
            return tuple(self.scalar(item, f, name, key, x) for x in v)
        return self.scalar(tp, f, name, key, v)

    def scalar(self, tp: Any, f: dataclasses.Field[Any], name: str, key: str, v: Any) -> Any:
        meta = f.metadata
        check: Check | None = meta.get("check")
        if tp is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if tp is Limit:
            if not isinstance(v, str):
                raise self.err(name, key, f"expected {_kind_name(Limit)}", v)
            try:
                return Limit.parse(v.strip())
            except ValueError:
                raise self.err(name, key, f"expected {_kind_name(Limit)}", v.strip()) from None
        want = str if tp is Path else tp
        accepts_list = check is _keywords  # keywords: a string or a list of strings
        if isinstance(v, bool) is not (want is bool) or not (
            isinstance(v, want) or (accepts_list and isinstance(v, list))
        ):
            raise self.err(
                name,
                key,
                f"expected {_kind_name(want)}" + (" or a list of strings" if accepts_list else ""),
                v,
            )
        if want in (int, float):
            lo, hi = meta.get("lo"), meta.get("hi")
            if (
                (isinstance(v, float) and math.isnan(v))
                or (lo is not None and v < lo)
                or (hi is not None and v > hi)
            ):
                what = "an integer" if want is int else "a number"
                raise self.err(
                    name,
                    key,
                    f"expected {what} from {lo:g} to {hi:g}"
                    if want is float
                    else f"expected {what} from {lo} to {hi}",
                    v,
                )
        if meta.get("choices") and v not in meta["choices"]:
            raise self.err(name, key, f"expected one of {', '.join(meta['choices'])}", v)
        if check is not None:
            try:
                v = check(v)
            except ValueError as e:
                raise self.err(name, key, str(e), v) from None
        if tp is Path:
            p = Path(v).expanduser()
            return p if p.is_absolute() else (self.base / p)
        return v


def parse_config(data: dict[str, Any], where: str = "config", base: Path | None = None) -> Config:
    """Validate a parsed TOML document. Relative paths are taken from `base`."""
    cfg: Config = _Reader(where, base or Path.cwd()).section(Config, "top level", data)
    return cfg


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Read the config from `path`, else $DIGEST_CONFIG, else built-in defaults.

    Relative paths in the file are relative to the file's folder's parent when the file
    sits in a `config/` folder (so `config/example.toml` puts data/ at the project root),
    else to the file's folder.
    """
    if path is None:
        path = os.environ.get("DIGEST_CONFIG") or None
    if path is None:
        return _checked_env(parse_config({}, "defaults"))
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
    return _checked_env(dataclasses.replace(parse_config(data, str(p), base), path=p))


def _checked_env(cfg: Config) -> Config:
    """Fail at start, not at the first mail, on a secret from the environment that is
    too short (check-config, run, web and serve all load the config through here)."""
    cfg.secret()
    return cfg
