"""Who read whose records (DESIGN §12): every ``Access.Read``, for the cardholder's
``GET /v1/accounts/{id}/reads`` and for auditors."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking

from domain.actors import role_of
from domain.reads import Access
from projections.base import BatchingProjection, View


class ReadsView(View):
    tables = {
        "account_reads": "CREATE TABLE IF NOT EXISTS {schema}.account_reads ("
            " notification_id bigint PRIMARY KEY, account_id text NOT NULL, at timestamptz NOT NULL,"
            " what text NOT NULL, role text NOT NULL, scope text, jti text)",
    }
    indexes = (
        "CREATE INDEX IF NOT EXISTS account_reads_by_account ON {schema}.account_reads (account_id, notification_id DESC)",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add = self.sql(
            "INSERT INTO {schema}.account_reads (notification_id, account_id, at, what, role, scope, jti)"
            " VALUES (%(notification_id)s, %(account_id)s, %(at)s, %(what)s, %(role)s, %(scope)s, %(jti)s)"
            " ON CONFLICT DO NOTHING"
        )


class ReadsProjection(BatchingProjection[ReadsView]):
    name = "reads"

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.stage(tracking)

    @process_event.register
    def _(self, domain_event: Access.Read, tracking: Tracking) -> None:
        actor: Any = domain_event.actor
        row = {"notification_id": tracking.notification_id, "account_id": domain_event.account_id,
               "at": datetime.fromisoformat(domain_event.at), "what": domain_event.what,
               "role": role_of(actor), "scope": actor.get("scope"), "jti": actor.get("jti")}
        self.stage(tracking, [(self.view.add, row)])
