"""A real ``cardhub serve`` process on its embedded PostgreSQL, killed with SIGKILL mid-upload
and restarted on the same data directory: nothing acknowledged is lost, nothing counted twice."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import pytest

from device_sim.device import SimDevice
from hub.storage.store import EmbeddedPostgres

NOON = datetime(2026, 11, 25, 12, 0, tzinfo=timezone(timedelta(hours=8)))
CARD = "ABCDEF01"
CLI = [sys.executable, "-c", "from hub.cli import main; main()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HubProcess:
    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir, self.port = data_dir, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / "hub.log"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "CARDHUB_DATABASE_URL"}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*CLI, "serve", "--data-dir", str(self.data_dir), "--port", str(self.port)],
                env=env, stdout=subprocess.DEVNULL, stderr=log,
            )

    async def ready(self, session: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log_path.read_text()
            try:
                async with session.get(self.url + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.2)
        raise AssertionError("hub did not become ready")

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)


@pytest.fixture
def hub_process(tmp_path: Path) -> Iterator[HubProcess]:
    process = HubProcess(tmp_path / "data", free_port())
    yield process
    if process.proc is not None and process.proc.poll() is None:
        process.proc.kill()
        process.proc.wait()
    if (process.data_dir / "pg" / "PG_VERSION").exists():
        embedded = EmbeddedPostgres(process.data_dir / "pg")
        embedded.start()
        embedded.stop()


def cli(*args: str) -> str:
    return subprocess.run([*CLI, *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.mark.timeout(240)
async def test_a_killed_hub_keeps_every_acknowledged_event_and_takes_resends_as_duplicates(
    hub_process: HubProcess,
) -> None:
    hub_process.start()
    async with aiohttp.ClientSession() as session:
        await hub_process.ready(session)
        admin = {"Authorization": "Bearer " + cli("token", "issue", "--role", "admin", "--data-dir", str(hub_process.data_dir))}
        pos = SimDevice("pos-1", "pos")
        for path, body in [
            ("/v1/merchants", {"merchant_id": "canteen-1", "name": "第一食堂", "category": "dining"}),
            ("/v1/devices", {"device_id": "pos-1", "kind": "pos", "public_key": pos.public_key, "merchant_id": "canteen-1"}),
            ("/v1/accounts", {"account_id": "s1", "name": "李雷", "category": "student"}),
            ("/v1/cards", {"card_uid": CARD, "account_id": "s1"}),
            ("/v1/accounts/s1/topups", {"amount": 1_000_000, "ref": "t1"}),
        ]:
            async with session.post(hub_process.url + path, json=body, headers=admin) as resp:
                assert resp.status == 201, await resp.text()

        acknowledged: dict[int, dict] = {}

        async def upload(events: list[dict]) -> None:
            async with session.post(f"{hub_process.url}/v1/devices/pos-1/events", json={"events": events}) as resp:
                for result in (await resp.json())["results"]:
                    if result["status"] in ("accepted", "duplicate"):
                        acknowledged[result["seq"]] = result

        for n in range(300):
            pos.purchase(CARD, 100 + n, NOON + timedelta(seconds=n))
        batches = [pos.pending[i:i + 10] for i in range(0, 300, 10)]

        async def send_in_order() -> None:  # a device uploads one batch after another
            for batch in batches:
                await upload(batch)

        sender = asyncio.ensure_future(send_in_order())
        while len(acknowledged) < 60 and not sender.done():
            await asyncio.sleep(0.005)
        assert hub_process.signal(signal.SIGKILL) == -signal.SIGKILL  # mid-traffic
        with contextlib.suppress(aiohttp.ClientError):
            await sender
        assert 60 <= len(acknowledged) <= 300
        before = dict(acknowledged)

        hub_process.start()
        await hub_process.ready(session)
        pos.acknowledge(list(acknowledged.values()))
        for seq, original in sorted(before.items())[:20]:  # answers the device may never have seen
            await upload([next(e for e in _all(pos, batches) if e["seq"] == seq)])
            assert acknowledged[seq] == {**original, "status": "duplicate"}
        while pos.pending:
            batch = pos.batch(10)
            async with session.post(f"{hub_process.url}/v1/devices/pos-1/events", json={"events": batch}) as resp:
                answer = await resp.json()
            pos.acknowledge(answer["results"])
            for result in answer["results"]:
                acknowledged[result["seq"]] = result
        assert answer["next_seq"] == 301
        assert all(r["status"] in ("accepted", "duplicate") and r["decision"] == "approved" for r in acknowledged.values())

        spent = sum(100 + n for n in range(300))
        for _ in range(100):
            async with session.get(hub_process.url + "/v1/accounts/s1/balance", headers=admin) as resp:
                balance = await resp.json()
            if balance["total"] == 1_000_000 - spent:
                break
            await asyncio.sleep(0.1)
        assert balance == {"account_id": "s1", "cash": 1_000_000 - spent, "subsidy": 0, "total": 1_000_000 - spent}
    assert hub_process.signal(signal.SIGTERM) == 0
    assert not (hub_process.data_dir / "pg" / "postmaster.pid").exists(), "SIGTERM stops the embedded PostgreSQL"


def _all(pos: SimDevice, batches: list[list[dict]]) -> list[dict]:
    return [e for batch in batches for e in batch]
