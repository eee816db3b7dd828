"""The shapes of the statistics' and the dashboard's JSON answers (``hub.service.routes.stats``),
declared for the OpenAPI document like the rest (``hub.service.responses``)."""

from __future__ import annotations

from typing import Literal

import msgspec

from hub.service.responses import Answer


class Totals(Answer):
    count: int
    amount: int
    cards: int


class Group(Answer):
    key: str | int
    count: int
    amount: int
    cards: int


class Consumption(Answer):
    start: str | None = msgspec.field(name="from")
    end: str | None = msgspec.field(name="to")
    by: str
    groups: list[Group]
    total: Totals
    merchant: str | None = None


class DashboardMerchant(Answer):
    merchant_id: str
    name: str
    category: str
    count: int
    amount: int
    cards: int


class DashboardMeal(Answer):
    merchant_id: str | None
    meal: str | None
    count: int
    amount: int
    cards: int


class DashboardWindow(Answer):
    device_id: str | None
    merchant_id: str | None
    location: str | None
    count: int
    amount: int


class DashboardCategory(Answer):
    key: str | None
    count: int
    amount: int
    cards: int


class PerMinute(Answer):
    merchant_id: str
    minute: int
    count: int
    amount: int


class Gates(Answer):
    zone: str
    name: str
    declined: int
    gates_in: int = msgspec.field(name="in")
    gates_out: int = msgspec.field(name="out")


class Decline(Answer):
    """Declined swipes of the day with one reason: ``kind`` ``pos`` (purchases and reversals) or
    ``gate``; ``reason`` as in the upload answer (DESIGN §2), or ``offline_declined`` for an
    offline event the device declined. Aggregates without cards: a manager sees them as they are."""

    kind: Literal["pos", "gate"]
    reason: str
    count: int


class Counted(Answer):
    count: int
    amount: int  # fen


class AccountsFen(Answer):
    accounts: int
    fen: int


class EventsFen(Answer):
    events: int
    fen: int


class DashboardExposure(Answer):
    """Money at risk now (DESIGN §11): accounts below zero and by how much, the fen of the
    purchases devices approved offline (decided without the hub), and those beyond a merchant's
    limits (``GET /v1/risk/exposure`` has the whole picture)."""

    negative_balances: AccountsFen
    offline_fen: int
    offline_over_limit: EventsFen


class Lag(Answer):
    store_position: int
    lag_events: int


class DashboardCheckpoint(Answer):
    tree_size: int
    root_hash: str
    issued_at: str


class Dashboard(Answer):
    date: str
    time_zone: str
    generated_at: str
    merchants: list[DashboardMerchant]
    meals: list[DashboardMeal]
    windows: list[DashboardWindow]
    categories: list[DashboardCategory]
    total: Totals
    per_minute: list[PerMinute]
    gates: list[Gates]
    declines: list[Decline]  # the day's declined swipes per kind and reason, most first within a kind
    refunds: Counted  # the refunds of the day's purchases (DESIGN §11), netted in its sales
    phone: Totals | None  # the day's sales paid by phone (DESIGN §10), within the total; null for a manager
    #                       while fewer than 5 distinct phones paid
    exposure: DashboardExposure  # money at risk now, whatever the day
    projections: Lag
    checkpoint: DashboardCheckpoint | None
