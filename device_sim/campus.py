"""A simulated campus: merchants, POS devices, cardholders, and a lunch hour of swipes.

Deterministic for a seed. Events carry the lunch hour's clock (11:00–13:00, hub time
zone, peaking at 12:00) while being sent as fast as the hub takes them."""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from device_sim.client import HubClient
from device_sim.device import SimDevice

MERCHANTS = (
    ("canteen-1", "第一食堂", "dining", (600, 1800)),
    ("canteen-2", "第二食堂", "dining", (500, 1500)),
    ("canteen-3", "清真食堂", "dining", (800, 2200)),
    ("market", "教育超市", "supermarket", (300, 6000)),
)
DORMS = 2  # students live in dorm-1 or dorm-2 (device_sim.gates)
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂"


@dataclass
class Campus:
    seed: int
    devices: list[SimDevice]
    merchant_of: dict[str, str]
    cards: list[str]
    credits_fen: int = 0
    lost: list[str] = field(default_factory=list)
    groups_of: dict[str, list[str]] = field(default_factory=dict)  # card → its account's groups


@dataclass
class Tally:
    """What the devices were told, for the summary."""

    events: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    decisions: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    revenue_fen: Counter[str] = field(default_factory=Counter)
    refunds_fen: Counter[str] = field(default_factory=Counter)

    def add(self, merchant: str, sent: dict[int, dict[str, Any]], results: list[dict[str, Any]]) -> None:
        for result in results:
            self.statuses[result["status"]] += 1
            if result["status"] == "rejected":
                self.codes[result["code"]] += 1
                continue
            if result["status"] != "accepted":
                continue
            self.events += 1
            envelope = sent.get(result["seq"])
            key = result["decision"] if result["decision"] == "approved" else f"declined: {result.get('reason', 'offline')}"
            self.decisions[key] += 1
            # Money moved only where the card resolved to an account (the result has a balance):
            # an offline approval of an unknown card is recorded and flagged, not debited.
            if envelope is None or result["decision"] != "approved" or "balance" not in result:
                continue
            if envelope["type"] == "purchase":
                self.revenue_fen[merchant] += envelope["amount"]
            elif envelope["type"] == "reversal":
                self.refunds_fen[merchant] += sent_amounts(sent, envelope["ref_seq"])


def sent_amounts(sent: dict[int, dict[str, Any]], seq: int) -> int:
    envelope = sent.get(seq)
    return envelope["amount"] if envelope and envelope["type"] == "purchase" else 0


def card_uid(seed: int, index: int) -> str:
    return f"{(seed * 1_000_003 + index * 7919) % 0xFFFFFFFF:08X}C{index % 10}"


async def seed_campus(client: HubClient, *, seed: int, devices: int, accounts: int, rng: random.Random,
                      existing: list[SimDevice] | None = None) -> Campus:
    """Registers merchants, devices, accounts with cards and credits (idempotent by id and ref)."""
    for merchant_id, name, category, _ in MERCHANTS:
        await client.create("/v1/merchants", {"merchant_id": merchant_id, "name": name, "category": category})
    sims = existing or []
    merchant_of: dict[str, str] = {}
    for i in range(devices):
        merchant_id, name, _, _ = MERCHANTS[i % len(MERCHANTS)]
        device_id = f"s{seed}-{merchant_id}-pos{i // len(MERCHANTS) + 1:02d}"
        merchant_of[device_id] = merchant_id
        if any(d.device_id == device_id for d in sims):
            continue
        device = SimDevice(device_id, "pos")
        await client.call("POST", "/v1/devices", {
            "device_id": device_id, "kind": "pos", "public_key": device.public_key,
            "merchant_id": merchant_id, "location": f"{name} {i // len(MERCHANTS) + 1}号窗口",
        })
        sims.append(device)
    campus = Campus(seed=seed, devices=[d for d in sims if d.device_id in merchant_of],
                    merchant_of=merchant_of, cards=[])
    semaphore = asyncio.Semaphore(16)

    async def open_one(i: int) -> None:
        async with semaphore:
            account_id = f"{seed}{i:06d}"
            staff = rng.random() < 0.1
            body: dict[str, Any] = {
                "account_id": account_id, "name": rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN),
                "category": "staff" if staff else "student",
                "groups": ["staff"] if staff else ["students", f"dorm-{i % DORMS + 1}"],
            }
            if rng.random() < 0.05:
                body["daily_limit"] = 1500
            await client.create("/v1/accounts", body)
            uid = card_uid(seed, i)
            await client.create("/v1/cards", {"card_uid": uid, "account_id": account_id})
            campus.cards.append(uid)
            campus.groups_of[uid] = body["groups"]
            poor = rng.random() < 0.03
            subsidy = 0 if poor else rng.choice((0, 10000, 20000))
            cash = 300 if poor else rng.randrange(2000, 40000, 100)
            if subsidy:
                data = await client.create(f"/v1/accounts/{account_id}/subsidies", {"amount": subsidy, "ref": f"subsidy-{seed}-{i}"})
                campus.credits_fen += subsidy if "balance" in data else 0
            data = await client.create(f"/v1/accounts/{account_id}/topups", {"amount": cash, "ref": f"topup-{seed}-{i}"})
            campus.credits_fen += cash if "balance" in data else 0

    await asyncio.gather(*(open_one(i) for i in range(accounts)))
    campus.cards.sort()
    return campus


