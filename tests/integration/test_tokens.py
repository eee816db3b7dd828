"""Bearer tokens (DESIGN §5, §12): signed by the token key with a kid, expiring, recorded when
issued, revocable within a second on every route, listed for admins, in the audit trail.
As an attacker would try them: another key, another alg, a forged or replayed jti, a token
that was never issued, a stolen token after its revocation."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import signal
import time
import uuid
from typing import Any

import jwt
import pytest

from domain.wire import b64decode
from hub.audit import audit_log
from hub.audit.verify import verify
from hub.service.keys import TokenClaims, issue_token
from hub.service.query import OPERATIONS
from hub.service.token_keys import load_token_key, rotate_token_key
from hub.service.token_office import TokenOffice
from hub.service.typedefs import HUB_KEY, POOL, SEAT, SETTINGS
from hub.storage.store import Database
from tests.conftest import Hub

pytestmark = pytest.mark.timeout(120)
PLACEHOLDERS = {"account_id": "s1", "card_uid": "C0FFEE01", "device_id": "pos-1", "merchant_id": "canteen-1",
                "zone": "dorm-1", "jti": str(uuid.uuid4())}
REQUIRED_QUERIES = {"/v1/audit/leaves": "?start=0&end=1", "/v1/audit/proofs/inclusion": "?index=0&tree_size=1",
                    "/v1/audit/proofs/consistency": "?first=1&second=1"}  # checked before the token


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def header_of(token: str) -> dict[str, Any]:
    return jwt.get_unverified_header(token)


async def call(hub: Hub, token: str, method: str = "GET", path: str = "/v1/tokens") -> tuple[int, Any, Any]:
    resp = await hub.client.request(method, path, headers={"Authorization": f"Bearer {token}"})
    body = await resp.json(content_type=None) if resp.content_length != 0 else None
    return resp.status, body, resp


async def refused(hub: Hub, token: str, path: str = "/v1/tokens") -> str:
    """The 401 problem's detail, after checking its shape."""
    status, body, resp = await call(hub, token, path=path)
    assert status == 401, (status, body)
    assert resp.content_type == "application/problem+json" and body["code"] == "unauthenticated"
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    return body["detail"]


def token_routes(hub: Hub) -> list[tuple[str, str]]:
    """Every route that takes a token, with ids that fit its path."""
    found = []
    for route in hub.app.router.routes():
        operation = OPERATIONS.get(route.handler)
        if route.method == "HEAD" or operation is None or not operation.auth:
            continue
        path = route.resource.canonical
        for name, value in PLACEHOLDERS.items():
            path = path.replace("{" + name + "}", value)
        found.append((route.method, path + REQUIRED_QUERIES.get(path, "")))
    return found


async def test_a_token_carries_its_kid_and_claims_and_its_issuance_is_recorded(hub: Hub) -> None:
    token = hub.token("warden", "dorm-1,dorm-2")
    key = load_token_key(hub.app[SETTINGS].data_dir)
    assert header_of(token) == {"alg": "EdDSA", "kid": key.kid, "typ": "JWT"}
    claims = claims_of(token)
    assert claims.keys() == {"iss", "role", "scope", "iat", "exp", "jti"}
    assert (claims["iss"], claims["role"], claims["scope"]) == ("cardhub", "warden", "dorm-1,dorm-2")
    assert claims["exp"] - claims["iat"] == 8 * 3600
    await hub.settle()
    (item,) = [i for i in (await hub.get("/v1/tokens"))["items"] if i["jti"] == claims["jti"]]
    assert item["role"] == "warden" and item["scope"] == "dorm-1,dorm-2" and item["kid"] == key.kid
    assert item["issued_by"] == {"role": "cli"} and item["revoked_at"] is None and item["revoked_by"] is None


