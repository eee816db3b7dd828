"""Stored shapes that changed are upcast by the library (``class_version``, ``upcast_vX_vY``):
an account snapshot taken before gates has no ``zones_inside``; an account opened, or a
snapshot taken, before names were sealed holds its name in clear; the in-memory store here,
PostgreSQL in tests/integration/test_upcasting.py."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone
from typing import Any

from eventsourcing.domain import Snapshot
from eventsourcing.utils import get_topic

from device_sim.device import SimDevice
from domain import ids
from domain.accounts import Account
from domain.actors import CLI
from domain.application import CampusCard, Item
from domain.wire import parse_envelope

MON_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=timezone(timedelta(hours=8)))


def old_snapshot(account: Account, **state: Any) -> Snapshot:
    """A snapshot of ``account`` as a hub without class versions took it: no ``class_version``,
    and no ``zones_inside`` unless given."""
    kept = {k: v for k, v in vars(account).items() if k not in ("_id", "_version", "_pending_events", "zones_inside")}
    return Snapshot(  # type: ignore[call-arg]
        originator_id=account.id, originator_version=account.version, timestamp=Snapshot.create_timestamp(),
        topic=get_topic(Account), state={**kept, **state},
    )


def _campus() -> tuple[CampusCard, SimDevice]:
    app = CampusCard()
    gate = SimDevice("gate-1", "gate")
    app.create_zone("dorm-1", "一号宿舍楼", anti_passback=True, actor=CLI)
    app.add_access_rule("dorm-1", "residents", ["mon"], "06:00", "23:00", actor=CLI)
    app.register_device("gate-1", "gate", gate.public_key, zone="dorm-1", actor=CLI)
    app.open_account("s1", "韩梅梅", "student", ["residents"], actor=CLI)
    app.issue_card("D0000001", "s1", actor=CLI)
    return app, gate


def _swipe(app: CampusCard, gate: SimDevice, direction: str) -> dict[str, Any]:
    envelope = gate.gate("D0000001", direction, MON_NOON)
    [outcome] = app.record_swipes([("gate-1", [Item(parse_envelope(envelope))])])
    gate.acknowledge(outcome.results)
    return dict(outcome.results[0])


def test_a_snapshot_from_before_gates_is_an_account_inside_no_zone() -> None:
    app, gate = _campus()
    account = app.get_account("s1")
    app.snapshots.put([old_snapshot(account)])
    [stored] = app.snapshots.recorder.select_events(account.id)
    assert b"zones_inside" not in stored.state and b"class_version" not in stored.state
    restored = app.repository.get(account.id)
    assert restored.zones_inside == [] and restored.version == account.version
    assert _swipe(app, gate, "in")["decision"] == "approved"
    assert _swipe(app, gate, "in")["reason"] == "anti_passback"


def test_a_snapshot_without_class_version_keeps_the_zones_it_has() -> None:
    """Hubs with gates but before class versions took such snapshots: their zones stand."""
    app, gate = _campus()
    account = app.get_account("s1")
    app.snapshots.put([old_snapshot(account, zones_inside=["dorm-1"])])  # replayed, the account is outside
    assert app.repository.get(account.id).zones_inside == ["dorm-1"]
    assert _swipe(app, gate, "in")["reason"] == "anti_passback"
    assert _swipe(app, gate, "out")["decision"] == "approved"


def test_a_snapshot_taken_now_is_version_5_and_restores_as_it_was() -> None:
    app, gate = _campus()
    assert _swipe(app, gate, "in")["decision"] == "approved"
    account = app.get_account("s1")
    snapshot = Snapshot.take(account)
    assert snapshot.state["class_version"] == 5 and snapshot.state["zones_inside"] == ["dorm-1"]
    assert snapshot.state["name"]["alg"] == "A256GCM" and snapshot.state["erased_at"] is None
    assert snapshot.state["pin"] is None and snapshot.state["pin_set_at"] is None
    restored = snapshot.mutate(None)
    assert vars(restored) == vars(account)
    assert app.repository.get(ids.account_id("s1")).zones_inside == ["dorm-1"]


def test_a_version_4_snapshot_is_an_account_without_a_pin() -> None:
    """Taken before query PINs (DESIGN §10)."""
    app, _ = _campus()
    account = app.get_account("s1")
    kept = {k: v for k, v in vars(account).items()
            if k not in ("_id", "_version", "_pending_events", "pin", "pin_set_at")}
    app.snapshots.put([Snapshot(  # type: ignore[call-arg]
        originator_id=account.id, originator_version=account.version, timestamp=Snapshot.create_timestamp(),
        topic=get_topic(Account), state={**kept, "class_version": 4},
    )])
    restored = app.repository.get(account.id)
    assert restored.pin is None and restored.pin_set_at is None and app.pin_of("s1") is None


def test_a_version_2_snapshot_holds_its_name_in_clear_and_is_read_as_plain() -> None:
    app, _ = _campus()
    account = app.get_account("s1")
    kept = {k: v for k, v in vars(account).items() if k not in ("_id", "_version", "_pending_events", "erased_at")}
    app.snapshots.put([Snapshot(  # type: ignore[call-arg]
        originator_id=account.id, originator_version=account.version, timestamp=Snapshot.create_timestamp(),
        topic=get_topic(Account), state={**kept, "name": "韩梅梅", "class_version": 2},
    )])
    restored = app.repository.get(account.id)
    assert restored.name == {"alg": "none", "plaintext": "韩梅梅"} and restored.erased_at is None


def test_an_account_opened_before_names_were_sealed_reads_its_name_as_plain() -> None:
    app = CampusCard()
    opened = Account.Opened(  # type: ignore[call-arg]
        originator_id=ids.account_id("s0"), originator_version=1, timestamp=Account.Opened.create_timestamp(),
        originator_topic=get_topic(Account), account_id="s0", name={"alg": "none", "plaintext": "-"},
        category="student", groups=[], daily_limit_fen=None, valid_from=None, valid_until=None, actor=None,
    )
    stored = app.mapper.to_stored_event(opened)
    state = json.loads(stored.state)
    assert state.pop("class_version") == 3
    del state["actor"]
    state["name"] = "李雷"  # as a hub before actors and sealed names stored it
    app.recorder.insert_events([dataclasses.replace(stored, state=json.dumps(state).encode())])
    account = app.get_account("s0")
    assert account.name == {"alg": "none", "plaintext": "李雷"}
    assert account.version == 1
