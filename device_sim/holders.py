"""Cardholders acting for themselves (DESIGN §10): the card office gives a few students a query
PIN (查询密码) while seeding; after breakfast some of them sign in to the app's API with it and
report their own card lost (挂失), and the hub declines their card's next online purchase
``card_lost``. The rest keep an active card: the demo prints how to sign in to ``/app`` as one."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from device_sim.campus import Campus, Cardholder
from device_sim.client import HubClient
from device_sim.day import Purchase

PIN_HOLDERS = 6  # students given a query PIN while seeding
SELF_REPORTED = 3  # of them, those who report their own card lost after breakfast
HISTORY_LIMIT = 1000  # transactions read back per holder: one student's day is far fewer


@dataclass
class Holders:
    """What the cardholders did themselves, and what the hub answered them."""

    pins: dict[str, str] = field(default_factory=dict)  # account id → its PIN
    tokens: dict[str, str] = field(default_factory=dict)  # account id → its session's token
    reported: list[Cardholder] = field(default_factory=list)  # who reported their own card lost
    declined_after: int = 0  # their cards' purchases the hub declined card_lost, read back

    def active(self, campus: Campus) -> list[Cardholder]:
        """PIN holders whose card is still active: whom to sign in to the app as."""
        return [c for c in campus.cardholders if c.account_id in self.pins and c.card not in campus.lost]


async def give_pins(client: HubClient, campus: Campus, holders: Holders) -> None:
    """The card office sets a PIN for the first PIN_HOLDERS students (deterministic for the seed)."""
    rng = random.Random(f"pins-{campus.seed}")  # apart from the day's generator: the day stays as it was
    students = [c for c in campus.cardholders if c.category == "student"][:PIN_HOLDERS]
    for person in students:
        pin = f"{rng.randrange(1_000_000):06d}"
        await client.call("POST", f"/v1/accounts/{person.account_id}/pin", {"pin": pin})
        holders.pins[person.account_id] = pin


async def report_own_losses(client: HubClient, campus: Campus, holders: Holders, purchases: list[Purchase],
                            after: datetime) -> list[Cardholder]:
    """SELF_REPORTED PIN holders with the most purchases by card still to come (not by phone:
    their phone's virtual card stays active) sign in and report their card lost, through the same
    routes as the app; their cards join ``campus.lost``."""
    later: dict[str, int] = {}
    for p in purchases:
        if p.at >= after and not p.phone:
            later[p.card] = later.get(p.card, 0) + 1
    candidates = sorted(holders.active(campus), key=lambda c: (-later.get(c.card, 0), c.account_id))
    anonymous = HubClient(client.session, client.url, None)
    for person in candidates[:SELF_REPORTED]:
        _, session = await anonymous.call("POST", "/v1/sessions", {"account_id": person.account_id,
                                                                    "pin": holders.pins[person.account_id]})
        holders.tokens[person.account_id] = session["token"]
        own = HubClient(client.session, client.url, session["token"])
        await own.call("POST", f"/v1/cards/{person.card}/lost", ok=(200, 409))  # 409: lost in an earlier run
        holders.reported.append(person)
        campus.lost.append(person.card)
    return holders.reported


async def read_declines(client: HubClient, holders: Holders) -> None:
    """Each reporting holder reads its own history (a cardholder's read of itself is not
    audited): the purchases of its lost card that the hub declined ``card_lost``."""
    declined = 0
    for person in holders.reported:
        own = HubClient(client.session, client.url, holders.tokens[person.account_id])
        _, page = await own.call("GET", f"/v1/accounts/{person.account_id}/transactions?limit={HISTORY_LIMIT}")
        declined += sum(_declined_lost(item, person.card) for item in page["items"])
    holders.declined_after = declined


def _declined_lost(item: dict[str, Any], card: str) -> bool:
    return item.get("card") == card and item.get("decision") == "declined" and item.get("reason") == "card_lost"
