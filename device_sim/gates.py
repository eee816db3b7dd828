"""Simulated dorm and library gates (DESIGN §3): a day of residents going out in the morning
and coming back in the evening, some after the 23:30 curfew, some trying to follow a friend
in; one gate goes offline for a while, decides from the signed rules and hotlist it fetched
last, and uploads later.

A gate maker's view: the offline decision below is written from the contract alone (the
rules document, the hotlist), as device firmware would be.
"""

from __future__ import annotations

import asyncio
import base64
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from device_sim.campus import DORMS, Tally
from device_sim.client import HubClient, HubError
from device_sim.device import SimDevice
from domain.wire import HOTLIST_PREFIX, RULES_PREFIX, canonical

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
OPEN, CURFEW = "06:00", "23:30"


@dataclass
class GateSwipe:
    at: datetime
    gate: SimDevice
    card: str
    direction: str


@dataclass
class Gates:
    devices: list[SimDevice]
    zone_of: dict[str, str]
    offline: str | None = None  # the gate that loses its link for a while


async def seed_gates(client: HubClient, *, seed: int, existing: list[SimDevice]) -> Gates:
    """Two dorms (anti-passback, open 06:00–23:30 to their residents) with two gates each, and
    a library (07:00–22:00, students and staff) with one; idempotent by id."""
    zones = [(f"s{seed}-dorm-{k}", f"{k}号宿舍楼", True, [(f"dorm-{k}", OPEN, CURFEW)]) for k in range(1, DORMS + 1)]
    zones.append((f"s{seed}-library", "图书馆", False, [("students", "07:00", "22:00"), ("staff", "07:00", "22:00")]))
    gates = Gates(devices=[], zone_of={})
    for zone, name, anti_passback, rules in zones:
        await client.create("/v1/zones", {"zone": zone, "name": name, "anti_passback": anti_passback})
        for group, start, stop in rules:
            await client.create("/v1/access-rules", {"zone": zone, "group": group, "days": list(DAYS),
                                                     "from": start, "to": stop})
        for door in ("east", "west") if anti_passback else ("main",):
            device_id = f"{zone}-{door}"
            gates.zone_of[device_id] = zone
            device = next((d for d in existing if d.device_id == device_id), None)
            if device is None:
                device = SimDevice(device_id, "gate")
                await client.call("POST", "/v1/devices", {"device_id": device_id, "kind": "gate",
                                                          "public_key": device.public_key, "zone": zone,
                                                          "location": f"{name} {door}"})
                existing.append(device)
            gates.devices.append(device)
    gates.offline = gates.devices[0].device_id
    return gates


