"""Virtual cards' certificates and payment codes (DESIGN §10): the one place they are made and
checked, by the hub, the device simulator's phones and offline POS alike.

- cert = ``{"card", "key", "valid_until", "sig"}``: the hub's Ed25519 signature over
  ``CERT_PREFIX + canonical(cert without "sig")``; ``key`` is the phone's public key (standard
  base64 of the raw 32 bytes), ``card`` the virtual card's uid (``F0`` + 14 uppercase hex).
- code = ``"CHV1." + b64url(canonical(body)) + "." + b64url(sig)``, ``body = {"cert", "t", "n"}``
  (``t`` unix seconds, ``n`` the card's counter), ``sig`` the phone's Ed25519 signature over
  ``CODE_PREFIX + canonical(body)``; b64url is URL-safe base64 without padding.

Pure: the standard library and ``cryptography`` only; the hub's private key is a parameter of
``make_cert`` (called by the hub), never held here.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from domain.wire import MAX_SAFE_INT, b64decode, b64encode, canonical, parse_instant, public_key_from_b64

CERT_PREFIX = b"cardhub/vcard/v1\n"
CODE_PREFIX = b"cardhub/paycode/v1\n"
CODE_START = "CHV1."
MAX_CODE_CHARS = 1024  # a real code is ~450 characters; a longer one is credential_invalid
BEFORE_S, AFTER_S = 60, 5  # t may be 60 s before and 5 s after the envelope's ``at``
CERT_FIELDS = frozenset({"card", "key", "valid_until", "sig"})
BODY_FIELDS = frozenset({"cert", "t", "n"})
VIRTUAL_UID_RE = re.compile(r"F0[0-9A-F]{14}")
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]*")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

INVALID, EXPIRED = "credential_invalid", "credential_expired"


def virtual_uid(random7: bytes) -> str:
    """A virtual card's uid from 7 random bytes: ``F0`` and 14 uppercase hex characters."""
    assert len(random7) == 7
    return "F0" + random7.hex().upper()


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict: only the URL-safe alphabet, no padding, no stray bits; ``ValueError`` otherwise."""
    if not _B64URL_RE.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded URL-safe base64")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url(raw) != text:  # non-zero trailing bits: a second spelling of the same bytes
        raise ValueError("not the canonical spelling")
    return raw


def format_instant(instant: datetime) -> str:
    """RFC 3339 in UTC to the second, as certs carry it: ``2027-05-01T08:00:00Z``."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_cert(card_uid: str, public_key: str, valid_until: datetime, hub_key: Ed25519PrivateKey) -> dict[str, str]:
    """The hub's certificate binding the phone's key to the virtual card until ``valid_until``."""
    body = {"card": card_uid, "key": public_key, "valid_until": format_instant(valid_until)}
    return {**body, "sig": b64encode(hub_key.sign(CERT_PREFIX + canonical(body)))}


def make_code(cert: dict[str, str], t: int, n: int, phone_key: Ed25519PrivateKey) -> str:
    """The payment code the phone shows: its counter ``n`` at unix second ``t``, signed."""
    body = canonical({"cert": cert, "t": t, "n": n})
    return CODE_START + b64url(body) + "." + b64url(phone_key.sign(CODE_PREFIX + body))


@dataclass(frozen=True, slots=True)
class Checked:
    """What ``check_code`` found. ``reason`` None: the code is good. ``credential_expired``: its
    signatures are good but its time is not, and ``card_uid``, ``key``, ``t`` and ``n`` are known.
    ``credential_invalid``: nothing of it can be trusted, and they are None."""

    reason: str | None
    card_uid: str | None = None
    key: str | None = None
    t: int | None = None
    n: int | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


_INVALID = Checked(INVALID)


