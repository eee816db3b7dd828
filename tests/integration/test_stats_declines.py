"""Declined swipes on the dashboard (``stats_declines``): counted per local day, kind and reason,
shown to a manager as they are (no card in them), rebuilt with the view when an older hub left
the table out, and compared with its replay by ``cardhub audit verify``."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from device_sim.device import SimDevice
from hub.audit.verify import verify
from hub.service.typedefs import HUB_KEY
from hub.storage.store import Database
from projections.stats import StatsView
from tests.conftest import Hub, start_hub

CST = timezone(timedelta(hours=8))
NOON = datetime(2026, 11, 25, 12, 0, tzinfo=CST)
EVERY_DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


async def _a_day_of_declines(hub: Hub) -> None:
    """At a till: 1 approved, 2 insufficient_funds, 1 card_unknown, 1 reversal_invalid and 1
    declined by the till offline; one more insufficient_funds at 00:10 the next day. At a gate:
    2 outside_schedule, 1 no_access, 1 declined by the gate offline, 1 approved."""
    await hub.merchant()
    pos = await hub.pos()
    await hub.account("s1", cash=1_000, card="C0FFEE01")
    await hub.account("t1", cash=1_000, card="C0FFEE02", category="staff", groups=["staff"])
    pos.purchase("C0FFEE01", 600, NOON)
    pos.purchase("C0FFEE01", 600, NOON + timedelta(minutes=1))
    pos.purchase("C0FFEE01", 900, NOON + timedelta(hours=6))
    pos.purchase("DEADBEEF", 100, NOON + timedelta(minutes=2))
    pos.reversal("C0FFEE01", 2, NOON + timedelta(minutes=3))  # voids a declined sale
    pos.purchase("C0FFEE02", 100, NOON + timedelta(minutes=4), offline=True, decision="declined")
    pos.purchase("C0FFEE01", 900, NOON + timedelta(hours=12, minutes=10))  # the 26th, local
    await hub.post("/v1/zones", {"zone": "library", "name": "图书馆", "anti_passback": False})
    await hub.post("/v1/access-rules", {"zone": "library", "group": "students", "days": EVERY_DAY,
                                        "from": "07:00", "to": "22:00"})
    gate = SimDevice("library-main", "gate")
    await hub.post("/v1/devices", {"device_id": gate.device_id, "kind": "gate", "public_key": gate.public_key,
                                   "zone": "library"})
    gate.gate("C0FFEE01", "in", NOON)
    gate.gate("C0FFEE01", "out", NOON + timedelta(hours=10, minutes=30))  # 22:30: closed
    gate.gate("C0FFEE01", "in", NOON - timedelta(hours=6))  # 06:00: not yet open
    gate.gate("C0FFEE02", "in", NOON)  # staff have no rule here
    gate.gate("C0FFEE02", "in", NOON + timedelta(minutes=5), offline=True, decision="declined")
    for device in (pos, gate):
        results = await hub.send(device)
        assert all(r["status"] == "accepted" for r in results), results
    await hub.settle()


EXPECTED = [
    {"kind": "gate", "reason": "outside_schedule", "count": 2},
    {"kind": "gate", "reason": "no_access", "count": 1},
    {"kind": "gate", "reason": "offline_declined", "count": 1},
    {"kind": "pos", "reason": "insufficient_funds", "count": 2},
    {"kind": "pos", "reason": "card_unknown", "count": 1},
    {"kind": "pos", "reason": "offline_declined", "count": 1},
    {"kind": "pos", "reason": "reversal_invalid", "count": 1},
]


async def test_the_days_declines_are_counted_by_kind_and_reason_and_a_manager_sees_them_as_they_are(
    hub: Hub,
) -> None:
    await _a_day_of_declines(hub)
    for role in ("manager", "admin", "auditor"):
        board = await hub.get("/v1/stats/dashboard?date=2026-11-25", role=role)
        assert board["declines"] == EXPECTED, role
        assert "C0FFEE" not in str(board["declines"])
        assert board["refunds"] == {"count": 0, "amount": 0}
        assert board["exposure"]["offline_over_limit"] == {"events": 0, "fen": 0}  # no limits set here
    next_day = await hub.get("/v1/stats/dashboard?date=2026-11-26", role="manager")
    assert next_day["declines"] == [{"kind": "pos", "reason": "insufficient_funds", "count": 1}]
    assert (await hub.get("/v1/stats/dashboard?date=2026-11-24", role="manager"))["declines"] == []


@pytest.mark.parametrize("table", StatsView.added_later)
async def test_a_stats_view_made_before_one_of_its_tables_is_rebuilt_from_the_store(
    database: Database, tmp_path: Path, table: str,
) -> None:
    """A hub before exact statistics kept no ``stats_swipes``, one before the dashboard's declines
    no ``stats_declines``: the next hub empties the view and replays it, so a range's edge is
    exact and the day's declines are all there."""
    hub = await start_hub(database, tmp_path / "hub")
    try:
        await _a_day_of_declines(hub)
    finally:
        await hub.client.close()
    with psycopg.connect(database.url, autocommit=True) as conn:  # as a hub before that table left it
        conn.execute(f"DROP TABLE {table}")
    hub = await start_hub(database, tmp_path / "hub")
    try:
        await hub.settle()
        start, end = NOON - timedelta(seconds=30), NOON + timedelta(seconds=30)  # inside one hour: per swipe
        answer = await hub.get("/v1/stats/consumption", params={"from": start.isoformat(), "to": end.isoformat(),
                                                                "by": "merchant"})
        assert answer["total"] == {"count": 1, "amount": 600, "cards": 1}
        board = await hub.get("/v1/stats/dashboard?date=2026-11-25", role="manager")
        assert board["declines"] == EXPECTED
    finally:
        await hub.client.close()


async def test_audit_verify_names_an_edited_decline_count(hub: Hub, database: Database) -> None:
    await _a_day_of_declines(hub)
    key = hub.app[HUB_KEY].public_key()
    honest = await asyncio.to_thread(verify, database, key)
    assert {c.name: c.count for c in honest.checks}["view stats: stats_declines = replay"] == 10
    with psycopg.connect(database.url, autocommit=True) as conn:
        conn.execute("UPDATE stats_declines SET count = count - 1 WHERE reason = 'card_unknown'")
    report = await asyncio.to_thread(verify, database, key)
    failed = {c.name: c.problem for c in report.checks if c.problem is not None}
    assert list(failed) == ["view stats: stats_declines = replay"]
    assert "reason='card_unknown'" in failed["view stats: stats_declines = replay"]
