"""Payload codec: encrypts every workflow payload (traveller data, e-mails) with AES-GCM.

Temporal stores payloads in its history in clear unless a codec encodes them on the client and
worker side. Search attributes are never encoded, which is why they carry no personal data.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"


def new_key() -> str:
    """A fresh codec key: urlsafe base64 of 32 random bytes."""
    return base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)).decode()


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over the serialized payload; the key id travels in the metadata."""

    def __init__(self, key: str, key_id: str = "passage-1") -> None:
        self._aead = AESGCM(base64.urlsafe_b64decode(key))
        self._key_id = key_id.encode()

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [
            Payload(
                metadata={"encoding": ENCODING, "encryption-key-id": self._key_id},
                data=self._encrypt(payload.SerializeToString()),
            )
            for payload in payloads
        ]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        decoded: list[Payload] = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                decoded.append(payload)
                continue
            if payload.metadata.get("encryption-key-id") != self._key_id:
                raise ValueError("payload encrypted with an unknown key id")
            decoded.append(Payload.FromString(self._decrypt(payload.data)))
        return decoded

    def _encrypt(self, data: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, data, None)

    def _decrypt(self, data: bytes) -> bytes:
        return self._aead.decrypt(data[:12], data[12:], None)
