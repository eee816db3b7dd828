"""Reads of the audit views (``projections.audit``): the stored Merkle tree (its size, the nodes a
root or proof needs, in one query), its leaves with their stored events, the device envelopes
and the hub's signed checkpoints."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from domain import merkle
from projections.audit import stored_leaf_hash
from projections.queries import EVENTS_TABLE, Connection, Keyset, Page, fetch_page, in_window

T = TypeVar("T")
Get = Callable[[int, int], bytes]


async def tree_size(conn: Connection) -> int:
    return int(await conn.fetchval("SELECT coalesce(max(leaf_index) + 1, 0) FROM audit_leaves"))


async def with_nodes(conn: Connection, compute: Callable[[Get], T]) -> T:
    """Runs a tree computation over the tree's nodes: the stored ones (``audit_nodes``) and
    the leaves of the lower ones (``merkle.split_reads``), each set read in one query."""
    nodes, indexes = merkle.split_reads(merkle.nodes_read(compute))
    rows = await conn.fetch(
        "SELECT level, node_index, hash FROM audit_nodes"
        " WHERE (level, node_index) IN (SELECT * FROM unnest($1::smallint[], $2::bigint[]))",
        [level for level, _ in nodes], [index for _, index in nodes],
    ) if nodes else []
    stored = {(r["level"], r["node_index"]): bytes(r["hash"]) for r in rows}
    rows = await conn.fetch(
        f"SELECT l.leaf_index, e.originator_id, e.originator_version, e.topic, e.state FROM audit_leaves l"  # noqa: S608
        f" JOIN {EVENTS_TABLE} e USING (notification_id) WHERE l.leaf_index = ANY($1::bigint[])", indexes,
    ) if indexes else []
    hashes = {r["leaf_index"]: stored_leaf_hash(r["originator_id"], r["originator_version"], r["topic"], r["state"])
              for r in rows}
    if len(stored) != len(nodes) or len(hashes) != len(indexes):
        raise LookupError(f"audit log: {len(nodes) - len(stored)} tree nodes and"
                          f" {len(indexes) - len(hashes)} leaves missing")
    return compute(merkle.reader(stored, hashes))


async def leaves(conn: Connection, start: int, end: int) -> list[Any]:
    """The stored events (``originator_id``, ``originator_version``, ``topic``, ``state``) of the
    leaves ``[start, end)``, in leaf order; fewer rows than leaves if the log is damaged."""
    return await conn.fetch(
        f"SELECT e.originator_id, e.originator_version, e.topic, e.state FROM audit_leaves l"  # noqa: S608
        f" JOIN {EVENTS_TABLE} e USING (notification_id)"
        " WHERE l.leaf_index >= $1 AND l.leaf_index < $2 ORDER BY l.leaf_index", start, end,
    )


async def swipes(conn: Connection, keyset: Keyset, *, card: str | None, device: str | None,
                 account: str | None, start: datetime | None, end: datetime | None) -> Page:
    """A page of device envelopes' stored events (``state``) with their ``leaf_index``, newest
    first, by the device's clock in ``[start, end)``; each filter that is not None narrows it."""
    return await fetch_page(
        conn,
        f"SELECT s.notification_id, l.leaf_index, e.state FROM audit_swipes s"  # noqa: S608
        f" JOIN {EVENTS_TABLE} e USING (notification_id) LEFT JOIN audit_leaves l USING (notification_id)"
        " WHERE ($1::text IS NULL OR s.card_uid = $1) AND ($2::text IS NULL OR s.device_id = $2)"
        f" AND ($3::text IS NULL OR s.account_id = $3) AND {in_window('s.occurred_at', 4)}",
        (card, device, account, start, end), keyset, key="s.notification_id",
    )


async def latest_checkpoint(conn: Connection) -> Any:
    """The signed checkpoint of the largest tree (``tree_size``, ``root_hash``, ``issued_at``,
    ``sig``), or None before the first."""
    return await conn.fetchrow("SELECT * FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1")


async def checkpoint(conn: Connection, size: int) -> Any:
    """The signed checkpoint of a tree of ``size`` leaves, or None."""
    return await conn.fetchrow("SELECT * FROM audit_checkpoints WHERE tree_size = $1", size)