async def test_a_token_of_two_seconds_works_then_answers_401_expired(hub: Hub) -> None:
    token = hub.new_token("admin", ttl_s=2)
    assert (await call(hub, token))[0] == 200
    deadline = time.monotonic() + 6
    while (await call(hub, token))[0] == 200:
        assert time.monotonic() < deadline, "still accepted 6 s after it was issued for 2 s"
        await asyncio.sleep(0.1)
    assert "expired" in await refused(hub, token)
    assert time.time() >= claims_of(token)["exp"]


async def test_a_revoked_token_is_refused_on_every_route_at_once_while_another_of_its_role_works(hub: Hub) -> None:
    stolen, other = hub.new_token("admin"), hub.token("admin")
    jti = claims_of(stolen)["jti"]
    assert (await call(hub, stolen))[0] == 200
    record = await hub.post(f"/v1/tokens/{jti}/revoke", expect=200)
    assert record["jti"] == jti and record["revoked_at"] is not None
    admin_jti = claims_of(other)["jti"]
    assert record["revoked_by"] == {"role": "admin", "scope": None, "jti": admin_jti}
    routes = token_routes(hub)
    assert len(routes) >= 20 and ("POST", f"/v1/tokens/{PLACEHOLDERS['jti']}/revoke") in routes
    for method, path in routes:  # at once: the API revocation does not wait for the view
        status, body, _ = await call(hub, stolen, method, path)
        assert status == 401 and "revoked" in body["detail"], (method, path, status, body)
    assert (await call(hub, other))[0] == 200
    await hub.request("POST", f"/v1/tokens/{jti}/revoke", expect=409)
    await hub.request("POST", f"/v1/tokens/{uuid.uuid4()}/revoke", expect=404)
    await hub.request("POST", "/v1/tokens/not-a-jti/revoke", expect=404)
    await hub.request("POST", f"/v1/tokens/{jti}%00/revoke", expect=404)
    await hub.request("POST", f"/v1/tokens/{jti}/revoke", role="operator", expect=403)


async def test_a_revocation_from_beside_the_hub_is_refused_within_a_second_while_the_views_stand_still(
    hub: Hub, database: Database,
) -> None:
    """The tokens view may lag far behind a burst; the hub reads revocations from the store too."""
    token = hub.new_token("operator")
    assert (await call(hub, token, path="/v1/access-log"))[0] == 200
    await hub.settle()
    child = hub.app[SEAT].active().projector._process.pid  # noqa: SLF001 - the projections' process, frozen for the test
    os.kill(child, signal.SIGSTOP)
    try:
        with TokenOffice(database) as office:
            office.revoke(claims_of(token)["jti"])
        revoked_at = time.monotonic()
        while (await call(hub, token, path="/v1/access-log"))[0] == 200:
            assert time.monotonic() - revoked_at < 1.0, "still accepted a second after its revocation"
            await asyncio.sleep(0.02)
    finally:
        os.kill(child, signal.SIGCONT)
    assert "revoked" in await refused(hub, token)


async def test_a_revocation_from_beside_the_hub_is_refused_within_a_second(hub: Hub, database: Database) -> None:
    token = hub.new_token("operator")
    await hub.get("/v1/access-log", role="operator")
    assert (await call(hub, token, path="/v1/access-log"))[0] == 200
    await hub.settle()  # the projections are running (their start takes a second or two)
    with TokenOffice(database) as office:  # what `cardhub token revoke` does
        record = office.revoke(claims_of(token)["jti"])
    revoked_at = time.monotonic()
    assert record["revoked_by"] == {"role": "cli"}
    while (await call(hub, token, path="/v1/access-log"))[0] == 200:
        assert time.monotonic() - revoked_at < 1.0, "still accepted a second after its revocation"
        await asyncio.sleep(0.02)
    assert "revoked" in await refused(hub, token, "/v1/access-log")
    assert (await call(hub, hub.token("operator"), path="/v1/access-log"))[0] == 200
    # the hub holds no stale Token aggregate: its own revocation of it is a conflict, not a failure
    await hub.request("POST", f"/v1/tokens/{record['jti']}/revoke", expect=409)


