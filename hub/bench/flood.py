"""``cardhub bench --flood``: does one device's flood delay other devices' single swipes?

Three phases at the same paced rate of single online swipes from ``--devices`` devices:
``quiet`` (nothing else), ``flood`` (one more device uploading 1,000-event batches back to back,
as a POS back online with a day's offline swipes would, or an attacker), and ``idle
connections`` (``--idle-connections`` TCP connections held open without a request, as many
forgotten keep-alives or a slowloris would). The hub is started with a soft open-file limit
of 1,024 (``--hub-open-files``), the common default, so the idle phase shows what the hub does
about it. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console
from rich.table import Table

from device_sim.client import HubClient
from device_sim.device import SimDevice
from hub.bench.baselines import card_uid
from hub.bench.overload import send
from hub.bench.phases import AT, caught_up, lean_client, measure_online, seed, upload_body
from hub.bench.processes import Processes
from hub.bench.report import Phase, fmt, write_figures
from hub.config import UPLOAD_MAX_EVENTS, real_number, whole_number

console = Console()
FLOOD_PRESIGN_PER_S = 6000  # flood events signed per second of the flood (more than the hub takes here)
CONNECT_TIMEOUT_S = 1.0  # idle phase: a connection the hub's backlog has no room for
CONNECT_FAILURES_MAX = 20
REQUEST_TIMEOUT_S = 5.0  # idle phase: a single swipe not answered in 5 s counts as an error


async def measure_flood(args: argparse.Namespace, url: str, token: str, procs: Processes) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=64)) as session:
        client = HubClient(session, url, token)
        with console.status(f"registering {args.devices} devices and {args.accounts} accounts"):
            singles = await seed(client, args.devices, args.accounts, "bench")
            (flooder,) = await seed(client, 1, 0, "flood")
        seconds = args.flood_seconds
        per_device = int(args.flood_rate * seconds * 3 / args.devices) + 4
        with console.status(f"pre-signing {per_device * args.devices + FLOOD_PRESIGN_PER_S * int(seconds):,} events"):
            for i, device in enumerate(singles):
                for n in range(per_device):
                    device.purchase(card_uid("bench", (i * per_device + n) % args.accounts), 100, AT)
            for n in range(int(FLOOD_PRESIGN_PER_S * seconds)):
                flooder.purchase(card_uid("bench", n % args.accounts), 1, AT)
        gc.collect()
        gc.freeze()  # the pre-signed events live to the end: keep the client's collector off them
        paced = argparse.Namespace(online_rate=args.flood_rate, online_seconds=seconds)
        await caught_up(session, url)
        quiet = await measure_online(session, url, singles, paced, procs)
        quiet.name, quiet.offered = "quiet", f"single swipes paced at {args.flood_rate}/s, nothing else"
        await caught_up(session, url)
        flood, during = await _flood(session, url, singles, flooder, paced, procs)
        await caught_up(session, url)
        idle, held = await _idle(session, url, singles, paced, procs, args.idle_connections)
    return {
        "cores": os.cpu_count(), "load_average": os.getloadavg(),
        "flood_settings": {k: v for k, v in vars(args).items() if k.startswith(("flood", "idle", "devices", "accounts"))},
        "quiet": quiet.summary(), "during flood": during.summary(), "flood": flood.summary(),
        "idle connections": idle.summary(), "idle_connections_held": held,
        "flood_p99_over_quiet_p99": _ratio(during.percentile(0.99), quiet.percentile(0.99)),
    }


async def _flood(session: aiohttp.ClientSession, url: str, singles: list[SimDevice], flooder: SimDevice,
                 paced: argparse.Namespace, procs: Processes) -> tuple[Phase, Phase]:
    flood = Phase("flood", f"one device, batches of {UPLOAD_MAX_EVENTS:,} events back to back")
    client = lean_client(url)
    stop = asyncio.Event()

    signed, flooder.pending = flooder.pending, []

    async def loop() -> None:
        sent = 0
        while not stop.is_set() and sent < len(signed):
            # The device holds one batch at a time here: acknowledging is then cheap for the
            # client, which shares the machine with the hub it measures.
            flooder.pending = signed[sent:sent + UPLOAD_MAX_EVENTS]
            status = await send(client, flooder, upload_body(flooder.pending), flood)
            if status not in (200, 503):
                flood.errors += 1
                return
            sent += UPLOAD_MAX_EVENTS - len(flooder.pending)

    t0 = time.perf_counter()
    task = asyncio.create_task(loop())
    await asyncio.sleep(0.5)  # the flood is under way before the single swipes start
    during = await measure_online(session, url, singles, paced, procs)
    during.name, during.offered = "during flood", f"single swipes paced at {paced.online_rate}/s beside the flood"
    stop.set()
    await task
    flood.seconds = time.perf_counter() - t0
    await client.close()
    return flood, during


async def _idle(session: aiohttp.ClientSession, url: str, singles: list[SimDevice], paced: argparse.Namespace,
                procs: Processes, count: int) -> tuple[Phase, dict[str, int]]:
    host, _, port = url.removeprefix("http://").partition(":")
    held: list[socket.socket] = []
    refused = 0
    for _ in range(count):
        try:
            held.append(socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S))
        except OSError:
            refused += 1
            if refused >= CONNECT_FAILURES_MAX:
                break  # the hub's backlog is full: it is not accepting
    await asyncio.sleep(1.0)  # the hub accepts them (or runs out of descriptors)
    phase = await measure_online(session, url, singles, paced, procs, request_timeout_s=REQUEST_TIMEOUT_S)
    phase.name, phase.offered = ("idle connections", f"single swipes paced at {paced.online_rate}/s, "
                                 f"{len(held):,} idle connections open; unanswered in {REQUEST_TIMEOUT_S:g} s = error")
    open_at_end = sum(_still_open(s) for s in held)
    for s in held:
        s.close()
    return phase, {"opened": len(held), "not_connected": refused, "open_at_end": open_at_end}


def _still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(65536) != b""  # a 503 answer counts as open until its close arrives
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            sock.setblocking(True)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def print_flood(results: dict[str, Any], args: argparse.Namespace) -> None:
    names = ("quiet", "during flood", "idle connections", "flood")
    table = Table(title=f"cardhub bench --flood — {results['cores']} cores, load average "
                        f"{', '.join(f'{x:.1f}' for x in results['load_average'])} at the end", title_justify="left")
    table.add_column("", no_wrap=True)
    for name in names:
        table.add_column(name, justify="right", no_wrap=True)
    for label, key, unit in [("accepted events/s", "events_per_s", ""), ("latency p50", "p50_ms", " ms"),
                             ("latency p99", "p99_ms", " ms"), ("latency max", "max_ms", " ms"),
                             ("hub commit p99 ≤", "hub_commit_p99_ms", " ms"), ("seconds", "seconds", "")]:
        table.add_row(label, *(fmt(results[n].get(key), unit) for n in names))
    table.add_row("rejected or missed", *(str(results[n]["errors"]) for n in names))
    table.add_row("503 answers", *(str(results[n]["shed"]) for n in names))
    Console(width=max(console.width, 110)).print(table)
    for name in names:
        console.print(f"  {name}: {results[name]['offered']}")
    console.print(f"single-swipe p99 during the flood / without it: {results['flood_p99_over_quiet_p99']}×")
    held = results["idle_connections_held"]
    console.print(f"idle connections: {held['opened']:,} opened ({held['not_connected']} could not connect), "
                  f"{held['open_at_end']:,} still open at the end of the phase")
    write_figures(results, args.json or Path("bench-flood.json"))


def add_flood_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--flood", action="store_true",
                        help="instead of the default phases: single swipes without and during one device's flood "
                             "of 1,000-event batches, then beside idle connections")
    parser.add_argument("--flood-rate", type=whole_number(1, 100_000), default=200,
                        help="--flood: single swipes per second")
    parser.add_argument("--flood-seconds", type=real_number(0, 3600), default=10, help="--flood: length of each phase")
    parser.add_argument("--idle-connections", type=whole_number(0, 60_000), default=1100,
                        help="--flood: idle connections held open")
    parser.add_argument("--hub-open-files", type=whole_number(64, 1_048_576), default=1024,
                        help="--flood: the hub's soft open-file limit when started (it raises it to the hard limit)")
