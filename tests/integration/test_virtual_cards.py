"""Virtual cards (DESIGN §10) over HTTP on a real PostgreSQL: registration by the cardholder, an
operator or an admin, the hub-signed cert, three active per account, revocation onto the
hotlist, the cards list, closure. As an attacker would try it: another's account, a stolen
cardholder token on another's card, a key that is not Ed25519's, a NUL in the label, a replayed
revocation, a chip card's uid."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from device_sim.device import SimDevice
from device_sim.phone import SimPhone
from domain import paycode
from domain.wire import b64encode, public_key_from_b64, sign_envelope
from hub.audit import audit_log
from hub.audit.verify import verify
from hub.service.typedefs import HUB_KEY, POOL, SETTINGS
from hub.storage.store import Database
from tests.conftest import Hub, start_hub

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



# -- paying with a payment code (DESIGN §10): envelopes with ``credential`` -------------------------

async def campus(hub: Hub, cash: int = 5000) -> tuple[SimDevice, SimPhone]:
    await hub.merchant()
    pos = await hub.pos()
    await hub.account("s1", cash=cash)
    return pos, await register(hub, "s1")


async def pay(hub: Hub, pos: SimDevice, code: str, amount_fen: int = 300, at: datetime | None = None,
              **kwargs: Any) -> dict[str, Any]:
    pos.purchase_by_code(code, amount_fen, at or datetime.now(UTC), **kwargs)
    [result] = await hub.send(pos)
    return result


async def test_a_code_pays_once_and_is_reused_the_second_time_also_after_a_restart(
        database: Database, tmp_path: Path) -> None:
    first = await start_hub(database, tmp_path / "hub")
    try:
        pos, phone = await campus(first)
        now = datetime.now(UTC)
        code = phone.code(now)
        assert await pay(first, pos, code, at=now) == {"seq": 1, "status": "accepted", "decision": "approved",
                                                        "balance": 4700}
        again = await pay(first, pos, code, at=now + timedelta(seconds=1))
        assert (again["decision"], again["reason"], again["balance"]) == ("declined", "credential_reused", 4700)
        assert (await pay(first, pos, phone.code(now), at=now))["decision"] == "approved"  # the next code pays
    finally:
        await first.client.close()
    second = await start_hub(database, tmp_path / "hub")  # the same store: its state, read back
    try:
        later = await pay(second, pos, code, at=now + timedelta(seconds=2))
        assert (later["decision"], later["reason"]) == ("declined", "credential_reused")
        assert (await pay(second, pos, phone.code(now), at=now))["decision"] == "approved"
    finally:
        await second.client.close()


async def test_a_code_declined_for_funds_is_used_up_and_does_not_pay_after_a_top_up(hub: Hub) -> None:
    pos, phone = await campus(hub, cash=100)
    now = datetime.now(UTC)
    code = phone.code(now)
    assert (await pay(hub, pos, code, 300, at=now))["reason"] == "insufficient_funds"
    await hub.post("/v1/accounts/s1/topups", {"amount": 1000, "ref": "more"})
    assert (await pay(hub, pos, code, 300, at=now))["reason"] == "credential_reused"


async def test_expired_forged_and_unknown_codes_are_declined_and_stored(hub: Hub) -> None:
    pos, phone = await campus(hub)
    now = datetime.now(UTC)
    expired = await pay(hub, pos, phone.code(now - timedelta(seconds=61)), at=now)
    assert (expired["reason"], expired["balance"]) == ("credential_expired", 5000)  # its card is known
    early = await pay(hub, pos, phone.code(now + timedelta(seconds=6)), at=now)
    assert early["reason"] == "credential_expired"
    thief = SimPhone(cert=phone.cert)  # the cert is in every code shown; the phone's key is not
    forged = await pay(hub, pos, thief.code(now), at=now)
    assert forged == {"seq": 3, "status": "accepted", "decision": "declined", "reason": "credential_invalid"}
    hub_key = hub.app[HUB_KEY]
    for cert in (  # signed by the hub, but for no virtual card: an unknown uid, a chip card, another key
        paycode.make_cert("F0FFFFFFFFFFFFFF", phone.public_key, now + timedelta(days=1), hub_key),
        paycode.make_cert(phone.card_uid, thief.public_key, now + timedelta(days=1), hub_key),
    ):
        result = await pay(hub, pos, SimPhone(key=thief.key if cert["key"] == thief.public_key else phone.key,
                                              cert=cert).code(now), at=now)
        assert (result["reason"], "balance" in result) == ("credential_invalid", False), cert
    for junk in ("CHV1.AAAA.BBBB", "not a code", "CHV1." + "A" * 3000):
        assert (await pay(hub, pos, junk, at=now))["reason"] == "credential_invalid"
    assert (await hub.balance("s1"))["total"] == 5000


async def test_an_envelope_carries_card_or_credential_and_the_code_is_bounded(hub: Hub) -> None:
    pos, phone = await campus(hub)
    now = datetime.now(UTC)
    base = {"v": 1, "device": "pos-1", "seq": 1, "prev": "0" * 64, "at": now.isoformat(), "type": "purchase",
            "amount": 100}
    cases = [
        ({**base, "card": phone.card_uid, "credential": phone.code(now)}, "credential"),
        (base, "credential"),
        ({**base, "type": "reversal", "ref_seq": 1, "credential": phone.code(now)}, "credential"),
        ({**{k: v for k, v in base.items() if k != "amount"}, "type": "reversal", "ref_seq": 1}, "card"),
        ({**base, "credential": phone.code(now) + "\x00"}, "credential"),
        ({**base, "credential": "\u202e" + phone.code(now)}, "credential"),
        ({**base, "credential": ""}, "credential"),
        ({**base, "credential": 7}, "credential"),
        ({**base, "credential": "A" * 4097}, "credential"),
    ]
    for envelope, field in cases:
        signed = sign_envelope(envelope, pos.key)
        [result] = (await hub.upload("pos-1", [signed]))["results"]
        assert (result["code"], result["detail"].split(":")[0]) == ("invalid", field), envelope
    huge = json.dumps({"events": [{**base, "credential": "A" * (10 << 20)}]}).encode()
    resp = await hub.client.post("/v1/devices/pos-1/events", data=io.BytesIO(huge),
                                 headers={"Content-Type": "application/json"})
    assert resp.status == 413
    await hub.settle()
    assert (await hub.get("/v1/audit/events?device=pos-1", role="auditor"))["items"] == []  # nothing stored


async def test_an_offline_code_stands_as_the_device_decided_and_is_flagged(hub: Hub) -> None:
    pos, phone = await campus(hub)
    now = datetime.now(UTC)
    code = phone.code(now)
    assert (await pay(hub, pos, code, at=now))["decision"] == "approved"
    replayed = await pay(hub, pos, code, 200, at=now + timedelta(seconds=20), offline=True, decision="approved")
    assert (replayed["decision"], replayed["balance"]) == ("approved", 4500)  # it happened: debited
    late = await pay(hub, pos, phone.code(now - timedelta(minutes=5)), 100, at=now, offline=True)
    assert (late["decision"], late["balance"]) == ("approved", 4400)
    refused = await pay(hub, pos, phone.code(now), 150, at=now, offline=True, decision="declined")
    assert (refused["decision"], refused["balance"]) == ("declined", 4400)
    junk = await pay(hub, pos, "CHV1.bad", 100, at=now, offline=True)
    assert junk == {"seq": 5, "status": "accepted", "decision": "approved"}  # no card: nobody to debit
    await hub.settle()
    items = (await hub.get("/v1/audit/events?device=pos-1", role="auditor"))["items"]
    transactions = (await hub.get("/v1/accounts/s1/transactions"))["items"]
    by_seq = {t.get("seq"): t for t in transactions}
    assert by_seq[2]["flags"] == ["credential_reused"] and by_seq[3]["flags"] == ["credential_expired"]
    assert by_seq[4]["flags"] == [] and [i["envelope"]["seq"] for i in items] == [5, 4, 3, 2, 1]
    exposure = {f["flag"]: f for f in (await hub.get("/v1/risk/exposure", role="auditor"))["flagged"]}
    assert (exposure["credential_reused"]["fen"], exposure["credential_expired"]["fen"]) == (200, 100)
    assert exposure["credential_invalid"]["events"] == 1


async def test_a_revoked_or_lost_phones_code_is_declined_and_its_card_is_on_the_hotlist(hub: Hub) -> None:
    pos, phone = await campus(hub)
    lost_phone = await register(hub, "s1")
    await hub.settle()
    version = (await hub.get("/v1/devices/pos-1/hotlist", role=None))["version"]
    await hub.post(f"/v1/virtual-cards/{phone.card_uid}/revoke", expect=200, **holder("s1"))
    await hub.post(f"/v1/cards/{lost_phone.card_uid}/lost", expect=200, **holder("s1"))
    now = datetime.now(UTC)
    assert (await pay(hub, pos, phone.code(now), at=now))["reason"] == "card_cancelled"
    assert (await pay(hub, pos, lost_phone.code(now), at=now))["reason"] == "card_lost"
    offline = await pay(hub, pos, phone.code(now), 100, at=now, offline=True)
    assert offline["decision"] == "approved"
    await hub.settle()
    delta = await hub.get(f"/v1/devices/pos-1/hotlist?since={version}", role=None)
    assert sorted(delta["added"]) == sorted([phone.card_uid, lost_phone.card_uid])
    [flagged] = [t for t in (await hub.get("/v1/accounts/s1/transactions"))["items"] if t.get("seq") == 3]
    assert flagged["flags"] == ["hotlisted_card"] and flagged["card"] == phone.card_uid


async def test_phone_payments_are_found_by_card_everywhere_and_the_books_verify(hub: Hub, database: Database) -> None:
    pos, phone = await campus(hub)
    now = datetime.now(UTC)
    for amount in (300, 450):
        assert (await pay(hub, pos, phone.code(now), amount, at=now))["decision"] == "approved"
    pos.reversal(phone.card_uid, 2, now)  # a reversal names the virtual card's uid
    [voided] = await hub.send(pos)
    assert (voided["decision"], voided["balance"]) == ("approved", 4700)
    await pay(hub, pos, "CHV1.forged", at=now)
    refund = {"device": "pos-1", "seq": 1, "amount": 100, "reason": "a wrong dish", "ref": "refund-1"}
    assert (await hub.post("/v1/accounts/s1/refunds", refund))["remaining"] == 200
    await hub.settle()
    transactions = (await hub.get("/v1/accounts/s1/transactions"))["items"]
    assert [(t["kind"], t.get("seq"), t.get("card"), t.get("medium")) for t in transactions] == [
        ("refund", 1, phone.card_uid, "phone"),
        ("reversal", 3, phone.card_uid, "phone"), ("purchase", 2, phone.card_uid, "phone"),
        ("purchase", 1, phone.card_uid, "phone"), ("topup", None, None, None)]
    events = (await hub.get(f"/v1/audit/events?card={phone.card_uid}", role="auditor"))["items"]
    assert [e["envelope"]["seq"] for e in events] == [3, 2, 1]
    assert "credential" in events[2]["envelope"] and "card" not in events[2]["envelope"]  # as signed
    day = now.astimezone(hub.app[SETTINGS].zone()).date().isoformat()
    stats = await hub.get(f"/v1/stats/consumption?from={(now - timedelta(hours=1)).isoformat()}"
                          f"&to={(now + timedelta(hours=1)).isoformat()}&by=merchant".replace("+", "%2B"))
    assert stats["total"] == {"count": 1, "amount": 200, "cards": 1}  # 300, less 100 refunded
    settlement = await hub.get(f"/v1/merchants/canteen-1/settlement?date={day}")
    assert (settlement["purchases"], settlement["reversals"], settlement["net"]) == (
        {"count": 2, "amount": 750}, {"count": 1, "amount": 450}, 200)
    dashboard = await hub.get(f"/v1/stats/dashboard?date={day}")
    assert dashboard["phone"] == {"count": 1, "amount": 200, "cards": 1} and dashboard["total"]["amount"] == 200
    assert (await hub.get(f"/v1/stats/dashboard?date={day}", role="manager"))["phone"] is None  # one phone: hidden
    await audit_log.issue_checkpoint(hub.app[POOL], hub.app[HUB_KEY])
    report = await asyncio.to_thread(verify, database, hub.app[HUB_KEY].public_key())
    assert report.ok, {c.name: c.problem for c in report.checks if c.problem is not None}


async def test_a_gate_lets_a_phone_in_by_its_accounts_groups(hub: Hub) -> None:
    await hub.post("/v1/zones", {"zone": "library", "name": "图书馆"})
    await hub.post("/v1/access-rules", {"zone": "library", "group": "students",
                                        "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                                        "from": "00:00", "to": "24:00"})
    gate = SimDevice("gate-1", "gate")
    await hub.post("/v1/devices", {"device_id": "gate-1", "kind": "gate", "public_key": gate.public_key,
                                   "zone": "library"})
    await hub.account("s1")
    phone = await register(hub, "s1")
    now = datetime.now(UTC)
    code = phone.code(now)
    gate.gate_by_code(code, "in", now)
    gate.gate_by_code(code, "in", now)
    gate.gate_by_code("CHV1.forged", "in", now)
    gate.gate_by_code(phone.code(now), "out", now, offline=True)
    first, second, forged, offline = await hub.send(gate)
    assert (first["decision"], second.get("reason"), forged["reason"]) == (
        "approved", "credential_reused", "credential_invalid")
    assert offline["decision"] == "approved"
    await hub.settle()
    log = (await hub.get(f"/v1/access-log?card={phone.card_uid}"))["items"]
    assert [entry["decision"] for entry in log] == ["approved", "declined", "approved"]
    everything = (await hub.get("/v1/access-log?zone=library"))["items"]
    assert [entry["card"] for entry in everything] == [phone.card_uid, None, phone.card_uid, phone.card_uid]
