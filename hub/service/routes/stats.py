"""Consumption statistics (DESIGN §6) and the dashboard's data, read from the stats views.

Aggregates only: no route here names an account or a card, and a manager sees no group of fewer
than 5 distinct cards (``projections.stats_privacy``). ``from`` and ``to`` may be any instants:
the answer is exact (``stats_queries.Span``).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import date, datetime
from typing import Any

from aiohttp import web

from hub.service import responses_stats
from hub.service.health import positions
from hub.service.http import Problem, authenticate, authorize, json_response
from hub.service.query import ConsumptionQuery, DashboardQuery, documented, query
from hub.service.typedefs import POOL, SETTINGS
from projections import directory_queries, risk_queries, stats_queries
from projections.stats_privacy import MIN_CARDS, OTHER, Group, merge_small_groups, union_of

STATS_READERS = ("admin", "auditor", "manager")
MEAL_ORDER = ("breakfast", "lunch", "dinner", "other")
TOP_WINDOWS = 10
routes = web.RouteTableDef()


@routes.get("/v1/stats/consumption")
@documented("Approved purchases net of reversals, grouped by merchant|device|hour|meal|category|day",
            query=ConsumptionQuery, responses={200: responses_stats.Consumption, 404: None})
async def consumption(request: web.Request) -> web.Response:
    """Approved purchases net of reversals, grouped ``by`` one dimension, with distinct cards."""
    q = query(request, ConsumptionQuery)
    merchant = q.merchant
    caller = authenticate(request)
    if merchant is None and caller.role == "merchant":
        merchant = caller.scope  # a merchant may leave it out: its own is meant
    caller = authorize(request, *STATS_READERS, "merchant", merchant=merchant)
    by = q.by
    tz = request.app[SETTINGS].zone()
    if q.start is not None and q.end is not None and q.end <= q.start:
        raise Problem(422, "invalid", "to: must be after from", field="to")
    span = stats_queries.Span.of(q.start, q.end, tz)
    pool = request.app[POOL]
    if merchant is not None and not await directory_queries.merchant_exists(pool, merchant):
        raise Problem(404, "not_found", f"merchant {merchant} not found")
    found = await stats_queries.consumption(pool, by, span, merchant)
    sums = [Group(r["key"], r["count"], r["amount"], found.cards.get(r["key"], 0))
            for r in found.sums if not r["is_total"] and (r["count"] or r["amount"])]
    if caller.role == "manager":
        sums = await merge_small_groups(
            sums, lambda keys: stats_queries.distinct_cards(pool, by, span, merchant, keys))
    groups = [{"key": _key(by, g.key), "count": g.count, "amount": g.amount, "cards": g.cards} for g in sums]
    groups.sort(key=lambda g: (g["key"] == OTHER, _meal_rank(g["key"]) if by == "meal" else 0, g["key"]))
    total = next(({"count": r["count"], "amount": r["amount"], "cards": found.total_cards}
                  for r in found.sums if r["is_total"]), {"count": 0, "amount": 0, "cards": 0})
    return json_response({
        "from": request.query.get("from") or None, "to": request.query.get("to") or None, "by": by,
        **({"merchant": merchant} if merchant else {}), "groups": groups, "total": total,
    })


def _key(by: str, value: Any) -> str:
    if by == "hour" and isinstance(value, int):
        return f"{value:02d}:00"
    return value.isoformat() if isinstance(value, date) else value


def _meal_rank(meal: str) -> int:
    """Breakfast, lunch, dinner, other; meal periods of other names after them."""
    return MEAL_ORDER.index(meal) if meal in MEAL_ORDER else len(MEAL_ORDER)


@routes.get("/v1/stats/dashboard")
@documented("One local day of aggregates for the dashboard", query=DashboardQuery,
            responses={200: responses_stats.Dashboard})
async def dashboard(request: web.Request) -> web.Response:
    """Everything the dashboard shows for one local day, in one answer (aggregates only): the
    asked day; by default today, or the latest day with sales if today has none."""
    caller = authorize(request, *STATS_READERS)
    tz = request.app[SETTINGS].zone()
    pool = request.app[POOL]
    day = query(request, DashboardQuery).date
    if day is None:
        day = await stats_queries.day_with_sales(pool, datetime.now(tz).date(), tz)
    # Independent reads, each on a connection of its own, so PostgreSQL runs them side by side.
    found, (store, views) = await asyncio.gather(stats_queries.dashboard(pool, day, tz), positions(pool))
    latest = found.checkpoint
    sections = _sales_sections(found)
    sections["per_minute"] = [{"merchant_id": r["merchant_id"], "minute": r["minute"], "count": r["count"],
                               "amount": r["amount_fen"]} for r in found.minutes]
    if caller.role == "manager":
        sections = await _as_a_manager_sees_it(sections, await stats_queries.day_cards(pool, day, tz))
    return json_response({
        "date": day.isoformat(), "time_zone": tz.key, "generated_at": datetime.now(tz).isoformat(timespec="milliseconds"),
        **sections,
        "gates": [{"zone": r["zone"], "name": r["name"] or r["zone"], "in": r["in"], "out": r["out"],
                   "declined": r["declined"]} for r in found.gates],
        # Declines are aggregates without cards: a manager sees them as they are.
        "declines": [{"kind": r["kind"], "reason": r["reason"], "count": r["count"]} for r in found.declines],
        # The refunds of the day's purchases (netted in the sales above), and the money at risk now.
        "refunds": {"count": found.refunds[0], "amount": found.refunds[1]},
        "phone": _phone(found.phone, caller.role),
        "exposure": _exposure(found.exposure),
        "projections": {"store_position": store, "lag_events": max((store - p for p in views.values()), default=0)},
        "checkpoint": {key: latest[key] for key in ("tree_size", "root_hash", "issued_at")} if latest else None,
    })


def _phone(found: Any, role: str) -> dict[str, Any] | None:
    """The day's sales paid by phone (virtual cards, DESIGN §10), beside the totals; not shown to a
    manager (null) while fewer than ``MIN_CARDS`` distinct phones paid."""
    if role == "manager" and 0 < found["cards"] < MIN_CARDS:
        return None
    return {"count": found["count"], "amount": found["amount"], "cards": found["cards"]}


def _exposure(found: risk_queries.Exposure) -> dict[str, Any]:
    """The dashboard's share of ``GET /v1/risk/exposure``: what a manager needs to see of it."""
    over = next((f for f in found.flags if f["flag"] == "offline_over_limit"), None)
    return {"negative_balances": {"accounts": found.negative_accounts, "fen": found.negative_fen},
            "offline_fen": sum(int(d["fen"]) for d in found.devices),
            "offline_over_limit": {"events": int(over["events"]) if over else 0, "fen": int(over["fen"]) if over else 0}}


