"""The day's summary: the hub's own statistics per merchant and meal period, checked against
what the devices were told; the share paid by phone, from the devices and from the hub's
dashboard; declines by reason; faulty inputs and the hub's answers; the money at risk
(``GET /v1/risk/exposure``); throughput and the books."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from rich import box
from rich.console import Console
from rich.table import Table

from device_sim.campus import MERCHANTS, Campus
from device_sim.client import HubClient
from device_sim.office import OFFICE_FAULTS
from device_sim.pos import FAULTS
from device_sim.tally import Tally

if TYPE_CHECKING:
    from device_sim.sim import SimReport

MEAL_COLUMNS = ("breakfast", "lunch", "dinner", "other")


def yuan(fen: int) -> str:
    """Integer fen as yuan with two decimals and thousands separators, no float on the way."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole:,}.{cents:02d}"


@dataclass
class Consumption:
    """``GET /v1/stats/consumption?by=meal&merchant=…`` for the simulated day, per merchant."""

    available: bool
    by_merchant: dict[str, dict[str, Any]] = field(default_factory=dict)
    why: str = ""
    checked: bool = True  # False when the hub may hold other runs' swipes of the same day

    def differs(self, merchant: str, tally: Tally) -> bool:
        total = self.by_merchant[merchant]["total"]
        return (total["amount"], total["count"]) != (tally.net_fen(merchant), tally.sales[merchant])

    def matches(self, tally: Tally) -> bool:
        return not (self.available and self.checked) or not any(self.differs(m, tally) for m in self.by_merchant)


async def fetch_consumption(client: HubClient, campus: Campus, *, checked: bool = True) -> Consumption:
    """The hub's statistics for the simulated local day, once the projections caught up;
    ``checked``: the hub holds no other swipes of that day, so totals must equal the tally."""
    await client.caught_up()
    start = campus.at(time(0))
    end = datetime.combine(campus.day + timedelta(days=1), time(0), tzinfo=campus.tz)
    answers = {}
    for merchant_id, _, _ in MERCHANTS:
        query = urlencode({"from": start.isoformat(), "to": end.isoformat(), "by": "meal", "merchant": merchant_id})
        status, data = await client.call("GET", f"/v1/stats/consumption?{query}", ok=(200, 404))
        if status == 404:
            detail = data.get("detail") if isinstance(data, dict) else str(data).strip()
            return Consumption(available=False, why=f"GET /v1/stats/consumption answered 404: {detail}")
        answers[merchant_id] = data
    return Consumption(available=True, by_merchant=answers, checked=checked)


@dataclass
class PhoneShare:
    """``GET /v1/stats/dashboard?date=…`` for the simulated day: its sales (``total``) and the part
    of them paid by phone (``phone``, DESIGN §10; null only for a manager), each ``count``,
    ``amount`` and distinct ``cards``; ``checked``: the hub holds no other swipes of that day."""

    total: dict[str, int]
    phone: dict[str, int] | None
    checked: bool = True

    def hub(self, medium: str) -> tuple[int, int] | None:
        """(count, fen) the hub's dashboard shows for ``medium`` (``all``, ``card``, ``phone``)."""
        if medium == "all":
            return self.total["count"], self.total["amount"]
        if self.phone is None:
            return None
        if medium == "phone":
            return self.phone["count"], self.phone["amount"]
        return self.total["count"] - self.phone["count"], self.total["amount"] - self.phone["amount"]

    def differs(self, medium: str, tally: Tally) -> bool:
        return self.hub(medium) != told(tally, medium)

    def matches(self, tally: Tally) -> bool:
        return not self.checked or not any(self.differs(m, tally) for m in MEDIA)


MEDIA = ("card", "phone", "all")


def told(tally: Tally, medium: str) -> tuple[int, int]:
    """(count, fen) of the day's sales by ``medium`` as the devices were told, net like the hub's."""
    if medium == "all":
        return sum(tally.medium_sales.values()), sum(tally.medium_fen.values())
    return tally.medium_sales[medium], tally.medium_fen[medium]