def check_code(code: Any, hub_key: Ed25519PublicKey, at: datetime) -> Checked:
    """Checks a payment code presented at ``at`` (the envelope's signed clock):

    1. format (else ``credential_invalid``): a str of at most ``MAX_CODE_CHARS`` characters,
       ``"CHV1." b64url "." b64url``; the body is canonical JSON (no duplicate key, no float)
       holding exactly ``cert`` (an object of exactly ``card`` matching ``F0[0-9A-F]{14}``,
       ``key`` a standard base64 Ed25519 public key, ``valid_until`` RFC 3339 in 2000–2099 and
       ``sig`` a standard base64 signature), ``t`` and ``n`` (integers, |t| < 2^53,
       0 ≤ n < 2^53); the code's signature is 64 bytes;
    2. the cert's signature by ``hub_key``, then the code's by the cert's key (else invalid);
    3. time (else ``credential_expired``): ``at < valid_until``, and
       ``at − 60 s ≤ t ≤ at + 5 s`` exactly (``at`` to the microsecond; both edges included).
    """
    parts = _parts(code)
    if parts is None:
        return _INVALID
    body_bytes, sig, body = parts
    cert = body["cert"]
    try:
        hub_key.verify(b64decode(cert["sig"]), CERT_PREFIX + canonical({k: cert[k] for k in CERT_FIELDS - {"sig"}}))
        public_key_from_b64(cert["key"]).verify(sig, CODE_PREFIX + body_bytes)
    except (InvalidSignature, ValueError):
        return _INVALID
    found = Checked(None, card_uid=cert["card"], key=cert["key"], t=body["t"], n=body["n"])
    if not (at < parse_instant(cert["valid_until"]) and in_window(body["t"], at)):
        return Checked(EXPIRED, card_uid=found.card_uid, key=found.key, t=found.t, n=found.n)
    return found


def in_window(t: int, at: datetime) -> bool:
    """``at − 60 s ≤ t ≤ at + 5 s``, in exact integer microseconds."""
    at_us = (at - _EPOCH) // _US
    return at_us - BEFORE_S * 1_000_000 <= t * 1_000_000 <= at_us + AFTER_S * 1_000_000


def _parts(code: Any) -> tuple[bytes, bytes, dict[str, Any]] | None:
    """(canonical body bytes, signature, body) of a well-formed code, or None."""
    if not isinstance(code, str) or len(code) > MAX_CODE_CHARS or not code.startswith(CODE_START):
        return None
    pieces = code[len(CODE_START):].split(".")
    if len(pieces) != 2:
        return None
    try:
        body_bytes, sig = b64url_decode(pieces[0]), b64url_decode(pieces[1])
        body = json.loads(body_bytes.decode("utf-8"), object_pairs_hook=_unique_keys, parse_float=_refuse,
                          parse_constant=_refuse)
    except (ValueError, UnicodeDecodeError):  # json.JSONDecodeError is a ValueError
        return None
    if len(sig) != 64 or not _well_formed(body) or canonical(body) != body_bytes:
        return None
    return body_bytes, sig, body


def _well_formed(body: Any) -> bool:
    if not isinstance(body, dict) or body.keys() != BODY_FIELDS:
        return False
    cert, t, n = body["cert"], body["t"], body["n"]
    if not (_is_int(t) and _is_int(n) and n >= 0):
        return False
    if not isinstance(cert, dict) or cert.keys() != CERT_FIELDS or not all(isinstance(v, str) for v in cert.values()):
        return False
    try:
        public_key_from_b64(cert["key"])
        parse_instant(cert["valid_until"])
        sig_ok = len(b64decode(cert["sig"])) == 64
    except ValueError:
        return False
    return sig_ok and VIRTUAL_UID_RE.fullmatch(cert["card"]) is not None


def _is_int(value: Any) -> bool:
    return type(value) is int and -MAX_SAFE_INT < value < MAX_SAFE_INT


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate key")
    return dict(pairs)


def _refuse(text: str) -> Any:
    raise ValueError(f"not an integer: {text}")
