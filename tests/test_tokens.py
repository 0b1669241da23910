"""digest.tokens: signed, opaque links that survive a round trip and nothing else."""

from __future__ import annotations

import base64
import dataclasses
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeTimedSerializer

from digest import tokens
from digest.errors import TokenError, TokenExpired
from digest.store.base import new_subscriber_id

SECRET = "test-secret-0123456789-0123456789"
SID = "Wq3n0xv7Tt2lq8mP4rYk1A"


def _payload(token: str) -> bytes:
    """What anyone holding the token can read without the secret: its first part."""
    part = token.split(".")[0]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@pytest.mark.parametrize("purpose", tokens.PURPOSES)
def test_round_trip_each_purpose(purpose: str) -> None:
    tok = tokens.sign(SECRET, purpose, SID)
    assert tokens.verify(SECRET, purpose, tok) == SID
    assert tokens.verify_id(SECRET, purpose, tok, max_age=60) == SID


def test_wrong_purpose_is_rejected() -> None:
    tok = tokens.sign(SECRET, "manage", SID)
    for other in tokens.PURPOSES:
        if other != "manage":
            with pytest.raises(TokenError):
                tokens.verify(SECRET, other, tok)


def test_other_secret_is_forged() -> None:
    tok = tokens.sign("another-secret", "unsubscribe", SID)
    with pytest.raises(TokenError, match="forged"):
        tokens.verify(SECRET, "unsubscribe", tok)


def test_altered_payload_and_signature_are_rejected() -> None:
    tok = tokens.sign(SECRET, "unsubscribe", SID)
    payload, stamp, sig = tok.split(".")
    other = tokens.sign(SECRET, "unsubscribe", "another-id").split(".")[0]
    for bad in (
        f"{other}.{stamp}.{sig}",
        f"{payload}.{stamp}.{sig[:-2]}xx",
        f"{payload}.{stamp}.",
        tok[:-1],
    ):
        with pytest.raises(TokenError):
            tokens.verify(SECRET, "unsubscribe", bad)


def test_links_carry_the_random_id_and_never_the_address() -> None:
    # Issue 9 section 4: tokens carried the address in base64 (and the feed's self link
    # showed it). Now the payload is the subscriber's random id and nothing else.
    sid = new_subscriber_id()
    lk = tokens.links("https://d.example.org", SECRET, sid)
    for url in (lk.unsubscribe_url, lk.manage_url, lk.feed_url):
        tok = url.rsplit("/", 1)[1].removesuffix(".atom")
        assert _payload(tok) == f'"{sid}"'.encode()
    with pytest.raises(TokenError, match="subscriber id"):
        tokens.verify_id(SECRET, "manage", tokens.sign(SECRET, "manage", "a@example.org"))


def test_manage_links_expire_by_the_clock_passed_in() -> None:
    tok = tokens.sign(SECRET, tokens.MANAGE, SID)
    max_age = tokens.MANAGE_DAYS * 86400
    now = time.time()
    assert tokens.verify_id(SECRET, tokens.MANAGE, tok, max_age, now + max_age - 60) == SID
    with pytest.raises(TokenExpired, match="expired"):
        tokens.verify_id(SECRET, tokens.MANAGE, tok, max_age, now + max_age + 60)
    # no max_age (unsubscribe, feed): years later still good
    assert tokens.verify_id(SECRET, tokens.UNSUBSCRIBE, tokens.sign(SECRET, "unsubscribe", SID))
    far = now + 5 * 365 * 86400
    assert tokens.verify_id(SECRET, tokens.MANAGE, tok, None, far) == SID


def test_confirm_token_carries_the_settings_asked_for_and_expires() -> None:
    url = tokens.confirm_url("https://d.example.org/", SECRET, SID, ("agents", "-survey"), 7)
    assert url.startswith("https://d.example.org/confirm/")
    tok = url.rsplit("/", 1)[1]
    req = tokens.read_confirm(SECRET, tok)
    assert req == tokens.ConfirmRequest(SID, ("agents", "-survey"), 7, False)
    assert b"@" not in _payload(tok)
    back = tokens.confirm_url("", SECRET, SID, (), 3, revive=True).rsplit("/", 1)[1]
    assert tokens.read_confirm(SECRET, back).revive is True
    later = time.time() + tokens.CONFIRM_MAX_AGE + 60
    with pytest.raises(TokenError, match="expired"):
        tokens.read_confirm(SECRET, tok, now=later)
    with pytest.raises(TokenError, match="subscription request"):
        tokens.read_confirm(SECRET, tokens.sign(SECRET, tokens.CONFIRM, SID))


