"""A cardholder's self-service on its own account (DESIGN §10): its cards, 挂失 and 解挂 with
itself as the events' actor, its transactions with the merchant's name and the window's
location. 挂失 blocks the card's next online purchase and puts it on the hotlist delta; 解挂
undoes both. As an attacker would try it: another account's card, a card that does not exist
(the same 403), a forged cursor, a filter the list does not take, a replayed 挂失."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from device_sim.device import SimDevice
from domain import ids
from domain.application import CampusCard
from hub.service.keys import read_token
from hub.service.typedefs import SEAT, TOKEN_KEYS
from hub.storage.store import Database
from tests.conftest import Hub

pytestmark = pytest.mark.timeout(120)


def holder(account_id: str) -> dict[str, Any]:
    return {"role": "cardholder", "scope": account_id}


def card_events(database: Database, card_uid: str) -> list[Any]:
    app = CampusCard(env=database.eventsourcing_env())
    try:
        return [app.mapper.to_domain_event(e) for e in app.recorder.select_events(ids.card_id(card_uid))]
    finally:
        app.close()


async def buy(hub: Hub, pos: SimDevice, card: str, amount_fen: int = 500) -> dict[str, Any]:
    pos.purchase(card, amount_fen, datetime.now(UTC))
    [result] = await hub.send(pos)
    return result


async def hotlist(hub: Hub, since: int | None = None) -> dict[str, Any]:
    await hub.settle()
    query = f"?since={since}" if since is not None else ""
    return await hub.get(f"/v1/devices/pos-1/hotlist{query}", role=None)


async def position(hub: Hub) -> int:
    return await asyncio.to_thread(hub.app[SEAT].active().application.recorder.max_notification_id)


async def test_a_cardholder_lists_its_own_cards_newest_first_and_others_reads_are_recorded(hub: Hub) -> None:
    await hub.account("s1", card="C0000001")
    await hub.account("s2", card="C0000002")
    await hub.post("/v1/cards/C0000001/lost", expect=200, **holder("s1"))
    await hub.post("/v1/cards", {"card_uid": "C0000003", "account_id": "s1"})  # 补卡: C0000001 cancelled
    await hub.settle()
    listed = await hub.get("/v1/accounts/s1/cards", **holder("s1"))
    assert listed == {"items": [{"card_uid": "C0000003", "status": "active", "kind": "physical"},
                                {"card_uid": "C0000001", "status": "cancelled", "kind": "physical"}], "next": None}
    first = await hub.get("/v1/accounts/s1/cards?limit=1", **holder("s1"))
    assert [c["card_uid"] for c in first["items"]] == ["C0000003"] and first["next"]
    rest = await hub.get(f"/v1/accounts/s1/cards?limit=1&cursor={first['next']}", **holder("s1"))
    assert [c["card_uid"] for c in rest["items"]] == ["C0000001"] and rest["next"] is None
    for role in ("admin", "operator", "auditor"):
        assert (await hub.get("/v1/accounts/s1/cards", role=role)) == listed
    for role, scope in (("cardholder", "s2"), ("manager", None), ("merchant", "canteen-1"), ("warden", "dorm-1")):
        assert (await hub.request("GET", "/v1/accounts/s1/cards", role=role, scope=scope))[0] == 403, role
    await hub.get("/v1/accounts/nobody/cards", expect=404)
    for query, field in (("?cursor=MTA", "cursor"), ("?cursor=AAAA", "cursor"), ("?from=2026-01-01T00:00:00Z", "from"),
                         ("?limit=1001", "limit"), ("?limit=9223372036854775808", "limit"), ("?limit=%00", "limit")):
        status, problem = await hub.request("GET", f"/v1/accounts/s1/cards{query}", **holder("s1"))
        assert (status, problem["field"]) == (422, field), query
    await hub.settle()
    reads = await hub.get("/v1/accounts/s1/reads", **holder("s1"))
    assert {(r["role"], r["what"]) for r in reads["items"] if r["what"] == "cards"} == {
        ("admin", "cards"), ("operator", "cards"), ("auditor", "cards")}  # never the cardholder's own


async def test_lost_by_the_cardholder_blocks_the_card_and_hotlists_it_and_found_undoes_both(
    hub: Hub, database: Database,
) -> None:
    await hub.merchant()
    pos = await hub.pos()
    await hub.account("s1", cash=10_000, card="C0000001")
    assert (await buy(hub, pos, "C0000001"))["decision"] == "approved"
    version = (await hotlist(hub))["version"]
    answer = await hub.post("/v1/cards/C0000001/lost", expect=200, **holder("s1"))
    assert answer == {"card_uid": "C0000001", "account_id": "s1", "status": "lost"}
    declined = await buy(hub, pos, "C0000001")
    assert (declined["decision"], declined["reason"]) == ("declined", "card_lost")
    delta = await hotlist(hub, version)
    assert (delta["full"], delta["added"], delta["removed"]) == (False, ["C0000001"], [])
    assert (await hub.request("POST", "/v1/cards/C0000001/lost", **holder("s1")))[0] == 409  # replayed
    found = await hub.post("/v1/cards/C0000001/found", expect=200, **holder("s1"))
    assert found["status"] == "active"
    assert (await buy(hub, pos, "C0000001"))["decision"] == "approved"
    undone = await hotlist(hub, delta["version"])
    assert (undone["added"], undone["removed"]) == ([], ["C0000001"])
    assert (await hub.request("POST", "/v1/cards/C0000001/found", **holder("s1")))[0] == 409
    jti = read_token(hub.app[TOKEN_KEYS], hub.token("cardholder", "s1")).jti
    actors = {type(e).__name__: e.actor for e in card_events(database, "C0000001") if hasattr(e, "actor")}
    assert actors["ReportedLost"] == actors["Found"] == {"role": "cardholder", "scope": "s1", "jti": jti}
    await hub.settle()
    items = (await hub.get("/v1/accounts/s1/transactions", **holder("s1")))["items"]
    purchases = [i for i in items if i["kind"] == "purchase"]
    assert len(purchases) == 3 and all(
        (i["merchant_name"], i["location"]) == ("第一食堂", "第一食堂 3号窗口") for i in purchases)
    [topup] = [i for i in items if i["kind"] == "topup"]
    assert "merchant_name" not in topup and "location" not in topup


async def test_a_refund_and_a_reversal_carry_the_merchant_and_location_and_an_unknown_one_is_null(hub: Hub) -> None:
    await hub.merchant()
    pos = await hub.pos()
    pos2 = SimDevice("pos-2", "pos")
    await hub.post("/v1/devices", {"device_id": "pos-2", "kind": "pos", "public_key": pos2.public_key,
                                   "merchant_id": "canteen-1"})  # registered without a location
    await hub.account("s1", cash=10_000, card="C0000001")
    await buy(hub, pos, "C0000001", 800)
    await hub.post("/v1/accounts/s1/refunds", {"device": "pos-1", "seq": 1, "amount": 300, "reason": "冷了",
                                              "ref": "refund-1"})
    pos.reversal("C0000001", 1, datetime.now(UTC))
    await hub.send(pos)
    await buy(hub, pos2, "C0000001", 100)
    await hub.settle()
    items = (await hub.get("/v1/accounts/s1/transactions", **holder("s1")))["items"]
    by_kind = {(i["kind"], i["device"]): i for i in items if i["kind"] != "topup"}
    for key in (("purchase", "pos-1"), ("refund", "pos-1"), ("reversal", "pos-1")):
        assert (by_kind[key]["merchant_name"], by_kind[key]["location"]) == ("第一食堂", "第一食堂 3号窗口"), key
    assert (by_kind[("purchase", "pos-2")]["merchant_name"], by_kind[("purchase", "pos-2")]["location"]) == (
        "第一食堂", None)


async def test_another_accounts_card_and_a_card_that_does_not_exist_are_refused_alike(hub: Hub) -> None:
    await hub.account("s1", card="C0000001")
    await hub.account("s2", card="C0000002")
    others = (("auditor", None), ("manager", None), ("merchant", "canteen-1"), ("warden", "dorm-1"), ("cardholder", "s1"))
    for role, scope in others:
        hub.token(role, scope)  # issued (and recorded) before the count
    await hub.settle()
    before = await position(hub)
    answers = []
    for uid in ("C0000002", "C0000009"):
        for action in ("lost", "found"):
            status, problem = await hub.request("POST", f"/v1/cards/{uid}/{action}", **holder("s1"))
            answers.append((status, problem["code"], problem["title"]))
    assert set(answers) == {(403, "forbidden", "Forbidden")}
    for role, scope in others[:-1]:
        assert (await hub.request("POST", "/v1/cards/C0000001/lost", role=role, scope=scope))[0] == 403, role
    for path in ("/v1/cards/C0000001%00/lost", "/v1/cards/c0000001/lost", "/v1/cards/C0000001%0A/found",
                 f"/v1/cards/{'9' * 21}/lost"):
        assert (await hub.request("POST", path, **holder("s1")))[0] == 404, path
    await hub.settle()
    assert await position(hub) == before  # nothing written
    await hub.request("POST", "/v1/cards/C0000009/lost", expect=404)  # the card office is told it is unknown
    assert (await hub.get("/v1/accounts/s2/cards"))["items"][0]["status"] == "active"


async def test_a_replaced_or_closed_accounts_card_is_not_found_again(hub: Hub) -> None:
    """DESIGN §1: at most one active card; 补卡 cancels the lost card, so 解挂 of it is 409, as
    it is for the card office; a closed account's cards are cancelled (409 too)."""
    await hub.account("s1", card="C0000001")
    await hub.post("/v1/cards/C0000001/lost", expect=200, **holder("s1"))
    await hub.post("/v1/cards", {"card_uid": "C0000002", "account_id": "s1"})
    status, problem = await hub.request("POST", "/v1/cards/C0000001/found", **holder("s1"))
    assert status == 409 and problem["code"] == "conflict"
    assert (await hub.request("POST", "/v1/cards/C0000001/found"))[0] == 409
    await hub.post("/v1/accounts/s1/close", {"ref": "close-s1"})
    for action in ("lost", "found"):
        assert (await hub.request("POST", f"/v1/cards/C0000002/{action}", **holder("s1")))[0] == 409, action
