"""Offline limits over HTTP on the real PostgreSQL (DESIGN §11): set by an admin, signed for
devices, ``over_limit`` online, ``offline_over_limit`` and ``possible_duplicate`` on uploads, and
all of it kept across a restart of the hub."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from device_sim.device import SimDevice
from domain.wire import LIMITS_PREFIX, public_key_from_b64, verify_document
from hub.storage.store import Database
from tests.conftest import Hub, start_hub

pytestmark = pytest.mark.timeout(120)
CST = timezone(timedelta(hours=8))
CARD, OTHER = "ABCDEF01", "ABCDEF02"
LIMITS = {"max_amount": 2000, "max_card_day": 5000, "max_device_total": 10_000, "max_offline_seconds": 3600}


def now_cst() -> datetime:
    """Swipes dated just before the hub's clock, so that no ``clock_skew`` mixes in."""
    return datetime.now(CST) - timedelta(minutes=2)


def offline_start(back: timedelta, lasting: timedelta = timedelta(hours=1, minutes=1)) -> datetime:
    """The first of a run of offline swipes ``back`` before now that lasts ``lasting``: all of it in
    one local day, or a card's day would split at midnight (then the run ends before the day began:
    offline swipes of the past are never skewed)."""
    start = now_cst() - back
    midnight = datetime.combine(datetime.now(CST).date(), time(0), tzinfo=CST)
    if start < midnight <= start + lasting:
        start = midnight - timedelta(minutes=1) - lasting
    return start


@pytest.fixture
async def pos(hub: Hub) -> SimDevice:
    await hub.merchant()
    device = await hub.pos()
    await hub.account("s1", cash=100_000, card=CARD)
    await hub.account("s2", cash=100_000, card=OTHER)
    return device


async def put_limits(hub: Hub, body: Any, *, merchant: str = "canteen-1", role: str = "admin",
                     expect: int = 200) -> Any:
    return (await hub.request("PUT", f"/v1/merchants/{merchant}/limits", body, role=role, expect=expect))[1]


async def flags_of(hub: Hub, account: str) -> dict[int, list[str]]:
    """Each purchase's flags by seq, from the account's transactions."""
    await hub.settle()
    page = await hub.get(f"/v1/accounts/{account}/transactions")
    return {t["seq"]: t["flags"] for t in page["items"] if t["kind"] == "purchase"}


async def test_limits_are_set_by_an_admin_and_signed_for_its_devices(hub: Hub, pos: SimDevice) -> None:
    await hub.settle()
    before = await hub.get("/v1/devices/pos-1/limits", role=None)
    assert {k: before[k] for k in ("max_amount", "max_card_day", "max_device_total", "max_offline_seconds",
                                   "version")} == {**dict.fromkeys(LIMITS), "version": 0}
    assert await put_limits(hub, LIMITS) == {"merchant_id": "canteen-1", **LIMITS, "version": 1}
    assert (await put_limits(hub, {**LIMITS, "max_amount": 3000}))["version"] == 2
    await hub.settle()
    signed = await hub.get("/v1/devices/pos-1/limits", role=None)
    assert set(signed) == {"device", "merchant_id", *LIMITS, "version", "issued_at", "sig"}
    assert signed["device"] == "pos-1" and signed["merchant_id"] == "canteen-1"
    assert signed["max_amount"] == 3000 and signed["version"] == 2
    key = public_key_from_b64((await hub.get("/v1/hub/key", role=None))["public_key"])
    assert verify_document(LIMITS_PREFIX, signed, key) and verify_document(LIMITS_PREFIX, before, key)
    assert not verify_document(LIMITS_PREFIX, {**signed, "max_amount": 30_000}, key)


