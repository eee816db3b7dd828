"""Phones with a virtual card (电子校园卡, DESIGN §10) on the simulated campus.

While seeding, a share of students and staff register their phone's key
(``POST /v1/accounts/{id}/virtual-cards``): most through the card office's client, a few PIN
holders themselves, signed in with their PIN as the app does. They pay a share of their canteen
and supermarket purchases with a payment code (``domain.paycode.make_code``, the one
implementation) instead of their card. After lunch one of them removes their phone (revoked: on
the hotlist) and pays by card from then on. A POS that lost its link checks a code itself
(``OfflineCodes``). Everything is drawn from generators of its own, so the day's plan, drawn from
the day's generator, stays what it was without phones."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from device_sim.campus import CANTEENS, Campus, Cardholder
from device_sim.client import HubClient
from device_sim.day import Purchase
from device_sim.phone import SimPhone
from domain.paycode import Checked, check_code

PHONE_SHARE = {"student": 0.3, "staff": 0.15}  # of each category, those who register a phone
OWN_SESSION = 2  # PIN holders (device_sim.holders) who register their phone themselves
PAYS_BY_PHONE = 0.6  # of a phone holder's canteen and supermarket purchases
PHONE_MERCHANTS = (*CANTEENS, "market")
LABELS = ("我的手机", "华为 Mate 60", "小米 14", "iPhone 15", "OPPO Reno 11", "vivo X100")
CODE_SHOWN = timedelta(seconds=4)  # a code was made this long before the POS scanned it
CODES_KEPT = timedelta(hours=24)  # how long an offline POS keeps the (card, n) it accepted
REGISTER_CONCURRENCY = 64


@dataclass
class Fleet:
    """What the phones' holders did, for the summary."""

    registered: int = 0  # this run's registrations (201)
    reused: int = 0  # phones of an earlier run (the state file) whose virtual card is still active
    own: dict[str, str] = field(default_factory=dict)  # holder's card → its session's token: registered itself
    removed: SimPhone | None = None  # the phone removed mid-day
    removed_at: datetime | None = None  # the simulated instant it was removed
    removed_by_holder: bool = False  # with the holder's own session (else the card office's)


def phone_holders(campus: Campus, pins: dict[str, str]) -> tuple[list[Cardholder], set[str]]:
    """PHONE_SHARE of students and staff (deterministic for the seed), and the first OWN_SESSION
    PIN holders, who register theirs themselves (the second value: their cards)."""
    rng = random.Random(f"phones-{campus.seed}")
    drawn = [c for c in campus.cardholders if rng.random() < PHONE_SHARE.get(c.category, 0.0)]
    own = [c for c in campus.cardholders if c.account_id in pins][:OWN_SESSION]
    return list({c.card: c for c in (*own, *drawn)}.values()), {c.card for c in own}


async def register_phones(client: HubClient, campus: Campus, pins: dict[str, str], existing: dict[str, SimPhone],
                          on_progress: Callable[[int], None] = lambda n: None) -> Fleet:
    """Registers each holder's phone, or reuses the one of ``existing`` (holder's card → phone, an
    earlier run's) while its virtual card is active; ``campus.phones`` and ``existing`` get them.
    A holder the hub refuses a phone (409: an account closed by an earlier run) pays by card."""
    fleet = Fleet()
    holders, own = phone_holders(campus, pins)
    anonymous = HubClient(client.session, client.url, None)
    semaphore = asyncio.Semaphore(REGISTER_CONCURRENCY)

    async def register(person: Cardholder, k: int) -> None:
        async with semaphore:
            caller = client
            if person.card in own:  # signed in with its PIN, as the app does
                _, session = await anonymous.call("POST", "/v1/sessions",
                                                  {"account_id": person.account_id, "pin": pins[person.account_id]})
                fleet.own[person.card] = session["token"]
                caller = HubClient(client.session, client.url, session["token"])
            phone = await _still_active(caller, person, existing.get(person.card))
            if phone is not None:
                fleet.reused += 1
            else:
                phone = SimPhone()
                status, answer = await caller.call("POST", f"/v1/accounts/{person.account_id}/virtual-cards",
                                                   {"public_key": phone.public_key, "label": LABELS[k % len(LABELS)]},
                                                   ok=(201, 409))
                if status == 409:
                    return
                phone.cert = answer["cert"]
                fleet.registered += 1
            campus.phones[person.card] = existing[person.card] = phone
        on_progress(1)

    await asyncio.gather(*(register(p, k) for k, p in enumerate(holders)))
    return fleet


