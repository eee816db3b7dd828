"""docs/protocol.md's worked example agrees with domain.wire, byte for byte, so the docs cannot
drift from the code: the quoted envelope, its signing input, its event hash and the device's
public key, and the standard-library script that is shown to reproduce them."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device_sim.device import SimDevice
from domain import paycode
from domain.wire import (
    GENESIS_PREV,
    event_hash,
    parse_envelope,
    public_key_b64,
    public_key_from_b64,
    signing_input,
    verify_envelope,
)

PROTOCOL = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
EXAMPLE_RE = re.compile(r"<!-- docs-example: (?P<name>[\w.-]+) -->\n```\w*\n(?P<body>.*?)\n```", re.DOTALL)
EXAMPLE_KEY_SEED = b"cardhub docs example device"  # the published key of the example, as the page says


@pytest.fixture(scope="module")
def example() -> dict[str, str]:
    blocks = {m["name"]: m["body"] for m in EXAMPLE_RE.finditer(PROTOCOL.read_text(encoding="utf-8"))}
    assert set(blocks) == {"public-key", "envelope", "signing-input", "event-hash", "device.py",
                           "paycode-check.py"}, sorted(blocks)
    return blocks


def test_the_worked_example_envelope_is_valid_and_signed_by_the_quoted_key(example: dict[str, str]) -> None:
    envelope = json.loads(example["envelope"])
    parsed = parse_envelope(envelope)
    assert (parsed.device, parsed.seq, parsed.prev) == ("canteen-1-w03", 1, GENESIS_PREV)
    assert verify_envelope(envelope, public_key_from_b64(example["public-key"]))


def test_the_quoted_signing_input_and_event_hash_are_the_envelopes(example: dict[str, str]) -> None:
    envelope = json.loads(example["envelope"])
    quoted = example["signing-input"].encode("utf-8")  # the block's text; the page says: no final line feed
    assert signing_input(envelope) == quoted
    assert event_hash(envelope) == example["event-hash"] == hashlib.sha256(quoted).hexdigest()


def test_a_simulated_device_with_the_example_key_signs_the_same_envelope(example: dict[str, str]) -> None:
    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(EXAMPLE_KEY_SEED).digest())
    device = SimDevice("canteen-1-w03", "pos", key=key)
    assert device.public_key == public_key_b64(key.public_key()) == example["public-key"]
    signed = device.purchase("04A1B2C3D4", 1250, datetime.fromisoformat("2026-11-25T11:32:05.120+08:00"))
    assert signed == json.loads(example["envelope"])
    assert device.prev == example["event-hash"]


def test_the_standard_library_script_reproduces_the_quoted_values(
    example: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("HUB", raising=False)  # without HUB the script only computes and prints
    namespace: dict[str, object] = {"__name__": "device_example"}
    exec(compile(example["device.py"], str(PROTOCOL), "exec"), namespace)  # noqa: S102 - our own docs
    assert namespace["public_key"] == example["public-key"]
    assert namespace["e1"] == json.loads(example["envelope"])
    assert namespace["input1"] == example["signing-input"].encode("utf-8")
    assert namespace["hash1"] == example["event-hash"]
    e2 = namespace["e2"]
    assert isinstance(e2, dict) and e2["prev"] == example["event-hash"]
    assert parse_envelope(e2).hash == namespace["hash2"]
    printed = capsys.readouterr().out
    assert example["event-hash"] in printed and json.loads(example["envelope"])["sig"] in printed


VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "paycodes.json"


def test_the_offline_pos_check_answers_the_vectors_as_the_hub_does(example: dict[str, str]) -> None:
    """The page's ~40 lines an offline POS can follow agree with ``domain.paycode`` on the three
    vectors, and on every code made from them by a change an attacker would try."""
    namespace: dict[str, Any] = {"__name__": "paycode_example"}
    exec(compile(example["paycode-check.py"], str(PROTOCOL), "exec"), namespace)  # noqa: S102 - our own docs
    pos_check = namespace["check_code"]
    for vector in json.loads(VECTORS.read_text(encoding="utf-8"))["vectors"]:
        at, hub_key = datetime.fromisoformat(vector["at"]), vector["hub_public_key"]
        code = vector["code"]
        expected = vector["expected"]
        assert pos_check(code, hub_key, at) == (expected["result"], expected.get("card"), expected.get("n"))
        head, body, sig = code.split(".")
        variants = [code + "=", code[:-1], f"{head}.{body}=.{sig}", f"{head}.{body}", "CHV2" + code[4:],
                    code.replace("-", "+"), code + "." + sig, code.upper(), f"{head}.{body[:-2]}.{sig}",
                    code + "A" * (1025 - len(code)), f"{head}.{sig}.{body}"]
        variants += [code[:i] + chr(ord(code[i]) ^ 1) + code[i + 1:] for i in range(0, len(code), 7)]
        for variant in variants:
            hub = paycode.check_code(variant, public_key_from_b64(hub_key), at)
            assert pos_check(variant, hub_key, at) == (hub.reason or "ok", hub.card_uid, hub.n), variant



README = PROTOCOL.parents[1] / "README.md"
VECTORS_RE = re.compile(r"<!-- docs-vectors -->\n```\n(?P<body>.*?)\n```", re.DOTALL)


def test_the_readme_quotes_the_offline_check_and_the_vectors_as_they_are() -> None:
    """The README's copy of the offline POS check is the protocol page's, and its three codes are
    the vectors' (so neither drifts from what the tests run)."""
    readme = README.read_text(encoding="utf-8")
    quoted = {m["name"]: m["body"] for m in EXAMPLE_RE.finditer(readme)}
    protocol = {m["name"]: m["body"] for m in EXAMPLE_RE.finditer(PROTOCOL.read_text(encoding="utf-8"))}
    assert quoted == {"paycode-check.py": protocol["paycode-check.py"]}
    [codes] = [m["body"] for m in VECTORS_RE.finditer(readme)]
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))["vectors"]
    assert codes.splitlines() == [f"{v['name']}: {v['code']}" for v in vectors]
