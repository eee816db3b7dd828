"""The books identity of DESIGN §11 (it replaces §1's): Σ top-ups + Σ subsidies = Σ balances +
Σ approved purchases − Σ approved reversals − Σ refunds + Σ payouts + Σ expired subsidies,
every term summed from the stored events but the balances (the ledger's replayed view).

The snapshot ends at a commit; the ledger's position need not (a verify during uploads: its view
may stand between a swipe's ``SwipeLog.Recorded`` and its ``Account.Debited``, stored together).
So the balances are the replayed ones brought forward by the moves of the events after that
position (``pending``), and the identity is checked over the whole snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import sql

from domain.accounts import Account
from hub.audit.replay import Replay
from hub.audit.report import Check
from projections.ledger import LedgerProjection


@dataclass
class Sums:
    topups: int = 0
    subsidies: int = 0
    purchases: int = 0
    reversals: int = 0
    refunds: int = 0
    payouts: int = 0
    expired: int = 0
    pending: int = 0  # the balance moves of the events after the ledger's position
    pending_events: int = 0

    @property
    def credits(self) -> int:
        return self.topups + self.subsidies

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

    def add_account_event(self, event: Any) -> None:
        """Credits, refunds, payouts and expired subsidy (each expiry counted once: closure
        expires by ``SubsidyExpired`` events; ``Closed.expired_subsidy_fen`` only repeats them)."""
        if isinstance(event, Account.Credited):
            if event.kind == "subsidy":
                self.subsidies += event.amount_fen
            else:
                self.topups += event.amount_fen
        elif isinstance(event, Account.RefundIssued):
            self.refunds += event.amount_fen
        elif isinstance(event, Account.SubsidyExpired):
            self.expired += event.amount_fen
        elif isinstance(event, Account.Closed):
            self.payouts += event.payout_fen

    def add_pending(self, event: Any) -> None:
        """An event the ledger's view has not applied yet: what it will move in the balances."""
        self.pending_events += 1
        if isinstance(event, Account.Credited):
            self.pending += event.amount_fen
        elif isinstance(event, Account.Debited):
            self.pending -= event.subsidy_fen + event.cash_fen
        elif isinstance(event, Account.Refunded | Account.RefundIssued):
            self.pending += event.subsidy_fen + event.cash_fen
        elif isinstance(event, Account.SubsidyExpired):
            self.pending -= event.amount_fen
        elif isinstance(event, Account.Closed):
            self.pending -= event.payout_fen


def _money(fen: int) -> str:
    """Yuan with two decimals from integer fen (no float on the way: sums may pass 2^53)."""
    whole, cents = divmod(abs(fen), 100)
    return f"{'-' if fen < 0 else ''}¥{whole:,}.{cents:02d} ({fen:,} fen)"


def check_books(sums: Sums, replay: Replay, check: Check) -> None:
    row = replay.connection.execute(sql.SQL(
        "SELECT coalesce(sum(subsidy_fen + cash_fen), 0) AS total FROM {}.balances"
    ).format(sql.Identifier(replay.view(LedgerProjection.name).datastore.schema))).fetchone()
    balances = (int(row["total"]) if row else 0) + sums.pending
    check.count = sums.credits
    check.detail = (
        f"top-ups {_money(sums.topups)} + subsidies {_money(sums.subsidies)} = balances {_money(balances)}"
        f" + purchases {_money(sums.purchases)} − reversals {_money(sums.reversals)}"
        f" − refunds {_money(sums.refunds)} + payouts {_money(sums.payouts)}"
        f" + expired subsidies {_money(sums.expired)}")
    if sums.pending_events:
        check.detail += (f"; the balances include the moves of {sums.pending_events:,} events"
                         f" stored after the ledger's position ({_money(sums.pending)})")
    right = balances + sums.purchases - sums.reversals - sums.refunds + sums.payouts + sums.expired
    if sums.credits != right:
        check.fail(f"off by {sums.credits - right} fen: {check.detail}")
