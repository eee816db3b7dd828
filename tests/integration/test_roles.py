"""The roles of DESIGN §12: a warden (宿管) reads the access log and occupancy of its own zones and
adds rules to them, and nothing else; an operator's credit above ¥10,000 needs an admin."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from device_sim.device import SimDevice
from tests.conftest import Hub
from tests.integration.test_tokens import PLACEHOLDERS, token_routes

pytestmark = pytest.mark.timeout(120)
CST = timezone(timedelta(hours=8))
MON_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=CST)
RULE = {"group": "residents", "days": ["mon", "tue", "wed", "thu", "fri"], "from": "06:00", "to": "23:30"}


async def _two_dorms(hub: Hub) -> None:
    """dorm-1 and dorm-2, a gate each, one resident who goes into both."""
    await hub.account("s1", card="D0000001", groups=["residents"])
    for zone in ("dorm-1", "dorm-2"):
        await hub.post("/v1/zones", {"zone": zone, "name": zone, "anti_passback": True})
        await hub.post("/v1/access-rules", {"zone": zone, **RULE})
        gate = SimDevice(f"{zone}-gate", "gate")
        await hub.post("/v1/devices", {"device_id": gate.device_id, "kind": "gate", "public_key": gate.public_key,
                                       "zone": zone})
        gate.gate("D0000001", "in", MON_NOON)
        assert (await hub.send(gate))[0]["decision"] == "approved"
    await hub.settle()


async def test_a_warden_reads_the_access_log_and_occupancy_of_its_zones_only(hub: Hub) -> None:
    await _two_dorms(hub)
    warden = {"role": "warden", "scope": "dorm-1"}
    mine = await hub.get("/v1/access-log", **warden)
    assert [e["zone"] for e in mine["items"]] == ["dorm-1"]
    assert [e["zone"] for e in (await hub.get("/v1/access-log?zone=dorm-1", **warden))["items"]] == ["dorm-1"]
    assert (await hub.get("/v1/access-log?account=s1&card=D0000001", **warden))["items"] == mine["items"]
    await hub.request("GET", "/v1/access-log?zone=dorm-2", **warden, expect=403)
    assert (await hub.get("/v1/zones/dorm-1/occupancy", **warden))["count"] == 1
    await hub.request("GET", "/v1/zones/dorm-2/occupancy", **warden, expect=403)
    both = {"role": "warden", "scope": "dorm-1,dorm-2"}
    assert sorted(e["zone"] for e in (await hub.get("/v1/access-log", **both))["items"]) == ["dorm-1", "dorm-2"]
    assert (await hub.get("/v1/zones/dorm-2/occupancy", **both))["count"] == 1
    await hub.request("GET", "/v1/access-log?zone=dorm-10", **both, expect=403)  # a prefix is not a zone


async def test_a_warden_adds_rules_to_its_zones_and_may_do_nothing_else(hub: Hub) -> None:
    await _two_dorms(hub)
    warden = {"role": "warden", "scope": "dorm-1"}
    late = {**RULE, "group": "late-residents", "to": "24:00"}
    rule = await hub.post("/v1/access-rules", {"zone": "dorm-1", **late}, **warden)
    assert rule["zone"] == "dorm-1"
    await hub.request("POST", "/v1/access-rules", {"zone": "dorm-2", **late}, **warden, expect=403)
    await hub.request("POST", "/v1/access-rules", {"zone": "dorm-1,dorm-2", **late}, **warden, expect=422)
    allowed = {("GET", "/v1/access-log"), ("POST", "/v1/access-rules"),
               ("GET", f"/v1/zones/{PLACEHOLDERS['zone']}/occupancy")}
    for method, path in token_routes(hub):
        if (method, path) in allowed:
            continue
        status, body = await hub.request(method, path, {"zone": "dorm-1"} if method == "POST" else None, **warden)
        assert status == 403, (method, path, status, body)


async def test_an_operator_credit_above_10000_yuan_needs_an_admin(hub: Hub) -> None:
    await hub.account("s1")
    for kind in ("topups", "subsidies"):
        path = f"/v1/accounts/s1/{kind}"
        status, body = await hub.request("POST", path, {"amount": 1_000_001, "ref": f"{kind}-big"}, role="operator")
        assert status == 403 and body["code"] == "forbidden", body
        assert "1,000,000 fen" in body["detail"] and "admin" in body["detail"]
        await hub.post(path, {"amount": 1_000_000, "ref": f"{kind}-limit"}, role="operator")
        await hub.post(path, {"amount": 1_000_001, "ref": f"{kind}-big"}, role="admin")
        # the admin's credit, sent again by an operator, is still above the operator's limit
        await hub.request("POST", path, {"amount": 1_000_001, "ref": f"{kind}-big"}, role="operator", expect=403)
    assert (await hub.balance("s1"))["total"] == 2 * (1_000_000 + 1_000_001)
