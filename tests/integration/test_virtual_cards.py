"""Virtual cards (DESIGN §10) over HTTP on a real PostgreSQL: registration by the cardholder, an
operator or an admin, the hub-signed cert, three active per account, revocation onto the
hotlist, the cards list, closure. As an attacker would try it: another's account, a stolen
cardholder token on another's card, a key that is not Ed25519's, a NUL in the label, a replayed
revocation, a chip card's uid."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from device_sim.phone import SimPhone
from domain import paycode
from domain.wire import b64encode, public_key_from_b64
from tests.conftest import Hub

pytestmark = pytest.mark.timeout(120)


def holder(account_id: str) -> dict[str, Any]:
    return {"role": "cardholder", "scope": account_id}


async def register(hub: Hub, account_id: str, phone: SimPhone | None = None, label: str = "我的手机",
                   **kwargs: Any) -> SimPhone:
    phone = phone or SimPhone()
    answer = await hub.post(f"/v1/accounts/{account_id}/virtual-cards",
                            {"public_key": phone.public_key, "label": label}, **kwargs)
    phone.cert = answer["cert"]
    return phone


async def test_a_cardholder_registers_its_phone_and_gets_a_cert_signed_by_the_hub_key(hub: Hub) -> None:
    await hub.account("s1")
    phone = SimPhone()
    before = datetime.now(UTC)
    answer = await hub.post("/v1/accounts/s1/virtual-cards", {"public_key": phone.public_key, "label": "我的手机"},
                            **holder("s1"))
    assert set(answer) == {"card_uid", "account_id", "label", "status", "cert"}
    uid, cert = answer["card_uid"], answer["cert"]
    assert paycode.VIRTUAL_UID_RE.fullmatch(uid) and (answer["account_id"], answer["label"], answer["status"]) == (
        "s1", "我的手机", "active")
    assert cert["card"] == uid and cert["key"] == phone.public_key and set(cert) == {"card", "key", "valid_until", "sig"}
    valid_until = datetime.fromisoformat(cert["valid_until"].replace("Z", "+00:00"))
    assert before + timedelta(days=365) - timedelta(seconds=1) <= valid_until <= datetime.now(UTC) + timedelta(days=365)
    hub_key = public_key_from_b64((await hub.get("/v1/hub/key", role=None))["public_key"])
    phone.cert = cert
    now = datetime.now(UTC)
    assert paycode.check_code(phone.code(now), hub_key, now).ok  # the cert verifies with the published key
    await hub.settle()
    listed = await hub.get("/v1/accounts/s1/cards", **holder("s1"))
    assert listed["items"] == [{"card_uid": uid, "status": "active", "kind": "virtual", "label": "我的手机",
                                "valid_until": cert["valid_until"]}]


async def test_operator_and_admin_register_for_any_account_and_nobody_else_does(hub: Hub) -> None:
    await hub.account("s1")
    await hub.account("s2")
    await register(hub, "s1", role="operator")
    await register(hub, "s1", role="admin")
    for role, scope in (("cardholder", "s2"), ("auditor", None), ("manager", None), ("merchant", "canteen-1"),
                        ("warden", "dorm-1")):
        status, problem = await hub.request("POST", "/v1/accounts/s1/virtual-cards",
                                            {"public_key": SimPhone().public_key, "label": "x"}, role=role, scope=scope)
        assert (status, problem["code"]) == (403, "forbidden"), role
    status, _ = await hub.request("POST", "/v1/accounts/s1/virtual-cards",
                                  {"public_key": SimPhone().public_key, "label": "x"}, role=None)
    assert status == 401
    await hub.post("/v1/accounts/nobody/virtual-cards", {"public_key": SimPhone().public_key, "label": "x"},
                   expect=404)


async def test_at_most_three_active_virtual_cards_and_one_live_card_per_key(hub: Hub) -> None:
    await hub.account("s1", card="C0000001")  # a chip card does not count
    phones = [await register(hub, "s1", **holder("s1")) for _ in range(3)]
    status, problem = await hub.request("POST", "/v1/accounts/s1/virtual-cards",
                                        {"public_key": SimPhone().public_key, "label": "4th"}, **holder("s1"))
    assert (status, problem["code"]) == (409, "too_many_virtual_cards")
    await hub.post(f"/v1/virtual-cards/{phones[0].card_uid}/revoke", expect=200, **holder("s1"))
    await register(hub, "s1", **holder("s1"))  # room for one again
    await hub.account("s2")
    for account_id in ("s1", "s2"):  # a key live on a card is refused on any account
        status, problem = await hub.request("POST", f"/v1/accounts/{account_id}/virtual-cards",
                                            {"public_key": phones[1].public_key, "label": "again"})
        assert (status, problem["code"]) == (409, "key_in_use"), account_id
    again = await register(hub, "s2", SimPhone(key=phones[0].key))  # revoked: its key may serve again
    assert again.card_uid != phones[0].card_uid


async def test_a_lost_virtual_card_is_found_only_within_the_three(hub: Hub) -> None:
    await hub.account("s1", card="C0000001")
    phones = [await register(hub, "s1") for _ in range(3)]
    lost = await hub.post(f"/v1/cards/{phones[0].card_uid}/lost", expect=200, **holder("s1"))
    assert lost["status"] == "lost"
    await register(hub, "s1")  # three active again
    status, problem = await hub.request("POST", f"/v1/cards/{phones[0].card_uid}/found", **holder("s1"))
    assert (status, problem["code"]) == (409, "too_many_virtual_cards")
    await hub.post(f"/v1/virtual-cards/{phones[1].card_uid}/revoke", expect=200)
    await hub.post(f"/v1/cards/{phones[0].card_uid}/found", expect=200, **holder("s1"))
    # the chip card is unaffected: the account's one active chip card
    await hub.post("/v1/cards", {"card_uid": "C0000002", "account_id": "s1"}, expect=409)


async def test_bad_keys_labels_and_bodies_are_refused_and_nothing_is_written(hub: Hub) -> None:
    await hub.account("s1")
    good = SimPhone().public_key
    cases = [
        ({"public_key": "AAAA", "label": "x"}, "public_key"),  # 3 bytes
        ({"public_key": b64encode(b"\x01" * 33), "label": "x"}, "public_key"),
        ({"public_key": good.rstrip("="), "label": "x"}, "public_key"),  # unpadded
        ({"public_key": good + "\n", "label": "x"}, "public_key"),
        ({"public_key": good, "label": ""}, "label"),
        ({"public_key": good, "label": "x" * 201}, "label"),
        ({"public_key": good, "label": "my\x00phone"}, "label"),
        ({"public_key": good, "label": "\u202ephone"}, "label"),
        ({"public_key": good, "label": 7}, "label"),
        ({"public_key": good}, "label"),
        ({"public_key": good, "label": "x", "card_uid": "F000000000000001"}, "card_uid"),
    ]
    for body, field in cases:
        status, problem = await hub.request("POST", "/v1/accounts/s1/virtual-cards", body, **holder("s1"))
        assert (status, problem.get("field")) == (422, field), body
    resp = await hub.client.post("/v1/accounts/s1/virtual-cards", data=b"{" * 40,
                                 headers={**hub.auth("cardholder", "s1"), "Content-Type": "application/json"})
    assert resp.status == 400
    await hub.settle()
    assert (await hub.get("/v1/accounts/s1/cards"))["items"] == []


async def test_revocation_puts_the_card_on_the_hotlist_for_good(hub: Hub) -> None:
    await hub.merchant()
    await hub.pos()
    await hub.account("s1")
    await hub.account("s2")
    phone = await register(hub, "s1")
    await hub.settle()
    version = (await hub.get("/v1/devices/pos-1/hotlist", role=None))["version"]
    # a stolen cardholder token of another account: the same 403 as for a card that does not exist
    for uid in (phone.card_uid, "F0FFFFFFFFFFFFFF"):
        status, problem = await hub.request("POST", f"/v1/virtual-cards/{uid}/revoke", **holder("s2"))
        assert (status, problem["code"]) == (403, "forbidden"), uid
    await hub.post("/v1/virtual-cards/F0FFFFFFFFFFFFFF/revoke", expect=404)
    revoked = await hub.post(f"/v1/virtual-cards/{phone.card_uid}/revoke", expect=200, **holder("s1"))
    assert (revoked["card_uid"], revoked["status"], revoked["cert"]) == (phone.card_uid, "revoked", phone.cert)
    for path in (f"/v1/virtual-cards/{phone.card_uid}/revoke", f"/v1/cards/{phone.card_uid}/found",
                 f"/v1/cards/{phone.card_uid}/lost"):
        await hub.post(path, expect=409, **holder("s1"))  # final: no second revocation, no 解挂
    await hub.settle()
    delta = await hub.get(f"/v1/devices/pos-1/hotlist?since={version}", role=None)
    assert (delta["full"], delta["added"], delta["removed"]) == (False, [phone.card_uid], [])
    assert phone.card_uid in (await hub.get("/v1/devices/pos-1/hotlist", role=None))["added"]
    listed = await hub.get("/v1/accounts/s1/cards")
    assert [(c["card_uid"], c["status"], c["kind"]) for c in listed["items"]] == [(phone.card_uid, "revoked", "virtual")]


async def test_a_chip_cards_uid_is_not_revoked_as_a_virtual_card(hub: Hub) -> None:
    await hub.account("s1", card="C0000001")
    status, problem = await hub.request("POST", "/v1/virtual-cards/C0000001/revoke", **holder("s1"))
    assert (status, problem["code"]) == (409, "not_virtual")
    for bad in ("c0000001", "C0000001%00", "C" * 21, "9" * 100):
        assert (await hub.request("POST", f"/v1/virtual-cards/{bad}/revoke"))[0] == 404, bad


async def test_closure_cancels_virtual_cards_and_a_closed_account_registers_none(hub: Hub) -> None:
    await hub.account("s1", card="C0000001")
    kept, gone = await register(hub, "s1"), await register(hub, "s1")
    await hub.post(f"/v1/virtual-cards/{gone.card_uid}/revoke", expect=200)
    closed = await hub.post("/v1/accounts/s1/close", {"ref": "close-1"})
    assert set(closed["cards_blocked"]) == {"C0000001", kept.card_uid}
    status, problem = await hub.request("POST", "/v1/accounts/s1/virtual-cards",
                                        {"public_key": SimPhone().public_key, "label": "x"})
    assert (status, problem["code"]) == (409, "closed")
    await hub.settle()
    statuses = {c["card_uid"]: c["status"] for c in (await hub.get("/v1/accounts/s1/cards"))["items"]}
    assert statuses == {"C0000001": "cancelled", kept.card_uid: "cancelled", gone.card_uid: "revoked"}

