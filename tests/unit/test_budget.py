"""The connection budget (DESIGN §13, hub.storage.budget): how CARDHUB_DB_POOL is split among a
hub's pools, the smallest total that runs a hub, and nothing handed out beyond the total."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.config import DB_POOL_MAX, ConfigError
from hub.storage.budget import READS_MIN, Budget

MINIMUM = 11  # 8 fixed + READS_MIN, as the README says


def test_the_default_20_splits_as_the_modules_table_says() -> None:
    budget = Budget.of(20)
    assert (budget.lock, budget.writer, budget.view_waits) == (1, 2, 1)
    assert budget.projection_views + budget.projection_events == 4
    assert budget.reads == 12


@pytest.mark.parametrize("total", [1, MINIMUM - 1])
def test_a_total_that_leaves_too_few_reads_is_refused_naming_the_setting_and_the_minimum(total: int) -> None:
    with pytest.raises(ConfigError) as refused:
        Budget.of(total)
    assert str(refused.value).startswith("CARDHUB_DB_POOL: ")
    assert f"at least {MINIMUM}" in str(refused.value)


def test_the_minimum_runs_with_the_fewest_reads() -> None:
    assert Budget.of(MINIMUM).reads == READS_MIN


def _size(env: dict[str, str]) -> int:
    """The most connections an eventsourcing datastore with these settings opens."""
    return int(env["POSTGRES_POOL_SIZE"]) + int(env["POSTGRES_MAX_OVERFLOW"])


@given(st.integers(MINIMUM, DB_POOL_MAX))
def test_the_pools_as_configured_add_up_to_the_total(total: int) -> None:
    budget = Budget.of(total)
    pools = [budget.lock, _size(budget.writer_env()), _size(budget.view_waits_env()),
             _size(budget.projection_events_env()), _size(budget.projection_views_env()), budget.reads]
    assert sum(pools) == total
    assert min(pools) >= 1
