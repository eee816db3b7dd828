"""Offline limits, ``over_limit`` and ``possible_duplicate`` (DESIGN §11) on the pure domain, with
the library's in-memory store and a hub clock the test moves."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from eventsourcing.domain import Snapshot
from eventsourcing.utils import get_topic

from device_sim.device import SimDevice
from domain import ids
from domain.actors import CLI
from domain.application import CampusCard, Item
from domain.cards import Card
from domain.devices import Merchant, SwipeLog
from domain.errors import Invalid
from domain.wire import parse_envelope

CST = timezone(timedelta(hours=8))
NOON = datetime(2026, 11, 25, 12, 0, tzinfo=CST)
CARD, OTHER = "ABCDEF01", "ABCDEF02"
LIMITS = {"max_amount_fen": 2000, "max_card_day_fen": 5000, "max_device_total_fen": 10_000,
          "max_offline_seconds": 3600}


class Clock:
    """The hub's clock: where the test puts it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def campus(limits: dict[str, int] | None = LIMITS, clock: Clock | None = None) -> tuple[CampusCard, SimDevice]:
    app = CampusCard(env={"AGGREGATE_CACHE_MAXSIZE": "1000", "AGGREGATE_CACHE_FASTFORWARD": "n"},
                     clock=clock or Clock(NOON))
    pos = SimDevice("pos-1", "pos")
    app.register_merchant("canteen-1", "第一食堂", "dining", actor=CLI)
    app.register_device("pos-1", "pos", pos.public_key, merchant_id="canteen-1", actor=CLI)
    for n, card in ((1, CARD), (2, OTHER)):
        app.open_account(f"s{n}", "韩梅梅", "student", ["students"], actor=CLI)
        app.issue_card(card, f"s{n}", actor=CLI)
        app.credit(f"s{n}", "topup", 100_000, f"cash-{n}", actor=CLI)
    if limits is not None:
        app.set_merchant_limits("canteen-1", **limits, actor=CLI)
    return app, pos


def send(app: CampusCard, device: SimDevice) -> list[dict[str, Any]]:
    outcome = app.record_swipes([(device.device_id, [Item(parse_envelope(e)) for e in device.pending])])[0]
    device.acknowledge(outcome.results)
    return outcome.results


def flags(app: CampusCard, device: str = "pos-1") -> dict[int, list[str]]:
    """Each stored swipe's flags, by seq, but ``clock_skew`` (the hub's clock stands still here)."""
    return {e.envelope["seq"]: [f for f in e.facts["flags"] if f != "clock_skew"]
            for e in app.events.get(ids.swipe_log_id(device)) if hasattr(e, "facts")}


def offline(pos: SimDevice, card: str, amount: int, at: datetime) -> None:
    pos.purchase(card, amount, at, offline=True, decision="approved")


def test_limits_are_versioned_per_merchant_and_bounded() -> None:
    app, _ = campus()
    merchant = app.set_merchant_limits("canteen-1", **{**LIMITS, "max_amount_fen": 10_000_000}, actor=CLI)
    assert merchant.limits_version == 2 and merchant.limits["max_amount_fen"] == 10_000_000
    for name, value in (("max_amount", 10_000_001), ("max_card_day", 0), ("max_device_total", 100_000_001),
                        ("max_offline_seconds", 2_592_001), ("max_amount", 2**63)):
        with pytest.raises(Invalid) as refused:
            app.set_merchant_limits("canteen-1", **{**LIMITS, f"{name}_fen" if name != "max_offline_seconds"
                                                      else name: value}, actor=CLI)
        assert refused.value.field == name
    assert app.repository.get(ids.merchant_id("canteen-1")).limits_version == 2


def test_an_online_purchase_over_max_amount_is_declined_over_limit_and_equal_is_approved() -> None:
    app, pos = campus()
    pos.purchase(CARD, 2001, NOON)
    pos.purchase(CARD, 2000, NOON + timedelta(minutes=1))
    over, equal = send(app, pos)
    assert over == {"seq": 1, "status": "accepted", "decision": "declined", "reason": "over_limit",
                    "balance": 100_000}
    assert equal["decision"] == "approved" and equal["balance"] == 98_000


def test_card_reasons_come_before_over_limit() -> None:
    app, pos = campus()
    app.report_lost(CARD, actor=CLI)
    pos.purchase(CARD, 5000, NOON)
    assert send(app, pos)[0]["reason"] == "card_lost"


def test_without_limits_nothing_is_over_a_limit() -> None:
    app, pos = campus(limits=None)
    pos.purchase(CARD, 50_000, NOON)
    offline(pos, CARD, 40_000, NOON + timedelta(minutes=1))
    assert [r["decision"] for r in send(app, pos)] == ["approved", "approved"]
    assert flags(app) == {1: [], 2: []}


