"""What a manager sees of the statistics (DESIGN §12): aggregates only, and never a group of
fewer than ``MIN_CARDS`` distinct cards.

The rule, for any list of groups that partitions a total (merchants, hours, meal periods,
categories, days, windows): every group with fewer than ``MIN_CARDS`` cards is merged into one
group keyed ``other`` — together with a group already keyed ``other`` (the meal period ``other``),
which is the same name. If the merged group still has fewer than ``MIN_CARDS`` distinct cards,
the smallest of the remaining groups joins it (one is enough: each has at least ``MIN_CARDS``);
if everything together has fewer, no group is shown at all. Counts and amounts of the merged
group are sums; its ``cards`` are exact, the distinct cards across the merged groups (asked of
``distinct``). The total is never changed. Admins, auditors and merchants see exact groups.

What this does not stop: a manager who asks for two ranges, or one range by two dimensions, may
subtract one answer from another; the rule bounds what one answer shows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

MIN_CARDS = 5
OTHER = "other"


@dataclass(frozen=True, slots=True)
class Group:
    key: Any  # as the view stores it (an hour is an int, a day a date); ``OTHER`` for a merge
    count: int
    amount: int
    cards: int


DistinctCards = Callable[[list[Any]], Awaitable[int]]  # keys → distinct cards across their groups


async def merge_small_groups(groups: Sequence[Group], distinct: DistinctCards,
                             min_cards: int = MIN_CARDS) -> list[Group]:
    """``groups`` as a manager may see them, in their order, a merged ``other`` last."""
    if all(g.cards >= min_cards for g in groups):
        return list(groups)
    merged = [g for g in groups if g.cards < min_cards or g.key == OTHER]
    rest = sorted((g for g in groups if g not in merged), key=lambda g: (g.cards, g.count, str(g.key)))
    cards = await distinct([g.key for g in merged])
    while cards < min_cards and rest:
        merged.append(rest.pop(0))
        cards = await distinct([g.key for g in merged])
    if cards < min_cards:
        return []
    other = Group(OTHER, sum(g.count for g in merged), sum(g.amount for g in merged), cards)
    return [*(g for g in groups if g not in merged), other]


def union_of(sets: dict[Any, set[str]]) -> DistinctCards:
    """``distinct`` over card sets already read (the dashboard's day)."""

    async def distinct(keys: list[Any]) -> int:
        return len(set().union(*(sets.get(k, set()) for k in keys)))

    return distinct
