"""Consumption statistics (DESIGN §6) and the dashboard's data, read from the stats views.

Aggregates only: no route here names an account or a card. Statistics are kept per local
hour, so ``from`` and ``to`` fall on whole hours of the hub's time zone.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from aiohttp import web

from hub.service import responses
from hub.service.health import positions
from hub.service.http import Problem, authenticate, authorize, json_response
from hub.service.query import ConsumptionQuery, DashboardQuery, documented, query
from hub.service.typedefs import POOL, SETTINGS

STATS_READERS = ("admin", "auditor", "manager")
# by → the column of stats_hourly and stats_sales it groups by
GROUPINGS = {
    "merchant": "merchant_id", "device": "device_id", "hour": "local_hour", "meal": "meal",
    "category": "category", "day": "local_day",
}
MEAL_ORDER = ("breakfast", "lunch", "dinner", "other")
TOP_WINDOWS = 10
routes = web.RouteTableDef()


@routes.get("/v1/stats/consumption")
@documented("Approved purchases net of reversals, grouped by merchant|device|hour|meal|category|day",
            query=ConsumptionQuery, responses={200: responses.Consumption, 404: None})
async def consumption(request: web.Request) -> web.Response:
    """Approved purchases net of reversals, grouped ``by`` one dimension, with distinct cards."""
    q = query(request, ConsumptionQuery)
    merchant = q.merchant
    caller = authenticate(request)
    if merchant is None and caller.role == "merchant":
        merchant = caller.scope  # a merchant may leave it out: its own is meant
    authorize(request, *STATS_READERS, "merchant", merchant=merchant)
    by = q.by
    tz = request.app[SETTINGS].zone()
    start, end = _hour(q.start, "from", tz), _hour(q.end, "to", tz)
    if start is not None and end is not None and end <= start:
        raise Problem(422, "invalid", "to: must be after from", field="to")
    conditions, args = [], []
    for clause, value in (("hour_start >= $%d", start), ("hour_start < $%d", end), ("merchant_id = $%d", merchant)):
        if value is not None:
            args.append(value)
            conditions.append(clause % len(args))
    column, where = GROUPINGS[by], " AND ".join(conditions) or "true"
    pool = request.app[POOL]
    if merchant is not None and not await pool.fetchval("SELECT 1 FROM merchants WHERE merchant_id = $1", merchant):
        raise Problem(404, "not_found", f"merchant {merchant} not found")
    sums, cards, total_cards = await asyncio.gather(
        pool.fetch(
            f"SELECT GROUPING({column}) AS is_total, {column} AS key, coalesce(sum(count), 0)::bigint AS count,"
            f" coalesce(sum(amount_fen), 0) AS amount FROM stats_hourly WHERE {where}"
            f" GROUP BY GROUPING SETS (({column}), ())",
            *args,
        ),
        pool.fetch(
            f"SELECT {column} AS key, count(*) AS cards FROM (SELECT DISTINCT {column}, card_uid FROM stats_sales"
            f" WHERE {where} AND count > 0) AS c GROUP BY {column}",
            *args,
        ),
        pool.fetchval(f"SELECT count(DISTINCT card_uid) FROM stats_sales WHERE {where} AND count > 0", *args),
    )
    cards_of = {r["key"]: r["cards"] for r in cards}
    groups = [
        {"key": _key(by, r["key"]), "count": r["count"], "amount": r["amount"], "cards": cards_of.get(r["key"], 0)}
        for r in sums if not r["is_total"] and (r["count"] or r["amount"])
    ]
    groups.sort(key=lambda g: (_meal_rank(g["key"]) if by == "meal" else 0, g["key"]))
    total = next(({"count": r["count"], "amount": r["amount"], "cards": total_cards} for r in sums if r["is_total"]),
                 {"count": 0, "amount": 0, "cards": 0})
    return json_response({
        "from": request.query.get("from") or None, "to": request.query.get("to") or None, "by": by,
        **({"merchant": merchant} if merchant else {}), "groups": groups, "total": total,
    })


def _key(by: str, value: Any) -> str:
    if by == "hour":
        return f"{value:02d}:00"
    return value.isoformat() if by == "day" else value


def _meal_rank(meal: str) -> int:
    """Breakfast, lunch, dinner, other; meal periods of other names after them."""
    return MEAL_ORDER.index(meal) if meal in MEAL_ORDER else len(MEAL_ORDER)


def _hour(instant: datetime | None, name: str, tz: ZoneInfo) -> datetime | None:
    if instant is None:
        return None
    local = instant.astimezone(tz)
    if (local.minute, local.second, local.microsecond) != (0, 0, 0):
        raise Problem(422, "invalid", f"{name}: statistics are kept per hour; give a whole hour of {tz.key}",
                      field=name)
    return instant


@routes.get("/v1/stats/dashboard")
@documented("One local day of aggregates for the dashboard", query=DashboardQuery,
            responses={200: responses.Dashboard})
async def dashboard(request: web.Request) -> web.Response:
    """Everything the dashboard shows for one local day, in one answer (aggregates only)."""
    authorize(request, *STATS_READERS)
    tz = request.app[SETTINGS].zone()
    pool: asyncpg.Pool = request.app[POOL]
    day = await _day(pool, query(request, DashboardQuery).date, tz)
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    span = (start, end)
    # Independent reads, each on a connection of its own, so PostgreSQL runs them side by side.
    sales, cards, merchants, locations, minutes, gates, checkpoint, (store, views) = await asyncio.gather(
        pool.fetch(
            "SELECT GROUPING(merchant_id, meal, device_id, category) AS g, merchant_id, meal, device_id, category,"
            " sum(count)::bigint AS count, sum(amount_fen) AS amount FROM stats_hourly"
            " WHERE hour_start >= $1 AND hour_start < $2"
            " GROUP BY GROUPING SETS ((merchant_id), (merchant_id, meal), (merchant_id, device_id), (category), ())",
            *span,
        ),
        pool.fetch(
            "SELECT GROUPING(merchant_id, meal, category) AS g, merchant_id, meal, category,"
            " count(DISTINCT card_uid) AS cards FROM (SELECT DISTINCT merchant_id, meal, category, card_uid"
            " FROM stats_sales WHERE hour_start >= $1 AND hour_start < $2 AND count > 0) AS c"
            " GROUP BY GROUPING SETS ((merchant_id), (merchant_id, meal), (category), ())",
            *span,
        ),
        pool.fetch("SELECT merchant_id, name, category FROM merchants ORDER BY merchant_id"),
        pool.fetch("SELECT device_id, location FROM devices WHERE kind = 'pos'"),
        pool.fetch(
            "SELECT merchant_id, minute, count, amount_fen FROM stats_minutes WHERE local_day = $1"
            " ORDER BY merchant_id, minute", day,
        ),
        pool.fetch(
            "SELECT g.zone, z.name,"
            " coalesce(sum(count) FILTER (WHERE decision = 'approved' AND direction = 'in'), 0)::bigint AS in,"
            " coalesce(sum(count) FILTER (WHERE decision = 'approved' AND direction = 'out'), 0)::bigint AS out,"
            " coalesce(sum(count) FILTER (WHERE decision <> 'approved'), 0)::bigint AS declined"
            " FROM stats_gates g LEFT JOIN zones z USING (zone)"
            " WHERE hour_start >= $1 AND hour_start < $2 GROUP BY g.zone, z.name ORDER BY g.zone",
            *span,
        ),
        pool.fetchrow("SELECT tree_size, root_hash, issued_at FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1"),
        positions(pool),
    )
    return json_response({
        "date": day.isoformat(), "time_zone": tz.key, "generated_at": datetime.now(tz).isoformat(timespec="milliseconds"),
        **_sales_sections(sales, _cards_by_group(cards), merchants, dict(locations)),
        "per_minute": [{"merchant_id": r["merchant_id"], "minute": r["minute"], "count": r["count"],
                        "amount": r["amount_fen"]} for r in minutes],
        "gates": [{"zone": r["zone"], "name": r["name"] or r["zone"], "in": r["in"], "out": r["out"],
                   "declined": r["declined"]} for r in gates],
        "projections": {"store_position": store, "lag_events": max((store - p for p in views.values()), default=0)},
        "checkpoint": dict(checkpoint) if checkpoint else None,
    })


# GROUPING(merchant_id, meal, device_id, category): a bit set for each column *not* grouped by.
_BY_MERCHANT, _BY_MEAL, _BY_DEVICE, _BY_CATEGORY, _TOTAL = 0b0111, 0b0011, 0b0101, 0b1110, 0b1111


def _cards_by_group(rows: list[Any]) -> dict[tuple[Any, ...], int]:
    """Distinct cards keyed like the sums: (merchant, meal, category) with None where not grouped."""
    return {(r["merchant_id"], r["meal"], r["category"]): r["cards"] for r in rows}


def _sales_sections(sales: list[Any], cards: dict[tuple[Any, ...], int], merchants: list[Any],
                    locations: dict[str, str]) -> dict[str, Any]:
    by: dict[int, list[Any]] = {}
    for row in sales:
        by.setdefault(row["g"], []).append(row)

    def _sums(row: Any, **extra: Any) -> dict[str, Any]:
        key = (row["merchant_id"], row["meal"], row["category"])
        return {**extra, "count": row["count"], "amount": row["amount"], "cards": cards.get(key, 0)}

    per_merchant = {r["merchant_id"]: _sums(r) for r in by.get(_BY_MERCHANT, [])}
    zero = {"count": 0, "amount": 0, "cards": 0}
    windows = sorted(by.get(_BY_DEVICE, []), key=lambda r: (-r["count"], r["device_id"]))[:TOP_WINDOWS]
    return {
        "merchants": [{"merchant_id": m["merchant_id"], "name": m["name"], "category": m["category"],
                       **per_merchant.get(m["merchant_id"], zero)} for m in merchants],
        "meals": sorted(({"merchant_id": r["merchant_id"], **_sums(r, meal=r["meal"])} for r in by.get(_BY_MEAL, [])),
                        key=lambda g: (g["merchant_id"], _meal_rank(g["meal"]), g["meal"])),
        "windows": [{"device_id": r["device_id"], "merchant_id": r["merchant_id"],
                     "location": locations.get(r["device_id"]), "count": r["count"], "amount": r["amount"]}
                    for r in windows],
        "categories": sorted((_sums(r, key=r["category"]) for r in by.get(_BY_CATEGORY, [])), key=lambda g: g["key"]),
        "total": next((_sums(r) for r in by.get(_TOTAL, [])), zero),
    }


async def _day(pool: asyncpg.Pool, asked: date | None, tz: ZoneInfo) -> date:
    """The asked local day; by default today, or the latest day with sales if today has none."""
    if asked is not None:
        return asked
    today = datetime.now(tz).date()
    start = datetime.combine(today, time(0), tzinfo=tz)
    async with pool.acquire() as conn:
        if await conn.fetchval("SELECT 1 FROM stats_sales WHERE hour_start >= $1 LIMIT 1", start):
            return today
        latest = await conn.fetchval("SELECT max(hour_start) FROM stats_sales")
    return latest.astimezone(tz).date() if latest is not None else today
