"""Reads of the risk view (``projections.risk``) and the ledger's balances: the exposure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from projections import ledger_queries
from projections.queries import Connection


@dataclass(frozen=True, slots=True)
class Exposure:
    negative_accounts: int
    negative_fen: int  # the sum of those balances' magnitudes, a positive number
    flags: list[Any]  # flag, events, fen; by flag
    devices: list[Any]  # device_id, offline_events, fen, last_upload; devices with offline swipes, by id


async def exposure(conn: Connection) -> Exposure:
    accounts, fen = await ledger_queries.negative_balances(conn)
    flags = await conn.fetch("SELECT flag, events, fen FROM risk_flags ORDER BY flag")
    devices = await conn.fetch("SELECT device_id, offline_events, fen, last_upload FROM risk_devices"
                               " WHERE offline_events > 0 ORDER BY device_id")
    return Exposure(accounts, fen, flags, devices)
