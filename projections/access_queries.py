"""Reads of the access views (``projections.access``): a gate's zone and rules, the access log,
who is inside a zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from projections import directory_queries
from projections.queries import Connection, Keyset, Page, fetch_page, in_window


@dataclass(frozen=True, slots=True)
class GateRules:
    zone: str | None  # the gate's zone, as registered
    zone_row: Any  # zones' row of it (``name``, ``anti_passback``, ``version``), None if not created
    rules: list[Any]  # access_rules of the zone, by rule id
    hotlist_version: int


async def gate_rules(conn: Connection, device_id: str) -> GateRules | None:
    """What a registered, unrevoked gate downloads; None for any other device."""
    device = await directory_queries.gate_zone(conn, device_id)
    if device is None:
        return None
    zone = await conn.fetchrow("SELECT * FROM zones WHERE zone = $1", device["zone"])
    rules = await conn.fetch("SELECT * FROM access_rules WHERE zone = $1 ORDER BY rule_id", device["zone"])
    return GateRules(device["zone"], zone, rules, await directory_queries.hotlist_version(conn))


async def access_log(conn: Connection, keyset: Keyset, *, zone: str | None, account: str | None,
                     card: str | None, start: datetime | None, end: datetime | None,
                     zones: list[str] | None = None) -> Page:
    """A page of gate swipes, newest first, by the gate's clock in ``[start, end)``; each
    filter that is not None narrows it (``zones``: any of them, a warden's)."""
    return await fetch_page(
        conn,
        "SELECT * FROM access_log WHERE ($1::text IS NULL OR zone = $1) AND ($2::text IS NULL OR account_id = $2)"
        f" AND ($3::text IS NULL OR card_uid = $3) AND {in_window('occurred_at', 4)}"
        " AND ($6::text[] IS NULL OR zone = ANY($6))",
        (zone, account, card, start, end, zones), keyset,
    )


@dataclass(frozen=True, slots=True)
class Occupancy:
    anti_passback: bool
    inside: list[Any]  # account_id, since, device_id; the latest to enter first


async def occupancy(conn: Connection, zone: str) -> Occupancy | None:
    """Who is inside the zone now (passed in, not out); None when there is no such zone."""
    found = await conn.fetchrow("SELECT anti_passback FROM zones WHERE zone = $1", zone)
    if found is None:
        return None
    rows = await conn.fetch("SELECT account_id, since, device_id FROM occupancy WHERE zone = $1 ORDER BY since DESC",
                            zone)
    return Occupancy(found["anti_passback"], rows)
