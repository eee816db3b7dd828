"""Read routes over the views (asyncpg), health, metrics."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from domain.application import CampusCard
from hub import responses
from hub.http import Problem, authorize, json_response
from hub.projector import PROJECTIONS
from hub.query import Body, PageQuery, documented, query
from hub.typedefs import METRICS, POOL, WRITER

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
    async with pool.acquire() as conn:
        store = await conn.fetchval(f"SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}")
        views = {}
        for projection_class, _ in PROJECTIONS:
            views[projection_class.name] = await conn.fetchval(
                f"SELECT coalesce(max(notification_id), 0) FROM {projection_class.name}_tracking"  # noqa: S608
                " WHERE application_name = $1", CampusCard.name,
            )
    return store, views


@routes.get("/healthz")
@documented("Health, store position and projection lag", responses={200: responses.Health}, auth=False)
async def healthz(request: web.Request) -> web.Response:
    app = request.app
    store, views = await positions(app[POOL])
    return json_response({
        "status": "ok",
        "store_position": store,
        "projections": {name: {"position": p, "lag_events": store - p} for name, p in views.items()},
        "writer_queue": app[WRITER].depth,
    })


@routes.get("/metrics")
@documented("Prometheus metrics", auth=False, responses={200: Body(
    "text/plain", {"type": "string"}, "Prometheus text exposition format 0.0.4")})
async def metrics(request: web.Request) -> web.Response:
    app = request.app
    m = app[METRICS]
    store, views = await positions(app[POOL])
    for name, position in views.items():
        m.projection_position.labels(name).set(position)
    m.store_position.set(store)
    return web.Response(body=generate_latest(m.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
