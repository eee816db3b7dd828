"""What goes wrong during the day, drawn from the seed: POS devices that lose their link for a
while (they decide offline and upload later) and the faulty inputs the hub must catch."""

from __future__ import annotations

import random
from datetime import time

from device_sim.campus import Campus
from device_sim.pos import PosDriver
from device_sim.tally import Tally

# The local hours a device of each merchant kind cannot reach the hub; each stays inside one
# phase of the day (device_sim.day.PHASES), so the phase ends with everything uploaded.
OUTAGES = {
    "canteen": ((time(11, 40), time(12, 40)), (time(7), time(8, 15)), (time(17, 40), time(18, 40))),
    "market": ((time(14), time(16)), (time(20), time(22))),
    "laundry": ((time(19, 45), time(22, 15)),),
}
# phase → (merchant whose device sends them, the faults): resends come with the plan itself. The
# removed phone's code comes after its removal (after lunch, device_sim.sim), and every payment
# code's fault before the evening's closures (a closed account's codes are card_cancelled).
FAULT_PLAN = (
    ("lunch", "canteen-1", ("forged", "code_screenshot", "code_tampered")),
    ("afternoon", "market", ("replayed", "code_revoked")),
    ("dinner", "canteen-2", ("replayed", "negative", "code_expired")),
    ("evening", "canteen-3", ("naive_clock",)),
)


def _kind(merchant_id: str) -> str:
    return "canteen" if merchant_id.startswith("canteen") else merchant_id


def pos_drivers(campus: Campus, tally: Tally, rng: random.Random, offline_share: float) -> dict[str, PosDriver]:
    """One driver per POS device; ``offline_share`` of them (at least one canteen window) lose
    their link for part of the day. That canteen window, offline over the lunch peak, ignores
    its merchant's offline limits (it approves beyond them), so the hub has something to flag."""
    pos = campus.pos
    canteens = [p for p in pos if _kind(p.merchant_id) == "canteen"]
    first = rng.choice(canteens)
    others = [p for p in pos if p is not first]
    count = max(1, round(len(pos) * offline_share))
    offline = [first, *rng.sample(others, min(count - 1, len(others)))]
    windows = {}
    for k, device in enumerate(offline):
        choices = OUTAGES[_kind(device.merchant_id)]
        start, stop = choices[k % len(choices)]
        windows[device.device_id] = (campus.at(start), campus.at(stop))
    return {p.device_id: PosDriver(campus.devices[p.device_id], tally, merchant=p.merchant_id,
                                   offline=windows.get(p.device_id), ignores_limits=p is first, phones=campus.phones)
            for p in pos}


def schedule_faults(drivers: dict[str, PosDriver], rng: random.Random) -> dict[str, dict[str, tuple[str, ...]]]:
    """phase → device id → the faults it sends in that phase, on devices that stay online."""
    plan: dict[str, dict[str, tuple[str, ...]]] = {}
    for phase, merchant, kinds in FAULT_PLAN:
        online = sorted(i for i, d in drivers.items() if d.merchant == merchant and d.offline is None)
        if online:
            plan.setdefault(phase, {})[rng.choice(online)] = kinds
    return plan
