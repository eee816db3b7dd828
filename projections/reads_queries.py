"""Reads of the reads view (``projections.reads``): who read one account's records."""

from __future__ import annotations

from datetime import datetime

from projections import ledger_queries
from projections.queries import Connection, Keyset, Page, fetch_page, in_window


async def reads(conn: Connection, account_id: str, keyset: Keyset, start: datetime | None,
                end: datetime | None) -> Page | None:
    """A page of the reads of the account's records (``at``, ``what``, ``role``), newest first,
    by the hub's clock in ``[start, end)``; None when there is no such account."""
    if not await ledger_queries.account_exists(conn, account_id):
        return None
    return await fetch_page(
        conn, f"SELECT notification_id, at, what, role FROM account_reads WHERE account_id = $1"
        f" AND {in_window('at', 2)}", (account_id, start, end), keyset,
    )
