"""Device upload over HTTP on the real PostgreSQL: every outcome of DESIGN §2."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone

import pytest

from device_sim.device import SimDevice
from domain.wire import event_hash, sign_envelope
from tests.conftest import Hub

NOON = datetime(2026, 11, 25, 12, 0, tzinfo=timezone(timedelta(hours=8)))
CARD = "ABCDEF01"


@pytest.fixture
async def pos(hub: Hub) -> SimDevice:
    await hub.merchant()
    device = await hub.pos()
    await hub.account("s1", cash=1000, subsidy=200, card=CARD)
    return device


async def test_accepted_events_answer_decision_balance_and_next_seq(hub: Hub, pos: SimDevice) -> None:
    pos.purchase(CARD, 300, NOON)
    pos.purchase(CARD, 5000, NOON)
    answer = await hub.upload(pos.device_id, pos.pending)
    assert answer == {"results": [
        {"seq": 1, "status": "accepted", "decision": "approved", "balance": 900},
        {"seq": 2, "status": "accepted", "decision": "declined", "reason": "insufficient_funds", "balance": 900},
    ], "next_seq": 3}
    assert await hub.balance("s1") == {"account_id": "s1", "cash": 900, "subsidy": 0, "total": 900}


async def test_a_resend_is_a_duplicate_with_the_original_decision_and_balance(hub: Hub, pos: SimDevice) -> None:
    pos.purchase(CARD, 300, NOON)
    first = await hub.upload(pos.device_id, pos.pending)
    pos.purchase(CARD, 100, NOON)  # moves the balance on, so the repeat must quote the original
    await hub.upload(pos.device_id, pos.pending[1:])
    again = await hub.upload(pos.device_id, pos.pending[:1])
    assert again == {"results": [{**first["results"][0], "status": "duplicate"}], "next_seq": 3}
    assert (await hub.balance("s1"))["total"] == 800


async def test_a_batch_stops_at_its_first_rejection(hub: Hub, pos: SimDevice) -> None:
    pos.purchase(CARD, 100, NOON)
    bad = pos.purchase(CARD, 100, NOON)
    pos.purchase(CARD, 100, NOON)
    pos.pending[1] = {**bad, "amount": 1}  # signature no longer matches
    answer = await hub.upload(pos.device_id, pos.pending)
    assert [(r["seq"], r["status"], r.get("code")) for r in answer["results"]] == [
        (1, "accepted", None), (2, "rejected", "bad_signature"), (3, "rejected", "not_processed"),
    ]
    assert answer["next_seq"] == 2
    assert (await hub.balance("s1"))["total"] == 1100


async def test_seq_gap_and_chain_broken_are_rejected_and_nothing_is_stored(hub: Hub, pos: SimDevice) -> None:
    pos.purchase(CARD, 100, NOON)
    second = pos.purchase(CARD, 100, NOON)
    gap = await hub.upload(pos.device_id, [second])
    assert gap["results"] == [{"seq": 2, "status": "rejected", "code": "seq_gap"}] and gap["next_seq"] == 1
    other = SimDevice(pos.device_id, "pos", key=pos.key)  # same key, a different history
    other.purchase(CARD, 999, NOON)
    other.purchase(CARD, 100, NOON)
    await hub.upload(pos.device_id, pos.pending[:1])
    broken = await hub.upload(pos.device_id, [other.pending[1]])
    assert broken["results"] == [{"seq": 2, "status": "rejected", "code": "chain_broken"}]
    assert (await hub.balance("s1"))["total"] == 1100


async def test_a_different_envelope_for_a_stored_seq_is_a_seq_conflict(hub: Hub, pos: SimDevice) -> None:
    pos.purchase(CARD, 100, NOON)
    await hub.send(pos)
    twin = SimDevice(pos.device_id, "pos", key=pos.key)
    twin.purchase(CARD, 700, NOON)
    answer = await hub.upload(pos.device_id, twin.pending)
    assert answer["results"] == [{"seq": 1, "status": "rejected", "code": "seq_conflict"}]
    assert answer["next_seq"] == 2


async def test_unknown_and_revoked_devices_are_rejected(hub: Hub, pos: SimDevice) -> None:
    stranger = SimDevice("pos-x", "pos")
    stranger.purchase(CARD, 100, NOON)
    stranger.purchase(CARD, 100, NOON)
    answer = await hub.upload("pos-x", stranger.pending)
    assert [r.get("code") for r in answer["results"]] == ["unknown_device", "not_processed"]
    pos.purchase(CARD, 100, NOON)
    await hub.send(pos)
    await hub.post(f"/v1/devices/{pos.device_id}/revoke", expect=200)
    await hub.request("POST", f"/v1/devices/{pos.device_id}/revoke", expect=409)
    pos.purchase(CARD, 100, NOON)
    answer = await hub.upload(pos.device_id, pos.pending)
    assert answer["results"] == [{"seq": 2, "status": "rejected", "code": "revoked_device"}]
    # A revoked device's already-stored events are still recognised as duplicates.
    first = {"v": 1, "device": pos.device_id, "seq": 1, "prev": "0" * 64,
             "at": NOON.isoformat(timespec="milliseconds"), "type": "purchase", "card": CARD, "amount": 100}
    assert (await hub.upload(pos.device_id, [sign_envelope(first, pos.key)]))["results"][0]["status"] == "duplicate"


@pytest.mark.parametrize(("change", "detail"), [
    ({"amount": 0}, "amount"),
    ({"device": "pos-2"}, "device"),
    ({"type": "gate", "direction": "in"}, "amount"),
    ({"extra": 1}, "extra"),
])
async def test_an_invalid_field_is_rejected_with_its_name(hub: Hub, pos: SimDevice, change: dict, detail: str) -> None:
    envelope = sign_envelope({**pos.purchase(CARD, 100, NOON), **change}, pos.key)
    answer = await hub.upload(pos.device_id, [envelope])
    result = answer["results"][0]
    assert (result["status"], result["code"]) == ("rejected", "invalid")
    assert result["detail"].startswith(detail)


async def test_a_pos_may_not_send_gate_events(hub: Hub, pos: SimDevice) -> None:
    pos.gate(CARD, "in", NOON)
    result = (await hub.upload(pos.device_id, pos.pending))["results"][0]
    assert (result["code"], result["detail"]) == ("invalid", "type: a pos device does not send gate")


async def test_upload_limits_events_per_batch_and_body_size(hub: Hub, pos: SimDevice) -> None:
    for _ in range(1001):
        pos.purchase(CARD, 1, NOON)
    resp = await hub.client.post(f"/v1/devices/{pos.device_id}/events", json={"events": pos.pending})
    assert resp.status == 413 and resp.content_type == "application/problem+json"
    big = json.dumps({"events": [{"pad": "x" * (1 << 20)}]}).encode()
    resp = await hub.client.post(f"/v1/devices/{pos.device_id}/events", data=io.BytesIO(big),
                                 headers={"Content-Type": "application/json"})
    assert resp.status == 413
    for body in (b"{not json", b'{"events": []}', b'{"events": [], "more": 1}'):
        resp = await hub.client.post(f"/v1/devices/{pos.device_id}/events", data=body)
        problem = await resp.json(content_type=None)
        assert resp.status in (400, 422) and problem["status"] == resp.status and problem["code"]
    answer = await hub.upload(pos.device_id, pos.pending[:1000])
    assert answer["next_seq"] == 1001
    assert (await hub.balance("s1"))["total"] == 200


async def test_a_lost_card_is_declined_online_but_an_offline_swipe_is_debited(hub: Hub, pos: SimDevice) -> None:
    await hub.post(f"/v1/cards/{CARD}/lost", expect=200)
    pos.purchase(CARD, 100, NOON)
    pos.purchase(CARD, 1500, NOON + timedelta(minutes=1), offline=True, decision="approved")
    online, offline = await hub.send(pos)
    assert (online["decision"], online["reason"]) == ("declined", "card_lost")
    assert (offline["decision"], offline["balance"]) == ("approved", -300)
    await hub.settle()
    items = (await hub.get("/v1/accounts/s1/transactions"))["items"]
    assert items[0]["flags"] == ["hotlisted_card", "overdraft"] and items[0]["amount"] == -1500
    assert (items[1]["decision"], items[1]["reason"]) == ("declined", "card_lost")


async def test_the_balance_view_equals_a_replay_of_the_events(hub: Hub, pos: SimDevice) -> None:
    for n in range(30):
        pos.purchase(CARD, 37 + n, NOON + timedelta(minutes=n), offline=n % 7 == 0, decision="approved")
        if n % 5 == 4:
            pos.reversal(CARD, pos.last_seq, NOON + timedelta(minutes=n))
    await hub.send(pos)
    await hub.post("/v1/accounts/s1/topups", {"amount": 123, "ref": "late"})
    view = await hub.balance("s1")
    from domain import ids
    from hub.service.typedefs import SEAT

    app = hub.app[SEAT].active().application
    account_id = ids.account_id("s1")
    replayed = app.repository.get(account_id, version=app.repository.get(account_id).version)
    assert (view["subsidy"], view["cash"]) == (replayed.subsidy_fen, replayed.cash_fen)


async def test_the_hotlist_is_signed_and_sent_as_changes_since_a_version(hub: Hub, pos: SimDevice) -> None:
    from domain.wire import HOTLIST_PREFIX, public_key_from_b64, verify_document

    await hub.account("s2", card="ABCDEF02")
    await hub.settle()
    empty = await hub.get(f"/v1/devices/{pos.device_id}/hotlist", role=None)
    assert (empty["version"], empty["full"], empty["added"]) == (0, True, [])
    await hub.post(f"/v1/cards/{CARD}/lost", expect=200)
    await hub.post("/v1/cards/ABCDEF02/lost", expect=200)
    await hub.settle()
    full = await hub.get(f"/v1/devices/{pos.device_id}/hotlist", role=None)
    key = public_key_from_b64((await hub.get("/v1/hub/key", role=None))["public_key"])
    assert verify_document(HOTLIST_PREFIX, full, key)
    assert full["added"] == [CARD, "ABCDEF02"] and full["full"] is True
    await hub.post(f"/v1/cards/{CARD}/found", expect=200)
    await hub.settle()
    delta = await hub.get(f"/v1/devices/{pos.device_id}/hotlist?since={full['version']}", role=None)
    assert (delta["full"], delta["added"], delta["removed"]) == (False, [], [CARD])
    assert delta["version"] > full["version"] and verify_document(HOTLIST_PREFIX, delta, key)
    await hub.request("GET", "/v1/devices/nope/hotlist", role=None, expect=404)


async def test_events_survive_in_order_across_many_devices_in_one_batch(hub: Hub, pos: SimDevice) -> None:
    import asyncio

    devices = [await hub.pos(f"pos-{n}") for n in range(2, 12)]
    for device in devices:
        for _ in range(5):
            device.purchase(CARD, 10, NOON)
    answers = await asyncio.gather(*(hub.upload(d.device_id, d.pending) for d in devices))
    assert all(a["next_seq"] == 6 for a in answers)
    assert (await hub.balance("s1"))["total"] == 1200 - 500
    assert event_hash(devices[0].pending[0]) == devices[0].pending[1]["prev"]


async def test_a_resend_with_a_forged_signature_is_not_a_duplicate(hub: Hub, pos: SimDevice) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    envelope = pos.purchase(CARD, 100, NOON)
    await hub.send(pos)
    forged = sign_envelope(envelope, Ed25519PrivateKey.generate())  # same fields, another key
    answer = await hub.upload(pos.device_id, [forged])
    assert answer["results"] == [{"seq": 1, "status": "rejected", "code": "bad_signature"}]
    again = await hub.upload(pos.device_id, [envelope])
    assert again["results"][0]["status"] == "duplicate"


async def test_a_steady_stream_of_swipes_reaches_the_views_while_it_lasts(hub: Hub, pos: SimDevice) -> None:
    """The views must not wait for the stream to pause: staged view writes are flushed at
    least every ``SharedRunner.MAX_DELAY_S`` even when the next events always come sooner."""
    pos.purchase(CARD, 1, NOON)
    await hub.send(pos)
    first = (await hub.get("/healthz"))["store_position"]
    for sent in range(1, 301):  # 300 swipes, 600 events: fewer than the runner's batch of 1,000
        health = await hub.get("/healthz")
        if min(p["position"] for p in health["projections"].values()) >= first:
            break
        pos.purchase(CARD, 1, NOON)
        await hub.send(pos)
    else:
        pytest.fail("no view showed the first swipe while swipes kept coming")
    assert sent < 300
    assert (await hub.balance("s1"))["total"] == 1200 - sent