async def fetch_dashboard(client: HubClient, campus: Campus, *, checked: bool = True) -> PhoneShare:
    """The hub's dashboard of the simulated local day, once the projections caught up."""
    await client.caught_up()
    _, data = await client.call("GET", f"/v1/stats/dashboard?{urlencode({'date': campus.day.isoformat()})}")
    return PhoneShare(total=data["total"], phone=data["phone"], checked=checked)


def print_report(report: SimReport, console: Console) -> None:
    campus = report.campus
    people = Counter(c.category for c in campus.cardholders)
    gates = f", {report.gates.events:,} gate swipes" if report.gates else ""
    plural = {"student": "students", "staff": "staff", "visitor": "visitors"}
    kinds = ", ".join(f"{n:,} {plural.get(k, k)}" for k, n in sorted(people.items()))
    # Two lines: as one, it wrapped mid-phrase in an 80-column terminal.
    console.print(f"\n[bold]cardhub — campus day {campus.day} ({campus.tz.key})[/]:\n"
                  f"{len(campus.cardholders):,} cardholders ({kinds}), {len(campus.pos)} POS devices{gates}",
                  highlight=False)
    console.print()
    console.print(_consumption(report))
    headline, notes = media_lines(report)
    console.print(f"\n[bold]{headline}[/]", highlight=False)
    console.print(_media(report))
    console.print(notes, highlight=False, style="dim")
    for table in (_declines(report), _faults(report), _exposure(report), _throughput(report)):
        console.print()
        console.print(table)
    holders = report.holders
    if holders.reported:
        console.print(f"\ncardholders' own 挂失: {len(holders.reported)} students signed in with their PIN and reported"
                      f" their card lost;\n  the hub then declined {holders.declined_after:,} purchases of those cards"
                      " card_lost (read back from their own transactions)", highlight=False)


def _cell(count: int, fen: int) -> str:
    return f"{count:,}\n{yuan(fen)}"


def _consumption(report: SimReport) -> Table:
    tally, stats = report.tally, report.consumption
    table = Table(title="Purchases by merchant and meal period (swipes / ¥, net of reversals and refunds)", box=box.SIMPLE_HEAD,
                  title_justify="left", show_edge=False, pad_edge=False, caption_justify="left")
    table.add_column("merchant", style="bold")
    if stats is None or not stats.available:
        table.caption = f"statistics API not available ({stats.why if stats else 'not asked'}): the devices' tally only"
        table.add_column("devices were told", justify="right")
        for merchant_id, _, _ in MERCHANTS:
            table.add_row(merchant_id, _cell(tally.sales[merchant_id], tally.net_fen(merchant_id)))
        return table
    for meal in (*MEAL_COLUMNS, "total"):
        table.add_column(meal, justify="right")
    table.add_column("check", justify="right")
    sums: Counter[str] = Counter()
    for merchant_id, answer in stats.by_merchant.items():
        groups = {g["key"]: g for g in answer["groups"]}
        cells = [_cell(groups[m]["count"], groups[m]["amount"]) if m in groups else "–" for m in MEAL_COLUMNS]
        total = answer["total"]
        verdict = ("–" if not stats.checked else "[green]OK[/]" if not stats.differs(merchant_id, tally)
                   else "[red]MISMATCH[/]\n" + _cell(tally.sales[merchant_id], tally.net_fen(merchant_id)))
        table.add_row(merchant_id, *cells, _cell(total["count"], total["amount"]), verdict)
        for meal in MEAL_COLUMNS:
            sums[f"{meal} n"] += groups.get(meal, {}).get("count", 0)
            sums[meal] += groups.get(meal, {}).get("amount", 0)
        sums["total n"] += total["count"]
        sums["total"] += total["amount"]
    table.add_section()
    table.add_row("all", *(_cell(sums[f"{m} n"], sums[m]) for m in (*MEAL_COLUMNS, "total")),
                  "–" if not stats.checked else "[green]OK[/]" if stats.matches(tally) else "[red]MISMATCH[/]")
    table.caption = ("from GET /v1/stats/consumption?by=meal&merchant=…; check: each total against what "
                     "the devices were told (approved sales − reversals − refunds)" if stats.checked else
                     "from GET /v1/stats/consumption?by=meal&merchant=…; not checked against this run's "
                     "devices: the hub holds earlier runs of the day too")
    return table


