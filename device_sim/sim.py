"""``cardhub sim``: seeds a campus on a running hub and sends it a campus day of swipes.

The day (device_sim.day, device_sim.gates) runs phase by phase — breakfast, lunch,
afternoon, dinner, evening — each as fast as the hub takes it, with a progress bar each.
Between breakfast and lunch the card office reports a few cards lost, and a few students report
their own through the app's API (device_sim.holders); this month's meal
subsidies expire during the run; after dinner the card office refunds a few wrong charges and
closes two accounts (device_sim.office)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from device_sim.campus import Campus, report_lost, seed_campus
from device_sim.client import HubClient, HubError
from device_sim.day import Purchase, campus_day, phase_bounds
from device_sim.device import SimDevice
from device_sim.driver import Link
from device_sim.gates import GateDriver, Gates, GateSwipe, gate_day, gate_drivers, seed_gates
from device_sim.holders import Holders, give_pins, read_declines, report_own_losses
from device_sim.incidents import pos_drivers, schedule_faults
from device_sim.office import (
    MEAL_EXPIRES_IN_S,
    OfficeBooks,
    close_accounts,
    closable,
    grant_meal_subsidies,
    read_meal_expiries,
    refund_wrong_charges,
)
from device_sim.phone import SimPhone
from device_sim.phones import PAYS_BY_PHONE, Fleet, pay_by_phone, phone_holders, register_phones, remove_a_phone
from device_sim.pos import PosDriver
from device_sim.summary import (
    Consumption,
    PhoneShare,
    fetch_consumption,
    fetch_dashboard,
    fetch_exposure,
    print_report,
    yuan,
)
from device_sim.tally import Tally

console = Console()
LOST_CARDS = 8  # reported lost between breakfast and lunch, by the card office or their holders
BALANCE_READS = 32  # balance requests in flight for the books


@dataclass(frozen=True)
class Books:
    """DESIGN §11 from what this run did and was answered, in fen: Σ credits = Σ balances +
    Σ purchases − Σ reversals − Σ refunds + Σ payouts + Σ expired subsidies."""

    credits: int  # top-ups and subsidies this run credited (201)
    balances: int  # read back
    purchases: int  # approved, that moved money (the tally)
    reversals: int
    refunds: int  # the card office's refunds (201 answers)
    payouts: int  # closures' payouts
    expired: int  # the meal subsidies' expiries read back, and closures' expired subsidy

    @property
    def balanced(self) -> bool:
        return self.credits == (self.balances + self.purchases - self.reversals - self.refunds + self.payouts
                                + self.expired)


@dataclass
class SimReport:
    campus: Campus
    tally: Tally  # the POS devices
    elapsed_s: float  # the day's phases
    retries: int
    books: Books | None
    gates: Tally | None = None  # the dorm and library gates' day, when driven
    seed_s: float = 0.0
    consumption: Consumption | None = None  # the hub's statistics of the day, per merchant
    phases: list[tuple[str, int, float]] = field(default_factory=list)  # (phase, swipes, seconds)
    exposure: dict[str, Any] | None = None  # GET /v1/risk/exposure after the day
    office: OfficeBooks = field(default_factory=OfficeBooks)
    holders: Holders = field(default_factory=Holders)  # PINs, and the holders' own 挂失
    fleet: Fleet = field(default_factory=Fleet)  # the phones' registrations and the one removed
    dashboard: PhoneShare | None = None  # the hub's dashboard: the day's total and its phone share

    @property
    def ok(self) -> bool:
        books_ok = self.books is None or self.books.balanced
        return (books_ok and (self.consumption is None or self.consumption.matches(self.tally))
                and (self.dashboard is None or self.dashboard.matches(self.tally)))


async def simulate(
    url: str, token: str, *, seed: int, devices: int, accounts: int, swipes: int | None, batch: int,
    offline_share: float, state: Path | None = None, tz: ZoneInfo | None = None, gates: bool = True,
    meal_expires_in_s: float = MEAL_EXPIRES_IN_S,
) -> SimReport:
    """Seeds ``accounts`` cardholders and ``devices`` canteen windows (plus tills, laundry
    machines and gates), then runs today's campus day; ``swipes``: exactly that many purchases.
    The meal subsidies expire ``meal_expires_in_s`` after seeding (by the hub's clock)."""
    tz = tz or ZoneInfo("Asia/Shanghai")
    rng = random.Random(seed)
    existing = _load_state(state)
    known = existing if existing is not None else State()
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=256)) as session:
        client = HubClient(session, url, token)
        started = time.perf_counter()
        campus, gate_set, holders, fleet = await _seed(client, known, seed=seed, windows=devices, accounts=accounts,
                                                       rng=rng, day=datetime.now(tz).date(), tz=tz, gates=gates,
                                                       meal_expires_in_s=meal_expires_in_s)
        _save_state(state, known)
        seed_s = time.perf_counter() - started
        _print_seeded(campus, gate_set, fleet, seed_s)
        day = Day(campus, pay_by_phone(campus, campus_day(campus, rng, swipes)),
                  gate_day(gate_set, campus, rng) if gate_set else [], holders=holders, fleet=fleet)
        day.pos = pos_drivers(campus, day.tally, rng, offline_share)
        day.gates = gate_drivers(gate_set, campus, day.gate_tally) if gate_set else {}
        await client.caught_up()  # gates going offline fetch their signed rules from the views
        try:
            await day.run(await Link.open(client, batch), client, rng)
        finally:
            _save_state(state, known)
        books = None
        if existing is None:
            await read_meal_expiries(client, campus, day.office)
            books = await _books(client, campus, day.tally, day.office)
        consumption = await fetch_consumption(client, campus, checked=existing is None)
        dashboard = await fetch_dashboard(client, campus, checked=existing is None)
        exposure = await fetch_exposure(client)
        await client.caught_up()
        await read_declines(client, holders)
    return SimReport(campus, day.tally, day.elapsed_s, client.retries, books, day.gate_tally if gate_set else None,
                     seed_s, consumption, day.phases, exposure, day.office, holders, fleet, dashboard)