def test_confirm_token_carries_example_papers_and_reads_the_first_format() -> None:
    ids = ("2601.02346", "2512.24601", "hep-th/9901001")
    url = tokens.confirm_url("", SECRET, SID, ("agents", "-survey"), 7, examples=ids)
    req = tokens.read_confirm(SECRET, url.rsplit("/", 1)[1])
    assert req == tokens.ConfirmRequest(SID, ("agents", "-survey"), 7, False, ids)
    back = tokens.confirm_url("", SECRET, SID, (), 3, revive=True, examples=ids)
    req = tokens.read_confirm(SECRET, back.rsplit("/", 1)[1])
    assert (req.keywords, req.revive, req.examples) == ((), True, ids)
    # "No examples asked for" (keep what is stored) is not "none" (an empty list).
    none = tokens.confirm_url("", SECRET, SID, ("a",), 3, examples=())
    assert tokens.read_confirm(SECRET, none.rsplit("/", 1)[1]).examples == ()
    # A link of the first format (keywords only) still confirms, and says nothing of examples.
    first = tokens.sign(SECRET, tokens.CONFIRM, (SID, 5, 1, "agents", "rl"))
    assert tokens.read_confirm(SECRET, first) == tokens.ConfirmRequest(
        SID, ("agents", "rl"), 5, True, None
    )
    # A keyword count that does not fit the token is refused, not misread.
    for broken in ((SID, 5, 2, 3, "a"), (SID, 5, 2, "a"), (SID, 5, 4, "a")):
        with pytest.raises(TokenError, match="subscription request"):
            tokens.read_confirm(SECRET, tokens.sign(SECRET, tokens.CONFIRM, broken))


def test_the_longest_settings_fit_a_confirmation_link() -> None:
    """30 terms of non-Latin script (1,000 characters, six bytes each in the token's JSON)
    and 100 example ids: the link still reads back (it used to be refused as malformed)."""
    import random

    rnd = random.Random(7)
    terms = tuple("".join(chr(rnd.randint(0x4E00, 0x9FFF)) for _ in range(32)) for _ in range(30))
    ids = tuple(f"2601.{i:05d}" for i in range(100))
    url = tokens.confirm_url("https://d.example.org", SECRET, SID, terms, 100, examples=ids)
    req = tokens.read_confirm(SECRET, url.rsplit("/", 1)[1])
    assert (req.keywords, req.examples) == (terms, ids)
    assert len(url) < 8192


def test_old_format_tokens_are_recognised_only_as_such() -> None:
    # Before opaque ids: the address itself, salt = the purpose's name.
    old = URLSafeTimedSerializer(SECRET, salt="unsubscribe").dumps("ann@example.org")
    assert tokens.legacy_address(SECRET, "unsubscribe", old) == "ann@example.org"
    with pytest.raises(TokenError):
        tokens.verify(SECRET, "unsubscribe", old)  # not a current token
    assert tokens.legacy_address(SECRET, "manage", old) is None  # other purpose
    assert (
        tokens.legacy_address(SECRET, "unsubscribe", tokens.sign(SECRET, "unsubscribe", SID))
        is None
    )


@pytest.mark.parametrize("garbage", ["", "x", "a.b", "a.b.c", "%%%", "é" * 10, "x" * 5000])
def test_garbage_tokens_give_one_line_error(garbage: str) -> None:
    with pytest.raises(TokenError) as info:
        tokens.verify(SECRET, "manage", garbage)
    assert "\n" not in str(info.value)


def test_empty_secret_unknown_purpose_and_no_id() -> None:
    with pytest.raises(TokenError, match="secret"):
        tokens.sign("", "manage", SID)
    with pytest.raises(TokenError, match="purpose"):
        tokens.sign(SECRET, "delete-everything", SID)
    with pytest.raises(TokenError, match="no id"):
        tokens.links("https://d.example.org", SECRET, "")


def test_links_shape_and_each_link_verifies() -> None:
    links = tokens.links("https://digest.example.org/", SECRET, SID)
    assert isinstance(links, tokens.Links)
    base = "https://digest.example.org"
    assert links.unsubscribe_url.startswith(f"{base}/unsubscribe/")
    assert links.manage_url.startswith(f"{base}/manage/")
    assert links.feed_url.startswith(f"{base}/feed/") and links.feed_url.endswith(".atom")
    unsub = links.unsubscribe_url.rsplit("/", 1)[1]
    manage = links.manage_url.rsplit("/", 1)[1]
    feed = links.feed_url.rsplit("/", 1)[1].removesuffix(".atom")
    assert tokens.verify(SECRET, "unsubscribe", unsub) == SID
    assert tokens.verify(SECRET, "manage", manage) == SID
    assert tokens.verify(SECRET, "feed", feed) == SID
    # A token from one link cannot be replayed on another kind of page.
    with pytest.raises(TokenError):
        tokens.verify(SECRET, "manage", unsub)
    with pytest.raises(dataclasses.FrozenInstanceError):
        links.manage_url = "x"  # type: ignore[misc]


@settings(max_examples=60, deadline=None)
@given(
    st.text(alphabet=st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=40)
)
def test_any_id_round_trips(sid: str) -> None:
    for purpose in (tokens.UNSUBSCRIBE, tokens.MANAGE, tokens.FEED):
        assert tokens.verify_id(SECRET, purpose, tokens.sign(SECRET, purpose, sid)) == sid
