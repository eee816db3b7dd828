"""Query PINs and cardholders' sign-in (DESIGN §10): the card office sets a PIN, the cardholder
changes it with the old one, signs in for a 12-hour token of its own account and nobody else's.
As an attacker would try it: every failed sign-in looks the same, five wrong PINs lock the
account id (a right one too) until the lock ends, made-up ids are counted alike, a revoked
session is refused, the PIN is nowhere in the store, and hostile bodies write nothing."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import jwt
import pytest

from hub.audit.verify import verify
from hub.service.query import OPERATIONS
from hub.service.routes.sessions import create_session
from hub.service.typedefs import HUB_KEY, POOL, SEAT, SIGN_IN
from hub.storage.store import Database
from tests.conftest import Hub

pytestmark = pytest.mark.timeout(120)
PIN, OTHER_PIN = "135792", "246801"


class Clock:
    """The lockout's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def sign_in(hub: Hub, account_id: str, pin: Any) -> tuple[int, Any, Any]:
    resp = await hub.client.post("/v1/sessions", json={"account_id": account_id, "pin": pin})
    return resp.status, await resp.json(content_type=None), resp


async def as_holder(hub: Hub, token: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    resp = await hub.client.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})
    return resp.status, await resp.json(content_type=None)


async def session(hub: Hub, account_id: str, pin: str = PIN) -> str:
    status, body, _ = await sign_in(hub, account_id, pin)
    assert status == 201, body
    return body["token"]


async def position(hub: Hub) -> int:
    return await asyncio.to_thread(hub.app[SEAT].active().application.recorder.max_notification_id)


async def with_pin(hub: Hub, account_id: str, pin: str = PIN, **fields: Any) -> None:
    await hub.account(account_id, **fields)
    await hub.request("POST", f"/v1/accounts/{account_id}/pin", {"pin": pin}, role="operator", expect=200)


async def test_the_card_office_sets_a_pin_and_the_cardholder_signs_in_to_its_own_account_only(hub: Hub) -> None:
    await hub.account("s1", cash=1_000)
    await hub.account("s2", cash=2_000)
    set_at = time.time()
    _, answer = await hub.request("POST", "/v1/accounts/s1/pin", {"pin": PIN}, role="operator", expect=200)
    assert set(answer) == {"account_id", "pin_set_at"} and answer["account_id"] == "s1"
    await hub.settle()
    status, body, resp = await sign_in(hub, "s1", PIN)
    assert status == 201 and set(body) == {"token", "expires_at", "account_id"} and body["account_id"] == "s1"
    assert resp.content_type == "application/json"
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert (claims["role"], claims["scope"], claims["exp"] - claims["iat"]) == ("cardholder", "s1", 12 * 3600)
    assert abs(claims["iat"] - set_at) < 60
    token = body["token"]
    # accepted at once, before any view has the token: the registry was told
    assert await as_holder(hub, token, "GET", "/v1/accounts/s1/balance") == (
        200, {"account_id": "s1", "cash": 1_000, "subsidy": 0, "total": 1_000})
    for path in ("", "/transactions", "/reads", "/cards"):
        assert (await as_holder(hub, token, "GET", f"/v1/accounts/s1{path}"))[0] == 200, path
        status, problem = await as_holder(hub, token, "GET", f"/v1/accounts/s2{path}")
        assert (status, problem["code"]) == (403, "forbidden"), path
    assert (await as_holder(hub, token, "GET", "/v1/tokens"))[0] == 403
    assert (await as_holder(hub, token, "POST", "/v1/accounts/s1/topups", {"amount": 1, "ref": "r"}))[0] == 403
    await hub.settle()
    listed = {t["jti"]: t for t in (await hub.get("/v1/tokens"))["items"]}
    record = listed[claims["jti"]]
    assert (record["role"], record["scope"]) == ("cardholder", "s1")
    assert record["issued_by"] == {"role": "cardholder", "scope": "s1", "jti": claims["jti"]}


