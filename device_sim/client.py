"""The hub seen from outside: admin calls with a bearer token, device uploads without one."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from device_sim.device import SimDevice

RETRY_LIMIT = 50  # uploads retried after 503 or a dropped connection before giving up
CAUGHT_UP_WAIT_S = 120  # how long the projections may take to apply every stored event


class HubError(RuntimeError):
    pass


class HubClient:
    def __init__(self, session: aiohttp.ClientSession, url: str, token: str | None) -> None:
        self.session = session
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.retries = 0

    async def call(self, method: str, path: str, body: Any = None, *, ok: tuple[int, ...] = (200, 201)) -> tuple[int, Any]:
        async with self.session.request(method, self.url + path, json=body, headers=self.headers) as resp:
            text = await resp.text()
            try:
                data = json.loads(text) if text else None
            except ValueError:
                data = text  # not JSON: a route the hub does not have, or a proxy's page
            if resp.status not in ok:
                raise HubError(f"{method} {path}: {resp.status} {data.get('detail') if isinstance(data, dict) else data}")
            return resp.status, data

    async def create(self, path: str, body: Any) -> Any:
        """POST that tolerates ``409``: what already exists from an earlier run is kept."""
        _, data = await self.call("POST", path, body, ok=(200, 201, 409))
        return data

    async def caught_up(self) -> None:
        """Waits until every projection has applied every stored event."""
        deadline = time.monotonic() + CAUGHT_UP_WAIT_S
        while True:
            _, health = await self.call("GET", "/healthz")
            if all(p["lag_events"] == 0 for p in health["projections"].values()):
                return
            if time.monotonic() > deadline:
                raise HubError(f"projections still behind after {CAUGHT_UP_WAIT_S} s: {health['projections']}")
            await asyncio.sleep(0.05)

    async def send(self, events: list[dict[str, Any]], device_id: str) -> dict[str, Any]:
        """One upload; retried on 503 (honouring Retry-After) and on dropped connections."""
        for _ in range(RETRY_LIMIT):
            try:
                async with self.session.post(
                    f"{self.url}/v1/devices/{device_id}/events", json={"events": events}
                ) as resp:
                    if resp.status == 503:
                        self.retries += 1
                        await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
                        continue
                    data = await resp.json(content_type=None)
                    if resp.status != 200:
                        raise HubError(f"upload {device_id}: {resp.status} {data}")
                    return data
            except (aiohttp.ClientConnectionError, TimeoutError):
                self.retries += 1
                await asyncio.sleep(0.2)
        raise HubError(f"upload {device_id}: gave up after {RETRY_LIMIT} tries")

    async def upload(self, device: SimDevice, batch_size: int) -> list[dict[str, Any]]:
        """Sends the device's oldest unacknowledged events; it forgets what the hub stored."""
        batch = device.batch(batch_size)
        if not batch:
            return []
        answer = await self.send(batch, device.device_id)
        device.acknowledge(answer["results"])
        return answer["results"]