def gate_day(gates: Gates, residents: list[tuple[str, int]], rng: random.Random, tz: ZoneInfo) -> list[GateSwipe]:
    """Residents (card, dorm index) leave 07:00–09:30 and return 17:00–23:00; one in twenty
    comes back after curfew; a few swipe ``in`` twice; some visit the library."""
    day = datetime.now(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    dorm_gates = {g.device_id: g for g in gates.devices if "dorm" in gates.zone_of[g.device_id]}
    library = [g for g in gates.devices if "library" in gates.zone_of[g.device_id]]
    plan: list[GateSwipe] = []
    for card, dorm in residents:
        mine = [g for g in dorm_gates.values() if gates.zone_of[g.device_id].endswith(f"dorm-{dorm % DORMS + 1}")]
        out = day + timedelta(hours=7, minutes=rng.uniform(0, 150))
        back = day + timedelta(hours=17, minutes=rng.uniform(0, 360))
        if rng.random() < 0.05:
            back = day + timedelta(hours=23, minutes=rng.uniform(31, 59))  # after curfew
        plan.append(GateSwipe(out, rng.choice(mine), card, "out"))
        plan.append(GateSwipe(back, rng.choice(mine), card, "in"))
        if rng.random() < 0.03:  # tailgating attempt: a second "in" at the other door
            plan.append(GateSwipe(back + timedelta(seconds=40), rng.choice(mine), card, "in"))
        if library and rng.random() < 0.3:
            plan.append(GateSwipe(day + timedelta(hours=rng.uniform(8, 21.5)), library[0], card, "in"))
    plan.sort(key=lambda s: s.at)
    return plan


@dataclass
class OfflineState:
    """What an offline gate knows: the last signed rules and hotlist it fetched."""

    rules: dict[str, Any]
    hotlist: set[str]
    groups_of: dict[str, list[str]]  # card → groups, as provisioned to the gate
    inside: set[str] = field(default_factory=set)

    def decide(self, card: str, direction: str, at: datetime, tz: ZoneInfo) -> str:
        if card in self.hotlist or card not in self.groups_of:
            return "declined"
        local = at.astimezone(tz)
        rules = [r for r in self.rules["rules"] if r["group"] in self.groups_of[card]]
        if not any(_admits(r, local) for r in rules):
            return "declined"
        if self.rules["anti_passback"]:
            if direction == "in" and card in self.inside:
                return "declined"
            (self.inside.add if direction == "in" else self.inside.discard)(card)
        return "approved"


def _admits(rule: dict[str, Any], local: datetime) -> bool:
    def minutes(text: str) -> int:
        return int(text[:2]) * 60 + int(text[3:])

    start, stop = minutes(rule["from"]), minutes(rule["to"])
    now = local.hour * 60 + local.minute + local.second / 60
    today, yesterday = DAYS[local.weekday()], DAYS[(local.weekday() - 1) % 7]
    if start < stop:
        return today in rule["days"] and start <= now < stop
    return (today in rule["days"] and now >= start) or (yesterday in rule["days"] and now < stop)


async def fetch_signed(client: HubClient, gate: SimDevice, hub_key: Ed25519PublicKey) -> tuple[dict[str, Any], set[str]]:
    """The gate's rules and the hotlist, each checked against the hub's signature."""
    _, rules = await client.call("GET", f"/v1/devices/{gate.device_id}/rules")
    _, hotlist = await client.call("GET", f"/v1/devices/{gate.device_id}/hotlist")
    for prefix, document in ((RULES_PREFIX, rules), (HOTLIST_PREFIX, hotlist)):
        body = {k: v for k, v in document.items() if k != "sig"}
        try:
            hub_key.verify(base64.b64decode(document["sig"]), prefix + canonical(body))
        except InvalidSignature:
            raise HubError(f"{gate.device_id}: the hub's signature on {prefix!r} does not verify") from None
    return rules, set(hotlist["added"])


async def run_gates(
    client: HubClient, gates: Gates, plan: list[GateSwipe], groups_of: dict[str, list[str]], tz: ZoneInfo,
    *, batch: int, tally: Tally, on_progress: Callable[[int], None],
) -> None:
    """Each gate works through its swipes in time order, one online request each; the offline
    gate decides the middle third itself and uploads those afterwards."""
    _, key = await client.call("GET", "/v1/hub/key")
    hub_key = Ed25519PublicKey.from_public_bytes(base64.b64decode(key["public_key"]))
    by_gate: dict[str, list[GateSwipe]] = {g.device_id: [] for g in gates.devices}
    for swipe in plan:
        by_gate[swipe.gate.device_id].append(swipe)

    async def drive(gate: SimDevice, swipes: list[GateSwipe]) -> None:
        sent: dict[int, dict[str, Any]] = {}
        window = (len(swipes) // 3, 2 * len(swipes) // 3) if gate.device_id == gates.offline else (0, 0)
        state: OfflineState | None = None
        for i, swipe in enumerate(swipes):
            if i == window[0] and window[1] > window[0]:  # the link drops: decide from what was fetched
                rules, hotlist = await fetch_signed(client, gate, hub_key)
                state = OfflineState(rules, hotlist, groups_of)
            if window[0] <= i < window[1] and state is not None:
                decision = state.decide(swipe.card, swipe.direction, swipe.at, tz)
                envelope = gate.gate(swipe.card, swipe.direction, swipe.at, offline=True, decision=decision)
                sent[envelope["seq"]] = envelope
                continue
            envelope = gate.gate(swipe.card, swipe.direction, swipe.at)
            sent[envelope["seq"]] = envelope
            while gate.pending:
                results = await client.upload(gate, batch if len(gate.pending) > 1 else 1)
                tally.add("", sent, results)
                on_progress(len([r for r in results if r["status"] in ("accepted", "duplicate")]))
        while gate.pending:
            results = await client.upload(gate, batch)
            tally.add("", sent, results)
            on_progress(len([r for r in results if r["status"] in ("accepted", "duplicate")]))

    await asyncio.gather(*(drive(g, by_gate[g.device_id]) for g in gates.devices))
