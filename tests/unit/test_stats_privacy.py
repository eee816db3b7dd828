"""A manager never sees a group of fewer than 5 distinct cards (``projections.stats_privacy``):
for any groups with any cards, what is shown partitions what was there, every group shown has at
least 5 distinct cards (``other`` counted exactly), and nothing is shown only when all together
have fewer."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from projections.stats_privacy import MIN_CARDS, OTHER, Group, merge_small_groups, union_of

CARDS = [f"C{i:02d}" for i in range(24)]
KEYS = ["breakfast", "lunch", "dinner", OTHER, "canteen-1", "canteen-2", "market", "07:00", "08:00"]


@st.composite
def sold(draw: st.DrawFn) -> dict[str, tuple[int, int, set[str]]]:
    """Groups by key: (purchases, fen, the cards that bought), each with at least one card."""
    keys = draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=len(KEYS)))
    groups = {}
    for key in keys:
        cards = draw(st.sets(st.sampled_from(CARDS), min_size=1, max_size=9))
        count = len(cards) + draw(st.integers(0, 20))
        groups[key] = (count, draw(st.integers(count, 10_000 * count)), cards)
    return groups


def _shown(groups: dict[str, tuple[int, int, set[str]]]) -> list[Group]:
    given_groups = [Group(k, count, fen, len(cards)) for k, (count, fen, cards) in groups.items()]
    return asyncio.run(merge_small_groups(given_groups, union_of({k: g[2] for k, g in groups.items()})))


@given(sold())
def test_a_manager_sees_no_group_of_fewer_than_5_cards_and_the_groups_still_add_up(
    groups: dict[str, tuple[int, int, set[str]]],
) -> None:
    shown = _shown(groups)
    assert all(g.cards >= MIN_CARDS for g in shown)
    if all(len(cards) >= MIN_CARDS for _, _, cards in groups.values()):
        assert shown == [Group(k, c, f, len(cards)) for k, (c, f, cards) in groups.items()]
        return
    if not shown:
        assert len(set().union(*(cards for _, _, cards in groups.values()))) < MIN_CARDS
        return
    *kept, other = shown
    assert other.key == OTHER and OTHER not in {g.key for g in kept}
    for g in kept:  # a group shown under its own key is exactly what it was
        assert (g.count, g.amount, g.cards) == (groups[g.key][0], groups[g.key][1], len(groups[g.key][2]))
    merged = set(groups) - {g.key for g in kept}
    assert other.cards == len(set().union(*(groups[k][2] for k in merged)))
    assert sum(g.count for g in shown) == sum(c for c, _, _ in groups.values())
    assert sum(g.amount for g in shown) == sum(f for _, f, _ in groups.values())
    joined = [k for k in merged if k != OTHER and len(groups[k][2]) >= MIN_CARDS]
    assert len(joined) <= 1  # at most one large group joins, and only if the small ones were too few
    assert not joined or len(set().union(*(groups[k][2] for k in merged - set(joined)))) < MIN_CARDS


def test_one_small_group_is_not_shown_alone_as_other() -> None:
    """Merged alone it would be shown under another name: the smallest other group joins it."""
    groups = {"lunch": (9, 900, set(CARDS[:9])), "dinner": (6, 600, set(CARDS[:6])), "market": (1, 50, {"C23"})}
    assert _shown(groups) == [Group("lunch", 9, 900, 9), Group(OTHER, 7, 650, 7)]
