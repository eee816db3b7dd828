"""Simulated dorm and library gates (DESIGN §3): a day of residents going out in the morning
and coming back in the evening, some after the 23:30 curfew, some trying to follow a friend
in; visitors who try the library; one gate goes offline for the evening, decides from the
signed rules and hotlist it fetched last, and uploads later.

A gate maker's view: the offline decision below is written from the contract alone (the
rules document, the hotlist), as device firmware would be.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from device_sim.campus import DORMS, Campus
from device_sim.client import HubClient
from device_sim.device import SimDevice
from device_sim.driver import Driver, Link
from device_sim.tally import Tally
from domain.wire import HOTLIST_PREFIX, RULES_PREFIX

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
OPEN, CURFEW = "06:00", "23:30"
OFFLINE_GATE = (time(20), time(22, 30))  # the local evening hours one dorm gate cannot reach the hub
# The chance that a cardholder of each category goes to the library today. A visit is two
# passages (in, then out), so these are half of what they were when a visit was an ``in`` only:
# the day keeps about as many gate events.
LIBRARY_VISITS = {"student": 0.15, "staff": 0.05, "visitor": 0.5}
LIBRARY_STAY_H = (0.5, 3.0)  # hours inside
LIBRARY_LAST_OUT_H = (21.5, 21.95)  # the latest someone leaves: before the 22:00 closing


@dataclass(frozen=True, slots=True)
class GateSwipe:
    at: datetime
    gate: str  # device id
    card: str
    direction: str


@dataclass
class Gates:
    devices: list[SimDevice]
    zone_of: dict[str, str]
    offline: str | None = None  # the gate that loses its link for a while

    def of_zone(self, suffix: str) -> list[str]:
        return [d.device_id for d in self.devices if self.zone_of[d.device_id].endswith(suffix)]


async def seed_gates(client: HubClient, *, seed: int, existing: list[SimDevice]) -> Gates:
    """The dorms (anti-passback, open 06:00–23:30 to their residents) with two gates each, and
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


def gate_day(gates: Gates, campus: Campus, rng: random.Random) -> list[GateSwipe]:
    """Students leave their dorm 07:00–09:30 and return 17:00–23:00; one in twenty comes back
    after curfew; a few swipe ``in`` twice; students and staff visit the library and leave it
    again, and a few visitors try to get in."""
    plan: list[GateSwipe] = []

    def at(hours: float) -> datetime:
        return campus.at(time(0)) + timedelta(milliseconds=int(hours * 3_600_000))

    library = gates.of_zone("library")
    for person in campus.cardholders:
        if person.dorm is not None:
            mine = gates.of_zone(f"dorm-{person.dorm}")
            back = at(rng.uniform(17, 23)) if rng.random() >= 0.05 else at(rng.uniform(23.52, 23.98))  # after curfew
            plan.append(GateSwipe(at(rng.uniform(7, 9.5)), rng.choice(mine), person.card, "out"))
            plan.append(GateSwipe(back, rng.choice(mine), person.card, "in"))
            if rng.random() < 0.03:  # tailgating attempt: a second "in" at the other door
                plan.append(GateSwipe(back + timedelta(seconds=40), rng.choice(mine), person.card, "in"))
        if library and rng.random() < LIBRARY_VISITS[person.category]:
            plan += _library_visit(person.category, library[0], person.card, at, rng)
    plan.sort(key=lambda s: (s.at, s.gate))
    return plan


def _library_visit(category: str, gate: str, card: str, at: Callable[[float], datetime],
                   rng: random.Random) -> list[GateSwipe]:
    """In between 08:00 and 20:00, out after a stay (before closing). A visitor has no rule
    for the library: refused at the door, they never come out."""
    arrive = rng.uniform(8, 20)
    swipes = [GateSwipe(at(arrive), gate, card, "in")]
    if category != "visitor":
        leave = min(arrive + rng.uniform(*LIBRARY_STAY_H), rng.uniform(*LIBRARY_LAST_OUT_H))
        swipes.append(GateSwipe(at(leave), gate, card, "out"))
    return swipes


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


@dataclass
class GateDriver(Driver):
    groups_of: dict[str, list[str]] = field(default_factory=dict)
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    state: OfflineState | None = None  # while offline: what the gate fetched when the link dropped

    async def run(self, link: Link, swipes: list[GateSwipe]) -> None:
        """The swipes in time order, one online request each; offline ones are decided here and
        kept until the link is back (or the phase ends)."""
        gate = self.device
        for swipe in swipes:
            if not self.is_offline(swipe.at):
                self.state = None
                self.record(gate.gate(swipe.card, swipe.direction, swipe.at))
                await self.upload_kept(link)
                continue
            if self.state is None:  # the link just dropped: decide from the last signed rules
                rules = await link.signed(gate, "rules", RULES_PREFIX)
                hotlist = await link.signed(gate, "hotlist", HOTLIST_PREFIX)
                self.state = OfflineState(rules, set(hotlist["added"]), self.groups_of)
            decision = self.state.decide(swipe.card, swipe.direction, swipe.at, self.tz)
            self.record(gate.gate(swipe.card, swipe.direction, swipe.at, offline=True, decision=decision))
        await self.upload_kept(link)


def gate_drivers(gates: Gates, campus: Campus, tally: Tally) -> dict[str, GateDriver]:
    groups_of = campus.groups_of
    offline = (campus.at(OFFLINE_GATE[0]), campus.at(OFFLINE_GATE[1]))
    return {g.device_id: GateDriver(g, tally, offline=offline if g.device_id == gates.offline else None,
                                    groups_of=groups_of, tz=campus.tz)
            for g in gates.devices}
