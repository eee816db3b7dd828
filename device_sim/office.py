"""The card office's money work during the day (DESIGN §11): this month's meal subsidies, which
expire while the day runs; refunds of a few wrong charges and two accounts closed (销户) after
dinner; and, before the summary, the expired subsidy read back for the books.

The demo compresses a campus day into about a minute of wall time, while a grant expires by the
hub's clock: so the meal subsidies are granted when seeding ends, expiring ``expires_in_s``
seconds later, during the day's run."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from device_sim.campus import Campus, Cardholder
from device_sim.client import HubClient
from device_sim.day import Purchase
from device_sim.tally import Tally

MEAL_EXPIRES_IN_S = 12.0  # after seeding: the grants expire during lunch or the afternoon
MEAL_CONCURRENCY = 64
REFUNDS = 6  # wrong charges refunded after dinner: half of each of the first three, the others whole
REFUND_REASONS = ("菜品有误 wrong dish", "重复扣款 charged twice", "价格输错 wrong price keyed")
CLOSURES = 2  # graduating students whose accounts are closed after dinner
EXPIRY_WAIT_S = 45.0  # how long the summary waits for every meal subsidy to have expired
READS = 32  # account reads in flight
# fault kind → (what it is, the answer the hub must give), like device_sim.pos.FAULTS
OFFICE_FAULTS = {
    "refund_again": ("refund sent twice, same ref", "200"),
    "refund_over": ("refund over what remains", "409 over_remaining"),
}


@dataclass
class OfficeBooks:
    """What the card office did and was answered: the terms of the books it adds."""

    refunds: list[dict[str, Any]] = field(default_factory=list)  # the 201 answers
    closures: list[dict[str, Any]] = field(default_factory=list)  # the 201 answers
    meal_expired_fen: int = 0  # read back from the transactions of the meal-subsidy accounts
    meal_pending: int = 0  # meal subsidies not seen expired when the wait ended

    @property
    def refunds_fen(self) -> int:
        return sum(r["amount"] for r in self.refunds)

    @property
    def payouts_fen(self) -> int:
        return sum(c["payout"] for c in self.closures)

    @property
    def expired_fen(self) -> int:
        return self.meal_expired_fen + sum(c["expired_subsidy"] for c in self.closures)


async def grant_meal_subsidies(client: HubClient, campus: Campus, expires_in_s: float = MEAL_EXPIRES_IN_S) -> None:
    """This month's meal subsidy (餐补) of every student who has one, expiring ``expires_in_s``
    from now; a grant credited by an earlier run (its ref, another expiry: 409) is kept."""
    expires_at = datetime.now(campus.tz).replace(microsecond=0) + timedelta(seconds=expires_in_s)
    campus.meal_expires_at = expires_at
    month = f"{campus.day:%Y-%m}"
    semaphore = asyncio.Semaphore(MEAL_CONCURRENCY)

    async def grant(person: Cardholder) -> None:
        ref = f"meal-{month}-{campus.seed}-{person.account_id}"
        # Never in the past (the hub refuses it) however long the pass takes.
        at = max(expires_at, datetime.now(campus.tz) + timedelta(seconds=2))
        async with semaphore:
            status, _ = await client.call("POST", f"/v1/accounts/{person.account_id}/subsidies",
                                          {"amount": person.meal_fen, "ref": ref, "expires_at": at.isoformat()},
                                          ok=(200, 201, 409))
        if status == 201:
            campus.credits_fen += person.meal_fen
            campus.meal_refs[person.account_id] = ref

    await asyncio.gather(*(grant(p) for p in campus.cardholders if p.meal_fen))


def refundable(tally: Tally, campus: Campus, rng: random.Random) -> list[dict[str, Any]]:
    """Up to REFUNDS approved online purchases of known accounts, not reversed (drawn from them
    in (device, seq) order, so the seed decides)."""
    account_of = {c.card: c.account_id for c in campus.cardholders}
    account_of |= {phone.card_uid: account_of[card] for card, phone in campus.phones.items()}  # virtual cards
    chosen = sorted((key, p) for key, p in tally.online_purchases.items()
                    if key not in tally.reversed and p["card"] in account_of)
    picked = rng.sample(chosen, min(REFUNDS, len(chosen)))
    return [{**p, "account_id": account_of[p["card"]]} for _, p in sorted(picked)]


async def refund_wrong_charges(client: HubClient, campus: Campus, tally: Tally, books: OfficeBooks,
                               rng: random.Random) -> None:
    """Half of the first three purchases refunded, the others whole; one refund sent again (→ 200)
    and one asked for more than remains of its purchase (→ 409). Whatever the hub refunded (201)
    goes into the books and the tally, expected or not."""
    picked = refundable(tally, campus, rng)
    for k, purchase in enumerate(picked):
        amount = purchase["amount"] // 2 if k < len(picked) // 2 else purchase["amount"]
        device, seq = purchase["device"], purchase["seq"]
        body = {"device": device, "seq": seq, "amount": amount, "reason": REFUND_REASONS[k % len(REFUND_REASONS)],
                "ref": f"rf-{campus.seed}-{device}-{seq}"}
        path = f"/v1/accounts/{purchase['account_id']}/refunds"
        _refunded(books, tally, purchase, *await client.call("POST", path, body))
        if k == 0:
            status, answer = await client.call("POST", path, body, ok=(200, 201, 409))
            _refunded(books, tally, purchase, status, answer)
            tally.add_answer("refund_again", str(status))
            over = {**body, "amount": purchase["amount"], "ref": f"{body['ref']}-over"}
            status, answer = await client.call("POST", path, over, ok=(200, 201, 404, 409))
            _refunded(books, tally, purchase, status, answer)
            code = answer.get("code", "") if isinstance(answer, dict) and status >= 400 else ""
            tally.add_answer("refund_over", f"{status} {code}".strip())


def _refunded(books: OfficeBooks, tally: Tally, purchase: dict[str, Any], status: int, answer: Any) -> None:
    if status == 201:
        books.refunds.append(answer)
        tally.refunded(purchase, answer["amount"], whole=answer["remaining"] == 0)


def closable(campus: Campus, purchases: list[Purchase], online: Callable[[str, datetime], bool],
             after: datetime) -> list[Cardholder]:
    """Students without a meal subsidy of this run (its expiry is read apart) and not lost,
    with a purchase after ``after`` at a device then online (``online(device_id, at)``)."""
    later = {p.card for p in purchases if p.at >= after and online(p.device_id, p.at)}
    return [c for c in campus.cardholders if c.category == "student" and c.card in later
            and c.account_id not in campus.meal_refs and c.card not in campus.lost]


async def close_accounts(client: HubClient, campus: Campus, books: OfficeBooks, candidates: list[Cardholder],
                         rng: random.Random) -> list[dict[str, Any]]:
    """Closes CLOSURES of ``candidates`` whose cash is not negative (a closure would be refused)."""
    closed: list[dict[str, Any]] = []
    for person in rng.sample(candidates, len(candidates)):
        if len(closed) == CLOSURES:
            break
        _, balance = await client.call("GET", f"/v1/accounts/{person.account_id}/balance")
        if balance["cash"] < 0:
            continue
        status, answer = await client.call("POST", f"/v1/accounts/{person.account_id}/close",
                                           {"ref": f"close-{campus.seed}-{person.account_id}"})
        closed.append(answer)
        if status == 201:
            books.closures.append(answer)
    return closed


async def read_meal_expiries(client: HubClient, campus: Campus, books: OfficeBooks,
                             wait_s: float = EXPIRY_WAIT_S) -> None:
    """Waits (at most ``wait_s``) until every meal subsidy this run granted has expired, then
    adds the expired fen, read from each account's transactions, to the books."""
    deadline = time.monotonic() + wait_s
    pending = {c.account_id: c for c in campus.cardholders if c.account_id in campus.meal_refs}
    if campus.meal_expires_at is not None:
        ahead = (campus.meal_expires_at - datetime.now(campus.tz)).total_seconds()
        await asyncio.sleep(min(max(ahead, 0.0), wait_s))
    semaphore = asyncio.Semaphore(READS)

    async def expired(person: Cardholder) -> int | None:
        async with semaphore:
            rows = await _transactions(client, person.account_id)
        ref = campus.meal_refs[person.account_id]
        fen = -sum(r["amount"] for r in rows if r["kind"] == "expiry")
        # Spent to nothing before it expired: its expiry moves no money (and shows no row).
        spent = sum(r["subsidy"] for r in rows) <= person.subsidy_fen
        return fen if spent or any(r["kind"] == "expiry" and r.get("ref") == ref for r in rows) else None

    while pending:
        await client.caught_up()
        people = list(pending.values())
        for person, fen in zip(people, await asyncio.gather(*(expired(p) for p in people)), strict=True):
            if fen is not None:
                books.meal_expired_fen += fen
                del pending[person.account_id]
        if not pending or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    books.meal_pending = len(pending)


async def _transactions(client: HubClient, account_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):  # a simulated account holds a few dozen rows at most
        query = urlencode({"limit": 1000, **({"cursor": cursor} if cursor else {})})
        _, page = await client.call("GET", f"/v1/accounts/{account_id}/transactions?{query}")
        rows += page["items"]
        cursor = page["next"]
        if not cursor:
            break
    return rows
