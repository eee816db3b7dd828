"""One writer per database (DESIGN §8, §9): the advisory lock a hub holds while it writes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg

from hub.config import ConfigError
from hub.storage.store import CONNECT_TIMEOUT_S, STORE_ERRORS, Database, connect_reads


class OtherWriter(ConfigError):
    """Another hub holds this database's writer lock."""


KEEPALIVES = ("1", "1", "2")  # idle s, interval s, probes: a silent client is dropped after ~3 s


class WriterLock:
    """One writer per database (DESIGN §8): a session-level advisory lock, on a connection of
    its own held for the hub's life and taken before anything is written. Its session's
    ``application_name`` names the hub, so a second hub can say which one writes."""

    KEYS = (int.from_bytes(hashlib.sha256(b"cardhub").digest()[:4], "big", signed=True), 1)  # (cardhub, writer)
    CHECK_S = 0.25

    def __init__(self, database: Database) -> None:
        self.database = database
        started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        # application_name is cut at 63 bytes: the host goes last.
        self.name = f"cardhub pid {os.getpid()} since {started} on {socket.gethostname()}"[:63]
        self._conn: asyncpg.Connection | None = None

    async def acquire(self) -> None:
        """Takes the lock, or raises ``OtherWriter`` naming the hub that holds it (or a store error)."""
        holder = await self.try_acquire()
        if holder is not None:
            await self.release()
            raise OtherWriter(f"another hub is writing to this database: {holder}")

    async def try_acquire(self) -> str | None:
        """Takes the lock and returns None, or says which hub holds it; the connection stays open
        to ask again (a standby's election, DESIGN §13). On a store error no connection is left."""
        if self._conn is None or self._conn.is_closed():
            self._conn = await self._connect()
        conn = self._conn
        try:
            if await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", *self.KEYS, timeout=CONNECT_TIMEOUT_S):
                return None
            holder = await conn.fetchrow(
                "SELECT a.application_name, a.client_addr, a.backend_start FROM pg_locks l"
                " JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::int::oid AND l.objid = $2::int::oid"
                " AND l.objsubid = 2 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                *self.KEYS, timeout=CONNECT_TIMEOUT_S,
            )
        except BaseException:
            self._conn = None
            conn.terminate()
            raise
        return _describe(holder)

    async def _connect(self) -> asyncpg.Connection:
        conn = await connect_reads(**self.database.asyncpg_kwargs(), server_settings={"application_name": self.name})
        try:
            # The server probes this session's client when it falls silent, so the lock of a hub
            # whose machine died is free within ~3 s for the standby (set here, not as startup
            # parameters, which pgbouncer refuses; a Unix socket ignores them).
            await conn.execute(
                "SELECT set_config('tcp_keepalives_idle', $1, false), set_config('tcp_keepalives_interval', $2, false),"
                " set_config('tcp_keepalives_count', $3, false)", *KEEPALIVES, timeout=CONNECT_TIMEOUT_S,
            )
        except BaseException:
            conn.terminate()
            raise
        return conn

    async def lost(self) -> None:
        """Returns once the lock's connection is gone (the lock with it)."""
        assert self._conn is not None
        checked = time.monotonic()
        while not self._conn.is_closed():
            await asyncio.sleep(self.CHECK_S)
            if time.monotonic() - checked >= 2.0:  # a silent network: ask the server
                checked = time.monotonic()
                try:
                    await self._conn.fetchval("SELECT 1", timeout=CONNECT_TIMEOUT_S)
                except (*STORE_ERRORS, asyncio.TimeoutError, asyncpg.InterfaceError):
                    break
        self._conn.terminate()
        self._conn = None

    async def release(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(*STORE_ERRORS, asyncpg.InterfaceError):
                await conn.close(timeout=CONNECT_TIMEOUT_S)


def _describe(holder: Any) -> str:
    if holder is None:  # it let go meanwhile
        return "a hub that has just stopped; start again"
    where = f" from {holder['client_addr']}" if holder["client_addr"] else ""
    return f"{holder['application_name'] or 'an unnamed session'}{where} (connected {holder['backend_start']:%Y-%m-%d %H:%M:%S %Z})"
