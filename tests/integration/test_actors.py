"""Who did what (DESIGN §12): after a session of every card-office command over HTTP, every
stored command event names its actor — the token's role, scope and jti — and every swipe-driven
event its device; ``cardhub audit verify`` counts them by role. Events an older hub stored
without actors (the literal JSON it wrote) are upcast with actor null, and verify passes on them
but not on one stored without an actor after actors were recorded."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from device_sim.device import SimDevice
from domain import ids
from domain.actors import CLI, actor_of, is_command_event, role_of
from domain.application import CampusCard
from hub.audit.verify import verify
from hub.service.keys import read_token
from hub.service.typedefs import HUB_KEY, TOKEN_KEYS
from hub.storage.store import Database
from tests.conftest import Hub, start_hub

pytestmark = pytest.mark.timeout(120)
AT = datetime(2026, 11, 25, 12, 0, tzinfo=timezone(timedelta(hours=8)))


def _stored(database: Database) -> list[tuple[Any, Any]]:
    """Every stored event (notification, decoded), in the global sequence."""
    app = CampusCard(env=database.eventsourcing_env())
    try:
        notifications = app.recorder.select_notifications(start=1, limit=100_000)
        return [(n, app.mapper.to_domain_event(n)) for n in notifications]
    finally:
        app.close()


def _actor(hub: Hub, role: str, scope: str | None = None) -> dict[str, Any]:
    return {"role": role, "scope": scope, "jti": read_token(hub.app[TOKEN_KEYS], hub.token(role, scope)).jti}


async def _every_command(hub: Hub) -> SimDevice:
    """Each card-office command once, by admin or operator as marked in the topics below."""
    await hub.merchant()  # admin
    pos = SimDevice("pos-1", "pos")
    await hub.post("/v1/devices", {"device_id": "pos-1", "kind": "pos", "public_key": pos.public_key,
                                   "merchant_id": "canteen-1"}, role="operator")
    await hub.post("/v1/zones", {"zone": "dorm-1", "name": "一号楼", "anti_passback": True}, role="operator")
    await hub.post("/v1/access-rules", {"zone": "dorm-1", "group": "students", "days": ["mon"], "from": "06:00",
                                        "to": "23:00"}, role="operator")
    gate = SimDevice("gate-1", "gate")
    await hub.post("/v1/devices", {"device_id": "gate-1", "kind": "gate", "public_key": gate.public_key,
                                   "zone": "dorm-1"}, role="operator")
    await hub.post("/v1/accounts", {"account_id": "s1", "name": "李雷", "category": "student",
                                    "groups": ["students"]}, role="operator")
    await hub.post("/v1/cards", {"card_uid": "C0FFEE01", "account_id": "s1"}, role="operator")
    await hub.post("/v1/accounts/s1/topups", {"amount": 1000, "ref": "t1"}, role="operator")
    await hub.post("/v1/accounts/s1/subsidies", {"amount": 500, "ref": "s1"}, role="admin")
    pos.purchase("C0FFEE01", 300, AT)
    await hub.send(pos)
    await hub.post("/v1/cards/C0FFEE01/lost", expect=200, role="admin")
    await hub.post("/v1/cards/C0FFEE01/found", expect=200, role="operator")
    await hub.post("/v1/cards/C0FFEE01/lost", expect=200, role="operator")
    await hub.post("/v1/cards", {"card_uid": "C0FFEE02", "account_id": "s1"}, role="admin")  # 补卡: cancels 01
    await hub.post("/v1/devices/gate-1/revoke", expect=200, role="admin")
    await hub.settle()
    await hub.get("/v1/accounts/s1/balance", role="auditor")
    return pos


BY_ADMIN = {"Merchant.Registered", "Account.Credited:subsidy", "Card.ReportedLost:1", "Card.Issued:C0FFEE02",
            "Card.Cancelled", "Account.CardAssigned:C0FFEE02", "Device.Revoked"}


def _what(event: Any) -> str:
    """A name for the command event, to say who should have done it."""
    name = type(event).__qualname__
    if name == "Account.Credited":
        return f"{name}:{event.kind}"
    if name in ("Card.Issued", "Account.CardAssigned"):
        return f"{name}:{event.card_uid}"
    return name


async def test_every_command_event_names_its_actor_and_every_swipe_its_device(hub: Hub, database: Database) -> None:
    await _every_command(hub)
    admin, operator = _actor(hub, "admin"), _actor(hub, "operator")
    lost = 0
    seen: Counter[str] = Counter()
    for notification, event in await asyncio.to_thread(_stored, database):
        actor = actor_of(event)
        if not is_command_event(event):
            assert actor == {"device": "pos-1"}, (notification.topic, actor)
            continue
        what = _what(event)
        if what == "Token.Issued":  # the callers' tokens, issued as the command line issues them
            assert actor == {"role": "cli"} and json.loads(notification.state)["actor"] == actor
            seen[what] += 1
            continue
        if what == "Card.ReportedLost":
            lost += 1
            what = f"{what}:{lost}"
        expected = _actor(hub, "auditor") if what.startswith("Access.") else admin if what in BY_ADMIN else operator
        assert actor == expected, (what, actor)
        assert json.loads(notification.state)["actor"] == expected  # stored as such, not derived
        seen[what.partition(":")[0]] += 1
    assert seen == Counter({"Merchant.Registered": 1, "Device.Registered": 2, "SwipeLog.Opened": 2,
                            "Zone.Created": 1, "Zone.RuleAdded": 1, "Account.Opened": 1, "Card.Issued": 2,
                            "Account.CardAssigned": 2, "Account.Credited": 2, "Card.ReportedLost": 2,
                            "Card.Found": 1, "Card.Cancelled": 1, "Device.Revoked": 1, "Access.Opened": 1,
                            "Access.Read": 1, "Token.Issued": 3})  # admin, operator, auditor
    await hub.settle()
    report = await asyncio.to_thread(verify, database, hub.app[HUB_KEY].public_key())
    assert report.ok, [(c.name, c.problem) for c in report.checks if c.problem]
    [line] = [c for c in report.checks if c.name.startswith("actors")]
    assert line.count == sum(seen.values()) and line.detail == "operator 12  admin 7  cli 3  auditor 2"


def test_a_command_from_the_command_line_names_the_cli() -> None:
    app = CampusCard()
    app.open_account("s1", "韩梅梅", "student", [], actor=CLI)
    [opened] = app.events.get(ids.account_id("s1"))
    assert opened.actor == {"role": "cli"} and role_of(actor_of(opened)) == "cli"
    with pytest.raises(AssertionError, match="not an actor"):
        app.open_account("s2", "韩梅梅", "student", [], actor={"role": "cli", "jti": None})  # type: ignore[arg-type]


def _stamp(at: str) -> dict[str, str]:
    return {"_type_": "datetime_iso", "_data_": at}


# Events exactly as a hub before actors stored them (class version 1: no actor, no class_version).
OLD_ID, OLD_CARD = "old-1", "ABCDEF99"
OLD_EVENTS = [
    (ids.merchant_id("canteen-9"), 1, "domain.devices:Merchant.Registered", {
        "timestamp": _stamp("2026-11-20T08:00:00.000000+00:00"), "originator_topic": "domain.devices:Merchant",
        "merchant_id": "canteen-9", "name": "第九食堂", "category": "dining"}),
    (ids.account_id(OLD_ID), 1, "domain.accounts:Account.Opened", {
        "timestamp": _stamp("2026-11-20T08:00:01.000000+00:00"), "originator_topic": "domain.accounts:Account",
        "account_id": OLD_ID, "name": "李雷", "category": "student", "groups": ["students"],
        "daily_limit_fen": None, "valid_from": None, "valid_until": None}),
    (ids.card_id(OLD_CARD), 1, "domain.cards:Card.Issued", {
        "timestamp": _stamp("2026-11-20T08:00:02.000000+00:00"), "originator_topic": "domain.cards:Card",
        "card_uid": OLD_CARD, "account_id": OLD_ID}),
    (ids.account_id(OLD_ID), 2, "domain.accounts:Account.CardAssigned", {
        "timestamp": _stamp("2026-11-20T08:00:02.000000+00:00"), "card_uid": OLD_CARD}),
    (ids.account_id(OLD_ID), 3, "domain.accounts:Account.Credited", {
        "timestamp": _stamp("2026-11-20T08:00:03.000000+00:00"), "account_id": OLD_ID, "kind": "topup",
        "amount_fen": 700, "ref": "old-ref", "recorded_at": "2026-11-20T08:00:03+00:00"}),
]


def _insert_old(database: Database, events: list[tuple[Any, int, str, dict[str, Any]]]) -> None:
    with psycopg.connect(database.url, autocommit=True) as conn:
        for originator_id, version, topic, state in events:
            conn.execute("INSERT INTO cardhub_events (originator_id, originator_version, topic, state)"
                         " VALUES (%s, %s, %s, %s)",
                         (originator_id, version, topic, json.dumps(state, ensure_ascii=False).encode()))


async def test_events_stored_before_actors_are_upcast_and_verify_passes(database: Database, tmp_path: Path) -> None:
    hub = await start_hub(database, tmp_path / "hub")  # creates the tables
    await hub.client.close()
    await asyncio.to_thread(_insert_old, database, OLD_EVENTS)
    hub = await start_hub(database, tmp_path / "hub")
    try:
        await hub.post(f"/v1/accounts/{OLD_ID}/topups", {"amount": 300, "ref": "new-ref"})
        await hub.post(f"/v1/cards/{OLD_CARD}/lost", expect=200)
        assert (await hub.balance(OLD_ID))["total"] == 1000
        await hub.settle()
        stored = await asyncio.to_thread(_stored, database)
        actors = [(type(e).__qualname__, actor_of(e)) for _, e in stored if is_command_event(e)]
        assert [a for _, a in actors[:5]] == [None] * 5  # upcast: before actors were recorded
        assert all(a is not None for _, a in actors[5:]) and len(actors) > 5
        report = await asyncio.to_thread(verify, database, hub.app[HUB_KEY].public_key())
        assert report.ok, [(c.name, c.problem) for c in report.checks if c.problem]
        [line] = [c for c in report.checks if c.name.startswith("actors")]
        assert "none 5" in line.detail and "before actors were recorded" in line.detail
        late = (ids.account_id(OLD_ID), 5, "domain.accounts:Account.Credited", {
            "timestamp": _stamp("2026-11-20T09:00:00.000000+00:00"), "account_id": OLD_ID, "kind": "topup",
            "amount_fen": 1, "ref": "late", "recorded_at": "2026-11-20T09:00:00+00:00"})
        await asyncio.to_thread(_insert_old, database, [late])  # no NOTIFY: the views need not see it
        report = await asyncio.to_thread(verify, database, hub.app[HUB_KEY].public_key())
        [line] = [c for c in report.checks if c.name.startswith("actors")]
        assert line.problem is not None and "stored after actors were recorded" in line.problem
    finally:
        await hub.client.close()
