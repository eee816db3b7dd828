"""The catalogue of projections, each with its view: what the runner runs (``hub.runner``),
what ``audit verify`` replays (``hub.audit``) and what ``/health`` reports (``hub.service``)."""

from __future__ import annotations

from typing import Any

from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.postgres import PostgresFactory
from eventsourcing.utils import Environment, EnvType

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


def open_views(env: EnvType) -> dict[str, View]:
    """Every projection's view, on one datastore (one pool, sized by ``env``; the hub's budget is
    ``hub.storage.budget``): a process's views are written by one thread, and a pool per view
    held a connection each. Each view's tracking table is named after its projection, as the
    library's factory names it (``<name>_tracking``)."""
    factory = InfrastructureFactory.construct(Environment("views", env))
    assert isinstance(factory, PostgresFactory), factory
    views: dict[str, View] = {}
    for projection_class, view_class in PROJECTIONS:
        view = view_class(datastore=factory.datastore, tracking_table_name=f"{projection_class.name.lower()}_tracking")
        if factory.env_create_table():
            view.create_table()
        views[projection_class.name] = view
    return views