def test_offline_purchases_under_every_limit_are_not_flagged() -> None:
    app, pos = campus()
    for n in range(4):
        offline(pos, CARD, 1000, NOON + timedelta(minutes=n))
    assert all(r["decision"] == "approved" for r in send(app, pos))
    assert flags(app) == {1: [], 2: [], 3: [], 4: []}
    assert app.get_account("s1").total_fen == 96_000


@pytest.mark.parametrize("case", ["amount", "card_day", "device_total", "offline_seconds"])
def test_an_offline_purchase_beyond_a_limit_is_approved_debited_and_flagged(case: str) -> None:
    app, pos = campus()
    if case == "amount":
        offline(pos, CARD, 2001, NOON)
    elif case == "card_day":  # 5 × 1,000 at the limit, the sixth beyond it
        for n in range(6):
            offline(pos, CARD, 1000, NOON + timedelta(minutes=n))
    elif case == "device_total":  # two cards, 11 × 1,000 from the device
        for n in range(11):
            offline(pos, (CARD, OTHER)[n % 2], 1000, NOON + timedelta(minutes=n))
    else:  # the device's first event ever starts its period: 3,601 s later is beyond
        offline(pos, CARD, 100, NOON)
        offline(pos, OTHER, 101, NOON + timedelta(seconds=3600))
        offline(pos, OTHER, 102, NOON + timedelta(seconds=3601))
    results = send(app, pos)
    assert all(r["status"] == "accepted" and r["decision"] == "approved" for r in results)
    stored = flags(app)
    last = max(stored)
    assert stored.pop(last) == ["offline_over_limit"]
    assert all(f == [] for f in stored.values())
    spent = sum(e["amount"] for e in pos_events(app))
    total = app.get_account("s1").total_fen + app.get_account("s2").total_fen
    assert total == 200_000 - spent


def pos_events(app: CampusCard) -> list[dict[str, Any]]:
    return [e.envelope for e in app.events.get(ids.swipe_log_id("pos-1")) if hasattr(e, "envelope")]


def test_the_card_day_counts_this_merchant_and_local_day_only() -> None:
    app, pos = campus(clock=Clock(datetime(2026, 11, 26, 1, 0, tzinfo=CST)))  # uploaded after them
    for n in range(5):
        offline(pos, CARD, 1000 - n, datetime(2026, 11, 25, 23, 30 + n, tzinfo=CST))
    offline(pos, CARD, 1000, datetime(2026, 11, 26, 0, 5, tzinfo=CST))  # the next local day: 4,990 the day before
    send(app, pos)
    assert not any(flags(app).values())
    card = app.repository.get(ids.card_id(CARD))
    assert card.offline_fen == {"2026-11-25": {"canteen-1": 4990}, "2026-11-26": {"canteen-1": 1000}}


def test_the_card_keeps_its_last_three_local_days() -> None:
    app, pos = campus(limits=None)
    for day in range(1, 6):
        offline(pos, CARD, 100, datetime(2026, 11, day, 12, 0, tzinfo=CST))
    send(app, pos)
    assert sorted(app.repository.get(ids.card_id(CARD)).offline_fen) == ["2026-11-03", "2026-11-04", "2026-11-05"]


def test_a_backlog_uploaded_in_two_batches_is_one_period_from_the_last_contact() -> None:
    """The offline events since the device's latest online event (12:00, its last upload) are one
    period, however many uploads bring them; the next online event ends it."""
    clock = Clock(NOON)
    app, pos = campus({**LIMITS, "max_card_day_fen": 50_000}, clock=clock)
    pos.purchase(CARD, 100, NOON)
    send(app, pos)  # contact at 12:00
    for n in range(6):  # 12:10 … 12:15, offline: 6 × 1,000 over two cards
        offline(pos, (CARD, OTHER)[n % 2], 1000, NOON + timedelta(minutes=10 + n))
    clock.now = NOON + timedelta(hours=2)
    first = pos.pending[:3]
    pos.pending = pos.pending[3:]
    app.record_swipes([("pos-1", [Item(parse_envelope(e)) for e in first])])
    for n in range(5):  # 12:16 … 12:20: 11 × 1,000 in the period, the last beyond 10,000
        offline(pos, (OTHER, CARD)[n % 2], 1000, NOON + timedelta(minutes=16 + n))
    clock.now = NOON + timedelta(hours=3)
    send(app, pos)
    stored = flags(app)
    assert [seq for seq, f in stored.items() if f] == [12]
    # Still no online event: 13:00:01 is in the same period, more than 3,600 s after 12:00.
    offline(pos, CARD, 10, NOON + timedelta(hours=1, seconds=1))
    send(app, pos)
    assert flags(app)[13] == ["offline_over_limit"]
    # An online purchase at 15:00 is a contact: the next offline event starts a period from it.
    pos.purchase(OTHER, 10, NOON + timedelta(hours=3))
    offline(pos, CARD, 10, NOON + timedelta(hours=3, minutes=1))
    send(app, pos)
    assert flags(app)[15] == []


