"""A simulated phone with a virtual card (DESIGN §10): its Ed25519 key, the cert the hub gave it,
and the counter of its payment codes, made offline like the app's (``domain.paycode``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from domain.paycode import make_code
from domain.wire import b64decode, b64encode, public_key_b64


@dataclass
class SimPhone:
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    cert: dict[str, Any] | None = None  # the hub's answer to its registration carries it
    n: int = 0  # the counter of the latest code; every code takes the next
    revoked: bool = False  # removed from its account (POST /v1/virtual-cards/{uid}/revoke): it pays no more

    @property
    def public_key(self) -> str:
        return public_key_b64(self.key.public_key())

    @property
    def card_uid(self) -> str:
        assert self.cert is not None, "a phone pays once registered"
        return str(self.cert["card"])

    def code(self, at: datetime) -> str:
        """A new payment code shown at ``at`` (its unix second, rounded down)."""
        assert self.cert is not None, "a phone pays once registered"
        self.n += 1
        return make_code(self.cert, int(at.timestamp()), self.n, self.key)

    def to_json(self) -> dict[str, Any]:
        raw = self.key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return {"key": b64encode(raw), "cert": self.cert, "n": self.n, "revoked": self.revoked}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SimPhone:
        return cls(key=Ed25519PrivateKey.from_private_bytes(b64decode(data["key"])), cert=data["cert"],
                   n=data["n"], revoked=data["revoked"])
