"""The directory of cards (chip and virtual), devices and merchants, and the hotlist (lost,
cancelled and revoked cards) that devices download.

The hotlist version is the notification id of the latest change to it, so it only grows
and a device's ``since`` names a position in the event store."""

from __future__ import annotations

from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking

from domain.cards import ACTIVE, CANCELLED, LOST, REVOKED, Card
from domain.devices import Device, Merchant
from projections.base import BatchingProjection, View


class DirectoryView(View):
    tables = {
        "cards": "CREATE TABLE IF NOT EXISTS {schema}.cards ("
            " card_uid text PRIMARY KEY, aggregate_id uuid NOT NULL UNIQUE, account_id text NOT NULL,"
            " status text NOT NULL,"
            " hotlist_version bigint NOT NULL DEFAULT 0,"
            " kind text NOT NULL DEFAULT 'physical', label text, valid_until text)",
        "devices": "CREATE TABLE IF NOT EXISTS {schema}.devices ("
            " device_id text PRIMARY KEY, aggregate_id uuid NOT NULL UNIQUE, kind text NOT NULL,"
            " merchant_id text, zone text, location text, revoked boolean NOT NULL DEFAULT false)",
        "merchants": "CREATE TABLE IF NOT EXISTS {schema}.merchants ("
            " merchant_id text PRIMARY KEY, name text NOT NULL, category text NOT NULL,"
            " max_amount_fen bigint, max_card_day_fen bigint, max_device_total_fen bigint,"
            " max_offline_seconds bigint, limits_version bigint NOT NULL DEFAULT 0)",
    }
    # Offline limits (DESIGN §11), added to a view made before them: no merchant had limits.
    LIMIT_COLUMNS = (("max_amount_fen", "bigint"), ("max_card_day_fen", "bigint"),
                     ("max_device_total_fen", "bigint"), ("max_offline_seconds", "bigint"),
                     ("limits_version", "bigint NOT NULL DEFAULT 0"))
    # Virtual cards (DESIGN §10), added to a view made before them: every card was a chip card.
    CARD_COLUMNS = (("kind", "text NOT NULL DEFAULT 'physical'"), ("label", "text"), ("valid_until", "text"))
    indexes = (
        "CREATE INDEX IF NOT EXISTS cards_by_hotlist_version ON {schema}.cards (hotlist_version)",
        "CREATE INDEX IF NOT EXISTS cards_by_account ON {schema}.cards (account_id)",  # a cardholder's cards
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.issue = self.sql(
            "INSERT INTO {schema}.cards (card_uid, aggregate_id, account_id, status) VALUES"
            " (%(card_uid)s, %(aggregate_id)s, %(account_id)s, 'active') ON CONFLICT DO NOTHING"
        )
        self.issue_virtual = self.sql(
            "INSERT INTO {schema}.cards (card_uid, aggregate_id, account_id, status, kind, label, valid_until)"
            " VALUES (%(card_uid)s, %(aggregate_id)s, %(account_id)s, 'active', 'virtual', %(label)s,"
            " %(valid_until)s) ON CONFLICT DO NOTHING"
        )
        self.set_status = self.sql(
            "UPDATE {schema}.cards SET status = %(status)s, hotlist_version = %(version)s"
            " WHERE aggregate_id = %(aggregate_id)s"
        )
        self.register_device = self.sql(
            "INSERT INTO {schema}.devices (device_id, aggregate_id, kind, merchant_id, zone, location)"
            " VALUES (%(device_id)s, %(aggregate_id)s, %(kind)s, %(merchant_id)s, %(zone)s,"
            " %(location)s) ON CONFLICT DO NOTHING"
        )
        self.revoke_device = self.sql(
            "UPDATE {schema}.devices SET revoked = true WHERE aggregate_id = %(aggregate_id)s"
        )
        for table, columns in (("merchants", self.LIMIT_COLUMNS), ("cards", self.CARD_COLUMNS)):
            for column, kind in columns:
                self.sql_create_statements.append(self.sql(
                    f"ALTER TABLE {{schema}}.{table} ADD COLUMN IF NOT EXISTS {column} {kind}"))
        self.set_limits = self.sql(
            "UPDATE {schema}.merchants SET max_amount_fen = %(max_amount_fen)s,"
            " max_card_day_fen = %(max_card_day_fen)s, max_device_total_fen = %(max_device_total_fen)s,"
            " max_offline_seconds = %(max_offline_seconds)s, limits_version = %(version)s"
            " WHERE merchant_id = %(merchant_id)s"
        )
        self.register_merchant = self.sql(
            "INSERT INTO {schema}.merchants (merchant_id, name, category)"
            " VALUES (%(merchant_id)s, %(name)s, %(category)s) ON CONFLICT DO NOTHING"
        )


class DirectoryProjection(BatchingProjection[DirectoryView]):
    name = "directory"

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.stage(tracking)

    @process_event.register
    def _(self, domain_event: Card.Issued, tracking: Tracking) -> None:
        row = {"card_uid": domain_event.card_uid, "aggregate_id": domain_event.originator_id,
               "account_id": domain_event.account_id}
        self.stage(tracking, [(self.view.issue, row)])

    @process_event.register
    def _(self, domain_event: Card.VirtualIssued, tracking: Tracking) -> None:
        row = {"card_uid": domain_event.card_uid, "aggregate_id": domain_event.originator_id,
               "account_id": domain_event.account_id, "label": domain_event.label,
               "valid_until": domain_event.valid_until}
        self.stage(tracking, [(self.view.issue_virtual, row)])

    @process_event.register
    def _(self, domain_event: Card.Revoked, tracking: Tracking) -> None:
        self._status(domain_event, tracking, REVOKED)

    @process_event.register
    def _(self, domain_event: Card.ReportedLost, tracking: Tracking) -> None:
        self._status(domain_event, tracking, LOST)

    @process_event.register
    def _(self, domain_event: Card.Found, tracking: Tracking) -> None:
        self._status(domain_event, tracking, ACTIVE)

    @process_event.register
    def _(self, domain_event: Card.Cancelled, tracking: Tracking) -> None:
        self._status(domain_event, tracking, CANCELLED)

    @process_event.register
    def _(self, domain_event: Device.Registered, tracking: Tracking) -> None:
        row = {"device_id": domain_event.device_id, "aggregate_id": domain_event.originator_id,
               "kind": domain_event.kind, "merchant_id": domain_event.merchant_id,
               "zone": domain_event.zone, "location": domain_event.location}
        self.stage(tracking, [(self.view.register_device, row)])

    @process_event.register
    def _(self, domain_event: Device.Revoked, tracking: Tracking) -> None:
        row = {"aggregate_id": domain_event.originator_id}
        self.stage(tracking, [(self.view.revoke_device, row)])

    @process_event.register
    def _(self, domain_event: Merchant.Registered, tracking: Tracking) -> None:
        row = {"merchant_id": domain_event.merchant_id, "name": domain_event.name,
               "category": domain_event.category}
        self.stage(tracking, [(self.view.register_merchant, row)])

    @process_event.register
    def _(self, domain_event: Merchant.LimitsSet, tracking: Tracking) -> None:
        row = {"merchant_id": domain_event.merchant_id, "max_amount_fen": domain_event.max_amount_fen,
               "max_card_day_fen": domain_event.max_card_day_fen,
               "max_device_total_fen": domain_event.max_device_total_fen,
               "max_offline_seconds": domain_event.max_offline_seconds, "version": domain_event.version}
        self.stage(tracking, [(self.view.set_limits, row)])

    def _status(self, domain_event: Any, tracking: Tracking, status: str) -> None:
        row = {"aggregate_id": domain_event.originator_id, "status": status,
               "version": tracking.notification_id}
        self.stage(tracking, [(self.view.set_status, row)])
