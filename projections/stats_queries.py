"""Reads of the statistics views (``projections.stats``): consumption grouped by one dimension,
and one local day of aggregates for the dashboard (with the directory's merchants and point-of-
sale locations and the latest audit checkpoint).

Queries given a pool run their independent reads on a connection each, side by side."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from projections import audit_queries, directory_queries, ledger_queries, risk_queries
from projections.queries import Connection, local_day

# by → the column of stats_hourly and stats_sales it groups by
GROUPINGS = {
    "merchant": "merchant_id", "device": "device_id", "hour": "local_hour", "meal": "meal",
    "category": "category", "day": "local_day",
}


@dataclass(frozen=True, slots=True)
class Consumption:
    sums: list[Any]  # per key (``key``, ``count``, ``amount``), and the total (``is_total``)
    cards: dict[Any, int]  # key → distinct cards
    total_cards: int


@dataclass(frozen=True, slots=True)
class Span:
    """A range ``[start, end)`` between any two instants (either None for none), read as the whole
    local hours inside it (``stats_hourly``, ``stats_sales``) and the partial hours at its edges,
    from each swipe's own instant (``stats_swipes``)."""

    start: datetime | None
    end: datetime | None
    hours: tuple[datetime | None, datetime | None] | None  # [first, last) whole hours, or None for none
    edges: tuple[tuple[datetime, datetime], ...]  # [from, to) of the partial hours

    @classmethod
    def of(cls, start: datetime | None, end: datetime | None, tz: ZoneInfo) -> Span:
        first = None if start is None else _ceil_hour(start, tz)
        last = None if end is None else _floor_hour(end, tz)
        if start is not None and end is not None and first is not None and last is not None and first >= last:
            return cls(start, end, None, ((start, end),) if start < end else ())
        edges = []
        if start is not None and first is not None and start < first:
            edges.append((start, first))
        if end is not None and last is not None and last < end:
            edges.append((last, end))
        return cls(start, end, (first, last), tuple(edges))

    def where(self, merchant: str | None) -> tuple[str, str, list[Any]]:
        """The conditions on the hourly tables and on ``stats_swipes``, and their arguments."""
        args: list[Any] = []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        own = "" if merchant is None else f" AND merchant_id = {arg(merchant)}"
        hours = "false"
        if self.hours is not None:
            first, last = self.hours
            hours = " AND ".join([*([f"hour_start >= {arg(first)}"] if first is not None else []),
                                  *([f"hour_start < {arg(last)}"] if last is not None else [])]) or "true"
        swipes = " OR ".join(f"(at >= {arg(a)} AND at < {arg(b)})" for a, b in self.edges) or "false"
        return f"({hours}){own}", f"({swipes}){own}", args


def _floor_hour(instant: datetime, tz: ZoneInfo) -> datetime:
    """The start of the local hour ``instant`` falls in, as ``stats_hourly.hour_start`` has it."""
    return instant.astimezone(tz).replace(minute=0, second=0, microsecond=0)


def _ceil_hour(instant: datetime, tz: ZoneInfo) -> datetime:
    floor = _floor_hour(instant, tz)
    return floor if floor == instant else _floor_hour(instant + timedelta(hours=1), tz)


def _cards_of(column: str, hours: str, swipes: str) -> str:
    """(key, card) of every cell with a net purchase in the span."""
    return (f"SELECT {column}, card_uid FROM stats_sales WHERE {hours} AND count > 0"
            f" UNION SELECT {column}, card_uid FROM stats_swipes WHERE {swipes} AND count > 0")


async def consumption(pool: Connection, by: str, span: Span, merchant: str | None) -> Consumption:
    """Net purchases in ``span``, of one merchant or all, grouped ``by`` a key of ``GROUPINGS``:
    exact at any instant."""
    hours, swipes, args = span.where(merchant)
    column = GROUPINGS[by]
    cells = _cards_of(column, hours, swipes)
    sums, cards, total_cards = await asyncio.gather(
        pool.fetch(
            f"SELECT GROUPING({column}) AS is_total, {column} AS key, coalesce(sum(count), 0)::bigint AS count,"
            f" coalesce(sum(amount_fen), 0) AS amount FROM (SELECT {column}, count, amount_fen FROM stats_hourly"
            f" WHERE {hours} UNION ALL SELECT {column}, count, amount_fen FROM stats_swipes WHERE {swipes}) AS s"  # noqa: S608
            f" GROUP BY GROUPING SETS (({column}), ())",
            *args,
        ),
        pool.fetch(f"SELECT {column} AS key, count(*) AS cards FROM ({cells}) AS c GROUP BY {column}", *args),  # noqa: S608
        pool.fetchval(f"SELECT count(DISTINCT card_uid) FROM ({cells}) AS c", *args),  # noqa: S608
    )
    return Consumption(sums, {r["key"]: r["cards"] for r in cards}, total_cards)


async def distinct_cards(pool: Connection, by: str, span: Span, merchant: str | None, keys: list[Any]) -> int:
    """The distinct cards with a net purchase in the groups ``keys`` of ``consumption``."""
    hours, swipes, args = span.where(merchant)
    column = GROUPINGS[by]
    return int(await pool.fetchval(
        f"SELECT count(DISTINCT card_uid) FROM ({_cards_of(column, hours, swipes)}) AS c"  # noqa: S608
        f" WHERE {column} = ANY(${len(args) + 1})", *args, keys,
    ))


