"""Reads of the ledger's views (``projections.ledger``): an account, a balance, an account's
transactions, a merchant's settlement of one local day."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain import ids, personal
from projections.base import clean_text
from projections.queries import EVENTS_TABLE, KEYS_TABLE, Connection, Keyset, Page, fetch_page, in_window


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """An account as it was opened, its name opened with its data key: None once erased."""

    account_id: str
    name: str | None
    erased_at: datetime | None
    category: str
    groups: list[str]
    daily_limit_fen: int | None
    valid_from: str | None
    valid_until: str | None

    @property
    def erased(self) -> bool:
        return self.name is None


async def account(conn: Connection, account_id: str) -> AccountRecord | None:
    """The account, or None when there is no such account. Its fields come from its Opened
    event (they never change), the name opened at read time: the views keep no personal data
    (DESIGN §12). Raises ``personal.Unreadable`` when a sealed name does not open."""
    row = await conn.fetchrow(
        f"SELECT b.erased_at, e.state, k.key, k.account_id IS NOT NULL AS keyed FROM balances b"  # noqa: S608
        f" JOIN {EVENTS_TABLE} e ON e.originator_id = $2 AND e.originator_version = 1"
        f" LEFT JOIN {KEYS_TABLE} k ON k.account_id = b.account_id WHERE b.account_id = $1",
        account_id, ids.account_id(account_id),
    )
    if row is None:
        return None
    opened = json.loads(bytes(row["state"]))
    return AccountRecord(
        account_id=account_id, name=_name(account_id, personal.from_stored(opened["name"]), row),
        erased_at=row["erased_at"], category=opened["category"], groups=opened["groups"],
        daily_limit_fen=opened["daily_limit_fen"], valid_from=opened["valid_from"], valid_until=opened["valid_until"],
    )


def _name(account_id: str, stored: personal.Stored, row: Any) -> str | None:
    """In clear when opened before names were sealed (until erased); else opened with the key,
    None once it was destroyed (the view may not have the erasure yet: the key says first)."""
    if row["erased_at"] is not None:
        return None
    if stored["alg"] == "none":
        return clean_text(stored["plaintext"])
    if row["key"] is None:
        if not row["keyed"]:
            raise personal.Unreadable(f"account {account_id} has a sealed name and no data key")
        return None
    return clean_text(personal.unseal(bytes(row["key"]), account_id, "name", stored))


async def data_key(conn: Connection, account_id: str) -> bytes | None:
    """The account's data key (DESIGN §12), None when destroyed or never made (an unknown account,
    or one opened before personal fields were sealed)."""
    key = await conn.fetchval(f"SELECT key FROM {KEYS_TABLE} WHERE account_id = $1", account_id)  # noqa: S608
    return bytes(key) if key is not None else None


async def balance(conn: Connection, account_id: str) -> Any:
    """The account's ``subsidy_fen`` and ``cash_fen``, or None when there is no such account."""
    return await conn.fetchrow("SELECT subsidy_fen, cash_fen FROM balances WHERE account_id = $1", account_id)


async def account_exists(conn: Connection, account_id: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM balances WHERE account_id = $1", account_id))


async def transactions(conn: Connection, account_id: str, keyset: Keyset,
                       start: datetime | None, end: datetime | None) -> Page | None:
    """A page of the account's transactions, newest first, that happened (on the device's clock,
    else when recorded) in ``[start, end)``; None when there is no such account. Each row has its
    merchant's ``merchant_name``, its device's ``location`` and its card's ``card_kind`` (physical,
    virtual) from the directory's views (None when unknown, and for credits), joined in the one query."""
    if not await account_exists(conn, account_id):
        return None
    return await fetch_page(
        conn,
        "SELECT t.*, m.name AS merchant_name, d.location, c.kind AS card_kind FROM transactions t"
        " LEFT JOIN merchants m ON m.merchant_id = t.merchant_id LEFT JOIN devices d ON d.device_id = t.device_id"
        " LEFT JOIN cards c ON c.card_uid = t.card_uid"
        f" WHERE t.account_id = $1 AND {in_window('coalesce(t.occurred_at, t.recorded_at)', 2)}",
        (account_id, start, end), keyset, key="t.notification_id",
    )


async def settlement(conn: Connection, merchant_id: str, start: datetime, end: datetime) -> list[Any]:
    """Per device, in device order: the count and fen of the merchant's approved purchases,
    reversals and card-office refunds (DESIGN §11) that moved money, by the device's clock in
    ``[start, end)`` — a refund at its purchase's time, so the purchase's day nets it."""
    return await conn.fetch(
        "SELECT device_id,"
        " count(*) FILTER (WHERE kind = 'purchase') AS purchases,"
        " coalesce(sum(-amount_fen) FILTER (WHERE kind = 'purchase'), 0) AS purchase_fen,"
        " count(*) FILTER (WHERE kind = 'reversal') AS reversals,"
        " coalesce(sum(amount_fen) FILTER (WHERE kind = 'reversal'), 0) AS reversal_fen,"
        " count(*) FILTER (WHERE kind = 'refund') AS refunds,"
        " coalesce(sum(amount_fen) FILTER (WHERE kind = 'refund'), 0) AS refund_fen"
        " FROM transactions WHERE merchant_id = $1 AND occurred_at >= $2 AND occurred_at < $3"
        " AND decision = 'approved' AND amount_fen <> 0 GROUP BY device_id ORDER BY device_id",
        merchant_id, start, end,
    )


async def due_expiries(conn: Connection, now: datetime, limit: int) -> list[str]:
    """Accounts with a subsidy grant whose ``expires_at`` <= ``now`` not yet expired in the view."""
    rows = await conn.fetch(
        "SELECT DISTINCT account_id FROM subsidy_expiries WHERE expires_at <= $1 ORDER BY account_id LIMIT $2",
        now, limit)
    return [r["account_id"] for r in rows]


async def negative_balances(conn: Connection) -> tuple[int, int]:
    """How many accounts' totals are below zero, and the sum of those totals' magnitudes (fen)."""
    row = await conn.fetchrow(
        "SELECT count(*) AS accounts, coalesce(sum(-(subsidy_fen + cash_fen)), 0) AS fen FROM balances"
        " WHERE subsidy_fen + cash_fen < 0")
    return int(row["accounts"]), int(row["fen"])


async def refunds_between(conn: Connection, start: datetime, end: datetime) -> tuple[int, int]:
    """The refunds of the purchases made in [start, end) (a refund row carries its purchase's
    time): how many, and their fen."""
    row = await conn.fetchrow(
        "SELECT count(*) AS refunds, coalesce(sum(amount_fen), 0) AS fen FROM transactions"
        " WHERE kind = 'refund' AND occurred_at >= $1 AND occurred_at < $2", start, end)
    return int(row["refunds"]), int(row["fen"])