async def test_only_an_admin_sets_limits_and_only_a_pos_device_has_them(hub: Hub, pos: SimDevice) -> None:
    await put_limits(hub, LIMITS, role="operator", expect=403)
    await put_limits(hub, LIMITS, role="auditor", expect=403)
    status, _ = await hub.request("PUT", "/v1/merchants/canteen-1/limits", LIMITS, role=None)
    assert status == 401
    problem = await put_limits(hub, LIMITS, merchant="nobody", expect=404)
    assert problem["code"] == "not_found"
    await hub.post("/v1/zones", {"zone": "dorm-1", "name": "一号楼", "anti_passback": False})
    gate = SimDevice("gate-1", "gate")
    await hub.post("/v1/devices", {"device_id": "gate-1", "kind": "gate", "public_key": gate.public_key,
                                   "zone": "dorm-1"})
    await hub.settle()
    for device in ("gate-1", "nobody", "pos-1%00", "pos-1%0A"):
        status, problem = await hub.request("GET", f"/v1/devices/{device}/limits", role=None)
        assert status == 404 and problem["status"] == 404, device


@pytest.mark.parametrize(("body", "field"), [
    ({**LIMITS, "max_amount": 0}, "max_amount"),
    ({**LIMITS, "max_amount": 10_000_001}, "max_amount"),
    ({**LIMITS, "max_card_day": 2**63}, "max_card_day"),
    ({**LIMITS, "max_device_total": 100_000_001}, "max_device_total"),
    ({**LIMITS, "max_offline_seconds": 2_592_001}, "max_offline_seconds"),
    ({**LIMITS, "max_offline_seconds": 60.5}, "max_offline_seconds"),
    ({**LIMITS, "max_amount": "2000"}, "max_amount"),
    ({k: v for k, v in LIMITS.items() if k != "max_card_day"}, "max_card_day"),
    ({**LIMITS, "extra": 1}, "extra"),
])
async def test_a_bad_body_is_422_naming_the_field_and_writes_nothing(hub: Hub, pos: SimDevice, body: Any,
                                                                     field: str) -> None:
    await hub.settle()
    problem = await put_limits(hub, body, expect=422)
    assert problem["field"] == field, problem
    await hub.settle()
    assert (await hub.get("/v1/devices/pos-1/limits", role=None))["version"] == 0


async def test_nul_and_huge_ids_never_answer_5xx(hub: Hub, pos: SimDevice) -> None:
    for merchant in ("canteen-1%00", "canteen-1%0A", "x" * 65, "%E2%80%AE"):
        status, _ = await hub.request("PUT", f"/v1/merchants/{merchant}/limits", LIMITS)
        assert status in (404, 422), merchant
    resp = await hub.client.put("/v1/merchants/canteen-1/limits", data=b'{"max_amount": 1\x00}',
                                headers={**hub.auth(), "Content-Type": "application/json"})
    assert resp.status in (400, 422)
    resp = await hub.client.put("/v1/merchants/canteen-1/limits",
                                data=b'{"max_amount": 9223372036854775808000, "max_card_day": 1,'
                                     b' "max_device_total": 1, "max_offline_seconds": 1}',
                                headers={**hub.auth(), "Content-Type": "application/json"})
    assert resp.status in (400, 422)


async def test_online_over_max_amount_is_declined_over_limit_and_equal_is_approved(hub: Hub, pos: SimDevice) -> None:
    await put_limits(hub, LIMITS)
    at = now_cst()
    pos.purchase(CARD, 2001, at)
    pos.purchase(CARD, 2000, at + timedelta(seconds=30))
    over, equal = await hub.send(pos)
    assert over == {"seq": 1, "status": "accepted", "decision": "declined", "reason": "over_limit",
                    "balance": 100_000}
    assert equal["decision"] == "approved" and equal["balance"] == 98_000
    assert (await hub.balance("s1"))["total"] == 98_000