def _sales_sections(found: stats_queries.DashboardDay) -> dict[str, Any]:
    by, cards = found.sales, found.cards

    def _sums(row: Any, **extra: Any) -> dict[str, Any]:
        key = (row["merchant_id"], row["meal"], row["category"])
        return {**extra, "count": row["count"], "amount": row["amount"], "cards": cards.get(key, 0)}

    per_merchant = {r["merchant_id"]: _sums(r) for r in by.get("merchant", [])}
    zero = {"count": 0, "amount": 0, "cards": 0}
    windows = sorted(by.get("device", []), key=lambda r: (-r["count"], r["device_id"]))[:TOP_WINDOWS]
    return {
        "merchants": [{"merchant_id": m["merchant_id"], "name": m["name"], "category": m["category"],
                       **per_merchant.get(m["merchant_id"], zero)} for m in found.merchants],
        "meals": sorted(({"merchant_id": r["merchant_id"], **_sums(r, meal=r["meal"])} for r in by.get("meal", [])),
                        key=lambda g: (g["merchant_id"], _meal_rank(g["meal"]), g["meal"])),
        "windows": [{"device_id": r["device_id"], "merchant_id": r["merchant_id"],
                     "location": found.locations.get(r["device_id"]), "count": r["count"], "amount": r["amount"]}
                    for r in windows],
        "categories": sorted((_sums(r, key=r["category"]) for r in by.get("category", [])), key=lambda g: g["key"]),
        "total": next((_sums(r) for r in by.get("total", [])), zero),
    }


async def _as_a_manager_sees_it(sections: dict[str, Any], sold: list[Any]) -> dict[str, Any]:
    """The dashboard's sections with no group of fewer than ``MIN_CARDS`` distinct cards: small
    merchants merged into an ``other`` merchant, the small meal periods of each merchant into its
    ``other`` period, small categories into ``other``; windows with fewer cards, and the windows
    and per-minute lines of merged merchants, left out. ``sold`` (``day_cards``) gives the exact
    distinct cards of every merged group; the total is unchanged."""
    by_merchant = [_group(m, "merchant_id") for m in sections["merchants"] if m["count"] or m["amount"]]
    kept = await merge_small_groups(by_merchant, union_of(_cards(sold, "merchant_id")))
    folded = {g.key for g in by_merchant if g not in kept}
    merchants = [m for m in sections["merchants"] if m["merchant_id"] not in folded]
    merchants += [{"merchant_id": OTHER, "name": OTHER, "category": OTHER, "count": g.count, "amount": g.amount,
                   "cards": g.cards} for g in kept if g not in by_merchant]
    shown = {merchant_id: OTHER for merchant_id in folded}
    cells: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for m in sections["meals"]:
        cell = cells[(shown.get(m["merchant_id"], m["merchant_id"]), m["meal"])]
        cell[0], cell[1] = cell[0] + m["count"], cell[1] + m["amount"]
    meal_cards = _cards(sold, "merchant_id", "meal", shown=shown)
    meals = []
    for merchant_id in (m["merchant_id"] for m in merchants):
        own = {meal: meal_cards[(merchant_id, meal)] for shown_id, meal in cells if shown_id == merchant_id}
        groups = [Group(meal, *cells[(merchant_id, meal)], len(cards)) for meal, cards in own.items()]
        meals += [{"merchant_id": merchant_id, "meal": g.key, "count": g.count, "amount": g.amount, "cards": g.cards}
                  for g in await merge_small_groups(groups, union_of(own))]
    categories = await merge_small_groups([_group(c, "key") for c in sections["categories"]],
                                          union_of(_cards(sold, "category")))
    windows = _cards(sold, "device_id")
    return {**sections, "merchants": merchants, "meals": meals,
            "categories": [{"key": g.key, "count": g.count, "amount": g.amount, "cards": g.cards} for g in categories],
            "windows": [w for w in sections["windows"]
                        if w["merchant_id"] not in folded and len(windows[w["device_id"]]) >= MIN_CARDS],
            "per_minute": [p for p in sections["per_minute"] if p["merchant_id"] not in folded]}


def _group(section: dict[str, Any], key: str) -> Group:
    return Group(section[key], section["count"], section["amount"], section["cards"])


def _cards(sold: list[Any], *columns: str, shown: dict[str, str] | None = None) -> dict[Any, set[str]]:
    """The distinct cards sold to, per value of ``columns`` (a tuple of them for several); merchants
    renamed as ``shown`` says."""
    found: dict[Any, set[str]] = defaultdict(set)
    for row in sold:
        key = tuple((shown or {}).get(row[c], row[c]) if c == "merchant_id" else row[c] for c in columns)
        found[key if len(columns) > 1 else key[0]].add(row["card_uid"])
    return found
