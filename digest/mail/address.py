"""Pure: no I/O. E-mail addresses as the wire carries them (envelope and headers).

    wire_address("anna@bücher.de")   -> "anna@xn--bcher-kva.de"
    needs_smtputf8("zoë@example.org") -> True

A domain with non-ASCII letters (an IDN) travels as its IDNA A-label (RFC 5890/5891,
mapped with UTS #46 as browsers and registries do; the `idna` package implements it,
which the stdlib "idna" codec does not: that is IDNA 2003, where "ß" becomes "ss").
So `anna@bücher.de` needs nothing from the server. A non-ASCII *local part* has no ASCII
form: it needs SMTPUTF8 (RFC 6531) end to end, and raw UTF-8 in the To header (RFC 6532),
so the sender uses it only when the server offers SMTPUTF8 and fails that recipient
otherwise (digest/mail/smtp.py).
"""

from __future__ import annotations

from functools import lru_cache

import idna

from digest.errors import InputError


@lru_cache(maxsize=4096)
def ascii_domain(domain: str) -> str:
    """The domain as the wire carries it: lower-case, IDNA A-labels for non-ASCII labels.
    Raises InputError for a domain IDNA refuses (e.g. "-bad-.de" with a non-ASCII label)."""
    if domain.isascii():
        return domain.lower()
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as e:
        raise InputError(f"not a valid international domain name: {domain!r} ({e})") from e


def wire_address(addr: str) -> str:
    """`local@domain` with the domain as ascii_domain gives it; the local part unchanged.
    Raises InputError for text without "@" or with an invalid IDN domain."""
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain:
        raise InputError(f"not an e-mail address: {addr[:80]!r}")
    return f"{local}@{ascii_domain(domain)}"


def needs_smtputf8(addr: str) -> bool:
    """Whether this address (after wire_address) can only travel with SMTPUTF8: only a
    non-ASCII local part can, since the domain has an ASCII form."""
    return not addr.isascii()
