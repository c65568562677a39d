"""A booking's identity: its id, access token and customer pseudonym, derived, not stored.

- `booking_id = "bk_" + HMAC(secret, Idempotency-Key)` (96 bits): one key is one booking, and
  Temporal's workflow id uniqueness (`booking-<booking_id>`, REJECT_DUPLICATE) makes the start
  atomic, so two concurrent requests with one key can never start two sagas.
- `access_token = HMAC(secret, booking_id)` (256 bits, urlsafe base64): a repeated request gets
  the same token back; only its SHA-256 is kept (memo `access_token_hash`, the ledger).
- `customer_ref = HMAC(customer_ref_key, lower-cased e-mail)`: safe for search attributes.

The canonical request (`request_fingerprint`) is hashed into the memo at start, so a repeat with
the same key and another body is told apart from a retry.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from api.service import NewBooking

#: What a booking id can look like (ours are `bk_` + 24 hex; tests and tools use other tails).
BOOKING_ID = re.compile(r"bk_[A-Za-z0-9_-]{1,100}")


def is_booking_id(value: str) -> bool:
    return BOOKING_ID.fullmatch(value) is not None


@dataclass(frozen=True)
class BookingKeys:
    """The keyed hashes that derive booking ids, access tokens and customer pseudonyms."""

    secret: bytes
    customer_ref_key: bytes

    def booking_id(self, idempotency_key: str) -> str:
        digest = _hmac(self.secret, "booking-id", idempotency_key)
        return "bk_" + digest.hex()[:24]

    def access_token(self, booking_id: str) -> str:
        digest = _hmac(self.secret, "access-token", booking_id)
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def customer_ref(self, email: str) -> str:
        digest = _hmac(self.customer_ref_key, "customer-ref", email.strip().lower())
        return "cref_" + digest.hex()[:32]


def token_hash(token: str) -> str:
    """What is stored instead of an access token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str | None, stored_hash: str | None) -> bool:
    if not token or not stored_hash:
        return False
    return hmac.compare_digest(token_hash(token), stored_hash)


def request_fingerprint(booking: NewBooking) -> str:
    """SHA-256 of the canonical JSON of a validated request (field order and spacing ignored)."""
    canonical = json.dumps(dataclasses.asdict(booking), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def fingerprints_match(stored: str | None, fingerprint: str) -> bool:
    """Whether the fingerprint stored at start (None if none was) is this request's."""
    return stored is not None and hmac.compare_digest(stored, fingerprint)


def _hmac(key: bytes, purpose: str, value: str) -> bytes:
    return hmac.new(key, f"{purpose}\0{value}".encode(), hashlib.sha256).digest()