def _media(report: SimReport) -> Table:
    """Card and phone payments: what the devices were told, their shares, the hub's dashboard."""
    tally, hub = report.tally, report.dashboard
    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("paid by", style="bold")
    for name in ("devices were told", "share", "hub's dashboard", "check"):
        table.add_column(name, justify="right")
    for medium in MEDIA:
        count, fen = told(tally, medium)
        shown = hub.hub(medium) if hub else None
        verdict = ("–" if hub is None or not hub.checked else "[red]MISMATCH[/]" if hub.differs(medium, tally)
                   else "[green]OK[/]")
        if medium == "all":
            table.add_section()
        table.add_row(medium, _cell(count, fen), f"{_share(count, told(tally, 'all')[0])}",
                      _cell(*shown) if shown else "–", verdict)
    return table


def media_lines(report: SimReport) -> tuple[str, str]:
    """The headline (paid by card, by phone, the phone's share) and what the phones did."""
    (cards, card_fen), (phones, phone_fen) = told(report.tally, "card"), told(report.tally, "phone")
    headline = (f"paid by card {cards:,} (¥{yuan(card_fen)}) · by phone {phones:,} (¥{yuan(phone_fen)})"
                f" = {_share(phones, cards + phones)} by phone ({_share(phone_fen, card_fen + phone_fen)} of the ¥)")
    fleet, offline, hub = report.fleet, report.tally.offline_codes, report.dashboard
    paid = f", {hub.phone['cards']:,} of them paid today" if hub and hub.phone else ""
    removed = f"; one removed at {fleet.removed_at:%H:%M}" if fleet.removed_at else ""
    notes = (f"purchases and ¥ net of reversals and refunds; hub's dashboard: GET /v1/stats/dashboard?date=…\n"
             f"{len(report.campus.phones):,} phones with a virtual card{paid}{removed};\n"
             f"offline POS checked {sum(offline.values()):,} codes themselves: {offline['approved']:,} approved,"
             f" {offline['declined']:,} declined")
    return headline, notes


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.0%}" if whole else "–"


def _declines(report: SimReport) -> Table:
    table = Table(title="Declined swipes by reason", box=box.SIMPLE_HEAD, title_justify="left", show_edge=False)
    table.add_column("reason", style="bold")
    table.add_column("purchases", justify="right")
    table.add_column("gates", justify="right")
    gates = report.gates.decisions if report.gates else Counter()
    reasons = sorted({k for k in (*report.tally.decisions, *gates) if k.startswith("declined")})
    for key in reasons:
        table.add_row(key.removeprefix("declined: "), f"{report.tally.decisions[key]:,}", f"{gates[key]:,}")
    table.add_section()
    table.add_row("approved", f"{report.tally.decisions['approved']:,}", f"{gates['approved']:,}")
    return table


def _faults(report: SimReport) -> Table:
    tally = report.tally
    table = Table(title="Faulty inputs and the hub's answers", box=box.SIMPLE_HEAD, title_justify="left",
                  show_edge=False)
    table.add_column("input", style="bold")
    table.add_column("sent", justify="right")
    table.add_column("hub answered")
    table.add_column("", justify="right")
    explained: Counter[str] = Counter()
    for kind, (what, expected) in {**FAULTS, **OFFICE_FAULTS}.items():
        answers = {answer: n for (k, answer), n in tally.faults.items() if k == kind}
        if not answers:
            continue
        ok = set(answers) == {expected}
        text = ", ".join(f"{answer} {n:,}" for answer, n in sorted(answers.items()))
        table.add_row(what, f"{sum(answers.values()):,}", text, "[green]OK[/]" if ok else "[red]UNEXPECTED[/]")
        explained.update({a.removeprefix("rejected: "): n for a, n in answers.items() if a.startswith("rejected")})
    gate_codes = report.gates.codes if report.gates else Counter()
    for code, n in sorted((tally.codes - explained + gate_codes).items()):
        table.add_row("[red]other rejection[/]", f"{n:,}", f"rejected: {code}", "[red]UNEXPECTED[/]")
    return table


