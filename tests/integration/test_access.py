"""Gates (DESIGN §3): zones, rules, online decisions, anti-passback, offline gates deciding
from the signed rules, the access log and occupancy."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from device_sim.device import SimDevice
from domain.wire import RULES_PREFIX, public_key_from_b64, verify_document
from tests.conftest import Hub

pytestmark = pytest.mark.timeout(120)
CST = timezone(timedelta(hours=8))
MON_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=CST)  # a Monday in Shanghai


async def _gate(hub: Hub, device_id: str, zone: str) -> SimDevice:
    device = SimDevice(device_id, "gate")
    await hub.post("/v1/devices", {"device_id": device_id, "kind": "gate", "public_key": device.public_key,
                                   "zone": zone, "location": "一号楼 东门"})
    return device


async def _campus(hub: Hub, *, anti_passback: bool = True) -> tuple[SimDevice, SimDevice]:
    await hub.post("/v1/zones", {"zone": "dorm-1", "name": "一号宿舍楼", "anti_passback": anti_passback})
    await hub.post("/v1/access-rules", {"zone": "dorm-1", "group": "dorm-1-residents",
                                        "days": ["mon", "tue", "wed", "thu", "fri"], "from": "06:00", "to": "23:30"})
    await hub.account("resident", card="D0000001", groups=["students", "dorm-1-residents"])
    await hub.account("outsider", card="D0000002", groups=["students"])
    return await _gate(hub, "gate-east", "dorm-1"), await _gate(hub, "gate-west", "dorm-1")


async def _swipe(hub: Hub, gate: SimDevice, card: str, direction: str, at: datetime, **kw: Any) -> dict[str, Any]:
    gate.gate(card, direction, at, **kw)
    return (await hub.send(gate))[-1]


async def test_online_decisions(hub: Hub) -> None:
    east, _ = await _campus(hub, anti_passback=False)
    assert (await _swipe(hub, east, "D0000001", "in", MON_NOON))["decision"] == "approved"
    declined = await _swipe(hub, east, "D0000002", "in", MON_NOON)
    assert (declined["decision"], declined["reason"]) == ("declined", "no_access")
    late = await _swipe(hub, east, "D0000001", "in", MON_NOON.replace(hour=23, minute=30))
    assert late["reason"] == "outside_schedule"
    saturday = await _swipe(hub, east, "D0000001", "in", MON_NOON + timedelta(days=5))
    assert saturday["reason"] == "outside_schedule"
    assert (await _swipe(hub, east, "0000FFFF", "in", MON_NOON))["reason"] == "card_unknown"
    await hub.post("/v1/cards/D0000001/lost", expect=200)
    assert (await _swipe(hub, east, "D0000001", "in", MON_NOON))["reason"] == "card_lost"
    await hub.post("/v1/cards", {"card_uid": "D0000003", "account_id": "resident"})
    assert (await _swipe(hub, east, "D0000001", "in", MON_NOON))["reason"] == "card_cancelled"
    assert (await _swipe(hub, east, "D0000003", "in", MON_NOON))["decision"] == "approved"


async def test_visitor_outside_validity_is_declined_card_expired(hub: Hub) -> None:
    east, _ = await _campus(hub)
    await hub.account("guest", card="D00000AA", category="visitor", groups=["dorm-1-residents"],
                      valid_from="2026-11-23T09:00:00+08:00", valid_until="2026-11-23T18:00:00+08:00")
    assert (await _swipe(hub, east, "D00000AA", "in", MON_NOON))["decision"] == "approved"
    assert (await _swipe(hub, east, "D00000AA", "out", MON_NOON.replace(hour=18)))["reason"] == "card_expired"


async def test_anti_passback_across_two_gates_of_a_zone_and_occupancy(hub: Hub) -> None:
    east, west = await _campus(hub)
    assert (await _swipe(hub, east, "D0000001", "in", MON_NOON))["decision"] == "approved"
    again = await _swipe(hub, west, "D0000001", "in", MON_NOON + timedelta(minutes=1))
    assert (again["decision"], again["reason"]) == ("declined", "anti_passback")
    await hub.settle()
    occupancy = await hub.get("/v1/zones/dorm-1/occupancy", role="operator")
    assert occupancy["count"] == 1 and occupancy["inside"][0]["account_id"] == "resident"
    assert (await _swipe(hub, west, "D0000001", "out", MON_NOON + timedelta(minutes=2)))["decision"] == "approved"
    assert (await _swipe(hub, east, "D0000001", "in", MON_NOON + timedelta(minutes=3)))["decision"] == "approved"
    await hub.settle()
    assert (await hub.get("/v1/zones/dorm-1/occupancy", role="auditor"))["count"] == 1
    assert (await hub.request("GET", "/v1/zones/dorm-1/occupancy", role="manager"))[0] == 403


async def test_signed_rules_for_offline_gates_and_304(hub: Hub) -> None:
    east, _ = await _campus(hub)
    await hub.settle()
    rules = await hub.get("/v1/devices/gate-east/rules", role=None)
    key = public_key_from_b64((await hub.get("/v1/hub/key", role=None))["public_key"])
    assert verify_document(RULES_PREFIX, rules, key)
    assert rules["zone"] == "dorm-1" and rules["anti_passback"] is True and rules["time_zone"] == "Asia/Shanghai"
    assert rules["rules"] == [{"rule_id": "dorm-1-1", "group": "dorm-1-residents",
                               "days": ["mon", "tue", "wed", "thu", "fri"], "from": "06:00", "to": "23:30"}]
    resp = await hub.client.get(f"/v1/devices/gate-east/rules?since={rules['version']}")
    assert resp.status == 304
    await hub.post("/v1/cards/D0000002/lost", expect=200)  # a hotlist change is a change for gates too
    await hub.settle()
    newer = await hub.get(f"/v1/devices/gate-east/rules?since={rules['version']}", role=None)
    assert newer["version"] > rules["version"] and newer["hotlist_version"] == newer["version"]
    assert (await hub.request("GET", "/v1/devices/pos-nope/rules", role=None))[0] == 404
    assert (await hub.request("GET", "/v1/devices/gate-east/rules?since=x", role=None))[0] == 422


async def test_rule_added_while_a_gate_is_offline_and_its_flagged_upload(hub: Hub) -> None:
    east, _ = await _campus(hub)
    await hub.post("/v1/zones", {"zone": "library", "name": "图书馆", "anti_passback": False})
    library = await _gate(hub, "lib-1", "library")
    # offline: the gate admits the outsider by its stale rules; meanwhile the library opens to students
    library.gate("D0000002", "in", MON_NOON, offline=True, decision="approved")
    library.gate("D0000001", "in", MON_NOON, offline=True, decision="approved")
    await hub.post("/v1/access-rules", {"zone": "library", "group": "students", "days": ["mon"],
                                        "from": "08:00", "to": "22:00"})
    library.gate("D0000002", "in", MON_NOON.replace(hour=23), offline=True, decision="approved")
    results = await hub.send(library)
    assert [r["decision"] for r in results] == ["approved"] * 3  # offline events echo the device
    # online, the new rule applies at once
    assert (await _swipe(hub, library, "D0000002", "in", MON_NOON))["decision"] == "approved"
    await hub.settle()
    log = await hub.get("/v1/access-log?zone=library", role="auditor")
    flags = {(i["seq"], i["card"]): i["flags"] for i in log["items"]}
    assert flags[(1, "D0000002")] == [] and flags[(2, "D0000001")] == []  # the rule was in force when uploaded
    assert flags[(3, "D0000002")] == ["would_decline:outside_schedule"]
    assert [i["seq"] for i in log["items"]] == [4, 3, 2, 1] and log["items"][1]["offline"] is True


async def test_access_log_filters_and_lost_card_at_every_gate(hub: Hub) -> None:
    east, west = await _campus(hub, anti_passback=False)
    await _swipe(hub, east, "D0000001", "in", MON_NOON)
    await _swipe(hub, west, "D0000002", "in", MON_NOON + timedelta(minutes=5))
    await hub.post("/v1/cards/D0000001/lost", expect=200)  # the writer decides on the card: no lag
    assert (await _swipe(hub, west, "D0000001", "in", MON_NOON + timedelta(minutes=6)))["reason"] == "card_lost"
    assert (await _swipe(hub, east, "D0000001", "out", MON_NOON + timedelta(minutes=6)))["reason"] == "card_lost"
    await hub.settle()
    everything = await hub.get("/v1/access-log", role="admin")
    assert len(everything["items"]) == 4 and everything["items"][0]["reason"] == "card_lost"
    mine = await hub.get("/v1/access-log?account=resident", role="operator")
    assert {i["card"] for i in mine["items"]} == {"D0000001"} and len(mine["items"]) == 3
    window = await hub.get("/v1/access-log?from=2026-11-23T12:01:00%2B08:00&to=2026-11-23T12:06:00%2B08:00",
                           role="auditor")
    assert [i["card"] for i in window["items"]] == ["D0000002"]
    by_card = await hub.get("/v1/access-log?card=D0000002&limit=1", role="auditor")
    assert by_card["items"][0]["decision"] == "declined" and by_card["next"] is None
    for role, scope in (("cardholder", "resident"), ("merchant", "canteen-1"), ("manager", None)):
        assert (await hub.request("GET", "/v1/access-log", role=role, scope=scope))[0] == 403


async def test_zone_and_rule_inputs(hub: Hub) -> None:
    await hub.post("/v1/zones", {"zone": "z1", "name": "一号", "anti_passback": False})
    assert (await hub.request("POST", "/v1/zones", {"zone": "z1", "name": "again"}))[0] == 409
    rule = {"zone": "z1", "group": "g", "days": ["mon"], "from": "22:00", "to": "06:00"}
    created = await hub.post("/v1/access-rules", rule)
    assert created["rule_id"] == "z1-1"
    assert (await hub.request("POST", "/v1/access-rules", rule))[0] == 409
    status, problem = await hub.request("POST", "/v1/access-rules", {**rule, "zone": "nowhere"})
    assert status == 404
    for bad, field in (({"from": "6:00"}, "from"), ({"days": ["monday"]}, "days"), ({"to": "22:00"}, "to"),
                       ({"days": []}, "days")):
        status, problem = await hub.request("POST", "/v1/access-rules", {**rule, **bad})
        assert status in (400, 422) and field in problem["detail"], (bad, problem)
    assert (await hub.request("POST", "/v1/zones", {"zone": "z2", "name": "x"}, role="auditor"))[0] == 403
    device = SimDevice("gate-x", "gate")
    status, _ = await hub.request("POST", "/v1/devices", {"device_id": "gate-x", "kind": "gate",
                                                          "public_key": device.public_key, "zone": "nowhere"})
    assert status == 404
