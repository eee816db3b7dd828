"""A simulated campus: merchants and their POS devices, cardholders with cards and credits.

Everything is drawn from one seed before anything is sent, so the same seed gives the same
campus; seeding is idempotent (ids and credit refs are natural keys) and runs many requests
at once, which the hub's writer takes in order."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from device_sim.client import HubClient
from device_sim.device import SimDevice
from device_sim.phone import SimPhone

# merchant id, name, category: the ids are what statistics and settlements are asked by.
MERCHANTS = (
    ("canteen-1", "第一食堂", "dining"),
    ("canteen-2", "第二食堂", "dining"),
    ("canteen-3", "清真食堂", "dining"),
    ("market", "教育超市", "supermarket"),
    ("laundry", "自助洗衣", "laundry"),
)
# Offline limits per merchant (DESIGN §11), fen / fen per card and day / fen per device since its
# last upload / seconds. max_amount is the top of the merchant's prices (device_sim.day: MEALS,
# MARKET_FEN, the laundry's): no honest purchase is declined ``over_limit``, only the day's few
# mistakenly keyed ones (device_sim.day.MISTAKES); offline, the day's rogue window
# (device_sim.incidents) goes past its device total and the hub flags ``offline_over_limit``.
LIMITS = {
    "canteen-1": {"max_amount": 2000, "max_card_day": 5000, "max_device_total": 60_000, "max_offline_seconds": 7200},
    "canteen-2": {"max_amount": 1600, "max_card_day": 5000, "max_device_total": 60_000, "max_offline_seconds": 7200},
    "canteen-3": {"max_amount": 2400, "max_card_day": 5000, "max_device_total": 60_000, "max_offline_seconds": 7200},
    "market": {"max_amount": 6000, "max_card_day": 10_000, "max_device_total": 100_000, "max_offline_seconds": 9000},
    "laundry": {"max_amount": 1000, "max_card_day": 2000, "max_device_total": 10_000, "max_offline_seconds": 10_800},
}
CANTEENS = ("canteen-1", "canteen-2", "canteen-3")
CANTEEN_SHARE = (45, 35, 20)  # of the windows, and of the cardholders who prefer each canteen
MARKET_TILLS = 4
DORMS = 4  # students live in dorm-1 … dorm-4 (device_sim.gates)
WASHERS, DRYERS = 4, 2  # laundry machines per dorm, one device each
STIPEND_EVERY, STIPEND_FEN = 4, 5000  # students with a meal subsidy who also hold a stipend (助学金)
VISITOR_EVERY = 250  # one visitor account per this many cardholders (at least two)
SEED_CONCURRENCY = 64  # card-office requests in flight while seeding
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂"


@dataclass(frozen=True, slots=True)
class Pos:
    device_id: str
    merchant_id: str
    location: str
    dorm: int | None = None  # laundry machines stand in a dorm
    machine: str | None = None  # "washer" or "dryer"


@dataclass(frozen=True, slots=True)
class Cardholder:
    account_id: str
    card: str
    category: str  # student, staff, visitor
    groups: tuple[str, ...]
    dorm: int | None  # 1 … DORMS for students
    favourite: str  # the canteen they go to most
    body: dict[str, Any]  # POST /v1/accounts
    subsidy_fen: int  # a grant without expiry
    cash_fen: int
    meal_fen: int = 0  # this month's meal subsidy (餐补): it expires during the day (device_sim.office)


@dataclass
class Campus:
    seed: int
    day: date  # the simulated local day
    tz: ZoneInfo
    pos: list[Pos]
    cardholders: list[Cardholder]
    devices: dict[str, SimDevice] = field(default_factory=dict)  # POS device id → the simulated device
    credits_fen: int = 0  # top-ups and subsidies newly credited by this run
    lost: list[str] = field(default_factory=list)
    meal_refs: dict[str, str] = field(default_factory=dict)  # account → its meal subsidy's ref, credited by this run
    meal_expires_at: datetime | None = None
    phones: dict[str, SimPhone] = field(default_factory=dict)  # holder's card → its phone (device_sim.phones)

    @property
    def cards(self) -> list[str]:
        return [c.card for c in self.cardholders]

    @property
    def merchant_of(self) -> dict[str, str]:
        return {p.device_id: p.merchant_id for p in self.pos}

    @property
    def groups_of(self) -> dict[str, list[str]]:
        return {c.card: list(c.groups) for c in self.cardholders}

    def at(self, clock: time) -> datetime:
        return datetime.combine(self.day, clock, tzinfo=self.tz)


def card_uid(seed: int, index: int) -> str:
    return f"{(seed * 1_000_003 + index * 7919) % 0xFFFFFFFF:08X}C{index % 10}"


def layout(seed: int, windows: int) -> list[Pos]:
    """The POS devices: ``windows`` canteen windows shared out by CANTEEN_SHARE, the
    supermarket's tills, and a washer or dryer per device in every dorm's laundry room."""
    assert windows >= len(CANTEENS)
    names = {m[0]: m[1] for m in MERCHANTS}
    counts = [max(1, windows * share // 100) for share in CANTEEN_SHARE]
    counts[0] += windows - sum(counts)
    pos = [Pos(f"s{seed}-{canteen}-pos{k:02d}", canteen, f"{names[canteen]} {k}号窗口")
           for canteen, count in zip(CANTEENS, counts, strict=True) for k in range(1, count + 1)]
    pos += [Pos(f"s{seed}-market-pos{k:02d}", "market", f"{names['market']} {k}号收银台")
            for k in range(1, MARKET_TILLS + 1)]
    for dorm in range(1, DORMS + 1):
        for machine, label, count in (("washer", "洗衣机", WASHERS), ("dryer", "烘干机", DRYERS)):
            pos += [Pos(f"s{seed}-laundry-dorm{dorm}-{machine}{k}", "laundry", f"{dorm}号宿舍楼 {label} {k}号",
                        dorm=dorm, machine=machine) for k in range(1, count + 1)]
    return pos


def cardholders(seed: int, count: int, day: date, tz: ZoneInfo, rng: random.Random) -> list[Cardholder]:
    """Students (most, each in a dorm), staff (one in ten) and a few day visitors whose cards
    are valid 08:00–17:00 today, or were valid only yesterday."""
    visitors = max(2, count // VISITOR_EVERY)
    people = []
    for i in range(count):
        category = "visitor" if i >= count - visitors else "staff" if rng.random() < 0.1 else "student"
        account_id = f"V{seed}{i:06d}" if category == "visitor" else f"{seed}{i:06d}"
        dorm = rng.randrange(1, DORMS + 1) if category == "student" else None
        groups = {"student": ("students", f"dorm-{dorm}"), "staff": ("staff",), "visitor": ("visitors",)}[category]
        name = rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN)
        body: dict[str, Any] = {"account_id": account_id, "name": name, "category": category, "groups": list(groups)}
        if category == "visitor":
            start = datetime.combine(day - timedelta(days=1 if i % 3 == 0 else 0), time(8), tzinfo=tz)
            body["valid_from"], body["valid_until"] = start.isoformat(), (start + timedelta(hours=9)).isoformat()
        elif rng.random() < 0.05:
            body["daily_limit"] = 1500
        poor = category == "student" and rng.random() < 0.03
        subsidy = 0 if poor or category == "visitor" else rng.choice((0, 0, 10000, 20000))
        cash = 300 if poor else 5000 if category == "visitor" else rng.randrange(2000, 40000, 100)
        favourite = rng.choices(CANTEENS, weights=CANTEEN_SHARE)[0]
        # A student's subsidy is this month's meal subsidy, which expires today; every
        # STIPEND_EVERY-th of them also holds a stipend without expiry, spent after it (FIFO).
        meal = subsidy if category == "student" else 0
        subsidy = (STIPEND_FEN if i % STIPEND_EVERY == 0 else 0) if meal else subsidy
        people.append(Cardholder(account_id, card_uid(seed, i), category, groups, dorm, favourite, body, subsidy, cash,
                                 meal))
    return people


async def seed_campus(
    client: HubClient, *, seed: int, windows: int, accounts: int, rng: random.Random, day: date, tz: ZoneInfo,
    existing: list[SimDevice], on_progress: Callable[[int], None] | None = None,
) -> Campus:
    """Registers merchants, POS devices (reusing ``existing`` keys), accounts with cards and
    credits; idempotent by id and ref. New devices are appended to ``existing``."""
    campus = Campus(seed=seed, day=day, tz=tz, pos=layout(seed, windows),
                    cardholders=cardholders(seed, accounts, day, tz, rng))
    for merchant_id, name, category in MERCHANTS:
        await client.create("/v1/merchants", {"merchant_id": merchant_id, "name": name, "category": category})
        await client.call("PUT", f"/v1/merchants/{merchant_id}/limits", LIMITS[merchant_id])
    known = {d.device_id: d for d in existing}
    for pos in campus.pos:
        device = known.get(pos.device_id)
        if device is None:
            device = SimDevice(pos.device_id, "pos")
            await client.call("POST", "/v1/devices", {
                "device_id": pos.device_id, "kind": "pos", "public_key": device.public_key,
                "merchant_id": pos.merchant_id, "location": pos.location,
            })
            existing.append(device)
        campus.devices[pos.device_id] = device
    semaphore = asyncio.Semaphore(SEED_CONCURRENCY)

    async def open_one(person: Cardholder) -> None:
        async with semaphore:
            await client.create("/v1/accounts", person.body)
            await client.create("/v1/cards", {"card_uid": person.card, "account_id": person.account_id})
            for kind, amount, ref in (("subsidies", person.subsidy_fen, f"subsidy-{seed}-{person.account_id}"),
                                      ("topups", person.cash_fen, f"topup-{seed}-{person.account_id}")):
                if amount:
                    status, _ = await client.call("POST", f"/v1/accounts/{person.account_id}/{kind}",
                                                  {"amount": amount, "ref": ref})
                    campus.credits_fen += amount if status == 201 else 0
        if on_progress:
            on_progress(1)

    await asyncio.gather(*(open_one(p) for p in campus.cardholders))
    return campus


async def report_lost(client: HubClient, campus: Campus, rng: random.Random, count: int) -> list[str]:
    """The card office reports a few students' cards lost (deterministic for the seed), none
    reported lost before."""
    students = [c.card for c in campus.cardholders if c.category == "student" and c.card not in campus.lost]
    lost = rng.sample(students, min(count, len(students)))
    for uid in lost:
        await client.create(f"/v1/cards/{uid}/lost", None)
    campus.lost += lost
    return lost
