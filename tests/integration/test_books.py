"""The books of DESIGN §11 in ``cardhub audit verify``: after top-ups, subsidies (one expiring),
purchases, a reversal, refunds, an expiry and a closure, the identity holds, every term is
printed by name in ¥ and fen, and a broken term makes verify fail."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from hub.audit import audit_log
from hub.service.typedefs import HUB_KEY, POOL, SEAT
from hub.storage.store import Database
from tests.conftest import Hub

pytestmark = pytest.mark.timeout(180)
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
TERMS = ("top-ups", "subsidies", "balances", "purchases", "reversals", "refunds", "payouts", "expired subsidies")


def _verify(database: Database, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CARDHUB_DATABASE_URL": database.url, "COLUMNS": "400"}
    cmd = [sys.executable, "-c", "from hub.cli import main; main()", "audit", "verify", "--data-dir", str(data_dir)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=150, check=False)


async def test_verify_checks_and_prints_every_term_of_the_books(hub: Hub, database: Database, tmp_path: Path) -> None:
    now = [T0]
    hub.app[SEAT].active().application.clock = lambda: now[0]
    await hub.merchant()
    pos = await hub.pos()
    await hub.account("s1", cash=5000, subsidy=700, card="C0FFEE01")
    await hub.account("s2", cash=800, card="C0FFEE02")
    await hub.post("/v1/accounts/s1/subsidies", {"amount": 400, "ref": "dec15",
                                                 "expires_at": "2026-12-15T00:00:00+08:00"})
    for amount in (1000, 300, 250):
        pos.purchase("C0FFEE01", amount, T0)
    pos.purchase("C0FFEE02", 900, T0, offline=True, decision="approved")  # into overdraft
    pos.reversal("C0FFEE01", 2, T0 + timedelta(minutes=1))
    await hub.send(pos)
    await hub.post("/v1/accounts/s1/refunds", {"device": "pos-1", "seq": 1, "amount": 333, "reason": "r", "ref": "r1"})
    await hub.post("/v1/accounts/s1/refunds", {"device": "pos-1", "seq": 3, "amount": 250, "reason": "r", "ref": "r2"})
    now[0] = T0 + timedelta(days=20)
    await hub.post("/v1/accounts/s1/close", {"ref": "close-s1"})
    await hub.post("/v1/accounts/s2/topups", {"amount": 100, "ref": "collect"})
    await hub.settle()
    await audit_log.issue_checkpoint(hub.app[POOL], hub.app[HUB_KEY])

    done = await asyncio.to_thread(_verify, database, tmp_path / "hub")
    assert done.returncode == 0, done.stdout + done.stderr
    books = " ".join(line for line in done.stdout.splitlines() if "books" in line or "fen)" in line)
    for term in TERMS:
        assert term in books, (term, done.stdout)
    assert "top-ups ¥59.00 (5,900 fen)" in books and "payouts ¥" in books, done.stdout
    with psycopg.connect(database.url, autocommit=True) as conn:  # a refund that never was
        conn.execute("UPDATE cardhub_events SET state = convert_to(replace(convert_from(state, 'UTF8'),"
                     " '\"amount_fen\":250,', '\"amount_fen\":251,'), 'UTF8')"
                     " WHERE topic = 'domain.accounts:Account.RefundIssued'")
    done = await asyncio.to_thread(_verify, database, tmp_path / "hub")
    assert done.returncode == 1 and "off by 1 fen" in done.stdout, done.stdout



async def test_a_verify_during_uploads_brings_the_balances_to_the_snapshots_end(
        hub: Hub, database: Database, tmp_path: Path) -> None:
    """Events stored after the ledger's position (its view behind, as during uploads, possibly
    between a swipe's two events): verify adds their moves to the replayed balances, passes, and
    says so."""
    await hub.merchant()
    pos = await hub.pos()
    await hub.account("s1", cash=5000, card="C0FFEE01")
    pos.purchase("C0FFEE01", 1000, T0)
    await hub.send(pos)
    await hub.settle()
    await audit_log.issue_checkpoint(hub.app[POOL], hub.app[HUB_KEY])
    await asyncio.to_thread(hub.app[SEAT].active().projector.stop)  # the views stop where they are
    for amount in (300, 250):
        pos.purchase("C0FFEE01", amount, T0)
    await hub.send(pos)
    await hub.post("/v1/accounts/s1/topups", {"amount": 100, "ref": "late"})

    done = await asyncio.to_thread(_verify, database, tmp_path / "hub")
    assert done.returncode == 0, done.stdout + done.stderr
    books = " ".join(line for line in done.stdout.splitlines() if "books" in line or "fen)" in line)
    assert "top-ups ¥51.00 (5,100 fen)" in books and "purchases ¥15.50 (1,550 fen)" in books, done.stdout
    assert "balances ¥35.50 (3,550 fen)" in books and "moves of 5 events stored after the ledger's" in books, done.stdout

    # The ledger's position after a swipe's SwipeLog.Recorded and before its Account.Debited (an
    # upload's events, stored in one transaction): only the tracking record is moved, so the
    # ledger's view check fails, but not the books.
    with psycopg.connect(database.url, autocommit=True) as conn:
        row = conn.execute("SELECT min(notification_id) FROM cardhub_events WHERE notification_id >"
                           " (SELECT max(notification_id) FROM ledger_tracking)"
                           " AND topic = 'domain.devices:SwipeLog.Recorded'").fetchone()
        conn.execute("UPDATE ledger_tracking SET notification_id = %s", row)
    done = await asyncio.to_thread(_verify, database, tmp_path / "hub")
    books = " ".join(line for line in done.stdout.splitlines() if "books" in line or "fen)" in line)
    assert "balances ¥35.50 (3,550 fen)" in books and "MISMATCH" not in books, done.stdout
