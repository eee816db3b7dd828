"""Overload: a full writer queue answers 503 with Retry-After; nothing acknowledged is lost,
and a device that sends again later is served."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from device_sim.device import SimDevice
from hub.storage.store import Database
from tests.conftest import start_hub

NOON = datetime(2026, 11, 25, 12, 0, tzinfo=timezone(timedelta(hours=8)))
CARD = "ABCDEF01"


@pytest.mark.parametrize("bound", [{"queue_max_uploads": 1}, {"queue_max_events": 20}], ids=["uploads", "events"])
async def test_a_full_queue_sheds_with_503_and_the_devices_recover(
    database: Database, tmp_path: Path, bound: dict[str, int],
) -> None:
    hub = await start_hub(database, tmp_path / "hub", **bound)
    try:
        await hub.merchant()
        await hub.account("s1", cash=10_000_000, card=CARD)
        big = await hub.pos("pos-big")
        for _ in range(900):  # keeps the writer busy while the small uploads arrive
            big.purchase(CARD, 1, NOON)
        devices = [await hub.pos(f"pos-{n}") for n in range(40)]
        for device in devices:
            for _ in range(3):
                device.purchase(CARD, 10, NOON)

        async def post(device: SimDevice) -> tuple[int, dict[str, str], Any]:
            resp = await hub.client.post(f"/v1/devices/{device.device_id}/events", json={"events": device.pending})
            return resp.status, dict(resp.headers), await resp.json(content_type=None)

        answers = await asyncio.gather(post(big), *(post(d) for d in devices))
        shed = [(d, h, body) for d, (status, h, body) in zip([big, *devices], answers, strict=True) if status == 503]
        served = [(d, body) for d, (status, _, body) in zip([big, *devices], answers, strict=True) if status == 200]
        assert shed, "a tiny queue under 41 concurrent uploads must shed some"
        for _, headers, problem in shed:
            assert headers["Retry-After"] == "1" and headers["Content-Type"].startswith("application/problem+json")
            assert (problem["status"], problem["code"]) == (503, "overloaded")
        for device, body in served:
            assert all(r["status"] == "accepted" for r in body["results"])
            device.acknowledge(body["results"])

        for device in [d for d, _, _ in shed]:  # the load has dropped: the devices send again
            assert all(r["status"] == "accepted" for r in await hub.send(device))
        assert all(not d.pending for d in [big, *devices])
        assert (await hub.balance("s1"))["total"] == 10_000_000 - 900 - 40 * 3 * 10
    finally:
        await hub.client.close()