@pytest.mark.parametrize("case", ["amount", "card_day", "device_total", "offline_seconds"])
async def test_offline_beyond_each_limit_is_accepted_approved_debited_and_flagged(
        hub: Hub, pos: SimDevice, case: str) -> None:
    await put_limits(hub, LIMITS)
    start = offline_start(timedelta(hours=2))
    amounts: list[tuple[str, int, datetime]] = []
    if case == "amount":
        amounts = [(CARD, 2001, start)]
    elif case == "card_day":
        amounts = [(CARD, 1000, start + timedelta(minutes=n)) for n in range(6)]
    elif case == "device_total":
        amounts = [((CARD, OTHER)[n % 2], 1000, start + timedelta(minutes=n)) for n in range(11)]
    else:
        amounts = [(CARD, 100, start), (OTHER, 101, start + timedelta(seconds=3600)),
                   (OTHER, 102, start + timedelta(seconds=3601))]
    for card, amount, at in amounts:
        pos.purchase(card, amount, at, offline=True, decision="approved")
    results = await hub.send(pos)
    assert all(r["status"] == "accepted" and r["decision"] == "approved" for r in results)
    flagged = {**await flags_of(hub, "s1"), **await flags_of(hub, "s2")}
    last = len(amounts)
    assert flagged.pop(last) == ["offline_over_limit"]
    assert not any(flagged.values())
    spent = sum(amount for _, amount, _ in amounts)
    totals = [(await hub.balance(a))["total"] for a in ("s1", "s2")]
    assert sum(totals) == 200_000 - spent


async def test_offline_under_every_limit_is_not_flagged(hub: Hub, pos: SimDevice) -> None:
    await put_limits(hub, LIMITS)
    start = offline_start(timedelta(minutes=30))
    for n in range(5):
        pos.purchase(CARD, 1000 - n, start + timedelta(minutes=n), offline=True, decision="approved")
    assert all(r["decision"] == "approved" for r in await hub.send(pos))
    assert await flags_of(hub, "s1") == dict.fromkeys(range(1, 6), [])


async def test_a_backlog_in_two_uploads_is_one_period(hub: Hub, pos: SimDevice) -> None:
    """Eleven offline purchases of 1,000 over two cards (within both cards' day), uploaded in
    two batches: the eleventh is beyond the device's 10,000 since its last upload, because the
    second batch belongs to the period the first began."""
    await put_limits(hub, {**LIMITS, "max_card_day": 50_000})
    start = offline_start(timedelta(minutes=30))
    for n in range(11):
        pos.purchase((CARD, OTHER)[n % 2], 1000, start + timedelta(minutes=n), offline=True, decision="approved")
    backlog = pos.pending
    pos.pending = backlog[:6]
    await hub.send(pos)
    pos.pending = backlog[6:]
    await hub.send(pos)
    flagged = {**await flags_of(hub, "s1"), **await flags_of(hub, "s2")}
    assert [seq for seq, f in sorted(flagged.items()) if f] == [11]


@pytest.mark.parametrize(("gap_s", "flagged"), [(9, True), (11, False)])
async def test_same_card_device_and_amount_within_10_s_is_a_possible_duplicate(
        hub: Hub, pos: SimDevice, gap_s: int, flagged: bool) -> None:
    at = now_cst()
    pos.purchase(CARD, 800, at)
    pos.purchase(CARD, 800, at + timedelta(seconds=gap_s))
    assert [r["decision"] for r in await hub.send(pos)] == ["approved", "approved"]
    assert (await flags_of(hub, "s1"))[2] == (["possible_duplicate"] if flagged else [])


async def test_limits_and_tallies_survive_a_restart(database: Database, tmp_path: Path) -> None:
    """The merchant's limits, the card's day and the device's period come back from the store."""
    hub = await start_hub(database, tmp_path / "hub")
    try:
        await hub.merchant()
        pos = await hub.pos()
        await hub.account("s1", cash=100_000, card=CARD)
        await put_limits(hub, LIMITS)
        start = offline_start(timedelta(minutes=30))
        for n in range(5):
            pos.purchase(CARD, 1000, start + timedelta(minutes=n), offline=True, decision="approved")
        await hub.send(pos)
        await hub.settle()
    finally:
        await hub.client.close()
    hub = await start_hub(database, tmp_path / "hub")
    try:
        pos.purchase(CARD, 2001, now_cst())
        pos.purchase(CARD, 10, start + timedelta(minutes=6), offline=True, decision="approved")
        over, offline = await hub.send(pos)
        assert over["reason"] == "over_limit" and offline["decision"] == "approved"
        flagged = await flags_of(hub, "s1")
        assert flagged[7] == ["offline_over_limit"]  # 5,010 that day at the merchant
        assert (await hub.get("/v1/devices/pos-1/limits", role=None))["version"] == 1
    finally:
        await hub.client.close()
