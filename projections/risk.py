"""The money at risk (DESIGN §11, ``GET /v1/risk/exposure``): per flag the hub set, the swipes
flagged and the fen of the approved purchases among them; per device, its offline swipes, the
fen of its approved offline purchases and the hub time of its latest recorded swipe (its last
upload). Negative balances are read from the ledger's ``balances`` (``projections.risk_queries``).

A projection of its own in the shared runner (the same subscription and flush transaction as
the others), not more tables of the ledger: the ledger of a hub made before these tables has
applied every swipe already, so it would have to be emptied and replayed — balances and
transactions going back to zero while it catches up — for the new tables to count the old
swipes. A new projection starts from the first event by itself and the ledger stays as it is.
Each flush's swipes are summed in memory and written with one ``unnest`` upsert per table."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking

from domain.devices import SwipeLog
from projections.base import BatchingProjection, View


class RiskView(View):
    tables = {
        "risk_flags": "CREATE TABLE IF NOT EXISTS {schema}.risk_flags ("
            " flag text PRIMARY KEY, events bigint NOT NULL, fen numeric NOT NULL)",
        "risk_devices": "CREATE TABLE IF NOT EXISTS {schema}.risk_devices ("
            " device_id text PRIMARY KEY, offline_events bigint NOT NULL, fen numeric NOT NULL,"
            " last_upload timestamptz NOT NULL)",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_flags = self.sql(
            "INSERT INTO {schema}.risk_flags AS r (flag, events, fen)"
            " SELECT * FROM unnest(%(flag)b::text[], %(events)b::bigint[], %(fen)b::numeric[])"
            " ON CONFLICT (flag) DO UPDATE SET events = r.events + excluded.events, fen = r.fen + excluded.fen"
        )
        self.add_devices = self.sql(
            "INSERT INTO {schema}.risk_devices AS r (device_id, offline_events, fen, last_upload)"
            " SELECT * FROM unnest(%(device_id)b::text[], %(offline_events)b::bigint[], %(fen)b::numeric[],"
            " %(last_upload)b::timestamptz[])"
            " ON CONFLICT (device_id) DO UPDATE SET offline_events = r.offline_events + excluded.offline_events,"
            " fen = r.fen + excluded.fen, last_upload = greatest(r.last_upload, excluded.last_upload)"
        )


def approved_purchase_fen(domain_event: SwipeLog.Recorded) -> int:
    """The amount of an approved purchase (what the device handed over, debited or not), else 0."""
    envelope = domain_event.envelope
    if envelope["type"] != "purchase" or domain_event.result["decision"] != "approved":
        return 0
    return envelope.get("amount", 0)


class RiskProjection(BatchingProjection[RiskView]):
    name = "risk"

    def __init__(self, view: RiskView, settings: Mapping[str, str] | None = None) -> None:
        super().__init__(view, settings)
        self._flags: dict[str, list[int]] = {}  # flag → [events, fen]
        self._devices: dict[str, list[Any]] = {}  # device → [offline events, fen, last upload]

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.stage(tracking)

    @process_event.register
    def _(self, domain_event: SwipeLog.Recorded, tracking: Tracking) -> None:
        fen = approved_purchase_fen(domain_event)
        for flag in dict.fromkeys(domain_event.facts["flags"]):
            sums = self._flags.setdefault(flag, [0, 0])
            sums[0] += 1
            sums[1] += fen
        envelope = domain_event.envelope
        recorded_at = datetime.fromisoformat(domain_event.recorded_at)
        device = self._devices.setdefault(envelope["device"], [0, 0, recorded_at])
        device[2] = max(device[2], recorded_at)
        if envelope.get("offline"):
            device[0] += 1
            device[1] += fen
        self.stage(tracking)

    def stage_batch(self) -> None:
        """The flush's sums, in key order (rows are locked in the same order by every flush)."""
        if self._flags:
            flags = sorted(self._flags)
            self._staged.append((self.view.add_flags, {
                "flag": flags, "events": [self._flags[f][0] for f in flags],
                "fen": [self._flags[f][1] for f in flags]}))
        if self._devices:
            devices = sorted(self._devices)
            self._staged.append((self.view.add_devices, {
                "device_id": devices, "offline_events": [self._devices[d][0] for d in devices],
                "fen": [self._devices[d][1] for d in devices],
                "last_upload": [self._devices[d][2] for d in devices]}))
        self._flags, self._devices = {}, {}
