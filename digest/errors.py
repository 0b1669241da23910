"""Pure: the one error tree of the product.

    DigestError                  anything the product reports as a one-line error
     ├── ConfigError             bad or missing configuration (names the key)
     ├── InputError              bad user input: address, keywords, CSV row, date
     │    └── UnknownSubscriber  no such subscriber
     ├── FetchError              a source could not be fetched (after retries)
     │    └── AllSourcesFailed   every configured source failed: nothing is sent
     ├── StoreError              the store cannot be read or written
     │    └── StoreLocked        another run holds the run lock
     ├── DeliveryError           a message could not be delivered
     │    ├── TransientDeliveryError  4xx / dropped connection: retried next run
     │    └── PermanentDeliveryError  5xx: recorded as failed, never retried
     └── TokenError              a signed link is forged, altered or expired

Third-party exceptions are wrapped at the edge that meets them (`raise ... from e`);
the CLI prints `str(error)` on one line and exits non-zero.
"""

from __future__ import annotations


class DigestError(Exception):
    """Base of every error the product reports."""

    exit_code = 1


class ConfigError(DigestError):
    exit_code = 2


class InputError(DigestError):
    exit_code = 2


class UnknownSubscriber(InputError):
    pass


class FetchError(DigestError):
    pass


class AllSourcesFailed(FetchError):
    exit_code = 3


class StoreError(DigestError):
    exit_code = 4


class StoreLocked(StoreError):
    exit_code = 75  # EX_TEMPFAIL: try again later


class DeliveryError(DigestError):
    exit_code = 5


class TransientDeliveryError(DeliveryError):
    """4xx reply or a connection problem: the digest is retried on the next run."""


class PermanentDeliveryError(DeliveryError):
    """5xx reply: recorded as failed and never retried."""


class TokenError(DigestError):
    pass


class TokenExpired(TokenError):
    """A genuine link, older than its purpose allows (digest.tokens)."""