async def test_a_token_issued_a_moment_ago_beside_the_hub_works_at_once(hub: Hub) -> None:
    await hub.get("/v1/tokens")  # the hub is up and following the view
    for _ in range(5):
        assert (await call(hub, hub.new_token("auditor"), path="/v1/access-log"))[0] == 200


async def test_a_validly_signed_token_that_was_never_issued_is_refused_and_so_is_its_replay(hub: Hub) -> None:
    key = load_token_key(hub.app[SETTINGS].data_dir)
    unrecorded = issue_token(key, "admin", record=lambda claims: None)
    assert "never issued" in await refused(hub, unrecorded)
    assert "never issued" in await refused(hub, unrecorded)  # a replay: the same answer


def _forged(private_key: Any, claims: dict[str, Any], kid: str, alg: str = "EdDSA") -> str:
    return jwt.encode(claims, private_key, algorithm=alg, headers={"kid": kid})


def _recorded_claims(hub: Hub, database: Database) -> dict[str, Any]:
    """Claims of a token that is on record (so only its signature can be at fault)."""
    key = load_token_key(hub.app[SETTINGS].data_dir)
    seen: list[TokenClaims] = []
    with TokenOffice(database) as office:
        def record(claims: TokenClaims) -> None:
            seen.append(claims)
            office.app.record_token(claims.jti, claims.role, None, claims.kid, claims.iat, claims.exp, {"role": "cli"})

        issue_token(key, "admin", record=record)
    return seen[0].jwt_claims()


async def test_a_token_signed_by_the_hub_key_or_with_another_alg_is_refused(hub: Hub, database: Database) -> None:
    claims, kid = _recorded_claims(hub, database), load_token_key(hub.app[SETTINGS].data_dir).kid
    assert "Signature" in await refused(hub, _forged(hub.app[HUB_KEY], claims, kid))
    assert "kid" in await refused(hub, _forged(hub.app[HUB_KEY], claims, "hub"))
    header, body = b64url(json.dumps({"alg": "none", "kid": kid}).encode()), b64url(json.dumps(claims).encode())
    assert "alg" in await refused(hub, f"{header}.{body}.")
    raw_public = b64decode((await hub.get("/v1/hub/key", role=None))["public_key"])  # HS256 keyed by a public key
    hs = f"{b64url(json.dumps({'alg': 'HS256', 'kid': kid, 'typ': 'JWT'}).encode())}.{body}"
    signature = b64url(hmac.new(raw_public, hs.encode(), hashlib.sha256).digest())
    assert "alg" in await refused(hub, f"{hs}.{signature}")
    for junk in ("not-a-token", "a.b.c", "x" * 5000, "eyJhbGciOiJFZERTQSJ9.e30.", f"{header}.{body}"):
        await refused(hub, junk)


async def test_claims_out_of_their_bounds_are_refused_though_signed(hub: Hub) -> None:
    key = load_token_key(hub.app[SETTINGS].data_dir)
    now = int(time.time())
    good = {"iss": "cardhub", "role": "admin", "iat": now, "exp": now + 60, "jti": str(uuid.uuid4())}
    for bad in ({"exp": now + 91 * 86_400}, {"exp": 2**63}, {"iat": now + 3600}, {"jti": "x\x00"},
                {"jti": None}, {"role": "root"}, {"iat": str(now)}, {"iss": "elsewhere"},
                {"role": "merchant"}, {"scope": "canteen-1"}):
        await refused(hub, _forged(key.private, {**good, **bad}, key.kid))
    for missing in ("exp", "iat", "jti"):
        await refused(hub, _forged(key.private, {k: v for k, v in good.items() if k != missing}, key.kid))


