"""Refunds of purchases (DESIGN §11) on the real PostgreSQL: all or part of an approved purchase
of the account, never more than remains, back to the wallets in the purchase's proportions,
idempotent by ref, netted in the settlement and statistics of the purchase's day and hour."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from device_sim.device import SimDevice
from tests.conftest import Hub

pytestmark = pytest.mark.timeout(120)
NOON = datetime(2026, 11, 25, 12, 0, tzinfo=timezone(timedelta(hours=8)))
CARD = "C0FFEE01"


async def _bought(hub: Hub, amount: int = 1000, *, cash: int = 300, subsidy: int = 700) -> SimDevice:
    """s1 with ``cash`` and ``subsidy``, and one approved purchase of ``amount`` at seq 1 of pos-1."""
    await hub.merchant()
    pos = await hub.pos()
    await hub.account("s1", cash=cash, subsidy=subsidy, card=CARD)
    pos.purchase(CARD, amount, NOON)
    [result] = await hub.send(pos)
    assert result["decision"] == "approved"
    return pos


def _refund(amount: int, ref: str, seq: int = 1, device: str = "pos-1") -> dict[str, Any]:
    return {"device": device, "seq": seq, "amount": amount, "reason": "菜品质量问题 wrong dish", "ref": ref}


async def test_partial_refunds_split_in_the_purchases_proportions_and_never_exceed_it(hub: Hub) -> None:
    await _bought(hub)  # 1000 = 700 subsidy + 300 cash
    first = await hub.post("/v1/accounts/s1/refunds", _refund(333, "r-1"))
    assert first == {"account_id": "s1", "device": "pos-1", "seq": 1, "amount": 333, "subsidy": 233, "cash": 100,
                     "remaining": 667, "ref": "r-1", "reason": "菜品质量问题 wrong dish", "balance": 333}
    status, over = await hub.request("POST", "/v1/accounts/s1/refunds", _refund(668, "r-2"))
    assert (status, over["code"]) == (409, "over_remaining") and "667 fen" in over["detail"]
    second = await hub.post("/v1/accounts/s1/refunds", _refund(667, "r-2"))
    assert (second["subsidy"], second["cash"], second["remaining"]) == (467, 200, 0)  # exactly what was taken
    assert await hub.balance("s1") == {"account_id": "s1", "cash": 300, "subsidy": 700, "total": 1000}
    status, none_left = await hub.request("POST", "/v1/accounts/s1/refunds", _refund(1, "r-3"))
    assert (status, none_left["code"]) == (409, "over_remaining")


async def test_the_same_ref_answers_the_same_and_another_body_under_it_is_a_conflict(hub: Hub) -> None:
    await _bought(hub)
    first = await hub.post("/v1/accounts/s1/refunds", _refund(1000, "r-1"))
    assert first["remaining"] == 0 and first["balance"] == 1000
    assert await hub.post("/v1/accounts/s1/refunds", _refund(1000, "r-1"), expect=200) == first
    for other in (_refund(999, "r-1"), _refund(1000, "r-1", seq=2)):
        status, problem = await hub.request("POST", "/v1/accounts/s1/refunds", other)
        assert (status, problem["field"]) == (409, "ref"), problem
    assert (await hub.balance("s1"))["total"] == 1000


async def test_only_an_approved_purchase_of_that_account_is_refunded(hub: Hub) -> None:
    pos = await _bought(hub, cash=1000, subsidy=0)
    await hub.account("s2", cash=100, card="C0FFEE02")
    pos.purchase("C0FFEE02", 5000, NOON)  # seq 2: declined insufficient_funds
    pos.reversal(CARD, 1, NOON + timedelta(minutes=1))  # seq 3
    await hub.send(pos)
    cases = [("s2", _refund(10, "a"), 404, "not_found"),  # s1's purchase, asked of s2
             ("s1", _refund(10, "b", seq=9), 404, "not_found"),
             ("s1", _refund(10, "c", device="pos-9"), 404, "not_found"),
             ("s2", _refund(10, "d", seq=2), 409, "not_refundable"),
             ("s1", _refund(10, "e", seq=3), 409, "not_refundable"),
             ("s1", _refund(10, "f", seq=1), 409, "over_remaining"),  # reversed: nothing remains
             ("nobody", _refund(10, "g"), 404, "not_found")]
    for account, body, status, code in cases:
        got, problem = await hub.request("POST", f"/v1/accounts/{account}/refunds", body)
        assert (got, problem["code"]) == (status, code), (account, body, problem)
    assert (await hub.balance("s1"))["total"] == 1000 and (await hub.balance("s2"))["total"] == 100


async def test_a_reversal_after_a_partial_refund_gives_back_only_the_rest(hub: Hub) -> None:
    pos = await _bought(hub)
    await hub.post("/v1/accounts/s1/refunds", _refund(333, "r-1"))
    pos.reversal(CARD, 1, NOON + timedelta(minutes=2))
    [reversal] = await hub.send(pos)
    assert reversal["decision"] == "approved" and reversal["balance"] == 1000
    assert await hub.balance("s1") == {"account_id": "s1", "cash": 300, "subsidy": 700, "total": 1000}
    status, problem = await hub.request("POST", "/v1/accounts/s1/refunds", _refund(1, "r-2"))
    assert (status, problem["code"]) == (409, "over_remaining")


async def test_a_wholly_refunded_purchase_cannot_be_reversed(hub: Hub) -> None:
    pos = await _bought(hub)
    await hub.post("/v1/accounts/s1/refunds", _refund(1000, "r-1"))
    pos.reversal(CARD, 1, NOON + timedelta(minutes=2))
    [reversal] = await hub.send(pos)
    assert (reversal["decision"], reversal["reason"]) == ("declined", "reversal_invalid")


async def test_an_operator_refunds_at_most_10000_yuan_and_other_roles_none(hub: Hub) -> None:
    await _bought(hub, 2_000_000, cash=2_000_000, subsidy=0)
    status, _ = await hub.request("POST", "/v1/accounts/s1/refunds", _refund(1_000_001, "big"), role="operator")
    assert status == 403
    await hub.post("/v1/accounts/s1/refunds", _refund(1_000_000, "ok"), role="operator")
    for role, scope in [("auditor", None), ("cardholder", "s1"), ("merchant", "canteen-1"), ("manager", None)]:
        got, _ = await hub.request("POST", "/v1/accounts/s1/refunds", _refund(1, f"x-{role}"), role=role, scope=scope)
        assert got == 403, role
    for bad in ({**_refund(1, "y"), "reason": ""}, {**_refund(1, "y"), "reason": "a\u202eb"},
                {**_refund(1, "y"), "seq": 2**63}, {**_refund(1, "y"), "amount": 0}, {**_refund(1, "y"), "extra": 1},
                {**_refund(1, "y"), "device": "pos-1\n"}, {**_refund(1, "y"), "reason": "x" * 201}):
        got, problem = await hub.request("POST", "/v1/accounts/s1/refunds", bad)
        assert got == 422, (bad, problem)


async def test_settlement_and_statistics_of_the_purchases_day_and_hour_are_net_of_refunds(hub: Hub) -> None:
    pos = await _bought(hub, cash=5000, subsidy=0)
    second = pos.purchase(CARD, 400, NOON + timedelta(minutes=5))  # seq 2
    await hub.send(pos)
    await hub.post("/v1/accounts/s1/refunds", _refund(250, "part"))  # of seq 1: 750 of it stays
    await hub.post("/v1/accounts/s1/refunds", _refund(400, "all", seq=2))  # seq 2 wholly refunded
    await hub.settle()
    day = await hub.get("/v1/merchants/canteen-1/settlement?date=2026-11-25")
    assert day["purchases"] == {"count": 2, "amount": 1400} and day["refunds"] == {"count": 2, "amount": 650}
    assert day["net"] == 750 and day["devices"][0]["net"] == 750
    assert (await hub.get("/v1/merchants/canteen-1/settlement?date=2026-11-26"))["net"] == 0
    window = "from=2026-11-25T00:00:00%2B08:00&to=2026-11-26T00:00:00%2B08:00"
    by_hour = await hub.get(f"/v1/stats/consumption?{window}&by=hour")
    assert by_hour["total"] == {"count": 1, "amount": 750, "cards": 1}
    edge = await hub.get("/v1/stats/consumption?from=2026-11-25T12:03:00%2B08:00&to=2026-11-25T13:00:00%2B08:00"
                         "&by=merchant")
    assert edge["total"] == {"count": 0, "amount": 0, "cards": 0}  # seq 2 at 12:05 is wholly refunded
    items = (await hub.get("/v1/accounts/s1/transactions"))["items"]
    refund = next(i for i in items if i["kind"] == "refund" and i["ref"] == "all")
    assert refund["amount"] == 400 and refund["seq"] == 2 and refund["at"] == second["at"]
    assert refund["flags"] == ["whole"] and refund["merchant_id"] == "canteen-1"