async def _seed(client: HubClient, known: State, *, seed: int, windows: int, accounts: int, rng: random.Random,
                day: date, tz: ZoneInfo, gates: bool,
                meal_expires_in_s: float) -> tuple[Campus, Gates | None, Holders, Fleet]:
    """The campus, its gates, the meal subsidies, the PIN holders and the phones, with progress."""
    with Progress(TextColumn("[bold]{task.description}[/]"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task(f"seeding {accounts:,} cardholders", total=accounts)
        campus = await seed_campus(client, seed=seed, windows=windows, accounts=accounts, rng=rng, day=day, tz=tz,
                                   existing=known.devices, on_progress=lambda n: progress.update(task, advance=n))
        gate_set = await seed_gates(client, seed=seed, existing=known.devices) if gates else None
        await grant_meal_subsidies(client, campus, meal_expires_in_s)
        holders = Holders()
        await give_pins(client, campus, holders)
        owners, _ = phone_holders(campus, holders.pins)
        phones = progress.add_task("registering phones (virtual cards)", total=len(owners))
        fleet = await register_phones(client, campus, holders.pins, known.phones,
                                      on_progress=lambda n: progress.update(phones, advance=n))
    return campus, gate_set, holders, fleet


def _print_seeded(campus: Campus, gate_set: Gates | None, fleet: Fleet, seed_s: float) -> None:
    console.print(f"seeded {len(campus.cardholders):,} cardholders, {len(campus.pos)} POS devices"
                  f"{f' and {len(gate_set.devices)} gates' if gate_set else ''} in {seed_s:.1f} s")
    console.print(f"phones: {len(campus.phones):,} cardholders registered a virtual card (电子校园卡)"
                  f"{f', {fleet.reused:,} of them in an earlier run' if fleet.reused else ''}"
                  f" ({len(fleet.own)} themselves, signed in with their PIN);\n  they pay about"
                  f" {PAYS_BY_PHONE:.0%} of their canteen and supermarket purchases with a payment code",
                  highlight=False)
    if campus.meal_refs and campus.meal_expires_at:
        console.print(f"month-end: {len(campus.meal_refs):,} students' meal subsidy (餐补) expires at "
                      f"{campus.meal_expires_at:%H:%M:%S},\n  during the day (its hours pass in about a minute"
                      " of wall time)", highlight=False)


@dataclass
class Day:
    campus: Campus
    purchases: list[Purchase]
    gate_swipes: list[GateSwipe]
    tally: Tally = field(default_factory=Tally)
    gate_tally: Tally = field(default_factory=Tally)
    pos: dict[str, PosDriver] = field(default_factory=dict)
    gates: dict[str, GateDriver] = field(default_factory=dict)
    phases: list[tuple[str, int, float]] = field(default_factory=list)
    elapsed_s: float = 0.0
    office: OfficeBooks = field(default_factory=OfficeBooks)
    holders: Holders = field(default_factory=Holders)
    fleet: Fleet = field(default_factory=Fleet)

    async def run(self, link: Link, client: HubClient, rng: random.Random) -> None:
        bounds = phase_bounds(self.campus)
        faults = schedule_faults(self.pos, rng)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[rate]:>14}"), TimeElapsedColumn(), console=console) as progress:
            tasks = {}
            for name, start, stop in bounds:
                total = sum(start <= s.at < stop for s in (*self.purchases, *self.gate_swipes))
                until = f"{stop:%H:%M}" if stop.date() == start.date() else "24:00"
                label = f"{start:%H:%M}–{until} {name}"
                tasks[name] = progress.add_task(label, total=total, rate="", start=False)
            for name, start, stop in bounds:
                for device_id, kinds in faults.get(name, {}).items():
                    self.pos[device_id].faults = list(kinds)
                swipes, seconds = await self._phase(link, progress, tasks[name], start, stop)
                self.phases.append((name, swipes, seconds))
                self.elapsed_s += seconds
                if name == "breakfast":
                    own = await report_own_losses(client, self.campus, self.holders, self.purchases, stop)
                    lost = await report_lost(client, self.campus, rng, LOST_CARDS - len(own))
                    progress.console.print(f"  {stop:%H:%M} cards reported lost: by the card office {', '.join(lost)};\n"
                                           f"  by their holders, signed in with their PIN (挂失 in the app):"
                                           f" {', '.join(c.card for c in own)}", highlight=False)
                if name == "lunch":
                    removed = await remove_a_phone(client, self.campus, self.fleet, stop)
                    if removed is not None:
                        how = "by its holder in the app" if self.fleet.removed_by_holder else "by the card office"
                        progress.console.print(f"  {stop:%H:%M} a phone removed {how}: virtual card"
                                               f" {removed.card_uid} revoked, its holder pays by card from now on",
                                               highlight=False)
                if name == "dinner":
                    await self._card_office(client, rng, progress.console, stop)

    async def _card_office(self, client: HubClient, rng: random.Random, out: Console, at: datetime) -> None:
        """After dinner: refunds of a few wrong charges, then two graduating students' accounts
        closed (their evening purchases at online devices are declined ``card_cancelled``)."""
        office = self.office
        await refund_wrong_charges(client, self.campus, self.tally, office, rng)
        if office.refunds:
            whole = sum(r["remaining"] == 0 for r in office.refunds)
            out.print(f"  {at:%H:%M} card office refunds {len(office.refunds)} wrong charges, "
                      f"¥{yuan(office.refunds_fen)} ({len(office.refunds) - whole} in part, {whole} whole)",
                      highlight=False)
        refunded = {r["account_id"] for r in office.refunds}
        candidates = [c for c in closable(self.campus, self.purchases, self._online, at)
                      if c.account_id not in refunded]
        closed = await close_accounts(client, self.campus, office, candidates, rng)
        if closed:
            paid = ", ".join(f"{c['account_id']} ¥{yuan(c['payout'])}" for c in closed)
            out.print(f"  {at:%H:%M} accounts closed (销户, graduating), cash paid out: {paid}", highlight=False)

    def _online(self, device_id: str, at: datetime) -> bool:
        return not self.pos[device_id].is_offline(at)

    async def _phase(self, link: Link, progress: Progress, task: Any, start: datetime,
                     stop: datetime) -> tuple[int, float]:
        """Every device through its swipes of [start, stop); answers (swipes stored, seconds)."""
        by_pos: dict[str, list[Purchase]] = defaultdict(list)
        for purchase in self.purchases:
            if start <= purchase.at < stop:
                by_pos[purchase.device_id].append(purchase)
        by_gate: dict[str, list[GateSwipe]] = defaultdict(list)
        for swipe in self.gate_swipes:
            if start <= swipe.at < stop:
                by_gate[swipe.gate].append(swipe)
        progress.start_task(task)
        began = time.perf_counter()
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            rate = done / max(time.perf_counter() - began, 1e-6)
            progress.update(task, advance=n, rate=f"{rate:,.0f} swipes/s")

        link.on_progress = advance
        await asyncio.gather(*(d.run(link, by_pos[i]) for i, d in self.pos.items()),
                             *(d.run(link, by_gate[i]) for i, d in self.gates.items()))
        return done, time.perf_counter() - began


async def _books(client: HubClient, campus: Campus, tally: Tally, office: OfficeBooks) -> Books:
    """Reads every seeded balance back (after the projections catch up) to check the books."""
    await client.caught_up()
    semaphore = asyncio.Semaphore(BALANCE_READS)

    async def read(account_id: str) -> int:
        async with semaphore:
            _, data = await client.call("GET", f"/v1/accounts/{account_id}/balance")
            return data["total"]

    balances = sum(await asyncio.gather(*(read(c.account_id) for c in campus.cardholders)))
    return Books(credits=campus.credits_fen, balances=balances, purchases=sum(tally.revenue_fen.values()),
                 reversals=sum(tally.reversals_fen.values()), refunds=office.refunds_fen,
                 payouts=office.payouts_fen, expired=office.expired_fen)


@dataclass
class State:
    """What the simulator keeps between runs on one hub: the devices' keys and chains, and the
    phones' keys, certs and counters (holder's card → phone)."""

    devices: list[SimDevice] = field(default_factory=list)
    phones: dict[str, SimPhone] = field(default_factory=dict)


def _load_state(path: Path | None) -> State | None:
    if path is None or not path.exists():
        return None
    data = json.loads(path.read_text())
    return State([SimDevice.from_json(d) for d in data["devices"]],
                 {card: SimPhone.from_json(p) for card, p in data.get("phones", {}).items()})


def _save_state(path: Path | None, state: State) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"devices": [d.to_json() for d in state.devices],
                   "phones": {card: p.to_json() for card, p in state.phones.items()}}, f)
    os.replace(tmp, path)


async def run_sim(args: argparse.Namespace) -> int:
    """``cardhub sim``: returns the exit status. ``args.token`` is an admin token."""
    state = args.state or args.data_dir / "sim.json"
    try:
        report = await simulate(
            args.url, args.token, seed=args.seed, devices=args.devices, accounts=args.accounts,
            swipes=args.swipes, batch=args.batch, offline_share=args.offline_share, state=state,
            tz=getattr(args, "tz", None),
        )
    except (HubError, aiohttp.ClientError) as exc:
        console.print(f"cardhub sim: {exc}", style="red", highlight=False)
        return 1
    print_report(report, console)
    return 0 if report.ok else 1