@dataclass
class Swipe:
    at: datetime
    device: SimDevice
    card: str
    amount_fen: int


def lunch_hour(campus: Campus, swipes: int, rng: random.Random, tz: ZoneInfo) -> list[Swipe]:
    """Arrivals between 11:00 and 13:00, peaking at 12:00; a few unknown cards."""
    day = datetime.now(tz).replace(hour=12, minute=0, second=0, microsecond=0)
    amounts = {m[0]: m[3] for m in MERCHANTS}
    plan = []
    for _ in range(swipes):
        minutes = max(-60.0, min(60.0, rng.gauss(0, 22)))
        device = rng.choice(campus.devices)
        low, high = amounts[campus.merchant_of[device.device_id]]
        card = f"DEAD{rng.randrange(16**6):06X}" if rng.random() < 0.004 else rng.choice(campus.cards)
        plan.append(Swipe(day + timedelta(minutes=minutes), device, card, rng.randrange(low, high, 10)))
    plan.sort(key=lambda s: s.at)
    return plan


async def run_lunch(
    client: HubClient,
    campus: Campus,
    plan: list[Swipe],
    rng: random.Random,
    *,
    offline_share: float,
    batch: int,
    on_progress: Callable[[int], None],
    on_lost: Callable[[list[str]], Any] | None = None,
) -> Tally:
    """Each device works through its own swipes in time order: online swipes one request each;
    a device that is offline keeps its swipes and uploads them in batches when it is back.
    Along the way: cards reported lost, reversals, resends whose answer was lost, one forgery."""
    tally = Tally()
    by_device: dict[str, list[Swipe]] = defaultdict(list)
    for swipe in plan:
        by_device[swipe.device.device_id].append(swipe)
    offline_devices = {d.device_id for d in rng.sample(campus.devices, max(1, int(len(campus.devices) * offline_share * 4)))}
    lost_at = len(plan) // 3
    progress = {"n": 0}
    lost_done = asyncio.Event()

    async def report_lost() -> None:
        campus.lost = rng.sample(campus.cards, min(5, len(campus.cards)))
        for uid in campus.lost:
            await client.create(f"/v1/cards/{uid}/lost", None)
        if on_lost:
            on_lost(campus.lost)
        lost_done.set()

    def advance(n: int) -> None:
        before = progress["n"]
        progress["n"] += n
        on_progress(n)
        if before < lost_at <= progress["n"]:
            asyncio.get_running_loop().create_task(report_lost())

    async def drive(device: SimDevice, swipes: list[Swipe]) -> None:
        merchant = campus.merchant_of[device.device_id]
        sent: dict[int, dict[str, Any]] = {}
        offline_window = (len(swipes) // 3, 2 * len(swipes) // 3) if device.device_id in offline_devices else (0, 0)
        forged = device is campus.devices[0]
        for i, swipe in enumerate(swipes):
            offline = offline_window[0] <= i < offline_window[1]
            envelope = device.purchase(swipe.card, swipe.amount_fen, swipe.at, offline=offline)
            sent[envelope["seq"]] = envelope
            if offline:
                continue
            if forged and i == len(swipes) // 4:
                tally.add(merchant, sent, await _forge(client, device))
            results = await client.upload(device, batch if len(device.pending) > 1 else 1)
            while device.pending:  # back online: drain what was kept
                tally.add(merchant, sent, results)
                advance(len([r for r in results if r["status"] in ("accepted", "duplicate")]))
                results = await client.upload(device, batch)
            tally.add(merchant, sent, results)
            advance(len([r for r in results if r["status"] in ("accepted", "duplicate")]))
            last = results[-1] if results else None
            if last and last.get("decision") == "approved" and rng.random() < 0.01:
                reversal = device.reversal(swipe.card, last["seq"], swipe.at + timedelta(seconds=20))
                sent[reversal["seq"]] = reversal
                rev_results = await client.upload(device, 1)
                tally.add(merchant, sent, rev_results)
            if rng.random() < 0.01:  # the answer was lost on the way: the device sends again
                tally.add(merchant, sent, (await client.send([envelope], device.device_id))["results"])
        while device.pending:
            results = await client.upload(device, batch)
            tally.add(merchant, sent, results)
            advance(len([r for r in results if r["status"] in ("accepted", "duplicate")]))

    await asyncio.gather(*(drive(d, by_device[d.device_id]) for d in campus.devices))
    if not lost_done.is_set() and progress["n"] >= lost_at:
        await lost_done.wait()
    return tally


async def _forge(client: HubClient, device: SimDevice) -> list[dict[str, Any]]:
    """An event whose signature does not match: the hub must reject it and store nothing."""
    pending = device.batch(1)
    if not pending:
        return []
    forged = {**pending[0], "amount": pending[0]["amount"] + 1} if pending[0]["type"] == "purchase" else pending[0]
    answer = await client.send([forged], device.device_id)
    return answer["results"]
