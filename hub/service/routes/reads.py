"""Read routes over the views (asyncpg), health, metrics."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import asyncpg
from aiohttp import web
from eventsourcing.persistence import Notification
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from domain.application import CampusCard
from hub.service import responses
from hub.service.http import RETRY_AFTER_SECONDS, Problem, authorize, json_response
from hub.service.query import Body, PageQuery, documented, query
from hub.service.typedefs import APPLICATION, METRICS, POOL, WRITER
from projections import failures as failures_table
from projections.catalogue import PROJECTIONS

ACCOUNT_READERS = ("admin", "operator", "auditor", "cardholder")
EVENTS_TABLE = f"{CampusCard.name}_events"
routes = web.RouteTableDef()


@routes.get("/v1/accounts/{account_id}/balance")
@documented("Balance in fen", responses={200: responses.Balance, 404: None})
async def balance(request: web.Request) -> web.Response:
    account_id = request.match_info["account_id"]
    authorize(request, *ACCOUNT_READERS, account=account_id)
    row = await request.app[POOL].fetchrow(
        "SELECT subsidy_fen, cash_fen FROM balances WHERE account_id = $1", account_id
    )
    if row is None:
        raise Problem(404, "not_found", f"account {account_id} not found")
    return json_response({
        "account_id": account_id, "cash": row["cash_fen"], "subsidy": row["subsidy_fen"],
        "total": row["cash_fen"] + row["subsidy_fen"],
    })


@routes.get("/v1/accounts/{account_id}/transactions")
@documented("Transactions, newest first", query=PageQuery, responses={200: responses.Transactions, 404: None})
async def transactions(request: web.Request) -> web.Response:
    account_id = request.match_info["account_id"]
    authorize(request, *ACCOUNT_READERS, account=account_id)
    page = query(request, PageQuery)
    async with request.app[POOL].acquire() as conn:
        if not await conn.fetchval("SELECT 1 FROM balances WHERE account_id = $1", account_id):
            raise Problem(404, "not_found", f"account {account_id} not found")
        rows = await conn.fetch(
            "SELECT * FROM transactions WHERE account_id = $1 AND notification_id < $2"
            " AND ($3::timestamptz IS NULL OR coalesce(occurred_at, recorded_at) >= $3)"
            " AND ($4::timestamptz IS NULL OR coalesce(occurred_at, recorded_at) < $4)"
            " ORDER BY notification_id DESC LIMIT $5",
            account_id, page.before, page.start, page.end, page.limit + 1,
        )
    items = [_transaction_json(r) for r in rows[: page.limit]]
    return json_response({"items": items, "next": page.next_cursor(rows)})


def _transaction_json(row: Any) -> dict[str, Any]:
    item = {
        "kind": row["kind"], "amount": row["amount_fen"], "subsidy": row["subsidy_fen"],
        "cash": row["cash_fen"], "balance": row["balance_fen"],
        "recorded_at": row["recorded_at"].isoformat(),
    }
    if row["kind"] in ("topup", "subsidy"):
        item["ref"] = row["ref"]
    else:
        item.update({
            "decision": row["decision"], "card": row["card_uid"], "device": row["device_id"],
            "seq": row["seq"], "merchant_id": row["merchant_id"],
            "at": row["at"], "flags": list(row["flags"]),
        })
        if row["reason"]:
            item["reason"] = row["reason"]
    return item


async def positions(pool: asyncpg.Pool) -> tuple[int, dict[str, int]]:
    """The event store's last notification id, and each projection's."""
    async with pool.acquire(timeout=HEALTH_TIMEOUT_S) as conn:
        return await _positions(conn)


async def _positions(conn: asyncpg.Connection) -> tuple[int, dict[str, int]]:
    store = await conn.fetchval(f"SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}",
                                timeout=HEALTH_TIMEOUT_S)
    views = {}
    for projection_class, _ in PROJECTIONS:
        views[projection_class.name] = await conn.fetchval(
            f"SELECT coalesce(max(notification_id), 0) FROM {projection_class.name}_tracking"  # noqa: S608
            " WHERE application_name = $1", CampusCard.name, timeout=HEALTH_TIMEOUT_S,
        )
    return store, views


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
                store, views = await _positions(conn)
                lag_s = await _lags(app, conn, store, views)
                try:
                    failures = list(await conn.fetch(failures_table.READ_SQL, timeout=HEALTH_TIMEOUT_S))
                except asyncpg.UndefinedTableError:  # the projections' process has not made it yet
                    failures = []
    except STORE_UNREACHABLE as exc:
        raise StoreUnreachable(str(exc) or type(exc).__name__) from None
    app[METRICS].count_projection_failures({r["projection"]: r["failures"] for r in failures},
                                           [cls.name for cls, _ in PROJECTIONS])
    return Health(store, views, lag_s, failures)


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
        row = await conn.fetchrow(
            f"SELECT notification_id, originator_id, originator_version, topic, state FROM {EVENTS_TABLE}"  # noqa: S608
            " WHERE notification_id > $1 ORDER BY notification_id LIMIT 1", position, timeout=HEALTH_TIMEOUT_S,
        )
        if row is not None:
            event = app[APPLICATION].mapper.to_domain_event(Notification(
                id=row["notification_id"], originator_id=row["originator_id"],
                originator_version=row["originator_version"], topic=row["topic"], state=bytes(row["state"]),
            ))
            recorded[position] = event.timestamp
    return {name: max(0.0, (now - recorded[p]).total_seconds()) if p in recorded else 0.0
            for name, p in views.items()}


@routes.get("/healthz")
@documented("Health, store position and projection lag", responses={200: responses.Health}, auth=False)
async def healthz(request: web.Request) -> web.Response:
    """``ok``, or ``degraded`` with ``problems`` when a projection is failing (the notification
    it failed on, the error) or lags more than ``LAG_LIMIT_S``; 503 only when the database
    cannot be reached within ``HEALTH_TIMEOUT_S``."""
    app = request.app
    try:
        health = await read_health(app)
    except StoreUnreachable as exc:
        raise Problem(503, "store_unavailable", f"the event store cannot be reached: {exc}",
                      headers={"Retry-After": RETRY_AFTER_SECONDS}) from None
    store, views = health.store, health.views
    problems: list[dict[str, Any]] = []
    failing = {r["projection"]: r for r in health.failures if r["position"] is not None}
    for name, position in views.items():
        lag_s = health.lag_s[name]
        if name in failing:
            row = failing[name]
            problems.append({"projection": name, "position": row["position"], "error": row["error"],
                             "failed_at": row["failed_at"].isoformat(), "lag_seconds": round(lag_s, 3)})
        elif lag_s > LAG_LIMIT_S:
            problems.append({"projection": name, "position": position, "lag_seconds": round(lag_s, 3),
                             "error": f"lagging: {store - position} events, the oldest recorded {lag_s:.1f} s ago"})
    body: dict[str, Any] = {
        "status": "degraded" if problems else "ok",
        "store_position": store,
        "projections": {name: {"position": p, "lag_events": store - p, "lag_seconds": round(health.lag_s[name], 3)}
                        for name, p in views.items()},
        "writer_queue": app[WRITER].depth,
    }
    if problems:
        body["problems"] = problems
    return json_response(body)


@routes.get("/metrics")
@documented("Prometheus metrics", auth=False, responses={200: Body(
    "text/plain", {"type": "string"}, "Prometheus text exposition format 0.0.4")})
async def metrics(request: web.Request) -> web.Response:
    """What the hub has: the store's figures are refreshed when it answers, and kept (with
    ``cardhub_store_reachable`` 0) when it does not."""
    app = request.app
    m = app[METRICS]
    try:
        health = await read_health(app)
    except StoreUnreachable:
        m.store_reachable.set(0)
    else:
        m.store_reachable.set(1)
        for name, position in health.views.items():
            m.projection_position.labels(name).set(position)
        m.store_position.set(health.store)
    return web.Response(body=generate_latest(m.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def decode_numeric_as_int(conn: asyncpg.Connection) -> None:
    """The reads pool's ``init``: ``numeric`` values without a fraction (the views' money, and
    sums of it) come back as ``int``, like the ``bigint`` they were, however large."""
    await conn.set_type_codec("numeric", schema="pg_catalog", encoder=str, decoder=_numeric, format="text")


def _numeric(text: str) -> int | Decimal:
    return int(text) if text.lstrip("-").isdigit() else Decimal(text)
