"""Subsidy grants (DESIGN §11, ``domain.grants``): spending order, expiry at the instant, and
give-backs in parts that add up to one whole give-back."""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from domain import grants

DEC15 = "2026-12-15T00:00:00+08:00"
DEC31 = "2026-12-31T00:00:00+08:00"


def test_grants_are_spent_first_to_expire_first_without_expiry_last_ties_in_order() -> None:
    held: list[grants.Grant] = []
    for ref, expires in [("a", None), ("b", DEC31), ("c", DEC15), ("d", "2026-12-14T16:00:00+00:00"), ("e", None)]:
        grants.insert(held, ref, 100, expires)
    assert [g[0] for g in held] == ["c", "d", "b", "a", "e"]  # c and d: the same instant, in grant order
    assert grants.plan(held, 250) == [["c", 100], ["d", 100], ["b", 50]]


def test_a_grant_is_due_at_its_instant_and_not_a_microsecond_before() -> None:
    held = [["c", 5, DEC15]]
    instant = datetime.fromisoformat(DEC15)
    assert grants.due(held, instant - timedelta(microseconds=1)) == []
    assert grants.due(held, instant) == held


@given(st.lists(st.integers(1, 500), min_size=1, max_size=4), st.lists(st.integers(0, 2000), max_size=5))
def test_give_backs_in_parts_add_up_to_the_whole_latest_expiring_first(drawn_fen: list[int], cuts: list[int]) -> None:
    drawn = [[f"g{i}", fen] for i, fen in enumerate(drawn_fen)]
    total = sum(drawn_fen)
    points = sorted({0, total, *(min(c, total) for c in cuts)})
    given_back: dict[str, int] = {}
    for before, after in zip(points, points[1:], strict=False):
        for ref, fen in grants.give_back(drawn, total, before, after):
            given_back[ref] = given_back.get(ref, 0) + fen
    assert given_back == {ref: fen for ref, fen in drawn}
    assert grants.give_back(drawn, total, 0, drawn_fen[-1]) == [drawn[-1]]  # the latest-expiring first