async def test_rotation_keeps_old_kid_tokens_valid_until_they_expire_and_new_ones_use_the_new_kid(hub: Hub) -> None:
    data_dir = hub.app[SETTINGS].data_dir
    old_short, old_long = hub.new_token("admin", ttl_s=2), hub.new_token("admin")
    old, new = rotate_token_key(data_dir)
    fresh = hub.new_token("admin")
    assert header_of(old_long)["kid"] == old.kid != new.kid == header_of(fresh)["kid"]
    for token in (fresh, old_long, old_short):  # the running hub picks up the new kid
        assert (await call(hub, token))[0] == 200
    deadline = time.monotonic() + 6
    while (await call(hub, old_short))[0] == 200:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert "expired" in await refused(hub, old_short)
    assert (await call(hub, old_long))[0] == 200
    await hub.settle()
    kids = {i["jti"]: i["kid"] for i in (await hub.get("/v1/tokens"))["items"]}
    assert kids[claims_of(fresh)["jti"]] == new.kid and kids[claims_of(old_long)["jti"]] == old.kid


async def test_the_list_pages_newest_first_and_never_shows_a_token(hub: Hub) -> None:
    tokens = [hub.new_token("manager") for _ in range(4)] + [hub.token("admin")]
    await hub.post(f"/v1/tokens/{claims_of(tokens[1])['jti']}/revoke", expect=200)
    await hub.settle()
    seen, cursor, pages = [], None, 0
    while True:
        page = await hub.get("/v1/tokens?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        seen += page["items"]
        pages += 1
        cursor = page["next"]
        if cursor is None:
            break
    assert pages == 3 and [i["jti"] for i in seen] == [claims_of(t)["jti"] for t in reversed(tokens)]
    revoked = next(i for i in seen if i["jti"] == claims_of(tokens[1])["jti"])
    assert revoked["revoked_by"]["role"] == "admin" and revoked["revoked_at"] is not None
    listing = json.dumps(seen)
    assert not any(t.rsplit(".", 1)[1] in listing for t in tokens)
    for bad in ("limit=0", "limit=1001", f"cursor={b64url(str(2**63).encode())}", "cursor=forged", "limit=%00",
                "from=9999-01-01T00:00:00Z", "role=admin"):
        assert (await hub.request("GET", f"/v1/tokens?{bad}"))[0] == 422, bad
    assert (await hub.request("GET", "/v1/tokens", role="auditor"))[0] == 403


async def test_issuance_and_revocation_are_in_the_audit_trail_and_audit_verify_replays_them(
    hub: Hub, database: Database,
) -> None:
    token = hub.new_token("operator")
    jti = claims_of(token)["jti"]
    await hub.post(f"/v1/tokens/{jti}/revoke", expect=200)
    await hub.settle()
    checkpoint = await audit_log.issue_checkpoint(hub.app[POOL], hub.app[HUB_KEY])
    leaves = (await hub.get(f"/v1/audit/leaves?start=0&end={checkpoint['tree_size']}", role="auditor"))["leaves"]
    facts = [json.loads(base64.b64decode(leaf)) for leaf in leaves]
    states = {f["topic"]: json.loads(base64.b64decode(f["state"])) for f in facts if f["topic"].startswith("domain.tokens")
              and json.loads(base64.b64decode(f["state"])).get("jti") == jti}
    issued, revoked = states["domain.tokens:Token.Issued"], states["domain.tokens:Token.Revoked"]
    assert issued["role"] == "operator" and issued["actor"] == {"role": "cli"} and issued["exp"] == claims_of(token)["exp"]
    assert revoked["actor"]["role"] == "admin"
    assert not any(token.rsplit(".", 1)[1] in base64.b64decode(f["state"]).decode() for f in facts)
    report = await asyncio.to_thread(verify, database, hub.app[HUB_KEY].public_key())
    assert report.ok, [(c.name, c.problem) for c in report.checks if c.problem]
    (check,) = [c for c in report.checks if c.name == "view tokens: tokens = replay"]
    assert check.count >= 2
