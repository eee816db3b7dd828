"""Balances and transaction histories: what a cardholder sees within a second of a swipe."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking

from domain.accounts import Account
from domain.devices import SwipeLog
from projections.base import BatchingProjection, View


class LedgerView(View):
    tables = (
        "CREATE TABLE IF NOT EXISTS {schema}.balances ("
        " account_id text PRIMARY KEY, name text NOT NULL, category text NOT NULL,"
        " subsidy_fen bigint NOT NULL DEFAULT 0, cash_fen bigint NOT NULL DEFAULT 0)",
        "CREATE TABLE IF NOT EXISTS {schema}.transactions ("
        " notification_id bigint PRIMARY KEY, account_id text NOT NULL, kind text NOT NULL,"
        " amount_fen bigint NOT NULL, subsidy_fen bigint NOT NULL, cash_fen bigint NOT NULL,"
        " decision text, reason text, flags text[] NOT NULL DEFAULT '{{}}', balance_fen bigint,"
        " card_uid text, device_id text, seq bigint, merchant_id text, ref text,"
        " at text, occurred_at timestamptz, recorded_at timestamptz NOT NULL)",
        "CREATE INDEX IF NOT EXISTS transactions_by_account"
        " ON {schema}.transactions (account_id, notification_id DESC)",
        "CREATE INDEX IF NOT EXISTS transactions_by_merchant ON {schema}.transactions (merchant_id, occurred_at)",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.open_account = self.sql(
            "INSERT INTO {schema}.balances (account_id, name, category)"
            " VALUES (%(account_id)s, %(name)s, %(category)s) ON CONFLICT DO NOTHING"
        )
        self.move = self.sql(
            "UPDATE {schema}.balances SET subsidy_fen = subsidy_fen + %(subsidy_fen)s,"
            " cash_fen = cash_fen + %(cash_fen)s WHERE account_id = %(account_id)s"
        )
        self.add_transaction = self.sql(
            "INSERT INTO {schema}.transactions (notification_id, account_id, kind, amount_fen,"
            " subsidy_fen, cash_fen, decision, reason, flags, balance_fen, card_uid, device_id,"
            " seq, merchant_id, ref, at, occurred_at, recorded_at) VALUES (%(notification_id)s,"
            " %(account_id)s, %(kind)s, %(amount_fen)s, %(subsidy_fen)s, %(cash_fen)s,"
            " %(decision)s, %(reason)s, %(flags)s, %(balance_fen)s, %(card_uid)s, %(device_id)s,"
            " %(seq)s, %(merchant_id)s, %(ref)s, %(at)s, %(occurred_at)s, %(recorded_at)s)"
            " ON CONFLICT DO NOTHING"
        )


def _transaction(tracking: Tracking, **row: Any) -> dict[str, Any]:
    base = dict.fromkeys(
        ("decision", "reason", "balance_fen", "card_uid", "device_id", "seq", "merchant_id",
         "ref", "at", "occurred_at"),
    )
    return {**base, "flags": [], "notification_id": tracking.notification_id, **row}


class LedgerProjection(BatchingProjection[LedgerView]):
    name = "ledger"

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.stage(tracking)

    @process_event.register
    def _(self, domain_event: Account.Opened, tracking: Tracking) -> None:
        row = {"account_id": domain_event.account_id, "name": domain_event.name,
               "category": domain_event.category}
        self.stage(tracking, [(self.view.open_account, row)])

    @process_event.register
    def _(self, domain_event: Account.Credited, tracking: Tracking) -> None:
        account_id = domain_event.account_id
        subsidy = domain_event.amount_fen if domain_event.kind == "subsidy" else 0
        move = {"account_id": account_id, "subsidy_fen": subsidy,
                "cash_fen": domain_event.amount_fen - subsidy}
        row = _transaction(
            tracking, account_id=account_id, kind=domain_event.kind,
            amount_fen=domain_event.amount_fen, subsidy_fen=subsidy,
            cash_fen=domain_event.amount_fen - subsidy, ref=domain_event.ref,
            recorded_at=datetime.fromisoformat(domain_event.recorded_at),
        )
        self.stage(tracking, [(self.view.move, move), (self.view.add_transaction, row)])

    @process_event.register
    def _(self, domain_event: Account.Debited, tracking: Tracking) -> None:
        move = {"account_id": domain_event.account_id,
                "subsidy_fen": -domain_event.subsidy_fen, "cash_fen": -domain_event.cash_fen}
        self.stage(tracking, [(self.view.move, move)])

    @process_event.register
    def _(self, domain_event: Account.Refunded, tracking: Tracking) -> None:
        move = {"account_id": domain_event.account_id,
                "subsidy_fen": domain_event.subsidy_fen, "cash_fen": domain_event.cash_fen}
        self.stage(tracking, [(self.view.move, move)])

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
            card_uid=envelope["card"], device_id=envelope["device"], seq=envelope["seq"],
            merchant_id=facts["merchant_id"], at=envelope["at"],
            occurred_at=datetime.fromisoformat(envelope["at"].upper().replace("Z", "+00:00")),
            recorded_at=datetime.fromisoformat(domain_event.recorded_at),
        )
        self.stage(tracking, [(self.view.add_transaction, row)])
