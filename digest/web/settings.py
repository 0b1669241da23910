"""Pure (plus environment reads): the web service's tunables.

They come from the config's `[web]` section (`from_config`); an environment variable
(named beside each) overrides the file, for containers. Tests pass a `WebSettings` to
`make_app`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from digest.config import Limit, WebConfig, _proxies
from digest.errors import ConfigError


@dataclass(frozen=True)
class WebSettings:
    # Defaults are [web]'s (digest.config.WebConfig); the comment names each override.
    # subscribe attempts per client IP / per e-mail address (sliding window, per process)
    rate_ip: Limit = WebConfig.rate_ip  # DIGEST_WEB_RATE_IP
    rate_email: Limit = WebConfig.rate_email  # DIGEST_WEB_RATE_EMAIL
    # live-preview requests per client IP (cheap, but each ranks the recent papers)
    rate_preview: Limit = WebConfig.rate_preview  # DIGEST_WEB_RATE_PREVIEW
    min_fill_seconds: float = WebConfig.min_fill_seconds  # DIGEST_WEB_MIN_FILL
    max_body: int = WebConfig.max_body  # DIGEST_WEB_MAX_BODY: bigger bodies get 413
    preview_days: int = WebConfig.preview_days  # DIGEST_WEB_PREVIEW_DAYS
    # Reverse proxies whose X-Forwarded-For/-Proto uvicorn trusts (uvicorn's
    # --forwarded-allow-ips); "" (the default): none, the peer address is the client.
    trusted_proxies: str = WebConfig.trusted_proxies  # DIGEST_WEB_TRUSTED_PROXIES
    manage_days: int = WebConfig.manage_days  # DIGEST_WEB_MANAGE_DAYS
    max_connections: int = WebConfig.max_connections  # DIGEST_WEB_MAX_CONNECTIONS
    header_timeout: float = WebConfig.header_timeout  # DIGEST_WEB_HEADER_TIMEOUT
    body_timeout: float = WebConfig.body_timeout  # DIGEST_WEB_BODY_TIMEOUT
    # the mail queue: first retry after this many seconds (doubling, up to an hour) and
    # how long a claimed message stays with a worker that may have died
    mail_retry_seconds: float = 30.0  # DIGEST_WEB_MAIL_RETRY
    mail_retry_max: float = 3600.0  # DIGEST_WEB_MAIL_RETRY_MAX: the longest wait between tries
    mail_tries: int = 12  # DIGEST_WEB_MAIL_TRIES: sends of one message before it is given up
    mail_lease_seconds: float = 120.0  # DIGEST_WEB_MAIL_LEASE

    @property
    def forwarded_allow_ips(self) -> str:  # uvicorn's name
        return self.trusted_proxies

    @classmethod
    def from_config(cls, web: WebConfig, env: Mapping[str, str] | None = None) -> WebSettings:
        """The `[web]` values (validated by digest.config), then environment overrides."""
        base = cls(
            rate_ip=web.rate_ip,
            rate_email=web.rate_email,
            rate_preview=web.rate_preview,
            min_fill_seconds=web.min_fill_seconds,
            max_body=web.max_body,
            preview_days=web.preview_days,
            trusted_proxies=web.trusted_proxies or web.forwarded_allow_ips,
            manage_days=web.manage_days,
            max_connections=web.max_connections,
            header_timeout=web.header_timeout,
            body_timeout=web.body_timeout,
        )
        return cls.from_env(env, base)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, base: WebSettings | None = None
    ) -> WebSettings:
        env = os.environ if env is None else env
        d = base or cls()

        def limit(name: str, default: Limit) -> Limit:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                return Limit.parse(raw)
            except ValueError as e:
                raise ConfigError(f"${name}: {e}") from e

        def number(name: str, default: float, lo: float, hi: float) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                v = float(raw)
            except ValueError:
                raise ConfigError(f"${name}: expected a number, got {raw!r}") from None
            if not lo <= v <= hi:
                raise ConfigError(f"${name}: expected a number from {lo:g} to {hi:g}, got {raw}")
            return v

        def proxies() -> str:
            for name in ("DIGEST_WEB_TRUSTED_PROXIES", "DIGEST_WEB_FORWARDED_ALLOW_IPS"):
                raw = env.get(name, "").strip()
                if raw:
                    try:
                        return _proxies(raw)
                    except ValueError as e:
                        raise ConfigError(f"${name}: {e}") from e
            return d.trusted_proxies

        return cls(
            rate_ip=limit("DIGEST_WEB_RATE_IP", d.rate_ip),
            rate_email=limit("DIGEST_WEB_RATE_EMAIL", d.rate_email),
            rate_preview=limit("DIGEST_WEB_RATE_PREVIEW", d.rate_preview),
            min_fill_seconds=number("DIGEST_WEB_MIN_FILL", d.min_fill_seconds, 0, 600),
            max_body=int(number("DIGEST_WEB_MAX_BODY", d.max_body, 1024, 10 * 1024 * 1024)),
            preview_days=int(number("DIGEST_WEB_PREVIEW_DAYS", d.preview_days, 1, 60)),
            trusted_proxies=proxies(),
            manage_days=int(number("DIGEST_WEB_MANAGE_DAYS", d.manage_days, 1, 3650)),
            max_connections=int(
                number("DIGEST_WEB_MAX_CONNECTIONS", d.max_connections, 10, 100_000)
            ),
            header_timeout=number("DIGEST_WEB_HEADER_TIMEOUT", d.header_timeout, 0.1, 300),
            body_timeout=number("DIGEST_WEB_BODY_TIMEOUT", d.body_timeout, 0.1, 600),
            mail_retry_seconds=number("DIGEST_WEB_MAIL_RETRY", d.mail_retry_seconds, 0.01, 3600),
            mail_retry_max=number("DIGEST_WEB_MAIL_RETRY_MAX", d.mail_retry_max, 0.01, 86400),
            mail_tries=int(number("DIGEST_WEB_MAIL_TRIES", d.mail_tries, 1, 10_000)),
            mail_lease_seconds=number("DIGEST_WEB_MAIL_LEASE", d.mail_lease_seconds, 0.5, 3600),
        )
