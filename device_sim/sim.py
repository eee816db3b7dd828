"""``cardhub sim``: seeds a campus on a running hub and sends it a lunch hour of swipes."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from device_sim.campus import Campus, Tally, lunch_hour, run_lunch, seed_campus
from device_sim.client import HubClient, HubError
from device_sim.device import SimDevice
from device_sim.gates import gate_day, run_gates, seed_gates

console = Console()
BOOKS_WAIT_S = 120


@dataclass
class SimReport:
    campus: Campus
    tally: Tally
    elapsed_s: float
    retries: int
    books: tuple[int, int] | None  # (Σ credits − Σ approved purchases + Σ refunds, Σ balances) in fen
    gates: Tally | None = None  # the dorm and library gates' day, when driven


async def simulate(
    url: str, token: str, *, seed: int, devices: int, accounts: int, swipes: int, batch: int,
    offline_share: float, state: Path | None = None, tz: ZoneInfo | None = None, gates: bool = True,
) -> SimReport:
    rng = random.Random(seed)
    existing = _load_state(state)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=256)) as session:
        client = HubClient(session, url, token)
        with console.status(f"seeding {accounts} accounts and {devices} devices on {url}"):
            campus = await seed_campus(client, seed=seed, devices=devices, accounts=accounts, rng=rng, existing=existing)
        plan = lunch_hour(campus, swipes, rng, tz or ZoneInfo("Asia/Shanghai"))
        started = time.perf_counter()
        with Progress(
            TextColumn("[bold]lunch hour[/]"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=console,
        ) as progress:
            task = progress.add_task("swipes", total=len(plan), rate="")

            def on_progress(n: int) -> None:
                done = progress.tasks[0].completed + n
                rate = done / max(time.perf_counter() - started, 1e-6)
                progress.update(task, advance=n, rate=f"{rate:,.0f} swipes/s")

            def on_lost(uids: list[str]) -> None:
                progress.console.print(f"  cards reported lost mid-lunch: {', '.join(uids)}")

            try:
                tally = await run_lunch(client, campus, plan, rng, offline_share=offline_share, batch=batch,
                                        on_progress=on_progress, on_lost=on_lost)
            finally:
                _save_state(state, campus.devices if existing is None else existing)
        elapsed = time.perf_counter() - started
        gate_tally = None
        if gates and campus.groups_of:
            known = existing if existing is not None else campus.devices
            gate_tally = await _gate_day(client, campus, known, rng, tz or ZoneInfo("Asia/Shanghai"), batch)
            _save_state(state, known)
        books = await _books(client, campus, tally) if existing is None else None
    return SimReport(campus, tally, elapsed, client.retries, books, gate_tally)


async def _caught_up(client: HubClient) -> None:
    """Waits until every projection has applied every stored event."""
    deadline = time.monotonic() + BOOKS_WAIT_S
    while time.monotonic() < deadline:
        _, health = await client.call("GET", "/healthz")
        if all(p["lag_events"] == 0 for p in health["projections"].values()):
            return
        await asyncio.sleep(0.05)
    raise HubError(f"projections still behind after {BOOKS_WAIT_S} s: {health['projections']}")


async def _gate_day(client: HubClient, campus: Campus, known: list[SimDevice], rng: random.Random,
                    tz: ZoneInfo, batch: int) -> Tally:
    """Dorm and library gates through a day (device_sim.gates), with a progress bar."""
    gates = await seed_gates(client, seed=campus.seed, existing=known)
    await _caught_up(client)  # gates download their signed rules from the views
    residents = [(uid, int(g.removeprefix("dorm-")) - 1)
                 for uid, groups in campus.groups_of.items() for g in groups if g.startswith("dorm-")]
    plan = gate_day(gates, residents, rng, tz)
    tally = Tally()
    with Progress(TextColumn("[bold]dorm and library gates[/]"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("gates", total=len(plan))
        await run_gates(client, gates, plan, campus.groups_of, tz, batch=batch, tally=tally,
                        on_progress=lambda n: progress.update(task, advance=n))
    return tally


async def _books(client: HubClient, campus: Campus, tally: Tally) -> tuple[int, int]:
    """Reads every seeded balance back (after the projections catch up) to check the books."""
    expected = campus.credits_fen - sum(tally.revenue_fen.values()) + sum(tally.refunds_fen.values())
    accounts = _accounts(campus)
    await _caught_up(client)
    total = 0
    semaphore = asyncio.Semaphore(32)

    async def read(account_id: str) -> int:
        async with semaphore:
            _, data = await client.call("GET", f"/v1/accounts/{account_id}/balance")
            return data["total"]

    for value in await asyncio.gather(*(read(a) for a in accounts)):
        total += value
    return expected, total


def _accounts(campus: Campus) -> list[str]:
    return [f"{campus.seed}{i:06d}" for i in range(len(campus.cards))]


def _load_state(path: Path | None) -> list[SimDevice] | None:
    if path is None or not path.exists():
        return None
    return [SimDevice.from_json(d) for d in json.loads(path.read_text())["devices"]]


def _save_state(path: Path | None, devices: list[SimDevice]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"devices": [d.to_json() for d in devices]}, f)
    os.replace(tmp, path)


def print_report(report: SimReport) -> None:
    tally = report.tally
    table = Table(title="cardhub — lunch hour", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    table.add_row("events stored", f"{tally.events:,}")
    table.add_row("elapsed", f"{report.elapsed_s:.1f} s ({tally.events / max(report.elapsed_s, 1e-6):,.0f} events/s)")
    for status, n in sorted(tally.statuses.items()):
        table.add_row(f"upload results: {status}", f"{n:,}")
    for decision, n in sorted(tally.decisions.items()):
        table.add_row(f"  {decision}", f"{n:,}")
    for code, n in sorted(tally.codes.items()):
        table.add_row(f"  rejected: {code}", f"{n:,}")
    for merchant, fen in sorted(tally.revenue_fen.items()):
        net = fen - tally.refunds_fen[merchant]
        table.add_row(f"revenue {merchant}", f"¥{net / 100:,.2f}")
    if report.retries:
        table.add_row("uploads retried (503 or dropped)", f"{report.retries:,}")
    if report.gates is not None:
        table.add_row("gate swipes stored", f"{report.gates.events:,}")
        for decision, n in sorted(report.gates.decisions.items()):
            table.add_row(f"  gate {decision}", f"{n:,}")
        for code, n in sorted(report.gates.codes.items()):
            table.add_row(f"  gate rejected: {code}", f"{n:,}")
    if report.books is not None:
        expected, actual = report.books
        verdict = "[green]OK[/]" if expected == actual else "[red]MISMATCH[/]"
        table.add_row("books: credits − purchases + refunds", f"¥{expected / 100:,.2f}")
        table.add_row("books: Σ balances (read back)", f"¥{actual / 100:,.2f} {verdict}")
    console.print(table)


async def run_sim(args: argparse.Namespace) -> int:
    """``cardhub sim``: returns the exit status. ``args.token`` is an admin token."""
    token = args.token
    state = args.state or args.data_dir / "sim.json"
    try:
        report = await simulate(
            args.url, token, seed=args.seed, devices=args.devices, accounts=args.accounts,
            swipes=args.swipes, batch=args.batch, offline_share=args.offline_share, state=state,
        )
    except (HubError, aiohttp.ClientError) as exc:
        console.print(f"cardhub sim: {exc}", style="red", highlight=False)
        return 1
    print_report(report)
    return 0 if report.books is None or report.books[0] == report.books[1] else 1
