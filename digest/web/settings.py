"""Pure (plus environment reads): the web service's tunables.

They come from the config's `[web]` section (`from_config`); an environment variable
(named beside each) overrides the file, for containers. Tests pass a `WebSettings` to
`make_app`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from digest.config import Limit, WebConfig
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
    # --forwarded-allow-ips); the rate limiter then sees the real client address.
    forwarded_allow_ips: str = WebConfig.forwarded_allow_ips  # DIGEST_WEB_FORWARDED_ALLOW_IPS

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
            forwarded_allow_ips=web.forwarded_allow_ips,
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
