"""The simulator's campus day (device_sim.day, device_sim.gates): deterministic for a seed,
meal peaks where a canteen has them, one to three meals a cardholder, laundry in the evening."""

from __future__ import annotations

import random
import statistics
from collections import Counter
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from device_sim.campus import CANTEENS, LIMITS, Campus, cardholders, layout
from device_sim.day import DRY_FEN, MEALS, MISTAKES, WASH_FEN, Purchase, campus_day
from device_sim.device import SimDevice
from device_sim.gates import Gates, gate_day

TZ = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 11, 25)


def plan(seed: int, accounts: int = 2000) -> tuple[Campus, list[Purchase]]:
    rng = random.Random(seed)
    campus = Campus(seed=seed, day=DAY, tz=TZ, pos=layout(seed, 24),
                    cardholders=cardholders(seed, accounts, DAY, TZ, rng))
    return campus, campus_day(campus, rng)


def minute(at: datetime) -> float:
    local = at.astimezone(TZ)
    return local.hour * 60 + local.minute + local.second / 60


def test_the_same_seed_gives_the_same_day_and_another_seed_another() -> None:
    assert plan(5)[1] == plan(5)[1]
    assert plan(5)[1] != plan(6)[1]
    campus, _ = plan(5, 300)
    gates = Gates(devices=[SimDevice(f"s5-dorm-{k}-{door}", "gate") for k in range(1, 5) for door in ("east", "west")],
                  zone_of={f"s5-dorm-{k}-{door}": f"s5-dorm-{k}" for k in range(1, 5) for door in ("east", "west")})
    assert gate_day(gates, campus, random.Random(1)) == gate_day(gates, campus, random.Random(1))


def test_canteen_swipes_peak_at_breakfast_lunch_and_dinner_with_a_few_outside_meals() -> None:
    campus, purchases = plan(7)
    merchant_of = campus.merchant_of
    canteen = [minute(p.at) for p in purchases if merchant_of[p.device_id] in CANTEENS]
    for meal in MEALS:
        opens, closes = meal.opens.hour * 60 + meal.opens.minute, meal.closes.hour * 60 + meal.closes.minute
        inside = [m for m in canteen if opens <= m < closes]
        peak = meal.peak.hour * 60 + meal.peak.minute
        assert abs(statistics.median(inside) - peak) < 10, meal.name
    outside = [m for m in canteen if not any(_in(m, meal.opens, meal.closes) for meal in MEALS)]
    assert 0 < len(outside) < 0.08 * len(canteen)


def _in(m: float, opens: time, closes: time) -> bool:
    return opens.hour * 60 + opens.minute <= m < closes.hour * 60 + closes.minute


def test_every_cardholder_eats_one_to_three_meals() -> None:
    campus, purchases = plan(7)
    merchant_of = campus.merchant_of
    meals = Counter(p.card for p in purchases if merchant_of[p.device_id] in CANTEENS)
    unknown = sum(n for card, n in meals.items() if card.startswith("DEAD"))
    per_person = [meals[c.card] for c in campus.cardholders]
    assert all(0 <= n <= 3 for n in per_person)
    assert per_person.count(0) <= unknown  # only where the one meal was swiped with a card never issued
    assert 1.8 < sum(per_person) / len(per_person) < 2.6


def test_purchases_are_whole_fen_on_the_day_and_laundry_is_fixed_price_and_mostly_evening() -> None:
    campus, purchases = plan(7)
    start = datetime.combine(DAY, time(0), tzinfo=TZ)
    assert all(type(p.amount_fen) is int and p.amount_fen > 0 for p in purchases)
    assert all(start <= p.at < start + timedelta(hours=23, minutes=30) for p in purchases)
    laundry = [p for p in purchases if campus.merchant_of[p.device_id] == "laundry"]
    assert {p.amount_fen for p in laundry} == {WASH_FEN, DRY_FEN}
    assert sum(minute(p.at) >= 17 * 60 for p in laundry) > 0.6 * len(laundry)


def test_only_the_few_mistakenly_keyed_meals_are_above_their_merchants_max_amount() -> None:
    for seed in (5, 7):
        campus, purchases = plan(seed)
        merchant_of = campus.merchant_of
        over = [p for p in purchases if p.amount_fen > LIMITS[merchant_of[p.device_id]]["max_amount"]]
        assert MISTAKES[0] <= len(over) <= MISTAKES[1]
        assert all(merchant_of[p.device_id] in CANTEENS and not p.reverse and not p.resend for p in over)


def test_students_subsidy_is_the_months_meal_subsidy_and_a_few_also_hold_a_stipend() -> None:
    people = cardholders(7, 2000, DAY, TZ, random.Random(7))
    assert all(c.meal_fen == 0 for c in people if c.category != "student")
    meal = [c for c in people if c.meal_fen]
    with_stipend = [c for c in meal if c.subsidy_fen]
    assert meal and 0 < len(with_stipend) < len(meal) / 2
    assert any(c.subsidy_fen for c in people if c.category == "staff")  # staff subsidies do not expire


def test_an_exact_number_of_purchases_when_asked() -> None:
    rng = random.Random(3)
    campus = Campus(seed=3, day=DAY, tz=TZ, pos=layout(3, 6), cardholders=cardholders(3, 100, DAY, TZ, rng))
    assert len(campus_day(campus, random.Random(1), 1000)) == 1000
    assert len(campus_day(campus, random.Random(1), 50)) == 50


def test_people_who_go_into_the_library_come_out_again_later_before_it_closes() -> None:
    campus, _ = plan(5, 2000)
    doors = [*(f"s5-dorm-{k}-{door}" for k in range(1, 5) for door in ("east", "west")), "s5-library-main"]
    gates = Gates(devices=[SimDevice(d, "gate") for d in doors], zone_of={d: d.rsplit("-", 1)[0] for d in doors})
    day = gate_day(gates, campus, random.Random(1))
    library = [s for s in day if s.gate == "s5-library-main"]
    visitors = {c.card for c in campus.cardholders if c.category == "visitor"}
    ins = {s.card: s.at for s in library if s.direction == "in"}
    outs = {s.card: s.at for s in library if s.direction == "out"}
    assert len(ins) + len(outs) == len(library)  # one visit a person at most
    assert set(outs) == set(ins) - visitors and outs  # visitors are refused at the door
    closing = datetime.combine(DAY, time(22), tzinfo=TZ)
    assert all(ins[card] < out < closing for card, out in outs.items())
    # About as many library passages as when a visit was an "in" only (0.3 of students, 0.1 of staff).
    students, staff = (sum(c.category == k for c in campus.cardholders) for k in ("student", "staff"))
    assert abs(len(library) - (0.3 * students + 0.1 * staff + 0.5 * len(visitors))) < 0.15 * len(library)
