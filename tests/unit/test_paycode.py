"""Payment codes and virtual-card certs (DESIGN §10): made and checked by domain.paycode alone;
every format problem is credential_invalid, every time problem credential_expired, and the
fixed vectors of tests/vectors/paycodes.json are recomputed byte for byte."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from domain import paycode
from domain.paycode import CERT_PREFIX, CODE_PREFIX, b64url, b64url_decode, check_code, make_cert, make_code
from domain.wire import b64encode, canonical, public_key_b64

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "paycodes.json"
HUB = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"unit hub").digest())
PHONE = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"unit phone").digest())
UID = "F00123456789ABCD"
AT = datetime(2026, 11, 25, 3, 32, 5, tzinfo=UTC)
T = int(AT.timestamp())
CERT = make_cert(UID, public_key_b64(PHONE.public_key()), AT + timedelta(days=365), HUB)


def check(code: Any, at: datetime = AT) -> paycode.Checked:
    return check_code(code, HUB.public_key(), at)


def signed_code(body: dict[str, Any] | bytes, key: Ed25519PrivateKey = PHONE) -> str:
    """A code of any body, validly signed by ``key``: what a forger with the phone's key could make."""
    raw = body if isinstance(body, bytes) else canonical(body)
    return "CHV1." + b64url(raw) + "." + b64url(key.sign(CODE_PREFIX + raw))


def hub_signed(cert: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in cert.items() if k != "sig"}
    return {**body, "sig": b64encode(HUB.sign(CERT_PREFIX + canonical(body)))}


def test_a_code_round_trips_with_its_card_key_time_and_counter() -> None:
    code = make_code(CERT, T, 7, PHONE)
    assert code.startswith("CHV1.") and code.count(".") == 2 and "=" not in code
    assert len(code) < paycode.MAX_CODE_CHARS
    found = check(code)
    assert found.ok and (found.card_uid, found.key, found.t, found.n) == (UID, CERT["key"], T, 7)


def test_the_cert_is_signed_over_its_prefix_and_names_no_person() -> None:
    assert set(CERT) == {"card", "key", "valid_until", "sig"}
    assert CERT["valid_until"] == "2027-11-25T03:32:05Z"
    body = {k: CERT[k] for k in ("card", "key", "valid_until")}
    HUB.public_key().verify(base64.b64decode(CERT["sig"]), b"cardhub/vcard/v1\n" + canonical(body))


@pytest.mark.parametrize(("offset_s", "reason"), [
    (-60, None), (-61, "credential_expired"), (5, None), (6, "credential_expired"), (0, None),
])
def test_the_time_window_is_60_s_before_and_5_s_after_at_edges_included(offset_s: int, reason: str | None) -> None:
    assert check(make_code(CERT, T + offset_s, 1, PHONE)).reason == reason


def test_the_window_is_exact_to_the_microsecond() -> None:
    code = make_code(CERT, T - 60, 1, PHONE)
    assert check(code, AT + timedelta(microseconds=1)).reason == "credential_expired"
    assert check(make_code(CERT, T + 5, 1, PHONE), AT - timedelta(microseconds=1)).reason == "credential_expired"


def test_an_expired_cert_expires_its_codes_at_valid_until_exactly() -> None:
    cert = make_cert(UID, CERT["key"], AT + timedelta(seconds=1), HUB)
    assert check(make_code(cert, T, 1, PHONE), AT).ok
    late = check(make_code(cert, T + 1, 1, PHONE), AT + timedelta(seconds=1))
    assert late.reason == "credential_expired" and late.card_uid == UID and late.n == 1


def test_a_cert_signed_by_another_hub_key_is_invalid() -> None:
    other = make_cert(UID, CERT["key"], AT + timedelta(days=1), Ed25519PrivateKey.generate())
    assert check(make_code(other, T, 1, PHONE)).reason == "credential_invalid"


def test_a_code_signed_by_another_phone_key_is_invalid() -> None:
    assert check(make_code(CERT, T, 1, Ed25519PrivateKey.generate())).reason == "credential_invalid"


def test_an_invalid_code_tells_nothing_of_its_card() -> None:
    found = check(make_code(CERT, T, 1, Ed25519PrivateKey.generate()))
    assert (found.card_uid, found.key, found.t, found.n) == (None, None, None, None)