def test_max_offline_seconds_counts_from_the_last_upload() -> None:
    clock = Clock(NOON)
    app, pos = campus(clock=clock)
    pos.purchase(CARD, 100, NOON)
    send(app, pos)
    offline(pos, CARD, 101, NOON + timedelta(seconds=3600))
    offline(pos, CARD, 102, NOON + timedelta(seconds=3601))
    clock.now = NOON + timedelta(hours=5)
    send(app, pos)
    assert flags(app) == {1: [], 2: [], 3: ["offline_over_limit"]}


def test_a_declined_offline_purchase_counts_towards_no_limit() -> None:
    app, pos = campus()
    pos.purchase(CARD, 9000, NOON, offline=True, decision="declined")
    offline(pos, CARD, 1500, NOON + timedelta(minutes=1))
    send(app, pos)
    assert flags(app) == {1: [], 2: []}


@pytest.mark.parametrize(("gap_s", "flagged"), [(9, True), (10, True), (11, False)])
def test_the_same_card_device_and_amount_within_10_s_is_a_possible_duplicate(gap_s: int, flagged: bool) -> None:
    app, pos = campus(limits=None)
    pos.purchase(CARD, 800, NOON)
    pos.purchase(CARD, 800, NOON + timedelta(seconds=gap_s))
    results = send(app, pos)
    assert [r["decision"] for r in results] == ["approved", "approved"]  # decided as any other
    assert flags(app)[2] == (["possible_duplicate"] if flagged else [])


def test_another_card_or_amount_is_no_duplicate_and_offline_ones_are_flagged_too() -> None:
    app, pos = campus(limits=None)
    pos.purchase(CARD, 800, NOON)
    pos.purchase(OTHER, 800, NOON + timedelta(seconds=1))
    pos.purchase(CARD, 801, NOON + timedelta(seconds=2))
    offline(pos, CARD, 801, NOON + timedelta(seconds=5))
    send(app, pos)
    assert flags(app) == {1: [], 2: [], 3: [], 4: ["possible_duplicate"]}


def test_the_swipe_log_keeps_at_most_32_recent_purchases() -> None:
    app, pos = campus(limits=None)
    for n in range(40):
        pos.purchase(CARD, 1 + n, NOON + timedelta(milliseconds=100 * n))
    send(app, pos)
    log = app.repository.get(ids.swipe_log_id("pos-1"))
    assert len(log.recent) == 32 and log.recent[-1][2] == 40


NEW_STATE = {Merchant: ("limits", "limits_version"), Card: ("offline_fen",),
             SwipeLog: ("contact_at", "period_from", "period_fen", "recent")}


def old_snapshot(aggregate: Any) -> Snapshot:
    """A snapshot of ``aggregate`` as a hub before offline limits took it: no class version, and
    none of the state this change added."""
    dropped = ("_id", "_version", "_pending_events", *NEW_STATE[type(aggregate)])
    return Snapshot(  # type: ignore[call-arg]
        originator_id=aggregate.id, originator_version=aggregate.version, timestamp=Snapshot.create_timestamp(),
        topic=get_topic(type(aggregate)), state={k: v for k, v in vars(aggregate).items() if k not in dropped},
    )


def test_snapshots_from_before_limits_are_upcast_to_no_limits_no_tally_and_no_contact() -> None:
    app, pos = campus(limits=None)
    pos.purchase(CARD, 100, NOON)
    send(app, pos)
    ids_ = (ids.merchant_id("canteen-1"), ids.card_id(CARD), ids.swipe_log_id("pos-1"))
    app.snapshots.put([old_snapshot(app.repository.get(i)) for i in ids_])
    app.repository.cache = None  # read from the store: the snapshots, then later events
    merchant, card, log = (app.repository.get(i) for i in ids_)
    assert (merchant.limits, merchant.limits_version) == (None, 0)
    assert card.offline_fen == {}
    assert (log.contact_at, log.period_from, log.period_fen, log.recent) == (None, None, 0, [])
    app.set_merchant_limits("canteen-1", **LIMITS, actor=CLI)  # and they go on from there
    offline(pos, CARD, 2001, NOON + timedelta(minutes=1))
    send(app, pos)
    assert flags(app)[2] == ["offline_over_limit"]


def test_snapshots_taken_now_are_of_the_current_version_and_restore_as_they_were() -> None:
    """Version 2 since offline limits; a card's is 3 since virtual cards (DESIGN §10)."""
    app, pos = campus()
    offline(pos, CARD, 100, NOON)
    send(app, pos)
    for aggregate_id, version in ((ids.merchant_id("canteen-1"), 2), (ids.card_id(CARD), 3),
                                  (ids.swipe_log_id("pos-1"), 2)):
        aggregate = app.repository.get(aggregate_id)
        snapshot = Snapshot.take(aggregate)
        assert snapshot.state["class_version"] == version
        assert vars(snapshot.mutate(None)) == vars(aggregate)
