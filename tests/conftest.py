"""Shared fixtures: one real PostgreSQL for the session (the embedded one, or the server of
CARDHUB_DATABASE_URL), a fresh database per test, and a hub served over real HTTP."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from device_sim.device import SimDevice
from hub.config import Settings
from hub.service.app import create_app
from hub.service.token_keys import load_token_key
from hub.service.token_office import TokenOffice
from hub.service.typedefs import SEAT, SETTINGS
from hub.storage.store import Database, EmbeddedPostgres


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    url = os.environ.get("CARDHUB_DATABASE_URL")
    if url:
        yield Database.from_url(url)
        return
    embedded = EmbeddedPostgres(tmp_path_factory.mktemp("embedded") / "pg")
    database = embedded.start()
    yield database
    embedded.stop()


@pytest.fixture
def database(pg_server: Database) -> Iterator[Database]:
    name = f"test_{uuid4().hex[:16]}"
    yield pg_server.create_database(name)
    pg_server.drop_database(name)


@dataclass
class Hub:
    """A hub under test, spoken to over HTTP like any client."""

    client: TestClient
    app: web.Application
    database: Database
    tokens: dict[tuple[str, str], str] = field(default_factory=dict)

    def token(self, role: str = "admin", scope: str | None = None) -> str:
        """A token of the hub's token key, recorded in its store as the command line records it."""
        key = (role, scope or "")
        if key not in self.tokens:
            self.tokens[key] = self.new_token(role, scope)
        return self.tokens[key]

    def new_token(self, role: str = "admin", scope: str | None = None, *, ttl_s: int = 8 * 3600) -> str:
        with TokenOffice(self.database) as office:
            return office.issue(load_token_key(self.app[SETTINGS].data_dir), role, scope, ttl_s=ttl_s)

    def auth(self, role: str = "admin", scope: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, scope)}"}

    async def request(self, method: str, path: str, body: Any = None, *, role: str | None = "admin",
                      scope: str | None = None, expect: int | None = None, **kwargs: Any) -> tuple[int, Any]:
        headers = self.auth(role, scope) if role else {}
        resp = await self.client.request(method, path, json=body, headers=headers, **kwargs)
        data = await resp.json(content_type=None) if resp.content_length != 0 else None
        if expect is not None:
            assert resp.status == expect, (resp.status, data)
        return resp.status, data

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        kwargs.setdefault("expect", 201)
        return (await self.request("POST", path, body, **kwargs))[1]

    async def get(self, path: str, **kwargs: Any) -> Any:
        kwargs.setdefault("expect", 200)
        return (await self.request("GET", path, **kwargs))[1]

    async def merchant(self, merchant_id: str = "canteen-1", category: str = "dining") -> None:
        await self.post("/v1/merchants", {"merchant_id": merchant_id, "name": "第一食堂", "category": category})

    async def pos(self, device_id: str = "pos-1", merchant_id: str = "canteen-1") -> SimDevice:
        device = SimDevice(device_id, "pos")
        await self.post("/v1/devices", {"device_id": device_id, "kind": "pos", "public_key": device.public_key,
                                        "merchant_id": merchant_id, "location": "第一食堂 3号窗口"})
        return device

    async def account(self, account_id: str, *, cash: int = 0, subsidy: int = 0, card: str | None = None,
                      **fields: Any) -> None:
        body = {"account_id": account_id, "name": "李雷", "category": "student", "groups": ["students"], **fields}
        await self.post("/v1/accounts", body)
        if card:
            await self.post("/v1/cards", {"card_uid": card, "account_id": account_id})
        if cash:
            await self.post(f"/v1/accounts/{account_id}/topups", {"amount": cash, "ref": f"cash-{account_id}"})
        if subsidy:
            await self.post(f"/v1/accounts/{account_id}/subsidies", {"amount": subsidy, "ref": f"sub-{account_id}"})

    async def upload(self, device_id: str, events: list[dict[str, Any]], expect: int = 200) -> Any:
        resp = await self.client.post(f"/v1/devices/{device_id}/events", json={"events": events})
        data = await resp.json(content_type=None)
        assert resp.status == expect, (resp.status, data)
        return data

    async def send(self, device: SimDevice) -> list[dict[str, Any]]:
        """Uploads every pending event of the device; it forgets the acknowledged ones."""
        answer = await self.upload(device.device_id, device.pending)
        device.acknowledge(answer["results"])
        return answer["results"]

    async def signature_checks(self) -> float:
        """What ``cardhub_signature_checks`` counts: device signatures checked before the writer."""
        resp = await self.client.get("/metrics")
        for line in (await resp.text()).splitlines():
            if line.startswith("cardhub_signature_checks_total "):
                return float(line.split()[1])
        raise AssertionError("no cardhub_signature_checks_total in /metrics")

    async def settle(self) -> None:
        """Waits until every projection has applied every stored event."""
        app = self.app[SEAT].active().application
        position = await asyncio.to_thread(app.recorder.max_notification_id)
        await asyncio.to_thread(self.app[SEAT].active().projector.wait, position, 30.0)

    async def balance(self, account_id: str) -> dict[str, Any]:
        await self.settle()
        return await self.get(f"/v1/accounts/{account_id}/balance")


async def start_hub(database: Database, data_dir: Path, **settings: Any) -> Hub:
    app = create_app(Settings(data_dir=data_dir, **settings), database)
    client = TestClient(TestServer(app))
    await client.start_server()
    return Hub(client, app, database)


@pytest.fixture
async def hub(database: Database, tmp_path: Path) -> AsyncIterator[Hub]:
    h = await start_hub(database, tmp_path / "hub")
    yield h
    await h.client.close()
