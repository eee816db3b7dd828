"""``cardhub backup`` of a running hub and ``cardhub restore``: the restored data directory proves
the checkpoint saved with the backup (``audit verify --checkpoint``), and a hub started on it
serves the balances as of the backup. Bad input: one line on stderr, exit 2, nothing written."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from psycopg import sql

from device_sim.device import SimDevice
from hub.service.keys import load_or_create_key
from hub.storage.backup import copy_cluster
from hub.storage.store import Database
from tests.e2e.processes import free_port, ready, start
from tests.e2e.processes import run_dir  # noqa: F401 - a fixture

NOON = datetime(2026, 11, 25, 12, 0, tzinfo=timezone(timedelta(hours=8)))
CLI = [sys.executable, "-c", "from hub.cli import main; main()"]
CARD = "ABCDEF01"
TOP_UP_FEN = 100_000


def cardhub(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != "CARDHUB_DATABASE_URL"}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, check=False, timeout=120, env=env)


class Campus:
    """One canteen POS and one cardholder on a hub spoken to over HTTP."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str) -> None:
        self.session, self.url = session, url
        self.admin = {"Authorization": f"Bearer {token}"}
        self.pos = SimDevice("pos-1", "pos")
        self.swipes = 0

    async def open(self) -> None:
        for path, body in [
            ("/v1/merchants", {"merchant_id": "canteen-1", "name": "第一食堂", "category": "dining"}),
            ("/v1/devices", {"device_id": "pos-1", "kind": "pos", "public_key": self.pos.public_key,
                             "merchant_id": "canteen-1"}),
            ("/v1/accounts", {"account_id": "s1", "name": "李雷", "category": "student"}),
            ("/v1/cards", {"card_uid": CARD, "account_id": "s1"}),
            ("/v1/accounts/s1/topups", {"amount": TOP_UP_FEN, "ref": "t1"}),
        ]:
            async with self.session.post(self.url + path, json=body, headers=self.admin) as resp:
                assert resp.status == 201, await resp.text()

    async def purchases(self, count: int) -> None:
        for _ in range(count):
            self.pos.purchase(CARD, 100, NOON + timedelta(seconds=self.swipes))
            self.swipes += 1
        async with self.session.post(f"{self.url}/v1/devices/pos-1/events", json={"events": self.pos.batch(count)}) as resp:
            answer = await resp.json()
        assert [r["status"] for r in answer["results"]] == ["accepted"] * count, answer
        self.pos.acknowledge(answer["results"])

    async def get(self, path: str) -> Any:
        async with self.session.get(self.url + path, headers=self.admin) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def settled_balance(self, total_fen: int) -> dict[str, Any]:
        """The balance once the ledger shows ``total_fen`` (or the last one read, after 10 s)."""
        balance: dict[str, Any] = {}
        for _ in range(100):
            async with self.session.get(self.url + "/v1/accounts/s1/balance", headers=self.admin) as resp:
                balance = await resp.json()  # 404 until the ledger has applied the account
            if resp.status == 200 and balance["total"] == total_fen:
                break
            await asyncio.sleep(0.1)
        return balance

    async def checkpoint_covering(self, tree_size: int) -> dict[str, Any]:
        for _ in range(100):
            checkpoint = await self.get("/v1/audit/checkpoint")
            if checkpoint["tree_size"] >= tree_size:
                break
            await asyncio.sleep(0.1)
        return checkpoint


def _stop(hub: subprocess.Popen[bytes]) -> None:
    if hub.poll() is None:
        os.killpg(hub.pid, signal.SIGTERM)
        hub.wait(20)


@pytest.mark.timeout(240)
async def test_a_backup_of_a_running_hub_restores_to_a_hub_that_proves_its_checkpoint_and_serves_its_balances(
    run_dir: Path,
) -> None:
    data, backup, restored, port = run_dir / "data", run_dir / "backup", run_dir / "restored", free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**{k: v for k, v in os.environ.items() if k != "CARDHUB_DATABASE_URL"}, "CARDHUB_CHECKPOINT_SECONDS": "0.2"}
    hub = start(["serve", "--data-dir", str(data), "--port", str(port)], run_dir / "hub.log", env=env)
    try:
        await ready(url, hub, run_dir / "hub.log")
        token = cardhub("token", "issue", "--role", "admin", "--data-dir", str(data)).stdout.strip()
        async with aiohttp.ClientSession() as session:
            campus = Campus(session, url, token)
            await campus.open()
            await campus.purchases(20)
            as_of_backup = await campus.settled_balance(TOP_UP_FEN - 20 * 100)
            assert as_of_backup["total"] == TOP_UP_FEN - 20 * 100, as_of_backup
            signed = await campus.checkpoint_covering(25)  # 5 card-office events, 20 swipes
            assert signed["tree_size"] >= 25

            took = await asyncio.to_thread(cardhub, "backup", "--data-dir", str(data), "--to", str(backup))
            assert took.returncode == 0, took.stderr
            await campus.purchases(10)  # after the backup: not in it
            assert (await campus.settled_balance(TOP_UP_FEN - 30 * 100))["total"] == TOP_UP_FEN - 30 * 100
        _stop(hub)
        assert hub.returncode == 0, (run_dir / "hub.log").read_text()[-3000:]
    finally:
        if hub.poll() is None:
            os.killpg(hub.pid, signal.SIGKILL)
            hub.wait()

    manifest = json.loads((backup / "manifest.json").read_text())
    saved = json.loads((backup / "checkpoint.json").read_text())
    assert manifest["source"] == "embedded" and manifest["checkpoint_tree_size"] == saved["tree_size"] >= 25
    assert not (backup / "hub.key").exists() and not (backup / "token.key").exists()

    put = cardhub("restore", "--from", str(backup), "--data-dir", str(restored), "--key", str(data / "hub.key"))
    assert put.returncode == 0, put.stderr
    assert sorted(p.name for p in restored.iterdir()) == ["hub.key", "pg"]
    verified = cardhub("audit", "verify", "--data-dir", str(restored), "--checkpoint", str(backup / "checkpoint.json"))
    assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr
    assert "all checks passed" in verified.stdout

    hub = start(["serve", "--data-dir", str(restored), "--port", str(port)], run_dir / "restored.log")
    try:
        await ready(url, hub, run_dir / "restored.log")
        token = cardhub("token", "issue", "--role", "admin", "--data-dir", str(restored)).stdout.strip()
        async with aiohttp.ClientSession() as session:
            campus = Campus(session, url, token)
            assert await campus.get("/v1/accounts/s1/balance") == as_of_backup
            async with session.get(url + "/v1/hub/key") as resp:
                assert (await resp.json())["public_key"] == (backup / "hub.pub").read_text().strip()
        _stop(hub)
    finally:
        if hub.poll() is None:
            os.killpg(hub.pid, signal.SIGKILL)
            hub.wait()


