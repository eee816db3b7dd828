"""The rules of DESIGN §1–2 on the pure domain, with the library's in-memory store."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_sim.device import SimDevice
from domain import ids
from domain.actors import CLI
from domain.application import CampusCard, Item
from domain.errors import AlreadyExists, Conflict, NotFound
from domain.wire import parse_envelope
from hub.ingest.application import IngestCampusCard

NOON = datetime(2026, 11, 25, 12, 0, tzinfo=timezone(timedelta(hours=8)))
CARD = "ABCDEF01"


def campus(*, cash: int = 0, subsidy: int = 0, application: type[CampusCard] = CampusCard,
           **account: object) -> tuple[CampusCard, SimDevice]:
    app = application(env={"AGGREGATE_CACHE_MAXSIZE": "1000", "AGGREGATE_CACHE_FASTFORWARD": "n"})
    pos = SimDevice("pos-1", "pos")
    app.register_merchant("canteen-1", "第一食堂", "dining", actor=CLI)
    app.register_device("pos-1", "pos", pos.public_key, merchant_id="canteen-1", actor=CLI)
    app.open_account("s1", "韩梅梅", "student", ["students"], **account, actor=CLI)
    app.issue_card(CARD, "s1", actor=CLI)
    if cash:
        app.credit("s1", "topup", cash, "cash-1", actor=CLI)
    if subsidy:
        app.credit("s1", "subsidy", subsidy, "subsidy-1", actor=CLI)
    return app, pos


def send(app: CampusCard, device: SimDevice) -> list[dict]:
    outcome = app.record_swipes([(device.device_id, [Item(parse_envelope(e)) for e in device.pending])])[0]
    device.acknowledge(outcome.results)
    return outcome.results


def wallets(app: CampusCard) -> tuple[int, int]:
    account = app.get_account("s1")
    return account.subsidy_fen, account.cash_fen


def test_a_purchase_takes_subsidy_first_then_cash() -> None:
    app, pos = campus(cash=1000, subsidy=300)
    pos.purchase(CARD, 500, NOON)
    assert send(app, pos) == [{"seq": 1, "status": "accepted", "decision": "approved", "balance": 800}]
    assert wallets(app) == (0, 800)


def test_the_same_credit_ref_twice_is_one_credit() -> None:
    app, _ = campus()
    assert app.credit("s1", "topup", 500, "r-1", actor=CLI)[1] is True
    assert app.credit("s1", "topup", 500, "r-1", actor=CLI)[1] is False
    assert wallets(app) == (0, 500)
    with pytest.raises(Conflict):
        app.credit("s1", "topup", 700, "r-1", actor=CLI)


def test_insufficient_funds_is_declined_and_nothing_moves() -> None:
    app, pos = campus(cash=100)
    pos.purchase(CARD, 101, NOON)
    assert send(app, pos)[0] == {"seq": 1, "status": "accepted", "decision": "declined",
                                 "reason": "insufficient_funds", "balance": 100}
    assert wallets(app) == (0, 100)


def test_the_daily_limit_counts_the_local_day() -> None:
    app, pos = campus(cash=10000, daily_limit_fen=1000)
    pos.purchase(CARD, 600, NOON)
    pos.purchase(CARD, 500, NOON + timedelta(hours=1))
    pos.purchase(CARD, 400, NOON + timedelta(hours=1))
    # 00:30 the next day in Asia/Shanghai is still 16:30 UTC of the first day: a new local day.
    pos.purchase(CARD, 900, datetime(2026, 11, 25, 16, 30, tzinfo=timezone.utc))
    decisions = [(r["decision"], r.get("reason")) for r in send(app, pos)]
    assert decisions == [("approved", None), ("declined", "daily_limit"), ("approved", None), ("approved", None)]


def test_a_lost_card_is_declined_online_but_recorded_and_debited_offline() -> None:
    app, pos = campus(cash=1000)
    app.report_lost(CARD, actor=CLI)
    pos.purchase(CARD, 300, NOON)
    pos.purchase(CARD, 200, NOON, offline=True, decision="approved")
    online, offline = send(app, pos)
    assert (online["decision"], online["reason"], online["balance"]) == ("declined", "card_lost", 1000)
    assert (offline["status"], offline["decision"], offline["balance"]) == ("accepted", "approved", 800)
    log = app.repository.get(ids.swipe_log_id("pos-1"))
    stored = list(app.events.get(log.id, gt=2, lte=3))[0]
    assert stored.facts["flags"] == ["hotlisted_card"]


def test_an_approved_offline_purchase_may_drive_the_balance_negative() -> None:
    app, pos = campus(cash=100, subsidy=50)
    pos.purchase(CARD, 400, NOON, offline=True, decision="approved")
    result = send(app, pos)[0]
    assert (result["decision"], result["balance"]) == ("approved", -250)
    assert wallets(app) == (0, -250)
    stored = list(app.events.get(ids.swipe_log_id("pos-1"), gt=1, lte=2))[0]
    assert stored.facts["flags"] == ["overdraft"]


def test_a_declined_offline_purchase_moves_no_money() -> None:
    app, pos = campus(cash=100)
    pos.purchase(CARD, 400, NOON, offline=True, decision="declined")
    assert send(app, pos)[0]["decision"] == "declined"
    assert wallets(app) == (0, 100)


def test_a_reversal_refunds_the_same_wallets_once_only() -> None:
    app, pos = campus(cash=1000, subsidy=200)
    pos.purchase(CARD, 500, NOON)
    pos.reversal(CARD, 1, NOON + timedelta(seconds=30))
    pos.reversal(CARD, 1, NOON + timedelta(seconds=40))
    purchase, first, second = send(app, pos)
    assert purchase["balance"] == 700 and first["decision"] == "approved" and first["balance"] == 1200
    assert (second["decision"], second["reason"]) == ("declined", "reversal_invalid")
    assert wallets(app) == (200, 1000)


def test_a_reversal_of_a_declined_purchase_or_of_another_card_is_invalid() -> None:
    app, pos = campus(cash=100)
    pos.purchase(CARD, 500, NOON)  # declined: insufficient funds
    pos.reversal(CARD, 1, NOON)
    pos.purchase(CARD, 50, NOON)
    pos.reversal("ABCDEF02", 3, NOON)
    results = send(app, pos)
    assert [r.get("reason") for r in results] == ["insufficient_funds", "reversal_invalid", None, "reversal_invalid"]


def test_unknown_and_expired_cards_are_declined() -> None:
    app, pos = campus(cash=1000, valid_until=NOON)
    pos.purchase("00000000", 100, NOON - timedelta(hours=1))
    pos.purchase(CARD, 100, NOON)
    unknown, expired = send(app, pos)
    assert unknown == {"seq": 1, "status": "accepted", "decision": "declined", "reason": "card_unknown"}
    assert expired["reason"] == "card_expired"


def test_issuing_a_replacement_cancels_the_lost_card_and_one_active_card_per_account() -> None:
    app, _ = campus()
    with pytest.raises(Conflict):
        app.issue_card("ABCDEF02", "s1", actor=CLI)
    app.report_lost(CARD, actor=CLI)
    app.issue_card("ABCDEF02", "s1", actor=CLI)
    assert app.repository.get(ids.card_id(CARD)).status == "cancelled"
    with pytest.raises(Conflict):
        app.report_found(CARD, actor=CLI)
    with pytest.raises(AlreadyExists):
        app.issue_card("ABCDEF02", "s1", actor=CLI)
    with pytest.raises(NotFound):
        app.issue_card("ABCDEF03", "nobody", actor=CLI)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["buy", "buy", "offline", "reverse", "topup"]),
                          st.integers(min_value=1, max_value=900)), max_size=25))
def test_replaying_the_events_gives_the_live_account_and_the_books_balance(steps: list[tuple[str, int]]) -> None:
    app, pos = campus(cash=1000, subsidy=500)
    credits, approved = 1500, []
    for n, (step, amount) in enumerate(steps):
        if step == "topup":
            app.credit("s1", "topup", amount, f"t{n}", actor=CLI)
            credits += amount
            continue
        if step == "reverse" and approved:
            pos.reversal(CARD, approved[-1][0], NOON)
        elif step != "reverse":
            pos.purchase(CARD, amount, NOON, offline=step == "offline", decision="approved")
        else:
            continue
        envelope = pos.pending[-1]
        result = send(app, pos)[0]
        if envelope["type"] == "purchase" and result["decision"] == "approved":
            approved.append((envelope["seq"], amount))
        elif envelope["type"] == "reversal" and result["decision"] == "approved":
            approved.pop()  # voided: the purchase no longer counts
    live = app.get_account("s1")
    replayed = app.repository.get(live.id, version=live.version)
    assert (replayed.subsidy_fen, replayed.cash_fen) == (live.subsidy_fen, live.cash_fen)
    # DESIGN §1: Σ credits = Σ balances + Σ approved purchases − Σ approved reversals.
    assert live.total_fen == credits - sum(amount for _, amount in approved)


def test_snapshots_are_taken_from_the_saved_aggregates_and_restore_them() -> None:
    app, pos = campus(cash=10**9, application=IngestCampusCard)  # the writer's: it saves in chunks
    for _ in range(1200):
        pos.purchase(CARD, 1, NOON)
    send(app, pos)
    log_id = ids.swipe_log_id("pos-1")
    snapshots = list(app.snapshots.get(log_id))
    # One per interval crossed, at the version each saved chunk reached.
    assert [s.originator_version // 500 for s in snapshots] == [1, 2]
    live = app.repository.get(log_id)
    app.repository.cache.clear()
    restored = app.repository.get(log_id)
    assert (restored.next_seq, restored.head_hash) == (live.next_seq, live.head_hash) == (1201, live.head_hash)
