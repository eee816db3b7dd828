"""The catalogue of projections, each with its view: what the runner runs (``hub.runner``),
what ``audit verify`` replays (``hub.audit``) and what ``/health`` reports (``hub.service``)."""

from __future__ import annotations

from typing import Any

from projections.access import AccessProjection, AccessView
from projections.audit import AuditProjection, AuditView
from projections.base import BatchingProjection, View
from projections.directory import DirectoryProjection, DirectoryView
from projections.ledger import LedgerProjection, LedgerView
from projections.reads import ReadsProjection, ReadsView
from projections.risk import RiskProjection, RiskView
from projections.stats import StatsProjection, StatsView
from projections.tokens import TokensProjection, TokensView

PROJECTIONS: tuple[tuple[type[BatchingProjection[Any]], type[View]], ...] = (
    (LedgerProjection, LedgerView),
    (DirectoryProjection, DirectoryView),
    (AccessProjection, AccessView),
    (AuditProjection, AuditView),
    (StatsProjection, StatsView),
    (TokensProjection, TokensView),
    (ReadsProjection, ReadsView),
    (RiskProjection, RiskView),
)

# A view is written by one thread and waited on by another: it needs few connections (the
# library's default pool opens five per view, and there is a view per projection in each process).
VIEW_POOL = {"POSTGRES_POOL_SIZE": "1", "POSTGRES_MAX_OVERFLOW": "2"}
