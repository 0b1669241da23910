"""Pure (plus environment reads): the web service's tunables.

They come from the config's `[web]` section (`from_config`); an environment variable
(named beside each) overrides the file, for containers. Tests pass a `WebSettings` to
`make_app`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from digest.config import WebConfig
from digest.errors import ConfigError
from digest.web.security import Limit


@dataclass(frozen=True)
class WebSettings:
    # subscribe attempts per client IP / per e-mail address (sliding window, per process)
    rate_ip: Limit = field(default_factory=lambda: Limit(10, 3600))  # DIGEST_WEB_RATE_IP
    rate_email: Limit = field(default_factory=lambda: Limit(3, 3600))  # DIGEST_WEB_RATE_EMAIL
    # live-preview requests per client IP (cheap, but each ranks the recent papers)
    rate_preview: Limit = field(default_factory=lambda: Limit(120, 60))  # DIGEST_WEB_RATE_PREVIEW
    min_fill_seconds: float = 2.0  # DIGEST_WEB_MIN_FILL: faster than this is a bot
    max_body: int = 16 * 1024  # DIGEST_WEB_MAX_BODY: bigger request bodies get 413
    preview_days: int = 7  # DIGEST_WEB_PREVIEW_DAYS: how far back the preview looks
    # Reverse proxies whose X-Forwarded-For/-Proto uvicorn trusts (uvicorn's
    # --forwarded-allow-ips); the rate limiter then sees the real client address.
    forwarded_allow_ips: str = "127.0.0.1"  # DIGEST_WEB_FORWARDED_ALLOW_IPS

    @classmethod
    def from_config(cls, web: WebConfig, env: Mapping[str, str] | None = None) -> WebSettings:
        """The `[web]` values (validated by digest.config), then environment overrides."""
        base = cls(rate_ip=Limit.parse(web.rate_ip), rate_email=Limit.parse(web.rate_email),
                   rate_preview=Limit.parse(web.rate_preview),
                   min_fill_seconds=web.min_fill_seconds, max_body=web.max_body,
                   preview_days=web.preview_days, forwarded_allow_ips=web.forwarded_allow_ips)
        return cls.from_env(env, base)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None,
                 base: WebSettings | None = None) -> WebSettings:
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

        return cls(
            rate_ip=limit("DIGEST_WEB_RATE_IP", d.rate_ip),
            rate_email=limit("DIGEST_WEB_RATE_EMAIL", d.rate_email),
            rate_preview=limit("DIGEST_WEB_RATE_PREVIEW", d.rate_preview),
            min_fill_seconds=number("DIGEST_WEB_MIN_FILL", d.min_fill_seconds, 0, 600),
            max_body=int(number("DIGEST_WEB_MAX_BODY", d.max_body, 1024, 10 * 1024 * 1024)),
            preview_days=int(number("DIGEST_WEB_PREVIEW_DAYS", d.preview_days, 1, 60)),
            forwarded_allow_ips=env.get("DIGEST_WEB_FORWARDED_ALLOW_IPS", "").strip()
            or d.forwarded_allow_ips,
        )
