"""The payload key family: the workflow payload codec and the ledger's field cipher.

Temporal stores payloads in its history in clear unless a codec encodes them on the client and
worker side. Search attributes are never encoded, which is why they carry no personal data.
The ledger keeps the same personal data (customer, travellers) encrypted with keys derived from
the codec key (`LedgerCipher`), so neither a history export nor a database dump shows it.
"""

from __future__ import annotations

import base64
import hmac
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
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


#: What each key of the family is for: HKDF `info`, so no two purposes share a key.
_LEDGER_ENCRYPTION = b"passage ledger personal data v1"
_LEDGER_LOOKUP = b"passage ledger e-mail lookup v1"


def normalized_email(email: str) -> str:
    """The form an e-mail is looked up by: surrounding blanks dropped, lower case."""
    return email.strip().lower()


class LedgerCipher:
    """Personal data at rest in the ledger: AES-256-GCM fields and a keyed hash for lookups.

    Both keys belong to the payload key family: they are derived from the codec key with HKDF
    (SHA-256), one per purpose, so the codec key itself never touches the database, a ledger
    field cannot be passed off as a workflow payload, and the lookup hash reveals nothing about
    the encryption key. A sealed field is `<key id>:<urlsafe base64 of nonce + ciphertext>`; the
    key id leaves room for rotation. Each field is bound to where it belongs (`context`, e.g. the
    booking id and the column) as associated data, so a field copied to another row, or another
    booking's, fails to open instead of showing one customer's data on another's booking.
    """

    def __init__(self, key: str, key_id: str = "passage-1") -> None:
        root = base64.urlsafe_b64decode(key)
        self._aead = AESGCM(_derive(root, _LEDGER_ENCRYPTION))
        self._lookup_key = _derive(root, _LEDGER_LOOKUP)
        self._key_id = key_id
        self._prefix = f"{key_id}:"

    def seal(self, plaintext: str, context: str) -> str:
        """`plaintext` encrypted, bound to `context` (a fresh nonce each time)."""
        nonce = os.urandom(12)
        sealed = nonce + self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return self._prefix + base64.urlsafe_b64encode(sealed).decode()

    def open(self, sealed: str, context: str) -> str:
        """The plaintext of a field `seal` made for the same `context`.

        Raises:
            ValueError: another key id, or the field was altered or moved (the message names
                neither the field nor its content).
        """
        key_id, separator, body = sealed.partition(":")
        if not separator or key_id != self._key_id:
            raise ValueError("ledger field sealed with an unknown key id")
        data = base64.urlsafe_b64decode(body)
        try:
            return self._aead.decrypt(data[:12], data[12:], context.encode()).decode()
        except InvalidTag as error:
            raise ValueError("ledger field does not open: altered, moved or another key") from error

    def email_hash(self, email: str) -> str:
        """The keyed hash (HMAC-SHA256, hex) of the normalized e-mail: equal for equal addresses,
        useless for finding an address without the key."""
        return hmac.digest(self._lookup_key, normalized_email(email).encode(), "sha256").hex()


def _derive(root: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(root)
