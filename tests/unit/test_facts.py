"""The declared shapes of a stored swipe (``domain.facts``): the hub stores exactly the bytes
it always has (the audit log hashes them), and the shapes say which keys every event carries."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta, timezone

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device_sim.device import SimDevice
from domain import ids
from domain.actors import CLI
from domain.application import CampusCard, Item
from domain.devices import SwipeLog
from domain.facts import Rejection, SignedEnvelope, SwipeFacts, SwipeResult
from domain.wire import ENVELOPE_FIELDS, FIELDS_BY_TYPE, parse_envelope

NOON = datetime(2026, 11, 25, 12, 0, tzinfo=timezone(timedelta(hours=8)))
CLOCK = datetime(2026, 11, 25, 4, 0, 30, tzinfo=UTC)
TIMESTAMP_RE = re.compile(rb'"timestamp":\{"_type_":"datetime_iso","_data_":"[^"]*"\}')

# As a hub before the declared shapes stored them, byte for byte but the library's timestamp.
PURCHASE_STATE = (
    '{"timestamp":T,"envelope":{"v":1,"device":"pos-1","seq":1,"prev":"' + "0" * 64 + '",'
    '"at":"2026-11-25T12:00:00.000+08:00","type":"purchase","card":"ABCDEF01","amount":700,'
    '"sig":"{sig1}"},"event_hash":"{hash1}",'
    '"result":{"seq":1,"status":"accepted","decision":"approved","balance":2800},'
    '"facts":{"account_id":"s1","merchant_id":"canteen-1","zone":null,"local_day":"2026-11-25",'
    '"subsidy_fen":500,"cash_fen":200,"flags":[],"refunded_seq":null,"category":"student",'
    '"drawn":[["s1",500]]},'  # since expiring subsidies (DESIGN §11): a NotRequired key, added last
    '"recorded_at":"2026-11-25T04:00:30+00:00"}'
)
REVERSAL_STATE = (
    '{"timestamp":T,"envelope":{"v":1,"device":"pos-1","seq":2,"prev":"{hash1}",'
    '"at":"2026-11-25T12:01:00.000+08:00","type":"reversal","card":"ABCDEF01","ref_seq":1,'
    '"sig":"{sig2}"},"event_hash":"{hash2}",'
    '"result":{"seq":2,"status":"accepted","decision":"approved","balance":3500},'
    '"facts":{"account_id":"s1","merchant_id":"canteen-1","zone":null,"local_day":"2026-11-25",'
    '"subsidy_fen":500,"cash_fen":200,"flags":[],"refunded_seq":1,"category":"student",'
    '"refunded_at":"2026-11-25T12:00:00.000+08:00"},"recorded_at":"2026-11-25T04:00:30+00:00"}'
)


def _campus() -> tuple[CampusCard, SimDevice]:
    app = CampusCard(clock=lambda: CLOCK)
    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"test_facts pos-1").digest())
    pos = SimDevice("pos-1", "pos", key=key)
    app.register_merchant("canteen-1", "第一食堂", "dining", actor=CLI)
    app.register_device("pos-1", "pos", pos.public_key, merchant_id="canteen-1", actor=CLI)
    app.open_account("s1", "韩梅梅", "student", ["students"], actor=CLI)
    app.issue_card("ABCDEF01", "s1", actor=CLI)
    app.credit("s1", "topup", 3000, "t1", actor=CLI)
    app.credit("s1", "subsidy", 500, "s1", actor=CLI)
    return app, pos


def _send(app: CampusCard, device: SimDevice, raws: list[dict]) -> list:
    [outcome] = app.record_swipes([(device.device_id, [Item(parse_envelope(raw)) for raw in raws])])
    return outcome.results


def test_a_stored_swipe_keeps_its_bytes_key_for_key() -> None:
    app, pos = _campus()
    purchase = pos.purchase("ABCDEF01", 700, NOON)
    reversal = pos.reversal("ABCDEF01", 1, NOON + timedelta(minutes=1))
    _send(app, pos, [purchase])
    _send(app, pos, [reversal])
    log_id = ids.swipe_log_id("pos-1")
    stored = [n for n in app.recorder.select_notifications(start=None, limit=100) if n.originator_id == log_id]
    assert [n.topic for n in stored] == ["domain.devices:SwipeLog.Opened"] + ["domain.devices:SwipeLog.Recorded"] * 2
    hashes = [app.repository.get(log_id, version=v).head_hash for v in (2, 3)]
    values = {"{sig1}": purchase["sig"], "{sig2}": reversal["sig"], "{hash1}": hashes[0], "{hash2}": hashes[1]}
    for n, expected in zip(stored[1:], (PURCHASE_STATE, REVERSAL_STATE), strict=True):
        for name, value in values.items():
            expected = expected.replace(name, value)
        assert TIMESTAMP_RE.sub(b'"timestamp":T', n.state).decode() == expected


def test_answers_are_the_declared_results_in_their_order() -> None:
    app, pos = _campus()
    purchase = pos.purchase("ABCDEF01", 700, NOON)
    assert _send(app, pos, [purchase]) == [{"seq": 1, "status": "accepted", "decision": "approved", "balance": 2800}]
    [again] = _send(app, pos, [purchase])
    assert list(again.items()) == [("seq", 1), ("status", "duplicate"), ("decision", "approved"), ("balance", 2800)]
    [declined] = _send(app, pos, [pos.purchase("ABCDEF01", 10**6, NOON)])
    assert list(declined) == ["seq", "status", "decision", "reason", "balance"]
    forged = {**pos.purchase("ABCDEF01", 1, NOON), "amount": 2}
    [rejected] = _send(app, pos, [forged])
    assert list(rejected.items()) == [("seq", 3), ("status", "rejected"), ("code", "bad_signature")]
    stored = app.repository.get(ids.swipe_log_id("pos-1"))
    [recorded] = [e for e in app.events.get(stored.id, gt=1, lte=2) if isinstance(e, SwipeLog.Recorded)]
    assert set(recorded.result) <= set(SwipeResult.__annotations__)
    assert set(SwipeFacts.__required_keys__) <= set(recorded.facts) <= set(SwipeFacts.__annotations__)


def test_the_envelope_shape_is_protocol_v1s_fields() -> None:
    assert set(SignedEnvelope.__annotations__) == ENVELOPE_FIELDS
    by_type = set().union(*FIELDS_BY_TYPE.values())
    # a purchase or gate carries card or credential (DESIGN §10)
    assert SignedEnvelope.__optional_keys__ == by_type | {"offline", "decision", "card", "credential"}
    assert Rejection.__optional_keys__ == {"detail"}
    assert SwipeResult.__optional_keys__ == {"reason", "balance"}
    assert SwipeFacts.__optional_keys__ == {"category", "refunded_at", "drawn", "card"}
