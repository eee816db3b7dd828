"""Closing an account (销户, DESIGN §11) on the real PostgreSQL: its cards cancelled (and on the
hotlist), its cash paid out, its subsidy expired, once per ref; a closed account declines every
online swipe and takes no credit, refund or card; only a closed account is erased (§12)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from device_sim.device import SimDevice
from tests.conftest import Hub

pytestmark = pytest.mark.timeout(120)
NOON = datetime(2026, 11, 25, 12, 0, tzinfo=timezone(timedelta(hours=8)))
CARD, LOST_CARD = "C0FFEE01", "C0FFEE02"


async def _gate(hub: Hub) -> SimDevice:
    await hub.post("/v1/zones", {"zone": "dorm-3", "name": "三号楼"})
    await hub.post("/v1/access-rules", {"zone": "dorm-3", "group": "students", "days": ["mon", "tue", "wed", "thu",
                                        "fri", "sat", "sun"], "from": "00:00", "to": "24:00"})
    gate = SimDevice("gate-1", "gate")
    await hub.post("/v1/devices", {"device_id": "gate-1", "kind": "gate", "public_key": gate.public_key,
                                   "zone": "dorm-3"})
    return gate


async def test_closure_pays_out_expires_the_subsidy_and_cancels_every_card(hub: Hub) -> None:
    await hub.merchant()
    pos = await hub.pos()
    gate = await _gate(hub)
    await hub.account("s1", cash=1500, subsidy=700, card=LOST_CARD)
    await hub.post(f"/v1/cards/{LOST_CARD}/lost", expect=200)
    await hub.post("/v1/cards", {"card_uid": CARD, "account_id": "s1"})  # the lost card is cancelled (补卡)
    await hub.post("/v1/accounts/s1/subsidies", {"amount": 300, "ref": "later",
                                                 "expires_at": "2099-01-01T00:00:00+08:00"})
    await hub.settle()
    before = await hub.get("/v1/devices/pos-1/hotlist", role=None)
    closed = await hub.post("/v1/accounts/s1/close", {"ref": "close-1"})
    assert closed["account_id"] == "s1" and closed["closed_at"]
    assert (closed["payout"], closed["expired_subsidy"], closed["cards_blocked"]) == (1500, 1000, [CARD])
    assert await hub.post("/v1/accounts/s1/close", {"ref": "close-1"}, expect=200) == closed
    status, again = await hub.request("POST", "/v1/accounts/s1/close", {"ref": "close-2"})
    assert (status, again["code"]) == (409, "closed")

    assert await hub.balance("s1") == {"account_id": "s1", "cash": 0, "subsidy": 0, "total": 0}
    delta = await hub.get(f"/v1/devices/pos-1/hotlist?since={before['version']}", role=None)
    assert delta["added"] == [CARD]
    pos.purchase(CARD, 100, NOON)
    gate.gate(CARD, "in", NOON)
    pos.purchase(CARD, 200, NOON, offline=True, decision="approved")  # it happened: still debited
    purchase, offline = await hub.send(pos)
    [passage] = await hub.send(gate)
    assert (purchase["decision"], purchase["reason"]) == ("declined", "card_cancelled")
    assert (passage["decision"], passage["reason"]) == ("declined", "card_cancelled")
    assert offline["decision"] == "approved" and offline["balance"] == -200
    for path, body in [("/v1/accounts/s1/topups", {"amount": 100, "ref": "t"}),
                       ("/v1/accounts/s1/subsidies", {"amount": 100, "ref": "u"}),
                       ("/v1/accounts/s1/refunds", {"device": "pos-1", "seq": 2, "amount": 1, "reason": "x",
                                                    "ref": "v"}),
                       ("/v1/cards", {"card_uid": "C0FFEE03", "account_id": "s1"})]:
        status, problem = await hub.request("POST", path, body)
        assert (status, problem["code"]) == (409, "closed"), path
    items = (await hub.get("/v1/accounts/s1/transactions"))["items"]
    kinds = {i["kind"]: i["amount"] for i in items if i["kind"] in ("payout", "expiry")}
    assert kinds["payout"] == -1500 and sum(i["amount"] for i in items if i["kind"] == "expiry") == -1000


async def test_an_account_owing_money_is_not_closed_until_the_card_office_collects_it(hub: Hub) -> None:
    await hub.merchant()
    pos = await hub.pos()
    await hub.account("s1", cash=100, card=CARD)
    pos.purchase(CARD, 300, NOON, offline=True, decision="approved")
    await hub.send(pos)
    status, problem = await hub.request("POST", "/v1/accounts/s1/close", {"ref": "c"})
    assert (status, problem["code"]) == (409, "negative_balance") and "owes 200 fen" in problem["detail"]
    assert (await hub.post(f"/v1/cards/{CARD}/lost", expect=200))["status"] == "lost"  # was active: nothing written
    await hub.post("/v1/accounts/s1/topups", {"amount": 200, "ref": "collect"})
    assert (await hub.post("/v1/accounts/s1/close", {"ref": "c"}))["payout"] == 0


async def test_only_a_closed_account_is_erased_and_only_the_card_office_closes(hub: Hub) -> None:
    await hub.account("s1", cash=100, card=CARD)
    status, problem = await hub.request("POST", "/v1/accounts/s1/erase")
    assert (status, problem["code"]) == (409, "not_closed")
    for role, scope in [("auditor", None), ("cardholder", "s1"), ("manager", None)]:
        assert (await hub.request("POST", "/v1/accounts/s1/close", {"ref": "c"}, role=role, scope=scope))[0] == 403
    assert (await hub.request("POST", "/v1/accounts/nobody/close", {"ref": "c"}))[0] == 404
    assert (await hub.request("POST", "/v1/accounts/s1/close", {"ref": "c\u0000"}))[0] == 422
    await hub.post("/v1/accounts/s1/close", {"ref": "c"}, role="operator")
    erased = await hub.post("/v1/accounts/s1/erase", expect=200)
    assert erased["erased"] is True
