"""The phases of ``cardhub bench``: seeding, pre-signing, sustained upload, online singles, overload and after."""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import msgspec
from rich.console import Console

from device_sim.client import HubClient
from device_sim.device import SimDevice
from hub.bench.baselines import card_uid
from hub.bench.loadgen import LeanClient
from hub.bench.overload import overload, send
from hub.bench.processes import Processes
from hub.bench.report import Phase

console = Console()
AT = datetime(2026, 11, 25, 12, 0, tzinfo=timezone(timedelta(hours=8)))
RECOVERED_SECONDS = 5  # the online phase after the overload


async def seed(client: HubClient, devices: int, accounts: int, prefix: str) -> list[SimDevice]:
    await client.create("/v1/merchants", {"merchant_id": f"{prefix}-canteen", "name": "食堂", "category": "dining"})
    sims = [SimDevice(f"{prefix}-pos-{i:04d}", "pos") for i in range(devices)]
    semaphore = asyncio.Semaphore(32)

    async def device(d: SimDevice) -> None:
        async with semaphore:
            await client.create("/v1/devices", {"device_id": d.device_id, "kind": "pos", "public_key": d.public_key,
                                                "merchant_id": f"{prefix}-canteen"})

    async def account(i: int) -> None:
        async with semaphore:
            account_id = f"{prefix}-{i:06d}"
            await client.create("/v1/accounts", {"account_id": account_id, "name": "测试", "category": "student"})
            await client.create("/v1/cards", {"card_uid": card_uid(prefix, i), "account_id": account_id})
            await client.create(f"/v1/accounts/{account_id}/topups", {"amount": 100_000_000, "ref": f"{prefix}-{i}"})  # the most one top-up may be (DESIGN §9)

    await asyncio.gather(*(device(d) for d in sims), *(account(i) for i in range(accounts)))
    return sims


def presign(devices: list[SimDevice], per_device: int, accounts: int) -> None:
    n = 0
    for device in devices:
        for _ in range(per_device):
            device.purchase(card_uid("bench", n % accounts), 100 + n % 900, AT)
            n += 1


async def measure_sustained(session: aiohttp.ClientSession, url: str, devices: list[SimDevice],
                            args: argparse.Namespace, procs: Processes, reserve: int) -> Phase:
    """Uploads back to back for ``--seconds``, or until each device is down to the ``reserve``
    of pre-signed events the online phases need (with a ``--max-rate`` below what the hub takes)."""
    phase = Phase("sustained", f"{args.devices} devices × batches of {args.batch}, back to back")
    stop_at = time.monotonic() + args.seconds
    samples: list[tuple[float, int, int]] = []  # (t, store position, slowest projection position)

    client = lean_client(url)

    async def device_loop(device: SimDevice) -> None:
        while time.monotonic() < stop_at and len(device.pending) > reserve:
            batch = device.batch(min(args.batch, len(device.pending) - reserve))
            if await send(client, device, upload_body(batch), phase) not in (200, 503):
                phase.errors += 1
                return

    async def watch() -> None:
        while time.monotonic() < stop_at + 2:
            async with session.get(f"{url}/healthz") as resp:
                health = await resp.json()
            slowest = min(p["position"] for p in health["projections"].values())
            samples.append((time.monotonic(), health["store_position"], slowest))
            procs.sample_rss()
            await asyncio.sleep(0.1)

    cpu0 = procs.snapshot()
    t0 = time.perf_counter()
    watcher = asyncio.create_task(watch())
    from rich.progress import Progress

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("sustained upload", total=args.seconds)
        loops = asyncio.gather(*(device_loop(d) for d in devices))
        while not loops.done():
            progress.update(task, completed=min(args.seconds, time.perf_counter() - t0),
                            description=f"sustained upload: {phase.events / max(time.perf_counter() - t0, 1e-6):,.0f} ev/s")
            await asyncio.sleep(0.25)
        await loops
    phase.seconds = time.perf_counter() - t0
    await client.close()
    procs.charge(phase, cpu0)
    await watcher
    lags = _lags(samples)
    if lags:
        ordered = sorted(lags)
        phase.lag_p99_s = round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3)
        phase.lag_max_s = round(ordered[-1], 3)
    return phase


async def measure_overload(session: aiohttp.ClientSession, url: str, devices: list[SimDevice],
                           overload_devices: list[SimDevice], sustained_rate: float, args: argparse.Namespace,
                           procs: Processes) -> list[Phase]:
    """Offers ``--overload`` times the sustained rate, then measures online latency again."""
    offered = args.overload * sustained_rate
    phase = Phase("overload", f"{args.overload:g}× the sustained rate ({offered:,.0f} swipes/s) for "
                              f"{args.overload_seconds:g} s from {len(overload_devices)} devices")
    per_device = int(offered * args.overload_seconds / len(overload_devices)) + 2
    with console.status(f"pre-signing {per_device * len(overload_devices):,} events for the overload"):
        presign(overload_devices, per_device, args.accounts)
    client = lean_client(url)
    cpu0 = procs.snapshot()
    from rich.progress import Progress

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("overload", total=None)

        def show(elapsed: float) -> None:
            progress.update(task, description=f"overload {elapsed:.0f} s: {phase.events:,} accepted, "
                                              f"{phase.shed:,} × 503")
            procs.sample_rss()

        phase.recovery_s = round(await overload(client, overload_devices, events_per_s=offered,
                                                seconds=args.overload_seconds, phase=phase, on_progress=show), 2)
    await client.close()
    procs.charge(phase, cpu0)
    await caught_up(session, url)
    after = await measure_online(session, url, devices, argparse.Namespace(**{**vars(args), "online_seconds": RECOVERED_SECONDS}),
                                 procs)
    after.name, after.offered = "after overload", f"single events paced at {args.online_rate:,}/s, {RECOVERED_SECONDS} s"
    return [phase, after]


