"""What the views' read queries share: the connection they are given, the event store's table,
one keyset page, one local day.

Each view's queries live beside it (``projections/<view>_queries.py``) and are awaited by the
hub's handlers with an asyncpg pool or connection; ``projections`` does not import asyncpg, so
the connection is typed by what the queries call on it (``Connection``). Queries hold SQL and
return rows; the handlers decide what an answer or a problem looks like.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from domain.application import CampusCard

# The eventsourcing library's table of stored events (its notifications), named after the application.
EVENTS_TABLE = f"{CampusCard.name}_events"
# The hub's table of accounts' data keys (DESIGN §12), outside the event store: written with the
# events by the writer (``hub.ingest.keystore``), read here to open personal fields.
KEYS_TABLE = "account_keys"


class Connection(Protocol):
    """What a query awaits on an asyncpg ``Pool`` or ``Connection`` (a pool takes a connection
    of its own for each call, so reads given the pool may run side by side)."""

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Any]: ...

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Any: ...

    async def fetchval(self, query: str, *args: Any, column: int = 0, timeout: float | None = None) -> Any: ...


@dataclass(frozen=True, slots=True)
class Keyset:
    """A page of a list newest first: at most ``limit`` rows strictly before position ``before``."""

    before: int
    limit: int


@dataclass(frozen=True, slots=True)
class Page:
    """The rows of a page, and where the next one starts (``Keyset.before``), None on the last."""

    rows: list[Any]
    next_before: int | None


async def fetch_page(conn: Connection, select: str, args: Sequence[Any], keyset: Keyset,
                     key: str = "notification_id") -> Page:
    """``select`` ends with its ``WHERE`` conditions over ``$1…$n`` (``args``); the page's own
    condition, order and limit follow them. One row more than the page is read, to know
    whether another page follows; its cursor is the last row's ``key``."""
    n = len(args)
    rows = await conn.fetch(f"{select} AND {key} < ${n + 1} ORDER BY {key} DESC LIMIT ${n + 2}",
                            *args, keyset.before, keyset.limit + 1)
    if len(rows) <= keyset.limit:
        return Page(rows, None)
    return Page(rows[: keyset.limit], rows[keyset.limit - 1][key.rpartition(".")[2]])


def in_window(column: str, n: int) -> str:
    """The condition that ``column`` falls in ``[$n, $n+1)``, where a bound that is NULL is none
    (a list's ``from`` and ``to``)."""
    return (f"(${n}::timestamptz IS NULL OR {column} >= ${n})"
            f" AND (${n + 1}::timestamptz IS NULL OR {column} < ${n + 1})")


def local_day(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The instants ``[start, end)`` of a calendar day in the time zone ``tz`` (23 or 25 hours
    long on the days its clocks change)."""
    return datetime.combine(day, time(), tz), datetime.combine(day + timedelta(days=1), time(), tz)
