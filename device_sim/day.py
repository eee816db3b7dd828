"""The arrival model of a campus day: who buys what, where and when.

Canteen swipes cluster around 07:15, 12:00 and 18:00 inside the meal periods (breakfast
06:00–09:30, lunch 10:30–13:30, dinner 16:30–19:30), and every cardholder eats one to
three meals, mostly at a favourite canteen; a few snacks fall outside the meals. The
supermarket is busy all day with an evening bump, the laundry in the evening. All of it is
drawn from the seed up front: the plan is pure data, sent later as fast as the hub takes it.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta

from device_sim.campus import CANTEENS, Campus, Cardholder, Pos


@dataclass(frozen=True, slots=True)
class Meal:
    name: str
    opens: time
    closes: time  # exclusive
    peak: time
    spread_min: int  # standard deviation of arrivals around the peak
    chance: dict[str, float]  # per cardholder category: the chance of eating this meal
    price_fen: dict[str, tuple[int, int]]  # per canteen: the price range


MEALS = (
    Meal("breakfast", time(6), time(9, 30), time(7, 15), 30, {"student": 0.55, "staff": 0.2, "visitor": 0.1},
         {"canteen-1": (300, 900), "canteen-2": (250, 800), "canteen-3": (400, 1000)}),
    Meal("lunch", time(10, 30), time(13, 30), time(12), 25, {"student": 0.85, "staff": 0.9, "visitor": 0.8},
         {"canteen-1": (800, 2000), "canteen-2": (700, 1600), "canteen-3": (1000, 2400)}),
    Meal("dinner", time(16, 30), time(19, 30), time(18), 30, {"student": 0.7, "staff": 0.3, "visitor": 0.5},
         {"canteen-1": (800, 1900), "canteen-2": (700, 1500), "canteen-3": (1000, 2200)}),
)
SNACK_SHARE = 0.04  # canteen swipes outside the meal periods: afternoon tea, late-night noodles
SNACK_TIMES = ((time(14), time(16)), (time(20), time(22)))
SNACK_FEN = (300, 1200)
FAVOURITE_SHARE = 0.7
MARKET_VISITS = 0.5  # supermarket purchases per cardholder and day
MARKET_FEN = (300, 6000)
LAUNDRY_SHARE = 0.15  # students who wash today; half of them dry too
WASH_FEN, DRY_FEN = 400, 300
UNKNOWN_CARD_SHARE = 0.004  # a card the hub never issued
REVERSAL_SHARE = 0.01  # the cashier voids the sale 20 s later
RESEND_SHARE = 0.01  # the hub's answer is lost on the way: the device sends the event again
MISTAKES = (3, 6)  # canteen meals a cashier keys with an extra zero (¥150.00 for ¥15.00): over max_amount
# The day's phases, each from its start to the next one's (the last to midnight). Each is run
# to its end, every device uploading what it kept, before the next begins.
PHASES = (("breakfast", time(0)), ("lunch", time(10, 30)), ("afternoon", time(13, 30)),
          ("dinner", time(16, 30)), ("evening", time(19, 30)))


@dataclass(frozen=True, slots=True)
class Purchase:
    at: datetime
    device_id: str
    card: str
    amount_fen: int
    reverse: bool = False
    resend: bool = False
    phone: bool = False  # paid with the holder's phone, a payment code (device_sim.phones)


def _minutes(clock: time) -> int:
    return clock.hour * 60 + clock.minute


def _clock(campus: Campus, minute: float) -> datetime:
    """The instant ``minute`` minutes after local midnight, to the millisecond."""
    return campus.at(time(0)) + timedelta(milliseconds=int(minute * 60_000))


def _around(rng: random.Random, peak: time, spread_min: int, opens: time, closes: time) -> float:
    """A minute of the day: normal around ``peak``, redrawn until it falls in [opens, closes)."""
    low, high = _minutes(opens), _minutes(closes)
    for _ in range(100):
        minute = rng.gauss(_minutes(peak), spread_min)
        if low <= minute < high:
            return minute
    return rng.uniform(low, high)


def _between(rng: random.Random, opens: time, closes: time) -> float:
    return rng.uniform(_minutes(opens), _minutes(closes))


def _price(rng: random.Random, low: int, high: int) -> int:
    return rng.randrange(low, high, 10)


class DayPlanner:
    """Draws the day's purchases for a campus, in a fixed order of random draws."""

    def __init__(self, campus: Campus, rng: random.Random) -> None:
        self.campus, self.rng = campus, rng
        self.windows: dict[str, list[Pos]] = defaultdict(list)
        for pos in campus.pos:
            key = pos.merchant_id if pos.dorm is None else f"{pos.machine}-{pos.dorm}"
            self.windows[key].append(pos)
        # Some windows queue longer than others: a fixed popularity per window.
        self.popularity = {p.device_id: rng.uniform(0.4, 1.6) for p in campus.pos}
        self.plan: list[Purchase] = []

    def add(self, minute: float, pos: Pos, card: str, amount_fen: int, *, voidable: bool = True) -> None:
        rng = self.rng
        reverse = voidable and rng.random() < REVERSAL_SHARE
        self.plan.append(Purchase(_clock(self.campus, minute), pos.device_id, card, amount_fen,
                                  reverse=reverse, resend=rng.random() < RESEND_SHARE))

    def window(self, key: str) -> Pos:
        choices = self.windows[key]
        return self.rng.choices(choices, weights=[self.popularity[p.device_id] for p in choices])[0]

    def meals(self, person: Cardholder) -> None:
        rng = self.rng
        eaten = [m for m in MEALS if rng.random() < m.chance[person.category]] or [MEALS[1]]
        for meal in eaten:
            canteen = person.favourite if rng.random() < FAVOURITE_SHARE else rng.choice(CANTEENS)
            card = f"DEAD{rng.randrange(16**6):06X}" if rng.random() < UNKNOWN_CARD_SHARE else person.card
            if rng.random() < SNACK_SHARE:
                minute, price = _between(rng, *rng.choice(SNACK_TIMES)), _price(rng, *SNACK_FEN)
            else:
                minute = _around(rng, meal.peak, meal.spread_min, meal.opens, meal.closes)
                price = _price(rng, *meal.price_fen[canteen])
            self.add(minute, self.window(canteen), card, price)

    def market(self, person: Cardholder) -> None:
        rng = self.rng
        if rng.random() >= MARKET_VISITS:
            return
        if rng.random() < 0.35:  # the evening bump
            minute = _around(rng, time(20, 30), 45, time(17), time(22, 30))
        else:
            minute = _between(rng, time(8), time(22, 30))
        amount = min(_price(rng, *MARKET_FEN), _price(rng, *MARKET_FEN))  # mostly small baskets
        self.add(minute, self.window("market"), person.card, amount)

    def laundry(self, person: Cardholder) -> None:
        rng = self.rng
        if person.dorm is None or rng.random() >= LAUNDRY_SHARE:
            return
        if rng.random() < 0.75:
            minute = _around(rng, time(20, 30), 60, time(17), time(22, 30))
        else:
            minute = _between(rng, time(8), time(17))
        self.add(minute, self.window(f"washer-{person.dorm}"), person.card, WASH_FEN, voidable=False)
        if rng.random() < 0.5:
            self.add(minute + rng.uniform(40, 55), self.window(f"dryer-{person.dorm}"), person.card, DRY_FEN,
                     voidable=False)

    def mistakes(self) -> None:
        """A few lunches and dinners keyed ten times their price: declined ``over_limit`` online
        (an offline window declines them too, but for the day's rogue one)."""
        rng = self.rng
        merchant_of = self.campus.merchant_of
        meals = [i for i, p in enumerate(self.plan) if merchant_of[p.device_id] in CANTEENS
                 and not p.card.startswith("DEAD") and _minutes(MEALS[1].opens) <= _minutes(p.at.time())]
        for i in rng.sample(meals, min(rng.randint(*MISTAKES), len(meals))):
            self.plan[i] = replace(self.plan[i], amount_fen=self.plan[i].amount_fen * 10, reverse=False, resend=False)

    def snacks(self, count: int) -> None:
        """Extra purchases outside the meals, when a caller asks for more than the day makes."""
        rng = self.rng
        for _ in range(count):
            person = rng.choice(self.campus.cardholders)
            key = rng.choice((*CANTEENS, "market"))
            self.add(_between(rng, time(8), time(22)), self.window(key), person.card, _price(rng, *SNACK_FEN))


def campus_day(campus: Campus, rng: random.Random, purchases: int | None = None) -> list[Purchase]:
    """The day's purchases in time order; exactly ``purchases`` of them when given (a random
    subset of the day, or the day and extra snacks)."""
    planner = DayPlanner(campus, rng)
    for person in campus.cardholders:
        planner.meals(person)
        planner.market(person)
        planner.laundry(person)
    planner.mistakes()
    if purchases is not None and purchases > len(planner.plan):
        planner.snacks(purchases - len(planner.plan))
    plan = planner.plan
    if purchases is not None and purchases < len(plan):
        plan = rng.sample(plan, purchases)
    return sorted(plan, key=lambda p: (p.at, p.device_id))


def phase_bounds(campus: Campus) -> list[tuple[str, datetime, datetime]]:
    """(name, start, stop) of each phase of the simulated day, ``stop`` exclusive."""
    midnight = datetime.combine(campus.day + timedelta(days=1), time(0), tzinfo=campus.tz)
    starts = [campus.at(start) for _, start in PHASES] + [midnight]
    return [(name, starts[i], starts[i + 1]) for i, (name, _) in enumerate(PHASES)]
