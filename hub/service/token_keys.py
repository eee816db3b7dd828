"""The token key (DESIGN §12): the Ed25519 key that signs bearer tokens, never the hub key
that signs hotlists, rules and checkpoints.

In the data directory: ``token.key``, the current private key (mode 600, made on the hub's
first start), and ``token.retired``, the public keys of the keys rotated out, one JSON object
a line, kept while a token they signed may still be valid. A key's ``kid`` is a short hash of
its public key; a token names it in its header. ``cardhub token rotate-key`` writes the
retired list first, then the new key, each by an atomic rename, so a hub reading the files
at any moment sees every key that may have signed a valid token."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from domain.tokens import MAX_TTL_S
from domain.wire import b64decode, b64encode, public_key_b64, public_key_from_b64

log = logging.getLogger(__name__)

TOKEN_KEY_FILE = "token.key"
RETIRED_FILE = "token.retired"
LOCK_FILE = "token.lock"
KID_HEX_CHARS = 16


class TokenKeyError(ValueError):
    """A token key that is missing or cannot be read: one line for the command line."""


def kid_of(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:KID_HEX_CHARS]


@dataclass(frozen=True, slots=True)
class TokenKey:
    kid: str
    private: Ed25519PrivateKey

    @classmethod
    def of(cls, private: Ed25519PrivateKey) -> TokenKey:
        return cls(kid_of(private.public_key()), private)


def write_secret(path: Path, text: str) -> None:
    """Writes a file readable by its owner only (mode 600), whole or not at all."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_private(path: Path) -> Ed25519PrivateKey:
    try:
        return Ed25519PrivateKey.from_private_bytes(b64decode(path.read_text().strip()))
    except ValueError as exc:
        raise TokenKeyError(f"{path}: not an Ed25519 key ({exc})") from None


def load_or_create_token_key(data_dir: Path) -> TokenKey:
    """The current token key; made on first start, like the hub key."""
    path = data_dir / TOKEN_KEY_FILE
    if path.exists():
        return TokenKey.of(_read_private(path))
    data_dir.mkdir(parents=True, exist_ok=True)
    with _locked(data_dir):
        if not path.exists():  # another process made it meanwhile
            _write_key(path, Ed25519PrivateKey.generate())
    return TokenKey.of(_read_private(path))


def load_token_key(data_dir: Path) -> TokenKey:
    """The current token key of an existing hub; a missing one is an error, never a new key."""
    path = data_dir / TOKEN_KEY_FILE
    if not path.exists():
        raise TokenKeyError(f"no token key in {data_dir}: start the hub there first, or pass its --data-dir")
    return TokenKey.of(_read_private(path))


def _write_key(path: Path, key: Ed25519PrivateKey) -> None:
    write_secret(path, b64encode(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())) + "\n")


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """One rotation (or first creation) at a time per data directory."""
    with (data_dir / LOCK_FILE).open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass(frozen=True, slots=True)
class _Retired:
    kid: str
    public_key: str  # standard base64 of the raw 32 bytes
    retired_at: int  # unix seconds

    def line(self) -> str:
        return json.dumps({"kid": self.kid, "public_key": self.public_key, "retired_at": self.retired_at},
                          sort_keys=True) + "\n"


def _retired(data_dir: Path) -> list[_Retired]:
    path = data_dir / RETIRED_FILE
    if not path.exists():
        return []
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            entry = json.loads(line)
            public_key_from_b64(entry["public_key"])
            entries.append(_Retired(str(entry["kid"]), entry["public_key"], int(entry["retired_at"])))
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenKeyError(f"{path} line {number}: not a retired key ({exc})") from None
    return entries


def rotate_token_key(data_dir: Path, *, now: Callable[[], float] = time.time) -> tuple[TokenKey, TokenKey]:
    """Starts a new kid: the current key's public half joins the retired ones (those retired
    longer ago than a token can live are dropped), then a new key becomes current.
    Returns (old, new)."""
    load_token_key(data_dir)  # none there: say so, rather than lock a directory that may not exist
    with _locked(data_dir):
        old = load_token_key(data_dir)
        retired_at = int(now())
        kept = [e for e in _retired(data_dir) if retired_at - e.retired_at <= MAX_TTL_S]
        kept.append(_Retired(old.kid, public_key_b64(old.private.public_key()), retired_at))
        write_secret(data_dir / RETIRED_FILE, "".join(e.line() for e in kept))
        new = Ed25519PrivateKey.generate()
        _write_key(data_dir / TOKEN_KEY_FILE, new)
    return old, TokenKey.of(new)


def public_keys(data_dir: Path) -> dict[str, Ed25519PublicKey]:
    """kid → public key: the current key and the retired ones."""
    keys = {e.kid: public_key_from_b64(e.public_key) for e in _retired(data_dir)}
    current = load_token_key(data_dir)
    keys[current.kid] = current.private.public_key()
    return keys


class TokenKeyring:
    """The keys a hub accepts tokens of. A token naming a kid the hub does not know makes it
    read the files again — at most once every ``RELOAD_EVERY_S`` — so a running hub picks up
    ``cardhub token rotate-key`` without a restart, and a flood of made-up kids costs at most
    one read of two small files a second."""

    RELOAD_EVERY_S = 1.0

    def __init__(self, data_dir: Path, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.data_dir = data_dir
        self.clock = clock
        self.current = load_or_create_token_key(data_dir)
        self._keys = public_keys(data_dir)
        self._reloaded = -math.inf

    def public_key(self, kid: str) -> Ed25519PublicKey | None:
        key = self._keys.get(kid)
        if key is None and self.clock() - self._reloaded >= self.RELOAD_EVERY_S:
            self._reloaded = self.clock()
            try:
                self._keys, self.current = public_keys(self.data_dir), load_token_key(self.data_dir)
            except (OSError, TokenKeyError) as exc:  # keep the keys it has; say so once a second at most
                log.warning("token keys not reloaded: %s", exc)
            key = self._keys.get(kid)
        return key

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)