async def test_the_cardholder_changes_its_pin_with_the_old_one(hub: Hub) -> None:
    await with_pin(hub, "s1")
    await hub.account("s2")
    token = await session(hub, "s1")
    change = "/v1/accounts/s1/pin"
    status, problem = await as_holder(hub, token, "POST", change, {"pin": OTHER_PIN})
    assert (status, problem["field"]) == (422, "old_pin")
    status, problem = await as_holder(hub, token, "POST", change, {"pin": OTHER_PIN, "old_pin": "000000"})
    assert (status, problem["code"]) == (403, "wrong_pin") and PIN not in str(problem)
    status, answer = await as_holder(hub, token, "POST", change, {"pin": OTHER_PIN, "old_pin": PIN})
    assert status == 200 and answer["account_id"] == "s1"
    assert (await sign_in(hub, "s1", PIN))[0] == 401
    await session(hub, "s1", OTHER_PIN)
    # another account's PIN, other roles, no PIN yet, the card office with old_pin
    s2_holder = hub.token("cardholder", "s2")
    for role, scope in (("cardholder", "s2"), ("auditor", None), ("manager", None), ("merchant", "m1")):
        status, _ = await hub.request("POST", change, {"pin": PIN}, role=role, scope=scope)
        assert status == 403, role
    status, problem = await as_holder(hub, s2_holder, "POST", "/v1/accounts/s2/pin", {"pin": PIN, "old_pin": PIN})
    assert (status, problem["code"]) == (409, "no_pin")
    status, problem = await hub.request("POST", change, {"pin": PIN, "old_pin": OTHER_PIN}, role="operator")
    assert (status, problem["field"]) == (422, "old_pin")
    await hub.request("POST", "/v1/accounts/nobody/pin", {"pin": PIN}, role="operator", expect=404)
    await hub.post("/v1/accounts/s2/close", {"ref": "close-s2"})
    status, problem = await hub.request("POST", "/v1/accounts/s2/pin", {"pin": PIN}, role="admin")
    assert (status, problem["code"]) == (409, "closed")


async def test_every_failed_sign_in_answers_the_same_401(hub: Hub) -> None:
    """A wrong PIN, an unknown account, one without a PIN, a closed one, an erased one."""
    await with_pin(hub, "s1")
    await hub.account("nopin")
    for account_id in ("closed", "erased"):
        await with_pin(hub, account_id)
        await hub.post(f"/v1/accounts/{account_id}/close", {"ref": f"close-{account_id}"})
    await hub.request("POST", "/v1/accounts/erased/erase", role="admin", expect=200)
    answers = []
    for account_id, pin in (("s1", OTHER_PIN), ("nobody", PIN), ("nopin", PIN), ("closed", PIN), ("erased", PIN)):
        status, body, resp = await sign_in(hub, account_id, pin)
        headers = {k: v for k, v in resp.headers.items() if k not in ("Date",)}
        answers.append((status, body, headers))
    assert answers[0][0] == 401 and answers[0][1]["code"] == "sign_in_failed"
    assert answers[0][2]["Content-Type"].startswith("application/problem+json")
    assert all(a == answers[0] for a in answers), answers


async def test_five_wrong_pins_lock_the_account_id_for_15_minutes_and_a_success_clears_the_count(hub: Hub) -> None:
    clock = Clock()
    hub.app[SIGN_IN].lockout.clock = clock
    await with_pin(hub, "s1")
    for _ in range(4):
        assert (await sign_in(hub, "s1", OTHER_PIN))[0] == 401
    await session(hub, "s1")  # clears the count
    for _ in range(5):
        assert (await sign_in(hub, "s1", OTHER_PIN))[0] == 401
    for pin in (OTHER_PIN, PIN):  # locked: not even the right PIN
        status, problem, resp = await sign_in(hub, "s1", pin)
        assert (status, problem["code"], resp.headers["Retry-After"]) == (429, "locked", "900")
        assert resp.content_type == "application/problem+json"
    clock.now += 15 * 60 - 0.5
    status, _, resp = await sign_in(hub, "s1", PIN)
    assert (status, resp.headers["Retry-After"]) == (429, "1")
    clock.now += 0.5
    await session(hub, "s1")
    # failures older than 15 minutes do not count
    for _ in range(4):
        assert (await sign_in(hub, "s1", OTHER_PIN))[0] == 401
    clock.now += 15 * 60
    assert (await sign_in(hub, "s1", OTHER_PIN))[0] == 401
    await session(hub, "s1")


