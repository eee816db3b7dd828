"""Reads over the catalogue (``projections.catalogue``): where the event store and each view
stand, and the first stored event a view has not applied (how far behind it is)."""

from __future__ import annotations

from typing import Any

from domain.application import CampusCard
from projections.catalogue import PROJECTIONS
from projections.queries import EVENTS_TABLE, Connection


async def positions(conn: Connection, timeout: float) -> tuple[int, dict[str, int]]:
    """The event store's last notification id, and each projection's (0 for none)."""
    store = await conn.fetchval(f"SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}",  # noqa: S608
                                timeout=timeout)
    views = {}
    for projection_class, _ in PROJECTIONS:
        views[projection_class.name] = await conn.fetchval(
            f"SELECT coalesce(max(notification_id), 0) FROM {projection_class.name}_tracking"  # noqa: S608
            " WHERE application_name = $1", CampusCard.name, timeout=timeout,
        )
    return store, views


async def event_after(conn: Connection, position: int, timeout: float) -> Any:
    """The first stored event after ``position`` (``notification_id``, ``originator_id``,
    ``originator_version``, ``topic``, ``state``), or None."""
    return await conn.fetchrow(
        f"SELECT notification_id, originator_id, originator_version, topic, state FROM {EVENTS_TABLE}"  # noqa: S608
        " WHERE notification_id > $1 ORDER BY notification_id LIMIT 1", position, timeout=timeout,
    )
