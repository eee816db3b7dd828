"""Balances and transaction histories: what a cardholder sees within a second of a swipe."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking

from domain.accounts import Account
from domain.devices import SwipeLog
from domain.facts import swipe_card
from domain.wire import parse_rfc3339
from projections.base import BatchingProjection, View


TRANSACTION_COLUMNS = (
    ("notification_id", "bigint"), ("account_id", "text"), ("kind", "text"), ("amount_fen", "numeric"),
    ("subsidy_fen", "numeric"), ("cash_fen", "numeric"), ("decision", "text"), ("reason", "text"),
    ("flags", "text"), ("balance_fen", "numeric"), ("card_uid", "text"), ("device_id", "text"), ("seq", "bigint"),
    ("merchant_id", "text"), ("ref", "text"), ("at", "text"), ("occurred_at", "timestamptz"),
    ("recorded_at", "timestamptz"),
)


class LedgerView(View):
    """Money is ``numeric``: a balance or a sum of amounts an older hub accepted (2^53−1 fen
    each) may leave the 64-bit range, and the view must still hold it exactly.

    No personal field is kept (DESIGN §12): the read of an account opens its name from its
    Opened event with its data key (``ledger_queries.account``); ``erased_at`` is when the key
    was destroyed."""

    tables = {
        "balances": "CREATE TABLE IF NOT EXISTS {schema}.balances ("
            " account_id text PRIMARY KEY, category text NOT NULL,"
            " subsidy_fen numeric NOT NULL DEFAULT 0, cash_fen numeric NOT NULL DEFAULT 0, erased_at timestamptz)",
        "transactions": "CREATE TABLE IF NOT EXISTS {schema}.transactions ("
            " notification_id bigint PRIMARY KEY, account_id text NOT NULL, kind text NOT NULL,"
            " amount_fen numeric NOT NULL, subsidy_fen numeric NOT NULL, cash_fen numeric NOT NULL,"
            " decision text, reason text, flags text[] NOT NULL DEFAULT '{{}}', balance_fen numeric,"
            " card_uid text, device_id text, seq bigint, merchant_id text, ref text,"
            " at text, occurred_at timestamptz, recorded_at timestamptz NOT NULL)",
        # Subsidy grants with an expiry, until their SubsidyExpired (or the account's closure):
        # what the hub's clock expires (``hub.ingest.expiry``). Empty for events before §11.
        "subsidy_expiries": "CREATE TABLE IF NOT EXISTS {schema}.subsidy_expiries ("
            " account_id text NOT NULL, ref text NOT NULL, expires_at timestamptz NOT NULL,"
            " PRIMARY KEY (account_id, ref))",
    }
    indexes = (
        "CREATE INDEX IF NOT EXISTS transactions_by_account"
        " ON {schema}.transactions (account_id, notification_id DESC)",
        "CREATE INDEX IF NOT EXISTS transactions_by_merchant ON {schema}.transactions (merchant_id, occurred_at)",
        # Refunds are few: the dashboard's refunds of a day read them without a scan.
        "CREATE INDEX IF NOT EXISTS transactions_refunds ON {schema}.transactions (occurred_at) WHERE kind = 'refund'",
        "CREATE INDEX IF NOT EXISTS subsidy_expiries_by_time ON {schema}.subsidy_expiries (expires_at)",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.widen_to_numeric("balances", ("subsidy_fen", "cash_fen"))
        self.widen_to_numeric("transactions", ("amount_fen", "subsidy_fen", "cash_fen", "balance_fen"))
        # A view made before DESIGN §12 kept names in clear: they go (the rows stay).
        self.sql_create_statements.append(self.sql("ALTER TABLE {schema}.balances DROP COLUMN IF EXISTS name"))
        self.sql_create_statements.append(self.sql(
            "ALTER TABLE {schema}.balances ADD COLUMN IF NOT EXISTS erased_at timestamptz"))
        self.open_account = self.sql(
            "INSERT INTO {schema}.balances (account_id, category)"
            " VALUES (%(account_id)s, %(category)s) ON CONFLICT DO NOTHING"
        )
        self.erase_account = self.sql(
            "UPDATE {schema}.balances SET erased_at = %(erased_at)s WHERE account_id = %(account_id)s"
        )
        self.add_expiry = self.sql(
            "INSERT INTO {schema}.subsidy_expiries (account_id, ref, expires_at)"
            " VALUES (%(account_id)s, %(ref)s, %(expires_at)s) ON CONFLICT DO NOTHING"
        )
        self.drop_expiry = self.sql(
            "DELETE FROM {schema}.subsidy_expiries WHERE account_id = %(account_id)s AND ref = %(ref)s"
        )
        self.drop_expiries = self.sql("DELETE FROM {schema}.subsidy_expiries WHERE account_id = %(account_id)s")
        # Batched: the moves of a flush summed per account, its transactions in one insert.
        self.move = self.sql(
            "UPDATE {schema}.balances AS b SET subsidy_fen = b.subsidy_fen + m.subsidy_fen,"
            " cash_fen = b.cash_fen + m.cash_fen FROM unnest(%(account_id)b::text[], %(subsidy_fen)b::numeric[],"
            " %(cash_fen)b::numeric[]) AS m (account_id, subsidy_fen, cash_fen) WHERE b.account_id = m.account_id"
        )
        names = [name for name, _ in TRANSACTION_COLUMNS]
        arrays = ", ".join(f"%({name})b::{kind}[]" for name, kind in TRANSACTION_COLUMNS)
        # flags travel as array literals (rows of unequal length do not make a 2-D array)
        selected = ", ".join("flags::text[]" if name == "flags" else name for name in names)
        self.add_transactions = self.sql(
            f"INSERT INTO {{schema}}.transactions ({', '.join(names)}) SELECT {selected}"
            f" FROM unnest({arrays}) AS t ({', '.join(names)}) ON CONFLICT DO NOTHING"
        )


def _array_literal(values: list[str]) -> str:
    """A PostgreSQL array literal of strings, each quoted."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def _transaction(tracking: Tracking, **row: Any) -> dict[str, Any]:
    base = dict.fromkeys(
        ("decision", "reason", "balance_fen", "card_uid", "device_id", "seq", "merchant_id",
         "ref", "at", "occurred_at"),
    )
    return {**base, "flags": [], "notification_id": tracking.notification_id, **row}


