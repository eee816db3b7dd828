"""Offline limits of a merchant (DESIGN §11) and the rules that read them: the bounds of each
limit, whether an offline purchase went beyond them, and what counts as a possible duplicate.

Pure functions over plain values; the aggregates keep the state they read (``Merchant``: the
limits, ``Card``: its offline spending per local day, ``SwipeLog``: the device's offline period
and its latest purchases) and ``domain.swipes`` decides with them."""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict

from domain.errors import Invalid

# (field in the API, field in the events, least, most): fen, fen, fen, seconds.
BOUNDS = (
    ("max_amount", "max_amount_fen", 1, 10_000_000),
    ("max_card_day", "max_card_day_fen", 1, 100_000_000),
    ("max_device_total", "max_device_total_fen", 1, 100_000_000),
    ("max_offline_seconds", "max_offline_seconds", 1, 2_592_000),  # 30 days
)
DUPLICATE_WINDOW_MS = 10_000  # DESIGN §11: the same card, device and amount within 10 s
RECENT_KEPT = 32  # a device's purchases kept for the duplicate check, at most


class Limits(TypedDict):
    """A merchant's offline limits as stored (``Merchant.LimitsSet``) and kept on the merchant."""

    max_amount_fen: int
    max_card_day_fen: int
    max_device_total_fen: int
    max_offline_seconds: int


def checked(max_amount_fen: int, max_card_day_fen: int, max_device_total_fen: int,
            max_offline_seconds: int) -> Limits:
    """The limits, each an integer in its range, else ``Invalid`` naming the API's field."""
    limits = Limits(max_amount_fen=max_amount_fen, max_card_day_fen=max_card_day_fen,
                    max_device_total_fen=max_device_total_fen, max_offline_seconds=max_offline_seconds)
    for api_field, name, least, most in BOUNDS:
        value = limits[name]  # type: ignore[literal-required]
        if type(value) is not int or not least <= value <= most:
            raise Invalid(f"{api_field} must be an integer from {least:,} to {most:,}", field=api_field)
    return limits


def beyond(limits: Limits, amount_fen: int, card_day_fen: int, device_total_fen: int,
           offline_seconds: float) -> bool:
    """Whether an approved offline purchase went beyond any limit: its amount, the card's
    offline purchases at the merchant that local day, the device's since its last upload (both
    including this one), or its time since that upload."""
    return (
        amount_fen > limits["max_amount_fen"]
        or card_day_fen > limits["max_card_day_fen"]
        or device_total_fen > limits["max_device_total_fen"]
        or offline_seconds > limits["max_offline_seconds"]
    )


def instant_ms(at: datetime) -> int:
    """Milliseconds since the epoch: how the swipe log keeps its recent purchases' ``at``."""
    return round(at.timestamp() * 1000)


def parse_stored_instant(text: str) -> datetime | None:
    """An ``at`` or ``recorded_at`` read back from a stored event. Events stored by hubs older
    than the edge's checks may hold any text (no offset, the year 1): those are left out of the
    limits and the duplicate check, never fail the aggregate that replays them."""
    try:
        at = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
        at.timestamp()  # within the range of an epoch time, once in UTC
    except (ValueError, AttributeError, OverflowError):
        return None
    return at if at.tzinfo is not None else None


def is_duplicate(recent: list[list[object]], at_ms: int, card: str | None, amount_fen: int) -> bool:
    """Whether ``recent`` (``[at_ms, card, amount_fen]`` of the device's latest purchases) holds
    one of the same card and amount within the ``DUPLICATE_WINDOW_MS`` before ``at_ms``. A swipe of
    no known card (an invalid payment code) is a duplicate of none."""
    return card is not None and any(
        r[1] == card and r[2] == amount_fen and 0 <= at_ms - r[0] <= DUPLICATE_WINDOW_MS  # type: ignore[operator]
        for r in recent
    )


def kept_recent(recent: list[list[object]], at_ms: int, card: str | None, amount_fen: int) -> list[list[object]]:
    """``recent`` with this purchase, without those more than the window before it, at most
    ``RECENT_KEPT`` (the latest ones)."""
    kept = [r for r in recent if at_ms - r[0] <= DUPLICATE_WINDOW_MS]  # type: ignore[operator]
    kept.append([at_ms, card, amount_fen])
    return kept[-RECENT_KEPT:]
