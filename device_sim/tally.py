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
    refunds_fen: Counter[str] = field(default_factory=Counter)  # per merchant: approved reversals
    sales: Counter[str] = field(default_factory=Counter)  # per merchant: purchases − reversals that moved money
    faults: Counter[tuple[str, str]] = field(default_factory=Counter)  # (fault sent, the hub's answer)

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
            if envelope is None or decision != "approved" or "balance" not in result:
                continue
            if envelope["type"] == "purchase":
                self.revenue_fen[merchant] += envelope["amount"]
                self.sales[merchant] += 1
            elif envelope["type"] == "reversal":
                refunded = sent_amount(sent, envelope["ref_seq"])
                self.refunds_fen[merchant] += refunded
                self.sales[merchant] -= 1 if refunded else 0

    def add_fault(self, kind: str, results: list[dict[str, Any]]) -> None:
        """A deliberately faulty input and what the hub answered (also counted as a result)."""
        for result in results:
            self.statuses[result["status"]] += 1
            if result["status"] == "rejected":
                self.codes[result["code"]] += 1
            answer = f"rejected: {result['code']}" if result["status"] == "rejected" else result["status"]
            self.faults[(kind, answer)] += 1

    def net_fen(self, merchant: str) -> int:
        return self.revenue_fen[merchant] - self.refunds_fen[merchant]


def sent_amount(sent: dict[int, dict[str, Any]], seq: int) -> int:
    envelope = sent.get(seq)
    return envelope["amount"] if envelope and envelope["type"] == "purchase" else 0


def acked(results: list[dict[str, Any]], seqs: set[int] | None = None) -> int:
    """How many results the device may forget (of ``seqs``, when given)."""
    return sum(1 for r in results if r["status"] in ACKED and (seqs is None or r["seq"] in seqs))
