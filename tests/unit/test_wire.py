"""Protocol v1 bytes (DESIGN §2): canonical JSON, signing input, hash chain, strict fields."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from device_sim.device import SimDevice
from domain.wire import (
    GENESIS_PREV,
    HOTLIST_PREFIX,
    InvalidEnvelope,
    canonical,
    event_hash,
    parse_envelope,
    public_key_b64,
    public_key_from_b64,
    sign_document,
    sign_envelope,
    signing_input,
    verify_document,
    verify_envelope,
)

AT = datetime(2026, 11, 25, 11, 32, 5, 120000, tzinfo=timezone.utc)


def test_canonical_sorts_keys_drops_whitespace_and_keeps_non_ascii() -> None:
    assert canonical({"b": 1, "a": "第一食堂", "c": [True, {"z": 0, "y": None}]}) == (
        '{"a":"第一食堂","b":1,"c":[true,{"y":null,"z":0}]}'.encode()
    )


def test_signing_input_is_prefix_plus_canonical_without_sig() -> None:
    envelope = {"v": 1, "seq": 1, "sig": "x"}
    assert signing_input(envelope) == b'cardhub/event/v1\n{"seq":1,"v":1}'
    assert event_hash(envelope) == hashlib.sha256(b'cardhub/event/v1\n{"seq":1,"v":1}').hexdigest()


def test_a_device_chains_each_envelope_to_the_hash_of_the_previous() -> None:
    device = SimDevice("pos-1", "pos")
    first = device.purchase("ABCDEF01", 100, AT)
    second = device.purchase("ABCDEF01", 200, AT)
    assert first["prev"] == GENESIS_PREV and first["seq"] == 1
    assert second["prev"] == event_hash(first) and second["seq"] == 2
    assert parse_envelope(second).hash == event_hash(second)


amounts = st.integers(min_value=1, max_value=2**53 - 1)
cards = st.from_regex(r"[0-9A-F]{8,20}", fullmatch=True)


@given(amount=amounts, card=cards, location=st.text(max_size=20))
def test_sign_then_verify_round_trips_and_any_change_breaks_it(amount: int, card: str, location: str) -> None:
    key = Ed25519PrivateKey.generate()
    envelope = sign_envelope({"v": 1, "device": "pos-1", "seq": 1, "prev": GENESIS_PREV,
                              "at": "2026-11-25T11:32:05.120+08:00", "type": "purchase",
                              "card": card, "amount": amount}, key)
    public = public_key_from_b64(public_key_b64(key.public_key()))
    assert verify_envelope(envelope, public)
    assert not verify_envelope({**envelope, "amount": amount + 1}, public)
    assert not verify_envelope(envelope, Ed25519PrivateKey.generate().public_key())
    document = sign_document(HOTLIST_PREFIX, {"version": 1, "added": [card], "note": location}, key)
    assert verify_document(HOTLIST_PREFIX, document, public)
    assert not verify_document(HOTLIST_PREFIX, {**document, "version": 2}, public)


def _valid() -> dict:
    return sign_envelope({"v": 1, "device": "pos-1", "seq": 3, "prev": GENESIS_PREV,
                          "at": "2026-11-25T11:32:05.120+08:00", "type": "purchase",
                          "card": "ABCDEF01", "amount": 100}, Ed25519PrivateKey.generate())


@pytest.mark.parametrize(("change", "field"), [
    ({"v": 2}, "v"),
    ({"seq": 0}, "seq"),
    ({"seq": True}, "seq"),
    ({"seq": 2**53}, "seq"),
    ({"prev": "ABC"}, "prev"),
    ({"at": "2026-11-25T11:32:05"}, "at"),
    ({"at": "yesterday"}, "at"),
    ({"type": "refund"}, "type"),
    ({"card": "abcdef01"}, "card"),
    ({"card": "ABC"}, "card"),
    ({"amount": 0}, "amount"),
    ({"amount": 1.5}, "amount"),
    ({"amount": "100"}, "amount"),
    ({"direction": "in"}, "direction"),
    ({"offline": "yes"}, "offline"),
    ({"offline": True}, "decision"),
    ({"decision": "approved"}, "decision"),
    ({"sig": "not base64!"}, "sig"),
    ({"colour": "red"}, "colour"),
])
def test_a_malformed_field_is_named(change: dict, field: str) -> None:
    with pytest.raises(InvalidEnvelope) as caught:
        parse_envelope({**_valid(), **change})
    assert caught.value.field == field


def test_a_missing_field_is_named() -> None:
    envelope = _valid()
    del envelope["amount"]
    with pytest.raises(InvalidEnvelope, match="amount: is required"):
        parse_envelope(envelope)


def test_reversal_must_point_at_an_earlier_seq() -> None:
    envelope = {**_valid(), "type": "reversal", "ref_seq": 3}
    del envelope["amount"]
    with pytest.raises(InvalidEnvelope) as caught:
        parse_envelope(envelope)
    assert caught.value.field == "ref_seq"


# -- DESIGN §9: the parser's bounds ----------------------------------------------

UNSAFE = {"nul": "\x00", "newline": "\n", "del": "\x7f", "c1": "\x85", "lrm": "\u200e", "rlo": "\u202e",
          "fsi": "\u2068"}


@pytest.mark.parametrize("bad", UNSAFE.values(), ids=UNSAFE.keys())
@pytest.mark.parametrize("field", ["device", "prev", "at", "type", "card", "sig"])
def test_a_control_or_bidi_character_in_any_string_field_is_named(field: str, bad: str) -> None:
    envelope = _valid()
    with pytest.raises(InvalidEnvelope) as caught:
        parse_envelope({**envelope, field: envelope[field] + bad})
    assert caught.value.field == field and f"U+{ord(bad):04X}" in caught.value.problem


@pytest.mark.parametrize("bad", UNSAFE.values(), ids=UNSAFE.keys())
@pytest.mark.parametrize(("change", "field"), [
    ({"type": "gate", "direction": "in"}, "direction"), ({"offline": True, "decision": "approved"}, "decision"),
])
def test_a_control_character_in_direction_or_decision_is_named(change: dict, field: str, bad: str) -> None:
    envelope = {k: v for k, v in {**_valid(), **change}.items() if not (change.get("type") and k == "amount")}
    envelope[field] += bad
    with pytest.raises(InvalidEnvelope) as caught:
        parse_envelope(envelope)
    assert caught.value.field == field


def test_an_unknown_field_with_a_control_character_is_named_escaped() -> None:
    with pytest.raises(InvalidEnvelope) as caught:
        parse_envelope({**_valid(), "x\u202e": 1})
    assert caught.value.field == '"x\\u202e"'


@pytest.mark.parametrize("amount", [0, -1, 10_000_001, 2**31, 2**53 - 1, 2**63, 2**64, 10**100, 1.0, 1.5, True, "1"])
def test_an_amount_outside_1_to_10_000_000_fen_is_named(amount: object) -> None:
    with pytest.raises(InvalidEnvelope) as caught:
        parse_envelope({**_valid(), "amount": amount})
    assert caught.value.field == "amount"


@pytest.mark.parametrize("amount", [1, 10_000_000])
def test_the_bounds_of_an_amount_are_accepted(amount: int) -> None:
    assert parse_envelope({**_valid(), "amount": amount}).amount_fen == amount


@pytest.mark.parametrize("version", [1.0, True, 2**53, "1"])
def test_only_the_integer_1_is_a_version(version: object) -> None:
    with pytest.raises(InvalidEnvelope) as caught:
        parse_envelope({**_valid(), "v": version})
    assert caught.value.field == "v"


@pytest.mark.parametrize("at", [
    "0001-01-01T00:00:00+08:00", "0001-01-01T00:00:00-08:00", "1999-12-31T23:59:59.999Z", "2100-01-01T00:00:00Z",
    "9999-12-31T23:59:59-14:00", "2099-12-31T23:59:59-01:00", "2000-01-01T07:59:59+08:00", "2026-11-25T12:00:00",
    "2026-11-25T12:00:00+24:00", "2026-11-25T24:00:00Z", "٢٠٢٦-11-25T12:00:00Z", "2026-11-25T12:00:00Z\n",
])
def test_an_at_outside_the_years_2000_to_2099_in_utc_or_without_an_offset_is_named(at: str) -> None:
    with pytest.raises(InvalidEnvelope) as caught:
        parse_envelope({**_valid(), "at": at})
    assert caught.value.field == "at"


@pytest.mark.parametrize("at", ["2000-01-01T00:00:00Z", "2000-01-01T08:00:00+08:00", "2099-12-31T23:59:59.999999999Z",
                                "2100-01-01T01:00:00+02:00"])
def test_the_bounds_of_at_in_utc_are_accepted(at: str) -> None:
    assert parse_envelope({**_valid(), "at": at}).occurred_at.astimezone(timezone.utc).year in (2000, 2099)
