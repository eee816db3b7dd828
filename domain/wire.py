"""Protocol v1 on the wire (DESIGN §2): canonical bytes, signing input, event hash,
Ed25519 signatures, and the strict shape of an envelope.

Devices, the hub and auditors' tools all compute these bytes; they must agree to
the byte, so this module is the only place that builds them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from domain.facts import SignedEnvelope

EVENT_PREFIX = b"cardhub/event/v1\n"
HOTLIST_PREFIX = b"cardhub/hotlist/v1\n"
RULES_PREFIX = b"cardhub/rules/v1\n"
LIMITS_PREFIX = b"cardhub/limits/v1\n"
CHECKPOINT_PREFIX = b"cardhub/checkpoint/v1\n"

GENESIS_PREV = "0" * 64
MAX_SAFE_INT = 2**53
MAX_AMOUNT_FEN = 10_000_000  # DESIGN §9: one envelope moves at most ¥100,000
FIRST_YEAR, LAST_YEAR = 2000, 2099  # DESIGN §9: an instant falls in these years, in UTC
_FIRST_INSTANT = datetime(FIRST_YEAR, 1, 1, tzinfo=UTC)
_AFTER_LAST_INSTANT = datetime(LAST_YEAR + 1, 1, 1, tzinfo=UTC)

# DESIGN §9: no text field holds a control character (Unicode Cc) or a bidirectional control.
# One character class, in a syntax Python's re and JSON Schema (ECMA 262) read alike, so the
# request schemas (hub/service/schemas.py) are built from the same text as this module's check.
UNSAFE_CHARS = r"\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069"
_UNSAFE_RE = re.compile(f"[{UNSAFE_CHARS}]")

DEVICE_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
CARD_UID_RE = re.compile(r"[0-9A-F]{8,20}")
HEX64_RE = re.compile(r"[0-9a-f]{64}")
# RFC 3339 date-time with a mandatory offset ("Z" or ±HH:MM); ASCII digits only. Every regex
# of this module is used with ``fullmatch``: "S001\n" is not "S001".
RFC3339_PATTERN = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
RFC3339_RE = re.compile(RFC3339_PATTERN)

EVENT_TYPES = ("purchase", "reversal", "gate")
DECISIONS = ("approved", "declined")
DIRECTIONS = ("in", "out")
ENVELOPE_FIELDS = frozenset(
    {"v", "device", "seq", "prev", "at", "type", "card", "credential", "amount", "ref_seq",
     "direction", "offline", "decision", "sig"}
)
# A payment code (DESIGN §10) is checked by ``domain.paycode`` when the swipe is decided: a bad one
# is a declined swipe, stored. The envelope refuses only text that breaks §9, or is absurdly long.
MAX_CREDENTIAL_CHARS = 4096
FIELDS_BY_TYPE = {
    "purchase": frozenset({"amount"}),
    "reversal": frozenset({"ref_seq"}),
    "gate": frozenset({"direction"}),
}


def canonical(obj: Any) -> bytes:
    """UTF-8 JSON, keys sorted, no whitespace, non-ASCII kept (DESIGN §2)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signing_input(envelope: Mapping[str, Any]) -> bytes:
    return EVENT_PREFIX + canonical({k: v for k, v in envelope.items() if k != "sig"})