async def test_made_up_ids_and_wrong_old_pins_are_counted_like_wrong_pins(hub: Hub) -> None:
    hub.app[SIGN_IN].lockout.clock = Clock()
    for _ in range(5):
        assert (await sign_in(hub, "nobody", PIN))[0] == 401
    status, problem, resp = await sign_in(hub, "nobody", PIN)
    assert (status, problem["code"], resp.headers["Retry-After"]) == (429, "locked", "900")
    await with_pin(hub, "s1")
    token = await session(hub, "s1")
    for _ in range(4):
        assert (await sign_in(hub, "s1", OTHER_PIN))[0] == 401
    status, problem = await as_holder(hub, token, "POST", "/v1/accounts/s1/pin", {"pin": OTHER_PIN, "old_pin": "000000"})
    assert (status, problem["code"]) == (403, "wrong_pin")
    assert (await sign_in(hub, "s1", PIN))[0] == 429
    status, problem = await as_holder(hub, token, "POST", "/v1/accounts/s1/pin", {"pin": OTHER_PIN, "old_pin": PIN})
    assert (status, problem["code"]) == (429, "locked")
    # the card office still sets a PIN (that is how a locked-out student is helped)
    await hub.request("POST", "/v1/accounts/s1/pin", {"pin": OTHER_PIN}, role="operator", expect=200)


async def test_a_revoked_session_token_is_refused(hub: Hub) -> None:
    await with_pin(hub, "s1")
    token = await session(hub, "s1")
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    await hub.settle()
    assert (await as_holder(hub, token, "GET", "/v1/accounts/s1/balance"))[0] == 200
    await hub.request("POST", f"/v1/tokens/{jti}/revoke", expect=200)
    status, problem = await as_holder(hub, token, "GET", "/v1/accounts/s1/balance")
    assert (status, problem["code"]) == (401, "unauthenticated") and "revoked" in problem["detail"]
    # a session token with its scope changed is another token: its signature fails
    head, _, sig = token.split(".")
    forged = jwt.api_jws.base64url_encode(jwt.utils.force_bytes(
        jwt.api_jws.json.dumps({**jwt.decode(token, options={"verify_signature": False}), "scope": "s2"}))).decode()
    assert (await as_holder(hub, f"{head}.{forged}.{sig}", "GET", "/v1/accounts/s2/balance"))[0] == 401


