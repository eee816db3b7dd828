"""The hub's Ed25519 key (signs hotlists, rules, checkpoints and bearer tokens) and tokens."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from domain.wire import b64decode, b64encode, public_key_b64

KEY_FILE = "hub.key"
ROLES = ("admin", "operator", "auditor", "merchant", "cardholder", "manager")
SCOPED_ROLES = ("merchant", "cardholder")
TOKEN_ISSUER = "cardhub"


class TokenError(ValueError):
    pass


def load_or_create_key(data_dir: Path) -> Ed25519PrivateKey:
    """The key lives in the data directory (mode 600); created on first start."""
    path = data_dir / KEY_FILE
    if path.exists():
        return Ed25519PrivateKey.from_private_bytes(b64decode(path.read_text().strip()))
    data_dir.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(b64encode(raw) + "\n")
    os.replace(tmp, path)
    return key


def load_key(data_dir: Path) -> Ed25519PrivateKey:
    """The key of an existing hub; a missing one is an error, never silently a new key."""
    path = data_dir / KEY_FILE
    if not path.exists():
        raise TokenError(f"no hub key in {data_dir}: start the hub there first, or pass its --data-dir")
    return load_or_create_key(data_dir)


def hub_public_key_b64(key: Ed25519PrivateKey) -> str:
    return public_key_b64(key.public_key())


@dataclass(frozen=True, slots=True)
class Principal:
    role: str
    scope: str | None
    jti: str | None = None


def issue_token(key: Ed25519PrivateKey, role: str, scope: str | None = None) -> str:
    if role not in ROLES:
        raise TokenError(f"role must be one of {', '.join(ROLES)}")
    if role in SCOPED_ROLES and not scope:
        raise TokenError(f"role {role} needs --scope (the {role}'s id)")
    if role not in SCOPED_ROLES and scope:
        raise TokenError(f"role {role} takes no --scope")
    claims = {"iss": TOKEN_ISSUER, "role": role, "iat": int(time.time()), "jti": str(uuid.uuid4())}
    if scope:
        claims["scope"] = scope
    return jwt.encode(claims, key, algorithm="EdDSA")


def read_token(key: Ed25519PrivateKey, token: str) -> Principal:
    try:
        claims = jwt.decode(
            token, key.public_key(), algorithms=["EdDSA"], issuer=TOKEN_ISSUER,
            options={"require": ["iss", "role", "iat"]},
        )
    except jwt.PyJWTError as exc:
        raise TokenError(str(exc)) from None
    if claims["role"] not in ROLES:
        raise TokenError("unknown role")
    return Principal(role=claims["role"], scope=claims.get("scope"), jti=claims.get("jti"))
