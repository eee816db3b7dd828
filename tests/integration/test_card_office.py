"""The card-office routes of DESIGN §6: status codes, problems, roles, idempotency, reads."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hub.service.typedefs import SEAT
from tests.conftest import Hub

NOON = datetime(2026, 11, 25, 12, 0, tzinfo=timezone(timedelta(hours=8)))


async def test_creating_answers_201_and_creating_again_409(hub: Hub) -> None:
    await hub.merchant()
    status, problem = await hub.request("POST", "/v1/merchants", {"merchant_id": "canteen-1", "name": "x", "category": "dining"})
    assert status == 409 and problem["code"] == "already_exists"
    await hub.account("s1", card="ABCDEF01")
    status, problem = await hub.request("POST", "/v1/accounts", {"account_id": "s1", "name": "x", "category": "staff"})
    assert status == 409
    status, problem = await hub.request("POST", "/v1/cards", {"card_uid": "ABCDEF01", "account_id": "s1"})
    assert status == 409


async def test_a_second_active_card_is_a_conflict_and_a_replacement_cancels_the_lost_one(hub: Hub) -> None:
    await hub.account("s1", card="ABCDEF01")
    status, problem = await hub.request("POST", "/v1/cards", {"card_uid": "ABCDEF02", "account_id": "s1"})
    assert (status, problem["code"]) == (409, "conflict")
    await hub.post("/v1/cards/ABCDEF01/lost", expect=200)
    await hub.request("POST", "/v1/cards/ABCDEF01/lost", expect=409)
    card = await hub.post("/v1/cards", {"card_uid": "ABCDEF02", "account_id": "s1"})
    assert card == {"card_uid": "ABCDEF02", "account_id": "s1", "status": "active"}
    status, problem = await hub.request("POST", "/v1/cards/ABCDEF01/found")
    assert status == 409


async def test_bad_bodies_are_problems_that_name_the_field_and_write_nothing(hub: Hub) -> None:
    cases = [
        ({"account_id": "s 1", "name": "x", "category": "student"}, "account_id"),
        ({"account_id": "s1", "name": "x", "category": "alien"}, "category"),
        ({"account_id": "s1", "name": "x", "category": "student", "daily_limit": 10.5}, "daily_limit"),
        ({"account_id": "s1", "name": "x", "category": "student", "valid_from": "monday"}, "valid_from"),
        ({"account_id": "s1", "name": "x", "category": "student", "colour": "red"}, "colour"),
    ]
    for body, field in cases:
        resp = await hub.client.post("/v1/accounts", json=body, headers=hub.auth())
        problem = await resp.json(content_type=None)
        assert resp.status == 422 and resp.content_type == "application/problem+json", problem
        assert field in problem["detail"] and problem["title"] and problem["code"] == "invalid"
    resp = await hub.client.post("/v1/accounts", data=b"{", headers={**hub.auth(), "Content-Type": "application/json"})
    assert resp.status == 400
    await hub.request("GET", "/v1/accounts/s1/balance", expect=404)


async def test_top_ups_and_subsidies_count_once_per_ref(hub: Hub) -> None:
    await hub.account("s1")
    first = await hub.post("/v1/accounts/s1/topups", {"amount": 500, "ref": "pay-1"})
    again = await hub.post("/v1/accounts/s1/topups", {"amount": 500, "ref": "pay-1"}, expect=200)
    assert first["balance"] == again["balance"] == {"account_id": "s1", "cash": 500, "subsidy": 0, "total": 500}
    await hub.request("POST", "/v1/accounts/s1/topups", {"amount": 900, "ref": "pay-1"}, expect=409)
    await hub.post("/v1/accounts/s1/subsidies", {"amount": 300, "ref": "nov"})
    await hub.request("POST", "/v1/accounts/s1/topups", {"amount": 0, "ref": "zero"}, expect=422)
    await hub.request("POST", "/v1/accounts/nobody/topups", {"amount": 5, "ref": "x"}, expect=404)
    assert await hub.balance("s1") == {"account_id": "s1", "cash": 500, "subsidy": 300, "total": 800}


async def test_tokens_and_roles_guard_every_route_but_the_device_ones(hub: Hub) -> None:
    await hub.account("s1")
    for path in ("/v1/accounts/s1/balance", "/v1/accounts/s1/transactions"):
        assert (await hub.request("GET", path, role=None))[0] == 401
        resp = await hub.client.get(path, headers={"Authorization": "Bearer not-a-token"})
        assert resp.status == 401 and resp.content_type == "application/problem+json"
    await hub.settle()
    await hub.get("/v1/accounts/s1/balance", role="cardholder", scope="s1")
    await hub.get("/v1/accounts/s1/balance", role="auditor")
    await hub.request("GET", "/v1/accounts/s1/balance", role="cardholder", scope="s2", expect=403)
    await hub.request("GET", "/v1/accounts/s1/balance", role="manager", expect=403)
    await hub.request("GET", "/v1/accounts/s1/balance", role="merchant", scope="canteen-1", expect=403)
    await hub.request("POST", "/v1/accounts/s1/topups", {"amount": 5, "ref": "x"}, role="auditor", expect=403)
    await hub.request("POST", "/v1/accounts/s1/topups", {"amount": 5, "ref": "x"}, role="operator", expect=201)
    await hub.request("POST", "/v1/merchants", {"merchant_id": "m", "name": "m", "category": "other"},
                      role="operator", expect=403)
    for open_path in ("/healthz", "/metrics", "/openapi.json", "/v1/hub/key"):
        resp = await hub.client.get(open_path)
        assert resp.status == 200, open_path


async def test_devices_need_a_known_merchant_and_a_real_key(hub: Hub) -> None:
    body = {"device_id": "pos-1", "kind": "pos", "public_key": "AAAA", "merchant_id": "canteen-1"}
    status, problem = await hub.request("POST", "/v1/devices", body)
    assert status == 422 and problem["field"] == "public_key"
    status, problem = await hub.request("POST", "/v1/devices", {**body, "public_key": "A" * 43 + "="})
    assert status == 404 and "canteen-1" in problem["detail"]
    await hub.request("POST", "/v1/devices/nope/revoke", expect=404)


async def test_transactions_are_newest_first_and_paged_with_a_cursor(hub: Hub) -> None:
    await hub.merchant()
    pos = await hub.pos()
    await hub.account("s1", cash=10_000, card="ABCDEF01")
    # the hub's clock agrees with the swipes' times, so these online swipes carry no clock_skew (DESIGN §9)
    hub.app[SEAT].active().application.clock = lambda: NOON + timedelta(minutes=2)
    for n in range(5):
        pos.purchase("ABCDEF01", 100 + n, NOON + timedelta(minutes=n))
    await hub.send(pos)
    await hub.settle()
    page = await hub.get("/v1/accounts/s1/transactions?limit=4")
    assert [i["amount"] for i in page["items"]] == [-104, -103, -102, -101]
    assert page["items"][0] | {"recorded_at": None} == {
        "kind": "purchase", "amount": -104, "subsidy": 0, "cash": -104, "balance": 9490,
        "recorded_at": None, "decision": "approved", "card": "ABCDEF01", "device": "pos-1", "seq": 5,
        "merchant_id": "canteen-1", "merchant_name": "第一食堂", "location": "第一食堂 3号窗口",
        "at": (NOON + timedelta(minutes=4)).isoformat(timespec="milliseconds"), "flags": [], "medium": "card",
    }
    rest = await hub.get(f"/v1/accounts/s1/transactions?limit=4&cursor={page['next']}")
    assert [i["amount"] for i in rest["items"]] == [-100, 10_000] and rest["next"] is None
    window = await hub.get("/v1/accounts/s1/transactions?from=" + (NOON + timedelta(minutes=1)).isoformat().replace("+", "%2B")
                           + "&to=" + (NOON + timedelta(minutes=3)).isoformat().replace("+", "%2B"))
    assert [i["seq"] for i in window["items"]] == [3, 2]
    await hub.request("GET", "/v1/accounts/s1/transactions?limit=0", expect=422)
    await hub.request("GET", "/v1/accounts/s1/transactions?cursor=%%%", expect=422)


async def test_unknown_routes_answer_problems(hub: Hub) -> None:
    resp = await hub.client.get("/v1/nothing-here")
    problem = await resp.json(content_type=None)
    assert resp.status == 404 and problem["code"] == "not_found"
    resp = await hub.client.delete("/v1/merchants", headers=hub.auth())
    assert resp.status == 405


async def test_openapi_lists_the_routes(hub: Hub) -> None:
    doc = await hub.get("/openapi.json", role=None)
    assert doc["openapi"].startswith("3.1")
    assert {"/v1/devices/{device_id}/events", "/v1/accounts/{account_id}/balance", "/v1/cards"} <= set(doc["paths"])
