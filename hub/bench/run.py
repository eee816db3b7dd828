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
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from eventsourcing.utils import get_topic
from rich.console import Console

from device_sim.client import HubClient
from domain.application import CampusCard
from domain.devices import SwipeLog
from hub.bench.baselines import ceiling, embedded_url, naive
from hub.bench.phases import (
    RECOVERED_SECONDS,
    measure_online,
    measure_overload,
    measure_sustained,
    presign,
    seed,
)
from hub.bench.lunch import backlog_devices, measure_lunch, presign_backlogs
from hub.bench.processes import Processes
from hub.bench.report import Phase, print_report
from hub.bench.spawn import free_port, wait_ready
from hub.config import ACCOUNTS_MAX, DEVICES_MAX, UPLOAD_MAX_EVENTS, ConfigError, Settings, real_number, whole_number
from hub.service.token_office import issue_from_data_dir
from hub.storage.server_settings import read_settings, stalling_settings

console = Console()
JSON = {"Content-Type": "application/json"}


async def run_bench(args: argparse.Namespace) -> int:
    _check_presigned(args)
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
        db_url = args.url or embedded_url(data_dir)
        procs = Processes(hub.pid, pg_pid, db_url)
        server = _server(db_url)
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
    results["server"] = server
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
            devices = await seed(client, args.devices, args.accounts, "bench")
            naive_devices = await seed(client, 1, 50, "naive")
            overload_devices = await seed(client, args.devices if args.overload else 0, 0, "overload")
            backlogs = await seed(client, backlog_devices(args), 0, "lunch")
        console.print(f"seeded in {time.perf_counter() - started:.1f} s")
        per_device = max(1, int(args.seconds * args.max_rate / args.devices))
        with console.status(f"pre-signing {per_device * args.devices:,} events"):
            online_seconds = args.online_seconds * (2 if backlogs else 1) + RECOVERED_SECONDS
            reserve = args.online_rate * online_seconds // args.devices + 4  # per device, for the online phases
            presign(devices, per_device + reserve, args.accounts)
            if backlogs:
                presign_backlogs(backlogs, args)
        gc.collect()
        gc.freeze()  # the pre-signed events live to the end: keep the client's collector off them
        procs.sample_rss()
        sustained = await measure_sustained(session, url, devices, args, procs, reserve)
        rss = [r for _, r in procs.rss_samples]  # the sustained phase's, for the flatness check
        # Right after the burst, as at a lunch peak: the projections catch up, PostgreSQL
        # checkpoints and vacuums meanwhile, and the online swipes must not wait for them.
        online = await measure_online(session, url, devices, args, procs)
        phases = [sustained, online]
        if backlogs:
            phases += await measure_lunch(session, url, devices, backlogs, args, procs)
        if args.overload:
            phases += await measure_overload(session, url, devices, overload_devices, sustained.rate, args, procs)
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


def _write_trace(path: Path, phases: list[Phase]) -> None:
    """Every single-event request of the online phases: when it was sent and how long it took,
    to see when a tail happened (a percentile per second, beside the hub's or the disk's logs)."""
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["phase", "sent_at_unix_s", "latency_ms"])
        for phase in phases:
            out.writerows((phase.name, f"{t:.4f}", f"{ms:.3f}") for t, ms in zip(phase.sent_at, phase.latencies_ms, strict=True))
    console.print(f"latency trace written to {path}")


def _server(url: str) -> dict[str, Any]:
    """The PostgreSQL measured: its version, and the settings of it that stall commits
    (``hub.storage.server_settings``), printed before anything is measured."""
    with psycopg.connect(url) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        stalls = stalling_settings(read_settings(conn))
    server = {"version": str(version[0]) if version else "?", "stalling_settings": stalls}
    console.print(f"PostgreSQL {server['version']}" + "".join(f"\n[yellow]  {advice}[/]" for advice in stalls))
    return server


def _stored_swipes(url: str) -> int:
    """Device events in the event store, to set against the uploads the hub acknowledged."""
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {CampusCard.name}_events WHERE topic = %s",
                           (get_topic(SwipeLog.Recorded),)).fetchone()
    return int(row[0]) if row else 0


SECONDS = real_number(0, 3600)  # the length of a phase
PRESIGNED_MAX = 5_000_000  # events a phase signs before it starts, and holds in memory


def _check_presigned(args: argparse.Namespace) -> None:
    """Each phase's swipes are signed before it starts: a product of two bounded options can
    still ask for more than memory holds (the README's five-minute run signs 2.4 million)."""
    for names, events in (
        ("--seconds × --max-rate", args.seconds * args.max_rate),
        ("--online-seconds × --online-rate", args.online_seconds * args.online_rate),
        ("--online-seconds × --max-rate (lunch's backlogs)", args.online_seconds * args.max_rate),
        ("--overload × --max-rate × --overload-seconds", args.overload * args.max_rate * args.overload_seconds),
    ):
        if events > PRESIGNED_MAX:
            raise ConfigError(f"{names}: at most {PRESIGNED_MAX:,} events signed ahead of a phase, not {events:,.0f}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="use this PostgreSQL (libpq URI) (default: an embedded one in --data-dir)")
    parser.add_argument("--data-dir", type=Path, help="the hub's data (default: a fresh temporary directory)")
    parser.add_argument("--devices", type=whole_number(1, DEVICES_MAX), default=200, help="D: devices uploading at once")
    parser.add_argument("--accounts", type=whole_number(1, ACCOUNTS_MAX), default=5000,
                        help="A: accounts (each with a card)")
    parser.add_argument("--batch", type=whole_number(1, UPLOAD_MAX_EVENTS), default=20,
                        help="B: events per upload in the sustained phase")
    parser.add_argument("--seconds", type=SECONDS, default=30, help="T: length of the sustained phase")
    parser.add_argument("--max-rate", type=whole_number(1, 100_000), default=8000,
                        help="events pre-signed per second of T")
    parser.add_argument("--online-rate", type=whole_number(1, 100_000), default=1000,
                        help="single-event requests per second")
    parser.add_argument("--online-seconds", type=whole_number(1, 3600), default=10,
                        help="length of the online phase (and of lunch's)")
    parser.add_argument("--scenario", choices=("burst", "lunch"), default="burst",
                        help="burst: the online phase right after the sustained one; lunch: then online swipes again"
                             " while a fifth as many devices again upload offline backlogs")
    parser.add_argument("--lunch-batch", type=whole_number(1, UPLOAD_MAX_EVENTS), default=100,
                        help=f"events per upload of a lunch backlog (1 to {UPLOAD_MAX_EVENTS})")
    parser.add_argument("--naive-seconds", type=SECONDS, default=10, help="length of the naive path's run")
    parser.add_argument("--overload", type=real_number(0, 100, low_included=True), default=2.0,
                        help="offer this many times the sustained rate after the online phase (0: skip)")
    parser.add_argument("--overload-seconds", type=SECONDS, default=10, help="length of the overload phase")
    parser.add_argument("--json", type=Path,
                        help="where to write the figures (default: ./bench.json; with --flood ./bench-flood.json)")
    parser.add_argument("--trace", type=Path,
                        help="also write each online request's send time and latency to this CSV file (default: none)")
    from hub.bench.flood import add_flood_arguments

    add_flood_arguments(parser)
