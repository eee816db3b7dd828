"""``cardhub bench``: throughput and latency of the ingest path, beside the naive path and
the Ed25519 ceiling of this machine. Prints figures; asserts nothing."""

from __future__ import annotations

import argparse
import asyncio
import csv
import gc
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import psutil
import psycopg
from eventsourcing.utils import get_topic
from rich.console import Console

from device_sim.client import HubClient
from device_sim.device import SimDevice
from domain.application import CampusCard
from domain.devices import SwipeLog
from hub.bench.baselines import card_uid, ceiling, embedded_url, naive
from hub.bench.loadgen import LeanClient
from hub.bench.overload import overload, send
from hub.bench.report import Phase, print_report
from hub.bench.spawn import free_port, wait_ready
from hub.config import Settings
from hub.service.token_office import issue_from_data_dir

console = Console()
AT = datetime(2026, 11, 25, 12, 0, tzinfo=timezone(timedelta(hours=8)))
JSON = {"Content-Type": "application/json"}


class Processes:
    """CPU seconds and RSS of the hub process, of its projections' process and of the
    PostgreSQL server."""

    def __init__(self, hub_pid: int, pg_pid: int | None) -> None:
        self.hub = psutil.Process(hub_pid)
        self.pg_pid = pg_pid
        self.peak_rss = 0
        self.rss_samples: list[tuple[float, int]] = []

    def _pg(self) -> list[psutil.Process]:
        if self.pg_pid is None:
            return []
        try:
            root = psutil.Process(self.pg_pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu(self) -> tuple[float, float | None]:
        times = self.hub.cpu_times()
        hub = times.user + times.system
        if self.pg_pid is None:
            return hub, None
        return hub, _cpu_of(self._pg())

    def snapshot(self) -> tuple[float, float | None, float]:
        hub, pg = self.cpu()
        return hub, pg, self.projections_cpu()

    def charge(self, phase: Phase, before: tuple[float, float | None, float]) -> None:
        """Sets the phase's CPU seconds: what each process used since ``before``."""
        hub, pg, projections = self.snapshot()
        phase.hub_cpu_s = round(hub - before[0], 1)
        phase.pg_cpu_s = round(pg - before[1], 1) if pg is not None and before[1] is not None else None
        phase.projections_cpu_s = round(projections - before[2], 1)

    def projections_cpu(self) -> float:
        """The hub's child processes: the projections (and multiprocessing's tracker)."""
        try:
            return _cpu_of(self.hub.children(recursive=True))
        except psutil.NoSuchProcess:
            return 0.0

    def sample_rss(self) -> None:
        rss = self.hub.memory_info().rss
        self.peak_rss = max(self.peak_rss, rss)
        self.rss_samples.append((time.monotonic(), rss))


def _cpu_of(processes: list[psutil.Process]) -> float:
    total = 0.0
    for p in processes:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            continue
    return total


async def run_bench(args: argparse.Namespace) -> int:
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="cardhub-bench-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    if args.url:
        env["CARDHUB_DATABASE_URL"] = args.url
    log_path = data_dir / "hub.log"
    console.print(f"[bold]cardhub bench[/] — {os.cpu_count()} cores; hub at {url}; data in {data_dir}")
    with log_path.open("ab") as log:
        hub = subprocess.Popen([sys.executable, "-c", "from hub.cli import main; main()", "serve",
                                "--data-dir", str(data_dir), "--port", str(port)], stdout=log, stderr=log, env=env,
                               preexec_fn=_soft_open_files(args.hub_open_files) if args.flood else None)
    try:
        await wait_ready(url, hub, log_path)
        pg_pid = _postmaster_pid(data_dir) if not args.url else None
        procs = Processes(hub.pid, pg_pid)
        token = issue_from_data_dir(Settings.from_env(data_dir=data_dir, database_url=args.url), "admin")
        if args.flood:
            from hub.bench.flood import measure_flood

            results = await measure_flood(args, url, token, procs)
        else:
            results = await _measure(args, url, token, procs, data_dir)
    finally:
        if hub.poll() is None:
            hub.terminate()
            hub.wait(timeout=60)
    if args.flood:
        from hub.bench.flood import print_flood

        print_flood(results, args)
    else:
        print_report(results, args)
    return 0


def _soft_open_files(limit: int) -> Callable[[], None]:
    """For the hub's process: a soft open-file limit as a default shell or service gives."""

    def apply() -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard), hard))

    return apply


