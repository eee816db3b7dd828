"""A simulated POS terminal (canteen window, till, laundry machine) through its purchases, with
the faults the hub must catch: a resend whose answer was lost (→ ``duplicate``), a forged
signature (→ ``bad_signature``), a stored seq replayed with other content (→
``seq_conflict``), a negative amount or a clock without its offset (→ ``invalid``).

Offline, it decides from the signed hotlist and the signed offline limits of its merchant
(DESIGN §11, ``GET /v1/devices/{id}/limits``, fetched when it starts), written from the contract
as firmware would be; one device of the day ignores the limits on purpose (``ignores_limits``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from device_sim.day import Purchase
from device_sim.driver import Driver, Link
from domain.wire import HOTLIST_PREFIX, LIMITS_PREFIX, sign_envelope

REVERSAL_AFTER = timedelta(seconds=20)
# fault → (what it is, for the summary; the answer the hub must give)
FAULTS = {
    "resend": ("resend, its answer lost", "duplicate"),
    "forged": ("forged signature", "rejected: bad_signature"),
    "replayed": ("seq replayed, other content", "rejected: seq_conflict"),
    "negative": ("negative amount", "rejected: invalid"),
    "naive_clock": ("clock without UTC offset", "rejected: invalid"),
}


@dataclass
class OfflineLimits:
    """What an offline POS checks before it approves (DESIGN §11), and what it counted since it
    lost its link: its approved offline fen, and each card's approved offline fen per local day."""

    limits: dict[str, Any]  # the signed document: max_amount, max_card_day, … (null: none set)
    since: datetime | None = None  # the device's last contact with the hub (its device clock)
    device_fen: int = 0
    card_day_fen: dict[tuple[str, str], int] = field(default_factory=dict)

    def allows(self, card: str, amount_fen: int, at: datetime) -> bool:
        if self.limits["version"] == 0:
            return True
        day = (card, at.date().isoformat())
        since = self.since or at
        return (amount_fen <= self.limits["max_amount"]
                and self.card_day_fen.get(day, 0) + amount_fen <= self.limits["max_card_day"]
                and self.device_fen + amount_fen <= self.limits["max_device_total"]
                and (at - since).total_seconds() <= self.limits["max_offline_seconds"])

    def approved(self, card: str, amount_fen: int, at: datetime) -> None:
        self.since = self.since or at
        self.device_fen += amount_fen
        day = (card, at.date().isoformat())
        self.card_day_fen[day] = self.card_day_fen.get(day, 0) + amount_fen

    def online(self, at: datetime) -> None:
        """Back in contact: a new offline period starts from here (the card tallies keep their day)."""
        self.since, self.device_fen = at, 0


@dataclass
class PosDriver(Driver):
    hotlist: set[str] | None = None  # the signed hotlist fetched when the link dropped
    faults: list[str] = field(default_factory=list)  # to send once, mid-way through the next phase
    limits: OfflineLimits | None = None  # fetched, signed, when the device starts
    ignores_limits: bool = False  # the day's one rogue device: approves beyond its limits

    async def run(self, link: Link, purchases: list[Purchase]) -> None:
        """The purchases in time order, then (the phase ends) whatever the device kept."""
        if self.limits is None:
            self.limits = OfflineLimits(await link.signed(self.device, "limits", LIMITS_PREFIX))
        middle = len(purchases) // 2
        for i, purchase in enumerate(purchases):
            envelope = await self._swipe(link, purchase)
            if envelope is None:  # offline: kept for later
                continue
            results = await self.upload_kept(link)
            if i >= middle and self.faults:
                await self._faults(link, envelope)
            last = results[-1] if results else {}
            if purchase.reverse and last.get("seq") == envelope["seq"] and last.get("decision") == "approved":
                reversal = self.device.reversal(purchase.card, envelope["seq"], purchase.at + REVERSAL_AFTER)
                self.record(reversal, planned=False)
                await self.upload_kept(link)
            if purchase.resend:
                await self.send_fault(link, "resend", envelope)
        await self.upload_kept(link)
        if self.faults and self.planned:  # no online swipe after the middle: send them now
            await self._faults(link, self.sent[max(self.planned)])

    async def _swipe(self, link: Link, purchase: Purchase) -> dict[str, Any] | None:
        """Makes the purchase's envelope; returns it when the device is online."""
        assert self.limits is not None
        if not self.is_offline(purchase.at):
            self.hotlist = None
            self.limits.online(purchase.at)
            envelope = self.device.purchase(purchase.card, purchase.amount_fen, purchase.at)
            self.record(envelope)
            return envelope
        if self.hotlist is None:  # the link just dropped: decide from the last signed hotlist
            self.hotlist = set((await link.signed(self.device, "hotlist", HOTLIST_PREFIX))["added"])
        allowed = self.ignores_limits or self.limits.allows(purchase.card, purchase.amount_fen, purchase.at)
        decision = "declined" if purchase.card in self.hotlist or not allowed else "approved"
        if decision == "approved":
            self.limits.approved(purchase.card, purchase.amount_fen, purchase.at)
        self.record(self.device.purchase(purchase.card, purchase.amount_fen, purchase.at, offline=True,
                                         decision=decision))
        return None

    async def _faults(self, link: Link, stored: dict[str, Any]) -> None:
        """Sends each scheduled fault, built on ``stored`` (an envelope the hub has stored)."""
        for kind in self.faults:
            await self.send_fault(link, kind, self._faulty(kind, stored))
        self.faults = []

    def _faulty(self, kind: str, stored: dict[str, Any]) -> dict[str, Any]:
        device = self.device
        unsigned = {k: v for k, v in stored.items() if k != "sig"}
        if kind == "forged":
            return {**stored, "amount": stored["amount"] + 100}
        if kind == "replayed":
            return sign_envelope({**unsigned, "amount": stored["amount"] + 200}, device.key)
        # The next seq, never part of the device's chain: the hub must store nothing of it.
        following = {**unsigned, "seq": device.last_seq + 1, "prev": device.prev}
        if kind == "negative":
            return sign_envelope({**following, "amount": -stored["amount"]}, device.key)
        assert kind == "naive_clock", kind
        return sign_envelope({**following, "at": stored["at"][:23]}, device.key)
