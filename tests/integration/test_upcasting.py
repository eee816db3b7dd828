"""Stored shapes that changed, in PostgreSQL: an account snapshot as a hub before gates stored
it (no ``zones_inside``, no ``class_version``) is upcast when today's hub loads the account."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from device_sim.device import SimDevice
from domain import ids
from domain.actors import CLI
from hub.ingest.application import IngestCampusCard
from hub.service.app import application_env
from hub.storage.store import Database
from tests.conftest import Hub, start_hub

pytestmark = pytest.mark.timeout(120)
MON_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=timezone(timedelta(hours=8)))
CARD = "D0000001"


def _stamp(at: str) -> dict[str, str]:
    return {"_type_": "datetime_iso", "_data_": at}


# The state of the account at version 2 (opened, card assigned), as a hub before gates wrote it.
SNAPSHOT_BEFORE_GATES = {
    "timestamp": _stamp("2026-11-20T08:00:01.000000+00:00"),
    "topic": "domain.accounts:Account",
    "state": {
        "_created_on": _stamp("2026-11-20T08:00:00.000000+00:00"),
        "_modified_on": _stamp("2026-11-20T08:00:00.500000+00:00"),
        "account_id": "resident", "name": "李雷", "category": "student",
        "groups": ["students", "dorm-1-residents"], "daily_limit_fen": None, "valid_from": None,
        "valid_until": None, "subsidy_fen": 0, "cash_fen": 0, "credit_refs": {}, "spent_by_day": {},
        "card_uids": [CARD],
    },
}


def _older_hub_stored_the_account(database: Database) -> None:
    app = IngestCampusCard(env=application_env(database))
    try:
        app.open_account("resident", "李雷", "student", ["students", "dorm-1-residents"], actor=CLI)
        app.issue_card(CARD, "resident", actor=CLI)
        assert app.get_account("resident").version == 2
    finally:
        app.close()
    state = json.dumps(SNAPSHOT_BEFORE_GATES, ensure_ascii=False, separators=(",", ":")).encode()
    with psycopg.connect(database.url) as conn:
        conn.execute(
            "INSERT INTO cardhub_snapshots (originator_id, originator_version, topic, state)"
            " VALUES (%s, 2, 'eventsourcing.domain:Snapshot', %s)", (ids.account_id("resident"), state))


async def _swipe(hub: Hub, gate: SimDevice, direction: str, minutes: int) -> dict[str, object]:
    gate.gate(CARD, direction, MON_NOON + timedelta(minutes=minutes))
    return (await hub.send(gate))[-1]


async def test_an_account_snapshot_from_before_gates_is_upcast_and_its_gates_decide_on_it(
    database: Database, tmp_path: Path,
) -> None:
    await asyncio.to_thread(_older_hub_stored_the_account, database)
    hub = await start_hub(database, tmp_path / "hub")
    try:
        await hub.post("/v1/zones", {"zone": "dorm-1", "name": "一号宿舍楼", "anti_passback": True})
        await hub.post("/v1/access-rules", {"zone": "dorm-1", "group": "dorm-1-residents", "days": ["mon"],
                                            "from": "06:00", "to": "23:30"})
        gate = SimDevice("gate-east", "gate")
        await hub.post("/v1/devices", {"device_id": "gate-east", "kind": "gate", "public_key": gate.public_key,
                                       "zone": "dorm-1"})
        assert (await _swipe(hub, gate, "in", 0))["decision"] == "approved"
        assert (await _swipe(hub, gate, "in", 1))["reason"] == "anti_passback"
        assert (await _swipe(hub, gate, "out", 2))["decision"] == "approved"
        await hub.settle()
        occupancy = await hub.get("/v1/zones/dorm-1/occupancy", role="operator")
        assert occupancy["count"] == 0
    finally:
        await hub.client.close()
    with psycopg.connect(database.url) as conn:  # the old snapshot is read as stored, not rewritten
        rows = conn.execute("SELECT state FROM cardhub_snapshots WHERE originator_version = 2").fetchall()
    assert [json.loads(bytes(r[0])) for r in rows] == [SNAPSHOT_BEFORE_GATES]
