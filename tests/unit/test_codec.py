"""The payload key family keeps traveller data out of Temporal's history and the ledger in clear."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from temporalio.converter import default

from passage.codec import EncryptionCodec, LedgerCipher, key_id, new_key
from workflows.model import Traveller


async def test_payloads_round_trip_and_hide_personal_data() -> None:
    codec = EncryptionCodec(new_key())
    payloads = default().payload_converter.to_payloads(
        [Traveller("Ada", "Lovelace", "1990-12-10", "X1234567")]
    )
    encoded = await codec.encode(payloads)
    assert b"X1234567" not in encoded[0].SerializeToString()
    assert b"Lovelace" not in encoded[0].SerializeToString()
    assert await codec.decode(encoded) == payloads


async def test_another_key_cannot_decode() -> None:
    encoded = await EncryptionCodec(new_key()).encode(
        default().payload_converter.to_payloads(["secret"])
    )
    with pytest.raises(Exception):  # noqa: B017 - any authentication failure will do
        await EncryptionCodec(new_key()).decode(encoded)


def test_ledger_fields_round_trip_only_where_they_were_sealed() -> None:
    key = new_key()
    cipher = LedgerCipher(key)
    sealed = cipher.seal("Ada Lovelace", "bookings.customer:bk_1")
    assert "Ada" not in sealed and sealed.startswith(f"{key_id(key)}:")
    assert cipher.open(sealed, "bookings.customer:bk_1") == "Ada Lovelace"
    assert cipher.seal("Ada Lovelace", "bookings.customer:bk_1") != sealed  # a fresh nonce
    with pytest.raises(ValueError, match="does not open"):
        cipher.open(sealed, "bookings.customer:bk_2")  # moved to another booking
    with pytest.raises(ValueError, match="unknown key id"):  # another key: its id says so
        LedgerCipher(new_key()).open(sealed, "bookings.customer:bk_1")
    with pytest.raises(ValueError, match="unknown key id"):
        cipher.open("passage-9:" + sealed.partition(":")[2], "bookings.customer:bk_1")


def test_the_email_hash_is_keyed_and_normalized() -> None:
    key = new_key()
    cipher = LedgerCipher(key)
    assert cipher.email_hash(" Ada@Example.COM ") == cipher.email_hash("ada@example.com")
    assert cipher.email_hash("ada@example.com") != cipher.email_hash("alan@example.com")
    assert LedgerCipher(new_key()).email_hash("ada@example.com") != cipher.email_hash(
        "ada@example.com"
    )
    # Not the codec key's own output: the ledger's keys are derived, one per purpose.
    plain = hashlib.sha256(b"ada@example.com").hexdigest()
    keyed_with_root = hmac.new(base64.urlsafe_b64decode(key), b"ada@example.com", "sha256")
    assert cipher.email_hash("ada@example.com") not in {plain, keyed_with_root.hexdigest()}
