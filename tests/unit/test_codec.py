"""The payload codec keeps traveller data out of Temporal's history in clear."""

from __future__ import annotations

import pytest
from temporalio.converter import default

from passage.codec import EncryptionCodec, new_key
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
