"""A small campus driven over HTTP against a ``cardhub serve`` process, and the server sessions
it holds counted from ``pg_stat_activity`` by ``application_name`` (the connection budget's tests)."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import psycopg

from device_sim.device import SimDevice
from hub.storage.store import Database
from tests.e2e.processes import CLI

NOON = datetime(2026, 11, 25, 12, 0, tzinfo=timezone(timedelta(hours=8)))
CASH_FEN = 10_000_000


def sessions(server: Database, dbname: str) -> Counter[str]:
    """Server sessions on ``dbname`` by application_name, this query's own left out."""
    with psycopg.connect(server.url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT application_name, count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend' GROUP BY 1", (dbname,),
        ).fetchall()
    return Counter({name: n for name, n in rows})


def hub_sessions(counts: Counter[str]) -> int:
    """The hub's sessions: every cardhub pool but ``audit verify`` and the tools beside it."""
    return sum(n for name, n in counts.items() if name.startswith("cardhub") and name not in BESIDE_HUB)


BESIDE_HUB = {"cardhub audit verify", "cardhub token office", "cardhub start check"}


@dataclass
class Sampler:
    """Samples ``sessions`` in a thread until stopped; keeps the peak of each count."""

    server: Database
    dbname: str
    every_s: float = 0.05
    peak_hub: int = 0
    peak_verify: int = 0
    peak_by_name: Counter[str] = field(default_factory=Counter)
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            counts = sessions(self.server, self.dbname)
            self.samples += 1
            self.peak_hub = max(self.peak_hub, hub_sessions(counts))
            self.peak_verify = max(self.peak_verify, counts["cardhub audit verify"])
            for name, n in counts.items():
                self.peak_by_name[name] = max(self.peak_by_name[name], n)


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=180, check=False)


@dataclass
class Campus:
    """One canteen, ``devices`` POS and as many accounts with a card each, seeded over HTTP."""

    url: str
    admin: dict[str, str]
    devices: list[SimDevice]
    acknowledged: int = 0

    @staticmethod
    def card(n: int) -> str:
        return f"C0DE{n:08X}"

    @classmethod
    async def seed(cls, session: aiohttp.ClientSession, url: str, token: str, devices: int) -> Campus:
        admin = {"Authorization": f"Bearer {token}"}
        campus = cls(url, admin, [SimDevice(f"pos-{n}", "pos") for n in range(devices)])
        await campus.post(session, "/v1/merchants", {"merchant_id": "canteen-1", "name": "第一食堂", "category": "dining"})
        for n, pos in enumerate(campus.devices):
            await campus.post(session, "/v1/devices", {"device_id": pos.device_id, "kind": "pos",
                                                       "public_key": pos.public_key, "merchant_id": "canteen-1"})
            await campus.post(session, "/v1/accounts", {"account_id": f"s{n}", "name": f"学生{n}", "category": "student"})
            await campus.post(session, "/v1/cards", {"card_uid": cls.card(n), "account_id": f"s{n}"})
            await campus.post(session, f"/v1/accounts/s{n}/topups", {"amount": CASH_FEN, "ref": f"t{n}"})
        return campus

    async def post(self, session: aiohttp.ClientSession, path: str, body: object) -> None:
        async with session.post(self.url + path, json=body, headers=self.admin) as resp:
            assert resp.status == 201, await resp.text()

    async def uploads(self, session: aiohttp.ClientSession, batches: int, size: int = 20) -> None:
        """Every device uploads ``batches`` batches of ``size`` purchases, all devices at once."""
        await asyncio.gather(*(self._device(session, n, pos, batches, size) for n, pos in enumerate(self.devices)))

    async def _device(self, session: aiohttp.ClientSession, n: int, pos: SimDevice, batches: int, size: int) -> None:
        for b in range(batches):
            for i in range(size):
                pos.purchase(self.card(n), 100, NOON + timedelta(seconds=b * size + i))
            async with session.post(f"{self.url}/v1/devices/{pos.device_id}/events",
                                    json={"events": pos.batch(size)}) as resp:
                assert resp.status == 200, await resp.text()
                results = (await resp.json())["results"]
            assert all(r["status"] == "accepted" for r in results), results
            pos.acknowledge(results)
            self.acknowledged += len(results)

    async def dashboard_reads(self, session: aiohttp.ClientSession, until: asyncio.Event) -> int:
        """Managers' and cardholders' reads, 8 at a time, until ``until`` is set; how many."""
        done = 0

        async def reader(k: int) -> None:
            nonlocal done
            while not until.is_set():
                path = "/v1/stats/dashboard" if k % 2 else f"/v1/accounts/s{k % len(self.devices)}/balance"
                async with session.get(self.url + path, headers=self.admin) as resp:
                    assert resp.status == 200, await resp.text()
                done += 1

        await asyncio.gather(*(reader(k) for k in range(8)))
        return done

    async def current(self, session: aiohttp.ClientSession, timeout_s: float = 30) -> dict[str, object]:
        """Waits until every projection has applied the whole store; the last /healthz."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            async with session.get(self.url + "/healthz") as resp:
                health = await resp.json()
            if resp.status == 200 and all(p["lag_events"] == 0 for p in health["projections"].values()):
                return health
            assert asyncio.get_running_loop().time() < deadline, health
            await asyncio.sleep(0.1)

    async def spent(self, session: aiohttp.ClientSession) -> int:
        total = 0
        for n in range(len(self.devices)):
            async with session.get(f"{self.url}/v1/accounts/s{n}/balance", headers=self.admin) as resp:
                total += CASH_FEN - (await resp.json())["total"]
        return total


def serve_args(run_dir: Path, port: int) -> list[str]:
    return ["serve", "--data-dir", str(run_dir / "hub"), "--port", str(port)]
