"""The device simulator's campus day against a real hub over HTTP: the books balance (with the
card office's refunds, closures and expired meal subsidies), the hub's statistics equal what the
devices were told, and every faulty input gets the answer it must."""

from __future__ import annotations

from pathlib import Path

from device_sim.holders import SELF_REPORTED
from device_sim.office import CLOSURES, OFFICE_FAULTS
from device_sim.pos import FAULTS
from device_sim.sim import simulate
from tests.conftest import Hub


async def test_a_small_campus_day_balances_and_its_statistics_match_the_devices(hub: Hub, tmp_path: Path) -> None:
    url = str(hub.client.make_url("")).rstrip("/")
    report = await simulate(url, hub.token(), seed=3, devices=6, accounts=80, swipes=None, batch=10,
                            offline_share=0.1, state=tmp_path / "sim.json", meal_expires_in_s=3)

    books = report.books
    assert books is not None and books.balanced, books
    assert books.refunds > 0 and books.expired > 0 and report.office.meal_pending == 0
    assert len(report.office.closures) == CLOSURES and books.payouts == sum(c["payout"] for c in report.office.closures)
    assert report.tally.decisions["declined: card_cancelled"] > 0  # the closed accounts' evening purchases
    stats = report.consumption
    assert stats is not None and stats.available and stats.checked and stats.matches(report.tally)
    day_total = sum(answer["total"]["amount"] for answer in stats.by_merchant.values())
    assert day_total == sum(report.tally.net_fen(m) for m in stats.by_merchant) > 0
    meals = {g["key"] for answer in stats.by_merchant.values() for g in answer["groups"]}
    assert {"breakfast", "lunch", "dinner"} <= meals
    answered = {kind: answer for kind, answer in report.tally.faults}
    assert set(answered) >= {"forged", "replayed", "negative", "naive_clock", "refund_again", "refund_over"}
    expected = {**FAULTS, **OFFICE_FAULTS}
    assert all(answer == expected[kind][1] for kind, answer in report.tally.faults)
    assert report.gates is not None and report.gates.events > 0 and not report.gates.codes
    holders = report.holders  # students who reported their own card lost, signed in with their PIN
    assert len(holders.reported) == SELF_REPORTED and all(c.card in report.campus.lost for c in holders.reported)
    assert holders.declined_after > 0  # a purchase after their 挂失, declined card_lost
    assert report.ok
