"""The audit trail (DESIGN §4): the Merkle log over the event store, signed checkpoints,
proofs checked by a verifier that knows only the RFC, ``cardhub audit verify`` catching
tampering, and merchant settlement."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from device_sim.device import SimDevice
from domain import merkle
from domain.wire import CHECKPOINT_PREFIX, public_key_from_b64, verify_document
from hub.audit import audit_log
from hub.audit.report import Report
from hub.audit.verify import verify
from hub.service.typedefs import HUB_KEY, POOL
from hub.storage.store import Database
from tests.conftest import Hub, start_hub

pytestmark = pytest.mark.timeout(120)
AT = datetime(2026, 11, 25, 12, 0, tzinfo=timezone(timedelta(hours=8)))


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1, literally: the reference the hub's tree is checked against."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


async def _traffic(hub: Hub, n: int, device: SimDevice | None = None, start: int = 0) -> SimDevice:
    if device is None:
        await hub.merchant()
        device = await hub.pos()
        for i in range(3):
            await hub.account(f"s{i}", cash=10_000, card=f"C0FFEE{i:02X}")
    for i in range(start, start + n):
        device.purchase(f"C0FFEE{i % 3:02X}", 100 + i, AT + timedelta(minutes=i))
    device.reversal(f"C0FFEE{start % 3:02X}", device.last_seq - n + 1, AT + timedelta(hours=2))
    await hub.send(device)
    await hub.settle()
    return device


async def _checkpoint(hub: Hub) -> dict[str, Any]:
    await audit_log.issue_checkpoint(hub.app[POOL], hub.app[HUB_KEY])
    return await hub.get("/v1/audit/checkpoint", role="auditor")


async def _leaves(hub: Hub, size: int) -> list[bytes]:
    out: list[bytes] = []
    while len(out) < size:
        page = await hub.get(f"/v1/audit/leaves?start={len(out)}&end={min(size, len(out) + 1000)}", role="auditor")
        out += [base64.b64decode(leaf) for leaf in page["leaves"]]
    return out


async def test_checkpoint_is_signed_by_the_hub_key_and_its_root_is_the_tree_of_the_leaves(hub: Hub) -> None:
    hub.token("auditor")  # a token's issuance is an event too: before the count below
    await _traffic(hub, 10)
    checkpoint = await _checkpoint(hub)
    key = public_key_from_b64((await hub.get("/v1/hub/key", role=None))["public_key"])
    assert verify_document(CHECKPOINT_PREFIX, checkpoint, key)
    assert not verify_document(CHECKPOINT_PREFIX, {**checkpoint, "tree_size": checkpoint["tree_size"] - 1}, key)
    leaves = await _leaves(hub, checkpoint["tree_size"])
    assert _mth(leaves).hex() == checkpoint["root_hash"]
    # every leaf is one stored event, in the global sequence
    async with hub.app[POOL].acquire() as conn:
        events = await conn.fetchval("SELECT count(*) FROM cardhub_events")
    assert checkpoint["tree_size"] == events


async def test_inclusion_and_consistency_proofs_verify_for_several_sizes(hub: Hub) -> None:
    device = await _traffic(hub, 20)
    first = await _checkpoint(hub)
    await _traffic(hub, 25, device, start=20)
    second = await _checkpoint(hub)
    assert second["tree_size"] > first["tree_size"]
    leaves = await _leaves(hub, second["tree_size"])
    for size in sorted({1, 2, 3, 7, 8, 9, first["tree_size"], second["tree_size"]}):
        root = _mth(leaves[:size])
        for index in sorted({0, size // 2, size - 1}):
            proof = await hub.get(f"/v1/audit/proofs/inclusion?index={index}&tree_size={size}", role="auditor")
            path = [bytes.fromhex(h) for h in proof["hashes"]]
            assert merkle.verify_inclusion(index, size, merkle.leaf_hash(leaves[index]), path, root)
            assert not merkle.verify_inclusion(index, size, merkle.leaf_hash(leaves[index] + b"x"), path, root)
    for a, b in [(1, 5), (4, 8), (7, 13), (first["tree_size"], second["tree_size"])]:
        proof = await hub.get(f"/v1/audit/proofs/consistency?first={a}&second={b}", role="auditor")
        path = [bytes.fromhex(h) for h in proof["hashes"]]
        assert merkle.verify_consistency(a, b, _mth(leaves[:a]), _mth(leaves[:b]), path)
    # the two signed checkpoints: today's log extends yesterday's
    proof = await hub.get(f"/v1/audit/proofs/consistency?first={first['tree_size']}&second={second['tree_size']}",
                          role="auditor")
    assert merkle.verify_consistency(first["tree_size"], second["tree_size"], bytes.fromhex(first["root_hash"]),
                                     bytes.fromhex(second["root_hash"]), [bytes.fromhex(h) for h in proof["hashes"]])


async def test_audit_routes_refuse_bad_ranges_and_other_roles(hub: Hub) -> None:
    await _traffic(hub, 3)
    size = (await _checkpoint(hub))["tree_size"]
    for path in (f"/v1/audit/proofs/inclusion?index={size}&tree_size={size}",
                 f"/v1/audit/proofs/inclusion?index=0&tree_size={size + 1}",
                 "/v1/audit/proofs/consistency?first=5&second=4", "/v1/audit/proofs/consistency?first=0&second=4",
                 "/v1/audit/leaves?start=3&end=3", "/v1/audit/leaves?start=0&end=1001",
                 "/v1/audit/leaves?start=x&end=2"):
        status, problem = await hub.request("GET", path, role="auditor")
        assert status == 422 and problem["code"] == "invalid", (path, problem)
    for role, scope in (("cardholder", "s0"), ("merchant", "canteen-1"), ("manager", None), ("operator", None)):
        for path in ("/v1/audit/checkpoint", "/v1/audit/leaves?start=0&end=1", "/v1/audit/events",
                     "/v1/audit/proofs/inclusion?index=0&tree_size=1", "/v1/audit/proofs/consistency?first=1&second=1"):
            status, _ = await hub.request("GET", path, role=role, scope=scope)
            assert status == 403, (role, path)
    assert (await hub.request("GET", "/v1/audit/checkpoint", role=None))[0] == 401


async def test_audit_events_are_the_envelopes_as_signed_with_their_results(hub: Hub) -> None:
    device = await _traffic(hub, 6)
    page = await hub.get("/v1/audit/events?card=C0FFEE01&limit=1", role="auditor")
    item = page["items"][0]
    assert item["envelope"]["card"] == "C0FFEE01" and "sig" in item["envelope"]
    assert item["result"]["status"] == "accepted" and item["result"]["decision"] == "approved"
    rest = await hub.get(f"/v1/audit/events?card=C0FFEE01&cursor={page['next']}", role="auditor")
    assert [i["envelope"]["seq"] for i in [item, *rest["items"]]] == [5, 2]  # newest first
    everything = await hub.get(f"/v1/audit/events?device={device.device_id}", role="admin")
    assert [i["envelope"]["seq"] for i in everything["items"]] == list(range(7, 0, -1))
    timed = await hub.get("/v1/audit/events?from=2026-11-25T12:02:00%2B08:00&to=2026-11-25T12:04:00%2B08:00",
                          role="auditor")
    assert [i["envelope"]["seq"] for i in timed["items"]] == [4, 3]
    by_account = await hub.get("/v1/audit/events?account=s2", role="auditor")
    assert {i["envelope"]["card"] for i in by_account["items"]} == {"C0FFEE02"}
    # an inclusion proof for one of them, from its leaf index
    size = (await _checkpoint(hub))["tree_size"]
    leaves = await _leaves(hub, size)
    proof = await hub.get(f"/v1/audit/proofs/inclusion?index={item['leaf_index']}&tree_size={size}", role="auditor")
    assert merkle.verify_inclusion(item["leaf_index"], size, merkle.leaf_hash(leaves[item["leaf_index"]]),
                                   [bytes.fromhex(h) for h in proof["hashes"]], _mth(leaves))


async def test_settlement_per_local_day_as_json_and_csv(hub: Hub) -> None:
    await _traffic(hub, 4)  # 100+101+102+103 at 12:00–12:03 local; the first voided
    body = await hub.get("/v1/merchants/canteen-1/settlement?date=2026-11-25", role="merchant", scope="canteen-1")
    assert body["purchases"] == {"count": 4, "amount": 406}
    assert body["reversals"] == {"count": 1, "amount": 100}
    assert body["net"] == 306 and body["time_zone"] == "Asia/Shanghai"
    assert body["devices"][0]["device_id"] == "pos-1"
    other_day = await hub.get("/v1/merchants/canteen-1/settlement?date=2026-11-24", role="auditor")
    assert other_day["purchases"] == {"count": 0, "amount": 0} and other_day["net"] == 0
    resp = await hub.client.get("/v1/merchants/canteen-1/settlement?date=2026-11-25",
                                headers={**hub.auth("auditor"), "Accept": "text/csv"})
    assert resp.status == 200 and resp.content_type == "text/csv"
    lines = (await resp.text()).splitlines()
    assert lines[0].startswith("merchant_id,date,time_zone,device_id")
    assert lines[-1] == "canteen-1,2026-11-25,Asia/Shanghai,TOTAL,4,406,1,100,306,0,0"  # refunds last (§11)
    assert (await hub.request("GET", "/v1/merchants/canteen-1/settlement?date=2026-11-25",
                              role="merchant", scope="canteen-2"))[0] == 403
    assert (await hub.request("GET", "/v1/merchants/canteen-1/settlement?date=25.11.2026", role="admin"))[0] == 422
    assert (await hub.request("GET", "/v1/merchants/nobody/settlement", role="admin"))[0] == 404


def _failed(report: Report) -> dict[str, str]:
    return {c.name: c.problem for c in report.checks if c.problem is not None}


async def _verified(hub: Hub, database: Database) -> Report:
    key = hub.app[HUB_KEY].public_key()
    return await asyncio.to_thread(verify, database, key)


async def test_verify_passes_on_an_honest_log(hub: Hub, database: Database) -> None:
    await _traffic(hub, 30)
    await _checkpoint(hub)
    report = await _verified(hub, database)
    assert report.ok, _failed(report)
    names = {c.name: c.count for c in report.checks}
    assert names["device signatures"] == 31 and names["view ledger: balances = replay"] == 3


async def test_verify_names_a_tampered_event(hub: Hub, database: Database) -> None:
    await _traffic(hub, 20)  # enough leaves for a stored node above the rewritten one
    await _checkpoint(hub)
    with psycopg.connect(database.url, autocommit=True) as conn:
        conn.execute(  # the amount of seq 3, rewritten in the stored JSON
            "UPDATE cardhub_events SET state = convert_to(replace(convert_from(state, 'UTF8'), '\"amount\":102',"
            " '\"amount\":2'), 'UTF8') WHERE position('\"amount\":102' in convert_from(state, 'UTF8')) > 0"
        )
    failed = _failed(await _verified(hub, database))
    assert "seq 3" in failed["device signatures"]
    assert "root" in failed["latest checkpoint: hub signature and root"]
    # the lowest stored node above the rewritten event's leaf
    assert f"level={merkle.STORED_FROM}" in failed["view audit: audit_nodes = replay"]


async def test_verify_names_a_deleted_event(hub: Hub, database: Database) -> None:
    await _traffic(hub, 5)
    await _checkpoint(hub)
    with psycopg.connect(database.url, autocommit=True) as conn:
        gone = conn.execute("SELECT notification_id FROM cardhub_events ORDER BY notification_id DESC"
                            " OFFSET 2 LIMIT 1").fetchone()[0]
        conn.execute("DELETE FROM cardhub_events WHERE notification_id = %s", (gone,))
    failed = _failed(await _verified(hub, database))
    assert "latest checkpoint: hub signature and root" in failed
    assert f"notification {gone}" in failed["Merkle tree over the event store"]
    assert "view audit: audit_leaves = replay" in failed


async def test_verify_names_an_edited_balance(hub: Hub, database: Database) -> None:
    await _traffic(hub, 5)
    await _checkpoint(hub)
    with psycopg.connect(database.url, autocommit=True) as conn:
        conn.execute("UPDATE balances SET cash_fen = cash_fen + 100 WHERE account_id = 's1'")
    failed = _failed(await _verified(hub, database))
    assert list(failed) == ["view ledger: balances = replay"]
    assert "account_id='s1'" in failed["view ledger: balances = replay"]
    assert "cash_fen" in failed["view ledger: balances = replay"]


async def test_cli_verify_with_a_saved_checkpoint(hub: Hub, database: Database, tmp_path: Path) -> None:
    device = await _traffic(hub, 5)
    saved = tmp_path / "checkpoint.json"
    saved.write_text(json.dumps(await _checkpoint(hub)))
    await _traffic(hub, 5, device, start=5)
    await _checkpoint(hub)
    env = {**os.environ, "CARDHUB_DATABASE_URL": database.url}
    cmd = [sys.executable, "-c", "from hub.cli import main; main()", "audit", "verify",
           "--data-dir", str(tmp_path / "hub"), "--checkpoint", str(saved)]
    done = await asyncio.to_thread(subprocess.run, cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "saved checkpoint" in done.stdout and "all checks passed" in done.stdout
    # a checkpoint the hub never signed
    forged = json.loads(saved.read_text())
    forged["root_hash"] = "00" * 32
    saved.write_text(json.dumps(forged))
    done = await asyncio.to_thread(subprocess.run, cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "MISMATCH" in done.stdout
    saved.write_text("{}")
    done = await asyncio.to_thread(subprocess.run, cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("cardhub: --checkpoint")





async def test_the_tree_resumes_after_a_restart(database: Database, tmp_path: Path) -> None:
    """The audit projection continues the stored tree (its right edge read back), exactly once."""
    first = await start_hub(database, tmp_path / "hub")
    try:
        device = await _traffic(first, 7)
    finally:
        await first.client.close()
    second = await start_hub(database, tmp_path / "hub")
    try:
        await _traffic(second, 9, device, start=7)
        checkpoint = await _checkpoint(second)
        assert _mth(await _leaves(second, checkpoint["tree_size"])).hex() == checkpoint["root_hash"]
        report = await _verified(second, database)
        assert report.ok, _failed(report)
    finally:
        await second.client.close()