@pytest.mark.parametrize("change", [
    {"card": "F00123456789ABCE"}, {"valid_until": "2099-12-31T00:00:00Z"},
    {"key": public_key_b64(Ed25519PrivateKey.generate().public_key())},
])
def test_a_tampered_cert_is_invalid_even_with_a_good_code_signature(change: dict[str, str]) -> None:
    assert check(signed_code({"cert": {**CERT, **change}, "t": T, "n": 1})).reason == "credential_invalid"


def test_a_tampered_body_or_signature_is_invalid() -> None:
    code = make_code(CERT, T, 1, PHONE)
    head, body, sig = code.split(".")
    other_body = b64url(canonical({"cert": CERT, "t": T, "n": 2}))
    flipped = b64url(bytes([b64url_decode(sig)[0] ^ 1]) + b64url_decode(sig)[1:])
    for forged in (f"{head}.{other_body}.{sig}", f"{head}.{body}.{flipped}", f"{head}.{body}.{sig[:-2]}"):
        assert check(forged).reason == "credential_invalid", forged


def test_padding_and_characters_outside_the_url_safe_alphabet_are_invalid() -> None:
    code = make_code(CERT, T, 1, PHONE)
    head, body, sig = code.split(".")
    standard = base64.b64encode(b64url_decode(body)).decode()
    assert "+" in standard or "/" in standard or "=" in standard
    padded = body + "=" * (-len(body) % 4 or 4)
    for bad in (f"{head}.{padded}.{sig}", f"{head}.{body}.{sig}==", f"{head}.{standard}.{sig}",
                f"{head}.{body}.{sig} ", f"{head}.{body}.{sig}\x00", f"{head}.{body}.{sig[:-1]}!"):
        assert check(bad).reason == "credential_invalid", bad


def test_a_second_spelling_of_the_same_bytes_is_invalid() -> None:
    sig = b64url(PHONE.sign(b"x"))  # 64 bytes: 86 characters, the last carrying 2 spare bits
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = sig[:-1] + alphabet[alphabet.index(sig[-1]) ^ 1]
    with pytest.raises(ValueError):
        b64url_decode(twin)


@pytest.mark.parametrize("code", [
    None, 42, "", "CHV1.", "CHV1..", "CHV2.e30.e30", "chv1.e30.e30", "CHV1.e30", "CHV1.e30.e30.e30",
    " CHV1.e30.e30", "CHV1.e30.e30\n", "CHV1." + "A" * 2000,
])
def test_malformed_codes_are_invalid(code: Any) -> None:
    assert check(code).reason == "credential_invalid"


def _with(body_change: dict[str, Any] | None = None, cert_change: dict[str, Any] | None = None,
          drop: str | None = None) -> dict[str, Any]:
    cert = hub_signed({**CERT, **(cert_change or {})}) if cert_change else CERT
    body = {"cert": cert, "t": T, "n": 1, **(body_change or {})}
    if drop is not None:
        del body[drop]
    return body


@pytest.mark.parametrize("body", [
    _with({"n": 1.0}), _with({"n": "1"}), _with({"n": True}), _with({"n": None}), _with({"n": -1}),
    _with({"n": 2**53}), _with({"n": -(2**53)}), _with({"t": float(T)}), _with({"t": str(T)}),
    _with({"t": 2**53}), _with({"t": [T]}), _with(drop="n"), _with(drop="t"), _with(drop="cert"),
    _with({"extra": 1}), _with({"cert": "F00123456789ABCD"}),
    _with(cert_change={"card": "F0ABC"}), _with(cert_change={"card": "0123456789ABCDEF"}),
    _with(cert_change={"card": "f00123456789abcd"}), _with(cert_change={"card": "F00123456789ABCD\n"}),
    _with(cert_change={"key": "AAAA"}), _with(cert_change={"valid_until": "9999-01-01T00:00:00Z"}),
    _with(cert_change={"valid_until": "tomorrow"}), _with(cert_change={"extra": "x"}),
    _with(cert_change={"valid_until": 1}), [1, 2], "text", 7,
])
def test_a_well_signed_body_of_the_wrong_shape_is_invalid(body: Any) -> None:
    assert check(signed_code(body)).reason == "credential_invalid"


