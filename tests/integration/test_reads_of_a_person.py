"""Reads of a person are themselves audited (DESIGN §12): an admin's or auditor's read of one
account's records is an ``Access.Read`` event — a leaf of the Merkle log — recorded before the
answer, and its cardholder sees it in ``GET /v1/accounts/{id}/reads``; the cardholder's own reads
record nothing; a read that cannot be recorded is not answered."""

from __future__ import annotations

import asyncio
import base64
import json
from collections import Counter
from typing import Any

import pytest

from hub.service.keys import read_token
from hub.service.query import Cursor
from hub.service.typedefs import POOL, SEAT, TOKEN_KEYS
from tests.conftest import Hub

pytestmark = pytest.mark.timeout(120)
CARD = "C0FFEE01"
READ_TOPIC = "domain.reads:Access.Read"


async def _campus(hub: Hub) -> None:
    await hub.account("s1", cash=1000, card=CARD)
    await hub.account("s2", cash=500)
    await hub.settle()


async def _leaves(hub: Hub) -> list[dict[str, Any]]:
    """Every leaf of the audit log, decoded: its id, version, topic and the stored state."""
    await hub.settle()
    size = await hub.app[POOL].fetchval("SELECT count(*) FROM audit_leaves")
    leaves: list[dict[str, Any]] = []
    for start in range(0, size, 1000):
        page = await hub.get(f"/v1/audit/leaves?start={start}&end={min(start + 1000, size)}", role="auditor")
        for leaf in page["leaves"]:
            decoded = json.loads(base64.b64decode(leaf))
            decoded["state"] = json.loads(base64.b64decode(decoded["state"]))
            leaves.append(decoded)
    return leaves


def _jti(hub: Hub, role: str, scope: str | None = None) -> str | None:
    return read_token(hub.app[TOKEN_KEYS], hub.token(role, scope)).jti


async def test_an_admins_reads_are_shown_to_the_cardholder_and_are_leaves_of_the_log(hub: Hub) -> None:
    await _campus(hub)
    await hub.get("/v1/accounts/s1/balance")
    await hub.get("/v1/accounts/s1/transactions")
    await hub.get("/v1/access-log?account=s1")
    await hub.get(f"/v1/audit/events?card={CARD}", role="auditor")
    await hub.get("/v1/accounts/s2/balance", role="operator")
    await hub.settle()
    page = await hub.get("/v1/accounts/s1/reads", role="cardholder", scope="s1")
    assert [(i["role"], i["what"]) for i in page["items"]] == [
        ("auditor", "audit_events"), ("admin", "access_log"), ("admin", "transactions"), ("admin", "balance")]
    assert set(page["items"][0]) == {"at", "role", "what"} and page["next"] is None
    reads = [leaf["state"] for leaf in await _leaves(hub) if leaf["topic"] == READ_TOPIC]
    admin = {"role": "admin", "scope": None, "jti": _jti(hub, "admin")}
    assert [(r["account_id"], r["what"], r["actor"]) for r in reads] == [
        ("s1", "balance", admin), ("s1", "transactions", admin), ("s1", "access_log", admin),
        ("s1", "audit_events", {"role": "auditor", "scope": None, "jti": _jti(hub, "auditor")}),
        ("s2", "balance", {"role": "operator", "scope": None, "jti": _jti(hub, "operator")}),
    ]


async def test_a_cardholders_own_reads_record_nothing(hub: Hub) -> None:
    await _campus(hub)
    hub.token("cardholder", "s1")  # issued (and recorded) before the count
    position = (await hub.get("/healthz", role=None))["store_position"]
    for path in ("balance", "transactions", "reads"):
        await hub.get(f"/v1/accounts/s1/{path}", role="cardholder", scope="s1")
    assert (await hub.get("/healthz", role=None))["store_position"] == position
    assert (await hub.get("/v1/accounts/s1/reads", role="cardholder", scope="s1"))["items"] == []


async def test_reading_the_reads_is_a_read_and_unfiltered_lists_name_nobody(hub: Hub) -> None:
    await _campus(hub)
    await hub.get("/v1/access-log")  # no account, no card: not one person's records
    await hub.get("/v1/audit/events?device=pos-1", role="auditor")
    await hub.get("/v1/access-log?card=FFFFFFFF")  # a card nobody has
    first = await hub.get("/v1/accounts/s1/reads", role="auditor")
    assert first["items"] == [] or [i["what"] for i in first["items"]] == ["reads"]
    await hub.settle()
    assert [(i["role"], i["what"]) for i in (await hub.get("/v1/accounts/s1/reads", role="cardholder",
                                                            scope="s1"))["items"]] == [("auditor", "reads")]


