"""Issued bearer tokens (DESIGN §12): one row per ``Token.Issued``, marked by its
``Token.Revoked``. ``GET /v1/tokens`` lists them (``projections.tokens_queries``); the hub follows the rows' ``version`` (the
notification id of a row's latest change) to learn of revocations made by another process.
Never the token itself: only what it says and who issued and revoked it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from psycopg.types.json import Jsonb

from domain.tokens import Token
from projections.base import BatchingProjection, View


class TokensView(View):
    tables = {
        "tokens": "CREATE TABLE IF NOT EXISTS {schema}.tokens ("
            " jti text PRIMARY KEY, notification_id bigint NOT NULL UNIQUE, role text NOT NULL, scope text,"
            " kid text NOT NULL, issued_at timestamptz NOT NULL, expires_at timestamptz NOT NULL,"
            " issued_by jsonb NOT NULL, revoked_at timestamptz, revoked_by jsonb, version bigint NOT NULL)",
    }
    indexes = (
        "CREATE INDEX IF NOT EXISTS tokens_by_version ON {schema}.tokens (version)",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.issue = self.sql(
            "INSERT INTO {schema}.tokens (jti, notification_id, role, scope, kid, issued_at, expires_at,"
            " issued_by, version) VALUES (%(jti)s, %(version)s, %(role)s, %(scope)s, %(kid)s, %(issued_at)s,"
            " %(expires_at)s, %(issued_by)s, %(version)s) ON CONFLICT DO NOTHING"
        )
        self.revoke = self.sql(
            "UPDATE {schema}.tokens SET revoked_at = %(revoked_at)s, revoked_by = %(revoked_by)s,"
            " version = %(version)s WHERE jti = %(jti)s"
        )


class TokensProjection(BatchingProjection[TokensView]):
    name = "tokens"

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.stage(tracking)

    @process_event.register
    def _(self, domain_event: Token.Issued, tracking: Tracking) -> None:
        row = {
            "jti": domain_event.jti, "version": tracking.notification_id, "role": domain_event.role,
            "scope": domain_event.scope, "kid": domain_event.kid,
            "issued_at": datetime.fromtimestamp(domain_event.iat, UTC),
            "expires_at": datetime.fromtimestamp(domain_event.exp, UTC),
            "issued_by": Jsonb(dict(domain_event.actor)),
        }
        self.stage(tracking, [(self.view.issue, row)])

    @process_event.register
    def _(self, domain_event: Token.Revoked, tracking: Tracking) -> None:
        row = {"jti": domain_event.jti, "version": tracking.notification_id,
               "revoked_at": datetime.fromisoformat(domain_event.revoked_at),
               "revoked_by": Jsonb(dict(domain_event.actor))}
        self.stage(tracking, [(self.view.revoke, row)])
