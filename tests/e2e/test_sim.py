"""The device simulator's campus day against a real hub over HTTP: the books balance (with the
card office's refunds, closures and expired meal subsidies), the hub's statistics equal what the
devices were told, phones pay by code (online, and offline checked by the POS itself) and the
hub's dashboard shows their share as the devices counted it, and every faulty input, payment
codes' too, gets the answer it must."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from device_sim.holders import SELF_REPORTED
from device_sim.office import CLOSURES, OFFICE_FAULTS
from device_sim.phones import OWN_SESSION
from device_sim.pos import FAULTS, PHONE_FAULTS
from device_sim.sim import simulate
from device_sim.summary import print_report, yuan
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
    assert set(answered) >= {"forged", "replayed", "negative", "naive_clock", "refund_again", "refund_over",
                             *PHONE_FAULTS}
    expected = {**FAULTS, **OFFICE_FAULTS}
    assert all(answer == expected[kind][1] for kind, answer in report.tally.faults)
    assert report.gates is not None and report.gates.events > 0 and not report.gates.codes
    holders = report.holders  # students who reported their own card lost, signed in with their PIN
    assert len(holders.reported) == SELF_REPORTED and all(c.card in report.campus.lost for c in holders.reported)
    assert holders.declined_after > 0  # a purchase after their 挂失, declined card_lost
    assert report.ok


async def test_phones_pay_by_code_online_and_offline_and_the_dashboard_counts_them(hub: Hub, tmp_path: Path) -> None:
    url = str(hub.client.make_url("")).rstrip("/")
    report = await simulate(url, hub.token(), seed=6, devices=6, accounts=120, swipes=None, batch=10,
                            offline_share=0.2, state=tmp_path / "sim.json", gates=False, meal_expires_in_s=3)

    tally, fleet = report.tally, report.fleet
    assert len(report.campus.phones) == fleet.registered > 20 and len(fleet.own) == OWN_SESSION
    assert fleet.removed is not None and fleet.removed_by_holder  # removed in the app's way, its own session
    phone, card = (tally.medium_sales["phone"], tally.medium_fen["phone"]), (tally.medium_sales["card"],
                                                                             tally.medium_fen["card"])
    assert phone[0] > 20 and card[0] > phone[0] and phone[1] > 0
    assert tally.offline_codes["approved"] > 0  # offline POS checked codes themselves and took them
    assert any(key in tally.code_cards for key in tally.reversed)  # a phone's purchase voided, by its virtual card
    dashboard = report.dashboard  # the hub's own figures, by the virtual cards' uids
    assert dashboard is not None and dashboard.checked and dashboard.phone is not None
    assert (dashboard.phone["count"], dashboard.phone["amount"]) == phone
    assert (dashboard.total["count"], dashboard.total["amount"]) == (phone[0] + card[0], phone[1] + card[1])
    assert 0 < dashboard.phone["cards"] <= fleet.registered
    answers = {kind: answer for (kind, answer) in tally.faults if kind in PHONE_FAULTS}
    assert answers == {kind: FAULTS[kind][1] for kind in PHONE_FAULTS}, answers
    assert all(n == 1 for (kind, _), n in tally.faults.items() if kind in PHONE_FAULTS)
    # The offline POS decided as the hub would have: nothing they approved is flagged for a code.
    flags = {f["flag"] for f in report.exposure["flagged"]} if report.exposure else set()
    assert not {f for f in flags if f.startswith("credential_")}, flags
    assert report.books is not None and report.books.balanced and report.ok
    out = io.StringIO()
    print_report(report, Console(file=out, width=120))
    summary = out.getvalue()
    print(summary)
    assert f"by phone {phone[0]:,} (¥{yuan(phone[1])}) = " in summary and "MISMATCH" not in summary
    assert "UNEXPECTED" not in summary



async def test_a_second_run_on_the_same_hub_keeps_its_phones_and_their_counters(hub: Hub, tmp_path: Path) -> None:
    """The state file keeps each phone's key, cert and counter: a second day reuses the phones still
    active (none of their codes is taken twice) and registers anew the one removed. The first day
    is one without purchases (so without closures, whose accounts a second seeding cannot credit)."""
    url = str(hub.client.make_url("")).rstrip("/")
    runs = [await simulate(url, hub.token(), seed=4, devices=6, accounts=60, swipes=swipes, batch=10,
                           offline_share=0.1, state=tmp_path / "sim.json", gates=False, meal_expires_in_s=2)
            for swipes in (0, None)]
    first, second = runs[0].fleet, runs[1].fleet
    assert first.registered == len(runs[0].campus.phones) > 10 and first.reused == 0 and first.removed
    assert (second.reused, second.registered) == (first.registered - 1, 1)  # the removed one registered again
    assert {p.card_uid for p in runs[1].campus.phones.values()} - {p.card_uid for p in runs[0].campus.phones.values()}
    tally = runs[1].tally
    assert tally.medium_sales["phone"] > 0
    assert tally.decisions["declined: credential_reused"] == 1  # the screenshot alone
    assert {kind: answer for (kind, answer) in tally.faults if kind in PHONE_FAULTS} == {
        kind: FAULTS[kind][1] for kind in PHONE_FAULTS}
