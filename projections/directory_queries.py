"""Reads of the directory's views (``projections.directory``): merchants, devices, the hotlist."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain import ids
from projections.ledger_queries import account_exists
from projections.queries import EVENTS_TABLE, Connection, Keyset, Page, fetch_page


async def merchant_exists(conn: Connection, merchant_id: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM merchants WHERE merchant_id = $1", merchant_id))


async def merchants(conn: Connection) -> list[Any]:
    """Every merchant's ``merchant_id``, ``name`` and ``category``, by id."""
    return await conn.fetch("SELECT merchant_id, name, category FROM merchants ORDER BY merchant_id")


async def pos_locations(conn: Connection) -> dict[str, str]:
    """Each point-of-sale device's location."""
    return dict(await conn.fetch("SELECT device_id, location FROM devices WHERE kind = 'pos'"))


async def account_cards(conn: Connection, account_id: str, keyset: Keyset,
                        start: datetime | None = None, end: datetime | None = None) -> Page | None:
    """A page of the account's cards (``card_uid``, ``status``, ``kind``, and for a virtual card
    ``label`` and ``valid_until``), newest issued first — by the
    position of its ``Card.Issued`` in the store, so the view needs no column for it; None when
    there is no such account. (``start`` and ``end``: none, the route takes no time filter.)"""
    assert start is None and end is None, (start, end)
    if not await account_exists(conn, account_id):
        return None
    return await fetch_page(
        conn,
        f"SELECT c.card_uid, c.status, c.kind, c.label, c.valid_until, e.notification_id FROM cards c JOIN {EVENTS_TABLE} e"  # noqa: S608
        " ON e.originator_id = c.aggregate_id AND e.originator_version = 1 WHERE c.account_id = $1",
        (account_id,), keyset, key="e.notification_id",
    )


async def device_key(conn: Connection, device_id: str) -> str | None:
    """The public key (base64) a device was registered with, from its ``Device.Registered`` in
    the store (a device's key never changes, so the view needs no column for it); None for a
    device never registered."""
    state = await conn.fetchval(
        f"SELECT state FROM {EVENTS_TABLE} WHERE originator_id = $1 AND originator_version = 1",  # noqa: S608
        ids.device_id(device_id),
    )
    key = json.loads(bytes(state)).get("public_key") if state is not None else None
    return key if isinstance(key, str) else None


async def gate_zone(conn: Connection, device_id: str) -> Any:
    """The registered, unrevoked gate's row (``zone``), or None."""
    return await conn.fetchrow(
        "SELECT zone FROM devices WHERE device_id = $1 AND NOT revoked AND kind = 'gate'", device_id)


async def hotlist_version(conn: Connection) -> int:
    """The notification id of the hotlist's latest change, 0 before any."""
    return await conn.fetchval("SELECT coalesce(max(hotlist_version), 0) FROM cards")


@dataclass(frozen=True, slots=True)
class Hotlist:
    version: int
    full: bool  # every card not active; else the cards changed since the version asked
    rows: list[Any]  # card_uid, status, by card


async def hotlist(conn: Connection, device_id: str, since: int | None) -> Hotlist | None:
    """The hotlist for a registered, unrevoked device: whole when ``since`` is None or newer than
    the hotlist, else its changes after ``since``; None for any other device."""
    if not await conn.fetchval("SELECT 1 FROM devices WHERE device_id = $1 AND NOT revoked", device_id):
        return None
    version = await hotlist_version(conn)
    full = since is None or since > version
    if full:
        rows = await conn.fetch("SELECT card_uid, status FROM cards WHERE status <> 'active' ORDER BY card_uid")
    else:
        rows = await conn.fetch("SELECT card_uid, status FROM cards WHERE hotlist_version > $1 ORDER BY card_uid",
                                since)
    return Hotlist(version, full, rows)


async def device_limits(conn: Connection, device_id: str) -> Any:
    """The offline limits of a registered, unrevoked point-of-sale device's merchant
    (``merchant_id``, ``max_amount_fen``, ``max_card_day_fen``, ``max_device_total_fen``,
    ``max_offline_seconds``, all None before any was set, and ``limits_version``, 0 then), or None."""
    return await conn.fetchrow(
        "SELECT d.merchant_id, m.max_amount_fen, m.max_card_day_fen, m.max_device_total_fen,"
        " m.max_offline_seconds, m.limits_version FROM devices d JOIN merchants m USING (merchant_id)"
        " WHERE d.device_id = $1 AND NOT d.revoked AND d.kind = 'pos'", device_id)