def _postmaster_pid(data_dir: Path) -> int | None:
    pid_file = data_dir / "pg" / "postmaster.pid"
    return int(pid_file.read_text().split()[0]) if pid_file.exists() else None


async def _measure(args: argparse.Namespace, url: str, token: str, procs: Processes, data_dir: Path) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=args.devices + 16)) as session:
        client = HubClient(session, url, token)
        started = time.perf_counter()
        with console.status(f"registering {args.devices} devices and {args.accounts} accounts"):
            devices = await _seed(client, args.devices, args.accounts, "bench")
            naive_devices = await _seed(client, 1, 50, "naive")
            overload_devices = await _seed(client, args.devices if args.overload else 0, 0, "overload")
        console.print(f"seeded in {time.perf_counter() - started:.1f} s")
        per_device = max(1, int(args.seconds * args.max_rate / args.devices))
        with console.status(f"pre-signing {per_device * args.devices:,} events"):
            online_events = args.online_rate * (args.online_seconds + RECOVERED_SECONDS)
            reserve = online_events // args.devices + 4  # per device, for the online phases
            _presign(devices, per_device + reserve, args.accounts)
        gc.collect()
        gc.freeze()  # the pre-signed events live to the end: keep the client's collector off them
        procs.sample_rss()
        sustained = await _sustained(session, url, devices, args, procs, reserve)
        rss = [r for _, r in procs.rss_samples]  # the sustained phase's, for the flatness check
        await _caught_up(session, url)  # the online phase measures its own load, not the backlog
        online = await _online(session, url, devices, args, procs)
        phases = [sustained, online]
        if args.overload:
            phases += await _overload_and_after(session, url, devices, overload_devices, sustained.rate, args, procs)
    if args.trace:
        _write_trace(args.trace, [p for p in phases if p.sent_at])
    stored = await asyncio.to_thread(_stored_swipes, args.url or embedded_url(data_dir))
    accepted = sum(p.events for p in phases)
    baseline = await asyncio.to_thread(naive, data_dir, args, naive_devices[0])
    verify_ceiling = ceiling(devices[0])
    tenth = rss[max(1, len(rss) // 10)] if len(rss) > 1 else rss[0]
    return {
        "cores": os.cpu_count(), "defaults": {k: v for k, v in vars(args).items() if k not in ("func", "data_dir")},
        **{p.name: p.summary() for p in phases}, "naive": baseline.summary(),
        "acknowledged_vs_stored": {"accepted_answers": accepted, "swipes_stored": stored, "lost": accepted - stored},
        "ed25519_verifies_per_s": verify_ceiling,
        "hub_rss_mb": {"first": round(rss[0] / 2**20, 1), "after_tenth": round(tenth / 2**20, 1),
                       "last": round(rss[-1] / 2**20, 1), "peak": round(procs.peak_rss / 2**20, 1)},
        "ratios": {"sustained_over_naive": round(sustained.rate / baseline.rate, 1) if baseline.rate else None,
                   "sustained_over_verify_ceiling_1_thread": round(sustained.rate / verify_ceiling["1_thread"], 2)},
    }


async def _seed(client: HubClient, devices: int, accounts: int, prefix: str) -> list[SimDevice]:
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


def _presign(devices: list[SimDevice], per_device: int, accounts: int) -> None:
    n = 0
    for device in devices:
        for _ in range(per_device):
            device.purchase(card_uid("bench", n % accounts), 100 + n % 900, AT)
            n += 1


async def _sustained(session: aiohttp.ClientSession, url: str, devices: list[SimDevice],
                     args: argparse.Namespace, procs: Processes, reserve: int) -> Phase:
    """Uploads back to back for ``--seconds``, or until each device is down to the ``reserve``
    of pre-signed events the online phases need (with a ``--max-rate`` below what the hub takes)."""
    phase = Phase("sustained", f"{args.devices} devices × batches of {args.batch}, back to back")
    stop_at = time.monotonic() + args.seconds
    samples: list[tuple[float, int, int]] = []  # (t, store position, slowest projection position)

    client = _lean(url)

    async def device_loop(device: SimDevice) -> None:
        while time.monotonic() < stop_at and len(device.pending) > reserve:
            batch = device.batch(min(args.batch, len(device.pending) - reserve))
            if await send(client, device, _body(batch), phase) not in (200, 503):
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


RECOVERED_SECONDS = 5


async def _overload_and_after(session: aiohttp.ClientSession, url: str, devices: list[SimDevice],
                              overload_devices: list[SimDevice], sustained_rate: float, args: argparse.Namespace,
                              procs: Processes) -> list[Phase]:
    """Offers ``--overload`` times the sustained rate, then measures online latency again."""
    offered = args.overload * sustained_rate
    phase = Phase("overload", f"{args.overload:g}× the sustained rate ({offered:,.0f} swipes/s) for "
                              f"{args.overload_seconds:g} s from {len(overload_devices)} devices")
    per_device = int(offered * args.overload_seconds / len(overload_devices)) + 2
    with console.status(f"pre-signing {per_device * len(overload_devices):,} events for the overload"):
        _presign(overload_devices, per_device, args.accounts)
    client = _lean(url)
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
    await _caught_up(session, url)
    after = await _online(session, url, devices, argparse.Namespace(**{**vars(args), "online_seconds": RECOVERED_SECONDS}),
                          procs)
    after.name, after.offered = "after overload", f"single events paced at {args.online_rate:,}/s, {RECOVERED_SECONDS} s"
    return [phase, after]


def _write_trace(path: Path, phases: list[Phase]) -> None:
    """Every single-event request of the online phases: when it was sent and how long it took,
    to see when a tail happened (a percentile per second, beside the hub's or the disk's logs)."""
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["phase", "sent_at_unix_s", "latency_ms"])
        for phase in phases:
            out.writerows((phase.name, f"{t:.4f}", f"{ms:.3f}") for t, ms in zip(phase.sent_at, phase.latencies_ms, strict=True))
    console.print(f"latency trace written to {path}")


def _stored_swipes(url: str) -> int:
    """Device events in the event store, to set against the uploads the hub acknowledged."""
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {CampusCard.name}_events WHERE topic = %s",
                           (get_topic(SwipeLog.Recorded),)).fetchone()
    return int(row[0]) if row else 0


