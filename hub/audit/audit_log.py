"""Reads of the stored Merkle tree (roots and proofs from O(log n) rows) and the signed
checkpoints the hub issues while the tree grows (DESIGN §4)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain import merkle
from domain.wire import CHECKPOINT_PREFIX, sign_document

log = logging.getLogger(__name__)
T = TypeVar("T")
Get = Callable[[int, int], bytes]


async def tree_size(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT coalesce(max(leaf_index) + 1, 0) FROM audit_leaves"))


async def with_nodes(conn: asyncpg.Connection, compute: Callable[[Get], T]) -> T:
    """Runs a tree computation over stored nodes, reading every node it needs in one query."""
    wanted = merkle.nodes_read(compute)
    rows = await conn.fetch(
        "SELECT level, node_index, hash FROM audit_nodes"
        " WHERE (level, node_index) IN (SELECT * FROM unnest($1::smallint[], $2::bigint[]))",
        [level for level, _ in wanted], [index for _, index in wanted],
    ) if wanted else []
    nodes = {(r["level"], r["node_index"]): bytes(r["hash"]) for r in rows}
    if len(nodes) != len(wanted):
        raise LookupError(f"audit log: {len(wanted) - len(nodes)} tree nodes missing")
    return compute(lambda level, index: nodes[(level, index)])


async def root_hash(conn: asyncpg.Connection, size: int) -> bytes:
    return await with_nodes(conn, lambda get: merkle.root_hash(size, get))


def checkpoint_json(row: Any) -> dict[str, Any]:
    return {"tree_size": row["tree_size"], "root_hash": row["root_hash"],
            "issued_at": row["issued_at"], "sig": row["sig"]}


async def latest_checkpoint(conn: asyncpg.Connection) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1")
    return checkpoint_json(row) if row else None


async def issue_checkpoint(pool: asyncpg.Pool, key: Ed25519PrivateKey) -> dict[str, Any]:
    """Signs the tree as the audit projection has it now (or returns the checkpoint of
    that size if there is one already)."""
    async with pool.acquire() as conn:
        size = await tree_size(conn)
        existing = await conn.fetchrow("SELECT * FROM audit_checkpoints WHERE tree_size = $1", size)
        if existing:
            return checkpoint_json(existing)
        body = {
            "tree_size": size,
            "root_hash": (await root_hash(conn, size)).hex(),
            "issued_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        checkpoint = sign_document(CHECKPOINT_PREFIX, body, key)
        await conn.execute(
            "INSERT INTO audit_checkpoints (tree_size, root_hash, issued_at, sig) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (tree_size) DO NOTHING",
            size, checkpoint["root_hash"], checkpoint["issued_at"], checkpoint["sig"],
        )
        return checkpoint


async def issue_checkpoints(pool: asyncpg.Pool, key: Ed25519PrivateKey, *, every_s: float, every_events: int) -> None:
    """Runs for the life of the hub: a checkpoint at start, then a new one whenever the tree
    has grown and ``every_s`` seconds have passed or ``every_events`` leaves were added."""
    last = await issue_checkpoint(pool, key)
    issued = time.monotonic()
    while True:
        await asyncio.sleep(min(1.0, every_s))
        try:
            async with pool.acquire() as conn:
                size = await tree_size(conn)
            grown = size - last["tree_size"]
            if grown > 0 and (time.monotonic() - issued >= every_s or grown >= every_events):
                last = await issue_checkpoint(pool, key)
                issued = time.monotonic()
        except (OSError, asyncpg.PostgresError, LookupError):
            log.exception("issuing an audit checkpoint failed; trying again")
