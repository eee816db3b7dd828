"""Consumption statistics (DESIGN §6 ``/v1/stats/consumption``) and gate traffic, for managers.

Approved purchases that moved money, net of approved refunds, are counted in the hub's local
time: ``stats_hourly`` holds the net count and fen per (local hour, meal period, merchant,
device, cardholder category), so any whole-hour range can be grouped by merchant, device, hour,
meal, category or day from a few rows an hour (card-office refunds of §11 netted likewise); ``stats_sales`` holds the same per card, so that
``cards`` (distinct cards) stays exact. ``stats_swipes`` holds the same per instant (the swipe's
signed ``occurred_at``), read only for the partial hours at the edges of a range, so that a range
between any two instants is exact (``stats_queries.consumption``). A refund is
netted in the row of the purchase it voids (its local time, meal and device), so a reversal
never shows up as a negative lunch in another hour. ``stats_minutes`` (per merchant and local
minute) feeds the live chart, ``stats_gates`` the gate traffic per zone, ``stats_declines`` the
declined swipes per local hour, kind (``pos`` | ``gate``) and reason (an offline event the device
declined counts as ``offline_declined``: the device gave none). Each flush aggregates its events in
memory and writes every table with one ``unnest`` upsert.

Local time and meal periods are settings of the projection (``CARDHUB_TIMEZONE``,
``CARDHUB_MEALS``); changing them applies to events projected afterwards, so rebuild the
view (drop its tables and its tracking) after a change.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from eventsourcing.persistence import Tracking
from psycopg.sql import SQL, Composed, Identifier, Literal

from domain.accounts import Account
from domain.devices import SwipeLog
from domain.facts import SignedEnvelope, SwipeFacts, SwipeResult, swipe_card
from domain.wire import parse_rfc3339
from projections.base import BatchingProjection, View

DEFAULT_MEALS = "breakfast=06:00-09:30,lunch=10:30-13:30,dinner=16:30-19:30"
OTHER_MEAL = "other"
UNKNOWN_CATEGORY = "unknown"  # events recorded before the category was part of a swipe's facts
OFFLINE_DECLINED = "offline_declined"  # the reason of a swipe an offline device declined
UNKNOWN_REASON = "unknown"  # an online decline stored without a reason (none is, as of this hub)


@dataclass(frozen=True, slots=True)
class MealPeriod:
    name: str
    start: time
    stop: time  # exclusive


def parse_meals(text: str) -> tuple[MealPeriod, ...]:
    """``name=HH:MM-HH:MM,…``; periods may not overlap. Raises ValueError with what is wrong."""
    periods: list[MealPeriod] = []
    for part in text.split(","):
        name, _, window = part.strip().partition("=")
        start_text, _, stop_text = window.partition("-")
        try:
            start, stop = time.fromisoformat(start_text.strip()), time.fromisoformat(stop_text.strip())
        except ValueError:
            raise ValueError(f"meal period {part.strip()!r}: expected name=HH:MM-HH:MM") from None
        if not name.strip() or name.strip() == OTHER_MEAL or start >= stop:
            raise ValueError(f"meal period {part.strip()!r}: needs a name other than 'other' and from < to")
        periods.append(MealPeriod(name.strip(), start, stop))
    periods.sort(key=lambda p: p.start)
    for earlier, later in zip(periods, periods[1:], strict=False):
        if later.start < earlier.stop:
            raise ValueError(f"meal periods {earlier.name} and {later.name} overlap")
    return tuple(periods)


def meal_of(local: datetime, meals: tuple[MealPeriod, ...]) -> str:
    clock = local.time()
    return next((m.name for m in meals if m.start <= clock < m.stop), OTHER_MEAL)


@dataclass(frozen=True, slots=True)
class LocalTime:
    """Where an instant falls in the hub's local calendar."""

    hour_start: datetime  # the local hour it falls in, as an instant
    day: date
    hour: int
    minute_of_day: int
    meal: str

    @classmethod
    def of(cls, instant: datetime, tz: ZoneInfo, meals: tuple[MealPeriod, ...]) -> LocalTime:
        local = instant.astimezone(tz)
        return cls(local.replace(minute=0, second=0, microsecond=0), local.date(), local.hour,
                   local.hour * 60 + local.minute, meal_of(local, meals))


