"""A simulated POS terminal (canteen window, till, laundry machine) through its purchases, with
the faults the hub must catch: a resend whose answer was lost (→ ``duplicate``), a forged
signature (→ ``bad_signature``), a stored seq replayed with other content (→
``seq_conflict``), a negative amount or a clock without its offset (→ ``invalid``); and payment
codes (DESIGN §10) that must not pay: a screenshot of a code used again (→ ``credential_reused``),
an old code (→ ``credential_expired``), a removed phone's (→ ``card_cancelled``) and a doctored
one (→ ``credential_invalid``), each a swipe the hub stores and declines.

A canteen window or till scans a phone's payment code where the plan says so
(``Purchase.phone``; ``credential`` instead of ``card`` in the envelope; a reversal names the
virtual card). Offline, it decides from the signed hotlist and the signed offline limits of its
merchant (DESIGN §11, ``GET /v1/devices/{id}/limits``, fetched when it starts), and checks codes
itself (``device_sim.phones.OfflineCodes``), written from the contract as firmware would be; one
device of the day ignores the limits on purpose (``ignores_limits``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from device_sim.day import Purchase
from device_sim.driver import Driver, Link
from device_sim.phone import SimPhone
from device_sim.phones import CODE_SHOWN, OfflineCodes, fault_phone, phone_of, tampered
from domain.wire import HOTLIST_PREFIX, LIMITS_PREFIX, sign_envelope

REVERSAL_AFTER = timedelta(seconds=20)
SCREENSHOT_AFTER = timedelta(seconds=20)  # a code's screenshot shown again at another till: within its minute
EXPIRED_BY = timedelta(minutes=10)  # an old code: made this long before the till scans it
# fault → (what it is, for the summary; the answer the hub must give)
FAULTS = {
    "resend": ("resend, its answer lost", "duplicate"),
    "forged": ("forged signature", "rejected: bad_signature"),
    "replayed": ("seq replayed, other content", "rejected: seq_conflict"),
    "negative": ("negative amount", "rejected: invalid"),
    "naive_clock": ("clock without UTC offset", "rejected: invalid"),
    "code_screenshot": ("payment code shown again (screenshot)", "declined: credential_reused"),
    "code_expired": ("payment code 10 minutes old", "declined: credential_expired"),
    "code_revoked": ("payment code of a removed phone", "declined: card_cancelled"),
    "code_tampered": ("payment code doctored", "declined: credential_invalid"),
}
PHONE_FAULTS = ("code_screenshot", "code_expired", "code_revoked", "code_tampered")


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
    phones: dict[str, SimPhone] = field(default_factory=dict)  # holder's card → phone (the campus's)
    codes: OfflineCodes = field(default_factory=OfflineCodes)  # the codes it accepted offline

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
                card = self.tally.card_of(envelope)  # a phone's purchase: its virtual card
                assert card is not None
                reversal = self.device.reversal(card, envelope["seq"], purchase.at + REVERSAL_AFTER)
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
        phone = phone_of(self.phones, purchase)
        if not self.is_offline(purchase.at):
            self.hotlist = None
            self.limits.online(purchase.at)
            if phone is None:
                envelope = self.device.purchase(purchase.card, purchase.amount_fen, purchase.at)
            else:
                envelope = self._by_code(phone.code(purchase.at - CODE_SHOWN), phone.card_uid, purchase.amount_fen,
                                         purchase.at)
            self.record(envelope)
            return envelope
        if self.hotlist is None:  # the link just dropped: decide from the last signed hotlist
            self.hotlist = set((await link.signed(self.device, "hotlist", HOTLIST_PREFIX))["added"])
        self.record(self._offline(link, purchase, phone))
        return None

    def _offline(self, link: Link, purchase: Purchase, phone: SimPhone | None) -> dict[str, Any]:
        """Decided here: the card (or the phone's code, checked as the hub would) against the
        hotlist, then the merchant's offline limits."""
        assert self.limits is not None and self.hotlist is not None
        card: str | None = purchase.card
        checked, code, ok = None, "", purchase.card not in self.hotlist
        if phone is not None:
            code = phone.code(purchase.at - CODE_SHOWN)
            checked, ok = self.codes.check(code, link.hub_key, purchase.at, self.hotlist)
            card = checked.card_uid
        if ok:
            assert card is not None
            ok = self.ignores_limits or self.limits.allows(card, purchase.amount_fen, purchase.at)
        decision = "approved" if ok else "declined"
        if ok:
            assert card is not None
            self.limits.approved(card, purchase.amount_fen, purchase.at)
            if checked is not None:
                self.codes.accept(checked, purchase.at)
        if phone is None:
            return self.device.purchase(purchase.card, purchase.amount_fen, purchase.at, offline=True,
                                        decision=decision)
        return self._by_code(code, card, purchase.amount_fen, purchase.at, offline=True, decision=decision)

    def _by_code(self, code: str, card: str | None, amount_fen: int, at: datetime, *, offline: bool = False,
                 decision: str | None = None) -> dict[str, Any]:
        """A purchase paid with a payment code of virtual card ``card`` (None: a doctored code)."""
        envelope = self.device.purchase_by_code(code, amount_fen, at, offline=offline, decision=decision)
        self.tally.paid_by_code(envelope, card)
        return envelope

    async def _faults(self, link: Link, stored: dict[str, Any]) -> None:
        """Sends each scheduled fault, built on ``stored`` (an envelope the hub has stored)."""
        for kind in self.faults:
            if kind in PHONE_FAULTS:
                await self._phone_fault(link, kind, stored)
            else:
                await self.send_fault(link, kind, self._faulty(kind, stored))
        self.faults = []

    async def _phone_fault(self, link: Link, kind: str, stored: dict[str, Any]) -> None:
        """A payment code that must not pay, scanned after ``stored`` (for its amount): a swipe of
        the device's chain, stored and declined. Not sent when the campus has no such phone."""
        phone = fault_phone(self.phones, revoked=kind == "code_revoked")
        if phone is None:
            return
        at = datetime.fromisoformat(stored["at"]) + SCREENSHOT_AFTER
        code = phone.code(at - (EXPIRED_BY if kind == "code_expired" else CODE_SHOWN))
        if kind == "code_screenshot":  # its holder pays with it, and a screenshot of it comes next
            await self._scan(link, code, phone.card_uid, stored["amount"], at)
            at += SCREENSHOT_AFTER
        if kind == "code_tampered":
            result = await self._scan(link, tampered(code), None, stored["amount"], at)
        else:
            result = await self._scan(link, code, phone.card_uid, stored["amount"], at)
        self.tally.add_answer(kind, answer_of(result))

    async def _scan(self, link: Link, code: str, card: str | None, amount_fen: int, at: datetime) -> dict[str, Any]:
        """One online purchase by code outside the plan; the hub's result for it."""
        envelope = self._by_code(code, card, amount_fen, at)
        self.record(envelope, planned=False)
        results = await self.upload_kept(link)
        return next(r for r in results if r["seq"] == envelope["seq"])

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


def answer_of(result: dict[str, Any]) -> str:
    """The hub's answer to one event, as the faults table shows it."""
    if result["status"] == "rejected":
        return f"rejected: {result['code']}"
    return "approved" if result["decision"] == "approved" else f"declined: {result.get('reason', '')}"
