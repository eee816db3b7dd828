"""A view's tables are a name → CREATE TABLE mapping (``audit verify`` compares each named table
with its replay): a name that is not the table its statement creates is refused at import."""

from __future__ import annotations

import pytest

from projections.base import View
from projections.catalogue import PROJECTIONS


def test_every_views_table_is_named_after_the_table_it_creates() -> None:
    for _, view_class in PROJECTIONS:
        for name, statement in view_class.tables.items():
            assert statement.startswith(f"CREATE TABLE IF NOT EXISTS {{schema}}.{name} (")
        assert all(statement.startswith("CREATE INDEX") for statement in view_class.indexes)


def test_a_table_named_otherwise_is_refused() -> None:
    with pytest.raises(TypeError, match="does not create balance"):
        type("Wrong", (View,), {"tables": {"balance": "CREATE TABLE IF NOT EXISTS {schema}.balances (x int)"}})
