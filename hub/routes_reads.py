"""Read routes over the views (asyncpg), health, metrics."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import asyncpg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from domain.wire import parse_rfc3339
from hub.http import Problem, authorize, json_response
from domain.application import CampusCard
from hub.projector import PROJECTIONS
from hub.typedefs import METRICS, POOL, WRITER

ACCOUNT_READERS = ("admin", "operator", "auditor", "cardholder")
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
EVENTS_TABLE = f"{CampusCard.name}_events"
routes = web.RouteTableDef()


@routes.get("/v1/accounts/{account_id}/balance")
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
async def transactions(request: web.Request) -> web.Response:
    account_id = request.match_info["account_id"]
    authorize(request, *ACCOUNT_READERS, account=account_id)
    page = Page.from_query(request.query)
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


class Page:
    """``limit``, ``cursor``, ``from`` and ``to`` of a list (DESIGN §6), newest first."""

    def __init__(self, limit: int, before: int, start: datetime | None, end: datetime | None) -> None:
        self.limit, self.before, self.start, self.end = limit, before, start, end

    @classmethod
    def from_query(cls, query: Any) -> Page:
        limit_text = query.get("limit", str(DEFAULT_LIMIT))
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIMIT:
            raise Problem(422, "invalid", f"limit: must be an integer from 1 to {MAX_LIMIT}", field="limit")
        before = 2**63 - 1
        if query.get("cursor"):
            try:
                before = int(base64.urlsafe_b64decode(query["cursor"].encode()).decode())
            except (ValueError, UnicodeDecodeError):
                raise Problem(422, "invalid", "cursor: not a cursor this hub gave", field="cursor") from None
        return cls(int(limit_text), before, _time(query, "from"), _time(query, "to"))

    @staticmethod
    def cursor_after(position: int) -> str:
        return base64.urlsafe_b64encode(str(position).encode()).decode()

    def next_cursor(self, rows: list[Any]) -> str | None:
        """Given ``limit + 1`` rows by ``notification_id`` descending: the cursor of the next page."""
        return self.cursor_after(rows[self.limit - 1]["notification_id"]) if len(rows) > self.limit else None


def _time(query: Any, name: str) -> datetime | None:
    text = query.get(name)
    if not text:
        return None
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        raise Problem(422, "invalid", f"{name}: {exc}", field=name) from None


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
async def metrics(request: web.Request) -> web.Response:
    app = request.app
    m = app[METRICS]
    store, views = await positions(app[POOL])
    for name, position in views.items():
        m.projection_position.labels(name).set(position)
    m.store_position.set(store)
    return web.Response(body=generate_latest(m.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
