"""Subsidy grants expire by the hub's clock (DESIGN §11): within a minute of a grant's
``expires_at``, what is left of it expires as ``Account.SubsidyExpired``, even on an account
nobody touches (a command or swipe on the account expires it at once, before deciding).

Which accounts are due is read from the ledger's view ``subsidy_expiries`` (the grants with an
expiry, until their expiry event or the account's closure), not from an index of the writer's:
the view survives restarts and a standby takeover, and a grant credited while the view lags is
found at the next pass. The expiry itself is a command on the writer, decided by the account
(``CampusCard.expire_subsidies``), so a row the view still shows after its expiry costs a
look at a cached account and writes nothing."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from domain.application import CampusCard
from hub.ingest.isolation import WriterFailed
from hub.ingest.lanes import Overloaded
from hub.ingest.writer import IngestWriter
from projections import ledger_queries

log = logging.getLogger(__name__)
EXPIRY_EVERY_S = 5.0  # well within the minute of DESIGN §11, with the projection's lag; one indexed read
ACCOUNTS_PER_COMMAND = 500  # bounds one command's work on the writer


async def expire_due(pool: Any, writer: IngestWriter, app: CampusCard) -> int:
    """One pass at the application's clock: expires every due grant; returns the events."""
    now = app.clock()
    events = 0
    while True:
        async with pool.acquire() as conn:
            due = await ledger_queries.due_expiries(conn, now, ACCOUNTS_PER_COMMAND)
        if not due:
            return events
        expired = await writer.run(lambda app: app.expire_subsidies(due))
        events += expired
        if len(due) < ACCOUNTS_PER_COMMAND or not expired:
            return events  # a full page that expired nothing is the view lagging: next pass


async def expire_forever(pool: Any, writer: IngestWriter, app: CampusCard, every_s: float = EXPIRY_EVERY_S) -> None:
    """Passes until cancelled; a pass the writer refuses (overloaded, or its batch failed) is tried
    again at the next one (the store going away ends the task: ``hub.service.app`` restarts it)."""
    while True:
        try:
            await expire_due(pool, writer, app)
        except (Overloaded, WriterFailed) as exc:
            log.warning("subsidy expiry: the writer did not take this pass (%s); next in %.0f s", exc, every_s)
        await asyncio.sleep(every_s)
