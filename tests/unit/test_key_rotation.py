"""Codec key rotation: one key writes, the old ones stay readable, every payload and ledger field
names its key, and data written before key ids still opens."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.converter import default

from passage.codec import (
    KEY_ID_METADATA,
    LEGACY_KEY_ID,
    EncryptionCodec,
    LedgerCipher,
    UnknownKeyError,
    key_id,
    new_key,
)
from passage.settings import Environment, Settings
from workflows.model import Traveller

TRAVELLER = Traveller("Ada", "Lovelace", "1990-12-10", "X1234567")
CONTEXT = "bookings.customer:bk_1"


def _payloads() -> list[Payload]:
    return default().payload_converter.to_payloads([TRAVELLER])


def _as_legacy(payload: Payload, key_id_value: bytes | None) -> Payload:
    """The payload as the codec wrote it before key ids: `passage-1`, or no key id at all."""
    legacy = Payload()
    legacy.CopyFrom(payload)
    del legacy.metadata[KEY_ID_METADATA]
    if key_id_value is not None:
        legacy.metadata[KEY_ID_METADATA] = key_id_value
    return legacy


def test_a_key_id_is_a_stable_fingerprint_that_reveals_nothing_of_the_key() -> None:
    key = new_key()
    assert key_id(key) == key_id(key) and key_id(key).startswith("k-")
    assert len(key_id(key)) == len("k-") + 12
    assert key_id(key) != key_id(new_key())
    assert key_id(key)[2:] not in key and key_id(key)[2:] not in bytes.hex(key.encode())


async def test_a_payload_written_under_the_old_key_is_read_after_the_rotation() -> None:
    old, new = new_key(), new_key()
    written = await EncryptionCodec(old).encode(_payloads())
    assert written[0].metadata[KEY_ID_METADATA] == key_id(old).encode()

    rotated = EncryptionCodec(new, old_keys=[old])
    assert await rotated.decode(written) == _payloads()
    rewritten = await rotated.encode(_payloads())
    assert rewritten[0].metadata[KEY_ID_METADATA] == key_id(new).encode()
    assert await EncryptionCodec(new).decode(rewritten) == _payloads()


async def test_a_payload_under_a_key_not_given_names_its_key_id() -> None:
    old, new = new_key(), new_key()
    written = await EncryptionCodec(old).encode(_payloads())
    with pytest.raises(UnknownKeyError, match=key_id(old)) as raised:
        await EncryptionCodec(new).decode(written)
    assert "PASSAGE_CODEC_OLD_KEYS" in str(raised.value) and old not in str(raised.value)
    assert raised.value.key_id == key_id(old)


@pytest.mark.parametrize("legacy_id", [LEGACY_KEY_ID.encode(), None], ids=["passage-1", "none"])
async def test_a_payload_written_before_key_ids_still_decodes(legacy_id: bytes | None) -> None:
    old, new = new_key(), new_key()
    [legacy] = [_as_legacy(p, legacy_id) for p in await EncryptionCodec(old).encode(_payloads())]
    assert await EncryptionCodec(old).decode([legacy]) == _payloads()  # the current key
    assert await EncryptionCodec(new, old_keys=[old]).decode([legacy]) == _payloads()
    with pytest.raises(ValueError, match="none of the keys"):
        await EncryptionCodec(new).decode([legacy])


def test_a_ledger_field_sealed_under_the_old_key_opens_after_the_rotation() -> None:
    old, new = new_key(), new_key()
    sealed = LedgerCipher(old).seal("Ada Lovelace", CONTEXT)
    assert sealed.startswith(f"{key_id(old)}:")

    rotated = LedgerCipher(new, old_keys=[old])
    assert rotated.open(sealed, CONTEXT) == "Ada Lovelace"
    assert rotated.seal("Ada Lovelace", CONTEXT).startswith(f"{key_id(new)}:")
    with pytest.raises(ValueError, match="does not open"):
        rotated.open(sealed, "bookings.customer:bk_2")  # still bound to where it belongs
    with pytest.raises(UnknownKeyError, match=key_id(old)):
        LedgerCipher(new).open(sealed, CONTEXT)


def test_a_ledger_field_sealed_before_key_ids_still_opens() -> None:
    old, new = new_key(), new_key()
    legacy = LEGACY_KEY_ID + ":" + LedgerCipher(old).seal("Ada Lovelace", CONTEXT).partition(":")[2]
    assert LedgerCipher(old).open(legacy, CONTEXT) == "Ada Lovelace"
    assert LedgerCipher(new, old_keys=[old]).open(legacy, CONTEXT) == "Ada Lovelace"
    with pytest.raises(ValueError, match="does not open"):
        LedgerCipher(new).open(legacy, CONTEXT)


def test_the_email_search_covers_every_readable_key() -> None:
    old, new = new_key(), new_key()
    recorded_before = LedgerCipher(old).email_hash("ada@example.com")
    rotated = LedgerCipher(new, old_keys=[old])
    assert rotated.email_hash("Ada@Example.com") == LedgerCipher(new).email_hash("ada@example.com")
    assert rotated.email_hashes(" ADA@example.com") == (
        rotated.email_hash("ada@example.com"),
        recorded_before,
    )
    assert LedgerCipher(new, old_keys=[new]).email_hashes("ada@example.com") == (
        rotated.email_hash("ada@example.com"),
    )


def test_old_keys_are_a_setting_validated_like_the_codec_key() -> None:
    old, older, new = new_key(), new_key(), new_key()
    settings = Settings(
        env=Environment.DEVELOPMENT, codec_key=new, codec_old_keys=f" {old}, ,{older} "
    )
    assert settings.old_codec_key_list == (old, older)
    assert "codec_old_keys" not in repr(settings)
    with pytest.raises(ValidationError, match="PASSAGE_CODEC_OLD_KEYS") as raised:
        Settings(env=Environment.DEVELOPMENT, codec_key=new, codec_old_keys=f"{old},not-a-key")
    assert "not-a-key" not in str(raised.value) and old not in str(raised.value)
    with pytest.raises(ValidationError, match="needs PASSAGE_CODEC_KEY"):
        Settings(env=Environment.DEVELOPMENT, codec_old_keys=old)
