"""``GET /v1/risk/exposure`` (DESIGN §11) on the real PostgreSQL: equal to a fold over the stored
events, read back from the event store and computed here independently of the views."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from device_sim.device import SimDevice
from domain.accounts import Account
from domain.application import CampusCard
from domain.devices import SwipeLog
from hub.storage.store import Database
from tests.conftest import Hub

pytestmark = pytest.mark.timeout(180)
CST = timezone(timedelta(hours=8))
CARDS = ["ABCDEF01", "ABCDEF02", "ABCDEF03", "ABCDEF04"]
UNKNOWN = "ABCDEF99"


def _stored(database: Database) -> list[Any]:
    """Every stored event, decoded, in the global sequence."""
    app = CampusCard(env=database.eventsourcing_env())
    try:
        return [app.mapper.to_domain_event(n) for n in app.recorder.select_notifications(start=1, limit=100_000)]
    finally:
        app.close()


def expected_exposure(events: list[Any]) -> dict[str, Any]:
    totals: dict[str, int] = defaultdict(int)
    flags: dict[str, list[int]] = {}
    devices: dict[str, list[Any]] = {}
    for event in events:
        if isinstance(event, Account.Credited):
            totals[event.account_id] += event.amount_fen
        elif isinstance(event, Account.Debited):
            totals[event.account_id] -= event.subsidy_fen + event.cash_fen
        elif isinstance(event, Account.Refunded):
            totals[event.account_id] += event.subsidy_fen + event.cash_fen
        elif isinstance(event, Account.Opened):
            totals[event.account_id] += 0
        elif isinstance(event, SwipeLog.Recorded):
            envelope = event.envelope
            approved = envelope["type"] == "purchase" and event.result["decision"] == "approved"
            fen = envelope["amount"] if approved else 0
            for flag in set(event.facts["flags"]):
                sums = flags.setdefault(flag, [0, 0])
                sums[0] += 1
                sums[1] += fen
            device = devices.setdefault(envelope["device"], [0, 0, event.recorded_at])
            device[2] = max(device[2], event.recorded_at, key=datetime.fromisoformat)
            if envelope.get("offline"):
                device[0] += 1
                device[1] += fen
    negative = [t for t in totals.values() if t < 0]
    return {
        "negative_balances": {"accounts": len(negative), "fen": -sum(negative)},
        "flagged": [{"flag": f, "events": n, "fen": fen} for f, (n, fen) in sorted(flags.items())],
        "devices": [{"device": d, "offline_events": n, "fen": fen, "last_upload": last}
                    for d, (n, fen, last) in sorted(devices.items()) if n > 0],
    }


def _same_instants(answer: dict[str, Any]) -> dict[str, Any]:
    """``last_upload`` as an instant (the view answers in UTC, the events hold the hub's text)."""
    for device in answer["devices"]:
        device["last_upload"] = datetime.fromisoformat(device["last_upload"])
    return answer


async def _campus(hub: Hub) -> dict[str, SimDevice]:
    await hub.merchant("canteen-1")
    await hub.merchant("market", "supermarket")
    devices = {name: await hub.pos(name, merchant) for name, merchant in
               (("pos-1", "canteen-1"), ("pos-2", "canteen-1"), ("till-1", "market"))}
    for n, card in enumerate(CARDS):
        await hub.account(f"s{n}", cash=3000 * n, card=card)
    await hub.request("PUT", "/v1/merchants/canteen-1/limits", {
        "max_amount": 1500, "max_card_day": 3000, "max_device_total": 6000, "max_offline_seconds": 1800},
        expect=200)
    await hub.post(f"/v1/cards/{CARDS[3]}/lost", expect=200)
    await hub.post("/v1/zones", {"zone": "dorm-1", "name": "一号楼", "anti_passback": True})
    gate = SimDevice("gate-1", "gate")
    await hub.post("/v1/devices", {"device_id": "gate-1", "kind": "gate", "public_key": gate.public_key,
                                   "zone": "dorm-1"})
    devices["gate-1"] = gate
    return devices


async def test_exposure_equals_a_fold_over_the_stored_events(hub: Hub) -> None:
    devices = await _campus(hub)
    rng = random.Random(14)
    start = datetime.now(CST) - timedelta(hours=1)
    for n in range(160):
        at = start + timedelta(seconds=7 * n + rng.randrange(5))
        name = rng.choice(["pos-1", "pos-2", "till-1", "gate-1"])
        device, card = devices[name], rng.choice([*CARDS, UNKNOWN])
        offline = rng.random() < 0.6
        decision = rng.choice(["approved", "approved", "declined"]) if offline else None
        if name == "gate-1":
            device.gate(card, rng.choice(["in", "out"]), at, offline=offline, decision=decision)
        elif rng.random() < 0.1 and device.last_seq:
            device.reversal(card, rng.randrange(1, device.last_seq + 1), at, offline=offline)
        else:
            amount = rng.choice([300, 800, 800, 1200, 2000])
            device.purchase(card, amount, at, offline=offline, decision=decision)
        if rng.random() < 0.15:
            await hub.send(device)
    for device in devices.values():
        await hub.send(device)
        assert not device.pending
    await hub.settle()
    answer = _same_instants(await hub.get("/v1/risk/exposure"))
    expected = expected_exposure(_stored(hub.database))
    for device in expected["devices"]:
        device["last_upload"] = datetime.fromisoformat(device["last_upload"])
    assert answer == expected
    # The day above is meant to exercise every kind of row.
    assert answer["negative_balances"]["accounts"] > 0
    assert {"overdraft", "hotlisted_card", "card_unknown", "offline_over_limit", "possible_duplicate"} <= {
        f["flag"] for f in answer["flagged"]}
    assert [d["device"] for d in answer["devices"]] == sorted(d["device"] for d in answer["devices"])
    assert await hub.get("/v1/risk/exposure", role="auditor") == await hub.get("/v1/risk/exposure")


async def test_an_empty_hub_has_no_exposure_and_only_admins_and_auditors_see_it(hub: Hub) -> None:
    await hub.settle()
    assert await hub.get("/v1/risk/exposure") == {
        "negative_balances": {"accounts": 0, "fen": 0}, "flagged": [], "devices": []}
    for role, scope in (("operator", None), ("manager", None), ("merchant", "canteen-1"), ("cardholder", "s1")):
        status, problem = await hub.request("GET", "/v1/risk/exposure", role=role, scope=scope)
        assert status == 403 and problem["code"] == "forbidden", role
    status, _ = await hub.request("GET", "/v1/risk/exposure", role=None)
    assert status == 401
    status, _ = await hub.request("GET", "/v1/risk/exposure?x=%00")
    assert status == 422
