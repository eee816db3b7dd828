"""The books identity of §1: what was credited equals the balances plus purchases less reversals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import sql

from hub.audit.replay import Replay
from hub.audit.report import Check


@dataclass
class Sums:
    credits: int = 0
    purchases: int = 0
    reversals: int = 0

    def add_swipe(self, event: Any) -> None:
        """The money an approved purchase took from an account, or a reversal gave back."""
        envelope = event.envelope
        facts, result = event.facts, event.result
        if result.get("decision") == "approved" and facts.get("account_id") is not None:
            moved = facts.get("subsidy_fen", 0) + facts.get("cash_fen", 0)
            if envelope["type"] == "purchase":
                self.purchases += moved
            elif envelope["type"] == "reversal":
                self.reversals += moved


def check_books(sums: Sums, replay: Replay, check: Check) -> None:
    row = replay.connection.execute(sql.SQL(
        "SELECT coalesce(sum(subsidy_fen + cash_fen), 0) AS total FROM {}.balances"
    ).format(sql.Identifier(replay.view("ledger").datastore.schema))).fetchone()
    balances = int(row["total"]) if row else 0
    check.count = sums.credits
    check.detail = (f"¥{sums.credits / 100:,.2f} = ¥{balances / 100:,.2f} + ¥{sums.purchases / 100:,.2f}"
                    f" − ¥{sums.reversals / 100:,.2f}")
    if sums.credits != balances + sums.purchases - sums.reversals:
        check.fail(f"off by {sums.credits - (balances + sums.purchases - sums.reversals)} fen: {check.detail}")
