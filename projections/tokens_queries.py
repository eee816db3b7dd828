"""Reads of the tokens view (``projections.tokens``) and of tokens' events in the event store."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from domain.application import CampusCard
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


async def view_position(conn: Connection) -> int:
    """The last notification the tokens view has applied (0 before its first)."""
    return await conn.fetchval(  # type: ignore[no-any-return]
        "SELECT coalesce(max(notification_id), 0) FROM tokens_tracking WHERE application_name = $1", CampusCard.name)


async def store_position(conn: Connection) -> int:
    """The event store's last notification."""
    return await conn.fetchval(f"SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}")  # type: ignore[no-any-return]  # noqa: S608


async def states_of(conn: Connection, topic: str, after: int, upto: int) -> list[bytes]:
    """The stored states of the events of ``topic`` among notifications ``(after, upto]``, in order
    (a range of the primary key, so it reads only the events stored since ``after``)."""
    rows = await conn.fetch(
        f"SELECT state FROM {EVENTS_TABLE} WHERE notification_id > $1 AND notification_id <= $2 AND topic = $3"  # noqa: S608
        " ORDER BY notification_id", after, upto, topic,
    )
    return [bytes(row["state"]) for row in rows]