def event_hash(envelope: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the signing input: the next envelope's ``prev``."""
    return hashlib.sha256(signing_input(envelope)).hexdigest()


def leaf_bytes(originator_id: str, version: int, topic: str, state: bytes) -> bytes:
    """The Merkle leaf of one stored event (DESIGN §4)."""
    return canonical({"id": originator_id, "version": version, "topic": topic, "state": b64encode(state)})


def b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def b64decode(text: str) -> bytes:
    """Strict standard base64; raises ``ValueError`` on anything else."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("not standard base64") from exc


def public_key_from_b64(text: str) -> Ed25519PublicKey:
    raw = b64decode(text)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def public_key_b64(key: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw))


def sign_envelope(envelope: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """Returns the envelope with ``sig`` set over its signing input."""
    unsigned = {k: v for k, v in envelope.items() if k != "sig"}
    return {**unsigned, "sig": b64encode(key.sign(signing_input(unsigned)))}


def verify_envelope(envelope: Mapping[str, Any], key: Ed25519PublicKey) -> bool:
    try:
        sig = b64decode(envelope["sig"])
        key.verify(sig, signing_input(envelope))
    except (InvalidSignature, ValueError, KeyError, TypeError):
        return False
    return True


def sign_document(prefix: bytes, body: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """Signs a hub document (hotlist, rules, limits, checkpoint): ``sig`` over prefix + canonical body."""
    return {**body, "sig": b64encode(key.sign(prefix + canonical(body)))}


def verify_document(prefix: bytes, document: dict[str, Any], key: Ed25519PublicKey) -> bool:
    body = {k: v for k, v in document.items() if k != "sig"}
    try:
        key.verify(b64decode(document["sig"]), prefix + canonical(body))
    except (InvalidSignature, ValueError, KeyError, TypeError):
        return False
    return True


class InvalidEnvelope(ValueError):
    """An envelope field breaks protocol v1; ``field`` names it (the ``detail`` of ``invalid``)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
        self.raw: Any = None


@dataclass(frozen=True, slots=True)
class Envelope:
    """A well-formed envelope; ``raw`` is the object exactly as received and signed."""

    raw: SignedEnvelope
    device: str
    seq: int
    prev: str
    occurred_at: datetime
    type: str
    card: str | None  # None: a purchase or gate paid with ``credential`` instead
    credential: str | None  # a virtual card's payment code, unchecked (``domain.paycode``)
    amount_fen: int | None
    ref_seq: int | None
    direction: str | None
    offline: bool
    decision: str | None
    hash: str
    signing_input: bytes  # computed once: both the hash and the signature check need it
    sig: bytes

    def verify(self, key: Ed25519PublicKey) -> bool:
        """``verify_envelope`` of ``raw``, without encoding it again."""
        try:
            key.verify(self.sig, self.signing_input)
        except InvalidSignature:
            return False
        return True


def _is_int(value: Any) -> bool:
    return type(value) is int and -MAX_SAFE_INT < value < MAX_SAFE_INT


def unsafe_text(value: Any) -> str | None:
    """What makes ``value`` unfit as a text field (DESIGN §9), or None: the first control or
    bidirectional character it holds, named by its code point."""
    if not isinstance(value, str):
        return None
    found = _UNSAFE_RE.search(value)
    return None if found is None else f"holds U+{ord(found.group()):04X}, a control or bidirectional character"


def printable_name(name: str) -> str:
    """A field name fit for a ``detail``: an unsafe name is shown escaped, never echoed raw."""
    return json.dumps(name) if unsafe_text(name) else name


def _require(envelope: dict[str, Any], name: str, check: Any, problem: str) -> Any:
    """The field's value if ``check`` passes. Every string field of an envelope has a whole-string
    ASCII pattern or a fixed set of values, so a control character always fails ``check``; the
    rejection then says so."""
    if name not in envelope:
        raise InvalidEnvelope(name, "is required")
    value = envelope[name]
    if not check(value):
        raise InvalidEnvelope(name, unsafe_text(value) or problem)
    return value


def parse_rfc3339(text: str) -> datetime:
    """An RFC 3339 date-time with an offset; raises ``ValueError`` otherwise."""
    if not isinstance(text, str) or not RFC3339_RE.fullmatch(text):
        raise ValueError("must be an RFC 3339 date-time with an offset")
    return datetime.fromisoformat(text.upper().replace("Z", "+00:00"))


def parse_instant(text: str) -> datetime:
    """``parse_rfc3339``, bounded to the years 2000–2099 in UTC (DESIGN §9): an envelope's
    ``at``, an account's validity. Raises ``ValueError`` otherwise (never ``OverflowError``:
    the local year is checked before any conversion)."""
    instant = parse_rfc3339(text)
    if not (FIRST_YEAR - 1 <= instant.year <= LAST_YEAR + 1 and _FIRST_INSTANT <= instant < _AFTER_LAST_INSTANT):
        raise ValueError(f"must fall in the years {FIRST_YEAR}-{LAST_YEAR} (UTC)")
    return instant


def parse_envelope(obj: Any) -> Envelope:
    """Checks every field of DESIGN §2's table; raises ``InvalidEnvelope`` naming the first bad one
    (with ``raw`` set to the object, so the rejection can still quote its ``seq``)."""
    try:
        return _parse_envelope(obj)
    except InvalidEnvelope as exc:
        exc.raw = obj
        raise


def _parse_envelope(obj: Any) -> Envelope:
    if not isinstance(obj, dict):
        raise InvalidEnvelope("envelope", "must be a JSON object")
    unknown = sorted(set(obj) - ENVELOPE_FIELDS)
    if unknown:
        raise InvalidEnvelope(printable_name(unknown[0]), "unknown field")
    _require(obj, "v", lambda v: _is_int(v) and v == 1, "must be 1")
    device = _require(obj, "device", lambda v: isinstance(v, str) and DEVICE_ID_RE.fullmatch(v), "must be 1-64 chars of [A-Za-z0-9_.-]")
    seq = _require(obj, "seq", lambda v: _is_int(v) and v >= 1, "must be an integer >= 1")
    prev = _require(obj, "prev", lambda v: isinstance(v, str) and HEX64_RE.fullmatch(v), "must be 64 lowercase hex digits")
    at_text = _require(obj, "at", lambda v: isinstance(v, str), "must be a string")
    try:
        occurred_at = parse_instant(at_text)
    except ValueError as exc:
        raise InvalidEnvelope("at", unsafe_text(at_text) or str(exc)) from None
    kind = _require(obj, "type", lambda v: v in EVENT_TYPES, "must be purchase, reversal or gate")
    card, credential = _card_or_credential(obj, kind)
    for other, fields in FIELDS_BY_TYPE.items():
        if other != kind:
            for name in sorted(fields & obj.keys()):
                raise InvalidEnvelope(name, f"does not apply to type {kind}")
    amount = ref_seq = direction = None
    if kind == "purchase":
        amount = _require(obj, "amount", lambda v: type(v) is int and 0 < v <= MAX_AMOUNT_FEN,
                          f"must be an integer number of fen, 1-{MAX_AMOUNT_FEN}")
    elif kind == "reversal":
        ref_seq = _require(obj, "ref_seq", lambda v: _is_int(v) and 1 <= v < seq, "must be the seq of an earlier event")
    else:
        direction = _require(obj, "direction", lambda v: v in DIRECTIONS, "must be in or out")
    offline = obj.get("offline", False)
    if type(offline) is not bool:
        raise InvalidEnvelope("offline", "must be a boolean")
    decision = None
    if offline:
        decision = _require(obj, "decision", lambda v: v in DECISIONS, "must be approved or declined on an offline event")
    elif "decision" in obj:
        raise InvalidEnvelope("decision", "only offline events carry a decision")
    sig = _signature(obj.get("sig"))
    _require(obj, "sig", lambda _: sig is not None, "must be a standard base64 Ed25519 signature")
    assert sig is not None
    signed = signing_input(obj)
    return Envelope(
        raw=cast(SignedEnvelope, obj), device=device, seq=seq, prev=prev, occurred_at=occurred_at, type=kind,
        card=card, credential=credential, amount_fen=amount, ref_seq=ref_seq, direction=direction, offline=offline,
        decision=decision, hash=hashlib.sha256(signed).hexdigest(), signing_input=signed, sig=sig,
    )


def _card_or_credential(obj: dict[str, Any], kind: str) -> tuple[str | None, str | None]:
    """``card``, or on a purchase or gate ``credential`` instead: exactly one of the two (DESIGN §2, §10)."""
    if kind == "reversal" and "credential" in obj:
        raise InvalidEnvelope("credential", "does not apply to type reversal: it names the card of the purchase")
    if kind != "reversal" and ("card" in obj) == ("credential" in obj):
        raise InvalidEnvelope("credential", "a purchase or gate carries exactly one of card and credential")
    if "credential" not in obj:
        card = _require(obj, "card", lambda v: isinstance(v, str) and CARD_UID_RE.fullmatch(v),
                        "must be 8-20 uppercase hex characters")
        return card, None
    credential = _require(obj, "credential", lambda v: isinstance(v, str) and not unsafe_text(v) and (
        0 < len(v) <= MAX_CREDENTIAL_CHARS), f"must be a payment code of 1-{MAX_CREDENTIAL_CHARS} characters")
    return None, credential


def _signature(text: Any) -> bytes | None:
    """The 64 bytes of a standard base64 Ed25519 signature, or None."""
    if not isinstance(text, str):
        return None
    try:
        sig = b64decode(text)
    except ValueError:
        return None
    return sig if len(sig) == 64 else None
