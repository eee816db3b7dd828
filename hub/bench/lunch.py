"""``cardhub bench --scenario lunch``: a lunch peak. Online swipes at ``--online-rate`` from the
bench's devices while a fifth as many devices again, back on the network after an outage,
upload their offline backlogs back to back — the online answers must not wait behind them."""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta

import aiohttp
from rich.console import Console

from device_sim.device import SimDevice
from hub.bench.baselines import card_uid
from hub.bench.overload import send
from hub.bench.phases import lean_client, measure_online, upload_body
from hub.bench.processes import Processes
from hub.bench.report import Phase

console = Console()
BACKLOG_SHARE = 5  # one backlog device for every five online ones: 20 % of the devices


def backlog_devices(args: argparse.Namespace) -> int:
    return max(1, args.devices // BACKLOG_SHARE) if args.scenario == "lunch" else 0


def presign_backlogs(devices: list[SimDevice], args: argparse.Namespace) -> None:
    """Offline purchases of the last half hour, as many as the whole ``--max-rate`` could take
    for the phase, so no backlog runs dry before it ends."""
    per_device = int(args.max_rate * args.online_seconds / len(devices)) + 1
    start = datetime.now(UTC) - timedelta(minutes=30)
    n = 0
    for device in devices:
        for i in range(per_device):
            device.purchase(card_uid("bench", n % args.accounts), 100 + n % 900, start + timedelta(milliseconds=i),
                            offline=True)
            n += 1


async def measure_lunch(session: aiohttp.ClientSession, url: str, devices: list[SimDevice], backlogs: list[SimDevice],
                        args: argparse.Namespace, procs: Processes) -> list[Phase]:
    """The online phase again, with the backlogs uploading meanwhile; returns both phases."""
    backlog = Phase("lunch backlogs", f"{len(backlogs)} devices uploading offline backlogs in batches of "
                                      f"{args.lunch_batch}, back to back")
    client = lean_client(url)
    stop = asyncio.Event()

    async def device_loop(device: SimDevice) -> None:
        while not stop.is_set() and device.pending:
            if await send(client, device, upload_body(device.batch(args.lunch_batch)), backlog) not in (200, 503):
                backlog.errors += 1
                return

    cpu0 = procs.snapshot()
    t0 = time.perf_counter()
    loops = asyncio.gather(*(device_loop(d) for d in backlogs))
    await asyncio.sleep(0.5)  # every backlog device has an upload in flight
    with console.status(f"lunch: online swipes at {args.online_rate:,}/s beside {len(backlogs)} offline backlogs"):
        online = await measure_online(session, url, devices, args, procs)
    stop.set()
    await loops
    backlog.seconds = time.perf_counter() - t0
    await client.close()
    procs.charge(backlog, cpu0)
    online.name = "lunch"
    online.offered = f"single events paced at {args.online_rate:,}/s beside {len(backlogs)} devices' offline backlogs"
    return [online, backlog]