async def day_cards(pool: Connection, day: date, tz: ZoneInfo) -> list[Any]:
    """Who bought where on one local day, for a manager's dashboard (``projections.stats_privacy``):
    each distinct (``merchant_id``, ``meal``, ``device_id``, ``category``, ``card_uid``) with a net
    purchase. Read only to count distinct cards of merged groups; never shown."""
    return await pool.fetch(
        "SELECT DISTINCT merchant_id, meal, device_id, category, card_uid FROM stats_sales"
        " WHERE hour_start >= $1 AND hour_start < $2 AND count > 0", *local_day(day, tz),
    )


# GROUPING(merchant_id, meal, device_id, category): a bit set for each column *not* grouped by.
SALES_SETS = {0b0111: "merchant", 0b0011: "meal", 0b0101: "device", 0b1110: "category", 0b1111: "total"}


@dataclass(frozen=True, slots=True)
class DashboardDay:
    sales: dict[str, list[Any]]  # a key of SALES_SETS' values → its rows (the columns it groups by, count, amount)
    cards: dict[tuple[Any, ...], int]  # (merchant, meal, category), None where not grouped by → distinct cards
    merchants: list[Any]
    locations: dict[str, str]  # point-of-sale device → location
    minutes: list[Any]  # merchant_id, minute of the day, count, amount_fen; by merchant and minute
    gates: list[Any]  # per zone (and its name): approved ``in``, ``out``, and ``declined``
    declines: list[Any]  # kind (pos | gate), reason, count: the day's declined swipes, most first
    checkpoint: Any  # the latest audit checkpoint, or None
    refunds: tuple[int, int]  # the refunds of the day's purchases: how many, fen
    exposure: risk_queries.Exposure  # money at risk now, whatever the day
    phone: Any  # the day's sales paid by phone (virtual cards, DESIGN §10): count, amount, cards


async def dashboard(pool: Connection, day: date, tz: ZoneInfo) -> DashboardDay:
    """Everything the dashboard shows of one local day in ``tz``."""
    span = local_day(day, tz)
    (sales, cards, merchants, locations, minutes, gates, declines, checkpoint, refunds, exposure,
     phone) = await asyncio.gather(
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
        directory_queries.merchants(pool),
        directory_queries.pos_locations(pool),
        pool.fetch(
            "SELECT merchant_id, minute, count, amount_fen FROM stats_minutes WHERE local_day = $1"
            " ORDER BY merchant_id, minute", day,
        ),
        _gates(pool, *span),
        pool.fetch(
            "SELECT kind, reason, sum(count)::bigint AS count FROM stats_declines"
            " WHERE hour_start >= $1 AND hour_start < $2 GROUP BY kind, reason ORDER BY kind, count DESC, reason",
            *span,
        ),
        audit_queries.latest_checkpoint(pool),
        ledger_queries.refunds_between(pool, *span),
        risk_queries.exposure(pool),
        phone_sales(pool, *span),
    )
    by_set: dict[str, list[Any]] = {}
    for row in sales:
        by_set.setdefault(SALES_SETS.get(row["g"], ""), []).append(row)
    return DashboardDay(by_set, {(r["merchant_id"], r["meal"], r["category"]): r["cards"] for r in cards},
                        merchants, locations, minutes, gates, declines, checkpoint, refunds, exposure, phone)


async def phone_sales(pool: Connection, start: datetime, end: datetime) -> Any:
    """The sales (net of reversals and refunds, as every sales figure) of virtual cards' payment
    codes in [start, end), a subset of the total: ``count``, ``amount``, distinct ``cards``."""
    return await pool.fetchrow(
        "SELECT coalesce(sum(s.count), 0)::bigint AS count, coalesce(sum(s.amount_fen), 0) AS amount,"
        " count(DISTINCT s.card_uid) FILTER (WHERE s.count > 0) AS cards FROM stats_sales s"
        " JOIN cards c ON c.card_uid = s.card_uid AND c.kind = 'virtual'"
        " WHERE s.hour_start >= $1 AND s.hour_start < $2", start, end,
    )


async def _gates(pool: Connection, start: datetime, end: datetime) -> list[Any]:
    return await pool.fetch(
        "SELECT g.zone, z.name,"
        " coalesce(sum(count) FILTER (WHERE decision = 'approved' AND direction = 'in'), 0)::bigint AS in,"
        " coalesce(sum(count) FILTER (WHERE decision = 'approved' AND direction = 'out'), 0)::bigint AS out,"
        " coalesce(sum(count) FILTER (WHERE decision <> 'approved'), 0)::bigint AS declined"
        " FROM stats_gates g LEFT JOIN zones z USING (zone)"
        " WHERE hour_start >= $1 AND hour_start < $2 GROUP BY g.zone, z.name ORDER BY g.zone",
        start, end,
    )


async def day_with_sales(pool: Connection, today: date, tz: ZoneInfo) -> date:
    """``today`` if it has sales, else the local day of the latest sale (``today`` if none)."""
    if await pool.fetchval("SELECT 1 FROM stats_sales WHERE hour_start >= $1 LIMIT 1", local_day(today, tz)[0]):
        return today
    latest = await pool.fetchval("SELECT max(hour_start) FROM stats_sales")
    return latest.astimezone(tz).date() if latest is not None else today
