"""Personal data at rest: the stored form of the ledger's customer and traveller fields.

Personal data is encrypted before it reaches the database (a `FieldCipher`, in production
passage.codec.LedgerCipher): the customer's e-mail and name in one field of the booking row, each
traveller in one field of theirs, JSON inside, each bound to its booking (and position) so it
cannot be moved to another row. Staff search by e-mail compares a keyed hash of the normalized
address. Migration 0004 writes existing rows with these same functions; changing the form needs a
migration of its own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Protocol

from activities.ports import TravellerRecord
from workflows.model import Traveller


class FieldCipher(Protocol):
    """Encrypts the ledger's personal data and hashes e-mails for lookup (passage.codec)."""

    def seal(self, plaintext: str, context: str) -> str: ...

    def open(self, sealed: str, context: str) -> str: ...

    def email_hash(self, email: str) -> str: ...

    def email_hashes(self, email: str) -> Sequence[str]: ...


def seal_customer(cipher: FieldCipher, booking_id: str, email: str, name: str) -> str:
    """`bookings.customer_ciphertext` of a booking."""
    plaintext = json.dumps({"email": email, "name": name}, separators=(",", ":"))
    return cipher.seal(plaintext, f"bookings.customer:{booking_id}")


def open_customer(cipher: FieldCipher, booking_id: str, sealed: str) -> tuple[str, str]:
    """The (e-mail, name) that `seal_customer` sealed for this booking."""
    customer = json.loads(cipher.open(sealed, f"bookings.customer:{booking_id}"))
    return customer["email"], customer["name"]


def seal_traveller(
    cipher: FieldCipher, booking_id: str, position: int, traveller: TravellerRecord
) -> str:
    """`booking_travellers.traveller_ciphertext` of the booking's traveller at `position`."""
    fields = {
        "first_name": traveller.first_name,
        "last_name": traveller.last_name,
        "birth_date": traveller.birth_date,
        "document_hint": traveller.document_hint,
    }
    plaintext = json.dumps(fields, separators=(",", ":"))
    return cipher.seal(plaintext, f"booking_travellers:{booking_id}:{position}")


def open_traveller(
    cipher: FieldCipher, booking_id: str, position: int, sealed: str
) -> TravellerRecord:
    """The traveller that `seal_traveller` sealed for this booking and position."""
    plaintext = cipher.open(sealed, f"booking_travellers:{booking_id}:{position}")
    return TravellerRecord(**json.loads(plaintext))


def document_hint(traveller: Traveller) -> str:
    """At most the last four characters of the document number, and never more than half of it."""
    number = "".join(traveller.document_number.split())
    keep = min(4, len(number) // 2)
    return number[-keep:] if keep else ""