class StatsView(View):
    """Amounts are ``numeric`` (sums of hostile amounts leave the 64-bit range); counts are
    ``bigint``: each is at most the number of events."""

    tables = {
        "stats_sales": "CREATE TABLE IF NOT EXISTS {schema}.stats_sales ("
            " hour_start timestamptz NOT NULL, local_day date NOT NULL, local_hour smallint NOT NULL,"
            " meal text NOT NULL, merchant_id text NOT NULL, device_id text NOT NULL, category text NOT NULL,"
            " card_uid text NOT NULL, count bigint NOT NULL, amount_fen numeric NOT NULL,"
            " PRIMARY KEY (hour_start, merchant_id, device_id, card_uid, meal, category))",
        # The same sums without the card: what counts and amounts are read from (a few rows an hour).
        "stats_hourly": "CREATE TABLE IF NOT EXISTS {schema}.stats_hourly ("
            " hour_start timestamptz NOT NULL, local_day date NOT NULL, local_hour smallint NOT NULL,"
            " meal text NOT NULL, merchant_id text NOT NULL, device_id text NOT NULL, category text NOT NULL,"
            " count bigint NOT NULL, amount_fen numeric NOT NULL,"
            " PRIMARY KEY (hour_start, merchant_id, device_id, meal, category))",
        # Per card and instant: the partial hours at a range's edges (one row a swipe, or fewer).
        "stats_swipes": "CREATE TABLE IF NOT EXISTS {schema}.stats_swipes ("
            " at timestamptz NOT NULL, local_day date NOT NULL, local_hour smallint NOT NULL,"
            " meal text NOT NULL, merchant_id text NOT NULL, device_id text NOT NULL, category text NOT NULL,"
            " card_uid text NOT NULL, count bigint NOT NULL, amount_fen numeric NOT NULL,"
            " PRIMARY KEY (at, merchant_id, device_id, card_uid, meal, category))",
        "stats_minutes": "CREATE TABLE IF NOT EXISTS {schema}.stats_minutes ("
            " local_day date NOT NULL, minute smallint NOT NULL, merchant_id text NOT NULL,"
            " count bigint NOT NULL, amount_fen numeric NOT NULL, PRIMARY KEY (local_day, merchant_id, minute))",
        "stats_gates": "CREATE TABLE IF NOT EXISTS {schema}.stats_gates ("
            " hour_start timestamptz NOT NULL, local_day date NOT NULL, zone text NOT NULL,"
            " direction text NOT NULL, decision text NOT NULL, count bigint NOT NULL,"
            " PRIMARY KEY (hour_start, zone, direction, decision))",
        "stats_declines": "CREATE TABLE IF NOT EXISTS {schema}.stats_declines ("
            " hour_start timestamptz NOT NULL, local_day date NOT NULL, kind text NOT NULL,"
            " reason text NOT NULL, count bigint NOT NULL, PRIMARY KEY (hour_start, kind, reason))",
    }
    # Tables a view made by an older hub lacks, with rows for every event it had applied: a view
    # without one of them is rebuilt at start (``_rebuild_when_missing``).
    added_later: ClassVar[tuple[str, ...]] = ("stats_swipes", "stats_declines")
    indexes = (
        "CREATE INDEX IF NOT EXISTS stats_sales_by_merchant ON {schema}.stats_sales (merchant_id, hour_start)",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sql_create_statements.insert(0, self._rebuild_when_missing())
        for table in ("stats_sales", "stats_hourly", "stats_minutes"):
            self.widen_to_numeric(table, ("amount_fen",))
        # stats_sales and stats_swipes: the same cells, per local hour or per instant
        sale = (("local_day", "date"), ("local_hour", "smallint"), ("meal", "text"), ("merchant_id", "text"),
                ("device_id", "text"), ("category", "text"), ("card_uid", "text"))
        self.add_sales, self.add_swipes = (
            self._upsert(table, ((when, "timestamptz"), *sale),
                         f"{when}, merchant_id, device_id, card_uid, meal, category", ("count", "amount_fen"))
            for table, when in (("stats_sales", "hour_start"), ("stats_swipes", "at"))
        )
        self.add_hourly = self._upsert(
            "stats_hourly",
            (("hour_start", "timestamptz"), ("local_day", "date"), ("local_hour", "smallint"),
             ("meal", "text"), ("merchant_id", "text"), ("device_id", "text"), ("category", "text")),
            "hour_start, merchant_id, device_id, meal, category", ("count", "amount_fen"),
        )
        self.add_minutes = self._upsert(
            "stats_minutes", (("local_day", "date"), ("minute", "smallint"), ("merchant_id", "text")),
            "local_day, merchant_id, minute", ("count", "amount_fen"),
        )
        self.add_gates = self._upsert(
            "stats_gates",
            (("hour_start", "timestamptz"), ("local_day", "date"), ("zone", "text"),
             ("direction", "text"), ("decision", "text")),
            "hour_start, zone, direction, decision", ("count",),
        )
        self.add_declines = self._upsert(
            "stats_declines", (("hour_start", "timestamptz"), ("local_day", "date"), ("kind", "text"),
                               ("reason", "text")),
            "hour_start, kind, reason", ("count",),
        )

    def _rebuild_when_missing(self) -> Composed:
        """A view made by a hub before one of ``added_later`` has no rows there for what it
        applied (a range's edges over those swipes would come out short, the day's declines
        empty): at start, before the tables are created, such a view is emptied with its
        tracking and replayed from the first event (once: the tables exist from then on)."""
        schema = self.datastore.schema
        tracking = f"{schema}.{StatsProjection.name}_tracking"
        empty = SQL(" ").join(
            SQL("IF to_regclass({qualified}) IS NOT NULL THEN TRUNCATE {schema}.{table}; END IF;").format(
                qualified=Literal(f"{schema}.{table}"), schema=Identifier(schema), table=Identifier(table))
            for table in [*self.tables, f"{StatsProjection.name}_tracking"]
        )
        missing = SQL(" OR ").join(SQL("to_regclass({}) IS NULL").format(Literal(f"{schema}.{table}"))
                                   for table in self.added_later)
        return SQL(
            "DO $$ BEGIN IF to_regclass({tracking}) IS NOT NULL AND ({missing}) THEN {empty} END IF; END $$"
        ).format(tracking=Literal(tracking), missing=missing, empty=empty)

    def _upsert(self, table: str, keys: tuple[tuple[str, str], ...], conflict: str,
                sums: tuple[str, ...]) -> Any:
        columns = [name for name, _ in keys] + list(sums)
        arrays = [f"%({name})b::{kind}[]" for name, kind in keys] + [f"%({s})b::{'numeric' if s == 'amount_fen' else 'bigint'}[]" for s in sums]
        updates = ", ".join(f"{s} = {{schema}}.{table}.{s} + excluded.{s}" for s in sums)
        return self.sql(
            f"INSERT INTO {{schema}}.{table} ({', '.join(columns)}) SELECT * FROM unnest({', '.join(arrays)})"
            f" ON CONFLICT ({conflict}) DO UPDATE SET {updates}"
        )


class StatsProjection(BatchingProjection[StatsView]):
    name = "stats"

    def __init__(self, view: StatsView, settings: Mapping[str, str] | None = None) -> None:
        super().__init__(view, settings)
        settings = settings or {}
        self.tz = ZoneInfo(settings.get("CARDHUB_TIMEZONE") or "Asia/Shanghai")
        self.meals = parse_meals(settings.get("CARDHUB_MEALS") or DEFAULT_MEALS)
        self._sales: Counter[tuple[Any, ...]] = Counter()
        self._sales_fen: Counter[tuple[Any, ...]] = Counter()
        self._swipes: Counter[tuple[Any, ...]] = Counter()
        self._swipes_fen: Counter[tuple[Any, ...]] = Counter()
        self._hourly: Counter[tuple[Any, ...]] = Counter()
        self._hourly_fen: Counter[tuple[Any, ...]] = Counter()
        self._minutes: Counter[tuple[Any, ...]] = Counter()
        self._minutes_fen: Counter[tuple[Any, ...]] = Counter()
        self._gates: Counter[tuple[Any, ...]] = Counter()
        self._declines: Counter[tuple[Any, ...]] = Counter()

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        if isinstance(domain_event, SwipeLog.Recorded):
            self._swipe(domain_event.envelope, domain_event.result, domain_event.facts)
        elif isinstance(domain_event, Account.RefundIssued):
            self._refund(domain_event)
        self.stage(tracking)

    def _refund(self, refund: Account.RefundIssued) -> None:
        """A card-office refund (DESIGN §11) nets its purchase where it was counted, like a
        reversal: −fen, and −1 purchase only when nothing of it remains (``whole``)."""
        instant = parse_rfc3339(refund.purchase_at)
        self._count(instant, refund.merchant_id, refund.device, refund.category, refund.card_uid,
                    -1 if refund.whole else 0, -refund.amount_fen)

    def _swipe(self, envelope: SignedEnvelope, result: SwipeResult, facts: SwipeFacts) -> None:
        kind = envelope["type"]
        if result["decision"] == "declined":
            self._decline(envelope, result)
        if kind == "gate":
            if facts["zone"] is not None:
                at = LocalTime.of(parse_rfc3339(envelope["at"]), self.tz, self.meals)
                self._gates[(at.hour_start, at.day, facts["zone"], envelope["direction"], result["decision"])] += 1
            return
        moved_fen = facts["subsidy_fen"] + facts["cash_fen"]
        if result["decision"] != "approved" or facts["account_id"] is None or moved_fen <= 0:
            return  # declined, or recorded without moving money (unknown card, invalid refund)
        sign = 1 if kind == "purchase" else -1
        # refunded_at, category: NotRequired (refunds and events stored before statistics lack them).
        when = envelope["at"] if kind == "purchase" else facts.get("refunded_at", envelope["at"])
        card = swipe_card(envelope, facts)
        assert card is not None, "a swipe that moved money has a card (a chip card, or a payment code's)"
        self._count(parse_rfc3339(when), facts["merchant_id"], envelope["device"],
                    facts.get("category", UNKNOWN_CATEGORY), card, sign, sign * moved_fen)

    def _count(self, instant: datetime, merchant: str | None, device: str, category: str, card: str,
               count: int, fen: int) -> None:
        at = LocalTime.of(instant, self.tz, self.meals)
        sale = (at.hour_start, at.day, at.hour, at.meal, merchant, device, category, card)
        self._sales[sale] += count
        self._sales_fen[sale] += fen
        self._swipes[(instant, *sale[1:])] += count
        self._swipes_fen[(instant, *sale[1:])] += fen
        self._hourly[sale[:-1]] += count
        self._hourly_fen[sale[:-1]] += fen
        minute = (at.day, at.minute_of_day, merchant)
        self._minutes[minute] += count
        self._minutes_fen[minute] += fen

    def _decline(self, envelope: SignedEnvelope, result: SwipeResult) -> None:
        """A declined swipe in the local hour of its signed ``at``: a gate's, or a POS's (a
        purchase or a reversal)."""
        at = LocalTime.of(parse_rfc3339(envelope["at"]), self.tz, self.meals)
        reason = OFFLINE_DECLINED if envelope.get("offline") else result.get("reason", UNKNOWN_REASON)
        self._declines[(at.hour_start, at.day, "gate" if envelope["type"] == "gate" else "pos", reason)] += 1

    def stage_batch(self) -> None:
        if self._sales:
            self._staged.append((self.view.add_sales, _columns(
                ("hour_start", "local_day", "local_hour", "meal", "merchant_id", "device_id", "category",
                 "card_uid"), self._sales, count=self._sales, amount_fen=self._sales_fen)))
            self._staged.append((self.view.add_swipes, _columns(
                ("at", "local_day", "local_hour", "meal", "merchant_id", "device_id", "category", "card_uid"),
                self._swipes, count=self._swipes, amount_fen=self._swipes_fen)))
            self._staged.append((self.view.add_hourly, _columns(
                ("hour_start", "local_day", "local_hour", "meal", "merchant_id", "device_id", "category"),
                self._hourly, count=self._hourly, amount_fen=self._hourly_fen)))
            self._staged.append((self.view.add_minutes, _columns(
                ("local_day", "minute", "merchant_id"), self._minutes,
                count=self._minutes, amount_fen=self._minutes_fen)))
        if self._gates:
            self._staged.append((self.view.add_gates, _columns(
                ("hour_start", "local_day", "zone", "direction", "decision"), self._gates, count=self._gates)))
        if self._declines:
            self._staged.append((self.view.add_declines, _columns(
                ("hour_start", "local_day", "kind", "reason"), self._declines, count=self._declines)))
        for counter in (self._sales, self._sales_fen, self._swipes, self._swipes_fen, self._hourly, self._hourly_fen,
                        self._minutes, self._minutes_fen, self._gates, self._declines):
            counter.clear()


def _columns(names: tuple[str, ...], keys: Counter[tuple[Any, ...]], **sums: Counter[tuple[Any, ...]]) -> dict[str, list[Any]]:
    """The arrays of one ``unnest`` upsert: a column per key part, then one per sum."""
    rows = list(keys)
    columns: dict[str, list[Any]] = {name: [row[i] for row in rows] for i, name in enumerate(names)}
    columns.update({name: [counter[row] for row in rows] for name, counter in sums.items()})
    return columns
