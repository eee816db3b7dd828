"""What the devices were told, counted for the summary and the cross-checks."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

ACKED = ("accepted", "duplicate")


@dataclass
class Tally:
    events: int = 0  # accepted (stored) events
    statuses: Counter[str] = field(default_factory=Counter)
    decisions: Counter[str] = field(default_factory=Counter)  # "approved" or "declined: <reason>"
    codes: Counter[str] = field(default_factory=Counter)  # rejection codes
    revenue_fen: Counter[str] = field(default_factory=Counter)  # per merchant: approved purchases
    reversals_fen: Counter[str] = field(default_factory=Counter)  # per merchant: approved reversals
    refunds_fen: Counter[str] = field(default_factory=Counter)  # per merchant: the card office's refunds
    sales: Counter[str] = field(default_factory=Counter)  # per merchant: purchases − reversals − whole refunds
    faults: Counter[tuple[str, str]] = field(default_factory=Counter)  # (fault sent, the hub's answer)
    # (device, seq) → the approved online purchases that moved money, for the card office to refund
    online_purchases: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    reversed: set[tuple[str, int]] = field(default_factory=set)  # (device, seq) of the purchases voided
    # Paid by card or by phone (DESIGN §10), as the hub's sales count them: purchases − reversals
    # − whole refunds, and their fen net of reversals and refunds.
    medium_sales: Counter[str] = field(default_factory=Counter)
    medium_fen: Counter[str] = field(default_factory=Counter)
    offline_codes: Counter[str] = field(default_factory=Counter)  # decisions of POS that checked a code offline
    # (device, seq) → the virtual card whose payment code a purchase carries (it names no card)
    code_cards: dict[tuple[str, int], str] = field(default_factory=dict)

    def paid_by_code(self, envelope: dict[str, Any], card_uid: str | None) -> None:
        """The POS made ``envelope`` with a payment code of virtual card ``card_uid`` (None: a code
        that names none, a doctored one)."""
        if card_uid is not None:
            self.code_cards[(envelope["device"], envelope["seq"])] = card_uid

    def card_of(self, envelope: dict[str, Any]) -> str | None:
        """The card of an envelope: its ``card``, or the virtual card of its payment code."""
        return envelope.get("card") or self.code_cards.get((envelope["device"], envelope["seq"]))

    def add(self, merchant: str, sent: dict[int, dict[str, Any]], results: list[dict[str, Any]]) -> None:
        for result in results:
            self.statuses[result["status"]] += 1
            if result["status"] == "rejected":
                self.codes[result["code"]] += 1
                continue
            if result["status"] != "accepted":
                continue
            self.events += 1
            decision = result["decision"]
            reason = result.get("reason", "(decided offline)")
            self.decisions[decision if decision == "approved" else f"declined: {reason}"] += 1
            # Money moved only where the card resolved to an account (the result has a balance):
            # an offline approval of an unknown card is recorded and flagged, not debited.
            envelope = sent.get(result["seq"])
            if envelope is not None and envelope.get("offline") and "credential" in envelope:
                self.offline_codes[decision] += 1
            if envelope is None or decision != "approved" or "balance" not in result:
                continue
            if envelope["type"] == "purchase":
                self._purchased(merchant, envelope)
            elif envelope["type"] == "reversal":
                voided = sent_amount(sent, envelope["ref_seq"])
                self.reversals_fen[merchant] += voided
                self.sales[merchant] -= 1 if voided else 0
                if voided:
                    self.medium_fen[medium(sent[envelope["ref_seq"]])] -= voided
                    self.medium_sales[medium(sent[envelope["ref_seq"]])] -= 1
                self.reversed.add((envelope["device"], envelope["ref_seq"]))

    def _purchased(self, merchant: str, envelope: dict[str, Any]) -> None:
        """An approved purchase that moved money."""
        self.revenue_fen[merchant] += envelope["amount"]
        self.sales[merchant] += 1
        self.medium_fen[medium(envelope)] += envelope["amount"]
        self.medium_sales[medium(envelope)] += 1
        if not envelope.get("offline"):
            key = (envelope["device"], envelope["seq"])
            self.online_purchases[key] = {"device": key[0], "seq": key[1], "card": self.card_of(envelope),
                                          "amount": envelope["amount"], "merchant": merchant,
                                          "medium": medium(envelope)}

    def add_fault(self, kind: str, results: list[dict[str, Any]]) -> None:
        """A deliberately faulty input and what the hub answered (also counted as a result)."""
        for result in results:
            self.statuses[result["status"]] += 1
            if result["status"] == "rejected":
                self.codes[result["code"]] += 1
            answer = f"rejected: {result['code']}" if result["status"] == "rejected" else result["status"]
            self.faults[(kind, answer)] += 1

    def add_answer(self, kind: str, answer: str) -> None:
        """A deliberately faulty card-office request (device_sim.office) and the hub's answer."""
        self.faults[(kind, answer)] += 1

    def refunded(self, purchase: dict[str, Any], amount_fen: int, *, whole: bool) -> None:
        """A refund the hub made (201) of one of ``online_purchases``: statistics net it, and count
        the purchase out once nothing of it remains."""
        self.refunds_fen[purchase["merchant"]] += amount_fen
        self.sales[purchase["merchant"]] -= 1 if whole else 0
        self.medium_fen[purchase["medium"]] -= amount_fen
        self.medium_sales[purchase["medium"]] -= 1 if whole else 0

    def net_fen(self, merchant: str) -> int:
        return self.revenue_fen[merchant] - self.reversals_fen[merchant] - self.refunds_fen[merchant]


def medium(envelope: dict[str, Any]) -> str:
    """How a purchase was paid: ``phone`` (a payment code) or ``card``."""
    return "phone" if "credential" in envelope else "card"


def sent_amount(sent: dict[int, dict[str, Any]], seq: int) -> int:
    envelope = sent.get(seq)
    return envelope["amount"] if envelope and envelope["type"] == "purchase" else 0


def acked(results: list[dict[str, Any]], seqs: set[int] | None = None) -> int:
    """How many results the device may forget (of ``seqs``, when given)."""
    return sum(1 for r in results if r["status"] in ACKED and (seqs is None or r["seq"] in seqs))