def lean_client(url: str) -> LeanClient:
    host, _, port = url.removeprefix("http://").partition(":")
    return LeanClient(host, int(port))


def upload_body(events: list[dict[str, Any]]) -> bytes:
    """The client encodes with msgspec: it shares the machine with the hub it measures."""
    return msgspec.json.encode({"events": events})


def _lags(samples: list[tuple[float, int, int]]) -> list[float]:
    """For each sample: the age of the oldest event the slowest view has not applied yet
    (0 when it has applied everything), to the resolution of the sampling."""
    lags = []
    for t, store, applied in samples:
        if applied >= store:
            lags.append(0.0)
            continue
        stored_at = next(ts for ts, position, _ in samples if position > applied)
        lags.append(max(0.0, t - stored_at))
    return lags


async def caught_up(session: aiohttp.ClientSession, url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        async with session.get(f"{url}/healthz") as resp:
            health = await resp.json()
        if all(p["position"] >= health["store_position"] for p in health["projections"].values()):
            return
        await asyncio.sleep(0.1)


async def measure_online(session: aiohttp.ClientSession, url: str, devices: list[SimDevice],
                         args: argparse.Namespace, procs: Processes, request_timeout_s: float | None = None) -> Phase:
    """Single events paced at ``args.online_rate``; with ``request_timeout_s``, a request not
    answered in time (or a connection refused) counts as an error instead of being waited for."""
    phase = Phase("online", f"single events paced at {args.online_rate:,}/s")
    interval = 1.0 / args.online_rate
    busy: set[str] = set()
    order = [d for d in devices if d.pending]
    tasks: set[asyncio.Task[None]] = set()

    client = lean_client(url)

    before = await _commit_histogram(session, url)
    cpu0 = procs.snapshot()
    t0 = time.perf_counter()
    n = 0
    while (elapsed := time.perf_counter() - t0) < args.online_seconds:
        due = int(elapsed / interval)
        while n < due:
            device = order[n % len(order)]
            n += 1
            if device.device_id in busy or not device.pending:
                phase.errors += 1  # the device is still waiting: counts as a miss, not sent
                continue
            busy.add(device.device_id)
            task = asyncio.create_task(_single(client, device, phase, busy, request_timeout_s))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.sleep(interval / 2)
    if tasks:
        await asyncio.gather(*tasks)
    phase.seconds = time.perf_counter() - t0
    await client.close()
    procs.charge(phase, cpu0)
    after = await _commit_histogram(session, url)
    phase.hub_commit_p50_ms = _histogram_quantile(before, after, 0.5)
    phase.hub_commit_p99_ms = _histogram_quantile(before, after, 0.99)
    return phase


async def _single(client: LeanClient, device: SimDevice, phase: Phase, busy: set[str],
                  request_timeout_s: float | None) -> None:
    """One single-event request of the online phase, timed into ``phase``; ``device`` is
    no longer ``busy`` once it is answered."""
    body = upload_body(device.batch(1))
    sent_at = time.time()
    t0 = time.perf_counter()
    try:
        request = client.post(f"/v1/devices/{device.device_id}/events", body)
        try:
            resp = await (request if request_timeout_s is None else asyncio.wait_for(request, request_timeout_s))
        except (TimeoutError, OSError):
            if request_timeout_s is None:
                raise
            phase.errors += 1
            return
        if resp.status != 200:
            phase.shed += resp.status == 503
            phase.errors += 1
            return
        phase.latencies_ms.append((time.perf_counter() - t0) * 1000)
        phase.sent_at.append(sent_at)
        answer: Any = resp.json()
        device.acknowledge(answer["results"])
        ok = answer["results"][0]["status"] == "accepted"
        phase.events += ok
        phase.errors += not ok
    finally:
        busy.discard(device.device_id)


async def _commit_histogram(session: aiohttp.ClientSession, url: str) -> dict[float, float]:
    """The hub's own enqueue-to-commit histogram (cumulative counts by upper bound, seconds)."""
    async with session.get(f"{url}/metrics") as resp:
        text = await resp.text()
    buckets = {}
    for line in text.splitlines():
        if line.startswith("cardhub_upload_commit_seconds_bucket"):
            bound = line.split('le="')[1].split('"')[0]
            buckets[float("inf") if bound == "+Inf" else float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets


def _histogram_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float | None:
    """Upper bound (ms) of the bucket holding quantile ``q`` of the uploads between two scrapes."""
    counts = sorted((bound, after[bound] - before.get(bound, 0.0)) for bound in after)
    if not counts or counts[-1][1] == 0:
        return None
    target = q * counts[-1][1]
    return next(bound * 1000 for bound, n in counts if n >= target)
