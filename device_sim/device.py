"""A simulated device: keeps its key, its ``seq`` and chain, and every event the hub has not
acknowledged; sends them again until the hub answers ``accepted`` or ``duplicate``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from domain.wire import (
    GENESIS_PREV,
    b64decode,
    b64encode,
    event_hash,
    public_key_b64,
    sign_envelope,
)

ACKED = ("accepted", "duplicate")


@dataclass
class SimDevice:
    device_id: str
    kind: str
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    last_seq: int = 0
    prev: str = GENESIS_PREV
    pending: list[dict[str, Any]] = field(default_factory=list)

    @property
    def public_key(self) -> str:
        return public_key_b64(self.key.public_key())

    def _next(self, fields: dict[str, Any], at: datetime, offline: bool, decision: str | None) -> dict[str, Any]:
        assert at.tzinfo is not None, "device clocks carry an offset"
        envelope: dict[str, Any] = {
            "v": 1, "device": self.device_id, "seq": self.last_seq + 1, "prev": self.prev,
            "at": at.isoformat(timespec="milliseconds"), **fields,
        }
        if offline:
            envelope["offline"] = True
            envelope["decision"] = decision or "approved"
        signed = sign_envelope(envelope, self.key)
        self.last_seq += 1
        self.prev = event_hash(signed)
        self.pending.append(signed)
        return signed

    def purchase(self, card: str, amount_fen: int, at: datetime, *, offline: bool = False,
                 decision: str | None = None) -> dict[str, Any]:
        return self._next({"type": "purchase", "card": card, "amount": amount_fen}, at, offline, decision)

    def purchase_by_code(self, credential: str, amount_fen: int, at: datetime, *, offline: bool = False,
                         decision: str | None = None) -> dict[str, Any]:
        """A purchase paid with a phone's payment code (DESIGN §10): ``credential`` instead of ``card``."""
        return self._next({"type": "purchase", "credential": credential, "amount": amount_fen}, at, offline, decision)

    def reversal(self, card: str, ref_seq: int, at: datetime, *, offline: bool = False) -> dict[str, Any]:
        return self._next({"type": "reversal", "card": card, "ref_seq": ref_seq}, at, offline, None)

    def gate(self, card: str, direction: str, at: datetime, *, offline: bool = False,
             decision: str | None = None) -> dict[str, Any]:
        return self._next({"type": "gate", "card": card, "direction": direction}, at, offline, decision)

    def gate_by_code(self, credential: str, direction: str, at: datetime, *, offline: bool = False,
                     decision: str | None = None) -> dict[str, Any]:
        return self._next({"type": "gate", "credential": credential, "direction": direction}, at, offline, decision)

    def acknowledge(self, results: list[dict[str, Any]]) -> None:
        """Forgets every event the hub has stored; keeps the rest for the next upload."""
        stored = {r["seq"] for r in results if r["status"] in ACKED}
        self.pending = [e for e in self.pending if e["seq"] not in stored]

    def batch(self, size: int) -> list[dict[str, Any]]:
        return self.pending[:size]

    def to_json(self) -> dict[str, Any]:
        raw = self.key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return {"device_id": self.device_id, "kind": self.kind, "key": b64encode(raw),
                "last_seq": self.last_seq, "prev": self.prev, "pending": self.pending}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SimDevice:
        return cls(
            device_id=data["device_id"], kind=data["kind"],
            key=Ed25519PrivateKey.from_private_bytes(b64decode(data["key"])),
            last_seq=data["last_seq"], prev=data["prev"], pending=list(data["pending"]),
        )