async def test_the_pin_and_its_hash_are_nowhere_in_the_database(hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    """Every table of the database (events, snapshots, views, keys), as text: neither the PIN
    nor an argon2 hash, in clear or as the hex of bytea."""
    caplog.set_level("DEBUG")
    await with_pin(hub, "s1")
    token = await session(hub, "s1")
    await as_holder(hub, token, "POST", "/v1/accounts/s1/pin", {"pin": OTHER_PIN, "old_pin": PIN})
    await session(hub, "s1", OTHER_PIN)
    await sign_in(hub, "s1", "999999")
    await hub.settle()
    pool = hub.app[POOL]
    tables = await pool.fetch("SELECT table_schema, table_name FROM information_schema.tables"
                              " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')")
    assert len(tables) > 10
    needles = [PIN, OTHER_PIN, "999999", "argon2", "$m=19456"]
    needles += [n.encode().hex() for n in needles]
    for row in tables:
        text = await pool.fetchval(
            f'SELECT coalesce(string_agg(t::text, \'\'), \'\') FROM "{row[0]}"."{row[1]}" t')  # noqa: S608
        for needle in needles:
            assert needle not in text, (row[1], needle)
    assert not any(n in caplog.text for n in needles[:4])
    events = await pool.fetchval("SELECT count(*) FROM cardhub_events WHERE topic LIKE '%Account.PinSet'")
    assert events == 2


async def test_audit_verify_passes_and_counts_the_cardholder_as_an_actor(hub: Hub, database: Database) -> None:
    """PinSet and a session's Token.Issued are command events with their actor; every
    projection replays them (the views ignore them) and the Merkle log holds them."""
    await with_pin(hub, "s1")
    token = await session(hub, "s1")
    await as_holder(hub, token, "POST", "/v1/accounts/s1/pin", {"pin": OTHER_PIN, "old_pin": PIN})
    await hub.settle()
    report = await asyncio.to_thread(verify, database, hub.app[HUB_KEY].public_key())
    assert report.ok, [(c.name, c.problem) for c in report.checks if c.problem]
    [line] = [c for c in report.checks if c.name.startswith("actors")]
    assert "cardholder 2" in line.detail, line.detail  # the session's Token.Issued and the PIN change


async def test_hostile_bodies_are_refused_and_write_nothing(hub: Hub) -> None:
    await with_pin(hub, "s1")
    await hub.settle()
    before = await position(hub)
    cases: list[tuple[Any, int, str | None]] = [
        ({"account_id": "s1\u0000", "pin": PIN}, 422, "account_id"),
        ({"account_id": "s1\n", "pin": PIN}, 422, "account_id"),
        ({"account_id": "s" * 33, "pin": PIN}, 422, "account_id"),
        ({"account_id": "s1", "pin": "1357924"}, 422, "pin"),
        ({"account_id": "s1", "pin": "13579"}, 422, "pin"),
        ({"account_id": "s1", "pin": "13579\uff12"}, 422, "pin"),  # a full-width digit
        ({"account_id": "s1", "pin": "١٣٥٧٩٢"}, 422, "pin"),  # Arabic-Indic digits
        ({"account_id": "s1", "pin": f"{PIN}\n"}, 422, "pin"),
        ({"account_id": "s1", "pin": int(PIN)}, 422, "pin"),
        ({"account_id": "s1", "pin": 2**63}, 422, "pin"),
        ({"account_id": "s1", "pin": PIN, "role": "admin"}, 422, "role"),
        ({"account_id": "s1"}, 422, "pin"),
    ]
    for body, status, field in cases:
        resp = await hub.client.post("/v1/sessions", json=body)
        problem = await resp.json(content_type=None)
        assert (resp.status, problem.get("field")) == (status, field), (body, problem)
        assert resp.content_type == "application/problem+json" and PIN not in problem["detail"]
    for raw, status in ((b"{", 400), (b'{"account_id": "s1", "pin": "1", "pin": "2"}', 400),
                        (b"[" * 40 + b"]" * 40, 400), (b"", 400), (b"x" * (2 << 20), 413)):
        resp = await hub.client.post("/v1/sessions", data=io.BytesIO(raw), headers={"Content-Type": "application/json"})
        assert resp.status == status and resp.content_type == "application/problem+json", raw[:20]
    for body, field in (({"pin": "12345"}, "pin"), ({"pin": PIN, "old_pin": "x"}, "old_pin"),
                        ({"pin": PIN, "extra": 1}, "extra"), ({"pin": 135792}, "pin")):
        status, problem = await hub.request("POST", "/v1/accounts/s1/pin", body, role="operator")
        assert (status, problem["field"]) == (422, field), body
    await hub.request("POST", "/v1/accounts/s1%00/pin", {"pin": PIN}, role="operator", expect=404)
    assert len(hub.app[SIGN_IN].lockout) == 0  # refused bodies are not attempts
    await hub.settle()
    assert await position(hub) == before
    await session(hub, "s1")


async def test_sign_in_is_documented_without_a_token_with_its_answers(hub: Hub) -> None:
    assert not OPERATIONS[create_session].auth
    doc = await hub.get("/openapi.json", role=None)
    operation = doc["paths"]["/v1/sessions"]["post"]
    assert operation["security"] == [] and {"201", "401", "422", "429"} <= set(operation["responses"])
    assert operation["responses"]["429"]["headers"]["Retry-After"]["required"]
    assert "headers" not in operation["responses"]["401"]
    pin = doc["paths"]["/v1/accounts/{account_id}/pin"]["post"]["responses"]
    assert {"200", "401", "403", "404", "409", "422", "429"} <= set(pin)