def _one_line_refusal(done: subprocess.CompletedProcess[str], words: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("cardhub: ") and words in done.stderr, done.stderr


def test_bad_backup_and_restore_input_is_one_line_and_writes_nothing(run_dir: Path, pg_server: Database) -> None:
    full = run_dir / "full"
    full.mkdir()
    (full / "keep").write_text("mine")
    _one_line_refusal(cardhub("backup", "--data-dir", str(run_dir / "none"), "--to", str(full)), "not an empty directory")
    _one_line_refusal(cardhub("backup", "--data-dir", str(run_dir / "none"), "--to", str(run_dir / "b")), "no hub key")
    _one_line_refusal(cardhub("backup", "--to", str(run_dir / "no" / "such" / "b")), "parent directory does not exist")

    key_dir = run_dir / "keys"
    load_or_create_key(key_dir)
    _one_line_refusal(cardhub("restore", "--from", str(full), "--data-dir", str(run_dir / "new"),
                              "--key", str(key_dir / "hub.key")), "not a cardhub backup")
    fake = run_dir / "fake-backup"
    (fake / "pg").mkdir(parents=True)
    (fake / "pg" / "PG_VERSION").write_text("18\n")
    (fake / "hub.pub").write_text("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
    (fake / "manifest.json").write_text(json.dumps({"format": "cardhub-backup/1"}))
    _one_line_refusal(cardhub("restore", "--from", str(fake), "--data-dir", str(run_dir / "new"),
                              "--key", str(key_dir / "hub.key")), "not the key of this backup's hub")
    _one_line_refusal(cardhub("restore", "--from", str(fake), "--data-dir", str(run_dir / "new"),
                              "--key", str(run_dir / "missing.key")), "--key")
    (run_dir / "garbage.key").write_text("not base64 at all ☃\n")
    _one_line_refusal(cardhub("restore", "--from", str(fake), "--data-dir", str(run_dir / "new"),
                              "--key", str(run_dir / "garbage.key")), "not a cardhub key file")
    _one_line_refusal(cardhub("restore", "--from", str(fake), "--data-dir", str(full),
                              "--key", str(key_dir / "hub.key")), "not an empty directory")
    (fake / "hub.pub").write_text(_public(key_dir) + "\n")
    _one_line_refusal(cardhub("restore", "--from", str(fake), "--data-dir", str(run_dir / "new"),
                              "--key", str(key_dir / "hub.key")), "does not verify")

    # An external server whose role may not replicate (CARDHUB_DATABASE_URL).
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS cardhub_no_replication")
        conn.execute(sql.SQL("CREATE ROLE cardhub_no_replication LOGIN NOREPLICATION"))
    try:
        url = Database({**pg_server.params, "user": "cardhub_no_replication", "dbname": "postgres"}).url
        refused = cardhub("backup", "--data-dir", str(key_dir), "--to", str(run_dir / "b"),
                          env={**os.environ, "CARDHUB_DATABASE_URL": url})
        _one_line_refusal(refused, "may not replicate")
    finally:
        with psycopg.connect(pg_server.url, autocommit=True) as conn:
            conn.execute("DROP ROLE cardhub_no_replication")

    assert sorted(p.name for p in run_dir.iterdir()) == [
        "fake-backup", "full", "garbage.key", "keys"], "nothing else was written"
    assert [p.name for p in full.iterdir()] == ["keep"]


def _public(key_dir: Path) -> str:
    from domain.wire import public_key_b64

    return public_key_b64(load_or_create_key(key_dir).public_key())


def test_a_restored_cluster_leaves_the_source_servers_socket_lock_behind(tmp_path: Path) -> None:
    """The embedded server keeps its socket in its data directory; pg_basebackup copies the
    socket's lock file (it names the source postmaster's pid). Restored beside a source server
    that still runs, the copy refused to start while that pid lived."""
    backup_pg, target_pg = tmp_path / "backup" / "pg", tmp_path / "restored" / "pg"
    (backup_pg / "base").mkdir(parents=True)
    (backup_pg / "PG_VERSION").write_text("18\n")
    (backup_pg / "base" / "1").write_bytes(b"\0" * 8192)
    (backup_pg / ".s.PGSQL.5432.lock").write_text(f"{os.getpid()}\n{backup_pg}\n")
    (backup_pg / "backup_manifest").write_text("{}")
    copy_cluster(backup_pg, target_pg)
    assert sorted(p.name for p in target_pg.rglob("*")) == ["1", "PG_VERSION", "base"]