async def _still_active(client: HubClient, person: Cardholder, phone: SimPhone | None) -> SimPhone | None:
    """An earlier run's phone, when the hub lists its virtual card as active."""
    if phone is None or phone.revoked or phone.cert is None:
        return None
    _, cards = await client.call("GET", f"/v1/accounts/{person.account_id}/cards?limit=1000")
    active = any(c["card_uid"] == phone.card_uid and c["status"] == "active" for c in cards["items"])
    return phone if active else None


def pay_by_phone(campus: Campus, plan: list[Purchase]) -> list[Purchase]:
    """The day's plan with PAYS_BY_PHONE of the phone holders' canteen and supermarket purchases
    paid by phone (drawn from a generator of their own)."""
    rng = random.Random(f"phone-pays-{campus.seed}")
    merchant_of = campus.merchant_of
    return [replace(p, phone=True) if p.card in campus.phones and merchant_of[p.device_id] in PHONE_MERCHANTS
            and rng.random() < PAYS_BY_PHONE else p for p in plan]


async def remove_a_phone(client: HubClient, campus: Campus, fleet: Fleet, at: datetime) -> SimPhone | None:
    """A holder removes their phone (the app's "remove this phone"): one who registered it
    themselves, with their own session, else the card office for one. Revoked, its virtual card
    is on the hotlist, and its holder pays by card from ``at``."""
    live = sorted(card for card, phone in campus.phones.items() if not phone.revoked)
    mine = [card for card in live if card in fleet.own]
    if not live:
        return None
    card = (mine or live)[0]
    phone = campus.phones[card]
    caller = HubClient(client.session, client.url, fleet.own[card]) if card in fleet.own else client
    await caller.call("POST", f"/v1/virtual-cards/{phone.card_uid}/revoke")
    phone.revoked = True
    fleet.removed, fleet.removed_at, fleet.removed_by_holder = phone, at, card in fleet.own
    return phone


def tampered(code: str) -> str:
    """The code with one character of its signature changed: a doctored screenshot."""
    head, sig = code.rsplit(".", 1)
    i = len(sig) // 2
    return f"{head}.{sig[:i]}{'B' if sig[i] == 'A' else 'A'}{sig[i + 1:]}"


@dataclass
class OfflineCodes:
    """What a POS without its link checks of a payment code itself (DESIGN §10): the code
    (``check_code``: the cert's signature by the hub's key, its expiry, the code's signature, ``t``
    against the swipe's time), the card not on its last signed hotlist, and ``(card, n)`` not
    accepted before; it keeps the ``(card, n)`` it accepted for CODES_KEPT."""

    accepted: dict[tuple[str, int], datetime] = field(default_factory=dict)

    def check(self, code: str, hub_key: Ed25519PublicKey, at: datetime, hotlist: set[str]) -> tuple[Checked, bool]:
        """The code checked, and whether the POS may approve it."""
        self.accepted = {k: seen for k, seen in self.accepted.items() if at - seen < CODES_KEPT}
        checked = check_code(code, hub_key, at)
        if not checked.ok:
            return checked, False
        assert checked.card_uid is not None and checked.n is not None
        return checked, checked.card_uid not in hotlist and (checked.card_uid, checked.n) not in self.accepted

    def accept(self, checked: Checked, at: datetime) -> None:
        assert checked.card_uid is not None and checked.n is not None
        self.accepted[(checked.card_uid, checked.n)] = at


def phone_of(phones: dict[str, SimPhone], purchase: Purchase) -> SimPhone | None:
    """The phone that pays the purchase, or None: by card (as planned, or its phone was removed)."""
    phone = phones.get(purchase.card) if purchase.phone else None
    return phone if phone is not None and not phone.revoked else None


def fault_phone(phones: dict[str, SimPhone], revoked: bool) -> SimPhone | None:
    """The phone a fault is made with: the one removed, or the first (by its holder's card) still on."""
    return next((phones[c] for c in sorted(phones) if phones[c].revoked == revoked), None)