class LedgerProjection(BatchingProjection[LedgerView]):
    """Accounts are opened as their events come; the moves of a flush are summed per account
    and its transactions inserted together, after the openings staged before them."""

    name = "ledger"

    def __init__(self, view: LedgerView, settings: Mapping[str, str] | None = None) -> None:
        super().__init__(view, settings)
        self._moves: dict[str, list[int]] = {}  # account → [subsidy fen, cash fen]
        self._transactions: list[dict[str, Any]] = []

    def _move(self, account_id: str, subsidy_fen: int, cash_fen: int) -> None:
        move = self._moves.setdefault(account_id, [0, 0])
        move[0] += subsidy_fen
        move[1] += cash_fen

    def stage_batch(self) -> None:
        if self._moves:
            accounts = list(self._moves)
            self._staged.append((self.view.move, {
                "account_id": accounts, "subsidy_fen": [self._moves[a][0] for a in accounts],
                "cash_fen": [self._moves[a][1] for a in accounts]}))
        if self._transactions:
            rows = self._transactions
            self._staged.append((self.view.add_transactions, {
                name: [_array_literal(r[name]) if name == "flags" else r[name] for r in rows]
                for name, _ in TRANSACTION_COLUMNS}))
        self._moves, self._transactions = {}, []

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.stage(tracking)

    @process_event.register
    def _(self, domain_event: Account.Opened, tracking: Tracking) -> None:
        row = {"account_id": domain_event.account_id, "category": domain_event.category}
        self.stage(tracking, [(self.view.open_account, row)])

    @process_event.register
    def _(self, domain_event: Account.Erased, tracking: Tracking) -> None:
        row = {"account_id": domain_event.account_id, "erased_at": datetime.fromisoformat(domain_event.erased_at)}
        self.stage(tracking, [(self.view.erase_account, row)])

    @process_event.register
    def _(self, domain_event: Account.Credited, tracking: Tracking) -> None:
        account_id = domain_event.account_id
        subsidy = domain_event.amount_fen if domain_event.kind == "subsidy" else 0
        row = _transaction(
            tracking, account_id=account_id, kind=domain_event.kind,
            amount_fen=domain_event.amount_fen, subsidy_fen=subsidy,
            cash_fen=domain_event.amount_fen - subsidy, ref=domain_event.ref,
            recorded_at=datetime.fromisoformat(domain_event.recorded_at),
        )
        self._move(account_id, subsidy, domain_event.amount_fen - subsidy)
        self._transactions.append(row)
        if domain_event.expires_at is not None:
            self._staged_now(tracking, self.view.add_expiry, {
                "account_id": account_id, "ref": domain_event.ref,
                "expires_at": datetime.fromisoformat(domain_event.expires_at)})
            return
        self.stage(tracking)

    def _staged_now(self, tracking: Tracking, statement: Any, row: dict[str, Any]) -> None:
        """A statement of its own (the grants to expire: no batched move depends on its order)."""
        self.stage(tracking, [(statement, row)])

    @process_event.register
    def _(self, domain_event: Account.SubsidyExpired, tracking: Tracking) -> None:
        account_id = domain_event.account_id
        if domain_event.amount_fen:
            self._move(account_id, -domain_event.amount_fen, 0)
            self._transactions.append(_transaction(
                tracking, account_id=account_id, kind="expiry", amount_fen=-domain_event.amount_fen,
                subsidy_fen=-domain_event.amount_fen, cash_fen=0, ref=domain_event.ref,
                recorded_at=datetime.fromisoformat(domain_event.recorded_at)))
        self._staged_now(tracking, self.view.drop_expiry, {"account_id": account_id, "ref": domain_event.ref})

    @process_event.register
    def _(self, domain_event: Account.RefundIssued, tracking: Tracking) -> None:
        """At the purchase's time (``at``, ``occurred_at``), so its day's settlement nets it."""
        e = domain_event
        self._move(e.account_id, e.subsidy_fen, e.cash_fen)
        self._transactions.append(_transaction(
            tracking, account_id=e.account_id, kind="refund", amount_fen=e.amount_fen, subsidy_fen=e.subsidy_fen,
            cash_fen=e.cash_fen, decision="approved", reason=e.reason, flags=["whole"] if e.whole else [],
            card_uid=e.card_uid, device_id=e.device, seq=e.seq, merchant_id=e.merchant_id, ref=e.ref,
            at=e.purchase_at, occurred_at=parse_rfc3339(e.purchase_at),
            recorded_at=datetime.fromisoformat(e.recorded_at)))
        self.stage(tracking)

    @process_event.register
    def _(self, domain_event: Account.Closed, tracking: Tracking) -> None:
        e = domain_event
        self._move(e.account_id, 0, -e.payout_fen)
        self._transactions.append(_transaction(
            tracking, account_id=e.account_id, kind="payout", amount_fen=-e.payout_fen, subsidy_fen=0,
            cash_fen=-e.payout_fen, ref=e.ref, recorded_at=datetime.fromisoformat(e.closed_at)))
        self._staged_now(tracking, self.view.drop_expiries, {"account_id": e.account_id})

    @process_event.register
    def _(self, domain_event: Account.Debited, tracking: Tracking) -> None:
        self._move(domain_event.account_id, -domain_event.subsidy_fen, -domain_event.cash_fen)
        self.stage(tracking)

    @process_event.register
    def _(self, domain_event: Account.Refunded, tracking: Tracking) -> None:
        self._move(domain_event.account_id, domain_event.subsidy_fen, domain_event.cash_fen)
        self.stage(tracking)

    @process_event.register
    def _(self, domain_event: SwipeLog.Recorded, tracking: Tracking) -> None:
        envelope, result, facts = domain_event.envelope, domain_event.result, domain_event.facts
        if envelope["type"] == "gate" or facts["account_id"] is None:
            self.stage(tracking)
            return
        sign = -1 if envelope["type"] == "purchase" else 1
        moved = facts["subsidy_fen"] + facts["cash_fen"]
        row = _transaction(
            tracking, account_id=facts["account_id"], kind=envelope["type"],
            amount_fen=sign * moved, subsidy_fen=sign * facts["subsidy_fen"],
            cash_fen=sign * facts["cash_fen"], decision=result["decision"],
            reason=result.get("reason"), flags=facts["flags"], balance_fen=result.get("balance"),
            card_uid=swipe_card(envelope, facts), device_id=envelope["device"], seq=envelope["seq"],
            merchant_id=facts["merchant_id"], at=envelope["at"],
            occurred_at=datetime.fromisoformat(envelope["at"].upper().replace("Z", "+00:00")),
            recorded_at=datetime.fromisoformat(domain_event.recorded_at),
        )
        self._transactions.append(row)
        self.stage(tracking)
