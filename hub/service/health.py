"""The hub's health, as ``/healthz``, ``/metrics`` and the dashboard read it: the store's and each
view's position, each view's lag, the projections' recorded failures — within a time bound, or
``StoreUnreachable`` (DESIGN §9). The reads are ``projections.catalogue_queries`` and
``projections.failures``'s; this module bounds them and decodes what they return."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import asyncpg
from aiohttp import web
from eventsourcing.persistence import Notification

from hub.service.typedefs import METRICS, POOL, SEAT
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
    checkpoint_age_s: float  # how long the audit tree has had leaves no signed checkpoint covers; 0: none

    def problems(self) -> list[dict[str, Any]]:
        """What makes the hub ``degraded`` (DESIGN §9): a projection failing on an event (the
        notification, the error) or lagging more than ``LAG_LIMIT_S``."""
        found: list[dict[str, Any]] = []
        failing = {r["projection"]: r for r in self.failures if r["position"] is not None}
        for name, position in self.views.items():
            lag_s = self.lag_s[name]
            if name in failing:
                row = failing[name]
                found.append({"projection": name, "position": row["position"], "error": row["error"],
                              "failed_at": row["failed_at"].isoformat(), "lag_seconds": round(lag_s, 3)})
            elif lag_s > LAG_LIMIT_S:
                found.append({"projection": name, "position": position, "lag_seconds": round(lag_s, 3),
                              "error": f"lagging: {self.store - position} events, the oldest recorded {lag_s:.1f} s ago"})
        return found


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
                checkpoint_age_s = await _checkpoint_age(conn)
    except STORE_UNREACHABLE as exc:
        raise StoreUnreachable(str(exc) or type(exc).__name__) from None
    except asyncpg.InsufficientResourcesError as exc:  # too many connections: the server's, or the role's
        raise StoreUnreachable(f"the hub's reads cannot get a database connection: {exc}") from None
    app[METRICS].count_projection_failures({r["projection"]: r["failures"] for r in recorded},
                                           [cls.name for cls, _ in PROJECTIONS])
    return Health(store, views, lag_s, recorded, checkpoint_age_s)


class StoreUnreachable(Exception):
    """The database did not answer the health reads."""


async def _checkpoint_age(conn: asyncpg.Connection) -> float:
    """Seconds since the latest signed checkpoint while the audit tree has grown past it (a hub
    signs a growing tree every few seconds, an idle one never needs to); +Inf when leaves exist
    and nothing was ever signed."""
    try:
        size = await audit_queries.tree_size(conn)
        latest = await audit_queries.latest_checkpoint(conn)
    except asyncpg.UndefinedTableError:  # the projections' process has not made the audit view yet
        return 0.0
    if latest is None:
        return math.inf if size > 0 else 0.0
    if latest["tree_size"] >= size:
        return 0.0
    issued_at = datetime.fromisoformat(latest["issued_at"])
    return max(0.0, (datetime.now(timezone.utc) - issued_at).total_seconds())


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
            event = app[SEAT].mapper.to_domain_event(Notification(
                id=row["notification_id"], originator_id=row["originator_id"],
                originator_version=row["originator_version"], topic=row["topic"], state=bytes(row["state"]),
            ))
            recorded[position] = event.timestamp
    return {name: max(0.0, (now - recorded[p]).total_seconds()) if p in recorded else 0.0
            for name, p in views.items()}