async def fetch_exposure(client: HubClient) -> dict[str, Any]:
    """The hub's exposure once the projections caught up (an admin token)."""
    await client.caught_up()
    _, data = await client.call("GET", "/v1/risk/exposure")
    return data


def _exposure(report: SimReport) -> Table:
    """Negative balances, flagged swipes by flag and the devices that decided offline."""
    table = Table(title="Money at risk (GET /v1/risk/exposure; ¥ of approved purchases)", box=box.SIMPLE_HEAD,
                  title_justify="left", show_edge=False)
    table.add_column("what", style="bold")
    table.add_column("swipes", justify="right")
    table.add_column("¥", justify="right")
    table.add_column("last upload")
    exposure = report.exposure
    if exposure is None:
        table.caption = "not asked"
        return table
    negative = exposure["negative_balances"]
    table.add_row("negative balances", f"{negative['accounts']:,} accounts", yuan(-negative["fen"]), "")
    table.add_section()
    for flagged in exposure["flagged"]:
        table.add_row(f"flag {flagged['flag']}", f"{flagged['events']:,}", yuan(flagged["fen"]), "")
    table.add_section()
    for device in exposure["devices"]:
        last = datetime.fromisoformat(device["last_upload"]).astimezone(report.campus.tz)
        table.add_row(f"offline {device['device']}", f"{device['offline_events']:,}", yuan(device["fen"]),
                      f"{last:%H:%M:%S}")
    table.caption = "last upload: the hub's clock (local time) at the device's latest recorded swipe"
    return table


def _throughput(report: SimReport) -> Table:
    table = Table(title="Throughput and the books", show_header=False, box=box.SIMPLE, title_justify="left",
                  show_edge=False)
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    events = report.tally.events + (report.gates.events if report.gates else 0)
    accounts = len(report.campus.cardholders)
    table.add_row("seeding: cardholders, devices, credits", f"{accounts:,} in {report.seed_s:.1f} s "
                  f"({accounts / max(report.seed_s, 1e-6):,.0f}/s)")
    for name, swipes, seconds in report.phases:
        table.add_row(f"  {name}", f"{swipes:,} swipes in {seconds:.1f} s")
    table.add_row("device events stored (POS, gates)", f"{report.tally.events:,} + "
                  f"{report.gates.events if report.gates else 0:,} = {events:,}")
    table.add_row("the day", f"{report.elapsed_s:.1f} s ({events / max(report.elapsed_s, 1e-6):,.0f} events/s)")
    if report.retries:
        table.add_row("uploads retried (503 or dropped)", f"{report.retries:,}")
    if report.books is not None:
        _books(table, report)
    return table


def _books(table: Table, report: SimReport) -> None:
    """DESIGN §11, one term a row: the credits on the left, the rest summed against them."""
    books = report.books
    assert books is not None
    verdict = "[green]OK[/]" if books.balanced else "[red]MISMATCH[/]"
    right = books.balances + books.purchases - books.reversals - books.refunds + books.payouts + books.expired
    table.add_row("books: Σ credits (top-ups, subsidies)", f"¥{yuan(books.credits)}")
    for sign, what, fen in (("=", "Σ balances (read back)", books.balances), ("+", "purchases", books.purchases),
                            ("−", "reversals", books.reversals), ("−", "refunds", books.refunds),
                            ("+", "payouts (closures)", books.payouts),
                            ("+", "expired subsidies", books.expired)):
        table.add_row(f"  {sign} {what}", f"¥{yuan(fen)}")
    table.add_row("  = the right-hand side", f"¥{yuan(right)} {verdict}")
    if report.office.meal_pending:
        table.add_row("[red]  meal subsidies not seen expired[/]", f"{report.office.meal_pending:,}")