async def test_a_read_that_cannot_be_recorded_is_not_answered(hub: Hub) -> None:
    await _campus(hub)
    recorder = hub.app[SEAT].active().application.recorder
    recorder.fenced = "testing: the store refuses writes"
    try:
        for path in ("/v1/accounts/s1/balance", "/v1/accounts/s1/transactions", f"/v1/access-log?card={CARD}"):
            status, body = await hub.request("GET", path)
            assert status == 503 and body["code"] == "store_unavailable", (path, body)
            assert "cash" not in body and "items" not in body
        status, _ = await hub.request("GET", "/v1/accounts/s1/balance", role="cardholder", scope="s1")
        assert status == 200  # the cardholder's own read needs no record
    finally:
        recorder.fenced = None
    assert (await hub.get("/v1/accounts/s1/balance"))["total"] == 1000


async def test_the_reads_route_refuses_other_cardholders_and_hostile_queries(hub: Hub) -> None:
    await _campus(hub)
    for role, scope in (("cardholder", "s2"), ("operator", None), ("merchant", "canteen-1"), ("manager", None)):
        status, body = await hub.request("GET", "/v1/accounts/s1/reads", role=role, scope=scope)
        assert status == 403 and body["code"] == "forbidden", (role, body)
    status, _ = await hub.request("GET", "/v1/accounts/s1/reads", role=None)
    assert status == 401
    own = {"role": "cardholder", "scope": "s1"}
    for query, field in ((f"limit={2**63}", "limit"), (f"cursor={Cursor.encode(2**63 - 1)}x", "cursor"),
                         ("cursor=" + base64.urlsafe_b64encode(str(2**63).encode()).decode(), "cursor"),
                         ("limit=1%00", "limit"), ("from=9999-12-31T00:00:00Z", "from")):
        status, body = await hub.request("GET", f"/v1/accounts/s1/reads?{query}", **own)
        assert status == 422 and body["field"] == field, (query, body)
    status, body = await hub.request("GET", "/v1/accounts/s1%00/reads", **own)
    assert status == 404
    status, body = await hub.request("GET", "/v1/accounts/nobody/reads", role="admin")
    assert status == 404
    top = await hub.get(f"/v1/accounts/s1/reads?cursor={Cursor.encode(2**63 - 1)}&limit=1000", **own)
    assert top["items"] == []


async def test_the_reads_page_newest_first(hub: Hub) -> None:
    await _campus(hub)
    for what in ("balance", "transactions"):
        await hub.get(f"/v1/accounts/s1/{what}")
    await hub.get("/v1/access-log?account=s1")
    await hub.settle()
    first = await hub.get("/v1/accounts/s1/reads?limit=2", role="cardholder", scope="s1")
    assert [i["what"] for i in first["items"]] == ["access_log", "transactions"] and first["next"]
    rest = await hub.get(f"/v1/accounts/s1/reads?limit=2&cursor={first['next']}", role="cardholder", scope="s1")
    assert [i["what"] for i in rest["items"]] == ["balance"] and rest["next"] is None


async def test_reads_that_meet_in_one_batch_are_each_recorded_once(hub: Hub) -> None:
    """The writer records the reads of one micro-batch with one save: every one of them is
    answered, a read log is opened once, and reads of one account in one second are one event."""
    await _campus(hub)
    for i in range(3, 12):
        await hub.account(f"s{i}")
    await hub.settle()
    paths = [f"/v1/accounts/s{i}/balance" for i in range(1, 12)] + ["/v1/accounts/s1/balance"] * 10
    answers = await asyncio.gather(*(hub.request("GET", path) for path in paths))
    assert [status for status, _ in answers] == [200] * len(paths)
    topics = Counter((leaf["id"], leaf["topic"]) for leaf in await _leaves(hub)
                     if leaf["topic"].startswith("domain.reads:"))
    opened = [key for key in topics if key[1] == "domain.reads:Access.Opened"]
    assert len(opened) == 11 and all(topics[key] == 1 for key in opened)
    assert sum(n for (_, topic), n in topics.items() if topic == READ_TOPIC) in (11, 12)  # s1: one a second
