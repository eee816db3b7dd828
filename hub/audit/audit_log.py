"""The signed checkpoints the hub issues while the Merkle tree grows (DESIGN §4); the stored
tree is read by ``projections.audit_queries`` (roots and proofs from O(log n) rows)."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain import merkle
from domain.wire import CHECKPOINT_PREFIX, sign_document
from projections import audit_queries

log = logging.getLogger(__name__)


async def root_hash(conn: asyncpg.Connection, size: int) -> bytes:
    return await audit_queries.with_nodes(conn, lambda get: merkle.root_hash(size, get))


def checkpoint_json(row: Any) -> dict[str, Any]:
    return {"tree_size": row["tree_size"], "root_hash": row["root_hash"],
            "issued_at": row["issued_at"], "sig": row["sig"]}


async def latest_checkpoint(conn: asyncpg.Connection) -> dict[str, Any] | None:
    row = await audit_queries.latest_checkpoint(conn)
    return checkpoint_json(row) if row else None


async def issue_checkpoint(pool: asyncpg.Pool, key: Ed25519PrivateKey) -> dict[str, Any]:
    """Signs the tree as the audit projection has it now (or returns the checkpoint of
    that size if there is one already)."""
    async with pool.acquire() as conn:
        size = await audit_queries.tree_size(conn)
        existing = await audit_queries.checkpoint(conn, size)
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
                size = await audit_queries.tree_size(conn)
            grown = size - last["tree_size"]
            if grown > 0 and (time.monotonic() - issued >= every_s or grown >= every_events):
                last = await issue_checkpoint(pool, key)
                issued = time.monotonic()
        except (OSError, asyncpg.PostgresError, LookupError):
            log.exception("issuing an audit checkpoint failed; trying again")
