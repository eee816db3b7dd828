"""Personal data that can be erased (DESIGN §12): an account's personal fields are stored in
its events sealed with AES-256-GCM under a data key of that account, kept outside the event
store; destroying the key erases them while every event and Merkle proof stays as it was.

Personal fields: ``name``. Sealed the same way: ``pin``, the hash of the query PIN (DESIGN §10),
which names no one but is a secret of the person, and opens no more once the account is erased.
The account id (a student or staff number) stays readable: it is
the aggregate's natural key, its uuid5 is the originator id of every event of the account, and
swipes, transactions and the audit index are found by it; it names no one without the
university's registry. Category, groups, limits and validity dates identify no one.

Sealing: a random 96-bit nonce, the associated data naming the account and the field (so a
sealed value copied to another account or field does not open), the 16-byte tag appended to
the ciphertext. The domain makes keys and seals; where keys live is the ``Keystore``'s
business (the hub's keeps them in a PostgreSQL table, written in the transaction of the
account's events, ``hub.ingest.keystore``).

No ``from __future__ import annotations``: the TypedDicts are read at run time.
"""

import base64
import binascii
import os
from typing import Literal, Protocol, TypedDict

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PERSONAL_FIELDS = ("name", "pin")
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # 96 bits, random for every value sealed
AAD_PREFIX = b"cardhub/personal/v1\n"
ALGORITHM = "A256GCM"


class Sealed(TypedDict):
    """A personal field as an event stores it, encrypted: standard base64 of the nonce and of
    the ciphertext with its tag."""

    alg: Literal["A256GCM"]
    nonce: str
    ciphertext: str


class Plain(TypedDict):
    """A personal field of an event stored before fields were sealed (the upcast of
    ``Account.Opened`` v1): it is in the event store in clear and cannot be erased from it."""

    alg: Literal["none"]
    plaintext: str


Stored = Sealed | Plain


class Unreadable(ValueError):
    """A sealed value that does not open with this key, account and field: the wrong key, or
    a value that was altered or moved."""


class Keystore(Protocol):
    """Where the data keys of accounts live, outside the event store."""

    def create(self, account_id: str) -> bytes:
        """A new data key for the account being opened. It must be stored with the account's
        first event, atomically: an event without its key would be data lost."""
        ...

    def destroy(self, account_id: str) -> None:
        """Destroys the account's data key, with the event that records the erasure."""
        ...


class MemoryKeys:
    """A keystore for an application on the in-memory event store (the library's POPO
    persistence): its keys live as long as its events do."""

    def __init__(self) -> None:
        self.keys: dict[str, bytes | None] = {}  # account id → key, None once destroyed

    def create(self, account_id: str) -> bytes:
        key = self.keys[account_id] = new_key()
        return key

    def destroy(self, account_id: str) -> None:
        self.keys[account_id] = None


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def associated_data(account_id: str, field: str) -> bytes:
    """Binds a sealed value to its account and field (account ids hold no newline)."""
    assert field in PERSONAL_FIELDS, field
    return AAD_PREFIX + f"{account_id}\n{field}".encode()


def seal(key: bytes, account_id: str, field: str, plaintext: str, nonce: bytes | None = None) -> Sealed:
    """``nonce``: for tests only; by default a fresh random one (a nonce must never repeat under a key)."""
    nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
    assert len(nonce) == NONCE_BYTES, len(nonce)
    ciphertext = AESGCM(key).encrypt(nonce, plaintext.encode("utf-8", "surrogatepass"),
                                     associated_data(account_id, field))
    return Sealed(alg=ALGORITHM, nonce=_b64(nonce), ciphertext=_b64(ciphertext))


def unseal(key: bytes, account_id: str, field: str, sealed: Sealed) -> str:
    """The plaintext of ``sealed``; ``Unreadable`` when it does not open."""
    try:
        nonce, ciphertext = base64.b64decode(sealed["nonce"], validate=True), base64.b64decode(
            sealed["ciphertext"], validate=True)
        plaintext = AESGCM(key).decrypt(nonce, ciphertext, associated_data(account_id, field))
    except (InvalidTag, binascii.Error, ValueError, KeyError, TypeError):
        raise Unreadable(f"the {field} of account {account_id} does not open with its key") from None
    return plaintext.decode("utf-8", "surrogatepass")


def from_stored(value: "str | Stored") -> Stored:
    """A personal field as stored by any hub: a bare string is the plaintext of an event (or
    snapshot) from before fields were sealed."""
    if isinstance(value, str):
        return Plain(alg="none", plaintext=value)
    assert value["alg"] in (ALGORITHM, "none"), value["alg"]
    return value


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
