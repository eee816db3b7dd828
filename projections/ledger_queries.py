"""Reads of the ledger's views (``projections.ledger``): a balance, an account's transactions,
a merchant's settlement of one local day."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from projections.queries import Connection, Keyset, Page, fetch_page, in_window


async def balance(conn: Connection, account_id: str) -> Any:
    """The account's ``subsidy_fen`` and ``cash_fen``, or None when there is no such account."""
    return await conn.fetchrow("SELECT subsidy_fen, cash_fen FROM balances WHERE account_id = $1", account_id)


async def account_exists(conn: Connection, account_id: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM balances WHERE account_id = $1", account_id))


async def transactions(conn: Connection, account_id: str, keyset: Keyset,
                       start: datetime | None, end: datetime | None) -> Page | None:
    """A page of the account's transactions, newest first, that happened (on the device's clock,
    else when recorded) in ``[start, end)``; None when there is no such account."""
    if not await account_exists(conn, account_id):
        return None
    return await fetch_page(
        conn,
        f"SELECT * FROM transactions WHERE account_id = $1 AND {in_window('coalesce(occurred_at, recorded_at)', 2)}",
        (account_id, start, end), keyset,
    )


async def settlement(conn: Connection, merchant_id: str, start: datetime, end: datetime) -> list[Any]:
    """Per device, in device order: the count and fen of the merchant's approved purchases and
    reversals that moved money, by the device's clock in ``[start, end)``."""
    return await conn.fetch(
        "SELECT device_id,"
        " count(*) FILTER (WHERE kind = 'purchase') AS purchases,"
        " coalesce(sum(-amount_fen) FILTER (WHERE kind = 'purchase'), 0) AS purchase_fen,"
        " count(*) FILTER (WHERE kind = 'reversal') AS reversals,"
        " coalesce(sum(amount_fen) FILTER (WHERE kind = 'reversal'), 0) AS reversal_fen"
        " FROM transactions WHERE merchant_id = $1 AND occurred_at >= $2 AND occurred_at < $3"
        " AND decision = 'approved' AND amount_fen <> 0 GROUP BY device_id ORDER BY device_id",
        merchant_id, start, end,
    )
