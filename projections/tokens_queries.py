"""Reads of the tokens view (``projections.tokens``) and of a token's own events."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from projections.queries import EVENTS_TABLE, Connection, Keyset, Page, fetch_page, in_window


async def page(conn: Connection, keyset: Keyset, start: datetime | None, end: datetime | None) -> Page:
    """Issued tokens, newest first (by the notification of ``Token.Issued``), issued in ``[start, end)``."""
    return await fetch_page(conn, f"SELECT * FROM tokens WHERE {in_window('issued_at', 1)}", (start, end), keyset)


async def changes(conn: Connection, since_version: int, limit: int) -> list[Any]:
    """Rows changed after ``since_version`` (a notification id), in order: jti, revoked, exp, version."""
    return await conn.fetch(
        "SELECT jti, revoked_at IS NOT NULL AS revoked, extract(epoch FROM expires_at)::float8 AS exp, version"
        " FROM tokens WHERE version > $1 ORDER BY version LIMIT $2", since_version, limit,
    )


async def event_topics(conn: Connection, token_id: UUID) -> set[str]:
    """The topics of a token aggregate's stored events, read from the event store itself (a
    token issued a moment ago may not be in the view yet)."""
    rows = await conn.fetch(f"SELECT topic FROM {EVENTS_TABLE} WHERE originator_id = $1", token_id)  # noqa: S608
    return {row["topic"] for row in rows}
