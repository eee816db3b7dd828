"""Subsidy grants that expire (DESIGN §11) on the real PostgreSQL, with the hub's clock injected:
spent first-to-expire first; expired at ``expires_at`` exactly (in the hub's time zone), by the
first command or swipe at or after it, or by the hub's clock (the background pass, driven here
directly); subsidy given back into an expired grant expires again at once."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from device_sim.device import SimDevice
from hub.ingest import expiry
from hub.service.typedefs import POOL, SEAT
from tests.conftest import Hub

pytestmark = pytest.mark.timeout(120)
SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=SHANGHAI)
DEC15 = datetime(2026, 12, 15, 0, 0, tzinfo=SHANGHAI)
DEC31 = datetime(2026, 12, 31, 0, 0, tzinfo=SHANGHAI)
CARD = "C0FFEE01"


class Clock:
    """The hub's clock, set by the test (the writer's application reads it at every decision)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def clock(hub: Hub) -> Clock:
    clock = Clock(T0)
    hub.app[SEAT].active().application.clock = clock
    await hub.merchant()
    await hub.account("s1", card=CARD)
    return clock


async def _grant(hub: Hub, amount: int, ref: str, expires_at: datetime | None, expect: int = 201) -> Any:
    body: dict[str, Any] = {"amount": amount, "ref": ref}
    if expires_at is not None:
        body["expires_at"] = expires_at.isoformat()
    return (await hub.request("POST", "/v1/accounts/s1/subsidies", body, expect=expect))[1]


async def _buy(hub: Hub, pos: SimDevice, amount: int, at: datetime) -> dict[str, Any]:
    pos.purchase(CARD, amount, at)
    [result] = await hub.send(pos)
    return result


async def _expiries(hub: Hub) -> list[tuple[str, int]]:
    await hub.settle()
    items = (await hub.get("/v1/accounts/s1/transactions"))["items"]
    return [(i["ref"], i["amount"]) for i in reversed(items) if i["kind"] == "expiry"]


async def test_purchases_spend_the_grant_that_expires_first_and_what_is_left_expires(hub: Hub, clock: Clock) -> None:
    pos = await hub.pos()
    await _grant(hub, 300, "forever", None)
    await _grant(hub, 500, "dec31", DEC31)
    await _grant(hub, 500, "dec15", DEC15)
    assert (await _buy(hub, pos, 600, T0))["balance"] == 700  # dec15's 500, then 100 of dec31
    clock.now = DEC15
    await hub.post("/v1/accounts/s1/topups", {"amount": 100, "ref": "t1"})  # a command: dec15 expires (0 left)
    clock.now = DEC31 + timedelta(hours=1)
    assert (await _buy(hub, pos, 50, clock.now))["balance"] == 350  # dec31's 400 expired before deciding
    assert await _expiries(hub) == [("dec31", -400)]
    assert await hub.balance("s1") == {"account_id": "s1", "cash": 100, "subsidy": 250, "total": 350}


async def test_a_grant_has_expired_at_its_instant_exactly_and_not_a_microsecond_before(hub: Hub, clock: Clock) -> None:
    pos = await hub.pos()
    await _grant(hub, 500, "dec15", DEC15)
    await hub.post("/v1/accounts/s1/topups", {"amount": 1000, "ref": "t1"})
    clock.now = (DEC15 - timedelta(microseconds=1)).astimezone(ZoneInfo("UTC"))
    assert (await _buy(hub, pos, 100, clock.now))["balance"] == 1400
    assert (await hub.balance("s1"))["subsidy"] == 400
    clock.now = DEC15.astimezone(ZoneInfo("UTC"))
    assert (await _buy(hub, pos, 100, clock.now))["balance"] == 900  # the 400 expired, then cash
    assert await _expiries(hub) == [("dec15", -400)]
    assert await hub.balance("s1") == {"account_id": "s1", "cash": 900, "subsidy": 0, "total": 900}


async def test_the_hubs_clock_expires_grants_of_accounts_nobody_touches(hub: Hub, clock: Clock) -> None:
    await hub.account("s2")
    await _grant(hub, 500, "dec15", DEC15)
    await hub.post("/v1/accounts/s2/subsidies", {"amount": 200, "ref": "s2-dec15", "expires_at": DEC15.isoformat()})
    await hub.post("/v1/accounts/s2/subsidies", {"amount": 70, "ref": "s2-later", "expires_at": DEC31.isoformat()})
    await hub.settle()
    app, pool, writer = hub.app[SEAT].active().application, hub.app[POOL], hub.app[SEAT].active().writer
    clock.now = DEC15 - timedelta(microseconds=1)
    assert await expiry.expire_due(pool, writer, app) == 0
    clock.now = DEC15 + timedelta(seconds=30)
    assert await expiry.expire_due(pool, writer, app) == 2
    await hub.settle()
    assert await expiry.expire_due(pool, writer, app) == 0  # the view no longer has them
    assert (await hub.balance("s1"))["subsidy"] == 0 and (await hub.balance("s2"))["subsidy"] == 70


async def test_subsidy_given_back_into_an_expired_grant_expires_again(hub: Hub, clock: Clock) -> None:
    pos = await hub.pos()
    await _grant(hub, 500, "dec15", DEC15)
    await hub.post("/v1/accounts/s1/topups", {"amount": 1000, "ref": "t1"})
    await _buy(hub, pos, 400, T0)  # seq 1: 400 subsidy
    await _buy(hub, pos, 200, T0)  # seq 2: 100 subsidy + 100 cash
    clock.now = DEC15
    refund = await hub.post("/v1/accounts/s1/refunds", {"device": "pos-1", "seq": 1, "amount": 400,
                                                       "reason": "refund", "ref": "r1"})
    assert (refund["subsidy"], refund["cash"], refund["balance"]) == (400, 0, 900)  # and expired again
    pos.reversal(CARD, 2, DEC15)
    [reversal] = await hub.send(pos)
    assert reversal["balance"] == 1000
    assert await _expiries(hub) == [("dec15", -400), ("dec15", -100)]  # (its expiry at 0 fen has no row)
    assert await hub.balance("s1") == {"account_id": "s1", "cash": 1000, "subsidy": 0, "total": 1000}


async def test_an_expiry_in_the_past_or_out_of_range_is_refused_and_a_ref_keeps_its_expiry(hub: Hub, clock: Clock) -> None:
    for bad in (T0 - timedelta(seconds=1), T0, "2100-01-01T00:00:00+00:00", "2026-12-31T00:00:00", "tomorrow"):
        text = bad.isoformat() if isinstance(bad, datetime) else bad
        status, problem = await hub.request("POST", "/v1/accounts/s1/subsidies",
                                            {"amount": 5, "ref": "x", "expires_at": text})
        assert (status, problem["field"]) == (422, "expires_at"), (bad, problem)
    status, _ = await hub.request("POST", "/v1/accounts/s1/topups", {"amount": 5, "ref": "x",
                                                                      "expires_at": DEC15.isoformat()})
    assert status == 422  # only a subsidy expires
    await _grant(hub, 500, "dec15", DEC15)
    await _grant(hub, 500, "dec15", DEC15.astimezone(ZoneInfo("UTC")), expect=200)  # the same instant
    for other in [(500, DEC31), (500, None), (400, DEC15)]:
        problem = await _grant(hub, other[0], "dec15", other[1], expect=409)
        assert problem["field"] == "ref", other
    clock.now = DEC31
    await _grant(hub, 500, "dec15", DEC15, expect=200)  # a retry after it expired is the same credit
    assert (await hub.balance("s1"))["subsidy"] == 0
