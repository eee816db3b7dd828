"""Access control views (DESIGN §3): zones and their rules as gates download them, the
access log of every gate swipe with its decision, and who is inside each anti-passback zone.

A zone's ``version`` is the notification id of its latest change, so it only grows and a
gate's ``since`` names a position in the event store."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking

from domain.access import Zone
from domain.accounts import Account
from domain.devices import SwipeLog
from domain.facts import swipe_card
from domain.wire import parse_rfc3339
from projections.base import BatchingProjection, View


class AccessView(View):
    tables = {
        "zones": "CREATE TABLE IF NOT EXISTS {schema}.zones ("
            " zone text PRIMARY KEY, name text NOT NULL, anti_passback boolean NOT NULL, version bigint NOT NULL)",
        "access_rules": "CREATE TABLE IF NOT EXISTS {schema}.access_rules ("
            " rule_id text PRIMARY KEY, zone text NOT NULL, grp text NOT NULL, days text[] NOT NULL,"
            " start_hhmm text NOT NULL, stop_hhmm text NOT NULL)",
        "access_log": "CREATE TABLE IF NOT EXISTS {schema}.access_log ("
            " notification_id bigint PRIMARY KEY, zone text, device_id text NOT NULL, seq bigint NOT NULL,"
            " card_uid text, account_id text, direction text NOT NULL, decision text NOT NULL,"
            " reason text, flags text[] NOT NULL, offline boolean NOT NULL, at text NOT NULL,"
            " occurred_at timestamptz NOT NULL, recorded_at timestamptz NOT NULL)",
        "occupancy": "CREATE TABLE IF NOT EXISTS {schema}.occupancy ("
            " zone text NOT NULL, account_id text NOT NULL, since timestamptz NOT NULL, device_id text NOT NULL,"
            " PRIMARY KEY (zone, account_id))",
    }
    indexes = (
        "CREATE INDEX IF NOT EXISTS access_rules_by_zone ON {schema}.access_rules (zone)",
        "CREATE INDEX IF NOT EXISTS access_log_by_zone ON {schema}.access_log (zone, notification_id DESC)",
        "CREATE INDEX IF NOT EXISTS access_log_by_account ON {schema}.access_log (account_id, notification_id DESC)",
        "CREATE INDEX IF NOT EXISTS access_log_by_card ON {schema}.access_log (card_uid, notification_id DESC)",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A gate swipe with an invalid payment code names no card (DESIGN §10): a view made before allows none.
        self.sql_create_statements.append(self.sql("ALTER TABLE {schema}.access_log ALTER COLUMN card_uid DROP NOT NULL"))
        self.add_zone = self.sql(
            "INSERT INTO {schema}.zones (zone, name, anti_passback, version)"
            " VALUES (%(zone)s, %(name)s, %(anti_passback)s, %(version)s) ON CONFLICT DO NOTHING"
        )
        self.add_rule = self.sql(
            "INSERT INTO {schema}.access_rules (rule_id, zone, grp, days, start_hhmm, stop_hhmm)"
            " VALUES (%(rule_id)s, %(zone)s, %(group)s, %(days)s, %(from)s, %(to)s) ON CONFLICT DO NOTHING"
        )
        self.bump = self.sql("UPDATE {schema}.zones SET version = %(version)s WHERE zone = %(zone)s")
        self.log = self.sql(
            "INSERT INTO {schema}.access_log (notification_id, zone, device_id, seq, card_uid, account_id,"
            " direction, decision, reason, flags, offline, at, occurred_at, recorded_at) VALUES"
            " (%(notification_id)s, %(zone)s, %(device_id)s, %(seq)s, %(card_uid)s, %(account_id)s,"
            " %(direction)s, %(decision)s, %(reason)s, %(flags)s, %(offline)s, %(at)s, %(occurred_at)s,"
            " %(recorded_at)s) ON CONFLICT DO NOTHING"
        )
        self.enter = self.sql(
            "INSERT INTO {schema}.occupancy (zone, account_id, since, device_id)"
            " VALUES (%(zone)s, %(account_id)s, %(since)s, %(device_id)s)"
            " ON CONFLICT (zone, account_id) DO UPDATE SET since = excluded.since, device_id = excluded.device_id"
        )
        self.leave = self.sql(
            "DELETE FROM {schema}.occupancy WHERE zone = %(zone)s AND account_id = %(account_id)s"
        )


class AccessProjection(BatchingProjection[AccessView]):
    name = "access"

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.stage(tracking)

    @process_event.register
    def _(self, domain_event: Zone.Created, tracking: Tracking) -> None:
        row = {"zone": domain_event.zone, "name": domain_event.name,
               "anti_passback": domain_event.anti_passback, "version": tracking.notification_id}
        self.stage(tracking, [(self.view.add_zone, row)])

    @process_event.register
    def _(self, domain_event: Zone.RuleAdded, tracking: Tracking) -> None:
        zone = domain_event.zone
        row = {"rule_id": domain_event.rule_id, "zone": zone, "group": domain_event.group,
               "days": domain_event.days, "from": domain_event.start, "to": domain_event.stop}
        self.stage(tracking, [(self.view.add_rule, row),
                              (self.view.bump, {"zone": zone, "version": tracking.notification_id})])

    @process_event.register
    def _(self, domain_event: SwipeLog.Recorded, tracking: Tracking) -> None:
        envelope, result, facts = domain_event.envelope, domain_event.result, domain_event.facts
        if envelope["type"] != "gate":
            self.stage(tracking)
            return
        row = {
            "notification_id": tracking.notification_id, "zone": facts["zone"],
            "device_id": envelope["device"], "seq": envelope["seq"], "card_uid": swipe_card(envelope, facts),
            "account_id": facts["account_id"], "direction": envelope["direction"],
            "decision": result["decision"], "reason": result.get("reason"), "flags": facts["flags"],
            "offline": bool(envelope.get("offline")), "at": envelope["at"],
            "occurred_at": parse_rfc3339(envelope["at"]),
            "recorded_at": datetime.fromisoformat(domain_event.recorded_at),
        }
        self.stage(tracking, [(self.view.log, row)])

    @process_event.register
    def _(self, domain_event: Account.Passed, tracking: Tracking) -> None:
        row = {"zone": domain_event.zone, "account_id": domain_event.account_id,
               "since": parse_rfc3339(domain_event.at), "device_id": domain_event.device}
        self.stage(tracking, [(self.view.enter if domain_event.direction == "in" else self.view.leave, row)])