def test_a_cert_without_its_sig_or_with_a_short_one_is_invalid() -> None:
    unsigned = {k: v for k, v in CERT.items() if k != "sig"}
    assert check(signed_code({"cert": unsigned, "t": T, "n": 1})).reason == "credential_invalid"
    short = {**CERT, "sig": b64encode(b"\x00" * 63)}
    assert check(signed_code({"cert": short, "t": T, "n": 1})).reason == "credential_invalid"


@pytest.mark.parametrize("raw", [
    json.dumps({"cert": CERT, "t": T, "n": 1}).encode(),  # whitespace, keys unsorted
    canonical({"cert": CERT, "t": T, "n": 1}).replace(b'"n":1', b'"n":1,"n":1'),  # duplicate key
    canonical({"cert": CERT, "t": T, "n": 1}).replace(b'"n":1', b'"n":1.0'),
    canonical({"cert": CERT, "t": T, "n": 1}).replace(b'"n":1', b'"n":NaN'),
    canonical({"cert": CERT, "t": T, "n": 1}).replace(b'"n":1', b'"n":1e0'),
    canonical({"cert": CERT, "t": T, "n": 1}).replace(b"F0", b"\\u0046\\u0030"),  # escaped: not canonical
    canonical({"cert": CERT, "t": T, "n": 1}) + b" ",
    b"\xff" + canonical({"cert": CERT, "t": T, "n": 1}),
])
def test_non_canonical_json_is_invalid_even_when_signed(raw: bytes) -> None:
    assert check(signed_code(raw)).reason == "credential_invalid"


def test_a_code_longer_than_the_bound_is_invalid_before_any_decoding() -> None:
    code = make_code(CERT, T, 1, PHONE)
    assert check(code + "A" * (paycode.MAX_CODE_CHARS - len(code) + 1)).reason == "credential_invalid"


@given(t_offset=st.integers(min_value=-60, max_value=5), n=st.integers(min_value=0, max_value=2**53 - 1),
       uid=st.from_regex(r"F0[0-9A-F]{14}", fullmatch=True), days=st.integers(min_value=1, max_value=365))
def test_any_code_in_its_window_round_trips(t_offset: int, n: int, uid: str, days: int) -> None:
    cert = make_cert(uid, CERT["key"], AT + timedelta(days=days), HUB)
    found = check(make_code(cert, T + t_offset, n, PHONE))
    assert found.ok and (found.card_uid, found.n, found.t) == (uid, n, T + t_offset)


@given(n=st.integers(min_value=0, max_value=2**53 - 1), position=st.integers(min_value=0), bit=st.integers(0, 7))
def test_any_flipped_bit_of_a_code_makes_it_invalid(n: int, position: int, bit: int) -> None:
    code = make_code(CERT, T, n, PHONE).encode()
    i = position % len(code)
    flipped = code[:i] + bytes([code[i] ^ (1 << bit)]) + code[i + 1:]
    assert not check(flipped.decode("latin-1")).ok


# -- the vectors a second implementation uses (tests/vectors/README.md) ---------------------------

def _vectors() -> list[dict[str, Any]]:
    return json.loads(VECTORS.read_text(encoding="utf-8"))["vectors"]  # type: ignore[no-any-return]


def test_the_vectors_are_one_good_one_expired_and_one_invalid_code() -> None:
    assert [v["expected"]["result"] for v in _vectors()] == ["ok", "credential_expired", "credential_invalid"]


@pytest.mark.parametrize("vector", _vectors(), ids=lambda v: v["name"])
def test_each_vector_is_recomputed_byte_for_byte(vector: dict[str, Any]) -> None:
    hub = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(vector["hub_seed"]))
    phone = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(vector["phone_seed"]))
    assert public_key_b64(hub.public_key()) == vector["hub_public_key"]
    cert = vector["cert"]
    valid_until = datetime.fromisoformat(cert["valid_until"].replace("Z", "+00:00"))
    assert make_cert(cert["card"], cert["key"], valid_until, hub) == cert
    assert make_code(cert, vector["t"], vector["n"], phone) == vector["code"]
    found = check_code(vector["code"], hub.public_key(), datetime.fromisoformat(vector["at"]))
    expected = vector["expected"]
    assert (found.reason or "ok") == expected["result"]
    if found.card_uid is not None:
        assert (found.card_uid, found.t, found.n) == (expected["card"], expected["t"], expected["n"])
    else:
        assert set(expected) == {"result"}
