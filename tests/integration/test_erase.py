"""Erasing a person (DESIGN §12) on the real PostgreSQL: names are sealed in the events under a
data key kept in ``account_keys``, written in the transaction of the account's events; erasure
destroys the key, and the name is then nowhere — no view, no answer, no stored event in clear —
while ``cardhub audit verify`` and the Merkle proofs of before still hold."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.utils import get_topic
from psycopg import sql

from domain import ids, merkle
from domain.accounts import Account
from hub.audit import audit_log
from hub.audit.verify import verify
from hub.ingest.application import IngestCampusCard
from hub.service.typedefs import HUB_KEY, POOL, SEAT
from hub.storage.store import Database
from tests.conftest import Hub

pytestmark = pytest.mark.timeout(120)
NOON = datetime(2026, 11, 25, 12, 0, tzinfo=timezone(timedelta(hours=8)))
NAME = "韩梅梅 Han Meimei"
CARD = "C0FFEE01"
# The name as bytes in any encoding a table or an event could hold it in.
NEEDLES = [NAME.encode(), "韩梅梅".encode(), json.dumps("韩梅梅").strip('"').encode(), b"Meimei"]


def _holding_the_name(database: Database) -> list[str]:
    """Every table of the database (event store, snapshots, views, tracking, keys) and column in
    which a row holds the name, in any of ``NEEDLES``' forms."""
    found = []
    with psycopg.connect(database.url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'").fetchall()]
        assert {"cardhub_events", "balances", "transactions", "audit_swipes", "account_keys"} <= set(tables)
        for table in tables:
            curs = conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
            names = [c.name for c in curs.description or ()]
            for row in curs:
                for column, value in zip(names, row, strict=True):
                    raw = bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()
                    if any(needle in raw for needle in NEEDLES):
                        found.append(f"{table}.{column}")
    return found


def _in(answer: Any) -> bool:
    text = json.dumps(answer, ensure_ascii=False) + json.dumps(answer)
    return "韩梅梅" in text or "Meimei" in text or "\\u97e9" in text


async def _answers(hub: Hub, account_id: str) -> list[Any]:
    """What the hub answers about the account and the campus: the account, its balance and
    transactions, the audit events of its card and account, the dashboard's day."""
    return [
        await hub.get(f"/v1/accounts/{account_id}"),
        await hub.get(f"/v1/accounts/{account_id}/balance"),
        await hub.get(f"/v1/accounts/{account_id}/transactions"),
        await hub.get(f"/v1/audit/events?account={account_id}", role="auditor"),
        await hub.get(f"/v1/audit/events?card={CARD}", role="auditor"),
        await hub.get("/v1/stats/dashboard?date=2026-11-25", role="manager"),
    ]


async def _checkpoint(hub: Hub) -> dict[str, Any]:
    await hub.settle()
    return await audit_log.issue_checkpoint(hub.app[POOL], hub.app[HUB_KEY])


async def _used_and_closed(hub: Hub) -> None:
    """Opened, topped up, a card, a purchase through the device protocol that spends it all, the card lost."""
    await hub.merchant()
    pos = await hub.pos()
    opened = await hub.post("/v1/accounts", {"account_id": "S2026001", "name": NAME, "category": "student",
                                             "groups": ["dorm-3"]})
    assert opened["name"] == NAME and opened["erased"] is False
    await hub.post("/v1/cards", {"card_uid": CARD, "account_id": "S2026001"})
    await hub.post("/v1/accounts/S2026001/topups", {"amount": 1200, "ref": "counter-1"})
    pos.purchase(CARD, 1200, NOON)
    [result] = await hub.send(pos)
    assert result["decision"] == "approved" and result["balance"] == 0
    await hub.settle()


async def test_an_erased_account_leaves_no_name_anywhere_and_the_audit_still_holds(
    hub: Hub, database: Database,
) -> None:
    await _used_and_closed(hub)
    account = await hub.get("/v1/accounts/S2026001", role="operator")
    assert account == {"account_id": "S2026001", "name": NAME, "erased": False, "category": "student",
                       "groups": ["dorm-3"], "daily_limit": None, "valid_from": None, "valid_until": None}
    assert await asyncio.to_thread(_holding_the_name, database) == []  # sealed from the start

    status, refused = await hub.request("POST", "/v1/accounts/S2026001/erase")
    assert status == 409 and refused["code"] == "not_closed"
    assert "is not closed: close it first" in refused["detail"]
    await hub.post(f"/v1/cards/{CARD}/lost", expect=200)
    await hub.post("/v1/accounts/S2026001/close", {"ref": "close-1"})
    before = await _checkpoint(hub)

    erased = await hub.post("/v1/accounts/S2026001/erase", expect=200)
    assert erased["name"] is None and erased["erased"] is True and erased["erased_at"]
    status, again = await hub.request("POST", "/v1/accounts/S2026001/erase")
    assert status == 409 and again["code"] == "erased" and "was erased at" in again["detail"]
    await hub.settle()

    answers = await _answers(hub, "S2026001")
    assert answers[0]["name"] is None and answers[0]["erased"] is True
    assert answers[0]["erased_at"] == erased["erased_at"]
    assert answers[2]["items"] and answers[3]["items"]  # the history stays, nameless
    assert not [a for a in answers if _in(a)]
    assert await asyncio.to_thread(_holding_the_name, database) == []
    with psycopg.connect(database.url) as conn:
        key, erased_at = conn.execute("SELECT key, erased_at FROM account_keys WHERE account_id = 'S2026001'").fetchone()
    assert key is None and erased_at is not None

    after = await _checkpoint(hub)
    proof = await hub.get(f"/v1/audit/proofs/consistency?first={before['tree_size']}&second={after['tree_size']}",
                          role="auditor")
    added = await hub.get(f"/v1/audit/leaves?start={before['tree_size']}&end={after['tree_size']}", role="auditor")
    topics = [json.loads(base64.b64decode(leaf))["topic"] for leaf in added["leaves"]]
    assert "domain.accounts:Account.Erased" in topics  # the erasure is one more event, nothing rewritten
    assert merkle.verify_consistency(before["tree_size"], after["tree_size"], bytes.fromhex(before["root_hash"]),
                                     bytes.fromhex(after["root_hash"]), [bytes.fromhex(h) for h in proof["hashes"]])
    report = await asyncio.to_thread(verify, database, hub.app[HUB_KEY].public_key())
    assert report.ok, {c.name: c.problem for c in report.checks if c.problem}


async def test_an_erased_account_takes_no_new_card_and_no_money(hub: Hub) -> None:
    await hub.account("s1")
    await hub.post("/v1/accounts/s1/close", {"ref": "close-1"})
    await hub.post("/v1/accounts/s1/erase", expect=200)
    for path, body in [("/v1/cards", {"card_uid": "C0FFEE02", "account_id": "s1"}),
                       ("/v1/accounts/s1/topups", {"amount": 100, "ref": "late"})]:
        status, problem = await hub.request("POST", path, body)
        assert (status, problem["code"]) == (409, "erased"), problem


async def test_erasure_is_refused_before_closure_to_other_roles_and_for_unknown_accounts(hub: Hub) -> None:
    await hub.account("s1", subsidy=300)
    status, problem = await hub.request("POST", "/v1/accounts/s1/erase")
    assert status == 409 and problem["code"] == "not_closed"
    assert "is not closed: close it first" in problem["detail"]
    for role, scope in [("operator", None), ("auditor", None), ("cardholder", "s1"), ("manager", None)]:
        assert (await hub.request("POST", "/v1/accounts/s1/erase", role=role, scope=scope))[0] == 403, role
    assert (await hub.request("POST", "/v1/accounts/s1/erase", role=None))[0] == 401
    status, problem = await hub.request("POST", "/v1/accounts/nobody/erase")
    assert (status, problem["code"]) == (404, "not_found")
    assert (await hub.request("POST", "/v1/accounts/s1%00/erase"))[0] == 404  # not an account id
    await hub.settle()
    assert (await hub.get("/v1/accounts/s1"))["name"] == "李雷"  # nothing was erased


async def test_a_key_is_stored_only_with_its_event_and_an_event_only_with_its_key(
    hub: Hub, database: Database,
) -> None:
    await hub.account("s1")

    def insert_with_key(app: IngestCampusCard, account_id: str, originator_id: UUID) -> None:
        assert app.keys is not None
        app.keys.create(account_id)
        app.recorder.insert_events([StoredEvent(originator_id, 1, "domain.accounts:Account.Opened", b"{}")])

    def refused(app: IngestCampusCard) -> None:
        with pytest.raises(IntegrityError):  # the event's version is taken: the new key is not stored
            insert_with_key(app, "s2", ids.account_id("s1"))
        with pytest.raises(IntegrityError):  # s1 has a key: the new event is not stored
            insert_with_key(app, "s1", ids.account_id("s3"))

    with psycopg.connect(database.url) as conn:
        events_before = conn.execute("SELECT count(*) FROM cardhub_events").fetchone()[0]
    await hub.app[SEAT].active().writer.run(refused)  # the writer's thread, whose keystore it is
    with psycopg.connect(database.url) as conn:
        keys = conn.execute("SELECT account_id FROM account_keys").fetchall()
        events_after = conn.execute("SELECT count(*) FROM cardhub_events").fetchone()[0]
    assert keys == [("s1",)] and events_after == events_before


def _opened_in_clear(app: IngestCampusCard, account_id: str, name: str) -> None:
    """An ``Account.Opened`` as hubs before actors and sealed names stored it (v1: the name in clear)."""
    sealed = Account.Opened(  # type: ignore[call-arg]
        originator_id=ids.account_id(account_id), originator_version=1, timestamp=Account.Opened.create_timestamp(),
        originator_topic=get_topic(Account), account_id=account_id, name={"alg": "none", "plaintext": ""},
        category="staff", groups=[], daily_limit_fen=None, valid_from=None, valid_until=None, actor=None,
    )
    stored = app.mapper.to_stored_event(sealed)
    state = {**json.loads(stored.state), "name": name}
    del state["class_version"], state["actor"]
    app.recorder.insert_events([dataclasses.replace(stored, state=json.dumps(state, ensure_ascii=False).encode())])


async def test_an_account_opened_in_clear_is_blanked_by_erasure_and_its_event_still_holds_the_name(
    hub: Hub, database: Database,
) -> None:
    await hub.app[SEAT].active().writer.run(lambda app: _opened_in_clear(app, "T001", NAME))
    await hub.settle()
    assert (await hub.get("/v1/accounts/T001"))["name"] == NAME  # read from its event, not from a view
    assert await asyncio.to_thread(_holding_the_name, database) == ["cardhub_events.state"]
    await hub.post("/v1/accounts/T001/close", {"ref": "close-1"})
    await hub.post("/v1/accounts/T001/erase", expect=200)
    await hub.settle()
    account = await hub.get("/v1/accounts/T001")
    assert account["name"] is None and account["erased"] is True
    # Events are immutable and hashed into the audit log: the clear name of before stays there (docs/audit.md).
    assert await asyncio.to_thread(_holding_the_name, database) == ["cardhub_events.state"]
    await _checkpoint(hub)
    report = await asyncio.to_thread(verify, database, hub.app[HUB_KEY].public_key())
    assert report.ok, {c.name: c.problem for c in report.checks if c.problem}


async def test_an_account_is_read_by_the_card_office_auditors_and_its_own_cardholder_only(
    hub: Hub, database: Database,
) -> None:
    await hub.account("s1")
    await hub.account("s2")
    await hub.settle()
    assert (await hub.get("/v1/accounts/s1", role="cardholder", scope="s1"))["name"] == "李雷"
    assert (await hub.get("/v1/accounts/s1", role="auditor"))["erased"] is False
    for role, scope in [("cardholder", "s2"), ("merchant", "s1"), ("manager", None)]:
        assert (await hub.request("GET", "/v1/accounts/s1", role=role, scope=scope))[0] == 403, role
    assert (await hub.request("GET", "/v1/accounts/s1", role=None))[0] == 401
    for path in ("/v1/accounts/nobody", "/v1/accounts/s1%00", "/v1/accounts/" + "9" * 33, "/v1/accounts/s1%0A"):
        assert (await hub.request("GET", path))[0] == 404, path
    with psycopg.connect(database.url, autocommit=True) as conn:  # a key replaced: the name does not open
        conn.execute("UPDATE account_keys SET key = decode(repeat('00', 32), 'hex') WHERE account_id = 's2'")
    status, problem = await hub.request("GET", "/v1/accounts/s2")
    assert (status, problem["code"]) == (500, "personal_data_damaged") and "李雷" not in json.dumps(problem)
