"""The hub's Ed25519 key (signs hotlists, rules and checkpoints), and bearer tokens (DESIGN §5,
§12): EdDSA JWTs signed with the token key (``hub.service.token_keys``), never the hub key.

A token carries ``iss``, ``role``, ``scope`` (scoped roles), ``iat``, ``exp`` and ``jti``, and
names its key in the header's ``kid``. ``issue_token`` stores the token's issuance (through
the ``record`` it is given) before it signs: a token anyone holds is always on record, and the
hub refuses one whose ``jti`` was never recorded (``hub.service.token_registry``)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from domain.actors import TokenActor, token_actor
from domain.tokens import MAX_TTL_S
from domain.wire import b64decode, b64encode, public_key_b64
from hub.service.token_keys import TokenKey, TokenKeyring, write_secret

KEY_FILE = "hub.key"
ROLES = ("admin", "operator", "auditor", "merchant", "cardholder", "manager", "warden")
# A scoped role's scope: the record it is limited to (a warden's: one zone or a comma-separated list).
_ID = r"[A-Za-z0-9_.-]{1,64}"
SCOPES = {
    "merchant": re.compile(_ID),
    "cardholder": re.compile(r"[A-Za-z0-9_-]{1,32}"),
    "warden": re.compile(rf"{_ID}(,{_ID}){{0,31}}"),
}
TOKEN_ISSUER = "cardhub"
DEFAULT_TTL_S = 8 * 3600
TTL_RE = re.compile(r"([1-9][0-9]{0,7})([smhd])")
TTL_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
JTI_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MAX_TOKEN_CHARS = 4096
CLOCK_SKEW_S = 60  # a token's iat may be this far ahead of the hub's clock (another machine's CLI)


class TokenError(ValueError):
    """A token that cannot be issued or is not accepted; the message says why."""


class TokenExpired(TokenError):
    pass


class TokenRevoked(TokenError):
    pass


def load_or_create_key(data_dir: Path) -> Ed25519PrivateKey:
    """The key lives in the data directory (mode 600); created on first start."""
    path = data_dir / KEY_FILE
    if path.exists():
        return Ed25519PrivateKey.from_private_bytes(b64decode(path.read_text().strip()))
    data_dir.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    write_secret(path, b64encode(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())) + "\n")
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
    exp: int = 0  # unix seconds

    @property
    def zones(self) -> tuple[str, ...]:
        """A warden's zones."""
        return tuple(self.scope.split(",")) if self.role == "warden" and self.scope else ()

    def actor(self) -> TokenActor:
        """Who acts, as events record it (DESIGN §12)."""
        return token_actor(self.role, self.scope, self.jti)


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a token says, and what its ``Token.Issued`` records."""

    jti: str
    role: str
    scope: str | None
    kid: str
    iat: int
    exp: int

    def jwt_claims(self) -> dict[str, Any]:
        claims: dict[str, Any] = {"iss": TOKEN_ISSUER, "role": self.role, "iat": self.iat, "exp": self.exp,
                                  "jti": self.jti}
        if self.scope is not None:
            claims["scope"] = self.scope
        return claims


def parse_ttl(text: str) -> int:
    """``2s``, ``30m``, ``8h``, ``90d`` → seconds, at most 90 days."""
    match = TTL_RE.fullmatch(text)
    if match is None:
        raise TokenError(f"--ttl {text!r}: a number and a unit, s, m, h or d (e.g. 30m, 8h, 90d)")
    ttl_s = int(match[1]) * TTL_UNITS_S[match[2]]
    if ttl_s > MAX_TTL_S:
        raise TokenError(f"--ttl {text}: a token lives at most {MAX_TTL_S // 86_400} days")
    return ttl_s


def check_role(role: str, scope: str | None) -> None:
    if role not in ROLES:
        raise TokenError(f"role must be one of {', '.join(ROLES)}")
    pattern = SCOPES.get(role)
    if pattern is None and scope is not None:
        raise TokenError(f"role {role} takes no --scope")
    if pattern is not None and not scope:
        what = "one zone or a comma-separated list" if role == "warden" else f"the {role}'s id"
        raise TokenError(f"role {role} needs --scope ({what})")
    if pattern is not None and scope is not None and not pattern.fullmatch(scope):
        raise TokenError(f"--scope {scope!r} is not a valid scope for role {role}")
    if role == "warden" and scope is not None and len(set(scope.split(","))) != scope.count(",") + 1:
        raise TokenError("--scope names a zone twice")


def issue_token(
    key: TokenKey, role: str, scope: str | None = None, *, record: Callable[[TokenClaims], Any],
    ttl_s: int = DEFAULT_TTL_S, now: int | None = None,
) -> str:
    """A new token, once ``record`` has stored its issuance (``hub.service.token_office``)."""
    claims = new_claims(key, role, scope, ttl_s=ttl_s, now=now)
    record(claims)
    return sign_claims(key, claims)


def new_claims(key: TokenKey, role: str, scope: str | None = None, *, ttl_s: int = DEFAULT_TTL_S,
               now: int | None = None) -> TokenClaims:
    """The claims of a new token of ``key``: record them (``Token.Issued``), then ``sign_claims``.
    (``issue_token`` does both; a caller that records asynchronously, as ``POST /v1/sessions``
    does through the writer, calls the two itself.)"""
    check_role(role, scope)
    if not 0 < ttl_s <= MAX_TTL_S:
        raise TokenError(f"a token lives 1 s to {MAX_TTL_S // 86_400} days")
    iat = int(time.time()) if now is None else now
    return TokenClaims(jti=str(uuid.uuid4()), role=role, scope=scope or None, kid=key.kid, iat=iat, exp=iat + ttl_s)


def sign_claims(key: TokenKey, claims: TokenClaims) -> str:
    """The bearer token of claims already recorded, signed by ``key`` (the one that made them)."""
    assert claims.kid == key.kid, (claims.kid, key.kid)
    return jwt.encode(claims.jwt_claims(), key.private, algorithm="EdDSA", headers={"kid": key.kid})


def read_token(keyring: TokenKeyring, token: str) -> Principal:
    """The token's principal if a known token key signed it (alg EdDSA only) and it has not
    expired; ``TokenExpired`` or ``TokenError`` otherwise. Whether it was issued and is not
    revoked is the registry's to say (``hub.service.token_registry``)."""
    if len(token) > MAX_TOKEN_CHARS:
        raise TokenError("too long")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise TokenError(str(exc)) from None
    if header.get("alg") != "EdDSA":
        raise TokenError("alg must be EdDSA")
    kid = header.get("kid")
    key = keyring.public_key(kid) if isinstance(kid, str) and len(kid) <= 64 else None
    if key is None:
        raise TokenError("not signed by a token key of this hub (unknown kid)")
    try:
        claims = jwt.decode(token, key, algorithms=["EdDSA"], issuer=TOKEN_ISSUER,
                            options={"require": ["iss", "role", "iat", "exp", "jti"], "verify_iat": False})
    except jwt.ExpiredSignatureError:
        raise TokenExpired("the token has expired") from None
    except jwt.PyJWTError as exc:
        raise TokenError(str(exc)) from None
    return _principal(claims)


def _principal(claims: dict[str, Any]) -> Principal:
    iat, exp, jti, role, scope = (claims.get(k) for k in ("iat", "exp", "jti", "role", "scope"))
    if type(iat) is not int or type(exp) is not int or not 0 < exp - iat <= MAX_TTL_S:
        raise TokenError("iat and exp must be integers, at most 90 days apart")
    if iat > time.time() + CLOCK_SKEW_S:
        raise TokenError("issued in the future (iat)")
    if not isinstance(jti, str) or not JTI_RE.fullmatch(jti):
        raise TokenError("jti is not a token id")
    if not isinstance(role, str) or not (scope is None or isinstance(scope, str)):
        raise TokenError("role and scope must be strings")
    try:
        check_role(role, scope)
    except TokenError as exc:
        raise TokenError(f"bad role or scope: {exc}") from None
    return Principal(role=role, scope=scope, jti=jti, exp=exp)
