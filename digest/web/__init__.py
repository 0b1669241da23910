"""The subscription web service: subscribe (double opt-in), confirm, manage, one-click
unsubscribe (RFC 8058) and personal Atom feeds. See `digest.web.app`.

`make_app` and `serve` are imported lazily so `digest --help` does not load Starlette.
"""

from __future__ import annotations

from typing import Any

from digest.web.cli import register

__all__ = ["make_app", "register", "serve"]


def make_app(*args: Any, **kwargs: Any) -> Any:
    from digest.web.app import make_app as _make_app

    return _make_app(*args, **kwargs)


def serve(*args: Any, **kwargs: Any) -> None:
    from digest.web.app import serve as _serve

    _serve(*args, **kwargs)
