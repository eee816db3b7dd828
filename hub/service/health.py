"""The hub's health, as ``/healthz``, ``/metrics`` and the dashboard read it: the store's and each
view's position, each view's lag, the projections' recorded failures — within a time bound, or
``StoreUnreachable`` (DESIGN §9). The reads are ``projections.catalogue_queries`` and
``projections.failures``'s; this module bounds them and decodes what they return."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import asyncpg
from aiohttp import web
from eventsourcing.persistence import Notification

from hub.service.typedefs import APPLICATION, METRICS, POOL
from projections import audit_queries, catalogue_queries, failures
from projections.catalogue import PROJECTIONS

# /healthz: how long a read may take before the store counts as unreachable, and the lag
# beyond which a projection makes the hub ``degraded`` (DESIGN §9).
HEALTH_TIMEOUT_S = 2.0
LAG_LIMIT_S = 5.0
# What asyncpg raises when the database cannot be reached (refused, gone, starting up, shutting
# down, too slow): /healthz answers 503 then, never 500.
STORE_UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError, asyncpg.OperatorInterventionError,
)


async def positions(pool: asyncpg.Pool) -> tuple[int, dict[str, int]]:
    """The event store's last notification id, and each projection's."""
    async with pool.acquire(timeout=HEALTH_TIMEOUT_S) as conn:
        return await catalogue_queries.positions(conn, HEALTH_TIMEOUT_S)


@dataclass(frozen=True, slots=True)
class Health:
    store: int
    views: dict[str, int]
    lag_s: dict[str, float]  # seconds since the oldest event each projection has not applied was recorded
    failures: list[Any]  # rows of projection_failures


async def read_health(app: web.Application) -> Health:
    """Positions, lags and recorded failures, within ``HEALTH_TIMEOUT_S`` or ``StoreUnreachable``."""
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_S):
            async with app[POOL].acquire(timeout=HEALTH_TIMEOUT_S) as conn:
                store, views = await catalogue_queries.positions(conn, HEALTH_TIMEOUT_S)
                lag_s = await _lags(app, conn, store, views)
                try:
                    recorded = await failures.recorded(conn, HEALTH_TIMEOUT_S)
                except asyncpg.UndefinedTableError:  # the projections' process has not made it yet
                    recorded = []
    except STORE_UNREACHABLE as exc:
        raise StoreUnreachable(str(exc) or type(exc).__name__) from None
    except asyncpg.InsufficientResourcesError as exc:  # too many connections: the server's, or the role's
        raise StoreUnreachable(f"the hub's reads cannot get a database connection: {exc}") from None
    app[METRICS].count_projection_failures({r["projection"]: r["failures"] for r in recorded},
                                           [cls.name for cls, _ in PROJECTIONS])
    return Health(store, views, lag_s, recorded)


class StoreUnreachable(Exception):
    """The database did not answer the health reads."""


async def _lags(app: web.Application, conn: asyncpg.Connection, store: int, views: dict[str, int]) -> dict[str, float]:
    """A projection's lag in seconds: how long ago the oldest event it has not applied was
    recorded (the event's own timestamp, set by the hub that stored it); 0 when caught up.
    One event is read and decoded per distinct position behind the store."""
    now = datetime.now(timezone.utc)
    recorded: dict[int, datetime] = {}
    for position in sorted(set(views.values())):
        if position >= store:
            continue
        row = await catalogue_queries.event_after(conn, position, HEALTH_TIMEOUT_S)
        if row is not None:
            event = app[APPLICATION].mapper.to_domain_event(Notification(
                id=row["notification_id"], originator_id=row["originator_id"],
                originator_version=row["originator_version"], topic=row["topic"], state=bytes(row["state"]),
            ))
            recorded[position] = event.timestamp
    return {name: max(0.0, (now - recorded[p]).total_seconds()) if p in recorded else 0.0
            for name, p in views.items()}


async def checkpoint_age(app: web.Application) -> float | None:
    """Seconds since the latest signed checkpoint, or None before the first (or when the store
    does not answer within ``HEALTH_TIMEOUT_S``: the gauge keeps its last value)."""
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_S), app[POOL].acquire(timeout=HEALTH_TIMEOUT_S) as conn:
            latest = await audit_queries.latest_checkpoint(conn)
    except (*STORE_UNREACHABLE, asyncpg.UndefinedTableError):
        return None
    if latest is None:
        return None
    issued = latest["issued_at"]
    issued = issued if isinstance(issued, datetime) else datetime.fromisoformat(issued)
    return max(0.0, (datetime.now(timezone.utc) - issued).total_seconds())
