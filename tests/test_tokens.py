"""digest.tokens: signed links that survive a round trip and nothing else."""

from __future__ import annotations

import base64
import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous.timed import TimestampSigner

from digest import tokens
from digest.errors import TokenError

SECRET = "test-secret-0123456789"


@pytest.mark.parametrize("purpose", tokens.PURPOSES)
def test_round_trip_each_purpose(purpose: str) -> None:
    tok = tokens.sign(SECRET, purpose, "Ann@Example.org")
    assert tokens.verify(SECRET, purpose, tok) == "Ann@Example.org"
    assert tokens.verify(SECRET, purpose, tok, max_age=60) == "Ann@Example.org"
    # URL-safe: usable as one path segment without quoting
    assert all(c.isalnum() or c in "-_." for c in tok)


def test_wrong_purpose_is_rejected() -> None:
    tok = tokens.sign(SECRET, "manage", "a@example.org")
    for other in ("unsubscribe", "feed", "confirm"):
        with pytest.raises(TokenError, match="forged, altered or for another purpose"):
            tokens.verify(SECRET, other, tok)


def test_other_secret_is_forged() -> None:
    tok = tokens.sign("another-secret", "unsubscribe", "a@example.org")
    with pytest.raises(TokenError, match="invalid link"):
        tokens.verify(SECRET, "unsubscribe", tok)


def test_altered_payload_and_signature_are_rejected() -> None:
    tok = tokens.sign(SECRET, "unsubscribe", "a@example.org")
    payload, ts, sig = tok.split(".")
    # Swap the address inside the (unsigned-looking) payload for another one.
    evil = base64.urlsafe_b64encode(b'"victim@example.org"').rstrip(b"=").decode()
    for bad in (
        f"{evil}.{ts}.{sig}",
        # (the middle: the last base64 character partly holds padding bits)
        f"{payload}.{ts}.{sig[:10]}{'A' if sig[10] != 'A' else 'B'}{sig[11:]}",
        f"{payload}.{ts}x.{sig}",
        tok[:-3],
    ):
        with pytest.raises(TokenError) as info:
            tokens.verify(SECRET, "unsubscribe", bad)
        assert "\n" not in str(info.value)


def test_expired_confirm_link(monkeypatch: pytest.MonkeyPatch) -> None:
    real = TimestampSigner.get_timestamp
    # Sign "4 days ago": itsdangerous stamps tokens with get_timestamp().
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: real(self) - 4 * 24 * 3600)
    url = tokens.confirm_url("https://d.example.org", SECRET, "a@example.org")
    monkeypatch.setattr(TimestampSigner, "get_timestamp", real)
    tok = url.rsplit("/", 1)[1]
    with pytest.raises(TokenError, match="expired"):
        tokens.verify(SECRET, "confirm", tok, max_age=tokens.CONFIRM_MAX_AGE)
    # Without max_age (unsubscribe/manage/feed semantics) age does not matter.
    assert tokens.verify(SECRET, "confirm", tok) == "a@example.org"


def test_fresh_confirm_link_within_max_age() -> None:
    url = tokens.confirm_url("https://d.example.org/", SECRET, "a@example.org")
    assert url.startswith("https://d.example.org/confirm/")
    tok = url.rsplit("/", 1)[1]
    assert tokens.verify(SECRET, "confirm", tok, max_age=tokens.CONFIRM_MAX_AGE) == "a@example.org"


@pytest.mark.parametrize(
    "garbage",
    ["", "abc", "....", "a.b.c", "%%%.^^^.***", "x" * 5000, "InZpY3RpbUBleGFtcGxlLm9yZyI"],
)
def test_garbage_tokens_give_one_line_error(garbage: str) -> None:
    with pytest.raises(TokenError) as info:
        tokens.verify(SECRET, "manage", garbage)
    assert "\n" not in str(info.value)


def test_empty_secret_and_unknown_purpose() -> None:
    with pytest.raises(TokenError, match="secret"):
        tokens.sign("", "manage", "a@example.org")
    with pytest.raises(TokenError, match="purpose"):
        tokens.sign(SECRET, "delete-everything", "a@example.org")


def test_links_shape_and_each_link_verifies() -> None:
    links = tokens.links("https://digest.example.org/", SECRET, "a@example.org")
    assert isinstance(links, tokens.Links)
    base = "https://digest.example.org"
    assert links.unsubscribe_url.startswith(f"{base}/unsubscribe/")
    assert links.manage_url.startswith(f"{base}/manage/")
    assert links.feed_url.startswith(f"{base}/feed/") and links.feed_url.endswith(".atom")
    unsub = links.unsubscribe_url.rsplit("/", 1)[1]
    manage = links.manage_url.rsplit("/", 1)[1]
    feed = links.feed_url.rsplit("/", 1)[1].removesuffix(".atom")
    assert tokens.verify(SECRET, "unsubscribe", unsub) == "a@example.org"
    assert tokens.verify(SECRET, "manage", manage) == "a@example.org"
    assert tokens.verify(SECRET, "feed", feed) == "a@example.org"
    # A token from one link cannot be replayed on another kind of page.
    with pytest.raises(TokenError):
        tokens.verify(SECRET, "manage", unsub)
    with pytest.raises(dataclasses.FrozenInstanceError):
        links.manage_url = "x"  # type: ignore[misc]


@settings(max_examples=60, deadline=None)
@given(st.emails(), st.sampled_from(tokens.PURPOSES))
def test_any_address_round_trips(email: str, purpose: str) -> None:
    assert tokens.verify(SECRET, purpose, tokens.sign(SECRET, purpose, email)) == email