def _lean(url: str) -> LeanClient:
    host, _, port = url.removeprefix("http://").partition(":")
    return LeanClient(host, int(port))


def _body(events: list[dict[str, Any]]) -> bytes:
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


async def _caught_up(session: aiohttp.ClientSession, url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        async with session.get(f"{url}/healthz") as resp:
            health = await resp.json()
        if all(p["position"] >= health["store_position"] for p in health["projections"].values()):
            return
        await asyncio.sleep(0.1)


async def _online(session: aiohttp.ClientSession, url: str, devices: list[SimDevice],
                  args: argparse.Namespace, procs: Processes, request_timeout_s: float | None = None) -> Phase:
    """Single events paced at ``args.online_rate``; with ``request_timeout_s``, a request not
    answered in time (or a connection refused) counts as an error instead of being waited for."""
    phase = Phase("online", f"single events paced at {args.online_rate:,}/s")
    interval = 1.0 / args.online_rate
    busy: set[str] = set()
    order = [d for d in devices if d.pending]
    tasks: set[asyncio.Task[None]] = set()

    client = _lean(url)

    async def one(device: SimDevice) -> None:
        body = _body(device.batch(1))
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
            task = asyncio.create_task(one(device))
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="use this PostgreSQL (libpq URI) (default: an embedded one in --data-dir)")
    parser.add_argument("--data-dir", type=Path, help="the hub's data (default: a fresh temporary directory)")
    parser.add_argument("--devices", type=int, default=200, help="D: devices uploading at once")
    parser.add_argument("--accounts", type=int, default=5000, help="A: accounts (each with a card)")
    parser.add_argument("--batch", type=int, default=20, help="B: events per upload in the sustained phase")
    parser.add_argument("--seconds", type=float, default=30, help="T: length of the sustained phase")
    parser.add_argument("--max-rate", type=int, default=8000, help="events pre-signed per second of T")
    parser.add_argument("--online-rate", type=int, default=1000, help="single-event requests per second")
    parser.add_argument("--online-seconds", type=int, default=10, help="length of the online phase")
    parser.add_argument("--naive-seconds", type=float, default=10, help="length of the naive path's run")
    parser.add_argument("--overload", type=float, default=2.0,
                        help="offer this many times the sustained rate after the online phase (0: skip)")
    parser.add_argument("--overload-seconds", type=float, default=10, help="length of the overload phase")
    parser.add_argument("--json", type=Path, help="where to write the figures (default: ./bench.json; with --flood ./bench-flood.json)")
    parser.add_argument("--trace", type=Path, help="also write each online request's send time and latency to this CSV file (default: none)")
    from hub.bench.flood import add_flood_arguments

    add_flood_arguments(parser)

