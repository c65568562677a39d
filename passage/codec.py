"""The payload key family: the workflow payload codec and the ledger's field cipher.

Temporal stores payloads in its history in clear unless a codec encodes them on the client and
worker side. Search attributes are never encoded, which is why they carry no personal data.
The ledger keeps the same personal data (customer, travellers) encrypted with keys derived from
the codec key (`LedgerCipher`), so neither a history export nor a database dump shows it.

Keys rotate (docs/upgrades.md): one key writes (`PASSAGE_CODEC_KEY`), the old ones stay readable
(`PASSAGE_CODEC_OLD_KEYS`), and every payload and sealed field names the key it was written
under by its key id, a fingerprint derived from the key that reveals nothing about it.
"""

from __future__ import annotations

import base64
import hmac
import os
from collections.abc import Callable, Sequence
from typing import TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
#: The key id every payload and ledger field carried before key ids named their key: such data
#: is opened with the writing key first, then with each old key.
LEGACY_KEY_ID = "passage-1"

T = TypeVar("T")


class UnknownKeyError(ValueError):
    """Data written under a key this process was not given (neither the writing key nor an old
    one); the message names the key id, never the key."""

    def __init__(self, what: str, key_id: str) -> None:
        super().__init__(
            f"{what} encrypted with an unknown key id {key_id!r}: give that key in "
            "PASSAGE_CODEC_OLD_KEYS (or PASSAGE_CODEC_KEY)"
        )
        self.key_id = key_id


def new_key() -> str:
    """A fresh codec key: urlsafe base64 of 32 random bytes."""
    return base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)).decode()


def key_id(key: str) -> str:
    """The id of a codec key: `k-` and 12 hex digits of a fingerprint derived from it (HKDF), so
    it names the key in payload metadata and ledger fields without revealing anything of it."""
    return "k-" + _derive(base64.urlsafe_b64decode(key), _KEY_ID).hex()[:12]


class Keyring:
    """The codec keys a process holds: the writing key first, then the old ones, by key id."""

    def __init__(self, key: str, old_keys: Sequence[str] = ()) -> None:
        self.writing_id = key_id(key)
        self.roots: dict[str, bytes] = {}
        for each in (key, *old_keys):
            self.roots.setdefault(key_id(each), base64.urlsafe_b64decode(each))

    def open(self, what: str, written_under: str | None, attempt: Callable[[str], T]) -> T:
        """`attempt(key id)` under the key the data names, or under each key in turn for data
        without a key id (written before key ids, under the writing key or an old one).

        Raises:
            UnknownKeyError: the data names a key this keyring lacks.
            ValueError: no key opens legacy data.
        """
        if written_under is not None and written_under != LEGACY_KEY_ID:
            if written_under not in self.roots:
                raise UnknownKeyError(what, written_under)
            return attempt(written_under)
        for candidate in self.roots:
            try:
                return attempt(candidate)
            except (InvalidTag, ValueError):
                continue
        raise ValueError(f"{what} without a key id opens under none of the keys given")


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over the serialized payload; the key id travels in the metadata.

    Encodes under the writing key; decodes under whichever key the payload names.
    """

    def __init__(self, key: str, old_keys: Sequence[str] = ()) -> None:
        self._keys = Keyring(key, old_keys)
        self._aeads = {kid: AESGCM(root) for kid, root in self._keys.roots.items()}
        self._writing = self._aeads[self._keys.writing_id]
        self._writing_id = self._keys.writing_id.encode()

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [
            Payload(
                metadata={"encoding": ENCODING, KEY_ID_METADATA: self._writing_id},
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
            named = payload.metadata.get(KEY_ID_METADATA)
            written_under = named.decode(errors="replace") if named is not None else None
            decoded.append(
                Payload.FromString(self._keys.open("payload", written_under, self._opener(payload)))
            )
        return decoded

    def _encrypt(self, data: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._writing.encrypt(nonce, data, None)

    def _opener(self, payload: Payload) -> Callable[[str], bytes]:
        data = payload.data
        return lambda kid: self._aeads[kid].decrypt(data[:12], data[12:], None)


#: What each key of the family is for: HKDF `info`, so no two purposes share a key.
_LEDGER_ENCRYPTION = b"passage ledger personal data v1"
_LEDGER_LOOKUP = b"passage ledger e-mail lookup v1"
_KEY_ID = b"passage key id v1"


def normalized_email(email: str) -> str:
    """The form an e-mail is looked up by: surrounding blanks dropped, lower case."""
    return email.strip().lower()


class LedgerCipher:
    """Personal data at rest in the ledger: AES-256-GCM fields and a keyed hash for lookups.

    Both keys belong to the payload key family: they are derived from the codec key with HKDF
    (SHA-256), one per purpose, so the codec key itself never touches the database, a ledger
    field cannot be passed off as a workflow payload, and the lookup hash reveals nothing about
    the encryption key. A sealed field is `<key id>:<urlsafe base64 of nonce + ciphertext>`,
    sealed under the writing key and opened under the key it names. Each field is bound to where
    it belongs (`context`, e.g. the booking id and the column) as associated data, so a field
    copied to another row, or another booking's, fails to open instead of showing one
    customer's data on another's booking.
    """

    def __init__(self, key: str, old_keys: Sequence[str] = ()) -> None:
        self._keys = Keyring(key, old_keys)
        self._aeads = {
            kid: AESGCM(_derive(root, _LEDGER_ENCRYPTION)) for kid, root in self._keys.roots.items()
        }
        self._lookup_keys = [_derive(root, _LEDGER_LOOKUP) for root in self._keys.roots.values()]
        self._prefix = f"{self._keys.writing_id}:"

    def seal(self, plaintext: str, context: str) -> str:
        """`plaintext` encrypted under the writing key, bound to `context` (a fresh nonce)."""
        nonce = os.urandom(12)
        aead = self._aeads[self._keys.writing_id]
        sealed = nonce + aead.encrypt(nonce, plaintext.encode(), context.encode())
        return self._prefix + base64.urlsafe_b64encode(sealed).decode()

    def open(self, sealed: str, context: str) -> str:
        """The plaintext of a field `seal` made for the same `context`, under any readable key.

        Raises:
            UnknownKeyError: sealed under a key this cipher was not given.
            ValueError: the field was altered or moved (the message names neither the field
                nor its content).
        """
        key_id, separator, body = sealed.partition(":")
        if not separator:
            raise ValueError("ledger field without a key id")
        data = base64.urlsafe_b64decode(body)
        try:
            return self._keys.open(
                "ledger field",
                key_id,
                lambda kid: self._aeads[kid].decrypt(data[:12], data[12:], context.encode()),
            ).decode()
        except InvalidTag as error:
            raise ValueError("ledger field does not open: altered, moved or another key") from error
        except UnknownKeyError:
            raise
        except ValueError as error:
            raise ValueError("ledger field does not open: altered, moved or another key") from error

    def email_hash(self, email: str) -> str:
        """The keyed hash (HMAC-SHA256, hex) of the normalized e-mail under the writing key:
        equal for equal addresses, useless for finding an address without the key."""
        return self.email_hashes(email)[0]

    def email_hashes(self, email: str) -> tuple[str, ...]:
        """The e-mail's hash under every readable key, the writing key's first: a booking
        recorded before a rotation is found by the old key's."""
        normalized = normalized_email(email).encode()
        return tuple(hmac.digest(key, normalized, "sha256").hex() for key in self._lookup_keys)


def _derive(root: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(root)
