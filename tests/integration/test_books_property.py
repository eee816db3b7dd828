"""The books of DESIGN §11 as a property, on ``CampusCard`` over the real PostgreSQL store: for
random credits (top-ups, subsidies with and without expiry), purchases online and offline (some
into overdraft), reversals, refunds (partial, whole, some over what remains), the clock moving
past expiries, and closures, the identity holds over the stored events, and every account's
wallets equal a fold over its stored events written here (not the aggregate's code).

Each example works on accounts and a device of its own in one database (as the statistics
property does), so an example costs its commands and nothing more."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_sim.device import SimDevice
from domain import ids, personal
from domain.accounts import Account
from domain.actors import CLI
from domain.application import CampusCard, Item
from domain.devices import SwipeLog
from domain.errors import DomainError
from domain.wire import parse_envelope
from hub.storage.store import Database

pytestmark = pytest.mark.timeout(600)
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
ACCOUNTS = 2
_example = itertools.count()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def campus(database: Database) -> Iterator[tuple[CampusCard, Clock]]:
    clock = Clock()
    app = CampusCard(env=database.eventsourcing_env(), clock=clock, keys=personal.MemoryKeys())
    app.register_merchant("m", "第一食堂", "dining", actor=CLI)
    yield app, clock
    app.close()


ACCOUNT = st.integers(0, ACCOUNTS - 1)
FEN = st.integers(1, 2000)
STEP = st.one_of(
    st.tuples(st.just("topup"), ACCOUNT, FEN),
    st.tuples(st.just("subsidy"), ACCOUNT, FEN, st.one_of(st.none(), st.integers(1, 72))),  # expiry in hours
    st.tuples(st.just("buy"), ACCOUNT, FEN, st.booleans()),  # offline: approved, maybe into overdraft
    st.tuples(st.just("buy"), ACCOUNT, FEN, st.booleans()),
    st.tuples(st.just("reverse"), st.integers(0, 3)),  # the n-th latest swipe (maybe not a purchase)
    # of the n-th latest swipe: a share of it in thirds (3: all of it, 4: more than it)
    st.tuples(st.just("refund"), st.integers(0, 3), st.integers(1, 4)),
    st.tuples(st.just("refund"), st.integers(0, 3), st.integers(1, 4)),
    st.tuples(st.just("advance"), st.integers(1, 48), st.booleans()),  # hours; the hub's expiry pass
    st.tuples(st.just("close"), ACCOUNT),
)


def _run(app: CampusCard, clock: Clock, n: int, pos: SimDevice, steps: list[tuple[Any, ...]]) -> None:
    accounts = [f"p{n}-{a}" for a in range(ACCOUNTS)]
    sent: dict[int, dict[str, Any]] = {}  # seq → envelope
    for i, step in enumerate(steps):
        kind = step[0]
        try:
            if kind in ("topup", "subsidy"):
                expires = clock.now + timedelta(hours=step[3]) if kind == "subsidy" and step[3] else None
                app.credit(accounts[step[1]], kind, step[2], f"c{i}", actor=CLI, expires_at=expires)
            elif kind == "buy":
                pos.purchase(f"E{n:05d}{step[1]:03d}", step[2], clock.now, offline=step[3], decision="approved")
            elif kind == "reverse" and pos.last_seq - step[1] >= 1:
                seq = pos.last_seq - step[1]
                pos.reversal(sent[seq]["card"], seq, clock.now)
            elif kind == "refund" and pos.last_seq - step[1] >= 1:
                seq = pos.last_seq - step[1]
                fen = max(1, sent[seq].get("amount", 1) * step[2] // 3)
                for account in accounts:  # the purchase's account answers; the other says 404
                    try:
                        app.refund_purchase(account, pos.device_id, seq, fen, "退款", f"r{i}", actor=CLI)
                    except DomainError:
                        continue
            elif kind == "advance":
                clock.now += timedelta(hours=step[1])
                if step[2]:
                    app.expire_subsidies(accounts)
            elif kind == "close":
                app.close_account(accounts[step[1]], f"close{i}", actor=CLI)
        except DomainError:
            pass  # refused (a closed account, an overdraft to collect first): nothing was written
        sent.update((e["seq"], e) for e in pos.pending)
        if pos.pending:
            outcome = app.record_swipes([(pos.device_id, [Item(parse_envelope(e)) for e in pos.pending])])[0]
            pos.acknowledge(outcome.results)


def _fold(events: list[Any]) -> tuple[int, int]:
    """An account's (subsidy, cash) from its stored events, as DESIGN §11 says money moves."""
    subsidy = cash = 0
    for e in events:
        if isinstance(e, Account.Credited):
            subsidy, cash = (subsidy + e.amount_fen, cash) if e.kind == "subsidy" else (subsidy, cash + e.amount_fen)
        elif isinstance(e, Account.Refunded | Account.RefundIssued):
            subsidy, cash = subsidy + e.subsidy_fen, cash + e.cash_fen
        elif type(e).__qualname__ == "Account.Debited":
            subsidy, cash = subsidy - e.subsidy_fen, cash - e.cash_fen
        elif isinstance(e, Account.SubsidyExpired):
            subsidy -= e.amount_fen
        elif isinstance(e, Account.Closed):
            cash -= e.payout_fen
        assert subsidy >= 0, e
    return subsidy, cash


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEP, min_size=3, max_size=30))
def test_the_books_balance_and_every_balance_is_the_fold_of_its_events(
        campus: tuple[CampusCard, Clock], steps: list[tuple[Any, ...]]) -> None:
    app, clock = campus
    n = next(_example)
    clock.now = T0 + timedelta(days=10 * n)
    pos = SimDevice(f"pos{n}", "pos")
    app.register_device(pos.device_id, "pos", pos.public_key, merchant_id="m", actor=CLI)
    for a in range(ACCOUNTS):
        app.open_account(f"p{n}-{a}", "李雷", "student", actor=CLI)
        app.issue_card(f"E{n:05d}{a:03d}", f"p{n}-{a}", actor=CLI)
    _run(app, clock, n, pos, steps)

    books = dict.fromkeys(("credits", "purchases", "reversals", "refunds", "payouts", "expired", "balances"), 0)
    for a in range(ACCOUNTS):
        events = list(app.events.get(ids.account_id(f"p{n}-{a}")))
        subsidy, cash = _fold(events)
        account = app.get_account(f"p{n}-{a}")  # replayed from the store (no cache here)
        assert (account.subsidy_fen, account.cash_fen) == (subsidy, cash)
        assert sum(g[1] for g in account.grants) == subsidy
        books["balances"] += subsidy + cash
        for e in events:
            books["credits"] += e.amount_fen if isinstance(e, Account.Credited) else 0
            books["refunds"] += e.amount_fen if isinstance(e, Account.RefundIssued) else 0
            books["payouts"] += e.payout_fen if isinstance(e, Account.Closed) else 0
            books["expired"] += e.amount_fen if isinstance(e, Account.SubsidyExpired) else 0
    for e in app.events.get(ids.swipe_log_id(pos.device_id)):
        if isinstance(e, SwipeLog.Recorded) and e.result["decision"] == "approved" and e.facts["account_id"]:
            moved = e.facts["subsidy_fen"] + e.facts["cash_fen"]
            books["purchases" if e.envelope["type"] == "purchase" else "reversals"] += moved
    assert books["credits"] == (books["balances"] + books["purchases"] - books["reversals"] - books["refunds"]
                                + books["payouts"] + books["expired"]), books
