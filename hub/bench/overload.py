"""``cardhub bench``'s overload phase: more swipes than the hub can take, as devices make them.

Each device's swipes happen at a fixed rate whatever the hub answers (a queue at a till does
not wait for the network). A device has one upload in flight at a time and sends everything
it holds, up to 1,000 events; on ``503`` it keeps its events and waits out ``Retry-After``, as
DESIGN §2 asks of a device. So when the hub falls behind, the devices' backlogs grow, their
uploads get larger, and the hub must shed rather than queue without bound. When the swipes
stop, the phase goes on until every device has delivered what it holds: the time that takes
is the recovery.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import msgspec

from device_sim.device import SimDevice
from hub.bench.loadgen import LeanClient
from hub.config import UPLOAD_MAX_EVENTS


async def send(client: LeanClient, device: SimDevice, body: bytes, phase: Any) -> int:
    """One upload as a device makes it, counted into ``phase``: on ``503`` the device keeps its
    events and waits out ``Retry-After``; on ``200`` it forgets the acknowledged ones."""
    started = time.perf_counter()
    resp = await client.post(f"/v1/devices/{device.device_id}/events", body)
    if resp.status == 503:
        phase.shed += 1
        await asyncio.sleep(resp.retry_after or 1.0)
    elif resp.status == 200:
        phase.latencies_ms.append((time.perf_counter() - started) * 1000)
        answer: Any = resp.json()
        device.acknowledge(answer["results"])
        phase.events += sum(r["status"] == "accepted" for r in answer["results"])
        phase.errors += sum(r["status"] == "rejected" for r in answer["results"])
    return resp.status


async def overload(client: LeanClient, devices: list[SimDevice], *, events_per_s: float, seconds: float,
                   phase: Any, on_progress: Callable[[float], None]) -> float:
    """Runs the phase into ``phase`` (a bench Phase); returns the recovery time in seconds."""
    per_device_rate = events_per_s / len(devices)
    first_seq = {d.device_id: d.pending[0]["seq"] for d in devices if d.pending}
    t0 = time.monotonic()
    stop_offering = t0 + seconds

    def available_upto(device: SimDevice, now: float) -> int:
        """The last seq this device's swipes have produced by ``now``."""
        made = int((min(now, stop_offering) - t0) * per_device_rate)
        return first_seq[device.device_id] - 1 + made

    async def device_loop(device: SimDevice) -> None:
        while device.pending:
            now = time.monotonic()
            upto = available_upto(device, now)
            ready = [e for e in device.pending[:UPLOAD_MAX_EVENTS] if e["seq"] <= upto]
            if not ready:
                if now >= stop_offering:
                    return  # delivered everything its swipes produced
                await asyncio.sleep(1.0 / per_device_rate)
                continue
            status = await send(client, device, msgspec.json.encode({"events": ready}), phase)
            if status not in (200, 503):
                phase.errors += len(ready)
                return

    loops = asyncio.gather(*(device_loop(d) for d in devices if d.pending))
    while not loops.done():
        on_progress(time.monotonic() - t0)
        await asyncio.sleep(0.25)
    await loops
    phase.seconds = time.monotonic() - t0
    return max(0.0, time.monotonic() - stop_offering)
